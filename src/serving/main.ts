/**
 * `serve`: the model server process. In a SageMaker container it serves /opt/ml/model on 8080;
 * locally it is started by the deploy activity with --model-uri and --admin (hot swap).
 *
 *   node dist/src/serving/main.js [--model-uri s3://...|DIR] [--host H] [--port P] [--admin] [--max-batch N]
 *
 * The model runs on a thread of its own (ThreadEngine): the event loop answers /ping however busy the model is.
 */
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createInferenceServer } from './server';
import { ENDPOINT_DRIFT_SAMPLE_ENV } from './drift-recorder';
import { ThreadEngine } from './thread-engine';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'model-uri': { type: 'string', default: process.env.MODEL_URI ?? '/opt/ml/model' },
      'model-name': { type: 'string' },
      'model-version': { type: 'string' },
      host: { type: 'string', default: '0.0.0.0' },
      port: { type: 'string', default: process.env.SAGEMAKER_BIND_TO_PORT ?? '8080' },
      admin: { type: 'boolean', default: false },
      'max-batch': { type: 'string', default: process.env.MAX_BATCH ?? '32' },
      // Request bodies held at once, over all requests.
      'max-body-total-mb': { type: 'string', default: process.env.MAX_BODY_TOTAL_MB ?? '256' },
      // Which local endpoint this server is (set by LocalEndpoints), so a deploy can find it without its state file.
      'endpoint-id': { type: 'string' },
      // This endpoint's prefix for its drift sample (drift-recorder.ts); unset: none is kept.
      'drift-sample-uri': { type: 'string', default: process.env[ENDPOINT_DRIFT_SAMPLE_ENV] || undefined },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, got '${values.port}'`);
  const maxBatch = Number(values['max-batch']);
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`--max-batch must be a positive integer, got '${values['max-batch']}'`);
  const maxBodyTotalMb = Number(values['max-body-total-mb']);
  if (!(maxBodyTotalMb >= 1)) throw new Error(`--max-body-total-mb must be at least 1, got '${values['max-body-total-mb']}'`);
  // The hot swap is for the local endpoints' deploy activity only, which passes its token in the environment.
  const adminToken = process.env.ENDPOINT_ADMIN_TOKEN || undefined;
  if (values.admin && !adminToken) throw new Error('--admin needs ENDPOINT_ADMIN_TOKEN: POST /admin/model is never open');
  const engine = await ThreadEngine.start(
    {
      model: { modelUri: values['model-uri']!, name: values['model-name'], version: values['model-version'] },
      maxBatch,
      canSwap: values.admin,
      ...(values['drift-sample-uri'] ? { driftSampleUri: values['drift-sample-uri'] } : {}),
    },
    (err) => {
      // Nothing can be served without it: exit, so the process is restarted (the container, or the next deploy).
      console.error(`serve: ${err.message}`);
      process.exit(1);
    },
  );
  const { server } = createInferenceServer(engine, { adminToken, maxBodyBytesTotal: Math.floor(maxBodyTotalMb * 2 ** 20) });
  const { info } = engine.served();
  // Port 0 takes a free one: the line says which.
  server.listen(port, values.host, () =>
    console.log(
      `serving ${info.name ?? ''} v${info.version ?? '?'} (${info.modelUri}) on http://${values.host}:${(server.address() as AddressInfo).port}`,
    ),
  );
  const stop = (): void => void server.close(() => void engine.close().then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: Error) => {
  console.error(`serve: ${err.message}`);
  process.exit(1);
});
