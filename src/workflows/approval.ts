/**
 * A person's approval before a model serves (`approval.required`). A winner that passed the
 * champion/challenger gate, in the run's first training or in a retraining, waits in stage
 * `awaiting-approval` for an `approve` or `reject` update. Nothing is held while it waits: the
 * serving loop serves on (the champion, if any, keeps serving), continues as new with the wait in
 * its carry, and a durable timer lets `approval.onTimeout` decide after `approval.timeoutHours`.
 * The decision is in the history (the update, with who and why) and in the registered version's
 * MLflow tags. Approved, the model joins the redeploy queue and is promoted once it serves.
 */
import { log, setHandler, workflowInfo } from '@temporalio/workflow';
import { clip } from './bounds';
import { registry } from './activities';
import { errorMessage } from './errors';
import type { PipelineParams } from './input';
import { approveUpdate, rejectUpdate, type ApprovalDecision, type ApprovalRequest, type PendingApproval } from './messages';
import type { RetrainedWinner } from './retraining';
import type { StatusTracker } from './status';
import type { Promotion } from './steps';

/** A model that passed the gate: the run's first winner, or a retraining's (`retrained`). */
export interface ApprovalCandidate {
  promotion: Promotion;
  retrained?: RetrainedWinner;
}

/** What travels across continue-as-new: the model that waits, and a decision not yet carried out. */
export interface ApprovalCarry {
  waiting?: ApprovalCandidate & { since: string; decidesAt: number };
  decided?: ApprovalDecision;
}

const MAX_APPROVER = 200;
const MAX_REASON = 1000;

export class Approvals {
  private waiting?: ApprovalCarry['waiting'];
  private decided?: ApprovalDecision;

  constructor(
    private readonly params: PipelineParams,
    private readonly status: StatusTracker,
    private readonly closing: () => boolean,
    carry?: ApprovalCarry,
  ) {
    this.waiting = carry?.waiting;
    this.decided = carry?.decided;
    // The decision is taken here and carried out by the serving loop (conclude): a handler that
    // waited for the loop would hold a continue-as-new, which waits for every handler.
    for (const [update, decision] of [
      [approveUpdate, 'approved'],
      [rejectUpdate, 'rejected'],
    ] as const) {
      setHandler(update, (request) => this.decide(decision, request), { validator: (request) => this.check(request) });
    }
  }

  carry(): ApprovalCarry {
    return { ...(this.waiting ? { waiting: this.waiting } : {}), ...(this.decided ? { decided: this.decided } : {}) };
  }

  /** Whether a winner must be approved before it serves. */
  get required(): boolean {
    return this.params.approval.required;
  }

  /** Whether a model waits (or a decision on it waits to be carried out). */
  get pending(): boolean {
    return this.waiting !== undefined;
  }

  /** Whether the serving loop has a decision to carry out: one was taken, or the wait timed out. */
  get due(): boolean {
    return this.waiting !== undefined && (this.decided !== undefined || Date.now() >= this.waiting.decidesAt);
  }

  /** When `onTimeout` decides (epoch ms), or Infinity. */
  get decidesAt(): number {
    return this.waiting && !this.decided ? this.waiting.decidesAt : Infinity;
  }

  /** The model waits from now: recorded in the status, the Web UI, its MLflow tags, and announced. */
  async request(candidate: ApprovalCandidate): Promise<void> {
    const { promotion } = candidate;
    const policy = this.params.approval;
    const since = new Date().toISOString();
    const decidesAt = Date.now() + policy.timeoutHours * 3600_000;
    this.waiting = { ...candidate, since, decidesAt };
    const pending: PendingApproval = {
      registeredModelName: promotion.registeredModelName,
      version: promotion.version,
      modelClass: promotion.modelClass,
      reason: clip(promotion.reason),
      since,
      decidesAt: new Date(decidesAt).toISOString(),
      onTimeout: policy.onTimeout,
      command:
        `temporal workflow update execute --workflow-id ${workflowInfo().workflowId} --name approve ` +
        `--input '{"version": "${promotion.version}", "approver": "<your name>", "reason": "<why>"}'`,
    };
    this.status.update((s) => void (s.approval = { ...s.approval, pending }));
    this.status.stage('awaiting-approval');
    this.status.announce(
      'awaiting-approval',
      `${promotion.modelClass} v${promotion.version} passed the gate (${clip(promotion.reason)}); approve or reject it: ${pending.command}`,
      promotion.version,
    );
    await this.tag(promotion, {
      approval_status: 'pending',
      approval_requested_at: since,
      approval_workflow_id: workflowInfo().workflowId,
    });
  }

  /**
   * Carries out the decision (or the timeout's): records it in the status and the version's MLflow
   * tags, announces it, then `approved` or `rejected` goes on with the model.
   */
  async conclude(then: {
    approved: (candidate: ApprovalCandidate) => void;
    rejected: (candidate: ApprovalCandidate, decision: ApprovalDecision) => Promise<void>;
  }): Promise<void> {
    const candidate = this.waiting!;
    const decision = this.decided ?? this.timedOut(candidate.promotion.version);
    this.waiting = this.decided = undefined;
    this.status.update((s) => void (s.approval = { last: decision }));
    const { promotion } = candidate;
    this.status.announce(
      decision.decision,
      `${promotion.modelClass} v${promotion.version} ${decision.decision} by ${decision.approver}: ${decision.reason}`,
      promotion.version,
    );
    await this.tag(promotion, {
      approval_status: decision.decision,
      approval_approver: decision.approver,
      approval_reason: decision.reason,
      approval_decided_at: decision.at,
      ...(decision.timedOut ? { approval_timed_out: 'true' } : {}),
    });
    if (decision.decision === 'approved') then.approved(candidate);
    else await then.rejected(candidate, decision);
  }

  /** The run ends with a model waiting: it stays registered, neither approved nor deployed. */
  abandoned(): ApprovalCandidate | undefined {
    const candidate = this.waiting;
    this.waiting = this.decided = undefined;
    if (candidate) this.status.update((s) => void (s.approval = { ...(s.approval?.last ? { last: s.approval.last } : {}) }));
    return candidate;
  }

  private timedOut(version: string): ApprovalDecision {
    const { timeoutHours, onTimeout } = this.params.approval;
    return {
      decision: onTimeout === 'approve' ? 'approved' : 'rejected',
      version,
      approver: 'approval.onTimeout',
      reason: `nobody decided within ${timeoutHours} h (approval.onTimeout is '${onTimeout}')`,
      at: new Date().toISOString(),
      timedOut: true,
    };
  }

  private decide(decision: ApprovalDecision['decision'], request: ApprovalRequest): ApprovalDecision {
    this.decided = {
      decision,
      version: String(request.version),
      approver: request.approver.trim(),
      reason: request.reason.trim(),
      at: new Date().toISOString(),
    };
    return this.decided;
  }

  /** Why a decision cannot be taken: thrown by the validator, so a refused one never reaches the history. */
  private check(raw: unknown): void {
    const shape = 'expected {"version": "<the version that waits>", "approver": "<who decides>", "reason": "<why>"}';
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(shape);
    const { version, approver, reason, ...rest } = raw as Record<string, unknown>;
    const unknown = Object.keys(rest);
    if (unknown.length) throw new Error(`unknown field(s) ${unknown.slice(0, 5).join(', ')}: ${shape}`);
    for (const [field, value, max] of [
      ['approver', approver, MAX_APPROVER],
      ['reason', reason, MAX_REASON],
    ] as const) {
      if (typeof value !== 'string' || value.trim().length === 0) throw new Error(`${field} is required: ${shape}`);
      if (value.length > max) throw new Error(`${field}: at most ${max} characters`);
    }
    if (typeof version !== 'string' && typeof version !== 'number') throw new Error(`version is required: ${shape}`);
    if (!this.waiting) throw new Error('no model awaits approval in this run (status: approval)');
    if (this.closing()) throw new Error("the endpoint's run is ending: nothing it decides would be deployed; start a new run");
    const waits = this.waiting.promotion.version;
    if (String(version) !== waits) throw new Error(`v${waits} awaits approval, not v${String(version)}`);
    if (this.decided) throw new Error(`v${waits} was already ${this.decided.decision} by ${this.decided.approver}`);
  }

  /** Writes the tags; the registry being down beyond the activity's retries does not stop the decision. */
  private async tag(promotion: Promotion, tags: Record<string, string>): Promise<void> {
    try {
      await registry.tagModelVersion.executeWithOptions(
        { summary: `Record the approval (${tags.approval_status}) on ${promotion.registeredModelName} v${promotion.version}` },
        [{ registeredModelName: promotion.registeredModelName, version: promotion.version, tags }],
      );
    } catch (err) {
      log.warn(`could not record the approval in MLflow: ${errorMessage(err)}`);
      this.status.update((s) => void (s.approval = { ...s.approval, tagError: clip(errorMessage(err)) }));
    }
  }
}
