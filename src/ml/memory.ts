/**
 * How many images a training pass can hold in memory. Activations kept for the gradient grow with
 * batch x pixels: ResNet50 at 224 px needs ~0.3 GB per image, so its default batch of 64 would need
 * ~20 GB, and a t3.large has 8. The training loop splits a batch into micro-batches that fit the
 * memory budget (the gradient is still the whole batch's; see FitOptions.microBatchSize).
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { ModelClass } from '../common/constants';

/**
 * Peak training memory per image per input pixel, with some headroom. Measured with oneDNN on:
 * peak RSS of `node dist/bench/train-ours.js <64 px data> <model> 1 <batch> 1` at batch 32 minus
 * batch 8, over the 24 images between them (ResNet50 5.9 KB, Basic 1.2 KB; ResNet50 at 224 px,
 * batch 32, peaked at 10.9 GB, 6.1 KB per pixel-image). The rest covers what is not per image
 * (weights, optimizer state, gradients): ResNet50 at 224 px, batch 64, planned for a 7 GiB pod
 * (budget 6.4 GB) ran in passes of 17 images at 6.5 GB peak with 6.6 KB; hence 7.
 */
const BYTES_PER_IMAGE_PIXEL: Record<ModelClass, number> = { Basic: 1400, CrossVal: 1400, ResNet50: 7000 };

/** Share of the memory limit trainings plan to use; the rest is headroom. */
const DEFAULT_BUDGET_SHARE = 0.85;

/** The default budget of each of `concurrent` trainings: their share of 85 % of the memory limit. */
export function defaultBudgetBytes(concurrent = 1): number {
  return (DEFAULT_BUDGET_SHARE * memoryLimitBytes()) / Math.max(1, concurrent);
}

/** The container's memory limit (cgroup v2 or v1) where there is one, else the machine's memory. */
export function memoryLimitBytes(): number {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const text = readFileSync(file, 'utf8').trim();
      const limit = Number(text);
      // "max" (v2) or a huge number (v1) mean no limit.
      if (Number.isFinite(limit) && limit > 0 && limit < 2 ** 60) return Math.min(limit, totalmem());
    } catch {
      // not this cgroup version
    }
  }
  return totalmem();
}

export interface MicroBatchPlan {
  microBatchSize: number;
  perImageBytes: number;
  /** False when even one image per pass is expected to exceed the budget. */
  fits: boolean;
}

export function planMicroBatch(a: {
  modelClass: ModelClass;
  imageSize: number;
  batchSize: number;
  budgetBytes: number;
  inUseBytes: number;
}): MicroBatchPlan {
  const perImageBytes = BYTES_PER_IMAGE_PIXEL[a.modelClass] * a.imageSize * a.imageSize;
  const images = Math.floor((a.budgetBytes - a.inUseBytes) / perImageBytes);
  return { microBatchSize: Math.max(1, Math.min(a.batchSize, images)), perImageBytes, fits: images >= 1 };
}
