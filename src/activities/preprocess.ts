/**
 * Preprocess activity (queue ml-data): the streaming, cached, resumable preprocessing of
 * src/data/preprocess.ts, with heartbeats carrying progress and an MLflow "Preprocessing" run.
 */
import { Context } from '@temporalio/activity';
import { invalidDataset } from '../common/errors';
import type { PreparedDataset, PreprocessInput } from '../common/types';
import { DatasetLayoutError } from '../data/layout';
import { DatasetError, preprocess, type PreprocessOutcome } from '../data/preprocess';
import { ShardPool } from '../data/shard-pool';
import type { DatasetManifest } from '../data/shards';
import type { ObjectStore } from '../storage/object-store';
import { mlflowKey, type MlflowClient } from '../tracking/mlflow';
import { activityRunTags, findActivityRun } from './activity-runs';

export interface DataDeps {
  store: ObjectStore;
  /** When given, each call logs an MLflow run named "Preprocessing". */
  mlflow?: MlflowClient;
  /** Images per shard: bounds the memory one shard needs. */
  shardSize?: number;
  concurrency?: number;
  /** The shard-building processes; by default one pool, started at the first call and kept. */
  pool?: ShardPool;
}

export function createDataActivities({ store, mlflow, shardSize, concurrency, pool }: DataDeps) {
  // The decoding processes live as long as the worker process: their start-up is paid once.
  return {
    async preprocessDataset(input: PreprocessInput): Promise<PreparedDataset> {
      const ctx = Context.current();
      const images = ctx.metricMeter.createCounter(
        'pipeline_preprocess_images',
        '',
        'Images preprocessed (decoded or found in a reused shard)',
      );
      const remaining = ctx.metricMeter.createGauge(
        'pipeline_preprocess_images_remaining',
        'int',
        '',
        'Images of the current dataset still to go',
      );
      let counted = 0;
      let outcome: PreprocessOutcome;
      try {
        outcome = await preprocess(input, {
          store,
          shardSize,
          concurrency,
          pool: (pool ??= new ShardPool()),
          // Cancellation reaches an activity through its heartbeats, which progress sends.
          signal: ctx.cancellationSignal,
          onProgress: (p) => {
            ctx.heartbeat(p);
            images.add(p.done - counted);
            counted = p.done;
            remaining.set(p.total - p.done);
          },
          // Queued behind another preprocessing's shards, it is alive, only not progressing.
          onWaiting: (p) => ctx.heartbeat({ ...p, waitingForBuilder: true }),
        });
      } catch (err) {
        // The dataset itself is wrong: no retry can fix it.
        if (err instanceof DatasetLayoutError || err instanceof DatasetError) throw invalidDataset(err.message);
        throw err;
      }
      const prepared = summarize(outcome);
      if (mlflow && input.experimentName) await logRun(mlflow, input.experimentName, ctx, outcome.manifest, prepared);
      return prepared;
    },
  };
}

function summarize({ manifestUri, manifest: m, cacheHit }: PreprocessOutcome): PreparedDataset {
  const split = (s: DatasetManifest['splits']['train']) => ({ count: s.count, perClass: s.perClass });
  return {
    manifestUri,
    classes: m.classes,
    imageSize: m.imageSize,
    splits: { train: split(m.splits.train), validation: split(m.splits.validation), test: split(m.splits.test) },
    cacheHit,
    contentHash: m.contentHash,
    skipped: { count: m.source.skipped.length, keys: m.source.skipped.slice(0, 10) },
  };
}

/**
 * The dataset's MLflow run: one per activity, found again by its tags when an attempt is retried,
 * and never left RUNNING by a failure to log it.
 */
async function logRun(mlflow: MlflowClient, experimentName: string, ctx: Context, m: DatasetManifest, p: PreparedDataset): Promise<void> {
  const experimentId = await mlflow.getOrCreateExperiment(experimentName);
  const tags = activityRunTags(ctx);
  const found = await findActivityRun(mlflow, experimentId, tags, 'Preprocessing');
  if (found?.status === 'FINISHED') return;
  const runId = found?.run_id ?? (await mlflow.createRun(experimentId, 'Preprocessing', tags)).run_id;
  const sizes: Record<string, number> = {};
  for (const [split, s] of Object.entries(p.splits)) {
    for (const [c, n] of Object.entries(s.perClass)) sizes[uniqueKey(sizes, mlflowKey(`${split}_size_${c}`))] = n;
  }
  try {
    await mlflow.logBatch(runId, {
      // Params are the same on every attempt (MLflow refuses a changed one); what differs is a tag.
      params: {
        ...sizes,
        data_uri: m.source.dataUri,
        image_shape: `${m.imageSize}x${m.imageSize}x3`,
        label_map: JSON.stringify(m.labelMap).slice(0, 6000),
        listing_hash: m.source.listingHash,
        content_hash: m.contentHash,
        skipped_count: m.source.skipped.length,
        validation_split: m.params.validationSplit,
        seed: m.params.seed,
        manifest_uri: p.manifestUri,
      },
      tags: { cache_hit: String(p.cacheHit), skipped_keys: m.source.skipped.slice(0, 20).join('\n') },
      metrics: [{ key: 'skipped_count', value: m.source.skipped.length }],
    });
    await mlflow.setRunStatus(runId, 'FINISHED');
  } catch (err) {
    // The retry finds this run by its tags and finishes it.
    await mlflow.setRunStatus(runId, 'FAILED').catch(() => undefined);
    throw err;
  }
}

/** `key`, or `key_2`, `key_3`... when two class names sanitize to the same key. */
function uniqueKey(taken: Record<string, unknown>, key: string): string {
  let k = key;
  for (let n = 2; k in taken; n++) k = `${key}_${n}`;
  return k;
}
