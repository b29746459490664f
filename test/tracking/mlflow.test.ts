import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createRegistryActivities } from '../../src/activities/registry';
import { ApplicationFailure } from '@temporalio/common';
import { runActivity, testMlflow } from '../helpers/services';
import { useTestStack } from '../helpers/global';

useTestStack();

describe('MLflow client and registry activities (real MLflow server)', () => {
  const mlflow = testMlflow();

  it('creates experiments idempotently and logs runs with params and step metrics', async () => {
    const name = `exp-${randomUUID()}`;
    const id = await mlflow.getOrCreateExperiment(name);
    assert.equal(await mlflow.getOrCreateExperiment(name), id);
    const run = await mlflow.createRun(id, 'Basic', { 'temporal.workflow_id': 'wf-1' });
    await mlflow.logBatch(run.run_id, {
      params: { learning_rate: 0.001 },
      metrics: [1, 2].map((step) => ({ key: 'loss', value: 1 / step, step })),
    });
    await mlflow.setRunStatus(run.run_id, 'FINISHED');
    const back = await mlflow.getRun(run.run_id);
    assert.equal(back.info.status, 'FINISHED');
    assert.deepEqual(back.data.params, [{ key: 'learning_rate', value: '0.001' }]);
    assert.equal(back.data.metrics?.find((m) => m.key === 'loss')?.value, 0.5, 'latest step value');
    assert.ok(back.data.tags?.some((t) => t.key === 'temporal.workflow_id' && t.value === 'wf-1'));
  });

  it('promotes a version to champion, keeps the previous champion, and is idempotent', async () => {
    const name = `model-${randomUUID().slice(0, 8)}`;
    const exp = await mlflow.getOrCreateExperiment(`exp-${name}`);
    await mlflow.createRegisteredModelIfAbsent(name);
    await mlflow.createRegisteredModelIfAbsent(name);
    const v1 = await mlflow.createModelVersion(name, 's3://b/m/1', (await mlflow.createRun(exp, 'a')).run_id);
    const v2 = await mlflow.createModelVersion(name, 's3://b/m/2', (await mlflow.createRun(exp, 'b')).run_id);
    const registry = createRegistryActivities({ mlflow });

    await runActivity(registry.promoteModelVersion, [{ registeredModelName: name, version: v1.version, reason: 'first' }]);
    assert.deepEqual(
      await runActivity(registry.promoteModelVersion, [{ registeredModelName: name, version: v2.version, reason: 'better' }]),
      {
        previousChampion: v1.version,
      },
    );
    // A retry of the same call changes nothing.
    assert.deepEqual(
      await runActivity(registry.promoteModelVersion, [{ registeredModelName: name, version: v2.version, reason: 'better' }]),
      {
        previousChampion: v1.version,
      },
    );
    assert.equal((await mlflow.getModelVersionByAlias(name, 'champion'))?.version, v2.version);
    assert.equal((await mlflow.getModelVersionByAlias(name, 'previous-champion'))?.version, v1.version);
    assert.equal((await mlflow.getModelVersion(name, v2.version))?.current_stage, 'Production');
    assert.equal((await mlflow.getModelVersion(name, v1.version))?.current_stage, 'Archived');

    const ref = await runActivity(registry.resolveModelVersion, [{ registeredModelName: name, alias: 'previous-champion' }]);
    assert.deepEqual([ref.version, ref.modelUri], [v1.version, 's3://b/m/1']);
    await assert.rejects(
      runActivity(registry.resolveModelVersion, [{ registeredModelName: name, version: '99' }]),
      (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && /has no version 99/.test(err.message),
    );
  });
});
