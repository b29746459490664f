/**
 * The run's status, kept in one place: what the `status` query returns, the Web UI's current
 * details and the PipelineStage search attribute are all updated from here. It travels in every
 * continue-as-new and query answer, so every list in it keeps only its newest entries and every
 * message is cut (bounds.ts): unbounded, a flood of redeploy signals would push it past Temporal's
 * payload limits (2 MB).
 */
import { setCurrentDetails, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { SEARCH_ATTRIBUTES } from '../common/constants';
import type { Deployment, EndpointHealth } from '../common/types';
import { clip, describeRequest, STATUS_HISTORY_LIMIT } from './bounds';
import { renderDetails } from './details';
import {
  statusQuery,
  type ModelProgress,
  type PipelineStatus,
  type RedeployRecord,
  type RefusedRequest,
  type RetrainingOutcome,
  type Stage,
} from './messages';
import type { Notifier } from './notifications';

export { STATUS_HISTORY_LIMIT } from './bounds';

export class StatusTracker {
  readonly status: PipelineStatus;

  /** `notifier` announces deployments, failed deploys, rollbacks and retrainings (none in a retraining child). */
  constructor(
    carried?: PipelineStatus,
    private readonly notifier?: Notifier,
  ) {
    this.status = carried ? boundedStatus(carried) : { stage: 'preprocessing', models: [], deployments: [], redeploys: [] };
    setHandler(statusQuery, () => this.status);
    if (notifier) notifier.onOutcome = (o) => this.update((s) => void (s.lastNotification = { ...o, outcome: clip(o.outcome) }));
  }

  /** Names the input keys that were accepted without effect (none: nothing is recorded). */
  ignoredInput(keys: readonly string[]): void {
    if (keys.length) this.status.ignoredInput = [...keys];
  }

  stage(stage: Stage): void {
    this.status.stage = stage;
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.stage, value: stage }]);
    this.render();
  }

  /** Applies `change` to the status and shows the result in the Web UI. */
  update(change: (status: PipelineStatus) => void): void {
    change(this.status);
    this.render();
  }

  model(index: number, progress: ModelProgress): void {
    this.update((s) => void (s.models[index] = progress));
  }

  /** A deployment serves; it is announced as `kind`, with `asked` (the request it came from) before where it serves. */
  deployed(deployment: Deployment, kind: 'deployed' | 'rolled-back' = 'deployed', asked?: string): void {
    appendBounded(this.status.deployments, deployment);
    this.notifier?.send(kind, `${asked ? `${asked}: ` : ''}serves at ${deployment.url}`, deployment.version);
  }

  /** Announces an event that leaves nothing else in the status (approvals, drift). */
  announce(kind: 'awaiting-approval' | 'approved' | 'rejected' | 'drift', detail: string, version?: string): void {
    this.notifier?.send(kind, clip(detail), version);
  }

  /** Gives notifications still being delivered a short while: the run is about to end or continue as new. */
  async settleNotifications(): Promise<void> {
    await this.notifier?.settle();
  }

  /** The first deployment failed: the run waits in deploy-failed. */
  deployFailed(message: string, version: string): void {
    this.update((s) => void (s.deployError = clip(message)));
    this.notifier?.send('deploy-failed', clip(message), version);
  }

  retrainingFinished(outcome: RetrainingOutcome): void {
    this.update((s) => void (s.lastRetraining = outcome));
    this.notifier?.send('retraining-finished', `${outcome.outcome}: ${outcome.reason}`, outcome.version);
  }

  /** A request that was run; a malformed one (queued by earlier code) counts as refused. */
  redeployed(record: RedeployRecord): void {
    if (record.outcome === 'rejected') {
      this.refused({ request: describeRequest(record.request), via: record.via, reason: clip(record.reason ?? ''), at: now() });
      return;
    }
    appendBounded(this.status.redeploys, record.reason === undefined ? record : { ...record, reason: clip(record.reason) });
    const asked = `${JSON.stringify(record.request)} by ${record.via}`;
    if (record.deployment) {
      this.deployed(record.deployment, record.request.alias === 'previous-champion' ? 'rolled-back' : 'deployed', asked);
    } else {
      // A SageMaker update that its alarms rolled back leaves the endpoint on its old config.
      const kind = /rolled back/.test(record.reason ?? '') ? 'rolled-back' : 'deploy-failed';
      this.notifier?.send(kind, clip(`${asked}: ${record.reason}`), record.request.version);
    }
  }

  /** A request refused on arrival: kept in its cut form among the newest, and counted. */
  refused(refusal: RefusedRequest): void {
    appendBounded((this.status.refused ??= []), refusal);
    this.status.refusedCount = (this.status.refusedCount ?? 0) + 1;
    this.render();
  }

  /** How many requests wait their turn. */
  queued(count: number): void {
    this.status.queued = count;
  }

  endpoint(health: EndpointHealth): void {
    this.update((s) => void (s.endpoint = { ...health, detail: clip(health.detail) }));
  }

  private render(): void {
    setCurrentDetails(renderDetails(this.status));
  }
}

const now = (): string => new Date().toISOString();

/** Appends `item`, dropping the oldest entries beyond `limit`. */
export function appendBounded<T>(list: T[], item: T, limit = STATUS_HISTORY_LIMIT): void {
  list.push(item);
  if (list.length > limit) list.splice(0, list.length - limit);
}

/**
 * A status carried from an earlier run, within today's bounds: runs of earlier code kept malformed
 * requests whole among the redeploy records, and messages uncut.
 */
export function boundedStatus(carried: PipelineStatus): PipelineStatus {
  const status: PipelineStatus = { ...carried, redeploys: [], deployments: carried.deployments.slice(-STATUS_HISTORY_LIMIT) };
  const refused = carried.refused?.slice(-STATUS_HISTORY_LIMIT) ?? [];
  let refusedCount = carried.refusedCount ?? refused.length;
  for (const record of carried.redeploys) {
    if (record.outcome === 'rejected') {
      appendBounded(refused, { request: describeRequest(record.request), via: record.via, reason: clip(record.reason ?? '') });
      refusedCount++;
    } else appendBounded(status.redeploys, record.reason === undefined ? record : { ...record, reason: clip(record.reason) });
  }
  if (refused.length) [status.refused, status.refusedCount] = [refused, refusedCount];
  if (status.deployError !== undefined) status.deployError = clip(status.deployError);
  if (status.endpoint) status.endpoint = { ...status.endpoint, detail: clip(status.endpoint.detail) };
  return status;
}
