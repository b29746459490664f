/** The training loop and batched prediction, independent of Temporal. */
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import type { LoadedSplit } from '../data/dataset';
import { loadTf } from './tf';

export interface EpochLogs {
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
}

export interface FitOptions {
  epochs: number;
  batchSize: number;
  numClasses: number;
  validation?: LoadedSplit;
  /** Called after each batch; the loop yields to the event loop first, so heartbeats and cancellation flow. */
  onBatchEnd?: (epoch: number, batch: number) => void;
  onEpochEnd?: (epoch: number, logs: EpochLogs) => Promise<void> | void;
  /** Checked after every batch: training stops within one batch once it returns true. */
  shouldStop?: () => boolean;
}

/** Normalised float inputs [n, h, w, 3] in [0, 1] and one-hot labels. */
export function toTensors(split: LoadedSplit, numClasses: number): { xs: Tensor; ys: Tensor } {
  const tf = loadTf();
  return tf.tidy(() => ({
    xs: tf.tensor4d(split.pixels, [split.count, split.imageSize, split.imageSize, 3], 'int32').toFloat().div(255),
    ys: tf.oneHot(tf.tensor1d(Array.from(split.labels), 'int32'), numClasses).toFloat(),
  }));
}

export async function fitModel(model: LayersModel, train: LoadedSplit, options: FitOptions): Promise<void> {
  const tf = loadTf();
  const { xs, ys } = toTensors(train, options.numClasses);
  const val = options.validation ? toTensors(options.validation, options.numClasses) : undefined;
  let currentEpoch = 0;
  try {
    await model.fit(xs, ys, {
      epochs: options.epochs,
      batchSize: options.batchSize,
      shuffle: true,
      validationData: val ? [val.xs, val.ys] : undefined,
      verbose: 0,
      callbacks: {
        onBatchEnd: async (batch) => {
          await new Promise((resolve) => setImmediate(resolve));
          options.onBatchEnd?.(currentEpoch, batch);
          if (options.shouldStop?.()) model.stopTraining = true;
        },
        onEpochBegin: async (epoch) => {
          currentEpoch = epoch;
        },
        onEpochEnd: async (epoch, logs = {}) => {
          await options.onEpochEnd?.(epoch, {
            loss: logs.loss!,
            accuracy: logs.acc ?? logs.accuracy!,
            valLoss: logs.val_loss,
            valAccuracy: logs.val_acc ?? logs.val_accuracy,
          });
        },
      },
    });
  } finally {
    tf.dispose([xs, ys, ...(val ? [val.xs, val.ys] : [])]);
  }
}

/** Class probabilities, row-major [n, numClasses], predicted in batches. */
export async function predictProbabilities(
  model: LayersModel,
  split: LoadedSplit,
  numClasses: number,
  batchSize = 64,
): Promise<Float32Array> {
  const tf = loadTf();
  const out = new Float32Array(split.count * numClasses);
  const px = split.imageSize * split.imageSize * 3;
  for (let start = 0; start < split.count; start += batchSize) {
    const n = Math.min(batchSize, split.count - start);
    const probs = tf.tidy(() => {
      const xs = tf
        .tensor4d(split.pixels.subarray(start * px, (start + n) * px), [n, split.imageSize, split.imageSize, 3], 'int32')
        .toFloat()
        .div(255);
      return model.predict(xs) as Tensor;
    });
    out.set(await probs.data(), start * numClasses);
    probs.dispose();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}
