/**
 * The small, serialisable records that travel through Temporal between the workflow and its
 * activities: references (S3 URIs, MLflow ids, versions) and metrics, never data.
 */
import type { DeployTarget, InitializerName, ModelClass, OptimizerName } from './constants';

export interface ClassificationMetrics {
  loss: number;
  accuracy: number;
  /** Macro-averaged over classes. */
  precision: number;
  recall: number;
  f1: number;
  /** ROC AUC (one-vs-rest, macro-averaged for more than two classes). */
  auc: number;
}

export interface PreprocessInput {
  /** Prefix holding `train/<class>/*` and `test/<class>/*` (s3://..., or file://... for local tools). */
  dataUri: string;
  imageSize: number;
  numClasses: number;
  validationSplit: number;
  seed: number;
  /** Share of undecodable files tolerated (skipped and listed) before the run fails. */
  maxSkippedFraction: number;
  /** MLflow experiment for the "Preprocessing" run; none is logged when absent. */
  experimentName?: string;
  /** Where outputs go (a folder per content key); default: `preprocessed/` beside the data. */
  outputUri?: string;
}

export interface SplitSummary {
  count: number;
  perClass: Record<string, number>;
}

export interface PreparedDataset {
  manifestUri: string;
  classes: string[];
  imageSize: number;
  splits: { train: SplitSummary; validation: SplitSummary; test: SplitSummary };
  /** True when a complete output for the same listing and parameters already existed. */
  cacheHit: boolean;
  /** sha256 over the input images' bytes (per shard, then over the shards), in order. */
  contentHash: string;
  /** Files that could not be decoded as images: how many, and the first few keys. */
  skipped: { count: number; keys: string[] };
}

export interface Hyperparams {
  optimizer: OptimizerName;
  epochs: number;
  batchSize: number;
  learningRate: number;
  crossValFolds: number;
  seed: number;
  /** The Basic CNN's kernel initializers (ModelSpec); absent in trainings started before they were chosen: the defaults. */
  kernelInitializer?: InitializerName;
  denseInitializer?: InitializerName;
}

export interface TrainModelInput {
  modelClass: ModelClass;
  dataset: PreparedDataset;
  hyperparams: Hyperparams;
  experimentName: string;
  registeredModelName: string;
  workflowId: string;
  /** Initial weights (S3 prefix of a tfjs layers model of the same architecture); default: from scratch. */
  initialWeightsUri?: string;
}

export interface TrainedModel {
  modelClass: ModelClass;
  mlflowRunId: string;
  registeredModelName: string;
  version: string;
  /** Selection uses `validation` only; `test` is reported. */
  metrics: { validation: ClassificationMetrics; test: ClassificationMetrics };
  /** S3 prefix of the saved tfjs model (model.json + weights). */
  modelUri: string;
  /** The same model as SageMaker's model.tar.gz (ModelDataUrl). */
  archiveUri: string;
}

export interface ModelVersionRef {
  registeredModelName: string;
  version: string;
  modelUri: string;
  mlflowRunId: string;
  modelClass?: string;
}

/** Per-deployment sizing for the `sagemaker` target; unset fields come from the configuration. */
export interface InstanceChoice {
  instanceType?: string;
  instanceCount?: number;
}

export interface DeployInput extends InstanceChoice {
  target: DeployTarget;
  endpointName: string;
  model: ModelVersionRef;
  /**
   * Names this deploy across its attempts and across the runs it is handed to (a redeploy carried
   * into the next run, serving.ts), so a SageMaker update it already sent is known as its own;
   * default: the activity's identity.
   */
  deployKey?: string;
}

/** What a periodic check found at the endpoint a run serves. */
export interface EndpointHealth {
  /** `repaired`: a local server was down, hung or serving another version, and is serving again (same URL). */
  state: 'up' | 'repaired' | 'down';
  detail: string;
  checkedAt: string;
}

export interface Deployment {
  target: DeployTarget;
  endpointName: string;
  url: string;
  registeredModelName: string;
  version: string;
  /** Where the served model's files are (absent in deployments recorded by earlier versions). */
  modelUri?: string;
  deployedAt: string;
  /** Wall time the deploy activity took, start to verified. */
  durationSeconds: number;
  /** True when the endpoint already served this version and nothing had to change. */
  unchanged: boolean;
  /** SageMaker only: the endpoint's ARN, its config and sizing. */
  arn?: string;
  endpointConfigName?: string;
  instanceType?: string;
  instanceCount?: number;
  /** SageMaker only: configs and models of earlier deployments that were removed. */
  removed?: string[];
}

/** The registry's champion scored on a new run's validation split (or why it could not be). */
export interface ChampionEvaluation {
  version: string;
  modelUri: string;
  comparable: boolean;
  metrics?: ClassificationMetrics;
  reason?: string;
}

/** Decoded images of one split, in memory: `count` images of imageSize x imageSize x 3 uint8, and their labels. */
export interface LoadedSplit {
  count: number;
  imageSize: number;
  pixels: Uint8Array;
  labels: Uint16Array;
}

/** A promotion asked of a registered model's owner workflow (src/workflows/registered-model.ts). */
export interface PromotionRequest {
  version: string;
  reason: string;
}

/** What a promotion did: the champion it replaced, or the newer champion that kept its place. */
export interface PromotionOutcome {
  previousChampion?: string;
  championKept?: string;
}

/** What a run announces (src/workflows/notifications.ts, src/activities/notify.ts). */
export interface PipelineEvent {
  kind: 'deployed' | 'deploy-failed' | 'rolled-back' | 'retraining-finished' | 'awaiting-approval' | 'approved' | 'rejected' | 'drift';
  /** The endpoint's workflow. */
  workflowId: string;
  endpointName: string;
  registeredModelName?: string;
  version?: string;
  detail: string;
  /** When it happened (workflow time). */
  at: string;
}
