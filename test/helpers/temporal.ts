/** Temporal helpers for the tests. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SearchAttributeType } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker, type NativeConnection, type WorkflowBundle } from '@temporalio/worker';
import { createDataWatchActivities } from '../../src/activities/data-watch';
import { createDriftActivities } from '../../src/activities/drift';
import { createScheduleActivities } from '../../src/activities/schedules';
import { createDeployActivities, type DeployDeps } from '../../src/activities/deploy';
import { createNotifyActivities } from '../../src/activities/notify';
import { createEvaluationActivities } from '../../src/activities/evaluation';
import { createDataActivities } from '../../src/activities/preprocess';
import { createRegistryActivities } from '../../src/activities/registry';
import { createTrainingActivities } from '../../src/activities/training';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../../src/common/constants';
import { loadConfig } from '../../src/config';
import { deploymentOptions } from '../../src/runtime/versioning';
import { LocalEndpoints } from '../../src/serving/local-endpoints';
import { statusQuery, type PipelineStatus } from '../../src/workflows/messages';
import { testMlflow, testS3 } from './services';

let installed = false;

/** The Temporal SDK runtime for the whole mocha process: installed once, logging errors only. */

export function installQuietRuntime(): void {
  if (installed) return;
  // Only the first call in a process can install it; the first Worker or test server creates it otherwise.
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  installed = true;
}

/**
 * A real Temporal dev server (the installed CLI's, as `npm run stack` runs it) for one suite, with
 * the pipeline's search attributes registered unless `withSearchAttributes` is false.
 */
export function startDevServer({
  extraArgs = [] as string[],
  withSearchAttributes = true,
  uiPort = undefined as number | undefined,
} = {}): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: join(__dirname, '..', '..', '.venv', 'bin', 'temporal') },
      ...(uiPort ? { ui: true, uiPort } : {}),
      ...(withSearchAttributes ? { searchAttributes: Object.values(SEARCH_ATTRIBUTES) } : {}),
      extraArgs,
    },
  });
}

/**
 * Temporal's time-skipping test server (timers fire as soon as nothing else is pending, so days pass
 * in seconds) for one suite: the Java build from Maven Central that scripts/setup.sh installs
 * (scripts/temporal-test-server), not the native one the SDK would download. It has no Worker
 * Deployments: its workers poll unversioned.
 */
export async function startTimeSkippingServer(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: join(__dirname, '..', '..', 'scripts', 'temporal-test-server', 'run') } },
  });
  // Its namespace has no custom search attributes until told (the dev server takes them as flags).
  const { INDEXED_VALUE_TYPE_KEYWORD, INDEXED_VALUE_TYPE_DOUBLE } = temporal.api.enums.v1.IndexedValueType;
  const types = { [SearchAttributeType.KEYWORD]: INDEXED_VALUE_TYPE_KEYWORD, [SearchAttributeType.DOUBLE]: INDEXED_VALUE_TYPE_DOUBLE };
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(Object.values(SEARCH_ATTRIBUTES).map((key) => [key.name, types[key.type as keyof typeof types]])),
  });
  return env;
}

/**
 * The three task queues' workers with the real activities (against the test MLflow, S3 and SageMaker API),
 * as the worker entry points compose them.
 */
export function createPipelineWorkers(
  connection: NativeConnection,
  workflowBundle: WorkflowBundle,
  sagemaker?: DeployDeps['sagemaker'],
  /** Replaces training activities (for failures no real run can be made to produce on demand). */
  trainingOverrides: Partial<ReturnType<typeof createTrainingActivities>> = {},
  /** Poll as this build of the `cnn-skin-cancer` Worker Deployment (as the worker entry points do), with extra pipeline activities. */
  release: {
    buildId?: string;
    pipelineActivities?: object;
    withoutTraining?: boolean;
    /** The pipeline worker's DEFAULT_DEPLOY_TARGET and whether it believes it runs in a pod. */
    target?: DeployDeps['target'];
    /** The pipeline worker's DRIFT_SAMPLE_URI (default: the environment's). */
    driftSampleUri?: string;
  } = {},
): Promise<Worker[]> {
  const s3 = testS3();
  const mlflow = testMlflow();
  const config = loadConfig(process.env);
  const driftSampleUri = release.driftSampleUri ?? config.drift.sampleUri;
  const versioning = release.buildId ? { workerDeploymentOptions: deploymentOptions(config.temporal.deploymentName, release.buildId) } : {};
  return Promise.all([
    Worker.create({
      connection,
      taskQueue: TASK_QUEUES.pipeline,
      workflowBundle,
      ...versioning,
      activities: {
        ...createRegistryActivities({ mlflow }),
        ...createDataWatchActivities({ store: s3 }),
        ...createDriftActivities({ store: s3, sampleUri: driftSampleUri }),
        ...createScheduleActivities(),
        ...createNotifyActivities(config.notifications),
        ...createDeployActivities({
          local: new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: process.env, driftSampleUri }),
          sagemaker,
          driftSampleUri,
          ...(release.target ? { target: release.target } : {}),
        }),
        // Last, so they can also replace a real one.
        ...release.pipelineActivities,
      },
    }),
    Worker.create({ connection, taskQueue: TASK_QUEUES.data, ...versioning, activities: createDataActivities({ store: s3 }) }),
    ...(release.withoutTraining
      ? []
      : [
          Worker.create({
            connection,
            taskQueue: TASK_QUEUES.training,
            ...versioning,
            activities: {
              ...createTrainingActivities({ mlflow, onednn: false }),
              ...createEvaluationActivities({ onednn: false }),
              ...trainingOverrides,
            },
          }),
        ]),
  ]);
}

/**
 * With RECORD_HISTORIES=1, saves a finished run's history (binary protobuf) under
 * test/workflows/histories, where test/workflows/replay.test.ts replays every file with the current
 * workflow code: histories recorded by older code prove that runs already started stay replayable.
 */
export async function recordHistory(handle: { fetchHistory(): Promise<unknown> }, name: string): Promise<void> {
  if (process.env.RECORD_HISTORIES !== '1') return;
  mkdirSync(HISTORIES_DIR, { recursive: true });
  const history = (await handle.fetchHistory()) as temporal.api.history.v1.IHistory;
  writeFileSync(join(HISTORIES_DIR, `${name}.pb`), temporal.api.history.v1.History.encode(history).finish());
}

export const HISTORIES_DIR = join(__dirname, '..', 'workflows', 'histories');

/** The run's `status` once `done` holds; fails after `timeoutMs`, naming `what` and showing the last status. */
export async function statusWhen(
  handle: WorkflowHandle,
  done: (s: PipelineStatus) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<PipelineStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await handle.query(statusQuery);
    if (done(status)) return status;
    if (Date.now() > deadline) {
      // The long lists last, so that what is cut is the least telling.
      const { deployments, redeploys, dataset, models, ...rest } = status;
      const shown = JSON.stringify({
        ...rest,
        models,
        deployments: deployments.at(-1),
        redeploys: redeploys.at(-1),
        dataset: dataset?.manifestUri,
      });
      throw new Error(`timed out waiting for ${what}; status: ${shown.slice(0, 3000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * For one describe block: a server (`start`) and the workers `workersFor` creates on it, running
 * until the block ends. Returns the server's environment, once the block's `before` has run.
 */
export function useServerWithWorkers(
  start: () => Promise<TestWorkflowEnvironment>,
  workersFor: (env: TestWorkflowEnvironment) => Promise<Worker[]>,
): () => TestWorkflowEnvironment {
  let env: TestWorkflowEnvironment;
  let workers: Worker[] = [];
  let running: Promise<void>[] = [];
  before(async function () {
    this.timeout(120_000);
    env = await start();
    workers = await workersFor(env);
    running = workers.map((w) => w.run());
  });
  after(async function () {
    this.timeout(60_000);
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await Promise.allSettled(running);
    await env?.teardown();
  });
  return () => env;
}
