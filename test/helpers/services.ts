/** Clients for the test services started by test/helpers/global.ts. */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createDataActivities } from '../../src/activities/preprocess';
import type { PreparedDataset } from '../../src/common/types';
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

/** The training child processes (src/training/child) this test process started. */
export function trainingChildPids(): number[] {
  return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => /training\/child/.test(l))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** A small preprocessed dataset (40 training and 6 test images per class at 24 px, prepared at 16 px) for training tests. */
export async function smallPreparedDataset(s3: S3Store): Promise<PreparedDataset> {
  const dataUri = await seededDataset(s3, { trainPerClass: 40, testPerClass: 6, size: 24 });
  return runActivity(createDataActivities({ store: s3 }).preprocessDataset, [
    { dataUri, imageSize: 16, numClasses: 2, validationSplit: 0.25, seed: 5, maxSkippedFraction: 0 },
  ]);
}
