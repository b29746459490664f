/**
 * The pipeline's steps, in the order cnnSkinCancerWorkflow runs them. Each schedules its
 * activities and records what happened in the run's status.
 */
import { ApplicationFailure, isCancellation, log, patched, workflowInfo } from '@temporalio/workflow';
import { CHAMPION_ALIAS, type DeployTarget } from '../common/constants';
import { FAILURE } from '../common/failures';
import type { ChampionEvaluation, Deployment, ModelVersionRef, PreparedDataset, TrainedModel } from '../common/types';
import { data, deploy, evaluation, promotions, registry, training } from './activities';
import { errorMessage } from './errors';
import {
  checkSizing,
  InvalidInputError,
  parsePipelineInputWithNotes,
  type ParsedPipelineInput,
  type PipelineInput,
  type PipelineParams,
} from './input';
import { championGate, selectBestModel, type ChampionDecision, type SelectionDecision } from './selection';
import type { StatusTracker } from './status';
import type { PipelineResult } from './pipeline';

/** The run's parameters, or a non-retryable failure naming the bad field. */
export function parseInput(input: PipelineInput | undefined, sharedRegisteredModel = false): ParsedPipelineInput {
  try {
    return parsePipelineInputWithNotes(input, { sharedRegisteredModel });
  } catch (err) {
    if (err instanceof InvalidInputError) throw ApplicationFailure.nonRetryable(err.message, err.name, { field: err.field });
    throw err;
  }
}

export async function preprocess(params: PipelineParams, status: StatusTracker): Promise<PreparedDataset> {
  status.stage('preprocessing');
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
  status.status.dataset = dataset;
  return dataset;
}

/** Trains every requested model class in parallel; fails the run when too few succeed. */
export async function trainAll(params: PipelineParams, dataset: PreparedDataset, status: StatusTracker): Promise<TrainedModel[]> {
  status.stage('training');
  status.status.models = params.models.map((modelClass) => ({ modelClass, state: 'training' }));
  const outcomes = await Promise.allSettled(params.models.map((modelClass, i) => trainOne(params, dataset, modelClass, i, status)));
  const trained = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  if (trained.length < params.minSuccessfulModels) {
    status.stage('failed');
    const failures = status.status.models.filter((m) => m.state === 'failed').map((m) => `${m.modelClass}: ${m.error}`);
    throw ApplicationFailure.nonRetryable(
      trained.length === 0
        ? `every training failed: ${failures.join('; ')}`
        : `only ${trained.length} of ${params.models.length} trainings succeeded, minSuccessfulModels is ${params.minSuccessfulModels}: ${failures.join('; ')}`,
      trained.length === 0 ? FAILURE.allTrainingsFailed : FAILURE.notEnoughModelsTrained,
    );
  }
  return trained;
}

async function trainOne(
  params: PipelineParams,
  dataset: PreparedDataset,
  modelClass: PipelineParams['models'][number],
  index: number,
  status: StatusTracker,
): Promise<TrainedModel> {
  let trained: TrainedModel;
  try {
    trained = await training.trainModel.executeWithOptions(
      { summary: `Train ${modelClass}: ${params.epochs} epochs, batch ${params.batchSize}, lr ${params.learningRate}` },
      [
        {
          modelClass,
          dataset,
          hyperparams: {
            optimizer: params.optimizer,
            epochs: params.epochs,
            batchSize: params.batchSize,
            learningRate: params.learningRate,
            crossValFolds: params.crossValFolds,
            seed: params.seed,
            kernelInitializer: params.kernelInitializer,
            denseInitializer: params.denseInitializer,
          },
          experimentName: params.experimentName,
          registeredModelName: params.registeredModelName,
          workflowId: workflowInfo().workflowId,
          ...(modelClass === 'ResNet50' && params.resnetWeightsUri ? { initialWeightsUri: params.resnetWeightsUri } : {}),
        },
      ],
    );
  } catch (err) {
    status.model(index, { modelClass, state: 'failed', error: errorMessage(err) });
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
        .catch((closeErr: unknown) => log.warn('could not close the failed training run', { modelClass, error: errorMessage(closeErr) }));
    }
    throw err;
  }
  // Outside the try: only the training itself can make a training count as failed.
  status.model(index, { modelClass, state: 'trained', validation: trained.metrics.validation, version: trained.version });
  return trained;
}

export interface Selection {
  decision: SelectionDecision;
  gate: ChampionDecision;
  championScore: ChampionEvaluation | undefined;
}

/** Best on validation, then the champion/challenger gate against the registry's champion. */
export async function select(
  params: PipelineParams,
  dataset: PreparedDataset,
  trained: TrainedModel[],
  status: StatusTracker,
): Promise<Selection> {
  status.stage('selecting');
  const decision = selectBestModel(trained, params.selectionMetric);
  const winner = decision.winner;
  status.status.selection = { ...decision, winner: winner.modelClass, version: winner.version };
  const championScore = await evaluation.evaluateChampion.executeWithOptions(
    { summary: `Score the current ${params.registeredModelName} champion on this run's validation split` },
    [{ registeredModelName: params.registeredModelName, dataset }],
  );
  const gate = championGate(winner, championScore, params.selectionMetric, params.minImprovement);
  status.status.selection.champion = gate;
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
  return { decision, gate, championScore };
}

/** What the endpoint is to serve, and the metrics reported for it. */
export interface ServedModel {
  ref: ModelVersionRef;
  served: Omit<PipelineResult, 'deployment'>;
}

/** The new best, as what the endpoint is to serve. */
export function winnerToServe({ decision }: Selection): ServedModel {
  const winner = decision.winner;
  const ref: ModelVersionRef = {
    registeredModelName: winner.registeredModelName,
    version: winner.version,
    modelUri: winner.modelUri,
    mlflowRunId: winner.mlflowRunId,
    modelClass: winner.modelClass,
  };
  return { ref, served: { stage: 'serving', model: winner.modelClass, version: winner.version, metrics: winner.metrics } };
}

/** The registry's aliases move: the winner becomes champion (the previous one previous-champion). */
export async function promote(promotion: Promotion, status: StatusTracker): Promise<void> {
  status.stage('promoting');
  const { championKept } = await promotions.promoteModelVersion.executeWithOptions(
    { summary: `Promote ${promotion.registeredModelName} v${promotion.version} (${promotion.modelClass}) to champion` },
    [{ registeredModelName: promotion.registeredModelName, version: promotion.version, reason: promotion.reason }],
  );
  if (championKept) {
    log.warn(`${promotion.registeredModelName} v${promotion.version} not promoted: v${championKept}, a newer version, is champion`);
  }
}

/** A promotion decided by the champion/challenger gate. */
export interface Promotion {
  registeredModelName: string;
  version: string;
  modelClass: string;
  reason: string;
}

export function promotionOf({ decision, gate }: Selection): Promotion {
  const w = decision.winner;
  return {
    registeredModelName: w.registeredModelName,
    version: w.version,
    modelClass: w.modelClass,
    reason: `${decision.reason}; ${gate.reason}`,
  };
}

/** The champion keeps its place; the endpoint is made to serve it (a no-op when it already does). */
export async function keepChampion(params: PipelineParams, { gate, championScore }: Selection): Promise<ServedModel> {
  const ref = await registry.resolveModelVersion.executeWithOptions(
    { summary: `Resolve ${params.registeredModelName} alias ${CHAMPION_ALIAS} (kept: ${gate.reason})` },
    [{ registeredModelName: params.registeredModelName, alias: CHAMPION_ALIAS }],
  );
  return {
    ref,
    served: {
      stage: 'serving',
      model: ref.modelClass ?? 'champion',
      version: ref.version,
      metrics: { validation: championScore!.metrics! },
    },
  };
}

/**
 * The run's deploy target: the input's, else the pipeline worker's default (DEFAULT_DEPLOY_TARGET).
 * The worker refuses a target it cannot serve; SageMaker sizing needs the sagemaker target.
 */
export async function chooseDeployTarget(params: PipelineParams, requested: DeployTarget | undefined): Promise<DeployTarget> {
  let target: DeployTarget;
  try {
    target = await deploy.resolveDeployTarget.executeWithOptions(
      { summary: requested ? `Check deploy target '${requested}' on this deployment` : 'Choose the deploy target (worker default)' },
      [{ ...(requested ? { requested } : {}) }],
    );
  } catch (err) {
    throw ApplicationFailure.nonRetryable(errorMessage(err), FAILURE.invalidDeployRequest);
  }
  try {
    checkSizing({ ...params, deployTarget: target });
  } catch (err) {
    if (err instanceof InvalidInputError) throw ApplicationFailure.nonRetryable(err.message, err.name, { field: err.field });
    throw err;
  }
  return target;
}

/** Deploys a registered version to the run's endpoint; waits until it serves. */
export async function deployVersion(
  params: PipelineParams,
  ref: ModelVersionRef,
  sizing: { instanceType?: string; instanceCount?: number },
  summary: string,
  deployKey?: string,
): Promise<Deployment> {
  return deploy.deployModel.executeWithOptions({ summary }, [
    {
      target: params.deployTarget,
      endpointName: params.endpointName,
      model: ref,
      ...definedSizing(sizing),
      ...(deployKey ? { deployKey } : {}),
    },
  ]);
}

export function definedSizing(p: { instanceType?: string; instanceCount?: number }): { instanceType?: string; instanceCount?: number } {
  return {
    ...(p.instanceType !== undefined ? { instanceType: p.instanceType } : {}),
    ...(p.instanceCount !== undefined ? { instanceCount: p.instanceCount } : {}),
  };
}
