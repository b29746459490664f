import { strict as assert } from 'node:assert';
import type { PreparedDataset, TrainModelInput } from '../../src/common/types';
import { trainInChildProcess } from '../../src/training/process';
import type { TrainingProgress } from '../../src/training/run-training';
import { useTestStack } from '../helpers/global';
import { smallPreparedDataset, testMlflow, testS3, trainingChildPids } from '../helpers/services';

useTestStack();

describe('fencing between attempts of one training (real child processes, S3, MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  let dataset: PreparedDataset;

  before(async () => {
    dataset = await smallPreparedDataset(s3);
  });

  it('an attempt cut off from Temporal that finishes after its retry changes nothing the registry points at', async () => {
    const input: TrainModelInput = {
      modelClass: 'Basic',
      dataset,
      hyperparams: { optimizer: 'adam', epochs: 6, batchSize: 8, learningRate: 1e-3, crossValFolds: 2, seed: 3 },
      experimentName: 'test-fencing',
      registeredModelName: 'fencing-model',
      workflowId: 'wf-fencing',
    };
    const experiment = await mlflow.getOrCreateExperiment('test-fencing');
    const runId = (await mlflow.createRun(experiment, 'Basic', {})).run_id;
    const env = { TF_ENABLE_ONEDNN_OPTS: '0' };

    // Attempt 1 trains until its first checkpoint, then its process is frozen, as a worker cut off from
    // Temporal for longer than the heartbeat timeout is: alive, but its activity has moved on.
    let frozen: number | undefined;
    let first: Promise<unknown> | undefined;
    const checkpointed = new Promise<void>((resolve) => {
      first = trainInChildProcess(
        { input, runId, attempt: 1 },
        {
          env,
          onProgress: (p: TrainingProgress) => {
            if (frozen === undefined && p.checkpoint) {
              frozen = trainingChildPids()[0];
              process.kill(frozen!, 'SIGSTOP');
              resolve();
            }
          },
        },
      );
    });
    const firstSettled = first!.then(
      () => ({ ok: true as const }),
      (err: Error) => ({ ok: false as const, err }),
    );
    await checkpointed;

    // Attempt 2, the retry, resumes from that checkpoint and registers its model.
    const second = await trainInChildProcess({ input, runId, attempt: 2 }, { env });
    assert.match(second.modelUri, new RegExp(`/${runId}/attempt-2$`));
    const source = async () =>
      (await mlflow.searchModelVersions(`name='fencing-model' and run_id='${runId}'`)).map((v) => [v.version, v.source]);
    const registered = await source();
    assert.deepEqual(registered, [[second.version, second.modelUri]]);
    const files = async () => (await s3.list(`${second.modelUri}/`)).map((o) => [o.key, o.etag]);
    const before = await files();

    // Attempt 1 comes back and carries on: it stops at its next write, having written nothing.
    process.kill(frozen!, 'SIGCONT');
    const outcome = await firstSettled;
    assert.equal(outcome.ok, false, 'the superseded attempt does not succeed');
    assert.equal(!outcome.ok && outcome.err.name, 'TrainingSupersededError');
    assert.match(!outcome.ok ? outcome.err.message : '', /attempt 1 was superseded by attempt 2/);
    assert.deepEqual(await source(), registered, 'the registry points where it did');
    assert.deepEqual(await files(), before, "the registered version's files are unchanged");
    const runPrefix = second.modelUri.slice(0, second.modelUri.lastIndexOf('/'));
    assert.deepEqual(
      (await s3.list(`${runPrefix}/attempt-1/`)).map((o) => o.key),
      [],
      'attempt 1 saved no model',
    );
  });
});
