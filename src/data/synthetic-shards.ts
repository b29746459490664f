/**
 * A preprocessed dataset written straight as shards and a manifest, without images to decode: for
 * datasets of tens of thousands of images (the scale benchmark) and for tests of the data path.
 * Its pixels come from a pool of synthetic lesions (synthetic.ts), each reused mirrored and
 * shifted, so that rendering stays cheap at any count; `pattern: 'index'` instead writes each
 * image's index into its first four bytes, so a test can tell which image it was given.
 */
import { createHash } from 'node:crypto';
import { mapLimit } from '../common/map-limit';
import type { ObjectStore } from '../storage/store';
import { joinUri } from '../storage/s3';
import { MANIFEST_FORMAT, ShardWriter, type DatasetManifest, type ManifestSplit } from './shards';
import { SYNTHETIC_CLASSES, syntheticLesion } from './synthetic';

export interface SyntheticShardsSpec {
  outUri: string;
  /** Images per split. */
  counts: { train: number; validation: number; test: number };
  imageSize: number;
  shardSize: number;
  seed: number;
  pattern?: 'lesions' | 'index';
  /** Distinct lesions rendered per class (default 64). */
  pool?: number;
  onShard?: (written: number, total: number) => void;
}

/** Writes the dataset (shards, then the manifest last) and returns the manifest's URI. */
export async function writeSyntheticShards(store: ObjectStore, spec: SyntheticShardsSpec): Promise<string> {
  const { imageSize: size, shardSize } = spec;
  const poolSize = spec.pool ?? 64;
  const pool =
    spec.pattern === 'index'
      ? []
      : SYNTHETIC_CLASSES.map((kind, c) =>
          Array.from({ length: poolSize }, (_, k) => syntheticLesion(kind, size, spec.seed * 7919 + c * 104729 + k)),
        );
  const fill = (out: Uint8Array, index: number, label: number): void => {
    if (spec.pattern === 'index') {
      out.fill(label * 100);
      new DataView(out.buffer, out.byteOffset, 4).setUint32(0, index, true);
      return;
    }
    const src = pool[label]![index % poolSize]!;
    // Mirrored and shifted by the image's index: many distinct images from one pool.
    const mirror = (index >> 6) % 2 === 1;
    const shift = (index >> 7) % size;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const sx = (mirror ? size - 1 - x : x) + shift;
        const from = (y * size + (sx % size)) * 3;
        const to = (y * size + x) * 3;
        out[to] = src[from]!;
        out[to + 1] = src[from + 1]!;
        out[to + 2] = src[from + 2]!;
      }
  };

  const jobs = (['train', 'validation', 'test'] as const).flatMap((split, s) =>
    Array.from({ length: Math.ceil(spec.counts[split] / shardSize) }, (_, index) => ({ split, s, index })),
  );
  let written = 0;
  const refs = await mapLimit(jobs, 2, async ({ split, s, index }) => {
    const first = index * shardSize;
    const count = Math.min(shardSize, spec.counts[split] - first);
    const writer = new ShardWriter(count, size, size, 3);
    const labels = new Uint16Array(count);
    for (let k = 0; k < count; k++) {
      // A split's global index, unique over the three splits.
      const global = s * 1e8 + first + k;
      labels[k] = (first + k + s) % 2;
      fill(writer.image(k), global, labels[k]!);
    }
    const bytes = writer.finish(labels);
    const uri = joinUri(spec.outUri, split, `shard-${String(index).padStart(5, '0')}.bin`);
    await store.put(uri, bytes);
    spec.onShard?.(++written, jobs.length);
    return { split, ref: { uri, count, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }, labels };
  });

  const classes = [...SYNTHETIC_CLASSES];
  const splitOf = (split: 'train' | 'validation' | 'test'): ManifestSplit => {
    const mine = refs.filter((r) => r.split === split);
    const perClass = Object.fromEntries(classes.map((c) => [c, 0]));
    for (const r of mine) for (const l of r.labels) perClass[classes[l]!]!++;
    return { count: spec.counts[split], perClass, shards: mine.map((r) => r.ref) };
  };
  const manifest: DatasetManifest = {
    format: MANIFEST_FORMAT,
    imageSize: size,
    channels: 3,
    classes,
    labelMap: Object.fromEntries(classes.map((c, i) => [c, i])),
    splits: { train: splitOf('train'), validation: splitOf('validation'), test: splitOf('test') },
    contentHash: createHash('sha256')
      .update(refs.map((r) => r.ref.sha256).join('\n'))
      .digest('hex'),
    source: { dataUri: spec.outUri, objects: 0, candidates: 0, listingHash: 'synthetic', skipped: [] },
    params: { validationSplit: spec.counts.validation / (spec.counts.train + spec.counts.validation), seed: spec.seed, shardSize },
    createdAt: new Date().toISOString(),
  };
  const manifestUri = joinUri(spec.outUri, 'manifest.json');
  await store.putJson(manifestUri, manifest);
  return manifestUri;
}
