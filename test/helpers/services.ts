/** Clients for the test services started by test/helpers/global.ts. */
import { randomUUID } from 'node:crypto';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { loadConfig } from '../../src/config';
import { writeSyntheticDataset } from '../../src/data/generate';
import { createS3Client, parseS3Uri, S3Store } from '../../src/storage/s3';
import { MlflowClient } from '../../src/tracking/mlflow';

export function testS3(): S3Store {
  return new S3Store(createS3Client(loadConfig(process.env)));
}

export function testMlflow(): MlflowClient {
  return new MlflowClient(loadConfig(process.env).mlflow.trackingUri);
}

/** An MLflow run's tags as a record. */
export function runTags(run: { data: { tags?: { key: string; value: string }[] } }): Record<string, string> {
  return Object.fromEntries((run.data.tags ?? []).map((t) => [t.key, t.value]));
}

/** A fresh bucket name, so tests never see each other's objects. */
export function uniqueBucket(prefix = 'test'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Seeds a small synthetic dataset into a fresh bucket and returns its data URI. */
export async function seededDataset(
  s3: S3Store,
  o: { trainPerClass?: number; testPerClass?: number; size?: number } = {},
): Promise<string> {
  const dataUri = `s3://${uniqueBucket('data')}/data`;
  const train = o.trainPerClass ?? 20;
  const test = o.testPerClass ?? 6;
  await s3.ensureBucket(parseS3Uri(dataUri).bucket);
  await writeSyntheticDataset(s3, {
    outUri: dataUri,
    counts: { train: { benign: train, malignant: train }, test: { benign: test, malignant: test } },
    size: o.size ?? 32,
    seed: 3,
  });
  return dataUri;
}

/**
 * Runs an activity function in a mock activity context (whose logger keeps expected failures out
 * of the test output), typed by the function.
 */
export function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info?: Partial<Info>): Promise<R> {
  return new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR') }).run(fn, ...args) as Promise<R>;
}
