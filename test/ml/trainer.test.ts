import { strict as assert } from 'node:assert';
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { seededRandom } from '../../src/common/random';
import type { LoadedSplit } from '../../src/common/types';
import { batchNormalization, conv2d, seededDropout } from '../../src/ml/layers';
import { createOptimizer } from '../../src/ml/models';
import { planMicroBatch } from '../../src/ml/memory';
import { epochOrder, memorySource } from '../../src/ml/image-source';
import { fitModel, recalibrateBatchNorm } from '../../src/ml/trainer';
import { loadTf } from '../../src/ml/tf';

describe('training loop: micro-batches', () => {
  const tf = loadTf();
  const size = 8;
  const count = 40;
  const rand = seededRandom(3);
  const split: LoadedSplit = {
    count,
    imageSize: size,
    pixels: Uint8Array.from({ length: count * size * size * 3 }, () => Math.floor(rand() * 256)),
    labels: Uint16Array.from({ length: count }, (_, i) => i % 2),
  };

  const model = (withBatchNorm: boolean): LayersModel => {
    const layers = [
      conv2d(tf, {
        filters: 4,
        kernelSize: 3,
        padding: 'same',
        inputShape: [size, size, 3],
        kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }),
      }),
      ...(withBatchNorm ? [batchNormalization(tf, { axis: 3 })] : []),
      tf.layers.activation({ activation: 'relu' }),
      seededDropout(tf, { rate: 0.5, seed: 9 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ];
    return tf.sequential({ layers });
  };

  const train = async (withBatchNorm: boolean, microBatchSize?: number, optimizerName: 'adam' | 'sgd' = 'adam') => {
    const m = model(withBatchNorm);
    const optimizer = createOptimizer(optimizerName, 1e-2);
    const logs: number[] = [];
    await fitModel(m, optimizer, memorySource(split), {
      epochs: 2,
      batchSize: 16,
      microBatchSize,
      numClasses: 2,
      seed: 5,
      onEpochEnd: (_, l) => void logs.push(l.loss, l.accuracy),
    });
    const weights = m.getWeights().map((w) => Array.from(w.dataSync()));
    optimizer.dispose();
    m.dispose();
    return { weights, logs };
  };

  for (const optimizerName of ['sgd', 'adam'] as const)
    it(`splitting a batch into micro-batches gives the same update as the whole batch, dropout masks included (no batch norm, ${optimizerName})`, async () => {
      const before = tf.memory().numTensors;
      const whole = await train(false, undefined, optimizerName);
      // 16 = 5 + 5 + 5 + 1, and the last batch of each epoch (8 images) = 5 + 3: uneven parts are weighted by size.
      const parts = await train(false, 5, optimizerName);
      assert.equal(tf.memory().numTensors, before, 'no tensor is left behind');
      for (let l = 0; l < whole.weights.length; l++)
        for (let i = 0; i < whole.weights[l]!.length; i++)
          assert.ok(
            Math.abs(whole.weights[l]![i]! - parts.weights[l]![i]!) < 1e-5,
            `weight ${l}[${i}]: ${whole.weights[l]![i]} vs ${parts.weights[l]![i]}`,
          );
      whole.logs.forEach((v, i) => assert.ok(Math.abs(v - parts.logs[i]!) < 1e-5, `epoch logs differ: ${whole.logs} vs ${parts.logs}`));
    });

  it('with batch norm, micro-batches normalise with their own statistics (a different, still finite, update)', async () => {
    const whole = await train(true);
    const parts = await train(true, 4);
    const flat = (w: number[][]) => w.flat();
    assert.ok(flat(parts.weights).every(Number.isFinite));
    assert.ok(
      flat(whole.weights).some((v, i) => Math.abs(v - flat(parts.weights)[i]!) > 1e-4),
      'batch norm saw the whole batch either way',
    );
  });

  it('refuses a micro-batch size that is not a positive integer', async () => {
    const m = model(false);
    await assert.rejects(
      fitModel(m, createOptimizer('adam', 1e-3), memorySource(split), {
        epochs: 1,
        batchSize: 16,
        microBatchSize: 0,
        numClasses: 2,
        seed: 1,
      }),
      /microBatchSize must be a positive integer, got 0/,
    );
    m.dispose();
  });
});

describe('micro-batch plan from the memory budget', () => {
  const GB = 2 ** 30;
  it('keeps whole batches when they fit, and splits ResNet50 at 224 px to fit a t3.large pod', () => {
    assert.equal(
      planMicroBatch({ modelClass: 'Basic', imageSize: 64, batchSize: 32, budgetBytes: 20 * GB, inUseBytes: GB }).microBatchSize,
      32,
    );
    const plan = planMicroBatch({
      modelClass: 'ResNet50',
      imageSize: 224,
      batchSize: 64,
      budgetBytes: 0.85 * 7 * GB,
      inUseBytes: 1.5 * GB,
    });
    assert.ok(plan.microBatchSize >= 8 && plan.microBatchSize < 64, `micro-batch ${plan.microBatchSize}`);
    assert.ok(plan.fits);
    assert.ok(plan.microBatchSize * plan.perImageBytes <= 0.85 * 7 * GB - 1.5 * GB);
  });
  it('falls back to one image per pass, saying it may not fit, when nothing fits', () => {
    assert.deepEqual(
      {
        ...planMicroBatch({ modelClass: 'ResNet50', imageSize: 224, batchSize: 64, budgetBytes: GB, inUseBytes: 2 * GB }),
        perImageBytes: 0,
      },
      { microBatchSize: 1, perImageBytes: 0, fits: false },
    );
  });
});

/**
 * Eight identical grey 4 px images of class 1 and a softmax layer on their pixels with the given
 * weights: outputs whose gradients are known in closed form.
 */
function softmaxProbe(kernel: (tf: ReturnType<typeof loadTf>, inputs: number) => Tensor, bias: [number, number]) {
  const tf = loadTf();
  const size = 4;
  const split: LoadedSplit = {
    count: 8,
    imageSize: size,
    pixels: new Uint8Array(8 * size * size * 3).fill(128),
    labels: new Uint16Array(8).fill(1),
  };
  const model = tf.sequential({
    layers: [tf.layers.flatten({ inputShape: [size, size, 3] }), tf.layers.dense({ units: 2, activation: 'softmax' })],
  });
  model.layers[1]!.setWeights([kernel(tf, size * size * 3), tf.tensor1d(bias)]);
  return { model, split, size };
}

describe('training loss', () => {
  it('is computed from the logits of a softmax output, so a confidently wrong prediction still has a gradient (as in Keras)', async () => {
    const tf = loadTf();
    // Every image is predicted class 0 with probability 1 - e^-100: clipped probabilities would give
    // a loss of -log(1e-7) = 16.1 and no gradient at all.
    const { model, split, size } = softmaxProbe((t, inputs) => t.zeros([inputs, 2]), [50, -50]);
    const losses: number[] = [];
    const optimizer = createOptimizer('sgd', 0.1);
    await fitModel(model, optimizer, memorySource(split), {
      epochs: 1,
      batchSize: 8,
      numClasses: 2,
      seed: 1,
      onEpochEnd: (_, l) => void losses.push(l.loss),
    });
    assert.ok(Math.abs(losses[0]! - 100) < 0.01, `loss ${losses[0]}`);
    const bias = model.layers[1]!.getWeights()[1]!.dataSync();
    // One SGD step on (softmax - onehot) = (1, -1): the bias moves by 0.1 towards class 1.
    assert.ok(Math.abs(bias[0]! - 49.9) < 1e-4 && Math.abs(bias[1]! + 49.9) < 1e-4, `bias ${bias}`);
    // The model still outputs probabilities afterwards.
    const p = (model.predict(tf.ones([1, size, size, 3])) as Tensor).dataSync();
    assert.ok(Math.abs(p[0]! + p[1]! - 1) < 1e-6);
    model.dispose();
  });
});

describe('non-finite gradients', () => {
  it('skip the update and report it, instead of turning every weight into NaN', async () => {
    // Logits overflow to +-Infinity: the loss and every gradient are NaN.
    const { model, split } = softmaxProbe(
      (t, inputs) =>
        t.tensor2d(
          Array.from({ length: inputs }, () => [1e38, -1e38]),
          [inputs, 2],
        ),
      [0, 0],
    );
    const before = model.layers[1]!.getWeights().map((w) => Array.from(w.dataSync()));
    const skipped: [number, number][] = [];
    await fitModel(model, createOptimizer('adam', 1e-3), memorySource(split), {
      epochs: 1,
      batchSize: 4,
      numClasses: 2,
      seed: 1,
      onSkippedStep: (epoch, batch) => void skipped.push([epoch, batch]),
    });
    assert.deepEqual(skipped, [
      [0, 0],
      [0, 1],
    ]);
    assert.deepEqual(
      model.layers[1]!.getWeights().map((w) => Array.from(w.dataSync())),
      before,
    );
    model.dispose();
  });
});

describe('batch-norm statistics after training', () => {
  const tf = loadTf();
  const size = 4;
  const count = 37;
  const rand = seededRandom(11);
  const split: LoadedSplit = {
    count,
    imageSize: size,
    pixels: Uint8Array.from({ length: count * size * size * 3 }, (_, i) => Math.floor(rand() * 64) + (i % 3) * 64),
    labels: Uint16Array.from({ length: count }, (_, i) => i % 2),
  };
  const model = () => {
    const m = tf.sequential({
      layers: [
        batchNormalization(tf, { axis: 3, inputShape: [size, size, 3] }),
        tf.layers.flatten(),
        tf.layers.dense({ units: 2, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
      ],
    });
    // Moving averages far from anything the data gives, as a short training leaves them.
    const bn = m.layers[0]!;
    const [gamma, beta] = bn.getWeights();
    bn.setWeights([gamma!, beta!, tf.fill([3], 5), tf.fill([3], 9)]);
    return m;
  };

  /** Per channel: the mean over passes of each pass's mean and plain (biased) variance. */
  function expected(pass: number, seed: number): { mean: number[]; variance: number[] } {
    const order = epochOrder(count, seed, 0);
    const passes = Math.floor(count / pass);
    const mean = [0, 0, 0];
    const variance = [0, 0, 0];
    for (let k = 0; k < passes; k++) {
      for (let c = 0; c < 3; c++) {
        const v: number[] = [];
        for (const img of order.subarray(k * pass, (k + 1) * pass))
          for (let p = 0; p < size * size; p++) v.push(split.pixels[(img * size * size + p) * 3 + c]! / 255);
        const m = v.reduce((a, b) => a + b, 0) / v.length;
        mean[c]! += m / passes;
        variance[c]! += v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length / passes;
      }
    }
    return { mean, variance };
  }

  it('are the average of the batch statistics over whole passes of training images, and nothing trained moves', async () => {
    const m = model();
    const before = tf.memory().numTensors;
    const [gamma, beta] = m.layers[0]!.getWeights().map((w) => Array.from(w.dataSync()));
    const passes: number[] = [];
    // 37 images in passes of 8: four passes, the last 5 images unused.
    const result = await recalibrateBatchNorm(m, memorySource(split), { passSize: 8, seed: 4, onPass: (k, n) => void passes.push(k, n) });
    assert.deepEqual(result, { images: 32, stopped: false });
    assert.deepEqual(passes, [1, 4, 2, 4, 3, 4, 4, 4]);
    assert.equal(tf.memory().numTensors, before, 'no tensor is left behind');
    const [g, b, movingMean, movingVariance] = m.layers[0]!.getWeights().map((w) => Array.from(w.dataSync()));
    const want = expected(8, 4);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(movingMean![c]! - want.mean[c]!) < 1e-5, `mean ${movingMean} vs ${want.mean}`);
      assert.ok(Math.abs(movingVariance![c]! - want.variance[c]!) < 1e-5, `variance ${movingVariance} vs ${want.variance}`);
    }
    assert.deepEqual([g, b], [gamma, beta]);
    assert.equal((m.layers[0] as unknown as { momentum: number }).momentum, 0.99, 'the momentum is restored');
    // A rerun from other moving averages gives the same statistics (to float rounding: the first
    // pass moves each average all the way, as avg - (avg - batch)).
    m.layers[0]!.setWeights([tf.tensor1d(g!), tf.tensor1d(b!), tf.fill([3], -3), tf.fill([3], 0.5)]);
    await recalibrateBatchNorm(m, memorySource(split), { passSize: 8, seed: 4 });
    const again = m.layers[0]!.getWeights()
      .slice(2)
      .map((w) => Array.from(w.dataSync()));
    [movingMean!, movingVariance!].forEach((v, i) =>
      v.forEach((x, c) => assert.ok(Math.abs(x - again[i]![c]!) < 1e-6, `rerun ${again} vs ${[movingMean, movingVariance]}`)),
    );
    m.dispose();
  });

  it('stop between passes when asked, and leave a model without batch norm alone', async () => {
    const m = model();
    let polls = 0;
    assert.deepEqual(await recalibrateBatchNorm(m, memorySource(split), { passSize: 8, seed: 4, shouldStop: () => ++polls >= 2 }), {
      images: 16,
      stopped: true,
    });
    assert.equal((m.layers[0] as unknown as { momentum: number }).momentum, 0.99);
    m.dispose();
    const plain = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [size, size, 3] }), tf.layers.dense({ units: 2 })] });
    assert.deepEqual(await recalibrateBatchNorm(plain, memorySource(split), { passSize: 8, seed: 4 }), { images: 0, stopped: false });
    plain.dispose();
  });
});
