/**
 * The registry's champion scored on a new run's validation split, so the workflow can compare it
 * with the new best model on the same data. Independent of Temporal: the evaluation activity runs
 * it in a child process (process.ts), like a training, so a large split streams through a process
 * of its own and never through the worker's.
 */
import { CHAMPION_ALIAS } from '../common/constants';
import type { ChampionEvaluation, PreparedDataset } from '../common/types';
import { openShardStream } from '../data/shard-stream';
import type { DatasetManifest } from '../data/shards';
import { evaluatePredictions, reportedMetrics } from '../ml/metrics';
import { loadModelFromS3 } from '../ml/model-store';
import { predictProbabilities } from '../ml/trainer';
import type { S3Store } from '../storage/s3';
import type { MlflowClient } from '../tracking/mlflow';

export interface ChampionEvaluationJob {
  registeredModelName: string;
  dataset: PreparedDataset;
}

/** The champion's validation metrics on `dataset`; undefined when the registry has no champion. */
export async function evaluateChampion(
  { s3, mlflow }: { s3: S3Store; mlflow: MlflowClient },
  job: ChampionEvaluationJob,
): Promise<ChampionEvaluation | undefined> {
  const champion = await mlflow.getModelVersionByAlias(job.registeredModelName, CHAMPION_ALIAS);
  if (!champion) return undefined;
  const ref = { version: champion.version, modelUri: champion.source };
  const manifest = await s3.getJson<DatasetManifest>(job.dataset.manifestUri);
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
    const validation = await openShardStream(s3, manifest, manifest.splits.validation);
    const k = manifest.classes.length;
    const e = evaluatePredictions(await predictProbabilities(model, validation, k), validation.labels, k);
    return { ...ref, comparable: true, metrics: reportedMetrics(e) };
  } finally {
    model.dispose();
  }
}
