/**
 * In-memory stand-ins for every activity the pipeline calls, for tests of the serving phase at
 * scale: a run trains and deploys at once, then serves; each call is recorded per workflow id.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type NativeConnection, type WorkflowBundle } from '@temporalio/worker';
import type { createNotifyActivities } from '../../src/activities/notify';
import { createScheduleActivities } from '../../src/activities/schedules';
import type { DriftMeasurement } from '../../src/monitoring/drift';
import type { Client } from '@temporalio/client';
import { TASK_QUEUES } from '../../src/common/constants';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import { DEPLOY_HEARTBEAT_THROTTLE } from '../../src/activities/deploy';
import { FAILURE } from '../../src/common/failures';
import type { Deployment, PreparedDataset } from '../../src/common/types';
import { metrics } from './metrics';
import { useServerWithWorkers } from './temporal';

export interface DeployInput {
  target: Deployment['target'];
  endpointName: string;
  model: { registeredModelName: string; version: string; modelUri?: string };
}

export class ServingStubs {
  /** `notify`: the notification activity the pipeline worker runs (default: a stub that records the events). */
  constructor(private readonly notify?: ReturnType<typeof createNotifyActivities>) {}

  private readonly calls = new Map<string, { name: string; input: unknown }[]>();
  /** Workflows whose every deployment fails (a type the deploy policy does not retry). */
  readonly failingDeploys = new Set<string>();
  private deployGate: Promise<void> | undefined;
  private release: (() => void) | undefined;
  /** Which step of a redeploy holdDeploys() holds: the deploy, or the registry lookup before it. */
  private heldStep: 'deploy' | 'resolve' = 'deploy';
  /**
   * The images under every stub dataUri: what countDatasetImages finds, and what a preprocessing
   * reads (the extra ones in train/, beyond STUB_DATASET's 48).
   */
  images = 48;
  /** What the stub drift measurement answers (default: nothing seen). */
  drift: DriftMeasurement = { unavailable: 'no image was predicted on (stub)', batches: 0, skipped: 0 };
  /** While set, the stub notification waits for it: a webhook that is slow to answer. */
  notificationGate: Promise<void> | undefined;
  private trainingGate: Promise<void> | undefined;
  private releaseTraining: (() => void) | undefined;

  /** Trainings wait from now until releaseTrainings(): a retraining in progress for as long as a test needs. */
  holdTrainings(): void {
    this.trainingGate = new Promise((resolve) => (this.releaseTraining = resolve));
  }

  releaseTrainings(): void {
    this.releaseTraining?.();
    this.trainingGate = this.releaseTraining = undefined;
  }

  /**
   * Deployments (or, with `resolve`, the lookups of the versions to deploy) wait from now until
   * releaseDeploys(): a redeploy in progress for as long as a test needs.
   */
  holdDeploys(step: 'deploy' | 'resolve' = 'deploy'): void {
    this.heldStep = step;
    this.deployGate = new Promise((resolve) => (this.release = resolve));
  }

  releaseDeploys(): void {
    this.release?.();
    this.deployGate = this.release = undefined;
  }

  /** Waits while deployments are held, heartbeating as the real deploy does; a cancellation ends it (CancelledFailure). */
  private async heldDeploy(): Promise<void> {
    if (!this.deployGate || this.heldStep !== 'deploy') return;
    const ctx = Context.current();
    const beat = setInterval(() => ctx.heartbeat(), 1_000);
    try {
      await Promise.race([this.deployGate, ctx.cancelled]);
    } finally {
      clearInterval(beat);
    }
  }

  /** The inputs of one activity's calls from one workflow, oldest first. */
  inputsOf<T = unknown>(workflowId: string, name: string): T[] {
    return (this.calls.get(workflowId) ?? []).filter((c) => c.name === name).map((c) => c.input as T);
  }

  /**
   * For one describe block: a server (`start`), and the three workers with these stubs, running
   * until the block ends. Unversioned: the time-skipping server has no Worker Deployments.
   */
  useServer(start: () => Promise<TestWorkflowEnvironment>): () => TestWorkflowEnvironment {
    return useServerWithWorkers(start, async (env) => this.workers(env.nativeConnection, await workflowBundle()));
  }

  /** The three task queues' workers, unversioned, with these stubs as their activities. */
  workers(connection: NativeConnection, workflowBundle: WorkflowBundle): Promise<Worker[]> {
    const a = this.activities();
    return Promise.all([
      // Heartbeats as often as the real ml-pipeline worker's: a cancelled deploy hears of it as soon.
      Worker.create({
        connection,
        taskQueue: TASK_QUEUES.pipeline,
        workflowBundle,
        activities: a.pipeline,
        maxHeartbeatThrottleInterval: DEPLOY_HEARTBEAT_THROTTLE,
      }),
      Worker.create({ connection, taskQueue: TASK_QUEUES.data, activities: a.data }),
      Worker.create({ connection, taskQueue: TASK_QUEUES.training, activities: a.training }),
    ]);
  }

  private stub<I, O>(name: string, run: (input: I, workflowId: string) => O | Promise<O>): (input: I) => Promise<O> {
    return async (input: I) => {
      const id = Context.current().info.workflowExecution?.workflowId ?? '';
      let list = this.calls.get(id);
      if (!list) this.calls.set(id, (list = []));
      list.push({ name, input });
      return run(input, id);
    };
  }

  private activities() {
    return {
      data: {
        preprocessDataset: this.stub('preprocessDataset', (): PreparedDataset => {
          const train = STUB_DATASET.splits.train.count + this.images - 48;
          return { ...STUB_DATASET, splits: { ...STUB_DATASET.splits, train: { ...STUB_DATASET.splits.train, count: train } } };
        }),
      },
      training: {
        trainModel: this.stub('trainModel', async (input: { modelClass: string; registeredModelName: string }) => {
          await this.trainingGate;
          return {
            modelClass: input.modelClass,
            mlflowRunId: `run-${input.modelClass}`,
            registeredModelName: input.registeredModelName,
            version: '11',
            metrics: { validation: metrics(0.6), test: metrics(0.6) },
            modelUri: `s3://stub/models/${input.modelClass}`,
            archiveUri: `s3://stub/models/${input.modelClass}/model.tar.gz`,
          };
        }),
        evaluateChampion: this.stub('evaluateChampion', () => undefined),
      },
      pipeline: {
        countDatasetImages: this.stub('countDatasetImages', () => this.images),
        measureDrift: this.stub('measureDrift', () => this.drift),
        // The real one: it reads the schedule through the worker's client.
        nextScheduledTime: this.stub('nextScheduledTime', createScheduleActivities().nextScheduledTime),
        // The real activity when the test gives one (a receiver it runs), else recorded only.
        sendNotification:
          this.notify?.sendNotification ??
          this.stub('sendNotification', async () => {
            await this.notificationGate;
            return 'not sent (stub)';
          }),
        promoteModelVersion: this.stub('promoteModelVersion', () => ({})),
        tagModelVersion: this.stub('tagModelVersion', () => undefined),
        // Any version exists; the alias `champion` names v11, `previous-champion` v10.
        resolveModelVersion: this.stub(
          'resolveModelVersion',
          async (input: { registeredModelName: string; version?: string; alias?: string }) => {
            // A lookup whose attempt hangs (the registry's proxy does not wait for a cancelled one to stop).
            if (this.heldStep === 'resolve') await this.deployGate;
            const version = input.version ?? { champion: '11', 'previous-champion': '10' }[input.alias ?? ''];
            if (!version) throw ApplicationFailure.nonRetryable(`stub has no alias '${input.alias}'`, FAILURE.modelVersionNotFound);
            return {
              registeredModelName: input.registeredModelName,
              version,
              modelUri: `s3://stub/registry/${version}`,
              mlflowRunId: 'run',
            };
          },
        ),
        failAbandonedTrainingRuns: this.stub('failAbandonedTrainingRuns', () => []),
        resolveDeployTarget: this.stub('resolveDeployTarget', () => 'local'),
        deployModel: this.stub('deployModel', async (input: DeployInput, workflowId): Promise<Deployment> => {
          if (this.failingDeploys.has(workflowId))
            throw ApplicationFailure.retryable('the endpoint failed to start (stub)', FAILURE.endpointFailed);
          await this.heldDeploy();
          return {
            target: input.target,
            endpointName: input.endpointName,
            url: `http://stub/${input.endpointName}`,
            registeredModelName: input.model.registeredModelName,
            version: input.model.version,
            modelUri: input.model.modelUri,
            deployedAt: new Date().toISOString(),
            durationSeconds: 0,
            unchanged: false,
          };
        }),
        checkEndpoint: this.stub('checkEndpoint', () => ({
          state: 'up' as const,
          detail: 'serves (stub)',
          checkedAt: new Date().toISOString(),
        })),
        retireEndpoint: this.stub(
          'retireEndpoint',
          ({ endpointName }: { endpointName: string }) => `endpoint '${endpointName}' stopped (stub)`,
        ),
      },
    };
  }
}

/** The prepared dataset the stubbed preprocessing answers with (also the decision tests'). */
export const STUB_DATASET: PreparedDataset = {
  manifestUri: 's3://stub/preprocessed/manifest.json',
  classes: ['benign', 'malignant'],
  imageSize: 16,
  splits: {
    train: { count: 32, perClass: { benign: 16, malignant: 16 } },
    validation: { count: 8, perClass: { benign: 4, malignant: 4 } },
    test: { count: 8, perClass: { benign: 4, malignant: 4 } },
  },
  cacheHit: false,
  contentHash: 'stub',
  skipped: { count: 0, keys: [] },
};

let bundle: Promise<WorkflowBundle> | undefined;

/** The workflows, bundled once for every test file that uses the stubs. */
function workflowBundle(): Promise<WorkflowBundle> {
  return (bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') }));
}

/** Starts a run on the stubs: one Basic model, endpoint (and registered model) named after the workflow. */
export function startStubRun(client: Client, workflowId: string, input: PipelineInput) {
  return client.workflow.start(cnnSkinCancerWorkflow, {
    taskQueue: TASK_QUEUES.pipeline,
    workflowId,
    args: [{ dataUri: 's3://stub-bucket/data', experimentName: 'stub-experiment', endpointName: workflowId, models: ['Basic'], ...input }],
  });
}
