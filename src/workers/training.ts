/**
 * Worker for queue ml-training: model training (each in a child process of its own) and champion
 * evaluation. Runs on the t3_large node pool in Kubernetes.
 */
import { createEvaluationActivities } from '../activities/evaluation';
import { createTrainingActivities } from '../activities/training';
import { TASK_QUEUES } from '../common/constants';
import { loadTf } from '../ml/tf';
import { createS3Client, S3Store } from '../storage/s3';
import { MlflowClient } from '../tracking/mlflow';
import { main, runWorker } from './run';

main(() => {
  loadTf();
  return runWorker((config) => ({
    taskQueue: TASK_QUEUES.training,
    // Trainings share the CPU; more in parallel than this only slows each down.
    maxConcurrentActivityTaskExecutions: Number(process.env.TRAINING_CONCURRENCY ?? 3),
    activities: (() => {
      const mlflow = new MlflowClient(config.mlflow.trackingUri);
      return {
        ...createTrainingActivities({
          mlflow,
          onednn: config.training.onednn,
          memoryBudgetBytes: config.training.memoryMb && config.training.memoryMb * 2 ** 20,
        }),
        ...createEvaluationActivities({ s3: new S3Store(createS3Client(config)), mlflow }),
      };
    })(),
  }));
});
