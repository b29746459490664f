/**
 * Every promotion of a registered model passes through that model's owner workflow, which carries
 * them out one at a time (src/workflows/registered-model.ts): a dev server, the real workflow and
 * registry activities, the real MLflow server.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import { createRegistryActivities, promoteInTurn } from '../../src/activities/registry';
import { FAILURE } from '../../src/common/failures';
import { TASK_QUEUES, workflowIdForRegisteredModel } from '../../src/common/constants';
import { useTestStack } from '../helpers/global';
import { testMlflow } from '../helpers/services';
import { startDevServer } from '../helpers/temporal';

useTestStack();

describe('promotions of one registered model go through its owner, one at a time (dev server, real MLflow)', function () {
  this.timeout(180_000);
  const mlflow = testMlflow();
  const real = createRegistryActivities({ mlflow });
  /** applyPromotion as it runs: how many at once, and which versions in which order. */
  const seen = { now: 0, max: 0, order: [] as string[] };
  /** While set, applyPromotion waits for it: a promotion that takes a while. */
  let hold: Promise<void> | undefined;
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;

  before(async function () {
    env = await startDevServer();
    const workflowBundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      logger: new DefaultLogger('WARN'),
    });
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: TASK_QUEUES.pipeline,
      workflowBundle,
      activities: {
        ...real,
        // The real promotion, made slow enough that overlapping ones would be seen overlapping.
        applyPromotion: async (input: Parameters<typeof real.applyPromotion>[0]) => {
          seen.max = Math.max(seen.max, ++seen.now);
          seen.order.push(input.version);
          try {
            await sleep(300);
            await hold;
            return await real.applyPromotion(input);
          } finally {
            seen.now--;
          }
        },
      },
    });
    running = worker.run();
  });

  after(async function () {
    worker?.shutdown();
    await running;
    await env?.teardown();
  });

  const registeredModel = async (versions: number) => {
    const name = `owned-${randomUUID().slice(0, 8)}`;
    const exp = await mlflow.getOrCreateExperiment(`exp-${name}`);
    await mlflow.createRegisteredModelIfAbsent(name);
    const created: string[] = [];
    for (let i = 1; i <= versions; i++)
      created.push((await mlflow.createModelVersion(name, `s3://b/${name}/${i}`, (await mlflow.createRun(exp, `r${i}`)).run_id)).version);
    return { name, versions: created };
  };

  it('carries out six promotions sent at once one after another, each answered with its own outcome, and ends when none waits', async () => {
    const { name, versions } = await registeredModel(6);
    seen.order = [];
    seen.max = 0;
    // Sent at once, as six runs of endpoints sharing one registered model would.
    const shuffled = [versions[2]!, versions[0]!, versions[5]!, versions[1]!, versions[4]!, versions[3]!];
    const outcomes = await Promise.all(
      shuffled.map((version, i) =>
        promoteInTurn(env.client.workflow, { registeredModelName: name, version, reason: `run ${i}` }, `test-${name}-${i}`),
      ),
    );
    assert.equal(seen.max, 1, 'no two promotions overlapped');
    assert.equal(seen.order.length, 6);

    // What six promotions one after another, in the order they ran, leave behind and answer.
    let champion: string | undefined;
    let previous: string | undefined;
    const expected = new Map<string, object>();
    for (const v of seen.order) {
      if (champion && Number(champion) > Number(v)) {
        expected.set(v, { championKept: champion });
        continue;
      }
      if (champion && champion !== v) previous = champion;
      expected.set(v, previous ? { previousChampion: previous } : {});
      champion = v;
    }
    shuffled.forEach((v, i) => assert.deepEqual(outcomes[i], expected.get(v), `the answer to the promotion of v${v}`));
    assert.equal((await mlflow.getModelVersionByAlias(name, 'champion'))?.version, champion);
    assert.equal((await mlflow.getModelVersionByAlias(name, 'previous-champion'))?.version, previous);

    const owner = await env.client.workflow.getHandle(workflowIdForRegisteredModel(name)).describe();
    assert.equal(owner.status.name, 'COMPLETED');
  });

  it('answers a repeated request (a retried activity) with the first answer, and fails a promotion with its own error type', async () => {
    const { name, versions } = await registeredModel(2);
    seen.order = [];
    const ask = (version: string, updateId: string) =>
      promoteInTurn(env.client.workflow, { registeredModelName: name, version, reason: 'test' }, updateId);
    // The repeat is sent while the owner surely runs (its first promotion is held): the server
    // answers it from the first. After the owner ended it would be carried out again, harmlessly.
    let release!: () => void;
    hold = new Promise((r) => (release = r));
    const first = ask(versions[0]!, `${name}-a`);
    try {
      while (!seen.order.includes(versions[0]!)) await sleep(100);
      const again = ask(versions[0]!, `${name}-a`);
      const second = ask(versions[1]!, `${name}-b`);
      await sleep(500);
      release();
      assert.deepEqual(await first, {});
      assert.deepEqual(await again, {});
      assert.deepEqual(await second, { previousChampion: versions[0] });
    } finally {
      hold = undefined;
      release();
    }
    assert.deepEqual(seen.order, [versions[0], versions[1]], 'v1 promoted once, then v2');

    await assert.rejects(ask('99', `${name}-missing`), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, String(err));
      assert.equal(err.type, FAILURE.modelVersionNotFound);
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /has no version 99/);
      return true;
    });
    await assert.rejects(ask('x', `${name}-malformed`), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, String(err));
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /version must be a registered version number/);
      return true;
    });
    assert.equal((await mlflow.getModelVersionByAlias(name, 'champion'))?.version, versions[1]);
  });

  it('heartbeats while its promotion waits, so a worker lost meanwhile is noticed within the heartbeat timeout', async () => {
    const { name, versions } = await registeredModel(1);
    let release!: () => void;
    hold = new Promise((r) => (release = r));
    const activity = new MockActivityEnvironment(
      { workflowExecution: { workflowId: `wf-${name}`, runId: 'run' }, activityId: '1' },
      { client: env.client },
    );
    let beats = 0;
    activity.on('heartbeat', () => beats++);
    try {
      const promoted = activity.run(real.promoteModelVersion, { registeredModelName: name, version: versions[0]!, reason: 'held' });
      await sleep(11_000);
      release();
      assert.deepEqual(await promoted, {});
    } finally {
      hold = undefined;
      release();
    }
    assert.ok(beats >= 1, `${beats} heartbeats in 11 s of waiting`);
  });
});
