/**
 * The training benchmarks' data: generated lesion images as raw uint8 files that both sides read
 * (images.u8 [n, s, s, 3], labels.u8 [n], meta.json), written once per (count, size, seed) under bench/out.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SYNTHETIC_CLASSES, syntheticLesion } from '../src/data/synthetic';
import type { LoadedSplit } from '../src/common/types';

export interface BenchData {
  dir: string;
  size: number;
  train: number;
  validation: number;
}

/** Alternating classes; validation is the last `validation` images. */
export function benchData(outDir: string, size: number, train: number, validation: number, seed = 7): BenchData {
  const dir = join(outDir, `train-${size}px-${train}-${validation}-${seed}`);
  const meta: BenchData = { dir, size, train, validation };
  if (existsSync(join(dir, 'meta.json'))) return meta;
  mkdirSync(dir, { recursive: true });
  const n = train + validation;
  const px = size * size * 3;
  const images = new Uint8Array(n * px);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    images.set(syntheticLesion(SYNTHETIC_CLASSES[i % 2]!, size, seed * 1_000_003 + i), i * px);
  }
  writeFileSync(join(dir, 'images.u8'), images);
  writeFileSync(join(dir, 'labels.u8'), labels);
  writeFileSync(join(dir, 'meta.json'), JSON.stringify(meta));
  return meta;
}

export function readBenchData(dir: string): { train: LoadedSplit; validation: LoadedSplit } {
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as BenchData;
  const images = new Uint8Array(readFileSync(join(dir, 'images.u8')));
  const labels = readFileSync(join(dir, 'labels.u8'));
  const px = meta.size * meta.size * 3;
  const part = (from: number, count: number): LoadedSplit => ({
    count,
    imageSize: meta.size,
    pixels: images.subarray(from * px, (from + count) * px),
    labels: Uint16Array.from(labels.subarray(from, from + count)),
  });
  return { train: part(0, meta.train), validation: part(meta.train, meta.validation) };
}
