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
 * - Batch normalisation in training (`CnnBatchNorm`): TensorFlow's FusedBatchNormV3 and its
 *   gradient, two kernels instead of about twenty tfjs ops, which also kept every intermediate
 *   for their gradients (ResNet50 at 224 px, batch 32, ran out of 24 GiB that way).
 * - Max pooling (`CnnMaxPool`, from the ops library): keeps where each max came from, one byte per
 *   value, so its gradient is one pass that writes each value once, instead of TensorFlow's
 *   MaxPoolGrad, which searches every window again; the gradient also gives the bias' gradient
 *   below it, and over a ReLU's output the ReLU's. Taken through customGrad, so the engine does not
 *   fill a zero gradient for the positions output at every step.
 * - ReLU's gradient: tfjs-node builds it from `step`, whose kernel fills JS-side `ones`/`fill`
 *   tensors of the activation's full size and selects between them; TensorFlow's `ReluGrad` is one
 *   multithreaded pass. At 224 px this alone was most of a Basic CNN's gradient step.
 * - Dropout (`CnnDropout`, from this project's ops library, src/native/cnn_ops.cc): one pass that
 *   hashes (seed, step, element) into the keep decision and scales, instead of a Philox uniform
 *   draw and four elementwise ops over the activation; its gradient is the same op on dy (the mask
 *   is recomputed, never stored), or over a ReLU's output `CnnDropoutReluGrad`, through the ReLU
 *   and with the bias' gradient too. Seeded by (layer seed, step), every mask is reproducible, so a
 *   run resumed from a checkpoint draws the same masks as one that never stopped.
 * - Batch norm's moving averages (`CnnMovingAverages`) in one op per layer and step, and the squared
 *   gradient norm for the trainer's finite check (`CnnSquaredNorm`) in one read of the gradients.
 */
import type { Tensor } from '@tensorflow/tfjs-node';
import type { Tf } from './tf';

interface Attr {
  name: string;
  type: number;
  value: unknown;
}

interface NativeBackend {
  binding: {
    TF_ATTR_TYPE: number;
    TF_ATTR_INT: number;
    TF_ATTR_FLOAT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_BOOL: number;
    TF_FLOAT: number;
  };
  executeSingleOutput(name: string, attrs: Attr[], inputs: Tensor[]): Tensor;
  executeMultipleOutputs(name: string, attrs: Attr[], inputs: Tensor[], count: number): Tensor[];
}

export const CONV_KERNEL = 'CnnConv2D';
export const MAX_POOL_KERNEL = 'CnnMaxPool';
export const BATCH_NORM_KERNEL = 'CnnBatchNorm';
export const DROPOUT_KERNEL = 'CnnDropout';

/** oneDNN is on in this process (read once by libtensorflow when it loaded). */
function onednnEnabled(): boolean {
  return process.env.TF_ENABLE_ONEDNN_OPTS === '1';
}

let installed = false;

export interface PoolAttrs {
  poolSize: number[];
  strides: number[];
  pad: string;
  /** The input is a ReLU's output (see throughRelu). */
  reluInput?: boolean;
}
/**
 * Per-channel sums of a gradient, given by the op that made it: a bias added below that layer takes
 * them as its gradient. Max pooling's input gradient puts each pooled gradient in one place (where
 * its max came from, adding where windows overlap), so per channel both sum to the same, and its
 * gradient op sums the pooled one; CnnDropoutReluGrad sums as it writes.
 */
const channelSums = new WeakMap<Tensor, Tensor>();
/**
 * Gradients already through the ReLU below: a max pool over a ReLU's output sends nothing to a
 * window whose max is 0, which is where the ReLU's gradient is 0 (the max is where it is not); a
 * dropout over one masks where the ReLU's output is 0 as it applies its own mask.
 */
const throughRelu = new WeakSet<Tensor>();
/** Outputs of convolutions with their ReLU inside, by data (the engine wraps outputs in new tensors). */
const reluOutputs = new WeakSet<object>();
function isReluOutput(x: Tensor): boolean {
  return reluOutputs.has(x.dataId as object);
}
/** `dy`'s per-channel sums, when the op that made `dy` gave them. */
function knownChannelSums(dy: Tensor): Tensor | undefined {
  const sums = channelSums.get(dy);
  return sums && !sums.isDisposed ? sums : undefined;
}
let poolGrad: ((dy: Tensor, positions: Tensor, inputShape: number[], attrs: PoolAttrs) => [Tensor, Tensor]) | undefined;

/** Max pooling by this project's CnnMaxPool, its gradient a scatter to the positions it kept. */
export function maxPool(tf: Tf, x: Tensor, pool: PoolAttrs): Tensor {
  installNativeGradients(tf);
  const attrs = { ...pool, reluInput: isReluOutput(x) };
  const run = tf.customGrad(((input: Tensor, save: (tensors: Tensor[]) => void) => {
    const [y, positions] = tf.engine().runKernel(MAX_POOL_KERNEL, { x: input }, attrs as never) as [Tensor, Tensor];
    save([positions]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [dx, sums] = poolGrad!(dy, saved[0]!, input.shape, attrs);
        channelSums.set(dx, sums);
        if (attrs.reluInput) throughRelu.add(dx);
        return [dx];
      },
    };
  }) as never) as (input: Tensor) => Tensor;
  return run(x);
}

/** Returns `next`, freeing `previous` (an intermediate no one else holds). */
function consume(previous: Tensor, next: Tensor): Tensor {
  previous.dispose();
  return next;
}

/**
 * Batch norm's moving mean and variance moved towards a batch's mean and Bessel-corrected variance
 * (CnnMovingAverages): `avg - (avg - batch) * rate`, the variance first scaled by `varianceScale`.
 * Not differentiated.
 */
export function movingAverages(
  tf: Tf,
  stats: [Tensor, Tensor, Tensor, Tensor],
  a: { rate: number; varianceScale: number },
): [Tensor, Tensor] {
  const be = native(tf);
  const f = be.binding.TF_ATTR_FLOAT;
  const attrs = [
    { name: 'rate', type: f, value: a.rate },
    { name: 'variance_scale', type: f, value: a.varianceScale },
  ];
  return be.executeMultipleOutputs('CnnMovingAverages', attrs, stats, 2) as [Tensor, Tensor];
}

/**
 * The sum of the squares of every value of `tensors`, accumulated in double (CnnSquaredNorm, one
 * read pass, no temporaries); inf when it passes float's range, NaN when any value is.
 */
export function squaredNorm(tf: Tf, tensors: Tensor[]): Tensor {
  const be = native(tf);
  return be.executeSingleOutput('CnnSquaredNorm', [{ name: 'N', type: be.binding.TF_ATTR_INT, value: tensors.length }], tensors);
}

function native(tf: Tf): NativeBackend {
  return tf.backend() as unknown as NativeBackend;
}

/** Registers the native kernels and gradients once per process (idempotent). */
export function installNativeGradients(tf: Tf): void {
  if (installed) return;
  installed = true;
  const b = native(tf).binding;
  const T: Attr = { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT };
  const nhwc: Attr = { name: 'data_format', type: b.TF_ATTR_STRING, value: 'NHWC' };
  // oneDNN's kernels under their registered label, as TensorFlow's graph rewrite would pick them.
  const mkl: Attr = { name: '_kernel', type: b.TF_ATTR_STRING, value: 'MklNameChangeOp' };
  const convAttrs = (a: { strides: [number, number]; pad: 'SAME' | 'VALID' }): Attr[] => [
    T,
    nhwc,
    { name: 'strides', type: b.TF_ATTR_INT, value: [1, a.strides[0], a.strides[1], 1] },
    { name: 'padding', type: b.TF_ATTR_STRING, value: a.pad },
    { name: 'dilations', type: b.TF_ATTR_INT, value: [1, 1, 1, 1] },
  ];
  // Convolution, bias and ReLU in one oneDNN kernel (its ReLU a post-op on the output in cache), as
  // TensorFlow's graph rewrite fuses them for Keras. `_FusedConv2D`'s attributes, every one given:
  // the eager runtime does not fill in defaults for these internal ops.
  const fusedBiasRelu: Attr[] = [
    { name: 'TArgs', type: b.TF_ATTR_TYPE, value: [b.TF_FLOAT] },
    { name: 'num_args', type: b.TF_ATTR_INT, value: 1 },
    { name: 'num_host_args', type: b.TF_ATTR_INT, value: 0 },
    { name: 'fused_ops', type: b.TF_ATTR_STRING, value: ['BiasAdd', 'Relu'] },
    { name: 'is_filter_const', type: b.TF_ATTR_BOOL, value: false },
    { name: 'explicit_paddings', type: b.TF_ATTR_INT, value: [] },
    { name: 'filter_format', type: b.TF_ATTR_STRING, value: 'HWIO' },
    { name: 'use_cudnn_on_gpu', type: b.TF_ATTR_BOOL, value: true },
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: 0.0001 },
    { name: 'leakyrelu_alpha', type: b.TF_ATTR_FLOAT, value: 0.2 },
  ];
  const poolAttrs = (a: { poolSize: [number, number]; strides: [number, number]; pad: 'SAME' | 'VALID' }): Attr[] => [
    { name: 'ksize', type: b.TF_ATTR_INT, value: a.poolSize },
    { name: 'strides', type: b.TF_ATTR_INT, value: a.strides },
    { name: 'padding', type: b.TF_ATTR_STRING, value: a.pad },
  ];

  tf.registerKernel({
    kernelName: CONV_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as NativeBackend;
      const { x, filter, bias } = inputs as { x: Tensor; filter: Tensor; bias?: Tensor };
      const a = convAttrs(attrs as never);
      const relu = (attrs as { relu?: boolean }).relu === true;
      let y: Tensor;
      if (bias && relu && onednnEnabled())
        y = be.executeSingleOutput('_MklNativeFusedConv2D', [...a, ...fusedBiasRelu, mkl], [x, filter, bias]);
      else {
        if (bias && onednnEnabled()) y = be.executeSingleOutput('_MklNativeConv2DWithBias', [...a, mkl], [x, filter, bias]);
        else {
          y = be.executeSingleOutput('Conv2D', a, [x, filter]);
          if (bias) y = consume(y, be.executeSingleOutput('BiasAdd', [T, nhwc], [y, bias]));
        }
        if (relu) y = consume(y, be.executeSingleOutput('Relu', [T], [y]));
      }
      if (relu) reluOutputs.add(y.dataId as object);
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
      if (relu && throughRelu.has(dz)) db = hasBias ? knownChannelSums(dz) : undefined;
      else if (relu && hasBias) [dz, db] = be.executeMultipleOutputs('CnnReluBiasGrad', [], [dz, y], 2) as [Tensor, Tensor];
      else if (relu) dz = be.executeSingleOutput('ReluGrad', [T], [dz, y]);
      return {
        x: () => be.executeSingleOutput('Conv2DBackpropInput', a, [tf.tensor1d(x.shape, 'int32'), filter, dz]),
        filter: () => be.executeSingleOutput('Conv2DBackpropFilter', a, [x, tf.tensor1d(filter.shape, 'int32'), dz]),
        bias: () => db ?? knownChannelSums(dz) ?? be.executeSingleOutput('BiasAddGrad', [T, nhwc], [dz]),
      };
    },
  });

  const bnAttrs = (a: { epsilon: number }): Attr[] => [
    T,
    { name: 'U', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
    nhwc,
    { name: 'epsilon', type: b.TF_ATTR_FLOAT, value: a.epsilon },
    { name: 'is_training', type: b.TF_ATTR_BOOL, value: true },
  ];
  tf.registerKernel({
    kernelName: BATCH_NORM_KERNEL,
    backendName: 'tensorflow',
    // Outputs: y, batch mean, batch variance (Bessel-corrected), and three opaque reserve spaces for the gradient.
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, scale, offset } = inputs as { x: Tensor; scale: Tensor; offset: Tensor };
      const empty = tf.tensor1d([]);
      const out = (backend as unknown as NativeBackend).executeMultipleOutputs(
        'FusedBatchNormV3',
        bnAttrs(attrs as never),
        [x, scale, offset, empty, empty],
        6,
      );
      empty.dispose();
      return out;
    },
  });
  tf.registerGradient({
    kernelName: BATCH_NORM_KERNEL,
    inputsToSave: ['x', 'scale'],
    outputsToSave: [false, false, false, true, true, true],
    gradFunc: (dy, saved, attrs) => {
      const [x, scale, r1, r2, r3] = saved as Tensor[];
      const grad = Array.isArray(dy) ? dy[0]! : dy;
      // One kernel gives all three gradients. It runs here, in the gradient pass's own scope (which
      // frees what is not returned), not in a thunk: each thunk runs in a scope of its own, which
      // would free the other two.
      const out = native(tf).executeMultipleOutputs('FusedBatchNormGradV3', bnAttrs(attrs as never), [grad, x!, scale!, r1!, r2!, r3!], 5);
      const get = (i: number) => () => out[i]!;
      return { x: get(0), scale: get(1), offset: get(2) };
    },
  });

  tf.registerKernel({
    kernelName: MAX_POOL_KERNEL,
    backendName: 'tensorflow',
    // Outputs: the pooled tensor and where each value came from (opaque; only the gradient reads it).
    kernelFunc: ({ inputs, backend, attrs }) =>
      (backend as unknown as NativeBackend).executeMultipleOutputs(
        'CnnMaxPool',
        [
          ...poolAttrs(attrs as never),
          { name: 'relu_input', type: b.TF_ATTR_BOOL, value: (attrs as unknown as PoolAttrs).reluInput === true },
        ],
        [inputs.x as Tensor],
        2,
      ),
  });
  // Its gradient is taken through customGrad (maxPool above), which records the pooled tensor as
  // the only output: the engine fills a zero gradient for every output nothing differentiates.
  poolGrad = (dy, positions, inputShape, attrs) => {
    const shape = tf.tensor1d(inputShape, 'int32');
    try {
      return native(tf).executeMultipleOutputs('CnnMaxPoolGrad', poolAttrs(attrs as never), [dy, positions, shape], 2) as [Tensor, Tensor];
    } finally {
      shape.dispose();
    }
  };

  const dropoutAttrs = (a: { rate: number }): Attr[] => [{ name: 'rate', type: b.TF_ATTR_FLOAT, value: a.rate }];
  tf.registerKernel({
    kernelName: DROPOUT_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend, attrs }) =>
      (backend as unknown as NativeBackend).executeSingleOutput(DROPOUT_KERNEL, dropoutAttrs(attrs as never), [
        inputs.x as Tensor,
        inputs.seed as Tensor,
      ]),
  });
  tf.registerGradient({
    kernelName: DROPOUT_KERNEL,
    inputsToSave: ['seed', 'x'],
    gradFunc: (dy, saved, attrs) => {
      const [seed, x] = saved as [Tensor, Tensor];
      if (!isReluOutput(x))
        return { x: () => native(tf).executeSingleOutput(DROPOUT_KERNEL, dropoutAttrs(attrs as never), [dy as Tensor, seed]) };
      // Below a convolution's ReLU: through the ReLU too, with the bias' gradient (see throughRelu).
      const [dx, sums] = native(tf).executeMultipleOutputs(
        'CnnDropoutReluGrad',
        dropoutAttrs(attrs as never),
        [dy as Tensor, seed, x],
        2,
      ) as [Tensor, Tensor];
      channelSums.set(dx, sums);
      throughRelu.add(dx);
      return { x: () => dx };
    },
  });

  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({
      x: () => {
        const backend = native(tf);
        const T = { name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
        return backend.executeSingleOutput('ReluGrad', [T], [dy as Tensor, saved[0]!]);
      },
    }),
  });
}
