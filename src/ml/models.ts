/** Model architectures, built with tfjs layers. Each builder is deterministic given its seed. */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { InitializerName, ModelClass, OptimizerName } from '../common/constants';
import { activation, add, batchNormalization, conv2d, maxPooling2d, registerLayers, seededDropout } from './layers';
import { NativeAdam, type TrainingOptimizer } from './native-adam';
import { loadTf } from './tf';

export interface ModelSpec {
  imageSize: number;
  numClasses: number;
  seed: number;
  /** The Basic CNN's convolutions and output layer (Keras' `kernel_initializer_glob`); default glorot_uniform. */
  kernelInitializer?: InitializerName;
  /** The Basic CNN's hidden dense layer (Keras' `kernel_initializer_norm`); default normal. */
  denseInitializer?: InitializerName;
}

/** The standard deviation of a unit normal truncated to [-2, 2]. */
const TRUNCATED_NORMAL_STD = 0.87962566103423978;

/**
 * A Keras initializer by name, drawn as Keras draws it: its variance-scaling normals are truncated
 * at two standard deviations with their spread corrected (tfjs truncates without the correction,
 * 12 % narrower); the plain ones are 0.05 wide.
 */
export function kerasInitializer(tf: ReturnType<typeof loadTf>, name: InitializerName, seed: number) {
  const scaled = (scale: number, mode: 'fanIn' | 'fanAvg', distribution: 'normal' | 'uniform') =>
    tf.initializers.varianceScaling({
      scale: distribution === 'normal' ? scale / TRUNCATED_NORMAL_STD ** 2 : scale,
      mode,
      distribution,
      seed,
    });
  switch (name) {
    case 'glorot_uniform':
      return tf.initializers.glorotUniform({ seed });
    case 'glorot_normal':
      return scaled(1, 'fanAvg', 'normal');
    case 'he_uniform':
      return scaled(2, 'fanIn', 'uniform');
    case 'he_normal':
      return scaled(2, 'fanIn', 'normal');
    case 'lecun_uniform':
      return scaled(1, 'fanIn', 'uniform');
    case 'lecun_normal':
      return scaled(1, 'fanIn', 'normal');
    case 'normal':
    case 'random_normal':
      return tf.initializers.randomNormal({ mean: 0, stddev: 0.05, seed });
    case 'uniform':
    case 'random_uniform':
      return tf.initializers.randomUniform({ minval: -0.05, maxval: 0.05, seed });
    case 'truncated_normal':
      return tf.initializers.truncatedNormal({ mean: 0, stddev: 0.05, seed });
  }
}

/**
 * The original pipeline's CNN: Conv64 -> MaxPool -> Conv64 -> Dropout .25 -> Conv64 -> MaxPool -> Dropout .25
 * -> Flatten -> Dense128 relu -> Dense softmax. Every layer has its own weights (the original's two
 * hidden convolutions accidentally shared one layer object).
 *
 * Each convolution has its ReLU inside, as in Keras: one oneDNN kernel computes convolution, bias and
 * ReLU. Where max pooling follows, the pooling's gradient is already the ReLU's input gradient and
 * brings the bias' with it (see CnnMaxPool in native-ops.ts); the dropout above the middle
 * convolution does the same in its gradient (CnnDropoutReluGrad).
 */
export function buildBasicCnn({
  imageSize,
  numClasses,
  seed,
  kernelInitializer = 'glorot_uniform',
  denseInitializer = 'normal',
}: ModelSpec): LayersModel {
  const tf = loadTf();
  registerLayers(tf);
  const glob = (i: number) => kerasInitializer(tf, kernelInitializer, seed + i);
  const conv = (i: number, extra: object = {}) =>
    conv2d(tf, { filters: 64, kernelSize: 3, padding: 'same', kernelInitializer: glob(i), ...extra });
  return tf.sequential({
    name: 'Basic',
    layers: [
      conv(1, { inputShape: [imageSize, imageSize, 3], activation: 'relu' }),
      maxPooling2d(tf, { poolSize: 2 }),
      conv(2, { activation: 'relu' }),
      seededDropout(tf, { rate: 0.25, seed: seed + 3 }),
      conv(4, { activation: 'relu' }),
      maxPooling2d(tf, { poolSize: 2 }),
      seededDropout(tf, { rate: 0.25, seed: seed + 5 }),
      tf.layers.flatten(),
      tf.layers.dense({
        units: 128,
        activation: 'relu',
        kernelInitializer: kerasInitializer(tf, denseInitializer, seed + 6),
      }),
      tf.layers.dense({ units: numClasses, activation: 'softmax', kernelInitializer: glob(7) }),
    ],
  });
}

/** ResNet-50: bottleneck blocks [3, 4, 6, 3], batch norm, projection shortcuts, global average pooling. */
export function buildResNet50({ imageSize, numClasses, seed }: ModelSpec): LayersModel {
  const tf = loadTf();
  registerLayers(tf);
  let n = 0;
  // He normal, drawn as Keras' he_normal (the DAG's initializers are the Basic CNN's).
  const init = () => kerasInitializer(tf, 'he_normal', seed + n++);
  type T = ReturnType<typeof tf.input>;
  const conv = (x: T, filters: number, kernelSize: number, strides = 1, name?: string): T =>
    conv2d(tf, { filters, kernelSize, strides, padding: 'same', useBias: false, kernelInitializer: init(), name }).apply(x) as T;
  const bn = (x: T): T => batchNormalization(tf, { axis: 3, epsilon: 1.001e-5 }).apply(x) as T;
  const relu = (x: T): T => activation(tf, { activation: 'relu' }).apply(x) as T;

  const block = (x: T, filters: number, strides: number, project: boolean): T => {
    const shortcut = project ? bn(conv(x, 4 * filters, 1, strides)) : x;
    let y = relu(bn(conv(x, filters, 1, strides)));
    y = relu(bn(conv(y, filters, 3)));
    y = bn(conv(y, 4 * filters, 1));
    return relu(add(tf).apply([y, shortcut]) as T);
  };

  const input = tf.input({ shape: [imageSize, imageSize, 3] });
  let x = relu(bn(conv(input, 64, 7, 2, 'conv1')));
  x = maxPooling2d(tf, { poolSize: 3, strides: 2, padding: 'same' }).apply(x) as T;
  const stages: [number, number, number][] = [
    [64, 3, 1],
    [128, 4, 2],
    [256, 6, 2],
    [512, 3, 2],
  ];
  for (const [filters, blocks, strides] of stages) {
    for (let b = 0; b < blocks; b++) x = block(x, filters, b === 0 ? strides : 1, b === 0);
  }
  x = tf.layers.globalAveragePooling2d({}).apply(x) as T;
  const output = tf.layers
    .dense({ units: numClasses, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + n++ }) })
    .apply(x) as T;
  return tf.model({ inputs: input, outputs: output, name: 'ResNet50' });
}

/** CrossVal trains and ships the Basic architecture; it differs in how it is evaluated. */
export function buildModel(modelClass: ModelClass, spec: ModelSpec): LayersModel {
  return modelClass === 'ResNet50' ? buildResNet50(spec) : buildBasicCnn(spec);
}

/** Adam runs as TensorFlow's fused kernel (see native-adam.ts); SGD and RMSProp are tfjs' own. */
export function createOptimizer(name: OptimizerName, learningRate: number): TrainingOptimizer {
  const tf = loadTf();
  switch (name) {
    case 'adam':
      return new NativeAdam(tf, learningRate);
    case 'sgd':
      return tf.train.sgd(learningRate) as unknown as TrainingOptimizer;
    case 'rmsprop':
      return tf.train.rmsprop(learningRate) as unknown as TrainingOptimizer;
  }
}
