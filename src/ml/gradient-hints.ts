/**
 * What an op's gradient tells the gradient of the op below it, so that work is not done twice.
 * Kept by tensor identity in weak collections: a hint goes with the tensor it describes.
 *
 * - Per-channel sums of a gradient, given by the op that made it: a bias added below that layer
 *   takes them as its gradient. Max pooling's input gradient puts each pooled gradient in one place
 *   (where its max came from, adding where windows overlap), so per channel both sum to the same,
 *   and its gradient op sums the pooled one; CnnDropoutReluGrad sums as it writes.
 * - Gradients already through the ReLU below: a max pool over a ReLU's output sends nothing to a
 *   window whose max is 0, which is where the ReLU's gradient is 0 (the max is where it is not); a
 *   dropout over one masks where the ReLU's output is 0 as it applies its own mask.
 * - Outputs of convolutions with their ReLU inside, by data (the engine wraps outputs in new tensors).
 */
import type { Tensor } from '@tensorflow/tfjs-node';

const channelSums = new WeakMap<Tensor, Tensor>();
const throughRelu = new WeakSet<Tensor>();
const reluOutputs = new WeakSet<object>();

export function markReluOutput(y: Tensor): void {
  reluOutputs.add(y.dataId as object);
}

export function isReluOutput(x: Tensor): boolean {
  return reluOutputs.has(x.dataId as object);
}

/** Records what the op that made `dx` knows about it: its per-channel sums, and whether it is already through a ReLU. */
export function describeGradient(dx: Tensor, hint: { channelSums: Tensor; throughRelu: boolean }): void {
  channelSums.set(dx, hint.channelSums);
  if (hint.throughRelu) throughRelu.add(dx);
}

export function isThroughRelu(dy: Tensor): boolean {
  return throughRelu.has(dy);
}

/** `dy`'s per-channel sums, when the op that made `dy` gave them. */
export function knownChannelSums(dy: Tensor): Tensor | undefined {
  const sums = channelSums.get(dy);
  return sums && !sums.isDisposed ? sums : undefined;
}
