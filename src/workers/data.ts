/** Worker for queue ml-data: preprocessing. */
import { createDataActivities } from '../activities/preprocess';
import { TASK_QUEUES } from '../common/constants';
import { loadTf } from '../ml/tf';
import { createS3Client, S3Store } from '../storage/s3';
import { MlflowClient } from '../tracking/mlflow';
import { main, runWorker } from './run';

main(() => {
  loadTf(); // fail at start-up, not at the first task, if the native backend is missing
  return runWorker((config) => ({
    taskQueue: TASK_QUEUES.data,
    activities: createDataActivities({ store: new S3Store(createS3Client(config)), mlflow: new MlflowClient(config.mlflow.trackingUri) }),
  }));
});
