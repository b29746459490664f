/**
 * Saves and loads tfjs layers models under an S3 prefix: model.json + weights.bin (the standard
 * tfjs format), metadata.json (class names and input size, for serving) and model.tar.gz (the
 * same three files, as SageMaker's ModelDataUrl expects).
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { ModelArtifacts, SaveResult, WeightsManifestEntry } from '@tensorflow/tfjs-core/dist/io/types';

import { joinUri, type S3Store } from '../storage/s3';
import { packModelArchive } from './model-archive';
import { loadTf } from './tf';

/** SageMaker's model artifact, beside the tfjs files. */
export const MODEL_ARCHIVE = 'model.tar.gz';

export interface ModelMetadata {
  modelClass: string;
  classes: string[];
  imageSize: number;
  /** Inputs are RGB floats in [0, 1]. */
  inputScale: '0-1';
}

export async function saveModelToS3(s3: S3Store, model: LayersModel, prefixUri: string, metadata: ModelMetadata): Promise<void> {
  await model.save({
    save: async (artifacts: ModelArtifacts): Promise<SaveResult> => {
      const weights = artifacts.weightData;
      const bytes =
        weights === undefined
          ? new Uint8Array()
          : Array.isArray(weights)
            ? Buffer.concat(weights.map((b) => new Uint8Array(b)))
            : new Uint8Array(weights);
      const modelJson = {
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology,
        trainingConfig: artifacts.trainingConfig,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      const files = [
        { name: 'weights.bin', bytes },
        { name: 'metadata.json', bytes: Buffer.from(JSON.stringify(metadata, null, 2)) },
        { name: 'model.json', bytes: Buffer.from(JSON.stringify(modelJson)) },
      ];
      await s3.put(joinUri(prefixUri, 'weights.bin'), bytes);
      await s3.put(joinUri(prefixUri, 'metadata.json'), files[1]!.bytes, 'application/json');
      await s3.put(joinUri(prefixUri, MODEL_ARCHIVE), packModelArchive(files), 'application/gzip');
      // model.json last: a prefix with model.json is complete.
      await s3.put(joinUri(prefixUri, 'model.json'), files[2]!.bytes, 'application/json');
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: bytes.byteLength } };
    },
  });
}

export async function loadModelFromS3(s3: S3Store, prefixUri: string): Promise<{ model: LayersModel; metadata: ModelMetadata }> {
  const tf = loadTf();
  const [modelJson, weights, metadata] = await Promise.all([
    s3.getJson<{
      modelTopology: object;
      weightsManifest: { weights: WeightsManifestEntry[] }[];
      format?: string;
      generatedBy?: string;
      convertedBy?: string;
    }>(joinUri(prefixUri, 'model.json')),
    s3.getBytes(joinUri(prefixUri, 'weights.bin')),
    s3.getJson<ModelMetadata>(joinUri(prefixUri, 'metadata.json')),
  ]);
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  const model = await tf.loadLayersModel({
    load: async () => ({
      modelTopology: modelJson.modelTopology,
      weightSpecs: modelJson.weightsManifest.flatMap((g) => g.weights),
      weightData,
      format: modelJson.format,
      generatedBy: modelJson.generatedBy,
      convertedBy: modelJson.convertedBy,
    }),
  });
  return { model, metadata };
}
