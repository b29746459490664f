import { strict as assert } from 'node:assert';
import { ApplicationFailure } from '@temporalio/common';
import { createDataActivities } from '../../src/activities/preprocess';
import type { PreprocessInput } from '../../src/common/types';
import { loadSplit } from '../../src/data/dataset';
import type { DatasetManifest } from '../../src/data/shards';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
import { runActivity, seededDataset, testS3, uniqueBucket } from '../helpers/services';

describe('preprocessDataset activity (S3 on moto)', () => {
  const s3 = testS3();
  const activities = createDataActivities({ s3, shardSize: 16 });
  const run = (input: PreprocessInput) => runActivity(activities.preprocessDataset, [input]);
  const input = (dataUri: string): PreprocessInput => ({ dataUri, imageSize: 24, numClasses: 2, validationSplit: 0.25, seed: 1 });

  it('writes stratified uint8 shards with correct labels, and hits its cache the second time', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 20, testPerClass: 6, size: 40 });
    const prepared = await run(input(dataUri));
    assert.deepEqual(prepared.classes, ['benign', 'malignant']);
    assert.deepEqual(prepared.splits.validation.perClass, { benign: 5, malignant: 5 });
    assert.deepEqual(prepared.splits.train.perClass, { benign: 15, malignant: 15 });
    assert.deepEqual(prepared.splits.test.perClass, { benign: 6, malignant: 6 });

    const manifest = await s3.getJson<DatasetManifest>(prepared.manifestUri);
    assert.equal(manifest.splits.train.shards.length, 2, 'shards are bounded by shardSize');
    const train = await loadSplit(s3, manifest, manifest.splits.train);
    assert.equal(train.pixels.length, 30 * 24 * 24 * 3);
    // Labels follow the folders: 15 of each, never collapsed to one class.
    assert.equal(train.labels.filter((l) => l === 1).length, 15);
    assert.equal(train.labels.filter((l) => l === 0).length, 15);

    const objectsBefore = (await s3.list(prepared.manifestUri.replace(/manifest\.json$/, ''))).length;
    const again = await run(input(dataUri));
    assert.equal(again.manifestUri, prepared.manifestUri);
    assert.equal((await s3.getJson<DatasetManifest>(again.manifestUri)).createdAt, manifest.createdAt, 'cache hit does not rewrite');
    assert.equal((await s3.list(prepared.manifestUri.replace(/manifest\.json$/, ''))).length, objectsBefore);

    const other = await run({ ...input(dataUri), imageSize: 16 });
    assert.notEqual(other.manifestUri, prepared.manifestUri, 'other parameters, other output');
  });

  const rejectsWith = async (dataUri: string, pattern: RegExp): Promise<void> => {
    await assert.rejects(run(input(dataUri)), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, `expected ApplicationFailure, got ${String(err)}`);
      assert.equal(err.type, 'InvalidDatasetError');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, pattern);
      return true;
    });
  };

  const putImage = async (uri: string): Promise<void> => s3.put(uri, await encodeJpeg(syntheticLesion('benign', 16, 1), 16), 'image/jpeg');

  it('fails non-retryably on an empty prefix, naming it', async () => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    await rejectsWith(`s3://${bucket}/nothing`, new RegExp(`no objects under s3://${bucket}/nothing/`));
  });

  it('fails non-retryably when the test split is missing', async () => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    await putImage(`s3://${bucket}/d/train/benign/a.jpg`);
    await putImage(`s3://${bucket}/d/train/malignant/a.jpg`);
    await rejectsWith(`s3://${bucket}/d`, new RegExp(`no images under s3://${bucket}/d/test/`));
  });

  it('fails non-retryably with a single class', async () => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    await putImage(`s3://${bucket}/d/train/benign/a.jpg`);
    await putImage(`s3://${bucket}/d/test/benign/a.jpg`);
    await rejectsWith(`s3://${bucket}/d`, /train\/ has 1 class folder\(s\) \(benign\); at least two/);
  });

  it('fails non-retryably when a class has no test images', async () => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    for (const key of ['train/benign/a.jpg', 'train/malignant/a.jpg', 'train/malignant/b.jpg', 'test/benign/a.jpg'])
      await putImage(`s3://${bucket}/d/${key}`);
    await rejectsWith(`s3://${bucket}/d`, /d\/test\/malignant\/ has no images/);
  });
});
