/** Signals, queries and updates of the pipeline workflow, shared with clients. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { PROMOTE_UPDATE } from '../common/constants';
import type {
  Deployment,
  EndpointHealth,
  ModelVersionRef,
  PreparedDataset,
  PromotionOutcome,
  PromotionRequest,
  TrainedModel,
} from '../common/types';
import type { DriftFigures } from '../monitoring/drift';
import type { Promotion } from './steps';
import type { ChampionDecision, SelectionDecision } from './selection';

export type Stage =
  | 'preprocessing'
  | 'training'
  | 'selecting'
  | 'promoting'
  | 'deploying'
  /** The first deployment failed: the run stays alive as the endpoint's owner; a redeploy retries it. */
  | 'deploy-failed'
  | 'serving'
  /** A model that passed the gate waits for `approve` or `reject` (approval.ts); the champion, if any, serves meanwhile. */
  | 'awaiting-approval'
  | 'redeploying'
  | 'finished'
  | 'failed';

export interface ModelProgress {
  modelClass: string;
  state: 'training' | 'trained' | 'failed';
  validation?: TrainedModel['metrics']['validation'];
  version?: string;
  error?: string;
}

/**
 * What to serve next: a registered version or an alias (`champion`, `previous-champion` rolls
 * back), and/or new SageMaker sizing. Sizing alone re-deploys the version being served.
 */
export interface RedeployRequest {
  version?: string;
  alias?: string;
  instanceType?: string;
  instanceCount?: number;
}

export interface RedeployRecord {
  request: RedeployRequest;
  /**
   * `retraining`: the winner of a retraining that passed the gate (retraining.ts); `approval`: the
   * run's first winner, once approved (approval.ts).
   */
  via: 'signal' | 'update' | 'retraining' | 'approval';
  /** `rejected`: malformed, from runs that queued requests before checking them (now refused on arrival). */
  outcome: 'deployed' | 'rejected' | 'failed';
  reason?: string;
  deployment?: Deployment;
}

/** A `redeploy` signal refused on arrival (malformed, the queue full, or the run ending); never queued. */
export interface RefusedRequest {
  /** The request's JSON text, cut to 200 characters. */
  request: string;
  via: RedeployRecord['via'];
  reason: string;
  /** When it arrived (workflow time; absent for those recorded by earlier code). */
  at?: string;
}

export interface PipelineStatus {
  stage: Stage;
  dataset?: PreparedDataset;
  models: ModelProgress[];
  selection?: Omit<SelectionDecision, 'winner'> & { winner: string; version: string; champion?: ChampionDecision };
  /** Every deployment this workflow made, oldest first; the last one is serving. */
  deployments: Deployment[];
  /** Why the first deployment failed, while the run is in stage `deploy-failed`. */
  deployError?: string;
  /** Requests that were run, with their outcome (the newest 25). */
  redeploys: RedeployRecord[];
  /** Signals refused on arrival (the newest 25), and how many were refused in all; updates are refused to their caller. */
  refused?: RefusedRequest[];
  refusedCount?: number;
  /** Requests waiting their turn (at most 20). */
  queued?: number;
  /** The retraining in progress, in its child workflow (retraining.ts). */
  retraining?: RetrainingInProgress;
  /** How the last retraining ended. */
  lastRetraining?: RetrainingOutcome;
  /** The retraining schedule that last ticked, and when it ticks next. */
  schedule?: ScheduleInfo;
  /** What the last count of the images under `dataUri` found (while retrainOnNewImages is set). */
  newImages?: { counted?: number; sinceLastTraining?: number; error?: string; checkedAt: string };
  /**
   * Redeploys interrupted because the run's history had grown too long while they ran (a flood of
   * requests) and handed to the next run, which ran them first.
   */
  redeploysHandedOver?: number;
  /** The model waiting for a decision, and the last decision (approval.ts). */
  approval?: {
    pending?: PendingApproval;
    last?: ApprovalDecision;
    /** Why the last MLflow tags of an approval could not be written. */ tagError?: string;
  };
  /** How the last notification went (notifications.ts). */
  lastNotification?: { kind: string; outcome: string; at: string };
  /** What the last drift check found (every driftCheckHours; drift.ts). */
  drift?: DriftStatus;
  /** What the last endpoint check found (every endpointCheckSeconds while serving). */
  endpoint?: EndpointHealth;
  /** Input keys accepted without effect here, such as the Airflow DAG's `model_params.verbose`; only when there are some. */
  ignoredInput?: string[];
}

export interface DriftStatus {
  /**
   * `steady` or `drifted` (the PSI against driftThreshold); `too-few-images` (fewer than 100 seen:
   * the window grows until the next check); `unavailable` (no sample, or nothing served); `failed`.
   */
  outcome: 'steady' | 'drifted' | 'too-few-images' | 'unavailable' | 'failed';
  figures?: DriftFigures;
  threshold: number;
  /** The window of predictions compared (ISO times). */
  from: string;
  until: string;
  detail?: string;
  /** What drift did with retrainOnDrift: asked for a retraining, or why not. */
  retraining?: string;
  checkedAt: string;
}

export const statusQuery = defineQuery<PipelineStatus>('status');
export const redeploySignal = defineSignal<[RedeployRequest]>('redeploy');
/** The same request as the signal, for callers who want the resulting deployment (or the reason it failed). */
export const redeployUpdate = defineUpdate<Deployment, [RedeployRequest]>('redeploy');
export const finishSignal = defineSignal('finish');

/** Asks a registered model's owner workflow (registered-model.ts) to promote a version; answered once it is done, in its turn. */
export const promoteUpdate = defineUpdate<PromotionOutcome, [PromotionRequest]>(PROMOTE_UPDATE);

/** Asks the endpoint's owner to retrain (signal `retrain`): a schedule's tick, or anyone with a reason. */
export interface RetrainRequest {
  /** Why, in a few words (shown in the status and the MLflow runs); default: who asked. */
  reason?: string;
  /** The workflow waiting for the outcome (a scheduled retraining): told with `retraining-finished`. */
  replyTo?: string;
  /** The schedule that ticked, and when it ticks next (set by scheduledRetrainingWorkflow). */
  schedule?: ScheduleInfo;
}

export interface ScheduleInfo {
  id: string;
  /** ISO time; absent while the schedule is paused or has no next tick. */
  nextTickAt?: string;
}

export interface RetrainingInProgress {
  id: number;
  childWorkflowId: string;
  reason: string;
  replyTo?: string;
  startedAt: string;
}

/** What became of a retraining request. */
export interface RetrainingOutcome {
  /**
   * `deployed`: the winner passed the gate, serves and is champion; `kept`: the champion stays (the
   * gate's reason); `failed`: training or the deploy failed; `skipped`: another retraining was
   * running, or the run was ending; `rejected`: the winner was rejected (or its approval timed
   * out), and the champion stays; `awaiting-approval`: the winner waits for a decision (told to
   * whoever asked; the retraining's end is announced when it comes).
   */
  outcome: 'deployed' | 'kept' | 'failed' | 'skipped' | 'rejected' | 'awaiting-approval';
  reason: string;
  version?: string;
  childWorkflowId?: string;
  finishedAt: string;
}

export const retrainSignal = defineSignal<[RetrainRequest]>('retrain');
/** The retraining child's answer to its owner (retraining.ts). */
export const retrainedSignal = defineSignal<[RetrainingResult]>('retrained');
/** The owner's answer to whoever asked with `replyTo`. */
export const retrainingFinishedSignal = defineSignal<[RetrainingOutcome]>('retraining-finished');

/** What a retraining child found: a winner to serve (it passed the gate), or why the champion stays. */
export interface RetrainingResult {
  id: number;
  /** The winner and its promotion, when it passed the champion/challenger gate. */
  winner?: { ref: ModelVersionRef; promotion: Promotion };
  /** Why nothing is to be deployed (the gate kept the champion, or the retraining failed). */
  reason: string;
  failed?: boolean;
  /** The files its preprocessing read under train/ and test/, skipped ones included. */
  images?: number;
  /** The data it trained on (drift checks compare with it once its winner serves). */
  dataset?: PreparedDataset;
}

/** What `approve` and `reject` take: the version that waits, who decides and why (all required). */
export interface ApprovalRequest {
  version: string;
  approver: string;
  reason: string;
}

/** A decision on the model that waited, as the history, the status and the MLflow tags record it. */
export interface ApprovalDecision {
  decision: 'approved' | 'rejected';
  version: string;
  approver: string;
  reason: string;
  /** When it was taken (workflow time). */
  at: string;
  /** Taken by `approval.onTimeout`, as nobody decided within `approval.timeoutHours`. */
  timedOut?: boolean;
}

/** The model that waits for a decision, as the status shows it. */
export interface PendingApproval {
  registeredModelName: string;
  version: string;
  modelClass: string;
  /** Why it passed the champion/challenger gate. */
  reason: string;
  since: string;
  /** When `approval.onTimeout` decides for it. */
  decidesAt: string;
  onTimeout: 'approve' | 'reject';
  /** The command that approves it (reject: `--name reject`). */
  command: string;
}

/** Approves the model that waits: it is deployed, then promoted once it serves. Answered once the decision is recorded in the run. */
export const approveUpdate = defineUpdate<ApprovalDecision, [ApprovalRequest]>('approve');
/** Rejects the model that waits: the champion keeps serving. */
export const rejectUpdate = defineUpdate<ApprovalDecision, [ApprovalRequest]>('reject');
