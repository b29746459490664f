/**
 * The run's status, kept in one place: what the `status` query returns, the Web UI's current
 * details and the PipelineStage search attribute are all updated from here.
 */
import { setCurrentDetails, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { SEARCH_ATTRIBUTES } from '../common/constants';
import type { Deployment } from '../common/types';
import { renderDetails } from './details';
import { statusQuery, type ModelProgress, type PipelineStatus, type RedeployRecord, type Stage } from './messages';

export class StatusTracker {
  readonly status: PipelineStatus;

  constructor(carried?: PipelineStatus) {
    this.status = carried ?? { stage: 'preprocessing', models: [], deployments: [], redeploys: [] };
    setHandler(statusQuery, () => this.status);
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

  deployed(deployment: Deployment): void {
    appendBounded(this.status.deployments, deployment);
  }

  redeployed(record: RedeployRecord): void {
    appendBounded(this.status.redeploys, record);
    if (record.deployment) this.deployed(record.deployment);
  }

  private render(): void {
    setCurrentDetails(renderDetails(this.status));
  }
}

/**
 * How many deployments and redeploy records the status keeps (the newest). The status travels in
 * every continue-as-new and query answer: unbounded, a flood of redeploy signals would push it
 * past Temporal's payload limits (2 MB); 25 of each stay far below.
 */
export const STATUS_HISTORY_LIMIT = 25;

/** Appends `item`, dropping the oldest entries beyond `limit`. */
export function appendBounded<T>(list: T[], item: T, limit = STATUS_HISTORY_LIMIT): void {
  list.push(item);
  if (list.length > limit) list.splice(0, list.length - limit);
}
