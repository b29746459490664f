/**
 * `npm run workers`: every worker, each in its own process (as in Kubernetes), in the foreground,
 * as one version of the Worker Deployment. Once all three poll, that version is made current
 * (`--no-set-current` leaves that to you, to rehearse a rollout with the temporal CLI).
 * Training blocks its process's event loop between batches, so it must not share one with the others.
 * Unset variables default to the local stack (see src/stack/local-env.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { defaultBuildId } from '../runtime/build-id';
import { connectionOptions } from '../runtime/connection';
import { currentBuildId, setCurrentVersion } from '../runtime/deployment';
import { withLocalStackDefaults } from '../stack/local-env';

const WORKERS = ['pipeline', 'data', 'training'];
const env = withLocalStackDefaults(process.env, join(__dirname, '..', '..', '..'));
const config = loadConfig(env);
// All three must report the same version: computed once here.
const buildId = config.temporal.buildId ?? defaultBuildId();
const say = (line: string): void => console.log(`[workers] ${line}`);

const children: ChildProcess[] = WORKERS.map((name, i) => {
  const child = spawn(process.execPath, [join(__dirname, `${name}.js`)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...env,
      TEMPORAL_WORKER_BUILD_ID: buildId,
      // One host, three workers: each gets its own probe and metrics ports.
      WORKER_HEALTH_PORT: String(config.worker.healthPort && config.worker.healthPort + i),
      WORKER_METRICS_PORT: String(config.worker.metricsPort && config.worker.metricsPort + i),
    },
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
    say(`${name} exited (${signal ?? code})`);
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

async function makeCurrent(): Promise<void> {
  const { namespace, deploymentName, versioning } = config.temporal;
  if (!versioning || process.argv.includes('--no-set-current')) {
    if (versioning) say(`build ${buildId} polls as ${deploymentName}.${buildId}; make it current with the temporal CLI`);
    return;
  }
  const connection = await Connection.connect(connectionOptions(config.temporal));
  try {
    const ref = { namespace, deploymentName };
    const before = await currentBuildId(connection.workflowService, ref);
    if (before === buildId) return say(`${deploymentName}.${buildId} is already the current version`);
    await setCurrentVersion(connection.workflowService, { ...ref, buildId });
    say(`${deploymentName}.${buildId} is now the current version${before ? ` (was ${before}; runs pinned to it finish there)` : ''}`);
  } finally {
    await connection.close();
  }
}

makeCurrent().catch((err: Error) => {
  say(err.message);
  stopAll(1);
});
