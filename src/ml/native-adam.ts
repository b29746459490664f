/**
 * Adam as one op of our own for all the weights (`CnnAdam`, src/native/cnn_ops.cc): TensorFlow's
 * ApplyAdam update, bit for bit, in one multithreaded pass, instead of tfjs' fourteen elementwise ops
 * per weight (at 224 px the Basic CNN's dense layer has 25.7 M weights, and tfjs' Adam spent longer
 * on them than the whole backward pass of the layer). The update is Keras' (and TensorFlow's):
 * alpha = lr * sqrt(1 - b2^t) / (1 - b1^t); w -= alpha * m / (sqrt(v) + eps).
 *
 * The op writes each weight's new value, m and v into new buffers; the tfjs variable takes the new
 * value (the model reads those). TensorFlow's ResourceApplyAdam updates in place, but only after
 * copying a buffer anything else holds, which the tfjs variable always did: a copy of every weight
 * at every step.
 */
import type { Tensor, Variable } from '@tensorflow/tfjs-core';
import type { NamedTensor } from '@tensorflow/tfjs-core/dist/tensor_types';
import type { Tf } from './tf';

/** The part of tfjs' Optimizer the training loop and checkpoints use. */
export interface TrainingOptimizer {
  /** One update from gradients keyed by variable name; disposes nothing. */
  applyGradients(grads: Record<string, Tensor>): void;
  getWeights(): Promise<NamedTensor[]>;
  setWeights(weights: NamedTensor[]): Promise<void>;
  dispose(): void;
}

interface Slot {
  variable: Variable;
  m: Tensor;
  v: Tensor;
}

interface Backend {
  binding: Record<string, number>;
  executeMultipleOutputs(name: string, attrs: object[], inputs: Tensor[], count: number): Tensor[];
}

export class NativeAdam implements TrainingOptimizer {
  private slots: Slot[] = [];
  private iterations = 0;
  /** Slot values restored from a checkpoint before the first update created the slots. */
  private pending?: { m: Tensor[]; v: Tensor[] };

  constructor(
    private readonly tf: Tf,
    private readonly learningRate: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly epsilon = 1e-7,
  ) {}

  applyGradients(grads: Record<string, Tensor>): void {
    const tf = this.tf;
    if (!this.slots.length) this.createSlots(Object.keys(grads).map((name) => tf.engine().registeredVariables[name]!));
    const slots = this.slots.filter((s) => grads[s.variable.name]);
    if (!slots.length) return;
    this.iterations++;
    const t = this.iterations;
    const be = tf.backend() as unknown as Backend;
    const f = be.binding.TF_ATTR_FLOAT!;
    const attrs = [
      { name: 'N', type: be.binding.TF_ATTR_INT, value: slots.length },
      { name: 'lr', type: f, value: this.learningRate },
      { name: 'beta1', type: f, value: this.beta1 },
      { name: 'beta2', type: f, value: this.beta2 },
      { name: 'epsilon', type: f, value: this.epsilon },
    ];
    const powers = tf.tensor1d([this.beta1 ** t, this.beta2 ** t]);
    const inputs = [
      ...slots.map((s) => s.variable),
      ...slots.map((s) => s.m),
      ...slots.map((s) => s.v),
      ...slots.map((s) => grads[s.variable.name]!),
    ];
    const out = be.executeMultipleOutputs('CnnAdam', attrs, [...inputs, powers], 3 * slots.length);
    powers.dispose();
    const n = slots.length;
    slots.forEach((slot, i) => {
      slot.variable.assign(out[i]!);
      out[i]!.dispose();
      tf.dispose([slot.m, slot.v]);
      slot.m = tf.keep(out[n + i]!);
      slot.v = tf.keep(out[2 * n + i]!);
    });
  }

  private createSlots(variables: Variable[]): void {
    const tf = this.tf;
    this.slots = variables.map((variable, i) => ({
      variable,
      m: tf.keep(this.pending?.m[i] ?? tf.zerosLike(variable)),
      v: tf.keep(this.pending?.v[i] ?? tf.zerosLike(variable)),
    }));
    this.pending = undefined;
  }

  /** tfjs' layout for Adam: the iteration count, then every first moment, then every second moment. */
  async getWeights(): Promise<NamedTensor[]> {
    const m = this.slots.map((s) => ({ name: `${s.variable.name}/m`, tensor: s.m.clone() }));
    const v = this.slots.map((s) => ({ name: `${s.variable.name}/v`, tensor: s.v.clone() }));
    return [{ name: 'iter', tensor: this.tf.scalar(this.iterations, 'int32') }, ...m, ...v];
  }

  /** Restores a state saved by getWeights; call before the first update, on a fresh optimizer. */
  async setWeights(weights: NamedTensor[]): Promise<void> {
    if (this.slots.length) throw new Error('NativeAdam.setWeights: restore the state before the first update');
    const [iter, ...moments] = weights;
    this.iterations = (await iter!.tensor.data())[0]!;
    const half = moments.length / 2;
    this.pending = {
      m: moments.slice(0, half).map((w) => w.tensor.clone()),
      v: moments.slice(half).map((w) => w.tensor.clone()),
    };
  }

  dispose(): void {
    this.tf.dispose(this.slots.flatMap((s) => [s.m, s.v]));
    this.slots = [];
    if (this.pending) this.tf.dispose([...this.pending.m, ...this.pending.v]);
    this.pending = undefined;
  }
}
