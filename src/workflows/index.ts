export { cnnSkinCancerWorkflow } from './pipeline';
export type { PipelineResult } from './pipeline';
