/**
 * Notifications (queue ml-pipeline): a run's events posted to a webhook as Slack-compatible JSON
 * (`text`, with the event itself beside it), signed with an HMAC-SHA256 of the body
 * (`X-Pipeline-Signature: sha256=<hex>`, key NOTIFY_WEBHOOK_SECRET). The body carries the event's
 * `id`, the same for every attempt: a receiver that saw it already can drop a repeat.
 */
import { createHmac } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../common/failures';
import type { PipelineEvent } from '../common/types';
import { activityIdentity } from './attempts';

/** One attempt's limit; the retry policy (src/workflows/notifications.ts) spaces the next ones out. */
const ATTEMPT_TIMEOUT_MS = 10_000;

export const SIGNATURE_HEADER = 'x-pipeline-signature';

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export function createNotifyActivities({ webhookUrl, secret }: { webhookUrl?: string; secret?: string }) {
  return {
    /** Posts one event; says where it went, or that no webhook is configured. */
    async sendNotification(event: PipelineEvent): Promise<string> {
      if (!webhookUrl || !secret) return 'no webhook configured (NOTIFY_WEBHOOK_URL)';
      const id = activityIdentity(Context.current().info);
      const body = JSON.stringify({ text: textOf(event), event: { id, ...event } });
      const res = await fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signature(secret, body) },
        body,
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      const answer = (await res.text()).slice(0, 200);
      if (res.ok) return `delivered (HTTP ${res.status})`;
      const what = `the webhook answered HTTP ${res.status} to ${event.kind}: ${answer}`;
      // A refusal that no retry changes: the URL or the secret is wrong.
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        throw ApplicationFailure.nonRetryable(`${what}; check NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET`, FAILURE.notificationRefused);
      }
      throw new Error(what);
    },
  };
}

/** The line a chat shows. */
function textOf(e: PipelineEvent): string {
  const model = e.version ? ` ${e.registeredModelName ?? 'model'} v${e.version}` : '';
  return `[${e.endpointName}] ${e.kind}${model}: ${e.detail}`;
}
