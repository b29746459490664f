/**
 * The end-of-run checks and the one-line JSON report. Each field's exact meaning is in
 * docs/chaos.md; the comments here say how each is computed.
 */
import type { WorkflowClient } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import type { MlflowClient } from '../../src/tracking/mlflow';
import { endpointPid, type InjectedFault } from './injector';
import { findProcesses, type ProcInfo } from './procs';
import type { FaultKind } from './schedule';
import type { RunOutcome } from './runs';

/**
 * Registered versions per training beyond the first. A training is one (workflow, model class):
 * registerVersion (src/training/run-log.ts) tags each version with `temporal.workflow_id` and
 * `model_class`, and every chaos pipeline has its own workflow id (endpoint-chaos-<i>) on a fresh
 * MLflow, so two versions with the same pair are one training registered twice.
 */
export async function duplicateRegisteredVersions(
  mlflow: MlflowClient,
  registeredModelNames: string[],
): Promise<{ count: number; details: string[] }> {
  const byTraining = new Map<string, string[]>();
  for (const name of registeredModelNames) {
    for (const v of await mlflow.searchModelVersions(`name='${name}'`)) {
      const tag = (k: string): string => v.tags?.find((t) => t.key === k)?.value ?? '?';
      const key = `${name}: ${tag('temporal.workflow_id')}/${tag('model_class')}`;
      byTraining.set(key, [...(byTraining.get(key) ?? []), v.version]);
    }
  }
  const dup = [...byTraining].filter(([, list]) => list.length > 1);
  return {
    count: dup.reduce((n, [, list]) => n + list.length - 1, 0),
    details: dup.map(([k, list]) => `${k}: versions ${list.join(', ')}`),
  };
}

/** MLflow runs still RUNNING in the experiment once every workflow has ended and the workers have stopped. */
export async function runsLeftRunning(mlflow: MlflowClient, experimentName: string): Promise<{ count: number; details: string[] }> {
  const experimentId = await mlflow.getOrCreateExperiment(experimentName);
  const running = await mlflow.searchRuns(experimentId, `attributes.status = 'RUNNING'`);
  return { count: running.length, details: running.map((r) => `${r.run_name ?? '?'} ${r.run_id}`) };
}

/**
 * Processes of this harness run left without an owner once the workflows have ended and the
 * workers have stopped: any training child or shard builder still alive (their owner is the worker
 * that forked them, and every worker is gone), and any endpoint server that is not the one its
 * endpoint's state file names (a server no deploy can find again, so none will ever stop it).
 */
export function orphanProcesses(marker: string, stateDir: string, endpointNames: string[]): ProcInfo[] {
  const owned = new Set(endpointNames.map((name) => endpointPid(stateDir, name)));
  return findProcesses(marker).filter((p) => p.kind !== 'endpoint-server' || !owned.has(p.pid));
}

/**
 * Recovery time of one fault: from the kill (or the service stop) until every pipeline it affected
 * has made progress again, progress being the next ActivityTaskCompleted or
 * WorkflowExecutionCompleted event in that workflow's history after the fault. For the kill of a
 * serving endpoint it is until the endpoint answered /ping again (the harness polls it). A fault whose
 * affected pipelines include one that never progressed again (it failed, or the time bound came)
 * is unrecovered; faults that affected no pipeline have no recovery time.
 */
export async function recoverySeconds(
  client: WorkflowClient,
  faults: InjectedFault[],
): Promise<{
  median: number | null;
  measured: number;
  unrecovered: { kind: FaultKind; at: string; workflowId: string }[];
  perFault: { kind: FaultKind; seconds: number }[];
}> {
  const progressTimes = new Map<string, number[]>();
  for (const id of new Set(faults.flatMap((f) => f.affected))) {
    const history = await client
      .getHandle(id)
      .fetchHistory()
      .catch(() => undefined);
    progressTimes.set(
      id,
      (history?.events ?? [])
        .filter((e) => e.activityTaskCompletedEventAttributes || e.workflowExecutionCompletedEventAttributes)
        .map((e) => tsToMs(e.eventTime)),
    );
  }
  const perFault: { kind: FaultKind; seconds: number }[] = [];
  const unrecovered: { kind: FaultKind; at: string; workflowId: string }[] = [];
  for (const f of faults) {
    if (f.affected.length === 0) continue;
    if (f.kind === 'endpoint-server' && f.cause === 'aimed:serving') {
      // A serving endpoint's recovery shows at its URL, not in the history: until it answers /ping again.
      if (f.endpointBackAt) perFault.push({ kind: f.kind, seconds: Math.round((f.endpointBackAt - f.at) / 100) / 10 });
      else unrecovered.push({ kind: f.kind, at: new Date(f.at).toISOString(), workflowId: f.affected[0]! });
      continue;
    }
    let worst = 0;
    let recovered = true;
    for (const id of f.affected) {
      const next = progressTimes.get(id)?.find((t) => t > f.at);
      if (next === undefined) {
        recovered = false;
        unrecovered.push({ kind: f.kind, at: new Date(f.at).toISOString(), workflowId: id });
      } else worst = Math.max(worst, next - f.at);
    }
    if (recovered) perFault.push({ kind: f.kind, seconds: Math.round(worst / 100) / 10 });
  }
  const sorted = perFault.map((p) => p.seconds).sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length === 0 ? null : sorted.length % 2 ? sorted[mid]! : Math.round(((sorted[mid - 1]! + sorted[mid]!) / 2) * 10) / 10;
  return { median, measured: sorted.length, unrecovered, perFault };
}

/**
 * The largest history of any run of any workflow on the harness's (fresh) Temporal: every run of
 * every chain, including those a run continued as new from, as the server's visibility lists them.
 */
export async function historyFigures(
  client: WorkflowClient,
): Promise<{ eventsMaxPerRun: number; bytesMaxPerRun: number; runs: number; largest?: string }> {
  let eventsMaxPerRun = 0;
  let bytesMaxPerRun = 0;
  let runs = 0;
  let largest: string | undefined;
  for await (const w of client.list()) {
    runs++;
    if (w.historyLength > eventsMaxPerRun) {
      eventsMaxPerRun = w.historyLength;
      largest = `${w.workflowId} run ${w.runId}`;
    }
    bytesMaxPerRun = Math.max(bytesMaxPerRun, w.historySize ?? 0);
  }
  return { eventsMaxPerRun, bytesMaxPerRun, runs, largest };
}

export interface Report {
  seed: number;
  runs: number;
  completed: number;
  failed: { run: number; workflowId: string; reason: string }[];
  duplicateRegisteredVersions: number;
  mlflowRunsLeftRunning: number;
  orphanProcesses: number;
  endpointsNotServingExpected: number;
  endpointsServingExpected: number;
  /** SageMaker models and endpoint configs owned by an endpoint but not used by its live config. */
  sageMakerResourcesLeft: number;
  medianRecoverySeconds: number | null;
  /** The most events in one run's history (any workflow, any run of its chain). */
  historyEventsMaxPerRun: number;
  /** The largest run's history in bytes (Temporal ends a run at 50 MB). */
  historyBytesMaxPerRun: number;
  /** The largest `status` query answer the harness read (JSON bytes). */
  statusBytesMax: number;
  faultsInjected: Record<FaultKind, number>;
  details: Record<string, unknown>;
}

/** Endpoint check counts: serving the version their status names, and not (dead, wrong version, or never deployed). */
export function endpointCounts(outcomes: RunOutcome[]): { ok: number; notOk: string[] } {
  const notOk: string[] = [];
  let ok = 0;
  for (const o of outcomes) {
    const e = o.endpoint;
    if (e && !e.error && e.servedVersion === e.expectedVersion) ok++;
    else
      notOk.push(
        `${o.workflowId}: ${e ? (e.error ?? `serves v${e.servedVersion}, status says v${e.expectedVersion}`) : `not checked (${o.reason ?? 'never served'})`}`,
      );
  }
  return { ok, notOk };
}
