/**
 * Runs the three workers as child processes and restarts one that dies after a short backoff, the
 * way the kubelet restarts a container (restartPolicy Always, CrashLoopBackOff doubling the delay
 * for a container that keeps dying, reset after it has run a while). Each worker is its own
 * process group, so a fault kills exactly one worker and its own children get what a pod's
 * children would get when their parent vanishes: a closed IPC channel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type WorkerName = 'pipeline' | 'data' | 'training';
export const WORKER_NAMES: readonly WorkerName[] = ['pipeline', 'data', 'training'];

export interface SupervisorOptions {
  /** Folder of the compiled worker entry points (dist/src/workers). */
  workersDir: string;
  logDir: string;
  /** Environment shared by all three; each gets its own health and metrics port on top. */
  env: NodeJS.ProcessEnv;
  /** Variables of one worker's own (the training worker's Temporal address goes through a proxy). */
  envOf?: Partial<Record<WorkerName, NodeJS.ProcessEnv>>;
  healthPort: number;
  metricsPort: number;
  /** First restart delay; doubled for each death within `resetAfterMs` of the previous start, up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  resetAfterMs?: number;
  log: (line: string) => void;
}

interface Managed {
  name: WorkerName;
  child?: ChildProcess;
  startedAt: number;
  backoffMs: number;
  restarts: number;
}

export class Supervisor {
  private readonly workers = new Map<WorkerName, Managed>();
  private stopping = false;

  constructor(private readonly o: SupervisorOptions) {}

  start(): void {
    WORKER_NAMES.forEach((name) => {
      const w: Managed = { name, startedAt: 0, backoffMs: this.o.backoffMs ?? 2000, restarts: 0 };
      this.workers.set(name, w);
      this.spawn(w);
    });
  }

  pid(name: WorkerName): number | undefined {
    const c = this.workers.get(name)?.child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  restarts(): Record<WorkerName, number> {
    return Object.fromEntries(WORKER_NAMES.map((n) => [n, this.workers.get(n)?.restarts ?? 0])) as Record<WorkerName, number>;
  }

  /** SIGKILLs one worker (its process only); the exit handler brings it back. */
  kill(name: WorkerName): number | undefined {
    const pid = this.pid(name);
    if (pid) process.kill(pid, 'SIGKILL');
    return pid;
  }

  /** SIGTERM to every worker (a graceful drain, as a rollout would), SIGKILL to what is left after `timeoutMs`. */
  async stop(timeoutMs = 60_000): Promise<void> {
    this.stopping = true;
    const alive = [...this.workers.values()]
      .map((w) => w.child)
      .filter((c): c is ChildProcess => !!c && c.exitCode === null && c.signalCode === null);
    const exited = alive.map((c) => new Promise<void>((r) => c.once('exit', () => r())));
    for (const c of alive) c.kill('SIGTERM');
    const all = Promise.all(exited);
    if ((await Promise.race([all.then(() => true), sleep(timeoutMs).then(() => false)])) === false) {
      for (const c of alive) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await all;
    }
  }

  private spawn(w: Managed): void {
    const i = WORKER_NAMES.indexOf(w.name);
    const fd = openSync(join(this.o.logDir, `worker-${w.name}.log`), 'a');
    const child = spawn(process.execPath, [join(this.o.workersDir, `${w.name}.js`)], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: {
        ...this.o.env,
        ...this.o.envOf?.[w.name],
        WORKER_HEALTH_PORT: String(this.o.healthPort + i),
        WORKER_METRICS_PORT: String(this.o.metricsPort + i),
      },
    });
    closeSync(fd);
    w.child = child;
    w.startedAt = Date.now();
    child.on('exit', (code, signal) => {
      if (this.stopping) return;
      // A worker that ran for a while starts over at the first delay, as the kubelet's backoff does.
      if (Date.now() - w.startedAt > (this.o.resetAfterMs ?? 60_000)) w.backoffMs = this.o.backoffMs ?? 2000;
      const delay = w.backoffMs;
      w.backoffMs = Math.min(w.backoffMs * 2, this.o.maxBackoffMs ?? 20_000);
      w.restarts++;
      this.o.log(`${w.name} worker exited (${signal ?? code}); restarting in ${delay / 1000}s`);
      setTimeout(() => {
        if (!this.stopping) this.spawn(w);
      }, delay).unref();
    });
  }
}
