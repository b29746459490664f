/**
 * Initial weights for a model from a tfjs layers model saved under an S3 prefix (model.json and
 * its weight files), e.g. ResNet50 weights a user converted from Keras. Weights are matched in
 * order and by shape; only the classification head may differ (another number of classes), and
 * then keeps its fresh initialisation.
 */
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import type { WeightsManifestEntry } from '@tensorflow/tfjs-core/dist/io/types';
import { joinUri, type S3Store } from '../storage/s3';
import { loadTf } from './tf';
import { FAILURE } from '../common/failures';

export class InvalidInitialWeightsError extends Error {
  override readonly name = FAILURE.invalidInitialWeights;
}

export async function loadInitialWeights(s3: S3Store, uri: string, model: LayersModel): Promise<{ loaded: number; kept: string[] }> {
  const tf = loadTf();
  const modelJsonUri = joinUri(uri, 'model.json');
  if (!(await s3.exists(modelJsonUri))) throw new InvalidInitialWeightsError(`initial weights: ${modelJsonUri} does not exist`);
  const { weightsManifest } = await s3.getJson<{ weightsManifest?: { paths: string[]; weights: WeightsManifestEntry[] }[] }>(modelJsonUri);
  if (!weightsManifest?.length) throw new InvalidInitialWeightsError(`initial weights: ${modelJsonUri} has no weightsManifest`);
  const buffers = await Promise.all(weightsManifest.flatMap((g) => g.paths.map((p) => s3.getBytes(joinUri(uri, p)))));
  const bytes = Buffer.concat(buffers);
  const specs = weightsManifest.flatMap((g) => g.weights);
  const named = tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, specs);
  const source = specs.map((s) => named[s.name]!);
  const target = model.weights;
  try {
    if (source.length !== target.length) {
      throw new InvalidInitialWeightsError(
        `initial weights at ${uri} hold ${source.length} tensors; ${model.name} has ${target.length}: is it the same architecture?`,
      );
    }
    source.forEach((t, i) => {
      const bad = t.dtype === 'float32' ? countNonFinite(t.dataSync() as Float32Array) : 0;
      if (bad)
        throw new InvalidInitialWeightsError(
          `initial weights at ${uri}: tensor ${i} (${specs[i]!.name}) holds ${bad} value(s) that are NaN or infinite; the weights are corrupt`,
        );
    });
    const current = model.getWeights();
    const kept: string[] = [];
    const head = new Set(model.layers.at(-1)!.weights.map((w) => w.originalName));
    const values: Tensor[] = target.map((w, i) => {
      const same = source[i]!.shape.join('x') === w.shape.join('x');
      if (same) return source[i]!;
      // The head (the last layer's kernel and bias) may be for other classes.
      if (head.has(w.originalName)) {
        kept.push(w.originalName);
        return current[i]!;
      }
      throw new InvalidInitialWeightsError(
        `initial weights at ${uri}: tensor ${i} (${specs[i]!.name}) is ${source[i]!.shape.join('x')}, ${w.originalName} needs ${w.shape.join('x')}`,
      );
    });
    model.setWeights(values);
    return { loaded: target.length - kept.length, kept };
  } finally {
    tf.dispose(Object.values(named));
  }
}

function countNonFinite(values: Float32Array): number {
  let n = 0;
  for (const v of values) if (!Number.isFinite(v)) n++;
  return n;
}
