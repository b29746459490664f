/**
 * The training loop and batched prediction, independent of Temporal.
 *
 * A loop of our own rather than `model.fit`: images come from an ImageSource (streamed from their
 * shards, or held in memory) and are normalised batch by batch (a float copy of a 224 px split
 * would be 4x its size), the shuffle order of epoch e is a pure function of (seed, e) and dropout
 * masks of (seed, step), so a run resumed at an epoch boundary or mid-epoch replays exactly what an
 * uninterrupted one would have done; and it yields to the event loop after every batch so
 * heartbeats and cancellation flow.
 */
import type { LayersModel, Scalar, Tensor } from '@tensorflow/tfjs-node';
import type { TrainingOptimizer } from './native-adam';
import { naturalOrder, type ImageReader, type ImageSource } from './image-source';
import { setDropoutPosition } from './layers';
import { squaredNorm } from './native-ops';
import { evaluatePredictions } from './metrics';
import { loadTf } from './tf';
import { countImagesRead } from './work-meter';

export interface EpochLogs {
  loss: number;
  accuracy: number;
  valLoss?: number;
  /** Whether every validation prediction was a finite number (false: the model's outputs overflowed to NaN or infinity). */
  valFinite?: boolean;
  valAccuracy?: number;
}

/** Where a run stands: `batch` batches of epoch `epoch` (0-based) done, with their running sums. */
export interface TrainPosition {
  epoch: number;
  batch: number;
  lossSum: number;
  correct: number;
}

export interface FitOptions {
  epochs: number;
  batchSize: number;
  /**
   * Images per forward/backward pass (default: the whole batch). A smaller value splits each batch
   * and sums the parts' gradients into one update of the whole batch, so memory follows the
   * micro-batch; batch norm then normalises each micro-batch with its own statistics.
   */
  microBatchSize?: number;
  numClasses: number;
  seed: number;
  /** Where to continue (restored from a checkpoint); default: the start. */
  initial?: TrainPosition;
  validation?: ImageSource;
  onEpochBegin?: (epoch: number) => void;
  /** Called after each batch, once the loop has yielded to the event loop. */
  /** After each batch, with that batch's mean training loss. */
  onBatchEnd?: (epoch: number, batch: number, batches: number, loss: number) => void;
  /** Awaited at each epoch end (0-based epoch): the place to log and checkpoint. */
  onEpochEnd?: (epoch: number, logs: EpochLogs) => Promise<void> | void;
  /** Called for a batch whose gradient was not finite: its update was skipped. */
  onSkippedStep?: (epoch: number, batch: number) => void;
  /** Checked after every batch: training stops within one batch once it returns true. */
  shouldStop?: () => boolean;
}

export interface FitResult {
  /** Where training stopped: `{ epoch: epochs, batch: 0 }` once complete. */
  position: TrainPosition;
  stopped: boolean;
}

const EPSILON = 1e-7;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A source's images read in one order, with their labels. */
interface Feed {
  source: ImageSource;
  order: Uint32Array;
  reader: ImageReader;
}

function openFeed(source: ImageSource, order: Uint32Array): Feed {
  return { source, order, reader: source.open(order) };
}

/** Images at positions [from, from + n) of a feed as a normalised float batch [n, h, w, 3] in [0, 1]. */
async function batchInputs(feed: Feed, from: number, n: number): Promise<Tensor> {
  const images = await feed.reader.read(from, n);
  countImagesRead(images.length);
  const size = feed.source.imageSize;
  const px = size * size * 3;
  const out = new Float32Array(images.length * px);
  images.forEach((src, b) => {
    const base = b * px;
    for (let i = 0; i < px; i++) out[base + i] = src[i]! / 255;
  });
  return loadTf().tensor4d(out, [images.length, size, size, 3]);
}

/** Keras' categorical cross-entropy on probabilities (outputs other than softmax): renormalise, clip to [eps, 1 - eps], mean over the batch. */
function crossEntropy(ys: Tensor, probs: Tensor): Scalar {
  const p = probs.div(probs.sum(-1, true)).clipByValue(EPSILON, 1 - EPSILON);
  return ys.mul(p.log()).sum(-1).neg().mean() as Scalar;
}

interface ActivationFn {
  getClassName(): string;
}
let linearActivation: ActivationFn | undefined;

/**
 * The training loss of one pass, and the batch's correct predictions. For a softmax output it is
 * computed from the logits, as Keras does (its softmax output carries its logits to the loss): on
 * probabilities, clipped to [1e-7, 1 - 1e-7], a confidently wrong prediction has no gradient and
 * is never corrected. ResNet50's early logits are extreme enough for that to stall its training.
 */
function lossAndHits(model: LayersModel, xs: Tensor, ys: Tensor, labels: Tensor): { loss: Scalar; hits: Tensor } {
  const tf = loadTf();
  const last = model.layers.at(-1) as unknown as { activation?: ActivationFn } | undefined;
  const softmax = last?.activation?.getClassName() === 'softmax' ? last.activation : undefined;
  if (softmax) {
    linearActivation ??= (tf.layers.dense({ units: 1, activation: 'linear' }) as unknown as { activation: ActivationFn }).activation;
    last!.activation = linearActivation;
  }
  let output: Tensor;
  try {
    output = model.apply(xs, { training: true }) as Tensor;
  } finally {
    if (softmax) last!.activation = softmax;
  }
  const hits = tf.keep(output.argMax(-1).equal(labels).sum());
  return { loss: softmax ? (tf.losses.softmaxCrossEntropy(ys, output) as Scalar) : crossEntropy(ys, output), hits };
}

function labelTensor(feed: Feed, from: number, n: number): Tensor {
  return loadTf().tensor1d(
    Array.from(feed.order.subarray(from, from + n), (i) => feed.source.labels[i]!),
    'int32',
  );
}

/**
 * One forward and backward pass over the images at positions [from, from + n) of the feed, its
 * mean loss weighted by `share` (its part of the batch). Returns the gradients (the caller disposes
 * them), the weighted loss and the correct predictions.
 */
async function pass(
  model: LayersModel,
  feed: Feed,
  from: number,
  n: number,
  share: number,
  numClasses: number,
): Promise<{ grads: Record<string, Tensor>; loss: number; correct: number }> {
  const tf = loadTf();
  const xs = await batchInputs(feed, from, n);
  const labels = labelTensor(feed, from, n);
  const ys = tf.tidy(() => tf.oneHot(labels, numClasses).toFloat());
  let hits: Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const step = lossAndHits(model, xs, ys, labels);
    hits = step.hits;
    return share === 1 ? step.loss : (step.loss.mul(share) as Scalar);
  });
  const [l, h] = await Promise.all([value.data(), hits!.data()]);
  tf.dispose([xs, labels, ys, value, hits!]);
  return { grads, loss: l[0]!, correct: h[0]! };
}

/**
 * Applies the update unless a gradient holds a NaN or an infinity, or squares to one (as
 * mixed-precision training skips such steps): one such step would turn every weight into NaN. It
 * happens when batch norm sees a tiny last batch (its 1 / sqrt(variance + eps) multiplies the
 * gradient at every layer).
 */
async function applyIfFinite(optimizer: TrainingOptimizer, grads: Record<string, Tensor>): Promise<boolean> {
  const tf = loadTf();
  // The squared global norm: finite only if every gradient is, and its squares (which Adam's
  // second moment accumulates) do not overflow.
  const total = squaredNorm(tf, Object.values(grads));
  const finite = Number.isFinite((await total.data())[0]);
  total.dispose();
  if (finite) optimizer.applyGradients(grads);
  return finite;
}

/**
 * One update of the batch at positions [from, from + size) of the feed, in passes of at most `micro`
 * images: each part's mean loss is weighted by its share of the batch, so the summed gradients are
 * those of the batch's mean loss. Returns the batch's mean loss, its correct predictions, and
 * whether the update was applied.
 */
async function trainStep(
  model: LayersModel,
  optimizer: TrainingOptimizer,
  feed: Feed,
  batch: { from: number; size: number },
  micro: number,
  numClasses: number,
  step: number,
): Promise<{ loss: number; correct: number; applied: boolean }> {
  const tf = loadTf();
  let sums: Record<string, Tensor> | undefined;
  let loss = 0;
  let correct = 0;
  try {
    for (let start = 0; start < batch.size; start += micro) {
      const n = Math.min(micro, batch.size - start);
      setDropoutPosition(model, step, start);
      const p = await pass(model, feed, batch.from + start, n, n / batch.size, numClasses);
      loss += p.loss;
      correct += p.correct;
      if (!sums) {
        sums = p.grads;
        continue;
      }
      const total = sums;
      sums = tf.tidy(() => Object.fromEntries(Object.entries(p.grads).map(([name, g]) => [name, total[name]!.add(g)])));
      tf.dispose([...Object.values(total), ...Object.values(p.grads)]);
    }
    const applied = await applyIfFinite(optimizer, sums!);
    return { loss, correct, applied };
  } finally {
    if (sums) tf.dispose(Object.values(sums));
  }
}

export async function fitModel(
  model: LayersModel,
  optimizer: TrainingOptimizer,
  train: ImageSource,
  options: FitOptions,
): Promise<FitResult> {
  const { batchSize, numClasses } = options;
  const batches = Math.ceil(train.count / batchSize);
  const micro = Math.min(options.microBatchSize ?? batchSize, batchSize);
  if (!(Number.isInteger(micro) && micro >= 1)) throw new RangeError(`microBatchSize must be a positive integer, got ${micro}`);
  const at: TrainPosition = { ...(options.initial ?? { epoch: 0, batch: 0, lossSum: 0, correct: 0 }) };
  for (; at.epoch < options.epochs; at.epoch++, at.batch = 0, at.lossSum = 0, at.correct = 0) {
    if (at.batch === 0) options.onEpochBegin?.(at.epoch);
    const feed = openFeed(train, train.epochOrder(options.seed, at.epoch));
    try {
      for (; at.batch < batches;) {
        const from = at.batch * batchSize;
        const size = Math.min(batchSize, train.count - from);
        // Each batch is one dropout step, its masks the same however it is split into passes.
        const step = at.epoch * batches + at.batch;
        const { loss: l, correct, applied } = await trainStep(model, optimizer, feed, { from, size }, micro, numClasses, step);
        if (!applied) options.onSkippedStep?.(at.epoch, at.batch);
        at.lossSum += l * size;
        at.correct += correct;
        at.batch++;
        await yieldToEventLoop();
        options.onBatchEnd?.(at.epoch, at.batch - 1, batches, l);
        if (at.batch < batches && options.shouldStop?.()) return { position: { ...at }, stopped: true };
      }
    } finally {
      // Before validation reads: the epoch's shards are no longer held.
      feed.reader.close();
    }
    const logs: EpochLogs = { loss: at.lossSum / train.count, accuracy: at.correct / train.count };
    if (options.validation) {
      const probs = await predictProbabilities(model, options.validation, numClasses);
      const v = evaluatePredictions(probs, options.validation.labels, numClasses);
      logs.valLoss = v.loss;
      logs.valFinite = probs.every(Number.isFinite);
      logs.valAccuracy = v.accuracy;
    }
    await options.onEpochEnd?.(at.epoch, logs);
    if (at.epoch + 1 < options.epochs && options.shouldStop?.())
      return { position: { epoch: at.epoch + 1, batch: 0, lossSum: 0, correct: 0 }, stopped: true };
  }
  return { position: { ...at }, stopped: false };
}

export interface RecalibrationOptions {
  /** Images per forward pass: the training's pass size, so each pass normalises as training did. */
  passSize: number;
  /** Seeds the order the images are drawn in (a split is often stored class by class). */
  seed: number;
  /** At most this many images (default 2048). */
  maxImages?: number;
  /** After each pass, once the loop has yielded to the event loop. */
  onPass?: (pass: number, passes: number) => void;
  /** Checked after every pass: once true, stops and returns `stopped` (the statistics are then partial). */
  shouldStop?: () => boolean;
}

/**
 * Sets every batch norm's moving mean and variance to the average of its batch statistics over
 * the training images, in training mode and without updating a weight ("precise batch norm").
 * The moving averages training leaves (momentum 0.99, as in Keras) still weigh their initial
 * values 0 and 1 at 0.99^steps: after the tens or hundreds of steps of a short run (66 for the
 * default input, 128 for the demo) they are far from the statistics the network was trained
 * under, and inference-mode predictions suffer for it.
 * Only whole passes are used, so a short tail does not count a one-image variance of zero. The
 * result depends only on the weights, the images and the seed: a rerun gives the same statistics.
 * Returns how many images were used (0 when the model has no batch norm).
 */
export async function recalibrateBatchNorm(
  model: LayersModel,
  split: ImageSource,
  options: RecalibrationOptions,
): Promise<{ images: number; stopped: boolean }> {
  const tf = loadTf();
  const layers = model.layers.filter((l) => l.getClassName() === 'BatchNormalization') as unknown as { momentum: number }[];
  if (!layers.length || split.count === 0) return { images: 0, stopped: false };
  const pass = Math.max(1, Math.min(options.passSize, split.count));
  const passes = Math.max(1, Math.floor(Math.min(split.count, options.maxImages ?? 2048) / pass));
  const feed = openFeed(split, split.epochOrder(options.seed, 0).subarray(0, passes * pass));
  const momenta = layers.map((l) => l.momentum);
  try {
    for (let k = 0; k < passes; k++) {
      // The k-th pass moves each average 1/(k+1) of the way: a running mean of the passes' statistics.
      for (const l of layers) l.momentum = 1 - 1 / (k + 1);
      const xs = await batchInputs(feed, k * pass, pass);
      tf.tidy(() => {
        model.apply(xs, { training: true });
      });
      xs.dispose();
      await yieldToEventLoop();
      options.onPass?.(k + 1, passes);
      if (k + 1 < passes && options.shouldStop?.()) return { images: (k + 1) * pass, stopped: true };
    }
  } finally {
    layers.forEach((l, i) => (l.momentum = momenta[i]!));
    feed.reader.close();
  }
  return { images: passes * pass, stopped: false };
}

/** Class probabilities, row-major [n, numClasses], predicted in batches. */
export async function predictProbabilities(
  model: LayersModel,
  split: ImageSource,
  numClasses: number,
  batchSize = 64,
): Promise<Float32Array> {
  const tf = loadTf();
  const out = new Float32Array(split.count * numClasses);
  const feed = openFeed(split, naturalOrder(split.count));
  try {
    for (let start = 0; start < split.count; start += batchSize) {
      const xs = await batchInputs(feed, start, Math.min(batchSize, split.count - start));
      const probs = tf.tidy(() => model.predict(xs) as Tensor);
      out.set(await probs.data(), start * numClasses);
      tf.dispose([xs, probs]);
      await yieldToEventLoop();
    }
  } finally {
    feed.reader.close();
  }
  return out;
}
