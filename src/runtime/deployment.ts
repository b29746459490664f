/**
 * Worker Deployment operations the local launcher, the demo and the tests need: which version is
 * current, and making a version current once its workers poll every task queue.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { temporal } from '@temporalio/proto';

type WorkflowService = temporal.api.workflowservice.v1.WorkflowService;

export interface DeploymentRef {
  namespace: string;
  deploymentName: string;
}

/** The build id of the deployment's current version, or undefined when it has none (or does not exist yet). */
export async function currentBuildId(service: WorkflowService, ref: DeploymentRef): Promise<string | undefined> {
  try {
    const { workerDeploymentInfo } = await service.describeWorkerDeployment(ref);
    return workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId || undefined;
  } catch (err) {
    if ((err as { code?: number }).code === 5) return undefined; // NOT_FOUND: no worker has polled yet
    throw err;
  }
}

/**
 * Makes `buildId` current. The server accepts it only once that version polls every task queue the
 * deployment has seen, which takes a moment after its workers start: retried until `timeoutMs`.
 */
export async function setCurrentVersion(
  service: WorkflowService,
  ref: DeploymentRef & { buildId: string },
  { timeoutMs = 60_000, identity = 'cnn-skin-cancer' } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await service.setWorkerDeploymentCurrentVersion({ ...ref, identity });
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`could not make ${ref.deploymentName}.${ref.buildId} current: ${(err as Error).message}`);
      }
      await sleep(500);
    }
  }
}

/**
 * Makes `buildId` current unless it already is (waiting for its workers to poll, as
 * setCurrentVersion does). Returns the build id that was current before, if another was.
 */
export async function makeCurrent(
  service: WorkflowService,
  ref: DeploymentRef & { buildId: string },
  options: { timeoutMs?: number; identity?: string } = {},
): Promise<{ changed: boolean; previous?: string }> {
  const before = await currentBuildId(service, ref);
  if (before === ref.buildId) return { changed: false };
  await setCurrentVersion(service, ref, options);
  return { changed: true, previous: before };
}

/** The drainage status of a version: 'DRAINING', 'DRAINED' or undefined (current, ramping, or not yet checked). */
export async function drainageStatus(service: WorkflowService, ref: DeploymentRef & { buildId: string }): Promise<string | undefined> {
  const { workerDeploymentVersionInfo } = await service.describeWorkerDeploymentVersion({
    namespace: ref.namespace,
    deploymentVersion: { deploymentName: ref.deploymentName, buildId: ref.buildId },
  });
  const { VERSION_DRAINAGE_STATUS_DRAINING, VERSION_DRAINAGE_STATUS_DRAINED } = temporal.api.enums.v1.VersionDrainageStatus;
  const status = workerDeploymentVersionInfo?.drainageInfo?.status;
  return status === VERSION_DRAINAGE_STATUS_DRAINING ? 'DRAINING' : status === VERSION_DRAINAGE_STATUS_DRAINED ? 'DRAINED' : undefined;
}
