/**
 * Kills a process the way a container's memory limit does: the kernel's OOM killer, not a signal
 * the harness sends. The process is moved into a memory cgroup of its own under the harness's
 * (cgroup v1's memory controller) whose limit its next few megabytes of new memory exceed; the
 * kernel then kills it and counts an `oom_kill` in the cgroup's memory.oom_control. This needs
 * root and a writable cgroup v1 memory hierarchy; where there is none the fault is skipped and
 * the report says so (`details.skipped`).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { procStat } from './procs';

const ROOT = '/sys/fs/cgroup/memory';
/** New memory the process may still take once moved (charges it already had stay behind). */
const LIMIT_BYTES = 4 * 1024 * 1024;

function memoryCgroupOf(pid: number | 'self'): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.split(':')[1]?.split(',').includes('memory'));
    return line?.split(':').slice(2).join(':');
  } catch {
    return undefined;
  }
}

/** Why this machine cannot carry out the fault, or undefined when it can. */
export function oomUnsupported(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const own = memoryCgroupOf('self');
  if (own === undefined || !existsSync(join(ROOT, own, 'cgroup.procs'))) return 'no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory';
  return undefined;
}

/**
 * Puts `pid` under a tight memory limit and waits up to `waitMs` for the kernel to kill it.
 * Resolves true when it was OOM-killed; false when it died otherwise or kept within the limit
 * (then it is moved back, unharmed).
 */
export async function oomKill(pid: number, waitMs = 60_000): Promise<boolean> {
  const parent = join(ROOT, memoryCgroupOf('self') ?? '/');
  const dir = join(parent, `chaos-oom-${pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    appendFileSync(join(dir, 'memory.limit_in_bytes'), String(LIMIT_BYTES));
    try {
      appendFileSync(join(dir, 'cgroup.procs'), String(pid));
    } catch {
      return false; // gone already
    }
    const until = Date.now() + waitMs;
    // Until it is gone or a zombie (dead, not yet reaped by its worker).
    while (Date.now() < until && (procStat(pid)?.state ?? 'Z') !== 'Z') await sleep(200);
    const killed = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'));
    if (killed && Number(killed[1]) > 0) return true;
    // Not killed by the limit: one still within it (idle) goes back to its own cgroup.
    try {
      appendFileSync(join(parent, 'cgroup.procs'), String(pid));
    } catch {
      /* it ended meanwhile */
    }
    return false;
  } finally {
    // A cgroup can be removed once its last task has gone; the dead process may take a moment.
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        break;
      } catch {
        await sleep(100);
      }
    }
  }
}
