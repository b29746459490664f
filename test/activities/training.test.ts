import { strict as assert } from 'node:assert';
import { createDataActivities } from '../../src/activities/preprocess';
import { createTrainingActivities } from '../../src/activities/training';
import type { ModelClass } from '../../src/common/constants';
import type { PreparedDataset, TrainModelInput } from '../../src/common/types';
import { loadSplit } from '../../src/data/dataset';
import type { DatasetManifest } from '../../src/data/shards';
import { evaluatePredictions } from '../../src/ml/metrics';
import { loadModelFromS3 } from '../../src/ml/model-store';
import { predictProbabilities } from '../../src/ml/trainer';
import { runActivity, seededDataset, testMlflow, testS3 } from '../helpers/services';

describe('trainModel activity (native TensorFlow, S3 on moto, real MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  const training = createTrainingActivities({ s3, mlflow });
  let dataset: PreparedDataset;

  before(async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 100, testPerClass: 10, size: 48 });
    dataset = await runActivity(createDataActivities({ store: s3 }).preprocessDataset, [
      { dataUri, imageSize: 24, numClasses: 2, validationSplit: 0.25, seed: 5, maxSkippedFraction: 0 },
    ]);
  });

  const input = (modelClass: ModelClass, over: Partial<TrainModelInput['hyperparams']> = {}): TrainModelInput => ({
    modelClass,
    dataset,
    hyperparams: { optimizer: 'adam', epochs: 15, batchSize: 16, learningRate: 1e-3, crossValFolds: 2, seed: 11, ...over },
    experimentName: 'test-training',
    registeredModelName: 'test-skin-model',
    workflowId: 'wf-test',
  });

  it('learns the classes (well above chance, both classes predicted), tracks the run and registers the model', async () => {
    const trained = await runActivity(training.trainModel, [input('Basic')]);
    assert.equal(trained.modelClass, 'Basic');
    // Validation holds 25 images of each class: a constant predictor scores 0.5, and a random one
    // reaches 0.7 with probability 0.3 %.
    assert.deepEqual(dataset.splits.validation.perClass, { benign: 25, malignant: 25 });
    assert.ok(trained.metrics.validation.accuracy >= 0.7, `validation accuracy ${trained.metrics.validation.accuracy}`);

    const run = await mlflow.getRun(trained.mlflowRunId);
    assert.equal(run.info.status, 'FINISHED');
    const params = Object.fromEntries((run.data.params ?? []).map((p) => [p.key, p.value]));
    assert.equal(params.learning_rate, '0.001');
    assert.equal(params.optimizer, 'adam');
    assert.equal(params.classes, 'benign,malignant');
    const metrics = Object.fromEntries((run.data.metrics ?? []).map((m) => [m.key, m.value]));
    assert.equal(metrics.validation_accuracy, trained.metrics.validation.accuracy);
    assert.ok('test_auc' in metrics && 'val_loss' in metrics);

    const mv = await mlflow.getModelVersion('test-skin-model', trained.version);
    assert.equal(mv?.source, trained.modelUri);
    assert.equal(mv?.run_id, trained.mlflowRunId);

    // The saved model reproduces the reported metrics and predicts both classes.
    const { model, metadata } = await loadModelFromS3(s3, trained.modelUri);
    assert.deepEqual(metadata.classes, ['benign', 'malignant']);
    const manifest = await s3.getJson<DatasetManifest>(dataset.manifestUri);
    const test = await loadSplit(s3, manifest, manifest.splits.test);
    const probs = await predictProbabilities(model, test, 2);
    const e = evaluatePredictions(probs, test.labels, 2);
    assert.ok(Math.abs(e.accuracy - trained.metrics.test.accuracy) < 1e-6);
    assert.ok(e.confusion[0]![0]! > 0 && e.confusion[1]![1]! > 0, `confusion ${JSON.stringify(e.confusion)}`);
  });

  it('applies the learning rate: the same run with a tiny one stays near chance', async () => {
    const slow = await runActivity(training.trainModel, [input('Basic', { learningRate: 1e-9 })]);
    assert.ok(slow.metrics.validation.accuracy < 0.7, `accuracy ${slow.metrics.validation.accuracy} with lr 1e-9`);
  });

  it('CrossVal logs its fold scores and ships a final model; a retried attempt reuses its MLflow run', async () => {
    const first = await runActivity(training.trainModel, [input('CrossVal', { epochs: 2 })]);
    const run = await mlflow.getRun(first.mlflowRunId);
    const keys = (run.data.metrics ?? []).map((m) => m.key);
    assert.ok(keys.includes('cv_accuracy_mean') && keys.includes('cv_accuracy_std') && keys.includes('fold2_loss'), keys.join(','));

    const retried = await runActivity(training.trainModel, [input('CrossVal', { epochs: 2 })], {
      attempt: 2,
      heartbeatDetails: { mlflowRunId: first.mlflowRunId, epoch: 1, stage: 'training' },
    });
    assert.equal(retried.mlflowRunId, first.mlflowRunId);
    assert.equal(retried.version, first.version, 'the version registered for the run is reused');
  });
});
