/**
 * Layers of our own. `SeededDropout` is Keras' inverted dropout with native, reproducible noise:
 * the mask of training step `s` is drawn from (seed, s), and the loop sets `step` when it resumes.
 * It serialises under the class name `Dropout` with the built-in layer's config, so a saved model
 * loads in any tfjs (and in ours, which registers this class for that name).
 */
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { statelessUniform } from './native-ops';
import type { Tf } from './tf';

export interface SeededDropoutLayer {
  step: number;
}

interface DropoutArgs {
  rate: number;
  seed?: number;
}

type LayerClass = new (args: DropoutArgs) => InstanceType<Tf['layers']['Layer']> & SeededDropoutLayer;

let dropoutClass: LayerClass | undefined;

function defineSeededDropout(tf: Tf): LayerClass {
  class SeededDropout extends tf.layers.Layer implements SeededDropoutLayer {
    static className = 'Dropout';
    readonly rate: number;
    readonly seed: number;
    step = 0;

    constructor(args: DropoutArgs & { name?: string; inputShape?: number[] }) {
      super(args);
      if (!(args.rate >= 0 && args.rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${args.rate}`);
      this.rate = args.rate;
      this.seed = args.seed ?? 0;
      this.supportsMasking = true;
    }

    override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      if (!kwargs.training || this.rate === 0) return x;
      const keep = 1 - this.rate;
      const noise = statelessUniform(tf, x.shape, [this.seed, this.step++]);
      return tf.tidy(() =>
        x.mul(
          noise
            .add(keep)
            .floor()
            .mul(1 / keep),
        ),
      );
    }

    override getConfig() {
      return { ...super.getConfig(), rate: this.rate, seed: this.seed };
    }
  }
  tf.serialization.registerClass(SeededDropout);
  return SeededDropout as unknown as LayerClass;
}

export function seededDropout(tf: Tf, args: DropoutArgs) {
  dropoutClass ??= defineSeededDropout(tf);
  return new dropoutClass(args);
}

/** Registers our layer classes, so models we saved load with them (call before loading one). */
export function registerLayers(tf: Tf): void {
  dropoutClass ??= defineSeededDropout(tf);
}

/** Sets every seeded dropout's step counter, so a resumed run draws the masks it would have. */
export function setDropoutStep(model: LayersModel, step: number): void {
  for (const layer of model.layers)
    if ('step' in layer && layer.getClassName() === 'Dropout') (layer as unknown as SeededDropoutLayer).step = step;
}
