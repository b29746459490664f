/** Worker for queue ml-data: preprocessing. */
import { TASK_QUEUES } from '../common/constants';
import { ShardPool } from '../data/shard-pool';
import { createS3Client, S3Store } from '../storage/s3';
import { MlflowClient } from '../tracking/mlflow';
import { SHUTDOWN_TIMES } from '../runtime/shutdown-times';
import { dataWorkerOptions } from './data-options';
import { main, runWorker } from './run';

main(() =>
  runWorker({
    name: 'data',
    taskQueue: TASK_QUEUES.data,
    shutdown: SHUTDOWN_TIMES.data,
    build: async (config) => {
      // Decoding runs in these processes; starting them here fails the worker at start-up, not at its
      // first task, if the native TensorFlow backend is missing.
      const pool = new ShardPool();
      await pool.ready();
      return dataWorkerOptions({
        store: new S3Store(createS3Client(config)),
        mlflow: new MlflowClient(config.mlflow.trackingUri),
        pool,
      });
    },
  }),
);
