/**
 * The engine's backward pass, freeing as it goes. tfjs-core's own `engine.gradients` (4.22) walks
 * the tape in one scope: every node's output gradient and every tensor a kernel saved for its
 * gradient stays alive until the whole backward pass ends, so at its end a network holds all its
 * activations and all their gradients at once (ResNet50 at 224 px, batch 16: 1.7 GB saved by the
 * forward pass, 4.4 GB at the backward pass' peak). TensorFlow's own tape frees each as soon as no
 * node left to process needs it; this walk does the same: after a node's input gradients are
 * computed, its output gradients (every consumer of those outputs came later on the tape, so was
 * already processed) and its saved tensors are freed, unless they are still some input's gradient.
 * The walk is otherwise tfjs-core's: the same nodes in the same order, the same kernels, gradients
 * summed in the same order, so the results are the same bit for bit. Nested (higher-order)
 * gradients free nothing early, as tfjs-core keeps their tape.
 */
import type { Tensor } from '@tensorflow/tfjs-node';
import type { Tf } from './tf';

interface TapeNode {
  inputs: Record<string, Tensor>;
  outputs: Tensor[];
  saved?: Tensor[];
  gradient?: (dys: (Tensor | null)[]) => Record<string, () => Tensor>;
  kernelName: string;
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  tidy<T>(name: string, f: () => T): T;
  tidy<T>(f: () => T): T;
  runKernel(name: string, inputs: Record<string, Tensor>): Tensor;
  gradients: Gradients;
}

type Gradients = (
  f: () => Tensor,
  xs: Tensor[],
  dy?: Tensor,
  allowNoGradients?: boolean,
) => { value: Tensor; grads: (Tensor | undefined)[] };

const installedIn = new WeakSet<object>();

/** Replaces the engine's `gradients` (idempotent). */
export function installLeanGradients(tf: Tf): void {
  const engine = tf.engine() as unknown as EngineInternals;
  if (installedIn.has(engine)) return;
  installedIn.add(engine);
  engine.gradients = (f, xs, dy, allowNoGradients = false) => {
    if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
    if (dy && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    engine.startTape();
    let y: Tensor;
    try {
      y = engine.tidy('forward', f);
    } finally {
      engine.endTape();
    }
    if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
    const tape = filteredTape(engine.state.activeTape!, xs, y);
    if (!allowNoGradients && tape.length === 0)
      throw new Error(
        'Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.',
      );
    return engine.tidy('backward', () => {
      const outermost = engine.state.gradientDepth === 0;
      const grads = new GradientMap(xs);
      grads.set(y.id, dy ?? tf.ones(y.shape));
      for (let i = tape.length - 1; i >= 0; i--) {
        const node = tape[i]!;
        if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
        const inputGradients = node.gradient(node.outputs.map((o) => grads.get(o.id) ?? null));
        for (const name in node.inputs) {
          if (!(name in inputGradients))
            throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`);
          const dx = engine.tidy(() => inputGradients[name]!());
          const x = node.inputs[name]!;
          if (dx.dtype !== 'float32')
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`,
            );
          if (!tf.util.arraysEqual(dx.shape, x.shape))
            throw new Error(
              `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
            );
          const current = grads.get(x.id);
          if (!current) grads.set(x.id, dx);
          else {
            grads.set(x.id, engine.runKernel('Add', { a: current, b: dx }));
            // tfjs-core disposes it even when another input's gradient is the same tensor.
            if (!grads.holds(current)) current.dispose();
          }
        }
        if (outermost) {
          for (const o of node.outputs) grads.release(o.id);
          for (const t of node.saved ?? []) if (!grads.holds(t)) t.dispose();
        }
      }
      const result = xs.map((x) => grads.get(x.id));
      if (outermost) {
        for (const node of engine.state.activeTape!) for (const t of node.saved ?? []) t.dispose();
        engine.state.activeTape = null;
      }
      return { value: y, grads: result };
    });
  };
}

/** Gradients by tensor id; a tensor is freed when the last id holding it is released (never an x's). */
class GradientMap {
  private readonly byId = new Map<number, Tensor>();
  private readonly holders = new Map<Tensor, number>();
  private readonly wanted: Set<number>;

  constructor(xs: Tensor[]) {
    this.wanted = new Set(xs.map((x) => x.id));
  }

  get(id: number): Tensor | undefined {
    return this.byId.get(id);
  }

  holds(t: Tensor): boolean {
    return this.holders.has(t);
  }

  set(id: number, t: Tensor): void {
    const previous = this.byId.get(id);
    if (previous) this.forget(previous);
    this.byId.set(id, t);
    this.holders.set(t, (this.holders.get(t) ?? 0) + 1);
  }

  release(id: number): void {
    const t = this.byId.get(id);
    if (!t || this.wanted.has(id)) return;
    this.byId.delete(id);
    if (this.forget(t) === 0) t.dispose();
  }

  private forget(t: Tensor): number {
    const n = this.holders.get(t)! - 1;
    if (n === 0) this.holders.delete(t);
    else this.holders.set(t, n);
    return n;
  }
}

/**
 * The nodes on a path from an x to y, in tape order, their inputs pruned to those that depend on
 * an x (tfjs-core's getFilteredNodesXToY, which it does not export).
 */
function filteredTape(tape: TapeNode[], xs: Tensor[], y: Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<TapeNode>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<TapeNode>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const input of Object.values(node.inputs)) toY.add(input.id);
      nodesToY.add(node);
    }
  }
  return tape
    .filter((node) => nodesFromX.has(node) && nodesToY.has(node))
    .map((node) => ({
      ...node,
      inputs: Object.fromEntries(Object.entries(node.inputs).filter(([, input]) => fromX.has(input.id))),
    }));
}
