/**
 * Champion evaluation (queue ml-training, where TensorFlow is loaded): scores the registry's
 * current champion on the new run's validation split, so the workflow can compare it with the
 * new best model on the same data.
 */
import { Context } from '@temporalio/activity';
import { CHAMPION_ALIAS } from '../common/constants';
import type { ChampionEvaluation, PreparedDataset } from '../common/types';
import { loadSplit } from '../data/dataset';
import type { DatasetManifest } from '../data/shards';
import { evaluatePredictions, reportedMetrics } from '../ml/metrics';
import { loadModelFromS3 } from '../ml/model-store';
import { predictProbabilities } from '../ml/trainer';
import type { S3Store } from '../storage/s3';
import type { MlflowClient } from '../tracking/mlflow';

export interface EvaluationDeps {
  s3: S3Store;
  mlflow: MlflowClient;
}

export function createEvaluationActivities({ s3, mlflow }: EvaluationDeps) {
  return {
    /** The champion's validation metrics on `dataset`; undefined when the registry has no champion. */
    async evaluateChampion(input: { registeredModelName: string; dataset: PreparedDataset }): Promise<ChampionEvaluation | undefined> {
      const champion = await mlflow.getModelVersionByAlias(input.registeredModelName, CHAMPION_ALIAS);
      if (!champion) return undefined;
      const ref = { version: champion.version, modelUri: champion.source };
      const manifest = await s3.getJson<DatasetManifest>(input.dataset.manifestUri);
      let loaded: Awaited<ReturnType<typeof loadModelFromS3>>;
      try {
        loaded = await loadModelFromS3(s3, champion.source);
      } catch (err) {
        return {
          ...ref,
          comparable: false,
          reason: `champion v${champion.version} could not be loaded from ${champion.source}: ${(err as Error).message}`,
        };
      }
      const { model, metadata } = loaded;
      try {
        if (metadata.imageSize !== manifest.imageSize || metadata.classes.join() !== manifest.classes.join()) {
          return {
            ...ref,
            comparable: false,
            reason:
              `champion v${champion.version} takes ${metadata.imageSize} px images of [${metadata.classes.join(', ')}], ` +
              `the new data is ${manifest.imageSize} px of [${manifest.classes.join(', ')}]`,
          };
        }
        Context.current().heartbeat('evaluating the champion');
        const validation = await loadSplit(s3, manifest, manifest.splits.validation);
        const k = manifest.classes.length;
        const e = evaluatePredictions(await predictProbabilities(model, validation, k), validation.labels, k);
        return { ...ref, comparable: true, metrics: reportedMetrics(e) };
      } finally {
        model.dispose();
      }
    },
  };
}
