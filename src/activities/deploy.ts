/**
 * Deploy activity (queue ml-pipeline).
 * - `local`: the inference server on localhost; success only after /ping answers and a real
 *   prediction comes back from the served version.
 * - `sagemaker`: model, endpoint config and endpoint (created or updated blue/green); success only
 *   once the endpoint is InService on the intended config. An auto-rollback is a failure.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { DeployTarget } from '../common/constants';
import { FAILURE } from '../common/failures';
import type { DeployInput, Deployment, EndpointHealth } from '../common/types';
import type { SageMakerConfig } from '../config';
import { activityIdentity, keepAlive } from './attempts';
import type { SageMakerApi } from '../sagemaker/api';
import { deleteSageMakerEndpoint, deployToSageMaker, SageMakerDeployError } from '../sagemaker/deploy';
import { getJson, postJson, type LocalEndpoints, type ServedModel } from '../serving/local-endpoints';
import type { Prediction } from '../serving/server';
import { MODEL_ARCHIVE } from '../ml/model-store';
import { driftPrefixOf } from '../monitoring/drift';
import { ENDPOINT_DRIFT_SAMPLE_ENV } from '../serving/drift-recorder';
import { joinUri } from '../storage/s3';

interface DeployHeartbeat {
  what: string;
  updateIssued?: string;
}

export interface DeployDeps {
  local: LocalEndpoints;
  sagemaker?: {
    api: SageMakerApi;
    config: SageMakerConfig;
    /** For the endpoint's invocation URL in the result. */
    region?: string;
    sleep?: (ms: number) => Promise<void>;
  };
  /** Where the endpoints' servers write their drift samples (DRIFT_SAMPLE_URI; a prefix per endpoint below it). */
  driftSampleUri?: string;
  /** The worker's default target and whether it runs in a pod (config.deploy); default: local, not in a pod. */
  target?: { defaultTarget: DeployTarget; inCluster: boolean };
}

export function createDeployActivities(deps: DeployDeps) {
  const target = deps.target ?? { defaultTarget: 'local', inCluster: false };
  return {
    /**
     * The target a run deploys to: the one its input names, else this worker's default. Asked
     * before any work is done, so a target that cannot work here fails the run at once.
     */
    async resolveDeployTarget({ requested }: { requested?: DeployTarget }): Promise<DeployTarget> {
      const chosen = requested ?? target.defaultTarget;
      if (chosen === 'local' && target.inCluster) throw localInPod(requested === undefined);
      return chosen;
    },

    /**
     * Deploys, heartbeating every second whatever the step, so that a cancellation (which
     * comes with a heartbeat's answer) stops it within seconds: a SageMaker deploy stops waiting
     * (the endpoint's update goes on, and the next deploy of the same version waits for it), a
     * local one aborts its requests to the server.
     */
    async deployModel(input: DeployInput): Promise<Deployment> {
      if (input.target === 'local' && target.inCluster) throw localInPod(false);
      const started = Date.now();
      const done = (
        fields: Omit<
          Deployment,
          'target' | 'endpointName' | 'registeredModelName' | 'version' | 'modelUri' | 'deployedAt' | 'durationSeconds'
        >,
      ) => ({
        target: input.target,
        endpointName: input.endpointName,
        registeredModelName: input.model.registeredModelName,
        version: input.model.version,
        modelUri: input.model.modelUri,
        deployedAt: new Date().toISOString(),
        durationSeconds: (Date.now() - started) / 1000,
        ...fields,
      });
      const beat = keepAlive(Context.current(), KEEP_ALIVE_MS);
      try {
        if (input.target === 'sagemaker') return done(await deploySageMaker(deps, input, beat.heartbeat));
        if (input.instanceType !== undefined || input.instanceCount !== undefined) {
          throw ApplicationFailure.nonRetryable(
            'instanceType and instanceCount apply to the sagemaker target only',
            FAILURE.invalidDeployRequest,
          );
        }
        const { url, unchanged } = await deployLocal(deps.local, input, beat.heartbeat);
        return done({ url, unchanged });
      } finally {
        beat.stop();
      }
    },

    /**
     * Ends the endpoint of a run that is ending (finish, or its lifetime is over). A local one: its
     * server stops and its state is removed, unless a run of another workflow deployed to the same
     * name since (that one owns it now). A SageMaker one (only when the run asked for it,
     * deleteEndpointAtEnd): the endpoint, then its configs and models. Returns what was done.
     */
    async retireEndpoint({ target, endpointName }: { target: DeployTarget; endpointName: string }): Promise<string> {
      const ctx = Context.current();
      if (target === 'sagemaker') {
        const sm = deps.sagemaker;
        if (!sm) throw ApplicationFailure.nonRetryable('this worker has no SageMaker client configured', FAILURE.sageMakerConfig);
        const removed = await deleteSageMakerEndpoint(sm.api, endpointName, sm.config, {
          progress: (what) => ctx.heartbeat(what),
          sleep: sm.sleep ?? ((ms) => ctx.sleep(ms)),
        });
        return removed.length
          ? `deleted ${removed.join(', ')}`
          : `SageMaker has no endpoint '${endpointName}' nor any config or model of it`;
      }
      const owner = ctx.info.workflowExecution?.workflowId;
      const state = deps.local.read(endpointName);
      if (state?.owner !== undefined && owner !== undefined && state.owner !== owner)
        return `endpoint '${endpointName}' is owned by workflow ${state.owner} now: left running`;
      const stopped = await deps.local.retire(endpointName);
      return stopped ? `endpoint '${endpointName}' stopped and its state removed` : `endpoint '${endpointName}' was not running`;
    },

    /**
     * Whether the endpoint serves the version its run says it does. A local endpoint is put right
     * (a crashed or hung server is started again on its URL, another version swapped back out);
     * a SageMaker endpoint's state is reported. Never fails: what it found is the answer.
     */
    async checkEndpoint(input: EndpointCheck): Promise<EndpointHealth> {
      const checkedAt = () => new Date().toISOString();
      try {
        if (input.target === 'sagemaker') return { ...(await sageMakerHealth(deps, input.endpointName)), checkedAt: checkedAt() };
        const ctx = Context.current();
        const { unchanged, restarted } = await deployLocal(deps.local, input, (what) => ctx.heartbeat(what));
        const detail = unchanged
          ? `serves v${input.model.version}`
          : (restarted ?? `it served another version; v${input.model.version} swapped back in`);
        return { state: unchanged ? 'up' : 'repaired', detail, checkedAt: checkedAt() };
      } catch (err) {
        return { state: 'down', detail: (err as Error).message, checkedAt: checkedAt() };
      }
    },
  };
}

/** SageMaker keeps serving while it updates; any other state but InService means it does not. */
async function sageMakerHealth(deps: DeployDeps, endpointName: string): Promise<Omit<EndpointHealth, 'checkedAt'>> {
  if (!deps.sagemaker) return { state: 'down', detail: 'this worker has no SageMaker client configured' };
  const info = await deps.sagemaker.api.describeEndpoint(endpointName);
  if (!info) return { state: 'down', detail: `SageMaker has no endpoint '${endpointName}'` };
  const serving = ['InService', 'Updating', 'SystemUpdating'].includes(info.status);
  return {
    state: serving ? 'up' : 'down',
    detail: `${info.status} on ${info.configName}${info.failureReason ? `: ${info.failureReason}` : ''}`,
  };
}

function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function localInPod(defaulted: boolean): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `deployTarget 'local' would start the endpoint on this worker pod's loopback, which nothing outside the pod can reach ` +
      `and which dies with the pod. Start the run with "deployTarget": "sagemaker"` +
      (defaulted ? `, or set DEFAULT_DEPLOY_TARGET=sagemaker on the ml-pipeline worker (the cluster overlays do)` : ''),
    FAILURE.invalidDeployRequest,
  );
}

/** The endpoint a run serves and the version it should serve. */
export type EndpointCheck = Omit<DeployInput, 'model'> & { model: ServedModel };

/**
 * How often the ml-pipeline worker sends heartbeats at most (its maxHeartbeatThrottleInterval): a
 * cancellation comes with a heartbeat's answer, so a cancelled deploy hears of it within about this.
 */
export const DEPLOY_HEARTBEAT_THROTTLE = '1s';
const KEEP_ALIVE_MS = 1_000;

async function deployLocal(
  local: LocalEndpoints,
  input: EndpointCheck,
  heartbeat: (what: string) => void,
): Promise<{ url: string; unchanged: boolean; restarted?: string }> {
  const ctx = Context.current();
  const owner = ctx.info.workflowExecution?.workflowId;
  const cancel = ctx.cancellationSignal;
  const { state, unchanged, restarted } = await local.deploy(input.endpointName, input.model, heartbeat, owner, cancel);
  const served = await getJson<{ version?: string; imageSize: number; classes: string[] }>(`${state.url}/model`, state.adminToken, cancel);
  if (served.version !== input.model.version) {
    throw new Error(`endpoint '${input.endpointName}' serves v${served.version} after deploying v${input.model.version}`);
  }
  // A real prediction on a neutral image proves the model loads and answers.
  const size = served.imageSize;
  const instance = Array.from({ length: size }, () => Array.from({ length: size }, () => [0.5, 0.5, 0.5]));
  const { predictions } = await postJson<{ predictions: Prediction[] }>(
    `${state.url}/invocations`,
    { instances: [instance] },
    undefined,
    undefined,
    cancel,
  );
  if (predictions?.length !== 1 || !served.classes.includes(predictions[0]!.label)) {
    throw new Error(`endpoint '${input.endpointName}' answered an unexpected prediction: ${JSON.stringify(predictions)}`);
  }
  return { url: state.url, unchanged, ...(restarted ? { restarted } : {}) };
}

async function deploySageMaker(deps: DeployDeps, input: DeployInput, heartbeat: (details: DeployHeartbeat) => void) {
  const ctx = Context.current();
  const sm = deps.sagemaker;
  if (!sm) throw ApplicationFailure.nonRetryable('this worker has no SageMaker client configured', FAILURE.sageMakerConfig);
  const { imageUri, executionRoleArn } = sm.config;
  if (!imageUri || !executionRoleArn) {
    throw ApplicationFailure.nonRetryable(
      `deploying to SageMaker needs ${[!imageUri && 'SAGEMAKER_IMAGE_URI', !executionRoleArn && 'SAGEMAKER_EXECUTION_ROLE_ARN'].filter(Boolean).join(' and ')} set on the ml-pipeline worker`,
      FAILURE.sageMakerConfig,
    );
  }
  if (!input.model.modelUri.startsWith('s3://')) {
    throw ApplicationFailure.nonRetryable(
      `SageMaker needs the model in S3; version ${input.model.version} is at ${input.model.modelUri}`,
      FAILURE.sageMakerConfig,
    );
  }
  const instanceType = input.instanceType ?? sm.config.instanceType;
  const instanceCount = input.instanceCount ?? sm.config.instanceCount;
  if (!sm.config.allowedInstanceTypes.includes(instanceType)) {
    throw ApplicationFailure.nonRetryable(
      `instance type ${instanceType} is not allowed here (SAGEMAKER_INSTANCE_TYPES on the ml-pipeline worker: ` +
        `${sm.config.allowedInstanceTypes.join(', ')}); choose one of those, or add it there and to the worker's IAM policy`,
      FAILURE.invalidDeployRequest,
    );
  }
  let updateIssued = (ctx.info.heartbeatDetails as DeployHeartbeat | undefined)?.updateIssued;
  try {
    const out = await deployToSageMaker(
      sm.api,
      { ...sm.config, imageUri, executionRoleArn },
      {
        endpointName: input.endpointName,
        registeredModelName: input.model.registeredModelName,
        version: input.model.version,
        modelDataUrl: joinUri(input.model.modelUri, MODEL_ARCHIVE),
        instanceType,
        instanceCount,
        ...(deps.driftSampleUri
          ? { environment: { [ENDPOINT_DRIFT_SAMPLE_ENV]: driftPrefixOf(deps.driftSampleUri, input.endpointName) } }
          : {}),
      },
      {
        // The heartbeat carries which update was sent, so a retried attempt can tell a rollback
        // of it from a deploy that never got that far.
        progress: (what, issued) => {
          if (issued) updateIssued = issued;
          heartbeat({ what, updateIssued });
        },
        sleep: sm.sleep ?? ((ms) => ctx.sleep(ms)),
        updateIssuedBefore: (ctx.info.heartbeatDetails as DeployHeartbeat | undefined)?.updateIssued,
        // The same for every attempt of this deploy; by default different for the next (a redeploy is another activity).
        attemptKey: hashKey(input.deployKey ?? activityIdentity(ctx.info)),
      },
    );
    return {
      url: sm.region ? `https://runtime.sagemaker.${sm.region}.amazonaws.com/endpoints/${input.endpointName}/invocations` : out.arn,
      arn: out.arn,
      endpointConfigName: out.endpointConfigName,
      instanceType,
      instanceCount,
      unchanged: out.action === 'unchanged',
      removed: out.removed,
    };
  } catch (err) {
    if (err instanceof SageMakerDeployError) {
      throw ApplicationFailure.nonRetryable(err.message, err.rolledBack ? FAILURE.endpointRolledBack : FAILURE.endpointFailed);
    }
    throw err;
  }
}
