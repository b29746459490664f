/**
 * The serving loop of runs started before requests were checked on arrival (patch `serving-bounds`,
 * redeploy-queue.ts), kept command for command so that their histories replay: in
 * test/workflows/histories, serving-deploy-failed-before-bounds (its 1 ms timers in deploy-failed),
 * pipeline-redeploy (a malformed signal run through the loop) and the other runs recorded before
 * the patch. Remove it once no such run can be open (they continue as new into the new loop).
 */
import { allHandlersFinished, condition, patched, workflowInfo } from '@temporalio/workflow';
import type { PipelineInput, PipelineParams } from './input';
import type { PipelineResult } from './pipeline';
import type { RedeployQueue } from './redeploy-queue';
import { checkEndpoint, continueAsNew, endServing, idleStage, runRedeploy } from './serving-steps';
import type { StatusTracker } from './status';

export async function serveAsBefore(
  params: PipelineParams,
  input: PipelineInput | undefined,
  queue: RedeployQueue,
  status: StatusTracker,
  result: PipelineResult,
  deadline: number,
): Promise<PipelineResult> {
  const { pending } = queue;
  const newerBuild = (): boolean => workflowInfo().targetWorkerDeploymentVersionChanged === true;
  status.stage(idleStage(result, status.status));
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
    const next = queue.next();
    if (next) {
      await runRedeploy(params, next, queue, status, result);
    } else if (workflowInfo().continueAsNewSuggested || newerBuild()) {
      // Update callers must have their answers before this run ends.
      await condition(allHandlersFinished);
      if (pending.length === 0) await continueAsNew(input, { result, status: status.status, pending, deadline, nextId: queue.nextId });
    }
  }
  // Runs started by earlier code completed even when nothing was ever deployed.
  return endServing(result, status, () => patched('fail-when-never-deployed'));
}
