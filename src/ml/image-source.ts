/**
 * Where training and evaluation get their images: an ImageSource knows how many images a split
 * has and their labels, and hands out their pixels through a reader that is told the whole visiting
 * order up front, so it can fetch ahead and drop what is no longer needed. Two kinds:
 * `memorySource` over a split already in memory (tests, benchmarks), and ShardStream
 * (src/data/shard-stream.ts), which streams a preprocessed split from its shards in S3 and holds a bounded
 * number of them whatever the split's size.
 */
import { seededRandom } from '../common/random';
import type { LoadedSplit } from '../common/types';

export interface ImageSource {
  readonly count: number;
  readonly imageSize: number;
  /** Every image's label, by index. */
  readonly labels: Uint16Array;
  /** The visiting order of an epoch: a permutation of 0..count-1, a pure function of (seed, epoch). */
  epochOrder(seed: number, epoch: number): Uint32Array;
  /** A reader over `order` (indices of this source), read front to back. */
  open(order: Uint32Array): ImageReader;
  /** Images `indices` of this source as a source of their own (a fold): a view, no pixel is copied. */
  subset(indices: ArrayLike<number>): ImageSource;
}

export interface ImageReader {
  /**
   * The pixels (uint8, HWC) of the images at positions [from, from + n) of the order, as views that
   * stay valid while the caller holds them. Calls come with `from` never decreasing.
   */
  read(from: number, n: number): Promise<Uint8Array[]>;
  /** Drops every buffer the reader holds. */
  close(): void;
}

/** 0, 1, ..., count - 1: evaluation's order. */
export function naturalOrder(count: number): Uint32Array {
  return Uint32Array.from({ length: count }, (_, i) => i);
}

/** A seeded Fisher-Yates shuffle of `order` in place, drawing from `rand`. */
export function shuffleInPlace(order: Uint32Array, rand: () => number, from = 0, to = order.length): void {
  for (let i = to - 1; i > from; i--) {
    const j = from + Math.floor(rand() * (i - from + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
}

/** The generator of epoch `epoch`'s order for `seed`. */
export function epochRandom(seed: number, epoch: number): () => number {
  return seededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0);
}

/** The visiting order of epoch `epoch` over a split held whole: a seeded Fisher-Yates shuffle of every index. */
export function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  const order = naturalOrder(count);
  shuffleInPlace(order, epochRandom(seed, epoch));
  return order;
}

/** A split held in memory as a source (subsets keep the order of the indices they are given). */
export function memorySource(split: LoadedSplit, indices?: Uint32Array): ImageSource {
  const px = split.imageSize * split.imageSize * 3;
  const map = (i: number): number => (indices ? indices[i]! : i);
  const count = indices ? indices.length : split.count;
  return {
    count,
    imageSize: split.imageSize,
    labels: indices ? Uint16Array.from(indices, (i) => split.labels[i]!) : split.labels,
    epochOrder: (seed, epoch) => epochOrder(count, seed, epoch),
    open: (order) => ({
      read: (from, n) =>
        Promise.resolve(
          Array.from(order.subarray(from, from + n), (i) => {
            const at = map(i) * px;
            return split.pixels.subarray(at, at + px);
          }),
        ),
      close: () => undefined,
    }),
    subset: (sub) => memorySource(split, Uint32Array.from(sub, map)),
  };
}
