/**
 * A run's events, posted by the sendNotification activity (src/activities/notify.ts) to the
 * webhook the ml-pipeline worker is configured with. Sent in the background: a receiver that is
 * down or slow never holds up or fails the run; its attempts are retried, and a run about to end
 * (or continue as new) gives those still in flight a short while to finish.
 */
import { condition, log, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createNotifyActivities } from '../activities/notify';
import { TASK_QUEUES } from '../common/constants';
import { FAILURE } from '../common/failures';
import type { PipelineEvent } from '../common/types';
import { errorMessage } from './errors';
import type { PipelineParams } from './input';

// About 20 minutes of attempts: a receiver back within that gets every event.
const notifications = proxyActivities<ReturnType<typeof createNotifyActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '30s',
  retry: {
    maximumAttempts: 10,
    initialInterval: '5s',
    backoffCoefficient: 2,
    maximumInterval: '5m',
    nonRetryableErrorTypes: [FAILURE.notificationRefused],
  },
});

/** How long a run that ends waits for notifications still being delivered. */
const SETTLE = '10s';

/** How the last notification went: delivered (the receiver's answer), or why not. */
export interface NotificationOutcome {
  kind: PipelineEvent['kind'];
  outcome: string;
  at: string;
}

export class Notifier {
  private inFlight = 0;
  /** Told how each notification went (the status shows the last). */
  onOutcome: (outcome: NotificationOutcome) => void = () => undefined;
  // Runs started before notifications announced nothing: their histories hold no such activity.
  private readonly enabled = patched('notifications');

  constructor(private readonly params: Pick<PipelineParams, 'endpointName' | 'registeredModelName'>) {}

  send(kind: PipelineEvent['kind'], detail: string, version?: string): void {
    if (!this.enabled) return;
    const event: PipelineEvent = {
      kind,
      workflowId: workflowInfo().workflowId,
      endpointName: this.params.endpointName,
      registeredModelName: this.params.registeredModelName,
      ...(version ? { version } : {}),
      detail,
      at: new Date().toISOString(),
    };
    this.inFlight++;
    notifications.sendNotification
      .executeWithOptions({ summary: `Notify: ${kind}${version ? ` v${version}` : ''} on ${this.params.endpointName}` }, [event])
      .then((outcome) => this.onOutcome({ kind, outcome, at: new Date().toISOString() }))
      .catch((err) => {
        log.warn(`notification ${kind} not delivered: ${errorMessage(err)}`);
        this.onOutcome({ kind, outcome: `not delivered: ${errorMessage(err)}`, at: new Date().toISOString() });
      })
      .finally(() => this.inFlight--);
  }

  /** Gives the notifications still in flight a short while before the run ends; the rest are dropped. */
  async settle(): Promise<void> {
    if (this.inFlight > 0) await condition(() => this.inFlight === 0, SETTLE);
  }
}
