/**
 * The three workers as processes of their own on one host, the way `npm run workers` and the
 * benchmarks run them: one build id for all (they are one version of the Worker Deployment), each
 * its own probe and metrics ports (two processes cannot bind one port: the second would fail at
 * start), every line they print handed to the caller, and an exit nobody asked for reported with
 * the worker's last lines, so whoever waits on the workers learns at once why they are gone.
 * Training blocks its process's event loop between batches, so it must not share one with the others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const WORKER_NAMES = ['pipeline', 'data', 'training'] as const;
export type WorkerName = (typeof WORKER_NAMES)[number];

export interface WorkerExit {
  name: WorkerName;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines it printed (stdout and stderr), oldest first. */
  lastLines: string[];
}

export interface WorkerProcessesOptions {
  /** The environment every worker shares. */
  env: NodeJS.ProcessEnv;
  /** TEMPORAL_WORKER_BUILD_ID for all of them. */
  buildId: string;
  /** The first worker's probe and metrics ports; the i-th of WORKER_NAMES gets base + i. 0 turns them off. */
  healthPort: number;
  metricsPort: number;
  onLine?: (name: WorkerName, line: string, stream: 'stdout' | 'stderr') => void;
  /** A worker exited without stop() or kill() asking it to. */
  onExit?: (exit: WorkerExit) => void;
  /** Folder of the compiled entry points (default: this build's dist/src/workers). */
  workersDir?: string;
}

/** Lines kept per worker for an exit report. */
const KEEP_LINES = 30;

export class WorkerProcesses {
  private readonly children = new Map<WorkerName, ChildProcess>();
  private readonly expected = new Set<ChildProcess>();

  constructor(private readonly o: WorkerProcessesOptions) {}

  /** The environment worker `name` runs with. */
  envFor(name: WorkerName): NodeJS.ProcessEnv {
    const i = WORKER_NAMES.indexOf(name);
    return {
      ...this.o.env,
      TEMPORAL_WORKER_BUILD_ID: this.o.buildId,
      WORKER_HEALTH_PORT: String(this.o.healthPort && this.o.healthPort + i),
      WORKER_METRICS_PORT: String(this.o.metricsPort && this.o.metricsPort + i),
    };
  }

  /** The probe port of worker `name`, or 0 when probes are off. */
  healthPortOf(name: WorkerName): number {
    return this.o.healthPort && this.o.healthPort + WORKER_NAMES.indexOf(name);
  }

  /** The metrics port of worker `name`, or 0 when metrics are off. */
  metricsPortOf(name: WorkerName): number {
    return this.o.metricsPort && this.o.metricsPort + WORKER_NAMES.indexOf(name);
  }

  /** Starts every worker. */
  startAll(): void {
    for (const name of WORKER_NAMES) this.start(name);
  }

  /** Starts worker `name` (again, after kill()). */
  start(name: WorkerName): ChildProcess {
    const child = spawn(process.execPath, [join(this.o.workersDir ?? join(__dirname, '..', 'workers'), `${name}.js`)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.envFor(name),
    });
    const last: string[] = [];
    const reader = (stream: 'stdout' | 'stderr') => {
      let rest = '';
      return (chunk: Buffer): void => {
        const parts = (rest + chunk.toString()).split('\n');
        rest = parts.pop()!;
        for (const line of parts) {
          if (!line) continue;
          last.push(line);
          if (last.length > KEEP_LINES) last.shift();
          this.o.onLine?.(name, line, stream);
        }
      };
    };
    child.stdout!.on('data', reader('stdout'));
    child.stderr!.on('data', reader('stderr'));
    // 'close' comes after the pipes are drained: the last lines are in.
    child.on('close', (code, signal) => {
      if (this.expected.delete(child)) return;
      this.o.onExit?.({ name, code, signal, lastLines: last });
    });
    this.children.set(name, child);
    return child;
  }

  /** The pid of worker `name` while it runs. */
  pid(name: WorkerName): number | undefined {
    const c = this.children.get(name);
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** Sends `signal` to worker `name`; its exit is not reported. */
  kill(name: WorkerName, signal: NodeJS.Signals = 'SIGKILL'): void {
    const c = this.children.get(name);
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    this.expected.add(c);
    c.kill(signal);
  }

  /** SIGTERM to every worker (they drain as in a rollout), SIGKILL to what is left after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    const alive = [...this.children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
    const exited = alive.map((c) => new Promise<void>((done) => c.once('exit', () => done())));
    for (const c of alive) {
      this.expected.add(c);
      c.kill('SIGTERM');
    }
    const timer = setTimeout(() => alive.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGKILL')), timeoutMs);
    await Promise.all(exited);
    clearTimeout(timer);
  }
}

/** One line saying how a worker ended, with what it printed last. */
export function describeExit(exit: WorkerExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  const tail = exit.lastLines.length ? `; its last lines:\n  ${exit.lastLines.slice(-10).join('\n  ')}` : ' without printing anything';
  return `the ${exit.name} worker ${how}${tail}`;
}
