/**
 * A benchmark's own local stack (Temporal, MLflow, SeaweedFS for S3, moto for the SageMaker API,
 * on ports of its own, state in .stack/<name>) and the environment its workers run with. Unlike
 * withLocalStackDefaults, the stack's addresses override whatever the caller's environment sets:
 * a benchmark must never measure, or write to, another stack. Every port is moved by
 * BENCH_PORT_OFFSET (bench/ports.ts).
 */
import { join, resolve } from 'node:path';
import type { StackOptions } from '../src/stack/services';
import { benchPort } from './ports';

const ROOT = resolve(__dirname, '..', '..');

export function privateStack(
  name: string,
  defaultPorts: StackOptions['ports'],
  defaultEndpointPort: number,
  extra: NodeJS.ProcessEnv = {},
): { stack: StackOptions; env: NodeJS.ProcessEnv } {
  const ports = { ...defaultPorts };
  for (const key of Object.keys(ports) as (keyof typeof ports)[]) {
    const port = ports[key];
    if (port !== undefined) ports[key] = benchPort(port);
  }
  const localEndpointPort = benchPort(defaultEndpointPort);
  const stack: StackOptions = { dir: join(ROOT, '.stack', name), host: '127.0.0.1', projectRoot: ROOT, ports };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
    MLFLOW_TRACKING_URI: `http://127.0.0.1:${ports.mlflow}`,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${ports.s3}`,
    AWS_ENDPOINT_URL_SAGEMAKER: `http://127.0.0.1:${ports.moto}`,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_REGION: 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    PIPELINE_STATE_DIR: stack.dir,
    LOCAL_ENDPOINT_PORT: String(localEndpointPort),
    ...extra,
  };
  return { stack, env };
}
