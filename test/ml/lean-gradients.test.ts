import { strict as assert } from 'node:assert';
import type { Tensor } from '@tensorflow/tfjs-node';
import { setDropoutPosition } from '../../src/ml/layers';
import { buildBasicCnn, buildResNet50 } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';

describe('backward pass that frees as it goes (lean gradients)', () => {
  const tf = loadTf();
  type Gradients = (f: () => Tensor, xs: Tensor[]) => { value: Tensor; grads: Tensor[] };
  const engine = tf.engine() as unknown as { gradients: Gradients };
  const lean = engine.gradients;
  /** tfjs-core's own walk, on the same engine. */
  const stock: Gradients = (f, xs) => (Object.getPrototypeOf(engine) as { gradients: Gradients }).gradients.call(engine, f, xs);

  it('is installed by loadTf', () => {
    assert.notEqual(lean, (Object.getPrototypeOf(engine) as { gradients: Gradients }).gradients);
  });

  for (const [name, build, size] of [
    ['ResNet50', buildResNet50, 32],
    ['Basic', buildBasicCnn, 16],
  ] as const) {
    it(`gives ${name}'s training gradients bit for bit as tfjs-core's own walk, and leaves no tensor behind`, () => {
      const model = build({ imageSize: size, numClasses: 2, seed: 4 });
      const xs = tf.randomUniform([3, size, size, 3], 0, 1, 'float32', 5);
      const ys = tf.oneHot(tf.tensor1d([0, 1, 1], 'int32'), 2);
      const loss = () => {
        setDropoutPosition(model, 7);
        return tf.losses.softmaxCrossEntropy(ys, model.apply(xs, { training: true }) as Tensor) as Tensor;
      };
      const variables = model.trainableWeights.map((w) => w.read());
      const before = tf.memory().numTensors;
      const run = (gradients: Gradients) => {
        const { value, grads } = gradients(loss, variables);
        const out = { value: value.dataSync()[0], grads: grads.map((g) => g.dataSync()) };
        tf.dispose([value, ...grads]);
        return out;
      };
      const ours = run(lean);
      assert.equal(tf.memory().numTensors, before);
      const theirs = run(stock);
      assert.equal(ours.value, theirs.value);
      assert.equal(ours.grads.length, variables.length);
      ours.grads.forEach((g, i) => assert.deepEqual(g, theirs.grads[i], `gradient of ${model.trainableWeights[i]!.name}`));
      tf.dispose([xs, ys]);
      model.dispose();
    });
  }

  it('holds each activation and gradient only while the walk still needs it', () => {
    // A chain of ops that each save their input (ReLU) over a 4 MB tensor; at the first op, the
    // last one the walk reaches, the stock walk still holds every saved input and every gradient.
    const n = 1 << 20;
    const depth = 12;
    const x = tf.variable(tf.randomUniform([n], -1, 1, 'float32', 3));
    const atBottom: number[] = [];
    const probe = tf.customGrad(((a: Tensor) => ({
      value: a.clone(),
      gradFunc: (dy: Tensor) => {
        atBottom.push(tf.memory().numBytes);
        return dy.clone();
      },
    })) as never) as (a: Tensor) => Tensor;
    const f = () => {
      let y = probe(x);
      for (let i = 0; i < depth; i++) y = tf.relu(y).add(tf.scalar(0.5));
      return y.sum();
    };
    for (const gradients of [lean, stock]) {
      const before = tf.memory().numBytes;
      const { value, grads } = gradients(f, [x]);
      atBottom[atBottom.length - 1]! -= before;
      tf.dispose([value, ...grads]);
    }
    const [ours, theirs] = atBottom.map((b) => b / (4 * n));
    assert.ok(theirs! >= 2 * depth, `the stock walk held ${theirs} tensors of the chain's size at its end`);
    assert.ok(ours! <= 4, `the walk held ${ours} tensors of the chain's size at its end`);
    x.dispose();
  });

  it('frees no gradient still in use: passed through as is, summed over several uses, or nested', () => {
    const passThrough = tf.customGrad(((a: Tensor) => ({ value: a.clone(), gradFunc: (dy: Tensor) => dy })) as never) as (
      a: Tensor,
    ) => Tensor;
    // Its gradient is the tensor it saved (right where dy is 1, as under a sum).
    const halfSquare = tf.customGrad(((a: Tensor, save: (ts: Tensor[]) => void) => {
      save([a]);
      return { value: a.square().div(2), gradFunc: (_: Tensor, saved: Tensor[]) => saved[0]! };
    }) as never) as (a: Tensor) => Tensor;
    const x = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    for (const gradients of [lean, stock]) {
      const { value, grads } = gradients(() => {
        const y = passThrough(passThrough(x));
        return y
          .mul(y)
          .add(y)
          .sum()
          .add(halfSquare(x.mul(2)).sum());
      }, [x]);
      // 2x + 1 + 4x
      assert.deepEqual(Array.from(grads[0]!.dataSync()), [7, 13, 19]);
      tf.dispose([value, ...grads]);
    }
    assert.equal(tf.memory().numTensors, before);
    // One tensor as the gradient of two inputs, one of which has another use still to come (tfjs-core's
    // own walk disposes it there while the other input's gradient is still that tensor).
    const twin = tf.customGrad(((a: Tensor, b: Tensor) => ({ value: a.add(b), gradFunc: (dy: Tensor) => [dy, dy] })) as never) as (
      a: Tensor,
      b: Tensor,
    ) => Tensor;
    const { value, grads } = lean(() => {
      const [a, b] = [x.mul(1), x.mul(2)];
      const q = a.mul(3);
      return twin(a, b).sum().add(q.sum());
    }, [x]);
    assert.deepEqual(Array.from(grads[0]!.dataSync()), [6, 6, 6]);
    tf.dispose([value, ...grads]);
    assert.equal(tf.memory().numTensors, before);
    // A second-order gradient: d²(x³)/dx² = 6x.
    const second = tf.grad(tf.grad((a: Tensor) => a.pow(3).sum() as Tensor) as (a: Tensor) => Tensor);
    const g = tf.tidy(() => second(x).sum());
    assert.deepEqual(Array.from(g.dataSync()), [36]);
    g.dispose();
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });
});
