/**
 * Adam as TensorFlow's fused `ResourceApplyAdam` kernel: one multithreaded pass per weight instead
 * of tfjs' fourteen elementwise ops (at 224 px the Basic CNN's dense layer has 25.7 M weights, and
 * tfjs' Adam spent longer on them than the whole backward pass of the layer). The update is Keras'
 * (and TensorFlow's): alpha = lr * sqrt(1 - b2^t) / (1 - b1^t); w -= alpha * m / (sqrt(v) + eps).
 *
 * Each weight has a TensorFlow resource variable (with its `m` and `v`), created on the first
 * update from the model's tfjs variable; after each update the tfjs variable takes the new value
 * (the model reads those). Resource variables live outside tfjs' memory accounting: dispose()
 * destroys them.
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
  handles: [Tensor, Tensor, Tensor]; // weight, m, v
}

interface Backend {
  binding: Record<string, number>;
  executeSingleOutput(name: string, attrs: object[], inputs: Tensor[]): Tensor;
  executeMultipleOutputs(name: string, attrs: object[], inputs: Tensor[], count: number): Tensor[];
}

let uid = 0;

export class NativeAdam implements TrainingOptimizer {
  private slots: Slot[] = [];
  private iterations = 0;
  /** Slot values restored from a checkpoint before the first update created the variables. */
  private pending?: { m: Tensor[]; v: Tensor[] };

  constructor(
    private readonly tf: Tf,
    private readonly learningRate: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly epsilon = 1e-7,
  ) {}

  private get backend(): Backend {
    return this.tf.backend() as unknown as Backend;
  }

  private attr(name: string, kind: 'type' | 'bool' | 'shape' | 'string', value: unknown) {
    const b = this.backend.binding;
    const type = { type: b.TF_ATTR_TYPE, bool: b.TF_ATTR_BOOL, shape: b.TF_ATTR_SHAPE, string: b.TF_ATTR_STRING }[kind];
    return { name, type, value: kind === 'type' ? b.TF_FLOAT : value };
  }

  private resourceVariable(initial: Tensor): Tensor {
    const be = this.backend;
    const handle = be.executeSingleOutput(
      'VarHandleOp',
      [
        this.attr('dtype', 'type', 0),
        this.attr('shape', 'shape', initial.shape),
        this.attr('container', 'string', ''),
        this.attr('shared_name', 'string', `cnn_adam_${process.pid}_${uid++}`),
      ],
      [],
    );
    be.executeMultipleOutputs('AssignVariableOp', [this.attr('dtype', 'type', 0)], [handle, initial], 0);
    return handle;
  }

  private read(handle: Tensor): Tensor {
    return this.backend.executeSingleOutput('ReadVariableOp', [this.attr('dtype', 'type', 0)], [handle]);
  }

  applyGradients(grads: Record<string, Tensor>): void {
    const tf = this.tf;
    const variables = Object.keys(grads).map((name) => tf.engine().registeredVariables[name]!);
    if (!this.slots.length) this.createSlots(variables);
    this.iterations++;
    const t = this.iterations;
    const scalars = [this.beta1 ** t, this.beta2 ** t, this.learningRate, this.beta1, this.beta2, this.epsilon].map((x) => tf.scalar(x));
    const attrs = [this.attr('T', 'type', 0), this.attr('use_locking', 'bool', false), this.attr('use_nesterov', 'bool', false)];
    for (const slot of this.slots) {
      const grad = grads[slot.variable.name];
      if (!grad) continue;
      this.backend.executeMultipleOutputs('ResourceApplyAdam', attrs, [...slot.handles, ...scalars, grad], 0);
      const updated = this.read(slot.handles[0]);
      slot.variable.assign(updated);
      updated.dispose();
    }
    tf.dispose(scalars);
  }

  private createSlots(variables: Variable[]): void {
    const tf = this.tf;
    this.slots = variables.map((variable, i) => {
      const zeros = tf.zerosLike(variable);
      const m = this.pending?.m[i] ?? zeros;
      const v = this.pending?.v[i] ?? zeros;
      const handles: Slot['handles'] = [this.resourceVariable(variable), this.resourceVariable(m), this.resourceVariable(v)];
      zeros.dispose();
      return { variable, handles };
    });
    if (this.pending) tf.dispose([...this.pending.m, ...this.pending.v]);
    this.pending = undefined;
  }

  /** tfjs' layout for Adam: the iteration count, then every first moment, then every second moment. */
  async getWeights(): Promise<NamedTensor[]> {
    const m = this.slots.map((s) => ({ name: `${s.variable.name}/m`, tensor: this.read(s.handles[1]) }));
    const v = this.slots.map((s) => ({ name: `${s.variable.name}/v`, tensor: this.read(s.handles[2]) }));
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
    const be = this.backend;
    for (const slot of this.slots)
      for (const handle of slot.handles) {
        be.executeMultipleOutputs('DestroyResourceOp', [this.attr('ignore_lookup_error', 'bool', true)], [handle], 0);
        handle.dispose();
      }
    this.slots = [];
    if (this.pending) this.tf.dispose([...this.pending.m, ...this.pending.v]);
  }
}
