/**
 * A person's approval before a model serves (src/workflows/approval.ts): the winner waits in stage
 * awaiting-approval, across continue-as-new, for an `approve` or `reject` update whose validator
 * wants the waiting version, an approver and a reason; the timeout decides after timeoutHours.
 * Stubbed activities on a dev server (updates, schedules' workflow, visibility) and on the
 * time-skipping server (72 hours of waiting).
 */
import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { TASK_QUEUES } from '../../src/common/constants';
import type { PipelineEvent } from '../../src/common/types';
import { scheduledRetrainingWorkflow } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import {
  approveUpdate,
  finishSignal,
  redeploySignal,
  rejectUpdate,
  retrainSignal,
  statusQuery,
  type ApprovalRequest,
} from '../../src/workflows/messages';
import { ServingStubs, startStubRun } from '../helpers/serving-stubs';
import { recordHistory, startDevServer, startTimeSkippingServer, statusWhen } from '../helpers/temporal';

const APPROVAL = { required: true, timeoutHours: 72, onTimeout: 'reject' } as const;

/** The update's refusal (its validator's message), or fails when it was accepted. */
async function refusal(handle: WorkflowHandle, update: typeof approveUpdate, request: unknown): Promise<string> {
  try {
    await handle.executeUpdate(update, { args: [request as ApprovalRequest] });
  } catch (err) {
    assert.ok(err instanceof WorkflowUpdateFailedError, String(err));
    return String(err.cause?.message);
  }
  return assert.fail(`${JSON.stringify(request)} was accepted`);
}

describe('approval before a model serves (dev server, stubbed activities)', function () {
  this.timeout(180_000);
  const stubs = new ServingStubs();
  const server = stubs.useServer(startDevServer);
  afterEach(() => stubs.releaseTrainings());

  const startOwner = (workflowId: string, over: PipelineInput = {}) =>
    startStubRun(server().client, workflowId, { lifetimeSeconds: 3600, approval: APPROVAL, ...over });
  const events = (workflowId: string) => stubs.inputsOf<PipelineEvent>(workflowId, 'sendNotification').map((e) => e.kind);
  const tags = (workflowId: string) =>
    stubs
      .inputsOf<{ version: string; tags: Record<string, string> }>(workflowId, 'tagModelVersion')
      .filter((t) => t.tags.approval_status !== undefined);

  it('the first winner waits, listed by one search-attribute query, through a continue-as-new, until a valid `approve`; then it deploys and is promoted once it serves', async () => {
    const id = 'approval-first';
    const owner = await startOwner(id);
    const waiting = await statusWhen(owner, (s) => s.stage === 'awaiting-approval', 'awaiting approval');
    const pending = waiting.approval!.pending!;
    assert.deepEqual([pending.version, pending.modelClass, pending.onTimeout], ['11', 'Basic', 'reject']);
    assert.match(
      pending.command,
      new RegExp(`^temporal workflow update execute --workflow-id ${id} --name approve --input '\\{"version": "11"`),
    );
    assert.equal(Date.parse(pending.decidesAt) - Date.parse(pending.since), 72 * 3600_000);
    assert.deepEqual(stubs.inputsOf(id, 'deployModel'), [], 'nothing deploys before the decision (no champion to keep)');
    assert.deepEqual(stubs.inputsOf(id, 'promoteModelVersion'), []);

    // One query lists every pending approval.
    for (let i = 0; ; i++) {
      const listed: string[] = [];
      for await (const w of server().client.workflow.list({ query: `PipelineStage = 'awaiting-approval'` })) listed.push(w.workflowId);
      if (listed.includes(id)) break;
      assert.ok(i < 100, `the query listed ${JSON.stringify(listed)}`);
      await sleep(100);
    }

    // The validator wants the version that waits, an approver and a reason.
    assert.match(await refusal(owner, approveUpdate, { version: '11', reason: 'looks good' }), /approver is required/);
    assert.match(await refusal(owner, approveUpdate, { version: '11', approver: 'dr.lee', reason: '  ' }), /reason is required/);
    assert.match(await refusal(owner, approveUpdate, { version: '10', approver: 'dr.lee', reason: 'ok' }), /v11 awaits approval, not v10/);
    assert.match(await refusal(owner, rejectUpdate, { version: '11', approver: 'dr.lee', reason: 'ok', by: 'x' }), /unknown field\(s\) by/);

    // The run continues as new while the model waits (refused requests of 100 KB fill its history).
    for (let i = 0; i < 8; i++) {
      await owner.query(statusQuery);
      await owner.signal(redeploySignal, { version: '11', padding: 'p'.repeat(100 * 1024) } as never);
    }
    for (let i = 0; (await owner.describe()).runId === owner.firstExecutionRunId; i++) {
      assert.ok(i < 100, 'the owner continued as new');
      await sleep(100);
    }
    const after = await owner.query(statusQuery);
    assert.equal(after.stage, 'awaiting-approval');
    assert.equal(after.approval?.pending?.since, pending.since, 'the same wait');

    const decision = await owner.executeUpdate(approveUpdate, {
      args: [{ version: '11', approver: 'dr.lee', reason: 'reviewed the confusion matrix' }],
    });
    assert.deepEqual([decision.decision, decision.version, decision.approver], ['approved', '11', 'dr.lee']);
    assert.match(
      await refusal(owner, approveUpdate, { version: '11', approver: 'x', reason: 'y' }),
      /already approved by dr\.lee|no model awaits/,
    );
    const serving = await statusWhen(owner, (s) => s.stage === 'serving' && s.deployments.length === 1, 'the approved model serving');
    assert.equal(serving.deployments[0]!.version, '11');
    assert.equal(serving.approval?.last?.approver, 'dr.lee');
    assert.equal(serving.redeploys.at(-1)?.via, 'approval');
    for (let i = 0; stubs.inputsOf(id, 'promoteModelVersion').length === 0; i++) {
      assert.ok(i < 100, 'promoted once it served');
      await sleep(50);
    }
    // The decision is on the version in MLflow: who, why, when.
    const [asked, decided] = tags(id);
    assert.equal(asked!.tags.approval_status, 'pending');
    assert.deepEqual(
      [decided!.version, decided!.tags.approval_status, decided!.tags.approval_approver, decided!.tags.approval_reason],
      ['11', 'approved', 'dr.lee', 'reviewed the confusion matrix'],
    );
    assert.equal(decided!.tags.approval_decided_at, decision.at);
    const kinds = events(id);
    assert.deepEqual(
      kinds.filter((k) => k !== 'retraining-finished'),
      ['awaiting-approval', 'approved', 'deployed'],
    );
    await recordHistory(server().client.workflow.getHandle(id, owner.firstExecutionRunId), 'approval-first~first-run');
    await recordHistory(server().client.workflow.getHandle(id, (await owner.describe()).runId), 'approval-first~last-run');
    await owner.signal(finishSignal);
    assert.equal((await owner.result()).stage, 'finished');
  });

  it("a retraining's winner waits while the champion serves; the schedule's tick hears so at once, other retrainings are skipped, and `reject` keeps the champion", async () => {
    const id = 'approval-retrained';
    const owner = await startOwner(id);
    await statusWhen(owner, (s) => s.stage === 'awaiting-approval', 'the first winner waiting');
    await owner.executeUpdate(approveUpdate, { args: [{ version: '11', approver: 'dr.lee', reason: 'first model' }] });
    await statusWhen(owner, (s) => s.stage === 'serving', 'serving');
    const deploys = stubs.inputsOf(id, 'deployModel').length;

    const tick = await server().client.workflow.execute(scheduledRetrainingWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: `${id}-tick`,
      args: [{ endpointWorkflowId: id }],
    });
    assert.equal(tick.outcome, 'awaiting-approval');
    assert.match(tick.reason, /^v11 passed the gate and awaits approval/);
    const waiting = await statusWhen(owner, (s) => s.stage === 'awaiting-approval', 'the retrained winner waiting');
    assert.equal(waiting.deployments.at(-1)?.version, '11', 'the champion serves meanwhile');

    const another = await server().client.workflow.execute(scheduledRetrainingWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: `${id}-tick-2`,
      args: [{ endpointWorkflowId: id }],
    });
    assert.deepEqual(
      [another.outcome, another.reason],
      ['skipped', 'a model awaits approval: approve or reject it first (status: approval)'],
    );

    const decision = await owner.executeUpdate(rejectUpdate, {
      args: [{ version: '11', approver: 'dr.okafor', reason: 'recall on melanoma too low' }],
    });
    assert.equal(decision.decision, 'rejected');
    const after = await statusWhen(owner, (s) => s.lastRetraining?.outcome === 'rejected', 'the retraining rejected');
    assert.equal(after.stage, 'serving');
    assert.equal(after.lastRetraining!.reason, 'v11 rejected by dr.okafor: recall on melanoma too low');
    assert.equal(stubs.inputsOf(id, 'deployModel').length, deploys, 'nothing deployed: the champion stays');
    assert.equal(tags(id).at(-1)!.tags.approval_status, 'rejected');
    assert.ok(events(id).includes('rejected'));

    // Retraining works again once nobody waits.
    stubs.holdTrainings();
    await owner.signal(retrainSignal, { reason: 'again' });
    await statusWhen(owner, (s) => s.retraining !== undefined, 'a retraining in progress');
    stubs.releaseTrainings();
    await statusWhen(owner, (s) => s.stage === 'awaiting-approval', 'its winner waiting');
    // The run ends with a model waiting: it is not deployed, and the retraining is told so.
    await owner.signal(finishSignal);
    const result = await owner.result();
    assert.equal(result.stage, 'finished');
    const end = await owner.query(statusQuery);
    assert.equal(end.approval?.pending, undefined);
    assert.equal(end.lastRetraining?.outcome, 'skipped');
    assert.equal(stubs.inputsOf(id, 'deployModel').length, deploys);
  });
});

describe('approval timing out (time-skipping server, stubbed activities)', function () {
  this.timeout(180_000);
  const stubs = new ServingStubs();
  const env = stubs.useServer(startTimeSkippingServer);

  it('after timeoutHours nobody decided: onTimeout approve deploys the model, recorded as the timeout', async () => {
    const id = 'approval-timeout';
    const handle = await startStubRun(env().client, id, {
      lifetimeSeconds: 4 * 24 * 3600,
      endpointCheckSeconds: 3600,
      approval: { required: true, timeoutHours: 72, onTimeout: 'approve' },
    });
    const result = await handle.result();
    assert.equal(result.deployment?.version, '11');
    const status = await handle.query(statusQuery);
    const last = status.approval!.last!;
    assert.deepEqual([last.decision, last.approver, last.timedOut], ['approved', 'approval.onTimeout', true]);
    const [deploy] = stubs.inputsOf<{ model: { version: string } }>(id, 'deployModel');
    assert.equal(deploy!.model.version, '11');
    // It waited the 72 hours (workflow time), from the moment it asked.
    const asked = stubs.inputsOf<{ tags: Record<string, string> }>(id, 'tagModelVersion').find((t) => t.tags.approval_status === 'pending')!
      .tags.approval_requested_at!;
    assert.equal(Math.round((Date.parse(last.at) - Date.parse(asked)) / 3600_000), 72);
    // Four days, three of them waiting, far below a run's history limit: the wait is a timer; the
    // run wakes only for its build check (versionCheckSeconds, 600 s) while nothing is deployed.
    const events = (await handle.fetchHistory()).events ?? [];
    console.log(`      ${events.length} events in the run's history`);
    assert.ok(events.length < 10_000, `${events.length} events`);
  });
});
