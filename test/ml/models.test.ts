import { strict as assert } from 'node:assert';
import { INITIALIZERS, type InitializerName } from '../../src/common/constants';
import { buildBasicCnn, buildResNet50 } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';

const std = (values: Float32Array | Int32Array | Uint8Array) => {
  let sum = 0;
  let sq = 0;
  for (const v of values) [sum, sq] = [sum + v, sq + v * v];
  const mean = sum / values.length;
  return Math.sqrt(sq / values.length - mean * mean);
};

describe('model initialisers (as Keras draws them)', () => {
  before(() => loadTf());

  it("ResNet50's convolutions start with He normal's spread, sqrt(2 / fan_in), not tfjs' 12 % narrower one", () => {
    const model = buildResNet50({ imageSize: 32, numClasses: 2, seed: 1 });
    const kernels = model.weights.filter((w) => w.shape.length === 4 && w.shape.reduce((a, b) => a! * b!, 1)! >= 50_000);
    assert.ok(kernels.length > 20);
    for (const k of kernels) {
      const [h, w, cin] = k.shape as number[];
      const expected = Math.sqrt(2 / (h! * w! * cin!));
      const values = k.read().dataSync();
      const actual = std(values);
      assert.ok(Math.abs(actual / expected - 1) < 0.03, `${k.name}: std ${actual}, He normal ${expected}`);
      // Truncated at two standard deviations of the underlying normal.
      const limit = (2 * expected) / 0.87962566103423978;
      assert.ok(
        values.every((v) => Math.abs(v) <= limit * (1 + 1e-6)),
        `${k.name} exceeds the truncation bound`,
      );
    }
    model.dispose();
  });

  it("Basic's dense layer starts from N(0, 0.05) and its convolutions from Glorot uniform", () => {
    const model = buildBasicCnn({ imageSize: 32, numClasses: 2, seed: 1 });
    const [dense] = model.getWeights().filter((w) => w.rank === 2 && w.shape[1] === 128);
    assert.ok(Math.abs(std(dense!.dataSync()) / 0.05 - 1) < 0.02);
    const [conv] = model.getWeights().filter((w) => w.rank === 4 && w.shape[2] === 64);
    const limit = Math.sqrt(6 / (9 * 64 + 9 * 64));
    assert.ok(Math.abs(std(conv!.dataSync()) / (limit / Math.sqrt(3)) - 1) < 0.03);
    model.dispose();
  });

  it("draws the Basic CNN's kernels with each initializer the DAG can name, at Keras' spread", () => {
    // imageSize 32: the hidden dense layer has fan_in 8 x 8 x 64 = 4,096 and fan_out 128; the middle
    // convolutions fan_in = fan_out = 9 x 64.
    const denseIn = 4096;
    const denseOut = 128;
    const convFan = 9 * 64;
    const spread: Record<InitializerName, (fanIn: number, fanOut: number) => number> = {
      glorot_uniform: (i, o) => Math.sqrt(2 / (i + o)),
      glorot_normal: (i, o) => Math.sqrt(2 / (i + o)),
      he_uniform: (i) => Math.sqrt(2 / i),
      he_normal: (i) => Math.sqrt(2 / i),
      lecun_uniform: (i) => Math.sqrt(1 / i),
      lecun_normal: (i) => Math.sqrt(1 / i),
      normal: () => 0.05,
      random_normal: () => 0.05,
      uniform: () => 0.05 / Math.sqrt(3),
      random_uniform: () => 0.05 / Math.sqrt(3),
      truncated_normal: () => 0.05 * 0.87962566103423978,
    };
    for (const name of INITIALIZERS) {
      const model = buildBasicCnn({ imageSize: 32, numClasses: 2, seed: 1, kernelInitializer: name, denseInitializer: name });
      const [dense] = model.getWeights().filter((w) => w.rank === 2 && w.shape[1] === denseOut);
      const [conv] = model.getWeights().filter((w) => w.rank === 4 && w.shape[2] === 64);
      const d = std(dense!.dataSync()) / spread[name](denseIn, denseOut);
      const c = std(conv!.dataSync()) / spread[name](convFan, convFan);
      assert.ok(Math.abs(d - 1) < 0.03, `${name}: dense spread ${d.toFixed(3)} of Keras'`);
      assert.ok(Math.abs(c - 1) < 0.03, `${name}: convolution spread ${c.toFixed(3)} of Keras'`);
      model.dispose();
    }
  });

  it('builds the same model with the default initializers named as without them', () => {
    const a = buildBasicCnn({ imageSize: 16, numClasses: 2, seed: 3 });
    const b = buildBasicCnn({ imageSize: 16, numClasses: 2, seed: 3, kernelInitializer: 'glorot_uniform', denseInitializer: 'normal' });
    const c = buildBasicCnn({ imageSize: 16, numClasses: 2, seed: 3, kernelInitializer: 'he_uniform' });
    const weights = (m: typeof a) => m.getWeights().map((w) => Array.from(w.dataSync()));
    assert.deepEqual(weights(b), weights(a));
    assert.notDeepEqual(weights(c), weights(a));
    [a, b, c].forEach((m) => m.dispose());
  });
});
