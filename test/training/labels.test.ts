import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { createDataActivities } from '../../src/activities/preprocess';
import { createTrainingActivities } from '../../src/activities/training';
import type { PreparedDataset, TrainModelInput } from '../../src/common/types';
import { decodeShard, encodeShard, type DatasetManifest } from '../../src/data/shards';
import { runActivity, seededDataset, testMlflow, testS3 } from '../helpers/services';
import { useTestStack } from '../helpers/global';

/**
 * The original pipeline scored 100 % because every label was 0. Training refuses a training split
 * whose labels collapsed to one class, before it spends any time, and says what to check.
 */
useTestStack();

describe('training refuses collapsed labels (child training process, S3 on SeaweedFS, real MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  let collapsed: PreparedDataset;

  before(async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 12, testPerClass: 4, size: 24 });
    const dataset = await runActivity(createDataActivities({ store: s3 }).preprocessDataset, [
      { dataUri, imageSize: 16, numClasses: 2, validationSplit: 0.25, seed: 5, maxSkippedFraction: 0 },
    ]);
    // The same images, every training label rewritten to class 0.
    const manifest = await s3.getJson<DatasetManifest>(dataset.manifestUri);
    const shards = [];
    for (const ref of manifest.splits.train.shards) {
      const shard = decodeShard(await s3.getBytes(ref.uri));
      const uri = ref.uri.replace(/\.bin$/, '') + '-collapsed.bin';
      await s3.put(uri, encodeShard({ ...shard, labels: new Uint16Array(shard.count) }));
      shards.push({ ...ref, uri });
    }
    const manifestUri = dataset.manifestUri.replace(/manifest\.json$/, 'manifest-collapsed.json');
    await s3.putJson(manifestUri, { ...manifest, splits: { ...manifest.splits, train: { ...manifest.splits.train, shards } } });
    collapsed = { ...dataset, manifestUri };
  });

  it('fails non-retryably, naming the one class left, and ends the MLflow run FAILED', async () => {
    const input: TrainModelInput = {
      modelClass: 'Basic',
      dataset: collapsed,
      hyperparams: { optimizer: 'adam', epochs: 2, batchSize: 8, learningRate: 1e-3, crossValFolds: 2, seed: 1 },
      experimentName: 'test-labels',
      registeredModelName: 'test-labels-model',
      workflowId: 'wf-labels',
    };
    const training = createTrainingActivities({ mlflow, onednn: false });
    const err = await runActivity(training.trainModel, [input], { activityId: randomUUID() }).then(
      () => assert.fail('training accepted collapsed labels'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.equal(err.nonRetryable, true);
    assert.equal(err.type, 'InvalidTrainingDataError');
    assert.match(err.message, /labels of 1 class\(es\) only \(benign\)/);
    const experiment = await mlflow.getOrCreateExperiment('test-labels');
    const runs = await mlflow.searchRuns(experiment, "tags.model_class = 'Basic'");
    assert.deepEqual(
      runs.map((r) => r.status),
      ['FAILED'],
    );
  });
});
