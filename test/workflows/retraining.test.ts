/**
 * Retraining through the endpoint's owner (src/workflows/retraining.ts): a Temporal Schedule's tick
 * asks the owner, which trains in a child workflow, deploys the winner and promotes it once it
 * serves. A dev server (schedules, child workflows, signals between workflows), stubbed activities.
 */
import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import { TASK_QUEUES } from '../../src/common/constants';
import type { PipelineInput } from '../../src/workflows/input';
import { retrainingWorkflow, scheduledRetrainingWorkflow } from '../../src/workflows';
import { finishSignal, redeploySignal, retrainSignal, statusQuery } from '../../src/workflows/messages';
import { ServingStubs, startStubRun } from '../helpers/serving-stubs';
import { recordHistory, startDevServer, statusWhen } from '../helpers/temporal';

describe('retraining through the endpoint owner (dev server, stubbed activities)', function () {
  this.timeout(180_000);
  const stubs = new ServingStubs();
  const server = stubs.useServer(startDevServer);
  afterEach(() => stubs.releaseTrainings());

  const startOwner = (workflowId: string, over: PipelineInput = {}) =>
    startStubRun(server().client, workflowId, { lifetimeSeconds: 3600, ...over });

  it("a schedule's tick hands a retraining to the owner, which trains in a child workflow, deploys the winner and promotes it once it serves, across the owner's continue-as-new; overlapping ticks are skipped", async () => {
    const owner = await startOwner('retrain-owner');
    await statusWhen(owner, (s) => s.stage === 'serving', 'serving');
    const deploysBefore = stubs.inputsOf('retrain-owner', 'deployModel').length;

    stubs.holdTrainings();
    const schedule = await server().client.schedule.create({
      scheduleId: 'retrain-owner-weekly',
      spec: { intervals: [{ every: '7d' }] },
      action: {
        type: 'startWorkflow',
        workflowType: scheduledRetrainingWorkflow,
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'retrain-owner-tick',
        args: [{ endpointWorkflowId: 'retrain-owner' }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
    });
    try {
      await schedule.trigger(ScheduleOverlapPolicy.SKIP);
      const during = await statusWhen(owner, (s) => s.retraining !== undefined, 'a retraining in progress');
      assert.equal(during.stage, 'serving', 'the owner serves on while the child trains');
      const childId = during.retraining!.childWorkflowId;

      // The schedule skips a tick while its last one waits for the outcome...
      await schedule.trigger(ScheduleOverlapPolicy.SKIP);
      // ...and so are the ticks of a backfill (three weekly ones) while it waits.
      const week = 7 * 24 * 3600 * 1000;
      await schedule.backfill({
        start: new Date(Date.now() - 3 * week),
        end: new Date(Date.now() - 1000),
        overlap: ScheduleOverlapPolicy.SKIP,
      });
      for (let i = 0; (await schedule.describe()).info.numActionsSkippedOverlap < 4; i++) {
        assert.ok(i < 100, `the overlapping ticks were skipped (${(await schedule.describe()).info.numActionsSkippedOverlap})`);
        await sleep(100);
      }
      // ...and the owner answers one that comes anyway (started by hand) with `skipped`.
      const skipped = await server().client.workflow.execute(scheduledRetrainingWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'retrain-owner-by-hand',
        args: [{ endpointWorkflowId: 'retrain-owner', reason: 'by hand' }],
      });
      assert.equal(skipped.outcome, 'skipped');
      assert.match(skipped.reason, new RegExp(`${childId} is still training`));

      // The owner continues as new while the child trains (here: refused requests of 100 KB fill its
      // history); the retraining travels with it, and the child answers the run that is current.
      for (let i = 0; i < 8; i++) {
        await owner.query(statusQuery);
        await owner.signal(redeploySignal, { version: '11', padding: 'p'.repeat(100 * 1024) } as never);
      }
      for (let i = 0; (await owner.describe()).runId === owner.firstExecutionRunId; i++) {
        assert.ok(i < 100, 'the owner continued as new');
        await sleep(100);
      }
      assert.equal((await owner.query(statusQuery)).retraining?.childWorkflowId, childId);

      stubs.releaseTrainings();
      const after = await statusWhen(owner, (s) => s.lastRetraining !== undefined, 'the retraining over');
      assert.equal(after.retraining, undefined);
      assert.deepEqual(
        [after.lastRetraining!.outcome, after.lastRetraining!.version, after.lastRetraining!.childWorkflowId],
        ['deployed', '11', childId],
      );
      const [tick] = (await schedule.describe()).info.recentActions.map((a) => a.action.workflow.workflowId);
      const first = await server().client.workflow.getHandle<typeof scheduledRetrainingWorkflow>(tick!).result();
      assert.equal(first.outcome, 'deployed');

      // The child trained under its own id and history, as the owner's child; the owner deployed its
      // winner, then promoted it.
      const child = server().client.workflow.getHandle<typeof retrainingWorkflow>(childId);
      assert.equal((await child.describe()).parentExecution?.workflowId, 'retrain-owner');
      assert.equal((await child.result()).winner?.ref.version, '11');
      assert.equal(stubs.inputsOf(childId, 'trainModel').length, 1);
      assert.equal(stubs.inputsOf('retrain-owner', 'deployModel').length, deploysBefore + 1);
      assert.equal(stubs.inputsOf('retrain-owner', 'promoteModelVersion').length, 2, 'the first model, then the retrained one');
      assert.equal(after.redeploys.at(-1)?.via, 'retraining');
      await recordHistory(server().client.workflow.getHandle('retrain-owner', owner.firstExecutionRunId), 'retrain-owner~first-run');
      await recordHistory(server().client.workflow.getHandle('retrain-owner', (await owner.describe()).runId), 'retrain-owner~last-run');
      await recordHistory(child, `${childId}~child`);
      await recordHistory(server().client.workflow.getHandle(tick!), 'retrain-owner-tick~scheduled');
    } finally {
      await schedule.delete();
    }
    await owner.signal(finishSignal);
    assert.equal((await owner.result()).stage, 'finished');
  });

  it('retrains once retrainOnNewImages have arrived since the last training (counted on a timer), and not again for the same images', async () => {
    stubs.images = 48;
    const owner = await startOwner('retrain-on-data', { retrainOnNewImages: 10, newImagesCheckSeconds: 5 });
    const first = await statusWhen(owner, (s) => s.stage === 'serving' && s.newImages?.counted === 48, 'the first count');
    assert.equal(first.newImages!.sinceLastTraining, 0, 'counted from the images the first run read');
    stubs.images = 55;
    const few = await statusWhen(owner, (s) => s.newImages?.counted === 55, 'a count of 55');
    assert.equal(few.newImages!.sinceLastTraining, 7);
    assert.equal(few.retraining ?? few.lastRetraining, undefined, 'seven new images are not enough');

    stubs.holdTrainings();
    stubs.images = 60;
    const training = await statusWhen(owner, (s) => s.retraining !== undefined, 'a retraining for 12 new images');
    assert.match(training.retraining!.reason, /^12 new images under s3:\/\/stub-bucket\/data \(retrainOnNewImages 10\)$/);
    stubs.releaseTrainings();
    const done = await statusWhen(owner, (s) => s.lastRetraining !== undefined, 'the retraining over');
    assert.equal(done.lastRetraining!.outcome, 'deployed');
    // Counted from the 60 images the retraining read: nothing new, nothing to do.
    const after = await statusWhen(owner, (s) => s.newImages!.checkedAt > done.lastRetraining!.finishedAt, 'a count after it');
    assert.deepEqual([after.newImages!.counted, after.newImages!.sinceLastTraining, after.retraining], [60, 0, undefined]);
    assert.equal(stubs.inputsOf(training.retraining!.childWorkflowId, 'trainModel').length, 1);
    await owner.signal(finishSignal);
    await owner.result();
  });

  it('refuses a malformed retrain request in the status, and a scheduled retraining of a workflow that is not running fails saying so', async () => {
    const owner = await startOwner('retrain-refusals');
    await statusWhen(owner, (s) => s.stage === 'serving', 'serving');
    await owner.signal(retrainSignal, { reason: 'r'.repeat(300) });
    const status = await statusWhen(owner, (s) => (s.refusedCount ?? 0) > 0, 'the refusal');
    assert.match(status.refused!.at(-1)!.reason, /reason: expected a string of at most 200 characters/);
    assert.equal(status.retraining, undefined);
    await owner.signal(finishSignal);
    await owner.result();

    const err = await server()
      .client.workflow.execute(scheduledRetrainingWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'retrain-nobody',
        args: [{ endpointWorkflowId: 'no-such-endpoint-run' }],
      })
      .then(
        () => assert.fail('expected a failure'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(String(err.cause?.message), /could not ask workflow no-such-endpoint-run to retrain/);
  });
});
