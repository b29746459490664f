/**
 * The `redeploy` queue: signals and updates wait in one queue and run one at a time, in arrival
 * order. A request is checked when it arrives: a malformed one, one that finds the queue full, or
 * one that comes while the run is ending never joins it. A refused update fails for its caller
 * (its validator, so it never reaches the history); a refused signal is recorded in the status,
 * cut, among the newest (status.ts).
 */
import { condition, patched, setDefaultSignalHandler, setHandler, ApplicationFailure } from '@temporalio/workflow';
import { FAILURE } from '../common/failures';
import { clip, describeRequest, MAX_AHEAD_OF_UPDATE, MAX_PENDING_REDEPLOYS, requestBytes } from './bounds';
import { parseRedeployRequest, validateRedeploy, type PipelineParams } from './input';
import { finishSignal, redeploySignal, redeployUpdate, type RedeployRecord, type RedeployRequest } from './messages';
import type { RetrainedWinner } from './retraining';
import type { StatusTracker } from './status';

export interface PendingRedeploy {
  id: number;
  request: RedeployRequest;
  via: RedeployRecord['via'];
  /** A retraining's winner, promoted once it serves (retraining.ts). */
  retrained?: RetrainedWinner;
}

/** What the queue carries into the next run. */
export interface QueueCarry {
  pending: PendingRedeploy[];
  nextId: number;
  /** `finish` came while the run was continuing as new (absent from runs of earlier code). */
  finished?: boolean;
}

/** Registered at the start of a run, so requests sent during training wait their turn. */
export class RedeployQueue {
  readonly pending: PendingRedeploy[];
  readonly outcomes = new Map<number, RedeployRecord>();
  nextId: number;
  finished = false;
  /** Set by the serving loop once the lifetime is over: from then on requests are refused. */
  lifetimeOver = false;
  /** Set by the serving loop while it finishes the queued updates before continuing as new. */
  draining = false;
  /** Bytes of the signals this run received (each stays in its history): the history's size where the server does not say. */
  receivedBytes = 0;
  /**
   * Whether requests are checked on arrival. Runs of earlier code queued every signal unchecked
   * and unbounded, and served on in the loop of serving-legacy.ts: replaying their histories (in
   * test/workflows/histories: serving-deploy-failed-before-bounds, pipeline-redeploy and the other
   * runs recorded before this patch) needs that behaviour.
   */
  readonly checked: boolean;

  constructor(
    private readonly params: PipelineParams,
    private readonly status: StatusTracker,
    carry?: QueueCarry,
  ) {
    this.checked = patched('serving-bounds');
    this.pending = carry?.pending ?? [];
    this.nextId = carry?.nextId ?? 1;
    this.finished = carry?.finished ?? false;
    setHandler(redeploySignal, (request) => this.onSignal(request));
    setHandler(
      redeployUpdate,
      async (request) => {
        const id = this.enqueue(parseRedeployRequest(request, params), 'update');
        await condition(() => this.outcomes.has(id));
        const record = this.outcomes.get(id)!;
        this.outcomes.delete(id);
        if (record.outcome === 'deployed') return record.deployment!;
        throw ApplicationFailure.nonRetryable(`redeploy failed: ${record.reason}`, FAILURE.redeployFailed);
      },
      {
        validator: (request) => {
          const refusal = this.refusal(request, 'update');
          if (refusal) throw new Error(refusal);
        },
      },
    );
    setHandler(finishSignal, () => void (this.finished = true));
    // Signals of other names would wait in memory for a handler that never comes; they are dropped,
    // their size counted like any other's.
    setDefaultSignalHandler((_name, ...args) => void (this.receivedBytes += requestBytes(args)));
  }

  /** No more requests are taken: `finish` came or the lifetime is over; the queued ones still run. */
  get closing(): boolean {
    return this.finished || this.lifetimeOver;
  }

  /** Takes the next request, oldest first. */
  next(): PendingRedeploy | undefined {
    const next = this.pending.shift();
    this.status.queued(this.pending.length);
    return next;
  }

  /**
   * Queues a winner behind the requests already waiting: a retraining's, or (none given) the run's
   * first, approved. The queue's bound does not apply: one winner at a time comes this way.
   */
  enqueueWinner(version: string, retrained?: RetrainedWinner): void {
    this.pending.push({ id: this.nextId++, request: { version }, ...(retrained ? { via: 'retraining', retrained } : { via: 'approval' }) });
    this.status.queued(this.pending.length);
  }

  /** Puts a request whose deploy was handed over back at the head of the queue (beyond its bound: it was taken from it). */
  handBack(request: PendingRedeploy): void {
    this.pending.unshift(request);
    this.status.queued(this.pending.length);
  }

  /**
   * Answers every queued update with `reason`, as failed, and takes it out of the queue: a run
   * that must end now cannot run them, and their callers wait for this run's answer. Signals stay.
   */
  turnAwayUpdates(reason: string): void {
    for (const p of this.pending.filter((q) => q.via === 'update')) {
      this.outcomes.set(p.id, { request: p.request, via: p.via, outcome: 'failed', reason });
    }
    this.pending.splice(0, this.pending.length, ...this.pending.filter((q) => q.via !== 'update'));
    this.status.queued(this.pending.length);
  }

  private onSignal(raw: unknown): void {
    if (!this.checked) {
      this.pending.push({ id: this.nextId++, request: raw as RedeployRequest, via: 'signal' });
      return;
    }
    this.receivedBytes += requestBytes(raw);
    const refusal = this.refusal(raw, 'signal');
    if (refusal) {
      this.status.refused({ request: describeRequest(raw), via: 'signal', reason: clip(refusal), at: new Date().toISOString() });
      return;
    }
    this.enqueue(parseRedeployRequest(raw, this.params), 'signal');
  }

  private enqueue(request: RedeployRequest, via: PendingRedeploy['via']): number {
    const id = this.nextId++;
    this.pending.push({ id, request, via });
    this.status.queued(this.pending.length);
    return id;
  }

  /** Why a request cannot join the queue now, or undefined. */
  private refusal(raw: unknown, via: PendingRedeploy['via']): string | undefined {
    const invalid = validateRedeploy(raw, this.params);
    if (invalid) return invalid;
    if (!this.checked) return undefined;
    if (this.closing) return `refused: the run is ending (${this.finished ? 'finish was sent' : 'its lifetime is over'}); start a new run`;
    if (via === 'update' && this.draining) {
      return 'refused for now: the run is continuing as new (it does every few thousand events); send the request again';
    }
    if (this.pending.length >= MAX_PENDING_REDEPLOYS) {
      return `refused: ${MAX_PENDING_REDEPLOYS} requests already wait their turn (the most the queue holds); send it again once they have run (status: queued)`;
    }
    if (via === 'update' && this.pending.length > MAX_AHEAD_OF_UPDATE) {
      return `refused for now: ${this.pending.length} requests wait their turn, and an update is taken only while at most ${MAX_AHEAD_OF_UPDATE} do; send it again shortly, or send it as a signal (status: queued)`;
    }
    return undefined;
  }
}
