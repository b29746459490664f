/**
 * All runtime configuration, read from an env object once and validated up front.
 * Every variable is documented in README.md and .env.example.
 */
export interface Config {
  temporal: { address: string; namespace: string };
  aws: {
    region: string;
    s3Endpoint?: string;
    sagemakerEndpoint?: string;
    s3ForcePathStyle: boolean;
    /** Static keys when both are set; otherwise the SDK's default chain (IRSA, instance role, ...). */
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  };
  mlflow: { trackingUri: string };
  /** Scratch space for checkpoints and local endpoint state. */
  stateDir: string;
  localEndpoint: { host: string; port: number };
  /** oneDNN kernels in training processes (TRAINING_ONEDNN, default on; see README "Training speed"). */
  training: { onednn: boolean };
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
  const port = (key: string, fallback: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 65535) problems.push(`${key} must be a port number (1-65535), got '${raw}'`);
    return n;
  };
  const s3Endpoint = url('AWS_ENDPOINT_URL_S3', env.AWS_ENDPOINT_URL);
  const config: Config = {
    temporal: {
      address: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
      namespace: env.TEMPORAL_NAMESPACE || 'default',
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
    },
    mlflow: { trackingUri: url('MLFLOW_TRACKING_URI', 'http://127.0.0.1:5000')! },
    stateDir: env.PIPELINE_STATE_DIR || '.stack',
    localEndpoint: {
      host: env.LOCAL_ENDPOINT_HOST || '127.0.0.1',
      port: port('LOCAL_ENDPOINT_PORT', 8080),
    },
    training: { onednn: (env.TRAINING_ONEDNN || 'on') === 'on' },
  };
  if (env.TRAINING_ONEDNN && !['on', 'off'].includes(env.TRAINING_ONEDNN))
    problems.push(`TRAINING_ONEDNN must be 'on' or 'off', got '${env.TRAINING_ONEDNN}'`);
  if (!/^[\w.-]+:\d+$/.test(config.temporal.address)) problems.push(`TEMPORAL_ADDRESS must be host:port, got '${config.temporal.address}'`);
  if (problems.length) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}
