/**
 * Training ops that stock tfjs-node runs slowly, done by TensorFlow's own kernels instead, through
 * the native backend's `executeSingleOutput` (the binding tfjs-node's kernels use themselves).
 *
 * - Convolution + bias (`CnnConv2D`): one oneDNN kernel (`_MklNativeConv2DWithBias`) instead of a
 *   convolution and a broadcast add over the whole activation; its gradients are TensorFlow's
 *   Conv2DBackpropInput/Filter and BiasAddGrad, each computed only when needed (tfjs' fused
 *   convolution computes the input gradient of the first layer too, which nothing uses). With a
 *   ReLU inside, the ReLU's gradient and the bias' take one pass (`CnnReluBiasGrad`, from the ops
 *   library); below a max pool, the bias gradient is summed from the pooled gradient.
 * - Batch normalisation in training (`CnnBatchNorm`): TensorFlow's FusedBatchNormV3 and its
 *   gradient, two kernels instead of about twenty tfjs ops, which also kept every intermediate
 *   for their gradients (ResNet50 at 224 px, batch 32, ran out of 24 GiB that way).
 * - Max pooling (`CnnMaxPool`): oneDNN's pooling keeps a workspace (where each max came from), so
 *   its gradient is a scatter instead of TensorFlow's MaxPoolGrad, which searches every window again
 *   (2x faster at 128 px, bit-identical results). Taken through customGrad, so the engine does not
 *   fill a zero gradient for the workspace output at every step.
 *
 * - ReLU's gradient: tfjs-node builds it from `step`, whose kernel fills JS-side `ones`/`fill`
 *   tensors of the activation's full size and selects between them; TensorFlow's `ReluGrad` is one
 *   multithreaded pass. At 224 px this alone was most of a Basic CNN's gradient step.
 * - Dropout (`CnnDropout`, from this project's ops library, src/native/cnn_ops.cc): one pass that
 *   hashes (seed, step, element) into the keep decision and scales, instead of a Philox uniform
 *   draw and four elementwise ops over the activation; its gradient is the same op on dy (the mask
 *   is recomputed, never stored). Seeded by (layer seed, step), every mask is reproducible, so a run
 *   resumed from a checkpoint draws the same masks as one that never stopped.
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
export function onednnEnabled(): boolean {
  return process.env.TF_ENABLE_ONEDNN_OPTS === '1';
}

let installed = false;

export interface PoolAttrs {
  poolSize: number[];
  strides: number[];
  pad: string;
}
/**
 * Max pooling's input gradient scatters each pooled gradient to one position (where its max came
 * from, adding where windows overlap), so per channel both sum to the same: a bias gradient
 * below a max pool is summed from the pooled gradient, a quarter of the values (or fewer).
 */
const scatteredFrom = new WeakMap<Tensor, Tensor>();
/** The tensor whose per-channel sums equal `dy`'s: itself, or the pooled gradient it was scattered from. */
function channelSumSource(dy: Tensor): Tensor {
  const pooled = scatteredFrom.get(dy);
  return pooled && !pooled.isDisposed ? pooled : dy;
}
let poolGrad: ((x: Tensor, y: Tensor, dy: Tensor, workspace: Tensor, attrs: PoolAttrs) => Tensor) | undefined;

/** Max pooling by oneDNN (CnnMaxPool), its gradient a scatter through the saved workspace. */
export function maxPool(tf: Tf, x: Tensor, attrs: PoolAttrs): Tensor {
  installNativeGradients(tf);
  const run = tf.customGrad(((input: Tensor, save: (tensors: Tensor[]) => void) => {
    const [y, workspace] = tf.engine().runKernel(MAX_POOL_KERNEL, { x: input }, attrs as never) as [Tensor, Tensor];
    save([input, y, workspace]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const dx = poolGrad!(saved[0]!, saved[1]!, dy, saved[2]!, attrs);
        scatteredFrom.set(dx, dy);
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
  const poolAttrs = (a: { poolSize: [number, number]; strides: [number, number]; pad: 'SAME' | 'VALID' }): Attr[] => [
    T,
    nhwc,
    { name: 'ksize', type: b.TF_ATTR_INT, value: [1, a.poolSize[0], a.poolSize[1], 1] },
    { name: 'strides', type: b.TF_ATTR_INT, value: [1, a.strides[0], a.strides[1], 1] },
    { name: 'padding', type: b.TF_ATTR_STRING, value: a.pad },
    { name: 'workspace_enabled', type: b.TF_ATTR_BOOL, value: true },
    mkl,
  ];

  tf.registerKernel({
    kernelName: CONV_KERNEL,
    backendName: 'tensorflow',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as NativeBackend;
      const { x, filter, bias } = inputs as { x: Tensor; filter: Tensor; bias?: Tensor };
      const a = convAttrs(attrs as never);
      let y: Tensor;
      if (bias && onednnEnabled()) y = be.executeSingleOutput('_MklNativeConv2DWithBias', [...a, mkl], [x, filter, bias]);
      else {
        y = be.executeSingleOutput('Conv2D', a, [x, filter]);
        if (bias) y = consume(y, be.executeSingleOutput('BiasAdd', [T, nhwc], [y, bias]));
      }
      return (attrs as { relu?: boolean }).relu ? consume(y, be.executeSingleOutput('Relu', [T], [y])) : y;
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
      if (relu && hasBias) [dz, db] = be.executeMultipleOutputs('CnnReluBiasGrad', [], [dz, y], 2) as [Tensor, Tensor];
      else if (relu) dz = be.executeSingleOutput('ReluGrad', [T], [dz, y]);
      return {
        x: () => be.executeSingleOutput('Conv2DBackpropInput', a, [tf.tensor1d(x.shape, 'int32'), filter, dz]),
        filter: () => be.executeSingleOutput('Conv2DBackpropFilter', a, [x, tf.tensor1d(filter.shape, 'int32'), dz]),
        bias: () => db ?? be.executeSingleOutput('BiasAddGrad', [T, nhwc], [channelSumSource(dz)]),
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
    // Outputs: the pooled tensor and oneDNN's workspace (opaque; only the gradient reads it).
    kernelFunc: ({ inputs, backend, attrs }) =>
      (backend as unknown as NativeBackend).executeMultipleOutputs('_MklNativeMaxPool', poolAttrs(attrs as never), [inputs.x as Tensor], 2),
  });
  // Its gradient is taken through customGrad (maxPool below), which records the pooled tensor as
  // the only output: the engine fills a zero gradient for every output nothing differentiates, and
  // the workspace is as large as the pooled tensor (8 MB per step of 64 px images, in JavaScript).
  poolGrad = (x, y, dy, workspace, attrs) =>
    native(tf).executeSingleOutput('_MklNativeMaxPoolGrad', poolAttrs(attrs as never), [x, y, dy, workspace]);

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
    inputsToSave: ['seed'],
    gradFunc: (dy, saved, attrs) => ({
      x: () => native(tf).executeSingleOutput(DROPOUT_KERNEL, dropoutAttrs(attrs as never), [dy as Tensor, saved[0]!]),
    }),
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
