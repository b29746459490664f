/**
 * The preprocessed dataset format: uint8 image shards plus one JSON manifest.
 *
 * Shard layout (little endian): 16-byte header
 *   bytes 0-3  magic "CNS1"
 *   bytes 4-7  image count (u32)
 *   bytes 8-9  height (u16), 10-11 width (u16), 12 channels (u8), 13-15 reserved
 * then `count` labels (u16 each), then count*height*width*channels pixel bytes (NHWC).
 */
export const SHARD_MAGIC = 'CNS1';
export const SHARD_HEADER_BYTES = 16;
const HEADER = SHARD_HEADER_BYTES;

export interface Shard {
  count: number;
  height: number;
  width: number;
  channels: number;
  labels: Uint16Array;
  pixels: Uint8Array;
}

export class ShardFormatError extends Error {
  override readonly name = 'ShardFormatError';
}

export function encodeShard(shard: Shard): Uint8Array {
  const { count, height, width, channels, labels, pixels } = shard;
  if (labels.length !== count) throw new ShardFormatError(`shard has ${count} images but ${labels.length} labels`);
  if (pixels.length !== count * height * width * channels)
    throw new ShardFormatError(`shard pixel buffer has ${pixels.length} bytes, expected ${count * height * width * channels}`);
  const writer = new ShardWriter(count, height, width, channels);
  writer.pixels().set(pixels);
  return writer.finish(labels);
}

/**
 * A shard encoded in place: each image is written straight into the encoded bytes (no pixel buffer
 * of its own and no copy of it), and `finish` writes the header and labels for the images kept,
 * moving their pixels up when fewer than `capacity` were. It can write into a buffer kept from an
 * earlier shard: a new 38 MB one per 256-image shard at 224 px cost more page faults (zeroing
 * fresh pages) than the shard's encoding did.
 */
export class ShardWriter {
  readonly imageBytes: number;
  /** The bytes written into: `buffer` when it was large enough, else new. */
  readonly buffer: Uint8Array;

  constructor(
    readonly capacity: number,
    readonly height: number,
    readonly width: number,
    readonly channels: number,
    buffer?: Uint8Array,
  ) {
    this.imageBytes = height * width * channels;
    const size = HEADER + capacity * (2 + this.imageBytes);
    this.buffer = buffer && buffer.length >= size ? buffer : new Uint8Array(size);
  }

  private get pixelsAt(): number {
    return HEADER + 2 * this.capacity;
  }

  /** Where image `k`'s pixels go (k < capacity). */
  image(k: number): Uint8Array {
    if (!(k >= 0 && k < this.capacity)) throw new RangeError(`image ${k} is outside a shard of ${this.capacity}`);
    const at = this.pixelsAt + k * this.imageBytes;
    return this.buffer.subarray(at, at + this.imageBytes);
  }

  /** Every image's pixels, in order. */
  pixels(): Uint8Array {
    return this.buffer.subarray(this.pixelsAt, this.pixelsAt + this.capacity * this.imageBytes);
  }

  /** The encoded shard of the first `labels.length` images written (a view of `buffer`). */
  finish(labels: Uint16Array): Uint8Array {
    const count = labels.length;
    if (count > this.capacity) throw new ShardFormatError(`${count} labels for a shard of ${this.capacity} images`);
    const out = this.buffer;
    const pixelsAt = HEADER + 2 * count;
    if (count < this.capacity) out.copyWithin(pixelsAt, this.pixelsAt, this.pixelsAt + count * this.imageBytes);
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    out.set(Buffer.from(SHARD_MAGIC, 'ascii'), 0);
    view.setUint32(4, count, true);
    view.setUint16(8, this.height, true);
    view.setUint16(10, this.width, true);
    view.setUint8(12, this.channels);
    out.fill(0, 13, HEADER);
    for (let i = 0; i < count; i++) view.setUint16(HEADER + 2 * i, labels[i]!, true);
    return out.subarray(0, pixelsAt + count * this.imageBytes);
  }
}

export interface ShardHeader {
  count: number;
  height: number;
  width: number;
  channels: number;
  /** Byte offset of the first image's pixels. */
  pixelsAt: number;
  /** The encoded shard's whole length. */
  bytes: number;
}

/** Reads a shard's header from its first 16 bytes (or more). */
export function readShardHeader(bytes: Uint8Array): ShardHeader {
  if (bytes.length < HEADER || Buffer.from(bytes.subarray(0, 4)).toString('ascii') !== SHARD_MAGIC) {
    throw new ShardFormatError('not a shard: bad magic bytes');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(4, true);
  const height = view.getUint16(8, true);
  const width = view.getUint16(10, true);
  const channels = view.getUint8(12);
  const pixelsAt = HEADER + 2 * count;
  return { count, height, width, channels, pixelsAt, bytes: pixelsAt + count * height * width * channels };
}

/** The labels of a shard, from its header and label block (the rest of the shard is not needed). */
export function readShardLabels(bytes: Uint8Array, header = readShardHeader(bytes)): Uint16Array {
  if (bytes.length < header.pixelsAt) throw new ShardFormatError(`truncated shard: ${bytes.length} bytes hold no full label block`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const labels = new Uint16Array(header.count);
  for (let i = 0; i < header.count; i++) labels[i] = view.getUint16(HEADER + 2 * i, true);
  return labels;
}

export function decodeShard(bytes: Uint8Array): Shard {
  const header = readShardHeader(bytes);
  const { count, height, width, channels } = header;
  if (bytes.length !== header.bytes) throw new ShardFormatError(`truncated shard: ${bytes.length} bytes, expected ${header.bytes}`);
  const labels = readShardLabels(bytes, header);
  const pixels = bytes.slice(header.pixelsAt);
  return { count, height, width, channels, labels, pixels };
}

export interface ShardRef {
  uri: string;
  count: number;
  /** The encoded shard's length and sha256 (hex): checked whenever it is read for training. */
  bytes: number;
  sha256: string;
}

export interface ManifestSplit {
  count: number;
  perClass: Record<string, number>;
  shards: ShardRef[];
}

/** @2 added each shard's length and sha256 to its ShardRef; an @1 output is not reused (the format is part of its cache key). */
export const MANIFEST_FORMAT = 'cnn-skin-cancer/shards@2';

export interface DatasetManifest {
  format: typeof MANIFEST_FORMAT;
  imageSize: number;
  channels: 3;
  /** Sorted folder names; a label is an index into this list. */
  classes: string[];
  /** Class name -> label id. */
  labelMap: Record<string, number>;
  splits: { train: ManifestSplit; validation: ManifestSplit; test: ManifestSplit };
  /** sha256 over each shard's sha256 of its input images' bytes, in shard order: the dataset's content. */
  contentHash: string;
  /** `candidates`: files found in the split folders; `skipped`: those that were not decodable images. */
  source: { dataUri: string; objects: number; candidates: number; listingHash: string; skipped: string[] };
  params: { validationSplit: number; seed: number; shardSize: number };
  createdAt: string;
}

/** Written beside each shard once the shard is complete: a retried run reuses it as is. */
export interface ShardRecord {
  count: number;
  perClass: Record<string, number>;
  skipped: string[];
  sha256: string;
  /** The encoded shard's length and sha256 (hex). */
  shardBytes: number;
  shardSha256: string;
}
