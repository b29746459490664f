/**
 * Retraining an endpoint's model, with the endpoint's owner (cnnSkinCancerWorkflow) at its centre.
 *
 * - `retrain` (a signal) asks the owner. A Temporal Schedule asks through
 *   scheduledRetrainingWorkflow, which waits for the outcome: overlapping ticks are then skipped by
 *   the schedule's overlap policy (Skip).
 * - The owner runs the retraining as a child workflow (retrainingWorkflow): preprocess, train,
 *   select and the champion/challenger gate, in the child's own history. The child outlives the
 *   owner's run (parent close policy ABANDON), so the owner keeps serving redeploys and continues as
 *   new while it trains; the child answers the owner's workflow id (`retrained`), whichever run of
 *   it is current.
 * - A winner that passed the gate joins the redeploy queue; once it serves it is promoted. Whoever
 *   asked with `replyTo` is told the outcome (`retraining-finished`).
 */
import {
  ApplicationFailure,
  condition,
  getExternalWorkflowHandle,
  log,
  ParentClosePolicy,
  patched,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { FAILURE } from '../common/failures';
import { clip, describeRequest } from './bounds';
import { errorMessage } from './errors';
import type { PipelineInput, PipelineParams } from './input';
import type { PreparedDataset } from '../common/types';
import type { ApprovalCandidate, Approvals } from './approval';
import { dataWatch, schedules } from './activities';
import {
  retrainedSignal,
  retrainingFinishedSignal,
  retrainSignal,
  type ApprovalDecision,
  type RedeployRecord,
  type RetrainingInProgress,
  type RetrainingOutcome,
  type RetrainingResult,
  type RetrainRequest,
  type ScheduleInfo,
} from './messages';
import { StatusTracker } from './status';
import { parseInput, preprocess, promote, promotionOf, select, trainAll, winnerToServe, type Promotion } from './steps';

/** How long a scheduled retraining waits for its outcome: trainings of tens of thousands of images take hours. */
const OUTCOME_WAIT = '48h';

/** A retraining whose child has not answered in this long is taken as lost (terminated), and a new one may start. */
const LOST_AFTER_MS = 72 * 3600 * 1000;

/** The retraining itself, as a child of the endpoint's owner: everything up to the gate, nothing deployed. */
export async function retrainingWorkflow(request: {
  input: PipelineInput;
  owner: string;
  id: number;
  reason: string;
}): Promise<RetrainingResult> {
  const { params } = parseInput(request.input);
  const status = new StatusTracker();
  let result: RetrainingResult;
  try {
    const dataset = await preprocess(params, status);
    const trained = await trainAll(params, dataset, status);
    const selection = await select(params, dataset, trained, status);
    const images = datasetImages(dataset);
    result =
      selection.gate.outcome === 'promote'
        ? {
            id: request.id,
            winner: { ref: winnerToServe(selection).ref, promotion: promotionOf(selection) },
            reason: selection.gate.reason,
            images,
            dataset,
          }
        : { id: request.id, reason: `the champion stays: ${selection.gate.reason}`, images };
    status.stage('finished');
  } catch (err) {
    await tellOwner(request.owner, { id: request.id, reason: clip(`the retraining failed: ${errorMessage(err)}`), failed: true });
    throw err;
  }
  await tellOwner(request.owner, result);
  return result;
}

/** The schedule that started this run, and when it ticks next; undefined when started otherwise, or when that cannot be read. */
async function thisSchedule(): Promise<ScheduleInfo | undefined> {
  const id = workflowInfo().typedSearchAttributes.get(SCHEDULED_BY_ID);
  if (!id) return undefined;
  try {
    const nextTickAt = await schedules.nextScheduledTime.executeWithOptions({ summary: `When schedule ${id} ticks next` }, [
      { scheduleId: id },
    ]);
    return { id, ...(nextTickAt ? { nextTickAt } : {}) };
  } catch (err) {
    log.warn(`could not read schedule ${id}: ${errorMessage(err)}`);
    return { id };
  }
}

/** Set by the server on every run a schedule starts. */
const SCHEDULED_BY_ID = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);

async function tellOwner(owner: string, result: RetrainingResult): Promise<void> {
  try {
    await getExternalWorkflowHandle(owner).signal(retrainedSignal, result);
  } catch (err) {
    // The owner's run has ended: its endpoint has no owner to deploy to.
    log.warn(`could not tell ${owner} how retraining ${result.id} ended: ${errorMessage(err)}`);
  }
}

/**
 * What a Temporal Schedule starts: asks the endpoint's owner to retrain and waits for the outcome,
 * so that the schedule skips ticks while a retraining runs. Fails when the retraining failed.
 */
export async function scheduledRetrainingWorkflow(input: { endpointWorkflowId: string; reason?: string }): Promise<RetrainingOutcome> {
  const owner = input?.endpointWorkflowId;
  if (typeof owner !== 'string' || owner.length === 0 || owner.length > 255) {
    throw ApplicationFailure.nonRetryable(
      `expected {"endpointWorkflowId": "<the workflow id of the endpoint's run>"}, got ${describeRequest(input)}`,
      FAILURE.invalidInput,
    );
  }
  let outcome: RetrainingOutcome | undefined;
  setHandler(retrainingFinishedSignal, (o) => void (outcome = o));
  const me = workflowInfo().workflowId;
  // Ticks of earlier code did not tell the owner about their schedule.
  const schedule = patched('schedule-next-tick') ? await thisSchedule() : undefined;
  try {
    await getExternalWorkflowHandle(owner).signal(retrainSignal, {
      reason: input.reason ?? `scheduled (${me})`,
      replyTo: me,
      ...(schedule ? { schedule } : {}),
    });
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `could not ask workflow ${owner} to retrain (${errorMessage(err)}); is the endpoint's run running under that id?`,
      FAILURE.invalidInput,
    );
  }
  if (!(await condition(() => outcome !== undefined, OUTCOME_WAIT))) {
    throw ApplicationFailure.nonRetryable(`workflow ${owner} gave no outcome within ${OUTCOME_WAIT}`, FAILURE.retrainingFailed);
  }
  if (outcome!.outcome === 'failed') throw ApplicationFailure.nonRetryable(outcome!.reason, FAILURE.retrainingFailed);
  return outcome!;
}

/** The owner's retraining state, carried across continue-as-new. */
export interface RetrainingCarry {
  nextId: number;
  requested?: RetrainRequest & { reason: string };
  running?: RetrainingInProgress;
  results: RetrainingResult[];
  /** The images the last training read (retrainOnNewImages counts from there). */
  imagesAtLastTraining?: number;
  /** When the images under dataUri are counted next (epoch ms). */
  nextDataCheck?: number;
}

/** Every file under train/ and test/ that a preprocessing read, skipped ones included: what countDatasetImages counts. */
export const datasetImages = (d: PreparedDataset): number =>
  d.splits.train.count + d.splits.validation.count + d.splits.test.count + d.skipped.count;

/** What a retraining's winner carries through the redeploy queue until it serves. */
export interface RetrainedWinner {
  promotion: Promotion;
  /** The data it trained on (absent in answers of earlier code). */
  dataset?: PreparedDataset;
  childWorkflowId: string;
  replyTo?: string;
}

/** The owner's side: takes `retrain` requests and the children's answers; one retraining at a time. */
export class Retrainings {
  nextId: number;
  requested?: RetrainingCarry['requested'];
  running?: RetrainingInProgress;
  readonly results: RetrainingResult[];
  imagesAtLastTraining?: number;
  nextDataCheck?: number;

  constructor(
    private readonly status: StatusTracker,
    private readonly closing: () => boolean,
    carry?: RetrainingCarry,
    private readonly approvals?: Pick<Approvals, 'pending' | 'required'>,
  ) {
    this.nextId = carry?.nextId ?? 1;
    this.requested = carry?.requested;
    this.running = carry?.running;
    this.results = carry?.results ?? [];
    this.imagesAtLastTraining = carry?.imagesAtLastTraining;
    this.nextDataCheck = carry?.nextDataCheck;
    setHandler(retrainSignal, (raw) => this.onRequest(raw));
    setHandler(retrainedSignal, (result) => void this.results.push(result));
  }

  /** Whether the serving loop has something to do here. */
  get due(): boolean {
    return this.requested !== undefined || this.results.length > 0;
  }

  carry(): RetrainingCarry {
    // Fields left undefined do not travel: the carry is JSON.
    const { nextId, results, requested, running, imagesAtLastTraining, nextDataCheck } = this;
    return { nextId, results, requested, running, imagesAtLastTraining, nextDataCheck };
  }

  /**
   * When the images under dataUri are to be counted next (epoch ms): never while a retraining is
   * under way or its winner awaits approval, or with retrainOnNewImages 0.
   */
  nextDataCheckAt(params: PipelineParams): number {
    const idle = !this.requested && !this.running && !this.approvals?.pending;
    return params.retrainOnNewImages > 0 && idle ? (this.nextDataCheck ?? 0) : Infinity;
  }

  /**
   * Counts the images under dataUri and asks for a retraining once retrainOnNewImages of them came
   * since the last training. A listing that fails is recorded, and tried again at the next check.
   */
  async checkForNewImages(params: PipelineParams, dataset: PreparedDataset | undefined): Promise<void> {
    this.nextDataCheck = Date.now() + params.newImagesCheckSeconds * 1000;
    const checkedAt = new Date().toISOString();
    let counted: number;
    try {
      counted = await dataWatch.countDatasetImages.executeWithOptions({ summary: `Count the images under ${params.dataUri}` }, [
        { dataUri: params.dataUri, numClasses: params.numClasses },
      ]);
    } catch (err) {
      this.status.update((s) => void (s.newImages = { error: clip(`the count failed: ${errorMessage(err)}`), checkedAt }));
      return;
    }
    // The first run's dataset, until a retraining reads another.
    const baseline = (this.imagesAtLastTraining ??= dataset ? datasetImages(dataset) : counted);
    const sinceLastTraining = counted - baseline;
    this.status.update((s) => void (s.newImages = { counted, sinceLastTraining, checkedAt }));
    if (sinceLastTraining >= params.retrainOnNewImages) {
      this.requested = {
        reason: `${sinceLastTraining} new images under ${params.dataUri} (retrainOnNewImages ${params.retrainOnNewImages})`,
      };
    }
  }

  /** Starts the requested retraining as a child workflow on the owner's input (its registered model, its data). */
  async start(input: PipelineInput): Promise<void> {
    const { reason, replyTo } = this.requested!;
    this.requested = undefined;
    // Asked for before a model came to wait (during the first training): one winner waits at a time.
    if (this.approvals?.pending) return this.reply(replyTo, skipped(AWAITS_APPROVAL));
    const id = this.nextId++;
    const owner = workflowInfo().workflowId;
    const childWorkflowId = `${owner}-retraining-${id}`;
    try {
      await startChild(retrainingWorkflow, {
        workflowId: childWorkflowId,
        args: [{ input, owner, id, reason }],
        parentClosePolicy: ParentClosePolicy.ABANDON,
      });
    } catch (err) {
      await this.finish(
        { outcome: 'failed', reason: `could not start ${childWorkflowId}: ${errorMessage(err)}`, childWorkflowId },
        replyTo,
      );
      return;
    }
    this.running = { id, childWorkflowId, reason, ...(replyTo ? { replyTo } : {}), startedAt: new Date().toISOString() };
    this.status.update((s) => void (s.retraining = this.running));
  }

  /**
   * Takes the child's answer: a winner goes on (`passed`: to the redeploy queue, where it is
   * promoted once it serves, or to wait for approval), otherwise the retraining is over.
   */
  async conclude(result: RetrainingResult, passed: (winner: RetrainedWinner) => Promise<void>): Promise<void> {
    const running = this.running;
    // An answer from a retraining given up as lost: its winner stays registered, undeployed.
    if (running?.id !== result.id) return;
    this.running = undefined;
    this.status.update((s) => delete s.retraining);
    if (result.images !== undefined) this.imagesAtLastTraining = result.images;
    const { childWorkflowId, replyTo } = running;
    if (result.winner) {
      const { promotion } = result.winner;
      // A winner that waits for approval: whoever asked hears now (a schedule's tick must not wait
      // days for a person, nor skip its next ticks meanwhile); the retraining's end is announced when it comes.
      const waits = this.approvals?.required === true;
      const dataset = result.dataset ? { dataset: result.dataset } : {};
      await passed({ promotion, childWorkflowId, ...dataset, ...(replyTo && !waits ? { replyTo } : {}) });
      if (!waits) return;
      const reason = `v${promotion.version} passed the gate and awaits approval (${promotion.reason})`;
      await this.reply(replyTo, {
        outcome: 'awaiting-approval',
        reason: clip(reason),
        version: promotion.version,
        childWorkflowId,
        finishedAt: now(),
      });
      return;
    }
    await this.finish({ outcome: result.failed ? 'failed' : 'kept', reason: result.reason, childWorkflowId }, replyTo);
  }

  /** The winner's deploy ran: promoted once it serves, and the retraining is over either way. */
  async deployed(winner: RetrainedWinner, record: RedeployRecord): Promise<void> {
    const { childWorkflowId, replyTo } = winner;
    if (!record.deployment) {
      await this.finish({ outcome: 'failed', reason: `the winner's deploy failed: ${record.reason}`, childWorkflowId }, replyTo);
      return;
    }
    // Drift is measured against the data of the model that serves.
    if (winner.dataset) this.status.update((s) => void (s.dataset = winner.dataset));
    await promote(winner.promotion, this.status);
    const version = record.deployment.version;
    await this.finish({ outcome: 'deployed', reason: winner.promotion.reason, version, childWorkflowId }, replyTo);
  }

  /** Asks for a retraining for `reason` (drift), unless the run is ending, one is under way or a model awaits approval: then says why not. */
  ask(reason: string): string | undefined {
    if (this.closing()) return "not retrained: the endpoint's run is ending";
    if (this.approvals?.pending) return `not retrained: ${AWAITS_APPROVAL}`;
    if (this.requested || this.running)
      return `not retrained: a retraining is under way (${this.running?.childWorkflowId ?? 'about to start'})`;
    this.requested = { reason };
    return undefined;
  }

  /** The winner was rejected (or its approval timed out): the champion stays, and the retraining is over. */
  async rejected(winner: RetrainedWinner, decision: ApprovalDecision): Promise<void> {
    const reason = `v${decision.version} rejected by ${decision.approver}: ${decision.reason}`;
    await this.finish({ outcome: 'rejected', reason, version: decision.version, childWorkflowId: winner.childWorkflowId }, winner.replyTo);
  }

  /**
   * The run ends: a request not yet started, and whoever waits for one in progress, are told; a
   * winner that awaited approval (`waiting`) stays registered, undeployed.
   */
  async abandon(waiting?: ApprovalCandidate): Promise<void> {
    if (waiting?.retrained) {
      const reason = `the endpoint's run ended while v${waiting.promotion.version} awaited approval`;
      await this.finish(
        { outcome: 'skipped', reason, version: waiting.promotion.version, childWorkflowId: waiting.retrained.childWorkflowId },
        undefined,
      );
    }
    if (this.requested) await this.reply(this.requested.replyTo, skipped("the endpoint's run ended before it started"));
    this.requested = undefined;
    if (this.running?.replyTo)
      await this.reply(this.running.replyTo, skipped(`the endpoint's run ended while ${this.running.childWorkflowId} trained`));
  }

  private async finish(outcome: Omit<RetrainingOutcome, 'finishedAt'>, replyTo: string | undefined): Promise<void> {
    const done = { ...outcome, reason: clip(outcome.reason), finishedAt: new Date().toISOString() };
    this.status.retrainingFinished(done);
    await this.reply(replyTo, done);
  }

  private onRequest(raw: unknown): Promise<void> | void {
    const request = parseRetrainRequest(raw);
    if (typeof request === 'string') {
      this.status.refused({ request: describeRequest(raw), via: 'signal', reason: clip(request), at: new Date().toISOString() });
      return;
    }
    if (request.schedule) this.status.update((s) => void (s.schedule = request.schedule));
    if (this.closing()) return this.reply(request.replyTo, skipped("the endpoint's run is ending"));
    const lost = this.running && Date.now() - Date.parse(this.running.startedAt) > LOST_AFTER_MS;
    if (this.approvals?.pending) return this.reply(request.replyTo, skipped(AWAITS_APPROVAL));
    if (this.requested || (this.running && !lost)) {
      const busy = this.running ? `${this.running.childWorkflowId} is still training` : 'another request waits to start';
      return this.reply(request.replyTo, skipped(`a retraining is under way (${busy})`));
    }
    if (lost) {
      log.warn(`${this.running!.childWorkflowId} never answered in ${LOST_AFTER_MS / 3600_000} h: taken as lost`);
      this.running = undefined;
    }
    this.requested = { reason: request.reason ?? 'requested', ...(request.replyTo ? { replyTo: request.replyTo } : {}) };
  }

  private async reply(replyTo: string | undefined, outcome: RetrainingOutcome): Promise<void> {
    if (!replyTo) return;
    try {
      await getExternalWorkflowHandle(replyTo).signal(retrainingFinishedSignal, outcome);
    } catch (err) {
      log.warn(`could not tell ${replyTo} how its retraining ended: ${errorMessage(err)}`);
    }
  }
}

const AWAITS_APPROVAL = 'a model awaits approval: approve or reject it first (status: approval)';
const now = (): string => new Date().toISOString();
const skipped = (reason: string): RetrainingOutcome => ({ outcome: 'skipped', reason, finishedAt: now() });

/** A `retrain` request, checked, or why it is refused. */
function parseRetrainRequest(raw: unknown): RetrainRequest | string {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) return 'expected an object like {"reason": "new labelled images"}';
  const { reason, replyTo, schedule, ...rest } = raw as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length)
    return `unknown field(s) ${unknown.slice(0, 5).join(', ')}: a retrain request takes "reason", "replyTo" and "schedule"`;
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > 200))
    return 'reason: expected a string of at most 200 characters';
  if (replyTo !== undefined && (typeof replyTo !== 'string' || replyTo.length === 0 || replyTo.length > 255))
    return 'replyTo: expected a workflow id';
  const s = schedule as ScheduleInfo | undefined;
  if (
    s !== undefined &&
    (typeof s !== 'object' ||
      s === null ||
      typeof s.id !== 'string' ||
      s.id.length > 255 ||
      (s.nextTickAt !== undefined && (typeof s.nextTickAt !== 'string' || !Number.isFinite(Date.parse(s.nextTickAt)))))
  )
    return 'schedule: expected {"id": "<schedule id>", "nextTickAt": "<ISO time>"}';
  return {
    ...(reason !== undefined ? { reason } : {}),
    ...(replyTo !== undefined ? { replyTo } : {}),
    ...(s !== undefined ? { schedule: { id: s.id, ...(s.nextTickAt ? { nextTickAt: s.nextTickAt } : {}) } } : {}),
  };
}
