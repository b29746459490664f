/** Shared start-up for the worker entry points: config, connection, graceful shutdown. */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { loadConfig, type Config } from '../config';

export async function runWorker(build: (config: Config) => Omit<WorkerOptions, 'connection' | 'namespace'>): Promise<void> {
  const config = loadConfig(process.env);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  try {
    const options = build(config);
    const worker = await Worker.create({ ...options, connection, namespace: config.temporal.namespace });
    console.log(`worker for task queue '${options.taskQueue}' connected to ${config.temporal.address}`);
    // Worker.run() returns after SIGINT/SIGTERM once in-flight tasks finished or the grace period ended.
    await worker.run();
  } finally {
    await connection.close();
  }
}

export function main(fn: () => Promise<void>): void {
  fn().catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
  });
}
