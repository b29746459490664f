/**
 * The one place that loads TensorFlow.js. Requires the native `tensorflow` backend: the pure-JS
 * fallback trains ~50x slower, so silently using it would turn a run into a stall.
 */
import type * as TfNode from '@tensorflow/tfjs-node';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { installLeanGradients } from './lean-gradients';

export type Tf = typeof TfNode;

let loaded: Tf | undefined;

export class NativeBackendError extends Error {
  override readonly name = 'NativeBackendError';
}

/**
 * libtensorflow reads these once, when it loads: call this before it loads, and before forking
 * processes that should inherit them.
 */
export function configureTensorflowEnv(): void {
  // oneDNN crashes (SIGFPE) on some 1x1 convolutions on these CPUs. Set TF_ENABLE_ONEDNN_OPTS=1
  // explicitly to opt back in.
  process.env.TF_ENABLE_ONEDNN_OPTS ??= '0';
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
}

export function loadTf(): Tf {
  if (loaded) return loaded;
  configureTensorflowEnv();
  restoreIsNullOrUndefined();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tf = require('@tensorflow/tfjs-node') as Tf;
  if (tf.getBackend() !== 'tensorflow') {
    throw new NativeBackendError(
      `TensorFlow.js is on the '${tf.getBackend()}' backend, not the native 'tensorflow' one; run 'npm run setup'`,
    );
  }
  loadOpsLibrary();
  installLeanGradients(tf);
  loaded = tf;
  return tf;
}

/**
 * tfjs-node 4.22 checks its op inputs with util.isNullOrUndefined, which Node.js 23 removed: on
 * Node.js 24 every such op would throw "is not a function". It looks the function up on the module
 * at each call, so putting it back (same meaning) before the first op is enough.
 */
function restoreIsNullOrUndefined(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const util = require('node:util') as { isNullOrUndefined?: (value: unknown) => boolean };
  util.isNullOrUndefined ??= (value: unknown) => value === null || value === undefined;
}

/**
 * The training ops library (src/native/cnn_ops.cc, compiled by `npm run setup` into
 * dist/native/cnn_ops.node): loading it registers its kernels into the TensorFlow tfjs-node runs on.
 */
function loadOpsLibrary(): void {
  // From dist/src/ml (built) or src/ml (ts-node).
  const candidates = [resolve(__dirname, '..', '..', 'native'), resolve(__dirname, '..', '..', 'dist', 'native')].map((dir) =>
    resolve(dir, 'cnn_ops.node'),
  );
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new NativeBackendError(`the training ops library is missing (looked for ${candidates.join(', ')}); run 'npm run setup'`);
  process.dlopen({ exports: {} }, path);
}
