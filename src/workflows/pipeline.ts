/**
 * cnnSkinCancerWorkflow: preprocess -> train N models in parallel -> select on validation ->
 * promote in the registry -> deploy -> stay alive serving `redeploy` signals.
 *
 * Workflow code: deterministic, no I/O; everything external happens in activities.
 */
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createDataActivities } from '../activities/preprocess';
import type { createDeployActivities } from '../activities/deploy';
import type { createRegistryActivities } from '../activities/registry';
import type { createTrainingActivities } from '../activities/training';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../common/constants';
import type { Deployment, ModelVersionRef, TrainedModel } from '../common/types';
import { InvalidInputError, parsePipelineInput, type PipelineInput, type PipelineParams } from './input';
import { finishSignal, redeploySignal, statusQuery, type PipelineStatus, type RedeployRequest, type Stage } from './messages';
import { renderDetails } from './details';
import { selectBestModel } from './selection';

const data = proxyActivities<ReturnType<typeof createDataActivities>>({
  taskQueue: TASK_QUEUES.data,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '5s', nonRetryableErrorTypes: ['InvalidDatasetError'] },
});

const training = proxyActivities<ReturnType<typeof createTrainingActivities>>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '12h',
  // A killed training worker is noticed within a minute and the attempt retried elsewhere.
  heartbeatTimeout: '1m',
  retry: { maximumAttempts: 3, initialInterval: '10s', nonRetryableErrorTypes: ['InvalidDatasetError'] },
});

const registry = proxyActivities<ReturnType<typeof createRegistryActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '1m',
  retry: { maximumAttempts: 10, initialInterval: '2s', nonRetryableErrorTypes: ['ModelVersionNotFoundError'] },
});

const deploy = proxyActivities<ReturnType<typeof createDeployActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '15m',
  heartbeatTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '5s' },
});

export interface PipelineResult {
  stage: Stage;
  model: string;
  version: string;
  metrics: TrainedModel['metrics'];
  deployment: Deployment;
}

/** State carried across continue-as-new while the workflow serves redeploy requests. */
interface ServingCarry {
  result: PipelineResult;
  status: PipelineStatus;
  pending: RedeployRequest[];
  deadline: number;
}

export async function cnnSkinCancerWorkflow(input?: PipelineInput, carry?: ServingCarry): Promise<PipelineResult> {
  let params: PipelineParams;
  try {
    params = parsePipelineInput(input);
  } catch (err) {
    if (err instanceof InvalidInputError) throw ApplicationFailure.nonRetryable(err.message, err.name, { field: err.field });
    throw err;
  }

  const status: PipelineStatus = carry?.status ?? { stage: 'preprocessing', models: [], deployments: [], redeploys: [] };
  const pending: RedeployRequest[] = carry?.pending ?? [];
  let finished = false;
  setHandler(statusQuery, () => status);
  setHandler(redeploySignal, (request) => void pending.push(request));
  setHandler(finishSignal, () => void (finished = true));

  const setStage = (stage: Stage): void => {
    status.stage = stage;
    upsertSearchAttributes([{ key: SEARCH_ATTRIBUTES.stage, value: stage }]);
    setCurrentDetails(renderDetails(status));
  };

  const result = carry?.result ?? (await runPipeline(params, status, setStage));
  if (!carry) {
    upsertSearchAttributes([
      { key: SEARCH_ATTRIBUTES.endpoint, value: params.endpointName },
      { key: SEARCH_ATTRIBUTES.bestModel, value: result.model },
      { key: SEARCH_ATTRIBUTES.bestMetric, value: result.metrics.validation[params.selectionMetric] },
    ]);
  }
  setStage('serving');

  // Stay alive as the owner of the endpoint: one redeploy at a time, in arrival order.
  const deadline = carry?.deadline ?? Date.now() + params.lifetimeSeconds * 1000;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0 && pending.length === 0) break;
    await condition(() => pending.length > 0 || finished || workflowInfo().continueAsNewSuggested, Math.max(remaining, 1));
    if (finished && pending.length === 0) break;
    const request = pending.shift();
    if (request) {
      setStage('redeploying');
      result.deployment = await redeploy(params, request, status, result.deployment);
      setStage('serving');
    } else if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof cnnSkinCancerWorkflow>(input, { result, status, pending, deadline });
    }
  }
  setStage('finished');
  return { ...result, stage: 'finished' };
}

async function runPipeline(params: PipelineParams, status: PipelineStatus, setStage: (s: Stage) => void): Promise<PipelineResult> {
  const { workflowId } = workflowInfo();
  setStage('preprocessing');
  const dataset = await data.preprocessDataset.executeWithOptions(
    { summary: `Preprocess ${params.dataUri} to ${params.imageSize}x${params.imageSize} uint8 shards` },
    [
      {
        dataUri: params.dataUri,
        imageSize: params.imageSize,
        numClasses: params.numClasses,
        validationSplit: params.validationSplit,
        seed: params.seed,
        maxSkippedFraction: params.maxSkippedFraction,
        experimentName: params.experimentName,
      },
    ],
  );
  status.dataset = dataset;

  setStage('training');
  status.models = params.models.map((modelClass) => ({ modelClass, state: 'training' }));
  const hyperparams = {
    optimizer: params.optimizer,
    epochs: params.epochs,
    batchSize: params.batchSize,
    learningRate: params.learningRate,
    crossValFolds: params.crossValFolds,
    seed: params.seed,
  };
  const outcomes = await Promise.allSettled(
    params.models.map(async (modelClass, i) => {
      try {
        const trained = await training.trainModel.executeWithOptions(
          { summary: `Train ${modelClass}: ${params.epochs} epochs, batch ${params.batchSize}, lr ${params.learningRate}` },
          [
            {
              modelClass,
              dataset,
              hyperparams,
              experimentName: params.experimentName,
              registeredModelName: params.registeredModelName,
              workflowId,
            },
          ],
        );
        status.models[i] = { modelClass, state: 'trained', validation: trained.metrics.validation, version: trained.version };
        setCurrentDetails(renderDetails(status));
        return trained;
      } catch (err) {
        status.models[i] = { modelClass, state: 'failed', error: errorMessage(err) };
        setCurrentDetails(renderDetails(status));
        throw err;
      }
    }),
  );
  const trained = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  if (trained.length === 0) {
    setStage('failed');
    throw ApplicationFailure.nonRetryable(
      `every training failed: ${status.models.map((m) => `${m.modelClass}: ${m.error}`).join('; ')}`,
      'AllTrainingsFailed',
    );
  }

  setStage('selecting');
  const decision = selectBestModel(trained, params.selectionMetric);
  const winner = decision.winner;
  status.selection = { ...decision, winner: winner.modelClass, version: winner.version };
  log.info('model selected', { reason: decision.reason });

  setStage('promoting');
  const ref: ModelVersionRef = {
    registeredModelName: winner.registeredModelName,
    version: winner.version,
    modelUri: winner.modelUri,
    mlflowRunId: winner.mlflowRunId,
    modelClass: winner.modelClass,
  };
  await registry.promoteModelVersion.executeWithOptions(
    { summary: `Promote ${winner.registeredModelName} v${winner.version} (${winner.modelClass}) to champion` },
    [{ registeredModelName: ref.registeredModelName, version: ref.version, reason: decision.reason }],
  );

  setStage('deploying');
  const deployment = await deploy.deployModel.executeWithOptions(
    { summary: `Deploy ${ref.registeredModelName} v${ref.version} to ${params.deployTarget} endpoint ${params.endpointName}` },
    [{ target: params.deployTarget, endpointName: params.endpointName, model: ref }],
  );
  status.deployments.push(deployment);
  return { stage: 'serving', model: winner.modelClass, version: winner.version, metrics: winner.metrics, deployment };
}

async function redeploy(
  params: PipelineParams,
  request: RedeployRequest,
  status: PipelineStatus,
  current: Deployment,
): Promise<Deployment> {
  const invalid = validateRedeploy(request);
  if (invalid) {
    status.redeploys.push({ request, outcome: 'rejected', reason: invalid });
    return current;
  }
  try {
    const ref = await registry.resolveModelVersion.executeWithOptions(
      { summary: `Resolve ${params.registeredModelName} ${request.alias ? `alias ${request.alias}` : `v${request.version}`}` },
      [{ registeredModelName: params.registeredModelName, version: request.version, alias: request.alias }],
    );
    const deployment = await deploy.deployModel.executeWithOptions(
      { summary: `Redeploy ${ref.registeredModelName} v${ref.version} to ${params.endpointName}` },
      [{ target: params.deployTarget, endpointName: params.endpointName, model: ref }],
    );
    status.deployments.push(deployment);
    status.redeploys.push({ request, outcome: 'deployed', deployment });
    return deployment;
  } catch (err) {
    // A failed redeploy is recorded; the workflow keeps owning (and serving) the endpoint.
    status.redeploys.push({ request, outcome: 'failed', reason: errorMessage(err) });
    return current;
  }
}

export function validateRedeploy(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null) return 'expected an object like {"version":"3"} or {"alias":"champion"}';
  const { version, alias, ...rest } = request as Record<string, unknown>;
  if (Object.keys(rest).length) return `unknown field(s): ${Object.keys(rest).join(', ')}`;
  if ((version === undefined) === (alias === undefined)) return 'give exactly one of "version" or "alias"';
  if (version !== undefined && !(typeof version === 'string' && /^[1-9]\d*$/.test(version)))
    return '"version" must be a positive integer string such as "3"';
  if (alias !== undefined && !(typeof alias === 'string' && /^[\w-]{1,100}$/.test(alias)))
    return '"alias" must be a name such as "champion"';
  return undefined;
}

/** The innermost cause's message: an ActivityFailure wraps the activity's own error. */
function errorMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
