/**
 * `npm run workers`: every worker, each in its own process (as in Kubernetes), in the foreground,
 * as one version of the Worker Deployment. Once all three poll, that version is made current
 * (`--no-set-current` leaves that to you, to rehearse a rollout with the temporal CLI).
 * Unset variables default to the local stack (see src/stack/local-env.ts).
 */
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { loadConfig } from '../config';
import { defaultBuildId } from '../runtime/build-id';
import { connectionOptions } from '../runtime/connection';
import { makeCurrent } from '../runtime/deployment';
import { describeExit, WorkerProcesses } from '../runtime/worker-processes';
import { withLocalStackDefaults } from '../stack/local-env';

const env = withLocalStackDefaults(process.env, join(__dirname, '..', '..', '..'));
const config = loadConfig(env);
// All three must report the same version: computed once here.
const buildId = config.temporal.buildId ?? defaultBuildId();
const say = (line: string): void => console.log(`[workers] ${line}`);

const workers = new WorkerProcesses({
  env,
  buildId,
  // One host, three workers: each gets its own probe and metrics ports from these.
  healthPort: config.worker.healthPort,
  metricsPort: config.worker.metricsPort,
  onLine: (name, line, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(`[${name}] ${line}\n`),
  onExit: (exit) => {
    say(describeExit(exit));
    stopAll(exit.code || 1);
  },
});
workers.startAll();

let stopping = false;
function stopAll(code: number): void {
  if (stopping) return;
  stopping = true;
  process.exitCode = code;
  void workers.stop(60_000).then(() => say('all workers stopped'));
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));

async function setCurrent(): Promise<void> {
  const { namespace, deploymentName, versioning } = config.temporal;
  if (!versioning || process.argv.includes('--no-set-current')) {
    if (versioning) say(`build ${buildId} polls as ${deploymentName}.${buildId}; make it current with the temporal CLI`);
    return;
  }
  const connection = await Connection.connect(connectionOptions(config.temporal));
  try {
    const { changed, previous } = await makeCurrent(connection.workflowService, { namespace, deploymentName, buildId });
    if (!changed) return say(`${deploymentName}.${buildId} is already the current version`);
    say(`${deploymentName}.${buildId} is now the current version${previous ? ` (was ${previous}; runs pinned to it finish there)` : ''}`);
  } finally {
    await connection.close();
  }
}

setCurrent().catch((err: Error) => {
  if (stopping) return;
  say(err.message);
  stopAll(1);
});
