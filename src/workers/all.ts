/**
 * `npm run workers`: every worker, each in its own process (as in Kubernetes), in the foreground.
 * Training blocks its process's event loop between batches, so it must not share one with the others.
 * Unset variables default to the local stack (see src/stack/local-env.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { withLocalStackDefaults } from '../stack/local-env';

const WORKERS = ['pipeline', 'data', 'training'];

const children: ChildProcess[] = WORKERS.map((name) => {
  const child = spawn(process.execPath, [join(__dirname, `${name}.js`)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: withLocalStackDefaults(process.env, join(__dirname, '..', '..', '..')),
  });
  const prefix = (chunk: Buffer): string =>
    chunk
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((line) => `[${name}] ${line}\n`)
      .join('');
  child.stdout!.on('data', (c: Buffer) => process.stdout.write(prefix(c)));
  child.stderr!.on('data', (c: Buffer) => process.stderr.write(prefix(c)));
  child.on('exit', (code, signal) => {
    console.log(`[${name}] exited (${signal ?? code})`);
    if (!stopping) stopAll(code ?? 1);
  });
  return child;
});

let stopping = false;
function stopAll(code: number): void {
  stopping = true;
  process.exitCode = code;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));
