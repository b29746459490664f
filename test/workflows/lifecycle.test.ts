/**
 * The model's whole life, in one run on real parts: a dev server, MLflow, SeaweedFS, the real
 * activities and a local endpoint, a webhook the test runs and a Temporal Schedule. The first model
 * waits for approval and serves once approved; a schedule's tick retrains; the new model passes the
 * gate, waits for approval and is deployed once approved; a notification arrives for each step; and
 * images with shifted colours, sent to the endpoint, raise drift.
 */
import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ScheduleOverlapPolicy, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, type Worker } from '@temporalio/worker';
import { createNotifyActivities, SIGNATURE_HEADER } from '../../src/activities/notify';
import { TASK_QUEUES } from '../../src/common/constants';
import type { PipelineEvent } from '../../src/common/types';
import { cnnSkinCancerWorkflow, scheduledRetrainingWorkflow } from '../../src/workflows';
import { approveUpdate, finishSignal, type PipelineStatus } from '../../src/workflows/messages';
import { useTestStack } from '../helpers/global';
import { lesionInstances, SHIFTED_COLOURS } from '../helpers/images';
import { seededDataset, testMlflow, testS3, uniqueBucket } from '../helpers/services';
import { createPipelineWorkers, recordHistory, startDevServer, statusWhen } from '../helpers/temporal';

useTestStack();

const SECRET = 'webhook-secret-for-the-lifecycle';
const SIZE = 16;

describe("the model's life: schedule, approval, notifications, drift (dev server, real activities)", function () {
  this.timeout(600_000);
  const s3 = testS3();
  const mlflow = testMlflow();
  const received: PipelineEvent[] = [];
  let receiver: Server;
  let env: TestWorkflowEnvironment;
  let workers: Worker[] = [];
  let running: Promise<void>[] = [];
  const flush = process.env.DRIFT_SAMPLE_FLUSH_SECONDS;
  let bucket: string;

  before(async function () {
    this.timeout(180_000);
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const signed = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        if (req.headers[SIGNATURE_HEADER] !== signed) return void res.writeHead(401).end();
        received.push((JSON.parse(body) as { event: PipelineEvent }).event);
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    // The endpoint's server writes its drift sample every second (a minute by default).
    process.env.DRIFT_SAMPLE_FLUSH_SECONDS = '1';
    bucket = uniqueBucket('drift');
    await s3.ensureBucket(bucket);
    env = await startDevServer();
    const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') });
    workers = await createPipelineWorkers(
      env.nativeConnection,
      bundle,
      undefined,
      {},
      { pipelineActivities: createNotifyActivities({ webhookUrl: url, secret: SECRET }), driftSampleUri: `s3://${bucket}/drift-samples` },
    );
    running = workers.map((w) => w.run());
  });
  after(async function () {
    this.timeout(60_000);
    if (flush === undefined) delete process.env.DRIFT_SAMPLE_FLUSH_SECONDS;
    else process.env.DRIFT_SAMPLE_FLUSH_SECONDS = flush;
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await Promise.allSettled(running);
    await env?.teardown();
    receiver?.closeAllConnections();
    receiver?.close();
  });

  /** Posts `count` synthetic lesions to the endpoint, 20 to a request; `shift` changes their colours. */
  async function sendImages(url: string, count: number, seed: number, shift?: (rgb: number[]) => number[]): Promise<void> {
    const instances = lesionInstances(count, SIZE, seed, shift);
    for (let i = 0; i < count; i += 20) {
      const res = await fetch(`${url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instances: instances.slice(i, i + 20) }),
      });
      assert.equal(res.status, 200, await res.text());
    }
  }

  /** The status once a drift check's outcome is one of `outcomes`; on a timeout, also what the drift bucket holds. */
  async function driftWhen(owner: WorkflowHandle, outcomes: string[]): Promise<PipelineStatus> {
    try {
      return await statusWhen(owner, (s) => outcomes.includes(s.drift?.outcome ?? ''), `a drift check: ${outcomes.join(' or ')}`, 120_000);
    } catch (err) {
      const keys = (await s3.list(`s3://${bucket}/drift-samples/`)).map((o) => o.key);
      throw new Error(`${(err as Error).message}; the drift bucket holds ${JSON.stringify(keys)}`);
    }
  }

  it('serves an approved model, retrains on a tick, waits for approval, deploys the approved winner, notifies each step and raises drift on shifted images', async () => {
    const id = `lifecycle-${uniqueBucket('x').slice(2)}`;
    // Enough images for a drift reference that is not mostly noise.
    const dataUri = await seededDataset(s3, { trainPerClass: 60, testPerClass: 6, size: 24 });
    const owner = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: id,
      args: [
        {
          dataUri,
          imageSize: SIZE,
          models: ['Basic'],
          epochs: 2,
          batchSize: 8,
          learningRate: 1e-3,
          experimentName: 'lifecycle',
          endpointName: id,
          lifetimeSeconds: 3600,
          approval: { required: true, timeoutHours: 72, onTimeout: 'reject' },
          // Every 20 s: a window ends 5 s before its check.
          driftCheckHours: 20 / 3600,
        },
      ],
    });
    const approve = async (status: PipelineStatus, approver: string) =>
      owner.executeUpdate(approveUpdate, { args: [{ version: status.approval!.pending!.version, approver, reason: 'reviewed' }] });

    // 1. The first model waits for approval; nothing serves until it is approved.
    const first = await statusWhen(owner, (s) => s.stage === 'awaiting-approval', 'the first model awaiting approval', 180_000);
    assert.equal(first.deployments.length, 0);
    await approve(first, 'dr.lee');
    const serving = await statusWhen(owner, (s) => s.stage === 'serving' && s.deployments.length === 1, 'the first model serving');
    const v1 = serving.deployments[0]!.version;

    // 2. A schedule's tick retrains; the winner passes the gate and waits; the tick hears so.
    const schedule = await env.client.schedule.create({
      scheduleId: `${id}-weekly`,
      spec: { intervals: [{ every: '7d' }] },
      action: {
        type: 'startWorkflow',
        workflowType: scheduledRetrainingWorkflow,
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: `${id}-tick`,
        args: [{ endpointWorkflowId: id }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
    });
    try {
      await schedule.trigger(ScheduleOverlapPolicy.SKIP);
      const waiting = await statusWhen(
        owner,
        (s) => s.stage === 'awaiting-approval' && s.approval?.pending !== undefined,
        'the retrained model awaiting approval',
        180_000,
      );
      const v2 = waiting.approval!.pending!.version;
      assert.notEqual(v2, v1);
      assert.equal(waiting.deployments.at(-1)!.version, v1, 'the champion serves meanwhile');
      assert.match(waiting.schedule?.nextTickAt ?? '', /^\d{4}-/, 'the next tick is shown');
      const [tickId] = (await schedule.describe()).info.recentActions.map((a) => a.action.workflow.workflowId);
      const tick = await env.client.workflow.getHandle<typeof scheduledRetrainingWorkflow>(tickId!).result();
      assert.equal(tick.outcome, 'awaiting-approval');

      // 3. Approved, it serves and becomes champion.
      await approve(waiting, 'dr.okafor');
      const after = await statusWhen(owner, (s) => s.lastRetraining?.outcome === 'deployed', 'the retrained model serving', 120_000);
      assert.equal(after.deployments.at(-1)!.version, v2);
      const champion = await mlflow.getModelVersionByAlias(id, 'champion');
      assert.equal(champion?.version, v2);
      const tags = Object.fromEntries((champion?.tags ?? []).map((t) => [t.key, t.value]));
      assert.deepEqual([tags.approval_status, tags.approval_approver], ['approved', 'dr.okafor']);

      // 4. Images like the training data: steady; the same with shifted colours: drift.
      const url = after.deployments.at(-1)!.url;
      await sendImages(url, 200, 5000);
      // A window that caught only part of the images is too small to judge, and grows until the next check.
      const steady = await driftWhen(owner, ['steady', 'drifted']);
      assert.equal(steady.drift!.outcome, 'steady', JSON.stringify(steady.drift));
      await sendImages(url, 200, 9000, SHIFTED_COLOURS);
      const drifted = await driftWhen(owner, ['drifted']);
      assert.ok(drifted.drift!.figures!.psi > 0.2 && steady.drift!.figures!.psi <= 0.2);

      // 5. A notification for each step, signed.
      for (let i = 0; received.filter((e) => e.workflowId === id && e.kind === 'drift').length === 0; i++) {
        assert.ok(i < 100, 'the drift notification arrived');
        await sleep(100);
      }
      const kinds = received.filter((e) => e.workflowId === id).map((e) => e.kind);
      for (const kind of ['awaiting-approval', 'approved', 'deployed', 'retraining-finished', 'drift'] as const)
        assert.ok(kinds.includes(kind), `${kind} in ${kinds.join(', ')}`);
      assert.equal(kinds.filter((k) => k === 'awaiting-approval').length, 2);

      // What the Web UI shows as the run's Current Details.
      const details = ((await owner.query('__temporal_workflow_metadata')) as { currentDetails?: string }).currentDetails ?? '';
      assert.match(details, /\*\*Drift:\*\* \*\*drifted\*\*: PSI/);
      assert.match(details, /\*\*Next scheduled retraining:\*\* \d{4}-/);
      assert.match(details, /\*\*Last approval:\*\* v\d+ approved by dr\.okafor/);
      assert.match(details, /\*\*Last notification:\*\*/);
      if (process.env.LIFECYCLE_LOG === '1') {
        console.log(details);
        console.log(JSON.stringify({ steady: steady.drift, drifted: drifted.drift, kinds }));
        // The owner's history in brief: its events by type, and the activities and updates in it.
        const events = (await owner.fetchHistory()).events ?? [];
        const count = (names: (string | null | undefined)[]) =>
          names.reduce<Record<string, number>>((n, name) => ({ ...n, [name ?? '?']: (n[name ?? '?'] ?? 0) + 1 }), {});
        console.log(
          JSON.stringify({
            events: events.length,
            byType: count(events.map((e) => temporal.api.enums.v1.EventType[e.eventType ?? 0])),
            activities: count(events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean)),
            updates: events.flatMap((e) => {
              const accepted = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
              return accepted ? [`${accepted.input?.name}`] : [];
            }),
            signals: count(events.map((e) => e.workflowExecutionSignaledEventAttributes?.signalName).filter(Boolean)),
          }),
        );
      }
      await recordHistory(env.client.workflow.getHandle(id, (await owner.describe()).runId), `${id}~last-run`);
    } finally {
      await schedule.delete();
    }
    await owner.signal(finishSignal);
    assert.equal((await owner.result()).stage, 'finished');
  });
});
