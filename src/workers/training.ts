/**
 * Worker for queue ml-training: model training, each in a child process of its own. Runs on the
 * t3_large node pool in Kubernetes. TensorFlow is loaded here once at start-up only to fail fast
 * on a machine without the native backend.
 */
import { createTrainingActivities } from '../activities/training';
import { TASK_QUEUES } from '../common/constants';
import { loadTf } from '../ml/tf';
import { MlflowClient } from '../tracking/mlflow';
import { main, runWorker } from './run';

main(() => {
  loadTf();
  return runWorker((config) => ({
    taskQueue: TASK_QUEUES.training,
    // Trainings share the CPU; more in parallel than this only slows each down.
    maxConcurrentActivityTaskExecutions: Number(process.env.TRAINING_CONCURRENCY ?? 3),
    activities: createTrainingActivities({ mlflow: new MlflowClient(config.mlflow.trackingUri), onednn: config.training.onednn }),
  }));
});
