import { strict as assert } from 'node:assert';
import type { TrainModelInput } from '../../src/common/types';
import { MlflowError, type MlflowClient, type ModelVersion } from '../../src/tracking/mlflow';
import { TrainingRunLog } from '../../src/training/run-log';

describe('training run log: registerVersion', () => {
  const input = { registeredModelName: 'm', workflowId: 'wf' } as TrainModelInput;

  /** An MLflow stand-in whose create fails as given, after doing its work when `happened`. */
  function fakeMlflow(createError: MlflowError, happened: boolean) {
    const versions: ModelVersion[] = [];
    const calls = { create: 0 };
    const mlflow = {
      createRegisteredModelIfAbsent: async () => undefined,
      searchModelVersions: async () => [...versions],
      createModelVersion: async (name: string, source: string, runId: string) => {
        calls.create++;
        if (calls.create === 1) {
          if (happened) versions.push({ name, source, run_id: runId, version: '7' });
          throw createError;
        }
        const v = { name, source, run_id: runId, version: String(8 + versions.length) };
        versions.push(v);
        return v;
      },
    } as unknown as MlflowClient;
    return { mlflow, calls, versions };
  }

  it('finds the version a create whose answer was lost made, instead of creating a second', async () => {
    const { mlflow, calls, versions } = fakeMlflow(new MlflowError('MLflow at x is unreachable (socket hang up)', 0), true);
    assert.deepEqual(await new TrainingRunLog(mlflow, 'run-1').registerVersion(input, 's3://b/m', 'Basic'), {
      version: '7',
      source: 's3://b/m',
    });
    assert.equal(calls.create, 1);
    assert.equal(versions.length, 1);
  });

  it('creates again when the failed create did not happen', async () => {
    const { mlflow, calls, versions } = fakeMlflow(new MlflowError('MLflow POST model-versions/create failed (503)', 503), false);
    assert.deepEqual(await new TrainingRunLog(mlflow, 'run-1').registerVersion(input, 's3://b/m', 'Basic'), {
      version: '8',
      source: 's3://b/m',
    });
    assert.equal(calls.create, 2);
    assert.equal(versions.length, 1);
  });

  it('does not retry a permanent error', async () => {
    const { mlflow, calls } = fakeMlflow(new MlflowError('bad request', 400, 'INVALID_PARAMETER_VALUE'), false);
    await assert.rejects(new TrainingRunLog(mlflow, 'run-1').registerVersion(input, 's3://b/m', 'Basic'), /bad request/);
    assert.equal(calls.create, 1);
  });
});
