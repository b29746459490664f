import { strict as assert } from 'node:assert';
import type { Tensor } from '@tensorflow/tfjs-node';
import { NativeAdam } from '../../src/ml/native-adam';
import { loadTf } from '../../src/ml/tf';

describe('Adam (CnnAdam, from the training ops library)', () => {
  const tf = loadTf();
  const be = tf.backend() as unknown as {
    binding: Record<string, number>;
    executeSingleOutput(name: string, attrs: object[], inputs: Tensor[]): Tensor;
    executeMultipleOutputs(name: string, attrs: object[], inputs: Tensor[], count: number): Tensor[];
  };
  const b = be.binding;
  const dtype = { name: 'dtype', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT };
  let uid = 0;

  /** A TensorFlow resource variable holding `initial`: ResourceApplyAdam, the reference, updates those. */
  function resource(initial: Tensor): Tensor {
    const handle = be.executeSingleOutput(
      'VarHandleOp',
      [
        dtype,
        { name: 'shape', type: b.TF_ATTR_SHAPE, value: initial.shape },
        { name: 'container', type: b.TF_ATTR_STRING, value: '' },
        { name: 'shared_name', type: b.TF_ATTR_STRING, value: `adam_reference_${uid++}` },
      ],
      [],
    );
    be.executeMultipleOutputs('AssignVariableOp', [dtype], [handle, initial], 0);
    return handle;
  }
  const read = (handle: Tensor) => be.executeSingleOutput('ReadVariableOp', [dtype], [handle]);
  const exactlyEqual = (a: Tensor, c: Tensor, what: string) => {
    const [x, y] = [a.dataSync(), c.dataSync()];
    assert.equal(x.length, y.length, what);
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) assert.fail(`${what}[${i}]: ${x[i]} vs ${y[i]}`);
  };

  it("updates every weight, m and v bit for bit as TensorFlow's ResourceApplyAdam, and leaks nothing", async () => {
    // Two weights, one of an odd size (the vector loop's tail), gradients of very different scales.
    const shapes = [[1001, 3], [7]];
    const lr = 0.01;
    const weights = shapes.map((s, i) => tf.variable(tf.randomNormal(s, 0, 1, 'float32', i + 1), true, `adam_test_w${i}`));
    const handles = weights.map((w) => [resource(w), resource(tf.zerosLike(w)), resource(tf.zerosLike(w))]);
    const adam = new NativeAdam(tf, lr);
    let tensorsAfterFirst = 0;
    for (let t = 1; t <= 4; t++) {
      const grads = shapes.map((s, i) => tf.randomNormal(s, 0, 10 ** (i * 3 - t), 'float32', 10 * t + i));
      adam.applyGradients(Object.fromEntries(weights.map((w, i) => [w.name, grads[i]!])));
      const scalars = [0.9 ** t, 0.999 ** t, lr, 0.9, 0.999, 1e-7].map((x) => tf.scalar(x));
      const attrs = [
        { name: 'T', type: b.TF_ATTR_TYPE, value: b.TF_FLOAT },
        { name: 'use_locking', type: b.TF_ATTR_BOOL, value: false },
        { name: 'use_nesterov', type: b.TF_ATTR_BOOL, value: false },
      ];
      handles.forEach((h, i) => be.executeMultipleOutputs('ResourceApplyAdam', attrs, [...h, ...scalars, grads[i]!], 0));
      tf.dispose([...grads, ...scalars]);
      if (t === 1) tensorsAfterFirst = tf.memory().numTensors;
    }
    assert.equal(tf.memory().numTensors, tensorsAfterFirst, 'tensors left behind by an update');
    const state = await adam.getWeights();
    assert.equal(state[0]!.tensor.dataSync()[0], 4);
    weights.forEach((w, i) => {
      const [value, m, v] = handles[i]!.map(read);
      exactlyEqual(w, value!, `weight ${i}`);
      exactlyEqual(state[1 + i]!.tensor, m!, `m ${i}`);
      exactlyEqual(state[1 + shapes.length + i]!.tensor, v!, `v ${i}`);
      tf.dispose([value!, m!, v!]);
    });
    tf.dispose(state.map((s) => s.tensor));
    adam.dispose();
    tf.dispose(weights);
  });

  it('refuses a gradient whose shape is not its weight', () => {
    const w = tf.variable(tf.zeros([4]), true, 'adam_test_shape');
    const adam = new NativeAdam(tf, 1e-3);
    const g = tf.ones([5]);
    assert.throws(() => adam.applyGradients({ [w.name]: g }), /grad has shape \[5\], the weight \[4\]/);
    tf.dispose([w, g]);
    adam.dispose();
  });
});
