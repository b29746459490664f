/**
 * cnnSkinCancerWorkflow: preprocess -> train N models in parallel -> select on validation ->
 * promote in the registry -> deploy -> stay alive serving `redeploy` signals.
 *
 * Workflow code: deterministic, no I/O; everything external happens in activities.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createDataActivities } from '../activities/preprocess';
import type { createDeployActivities } from '../activities/deploy';
import type { createEvaluationActivities } from '../activities/evaluation';
import type { createRegistryActivities } from '../activities/registry';
import type { createTrainingActivities } from '../activities/training';
import { CHAMPION_ALIAS, INSTANCE_TYPE_PATTERN, SEARCH_ATTRIBUTES, TASK_QUEUES } from '../common/constants';
import type { ClassificationMetrics, Deployment, ModelVersionRef } from '../common/types';
import { InvalidInputError, parsePipelineInput, type PipelineInput, type PipelineParams } from './input';
import {
  finishSignal,
  redeploySignal,
  redeployUpdate,
  statusQuery,
  type PipelineStatus,
  type RedeployRecord,
  type RedeployRequest,
  type Stage,
} from './messages';
import { renderDetails } from './details';
import { championGate, selectBestModel } from './selection';

const data = proxyActivities<ReturnType<typeof createDataActivities>>({
  taskQueue: TASK_QUEUES.data,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '5s', nonRetryableErrorTypes: ['InvalidDatasetError'] },
});

const training = proxyActivities<ReturnType<typeof createTrainingActivities>>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '12h',
  // A killed training worker is noticed within a minute (heartbeats come from the activity, not the
  // busy training process, so a long batch never starves them); the next attempt resumes from the
  // newest checkpoint, which makes retries cheap.
  heartbeatTimeout: '1m',
  retry: {
    maximumAttempts: 5,
    initialInterval: '10s',
    nonRetryableErrorTypes: ['InvalidDatasetError', 'InvalidTrainingDataError', 'CheckpointMismatchError', 'InvalidInitialWeightsError'],
  },
});

const evaluation = proxyActivities<ReturnType<typeof createEvaluationActivities>>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '2m',
  retry: { maximumAttempts: 3, initialInterval: '10s' },
});

const registry = proxyActivities<ReturnType<typeof createRegistryActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '1m',
  retry: { maximumAttempts: 10, initialInterval: '2s', nonRetryableErrorTypes: ['ModelVersionNotFoundError'] },
});

// A SageMaker endpoint can take well over ten minutes to become InService; the activity heartbeats
// while it waits, so a lost worker is still noticed within two minutes.
const deploy = proxyActivities<ReturnType<typeof createDeployActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '2m',
  retry: {
    maximumAttempts: 5,
    initialInterval: '5s',
    nonRetryableErrorTypes: [
      'SageMakerConfigError',
      'EndpointRolledBackError',
      'EndpointFailedError',
      'EndpointPortInUseError',
      'InvalidDeployRequest',
    ],
  },
});

export interface PipelineResult {
  stage: Stage;
  /** The model class and version being served (the champion's, when it kept its place). */
  model: string;
  version: string;
  /** Validation metrics of the served model on this run's data; test metrics when it was trained here. */
  metrics: { validation: ClassificationMetrics; test?: ClassificationMetrics };
  deployment: Deployment;
}

interface PendingRedeploy {
  id: number;
  request: RedeployRequest;
  via: RedeployRecord['via'];
}

/** State carried across continue-as-new while the workflow serves redeploy requests. */
interface ServingCarry {
  result: PipelineResult;
  status: PipelineStatus;
  pending: PendingRedeploy[];
  deadline: number;
  nextId: number;
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
  const pending: PendingRedeploy[] = carry?.pending ?? [];
  const outcomes = new Map<number, RedeployRecord>();
  let nextId = carry?.nextId ?? 1;
  let finished = false;
  setHandler(statusQuery, () => status);
  setHandler(redeploySignal, (request) => void pending.push({ id: nextId++, request, via: 'signal' }));
  // Updates join the same queue as signals and wait for their turn's outcome.
  setHandler(
    redeployUpdate,
    async (request) => {
      const id = nextId++;
      pending.push({ id, request, via: 'update' });
      await condition(() => outcomes.has(id));
      const record = outcomes.get(id)!;
      outcomes.delete(id);
      if (record.outcome === 'deployed') return record.deployment!;
      throw ApplicationFailure.nonRetryable(`redeploy failed: ${record.reason}`, 'RedeployFailed');
    },
    {
      validator: (request) => {
        const invalid = validateRedeploy(request, params);
        if (invalid) throw new Error(invalid);
      },
    },
  );
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
    const next = pending.shift();
    if (next) {
      setStage('redeploying');
      const record = await redeploy(params, next, result.deployment);
      status.redeploys.push(record);
      outcomes.set(next.id, record);
      if (record.deployment) {
        result.deployment = record.deployment;
        status.deployments.push(record.deployment);
      }
      setStage('serving');
    } else if (workflowInfo().continueAsNewSuggested) {
      // Update callers must have their answers before this run ends.
      await condition(allHandlersFinished);
      if (pending.length === 0) await continueAsNew<typeof cnnSkinCancerWorkflow>(input, { result, status, pending, deadline, nextId });
    }
  }
  await condition(allHandlersFinished);
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
              ...(modelClass === 'ResNet50' && params.resnetWeightsUri ? { initialWeightsUri: params.resnetWeightsUri } : {}),
            },
          ],
        );
        status.models[i] = { modelClass, state: 'trained', validation: trained.metrics.validation, version: trained.version };
        setCurrentDetails(renderDetails(status));
        return trained;
      } catch (err) {
        status.models[i] = { modelClass, state: 'failed', error: errorMessage(err) };
        setCurrentDetails(renderDetails(status));
        // An attempt whose process was killed could not close its MLflow run: the training has
        // failed for good, so its run is marked FAILED rather than left RUNNING.
        if (!isCancellation(err) && patched('fail-abandoned-training-runs')) {
          await registry
            .failAbandonedTrainingRuns({
              experimentName: params.experimentName,
              workflowRunId: workflowInfo().runId,
              modelClass,
              reason: errorMessage(err),
            })
            .catch((closeErr: unknown) =>
              log.warn('could not close the failed training run', { modelClass, error: errorMessage(closeErr) }),
            );
        }
        throw err;
      }
    }),
  );
  const trained = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  if (trained.length < params.minSuccessfulModels) {
    setStage('failed');
    const failures = status.models.filter((m) => m.state === 'failed').map((m) => `${m.modelClass}: ${m.error}`);
    throw ApplicationFailure.nonRetryable(
      trained.length === 0
        ? `every training failed: ${failures.join('; ')}`
        : `only ${trained.length} of ${params.models.length} trainings succeeded, minSuccessfulModels is ${params.minSuccessfulModels}: ${failures.join('; ')}`,
      trained.length === 0 ? 'AllTrainingsFailed' : 'NotEnoughModelsTrained',
    );
  }

  setStage('selecting');
  const decision = selectBestModel(trained, params.selectionMetric);
  const winner = decision.winner;
  status.selection = { ...decision, winner: winner.modelClass, version: winner.version };
  const championScore = await evaluation.evaluateChampion.executeWithOptions(
    { summary: `Score the current ${params.registeredModelName} champion on this run's validation split` },
    [{ registeredModelName: params.registeredModelName, dataset }],
  );
  const gate = championGate(winner, championScore, params.selectionMetric, params.minImprovement);
  status.selection.champion = gate;
  log.info('model selected', { reason: decision.reason, gate: gate.reason });
  await registry.tagModelVersion.executeWithOptions(
    { summary: `Record the champion/challenger decision on ${winner.registeredModelName} v${winner.version}` },
    [
      {
        registeredModelName: winner.registeredModelName,
        version: winner.version,
        tags: { selection_decision: gate.outcome, selection_reason: gate.reason },
      },
    ],
  );

  let ref: ModelVersionRef;
  let served: Omit<PipelineResult, 'deployment'>;
  if (gate.outcome === 'promote') {
    setStage('promoting');
    ref = {
      registeredModelName: winner.registeredModelName,
      version: winner.version,
      modelUri: winner.modelUri,
      mlflowRunId: winner.mlflowRunId,
      modelClass: winner.modelClass,
    };
    await registry.promoteModelVersion.executeWithOptions(
      { summary: `Promote ${winner.registeredModelName} v${winner.version} (${winner.modelClass}) to champion` },
      [{ registeredModelName: ref.registeredModelName, version: ref.version, reason: `${decision.reason}; ${gate.reason}` }],
    );
    served = { stage: 'serving', model: winner.modelClass, version: winner.version, metrics: winner.metrics };
  } else {
    // The champion keeps its place; the endpoint is made to serve it (a no-op when it already does).
    ref = await registry.resolveModelVersion.executeWithOptions(
      { summary: `Resolve ${params.registeredModelName} alias ${CHAMPION_ALIAS} (kept: ${gate.reason})` },
      [{ registeredModelName: params.registeredModelName, alias: CHAMPION_ALIAS }],
    );
    served = {
      stage: 'serving',
      model: ref.modelClass ?? 'champion',
      version: ref.version,
      metrics: { validation: championScore!.metrics! },
    };
  }

  setStage('deploying');
  const deployment = await deploy.deployModel.executeWithOptions(
    { summary: `Deploy ${ref.registeredModelName} v${ref.version} to ${params.deployTarget} endpoint ${params.endpointName}` },
    [{ target: params.deployTarget, endpointName: params.endpointName, model: ref, ...sizing(params) }],
  );
  status.deployments.push(deployment);
  return { ...served, deployment };
}

const sizing = (p: { instanceType?: string; instanceCount?: number }) => ({
  ...(p.instanceType !== undefined ? { instanceType: p.instanceType } : {}),
  ...(p.instanceCount !== undefined ? { instanceCount: p.instanceCount } : {}),
});

async function redeploy(params: PipelineParams, next: PendingRedeploy, current: Deployment): Promise<RedeployRecord> {
  const { request, via } = next;
  const invalid = validateRedeploy(request, params);
  if (invalid) return { request, via, outcome: 'rejected', reason: invalid };
  try {
    // Sizing alone re-deploys the version being served; otherwise the current sizing carries over.
    const version = request.version ?? (request.alias === undefined ? current.version : undefined);
    const ref = await registry.resolveModelVersion.executeWithOptions(
      { summary: `Resolve ${params.registeredModelName} ${request.alias ? `alias ${request.alias}` : `v${version}`}` },
      [{ registeredModelName: params.registeredModelName, version, alias: request.alias }],
    );
    const instance = sizing({
      instanceType: request.instanceType ?? current.instanceType,
      instanceCount: request.instanceCount ?? current.instanceCount,
    });
    const deployment = await deploy.deployModel.executeWithOptions(
      {
        summary:
          `Redeploy ${ref.registeredModelName} v${ref.version} to ${params.endpointName}` +
          (instance.instanceType ? ` on ${instance.instanceCount ?? 1} x ${instance.instanceType}` : ''),
      },
      [{ target: params.deployTarget, endpointName: params.endpointName, model: ref, ...instance }],
    );
    return { request, via, outcome: 'deployed', deployment };
  } catch (err) {
    // A failed redeploy is recorded; the workflow keeps owning (and serving) the endpoint.
    return { request, via, outcome: 'failed', reason: errorMessage(err) };
  }
}

/** Why a redeploy request cannot be run, or undefined when it is well-formed. */
export function validateRedeploy(request: unknown, params: Pick<PipelineParams, 'deployTarget'>): string | undefined {
  const example =
    'expected an object like {"version":"3"}, {"alias":"previous-champion"} or {"instanceType":"ml.c5.xlarge","instanceCount":2}';
  if (typeof request !== 'object' || request === null || Array.isArray(request)) return example;
  const { version, alias, instanceType, instanceCount, ...rest } = request as Record<string, unknown>;
  if (Object.keys(rest).length) return `unknown field(s): ${Object.keys(rest).join(', ')}; ${example}`;
  if (version !== undefined && alias !== undefined) return 'give "version" or "alias", not both';
  if ([version, alias, instanceType, instanceCount].every((v) => v === undefined)) return `nothing to change: ${example}`;
  if (version !== undefined && !(typeof version === 'string' && /^[1-9]\d*$/.test(version)))
    return '"version" must be a positive integer string such as "3"';
  if (alias !== undefined && !(typeof alias === 'string' && /^[\w-]{1,100}$/.test(alias)))
    return '"alias" must be a name such as "champion"';
  if ((instanceType !== undefined || instanceCount !== undefined) && params.deployTarget !== 'sagemaker')
    return `"instanceType" and "instanceCount" apply to deployTarget 'sagemaker' only; this endpoint is '${params.deployTarget}'`;
  if (instanceType !== undefined && !(typeof instanceType === 'string' && INSTANCE_TYPE_PATTERN.test(instanceType)))
    return '"instanceType" must be a SageMaker instance type such as "ml.m5.large"';
  if (
    instanceCount !== undefined &&
    !(typeof instanceCount === 'number' && Number.isInteger(instanceCount) && instanceCount >= 1 && instanceCount <= 100)
  )
    return '"instanceCount" must be an integer from 1 to 100';
  return undefined;
}

/** The innermost cause's message: an ActivityFailure wraps the activity's own error. */
function errorMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
