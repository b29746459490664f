/**
 * Preprocessing, independent of Temporal: an ImageFolder listing -> decoded, resized uint8 shards
 * of at most `shardSize` images plus a JSON manifest.
 *
 * - Streaming: one shard's pixels are in memory at a time, whatever the dataset size.
 * - Cached: the output folder is named by a hash of the input listing (keys + ETags) and the
 *   parameters; the manifest is written last, so only a complete output is ever a cache hit.
 * - Resumable: each shard is followed by a small record; a rerun reuses every recorded shard.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname } from 'node:path';
import { mapLimit } from '../common/map-limit';
import type { PreprocessInput } from '../common/types';
import type { ObjectStore } from '../storage/object-store';
import { joinUri, parseS3Uri, s3Uri } from '../storage/s3';
import { readLayout, type LabelledObject } from './layout';
import { ShardPool } from './shard-pool';
import { MANIFEST_FORMAT, type DatasetManifest, type ManifestSplit, type ShardRecord } from './shards';
import { shuffled, stratifiedSplit } from './split';

export type PreprocessParams = Omit<PreprocessInput, 'experimentName'>;

export interface PreprocessOptions {
  store: ObjectStore;
  shardSize?: number;
  /** Files fetched at once per shard. */
  concurrency?: number;
  /**
   * The processes that build shards; a pool given here is reused and left open. They read the
   * images and write the shards through a store built from the environment, not `store`.
   */
  pool?: ShardPool;
  onProgress?: (progress: PreprocessProgress) => void;
  /**
   * Called every few seconds (the pool's `waitBeatMs`) while this preprocessing waits for a
   * builder that other callers of the same pool keep busy, with its progress so far.
   */
  onWaiting?: (progress: PreprocessProgress) => void;
  /**
   * Once aborted, no further shard is started and preprocessing rejects with the signal's reason;
   * shards already building finish and are recorded, so a later attempt reuses them.
   */
  signal?: AbortSignal;
}

export interface PreprocessProgress {
  done: number;
  total: number;
  shardsReused: number;
}

export class DatasetError extends Error {
  override readonly name = 'DatasetError';
}

export interface PreprocessOutcome {
  manifestUri: string;
  manifest: DatasetManifest;
  cacheHit: boolean;
}

/** Where outputs go by default: `preprocessed/` at the bucket root, or beside a local data folder. */
export function defaultOutputUri(dataUri: string): string {
  if (dataUri.startsWith('s3://')) return s3Uri(parseS3Uri(dataUri).bucket, 'preprocessed');
  return pathToFileURL(`${dirname(fileURLToPath(dataUri.replace(/\/+$/, '')))}/preprocessed`).href;
}

export async function preprocess(params: PreprocessParams, options: PreprocessOptions): Promise<PreprocessOutcome> {
  const { store, shardSize = 256, concurrency = 8 } = options;
  const base = params.dataUri.replace(/\/+$/, '');
  const baseKey = store.keyOf(`${base}/`);
  const listing = await store.list(`${base}/`);
  const layout = readLayout(listing, baseKey, base, params.numClasses);
  const etags = new Map(listing.map((o) => [o.key, o.etag]));

  const listingHash = createHash('sha256')
    .update(
      JSON.stringify({
        format: MANIFEST_FORMAT,
        objects: [...layout.train, ...layout.test].map((o) => [o.key, etags.get(o.key)]),
        size: params.imageSize,
        split: params.validationSplit,
        seed: params.seed,
        shardSize,
      }),
    )
    .digest('hex')
    .slice(0, 20);
  const outUri = joinUri(params.outputUri ?? defaultOutputUri(base), listingHash);
  const manifestUri = joinUri(outUri, 'manifest.json');
  if (await store.exists(manifestUri)) {
    // The limit is not part of the cache key: a cached output is held to this call's limit.
    const manifest = await store.getJson<DatasetManifest>(manifestUri);
    checkSkipped(manifest.source.skipped, manifest.source.candidates, params.maxSkippedFraction, base);
    return { manifestUri, manifest, cacheHit: true };
  }

  const { train, validation } = stratifiedSplit(layout.train, (o) => o.label, params.validationSplit, params.seed);
  // Shuffled once, seeded, so that every shard mixes the classes.
  const plan = {
    train: shuffled(train, params.seed),
    validation: shuffled(validation, params.seed + 1),
    test: shuffled(layout.test, params.seed + 2),
  };
  const total = plan.train.length + plan.validation.length + plan.test.length;
  const progress: PreprocessProgress = { done: 0, total, shardsReused: 0 };
  const caller = { onWaiting: () => options.onWaiting?.({ ...progress }) };

  const writeShard = async (split: string, index: number, items: LabelledObject[]): Promise<ShardRecord & { uri: string }> => {
    options.signal?.throwIfAborted();
    const name = `shard-${String(index).padStart(5, '0')}`;
    const uri = joinUri(outUri, split, `${name}.bin`);
    const recordUri = joinUri(outUri, split, `${name}.json`);
    if (await store.exists(recordUri)) {
      progress.done += items.length;
      progress.shardsReused++;
      options.onProgress?.(progress);
      return { uri, ...(await store.getJson<ShardRecord>(recordUri)) };
    }
    const built = await pool.build(
      {
        images: items.map((item) => store.uriOf(base, item.key)),
        labels: items.map((item) => item.label),
        size: params.imageSize,
        shardUri: uri,
        concurrency,
      },
      caller,
    );
    progress.done += items.length;
    options.onProgress?.(progress);

    const perClass: Record<string, number> = Object.fromEntries(layout.classes.map((c) => [c, 0]));
    items.forEach((item, i) => built.ok[i] && perClass[layout.classes[item.label]!]!++);
    const record: ShardRecord = {
      count: built.ok.filter(Boolean).length,
      perClass,
      skipped: items.filter((_, i) => !built.ok[i]).map((o) => o.key),
      sha256: built.sha256,
      shardBytes: built.shardBytes,
      shardSha256: built.shardSha256,
    };
    // The record last: only a shard with a record is complete.
    await store.putJson(recordUri, record);
    return { uri, ...record };
  };

  const pool = options.pool ?? new ShardPool();
  const splits: Partial<Record<keyof typeof plan, ManifestSplit>> = {};
  const shardHashes: string[] = [];
  const skipped: string[] = [...layout.stray];
  try {
    // Every split's shards in one queue, so that no split's last, short shard leaves a core idle.
    const jobs = (['train', 'validation', 'test'] as const).flatMap((split) =>
      Array.from({ length: Math.ceil(plan[split].length / shardSize) }, (_, index) => ({
        split,
        index,
        items: plan[split].slice(index * shardSize, (index + 1) * shardSize),
      })),
    );
    // One shard more in flight than builders: the next one's files download while they decode. So
    // one preprocessing keeps every builder of its pool busy (the data worker runs one at a time).
    const shards = await mapLimit(jobs, pool.size + 1, (job) => writeShard(job.split, job.index, job.items));
    for (const split of ['train', 'validation', 'test'] as const) {
      const out: ManifestSplit = { count: 0, perClass: Object.fromEntries(layout.classes.map((c) => [c, 0])), shards: [] };
      shards.forEach((shard, i) => {
        if (jobs[i]!.split !== split) return;
        skipped.push(...shard.skipped);
        shardHashes.push(shard.sha256);
        if (shard.count === 0) return;
        out.shards.push({ uri: shard.uri, count: shard.count, bytes: shard.shardBytes, sha256: shard.shardSha256 });
        out.count += shard.count;
        for (const c of layout.classes) out.perClass[c]! += shard.perClass[c] ?? 0;
      });
      splits[split] = out;
    }
  } finally {
    if (!options.pool) await pool.close();
  }

  const candidates = total + layout.stray.length;
  checkSkipped(skipped, candidates, params.maxSkippedFraction, base);
  for (const [split, s] of Object.entries(splits)) {
    const empty = layout.classes.filter((c) => !s!.perClass[c]);
    if (empty.length)
      throw new DatasetError(`after decoding, the ${split} split has no image of class(es) ${empty.join(', ')} (from ${base}/)`);
  }

  const manifest: DatasetManifest = {
    format: MANIFEST_FORMAT,
    imageSize: params.imageSize,
    channels: 3,
    classes: layout.classes,
    labelMap: Object.fromEntries(layout.classes.map((c, i) => [c, i])),
    splits: splits as DatasetManifest['splits'],
    contentHash: createHash('sha256').update(shardHashes.join('\n')).digest('hex'),
    source: { dataUri: params.dataUri, objects: listing.length, candidates, listingHash, skipped },
    params: { validationSplit: params.validationSplit, seed: params.seed, shardSize },
    createdAt: new Date().toISOString(),
  };
  await store.putJson(manifestUri, manifest);
  return { manifestUri, manifest, cacheHit: false };
}

function checkSkipped(skipped: string[], candidates: number, limit: number, base: string): void {
  if (skipped.length <= limit * candidates) return;
  throw new DatasetError(
    `${skipped.length} of ${candidates} files under ${base}/ are not decodable images (limit ${(limit * 100).toFixed(1)} %): ` +
      `${skipped.slice(0, 5).join(', ')}${skipped.length > 5 ? ', ...' : ''}`,
  );
}
