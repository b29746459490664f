/**
 * Training activity (queue ml-training): one call trains one model class, tracks it in MLflow,
 * saves it to S3 and registers it as a model version (src/training/run-training.ts), in a child
 * process of its own (src/training/process.ts).
 *
 * Retries resume: the MLflow run is found again (heartbeat details, else its tags), and the
 * training continues from that run's newest checkpoint in S3. Heartbeats carry
 * `{ mlflowRunId, phase, epoch, batch, checkpoint }` after every batch, and are repeated every
 * 10 s while the child works between batches. On worker shutdown the child checkpoints at its
 * current batch and the attempt ends with a retryable WorkerShutdownError.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { FAILURE, isPermanentTrainingFailure } from '../common/failures';
import { activityRunTags, findActivityRun } from './activity-runs';
import type { TrainedModel, TrainModelInput } from '../common/types';
import { trainInChildProcess, TrainingProcessDiedError, type ChildOptions } from '../training/process';
import type { TrainingJob, TrainingProgress } from '../training/run-training';
import type { MlflowClient } from '../tracking/mlflow';

export interface TrainingActivityDeps {
  mlflow: MlflowClient;
  /** Start training processes with oneDNN kernels (faster; one crashing is retried without them). */
  onednn: boolean;
  /** Memory a training pass may plan to use; default: 85 % of the container's limit. */
  memoryBudgetBytes?: number;
  /** How long a stopping training may take to checkpoint before its process is killed. */
  stopGraceMs?: number;
  /** A training that reads no image and reports no progress for this long is ended and retried (ChildOptions.stallMs). */
  stallMs?: number;
  /** How a training runs; default: in a child process. */
  run?: (job: TrainingJob, options: ChildOptions) => Promise<TrainedModel>;
}

export interface TrainingHeartbeat extends Partial<TrainingProgress> {
  mlflowRunId: string;
  /** Images this attempt's process has read, in any pass: progress, where batches alone say nothing (validating, scoring). */
  imagesRead?: number;
}

export function createTrainingActivities({
  mlflow,
  onednn,
  memoryBudgetBytes,
  stopGraceMs,
  stallMs,
  run = trainInChildProcess,
}: TrainingActivityDeps) {
  return {
    async trainModel(input: TrainModelInput): Promise<TrainedModel> {
      const ctx = Context.current();
      const experimentId = await mlflow.getOrCreateExperiment(input.experimentName);
      const tags = runTags(input, ctx);
      const previous = ctx.info.heartbeatDetails as TrainingHeartbeat | undefined;
      // A previous attempt may have died before its first heartbeat reached the server: its tags find it.
      const found = previous?.mlflowRunId ? undefined : (await findActivityRun(mlflow, experimentId, tags))?.run_id;
      const runId = previous?.mlflowRunId ?? found ?? (await mlflow.createRun(experimentId, input.modelClass, tags)).run_id;
      // Images read count per attempt: a new attempt's process starts from none.
      let last: TrainingHeartbeat = { ...previous, mlflowRunId: runId, imagesRead: 0 };
      ctx.heartbeat(last);
      if (previous || found) {
        await mlflow.setRunStatus(runId, 'RUNNING');
        await mlflow.logBatch(runId, { tags: { 'temporal.resumed_attempt': String(ctx.info.attempt) } });
      }

      const metrics = trainingMetrics(ctx, input);
      // Heartbeats go on while the child loads data, validates, evaluates or saves (no progress
      // messages then), so only a dead worker lets the heartbeat timeout expire.
      const beat = setInterval(() => {
        ctx.heartbeat(last);
        metrics.tick();
      }, HEARTBEAT_INTERVAL_MS);
      let withOnednn = onednn;
      try {
        for (;;) {
          try {
            return await run(
              { input, runId, attempt: ctx.info.attempt, ...(memoryBudgetBytes ? { memoryBudgetBytes } : {}) },
              {
                env: { TF_ENABLE_ONEDNN_OPTS: withOnednn ? '1' : '0' },
                signal: ctx.cancellationSignal,
                ...(stopGraceMs ? { stopGraceMs } : {}),
                ...(stallMs ? { stallMs } : {}),
                onProgress: (p) => {
                  ctx.heartbeat((last = { ...p, mlflowRunId: runId, imagesRead: last.imagesRead }));
                  metrics.progress(p);
                },
                onWork: ({ imagesRead }) => void (last = { ...last, imagesRead }),
                onLog: (message) => ctx.log.info(message, { modelClass: input.modelClass, mlflowRunId: runId }),
              },
            );
          } catch (err) {
            if (err instanceof TrainingProcessDiedError && err.signal === 'SIGFPE' && withOnednn) {
              // oneDNN's kernels fault on some CPUs; the same checkpoint resumes with TensorFlow's own.
              ctx.log.warn('training process died with SIGFPE under oneDNN; resuming without oneDNN', { checkpoint: last.checkpoint });
              await mlflow.logBatch(runId, { tags: { 'training.onednn_fallback': 'SIGFPE' } });
              withOnednn = false;
              continue;
            }
            throw await failure(err as Error);
          }
        }
      } finally {
        clearInterval(beat);
      }

      /** What this attempt's end means for the run, and the error that tells Temporal. */
      async function failure(e: Error): Promise<unknown> {
        if (isWorkerShutdown(ctx)) {
          // The child has checkpointed at its current batch; the run stays RUNNING for the next attempt.
          const message = `the worker is shutting down; ${e.message}. The next attempt resumes from that checkpoint`;
          ctx.log.info(message, { modelClass: input.modelClass, mlflowRunId: runId });
          await mlflow.logBatch(runId, { tags: { 'training.interrupted': e.message } }).catch(() => undefined);
          return ApplicationFailure.retryable(message, FAILURE.workerShutdown);
        }
        await mlflow.setRunStatus(runId, ctx.cancellationSignal.aborted ? 'KILLED' : 'FAILED').catch(() => undefined);
        if (ctx.cancellationSignal.aborted) return ctx.cancellationSignal.reason;
        if (isPermanentTrainingFailure(e.name)) return ApplicationFailure.nonRetryable(e.message, e.name);
        return e;
      }
    },
  };
}

const HEARTBEAT_INTERVAL_MS = 10_000;

/** Cancelled because this worker is stopping, not because the run no longer wants the training. */
function isWorkerShutdown(ctx: Context): boolean {
  if (!ctx.cancellationSignal.aborted) return false;
  const reason = ctx.cancellationSignal.reason as { message?: string } | undefined;
  return ctx.cancellationDetails?.workerShutdown === true || reason?.message === 'WORKER_SHUTDOWN';
}

/** Training gauges in the worker's Prometheus metrics, tagged with the model class. */
function trainingMetrics(ctx: Context, input: TrainModelInput) {
  const meter = ctx.metricMeter.withTags({ model_class: input.modelClass });
  const epoch = meter.createGauge('pipeline_training_epoch', 'int', '', 'Epoch the training is in (1-based)');
  const loss = meter.createGauge('pipeline_training_loss', 'float', '', 'Mean training loss of the last batch');
  const speed = meter.createGauge('pipeline_training_images_per_second', 'float', '', 'Training images per second');
  const age = meter.createGauge('pipeline_training_checkpoint_age_seconds', 'float', 's', 'Seconds since the newest checkpoint');
  const batches = meter.createCounter('pipeline_training_batches', '', 'Training batches done');
  let checkpoint: string | undefined;
  let checkpointAt = Date.now();
  let lastBatchAt: number | undefined;
  return {
    progress(p: TrainingProgress): void {
      const now = Date.now();
      if (p.checkpoint !== checkpoint) [checkpoint, checkpointAt] = [p.checkpoint, now];
      epoch.set(Math.min(p.epoch + 1, p.epochs));
      if (p.loss !== undefined && p.batch > 0) {
        loss.set(p.loss);
        batches.add(1);
        if (lastBatchAt !== undefined) speed.set((input.hyperparams.batchSize * 1000) / Math.max(now - lastBatchAt, 1));
        lastBatchAt = now;
      }
      age.set((now - checkpointAt) / 1000);
    },
    tick(): void {
      age.set((Date.now() - checkpointAt) / 1000);
    },
  };
}

function runTags(input: TrainModelInput, ctx: Context): Record<string, string> {
  return { model_class: input.modelClass, ...activityRunTags(ctx, input.workflowId) };
}
