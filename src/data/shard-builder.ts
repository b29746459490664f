/**
 * Builds one shard: fetches its images, decodes them, encodes the shard and writes it. The
 * CPU-bound part of preprocessing; it runs in the ShardPool's processes.
 */
import { createHash } from 'node:crypto';
import { mapLimit } from '../common/map-limit';
import type { ObjectStore } from '../storage/object-store';
import { decodeAndResize } from './images';
import { encodeShard } from './shards';

export interface ShardJob {
  /** Image URIs, in shard order. */
  images: string[];
  labels: number[];
  size: number;
  /** Where to write the encoded shard. */
  shardUri: string;
  /** Images fetched at once. */
  concurrency: number;
}

export interface BuiltShard {
  /** sha256 over the input images' bytes, in order: the shard's share of the dataset's content hash. */
  sha256: string;
  /** Per input image: whether it decoded (the shard holds those only). */
  ok: boolean[];
}

export async function buildShard(store: ObjectStore, job: ShardJob): Promise<BuiltShard> {
  const { images, labels, size } = job;
  const bytes = await mapLimit(images, job.concurrency, (uri) => store.getBytes(uri));

  const px = size * size * 3;
  const pixels = new Uint8Array(images.length * px);
  const ok = images.map(() => false);
  const hash = createHash('sha256');
  let kept = 0;
  bytes.forEach((image, i) => {
    hash.update(image);
    try {
      pixels.set(decodeAndResize(image, size), kept * px);
      ok[i] = true;
      kept++;
    } catch {
      // Not a decodable image: the caller lists it as skipped.
    }
  });
  await store.put(
    job.shardUri,
    encodeShard({
      count: kept,
      height: size,
      width: size,
      channels: 3,
      labels: Uint16Array.from(labels.filter((_, i) => ok[i])),
      pixels: kept === images.length ? pixels : pixels.subarray(0, kept * px),
    }),
  );
  return { sha256: hash.digest('hex'), ok };
}
