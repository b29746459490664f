/**
 * The serving phase: after its first deployment (or its failure) the workflow stays alive as the
 * endpoint's owner and runs `redeploy` requests (signals and updates, one queue) one at a time, in
 * arrival order.
 * Its state travels across continue-as-new as a ServingCarry.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  makeContinueAsNewFunc,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Deployment, EndpointHealth } from '../common/types';
import { FAILURE } from '../common/failures';
import { health, registry } from './activities';
import { errorMessage } from './errors';
import { validateRedeploy, type PipelineInput, type PipelineParams } from './input';
import {
  finishSignal,
  redeploySignal,
  redeployUpdate,
  type PipelineStatus,
  type RedeployRecord,
  type RedeployRequest,
  type Stage,
} from './messages';
import type { cnnSkinCancerWorkflow, PipelineResult } from './pipeline';
import type { StatusTracker } from './status';
import { definedSizing, deployVersion, promote } from './steps';

export interface PendingRedeploy {
  id: number;
  request: RedeployRequest;
  via: RedeployRecord['via'];
}

/** State carried across continue-as-new while the workflow serves redeploy requests. */
export interface ServingCarry {
  result: PipelineResult;
  status: PipelineStatus;
  pending: PendingRedeploy[];
  /** When the serving phase ends (epoch ms), fixed by the first run. */
  deadline: number;
  nextId: number;
}

/** The redeploy queue and its handlers; registered at the start so requests sent during training wait their turn. */
export class RedeployQueue {
  readonly pending: PendingRedeploy[];
  readonly outcomes = new Map<number, RedeployRecord>();
  nextId: number;
  finished = false;

  constructor(params: PipelineParams, carry?: ServingCarry) {
    this.pending = carry?.pending ?? [];
    this.nextId = carry?.nextId ?? 1;
    setHandler(redeploySignal, (request) => void this.pending.push({ id: this.nextId++, request, via: 'signal' }));
    // Updates join the same queue as signals and wait for their turn's outcome.
    setHandler(
      redeployUpdate,
      async (request) => {
        const id = this.nextId++;
        this.pending.push({ id, request, via: 'update' });
        await condition(() => this.outcomes.has(id));
        const record = this.outcomes.get(id)!;
        this.outcomes.delete(id);
        if (record.outcome === 'deployed') return record.deployment!;
        throw ApplicationFailure.nonRetryable(`redeploy failed: ${record.reason}`, FAILURE.redeployFailed);
      },
      {
        validator: (request) => {
          const invalid = validateRedeploy(request, params);
          if (invalid) throw new Error(invalid);
        },
      },
    );
    setHandler(finishSignal, () => void (this.finished = true));
  }
}

/**
 * Serves redeploy requests until the lifetime ends or `finish` arrives (in stage deploy-failed
 * while nothing serves yet); continues as new when the server suggests it or a newer worker build
 * is the target, carrying everything the next run needs.
 */
export async function serve(
  params: PipelineParams,
  input: PipelineInput | undefined,
  queue: RedeployQueue,
  status: StatusTracker,
  result: PipelineResult,
  deadline: number,
): Promise<PipelineResult> {
  const { pending } = queue;
  // Set by the server once a newer worker build is current (or ramping for this run); seen at the
  // next workflow task, hence the periodic wake-up.
  const newerBuild = (): boolean => workflowInfo().targetWorkerDeploymentVersionChanged === true;
  // Until a deployment succeeds, the run waits in deploy-failed for a redeploy to retry it.
  const idle = (): Stage => (result.deployment ? 'serving' : 'deploy-failed');
  status.stage(idle());
  // Runs started by earlier code never checked their endpoint.
  const checks = patched('endpoint-health-checks');
  let nextCheck = Date.now() + params.endpointCheckSeconds * 1000;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0 && pending.length === 0) break;
    const wake = Math.min(remaining, params.versionCheckSeconds * 1000, checks ? nextCheck - Date.now() : Infinity);
    await condition(() => pending.length > 0 || queue.finished || workflowInfo().continueAsNewSuggested || newerBuild(), Math.max(wake, 1));
    if (queue.finished && pending.length === 0) break;
    if (checks && result.deployment && pending.length === 0 && Date.now() >= nextCheck) {
      await checkEndpoint(result.deployment, status);
      nextCheck = Date.now() + params.endpointCheckSeconds * 1000;
      continue;
    }
    const next = pending.shift();
    if (next) {
      status.stage('redeploying');
      const record = await redeploy(params, next, result.deployment ?? { version: result.version });
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
      status.stage(idle());
    } else if (workflowInfo().continueAsNewSuggested || newerBuild()) {
      // Update callers must have their answers before this run ends.
      await condition(allHandlersFinished);
      if (pending.length === 0) {
        const carry: ServingCarry = { result, status: status.status, pending, deadline, nextId: queue.nextId };
        // The next run starts on the current build (each run stays pinned to one build), so a
        // serving workflow never holds an old build alive for longer than versionCheckSeconds.
        // Unversioned workers must not ask for it: the server rejects the command from them.
        const versioned = workflowInfo().currentDeploymentVersion !== undefined;
        await makeContinueAsNewFunc<typeof cnnSkinCancerWorkflow>(versioned ? { initialVersioningBehavior: 'AUTO_UPGRADE' } : {})(
          input,
          carry,
        );
      }
    }
  }
  await condition(allHandlersFinished);
  // Whoever awaits the run must not read "finished" when nothing was ever deployed (runs started
  // by earlier code completed that way).
  if (!result.deployment && patched('fail-when-never-deployed')) {
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

/** Records what the endpoint check found; a check that could not run at all says so as `down`. */
async function checkEndpoint(deployment: Deployment, status: StatusTracker): Promise<void> {
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
  status.update((s) => void (s.endpoint = endpoint));
}

/** What a redeploy starts from: the deployment serving, or only the version the failed first deployment meant to serve. */
type Current = Pick<Deployment, 'version'> & Partial<Pick<Deployment, 'instanceType' | 'instanceCount'>>;

async function redeploy(params: PipelineParams, next: PendingRedeploy, current: Current): Promise<RedeployRecord> {
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
    const instance = definedSizing({
      instanceType: request.instanceType ?? current.instanceType,
      instanceCount: request.instanceCount ?? current.instanceCount,
    });
    const summary =
      `Redeploy ${ref.registeredModelName} v${ref.version} to ${params.endpointName}` +
      (instance.instanceType ? ` on ${instance.instanceCount ?? 1} x ${instance.instanceType}` : '');
    return { request, via, outcome: 'deployed', deployment: await deployVersion(params, ref, instance, summary) };
  } catch (err) {
    // A failed redeploy is recorded; the workflow keeps owning (and serving) the endpoint.
    return { request, via, outcome: 'failed', reason: errorMessage(err) };
  }
}
