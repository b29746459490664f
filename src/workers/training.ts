/**
 * Worker for queue ml-training: model training (each in a child process of its own) and champion
 * evaluation. Runs on the t3_large node pool in Kubernetes.
 */
import { createEvaluationActivities } from '../activities/evaluation';
import { createTrainingActivities } from '../activities/training';
import { TASK_QUEUES } from '../common/constants';
import { defaultBudgetBytes } from '../ml/memory';
import { loadTf } from '../ml/tf';
import { createS3Client, S3Store } from '../storage/s3';
import { MlflowClient } from '../tracking/mlflow';
import { main, runWorker } from './run';

main(() => {
  loadTf();
  // Trainings share the CPU; more in parallel than this only slows each down.
  const concurrency = Number(process.env.TRAINING_CONCURRENCY ?? 3);
  return runWorker((config) => ({
    taskQueue: TASK_QUEUES.training,
    maxConcurrentActivityTaskExecutions: concurrency,
    activities: (() => {
      const mlflow = new MlflowClient(config.mlflow.trackingUri);
      return {
        ...createTrainingActivities({
          mlflow,
          onednn: config.training.onednn,
          // Each of the concurrent trainings gets its share of the container's memory.
          memoryBudgetBytes: config.training.memoryMb ? config.training.memoryMb * 2 ** 20 : defaultBudgetBytes(concurrency),
        }),
        ...createEvaluationActivities({ s3: new S3Store(createS3Client(config)), mlflow }),
      };
    })(),
  }));
});
