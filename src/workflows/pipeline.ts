/**
 * cnnSkinCancerWorkflow: preprocess -> train N models in parallel -> select on validation ->
 * deploy the new best (or keep the champion) -> promote it in the registry once it serves -> stay
 * alive as the endpoint's owner, serving `redeploy` and `retrain` requests (retraining.ts).
 *
 * Workflow code: deterministic, no I/O; everything external happens in activities (steps.ts).
 * Under Worker Versioning a run executes on the build it started on (the workers' default
 * behaviour is PINNED, src/runtime/versioning.ts); its serving phase moves to newer builds by
 * continue-as-new (serving.ts). The type carries no annotation of its own: unversioned workers
 * (TEMPORAL_WORKER_VERSIONING=off) refuse workflows that declare a versioning behaviour.
 */
import { patched, upsertSearchAttributes } from '@temporalio/workflow';
import { SEARCH_ATTRIBUTES } from '../common/constants';
import type { ClassificationMetrics, Deployment } from '../common/types';
import type { PipelineInput, PipelineParams } from './input';
import type { Stage } from './messages';
import { Approvals } from './approval';
import { DriftWatch } from './drift';
import { Notifier } from './notifications';
import { Retrainings } from './retraining';
import { RedeployQueue, serve, type ServingCarry } from './serving';
import { StatusTracker } from './status';
import { errorMessage } from './errors';
import {
  chooseDeployTarget,
  deployVersion,
  keepChampion,
  parseInput,
  preprocess,
  promote,
  promotionOf,
  select,
  trainAll,
  winnerToServe,
  type Promotion,
} from './steps';

export interface PipelineResult {
  stage: Stage;
  /** The model class and version being served (the champion's, when it kept its place). */
  model: string;
  version: string;
  /** Validation metrics of the served model on this run's data; test metrics when it was trained here. */
  metrics: { validation: ClassificationMetrics; test?: ClassificationMetrics };
  /** What the endpoint serves; absent while the first deployment has failed (stage `deploy-failed`). */
  deployment?: Deployment;
  /** A promotion waiting for its version to be served (the first deployment failed). */
  pendingPromotion?: Promotion;
}

export async function cnnSkinCancerWorkflow(input?: PipelineInput, carry?: ServingCarry): Promise<PipelineResult> {
  // A continued run's input names its registered model (below); one continued by earlier code
  // names none, and its chain used the shared default, as does a run that began before the patch.
  const sharedRegisteredModel = carry ? true : !patched('registered-model-per-endpoint');
  const { params, ignored } = parseInput(input, sharedRegisteredModel);
  const status = new StatusTracker(carry?.status, new Notifier(params));
  status.ignoredInput(ignored);
  const queue = new RedeployQueue(params, status, carry);
  const approvals = new Approvals(params, status, () => queue.closing, carry?.approval);
  // Requests that come while the first model trains start once it serves.
  const retrainings = new Retrainings(status, () => queue.closing, carry?.retraining, approvals);
  // Before any work: a target this deployment cannot serve (local in a pod) fails the run now.
  if (!carry && patched('deploy-target-from-worker')) params.deployTarget = await chooseDeployTarget(params, input?.deployTarget);

  const result = carry?.result ?? (await trainAndDeploy(params, status, approvals));
  if (!carry) {
    upsertSearchAttributes([
      { key: SEARCH_ATTRIBUTES.endpoint, value: params.endpointName },
      { key: SEARCH_ATTRIBUTES.bestModel, value: result.model },
      { key: SEARCH_ATTRIBUTES.bestMetric, value: result.metrics.validation[params.selectionMetric] },
    ]);
  }
  const deadline = carry?.deadline ?? Date.now() + params.lifetimeSeconds * 1000;
  // Later runs of the chain keep the target and the registered model this one resolved.
  const next = { ...input, deployTarget: params.deployTarget, registeredModelName: params.registeredModelName };
  const driftWatch = new DriftWatch(params, status, carry?.drift);
  return serve(params, next, queue, status, result, deadline, retrainings, approvals, driftWatch, carry?.nextCheck);
}

/**
 * The DAG itself: one pass from raw images to a served model. A winner that needs approval waits
 * for it in the serving loop (approval.ts); the champion, if there is one, serves meanwhile.
 */
async function trainAndDeploy(params: PipelineParams, status: StatusTracker, approvals: Approvals): Promise<PipelineResult> {
  const dataset = await preprocess(params, status);
  const trained = await trainAll(params, dataset, status);
  const selection = await select(params, dataset, trained, status);
  const passed = selection.gate.outcome === 'promote' ? promotionOf(selection) : undefined;
  if (passed && params.approval.required) await approvals.request({ promotion: passed });
  // What this run promotes itself: an approved winner is promoted once it serves, by the serving loop.
  const promotion = approvals.pending ? undefined : passed;
  // Runs started by earlier code promoted before deploying, and failed with their deployment.
  const promoteAfterDeploy = patched('promote-after-verified-deploy');
  if (promotion && !promoteAfterDeploy) await promote(promotion, status);
  // Nothing to serve while the first winner waits and no champion could be scored: the endpoint waits for the decision.
  if (passed && !promotion && !selection.championScore?.metrics) return { ...winnerToServe(selection).served, stage: 'awaiting-approval' };
  const { ref, served } = promotion ? winnerToServe(selection) : await keepChampion(params, selection);

  status.stage('deploying');
  let deployment: Deployment;
  try {
    deployment = await deployVersion(
      params,
      ref,
      params,
      `Deploy ${ref.registeredModelName} v${ref.version} to ${params.deployTarget} endpoint ${params.endpointName}`,
    );
  } catch (err) {
    if (!promoteAfterDeploy) throw err;
    // Nothing trained is lost: the run stays the endpoint's owner and a redeploy can retry. The
    // registry still names the old champion, as that is what serves (if anything does).
    status.deployFailed(errorMessage(err), ref.version);
    status.stage('deploy-failed');
    return { ...served, stage: 'deploy-failed', ...(promotion ? { pendingPromotion: promotion } : {}) };
  }
  status.deployed(deployment);
  // The registry names a champion only once it serves.
  if (promotion && promoteAfterDeploy) await promote(promotion, status);
  return { ...served, deployment };
}
