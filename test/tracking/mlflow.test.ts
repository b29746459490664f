import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRegistryActivities } from '../../src/activities/registry';
import { MlflowClient } from '../../src/tracking/mlflow';
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

    await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: v1.version, reason: 'first' }]);
    assert.deepEqual(await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: v2.version, reason: 'better' }]), {
      previousChampion: v1.version,
    });
    // A retry of the same call changes nothing.
    assert.deepEqual(await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: v2.version, reason: 'better' }]), {
      previousChampion: v1.version,
    });
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

describe('promotion order (real MLflow server)', () => {
  const mlflow = testMlflow();

  it('a promotion that comes after a newer version became champion moves nothing, and says which version kept its place', async () => {
    const name = `model-${randomUUID().slice(0, 8)}`;
    const exp = await mlflow.getOrCreateExperiment(`exp-${name}`);
    await mlflow.createRegisteredModelIfAbsent(name);
    const create = async (i: number) => mlflow.createModelVersion(name, `s3://b/m/${i}`, (await mlflow.createRun(exp, `r${i}`)).run_id);
    const first = await create(1);
    const late = await create(2);
    const newer = await create(3);
    const registry = createRegistryActivities({ mlflow });
    await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: first.version, reason: 'first' }]);
    await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: newer.version, reason: 'newer' }]);
    // `late` was trained before `newer` but its deployment was verified only now.
    assert.deepEqual(
      await runActivity(registry.applyPromotion, [{ registeredModelName: name, version: late.version, reason: 'deferred' }]),
      { championKept: newer.version },
    );
    assert.equal((await mlflow.getModelVersionByAlias(name, 'champion'))?.version, newer.version);
    assert.equal((await mlflow.getModelVersionByAlias(name, 'previous-champion'))?.version, first.version);
    assert.equal((await mlflow.getModelVersion(name, newer.version))?.current_stage, 'Production');
    const tags = (await mlflow.getModelVersion(name, late.version))?.tags ?? [];
    assert.match(tags.find((t) => t.key === 'promotion_skipped')?.value ?? '', new RegExp(`v${newer.version}, a newer version`));
  });
});

describe('MLflow client retries (a stub server)', () => {
  /** A server answering each request with the next of `answers` (a status, or 'reset'), then 200; counts requests per path. */
  async function stub(answers: (number | 'reset')[]): Promise<{ url: string; hits: Map<string, number>; close: () => Promise<void> }> {
    const hits = new Map<string, number>();
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]!;
      hits.set(path, (hits.get(path) ?? 0) + 1);
      req.resume();
      req.on('end', () => {
        const next = answers.shift() ?? 200;
        if (next === 'reset') return void req.socket.destroy();
        res.writeHead(next, { 'content-type': 'application/json' });
        res.end(
          next === 200
            ? JSON.stringify({ run: { info: { run_id: 'r1', experiment_id: '1', status: 'RUNNING' } } })
            : '{"error_code":"TEMPORARILY_UNAVAILABLE"}',
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise((r) => server.close(() => r())) };
  }
  const fast = { retryDelaysMs: [1, 1, 1] };

  it('retries an idempotent call through 503s and resets', async () => {
    const s = await stub([503, 'reset', 502]);
    try {
      await new MlflowClient(s.url, fast).logBatch('r1', { tags: { a: 'b' } });
      assert.equal(s.hits.get('/api/2.0/mlflow/runs/log-batch'), 4);
    } finally {
      await s.close();
    }
  });

  it('does not repeat a create whose answer was lost, but does one a proxy refused to pass on', async () => {
    const lost = await stub(['reset']);
    try {
      await assert.rejects(new MlflowClient(lost.url, fast).createRun('1', 'Basic'), /unreachable/);
      assert.equal(lost.hits.get('/api/2.0/mlflow/runs/create'), 1, 'a reset may come after the run was created');
    } finally {
      await lost.close();
    }
    const refused = await stub([503]);
    try {
      assert.equal((await new MlflowClient(refused.url, fast).createRun('1', 'Basic')).run_id, 'r1');
      assert.equal(refused.hits.get('/api/2.0/mlflow/runs/create'), 2);
    } finally {
      await refused.close();
    }
  });

  it('gives up after its delays run out', async () => {
    const s = await stub([503, 503, 503, 503, 503]);
    try {
      await assert.rejects(new MlflowClient(s.url, fast).setRunStatus('r1', 'FINISHED'), /503/);
      assert.equal(s.hits.get('/api/2.0/mlflow/runs/update'), 4);
    } finally {
      await s.close();
    }
  });
});
