/**
 * `npm run demo`: brings the local stack up, seeds the synthetic dataset if absent, starts the
 * workers, runs the pipeline with small parameters, and prints the chosen model, its metrics,
 * the endpoint and a real prediction from it. The stack and the endpoint stay up afterwards.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Connection, WorkflowClient, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { TASK_QUEUES, workflowIdForEndpoint } from '../src/common/constants';
import { loadConfig } from '../src/config';
import { decodeAndResize } from '../src/data/images';
import { writeSyntheticDataset } from '../src/data/generate';
import { withLocalStackDefaults } from '../src/stack/local-env';
import { stackOptionsFromEnv, stackUp } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { MlflowClient } from '../src/tracking/mlflow';
import type { cnnSkinCancerWorkflow } from '../src/workflows';
import type { PipelineInput } from '../src/workflows/input';
import { finishSignal, type PipelineStatus } from '../src/workflows/messages';
import { defaultBuildId } from '../src/runtime/build-id';
import { connectionOptions } from '../src/runtime/connection';

const ROOT = resolve(__dirname, '..', '..');
const DATA_URI = 's3://cnn-skin-cancer/data';
const DEMO_INPUT: PipelineInput = {
  dataUri: DATA_URI,
  imageSize: 64,
  epochs: 8,
  batchSize: 16,
  learningRate: 1e-3,
  crossValFolds: 3,
};

const say = (line: string): void => console.log(`[demo] ${line}`);

async function main(): Promise<void> {
  Object.assign(process.env, withLocalStackDefaults(process.env, ROOT));
  const config = loadConfig(process.env);
  const stack = stackOptionsFromEnv(process.env, ROOT);

  say('starting the local stack (Temporal, MLflow, moto)');
  await stackUp(stack, (line) => say(line));

  const s3 = new S3Store(createS3Client(config));
  await s3.ensureBucket('cnn-skin-cancer');
  const seeded = await writeSyntheticDataset(s3, {
    outUri: DATA_URI,
    counts: { train: { benign: 80, malignant: 80 }, test: { benign: 20, malignant: 20 } },
    size: 96,
    seed: 7,
  });
  say(seeded.written ? `seeded ${seeded.written} synthetic images into ${DATA_URI}` : `dataset already present at ${DATA_URI}`);

  const workersLog = join(stack.dir, 'logs', 'demo-workers.log');
  say(`starting the workers (log: ${workersLog})`);
  const fd = openSync(workersLog, 'a');
  const workers = spawn(process.execPath, [join(ROOT, 'dist', 'src', 'workers', 'all.js')], {
    stdio: ['ignore', fd, fd],
    env: process.env,
  });
  const stopWorkers = (): void => void workers.kill('SIGTERM');
  process.on('exit', stopWorkers);

  try {
    const client = new WorkflowClient({ connection: await Connection.connect(connectionOptions(config.temporal)) });
    const workflowId = workflowIdForEndpoint('cnn-skin-cancer');
    const start = () =>
      client.start<typeof cnnSkinCancerWorkflow>('cnnSkinCancerWorkflow', {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId,
        args: [DEMO_INPUT],
      });
    let handle;
    try {
      handle = await start();
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      // One live workflow owns an endpoint: finish the previous demo's run first.
      const previous = client.getHandle(workflowId);
      const pinnedTo = (await previous.describe()).raw.workflowExecutionInfo?.versioningInfo?.deploymentVersion?.buildId;
      const ours = config.temporal.buildId ?? defaultBuildId();
      if (config.temporal.versioning && pinnedTo && pinnedTo !== ours) {
        // Its build's workers are gone (the code changed since), so nothing would run its finish.
        say(`terminating the previous run of ${workflowId}: it is pinned to build ${pinnedTo}, which no worker runs now`);
        await previous.terminate(`replaced by a demo run on build ${ours}`);
      } else {
        say(`finishing the previous run of ${workflowId}`);
        await previous.signal(finishSignal);
        await previous.result().catch(() => undefined);
      }
      handle = await start();
    }
    say(`started workflow ${workflowId} (run ${handle.firstExecutionRunId})`);

    const status = await followProgress(handle);
    if (status.stage === 'deploy-failed')
      throw new Error(
        `the deployment failed (${status.deployError}); the workflow stays alive: retry with ` +
          `.venv/bin/temporal workflow signal --workflow-id ${workflowId} --name redeploy --input '{"version":"${status.selection?.version}"}'`,
      );
    if (status.stage !== 'serving') throw new Error(`the workflow ended in stage '${status.stage}'; see the Web UI`);

    const deployment = status.deployments.at(-1)!;
    const winner = status.models.find((m) => m.modelClass === status.selection!.winner)!;
    const prediction = await predictOneTestImage(s3, deployment.url);
    const mlflow = new MlflowClient(config.mlflow.trackingUri);
    const experimentId = await mlflow.getOrCreateExperiment('cnn_skin_cancer');
    const uiBase = `http://localhost:${stack.ports.temporalUi}`;
    const mlflowBase = `http://localhost:${stack.ports.mlflow}`;
    const links = {
      temporalUi: `${uiBase}/namespaces/${config.temporal.namespace}/workflows/${workflowId}`,
      mlflowExperiment: `${mlflowBase}/#/experiments/${experimentId}`,
      mlflowModel: `${mlflowBase}/#/models/${deployment.registeredModelName}`,
    };

    console.log('');
    say(
      `chosen model: ${winner.modelClass} (registered ${deployment.registeredModelName} v${status.selection!.version}); serving v${deployment.version}`,
    );
    say(`why: ${status.selection!.reason}`);
    if (status.selection!.champion)
      say(`champion/challenger: ${status.selection!.champion.outcome} (${status.selection!.champion.reason})`);
    for (const m of status.models) {
      const v = m.validation;
      say(
        `  ${m.modelClass.padEnd(9)} ${m.state.padEnd(8)} ${v ? `val accuracy ${v.accuracy.toFixed(3)}  auc ${v.auc.toFixed(3)}  f1 ${v.f1.toFixed(3)}` : (m.error ?? '')}`,
      );
    }
    say(`endpoint: ${deployment.url}  (GET /ping, POST /invocations)`);
    say(`prediction for ${prediction.image}: ${prediction.label} ${JSON.stringify(prediction.probabilities)}`);
    say(`Temporal Web UI: ${links.temporalUi}`);
    say(`MLflow: ${links.mlflowExperiment}  registry: ${links.mlflowModel}`);
    say('the stack and the endpoint stay up; stop them with: npm run stack -- down');
    say(`the workflow keeps serving redeploy signals while 'npm run workers' runs, e.g.`);
    say(`  .venv/bin/temporal workflow signal --workflow-id ${workflowId} --name redeploy --input '{"alias":"champion"}'`);
    console.log(
      JSON.stringify({
        workflowId,
        model: winner.modelClass,
        version: deployment.version,
        metrics: winner.validation,
        endpoint: deployment.url,
        prediction,
        links,
      }),
    );
  } finally {
    stopWorkers();
  }
}

async function followProgress(handle: { query: (q: 'status') => Promise<PipelineStatus> }): Promise<PipelineStatus> {
  let last = '';
  for (;;) {
    const status = await handle.query('status').catch(() => undefined);
    if (status) {
      const line = `${status.stage}${status.models.length ? ': ' + status.models.map((m) => `${m.modelClass} ${m.state}`).join(', ') : ''}`;
      if (line !== last) say(line);
      last = line;
      if (['serving', 'deploy-failed', 'finished', 'failed'].includes(status.stage)) return status;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function predictOneTestImage(
  s3: S3Store,
  url: string,
): Promise<{ image: string; label: string; probabilities: Record<string, number> }> {
  const [image] = await s3.list(`${DATA_URI}/test/malignant/`);
  const model = (await (await fetch(`${url}/model`)).json()) as { imageSize: number };
  const size = model.imageSize;
  const pixels = decodeAndResize(await s3.getBytes(`s3://cnn-skin-cancer/${image!.key}`), size);
  // The original endpoint's request format: {"instances": [HxWx3 floats in [0, 1]]}.
  const instance = Array.from({ length: size }, (_, y) =>
    Array.from({ length: size }, (_, x) => [0, 1, 2].map((c) => pixels[(y * size + x) * 3 + c]! / 255)),
  );
  const res = await fetch(`${url}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instances: [instance] }),
  });
  if (!res.ok) throw new Error(`the endpoint answered ${res.status}: ${await res.text()}`);
  const { predictions } = (await res.json()) as { predictions: { label: string; probabilities: Record<string, number> }[] };
  return { image: `s3://cnn-skin-cancer/${image!.key}`, ...predictions[0]! };
}

main().catch((err: Error) => {
  console.error(`[demo] failed: ${err.message}`);
  process.exit(1);
});
