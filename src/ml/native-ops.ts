/**
 * Training ops that stock tfjs-node runs slowly, done by TensorFlow's own kernels instead, through
 * the native backend's `executeSingleOutput` (the binding tfjs-node's kernels use themselves).
 *
 * - ReLU's gradient: tfjs-node builds it from `step`, whose kernel fills JS-side `ones`/`fill`
 *   tensors of the activation's full size and selects between them; TensorFlow's `ReluGrad` is one
 *   multithreaded pass. At 224 px this alone was most of a Basic CNN's gradient step.
 * - Dropout noise: `tf.randomUniform` fills its buffer in a JS loop (25.7 M numbers per step for the
 *   Basic CNN's first dropout at 224 px, batch 32); `StatelessRandomUniform` is native and, seeded by
 *   (layer seed, step), makes every mask reproducible, so a run resumed from a checkpoint draws the
 *   same masks as one that never stopped.
 */
import type { Tensor } from '@tensorflow/tfjs-node';
import type { Tf } from './tf';

interface NativeBackend {
  binding: { TF_ATTR_TYPE: number; TF_FLOAT: number; TF_INT32: number };
  executeSingleOutput(name: string, attrs: { name: string; type: number; value: unknown }[], inputs: Tensor[]): Tensor;
}

let installed = false;

function native(tf: Tf): NativeBackend {
  return tf.backend() as unknown as NativeBackend;
}

/** Registers the native gradients once per process (idempotent). */
export function installNativeGradients(tf: Tf): void {
  if (installed) return;
  installed = true;
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({
      x: () => {
        const backend = native(tf);
        const T = { name: 'T', type: backend.binding.TF_ATTR_TYPE, value: backend.binding.TF_FLOAT };
        return backend.executeSingleOutput('ReluGrad', [T], [dy as Tensor, saved[0]!]);
      },
    }),
  });
}

/** Uniform [0, 1) floats of `shape`, a pure function of `seed` (two int32s). */
export function statelessUniform(tf: Tf, shape: number[], seed: [number, number]): Tensor {
  const backend = native(tf);
  const { TF_ATTR_TYPE, TF_FLOAT, TF_INT32 } = backend.binding;
  const shapeT = tf.tensor1d(shape, 'int32');
  const seedT = tf.tensor1d([seed[0] | 0, seed[1] | 0], 'int32');
  try {
    return backend.executeSingleOutput(
      'StatelessRandomUniform',
      [
        { name: 'dtype', type: TF_ATTR_TYPE, value: TF_FLOAT },
        { name: 'T', type: TF_ATTR_TYPE, value: TF_INT32 },
        { name: 'Tseed', type: TF_ATTR_TYPE, value: TF_INT32 },
      ],
      [shapeT, seedT],
    );
  } finally {
    tf.dispose([shapeT, seedT]);
  }
}
