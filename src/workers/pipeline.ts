/** Worker for queue ml-pipeline: the workflow itself, registry and deploy activities. */
import { createDeployActivities } from '../activities/deploy';
import { createRegistryActivities } from '../activities/registry';
import { TASK_QUEUES } from '../common/constants';
import { createSageMakerClient, sageMakerApi } from '../sagemaker/api';
import { LocalEndpoints } from '../serving/local-endpoints';
import { MlflowClient } from '../tracking/mlflow';
import { SHUTDOWN_TIMES } from '../runtime/shutdown-times';
import { main, runWorker } from './run';

main(() =>
  runWorker({
    name: 'pipeline',
    taskQueue: TASK_QUEUES.pipeline,
    shutdown: SHUTDOWN_TIMES.pipeline,
    build: (config) => ({
      workflowsPath: require.resolve('../workflows'),
      activities: {
        ...createRegistryActivities({ mlflow: new MlflowClient(config.mlflow.trackingUri) }),
        ...createDeployActivities({
          local: new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: process.env }),
          sagemaker: { api: sageMakerApi(createSageMakerClient(config)), config: config.sagemaker, region: config.aws.region },
          target: config.deploy,
        }),
      },
    }),
  }),
);
