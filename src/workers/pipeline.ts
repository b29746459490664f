/** Worker for queue ml-pipeline: the workflows, registry and deploy activities, notifications, and the count of an endpoint's images. */
import { createDeployActivities, DEPLOY_HEARTBEAT_THROTTLE } from '../activities/deploy';
import { createDataWatchActivities } from '../activities/data-watch';
import { createDriftActivities } from '../activities/drift';
import { createScheduleActivities } from '../activities/schedules';
import { createNotifyActivities } from '../activities/notify';
import { createRegistryActivities } from '../activities/registry';
import { createS3Client, S3Store } from '../storage/s3';
import { TASK_QUEUES } from '../common/constants';
import { createSageMakerClient, sageMakerApi } from '../sagemaker/api';
import type { Config } from '../config';
import { ownerStanding, sweepEndpoints } from '../serving/endpoint-reaper';
import { LocalEndpoints } from '../serving/local-endpoints';
import { MlflowClient } from '../tracking/mlflow';
import { SHUTDOWN_TIMES } from '../runtime/shutdown-times';
import { main, runWorker } from './run';

const localEndpoints = (config: Config): LocalEndpoints =>
  new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: process.env, driftSampleUri: config.drift.sampleUri });

main(() =>
  runWorker({
    name: 'pipeline',
    taskQueue: TASK_QUEUES.pipeline,
    shutdown: SHUTDOWN_TIMES.pipeline,
    // Local endpoints whose owner was terminated (or failed) are stopped (endpoint-reaper.ts).
    background: async ({ config, connection, logger, signal }) => {
      if (config.localEndpoint.sweepSeconds === 0) return;
      await sweepEndpoints(localEndpoints(config), ownerStanding(connection.workflowService, config.temporal.namespace), {
        everyMs: config.localEndpoint.sweepSeconds * 1000,
        signal,
        log: (message, meta) => logger.info(message, meta),
      });
    },
    build: (config) => ({
      workflowsPath: require.resolve('../workflows'),
      maxHeartbeatThrottleInterval: DEPLOY_HEARTBEAT_THROTTLE,
      activities: {
        ...createDataWatchActivities({ store: new S3Store(createS3Client(config)) }),
        ...createDriftActivities({ store: new S3Store(createS3Client(config)), sampleUri: config.drift.sampleUri }),
        ...createNotifyActivities(config.notifications),
        ...createScheduleActivities(),
        ...createRegistryActivities({ mlflow: new MlflowClient(config.mlflow.trackingUri) }),
        ...createDeployActivities({
          local: localEndpoints(config),
          sagemaker: { api: sageMakerApi(createSageMakerClient(config)), config: config.sagemaker, region: config.aws.region },
          target: config.deploy,
          driftSampleUri: config.drift.sampleUri,
        }),
      },
    }),
  }),
);
