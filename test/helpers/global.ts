/**
 * Mocha global fixture: a private MLflow, SeaweedFS (S3) and moto (SageMaker API) for the suites
 * that need them, on their own ports and folder (.stack/test) so a running demo stack is left
 * alone. They start on the first `useTestStack()`, so pure suites run on their own without them.
 * Temporal tests start their own dev server through TestWorkflowEnvironment.createLocal.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LocalEndpoints } from '../../src/serving/local-endpoints';
import { stackDown, stackUp, type StackOptions } from '../../src/stack/services';

export const ROOT = resolve(__dirname, '..', '..');
export const TEST_STACK_DIR = join(ROOT, '.stack', 'test');

const options: StackOptions = {
  dir: TEST_STACK_DIR,
  host: '127.0.0.1',
  projectRoot: ROOT,
  services: ['mlflow', 'moto', 's3'],
  ports: {
    temporal: 0,
    temporalUi: 0,
    mlflow: Number(process.env.TEST_MLFLOW_PORT ?? 5071),
    moto: Number(process.env.TEST_MOTO_PORT ?? 4571),
    s3: Number(process.env.TEST_S3_PORT ?? 8343),
    ...(process.env.TEST_S3_INTERNAL_PORT ? { s3Internal: Number(process.env.TEST_S3_INTERNAL_PORT) } : {}),
  },
};

// Everything the code under test reads from the environment points at the test services.
Object.assign(process.env, {
  AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${options.ports.s3}`,
  AWS_ENDPOINT_URL_SAGEMAKER: `http://127.0.0.1:${options.ports.moto}`,
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
  MLFLOW_TRACKING_URI: `http://127.0.0.1:${options.ports.mlflow}`,
  PIPELINE_STATE_DIR: TEST_STACK_DIR,
  LOCAL_ENDPOINT_PORT: process.env.TEST_ENDPOINT_PORT ?? '8091',
  TF_CPP_MIN_LOG_LEVEL: '2',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
});

let started: Promise<void> | undefined;

/** Starts MLflow, SeaweedFS and moto once per mocha process, from a clean folder. */
function startTestStack(): Promise<void> {
  started ??= (async () => {
    await stackDown(options);
    rmSync(TEST_STACK_DIR, { recursive: true, force: true });
    await stackUp(options);
  })();
  return started;
}

/** Declares that the calling suite talks to the test MLflow, S3 (SeaweedFS) and SageMaker API (moto). */
export function useTestStack(): void {
  before(async function () {
    this.timeout(300_000);
    await startTestStack();
  });
}

export async function mochaGlobalTeardown(): Promise<void> {
  if (!started) return;
  const endpoints = new LocalEndpoints({ stateDir: TEST_STACK_DIR, host: '127.0.0.1', port: 0, env: process.env });
  let names: string[] = [];
  try {
    names = readdirSync(join(TEST_STACK_DIR, 'endpoints')).map((f) => f.replace(/\.json$/, ''));
  } catch {
    /* no endpoint was started */
  }
  for (const name of names) await endpoints.stop(name);
  await stackDown(options);
}
