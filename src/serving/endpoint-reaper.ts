/**
 * A terminated workflow runs no more code, so it cannot stop the local endpoint it owned, and
 * neither can one that failed or timed out. The ml-pipeline worker sweeps the endpoints' state
 * files instead: an endpoint whose owner workflow is closed in any way but completion is stopped
 * and its state removed. A completed owner stopped its endpoint itself, unless it kept it on
 * purpose (lifetimeSeconds 0); an endpoint with no owner recorded, or whose owner Temporal does
 * not know, is left alone (`npm run stack -- status` lists them, with the command that stops one).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { temporal } from '@temporalio/proto';
import type { LocalEndpoints } from './local-endpoints';

/** How an owner workflow stands: its latest run's status, or unknown (not found, or Temporal could not be asked). */
export type OwnerStanding = 'running' | 'completed' | 'ended' | 'unknown';

const Status = temporal.api.enums.v1.WorkflowExecutionStatus;

/** Asks Temporal how the workflow `workflowId` (its latest run) stands. */
export function ownerStanding(service: temporal.api.workflowservice.v1.WorkflowService, namespace: string) {
  return async (workflowId: string): Promise<OwnerStanding> => {
    let status: temporal.api.enums.v1.WorkflowExecutionStatus | null | undefined;
    try {
      status = (await service.describeWorkflowExecution({ namespace, execution: { workflowId } })).workflowExecutionInfo?.status;
    } catch {
      return 'unknown';
    }
    switch (status) {
      case Status.WORKFLOW_EXECUTION_STATUS_RUNNING:
      case Status.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
        return 'running';
      case Status.WORKFLOW_EXECUTION_STATUS_COMPLETED:
        return 'completed';
      case Status.WORKFLOW_EXECUTION_STATUS_TERMINATED:
      case Status.WORKFLOW_EXECUTION_STATUS_FAILED:
      case Status.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
      case Status.WORKFLOW_EXECUTION_STATUS_CANCELED:
        return 'ended';
      default:
        return 'unknown';
    }
  };
}

/** One sweep: retires every endpoint whose owner ended without completing. Returns the names retired. */
export async function reapEndpoints(
  endpoints: LocalEndpoints,
  standing: (workflowId: string) => Promise<OwnerStanding>,
  log: (message: string, meta: Record<string, unknown>) => void = () => undefined,
): Promise<string[]> {
  const retired: string[] = [];
  for (const name of endpoints.names()) {
    const owner = endpoints.read(name)?.owner;
    if (owner === undefined || (await standing(owner)) !== 'ended') continue;
    // Read again: a run that deployed meanwhile owns it now.
    if (endpoints.read(name)?.owner !== owner) continue;
    const stopped = await endpoints.retire(name);
    retired.push(name);
    log(`stopped local endpoint '${name}': its owner workflow ${owner} ended without stopping it`, { endpoint: name, owner, stopped });
  }
  return retired;
}

/** Sweeps every `everyMs` until `signal` aborts; a failed sweep is logged and the next one runs. */
export async function sweepEndpoints(
  endpoints: LocalEndpoints,
  standing: (workflowId: string) => Promise<OwnerStanding>,
  { everyMs, signal, log }: { everyMs: number; signal: AbortSignal; log: (message: string, meta: Record<string, unknown>) => void },
): Promise<void> {
  for (;;) {
    await reapEndpoints(endpoints, standing, log).catch((err: Error) => log(`local endpoint sweep failed: ${err.message}`, {}));
    const go = await sleep(everyMs, true, { signal }).catch(() => false);
    if (!go) return;
  }
}
