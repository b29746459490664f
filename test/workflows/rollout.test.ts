import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, type Worker, type WorkflowBundle } from '@temporalio/worker';
import { NormalModuleReplacementPlugin } from 'webpack';
import { TASK_QUEUES } from '../../src/common/constants';
import type { TrainedModel, TrainModelInput } from '../../src/common/types';
import { loadConfig } from '../../src/config';
import { drainageStatus, setCurrentVersion } from '../../src/runtime/deployment';
import { createTrainingActivities } from '../../src/activities/training';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import { finishSignal, statusQuery } from '../../src/workflows/messages';
import { ROOT, useTestStack } from '../helpers/global';
import { seededDataset, testMlflow, testS3 } from '../helpers/services';
import { createPipelineWorkers, startDevServer } from '../helpers/temporal';

const until = async <T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 120_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
};

useTestStack();

describe('Worker Versioning rollout (real dev server with worker deployments, real workers and activities)', function () {
  let env: TestWorkflowEnvironment;
  const { deploymentName } = loadConfig(process.env).temporal;
  const started: { workers: Worker[]; running: Promise<void>[] }[] = [];
  const start = (workers: Worker[]) => {
    const running = workers.map((w) => w.run());
    started.push({ workers, running });
    return running;
  };

  before(async () => {
    // The server re-checks whether a version still has pinned runs every 3 minutes by default.
    env = await startDevServer({
      extraArgs: [
        ...['--dynamic-config-value', 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"'],
        ...['--dynamic-config-value', 'matching.wv.VersionDrainageStatusRefreshInterval="1s"'],
      ],
    });
  });
  after(async () => {
    // A failed assertion leaves workers running; they must stop before the server goes.
    for (const { workers } of started) for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await Promise.allSettled(started.flatMap((s) => s.running));
    await env?.teardown();
  });

  it('keeps a run on the build it started on while a new build becomes current, moves its serving phase by continue-as-new, and drains the old build', async () => {
    const s3 = testS3();
    const mlflow = testMlflow();
    const dataUri = await seededDataset(s3, { trainPerClass: 10, testPerClass: 4, size: 16 });
    const workflowsPath = require.resolve('../../src/workflows');
    const v1Bundle = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
    const v2Bundle: WorkflowBundle = await bundleWorkflowCode({
      workflowsPath,
      logger: new DefaultLogger('WARN'),
      webpackConfigHook: (config) => {
        const steps = require.resolve('./fixtures/steps-v2');
        config.plugins = [
          ...(config.plugins ?? []),
          new NormalModuleReplacementPlugin(/^\.\/steps$/, (resource: { context: string; request: string }) => {
            if (resource.context === join(ROOT, 'src', 'workflows')) resource.request = steps;
          }),
        ];
        return config;
      },
    });
    const service = env.client.workflowService;
    const ref = (buildId: string) => ({ namespace: 'default', deploymentName, buildId });

    // Release 1: its training waits for the test's word, so run A is mid-training during the rollout.
    let releaseTraining!: () => void;
    const trainingGate = new Promise<void>((r) => (releaseTraining = r));
    let trainingStarted = false;
    const real = createTrainingActivities({ mlflow, onednn: false });
    const v1Workers = await createPipelineWorkers(
      env.nativeConnection,
      v1Bundle,
      undefined,
      {
        async trainModel(input: TrainModelInput): Promise<TrainedModel> {
          trainingStarted = true;
          await trainingGate;
          return real.trainModel(input);
        },
      },
      { buildId: 'v1' },
    );
    const v1Running = start(v1Workers);
    await setCurrentVersion(service, ref('v1'));

    const input = (over: PipelineInput): PipelineInput => ({
      dataUri,
      imageSize: 12,
      epochs: 1,
      batchSize: 8,
      models: ['Basic'],
      registeredModelName: 'rollout-model',
      experimentName: 'rollout-test',
      ...over,
    });
    const a = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: 'rollout-a',
      args: [input({ lifetimeSeconds: 3600, versionCheckSeconds: 1 })],
    });
    await until(async () => trainingStarted, Boolean, 'run A to start training');
    const versionOf = async (h: WorkflowHandle) => {
      const info = (await h.describe()).raw.workflowExecutionInfo?.versioningInfo;
      return { buildId: info?.deploymentVersion?.buildId, behavior: info?.behavior };
    };
    assert.deepEqual(await versionOf(a), { buildId: 'v1', behavior: 1 /* VERSIONING_BEHAVIOR_PINNED */ });

    // Release 2 starts and becomes current while A is still training on release 1.
    const release2Runs: string[] = [];
    const v2Workers: Worker[] = await createPipelineWorkers(
      env.nativeConnection,
      v2Bundle,
      undefined,
      {},
      {
        buildId: 'v2',
        pipelineActivities: { recordRelease2: async (workflowId: string) => void release2Runs.push(workflowId) },
      },
    );
    const v2Running = start(v2Workers);
    await setCurrentVersion(service, ref('v2'));

    releaseTraining();
    await until(
      () => a.query(statusQuery),
      (s) => s.stage === 'serving',
      'run A to deploy',
    );
    const firstRun = env.client.workflow.getHandle('rollout-a', a.firstExecutionRunId);
    const failedTasks = (await firstRun.fetchHistory()).events!.filter((e) => e.workflowTaskFailedEventAttributes);
    assert.deepEqual(failedTasks, [], 'run A replayed nowhere but on release 1: no failed workflow task');
    assert.deepEqual(release2Runs, [], "release 2's extra activity never ran for A");

    // A new run executes release 2's code.
    const b = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: 'rollout-b',
      args: [input({ lifetimeSeconds: 0 })],
    });
    await b.result();
    assert.deepEqual(release2Runs, ['rollout-b']);
    assert.equal((await versionOf(b)).buildId, 'v2');

    // A's serving phase continues as new onto release 2, keeping its state.
    await until(
      () => versionOf(a),
      (v) => v.buildId === 'v2',
      "run A's serving phase to move to v2",
    );
    assert.notEqual((await a.describe()).runId, a.firstExecutionRunId, 'A moved by continue-as-new');
    assert.equal((await a.query(statusQuery)).stage, 'serving');
    await a.signal(finishSignal);
    assert.equal((await a.result()).stage, 'finished');

    // Nothing is pinned to release 1 any more: the server reports it drained, and its workers stop cleanly.
    await until(
      () => drainageStatus(service, ref('v1')),
      (s) => s === 'DRAINED',
      'v1 to drain',
    );
    for (const w of v1Workers) w.shutdown();
    await Promise.all(v1Running);
    for (const w of v2Workers) w.shutdown();
    await Promise.all(v2Running);
  });
});
