import { strict as assert } from 'node:assert';
import type { PreparedDataset, TrainModelInput } from '../../src/common/types';
import { isProcessAlive } from '../../src/system/process';
import { trainInChildProcess, TrainingStalledError } from '../../src/training/process';
import { useTestStack } from '../helpers/global';
import { smallPreparedDataset, testMlflow, testS3, trainingChildPids } from '../helpers/services';

useTestStack();

describe('a training that stops progressing (a real child process, S3, MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  let dataset: PreparedDataset;

  before(async () => {
    dataset = await smallPreparedDataset(s3);
  });

  it('is ended after stallMs without reading an image, with TrainingStalledError saying how far it got', async () => {
    const input: TrainModelInput = {
      modelClass: 'Basic',
      dataset,
      hyperparams: { optimizer: 'adam', epochs: 50, batchSize: 8, learningRate: 1e-3, crossValFolds: 2, seed: 3 },
      experimentName: 'test-stall',
      registeredModelName: 'stall-model',
      workflowId: 'wf-stall',
    };
    const runId = (await mlflow.createRun(await mlflow.getOrCreateExperiment('test-stall'), 'Basic', {})).run_id;
    let readBefore = 0;
    let stuck: number | undefined;
    const started = trainInChildProcess(
      { input, runId, attempt: 1 },
      {
        env: { TF_ENABLE_ONEDNN_OPTS: '0' },
        stallMs: 8_000,
        // Once it has read some images, the process hangs as on a read that never returns: alive, doing nothing.
        onWork: ({ imagesRead }) => {
          readBefore = imagesRead;
          if (stuck === undefined && imagesRead >= 64) {
            stuck = trainingChildPids()[0];
            process.kill(stuck!, 'SIGSTOP');
          }
        },
      },
    );
    const err = await started.then(
      () => assert.fail('the stuck training completed'),
      (e: Error) => e,
    );
    assert.ok(err instanceof TrainingStalledError, `failed with ${err.name}: ${err.message}`);
    assert.match(err.message, new RegExp(`read no image and reported no progress for 8 s \\(${readBefore} images read before\\)`));
    assert.ok(readBefore >= 64);
    assert.equal(isProcessAlive(stuck!), false, 'the stuck process was killed');
  });
});
