/**
 * Notifications (src/workflows/notifications.ts, src/activities/notify.ts): a run's events posted
 * to a webhook the test runs, signed with an HMAC of the body. A dev server, the real notification
 * activity, the other activities stubbed.
 */
import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createNotifyActivities, signature, SIGNATURE_HEADER } from '../../src/activities/notify';
import type { PipelineEvent } from '../../src/common/types';
import { finishSignal, redeploySignal, retrainSignal } from '../../src/workflows/messages';
import { ServingStubs, startStubRun } from '../helpers/serving-stubs';
import { recordHistory, startDevServer, statusWhen } from '../helpers/temporal';

const SECRET = 'webhook-secret-for-the-test';

/** What the webhook answers next: `fail` answers 500 to the next `failures` requests, `refuse` 404 to all, `hang` never. */
type Mode = 'ok' | 'fail' | 'refuse' | 'hang';

describe('notifications to a webhook (dev server, the real notification activity, other activities stubbed)', function () {
  this.timeout(120_000);
  const received: { body: string; signature: string | undefined; status: number }[] = [];
  let mode: Mode = 'ok';
  let failures = 0;
  let receiver: Server;
  let url = '';

  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (mode === 'hang') return;
        const status = mode === 'refuse' ? 404 : mode === 'fail' && failures-- > 0 ? 500 : 200;
        received.push({ body: Buffer.concat(chunks).toString(), signature: req.headers[SIGNATURE_HEADER] as string | undefined, status });
        res.writeHead(status).end(status === 200 ? 'ok' : 'no');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  });
  after(() => {
    receiver.closeAllConnections();
    receiver.close();
  });

  // The URL is known once the receiver listens, before the workers start.
  const stubs = new ServingStubs({
    sendNotification: (e: PipelineEvent) => createNotifyActivities({ webhookUrl: url, secret: SECRET }).sendNotification(e),
  });
  const server = stubs.useServer(startDevServer);

  const start = (workflowId: string, lifetimeSeconds: number) => startStubRun(server().client, workflowId, { lifetimeSeconds });

  /** The events delivered (answered 200) for one workflow, oldest first. */
  const delivered = (workflowId: string): (PipelineEvent & { id: string })[] =>
    received
      .filter((r) => r.status === 200)
      .map((r) => (JSON.parse(r.body) as { event: PipelineEvent & { id: string } }).event)
      .filter((e) => e.workflowId === workflowId);

  async function deliveredWhen(workflowId: string, count: number): Promise<(PipelineEvent & { id: string })[]> {
    for (let i = 0; delivered(workflowId).length < count; i++) {
      assert.ok(i < 600, `${count} events delivered; got ${JSON.stringify(delivered(workflowId).map((e) => e.kind))}`);
      await sleep(100);
    }
    return delivered(workflowId);
  }

  it('announces deployments, a rollback, a failed redeploy and a retraining, signed with an HMAC of the body, retried when the webhook fails', async () => {
    mode = 'fail';
    failures = 1;
    const owner = await start('notified', 3600);
    await statusWhen(owner, (s) => s.stage === 'serving', 'serving');
    await deliveredWhen('notified', 1);
    mode = 'ok';
    await owner.signal(redeploySignal, { version: '7' });
    await deliveredWhen('notified', 2);
    await owner.signal(redeploySignal, { alias: 'previous-champion' });
    await deliveredWhen('notified', 3);
    await owner.signal(redeploySignal, { alias: 'no-such-alias' });
    await deliveredWhen('notified', 4);
    await owner.signal(retrainSignal, { reason: 'new labelled images' });
    const events = await deliveredWhen('notified', 6);
    await owner.signal(finishSignal);
    await owner.result();
    await recordHistory(owner, 'notified~only-run');

    assert.deepEqual(
      events.map((e) => [e.kind, e.version]),
      [
        ['deployed', '11'],
        ['deployed', '7'],
        ['rolled-back', '10'],
        ['deploy-failed', undefined],
        ['deployed', '11'],
        ['retraining-finished', '11'],
      ],
    );
    assert.match(events[3]!.detail, /"alias":"no-such-alias"/);
    assert.match(events[5]!.detail, /^deployed: /);
    // Every request is signed with the secret over its exact body; a tampered body would not match.
    for (const r of received) assert.equal(r.signature, `sha256=${createHmac('sha256', SECRET).update(r.body).digest('hex')}`);
    assert.notEqual(signature(SECRET, received[0]!.body.replace('notified', 'notifie_')), received[0]!.signature);
    // Slack-compatible: a `text` line, the endpoint and the event in it.
    assert.match((JSON.parse(received[0]!.body) as { text: string }).text, /^\[notified\] deployed notified v11: serves at /);
    // The first attempt got a 500; the retry carried the same event id.
    const first = received.filter((r) => (JSON.parse(r.body) as { event: { workflowId: string } }).event.workflowId === 'notified');
    assert.equal(first[0]!.status, 500);
    assert.equal((JSON.parse(first[0]!.body) as { event: { id: string } }).event.id, events[0]!.id);
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'one id per event');
  });

  it('a webhook that refuses or never answers neither holds up nor fails a run', async () => {
    for (const m of ['refuse', 'hang'] as const) {
      mode = m;
      const before = received.length;
      const handle = await start(`notified-${m}`, 0);
      // It deployed and finished with nothing delivered.
      assert.equal((await handle.result()).stage, 'finished');
      assert.deepEqual(delivered(`notified-${m}`), []);
      if (m === 'refuse') assert.equal(received.length - before, 1, 'a 404 is not retried');
    }
    mode = 'ok';
  });
});
