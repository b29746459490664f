/**
 * One side of a benchmark run in a process of its own: run to its end, its stderr passing through,
 * its last stdout line its JSON result (any lines before it are printed). A side that fails, or
 * ends without that line, ends the benchmark with an error naming it.
 */
import { execFileSync } from 'node:child_process';

export function lastJsonLine<T>(what: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): T {
  let stdout: string;
  try {
    stdout = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env, maxBuffer: 1 << 24 });
  } catch (err) {
    const e = err as { status?: number | null; signal?: string | null };
    throw new Error(`${what} failed (${e.signal ?? `exit code ${e.status}`}): ${command} ${args.join(' ')}; its stderr is above`);
  }
  const lines = stdout.trim().split('\n');
  const last = lines.pop() ?? '';
  if (lines.length) console.log(lines.join('\n'));
  try {
    return JSON.parse(last) as T;
  } catch {
    throw new Error(`${what} ended without its JSON line; its last output line: '${last.slice(0, 200)}'`);
  }
}
