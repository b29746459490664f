/**
 * `serve`: the model server process. In a SageMaker container it serves /opt/ml/model on 8080;
 * locally it is started by the deploy activity with --model-uri and --admin (hot swap).
 *
 *   node dist/src/serving/main.js [--model-uri s3://...|DIR] [--host H] [--port P] [--admin] [--max-batch N]
 */
import { parseArgs } from 'node:util';
import { loadServedModel } from './load';
import { createInferenceServer } from './server';

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
      // Which local endpoint this server is (set by LocalEndpoints), so a deploy can find it without its state file.
      'endpoint-id': { type: 'string' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--port must be a port number, got '${values.port}'`);
  const model = await loadServedModel({ modelUri: values['model-uri']!, name: values['model-name'], version: values['model-version'] });
  const maxBatch = Number(values['max-batch']);
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`--max-batch must be a positive integer, got '${values['max-batch']}'`);
  // The hot swap is for the local endpoints' deploy activity only, which passes its token in the environment.
  const adminToken = process.env.ENDPOINT_ADMIN_TOKEN;
  if (values.admin && !adminToken) throw new Error('--admin needs ENDPOINT_ADMIN_TOKEN: POST /admin/model is never open');
  const { server } = createInferenceServer(model, {
    maxBatch,
    ...(values.admin ? { loadModel: loadServedModel, adminToken } : {}),
  });
  server.listen(port, values.host, () =>
    console.log(`serving ${model.info.name ?? ''} v${model.info.version ?? '?'} (${model.info.modelUri}) on http://${values.host}:${port}`),
  );
  const stop = (): void => void server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: Error) => {
  console.error(`serve: ${err.message}`);
  process.exit(1);
});
