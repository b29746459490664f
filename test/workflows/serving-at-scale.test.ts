/**
 * The serving phase at the durations and counts its users reach, with stubbed activities: a week
 * of serving with an endpoint check every 120 s and a week in deploy-failed on Temporal's
 * time-skipping test server (days pass in seconds), and a flood of 1,000 redeploy requests. Every
 * run of each chain stays far from Temporal's history limits, the status stays small, and no two
 * timers shorter than a second fire in a row.
 *
 * The flood runs on a dev server: the time-skipping test server loses signals that arrive while a
 * run continues as new (its answer to the refused completion does not make the worker replay),
 * which the dev server does not, and the flood needs no time to pass.
 */
import { strict as assert } from 'node:assert';
import {
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { TASK_QUEUES } from '../../src/common/constants';
import { FAILURE } from '../../src/common/failures';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import { HAND_OVER_BYTES, MAX_PENDING_REDEPLOYS, STATUS_HISTORY_LIMIT } from '../../src/workflows/bounds';
import type { PipelineInput } from '../../src/workflows/input';
import { finishSignal, redeploySignal, redeployUpdate, statusQuery } from '../../src/workflows/messages';
import { chainFigures, chainOf, shortTimersInARow } from '../helpers/history';
import { ServingStubs, type DeployInput } from '../helpers/serving-stubs';
import { recordHistory, startDevServer, startTimeSkippingServer, statusWhen } from '../helpers/temporal';

const MAX_EVENTS = 10_000;
const MAX_HISTORY_BYTES = 2 * 1024 * 1024;
const MAX_STATUS_BYTES = 64 * 1024;
const WEEK_SECONDS = 7 * 24 * 3600;

const stubs = new ServingStubs();
/** What each test measured, printed once at the end. */
const figures: Record<string, object> = {};

after(() => console.log(`      figures: ${JSON.stringify(figures)}`));

function start(
  env: TestWorkflowEnvironment,
  workflowId: string,
  over: PipelineInput,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof cnnSkinCancerWorkflow>> {
  return env.client.workflow.start(cnnSkinCancerWorkflow, {
    taskQueue: TASK_QUEUES.pipeline,
    workflowId,
    args: [
      {
        dataUri: 's3://stub-bucket/data',
        registeredModelName: 'stub-model',
        experimentName: 'stub-experiment',
        endpointName: 'stub-endpoint',
        models: ['Basic'],
        lifetimeSeconds: WEEK_SECONDS,
        ...over,
      },
    ],
  });
}

/** The bounds every chain keeps; its figures are kept for the report. */
async function checkChain(
  env: TestWorkflowEnvironment,
  name: string,
  handle: WorkflowHandleWithFirstExecutionRunId,
  began: number,
  maxHistoryBytes = MAX_HISTORY_BYTES,
) {
  const runs = await chainOf(env.connection, env.namespace ?? 'default', handle.workflowId, handle.firstExecutionRunId);
  const status = await handle.query(statusQuery);
  const statusBytes = Buffer.byteLength(JSON.stringify(status));
  figures[name] = { ...chainFigures(runs), statusBytes, wallSeconds: Math.round((Date.now() - began) / 100) / 10 };
  for (const run of runs) {
    assert.ok(run.events < MAX_EVENTS, `run ${run.runId} has ${run.events} events`);
    assert.ok(run.bytes < maxHistoryBytes, `run ${run.runId} has ${run.bytes} bytes of history`);
  }
  assert.equal(shortTimersInARow(runs), 0, 'timers shorter than a second fired one after another');
  assert.ok(statusBytes < MAX_STATUS_BYTES, `the status answer has ${statusBytes} bytes`);
  return { runs, status };
}

describe('the serving phase over simulated weeks (time-skipping test server, stubbed activities)', function () {
  this.timeout(400_000);
  const env = stubs.useServer(startTimeSkippingServer);

  /**
   * The run's outcome; when it has not ended within `ms` of wall time (a loop that fills its
   * history instead of waiting), the run is terminated so that its history can say why.
   */
  async function outcomeWithin(handle: WorkflowHandle, ms: number): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
    const outcome = await Promise.race([handle.result().catch((e: unknown) => e), late]).finally(() => clearTimeout(timer));
    if (outcome === 'late') await handle.terminate('still running after its simulated lifetime (test)');
    return outcome;
  }

  it('serves seven days with an endpoint check every 120 s, a count of new images every hour and a drift check every day, continuing as new long before any history limit', async () => {
    const began = Date.now();
    // Never reached: the stub's data holds 48 images, all of them read by the first training.
    const handle = await start(env(), 'week-serving', { endpointCheckSeconds: 120, retrainOnNewImages: 1000, driftCheckHours: 24 });
    const outcome = await outcomeWithin(handle, 300_000);
    const { runs, status } = await checkChain(env(), 'weekServing', handle, began);
    assert.equal((outcome as { stage?: string }).stage, 'finished', `the run ended with ${String(outcome)}`);
    assert.equal(status.stage, 'finished');
    const checks = stubs.inputsOf('week-serving', 'checkEndpoint').length;
    // The test server's clock also moves with wall time (activities, a loaded machine): each 120 s
    // of it spent pushes the checks after it one interval later.
    const wallSeconds = (Date.now() - began) / 1000;
    assert.ok(
      checks <= WEEK_SECONDS / 120 + 1 && checks >= WEEK_SECONDS / 120 - 1 - wallSeconds / 120,
      `${checks} endpoint checks in a week (${wallSeconds.toFixed(0)} s of wall time)`,
    );
    const counts = stubs.inputsOf('week-serving', 'countDatasetImages').length;
    assert.ok(counts <= WEEK_SECONDS / 3600 + 1 && counts >= WEEK_SECONDS / 3600 - 1 - wallSeconds / 3600, `${counts} counts in a week`);
    assert.equal(status.newImages?.sinceLastTraining, 0);
    // Daily, across the chain's runs: the seventh falls on the lifetime's last moment, or just after.
    const driftChecks = stubs.inputsOf<{ since: string; until: string }>('week-serving', 'measureDrift');
    assert.ok(driftChecks.length === 6 || driftChecks.length === 7, `${driftChecks.length} drift checks in a week`);
    assert.equal(status.drift?.outcome, 'unavailable');
    assert.equal(status.lastRetraining, undefined);
    assert.ok(runs.length > 1, 'the run continued as new');
  });

  it('waits seven days in deploy-failed without a busy loop, then fails with NeverDeployedError', async () => {
    const began = Date.now();
    stubs.failingDeploys.add('week-deploy-failed');
    const handle = await start(env(), 'week-deploy-failed', { endpointCheckSeconds: 120 });
    const outcome = await outcomeWithin(handle, 60_000);
    const { runs, status } = await checkChain(env(), 'weekDeployFailed', handle, began);
    assert.ok(outcome instanceof WorkflowFailedError, `the run ended with ${String(outcome)}`);
    assert.equal((outcome.cause as ApplicationFailure).type, FAILURE.neverDeployed);
    assert.equal(status.stage, 'failed');
    assert.deepEqual(stubs.inputsOf('week-deploy-failed', 'checkEndpoint'), [], 'nothing deployed, nothing checked');
    // It woke every versionCheckSeconds (600 s): about 1,008 times in a week.
    const fired = chainFigures(runs).timersFired;
    assert.ok(fired <= WEEK_SECONDS / 600 + 5, `${fired} timers fired`);
    // The chain's last run: serving from a carry in deploy-failed until the lifetime ends.
    await recordHistory(env().client.workflow.getHandle('week-deploy-failed', runs.at(-1)!.runId), 'serving-bounds-deploy-failed-last-run');
  });
});

describe('the serving phase under a flood of 1,000 redeploy requests (dev server, stubbed activities)', function () {
  this.timeout(240_000);
  const env = stubs.useServer(startDevServer);
  // A failed test must not leave a deployment waiting: the workers could not shut down.
  afterEach(() => stubs.releaseDeploys());

  it('refuses malformed requests at the door, bounds its queue, and keeps every run and its status small', async () => {
    const began = Date.now();
    const id = 'flood';
    const handle = await start(env(), id, {});
    await statusWhen(handle, (s) => s.stage === 'serving', 'serving');
    let sent = 0;
    let signals = 0;
    const signal = (request: unknown): Promise<void> => {
      sent++;
      signals++;
      return handle.signal(redeploySignal, request as never);
    };
    const updates = { fulfilled: 0, refused: [] as string[], retried: 0, pending: [] as Promise<void>[] };
    const update = (request: unknown): Promise<void> => {
      sent++;
      const answer = (async () => {
        for (;;) {
          try {
            await handle.executeUpdate(redeployUpdate, { args: [request as never] });
            updates.fulfilled++;
            return;
          } catch (err) {
            // The server itself turns updates away while the run's workflow task is being retried
            // (a run continuing as new while signals arrive): gRPC FAILED_PRECONDITION, try again.
            const cause = (err as { cause?: { code?: number; message?: string } }).cause;
            const code = cause?.code;
            if (code === 9) {
              updates.retried++;
              await new Promise((r) => setTimeout(r, 100));
              continue;
            }
            // The server's own bound: at most 10 updates in flight per workflow (RESOURCE_EXHAUSTED).
            if (code === 8) {
              updates.refused.push(`server: ${cause?.message}`);
              return;
            }
            if (!(err instanceof WorkflowUpdateFailedError)) throw err;
            updates.refused.push(String(err.cause?.message));
            return;
          }
        }
      })();
      updates.pending.push(answer);
      return answer;
    };

    // The queue's bound: while a redeploy hangs, 20 requests wait and the next ones are refused.
    stubs.holdDeploys();
    await signal({ version: '12' });
    await statusWhen(handle, (s) => s.stage === 'redeploying', 'the redeploy in progress');
    for (let i = 0; i < MAX_PENDING_REDEPLOYS + 5; i++) await signal({ version: String(2000 + i) });
    const full = await statusWhen(handle, (s) => s.refusedCount === 5, 'five refusals');
    assert.equal(full.queued, MAX_PENDING_REDEPLOYS);
    assert.match(full.refused!.at(-1)!.reason, /20 requests already wait their turn/);
    assert.match(full.refused!.at(-1)!.request, /^\{"version":"202\d"\}$/);
    await update({ version: '3' });
    assert.match(updates.refused.at(-1)!, /20 requests already wait their turn/);
    stubs.releaseDeploys();

    // A steady flood: valid, malformed and padded signals, and updates, which are not awaited.
    // Each padded signal is sent once the run has taken what came before it (a query answers
    // after the signals sent before it), so that a workflow task never meets more than one: a
    // sender faster than that keeps any run from continuing as new (each signal that arrives
    // during the task that would end the run refuses that ending). Valid requests come faster
    // than they run, so the queue stays full and the run continues as new with requests waiting.
    const pad = 'p'.repeat(100 * 1024);
    let paddedUpdates = 0;
    const kinds: [send: () => Promise<void> | undefined, padded?: 'padded'][] = [
      [() => signal({ version: String(1000 + sent) })],
      [() => signal({ version: '11', padding: pad }), 'padded'],
      [() => signal({ version: 'x' })],
      [() => void update({ version: String(1000 + sent) })],
      [() => signal({ alias: 'a'.repeat(150) })],
      [() => signal({ version: '11', alias: 'champion' })],
      [() => signal('11')],
      // A refused update never reaches the history: no need to wait before it.
      [() => void (paddedUpdates++, update({ version: pad }))],
      [() => signal({ alias: 'champion', instanceCount: 2 })],
      [() => signal({ [pad]: 1 }), 'padded'],
    ];
    while (sent < 1000) {
      const [send, padded] = kinds[sent % kinds.length]!;
      if (padded) await handle.query(statusQuery);
      await send();
    }
    assert.equal(sent, 1000);
    await Promise.all(updates.pending);
    await statusWhen(handle, (s) => s.queued === 0 && s.stage === 'serving', 'the queue drained');
    await handle.signal(finishSignal);
    assert.equal((await handle.result()).stage, 'finished');

    const { runs, status } = await checkChain(env(), 'flood', handle, began);
    assert.ok(runs.length > 1, 'the run continued as new during the flood');
    const carriedPending = runs.map((r) => (r.carried as { pending?: unknown[] } | undefined)?.pending?.length ?? 0);
    assert.ok(
      carriedPending.some((n) => n > 0),
      `a run continued as new with requests waiting (carried: ${carriedPending.join(',')})`,
    );
    figures.flood = {
      ...figures.flood,
      signalsRefused: status.refusedCount,
      updatesRun: updates.fulfilled,
      updatesRefused: updates.refused.length,
      updatesRetried: updates.retried,
      carriedPending: Math.max(...carriedPending),
    };
    // Nothing malformed reached a deployment; every signal either ran or was refused: none was lost.
    const deployed = stubs.inputsOf<DeployInput>(id, 'deployModel');
    assert.ok(
      deployed.every((d) => /^\d{1,4}$/.test(d.model.version)),
      'only versions that valid requests named',
    );
    assert.equal(deployed.length - 1, signals - status.refusedCount! + updates.fulfilled, 'every accepted request ran once');
    assert.ok(updates.fulfilled > 0, 'updates ran');
    // Updates are refused by their validator, saying why.
    const why =
      /expected at most 18 characters|wait their turn|continuing as new|grew too long under a flood|server: .*concurrent in-flight updates/;
    assert.ok(
      updates.refused.some((m) => /an update is taken only while at most 5/.test(m)),
      'updates refused behind a long queue',
    );
    assert.deepEqual(
      updates.refused.filter((m) => !why.test(m)),
      [],
    );
    assert.equal(updates.refused.filter((m) => /expected at most 18 characters/.test(m)).length, paddedUpdates);
    // Refused signals are kept cut, the newest only; the status keeps its lists short.
    assert.ok(status.refusedCount! > 450, `${status.refusedCount} signals refused`);
    assert.equal(status.refused!.length, STATUS_HISTORY_LIMIT);
    for (const r of status.refused!) assert.ok(r.request.length <= 250 && r.reason.length <= 550, JSON.stringify(r).slice(0, 300));
    assert.ok(status.redeploys.length <= STATUS_HISTORY_LIMIT && status.deployments.length <= STATUS_HISTORY_LIMIT, 'status lists bounded');
  });

  it('ends when `finish` comes while the run waits to continue as new (a notification in flight)', async () => {
    const handle = await start(env(), 'finish-while-continuing', {});
    await statusWhen(handle, (s) => s.stage === 'serving', 'serving');
    let release = (): void => undefined;
    stubs.notificationGate = new Promise((resolve) => (release = resolve));
    try {
      // A redeploy announces itself (held), then refused requests of 100 KB make the run continue as new:
      // it first waits for the notification in flight, and `finish` comes meanwhile.
      await handle.signal(redeploySignal, { version: '12' });
      await statusWhen(handle, (s) => s.deployments.at(-1)?.version === '12', 'v12 deployed');
      for (let i = 0; i < 6; i++) {
        await handle.query(statusQuery);
        await handle.signal(redeploySignal, { version: '11', padding: 'p'.repeat(100 * 1024) } as never);
      }
      await handle.signal(finishSignal);
    } finally {
      release();
      stubs.notificationGate = undefined;
    }
    const ended = await Promise.race([handle.result(), new Promise((r) => setTimeout(() => r('still running'), 60_000))]);
    assert.equal((ended as { stage?: string }).stage, 'finished', `the run: ${JSON.stringify(ended).slice(0, 200)}`);
    assert.notEqual((await handle.describe()).runId, handle.firstExecutionRunId, 'it continued as new, then ended');
    await recordHistory(
      env().client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId),
      'finish-while-continuing~first-run',
    );
  });

  for (const step of ['deploy', 'resolve'] as const)
    it(`hands a redeploy whose ${step} hangs to the next run once a flood has filled the history, and deploys it there once`, async () => {
      const began = Date.now();
      const id = `flood-during-${step}`;
      const handle = await start(env(), id, {});
      await statusWhen(handle, (s) => s.stage === 'serving', 'serving');
      stubs.holdDeploys(step);
      await handle.signal(redeploySignal, { version: '12' });
      await statusWhen(handle, (s) => s.stage === 'redeploying', 'the redeploy in progress');
      // 80 requests of 100 KB at 1 MB/s, each refused at the door and each staying in the history:
      // 8 MB, in one run if the redeploy held it.
      const pad = 'p'.repeat(100 * 1024);
      const PADDED = 80;
      for (let i = 0; i < PADDED; i++) {
        await handle.signal(redeploySignal, { version: '11', padding: pad } as never);
        await new Promise((r) => setTimeout(r, 100));
      }
      const during = await statusWhen(handle, (s) => s.refusedCount === PADDED, 'every padded request refused');
      assert.ok((during.redeploysHandedOver ?? 0) >= 1, `handed over: ${during.redeploysHandedOver}`);
      stubs.releaseDeploys();
      await statusWhen(handle, (s) => s.stage === 'serving' && s.deployments.at(-1)?.version === '12', 'v12 deployed');
      await handle.signal(finishSignal);
      assert.equal((await handle.result()).stage, 'finished');

      // Each run ends within the hand-over bound plus what the flood adds while the deploy hears of
      // its cancellation (a heartbeat, DEPLOY_HEARTBEAT_THROTTLE) and stops.
      const { runs, status } = await checkChain(env(), id, handle, began, HAND_OVER_BYTES + 3 * 1024 * 1024);
      assert.ok(runs.length > 2, `the redeploy was handed over from run to run (${runs.length} runs)`);
      await recordHistory(env().client.workflow.getHandle(id, runs[0]!.runId), `${id}~first-run`);
      const deploys = stubs.inputsOf<DeployInput & { deployKey?: string }>(id, 'deployModel').filter((d) => d.model.version === '12');
      const lookups = stubs.inputsOf<{ version?: string }>(id, 'resolveModelVersion').filter((r) => r.version === '12');
      assert.ok((step === 'deploy' ? deploys : lookups).length >= 2, `the ${step} began again in the next run`);
      assert.equal(new Set(deploys.map((d) => d.deployKey)).size, 1, 'under one key, whichever run deployed');
      assert.deepEqual(
        status.redeploys.filter((r) => r.request.version === '12').map((r) => r.outcome),
        ['deployed'],
        'run once to the end',
      );
      figures[id] = { ...figures[id], handedOver: status.redeploysHandedOver, begun: (step === 'deploy' ? deploys : lookups).length };
    });
});
