/** Writes the synthetic dataset in the ImageFolder layout <out>/{train,test}/{benign,malignant}/*.jpg. */
import { mapLimit } from '../common/map-limit';
import { joinUri } from '../storage/s3';
import type { ObjectStore } from '../storage/object-store';
import { encodeJpeg, SYNTHETIC_CLASSES, syntheticLesion, type LesionKind } from './synthetic';

export type SplitCounts = Record<LesionKind, number>;

export interface DatasetSpec {
  outUri: string;
  counts: { train: SplitCounts; test: SplitCounts };
  size: number;
  seed: number;
  /** Rewrite even if `<out>/train/` already holds objects. */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** The Kaggle "Skin Cancer: Malignant vs. Benign" split sizes. */
export const KAGGLE_COUNTS = {
  train: { benign: 1440, malignant: 1197 },
  test: { benign: 360, malignant: 300 },
} as const;

export function scaledCounts(scale: number): DatasetSpec['counts'] {
  const s = (c: SplitCounts): SplitCounts => ({
    benign: Math.max(1, Math.round(c.benign * scale)),
    malignant: Math.max(1, Math.round(c.malignant * scale)),
  });
  return { train: s(KAGGLE_COUNTS.train), test: s(KAGGLE_COUNTS.test) };
}

/** Writes the dataset unless one is there; returns how many images it wrote. */
export async function writeSyntheticDataset(store: ObjectStore, spec: DatasetSpec): Promise<{ written: number }> {
  if (!spec.force && (await store.list(joinUri(spec.outUri, 'train') + '/')).length > 0) return { written: 0 };
  const jobs: { uri: string; kind: LesionKind; seed: number }[] = [];
  for (const [s, split] of (['train', 'test'] as const).entries()) {
    for (const [k, kind] of SYNTHETIC_CLASSES.entries()) {
      for (let i = 0; i < spec.counts[split][kind]; i++) {
        // Distinct, stable per-image seeds: the same spec always gives the same files.
        const seed = (spec.seed * 1_000_003 + s * 100_000_007 + k * 10_000_019 + i) >>> 0;
        jobs.push({ uri: joinUri(spec.outUri, split, kind, `${kind}-${String(i).padStart(5, '0')}.jpg`), kind, seed });
      }
    }
  }
  let done = 0;
  await mapLimit(jobs, 8, async (job) => {
    await store.put(job.uri, await encodeJpeg(syntheticLesion(job.kind, spec.size, job.seed), spec.size), 'image/jpeg');
    spec.onProgress?.(++done, jobs.length);
  });
  return { written: jobs.length };
}
