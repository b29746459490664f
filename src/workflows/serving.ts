/**
 * The serving phase: after its first deployment (or its failure) the workflow stays alive as the
 * endpoint's owner and runs `redeploy` requests (signals and updates, one queue, redeploy-queue.ts)
 * one at a time, in arrival order, checking its endpoint in between.
 * Its state travels across continue-as-new as a ServingCarry.
 */
import { condition, patched, workflowInfo } from '@temporalio/workflow';
import { BYTES_PER_EVENT, CONTINUE_AS_NEW_BYTES, CONTINUE_AS_NEW_EVENTS, HAND_OVER_BYTES, HAND_OVER_EVENTS, MIN_WAIT_MS } from './bounds';
import type { PipelineInput, PipelineParams } from './input';
import type { PipelineResult } from './pipeline';
import type { RedeployQueue } from './redeploy-queue';
import type { Approvals } from './approval';
import type { DriftWatch } from './drift';
import type { Retrainings } from './retraining';
import { serveAsBefore } from './serving-legacy';
import { checkEndpoint, continueAsNew, endServing, idleStage, retireEndpoint, runRedeploy } from './serving-steps';
import type { StatusTracker } from './status';

export { RedeployQueue, type PendingRedeploy } from './redeploy-queue';
export type { ServingCarry } from './serving-steps';

/** The answer to updates still queued when a flood makes the run hand over (their callers wait for this run's answer). */
const TURNED_AWAY = "not run: this run's history grew too long under a flood of requests, and it continues as new; send the request again";

/**
 * Serves redeploy requests until the lifetime ends or `finish` arrives (in stage deploy-failed
 * while nothing serves yet). Continues as new when its history grows long (under any flood of
 * requests), when the server suggests it, or when a newer worker build is the target, carrying
 * everything the next run needs. A flood that goes on while a redeploy runs interrupts it: the
 * redeploy is handed to the next run, which runs it first.
 */
export async function serve(
  params: PipelineParams,
  input: PipelineInput | undefined,
  queue: RedeployQueue,
  status: StatusTracker,
  result: PipelineResult,
  deadline: number,
  retrainings: Retrainings,
  approvals: Approvals,
  driftWatch: DriftWatch,
  carriedNextCheck?: number,
): Promise<PipelineResult> {
  if (!queue.checked) return serveAsBefore(params, input, queue, status, result, deadline);
  const { pending } = queue;
  status.stage(idleStage(result, status.status));
  const interval = params.endpointCheckSeconds * 1000;
  let nextCheck = carriedNextCheck ?? Date.now() + interval;
  // Runs that reached this point before this code never interrupted a redeploy.
  const handOver = patched('redeploy-handover');
  // A run that is ending does not continue as new: it finishes its queue, however long that takes.
  const handOverWhen = handOver ? () => !queue.closing && historyFull() : undefined;
  for (;;) {
    if (Date.now() >= deadline) queue.lifetimeOver = true;
    if (queue.closing && pending.length === 0) {
      await retrainings.abandon(approvals.abandoned());
      break;
    }
    // Once the run is ending, no request joins the queue: the few queued run here instead.
    if (!queue.closing && !queue.draining && timeToMoveOn()) queue.draining = true;
    // Queued updates run first (their callers wait for this run's answer); queued signals travel.
    // A history grown this long cannot wait for them: their callers are told to send them again.
    if (queue.draining && handOverWhen?.()) queue.turnAwayUpdates(TURNED_AWAY);
    if (queue.draining && !pending.some((p) => p.via === 'update')) {
      await status.settleNotifications();
      await continueAsNew(input, () => ({
        result,
        status: status.status,
        pending,
        deadline,
        nextId: queue.nextId,
        nextCheck,
        retraining: retrainings.carry(),
        approval: approvals.carry(),
        drift: driftWatch.carry(),
        ...(queue.finished ? { finished: true } : {}),
      }));
    }
    // A retraining trains in its own child workflow, while this loop serves on.
    if (retrainings.requested && !queue.closing && !queue.draining) {
      await retrainings.start(input!);
      continue;
    }
    const answer = retrainings.results.shift();
    if (answer) {
      await retrainings.conclude(answer, async (winner) => {
        if (params.approval.required) await approvals.request({ promotion: winner.promotion, retrained: winner });
        else queue.enqueueWinner(winner.promotion.version, winner);
      });
      continue;
    }
    // A decision on the model that waits (or its timeout): approved, it joins the queue; rejected, the champion stays.
    if (approvals.due) {
      await approvals.conclude({
        approved: ({ promotion, retrained }) => {
          // The run's first winner is promoted once it serves, as after a failed first deployment.
          if (!retrained) result.pendingPromotion = promotion;
          queue.enqueueWinner(promotion.version, retrained);
        },
        rejected: async ({ retrained }, decision) => {
          if (retrained) await retrainings.rejected(retrained, decision);
        },
      });
      status.stage(idleStage(result, status.status));
      continue;
    }
    const next = queue.next();
    if (next) {
      // A fresh deployment was verified as it was made. A redeploy handed over waits at the head of the queue.
      const record = await runRedeploy(params, next, queue, status, result, handOverWhen);
      if (record?.deployment) {
        nextCheck = Date.now() + interval;
        driftWatch.restart();
      }
      if (record && next.retrained) {
        await retrainings.deployed(next.retrained, record);
        // Its promotion (promote's stage) is over; runs of earlier code stayed in stage promoting.
        if (patched('stage-after-retrained-promotion')) status.stage(idleStage(result, status.status));
      }
      continue;
    }
    if (Date.now() >= retrainings.nextDataCheckAt(params) && !queue.closing && !queue.draining) {
      await retrainings.checkForNewImages(params, status.status.dataset);
      continue;
    }
    if (Date.now() >= driftWatch.nextCheckAt() && !queue.closing && !queue.draining) {
      await driftWatch.check(result, retrainings);
      continue;
    }
    // Only a deployment is checked: in deploy-failed the next check never comes due.
    if (result.deployment && Date.now() >= nextCheck) {
      await checkEndpoint(result.deployment, status);
      nextCheck = Date.now() + interval;
      continue;
    }
    const wake = Math.min(
      deadline - Date.now(),
      params.versionCheckSeconds * 1000,
      result.deployment ? nextCheck - Date.now() : Infinity,
      retrainings.nextDataCheckAt(params) - Date.now(),
      approvals.decidesAt - Date.now(),
      driftWatch.nextCheckAt() - Date.now(),
    );
    // Never shorter than a second: a wait that ends at once, again and again, would fill the history.
    await condition(
      () => pending.length > 0 || queue.finished || retrainings.due || approvals.due || timeToMoveOn(),
      Math.max(wake, MIN_WAIT_MS),
    );
  }
  // Runs that reached this point before this code left their endpoints as they were.
  if (patched('retire-endpoint-at-end')) await retireEndpoint(params, result);
  await status.settleNotifications();
  return endServing(result, status);

  /** Whether this run should hand over to a new one: long history, the server's suggestion, or a newer build. */
  function timeToMoveOn(): boolean {
    const info = workflowInfo();
    return (
      info.historyLength >= CONTINUE_AS_NEW_EVENTS ||
      historyBytes() >= CONTINUE_AS_NEW_BYTES ||
      info.continueAsNewSuggested ||
      info.targetWorkerDeploymentVersionChanged === true
    );
  }

  /** Whether the history is too long to wait for a redeploy in progress (HAND_OVER_*). */
  function historyFull(): boolean {
    return workflowInfo().historyLength >= HAND_OVER_EVENTS || historyBytes() >= HAND_OVER_BYTES;
  }

  /** The time-skipping test server reports no size: then the requests received plus a cost per event. */
  function historyBytes(): number {
    const info = workflowInfo();
    return Math.max(info.historySize, queue.receivedBytes + info.historyLength * BYTES_PER_EVENT);
  }
}
