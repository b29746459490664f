/** Signals and queries of the pipeline workflow, shared with clients. */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Deployment, PreparedDataset, TrainedModel } from '../common/types';
import type { SelectionDecision } from './selection';

export type Stage =
  'preprocessing' | 'training' | 'selecting' | 'promoting' | 'deploying' | 'serving' | 'redeploying' | 'finished' | 'failed';

export interface ModelProgress {
  modelClass: string;
  state: 'training' | 'trained' | 'failed';
  validation?: TrainedModel['metrics']['validation'];
  version?: string;
  error?: string;
}

/** Which registered version to serve: a version number or an alias such as `champion`. */
export interface RedeployRequest {
  version?: string;
  alias?: string;
}

export interface RedeployRecord {
  request: RedeployRequest;
  outcome: 'deployed' | 'rejected' | 'failed';
  reason?: string;
  deployment?: Deployment;
}

export interface PipelineStatus {
  stage: Stage;
  dataset?: PreparedDataset;
  models: ModelProgress[];
  selection?: Omit<SelectionDecision, 'winner'> & { winner: string; version: string };
  deployments: Deployment[];
  redeploys: RedeployRecord[];
}

export const statusQuery = defineQuery<PipelineStatus>('status');
export const redeploySignal = defineSignal<[RedeployRequest]>('redeploy');
export const finishSignal = defineSignal('finish');
