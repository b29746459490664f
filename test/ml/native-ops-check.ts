/**
 * Run as a script (by native-ops.test.ts, once with oneDNN on and once off): the project's native
 * convolution and pooling layers against tfjs' built-in layers with the same weights, forward and
 * gradients. Prints one JSON line of the largest differences, relative to the reference's largest value.
 */
import type { Scalar, Tensor } from '@tensorflow/tfjs-node';
import { activation, add, batchNormalization, conv2d, maxPooling2d, seededDropout } from '../../src/ml/layers';
import { loadTf } from '../../src/ml/tf';

const tf = loadTf();
const diffs: Record<string, number> = {};
// Relative to the reference's largest value (at least 1): a bias' gradient sums a few hundred values,
// and float's rounding of such a sum alone reached 1.2e-4 in absolute terms.
const maxDiff = (a: Tensor, b: Tensor) =>
  tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]! / Math.max(1, tf.max(tf.abs(b)).dataSync()[0]!));

function compare(
  name: string,
  ours: ReturnType<typeof conv2d>,
  theirs: ReturnType<typeof conv2d>,
  shape: number[],
  training = false,
  transform: (x: Tensor) => Tensor = (x) => x,
): void {
  const x = transform(tf.randomNormal(shape, 0, 1, 'float32', 7) as Tensor);
  ours.apply(x);
  theirs.apply(x);
  theirs.setWeights(ours.getWeights());
  // Away from 0, so a gradient is non-zero also where a ReLU's output is 0 (it must be masked there).
  const loss = (y: Tensor) => y.sub(0.5).square().sum() as Scalar;
  const run = (layer: typeof ours) => {
    const weights = layer.trainableWeights.map((w) => w.read() as Tensor & { name: string });
    const { value, grads } = weights.length
      ? tf.variableGrads(() => loss(layer.apply(x, { training }) as Tensor))
      : { value: undefined, grads: {} as Record<string, Tensor> };
    const gx = tf.grad((xi: Tensor) => loss(layer.apply(xi, { training }) as Tensor))(x);
    return { y: layer.apply(x, { training }) as Tensor, value, grads: weights.map((w) => grads[w.name]!), gx, state: layer.getWeights() };
  };
  const a = run(ours);
  const b = run(theirs);
  diffs[`${name}.forward`] = maxDiff(a.y, b.y);
  diffs[`${name}.dx`] = maxDiff(a.gx, b.gx);
  a.grads.forEach((g, i) => (diffs[`${name}.dw${i}`] = maxDiff(g, b.grads[i]!)));
  // Every weight after the calls above, e.g. batch norm's moving mean and variance.
  a.state.forEach((w, i) => (diffs[`${name}.w${i}`] = maxDiff(w, b.state[i]!)));
}

const convArgs = {
  filters: 8,
  kernelSize: 3,
  padding: 'same' as const,
  kernelInitializer: 'glorotUniform' as const,
  biasInitializer: 'randomNormal' as const,
};
compare('conv3x3', conv2d(tf, convArgs), tf.layers.conv2d(convArgs), [2, 9, 9, 3]);
const reluArgs = { ...convArgs, activation: 'relu' as const };
compare('conv3x3relu', conv2d(tf, reluArgs), tf.layers.conv2d(reluArgs), [2, 9, 9, 3]);
const reluNoBias = { filters: 6, kernelSize: 1, activation: 'relu' as const, useBias: false };
compare('conv1x1relu', conv2d(tf, reluNoBias), tf.layers.conv2d(reluNoBias), [2, 5, 5, 4]);
// 1x1 with stride 1 runs as a matrix product (with a bias added after it); strided, as a convolution.
const pointwiseBias = { filters: 5, kernelSize: 1, biasInitializer: 'randomNormal' as const };
compare('conv1x1bias', conv2d(tf, pointwiseBias), tf.layers.conv2d(pointwiseBias), [2, 5, 5, 4]);
compare('conv1x1s2', conv2d(tf, { ...reluNoBias, strides: 2 }), tf.layers.conv2d({ ...reluNoBias, strides: 2 }), [2, 5, 5, 4]);
const strided = { filters: 4, kernelSize: 7, strides: 2, padding: 'same' as const, useBias: false };
compare('conv7x7s2', conv2d(tf, strided), tf.layers.conv2d(strided), [2, 15, 15, 3]);
compare('pool2', maxPooling2d(tf, { poolSize: 2 }), tf.layers.maxPooling2d({ poolSize: 2 }), [2, 8, 8, 5]);
compare(
  'pool3s2same',
  maxPooling2d(tf, { poolSize: 3, strides: 2, padding: 'same' }),
  tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
  [2, 9, 9, 5],
);
// Ties (values rounded to halves, many windows holding their max twice) go to the first maximum
// in row-major order, as TensorFlow's MaxPoolGrad sends them; so do windows of zeros, as after a ReLU.
compare('pool2ties', maxPooling2d(tf, { poolSize: 2 }), tf.layers.maxPooling2d({ poolSize: 2 }), [2, 8, 8, 4], false, (x) =>
  tf.relu(tf.round(x.mul(2)).div(2)),
);
// Windows with gaps between them (stride > size) and leftover rows and columns: those get 0.
compare('pool2s3', maxPooling2d(tf, { poolSize: 2, strides: 3 }), tf.layers.maxPooling2d({ poolSize: 2, strides: 3 }), [2, 10, 11, 3]);
// Rectangular windows and strides, SAME padding.
compare(
  'pool3x2same',
  maxPooling2d(tf, { poolSize: [3, 2], strides: [3, 2], padding: 'same' }),
  tf.layers.maxPooling2d({ poolSize: [3, 2], strides: [3, 2], padding: 'same' }),
  [2, 10, 7, 6],
);
// A convolution's bias gradient below a max pool is summed from the pooled gradient; with the ReLU
// inside the convolution, the pooling sends nothing to windows the ReLU zeroed, and the convolution
// takes that as its ReLU's gradient.
for (const [name, pool] of [
  ['conv+pool2', { poolSize: 2 }],
  ['conv+pool3s2same', { poolSize: 3, strides: 2, padding: 'same' as const }],
] as const) {
  for (const activation of ['linear', 'relu'] as const) {
    const stack = (c: typeof conv2d, p: typeof maxPooling2d) =>
      tf.sequential({ layers: [c(tf, { ...convArgs, activation, inputShape: [9, 9, 3] }), p(tf, pool)] });
    compare(
      activation === 'relu' ? name.replace('conv', 'convrelu') : name,
      stack(conv2d, maxPooling2d) as never,
      stack(
        (_, a) => tf.layers.conv2d(a),
        (_, a) => tf.layers.maxPooling2d(a),
      ) as never,
      [2, 9, 9, 3],
    );
  }
}
// A dropout below a convolution's ReLU takes the ReLU's and the bias' gradients with its own, in one
// pass: the same as with the ReLU as a layer of its own (same seed, so the same masks).
const dropoutStack = (reluInside: boolean) =>
  tf.sequential({
    layers: [
      conv2d(tf, { ...convArgs, activation: reluInside ? 'relu' : 'linear', inputShape: [9, 9, 3] }),
      ...(reluInside ? [] : [tf.layers.activation({ activation: 'relu' })]),
      seededDropout(tf, { rate: 0.5, seed: 5 }),
    ],
  });
compare('convrelu+dropout', dropoutStack(true) as never, dropoutStack(false) as never, [2, 9, 9, 3], true);
const bnArgs = {
  axis: 3,
  epsilon: 1.001e-5,
  momentum: 0.5,
  gammaInitializer: 'randomNormal' as const,
  betaInitializer: 'randomNormal' as const,
};
compare('batchnorm', batchNormalization(tf, bnArgs), tf.layers.batchNormalization(bnArgs), [4, 5, 5, 6], true);
// A residual block's shape: batch norm with the ReLU after it inside, and add + ReLU in one pass;
// against the same block of tfjs' own layers, where every ReLU is a pass of its own.
type Build = {
  conv: typeof conv2d;
  bn: typeof batchNormalization;
  relu: () => ReturnType<typeof conv2d>;
  add: () => ReturnType<typeof conv2d>;
};
const residual = (b: Build) => {
  type T = ReturnType<typeof tf.input>;
  const input = tf.input({ shape: [6, 6, 4] });
  const conv = (x: T, filters: number) =>
    b.conv(tf, { filters, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: 'glorotUniform' }).apply(x) as T;
  const y = b.relu().apply(b.bn(tf, bnArgs).apply(conv(input, 5)) as T) as T;
  const z = b.bn(tf, bnArgs).apply(conv(y, 4)) as T;
  return tf.model({ inputs: input, outputs: b.relu().apply(b.add().apply([z, input]) as T) as T });
};
const residualPair = () =>
  [
    residual({ conv: conv2d, bn: batchNormalization, relu: () => activation(tf, { activation: 'relu' }), add: () => add(tf) }),
    residual({
      conv: (_, a) => tf.layers.conv2d(a),
      bn: (_, a) => tf.layers.batchNormalization(a),
      relu: () => tf.layers.activation({ activation: 'relu' }),
      add: () => tf.layers.add(),
    }),
  ] as never[];
compare('bnrelu+addrelu', ...(residualPair() as [never, never]), [3, 6, 6, 4], true);
// Outside training (as served): batch norm takes tfjs' own path, add + ReLU stays one pass.
compare('addrelu-inference', ...(residualPair() as [never, never]), [3, 6, 6, 4], false);
console.log(JSON.stringify({ onednn: process.env.TF_ENABLE_ONEDNN_OPTS, diffs }));
