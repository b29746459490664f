/**
 * Drives one pipeline run under chaos: starts it, follows its `status` query and pending
 * activities (which is also how aimed faults find their moment), checks its endpoint once it
 * serves, then sends `finish` and waits for the result. Every call to Temporal is retried, because
 * the harness restarts the Temporal server under it.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowClient } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { workflowIdForEndpoint } from '../../src/common/constants';
import type { Deployment } from '../../src/common/types';
import { servedBy } from '../../src/serving/local-endpoints';
import type { cnnSkinCancerWorkflow, PipelineResult } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import { finishSignal, redeploySignal, statusQuery, type PipelineStatus } from '../../src/workflows/messages';
import type { InjectedFault, Injector } from './injector';
import type { ProcessKind } from './procs';
import type { AimedFault } from './schedule';

/** Longer than training's 30 s heartbeat timeout (src/workflows/activities.ts), so the attempt times out while its child trains on. */
const PARTITION_SECONDS = 45;
/** Long enough to cover a deploy that starts while /tmp is full, and its first retries. */
const FULL_TMP_SECONDS = 20;
const FLOOD_SIGNALS = 1000;

/** What the harness knows of a run while it is in flight; read by the fault logic to pick who a fault affects. */
export interface LiveRun {
  index: number;
  workflowId: string;
  endpointName: string;
  stage?: string;
  /** Pending activity types, and each training's last heartbeat (phase, epoch, epochs). */
  pending: { type: string; details?: { phase?: string; epoch?: number; epochs?: number } }[];
  closed: boolean;
  /** The kill of this run's endpoint server while it served, if one was injected. */
  servingKill?: InjectedFault;
}

export interface RunOutcome {
  index: number;
  workflowId: string;
  completed: boolean;
  reason?: string;
  /** The endpoint check at serving time: the version the status says it serves, and what GET <url>/model said. */
  endpoint?: { url: string; expectedVersion: string; servedVersion?: string; error?: string };
  /** Seconds from start to serving (when it got there). */
  servingAfterSeconds?: number;
}

export const PRE_SERVING = ['preprocessing', 'training', 'selecting', 'deploying', 'promoting'];
const SETTLED = ['serving', 'deploy-failed', 'failed', 'finished'];

export interface RunContext {
  client: WorkflowClient;
  taskQueue: string;
  injector: Injector;
  live: Map<number, LiveRun>;
  /** Aimed faults of this run (schedule.ts). */
  aimed: AimedFault[];
  /** Workflow ids a fault of this kind can hurt now. */
  affectedBy: (kind: AimedFault['kind'], run: LiveRun) => string[];
  /** Told the size of every status answer the harness reads (JSON bytes). */
  statusBytes: (bytes: number) => void;
  onEnterTraining: (index: number) => void;
  deadline: number;
  /** Arms a one-shot kill on the proxied call that writes a shard, registers a version or promotes one; returns its disarm. */
  hook: (aim: HookedAim, fire: () => void) => () => void;
  /** The workers' PIPELINE_STATE_DIR, where local endpoints keep their state (and the token their GET /model needs). */
  stateDir: string;
  /** The runs' endpointCheckSeconds: how long a killed serving endpoint may take to be put right. */
  endpointCheckSeconds: number;
  /** Which version a SageMaker endpoint serves (sagemaker.ts); local endpoints are asked over HTTP. */
  sageMakerServedVersion: (deployment: Deployment) => Promise<NonNullable<RunOutcome['endpoint']>>;
  log: (line: string) => void;
}

/**
 * Retries `fn` on errors (the server may be restarting) until it succeeds or `deadline` passes.
 * Answers about the workflow itself (it failed, it was already started) are final, not retried.
 */
export async function retrying<T>(what: string, fn: () => Promise<T>, deadline: number, log?: (line: string) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowFailedError || err instanceof WorkflowExecutionAlreadyStartedError) throw err;
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`);
      if (attempt === 3) log?.(`${what}: still retrying (${(err as Error).message})`);
      await sleep(Math.min(1000 * attempt, 5000));
    }
  }
}

export async function driveRun(ctx: RunContext, index: number, input: PipelineInput): Promise<RunOutcome> {
  const endpointName = input.endpointName!;
  const workflowId = workflowIdForEndpoint(endpointName);
  const live: LiveRun = { index, workflowId, endpointName, pending: [], closed: false };
  ctx.live.set(index, live);
  const started = Date.now();
  const outcome: RunOutcome = { index, workflowId, completed: false };
  try {
    const handle = await retrying(
      `start ${workflowId}`,
      () =>
        ctx.client.start<typeof cnnSkinCancerWorkflow>('cnnSkinCancerWorkflow', {
          taskQueue: ctx.taskQueue,
          workflowId,
          args: [input],
          staticSummary: `chaos run ${index}`,
        }),
      ctx.deadline,
      ctx.log,
    ).catch((err: Error) => {
      // A start whose answer was lost to a server restart may have started it after all.
      if (err instanceof WorkflowExecutionAlreadyStartedError) return ctx.client.getHandle(workflowId);
      throw err;
    });
    ctx.log(`run ${index}: started ${workflowId} (${input.imageSize} px, deploys to ${input.deployTarget ?? 'local'})`);

    const status = await follow(
      ctx,
      live,
      () => handle.query(statusQuery),
      () => handle.describe(),
    );
    if (!status || !['serving'].includes(status.stage)) {
      outcome.reason = live.closed
        ? `workflow closed in stage ${status?.stage ?? 'unknown'}`
        : `ended in stage ${status?.stage ?? 'unknown'}`;
      if (Date.now() > ctx.deadline) outcome.reason = `time bound reached in stage ${status?.stage ?? 'unknown'}`;
    } else {
      outcome.servingAfterSeconds = Math.round((Date.now() - started) / 1000);
      // A pipeline that serves with fewer models than it trained (minSuccessfulModels allows it) lost work to a fault.
      const lost = status.models.filter((m) => m.state === 'failed');
      if (lost.length) outcome.reason = lost.map((m) => `${m.modelClass} failed: ${m.error ?? 'no reason given'}`).join('; ');
      if (live.servingKill) await awaitEndpointBack(ctx, live.servingKill, status.deployments.at(-1)?.url ?? '');
      if (ctx.aimed.some((a) => a.kind === 'redeploy-flood')) await flood(ctx, handle, live, status);
      outcome.endpoint = await checkEndpoint(ctx, () => handle.query(statusQuery));
    }
    if (!live.closed && Date.now() < ctx.deadline) {
      await retrying(`finish ${workflowId}`, () => handle.signal(finishSignal), ctx.deadline, ctx.log);
      const result = await retrying<PipelineResult>(`result of ${workflowId}`, () => handle.result(), ctx.deadline, ctx.log);
      if (result.stage === 'finished' && result.deployment && !outcome.reason) outcome.completed = true;
      else outcome.reason ??= `result stage ${result.stage}${result.deployment ? '' : ', nothing deployed'}`;
    } else if (live.closed && !outcome.reason) {
      outcome.reason = 'workflow closed before finish';
    }
  } catch (err) {
    outcome.reason ??= (err as Error).message.split('\n')[0];
    // A run that failed its workflow carries the reason in its failure's cause chain.
    const cause = (err as { cause?: { message?: string; cause?: { message?: string } } }).cause;
    if (cause?.message) outcome.reason += `: ${cause.cause?.message ?? cause.message}`;
  } finally {
    live.closed = true;
  }
  ctx.log(`run ${index}: ${outcome.completed ? 'completed' : `FAILED (${outcome.reason})`}`);
  return outcome;
}

/**
 * Polls the run every second until it settles (serving, deploy-failed, failed, finished), closes,
 * or the deadline passes; fires the run's aimed faults when it is where they aim.
 */
async function follow(
  ctx: RunContext,
  live: LiveRun,
  query: () => Promise<PipelineStatus>,
  describe: () => Promise<Awaited<ReturnType<ReturnType<WorkflowClient['getHandle']>['describe']>>>,
): Promise<PipelineStatus | undefined> {
  // The flood is the run's own doing once it serves (see flood()), not something fired from here.
  const aimed = ctx.aimed
    .filter((fault) => fault.kind !== 'redeploy-flood')
    .map((fault) => ({ fault, fired: false, armedAt: 0, disarm: undefined as (() => void) | undefined }));
  live.servingKill = undefined;
  let last: PipelineStatus | undefined;
  let enteredTraining = false;
  let settledAt = 0;
  while (Date.now() < ctx.deadline) {
    const status = await query().catch(() => undefined);
    const description = await describe().catch(() => undefined);
    if (description) {
      live.closed = description.status.name !== 'RUNNING';
      live.pending = (description.raw.pendingActivities ?? []).map((a) => {
        const payload = a.heartbeatDetails?.payloads?.[0];
        return {
          type: a.activityType?.name ?? '',
          details: payload ? defaultPayloadConverter.fromPayload<LiveRun['pending'][number]['details']>(payload) : undefined,
        };
      });
    }
    if (status) {
      ctx.statusBytes(Buffer.byteLength(JSON.stringify(status)));
      if (status.stage !== live.stage) ctx.log(`run ${live.index}: ${status.stage}`);
      live.stage = status.stage;
      last = status;
      if (status.stage === 'training' && !enteredTraining) {
        enteredTraining = true;
        ctx.onEnterTraining(live.index);
      }
    }
    for (const a of aimed) {
      const hooked = HOOKED_AIMS[a.fault.aim];
      if (hooked) {
        // Armed while the run is on its way there; fired by the proxy at the call itself.
        if (!a.fired && !a.disarm && hooked.armWhen(live))
          a.disarm = ctx.hook(a.fault.aim as HookedAim, () => {
            a.disarm = undefined;
            // Hooked aims carry SIGKILLs only (schedule.ts).
            const injected = ctx.injector.kill(a.fault.kind as ProcessKind, `aimed:${a.fault.aim}`, ctx.affectedBy(a.fault.kind, live));
            a.fired = injected !== undefined;
          });
        continue;
      }
      if (a.fired || !isAt(live, a.fault.aim)) {
        a.armedAt = 0;
        continue;
      }
      a.armedAt ||= Date.now();
      if (Date.now() - a.armedAt < a.fault.delaySeconds * 1000) continue;
      const cause = `aimed:${a.fault.aim}`;
      const affected = ctx.affectedBy(a.fault.kind, live);
      switch (a.fault.kind) {
        case 'training-oom':
          a.fired = ctx.injector.oom(cause, affected);
          break;
        case 'training-partition':
          a.fired = ctx.injector.partition(PARTITION_SECONDS, cause, affected);
          break;
        case 'full-tmp':
          a.fired = ctx.injector.fillTmp(FULL_TMP_SECONDS, cause, affected);
          break;
        case 'redeploy-flood':
          break; // filtered out above
        default: {
          const endpoint = a.fault.kind === 'endpoint-server' ? live.endpointName : undefined;
          const injected = ctx.injector.kill(a.fault.kind, cause, affected, endpoint);
          a.fired = injected !== undefined;
          if (injected && a.fault.aim === 'serving') live.servingKill = injected;
        }
      }
    }
    if (live.closed) {
      for (const a of aimed) a.disarm?.();
      return last;
    }
    if (last && SETTLED.includes(last.stage)) {
      // Give faults aimed at the serving stage their moment before the endpoint check.
      settledAt ||= Date.now();
      const waiting = aimed.some((a) => !a.fired && a.fault.aim === 'serving' && last!.stage === 'serving');
      if (!waiting || Date.now() - settledAt > 15_000) {
        for (const a of aimed.filter((x) => !x.fired)) {
          a.disarm?.();
          ctx.log(`run ${live.index}: aimed fault ${a.fault.kind}@${a.fault.aim} missed its moment`);
        }
        return last;
      }
    }
    // Selecting and deploying take seconds: a run with a fault still aimed at them is watched four times as often.
    const short = aimed.some((a) => !a.fired && (a.fault.aim === 'deploying' || a.fault.aim === 'selecting'));
    const near = ['selecting', 'deploying', 'promoting'].includes(live.stage ?? '') || isAt(live, 'training');
    await sleep(short && near ? 250 : 1000);
  }
  return last;
}

export type HookedAim = 'preprocessing' | 'registration' | 'promoting' | 'sagemaker-model' | 'sagemaker-endpoint';

/**
 * Preprocessing (at this size), registration, promotion and a SageMaker deploy last a second or
 * less: their kills are fired by a proxy (RunContext.hook) once it has passed the call that does
 * the work on (a shard's upload to S3, MLflow's model-versions/create, model-versions/transition-stage,
 * SageMaker's CreateModel or CreateEndpoint), while the run is on its way there. The call may be
 * another run's at the same point; it is the same kill.
 */
const HOOKED_AIMS: Partial<Record<AimedFault['aim'], { armWhen: (run: LiveRun) => boolean }>> = {
  preprocessing: { armWhen: (run) => run.stage === undefined || run.stage === 'preprocessing' },
  registration: { armWhen: (run) => isAt(run, 'training') },
  promoting: { armWhen: (run) => ['selecting', 'deploying'].includes(run.stage ?? '') },
  // Armed from training on: selecting and deploying can both pass between two polls.
  'sagemaker-model': { armWhen: (run) => ['training', 'selecting', 'deploying'].includes(run.stage ?? '') },
  'sagemaker-endpoint': { armWhen: (run) => ['training', 'selecting', 'deploying'].includes(run.stage ?? '') },
};

/** Whether the run is where a fault aims. */
function isAt(run: LiveRun, aim: AimedFault['aim']): boolean {
  if (aim === 'registration') {
    // The final phase's last epoch is done: evaluation, saving and registration are what is left.
    return (
      run.stage === 'training' &&
      run.pending.some(
        (p) => p.type === 'trainModel' && p.details?.phase === 'final' && (p.details.epoch ?? 0) >= (p.details.epochs ?? Infinity),
      )
    );
  }
  if (aim === 'training') return run.stage === 'training' && run.pending.some((p) => p.type === 'trainModel' && p.details?.phase);
  return run.stage === aim;
}

/**
 * After its server was killed, waits for the endpoint to answer /ping again: the serving loop's
 * periodic check (every endpointCheckSeconds) is what restarts it. Gives up after two check
 * periods and half a minute; the endpoint check that follows then reports it.
 */
async function awaitEndpointBack(ctx: RunContext, fault: InjectedFault, url: string): Promise<void> {
  const until = Math.min(ctx.deadline, Date.now() + (2 * ctx.endpointCheckSeconds + 30) * 1000);
  while (Date.now() < until) {
    const ok = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) {
      fault.endpointBackAt = Date.now();
      ctx.log(
        `${fault.affected.join(', ')}: endpoint answers again ${((fault.endpointBackAt - fault.at) / 1000).toFixed(1)} s after the kill`,
      );
      return;
    }
    await sleep(500);
  }
  ctx.log(`${fault.affected.join(', ')}: endpoint still down ${((Date.now() - fault.at) / 1000).toFixed(0)} s after the kill`);
}

/** Asks the endpoint which version it serves; the run's status says which it should. */
async function checkEndpoint(ctx: RunContext, query: () => Promise<PipelineStatus>): Promise<RunOutcome['endpoint']> {
  const status = await retrying('status query', query, ctx.deadline);
  const deployment = status.deployments.at(-1);
  if (!deployment) return { url: '', expectedVersion: '', error: 'the status lists no deployment' };
  if (deployment.target === 'sagemaker')
    return retrying('SageMaker endpoint check', () => ctx.sageMakerServedVersion(deployment), ctx.deadline).catch((err: Error) => ({
      url: deployment.arn ?? '',
      expectedVersion: deployment.version,
      error: err.message,
    }));
  const check = { url: deployment.url ?? '', expectedVersion: deployment.version };
  try {
    return { ...check, servedVersion: String((await servedBy(ctx.stateDir, deployment.endpointName)).version) };
  } catch (err) {
    return {
      ...check,
      error: `GET /model: ${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`,
    };
  }
}

/**
 * 1,000 redeploy signals at a serving run, as a misbehaving client would send them: requests for
 * its registered versions and its champion (which it deploys, as many as its bounded queue takes),
 * malformed ones and ones padded to 100 KB (refused on arrival). Each padded signal waits for a
 * status answer first, so the run has taken what came before it: a sender faster than every
 * workflow task would keep any run from continuing as new while the flood lasts (as in
 * test/workflows/serving-at-scale.test.ts). Then waits for the queue to drain; the endpoint check
 * that follows says whether the endpoint serves what the run's status says.
 */
async function flood(
  ctx: RunContext,
  handle: ReturnType<WorkflowClient['getHandle']>,
  live: LiveRun,
  status: PipelineStatus,
): Promise<void> {
  const at = Date.now();
  const versions = status.models.map((m) => m.version).filter((v): v is string => !!v);
  const pad = 'p'.repeat(100 * 1024);
  let sent = 0;
  const version = (): string => versions[sent % Math.max(1, versions.length)] ?? '1';
  const kinds: [request: () => unknown, padded?: 'padded'][] = [
    [() => ({ version: version() })],
    [() => ({ version: version(), padding: pad }), 'padded'],
    [() => ({ version: 'x' })],
    [() => ({ alias: 'champion' })],
    [() => ({ alias: 'a'.repeat(150) })],
    [() => ({ version: version(), alias: 'champion' })],
    [() => version()],
    [() => ({ alias: 'champion', instanceCount: 2 })],
    [() => ({ [pad]: 1 }), 'padded'],
    [() => ({ version: version() })],
  ];
  ctx.log(`run ${live.index}: flooding it with ${FLOOD_SIGNALS} redeploy signals (versions ${versions.join(', ')})`);
  ctx.injector.record({ kind: 'redeploy-flood', at, cause: 'aimed:serving', affected: [live.workflowId] });
  while (sent < FLOOD_SIGNALS && Date.now() < ctx.deadline) {
    const [request, padded] = kinds[sent % kinds.length]!;
    if (padded)
      ctx.statusBytes(Buffer.byteLength(JSON.stringify(await retrying('status query', () => handle.query(statusQuery), ctx.deadline))));
    await retrying('redeploy signal', () => handle.signal(redeploySignal, request() as never), ctx.deadline);
    sent++;
  }
  for (;;) {
    const now = await retrying('status query', () => handle.query(statusQuery), ctx.deadline);
    ctx.statusBytes(Buffer.byteLength(JSON.stringify(now)));
    if ((now.queued ?? 0) === 0 && now.stage === 'serving') {
      ctx.log(
        `run ${live.index}: flood of ${sent} signals done in ${((Date.now() - at) / 1000).toFixed(0)} s: ` +
          `${now.refusedCount ?? 0} refused on arrival, serving version ${now.deployments.at(-1)?.version}`,
      );
      return;
    }
    if (Date.now() > ctx.deadline) return;
    await sleep(1000);
  }
}
