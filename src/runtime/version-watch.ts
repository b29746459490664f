/**
 * A versioned worker whose version is not the deployment's current one runs no new workflow: new
 * runs go to the current version, or wait when there is none. Nothing in Temporal says so to the
 * person who started the worker; this says it in the worker's log, with the command that fixes it,
 * until the version becomes current (or the worker stops).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { temporal } from '@temporalio/proto';
import { currentBuildId, type DeploymentRef } from './deployment';

export interface VersionWatchOptions {
  /** First look after this long (its peers may still be starting), then every `everyMs`. */
  firstMs?: number;
  everyMs?: number;
  signal: AbortSignal;
  warn: (message: string, meta: Record<string, unknown>) => void;
}

/** Resolves once this version is current, or when `signal` aborts; never rejects (a failed look is retried). */
export async function watchCurrentVersion(
  service: temporal.api.workflowservice.v1.WorkflowService,
  ref: DeploymentRef & { buildId: string },
  { firstMs = 30_000, everyMs = 300_000, signal, warn }: VersionWatchOptions,
): Promise<void> {
  const wait = (ms: number) =>
    sleep(ms, undefined, { signal }).then(
      () => true,
      () => false,
    );
  if (!(await wait(firstMs))) return;
  for (;;) {
    const current = await currentBuildId(service, ref).catch(() => null);
    if (current === ref.buildId) return;
    if (current !== null)
      warn(
        `this worker polls as ${ref.deploymentName}.${ref.buildId}, which is not the deployment's current version ` +
          `(${current ? `current: ${ref.deploymentName}.${current}; new runs go there` : 'there is none: new runs wait'}). ` +
          `Once every worker of this build polls, make it current: temporal worker deployment set-current-version ` +
          `--deployment-name ${ref.deploymentName} --build-id ${ref.buildId}`,
        { deploymentName: ref.deploymentName, buildId: ref.buildId, currentBuildId: current ?? null },
      );
    if (!(await wait(everyMs))) return;
  }
}
