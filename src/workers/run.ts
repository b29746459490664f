/**
 * Shared start-up for the worker entry points: config, logs, metrics, connection, search
 * attribute check, Worker Versioning, health probes and graceful shutdown.
 */
import { makeTelemetryFilterString, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Server } from 'node:http';
import { loadConfig, type Config } from '../config';
import { defaultBuildId } from '../runtime/build-id';
import { connectionOptions } from '../runtime/connection';
import { startHealthServer } from '../runtime/health';
import { logFormat, ProcessLogger } from '../runtime/logger';
import { checkSearchAttributes } from '../runtime/search-attributes';
import type { ShutdownTimes } from '../runtime/shutdown-times';
import { deploymentOptions } from '../runtime/versioning';
import { watchCurrentVersion } from '../runtime/version-watch';

/**
 * Heartbeats reach the server at most this often (else every 0.8 x the heartbeat timeout, 48 s
 * for training): progress shown by the demo, the UI's pending activities and a retried attempt is
 * that fresh. A worker's own options may ask for more often.
 */
export const HEARTBEAT_THROTTLE = '5s';

export interface WorkerSpec {
  name: 'pipeline' | 'data' | 'training';
  taskQueue: string;
  /** This worker's defaults; WORKER_SHUTDOWN_GRACE_SECONDS / _FORCE_SECONDS override them. */
  shutdown: ShutdownTimes;
  build(config: Config, context: { shutdown: ShutdownTimes; logger: ProcessLogger }): BuiltWorker | Promise<BuiltWorker>;
  /** Work of the worker's own, alongside its tasks, until `signal` aborts (the worker stops); must not reject. */
  background?(context: { config: Config; connection: NativeConnection; logger: ProcessLogger; signal: AbortSignal }): Promise<void>;
}

type BuiltWorker = Omit<WorkerOptions, 'connection' | 'namespace' | 'taskQueue' | 'workerDeploymentOptions'>;

export async function runWorker(spec: WorkerSpec): Promise<void> {
  const config = loadConfig(process.env);
  const logger = new ProcessLogger(logFormat(config.worker.logFormat), 'INFO', { worker: spec.name });
  const { httpHost, metricsPort, healthPort } = config.worker;
  // Must come before any connection or worker exists: the runtime is created once per process.
  Runtime.install({
    logger,
    shutdownSignals: ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'],
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} },
      ...(metricsPort ? { metrics: { prometheus: { bindAddress: `${httpHost}:${metricsPort}`, countersTotalSuffix: true } } } : {}),
    },
  });
  const shutdown: ShutdownTimes = {
    graceSeconds: config.worker.shutdownGraceSeconds ?? spec.shutdown.graceSeconds,
    forceSeconds: config.worker.shutdownForceSeconds ?? spec.shutdown.forceSeconds,
  };
  const { temporal } = config;
  const connection = await NativeConnection.connect(connectionOptions(temporal));
  let health: Server | undefined;
  try {
    const options = await spec.build(config, { shutdown, logger });
    if (options.workflowsPath || options.workflowBundle) {
      await checkSearchAttributes(
        (req) => connection.operatorService.listSearchAttributes(req),
        temporal.namespace,
        (m) => logger.warn(m),
      );
    }
    const buildId = temporal.buildId ?? defaultBuildId();
    const worker = await Worker.create({
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
      ...options,
      connection,
      namespace: temporal.namespace,
      taskQueue: spec.taskQueue,
      shutdownGraceTime: `${shutdown.graceSeconds}s`,
      shutdownForceTime: `${shutdown.forceSeconds}s`,
      ...(temporal.versioning ? { workerDeploymentOptions: deploymentOptions(temporal.deploymentName, buildId) } : {}),
    });
    const version = temporal.versioning ? `${temporal.deploymentName}.${buildId}` : 'unversioned';
    if (healthPort) {
      health = await startHealthServer(
        healthPort,
        httpHost,
        {
          workerState: () => worker.getState(),
          checkConnection: async () => void (await connection.healthService.check({})),
        },
        { worker: spec.name, taskQueue: spec.taskQueue, version },
      );
    }
    logger.info('worker started', {
      taskQueue: spec.taskQueue,
      address: temporal.address,
      namespace: temporal.namespace,
      version,
      health: healthPort ? `http://${httpHost}:${healthPort}/healthz` : 'off',
      metrics: metricsPort ? `http://${httpHost}:${metricsPort}/metrics` : 'off',
      shutdownGraceSeconds: shutdown.graceSeconds,
      shutdownForceSeconds: shutdown.forceSeconds,
    });
    const stopWatch = new AbortController();
    const watch = temporal.versioning
      ? watchCurrentVersion(
          connection.workflowService,
          { namespace: temporal.namespace, deploymentName: temporal.deploymentName, buildId },
          { signal: stopWatch.signal, warn: (message, meta) => logger.warn(message, meta) },
        )
      : Promise.resolve();
    const background = spec.background?.({ config, connection, logger, signal: stopWatch.signal }) ?? Promise.resolve();
    // Returns after a shutdown signal once in-flight tasks finished, were cancelled after the grace
    // time, or the force time ran out.
    await worker.run().finally(() => stopWatch.abort());
    await Promise.all([watch, background]);
    logger.info('worker stopped', { taskQueue: spec.taskQueue, version });
  } finally {
    health?.close();
    await connection.close();
  }
}

export function main(fn: () => Promise<void>): void {
  fn().then(
    // Child processes (decoders, trainings) hold no reason to keep the worker alive once it stopped.
    () => process.exit(0),
    (err: Error) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
