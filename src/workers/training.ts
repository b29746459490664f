/**
 * Worker for queue ml-training: model training (each in a child process of its own) and champion
 * evaluation. Runs on the t3_large node pool in Kubernetes.
 */
import { createEvaluationActivities } from '../activities/evaluation';
import { createTrainingActivities } from '../activities/training';
import { TASK_QUEUES } from '../common/constants';
import { defaultBudgetBytes } from '../ml/memory';
import { loadTf } from '../ml/tf';
import { MlflowClient } from '../tracking/mlflow';
import { SHUTDOWN_TIMES } from '../runtime/shutdown-times';
import { main, runWorker } from './run';

main(() => {
  loadTf();
  return runWorker({
    name: 'training',
    taskQueue: TASK_QUEUES.training,
    shutdown: SHUTDOWN_TIMES.training,
    build: (config, { shutdown }) => {
      const mlflow = new MlflowClient(config.mlflow.trackingUri);
      const { concurrency } = config.training;
      return {
        maxConcurrentActivityTaskExecutions: concurrency,
        activities: {
          ...createTrainingActivities({
            mlflow,
            onednn: config.training.onednn,
            // Each of the concurrent trainings gets its share of the container's memory.
            memoryBudgetBytes: config.training.memoryMb ? config.training.memoryMb * 2 ** 20 : defaultBudgetBytes(concurrency),
            // The child is killed only if it cannot checkpoint before the worker's force time.
            stopGraceMs: Math.max(shutdown.forceSeconds - shutdown.graceSeconds - 10, 5) * 1000,
            stallMs: config.training.stallSeconds * 1000,
          }),
          ...createEvaluationActivities({ onednn: config.training.onednn, stallMs: config.training.stallSeconds * 1000 }),
        },
      };
    },
  });
});
