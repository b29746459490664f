/**
 * A preprocessed split streamed from its shards: training's memory for data depends on the shard
 * size and the shuffle window, never on how many images the split holds.
 *
 * - Opening reads only each shard's header and labels (a ranged read of a few hundred bytes).
 * - An epoch's order shuffles at two levels, both seeded: the shards' order, then the images
 *   within windows of `windowShards` consecutive shards (the shuffle buffer). Preprocessing already
 *   shuffled every split before sharding it, so each shard mixes the classes. The order is a pure
 *   function of (seed, epoch, the shards' sizes, the window): a resumed attempt recomputes it and
 *   continues where the checkpoint left off.
 * - A reader knows its whole order, so it fetches shards ahead (at most `maxResidentShards` held,
 *   counting those its current read needs) and drops each once its last image was read.
 * - Shards are fetched on a thread of their own (shard-fetcher.ts), so reads go on while a training
 *   step holds the main thread, and each is checked against the manifest (length, sha256, header).
 * - A subset (a CrossVal fold) is a sorted list of indices over the same shards; nothing is copied.
 */
import { FAILURE } from '../common/failures';
import { mapLimit } from '../common/map-limit';
import type { S3Store } from '../storage/s3';
import { epochRandom, shuffleInPlace, type ImageReader, type ImageSource } from '../ml/image-source';
import { ShardFetcher } from './shard-fetcher';
import { readShardHeader, readShardLabels, SHARD_HEADER_BYTES, type DatasetManifest, type ManifestSplit, type ShardRef } from './shards';

/** A shard that is not what its manifest says: changed, truncated or of other images. */
export class ShardIntegrityError extends Error {
  override readonly name = FAILURE.shardIntegrity;
}

/** Images a shuffle window spans at least (rounded up to whole shards): 1,024, four 256-image shards. */
export const SHUFFLE_WINDOW_IMAGES = 1024;

/** Shards per shuffle window for shards of `shardSize` images. */
export function windowShardsFor(shardSize: number): number {
  return Math.max(1, Math.ceil(SHUFFLE_WINDOW_IMAGES / Math.max(1, shardSize)));
}

/**
 * The most shards a reader holds (unless one read itself needs more): for an epoch, one window
 * being read and the next one fetched ahead.
 */
export function maxResidentShards(windowShards: number): number {
  return 2 * windowShards;
}

/** The most bytes of shards one reader of this dataset holds: what the training's memory plan sets aside for data. */
export function streamBufferBytes(manifest: Pick<DatasetManifest, 'imageSize' | 'channels' | 'params'>): number {
  const { shardSize } = manifest.params;
  const shardBytes = SHARD_HEADER_BYTES + shardSize * (2 + manifest.imageSize * manifest.imageSize * manifest.channels);
  return maxResidentShards(windowShardsFor(shardSize)) * shardBytes;
}

/** What a stream's readers have held and read, for tests and benchmarks. */
export interface StreamStats {
  residentBytes: number;
  peakResidentBytes: number;
  shardsFetched: number;
  bytesFetched: number;
}

interface ShardInfo {
  ref: ShardRef;
  /** Index of its first image in the split. */
  start: number;
  count: number;
}

export interface ShardStreamOptions {
  /** Shards per shuffle window (default: windowShardsFor(manifest.params.shardSize)). */
  windowShards?: number;
  /** Shard headers read at once when opening. */
  concurrency?: number;
}

/** Opens a split of a preprocessed dataset for streaming: reads its labels, checks its shards' headers. */
export async function openShardStream(
  s3: S3Store,
  manifest: DatasetManifest,
  split: ManifestSplit,
  options: ShardStreamOptions = {},
): Promise<ShardStream> {
  const { imageSize, channels } = manifest;
  let start = 0;
  const shards: ShardInfo[] = split.shards.map((ref) => {
    const info = { ref, start, count: ref.count };
    start += ref.count;
    return info;
  });
  if (start !== split.count) throw new ShardIntegrityError(`the manifest's shards hold ${start} images, its split says ${split.count}`);
  const labels = new Uint16Array(split.count);
  await mapLimit(shards, options.concurrency ?? 8, async (s) => {
    const head = await s3.getRange(s.ref.uri, 0, SHARD_HEADER_BYTES + 2 * s.count);
    labels.set(readShardLabels(head, checkHeader(s, head, imageSize, channels)), s.start);
  });
  const fetcher = new ShardFetcher((message) => new ShardIntegrityError(message));
  return new ShardStream(fetcher, shards, labels, imageSize, options.windowShards ?? windowShardsFor(manifest.params.shardSize));
}

function checkHeader(s: ShardInfo, bytes: Uint8Array, imageSize: number, channels: number) {
  let header;
  try {
    header = readShardHeader(bytes);
  } catch (err) {
    throw new ShardIntegrityError(`${s.ref.uri}: ${(err as Error).message}; preprocess the dataset again`);
  }
  const { count, height, width } = header;
  if (count !== s.count || height !== imageSize || width !== imageSize || header.channels !== channels || header.bytes !== s.ref.bytes)
    throw new ShardIntegrityError(
      `${s.ref.uri} holds ${count} images of ${height}x${width}x${header.channels} (${header.bytes} bytes), the manifest says ` +
        `${s.count} of ${imageSize}x${imageSize}x${channels} (${s.ref.bytes} bytes); preprocess the dataset again`,
    );
  return header;
}

export class ShardStream implements ImageSource {
  readonly count: number;
  readonly labels: Uint16Array;
  private readonly px: number;

  constructor(
    private readonly fetcher: ShardFetcher,
    private readonly shards: readonly ShardInfo[],
    private readonly allLabels: Uint16Array,
    readonly imageSize: number,
    readonly windowShards: number,
    /** The images of the split this stream covers (sorted), or all of them. */
    private readonly domain?: Uint32Array,
    /** Shared by a stream and its subsets. */
    readonly stats: StreamStats = { residentBytes: 0, peakResidentBytes: 0, shardsFetched: 0, bytesFetched: 0 },
  ) {
    this.count = domain ? domain.length : allLabels.length;
    this.labels = domain ? Uint16Array.from(domain, (g) => allLabels[g]!) : allLabels;
    this.px = imageSize * imageSize * 3;
  }

  /** The split's index of this stream's image `i`. */
  private global(i: number): number {
    return this.domain ? this.domain[i]! : i;
  }

  /** Per shard, the range [lo, hi) of this stream's indices whose images it holds. */
  private ranges(): { lo: number; hi: number }[] {
    if (!this.domain) return this.shards.map((s) => ({ lo: s.start, hi: s.start + s.count }));
    const d = this.domain;
    let k = 0;
    return this.shards.map((s) => {
      const lo = k;
      while (k < d.length && d[k]! < s.start + s.count) k++;
      return { lo, hi: k };
    });
  }

  epochOrder(seed: number, epoch: number): Uint32Array {
    const rand = epochRandom(seed, epoch);
    const ranges = this.ranges().filter((r) => r.hi > r.lo);
    const shardOrder = Uint32Array.from(ranges.keys());
    shuffleInPlace(shardOrder, rand);
    const order = new Uint32Array(this.count);
    let at = 0;
    for (let w = 0; w < shardOrder.length; w += this.windowShards) {
      const from = at;
      for (const s of shardOrder.subarray(w, w + this.windowShards)) for (let i = ranges[s]!.lo; i < ranges[s]!.hi; i++) order[at++] = i;
      shuffleInPlace(order, rand, from, at);
    }
    return order;
  }

  subset(indices: ArrayLike<number>): ShardStream {
    const domain = Uint32Array.from(indices, (i) => this.global(i)).sort();
    return new ShardStream(this.fetcher, this.shards, this.allLabels, this.imageSize, this.windowShards, domain, this.stats);
  }

  open(order: Uint32Array): ImageReader {
    return new StreamReader(this, order, maxResidentShards(this.windowShards));
  }

  /** Shard of split index `g` (binary search over the shards' starts). */
  shardOf(g: number): number {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.shards[mid]!.start <= g) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** For the reader: where image `i` of this stream is. */
  locate(i: number): { shard: number; offset: number } {
    const g = this.global(i);
    const shard = this.shardOf(g);
    return { shard, offset: g - this.shards[shard]!.start };
  }

  /** Fetches and checks one shard (on the fetcher's thread: length and sha256; here: its header); returns its pixels. */
  async fetch(shard: number): Promise<Uint8Array> {
    const s = this.shards[shard]!;
    const bytes = await this.fetcher.fetch(s.ref);
    const header = checkHeader(s, bytes, this.imageSize, 3);
    this.stats.shardsFetched++;
    this.stats.bytesFetched += bytes.length;
    return bytes.subarray(header.pixelsAt);
  }

  /** Ends the fetching thread (it also ends by itself with the process). */
  close(): Promise<void> {
    return this.fetcher.close();
  }

  shardBytesOf(shard: number): number {
    return this.shards[shard]!.ref.bytes;
  }

  pixelBytes(): number {
    return this.px;
  }

  shardCount(): number {
    return this.shards.length;
  }

  track(delta: number): void {
    this.stats.residentBytes += delta;
    this.stats.peakResidentBytes = Math.max(this.stats.peakResidentBytes, this.stats.residentBytes);
  }
}

/** Reads one order front to back, fetching shards ahead in the order their images are first needed. */
class StreamReader implements ImageReader {
  private readonly firstUse: Int32Array;
  private readonly lastUse: Int32Array;
  /** Shards in the order they are first needed. */
  private readonly sequence: number[];
  private next = 0;
  private readonly held = new Map<number, { pixels: Promise<Uint8Array>; bytes: number }>();
  private closed = false;

  constructor(
    private readonly stream: ShardStream,
    private readonly order: Uint32Array,
    private readonly maxResident: number,
  ) {
    const n = stream.shardCount();
    this.firstUse = new Int32Array(n).fill(-1);
    this.lastUse = new Int32Array(n).fill(-1);
    order.forEach((i, p) => {
      const { shard } = stream.locate(i);
      if (this.firstUse[shard]! < 0) this.firstUse[shard] = p;
      this.lastUse[shard] = p;
    });
    this.sequence = [...this.firstUse.keys()].filter((s) => this.firstUse[s]! >= 0).sort((a, b) => this.firstUse[a]! - this.firstUse[b]!);
  }

  async read(from: number, n: number): Promise<Uint8Array[]> {
    if (this.closed) throw new Error('the reader is closed');
    const end = Math.min(from + n, this.order.length);
    for (const [shard, h] of this.held)
      if (this.lastUse[shard]! < from) {
        this.held.delete(shard);
        this.stream.track(-h.bytes);
      }
    // Shards whose images all came before `from` (a resumed epoch) are never fetched.
    while (this.next < this.sequence.length && this.lastUse[this.sequence[this.next]!]! < from) this.next++;
    while (this.next < this.sequence.length && this.firstUse[this.sequence[this.next]!]! < end) this.hold(this.sequence[this.next++]!);
    while (this.next < this.sequence.length && this.held.size < this.maxResident) this.hold(this.sequence[this.next++]!);
    const px = this.stream.pixelBytes();
    const out: Uint8Array[] = [];
    for (let p = from; p < end; p++) {
      const { shard, offset } = this.stream.locate(this.order[p]!);
      const pixels = await this.held.get(shard)!.pixels;
      out.push(pixels.subarray(offset * px, (offset + 1) * px));
    }
    return out;
  }

  private hold(shard: number): void {
    // Counted from the start of the fetch: its bytes are on their way into memory.
    const entry = { pixels: this.stream.fetch(shard), bytes: this.stream.shardBytesOf(shard) };
    this.stream.track(entry.bytes);
    // A prefetch that fails is reported by the read that needs it; until then it must not go unhandled.
    entry.pixels.catch(() => undefined);
    this.held.set(shard, entry);
  }

  close(): void {
    this.closed = true;
    for (const h of this.held.values()) this.stream.track(-h.bytes);
    this.held.clear();
  }
}
