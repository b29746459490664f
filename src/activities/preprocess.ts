/**
 * Preprocess activity (queue ml-data): S3 images in ImageFolder layout -> uint8 shards + manifest.
 * The output prefix is keyed by a hash of the input listing and parameters; the manifest is
 * written last, so its presence marks a complete output (a cache hit).
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { PreparedDataset, PreprocessInput, SplitSummary } from '../common/types';
import { invalidDataset } from '../common/errors';
import { decodeAndResize, IMAGE_EXTENSIONS } from '../data/images';
import { encodeShard, MANIFEST_FORMAT, type DatasetManifest, type ManifestSplit } from '../data/shards';
import { stratifiedSplit } from '../data/split';
import { joinUri, parseS3Uri, s3Uri, type ObjectInfo, type S3Store } from '../storage/s3';

export interface DataDeps {
  s3: S3Store;
  /** Images per shard: bounds the memory one shard needs. */
  shardSize?: number;
  concurrency?: number;
}

interface Item {
  key: string;
  label: number;
}

export function createDataActivities({ s3, shardSize = 256, concurrency = 8 }: DataDeps) {
  return {
    async preprocessDataset(input: PreprocessInput): Promise<PreparedDataset> {
      const { bucket } = parseS3Uri(input.dataUri);
      const base = input.dataUri.replace(/\/+$/, '');
      const listing = await s3.list(`${base}/`);
      if (listing.length === 0)
        throw invalidDataset(`no objects under ${base}/; expected ${base}/train/<class>/* and ${base}/test/<class>/*`);

      const train = groupByClass(listing, base, 'train');
      const test = groupByClass(listing, base, 'test');
      const classes = [...train.keys()].sort();
      if (classes.length < 2)
        throw invalidDataset(
          `${base}/train/ has ${classes.length} class folder(s) (${classes.join(', ') || 'none'}); at least two are needed`,
        );
      if (classes.length !== input.numClasses) {
        throw invalidDataset(`${base}/train/ has ${classes.length} classes (${classes.join(', ')}) but numClasses is ${input.numClasses}`);
      }
      for (const [split, groups] of [
        ['train', train],
        ['test', test],
      ] as const) {
        for (const name of classes) {
          if (!groups.get(name)?.length) throw invalidDataset(`${base}/${split}/${name}/ has no images`);
        }
        const extra = [...groups.keys()].filter((c) => !classes.includes(c));
        if (extra.length) throw invalidDataset(`${base}/${split}/ has class folder(s) not in train/: ${extra.join(', ')}`);
      }

      const hash = createHash('sha256')
        .update(
          JSON.stringify({
            format: MANIFEST_FORMAT,
            objects: listing.map((o) => [o.key, o.etag]),
            size: input.imageSize,
            split: input.validationSplit,
            seed: input.seed,
          }),
        )
        .digest('hex')
        .slice(0, 16);
      const outUri = s3Uri(bucket, `preprocessed/${hash}`);
      const manifestUri = joinUri(outUri, 'manifest.json');
      if (await s3.exists(manifestUri)) return summarize(manifestUri, await s3.getJson<DatasetManifest>(manifestUri));

      const items = (groups: Map<string, ObjectInfo[]>): Item[] =>
        classes.flatMap((name, label) => (groups.get(name) ?? []).map((o) => ({ key: o.key, label })));
      const { train: trainItems, validation } = stratifiedSplit(items(train), (i) => i.label, input.validationSplit, input.seed);
      const total = trainItems.length + validation.length + items(test).length;
      const progress = { done: 0, total };
      const skipped: string[] = [];

      const writeSplit = async (name: string, splitItems: Item[]): Promise<ManifestSplit> => {
        const shards: ManifestSplit['shards'] = [];
        const perClass: Record<string, number> = Object.fromEntries(classes.map((c) => [c, 0]));
        for (let start = 0; start < splitItems.length; start += shardSize) {
          const chunk = splitItems.slice(start, start + shardSize);
          const decoded = await mapLimit(chunk, concurrency, async (item) => {
            try {
              return { item, pixels: decodeAndResize(await s3.getBytes(s3Uri(bucket, item.key)), input.imageSize) };
            } catch {
              skipped.push(item.key);
              return undefined;
            } finally {
              progress.done++;
              Context.current().heartbeat(progress);
            }
          });
          const ok = decoded.filter((d): d is NonNullable<typeof d> => d !== undefined);
          if (!ok.length) continue;
          const px = input.imageSize * input.imageSize * 3;
          const pixels = new Uint8Array(ok.length * px);
          ok.forEach((d, i) => pixels.set(d.pixels, i * px));
          ok.forEach((d) => perClass[classes[d.item.label]!]!++);
          const uri = joinUri(outUri, name, `shard-${String(shards.length).padStart(5, '0')}.bin`);
          await s3.put(
            uri,
            encodeShard({
              count: ok.length,
              height: input.imageSize,
              width: input.imageSize,
              channels: 3,
              labels: Uint16Array.from(ok.map((d) => d.item.label)),
              pixels,
            }),
          );
          shards.push({ uri, count: ok.length });
        }
        return { count: shards.reduce((s, x) => s + x.count, 0), perClass, shards };
      };

      const manifest: DatasetManifest = {
        format: MANIFEST_FORMAT,
        imageSize: input.imageSize,
        channels: 3,
        classes,
        splits: {
          train: await writeSplit('train', trainItems),
          validation: await writeSplit('validation', validation),
          test: await writeSplit('test', items(test)),
        },
        source: { dataUri: input.dataUri, objects: listing.length, listingHash: hash, skipped },
        params: { validationSplit: input.validationSplit, seed: input.seed },
        createdAt: new Date().toISOString(),
      };
      for (const [name, split] of Object.entries(manifest.splits)) {
        const empty = classes.filter((c) => !split.perClass[c]);
        if (empty.length)
          throw invalidDataset(
            `after decoding, the ${name} split has no usable image of class(es) ${empty.join(', ')}; undecodable: ${skipped.slice(0, 5).join(', ')}`,
          );
      }
      await s3.putJson(manifestUri, manifest);
      return summarize(manifestUri, manifest);
    },
  };
}

function groupByClass(listing: ObjectInfo[], base: string, split: string): Map<string, ObjectInfo[]> {
  const { key: prefix } = parseS3Uri(`${base}/${split}/`);
  const groups = new Map<string, ObjectInfo[]>();
  for (const o of listing) {
    if (!o.key.startsWith(prefix)) continue;
    const rest = o.key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const lower = rest.toLowerCase();
    if (!IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext))) continue;
    const name = rest.slice(0, slash);
    groups.set(name, [...(groups.get(name) ?? []), o]);
  }
  if (groups.size === 0)
    throw invalidDataset(`no images under ${base}/${split}/<class>/ (looked for ${IMAGE_EXTENSIONS.join(', ')} files)`);
  return groups;
}

function summarize(manifestUri: string, m: DatasetManifest): PreparedDataset {
  const split = (s: ManifestSplit): SplitSummary => ({ count: s.count, perClass: s.perClass });
  return {
    manifestUri,
    classes: m.classes,
    imageSize: m.imageSize,
    splits: { train: split(m.splits.train), validation: split(m.splits.validation), test: split(m.splits.test) },
  };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
