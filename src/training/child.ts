/**
 * Child-process entry of a training or a champion's evaluation (see process.ts): runs one task and
 * reports progress, log lines and the result over IPC. It has its own libtensorflow (so a native crash, or oneDNN's
 * setting, is its own) and builds its S3 and MLflow clients from the environment.
 */
import { loadConfig } from '../config';
import { loadTf } from '../ml/tf';
import { onImagesRead } from '../ml/work-meter';
import { createS3Client, S3Store } from '../storage/s3';
import { MlflowClient } from '../tracking/mlflow';
import { evaluateChampion } from './evaluate-champion';
import type { ChildMessage, ChildTask, ParentMessage } from './process';
import { runTraining, type TrainingDeps, type TrainingHooks } from './run-training';

let stopRequested = false;
// No orphan outlives its parent (a killed worker takes its trainings with it).
process.on('disconnect', () => process.exit(0));
// Ctrl-C reaches the whole process group: the child checkpoints like on its parent's stop message
// instead of dying mid-batch.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void (stopRequested = true));
const send = (message: ChildMessage): void => {
  if (process.connected) process.send!(message, undefined, undefined, () => undefined);
};

process.on('message', (message: ParentMessage) => {
  if ('stop' in message) {
    stopRequested = true;
    return;
  }
  const config = loadConfig(process.env);
  loadTf();
  const deps = { s3: new S3Store(createS3Client(config)), mlflow: new MlflowClient(config.mlflow.trackingUri) };
  // The parent watches for a stall: it hears how many images were read, at most every WORK_EVERY_MS.
  let latest = 0;
  let timer: NodeJS.Timeout | undefined;
  onImagesRead((imagesRead) => {
    latest = imagesRead;
    timer ??= setTimeout(() => {
      timer = undefined;
      send({ work: { imagesRead: latest } });
    }, WORK_EVERY_MS);
  });
  // Started: TensorFlow is loaded (seconds, on a busy machine), the task begins.
  send({ work: { imagesRead: 0 } });
  const hooks: TrainingHooks = {
    progress: (progress) => send({ progress }),
    log: (log) => send({ log }),
    shouldStop: () => stopRequested,
  };
  run(deps, message.task, hooks).then(
    (result) => send({ result: result ?? null }),
    (err: Error) => send({ error: { name: err.name, message: err.message, stack: err.stack } }),
  );
});

const WORK_EVERY_MS = 1_000;

function run(deps: TrainingDeps, task: ChildTask, hooks: TrainingHooks) {
  return 'train' in task ? runTraining(deps, task.train, hooks) : evaluateChampion(deps, task.evaluateChampion);
}
