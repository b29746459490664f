/**
 * The environment a worker's child processes get: what each kind needs, nothing else. Shard
 * builders decode images from anywhere and a local endpoint's server parses requests from the
 * network; neither, nor a training process, gets the worker's Temporal credentials (API key, TLS
 * key paths) or any other variable of the worker's that is not on its list. They read S3, so they
 * get the AWS SDK's variables (credentials included: on EKS these are the pod's IRSA role and
 * token file, the same the worker has); the training process logs to MLflow, so it alone gets
 * MLflow's.
 */
export type ChildKind = 'training' | 'shard-builder' | 'endpoint';

/** The process basics every child needs to run (and to find its libraries, CAs, proxies and temp folder). */
const BASICS = [
  'PATH',
  'HOME',
  'TMPDIR',
  'TZ',
  'LANG',
  'LD_LIBRARY_PATH',
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'LOG_FORMAT',
  'NODE_OPTIONS',
];
const BASIC_PREFIXES = ['LC_', 'TF_', 'OMP_', 'KMP_', 'OPENBLAS_', 'MALLOC_'];
/** S3 and the SDK's own settings (region, endpoints, credentials, retries), and this project's S3 limits. */
const S3_PREFIXES = ['AWS_', 'S3_'];

const ALLOWED: Record<ChildKind, { names: string[]; prefixes: string[] }> = {
  training: {
    names: ['MLFLOW_TRACKING_URI', 'MLFLOW_TRACKING_TOKEN', 'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD'],
    prefixes: [...S3_PREFIXES, 'TRAINING_'],
  },
  'shard-builder': { names: [], prefixes: S3_PREFIXES },
  endpoint: { names: ['MAX_BATCH', 'DRIFT_SAMPLE_FLUSH_SECONDS'], prefixes: S3_PREFIXES },
};

/** `env` narrowed to what a child of `kind` may see, plus `extra` (which always passes). */
export function childEnv(kind: ChildKind, env: NodeJS.ProcessEnv, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const { names, prefixes } = ALLOWED[kind];
  const keep = (key: string): boolean =>
    BASICS.includes(key) || names.includes(key) || [...BASIC_PREFIXES, ...prefixes].some((p) => key.startsWith(p));
  const out: NodeJS.ProcessEnv = { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
  for (const [key, value] of Object.entries(env)) if (value !== undefined && keep(key)) out[key] = value;
  return { ...out, ...extra };
}
