/**
 * The workflow's view of its activities: one proxy per activity group, with the task queue,
 * timeouts and retry policy each needs. Types only come from the activity modules.
 */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { createDataActivities } from '../activities/preprocess';
import type { createDataWatchActivities } from '../activities/data-watch';
import type { createDriftActivities } from '../activities/drift';
import type { createScheduleActivities } from '../activities/schedules';
import type { createDeployActivities } from '../activities/deploy';
import type { createEvaluationActivities } from '../activities/evaluation';
import type { createRegistryActivities } from '../activities/registry';
import type { createTrainingActivities } from '../activities/training';
import { TASK_QUEUES } from '../common/constants';
import { FAILURE, NON_RETRYABLE } from '../common/failures';

export const data = proxyActivities<ReturnType<typeof createDataActivities>>({
  taskQueue: TASK_QUEUES.data,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: { maximumAttempts: 5, initialInterval: '5s', nonRetryableErrorTypes: [...NON_RETRYABLE.data] },
});

export const training = proxyActivities<ReturnType<typeof createTrainingActivities>>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '12h',
  // A killed training worker is noticed within 30 s (the activity heartbeats every 10 s from a timer,
  // not from the busy training process, so a long batch never starves them); the next attempt
  // resumes from the newest checkpoint, which makes retries cheap, so a run survives many kills.
  heartbeatTimeout: '30s',
  retry: { maximumAttempts: 12, initialInterval: '10s', nonRetryableErrorTypes: [...NON_RETRYABLE.training] },
});

export const evaluation = proxyActivities<ReturnType<typeof createEvaluationActivities>>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '30m',
  heartbeatTimeout: '2m',
  retry: { maximumAttempts: 3, initialInterval: '10s' },
});

export const registry = proxyActivities<ReturnType<typeof createRegistryActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '1m',
  retry: { maximumAttempts: 10, initialInterval: '2s', nonRetryableErrorTypes: [...NON_RETRYABLE.registry] },
});

// A promotion waits its turn behind those of the same registered model already asked for
// (registered-model.ts), each a few MLflow calls: minutes at most, even with many endpoints. It
// heartbeats while it waits, so a lost worker is noticed within 30 s.
// One listing of the endpoint's data: quick, and the next check comes anyway.
export const dataWatch = proxyActivities<ReturnType<typeof createDataWatchActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '10m',
  retry: { maximumAttempts: 3, initialInterval: '5s', nonRetryableErrorTypes: [FAILURE.invalidDataset] },
});

// Reads a day's or a week's sample batches and, once per dataset, a few of its shards.
export const drift = proxyActivities<ReturnType<typeof createDriftActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '10m',
  retry: { maximumAttempts: 3, initialInterval: '10s', nonRetryableErrorTypes: [FAILURE.invalidDataset, FAILURE.invalidInput] },
});

// One describe of a schedule; the tick goes on without it.
export const schedules = proxyActivities<ReturnType<typeof createScheduleActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 3, initialInterval: '2s' },
});

export const promotions = proxyActivities<Pick<ReturnType<typeof createRegistryActivities>, 'promoteModelVersion'>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '10m',
  heartbeatTimeout: '30s',
  retry: { maximumAttempts: 10, initialInterval: '2s', nonRetryableErrorTypes: [...NON_RETRYABLE.registry] },
});

// A quick look at the endpoint (restarting a local server takes seconds); a failed check is itself
// an answer, so it is tried twice at most and the next check comes soon anyway.
export const health = proxyActivities<ReturnType<typeof createDeployActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '5m',
  heartbeatTimeout: '2m',
  retry: { maximumAttempts: 2, initialInterval: '5s' },
});

// A SageMaker endpoint can take well over ten minutes to become InService; the activity heartbeats
// while it waits, so a lost worker is still noticed within two minutes. A cancelled deploy (a
// redeploy handed to the next run, serving.ts) is waited for until it has stopped, so that no two
// deploys of one endpoint ever overlap.
export const deploy = proxyActivities<ReturnType<typeof createDeployActivities>>({
  taskQueue: TASK_QUEUES.pipeline,
  startToCloseTimeout: '2h',
  heartbeatTimeout: '2m',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 5, initialInterval: '5s', nonRetryableErrorTypes: [...NON_RETRYABLE.deploy] },
});
