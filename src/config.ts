import { DEPLOY_TARGETS, INSTANCE_TYPE_PATTERN, type DeployTarget } from './common/constants';

/**
 * All runtime configuration, read from an env object once and validated up front.
 * Every variable is documented in docs/configuration.md and .env.example.
 */
export interface Config {
  temporal: TemporalConfig;
  /** The worker process: health and metrics ports, shutdown, logs. */
  worker: WorkerProcessConfig;
  aws: {
    region: string;
    s3Endpoint?: string;
    sagemakerEndpoint?: string;
    s3ForcePathStyle: boolean;
    /** Static keys when both are set; otherwise the SDK's default chain (IRSA, instance role, ...). */
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
    s3Limits: S3LimitsConfig;
  };
  mlflow: { trackingUri: string };
  /**
   * Where the ml-pipeline worker posts the runs' events (NOTIFY_WEBHOOK_URL; unset: nowhere), and
   * the key their HMAC-SHA256 signature is made with (NOTIFY_WEBHOOK_SECRET).
   */
  notifications: { webhookUrl?: string; secret?: string };
  /**
   * Where inference servers write their drift samples, one prefix per endpoint below it
   * (DRIFT_SAMPLE_URI, an s3:// prefix; unset: none are written, and drift checks say so).
   */
  drift: { sampleUri?: string };
  /** Scratch space for checkpoints and local endpoint state. */
  stateDir: string;
  localEndpoint: { host: string; port: number; sweepSeconds: number };
  /**
   * Where a run deploys when its input names no target (DEFAULT_DEPLOY_TARGET; the cluster
   * overlays set `sagemaker`), and whether this process runs in a Kubernetes pod, where a local
   * endpoint would be unreachable.
   */
  deploy: { defaultTarget: DeployTarget; inCluster: boolean };
  sagemaker: SageMakerConfig;
  /**
   * oneDNN kernels in training processes (TRAINING_ONEDNN, default on; see docs/training.md), and
   * the memory a training pass may plan to use (TRAINING_MEMORY_MB; default: 85 % of the
   * container's limit).
   */
  training: { onednn: boolean; memoryMb?: number; concurrency: number; stallSeconds: number };
}

export interface TemporalConfig {
  address: string;
  namespace: string;
  /** Worker Deployment name (TEMPORAL_DEPLOYMENT_NAME, as Temporal's Worker Controller injects it). */
  deploymentName: string;
  /** Build id of this release (TEMPORAL_WORKER_BUILD_ID); unset: derived from the package version and the code. */
  buildId?: string;
  /**
   * Poll as a version of the Worker Deployment (TEMPORAL_WORKER_VERSIONING). Default: on when the
   * build is named (TEMPORAL_WORKER_BUILD_ID, which Temporal's Worker Controller and `npm run
   * workers` set, and which also make the version current), else off: a worker started on its own,
   * as a plain Deployment starts it, would otherwise poll as a version nothing makes current.
   */
  versioning: boolean;
  /** TLS towards the frontend: on with any of the TLS variables or an API key. */
  tls?: { certPath?: string; keyPath?: string; caPath?: string; serverName?: string };
  /** Temporal Cloud API key (TEMPORAL_API_KEY); implies TLS. */
  apiKey?: string;
}

export interface WorkerProcessConfig {
  /** /healthz and /readyz (WORKER_HEALTH_PORT; 0 turns it off). */
  healthPort: number;
  /** Address the health and metrics servers bind (WORKER_HTTP_HOST; 0.0.0.0 in a pod). */
  httpHost: string;
  /** Prometheus /metrics of the SDK and the pipeline (WORKER_METRICS_PORT; 0 turns it off). */
  metricsPort: number;
  /** Overrides of each worker's own shutdown defaults (WORKER_SHUTDOWN_GRACE_SECONDS, _FORCE_SECONDS). */
  shutdownGraceSeconds?: number;
  shutdownForceSeconds?: number;
  /** LOG_FORMAT: json, text, or auto (text on a terminal, JSON otherwise). */
  logFormat: 'json' | 'text' | 'auto';
}

/** What every S3 request may cost in time and bytes (src/storage/s3-limits.ts applies them). */
export interface S3LimitsConfig {
  /** S3_CONNECT_TIMEOUT_MS: how long a connection to S3 may take to open. */
  connectTimeoutMs: number;
  /**
   * S3_IDLE_TIMEOUT_MS: how long a request's connection may stay silent (nothing sent or received)
   * before the attempt fails. A silence, not a deadline: a large object on a slow link never hits it.
   */
  idleTimeoutMs: number;
  /** S3_MAX_OBJECT_MB: the largest object a read accepts; a larger one is refused before its body is read. */
  maxObjectBytes: number;
}

export const TRAFFIC_ROUTING = ['all-at-once', 'canary', 'linear'] as const;
export type TrafficRouting = (typeof TRAFFIC_ROUTING)[number];

/** Deploy target `sagemaker`. Image and role are only required when that target is used. */
export interface SageMakerConfig {
  /** ECR URI of this project's serving image (its `serve` entry point). */
  imageUri?: string;
  /** IAM role SageMaker assumes to pull the image and read model.tar.gz. */
  executionRoleArn?: string;
  instanceType: string;
  /**
   * The instance types a deploy may use (SAGEMAKER_INSTANCE_TYPES; default: instanceType alone):
   * a redeploy asking for another is refused, and the IAM policy (k8s/iam) allows the same list.
   */
  allowedInstanceTypes: string[];
  instanceCount: number;
  /** Blue/green traffic shifting: all at once (default), a canary share first, or linear steps. */
  trafficRouting: TrafficRouting;
  /** Canary size or linear step, in percent of instances. */
  trafficPercent: number;
  /** Bake time between traffic shifts (and before the old fleet is terminated). */
  trafficWaitSeconds: number;
  /** CloudWatch alarms that roll an update back automatically. */
  rollbackAlarms: string[];
  /** How long a deploy waits for InService before failing. */
  maxWaitSeconds: number;
  pollSeconds: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const url = (key: string, fallback?: string): string | undefined => {
    const value = env[key] || fallback;
    if (value === undefined) return undefined;
    try {
      new URL(value);
    } catch {
      problems.push(`${key} must be a URL such as http://127.0.0.1:4566, got '${value}'`);
    }
    return value;
  };
  const notificationsConfig = (): Config['notifications'] => {
    const webhookUrl = url('NOTIFY_WEBHOOK_URL');
    const secret = env.NOTIFY_WEBHOOK_SECRET || undefined;
    if (webhookUrl && !/^https?:\/\//.test(webhookUrl)) problems.push(`NOTIFY_WEBHOOK_URL must be an http(s) URL, got '${webhookUrl}'`);
    if (webhookUrl && (secret === undefined || secret.length < 16))
      problems.push('NOTIFY_WEBHOOK_SECRET must be set, at least 16 characters, with NOTIFY_WEBHOOK_URL: every event is signed with it');
    return webhookUrl ? { webhookUrl, secret } : {};
  };
  const port = (key: string, fallback: number, { allowZero = false } = {}): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    const min = allowZero ? 0 : 1;
    if (!Number.isInteger(n) || n < min || n > 65535) problems.push(`${key} must be a port number (${min}-65535), got '${raw}'`);
    return n;
  };
  const onOff = (key: string, fallback: boolean): boolean => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    if (raw !== 'on' && raw !== 'off') problems.push(`${key} must be 'on' or 'off', got '${raw}'`);
    return raw === 'on';
  };
  const temporalTls = (): Pick<TemporalConfig, 'tls' | 'apiKey'> => {
    const tls = {
      certPath: env.TEMPORAL_TLS_CERT || undefined,
      keyPath: env.TEMPORAL_TLS_KEY || undefined,
      caPath: env.TEMPORAL_TLS_CA || undefined,
      serverName: env.TEMPORAL_TLS_SERVER_NAME || undefined,
    };
    if (!tls.certPath !== !tls.keyPath)
      problems.push('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (the client certificate and its key): set both or neither');
    const apiKey = env.TEMPORAL_API_KEY || undefined;
    const tlsWanted = onOff('TEMPORAL_TLS', false) || Object.values(tls).some(Boolean) || apiKey !== undefined;
    const defined = Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined));
    return { ...(tlsWanted ? { tls: defined } : {}), ...(apiKey ? { apiKey } : {}) };
  };
  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) problems.push(`${key} must be an integer from ${min} to ${max}, got '${raw}'`);
    return n;
  };
  const matching = (key: string, pattern: RegExp, hint: string, fallback?: string): string | undefined => {
    const value = env[key] || fallback;
    if (value !== undefined && !pattern.test(value)) problems.push(`${key} must be ${hint}, got '${value}'`);
    return value;
  };
  const driftSampleUri = matching(
    'DRIFT_SAMPLE_URI',
    /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/,
    'an S3 prefix such as s3://bucket/drift-samples',
  );
  const s3Endpoint = url('AWS_ENDPOINT_URL_S3', env.AWS_ENDPOINT_URL);
  const config: Config = {
    temporal: {
      address: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
      namespace: env.TEMPORAL_NAMESPACE || 'default',
      deploymentName: matching('TEMPORAL_DEPLOYMENT_NAME', /^[\w-]{1,200}$/, 'letters, digits, _ or -', 'cnn-skin-cancer')!,
      ...(env.TEMPORAL_WORKER_BUILD_ID
        ? { buildId: matching('TEMPORAL_WORKER_BUILD_ID', /^[\w.+-]{1,200}$/, 'letters, digits, . + _ or -') }
        : {}),
      versioning: onOff('TEMPORAL_WORKER_VERSIONING', Boolean(env.TEMPORAL_WORKER_BUILD_ID)),
      ...temporalTls(),
    },
    worker: {
      healthPort: port('WORKER_HEALTH_PORT', 9090, { allowZero: true }),
      httpHost: env.WORKER_HTTP_HOST || '127.0.0.1',
      metricsPort: port('WORKER_METRICS_PORT', 9464, { allowZero: true }),
      ...(env.WORKER_SHUTDOWN_GRACE_SECONDS ? { shutdownGraceSeconds: int('WORKER_SHUTDOWN_GRACE_SECONDS', 0, 0, 3600) } : {}),
      ...(env.WORKER_SHUTDOWN_FORCE_SECONDS ? { shutdownForceSeconds: int('WORKER_SHUTDOWN_FORCE_SECONDS', 0, 1, 3600) } : {}),
      logFormat: matching('LOG_FORMAT', /^(json|text|auto)$/, "'json', 'text' or 'auto'", 'auto') as WorkerProcessConfig['logFormat'],
    },
    aws: {
      region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
      s3Endpoint,
      sagemakerEndpoint: url('AWS_ENDPOINT_URL_SAGEMAKER', env.AWS_ENDPOINT_URL),
      // Custom S3 endpoints (moto, MinIO) need path-style addressing.
      s3ForcePathStyle: env.S3_FORCE_PATH_STYLE ? env.S3_FORCE_PATH_STYLE === 'true' : s3Endpoint !== undefined,
      credentials:
        env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
          ? {
              accessKeyId: env.AWS_ACCESS_KEY_ID,
              secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
              sessionToken: env.AWS_SESSION_TOKEN || undefined,
            }
          : undefined,
      s3Limits: {
        connectTimeoutMs: int('S3_CONNECT_TIMEOUT_MS', 5_000, 1, 600_000),
        idleTimeoutMs: int('S3_IDLE_TIMEOUT_MS', 30_000, 1, 3_600_000),
        // MB of 2^20 bytes. 512: a shard of 256 images at 224 px is 36.8, a ResNet50 checkpoint (weights
        // and Adam's two moments) 269. A read holds the whole object in one typed array (4 GiB at most).
        maxObjectBytes: int('S3_MAX_OBJECT_MB', 512, 1, 4096) * 2 ** 20,
      },
    },
    mlflow: { trackingUri: url('MLFLOW_TRACKING_URI', 'http://127.0.0.1:5000')! },
    notifications: notificationsConfig(),
    drift: driftSampleUri ? { sampleUri: driftSampleUri.replace(/\/+$/, '') } : {},
    stateDir: env.PIPELINE_STATE_DIR || '.stack',
    localEndpoint: {
      host: env.LOCAL_ENDPOINT_HOST || '127.0.0.1',
      port: port('LOCAL_ENDPOINT_PORT', 8080),
      // How often the ml-pipeline worker looks for local endpoints whose owner ended without stopping them (0: never).
      sweepSeconds: int('LOCAL_ENDPOINT_SWEEP_SECONDS', 60, 0, 86_400),
    },
    training: {
      onednn: onOff('TRAINING_ONEDNN', true),
      // Trainings share the CPU; more in parallel than this only slows each down.
      concurrency: int('TRAINING_CONCURRENCY', 3, 1, 64),
      // A training or evaluation that reads no image and reports no progress for this long is ended and
      // retried. Its longest silent steps (building ResNet50, writing a 269 MB checkpoint) take about a minute here.
      stallSeconds: int('TRAINING_STALL_SECONDS', 900, 10, 86_400),
      ...(env.TRAINING_MEMORY_MB ? { memoryMb: int('TRAINING_MEMORY_MB', 0, 256, 4_194_304) } : {}),
    },
    deploy: {
      defaultTarget: matching(
        'DEFAULT_DEPLOY_TARGET',
        new RegExp(`^(${DEPLOY_TARGETS.join('|')})$`),
        `one of ${DEPLOY_TARGETS.join(', ')}`,
        'local',
      ) as DeployTarget,
      inCluster: Boolean(env.KUBERNETES_SERVICE_HOST),
    },
    sagemaker: {
      imageUri: matching(
        'SAGEMAKER_IMAGE_URI',
        /^\S+\/\S+(:\S+|@sha256:[0-9a-f]{64})$/,
        'an image URI such as 123456789012.dkr.ecr.us-east-1.amazonaws.com/cnn-skin-cancer:1.0',
      ),
      executionRoleArn: matching(
        'SAGEMAKER_EXECUTION_ROLE_ARN',
        /^arn:aws[\w-]*:iam::\d{12}:role\/\S+$/,
        'an IAM role ARN such as arn:aws:iam::123456789012:role/sagemaker-exec',
      ),
      instanceType: matching(
        'SAGEMAKER_INSTANCE_TYPE',
        INSTANCE_TYPE_PATTERN,
        'a SageMaker instance type such as ml.m5.large',
        'ml.m5.large',
      )!,
      allowedInstanceTypes: [],
      instanceCount: int('SAGEMAKER_INSTANCE_COUNT', 1, 1, 100),
      trafficRouting: matching(
        'SAGEMAKER_TRAFFIC_ROUTING',
        new RegExp(`^(${TRAFFIC_ROUTING.join('|')})$`),
        `one of ${TRAFFIC_ROUTING.join(', ')}`,
        'all-at-once',
      ) as TrafficRouting,
      trafficPercent: int('SAGEMAKER_TRAFFIC_PERCENT', 10, 1, 99),
      trafficWaitSeconds: int('SAGEMAKER_TRAFFIC_WAIT_SECONDS', 300, 0, 3600),
      rollbackAlarms: (env.SAGEMAKER_ROLLBACK_ALARMS ?? '')
        .split(',')
        .map((a) => a.trim())
        .filter(Boolean),
      maxWaitSeconds: int('SAGEMAKER_MAX_WAIT_SECONDS', 3600, 1, 6 * 3600),
      pollSeconds: int('SAGEMAKER_POLL_SECONDS', 15, 1, 300),
    },
  };
  const sm = config.sagemaker;
  sm.allowedInstanceTypes = (env.SAGEMAKER_INSTANCE_TYPES ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of sm.allowedInstanceTypes)
    if (!INSTANCE_TYPE_PATTERN.test(t)) problems.push(`SAGEMAKER_INSTANCE_TYPES must list instance types such as ml.m5.large, got '${t}'`);
  if (!sm.allowedInstanceTypes.length) sm.allowedInstanceTypes = [sm.instanceType];
  else if (!sm.allowedInstanceTypes.includes(sm.instanceType))
    problems.push(
      `SAGEMAKER_INSTANCE_TYPE ${sm.instanceType} is not among SAGEMAKER_INSTANCE_TYPES (${sm.allowedInstanceTypes.join(', ')})`,
    );
  if (!/^[\w.-]+:\d+$/.test(config.temporal.address)) problems.push(`TEMPORAL_ADDRESS must be host:port, got '${config.temporal.address}'`);
  if (problems.length) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}
