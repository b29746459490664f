import { strict as assert } from 'node:assert';
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
});
