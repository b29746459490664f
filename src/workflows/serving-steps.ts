/** What the serving loops do between waits: run a queued redeploy, check the endpoint, continue as new, end. */
import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  makeContinueAsNewFunc,
  workflowInfo,
} from '@temporalio/workflow';
import type { Deployment, EndpointHealth } from '../common/types';
import { FAILURE } from '../common/failures';
import { deploy, health, registry } from './activities';
import { errorMessage } from './errors';
import { validateRedeploy, type PipelineInput, type PipelineParams } from './input';
import type { PipelineStatus, RedeployRecord, Stage } from './messages';
import type { cnnSkinCancerWorkflow, PipelineResult } from './pipeline';
import type { PendingRedeploy, RedeployQueue } from './redeploy-queue';
import type { ApprovalCarry } from './approval';
import type { DriftCarry } from './drift';
import type { RetrainingCarry } from './retraining';
import type { StatusTracker } from './status';
import { definedSizing, deployVersion, promote } from './steps';

/** State carried across continue-as-new while the workflow serves redeploy requests. */
export interface ServingCarry {
  result: PipelineResult;
  status: PipelineStatus;
  pending: PendingRedeploy[];
  /** When the serving phase ends (epoch ms), fixed by the first run. */
  deadline: number;
  nextId: number;
  /** When the next endpoint check is due (epoch ms): checks keep their pace across runs. */
  nextCheck?: number;
  /** `finish` came while this run was continuing as new: the next one ends once its queue is done. */
  finished?: boolean;
  /** Retraining requests, the one in progress and its children's answers (absent in runs of earlier code). */
  retraining?: RetrainingCarry;
  /** The model waiting for approval, and a decision on it not yet carried out. */
  approval?: ApprovalCarry;
  /** When the next drift check is due, and where its window starts. */
  drift?: DriftCarry;
}

/**
 * What the run waits in between requests: awaiting-approval while a model waits for a decision;
 * until a deployment succeeds, deploy-failed (a redeploy retries it).
 */
export const idleStage = (result: PipelineResult, status: PipelineStatus): Stage =>
  status.approval?.pending ? 'awaiting-approval' : result.deployment ? 'serving' : 'deploy-failed';

/**
 * Runs one queued request and answers its update, if it came as one. Its deploy is cancelled once
 * `handOverWhen` holds: then the request goes back to the head of the queue, for the next run, and
 * the answer is undefined.
 */
export async function runRedeploy(
  params: PipelineParams,
  next: PendingRedeploy,
  queue: RedeployQueue,
  status: StatusTracker,
  result: PipelineResult,
  handOverWhen?: () => boolean,
): Promise<RedeployRecord | undefined> {
  status.stage('redeploying');
  const record = await redeploy(params, next, result.deployment ?? { version: result.version }, handOverWhen);
  if (!record) {
    queue.handBack(next);
    status.update((s) => void (s.redeploysHandedOver = (s.redeploysHandedOver ?? 0) + 1));
    status.stage(idleStage(result, status.status));
    return undefined;
  }
  status.redeployed(record);
  if (record.deployment) {
    result.deployment = record.deployment;
    status.update((s) => delete s.deployError);
    // The promotion the failed first deployment held back, now that its version serves.
    if (result.pendingPromotion?.version === record.deployment.version) {
      await promote(result.pendingPromotion, status);
      delete result.pendingPromotion;
    }
  }
  queue.outcomes.set(next.id, record);
  status.stage(idleStage(result, status.status));
  return record;
}

/**
 * Ends this run, carrying everything the next one needs; update callers have their answers first.
 * `carry` is read last, so that a request (or `finish`) that came meanwhile travels too.
 */
export async function continueAsNew(input: PipelineInput | undefined, carry: ServingCarry | (() => ServingCarry)): Promise<never> {
  await condition(allHandlersFinished);
  // The next run starts on the current build (each run stays pinned to one build), so a serving
  // workflow never holds an old build alive for longer than versionCheckSeconds. Unversioned
  // workers must not ask for it: the server rejects the command from them.
  const versioned = workflowInfo().currentDeploymentVersion !== undefined;
  const next = typeof carry === 'function' ? carry() : carry;
  return makeContinueAsNewFunc<typeof cnnSkinCancerWorkflow>(versioned ? { initialVersioningBehavior: 'AUTO_UPGRADE' } : {})(input, next);
}

/**
 * The run's end, once the loop is over: its result, or a failure when nothing was ever deployed
 * (whoever awaits the run must not read "finished" then).
 */
export async function endServing(
  result: PipelineResult,
  status: StatusTracker,
  failWhenNeverDeployed: () => boolean = () => true,
): Promise<PipelineResult> {
  await condition(allHandlersFinished);
  if (!result.deployment && failWhenNeverDeployed()) {
    status.stage('failed');
    throw ApplicationFailure.nonRetryable(
      `the run ended without a successful deployment of ${result.model} v${result.version} (${status.status.deployError ?? 'no deployment'}); ` +
        `the trained versions stay registered: start a new run, or keep the next one alive (lifetimeSeconds) to retry with a redeploy`,
      FAILURE.neverDeployed,
    );
  }
  status.stage('finished');
  return { ...result, stage: 'finished' };
}

/**
 * The run's end (finish, or its lifetime is over) is its endpoint's: a local server stops and its
 * state is removed, so ports and memory do not pile up on a long-lived machine; a SageMaker
 * endpoint is deleted with its configs and models when the run asked for it (deleteEndpointAtEnd),
 * and otherwise stays in service. A run with lifetimeSeconds 0 keeps its endpoint: the deployment
 * is what that run produces.
 */
export async function retireEndpoint(params: PipelineParams, result: PipelineResult): Promise<void> {
  const target = result.deployment?.target ?? params.deployTarget;
  if (params.lifetimeSeconds === 0 || (target === 'sagemaker' && !params.deleteEndpointAtEnd)) return;
  const what = target === 'local' ? `Stop local endpoint ${params.endpointName}` : `Delete SageMaker endpoint ${params.endpointName}`;
  await deploy.retireEndpoint.executeWithOptions({ summary: `${what}: its run ends` }, [{ target, endpointName: params.endpointName }]);
}

/** Records what the endpoint check found; a check that could not run at all says so as `down`. */
export async function checkEndpoint(deployment: Deployment, status: StatusTracker): Promise<void> {
  const { target, endpointName, registeredModelName, version, instanceType, instanceCount } = deployment;
  let endpoint: EndpointHealth;
  try {
    // Deployments made by earlier code did not record their model's location.
    const model = deployment.modelUri
      ? { registeredModelName, version, modelUri: deployment.modelUri }
      : await registry.resolveModelVersion.executeWithOptions({ summary: `Resolve ${registeredModelName} v${version}` }, [
          { registeredModelName, version },
        ]);
    endpoint = await health.checkEndpoint.executeWithOptions(
      { summary: `Check endpoint ${endpointName}: serves ${registeredModelName} v${version}` },
      [{ target, endpointName, model, ...definedSizing({ instanceType, instanceCount }) }],
    );
  } catch (err) {
    endpoint = { state: 'down', detail: `the check failed: ${errorMessage(err)}`, checkedAt: new Date().toISOString() };
  }
  status.endpoint(endpoint);
}

/** What a redeploy starts from: the deployment serving, or only the version the failed first deployment meant to serve. */
type Current = Pick<Deployment, 'version'> & Partial<Pick<Deployment, 'instanceType' | 'instanceCount'>>;

async function redeploy(
  params: PipelineParams,
  next: PendingRedeploy,
  current: Current,
  handOverWhen?: () => boolean,
): Promise<RedeployRecord | undefined> {
  const { request, via } = next;
  // Requests are checked on arrival; runs of earlier code queued them unchecked.
  const invalid = validateRedeploy(request, params);
  if (invalid) return { request, via, outcome: 'rejected', reason: invalid };
  try {
    // Sizing alone re-deploys the version being served; otherwise the current sizing carries over.
    const version = request.version ?? (request.alias === undefined ? current.version : undefined);
    const instance = definedSizing({
      instanceType: request.instanceType ?? current.instanceType,
      instanceCount: request.instanceCount ?? current.instanceCount,
    });
    // The same key in the run it may be handed to: a SageMaker update it sent is known there.
    const deployKey = `${workflowInfo().firstExecutionRunId}/redeploy-${next.id}`;
    // Handed over as a whole: a lookup whose attempt was lost waits its timeout out as long as a deploy.
    const resolveAndDeploy = async (): Promise<Deployment> => {
      const ref = await registry.resolveModelVersion.executeWithOptions(
        { summary: `Resolve ${params.registeredModelName} ${request.alias ? `alias ${request.alias}` : `v${version}`}` },
        [{ registeredModelName: params.registeredModelName, version, alias: request.alias }],
      );
      const summary =
        `Redeploy ${ref.registeredModelName} v${ref.version} to ${params.endpointName}` +
        (instance.instanceType ? ` on ${instance.instanceCount ?? 1} x ${instance.instanceType}` : '');
      return deployVersion(params, ref, instance, summary, deployKey);
    };
    const deployment = handOverWhen ? await cancelledWhen(handOverWhen, resolveAndDeploy) : await resolveAndDeploy();
    return deployment && { request, via, outcome: 'deployed', deployment };
  } catch (err) {
    // A failed redeploy is recorded; the workflow keeps owning (and serving) the endpoint.
    return { request, via, outcome: 'failed', reason: errorMessage(err) };
  }
}

/**
 * `work`'s result, or undefined once `stop` holds and `work` has stopped for it (cancelled; an
 * activity it awaits is waited for until it has stopped). A cancellation from outside (the
 * workflow's) goes on as it came.
 */
async function cancelledWhen<T>(stop: () => boolean, work: () => Promise<T>): Promise<T | undefined> {
  const scope = new CancellationScope();
  const watch = new CancellationScope();
  let stopped = false;
  watch
    .run(() => condition(stop))
    .then(
      () => {
        stopped = true;
        scope.cancel();
      },
      () => undefined,
    );
  try {
    return await scope.run(work);
  } catch (err) {
    if (stopped && isCancellation(err)) return undefined;
    throw err;
  } finally {
    watch.cancel();
  }
}
