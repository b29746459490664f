/**
 * Registry activities (queue ml-pipeline): promotion and version lookup in the MLflow model
 * registry. Each call is idempotent: repeating it leaves the registry in the same state.
 */
import { Context } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError, type WorkflowClient } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS, PROMOTE_UPDATE, TASK_QUEUES, workflowIdForRegisteredModel } from '../common/constants';
import { modelVersionNotFound } from '../common/errors';
import type { ModelVersionRef, PromotionOutcome, PromotionRequest } from '../common/types';
import type { MlflowClient, ModelVersion } from '../tracking/mlflow';
import { activityIdentity, keepAlive } from './attempts';

export { CHAMPION_ALIAS, PREVIOUS_CHAMPION_ALIAS };

export interface RegistryDeps {
  mlflow: MlflowClient;
}

/**
 * Has the registered model's owner workflow promote `version`, in its turn after any promotion of
 * the same model already waiting (src/workflows/registered-model.ts), starting it if none runs.
 * `updateId` makes a repeat harmless: while the owner runs, the server answers a repeated id with
 * the first one's outcome; after it ended, the promotion is carried out again, which changes nothing.
 * A promotion the owner failed fails here with its own error (type and retryability).
 */
export async function promoteInTurn(
  client: WorkflowClient,
  input: { registeredModelName: string } & PromotionRequest,
  updateId: string,
): Promise<PromotionOutcome> {
  const { registeredModelName, version, reason } = input;
  try {
    return await client.executeUpdateWithStart<() => Promise<unknown>, PromotionOutcome, [PromotionRequest]>(PROMOTE_UPDATE, {
      args: [{ version, reason }],
      updateId,
      startWorkflowOperation: new WithStartWorkflowOperation('registeredModelWorkflow', {
        workflowId: workflowIdForRegisteredModel(registeredModelName),
        taskQueue: TASK_QUEUES.pipeline,
        args: [{ registeredModelName }],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    });
  } catch (err) {
    if (!(err instanceof WorkflowUpdateFailedError)) throw err;
    // The update failed with the promotion's activity failure, or its validator's refusal.
    let cause: unknown = err.cause;
    while (cause && !(cause instanceof ApplicationFailure) && (cause as { cause?: unknown }).cause)
      cause = (cause as { cause?: unknown }).cause;
    if (cause instanceof ApplicationFailure)
      throw ApplicationFailure.create({ message: cause.message, type: cause.type ?? undefined, nonRetryable: cause.nonRetryable ?? false });
    throw err;
  }
}

export function createRegistryActivities({ mlflow }: RegistryDeps) {
  return {
    /**
     * Makes `version` the champion, one promotion of a registered model at a time: the
     * model's owner workflow carries it out with `applyPromotion` (see promoteInTurn).
     */
    async promoteModelVersion(input: { registeredModelName: string } & PromotionRequest): Promise<PromotionOutcome> {
      const ctx = Context.current();
      // It may wait its turn a while: heartbeats say the worker is still there, so a worker lost
      // meanwhile costs the heartbeat timeout, not the whole start-to-close timeout.
      const beat = keepAlive(ctx, 5_000);
      try {
        // Answered once for all attempts of this activity.
        return await promoteInTurn(ctx.client.workflow, input, activityIdentity(ctx.info));
      } finally {
        beat.stop();
      }
    },

    /**
     * Makes `version` the champion: stage Production (others archived), alias `champion`; the
     * version that held `champion` before keeps `previous-champion` for rollback. A champion newer
     * than `version` (promoted, so verified, while this promotion waited for its deployment) keeps
     * its place: the answer names it as `championKept`, and the version is tagged
     * `promotion_skipped` with the reason. Run only by the registered model's owner workflow, so
     * that no two overlap.
     */
    async applyPromotion(input: { registeredModelName: string } & PromotionRequest): Promise<PromotionOutcome> {
      const { registeredModelName: name, version } = input;
      if (!(await mlflow.getModelVersion(name, version))) throw modelVersionNotFound(`${name} has no version ${version}`);
      const current = await mlflow.getModelVersionByAlias(name, CHAMPION_ALIAS);
      // MLflow numbers a registered model's versions in the order they were created.
      if (current && Number(current.version) > Number(version)) {
        await mlflow.setModelVersionTag(
          name,
          version,
          'promotion_skipped',
          `v${current.version}, a newer version, was champion when this promotion came (${input.reason})`.slice(0, 5000),
        );
        return { championKept: current.version };
      }
      let previousChampion: string | undefined;
      if (current && current.version !== version) {
        await mlflow.setAlias(name, PREVIOUS_CHAMPION_ALIAS, current.version);
        previousChampion = current.version;
      } else if (current) {
        previousChampion = (await mlflow.getModelVersionByAlias(name, PREVIOUS_CHAMPION_ALIAS))?.version;
      }
      await mlflow.transitionStage(name, version, 'Production', true);
      await mlflow.setAlias(name, CHAMPION_ALIAS, version);
      await mlflow.setModelVersionTag(name, version, 'promotion_reason', input.reason.slice(0, 5000));
      return { previousChampion };
    },

    /** Sets tags on a version (such as the champion/challenger decision); repeating it changes nothing. */
    async tagModelVersion(input: { registeredModelName: string; version: string; tags: Record<string, string> }): Promise<void> {
      for (const [key, value] of Object.entries(input.tags)) {
        await mlflow.setModelVersionTag(input.registeredModelName, input.version, key, value.slice(0, 5000));
      }
    },

    /** Resolves a version number or an alias to the model it names. */
    async resolveModelVersion(input: { registeredModelName: string; version?: string; alias?: string }): Promise<ModelVersionRef> {
      const name = input.registeredModelName;
      let mv: ModelVersion | undefined;
      if (input.alias) {
        mv = await mlflow.getModelVersionByAlias(name, input.alias);
        if (!mv) throw modelVersionNotFound(`${name} has no alias '${input.alias}'`);
      } else if (input.version) {
        mv = await mlflow.getModelVersion(name, input.version);
        if (!mv) throw modelVersionNotFound(`${name} has no version ${input.version}`);
      } else {
        throw modelVersionNotFound('give a version or an alias');
      }
      return {
        registeredModelName: name,
        version: mv.version,
        modelUri: mv.source,
        mlflowRunId: mv.run_id ?? '',
        modelClass: mv.tags?.find((t) => t.key === 'model_class')?.value,
      };
    },
    /**
     * Marks FAILED the MLflow runs a training left RUNNING when it failed for good (its last
     * attempt's process was killed, so nothing closed them): the runs of `modelClass` tagged with this
     * workflow run. Returns their ids; repeating it finds none left.
     */
    async failAbandonedTrainingRuns(input: {
      experimentName: string;
      workflowRunId: string;
      modelClass: string;
      reason: string;
    }): Promise<string[]> {
      const experimentId = await mlflow.getOrCreateExperiment(input.experimentName);
      const runs = await mlflow.searchRuns(
        experimentId,
        `tags."temporal.workflow_run_id" = '${input.workflowRunId}' and tags.model_class = '${input.modelClass}' and attributes.status = 'RUNNING'`,
      );
      for (const run of runs) {
        await mlflow.logBatch(run.run_id, { tags: { 'training.failure': input.reason.slice(0, 5000) } });
        await mlflow.setRunStatus(run.run_id, 'FAILED');
      }
      return runs.map((r) => r.run_id);
    },
  };
}
