import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createDeployActivities, type DeployDeps } from '../../src/activities/deploy';
import { SEARCH_ATTRIBUTES, TASK_QUEUES } from '../../src/common/constants';
import { loadConfig } from '../../src/config';
import { createSageMakerClient, sageMakerApi } from '../../src/sagemaker/api';
import { fakeUpdateEndpoint } from '../helpers/fake-sagemaker';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import type { DeployInput, TrainModelInput } from '../../src/common/types';
import { LocalEndpoints, servedBy } from '../../src/serving/local-endpoints';
import { isProcessAlive } from '../../src/system/process';
import { finishSignal, redeploySignal, redeployUpdate, statusQuery } from '../../src/workflows/messages';
import { ROOT, TEST_STACK_DIR, useTestStack } from '../helpers/global';
import { createPipelineWorkers, startDevServer, recordHistory } from '../helpers/temporal';
import { runTags, seededDataset, testMlflow, testS3 } from '../helpers/services';
import { DAG_MODEL_PARAMS } from '../helpers/airflow';

useTestStack();

describe('cnnSkinCancerWorkflow (real Temporal dev server, real activities)', function () {
  let env: TestWorkflowEnvironment;
  let bundle: WorkflowBundle;
  let dataUri: string;
  const s3 = testS3();
  const mlflow = testMlflow();
  const config = loadConfig(process.env);

  before(async function () {
    env = await startDevServer();
    bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') });
    dataUri = await seededDataset(s3, { trainPerClass: 16, testPerClass: 6, size: 24 });
  });

  after(async () => {
    await env?.teardown();
  });

  /** The three task queues' workers, with the real activities, for the duration of `fn`. */
  async function withWorkers<T>(
    fn: () => Promise<T>,
    sagemaker?: DeployDeps['sagemaker'],
    trainingOverrides?: Parameters<typeof createPipelineWorkers>[3],
  ): Promise<T> {
    const workers = await createPipelineWorkers(env.nativeConnection, bundle, sagemaker, trainingOverrides);
    const main = fn();
    const [result] = await Promise.all([main, ...workers.map((w) => w.runUntil(main.catch(() => undefined)))]);
    return result as T;
  }

  const small = (over: PipelineInput = {}): PipelineInput => ({
    dataUri,
    imageSize: 16,
    epochs: 3,
    batchSize: 8,
    learningRate: 1e-3,
    crossValFolds: 2,
    registeredModelName: 'wf-test-model',
    experimentName: 'wf-test',
    lifetimeSeconds: 0,
    ...over,
  });

  const waitFor = async <T>(read: () => Promise<T>, done: (v: T) => boolean): Promise<T> => {
    for (;;) {
      const v = await read();
      if (done(v)) return v;
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  const servedVersion = async (endpointName: string) => (await servedBy(TEST_STACK_DIR, endpointName)).version;
  /** The workers' local endpoints (their state files). */
  const endpoints = new LocalEndpoints({ stateDir: TEST_STACK_DIR, host: '127.0.0.1', port: 0, env: {} });

  it('runs preprocess -> train x3 -> select -> promote -> deploy and serves predictions', async () => {
    const result = await withWorkers(() =>
      env.client.workflow.execute(cnnSkinCancerWorkflow, { taskQueue: TASK_QUEUES.pipeline, workflowId: 'pipeline-e2e', args: [small()] }),
    );
    assert.ok(['Basic', 'ResNet50', 'CrossVal'].includes(result.model));
    assert.equal(result.stage, 'finished');
    assert.equal(result.deployment!.version, result.version);

    // The registry's champion is the selected version, and it is what the endpoint serves.
    assert.equal((await mlflow.getModelVersionByAlias('wf-test-model', 'champion'))?.version, result.version);
    assert.equal(await servedVersion(result.deployment!.endpointName), result.version);

    // Every requested model trained in its own finished MLflow run, tagged with the workflow.
    const experiment = await mlflow.getOrCreateExperiment('wf-test');
    const runs = await mlflow.searchRuns(experiment, "tags.`temporal.workflow_id` = 'pipeline-e2e'");
    assert.deepEqual(runs.map((r) => r.run_name).sort(), ['Basic', 'CrossVal', 'ResNet50']);
    assert.ok(runs.every((r) => r.status === 'FINISHED'));

    const handle = env.client.workflow.getHandle('pipeline-e2e');
    const description = await handle.describe();
    assert.equal(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.stage), 'finished');
    assert.equal(description.typedSearchAttributes.get(SEARCH_ATTRIBUTES.bestModel), result.model);

    // Replaying the recorded history with the current code proves the workflow is deterministic.
    await Worker.runReplayHistory({ workflowBundle: bundle }, await handle.fetchHistory(), 'pipeline-e2e');
    await recordHistory(handle, 'pipeline-e2e');
  });

  it("trains and serves from the Airflow DAG's model_params as written (224 px), with only verbose ignored", async () => {
    const workflowId = 'pipeline-dag-params';
    const { result, status } = await withWorkers(async () => {
      const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId,
        args: [
          {
            model_params: { ...DAG_MODEL_PARAMS },
            dataUri,
            models: ['Basic'],
            registeredModelName: 'wf-dag-model',
            experimentName: 'wf-test',
            endpointName: 'wf-dag',
            lifetimeSeconds: 0,
          },
        ],
      });
      const result = await handle.result();
      return { result, status: await handle.query(statusQuery) };
    });
    assert.equal(result.stage, 'finished');
    assert.equal(await servedVersion('wf-dag'), result.version);
    assert.deepEqual(status.ignoredInput, ['model_params.verbose']);
    // What MLflow recorded is what the DAG asked for.
    const experiment = await mlflow.getOrCreateExperiment('wf-test');
    const [run] = await mlflow.searchRuns(experiment, `tags.\`temporal.workflow_id\` = '${workflowId}'`);
    const params = Object.fromEntries((await mlflow.getRun(run!.run_id)).data.params!.map((p) => [p.key, p.value]));
    assert.deepEqual(
      [params.input_shape, params.epochs, params.batch_size, params.learning_rate, params.kernel_initializer, params.dense_initializer],
      ['224x224x3', '2', '64', '0.00001', 'glorot_uniform', 'normal'],
    );
  });

  it('fails non-retryably, naming the field, on invalid input', async () => {
    const err = await withWorkers(() =>
      env.client.workflow
        .execute(cnnSkinCancerWorkflow, {
          taskQueue: TASK_QUEUES.pipeline,
          workflowId: 'pipeline-bad-input',
          args: [{ imageSize: 4 } as PipelineInput],
        })
        .then(
          () => assert.fail('expected the workflow to fail'),
          (e: unknown) => e,
        ),
    );
    assert.ok(err instanceof WorkflowFailedError);
    assert.ok(err.cause instanceof ApplicationFailure);
    assert.equal(err.cause.type, 'InvalidInputError');
    assert.equal(err.cause.nonRetryable, true);
    assert.match(err.cause.message, /invalid input 'imageSize': must be between 8 and 512, got 4/);
  }).timeout(60_000);

  it('refuses a local endpoint at once when the pipeline worker runs in a pod, before any work (worker told it is in a pod)', async () => {
    const workers = await createPipelineWorkers(
      env.nativeConnection,
      bundle,
      undefined,
      {},
      {
        target: { defaultTarget: 'local', inCluster: true },
      },
    );
    const run = (workflowId: string, over: PipelineInput) =>
      env.client.workflow.execute(cnnSkinCancerWorkflow, { taskQueue: TASK_QUEUES.pipeline, workflowId, args: [small(over)] }).then(
        () => assert.fail('expected the workflow to fail'),
        (e: unknown) => e as WorkflowFailedError,
      );
    const main = (async () => {
      const defaulted = await run('pipeline-local-in-pod', {});
      assert.equal((defaulted.cause as ApplicationFailure).type, 'InvalidDeployRequestError');
      assert.match(defaulted.cause!.message, /this worker pod's loopback.*set DEFAULT_DEPLOY_TARGET=sagemaker/);
      const explicit = await run('pipeline-local-in-pod-explicit', { deployTarget: 'local' });
      assert.match(explicit.cause!.message, /Start the run with "deployTarget": "sagemaker"$/);
      const events = (await env.client.workflow.getHandle('pipeline-local-in-pod').fetchHistory()).events!;
      const scheduled = events.flatMap((e) =>
        e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityType?.name] : [],
      );
      assert.deepEqual(scheduled, ['resolveDeployTarget'], 'nothing else ran');
    })();
    await Promise.all([main, ...workers.map((w) => w.runUntil(main.catch(() => undefined)))]);
  });

  it('keeps a run whose first deployment failed alive in deploy-failed, champion untouched, and a redeploy retries it (deploy replaced by a stand-in that fails once: no local server fails on demand)', async () => {
    const real = createDeployActivities({
      local: new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: process.env }),
    });
    let calls = 0;
    const failingOnce = {
      async deployModel(input: DeployInput) {
        if (calls++ === 0) throw ApplicationFailure.nonRetryable('the endpoint failed to start (stand-in)', 'EndpointFailedError');
        return real.deployModel(input);
      },
    };
    const workers = await createPipelineWorkers(env.nativeConnection, bundle, undefined, {}, { pipelineActivities: failingOnce });
    const main = (async () => {
      const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'pipeline-deploy-failed',
        args: [small({ models: ['Basic'], registeredModelName: 'deploy-failed-model', lifetimeSeconds: 3600 })],
      });
      let status = await waitFor(
        () => handle.query(statusQuery),
        (s) => s.stage === 'deploy-failed',
      );
      assert.match(status.deployError!, /the endpoint failed to start \(stand-in\)/);
      assert.deepEqual(status.deployments, []);
      assert.equal((await handle.describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.stage), 'deploy-failed');
      assert.equal(await mlflow.getModelVersionByAlias('deploy-failed-model', 'champion'), undefined, 'no champion that never served');

      const deployment = await handle.executeUpdate(redeployUpdate, { args: [{ version: status.selection!.version }] });
      assert.equal(deployment.version, status.selection!.version);
      status = await handle.query(statusQuery);
      assert.equal(status.stage, 'serving');
      assert.equal(status.deployError, undefined);
      assert.equal((await mlflow.getModelVersionByAlias('deploy-failed-model', 'champion'))?.version, deployment.version);
      assert.equal(await servedVersion(deployment.endpointName), deployment.version);
      await handle.signal(finishSignal);
      assert.equal((await handle.result()).deployment?.version, deployment.version);
      await recordHistory(handle, 'pipeline-deploy-failed');
    })();
    await Promise.all([main, ...workers.map((w) => w.runUntil(main.catch(() => undefined)))]);
  });

  it('marks FAILED the MLflow run a training left RUNNING when it failed for good (training activity replaced by one that dies without closing its run, as a killed process does)', async () => {
    let runId: string | undefined;
    const dying = {
      async trainModel(input: TrainModelInput): Promise<never> {
        const info = Context.current().info;
        const experimentId = await mlflow.getOrCreateExperiment(input.experimentName);
        runId = (
          await mlflow.createRun(experimentId, input.modelClass, {
            model_class: input.modelClass,
            'temporal.workflow_id': input.workflowId,
            'temporal.workflow_run_id': info.workflowExecution?.runId ?? '',
            'temporal.activity_id': info.activityId,
          })
        ).run_id;
        throw ApplicationFailure.nonRetryable('the training process died (SIGKILL)', 'TrainingProcessDiedError');
      },
    };
    const err = await withWorkers(
      () =>
        env.client.workflow
          .execute(cnnSkinCancerWorkflow, {
            taskQueue: TASK_QUEUES.pipeline,
            workflowId: 'pipeline-abandoned-run',
            args: [small({ models: ['Basic'], minSuccessfulModels: 1 })],
          })
          .then(
            () => assert.fail('expected the workflow to fail'),
            (e: unknown) => e,
          ),
      undefined,
      dying,
    );
    assert.ok(err instanceof WorkflowFailedError);
    assert.equal((err.cause as ApplicationFailure).type, 'AllTrainingsFailedError');
    const run = await mlflow.getRun(runId!);
    assert.equal(run.info.status, 'FAILED');
    assert.match(runTags(run)['training.failure'] ?? '', /the training process died \(SIGKILL\)/);
    await recordHistory(env.client.workflow.getHandle('pipeline-abandoned-run'), 'pipeline-abandoned-run');
  }).timeout(120_000);

  it('stays alive after deploying and redeploys a registered version on a signal; bad requests are recorded, not fatal', async () => {
    await withWorkers(async () => {
      const handle: WorkflowHandle<typeof cnnSkinCancerWorkflow> = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'pipeline-redeploy',
        args: [small({ models: ['Basic', 'CrossVal'], lifetimeSeconds: 3600 })],
      });
      let status = await handle.query(statusQuery);
      while (status.stage !== 'serving') {
        await new Promise((r) => setTimeout(r, 500));
        status = await handle.query(statusQuery);
      }
      const deployed = status.deployments[0]!;
      const other = status.models.find((m) => m.version !== deployed.version)!;
      await handle.signal(redeploySignal, { alias: 'no-such-alias' });
      await handle.signal(redeploySignal, { version: 'x' } as never);
      await handle.signal(redeploySignal, { version: other.version! });
      while ((await handle.query(statusQuery)).redeploys.length < 2) await new Promise((r) => setTimeout(r, 300));
      assert.equal(await servedVersion(deployed.endpointName), other.version);
      const { pid } = endpoints.read(deployed.endpointName)!;
      await handle.signal(finishSignal);
      const result = await handle.result();
      assert.equal(result.deployment!.version, other.version);
      // The owner's end is its local endpoint's: the server stopped, its state removed.
      assert.equal(isProcessAlive(pid), false, `the endpoint's server (pid ${pid}) still runs after finish`);
      assert.equal(endpoints.read(deployed.endpointName), undefined);
      status = await handle.query(statusQuery);
      assert.deepEqual(
        status.redeploys.map((r) => r.outcome),
        ['failed', 'deployed'],
      );
      assert.match(status.redeploys[0]!.reason!, /has no alias 'no-such-alias'/);
      assert.deepEqual(
        status.refused?.map((r) => r.request),
        ['{"version":"x"}'],
      );
      assert.match(status.refused![0]!.reason, /positive integer/);
      await recordHistory(handle, 'pipeline-redeploy');
    });
  });

  it('keeps a champion the new best does not beat by minImprovement; promotes over an incomparable one; redeploys by update and by the temporal CLI', async () => {
    const registeredModelName = 'cc-model';
    const run = (workflowId: string, over: PipelineInput) =>
      env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId,
        args: [small({ models: ['Basic'], registeredModelName, ...over })],
      });
    await withWorkers(async () => {
      const first = await (await run('cc-first', {})).result();
      const firstStatus = await env.client.workflow.getHandle('cc-first').query(statusQuery);
      assert.equal(firstStatus.selection?.champion?.outcome, 'promote');
      assert.equal(firstStatus.selection?.champion?.reason, 'no champion yet');

      // Same data, so the champion is scored on it; nothing beats it by 1.0.
      const kept = await (await run('cc-kept', { minImprovement: 1 })).result();
      const keptStatus = await env.client.workflow.getHandle('cc-kept').query(statusQuery);
      const gate = keptStatus.selection!.champion!;
      assert.equal(gate.outcome, 'keep-champion');
      assert.equal(gate.championVersion, first.version);
      assert.equal(typeof gate.championScore, 'number');
      assert.equal(gate.challengerScore, keptStatus.models[0]!.validation!.accuracy);
      assert.match(gate.reason, /< required 1\.0000/);
      assert.equal(kept.version, first.version, 'the endpoint keeps serving the champion');
      assert.equal((await mlflow.getModelVersionByAlias(registeredModelName, 'champion'))?.version, first.version);
      const challenger = await mlflow.getModelVersion(registeredModelName, keptStatus.selection!.version);
      assert.equal(challenger?.tags?.find((t) => t.key === 'selection_decision')?.value, 'keep-champion');

      // Other image size: the champion cannot be scored on this data, so the new best is promoted.
      const handle = await run('cc-serving', { imageSize: 12, lifetimeSeconds: 3600 });
      let status = await waitFor(
        () => handle.query(statusQuery),
        (s) => s.stage === 'serving',
      );
      assert.equal(status.selection?.champion?.outcome, 'promote');
      assert.match(status.selection!.champion!.reason, /champion not comparable: champion v\d+ takes 16 px images/);
      const promoted = status.deployments[0]!;
      assert.equal((await mlflow.getModelVersionByAlias(registeredModelName, 'previous-champion'))?.version, first.version);

      // By update: the caller gets the deployment, or the reason it failed.
      const viaUpdate = await handle.executeUpdate(redeployUpdate, { args: [{ version: keptStatus.selection!.version }] });
      assert.equal(viaUpdate.version, keptStatus.selection!.version);
      assert.equal(await servedVersion(promoted.endpointName), viaUpdate.version);
      await assert.rejects(
        handle.executeUpdate(redeployUpdate, { args: [{ alias: 'champion', instanceType: 'ml.m5.large' }] }),
        (err: unknown) =>
          err instanceof WorkflowUpdateFailedError && /applies to deployTarget 'sagemaker' only/.test(String(err.cause?.message)),
      );
      await assert.rejects(
        handle.executeUpdate(redeployUpdate, { args: [{ alias: 'nope' }] }),
        (err: unknown) => err instanceof WorkflowUpdateFailedError && /has no alias 'nope'/.test(String(err.cause?.message)),
      );

      // By the CLI, as an operator rolls back.
      await promisify(execFile)(join(ROOT, '.venv', 'bin', 'temporal'), [
        ...['workflow', 'signal', '--address', env.address, '--workflow-id', 'cc-serving'],
        ...['--name', 'redeploy', '--input', '{"alias":"previous-champion"}'],
      ]);
      status = await waitFor(
        () => handle.query(statusQuery),
        (s) => s.redeploys.length === 3,
      );
      assert.deepEqual(
        status.redeploys.map((r) => [r.via, r.outcome]),
        [
          ['update', 'deployed'],
          ['update', 'failed'],
          ['signal', 'deployed'],
        ],
      );
      assert.equal(await servedVersion(promoted.endpointName), first.version);
      await handle.signal(finishSignal);
      const result = await handle.result();
      assert.equal(result.deployment!.version, first.version);
      assert.deepEqual(
        status.deployments.map((d) => d.version),
        [promoted.version, viaUpdate.version, first.version],
      );
      await Worker.runReplayHistory({ workflowBundle: bundle }, await handle.fetchHistory(), 'cc-serving');
      await recordHistory(handle, 'cc-serving');
    });
  });

  it('deploys to SageMaker and re-sizes the endpoint by update (moto; fake SageMaker for UpdateEndpoint: moto answers it with HTTP 500)', async () => {
    const { api, updates } = fakeUpdateEndpoint(sageMakerApi(createSageMakerClient(config)));
    const sagemaker = {
      api,
      config: {
        ...config.sagemaker,
        imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cnn-skin-cancer:1.0',
        executionRoleArn: 'arn:aws:iam::123456789012:role/sagemaker-exec',
        allowedInstanceTypes: ['ml.m5.large', 'ml.c5.large'],
      },
      sleep: async () => undefined,
    };
    await withWorkers(async () => {
      const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'pipeline-sagemaker',
        args: [
          small({
            models: ['Basic'],
            registeredModelName: 'sm-wf-model',
            deployTarget: 'sagemaker',
            endpointName: 'wf-sagemaker',
            instanceType: 'ml.c5.large',
            lifetimeSeconds: 3600,
          }),
        ],
      });
      const status = await waitFor(
        () => handle.query(statusQuery),
        (s) => s.stage === 'serving',
      );
      const first = status.deployments[0]!;
      assert.match(first.arn!, /:endpoint\/wf-sagemaker$/);
      assert.deepEqual([first.instanceType, first.instanceCount], ['ml.c5.large', 1]);

      const resized = await handle.executeUpdate(redeployUpdate, { args: [{ instanceCount: 2 }] });
      assert.deepEqual([resized.version, resized.instanceType, resized.instanceCount], [first.version, 'ml.c5.large', 2]);
      assert.deepEqual(
        updates.map((u) => u.configName),
        [resized.endpointConfigName],
      );
      assert.deepEqual(resized.removed, [`endpoint config ${first.endpointConfigName}`, `model ${first.endpointConfigName}`]);
      await handle.signal(finishSignal);
      assert.equal((await handle.result()).deployment?.endpointConfigName, resized.endpointConfigName);
    }, sagemaker);
  });
});
