/**
 * `npm run demo`: brings the local stack up, seeds the synthetic dataset if absent, starts the
 * workers, runs the pipeline with small parameters, and prints the chosen model, its metrics,
 * the endpoint and a real prediction from it. The stack and the endpoint stay up afterwards.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Connection, WorkflowClient, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { TASK_QUEUES, workflowIdForEndpoint } from '../src/common/constants';
import type { TrainModelInput } from '../src/common/types';
import { loadConfig } from '../src/config';
import { decodeAndResize } from '../src/data/images';
import { writeSyntheticDataset } from '../src/data/generate';
import { servedBy } from '../src/serving/local-endpoints';
import { withLocalStackDefaults } from '../src/stack/local-env';
import { stackOptionsFromEnv, stackUp } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { MlflowClient } from '../src/tracking/mlflow';
import type { TrainingProgress } from '../src/training/run-training';
import type { cnnSkinCancerWorkflow } from '../src/workflows';
import { parsePipelineInput, type PipelineInput } from '../src/workflows/input';
import { finishSignal, statusQuery, type PipelineStatus } from '../src/workflows/messages';
import { defaultBuildId } from '../src/runtime/build-id';
import { connectionOptions } from '../src/runtime/connection';
import { Progress, type Bar } from './progress';

const ROOT = resolve(__dirname, '..', '..');
// Its own prefix: `dataUri`'s default may hold another dataset (`npm run dataset`), and a dataset
// already present is not rewritten.
const DATA_URI = 's3://cnn-skin-cancer/demo';
const DATA_COUNTS = { train: { benign: 320, malignant: 320 }, test: { benign: 80, malignant: 80 } };
// ResNet50 from scratch needs data more than epochs: trained on 128 images at 32 px for 20 epochs
// of batch 8, it scored 0.59 on the 32 validation images the demo had then; on 512 at 64 px for 4
// epochs of batch 16 (bench data, three seeds), 0.77-0.88. Its 128 steps leave batch norm's moving
// averages far from the data; training ends by computing them over the training images
// (recalibrateBatchNorm).
const DEMO_INPUT: PipelineInput = {
  dataUri: DATA_URI,
  imageSize: 64,
  epochs: 4,
  batchSize: 16,
  learningRate: 1e-3,
  crossValFolds: 3,
};

/** The demo's workflow id before ids became `endpoint-<name>`: a run under it may still own the endpoint. */
const LEGACY_WORKFLOW_ID = 'cnn-skin-cancer-cnn-skin-cancer';

const say = (line: string): void => console.log(`[demo] ${line}`);

async function main(): Promise<void> {
  Object.assign(process.env, withLocalStackDefaults(process.env, ROOT));
  const config = loadConfig(process.env);
  const stack = stackOptionsFromEnv(process.env, ROOT);

  say('starting the local stack (Temporal, MLflow, SeaweedFS for S3, moto for the SageMaker API)');
  await stackUp(stack, (line) => say(line));

  const s3 = new S3Store(createS3Client(config));
  await s3.ensureBucket('cnn-skin-cancer');
  const seeded = await writeSyntheticDataset(s3, {
    outUri: DATA_URI,
    counts: DATA_COUNTS,
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
    const params = parsePipelineInput(DEMO_INPUT);
    const workflowId = workflowIdForEndpoint(params.endpointName);
    // One live workflow owns an endpoint: the previous demo's run (under either id) gives it up first.
    const ourBuild = config.temporal.buildId ?? defaultBuildId();
    // npm run workers names the build, which turns versioning on unless it is set off.
    const versioned = loadConfig({ ...process.env, TEMPORAL_WORKER_BUILD_ID: ourBuild }).temporal.versioning;
    for (const id of [LEGACY_WORKFLOW_ID, workflowId]) await retire(client, id, versioned ? ourBuild : undefined);
    // The demo's own time, after set-up (stack, dataset, workers): from the run's start to the prediction.
    const started = Date.now();
    const handle = await client.start<typeof cnnSkinCancerWorkflow>('cnnSkinCancerWorkflow', {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId,
      args: [DEMO_INPUT],
      // Shown in the Web UI (User Metadata) and by `temporal workflow describe`.
      staticSummary:
        `Demo: ${params.models.join(', ')} on ${params.dataUri} at ${params.imageSize} px, ${params.epochs} epochs ` +
        `-> endpoint ${params.endpointName}`,
      staticDetails: [
        'Started by `npm run demo` (scripts/demo.ts) on the local stack.',
        `Input: \`${JSON.stringify(DEMO_INPUT)}\``,
        `Finish it: \`.venv/bin/temporal workflow signal --workflow-id ${workflowId} --name finish\``,
      ].join('\n\n'),
    });
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
    const prediction = await predictOneTestImage(s3, deployment.url, await servedBy(config.stateDir, deployment.endpointName));
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
        seconds: Math.round((Date.now() - started) / 100) / 10,
        models: Object.fromEntries(status.models.map((m) => [m.modelClass, m.validation?.accuracy ?? null])),
      }),
    );
  } finally {
    stopWorkers();
  }
}

/**
 * Retires the running workflow under `workflowId`, if there is one, so that a new run can own the
 * endpoint: a `finish` signal, or a terminate when it is pinned to a build other than `ourBuild`
 * (given when workers are versioned): that build's workers are gone, so nothing would run its finish.
 */
async function retire(client: WorkflowClient, workflowId: string, ourBuild: string | undefined): Promise<void> {
  const previous = client.getHandle(workflowId);
  const description = await previous.describe().catch((err: unknown) => {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  });
  if (description?.status.name !== 'RUNNING') return;
  const pinnedTo = description.raw.workflowExecutionInfo?.versioningInfo?.deploymentVersion?.buildId;
  if (ourBuild && pinnedTo && pinnedTo !== ourBuild) {
    say(`terminating the previous run of ${workflowId}: it is pinned to build ${pinnedTo}, which no worker runs now`);
    await previous.terminate(`replaced by a demo run on build ${ourBuild}`);
  } else {
    say(`finishing the previous run of ${workflowId}`);
    await previous.signal(finishSignal);
    await previous.result().catch(() => undefined);
  }
}

type PipelineHandle = WorkflowHandle<typeof cnnSkinCancerWorkflow>;

/** A pending activity and its last heartbeat's details, as the server has them. */
interface PendingActivity {
  id: string;
  type: string;
  scheduled: boolean;
  attempt: number;
  details: unknown;
}

const FINAL_STAGES: readonly string[] = ['serving', 'deploy-failed', 'finished', 'failed'];

/**
 * Follows the run until it serves (or fails): one line per stage or model-state change, and bars
 * (plain lines when not on a terminal) for the stage and, from the pending activities' heartbeats,
 * the preprocessing and each model's training.
 */
async function followProgress(handle: PipelineHandle): Promise<PipelineStatus> {
  const progress = new Progress('demo');
  const trainings = new Map<string, TrainModelInput>();
  let last = '';
  try {
    for (;;) {
      const status = await handle.query(statusQuery).catch(() => undefined);
      if (status) {
        const line = `${status.stage}${status.models.length ? ': ' + status.models.map((m) => `${m.modelClass} ${m.state}`).join(', ') : ''}`;
        if (line !== last) progress.log(`[demo] ${line}`);
        last = line;
        const done = FINAL_STAGES.includes(status.stage);
        const pending = !done && ['preprocessing', 'training'].includes(status.stage) ? await pendingActivities(handle) : [];
        if (pending.some((a) => a.type === 'trainModel' && !trainings.has(a.id))) await readTrainingInputs(handle, trainings);
        progress.update(progressBars(status, pending, trainings));
        if (done) return status;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    progress.end();
  }
}

async function pendingActivities(handle: PipelineHandle): Promise<PendingActivity[]> {
  const description = await handle.describe().catch(() => undefined);
  return (description?.raw.pendingActivities ?? []).map((a) => {
    const payload = a.heartbeatDetails?.payloads?.[0];
    return {
      id: a.activityId ?? '',
      type: a.activityType?.name ?? '',
      scheduled: a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED,
      attempt: a.attempt ?? 1,
      details: payload ? defaultPayloadConverter.fromPayload(payload) : undefined,
    };
  });
}

/** Which model each trainModel activity trains: its scheduled event's input says (its heartbeats do not). */
async function readTrainingInputs(handle: PipelineHandle, into: Map<string, TrainModelInput>): Promise<void> {
  const history = await handle.fetchHistory().catch(() => undefined);
  for (const event of history?.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    const payload = scheduled?.input?.payloads?.[0];
    if (scheduled?.activityType?.name === 'trainModel' && scheduled.activityId && payload)
      into.set(scheduled.activityId, defaultPayloadConverter.fromPayload<TrainModelInput>(payload));
  }
}

/** The pipeline's steps in order; serving is the end. */
const STEPS: readonly string[] = ['preprocessing', 'training', 'selecting', 'deploying', 'promoting'];

function progressBars(status: PipelineStatus, pending: PendingActivity[], trainings: Map<string, TrainModelInput>): Bar[] {
  const models = status.models.map((m): Bar => {
    if (m.state === 'trained')
      return {
        label: m.modelClass,
        fraction: 1,
        text: `trained${m.validation ? `, val accuracy ${m.validation.accuracy.toFixed(3)}` : ''}`,
      };
    if (m.state === 'failed') return { label: m.modelClass, text: `failed: ${m.error ?? ''}` };
    const activity = pending.find((a) => a.type === 'trainModel' && trainings.get(a.id)?.modelClass === m.modelClass);
    return { label: m.modelClass, ...trainingProgress(activity, trainings.get(activity?.id ?? '')) };
  });
  const preprocess = pending.find((a) => a.type === 'preprocessDataset');
  const images = preprocess?.details as { done?: number; total?: number } | undefined;
  const dataset: Bar[] =
    status.stage !== 'preprocessing'
      ? []
      : images?.total
        ? [
            {
              label: 'dataset',
              fraction: (images.done ?? 0) / images.total,
              text: `${images.done ?? 0}/${images.total} images preprocessed`,
            },
          ]
        : [{ label: 'dataset', text: preprocess?.scheduled ? 'waiting for a worker' : 'preprocessing' }];

  const step = STEPS.indexOf(status.stage);
  const within =
    status.stage === 'preprocessing'
      ? (dataset[0]?.fraction ?? 0)
      : status.stage === 'training' && models.length
        ? models.reduce((sum, b) => sum + (b.fraction ?? 0), 0) / models.length
        : 0;
  const stage: Bar =
    status.stage === 'serving'
      ? { label: 'stage', fraction: 1, text: 'serving' }
      : step < 0
        ? { label: 'stage', text: status.stage }
        : { label: 'stage', fraction: (step + within) / STEPS.length, text: `${status.stage}, step ${step + 1} of ${STEPS.length}` };
  return [stage, ...dataset, ...models];
}

/** One training's bar from its last heartbeat (TrainingProgress, src/training/run-training.ts). */
function trainingProgress(activity: PendingActivity | undefined, input: TrainModelInput | undefined): Omit<Bar, 'label'> {
  const retry = activity && activity.attempt > 1 ? `, attempt ${activity.attempt}` : '';
  const p = activity?.details as Partial<TrainingProgress> | undefined;
  if (!activity || p?.epoch === undefined || !p.epochs || !p.phase)
    // The first heartbeat reaches the server within seconds (workers throttle them to one per 5 s).
    return {
      fraction: 0,
      text: `${!activity ? 'starting' : activity.scheduled ? 'waiting for a worker' : 'running, no progress reported yet'}${retry}`,
    };
  if (p.phase === 'evaluating' || p.phase === 'saving') return { fraction: 1, text: `${p.phase}${retry}` };
  // CrossVal trains one phase per fold (fold1, fold2, ...) before its final phase.
  const folds = input?.modelClass === 'CrossVal' ? input.hyperparams.crossValFolds : 0;
  const fold = /^fold(\d+)$/.exec(p.phase);
  const phase = fold ? Number(fold[1]) - 1 : folds;
  const inPhase = Math.min((p.epoch + (p.batches && p.batch ? p.batch / p.batches : 0)) / p.epochs, 1);
  const where = [
    fold ? `fold ${fold[1]}/${folds}` : folds ? 'final' : '',
    ...(p.step
      ? [`${p.step}, pass ${p.batch}/${p.batches}`]
      : [
          `epoch ${Math.min(p.epoch + 1, p.epochs)}/${p.epochs}`,
          p.batch && p.batches ? `batch ${p.batch}/${p.batches}` : '',
          p.loss !== undefined && p.batch ? `loss ${p.loss.toFixed(3)}` : '',
        ]),
  ];
  return { fraction: (phase + inPhase) / (folds + 1), text: where.filter(Boolean).join(', ') + retry };
}

async function predictOneTestImage(
  s3: S3Store,
  url: string,
  model: { imageSize: number },
): Promise<{ image: string; label: string; probabilities: Record<string, number> }> {
  const [image] = await s3.list(`${DATA_URI}/test/malignant/`);
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
