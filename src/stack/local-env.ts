import { join } from 'node:path';

/**
 * Defaults that point the AWS SDK, MLflow and Temporal at the local stack. Used only by the
 * local entry points (`npm run workers`, `demo`, `seed`); a variable already set always wins.
 */
export function withLocalStackDefaults(env: NodeJS.ProcessEnv, projectRoot: string): NodeJS.ProcessEnv {
  return {
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${env.S3_PORT || 8333}`,
    AWS_ENDPOINT_URL_SAGEMAKER: `http://127.0.0.1:${env.MOTO_PORT || 4566}`,
    // SeaweedFS (no identities configured) and moto accept any credentials; the SDK insists that some exist.
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: 'us-east-1',
    MLFLOW_TRACKING_URI: `http://127.0.0.1:${env.MLFLOW_PORT || 5000}`,
    // The demo's bucket: local endpoints keep their drift samples beside its data.
    DRIFT_SAMPLE_URI: 's3://cnn-skin-cancer/drift-samples',
    // The SDK warns that releases after January 2027 need Node 22; the pinned release runs on 20.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    PIPELINE_STATE_DIR: join(projectRoot, '.stack'),
    TEMPORAL_ADDRESS: `127.0.0.1:${env.TEMPORAL_PORT || 7233}`,
    ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== '')),
  };
}
