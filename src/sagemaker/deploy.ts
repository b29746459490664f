/**
 * Deploys a registered model version to a SageMaker endpoint: CreateModel, CreateEndpointConfig
 * (named after the version and sizing), then CreateEndpoint or a blue/green UpdateEndpoint, and a
 * wait until the endpoint is InService on that config.
 *
 * Safe to repeat after a crash at any point: every name is derived from the request, so a retry
 * finds what the earlier attempt made instead of making it twice; an update already in progress is
 * waited for, not restarted. Configs and models of this endpoint that it no longer uses are
 * deleted after each deploy and listed in the result, so none is left behind unreported.
 */
import { createHash } from 'node:crypto';
import type { DeploymentConfig } from '@aws-sdk/client-sagemaker';
import type { SageMakerConfig } from '../config';
import type { EndpointInfo, SageMakerApi } from './api';

export interface SageMakerDeployRequest {
  endpointName: string;
  registeredModelName: string;
  version: string;
  /** s3://.../model.tar.gz */
  modelDataUrl: string;
  instanceType: string;
  instanceCount: number;
  /** The serving container's environment (its drift sample's prefix); part of the model's name. */
  environment?: Record<string, string>;
}

export interface SageMakerDeployResult {
  arn: string;
  endpointConfigName: string;
  action: 'created' | 'updated' | 'unchanged';
  /** Earlier configs and models of this endpoint that were deleted. */
  removed: string[];
}

/** A deploy that SageMaker refused or undid; `rolledBack` when an auto-rollback restored the old config. */
export class SageMakerDeployError extends Error {
  override readonly name = 'SageMakerDeployError';
  constructor(
    message: string,
    readonly rolledBack: boolean,
  ) {
    super(message);
  }
}

const TRANSITIONAL = new Set(['Creating', 'Updating', 'SystemUpdating', 'RollingBack', 'Deleting']);
const OWNER_TAG = 'cnn-skin-cancer:endpoint';

/** 8 hex digits of the sha256 of the whole endpoint name: what tells two endpoints apart once their names are cut. */
function endpointHash(endpointName: string): string {
  return createHash('sha256').update(endpointName).digest('hex').slice(0, 8);
}

/**
 * `<endpoint, cut to fit>-<hash of the endpoint name>-v<version>-<hash of image, artifact, role,
 * sizing>`, at most 63 characters. The endpoint's own hash keeps names of two endpoints apart even
 * where their names share every character that fits.
 */
export function resourceName(endpointName: string, version: string, identity: unknown): string {
  const hash = createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 8);
  const suffix = `-${endpointHash(endpointName)}-v${version}-${hash}`;
  return endpointName.slice(0, 63 - suffix.length) + suffix;
}

/**
 * Whether `name` is one of `endpointName`'s resources (as made by resourceName). Names made before
 * the endpoint's hash was part of them (`<endpoint>-v<version>-<hash>`) count only when they hold
 * the whole endpoint name: a cut one could be another endpoint's.
 */
export function ownedBy(endpointName: string, name: string): boolean {
  const m = /-([0-9a-f]{8})-v\d+-[0-9a-f]{8}$/.exec(name);
  if (m && m[1] === endpointHash(endpointName) && name.slice(0, m.index) === endpointName.slice(0, 63 - (name.length - m.index)))
    return true;
  const old = /-v\d+-[0-9a-f]{8}$/.exec(name);
  return old !== null && name.slice(0, old.index) === endpointName;
}

export function deploymentConfig(cfg: SageMakerConfig): DeploymentConfig {
  const step = { Type: 'CAPACITY_PERCENT' as const, Value: cfg.trafficPercent };
  const routing =
    cfg.trafficRouting === 'canary'
      ? { Type: 'CANARY' as const, WaitIntervalInSeconds: cfg.trafficWaitSeconds, CanarySize: step }
      : cfg.trafficRouting === 'linear'
        ? { Type: 'LINEAR' as const, WaitIntervalInSeconds: cfg.trafficWaitSeconds, LinearStepSize: step }
        : { Type: 'ALL_AT_ONCE' as const, WaitIntervalInSeconds: 0 };
  return {
    BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: routing, TerminationWaitInSeconds: cfg.trafficWaitSeconds },
    ...(cfg.rollbackAlarms.length ? { AutoRollbackConfiguration: { Alarms: cfg.rollbackAlarms.map((AlarmName) => ({ AlarmName })) } } : {}),
  };
}

export interface DeployHooks {
  /** Reports progress; `updateIssued` names the config an UpdateEndpoint was sent for. */
  progress: (what: string, updateIssued?: string) => void;
  sleep: (ms: number) => Promise<void>;
  /** The config an earlier attempt of this deploy had already sent an UpdateEndpoint for. */
  updateIssuedBefore?: string;
  /**
   * Names this deploy across its attempts (not the next deploy): before an UpdateEndpoint is sent
   * it is recorded in a tag of the endpoint, with the config, so an attempt that follows a crash
   * right after the send (before any heartbeat said so) still knows the update went out.
   */
  attemptKey?: string;
}

/** The endpoint tag holding `<attemptKey> <config>` of the last UpdateEndpoint this pipeline sent. */
export const UPDATE_TAG = 'cnn-skin-cancer:update-issued';

async function updateIssuedBefore(api: SageMakerApi, endpoint: EndpointInfo | undefined, hooks: DeployHooks): Promise<string | undefined> {
  if (hooks.updateIssuedBefore || !endpoint || !hooks.attemptKey) return hooks.updateIssuedBefore;
  const [key, config] = (await api.getTag(endpoint.arn, UPDATE_TAG))?.split(' ') ?? [];
  return key === hooks.attemptKey ? config : undefined;
}

export async function deployToSageMaker(
  api: SageMakerApi,
  cfg: SageMakerConfig & { imageUri: string; executionRoleArn: string },
  req: SageMakerDeployRequest,
  hooks: DeployHooks,
): Promise<SageMakerDeployResult> {
  const name = resourceName(req.endpointName, req.version, {
    image: cfg.imageUri,
    data: req.modelDataUrl,
    role: cfg.executionRoleArn,
    type: req.instanceType,
    count: req.instanceCount,
    ...(req.environment ? { env: req.environment } : {}),
  });
  const tags = { [OWNER_TAG]: req.endpointName, 'mlflow.registered_model': req.registeredModelName, 'mlflow.version': req.version };

  if (!(await api.modelExists(name))) {
    hooks.progress(`creating model ${name}`);
    await api.createModel({
      name,
      image: cfg.imageUri,
      modelDataUrl: req.modelDataUrl,
      roleArn: cfg.executionRoleArn,
      tags,
      ...(req.environment ? { environment: req.environment } : {}),
    });
  }
  if (!(await api.describeEndpointConfig(name))) {
    hooks.progress(`creating endpoint config ${name}`);
    await api.createEndpointConfig({ name, modelName: name, instanceType: req.instanceType, instanceCount: req.instanceCount, tags });
  }

  let endpoint = await api.describeEndpoint(req.endpointName);
  // An earlier attempt's create or update may still be running: let it finish, then judge.
  if (endpoint && TRANSITIONAL.has(endpoint.status)) endpoint = await waitSettled(api, req.endpointName, cfg, hooks);

  let action: SageMakerDeployResult['action'];
  // An earlier attempt's update ended on another config: it was rolled back, so sending it again
  // would only repeat the rollback.
  const rolledBackBefore = endpoint && (await updateIssuedBefore(api, endpoint, hooks)) === name && endpoint.configName !== name;
  if (rolledBackBefore) {
    action = 'updated';
  } else if (!endpoint) {
    hooks.progress(`creating endpoint ${req.endpointName} with ${name}`);
    await api.createEndpoint(req.endpointName, name, tags);
    action = 'created';
  } else if (endpoint.status === 'Failed') {
    throw new SageMakerDeployError(
      `endpoint '${req.endpointName}' is Failed (${endpoint.failureReason ?? 'no reason given'}); a failed endpoint cannot be updated: ` +
        `delete it (aws sagemaker delete-endpoint --endpoint-name ${req.endpointName}) and deploy again`,
      false,
    );
  } else if (endpoint.configName === name && endpoint.status === 'InService') {
    action = 'unchanged';
  } else {
    hooks.progress(`updating endpoint ${req.endpointName} from ${endpoint.configName} to ${name} (${cfg.trafficRouting})`);
    if (hooks.attemptKey) await api.setTag(endpoint.arn, UPDATE_TAG, `${hooks.attemptKey} ${name}`);
    await api.updateEndpoint(req.endpointName, name, deploymentConfig(cfg));
    hooks.progress(`update of ${req.endpointName} to ${name} sent`, name);
    action = 'updated';
  }

  const settled = action === 'unchanged' || rolledBackBefore ? endpoint! : await waitSettled(api, req.endpointName, cfg, hooks);
  const removed = await removeUnused(api, req.endpointName, settled.configName, hooks);
  if (settled.configName !== name) {
    throw new SageMakerDeployError(
      `endpoint '${req.endpointName}' was rolled back to ${settled.configName} instead of running ${name}` +
        ` (${settled.failureReason ?? 'no reason given'})` +
        (removed.length ? `; removed the unused ${removed.join(', ')}` : ''),
      true,
    );
  }
  if (settled.status !== 'InService') {
    throw new SageMakerDeployError(
      `endpoint '${req.endpointName}' ended ${settled.status} on ${name} (${settled.failureReason ?? 'no reason given'})`,
      false,
    );
  }
  return { arn: settled.arn, endpointConfigName: name, action, removed };
}

async function waitSettled(api: SageMakerApi, endpointName: string, cfg: SageMakerConfig, hooks: DeployHooks): Promise<EndpointInfo> {
  const deadline = Date.now() + cfg.maxWaitSeconds * 1000;
  for (;;) {
    const endpoint = await api.describeEndpoint(endpointName);
    if (!endpoint) throw new Error(`endpoint '${endpointName}' disappeared while deploying`);
    if (!TRANSITIONAL.has(endpoint.status)) return endpoint;
    hooks.progress(`endpoint ${endpointName}: ${endpoint.status}`);
    // Retryable: the next attempt picks up the same update where this one stopped waiting.
    if (Date.now() > deadline) throw new Error(`endpoint '${endpointName}' still ${endpoint.status} after ${cfg.maxWaitSeconds} s`);
    await hooks.sleep(cfg.pollSeconds * 1000);
  }
}

/** This endpoint's configs and models (by name) that the config `inUse` does not use. */
export async function unusedResources(
  api: SageMakerApi,
  endpointName: string,
  inUse: string | undefined,
): Promise<{ configs: string[]; models: string[] }> {
  const keepModels = new Set(inUse ? ((await api.describeEndpointConfig(inUse))?.modelNames ?? []) : []);
  const prefix = endpointName.slice(0, 40);
  const configs = (await api.listEndpointConfigs(prefix)).filter((c) => c !== inUse && ownedBy(endpointName, c));
  const models = (await api.listModels(prefix)).filter((m) => !keepModels.has(m) && ownedBy(endpointName, m));
  return { configs, models };
}

/**
 * Deletes the endpoint, then, once SageMaker no longer lists it, every config and model of it
 * (by the hash of its name in theirs: another endpoint's are never touched). Returns what it deleted.
 */
export async function deleteSageMakerEndpoint(
  api: SageMakerApi,
  endpointName: string,
  cfg: Pick<SageMakerConfig, 'pollSeconds' | 'maxWaitSeconds'>,
  hooks: Pick<DeployHooks, 'progress' | 'sleep'>,
): Promise<string[]> {
  const removed: string[] = [];
  if (await api.describeEndpoint(endpointName)) {
    hooks.progress(`deleting endpoint ${endpointName}`);
    await api.deleteEndpoint(endpointName);
    removed.push(`endpoint ${endpointName}`);
    const deadline = Date.now() + cfg.maxWaitSeconds * 1000;
    while (await api.describeEndpoint(endpointName)) {
      if (Date.now() > deadline) throw new Error(`endpoint '${endpointName}' still exists ${cfg.maxWaitSeconds} s after DeleteEndpoint`);
      await hooks.sleep(cfg.pollSeconds * 1000);
    }
  }
  return [...removed, ...(await removeUnused(api, endpointName, undefined, hooks))];
}

/** Deletes this endpoint's configs and models that its current config (if any) does not use. */
async function removeUnused(
  api: SageMakerApi,
  endpointName: string,
  inUse: string | undefined,
  hooks: Pick<DeployHooks, 'progress'>,
): Promise<string[]> {
  const { configs, models } = await unusedResources(api, endpointName, inUse);
  const removed: string[] = [];
  for (const c of configs.sort()) {
    hooks.progress(`deleting unused endpoint config ${c}`);
    await api.deleteEndpointConfig(c);
    removed.push(`endpoint config ${c}`);
  }
  for (const m of models.sort()) {
    await api.deleteModel(m);
    removed.push(`model ${m}`);
  }
  return removed;
}
