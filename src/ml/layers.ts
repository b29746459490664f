/**
 * Layers of our own, each the built-in layer of the same name with a faster `call` (see
 * native-ops.ts). They serialise under the built-in class names with the built-in configs, so a
 * saved model loads in any tfjs; in this process loading one uses these classes.
 *
 * - `SeededDropout` ('Dropout'): Keras' inverted dropout with native, reproducible noise: the mask of
 *   training step `s` is drawn from (seed, s), and the loop sets `step` when it resumes.
 * - 'Conv2D': convolution + bias (+ ReLU) as one native kernel with lazily computed gradients.
 * - 'MaxPooling2D': pooling that keeps where each max came from, so its gradient is one scatter.
 * - 'BatchNormalization': training-mode normalisation, moving averages included, as one kernel (NHWC,
 *   last axis), with the ReLU of the activation layer that takes its output inside.
 * - 'Add': two inputs followed by a ReLU activation layer add and rectify in one pass.
 * - 'Activation': a ReLU over a tensor that is already a ReLU's output (from either of the two
 *   above, or a convolution with its ReLU inside) passes it on: ReLU is idempotent.
 */
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { isReluOutput, markReluOutput } from './gradient-hints';
import {
  ADD_RELU_KERNEL,
  BATCH_NORM_KERNEL,
  CONV_KERNEL,
  DROPOUT_KERNEL,
  installNativeGradients,
  maxPool,
  type BatchNormAttrs,
} from './native-ops';
import type { Tf } from './tf';

export interface SeededDropoutLayer {
  step: number;
  /** Where the next input starts in its batch, in images (a micro-batch's first image). */
  imageOffset: number;
}

interface DropoutArgs {
  rate: number;
  seed?: number;
}

type LayerClass = new (args: DropoutArgs) => InstanceType<Tf['layers']['Layer']> & SeededDropoutLayer;

let dropoutClass: LayerClass | undefined;

function defineSeededDropout(tf: Tf): LayerClass {
  class SeededDropout extends tf.layers.Layer implements SeededDropoutLayer {
    static className = 'Dropout';
    readonly rate: number;
    readonly seed: number;
    step = 0;
    imageOffset = 0;

    constructor(args: DropoutArgs & { name?: string; inputShape?: number[] }) {
      super(args);
      if (!(args.rate >= 0 && args.rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${args.rate}`);
      this.rate = args.rate;
      this.seed = args.seed ?? 0;
      this.supportsMasking = true;
    }

    override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      if (!kwargs.training || this.rate === 0) return x;
      // Element indices count from the batch's start, so a micro-batch draws its part of the whole batch's mask.
      const elementOffset = this.imageOffset * (x.size / x.shape[0]!);
      const seed = tf.tensor1d([this.seed | 0, this.step++ | 0, elementOffset | 0], 'int32');
      try {
        return tf.engine().runKernel(DROPOUT_KERNEL, { x, seed }, { rate: this.rate }) as Tensor;
      } finally {
        seed.dispose();
      }
    }

    override getConfig() {
      return { ...super.getConfig(), rate: this.rate, seed: this.seed };
    }
  }
  tf.serialization.registerClass(SeededDropout);
  return SeededDropout as unknown as LayerClass;
}

export function seededDropout(tf: Tf, args: DropoutArgs) {
  registerLayers(tf);
  return new dropoutClass!(args);
}

type Conv2DArgs = Parameters<Tf['layers']['conv2d']>[0];
type Pool2DArgs = Parameters<Tf['layers']['maxPooling2d']>[0];
type AnyLayer = InstanceType<Tf['layers']['Layer']>;
let convClass: (new (args: Conv2DArgs) => AnyLayer) | undefined;
let poolClass: (new (args: Pool2DArgs) => AnyLayer) | undefined;

/** The fields of tfjs' own Conv2D / MaxPooling2D that the faster calls read. */
interface ConvFields {
  rank: number;
  dataFormat: string;
  dilationRate: number[];
  strides: number[];
  padding: string;
  useBias: boolean;
  kernel: { read(): Tensor };
  bias: { read(): Tensor } | null;
  activation: { apply(x: Tensor): Tensor; getClassName(): string };
}
interface PoolFields {
  dataFormat: string;
  poolSize: number[];
  strides: number[];
  padding: string;
}

function defineConv2D(tf: Tf) {
  const Base = tf.layers.conv2d({ filters: 1, kernelSize: 1 }).constructor as new (args: Conv2DArgs) => AnyLayer;
  class Conv2D extends Base {
    static className = 'Conv2D';
    override call(inputs: Tensor | Tensor[], kwargs: object): Tensor {
      const f = this as unknown as ConvFields;
      if (f.rank !== 2 || f.dataFormat !== 'channelsLast' || f.dilationRate.some((d) => d !== 1))
        return super.call(inputs, kwargs) as Tensor;
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0]! : inputs;
        const hasBias = f.useBias && f.bias !== null;
        const conv = { x, filter: f.kernel.read(), ...(hasBias ? { bias: f.bias!.read() } : {}) };
        // A ReLU runs in the kernel, so its gradient and the bias' take one pass (CnnReluBiasGrad).
        const relu = f.activation.getClassName() === 'relu';
        const attrs = { strides: f.strides, pad: f.padding.toUpperCase(), relu, hasBias };
        const y = tf.engine().runKernel(CONV_KERNEL, conv, attrs) as Tensor;
        return relu ? y : f.activation.apply(y);
      });
    }
  }
  tf.serialization.registerClass(Conv2D as never);
  return Conv2D;
}

function defineMaxPooling2D(tf: Tf) {
  const Base = tf.layers.maxPooling2d({ poolSize: 2 }).constructor as new (args: Pool2DArgs) => AnyLayer;
  class MaxPooling2D extends Base {
    static className = 'MaxPooling2D';
    override call(inputs: Tensor | Tensor[], kwargs: object): Tensor {
      const f = this as unknown as PoolFields;
      if (f.dataFormat !== 'channelsLast') return super.call(inputs, kwargs) as Tensor;
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return maxPool(tf, x, { poolSize: f.poolSize, strides: f.strides, pad: f.padding.toUpperCase() });
    }
  }
  tf.serialization.registerClass(MaxPooling2D as never);
  return MaxPooling2D;
}

type BatchNormArgs = Parameters<Tf['layers']['batchNormalization']>[0];
let batchNormClass: (new (args: BatchNormArgs) => AnyLayer) | undefined;
let addClass: (new (args: object) => AnyLayer) | undefined;
let activationClass: (new (args: Parameters<Tf['layers']['activation']>[0]) => AnyLayer) | undefined;

interface BatchNormFields {
  axis: number;
  momentum: number;
  epsilon: number;
  gamma: { read(): Tensor } | null;
  beta: { read(): Tensor } | null;
  movingMean: { read(): Tensor; write(t: Tensor): void };
  movingVariance: { read(): Tensor; write(t: Tensor): void };
}

interface GraphFields {
  inboundNodes: unknown[];
  outboundNodes: { outboundLayer: AnyLayer }[];
}

/**
 * Whether the layer's output goes to one layer only, a ReLU activation of ours (which then passes
 * a rectified tensor on), in the one model it was applied in: the ReLU can run inside this layer.
 */
function onlyReluFollows(layer: AnyLayer): boolean {
  const { inboundNodes, outboundNodes } = layer as unknown as GraphFields;
  if (inboundNodes.length !== 1 || outboundNodes.length !== 1) return false;
  const next = outboundNodes[0]!.outboundLayer;
  return activationClass !== undefined && next instanceof activationClass && isRelu(next);
}

const isRelu = (layer: AnyLayer) => (layer as unknown as ConvFields).activation.getClassName() === 'relu';

function defineBatchNormalization(tf: Tf) {
  const Base = tf.layers.batchNormalization({}).constructor as new (args: BatchNormArgs) => AnyLayer;
  class BatchNormalization extends Base {
    static className = 'BatchNormalization';
    override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
      const f = this as unknown as BatchNormFields;
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      const lastAxis = f.axis === -1 || f.axis === x.rank - 1;
      if (!kwargs.training || x.rank !== 4 || !lastAxis || !f.gamma || !f.beta) return super.call(inputs, kwargs) as Tensor;
      const relu = onlyReluFollows(this);
      return tf.tidy(() => {
        const attrs: BatchNormAttrs = { epsilon: f.epsilon, rate: 1 - f.momentum, relu };
        const [y, movedMean, movedVariance] = tf
          .engine()
          .runKernel(
            BATCH_NORM_KERNEL,
            { x, scale: f.gamma!.read(), offset: f.beta!.read(), movingMean: f.movingMean.read(), movingVariance: f.movingVariance.read() },
            attrs as never,
          ) as Tensor[];
        f.movingMean.write(movedMean!);
        f.movingVariance.write(movedVariance!);
        if (relu) markReluOutput(y!);
        return y!;
      });
    }
  }
  tf.serialization.registerClass(BatchNormalization as never);
  return BatchNormalization;
}

function defineAdd(tf: Tf) {
  const Base = tf.layers.add({}).constructor as new (args: object) => AnyLayer;
  class Add extends Base {
    static className = 'Add';
    override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
      const [a, b, ...more] = Array.isArray(inputs) ? inputs : [inputs];
      if (!a || !b || more.length || !tf.util.arraysEqual(a.shape, b.shape) || !onlyReluFollows(this))
        return super.call(inputs, kwargs) as Tensor;
      const y = tf.engine().runKernel(ADD_RELU_KERNEL, { a, b }) as Tensor;
      markReluOutput(y);
      return y;
    }
  }
  tf.serialization.registerClass(Add as never);
  return Add;
}

function defineActivation(tf: Tf) {
  const Base = tf.layers.activation({ activation: 'relu' }).constructor as new (
    args: Parameters<Tf['layers']['activation']>[0],
  ) => AnyLayer;
  class Activation extends Base {
    static className = 'Activation';
    override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      if (!isRelu(this) || !isReluOutput(x)) return super.call(inputs, kwargs) as Tensor;
      // Layer.apply hands on an input returned as is as a new handle on the same data (a clone).
      return x;
    }
  }
  tf.serialization.registerClass(Activation as never);
  return Activation;
}

export function batchNormalization(tf: Tf, args: BatchNormArgs): AnyLayer {
  registerLayers(tf);
  return new batchNormClass!(args);
}

export function conv2d(tf: Tf, args: Conv2DArgs): AnyLayer {
  registerLayers(tf);
  return new convClass!(args);
}

export function maxPooling2d(tf: Tf, args: Pool2DArgs): AnyLayer {
  registerLayers(tf);
  return new poolClass!(args);
}

export function add(tf: Tf): AnyLayer {
  registerLayers(tf);
  return new addClass!({});
}

export function activation(tf: Tf, args: Parameters<Tf['layers']['activation']>[0]): AnyLayer {
  registerLayers(tf);
  return new activationClass!(args);
}

/** Registers our kernels and layer classes, so models we saved load with them (call before loading one). */
export function registerLayers(tf: Tf): void {
  installNativeGradients(tf);
  dropoutClass ??= defineSeededDropout(tf);
  convClass ??= defineConv2D(tf);
  poolClass ??= defineMaxPooling2D(tf);
  batchNormClass ??= defineBatchNormalization(tf);
  addClass ??= defineAdd(tf);
  activationClass ??= defineActivation(tf);
}

/**
 * Sets every seeded dropout's position: the step (one per batch) and the first image of the next
 * pass within its batch. A resumed run draws the masks it would have, however its batches are split.
 */
export function setDropoutPosition(model: LayersModel, step: number, imageOffset = 0): void {
  for (const layer of model.layers)
    if ('step' in layer && layer.getClassName() === 'Dropout') Object.assign(layer as unknown as SeededDropoutLayer, { step, imageOffset });
}
