/**
 * Training ops that stock tfjs-node runs slowly, done by TensorFlow's own kernels instead, through
 * the native backend's `executeSingleOutput` (the binding tfjs-node's kernels use themselves).
 *
 * - Convolution + bias (`CnnConv2D`): one oneDNN kernel (`_MklNativeConv2DWithBias`, or with a ReLU
 *   inside `_MklNativeFusedConv2D`, as TensorFlow's graph rewrite fuses them for Keras) instead of a
 *   convolution and a broadcast add over the whole activation; its gradients are TensorFlow's
 *   Conv2DBackpropInput/Filter and BiasAddGrad, each computed only when needed (tfjs' fused
 *   convolution computes the input gradient of the first layer too, which nothing uses). With a
 *   ReLU inside, the ReLU's gradient and the bias' take one pass (`CnnReluBiasGrad`), or none when
 *   the layer above already went through them (see throughRelu).
 * - Batch normalisation in training (`CnnBatchNorm`, from the ops library): statistics, the
 *   normalised output and the moving averages in one kernel, with the ReLU that follows inside
 *   when the layer above is one (see layers.ts), and its gradient (through that ReLU) in one more:
 *   two ops where tfjs runs about twenty, each of which kept its intermediate for the gradient
 *   (ResNet50 at 224 px, batch 32, ran out of 24 GiB that way), and where FusedBatchNormV3, a
 *   moving-average op and a ReLU each took a pass of their own.
 * - A residual block's add and the ReLU after it (`CnnAddRelu`) in one pass; its gradient is
 *   ReluGrad, given to both inputs.
 * - Max pooling (`CnnMaxPool`, from the ops library): keeps where each max came from, one byte per
 *   value, so its gradient is one pass that writes each value once, instead of TensorFlow's
 *   MaxPoolGrad, which searches every window again; the gradient also gives the bias' gradient
 *   below it, and over a ReLU's output the ReLU's. Taken through customGrad, so the engine does not
 *   fill a zero gradient for the positions output at every step.
 * - Identity's gradient: a new handle on dy's data, not a copy (see installIdentityGradient).
 * - ReLU's gradient: tfjs-node builds it from `step`, whose kernel fills JS-side `ones`/`fill`
 *   tensors of the activation's full size and selects between them; TensorFlow's `ReluGrad` is one
 *   multithreaded pass. At 224 px this alone was most of a Basic CNN's gradient step.
 * - Dropout (`CnnDropout`, from this project's ops library, src/native/cnn_ops.cc): one pass that
 *   hashes (seed, step, element) into the keep decision and scales, instead of a Philox uniform
 *   draw and four elementwise ops over the activation; its gradient is the same op on dy (the mask
 *   is recomputed, never stored), or over a ReLU's output `CnnDropoutReluGrad`, through the ReLU
 *   and with the bias' gradient too. Seeded by (layer seed, step), every mask is reproducible, so a
 *   run resumed from a checkpoint draws the same masks as one that never stopped.
 * - The squared gradient norm for the trainer's finite check (`CnnSquaredNorm`) in one read of the
 *   gradients.
 */
import type { Tensor } from '@tensorflow/tfjs-node';
import { describeGradient, isReluOutput, isThroughRelu, knownChannelSums, markReluOutput } from './gradient-hints';
import { attrKit, consume, native, onednnEnabled, reshape, type Attr, type AttrKit, type NativeBackend } from './native-backend';
import type { Tf } from './tf';

export const CONV_KERNEL = 'CnnConv2D';
export const MAX_POOL_KERNEL = 'CnnMaxPool';
export const BATCH_NORM_KERNEL = 'CnnBatchNorm';
export const DROPOUT_KERNEL = 'CnnDropout';
export const ADD_RELU_KERNEL = 'CnnAddRelu';

export interface BatchNormAttrs {
  epsilon: number;
  /** How far the moving averages move towards the batch's statistics: 1 - momentum. */
  rate: number;
  /** A ReLU follows, inside the same kernel. */
  relu: boolean;
}

export interface PoolAttrs {
  poolSize: number[];
  strides: number[];
  pad: string;
  /** The input is a ReLU's output (see gradient-hints.ts). */
  reluInput?: boolean;
}

/** Max pooling by this project's CnnMaxPool, its gradient a scatter to the positions it kept. */
export function maxPool(tf: Tf, x: Tensor, pool: PoolAttrs): Tensor {
  installNativeGradients(tf);
  const attrs = { ...pool, reluInput: isReluOutput(x) };
  // Through customGrad, which records the pooled tensor as the only output: the engine fills a
  // zero gradient for every output nothing differentiates.
  const run = tf.customGrad(((input: Tensor, save: (tensors: Tensor[]) => void) => {
    const [y, positions] = tf.engine().runKernel(MAX_POOL_KERNEL, { x: input }, attrs as never) as [Tensor, Tensor];
    save([positions]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [dx, sums] = maxPoolGrad(tf, dy, saved[0]!, input.shape, attrs);
        describeGradient(dx, { channelSums: sums, throughRelu: attrs.reluInput });
        return [dx];
      },
    };
  }) as never) as (input: Tensor) => Tensor;
  return run(x);
}

/**
 * The sum of the squares of every value of `tensors`, accumulated in double (CnnSquaredNorm, one
 * read pass, no temporaries); inf when it passes float's range, NaN when any value is.
 */
export function squaredNorm(tf: Tf, tensors: Tensor[]): Tensor {
  return native(tf).executeSingleOutput('CnnSquaredNorm', [attrKit(tf).int('N', tensors.length)], tensors);
}

const installedIn = new WeakSet<object>();

/** Registers the native kernels and gradients once per process (idempotent). */
export function installNativeGradients(tf: Tf): void {
  if (installedIn.has(tf)) return;
  installedIn.add(tf);
  const k = attrKit(tf);
  installConvolution(tf, k);
  installBatchNorm(tf, k);
  installMaxPool(tf, k);
  installDropout(tf, k);
  installReluGradient(tf, k);
  installIdentityGradient(tf);
}

const backendOf = (backend: unknown) => backend as NativeBackend;

function installConvolution(tf: Tf, k: AttrKit): void {
  const T = k.float32();
  const convAttrs = (a: { strides: [number, number]; pad: 'SAME' | 'VALID' }): Attr[] => [
    T,
    k.nhwc,
    k.int('strides', [1, a.strides[0], a.strides[1], 1]),
    k.str('padding', a.pad),
    k.int('dilations', [1, 1, 1, 1]),
  ];
  // Convolution, bias and ReLU in one oneDNN kernel (its ReLU a post-op on the output in cache), as
  // TensorFlow's graph rewrite fuses them for Keras: `_FusedConv2D`'s attributes.
  const fusedBiasRelu: Attr[] = [
    { ...k.float32('TArgs'), value: [k.float32().value] },
    k.int('num_args', 1),
    k.int('num_host_args', 0),
    k.str('fused_ops', ['BiasAdd', 'Relu']),
    k.bool('is_filter_const', false),
    k.int('explicit_paddings', []),
    k.str('filter_format', 'HWIO'),
    k.bool('use_cudnn_on_gpu', true),
    k.float('epsilon', 0.0001),
    k.float('leakyrelu_alpha', 0.2),
  ];

  tf.registerKernel({
    kernelName: CONV_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backendOf(backend);
      const { x, filter, bias } = inputs as { x: Tensor; filter: Tensor; bias?: Tensor };
      const a = convAttrs(attrs as never);
      const relu = (attrs as { relu?: boolean }).relu === true;
      let y: Tensor;
      if (isPointwise(filter, attrs as never)) {
        y = pointwiseForward(tf, k, x, filter);
        if (bias) y = consume(y, be.executeSingleOutput('BiasAdd', [T, k.nhwc], [y, bias]));
        if (relu) y = consume(y, be.executeSingleOutput('Relu', [T], [y]));
      } else if (bias && relu && onednnEnabled())
        y = be.executeSingleOutput('_MklNativeFusedConv2D', [...a, ...fusedBiasRelu, k.mkl], [x, filter, bias]);
      else {
        if (bias && onednnEnabled()) y = be.executeSingleOutput('_MklNativeConv2DWithBias', [...a, k.mkl], [x, filter, bias]);
        else {
          y = be.executeSingleOutput('Conv2D', a, [x, filter]);
          if (bias) y = consume(y, be.executeSingleOutput('BiasAdd', [T, k.nhwc], [y, bias]));
        }
        if (relu) y = consume(y, be.executeSingleOutput('Relu', [T], [y]));
      }
      if (relu) markReluOutput(y);
      return y;
    },
  });
  tf.registerGradient({
    kernelName: CONV_KERNEL,
    inputsToSave: ['x', 'filter'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const be = native(tf);
      const [x, filter, y] = saved as [Tensor, Tensor, Tensor];
      const a = convAttrs(attrs as never);
      const { relu, hasBias } = attrs as { relu?: boolean; hasBias?: boolean };
      // Through the ReLU and the bias in one pass (CnnReluBiasGrad); as with batch norm, computed
      // here in the gradient pass's scope, not in a thunk, so the thunks can share it.
      let dz = dy as Tensor;
      let db: Tensor | undefined;
      if (relu && isThroughRelu(dz)) db = hasBias ? knownChannelSums(dz) : undefined;
      else if (relu && hasBias) [dz, db] = be.executeMultipleOutputs('CnnReluBiasGrad', [], [dz, y], 2) as [Tensor, Tensor];
      else if (relu) dz = be.executeSingleOutput('ReluGrad', [T], [dz, y]);
      if (isPointwise(filter, attrs as never)) {
        const rows = dz.size / dz.shape[3]!;
        const dz2 = reshape(tf, dz, [rows, dz.shape[3]!]);
        return {
          x: () => reshape(tf, matMul(tf, k, dz2, reshape(tf, filter, filter.shape.slice(2)), false, true), x.shape),
          filter: () => reshape(tf, matMul(tf, k, reshape(tf, x, [rows, x.shape[3]!]), dz2, true, false), filter.shape),
          bias: () => db ?? knownChannelSums(dz) ?? be.executeSingleOutput('BiasAddGrad', [T, k.nhwc], [dz]),
        };
      }
      return {
        x: () => be.executeSingleOutput('Conv2DBackpropInput', a, [tf.tensor1d(x.shape, 'int32'), filter, dz]),
        filter: () => be.executeSingleOutput('Conv2DBackpropFilter', a, [x, tf.tensor1d(filter.shape, 'int32'), dz]),
        bias: () => db ?? knownChannelSums(dz) ?? be.executeSingleOutput('BiasAddGrad', [T, k.nhwc], [dz]),
      };
    },
  });
}

/**
 * A 1x1 convolution with stride 1 is one matrix product of the [pixels, channels] view of its
 * input with the [in, out] view of its filter; oneDNN's MatMul runs it, and both of its gradients,
 * faster than its convolution kernels (ResNet50's 1x1 shapes at 64 and 224 px, measured op by op).
 */
function isPointwise(filter: Tensor, a: { strides: [number, number] }): boolean {
  return filter.shape[0] === 1 && filter.shape[1] === 1 && a.strides[0] === 1 && a.strides[1] === 1;
}

function pointwiseForward(tf: Tf, k: AttrKit, x: Tensor, filter: Tensor): Tensor {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const x2 = reshape(tf, x, [n * h * w, c]);
  const f2 = reshape(tf, filter, filter.shape.slice(2));
  const y2 = matMul(tf, k, x2, f2, false, false);
  x2.dispose();
  f2.dispose();
  return consume(y2, reshape(tf, y2, [n, h, w, filter.shape[3]!]));
}

function matMul(tf: Tf, k: AttrKit, a: Tensor, b: Tensor, transposeA: boolean, transposeB: boolean): Tensor {
  return native(tf).executeSingleOutput(
    'MatMul',
    [k.float32(), k.bool('transpose_a', transposeA), k.bool('transpose_b', transposeB)],
    [a, b],
  );
}

function installBatchNorm(tf: Tf, k: AttrKit): void {
  tf.registerKernel({
    kernelName: BATCH_NORM_KERNEL,
    backendName: 'tensorflow',
    // Outputs: y, the moved moving mean and variance, and the batch's mean and 1/sqrt(variance + epsilon) for the gradient.
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, scale, offset, movingMean, movingVariance } = inputs as Record<string, Tensor>;
      const a = attrs as unknown as BatchNormAttrs;
      return backendOf(backend).executeMultipleOutputs(
        BATCH_NORM_KERNEL,
        [k.float('epsilon', a.epsilon), k.float('rate', a.rate), k.bool('relu', a.relu)],
        [x!, scale!, offset!, movingMean!, movingVariance!],
        5,
      );
    },
  });
  tf.registerGradient({
    kernelName: BATCH_NORM_KERNEL,
    inputsToSave: ['x', 'scale'],
    outputsToSave: [true, false, false, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, scale, y, mean, invStd] = saved as Tensor[];
      const grad = Array.isArray(dy) ? dy[0]! : dy;
      const relu = (attrs as unknown as BatchNormAttrs).relu;
      // One kernel gives all three gradients. It runs here, in the gradient pass's own scope (which
      // frees what is not returned), not in a thunk: each thunk runs in a scope of its own, which
      // would free the other two.
      const out = native(tf).executeMultipleOutputs('CnnBatchNormGrad', [k.bool('relu', relu)], [grad, x!, y!, scale!, mean!, invStd!], 3);
      const get = (i: number) => () => out[i]!;
      // The moving averages are not trained: nothing asks for their gradients.
      return { x: get(0), scale: get(1), offset: get(2) };
    },
  });
  tf.registerKernel({
    kernelName: ADD_RELU_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend }) =>
      backendOf(backend).executeSingleOutput(ADD_RELU_KERNEL, [], [inputs.a as Tensor, inputs.b as Tensor]),
  });
  tf.registerGradient({
    kernelName: ADD_RELU_KERNEL,
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      // Computed once here and given to both inputs: they get the same gradient.
      const dz = native(tf).executeSingleOutput('ReluGrad', [k.float32()], [dy as Tensor, saved[0]!]);
      return { a: () => dz, b: () => dz.clone() };
    },
  });
}

const poolAttrs = (k: AttrKit, a: PoolAttrs): Attr[] => [k.int('ksize', a.poolSize), k.int('strides', a.strides), k.str('padding', a.pad)];

function installMaxPool(tf: Tf, k: AttrKit): void {
  tf.registerKernel({
    kernelName: MAX_POOL_KERNEL,
    backendName: 'tensorflow',
    // Outputs: the pooled tensor and where each value came from (opaque; only the gradient reads it).
    kernelFunc: ({ inputs, backend, attrs }) => {
      const a = attrs as unknown as PoolAttrs;
      return backendOf(backend).executeMultipleOutputs(
        'CnnMaxPool',
        [...poolAttrs(k, a), k.bool('relu_input', a.reluInput === true)],
        [inputs.x as Tensor],
        2,
      );
    },
  });
}

/** The input gradient of maxPool and its per-channel sums (CnnMaxPoolGrad). */
function maxPoolGrad(tf: Tf, dy: Tensor, positions: Tensor, inputShape: number[], attrs: PoolAttrs): [Tensor, Tensor] {
  const shape = tf.tensor1d(inputShape, 'int32');
  try {
    return native(tf).executeMultipleOutputs('CnnMaxPoolGrad', poolAttrs(attrKit(tf), attrs), [dy, positions, shape], 2) as [
      Tensor,
      Tensor,
    ];
  } finally {
    shape.dispose();
  }
}

function installDropout(tf: Tf, k: AttrKit): void {
  const dropoutAttrs = (a: { rate: number }): Attr[] => [k.float('rate', a.rate)];
  tf.registerKernel({
    kernelName: DROPOUT_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend, attrs }) =>
      backendOf(backend).executeSingleOutput(DROPOUT_KERNEL, dropoutAttrs(attrs as never), [inputs.x as Tensor, inputs.seed as Tensor]),
  });
  tf.registerGradient({
    kernelName: DROPOUT_KERNEL,
    inputsToSave: ['seed', 'x'],
    gradFunc: (dy, saved, attrs) => {
      const [seed, x] = saved as [Tensor, Tensor];
      if (!isReluOutput(x))
        return { x: () => native(tf).executeSingleOutput(DROPOUT_KERNEL, dropoutAttrs(attrs as never), [dy as Tensor, seed]) };
      // Below a convolution's ReLU: through the ReLU too, with the bias' gradient (see gradient-hints.ts).
      const [dx, sums] = native(tf).executeMultipleOutputs(
        'CnnDropoutReluGrad',
        dropoutAttrs(attrs as never),
        [dy as Tensor, seed, x],
        2,
      ) as [Tensor, Tensor];
      describeGradient(dx, { channelSums: sums, throughRelu: true });
      return { x: () => dx };
    },
  });
}

/** TensorFlow's ReluGrad, one multithreaded pass, instead of tfjs-node's `step`-based gradient. */
function installReluGradient(tf: Tf, k: AttrKit): void {
  const T = k.float32();
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => native(tf).executeSingleOutput('ReluGrad', [T], [dy as Tensor, saved[0]!]) }),
  });
}

/**
 * Identity's gradient as a new handle on dy's data. tfjs' own casts dy to float32, which on this
 * backend is a TensorFlow Cast, a copy, even when dy is float32 already; a layer that passes its
 * input through (a ReLU over a ReLU's output) is an Identity, so each paid a copy per step.
 */
function installIdentityGradient(tf: Tf): void {
  tf.registerGradient({
    kernelName: 'Identity',
    gradFunc: (dy) => {
      const g = dy as Tensor;
      return { x: () => (g.dtype === 'float32' ? g.clone() : g.cast('float32')) };
    },
  });
}
