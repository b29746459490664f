/** Loads a model to serve from an S3 prefix or a local directory (SageMaker's /opt/ml/model). */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadConfig } from '../config';
import { loadModelFromS3, type ModelMetadata } from '../ml/model-store';
import { loadTf } from '../ml/tf';
import { createS3Client, S3Store } from '../storage/s3';
import type { LoadedModel } from './server';

export async function loadServedModel(request: { modelUri: string; name?: string; version?: string }): Promise<LoadedModel> {
  const info = { name: request.name, version: request.version, modelUri: request.modelUri };
  if (request.modelUri.startsWith('s3://')) {
    const s3 = new S3Store(createS3Client(loadConfig(process.env)));
    const { model, metadata } = await loadModelFromS3(s3, request.modelUri);
    return { model, metadata, info };
  }
  const dir = resolve(request.modelUri.replace(/^file:\/\//, ''));
  const tf = loadTf();
  const model = await tf.loadLayersModel(`file://${join(dir, 'model.json')}`);
  const metadata = JSON.parse(await readFile(join(dir, 'metadata.json'), 'utf8')) as ModelMetadata;
  return { model, metadata, info };
}
