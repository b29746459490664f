/**
 * The processes the harness injects faults into and looks for afterwards, found in /proc by their
 * command line. Only processes carrying this harness run's marker in their environment count, so
 * other workers, trainings or endpoints on the same machine (a demo stack, a test run) are never touched.
 *
 * The marker is the workers' TMPDIR, a folder of this harness run's own: the workers pass their
 * children only an allow-listed environment (src/system/child-env.ts), and TMPDIR is on every
 * kind's list, so it is the one variable of the harness's that reaches every process they start.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Every process kind the harness can SIGKILL. */
export type ProcessKind = 'pipeline-worker' | 'data-worker' | 'training-worker' | 'training-child' | 'shard-builder' | 'endpoint-server';

/** Inherited by everything the workers start (see above), so its value marks this run's processes. */
export const MARKER_ENV = 'TMPDIR';

/** The command-line signature of each kind spawned by the workers (the workers themselves are the supervisor's children). */
const SIGNATURES: Partial<Record<ProcessKind, RegExp>> = {
  'training-child': /[/\\]training[/\\]child\.js$/,
  'shard-builder': /[/\\]data[/\\]shard-worker\.js$/,
  'endpoint-server': /[/\\]serving[/\\]main\.js$/,
};

export interface ProcInfo {
  pid: number;
  ppid: number;
  kind: ProcessKind;
  argv: string[];
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // gone meanwhile, or not ours to read
  }
}

/** Live processes of the given kinds that carry `marker` (zombies excluded: they are already dead). */
export function findProcesses(marker: string, kinds: ProcessKind[] = Object.keys(SIGNATURES) as ProcessKind[]): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = read(`/proc/${entry}/cmdline`);
    if (!cmdline) continue;
    const argv = cmdline.split('\0').filter(Boolean);
    const script = argv[1] ?? '';
    const kind = kinds.find((k) => SIGNATURES[k]?.test(script));
    if (!kind) continue;
    if (!read(`/proc/${entry}/environ`)?.split('\0').includes(`${MARKER_ENV}=${marker}`)) continue;
    const stat = procStat(Number(entry));
    if (!stat || stat.state === 'Z') continue;
    out.push({ pid: Number(entry), ppid: stat.ppid, kind, argv });
  }
  return out;
}

/** A process's state letter and parent from /proc/<pid>/stat, or undefined when it is gone. */
export function procStat(pid: number): { state: string; ppid: number } | undefined {
  // "pid (comm) state ppid ...": comm may hold spaces, so parse after the last ')'.
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: state ?? '', ppid: Number(ppid) };
}

export function sigkill(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}
