/**
 * `npm run bench:resume`: the resume proof. On a private local stack (Temporal, MLflow, SeaweedFS,
 * moto), it runs the pipeline with one model (Basic, N epochs) and the three real workers in processes of
 * their own (as `npm run workers` runs them, their version made current), kills the training
 * worker with SIGKILL in the middle of epoch k, starts a new one, and waits for the workflow to
 * complete. It counts the epochs that started in both training workers' logs: with checkpoints, at
 * most N + 1 (epoch k runs twice); a training that starts over would run N + k - 1. A worker or a
 * stack service that exits on its own ends the benchmark at once, saying which and why.
 *
 *   node dist/bench/resume.js [--quick]
 *
 * --quick: half the images at 64 px and 4 epochs, killed in epoch 3 (the server still takes the training
 * heartbeat timeout, 30 s, to notice the kill).
 *
 * Progress goes to stderr; the last line on stdout is one JSON object: epochsPlanned, epochsExecuted, killedInEpoch, resumedFrom,
 * workflowStatus, secondsToRecover (kill -> first batch of the resumed attempt).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WorkflowClient } from '@temporalio/client';
import { TASK_QUEUES } from '../src/common/constants';
import { writeSyntheticDataset } from '../src/data/generate';
import { stackDown, stackUp } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { loadConfig } from '../src/config';
import type { cnnSkinCancerWorkflow } from '../src/workflows';
import { privateStack } from './private-stack';
import { DependencyWatch } from './watch';
import { startBenchWorkers, type BenchWorkers } from './workers';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const QUICK = values.quick;
const EPOCHS = QUICK ? 4 : 6;
const KILL_IN_EPOCH = 3;
/** Training images per class, and their size: an epoch lasts seconds, so the kill lands inside one. */
const PER_CLASS = QUICK ? 80 : 160;
const SIZE = QUICK ? 64 : 128;

const { stack, env } = privateStack('bench-resume', { temporal: 7263, temporalUi: 8263, mlflow: 5093, moto: 4593, s3: 8363 }, 8193);

const log = (line: string): void => void process.stderr.write(`[resume] ${line}\n`);

const watch = new DependencyWatch();
let running: BenchWorkers | undefined;
let cleaned: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    // The client's connection stays open until the process exits: a wait abandoned by watch.race()
    // still polls through it, and would throw on a closed one.
    watch.close();
    await running?.workers.stop();
    await stackDown(stack, log).catch((err: Error) => log(`stack down: ${err.message}`));
  })();
  return cleaned;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    log(`${signal}: stopping the workers and the stack`);
    void cleanup().finally(() => process.exit(130));
  });

async function main(): Promise<void> {
  rmSync(stack.dir, { recursive: true, force: true });
  await stackUp(stack, log);
  await watch.stack(stack);
  const s3 = new S3Store(createS3Client(loadConfig(env)));
  await s3.ensureBucket('bench-resume');
  await watch.race(
    writeSyntheticDataset(s3, {
      outUri: 's3://bench-resume/data',
      counts: { train: { benign: PER_CLASS, malignant: PER_CLASS }, test: { benign: 20, malignant: 20 } },
      size: SIZE,
      seed: 5,
    }),
  );

  const epochStarted = /Basic final: epoch (\d+)\/(\d+) started/;
  // Epochs started by each training worker, in order: the first one's, then its successor's.
  const trainingEpochs: number[] = [0];
  const epochStarts: number[] = [];
  let killedAt = 0;
  let resumedFrom = '';
  let firstBatchAfterKill = 0;
  const onTrainingLine = (line: string): void => {
    const resumed = /resuming from (\S+)/.exec(line);
    if (killedAt) {
      if (resumed) resumedFrom = resumed[1]!;
      if (resumed || epochStarted.test(line)) firstBatchAfterKill ||= Date.now();
    }
    const m = epochStarted.exec(line);
    if (!m) return;
    trainingEpochs[trainingEpochs.length - 1]!++;
    if (killedAt) return;
    epochStarts.push(Date.now());
    if (Number(m[1]) !== KILL_IN_EPOCH) return;
    // Half an epoch in, as timed by the epochs before.
    const epochMs = (epochStarts.at(-1)! - epochStarts[0]!) / (KILL_IN_EPOCH - 1);
    setTimeout(() => {
      const { workers } = running!;
      killedAt = Date.now();
      log(`killing the training worker (pid ${workers.pid('training')}) with SIGKILL, half-way through epoch ${KILL_IN_EPOCH}`);
      workers.kill('training', 'SIGKILL');
      trainingEpochs.push(0);
      workers.start('training');
      log('started a new training worker');
    }, epochMs / 2);
  };
  running = await startBenchWorkers({
    env,
    watch,
    logDir: join(stack.dir, 'logs'),
    onLine: (name, line) => name === 'training' && onTrainingLine(line),
  });
  log(`workers polling as ${running.version} (current)`);

  const client = new WorkflowClient({ connection: running.connection });
  const handle = await client.start<typeof cnnSkinCancerWorkflow>('cnnSkinCancerWorkflow', {
    taskQueue: TASK_QUEUES.pipeline,
    workflowId: `bench-resume-${Date.now()}`,
    args: [
      {
        dataUri: 's3://bench-resume/data',
        imageSize: SIZE,
        epochs: EPOCHS,
        batchSize: 16,
        learningRate: 1e-3,
        models: ['Basic'],
        endpointName: 'bench-resume',
        deployTarget: 'local',
        lifetimeSeconds: 0,
      },
    ],
  });
  log(
    `started workflow ${handle.workflowId}; Web UI http://localhost:${stack.ports.temporalUi}/namespaces/default/workflows/${handle.workflowId}`,
  );
  await watch.race(handle.result());
  const description = await handle.describe();
  const result = {
    epochsPlanned: EPOCHS,
    epochsExecuted: trainingEpochs.reduce((a, b) => a + b, 0),
    killedInEpoch: KILL_IN_EPOCH,
    resumedFrom,
    workflowStatus: description.status.name,
    secondsToRecover: killedAt && firstBatchAfterKill ? Math.round((firstBatchAfterKill - killedAt) / 100) / 10 : null,
  };
  log(
    `${result.epochsExecuted} epochs started for ${EPOCHS} planned (killed in epoch ${KILL_IN_EPOCH}); resumed from ${resumedFrom || 'nothing'}; workflow ${result.workflowStatus}`,
  );
  console.log(JSON.stringify(result));
  if (!killedAt) throw new Error('the training worker was never killed: did the log format change?');
  if (!resumedFrom) throw new Error('the new training worker did not resume from a checkpoint: did the log format change?');
}

main()
  .catch((err: Error) => {
    console.error(`bench:resume: ${err.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup().finally(() => process.exit()));
