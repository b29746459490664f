export { cnnSkinCancerWorkflow } from './pipeline';
export type { PipelineResult } from './pipeline';
export { registeredModelWorkflow } from './registered-model';
export { retrainingWorkflow, scheduledRetrainingWorkflow } from './retraining';
