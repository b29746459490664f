/**
 * Carries out one fault: a SIGKILL of a process of the given kind (the supervisor's worker, or a
 * process the workers started, found in /proc by the harness's marker), or a restart of the
 * Temporal dev server or MLflow on their own data. Every fault is recorded with its time and the
 * pipelines it can have hurt, which is what recovery is measured from (see checks.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { restartService, type StackOptions } from '../../src/stack/services';
import { oomKill, oomUnsupported } from './memory-limit';
import type { PartitionProxy } from './partition';
import { findProcesses, sigkill, type ProcessKind } from './procs';
import type { FaultKind } from './schedule';
import { fillUp } from './scratch';
import type { Supervisor, WorkerName } from './supervisor';

export interface InjectedFault {
  kind: FaultKind;
  /** Epoch ms when the kill was sent, or when the service was stopped. */
  at: number;
  /** `aimed:<stage>` or `background` or `restart`. */
  cause: string;
  pid?: number;
  /** Workflow ids of the pipelines that were in a stage this fault can hurt (see `affectedBy`). */
  affected: string[];
  /**
   * For a kill of a serving endpoint (nothing in its workflow's history moves when it comes back):
   * when the harness saw its URL answer /ping again, if it did.
   */
  endpointBackAt?: number;
}

const WORKER_OF: Partial<Record<ProcessKind, WorkerName>> = {
  'pipeline-worker': 'pipeline',
  'data-worker': 'data',
  'training-worker': 'training',
};

export class Injector {
  readonly faults: InjectedFault[] = [];
  /** Faults that found nothing to kill (e.g. no training running): not counted as injected. */
  readonly skipped: { kind: FaultKind; cause: string }[] = [];

  constructor(
    private readonly o: {
      supervisor: Supervisor;
      marker: string;
      /** The proxy between the training worker and Temporal. */
      trainingLink: PartitionProxy;
      /** The workers' /tmp when it is a tmpfs the harness can fill, else why it is not. */
      scratch: { dir: string; mounted: boolean; why?: string };
      stack: StackOptions;
      /** The workers' PIPELINE_STATE_DIR, where each local endpoint's state file names its server. */
      stateDir: string;
      random: () => number;
      log: (line: string) => void;
    },
  ) {}

  /** SIGKILLs one process of `kind`; an endpoint server is the one in `endpoint`'s state file when given. */
  kill(kind: ProcessKind, cause: string, affected: string[], endpoint?: string): InjectedFault | undefined {
    let pid: number | undefined;
    const worker = WORKER_OF[kind];
    if (worker) pid = this.o.supervisor.kill(worker);
    else if (kind === 'endpoint-server' && endpoint) {
      pid = endpointPid(this.o.stateDir, endpoint);
      // Only a live server of ours: the state file is written right after the spawn.
      if (pid && !findProcesses(this.o.marker, ['endpoint-server']).some((p) => p.pid === pid)) pid = undefined;
      if (pid && !sigkill(pid)) pid = undefined;
    } else {
      const candidates = findProcesses(this.o.marker, [kind]);
      const victim = candidates[Math.floor(this.o.random() * candidates.length)];
      if (victim && sigkill(victim.pid)) pid = victim.pid;
    }
    if (!pid) {
      this.skipped.push({ kind, cause });
      return undefined;
    }
    const fault: InjectedFault = { kind, at: Date.now(), cause, pid, affected };
    this.faults.push(fault);
    this.o.log(`fault: SIGKILL ${kind} pid ${pid} (${cause}; affects ${affected.join(', ') || 'no running pipeline'})`);
    return fault;
  }

  /**
   * Puts a training child under a memory limit it is about to exceed, so the kernel kills it (see
   * memory-limit.ts); the fault counts once the kernel has. A child that ends by itself meanwhile
   * (its training done) is replaced by another, up to three. Returns whether a child was found.
   */
  oom(cause: string, affected: string[]): boolean {
    const why = oomUnsupported();
    const pick = (): number | undefined => (why ? undefined : findProcesses(this.o.marker, ['training-child'])[0]?.pid);
    const first = pick();
    if (first === undefined) {
      if (why) this.skip('training-oom', `${cause} (${why})`);
      return false;
    }
    void (async () => {
      for (let tries = 1, pid: number | undefined = first; pid !== undefined && tries <= 3; tries++, pid = pick()) {
        const at = Date.now();
        this.o.log(`fault: memory limit on training child pid ${pid} (${cause}; affects ${affected.join(', ') || 'no running pipeline'})`);
        if (await oomKill(pid)) {
          this.faults.push({ kind: 'training-oom', at, cause, pid, affected });
          this.o.log(`fault: the kernel killed training child pid ${pid} at its memory limit`);
          return;
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
      this.skip('training-oom', `${cause} (each training child ended by itself or stayed within the limit)`);
    })().catch((err: Error) => this.skip('training-oom', `${cause} (${err.message})`));
    return true;
  }

  /** Cuts the training worker off from Temporal for `seconds` (its child keeps training). */
  partition(seconds: number, cause: string, affected: string[]): boolean {
    this.faults.push({ kind: 'training-partition', at: Date.now(), cause, affected });
    this.o.log(
      `fault: training worker cut off from Temporal for ${seconds} s (${cause}; affects ${affected.join(', ') || 'no running pipeline'})`,
    );
    void this.o.trainingLink.partition(seconds * 1000).then(() => this.o.log('fault: the training worker reaches Temporal again'));
    return true;
  }

  /** Fills the workers' /tmp for `seconds`. */
  fillTmp(seconds: number, cause: string, affected: string[]): boolean {
    if (!this.o.scratch.mounted) {
      this.skip('full-tmp', `${cause} (${this.o.scratch.why ?? 'not a tmpfs'})`);
      return false;
    }
    const { bytes, release } = fillUp(this.o.scratch.dir);
    this.faults.push({ kind: 'full-tmp', at: Date.now(), cause, affected });
    this.o.log(`fault: /tmp full (${(bytes / 2 ** 20).toFixed(1)} MB written) for ${seconds} s (${cause}; affects ${affected.join(', ')})`);
    setTimeout(() => {
      release();
      this.o.log('fault: /tmp has room again');
    }, seconds * 1000);
    return true;
  }

  /** A flood is driven by the run itself (runs.ts); it is recorded here with the others. */
  record(fault: InjectedFault): void {
    this.faults.push(fault);
  }

  private skip(kind: FaultKind, cause: string): void {
    this.skipped.push({ kind, cause });
    this.o.log(`fault skipped: ${kind} (${cause})`);
  }

  /** Stops the service and starts it again on the same database; resolves once it is healthy. */
  async restart(kind: 'temporal-restart' | 'mlflow-restart', affected: string[]): Promise<void> {
    const service = kind === 'temporal-restart' ? 'temporal' : 'mlflow';
    this.faults.push({ kind, at: Date.now(), cause: 'restart', affected });
    this.o.log(`fault: restarting ${service} (affects ${affected.join(', ') || 'no running pipeline'})`);
    const started = Date.now();
    // Down for a few seconds, as a pod being rescheduled would be.
    await restartService(this.o.stack, service, () => undefined, { downSeconds: 3 });
    this.o.log(`fault: ${service} is back after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  counts(): Record<FaultKind, number> {
    const out = {
      'pipeline-worker': 0,
      'data-worker': 0,
      'training-worker': 0,
      'training-child': 0,
      'shard-builder': 0,
      'endpoint-server': 0,
      'training-oom': 0,
      'training-partition': 0,
      'full-tmp': 0,
      'redeploy-flood': 0,
      'temporal-restart': 0,
      'mlflow-restart': 0,
    } satisfies Record<FaultKind, number>;
    for (const f of this.faults) out[f.kind]++;
    return out;
  }
}

export function endpointPid(stateDir: string, endpoint: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(join(stateDir, 'endpoints', `${endpoint}.json`), 'utf8')) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}
