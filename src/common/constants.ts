/**
 * Names shared by workflows, workers, clients and scripts. This module is imported by workflow
 * code, so it must stay free of Node built-ins and I/O.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const TASK_QUEUES = {
  pipeline: 'ml-pipeline',
  data: 'ml-data',
  training: 'ml-training',
} as const;

export const WORKFLOW_TYPE = 'cnnSkinCancerWorkflow';

/** Custom search attributes: registered by `npm run stack -- up` and by the test server. */
export const SEARCH_ATTRIBUTES = {
  stage: defineSearchAttributeKey('PipelineStage', SearchAttributeType.KEYWORD),
  bestModel: defineSearchAttributeKey('BestModel', SearchAttributeType.KEYWORD),
  bestMetric: defineSearchAttributeKey('BestMetric', SearchAttributeType.DOUBLE),
  endpoint: defineSearchAttributeKey('EndpointName', SearchAttributeType.KEYWORD),
} as const;

/** `--search-attribute` values for `temporal server start-dev`. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: readonly string[] = Object.values(SEARCH_ATTRIBUTES).map(
  (key) => `${key.name}=${key.type === SearchAttributeType.DOUBLE ? 'Double' : 'Keyword'}`,
);

/** Below this many images seen, a drift window's figure is recorded but not acted on (the window grows until it has them). */
export const MIN_DRIFT_IMAGES = 100;

export const MODEL_CLASSES = ['Basic', 'ResNet50', 'CrossVal'] as const;
export type ModelClass = (typeof MODEL_CLASSES)[number];

export const SELECTION_METRICS = ['accuracy', 'auc', 'f1', 'recall'] as const;
export type SelectionMetric = (typeof SELECTION_METRICS)[number];

export const OPTIMIZERS = ['adam', 'sgd', 'rmsprop'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/**
 * Keras' initializer names that the Basic CNN's kernels can be drawn with (the Airflow DAG's
 * `kernel_initializer_glob` and `kernel_initializer_norm`), drawn as Keras draws them
 * (src/ml/models.ts). `normal`, `uniform` and `truncated_normal` are Keras' 0.05-wide defaults.
 */
export const INITIALIZERS = [
  'glorot_uniform',
  'glorot_normal',
  'he_uniform',
  'he_normal',
  'lecun_uniform',
  'lecun_normal',
  'normal',
  'random_normal',
  'uniform',
  'random_uniform',
  'truncated_normal',
] as const;
export type InitializerName = (typeof INITIALIZERS)[number];

export const DEPLOY_TARGETS = ['local', 'sagemaker'] as const;
export type DeployTarget = (typeof DEPLOY_TARGETS)[number];

/** SageMaker's instance type names (ml.<family>.<size>). */
export const INSTANCE_TYPE_PATTERN = /^ml\.[a-z0-9-]+\.[a-z0-9]+$/;

/** Registry aliases: the serving model, and the one before it for rollback. */
export const CHAMPION_ALIAS = 'champion';
export const PREVIOUS_CHAMPION_ALIAS = 'previous-champion';

/** The update a registered model's owner workflow carries out promotions by. */
export const PROMOTE_UPDATE = 'promote';

/** The workflow through which every promotion of registered model X passes, one at a time (src/workflows/registered-model.ts). */
export function workflowIdForRegisteredModel(registeredModelName: string): string {
  return `registered-model-${registeredModelName}`;
}

/** One live workflow per endpoint: the id of the workflow that owns endpoint X is `endpoint-X`. */
export function workflowIdForEndpoint(endpointName: string): string {
  return `endpoint-${endpointName}`;
}
