/**
 * Loads a whole preprocessed split into memory from its shards. Training streams its splits
 * instead (shard-stream.ts); this is the in-memory path the scale benchmark measures streaming
 * against, and what tests use to look at a split's contents. Memory grows with the split.
 */
import type { LoadedSplit } from '../common/types';
import type { DatasetManifest, ManifestSplit } from './shards';
import { decodeShard } from './shards';
import type { S3Store } from '../storage/s3';

export async function loadSplit(s3: S3Store, manifest: DatasetManifest, split: ManifestSplit): Promise<LoadedSplit> {
  const px = manifest.imageSize * manifest.imageSize * manifest.channels;
  const pixels = new Uint8Array(split.count * px);
  const labels = new Uint16Array(split.count);
  let offset = 0;
  for (const ref of split.shards) {
    const shard = decodeShard(await s3.getBytes(ref.uri));
    if (shard.height !== manifest.imageSize || shard.channels !== manifest.channels) {
      throw new Error(
        `${ref.uri} holds ${shard.height}x${shard.width}x${shard.channels} images, the manifest says ${manifest.imageSize}x${manifest.imageSize}x${manifest.channels}`,
      );
    }
    pixels.set(shard.pixels, offset * px);
    labels.set(shard.labels, offset);
    offset += shard.count;
  }
  if (offset !== split.count) throw new Error(`shards hold ${offset} images, the manifest says ${split.count}`);
  return { count: split.count, imageSize: manifest.imageSize, pixels, labels };
}
