/**
 * Training activity (queue ml-training): one call trains one model class, tracks it in MLflow,
 * saves it to S3 and registers it as a model version (src/training/run-training.ts), in a child
 * process of its own (src/training/process.ts).
 *
 * Retries resume: the MLflow run is found again (heartbeat details, else its tags), and the
 * training continues from that run's newest checkpoint in S3. Heartbeats carry
 * `{ mlflowRunId, phase, epoch, batch, checkpoint }` after every batch.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { isPermanentTrainingFailure } from '../common/failures';
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
  /** How a training runs; default: in a child process. */
  run?: (job: TrainingJob, options: ChildOptions) => Promise<TrainedModel>;
}

export interface TrainingHeartbeat extends Partial<TrainingProgress> {
  mlflowRunId: string;
}

export function createTrainingActivities({ mlflow, onednn, memoryBudgetBytes, run = trainInChildProcess }: TrainingActivityDeps) {
  return {
    async trainModel(input: TrainModelInput): Promise<TrainedModel> {
      const ctx = Context.current();
      const experimentId = await mlflow.getOrCreateExperiment(input.experimentName);
      const tags = runTags(input, ctx);
      const previous = ctx.info.heartbeatDetails as TrainingHeartbeat | undefined;
      // A previous attempt may have died before its first heartbeat reached the server: its tags find it.
      const found = previous?.mlflowRunId
        ? undefined
        : (
            await mlflow.searchRuns(
              experimentId,
              `tags."temporal.workflow_run_id" = '${tags['temporal.workflow_run_id']}' and tags."temporal.activity_id" = '${tags['temporal.activity_id']}'`,
            )
          )[0]?.run_id;
      const runId = previous?.mlflowRunId ?? found ?? (await mlflow.createRun(experimentId, input.modelClass, tags)).run_id;
      let last: TrainingHeartbeat = { ...previous, mlflowRunId: runId };
      ctx.heartbeat(last);
      if (previous || found) {
        await mlflow.setRunStatus(runId, 'RUNNING');
        await mlflow.logBatch(runId, { tags: { 'temporal.resumed_attempt': String(ctx.info.attempt) } });
      }

      let withOnednn = onednn;
      for (;;) {
        try {
          return await run(
            { input, runId, ...(memoryBudgetBytes ? { memoryBudgetBytes } : {}) },
            {
              env: { TF_ENABLE_ONEDNN_OPTS: withOnednn ? '1' : '0' },
              signal: ctx.cancellationSignal,
              onProgress: (p) => ctx.heartbeat((last = { ...p, mlflowRunId: runId })),
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
          await mlflow.setRunStatus(runId, ctx.cancellationSignal.aborted ? 'KILLED' : 'FAILED').catch(() => undefined);
          if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
          const e = err as Error;
          if (isPermanentTrainingFailure(e.name)) throw ApplicationFailure.nonRetryable(e.message, e.name);
          throw err;
        }
      }
    },
  };
}

function runTags(input: TrainModelInput, ctx: Context): Record<string, string> {
  return {
    model_class: input.modelClass,
    'temporal.workflow_id': input.workflowId,
    'temporal.workflow_run_id': ctx.info.workflowExecution?.runId ?? '',
    'temporal.activity_id': ctx.info.activityId,
  };
}
