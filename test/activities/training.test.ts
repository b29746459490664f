import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { Info } from '@temporalio/activity';
import { createDataActivities } from '../../src/activities/preprocess';
import { createTrainingActivities, type TrainingHeartbeat } from '../../src/activities/training';
import type { ModelClass } from '../../src/common/constants';
import type { PreparedDataset, TrainModelInput } from '../../src/common/types';
import { loadSplit } from '../../src/data/dataset';
import { memorySource } from '../../src/ml/image-source';
import { trainInChildProcess } from '../../src/training/process';
import type { DatasetManifest } from '../../src/data/shards';
import { unpackModelArchive } from '../../src/ml/model-archive';
import { evaluatePredictions } from '../../src/ml/metrics';
import { loadModelFromS3, saveModelToS3 } from '../../src/ml/model-store';
import { buildBasicCnn } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';
import { predictProbabilities } from '../../src/ml/trainer';
import { runActivity, runTags, seededDataset, testMlflow, testS3 } from '../helpers/services';
import { useTestStack } from '../helpers/global';

/** A fresh activity identity per call, as Temporal gives each scheduled activity. */
const fresh = (over: Partial<Info> = {}): Partial<Info> => ({
  activityId: randomUUID(),
  workflowExecution: { workflowId: 'wf-test', runId: randomUUID() },
  ...over,
});

useTestStack();

describe('trainModel activity (child training process, native TensorFlow, S3 on SeaweedFS, real MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  const training = createTrainingActivities({ mlflow, onednn: false });
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
    const trained = await runActivity(training.trainModel, [input('Basic')], fresh());
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
    for (const key of ['test_auc', 'test_f1', 'validation_precision', 'validation_recall', 'val_loss', 'val_accuracy'])
      assert.ok(key in metrics, `${key} missing`);

    // The confusion matrices are an artifact of the run, as data and (with the ROC curves) as plots.
    const artifact = (path: string) =>
      fetch(
        `${mlflow.trackingUri}/api/2.0/mlflow-artifacts/artifacts/${run.info.artifact_uri!.replace(/^mlflow-artifacts:\/?/, '')}/${path}`,
      );
    for (const split of ['validation', 'test'])
      for (const plot of [`confusion_matrix_${split}`, `roc_${split}`]) {
        const png = await artifact(`plots/${plot}.png`);
        assert.equal(png.status, 200, `plots/${plot}.png`);
        const decoded = loadTf().node.decodePng(new Uint8Array(await png.arrayBuffer()), 3);
        assert.ok(decoded.shape[0] > 300 && decoded.shape[1] > 300, `plots/${plot}.png is ${decoded.shape.join('x')}`);
        decoded.dispose();
      }
    const res = await artifact('confusion_matrix.json');
    assert.equal(res.status, 200);
    const confusion = (await res.json()) as { validation: number[][] };
    assert.equal(
      confusion.validation.flat().reduce((a, b) => a + b),
      50,
    );

    const mv = await mlflow.getModelVersion('test-skin-model', trained.version);
    assert.equal(mv?.source, trained.modelUri);
    assert.equal(mv?.run_id, trained.mlflowRunId);

    // SageMaker's model.tar.gz holds the same model files.
    const archived = unpackModelArchive(await s3.getBytes(trained.archiveUri)).map((f) => f.name);
    assert.deepEqual(archived.sort(), ['metadata.json', 'model.json', 'weights.bin']);

    // The saved model reproduces the reported metrics and predicts both classes.
    const { model, metadata } = await loadModelFromS3(s3, trained.modelUri);
    assert.deepEqual(metadata.classes, ['benign', 'malignant']);
    const manifest = await s3.getJson<DatasetManifest>(dataset.manifestUri);
    const test = await loadSplit(s3, manifest, manifest.splits.test);
    const probs = await predictProbabilities(model, memorySource(test), 2);
    const e = evaluatePredictions(probs, test.labels, 2);
    assert.ok(Math.abs(e.accuracy - trained.metrics.test.accuracy) < 1e-6);
    assert.ok(e.confusion[0]![0]! > 0 && e.confusion[1]![1]! > 0, `confusion ${JSON.stringify(e.confusion)}`);
  });

  it('applies the learning rate: the same run with a tiny one stays near chance', async () => {
    const slow = await runActivity(training.trainModel, [input('Basic', { learningRate: 1e-9 })], fresh());
    assert.ok(slow.metrics.validation.accuracy < 0.7, `accuracy ${slow.metrics.validation.accuracy} with lr 1e-9`);
  });

  it('CrossVal logs its fold scores and ships a final model; a retried attempt reuses its MLflow run and version', async () => {
    const info = fresh();
    const first = await runActivity(training.trainModel, [input('CrossVal', { epochs: 2 })], info);
    const run = await mlflow.getRun(first.mlflowRunId);
    const keys = (run.data.metrics ?? []).map((m) => m.key);
    assert.ok(keys.includes('cv_accuracy_mean') && keys.includes('cv_accuracy_std') && keys.includes('fold2_loss'), keys.join(','));

    // The same activity retried after its completion was lost: found by its tags, not retrained.
    const retried = await runActivity(training.trainModel, [input('CrossVal', { epochs: 2 })], { ...info, attempt: 2 });
    assert.equal(retried.mlflowRunId, first.mlflowRunId);
    assert.equal(retried.version, first.version, 'the version registered for the run is reused');
    assert.deepEqual(retried.metrics, first.metrics);
  });

  it('a cancelled training checkpoints and stops within a batch; the next attempt resumes from that checkpoint', async () => {
    const beats: TrainingHeartbeat[] = [];
    const env = new MockActivityEnvironment(fresh(), { logger: new DefaultLogger('ERROR') });
    env.on('heartbeat', (d: TrainingHeartbeat) => {
      beats.push(d);
      // Mid-epoch 2: batch 3 of 8.
      if (d.phase === 'final' && d.epoch === 1 && d.batch === 3) env.cancel();
    });
    await assert.rejects(env.run(training.trainModel, input('Basic', { epochs: 3, batchSize: 16 })), CancelledFailure);
    const last = beats.at(-1)!;
    assert.equal(last.epoch, 1);
    assert.ok(last.batch! <= 4, `stopped at batch ${last.batch}, not within one batch of the request`);
    const run = await mlflow.getRun(last.mlflowRunId);
    assert.equal(run.info.status, 'KILLED');
    const bucket = dataset.manifestUri.split('/')[2]!;
    const checkpoints = await s3.list(`s3://${bucket}/checkpoints/test-skin-model/Basic/${last.mlflowRunId}/`);
    assert.equal(checkpoints.length, 1, 'only the newest checkpoint is kept');
    assert.match(checkpoints[0]!.key, /e0001-b00000[4-5]\.ckpt$/);

    const logs: string[] = [];
    const env2 = new MockActivityEnvironment(fresh({ attempt: 2, heartbeatDetails: last }), {
      logger: new DefaultLogger('INFO', (entry) => logs.push(entry.message)),
    });
    const resumed = (await env2.run(training.trainModel, input('Basic', { epochs: 3, batchSize: 16 }))) as Awaited<
      ReturnType<typeof training.trainModel>
    >;
    assert.equal(resumed.mlflowRunId, last.mlflowRunId);
    assert.ok(
      logs.some((m) => /resuming from .*e0001-b00000[4-5]\.ckpt/.test(m)),
      logs.join('\n'),
    );
    assert.deepEqual(
      logs.filter((m) => /epoch \d+\/3 started/.test(m)),
      ['Basic final: epoch 3/3 started'],
      'epoch 2 continues where it stopped; only epoch 3 starts afresh',
    );
    assert.equal((await mlflow.getRun(resumed.mlflowRunId)).info.status, 'FINISHED');
    assert.equal((await s3.list(`s3://${bucket}/checkpoints/test-skin-model/Basic/${last.mlflowRunId}/`)).length, 0);
  });

  it('ResNet50 stopped while computing batch-norm statistics resumes after its last epoch, computes them again and scores as an uninterrupted run', async () => {
    const resnet = () => input('ResNet50', { epochs: 1, batchSize: 16 });
    const whole = await runActivity(training.trainModel, [resnet()], fresh());
    const tagsOf = async (runId: string) => runTags(await mlflow.getRun(runId));
    // 150 training images in passes of 16: 9 whole passes.
    assert.equal((await tagsOf(whole.mlflowRunId))['training.batch_norm_images'], '144');

    const beats: TrainingHeartbeat[] = [];
    const env = new MockActivityEnvironment(fresh(), { logger: new DefaultLogger('ERROR') });
    env.on('heartbeat', (d: TrainingHeartbeat) => {
      beats.push(d);
      if (d.step === 'batch-norm statistics' && d.batch === 3) env.cancel();
    });
    await assert.rejects(env.run(training.trainModel, resnet()), CancelledFailure);
    const last = beats.at(-1)!;
    assert.equal(last.step, 'batch-norm statistics');
    assert.ok(last.batch! < last.batches!, `stopped at pass ${last.batch} of ${last.batches}`);
    assert.equal((await mlflow.getRun(last.mlflowRunId)).info.status, 'KILLED');
    const bucket = dataset.manifestUri.split('/')[2]!;
    const models = `s3://${bucket}/models/test-skin-model/ResNet50/${last.mlflowRunId}/`;
    assert.deepEqual(
      (await s3.list(models)).filter((o) => !o.key.endsWith('/lease.json')),
      [],
      'nothing saved with partial statistics',
    );

    const logs: string[] = [];
    const env2 = new MockActivityEnvironment(fresh({ attempt: 2, heartbeatDetails: last }), {
      logger: new DefaultLogger('INFO', (entry) => logs.push(entry.message)),
    });
    const resumed = (await env2.run(training.trainModel, resnet())) as Awaited<ReturnType<typeof training.trainModel>>;
    assert.equal(resumed.mlflowRunId, last.mlflowRunId);
    assert.ok(
      logs.some((m) => /resuming from .*e0001-b000000\.ckpt/.test(m)),
      logs.join('\n'),
    );
    assert.deepEqual(
      logs.filter((m) => /epoch \d+\/1 started/.test(m)),
      [],
      'no epoch is trained again',
    );
    assert.equal((await tagsOf(resumed.mlflowRunId))['training.batch_norm_images'], '144');
    assert.deepEqual(resumed.metrics, whole.metrics);
  });

  it('fails for good, registering nothing, when the model diverges to non-finite outputs', async () => {
    // Finite initial weights whose hidden dense layer overflows float (to +inf; the output layer's
    // mixed signs then make NaN): every output is NaN from the first batch on, so every update is
    // skipped and the run could never recover.
    const tf = loadTf();
    const bucket = dataset.manifestUri.split('/')[2]!;
    const weightsUri = `s3://${bucket}/initial/overflowing-basic`;
    const source = buildBasicCnn({ imageSize: 24, numClasses: 2, seed: 1 });
    assert.deepEqual(source.weights[6]!.shape, [6 * 6 * 64, 128], 'the hidden dense kernel');
    source.setWeights(source.getWeights().map((w, i) => (i === 6 ? tf.fill(w.shape, 3e38) : w)));
    await saveModelToS3(s3, source, weightsUri, {
      modelClass: 'Basic',
      classes: ['benign', 'malignant'],
      imageSize: 24,
      inputScale: '0-1',
    });
    source.dispose();

    const beats: TrainingHeartbeat[] = [];
    const env = new MockActivityEnvironment(fresh(), { logger: new DefaultLogger('ERROR') });
    env.on('heartbeat', (d: TrainingHeartbeat) => beats.push(d));
    const diverging = { ...input('Basic', { epochs: 3 }), initialWeightsUri: weightsUri };
    await assert.rejects(env.run(training.trainModel, diverging), (e: ApplicationFailure) => {
      assert.ok(e instanceof ApplicationFailure, String(e));
      assert.equal(e.type, 'TrainingDivergedError');
      assert.equal(e.nonRetryable, true);
      // Every update of epoch 1 was skipped.
      const batches = Math.ceil(dataset.splits.train.count / 16);
      assert.match(e.message, new RegExp(`after epoch 1 the model's predictions are NaN or infinite \\(${batches} update\\(s\\) skipped`));
      assert.match(e.message, /lower learningRate \(this run used 0\.001\)/);
      return true;
    });
    const runId = beats.at(-1)!.mlflowRunId;
    assert.equal((await mlflow.getRun(runId)).info.status, 'FAILED');
    assert.deepEqual(await mlflow.searchModelVersions(`name='test-skin-model' and run_id='${runId}'`), []);
    assert.deepEqual(
      (await s3.list(`s3://${bucket}/models/test-skin-model/Basic/${runId}/`)).filter((o) => !o.key.endsWith('/lease.json')),
      [],
      'no model saved',
    );
  });

  it('a training process that dies of SIGFPE under oneDNN resumes from its checkpoint without oneDNN (the test sends the SIGFPE)', async () => {
    const envs: (Record<string, string> | undefined)[] = [];
    let sent = false;
    const withOnednn = createTrainingActivities({
      mlflow,
      onednn: true,
      run: (job, options) => {
        envs.push(options.env);
        return trainInChildProcess(job, {
          ...options,
          onProgress: (p) => {
            options.onProgress?.(p);
            // Mid-epoch 2, after the epoch-1 checkpoint: the signal oneDNN's faulting kernels raise.
            if (!sent && p.phase === 'final' && p.epoch === 1 && p.batch === 2) {
              sent = true;
              execFileSync('pkill', ['-FPE', '-P', String(process.pid), '-f', 'training/child']);
            }
          },
        });
      },
    });
    const logs: string[] = [];
    const env = new MockActivityEnvironment(fresh(), { logger: new DefaultLogger('INFO', (entry) => logs.push(entry.message)) });
    const trained = (await env.run(withOnednn.trainModel, input('Basic', { epochs: 3, batchSize: 16 }))) as Awaited<
      ReturnType<typeof withOnednn.trainModel>
    >;
    assert.ok(sent, 'the SIGFPE was sent');
    assert.deepEqual(
      envs.map((e) => e?.TF_ENABLE_ONEDNN_OPTS),
      ['1', '0'],
    );
    assert.ok(
      logs.some((m) => /resuming from .*e0001-b000000\.ckpt/.test(m)),
      logs.join('\n'),
    );
    assert.deepEqual(
      logs.filter((m) => /epoch \d+\/3 started/.test(m)),
      [
        'Basic final: epoch 1/3 started',
        'Basic final: epoch 2/3 started',
        'Basic final: epoch 2/3 started',
        'Basic final: epoch 3/3 started',
      ],
      'only epoch 2 runs twice',
    );
    const run = await mlflow.getRun(trained.mlflowRunId);
    assert.equal(run.info.status, 'FINISHED');
    assert.equal(runTags(run)['training.onednn_fallback'], 'SIGFPE');
  });

  it('splits batches into passes that fit the memory budget, and still learns', async () => {
    // A budget below what the process already uses: one image per pass.
    const tight = createTrainingActivities({ mlflow, onednn: false, memoryBudgetBytes: 1 });
    const logs: string[] = [];
    const env = new MockActivityEnvironment(fresh(), { logger: new DefaultLogger('INFO', (entry) => logs.push(entry.message)) });
    const trained = (await env.run(tight.trainModel, input('Basic', { epochs: 6 }))) as Awaited<ReturnType<typeof tight.trainModel>>;
    assert.ok(
      logs.some((m) => /batches of 16 run as passes of 1 images .*even one image per pass may not fit/.test(m)),
      logs.join('\n'),
    );
    const run = await mlflow.getRun(trained.mlflowRunId);
    assert.equal(runTags(run)['training.micro_batch_size'], '1');
    assert.ok(trained.metrics.validation.accuracy >= 0.7, `validation accuracy ${trained.metrics.validation.accuracy}`);
  });
});
