import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Tensor } from '@tensorflow/tfjs-node';
import { seededDropout } from '../../src/ml/layers';
import { squaredNorm } from '../../src/ml/native-ops';
import { loadTf } from '../../src/ml/tf';

describe('native convolution, pooling and batch-norm layers (against tfjs built-ins, same weights)', () => {
  for (const onednn of ['1', '0']) {
    it(`match forward and every gradient with oneDNN ${onednn === '1' ? 'on' : 'off'}`, () => {
      // oneDNN is fixed when libtensorflow loads: each setting needs a process of its own.
      const out = execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', join(__dirname, 'native-ops-check.ts')], {
        encoding: 'utf8',
        env: { ...process.env, TF_ENABLE_ONEDNN_OPTS: onednn, TF_CPP_MIN_LOG_LEVEL: '3' },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const { diffs } = JSON.parse(out.trim().split('\n').at(-1)!) as { diffs: Record<string, number> };
      assert.equal(Object.keys(diffs).length, 114, JSON.stringify(diffs));
      for (const [name, d] of Object.entries(diffs)) assert.ok(d < 1e-4, `${name} differs by ${d}`);
    });
  }
});

describe('native dropout (CnnDropout, from the training ops library)', () => {
  const tf = loadTf();
  const n = 1 << 20;
  const kept = (t: Tensor) => {
    const d = t.dataSync();
    let k = 0;
    for (const v of d) if (v !== 0) k++;
    return k / d.length;
  };

  it('keeps each value with probability 1 - rate and scales the kept ones by 1 / (1 - rate)', () => {
    for (const rate of [0.25, 0.5, 0.9]) {
      const layer = seededDropout(tf, { rate, seed: 3 });
      const x = tf.ones([n / 64, 8, 8]);
      const y = layer.apply(x, { training: true }) as Tensor;
      const keep = 1 - rate;
      const sigma = Math.sqrt((keep * rate) / n);
      assert.ok(Math.abs(kept(y) - keep) < 5 * sigma, `rate ${rate}: kept ${kept(y)}`);
      const values = new Set(y.dataSync());
      // The scale is computed in float32, as the kernel does.
      const scale = Math.fround(1 / Math.fround(1 - Math.fround(rate)));
      assert.deepEqual([...values].sort(), [0, scale].sort(), `rate ${rate}: values ${[...values]}`);
      tf.dispose([x, y]);
    }
  });

  it('draws a mask that is a function of (seed, step): replayable, new at every step, independent between steps', () => {
    const x = tf.ones([n]);
    const masks = (seed: number, steps: number) => {
      const layer = seededDropout(tf, { rate: 0.25, seed });
      return Array.from({ length: steps }, () => {
        const y = layer.apply(x, { training: true }) as Tensor;
        const m = y.dataSync().map((v) => (v !== 0 ? 1 : 0));
        y.dispose();
        return m;
      });
    };
    const [a0, a1] = masks(7, 2);
    const [b0, b1] = masks(7, 2);
    const [c0] = masks(8, 1);
    assert.deepEqual(b0, a0);
    assert.deepEqual(b1, a1);
    // Two independent masks keep the same element with probability 0.75^2.
    for (const [p, q, what] of [
      [a0!, a1!, 'consecutive steps'],
      [a0!, c0!, 'different seeds'],
    ] as const) {
      let both = 0;
      for (let i = 0; i < n; i++) both += p[i]! & q[i]!;
      const sigma = Math.sqrt((0.5625 * 0.4375) / n);
      assert.ok(Math.abs(both / n - 0.5625) < 5 * sigma, `${what}: both kept ${both / n}`);
    }
    // Neighbouring elements are independent too.
    let pairs = 0;
    for (let i = 0; i + 1 < n; i += 2) pairs += a0![i]! & a0![i + 1]!;
    assert.ok(Math.abs(pairs / (n / 2) - 0.5625) < 5 * Math.sqrt((0.5625 * 0.4375) / (n / 2)), `neighbours: ${pairs / (n / 2)}`);
    x.dispose();
  });

  it('passes the gradient through exactly the kept values, scaled like them', () => {
    const layer = seededDropout(tf, { rate: 0.25, seed: 11 });
    const x = tf.randomUniform([64, 16, 16, 8], 0.5, 1.5, 'float32', 1);
    const w = tf.randomUniform(x.shape, -1, 1, 'float32', 2);
    let forward: Tensor | undefined;
    const g = tf.grad((input: Tensor) => {
      const y = layer.apply(input, { training: true }) as Tensor;
      forward = tf.keep(y.clone());
      return y.mul(w).sum();
    })(x);
    // Forward kept x_i / 0.75 where it kept x_i; the gradient there is w_i / 0.75, elsewhere 0.
    const expected = tf.tidy(() => forward!.notEqual(0).toFloat().mul(w).div(0.75));
    const diff = tf.tidy(() => g.sub(expected).abs().max().dataSync()[0]!);
    assert.ok(diff < 1e-6, `gradient differs by ${diff}`);
    assert.ok(kept(g) > 0.7 && kept(g) < 0.8, `gradient kept ${kept(g)}`);
    tf.dispose([x, w, g, forward!, expected]);
  });

  it('is the identity outside training', () => {
    const layer = seededDropout(tf, { rate: 0.5, seed: 1 });
    const x = tf.randomUniform([4, 10]);
    const y = layer.apply(x, { training: false }) as Tensor;
    assert.deepEqual(y.dataSync(), x.dataSync());
    tf.dispose([x, y]);
  });
});

describe('squared gradient norm (CnnSquaredNorm, from the training ops library)', () => {
  const tf = loadTf();

  it('sums the squares of every value of every tensor, in double', () => {
    // Odd sizes, so the vector loop's tail counts too; one large tensor, so it is sharded.
    const tensors = [
      tf.randomNormal([3, 5, 7], 0, 1, 'float32', 1),
      tf.randomNormal([1], 0, 3, 'float32', 2),
      tf.randomNormal([1001, 301], 0, 0.1, 'float32', 3),
    ];
    let expected = 0;
    for (const t of tensors) for (const v of t.dataSync()) expected += v * v;
    const total = squaredNorm(tf, tensors);
    assert.deepEqual(total.shape, []);
    const got = total.dataSync()[0]!;
    assert.ok(Math.abs(got - expected) <= 1e-6 * expected, `${got} vs ${expected}`);
    tf.dispose([...tensors, total]);
  });

  it('is inf when the squares pass float range and NaN when a value is NaN', () => {
    const big = tf.tensor1d([1e20, 1]);
    const nan = tf.tensor1d([1, NaN, 2]);
    const small = tf.tensor1d([3]);
    const [a, b] = [squaredNorm(tf, [small, big]), squaredNorm(tf, [small, nan])];
    assert.equal(a.dataSync()[0], Infinity);
    assert.ok(Number.isNaN(b.dataSync()[0]));
    tf.dispose([big, nan, small, a, b]);
  });
});
