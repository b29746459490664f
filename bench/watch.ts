/**
 * Fail fast: a benchmark races everything it waits for against the processes it depends on (its
 * workers, its stack's services, a reference server), so one that exits ends the benchmark at once
 * with the reason instead of leaving it waiting on something that can no longer happen.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { stackStatus, type StackOptions } from '../src/stack/services';
import { isProcessAlive } from '../src/system/process';

export class DependencyExitedError extends Error {
  override name = 'DependencyExitedError';
}

/** The last `n` lines of a log file, indented, or '' when there is none. */
export function tailOf(file: string, n = 10): string {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n);
    return lines.length && lines[0] ? `\n  ${lines.join('\n  ')}` : '';
  } catch {
    return '';
  }
}

export class DependencyWatch {
  /** Rejects with the first dependency's exit; never resolves. */
  readonly failed: Promise<never>;
  private rejectWith!: (err: Error) => void;
  private readonly checks = new Map<NodeJS.Timeout, () => void>();
  private error?: Error;
  private closed = false;

  constructor() {
    this.failed = new Promise<never>((_, reject) => (this.rejectWith = reject));
    // Observed through race(); an exit while nobody races is reported by the next race.
    this.failed.catch(() => undefined);
  }

  /** Reports a dependency gone (once; later reports are dropped, as is any after close()). */
  fail(reason: string): void {
    if (this.closed || this.error) return;
    this.error = new DependencyExitedError(reason);
    this.rejectWith(this.error);
  }

  /**
   * `p`, unless a dependency exits first. Also when `p` settles the watched pids are checked once
   * more: a load that failed fast because its server had died between two checks says so.
   */
  async race<T>(p: Promise<T>): Promise<T> {
    try {
      return await Promise.race([p, this.failed]);
    } finally {
      for (const check of this.checks.values()) check();
      // eslint-disable-next-line no-unsafe-finally -- the dependency's exit is the reason, whatever p did
      if (this.error) throw this.error;
    }
  }

  /** A child process of this benchmark: its exit fails the watch unless `expected()` says it was asked for. */
  child(name: string, child: ChildProcess, log?: string, expected: () => boolean = () => false): void {
    child.once('exit', (code, signal) => {
      if (!expected()) this.fail(`${name} exited (${signal ?? `code ${code}`})${log ? `; ${log}:${tailOf(log)}` : ''}`);
    });
  }

  /**
   * A process this benchmark does not wait on itself (a detached server): its pid is checked every
   * `everyMs`. Returns what stops watching it, before stopping it on purpose.
   */
  pid(name: string, pid: number, log?: string, everyMs = 500): () => void {
    const check = (): void => {
      if (!isProcessAlive(pid)) this.fail(`${name} (pid ${pid}) exited${log ? `; ${log}:${tailOf(log)}` : ''}`);
    };
    const timer = setInterval(check, everyMs);
    timer.unref();
    this.checks.set(timer, check);
    return () => {
      clearInterval(timer);
      this.checks.delete(timer);
    };
  }

  /** Every service of a stack that is up. */
  async stack(stack: StackOptions): Promise<void> {
    for (const s of await stackStatus(stack)) if (s.pid) this.pid(`the stack's ${s.name}`, s.pid, s.log);
  }

  /** Stops watching: what exits from now on is being stopped. */
  close(): void {
    this.closed = true;
    for (const timer of this.checks.keys()) clearInterval(timer);
    this.checks.clear();
  }
}
