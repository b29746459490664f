/**
 * A benchmark's workers: the three worker processes on its private stack, as `npm run workers`
 * runs them (src/runtime/worker-processes.ts), their version made current once all of them poll.
 * A worker that exits without being asked to fails the benchmark's watch with its last lines.
 * Everything each worker prints goes to `<logDir>/worker-<name>.log`.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { loadConfig } from '../src/config';
import { defaultBuildId } from '../src/runtime/build-id';
import { makeCurrent } from '../src/runtime/deployment';
import { describeExit, WorkerProcesses, type WorkerName } from '../src/runtime/worker-processes';
import type { DependencyWatch } from './watch';

export interface BenchWorkers {
  workers: WorkerProcesses;
  /** A connection to the stack's Temporal, for the benchmark's client. */
  connection: Connection;
  /** `deploymentName.buildId`, or 'unversioned'. */
  version: string;
}

export async function startBenchWorkers(o: {
  env: NodeJS.ProcessEnv;
  watch: DependencyWatch;
  logDir: string;
  /** First probe and metrics ports (see WorkerProcesses); 0 turns them off. */
  healthPort?: number;
  metricsPort?: number;
  onLine?: (name: WorkerName, line: string) => void;
}): Promise<BenchWorkers> {
  const { temporal } = loadConfig(o.env);
  const buildId = temporal.buildId ?? defaultBuildId();
  const workers = new WorkerProcesses({
    env: o.env,
    buildId,
    healthPort: o.healthPort ?? 0,
    metricsPort: o.metricsPort ?? 0,
    onLine: (name, line) => {
      // Synchronous: the lines before a crash are the ones that matter.
      appendFileSync(join(o.logDir, `worker-${name}.log`), `${line}\n`);
      o.onLine?.(name, line);
    },
    onExit: (exit) => o.watch.fail(describeExit(exit)),
  });
  workers.startAll();
  let connection: Connection | undefined;
  try {
    connection = await o.watch.race(Connection.connect({ address: temporal.address }));
    if (!temporal.versioning) return { workers, connection, version: 'unversioned' };
    // Runs are pinned to the current version: until one is current, a started run waits.
    await o.watch.race(
      makeCurrent(
        connection.workflowService,
        { namespace: temporal.namespace, deploymentName: temporal.deploymentName, buildId },
        // Three workers loading TensorFlow and bundling the workflow code on two cores.
        { timeoutMs: 180_000 },
      ),
    );
    return { workers, connection, version: `${temporal.deploymentName}.${buildId}` };
  } catch (err) {
    await connection?.close();
    await workers.stop();
    throw err;
  }
}
