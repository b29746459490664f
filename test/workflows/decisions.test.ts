/**
 * The workflow's decisions (selection, champion/challenger, minSuccessfulModels, retries,
 * deploy-failed and redeploy, lifetime) on a real Temporal dev server, with every activity replaced
 * by an in-memory stub: no MLflow, S3, TensorFlow or endpoint, so each run takes about a second.
 * The end-to-end behaviour with the real activities is in pipeline.test.ts.
 */
import { strict as assert } from 'node:assert';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import type { createDeployActivities } from '../../src/activities/deploy';
import type { createNotifyActivities } from '../../src/activities/notify';
import type { createEvaluationActivities } from '../../src/activities/evaluation';
import type { createDataActivities } from '../../src/activities/preprocess';
import type { createRegistryActivities } from '../../src/activities/registry';
import type { createTrainingActivities } from '../../src/activities/training';
import { SEARCH_ATTRIBUTES, TASK_QUEUES, type ModelClass } from '../../src/common/constants';
import { FAILURE } from '../../src/common/failures';
import type { ChampionEvaluation, ClassificationMetrics, TrainedModel } from '../../src/common/types';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import type { PipelineInput } from '../../src/workflows/input';
import { finishSignal, redeploySignal, redeployUpdate, statusQuery } from '../../src/workflows/messages';
import { recordHistory, startDevServer, statusWhen, useServerWithWorkers } from '../helpers/temporal';
import { metrics } from '../helpers/metrics';
import { STUB_DATASET as DATASET } from '../helpers/serving-stubs';

// ---------------------------------------------------------------------------------------------
// Stubs, typed against the real activity factories, on the queues the real workers serve them.

type DataActivities = ReturnType<typeof createDataActivities>;
type TrainingActivities = ReturnType<typeof createTrainingActivities> & ReturnType<typeof createEvaluationActivities>;
// promoteModelVersion is stubbed whole, so the registered model's owner and its applyPromotion never run here.
type PipelineActivities = Omit<ReturnType<typeof createRegistryActivities>, 'applyPromotion'> &
  ReturnType<typeof createDeployActivities> &
  ReturnType<typeof createNotifyActivities>;
type Activities = DataActivities & TrainingActivities & PipelineActivities;
type Name = keyof Activities;
type In<N extends Name> = Parameters<Activities[N]>[0];
type Out<N extends Name> = ReturnType<Activities[N]>;

interface Call {
  workflowId: string;
  name: Name;
  input: unknown;
  attempt: number;
}

/** What the stubs answer for one workflow id. */
interface Scenario {
  /** Validation metrics per model class (default: accuracy 0.5, loss 0.5). */
  validation?: Partial<Record<ModelClass, ClassificationMetrics>>;
  /** The registry's champion, as the evaluation scores it (default: none). */
  champion?: { evaluation: ChampionEvaluation; modelClass: string };
  /** Replaces a stub for this run; `fallback` is the default answer. The call is recorded either way. */
  overrides?: { [N in Name]?: (input: In<N>, fallback: () => Out<N>) => Out<N> };
}

const calls: Call[] = [];
const scenarios = new Map<string, Scenario>();

/** Registered versions the stub trainings create, per model class. */
const VERSION: Record<ModelClass, string> = { Basic: '11', ResNet50: '12', CrossVal: '13' };
const CHAMPION_VERSION = '7';

/** A failure whose own flag allows retries: only the workflow's retry policy (its type) can stop them. */
const typedFailure = (type: string, message: string): ApplicationFailure => ApplicationFailure.retryable(message, type);

/** A stub that records the call, then answers with the scenario's override or `fallback`. */
function stub<N extends Name>(name: N, fallback: (input: In<N>, scenario: Scenario) => Out<N>): Activities[N] {
  const run = (input: In<N>): Out<N> => {
    const info = Context.current().info;
    const workflowId = info.workflowExecution?.workflowId ?? '';
    calls.push({ workflowId, name, input, attempt: info.attempt });
    const scenario = scenarios.get(workflowId) ?? {};
    const override = scenario.overrides?.[name] as ((i: In<N>, f: () => Out<N>) => Out<N>) | undefined;
    return override ? override(input, () => fallback(input, scenario)) : fallback(input, scenario);
  };
  return run as unknown as Activities[N];
}

const dataActivities: DataActivities = {
  preprocessDataset: stub('preprocessDataset', async () => DATASET),
};

const trainingActivities: TrainingActivities = {
  trainModel: stub('trainModel', async (input, s): Promise<TrainedModel> => ({
    modelClass: input.modelClass,
    mlflowRunId: `run-${input.modelClass}`,
    registeredModelName: input.registeredModelName,
    version: VERSION[input.modelClass],
    metrics: { validation: s.validation?.[input.modelClass] ?? metrics(0.5), test: metrics(0.5) },
    modelUri: `s3://stub/models/${input.modelClass}`,
    archiveUri: `s3://stub/models/${input.modelClass}/model.tar.gz`,
  })),
  evaluateChampion: stub('evaluateChampion', async (_input, s) => s.champion?.evaluation),
};

const pipelineActivities: PipelineActivities = {
  sendNotification: stub('sendNotification', async () => 'not sent (stub)'),
  promoteModelVersion: stub('promoteModelVersion', async (_input, s) => ({ previousChampion: s.champion?.evaluation.version })),
  tagModelVersion: stub('tagModelVersion', async () => undefined),
  resolveModelVersion: stub('resolveModelVersion', async (input, s) => {
    let version = input.version;
    let modelClass = Object.entries(VERSION).find(([, v]) => v === version)?.[0];
    if (input.alias === 'champion' && s.champion) [version, modelClass] = [s.champion.evaluation.version, s.champion.modelClass];
    else if (input.alias !== undefined)
      throw ApplicationFailure.nonRetryable(`stub has no alias '${input.alias}'`, FAILURE.modelVersionNotFound);
    if (!version) throw ApplicationFailure.nonRetryable('give a version or an alias', FAILURE.modelVersionNotFound);
    return {
      registeredModelName: input.registeredModelName,
      version,
      modelUri: `s3://stub/registry/${version}`,
      mlflowRunId: 'run',
      modelClass,
    };
  }),
  failAbandonedTrainingRuns: stub('failAbandonedTrainingRuns', async () => []),
  resolveDeployTarget: stub('resolveDeployTarget', async (input) => input.requested ?? 'local'),
  deployModel: stub('deployModel', async (input) => ({
    target: input.target,
    endpointName: input.endpointName,
    url: `http://stub/${input.endpointName}`,
    registeredModelName: input.model.registeredModelName,
    version: input.model.version,
    modelUri: input.model.modelUri,
    deployedAt: new Date().toISOString(),
    durationSeconds: 0,
    unchanged: false,
    ...(input.instanceType ? { instanceType: input.instanceType, instanceCount: input.instanceCount ?? 1 } : {}),
  })),
  checkEndpoint: stub('checkEndpoint', async (input) => ({
    state: 'up' as const,
    detail: `serves v${input.model.version}`,
    checkedAt: new Date().toISOString(),
  })),
  retireEndpoint: stub('retireEndpoint', async ({ endpointName }) => `endpoint '${endpointName}' stopped (stub)`),
};

const callsOf = (workflowId: string): Call[] => calls.filter((c) => c.workflowId === workflowId);
/** The pipeline's activities in call order; notifications go out in the background, in no fixed place among them. */
const namesOf = (workflowId: string): Name[] =>
  callsOf(workflowId)
    .map((c) => c.name)
    .filter((n) => n !== 'sendNotification');
function inputsOf<N extends Name>(workflowId: string, name: N): In<N>[] {
  return callsOf(workflowId)
    .filter((c) => c.name === name)
    .map((c) => c.input as In<N>);
}

/** The activity names in call order, the parallel trainings (whose order is arbitrary) sorted in place. */
function orderOf(workflowId: string): string[] {
  const names: string[] = namesOf(workflowId);
  const first = names.indexOf('trainModel');
  const last = names.lastIndexOf('trainModel');
  if (first < 0) return names;
  return [...names.slice(0, first), ...names.slice(first, last + 1).sort(), ...names.slice(last + 1)];
}

// ---------------------------------------------------------------------------------------------

describe('workflow decisions (stubbed activities, real Temporal dev server)', function () {
  // Stubbed runs take about a second; a hang (a workflow task failing over and over) fails fast.
  this.timeout(30_000);

  const server = useServerWithWorkers(startDevServer, async (env) => {
    const workflowBundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      logger: new DefaultLogger('WARN'),
    });
    const connection = env.nativeConnection;
    return Promise.all([
      Worker.create({ connection, taskQueue: TASK_QUEUES.pipeline, workflowBundle, activities: pipelineActivities }),
      Worker.create({ connection, taskQueue: TASK_QUEUES.data, activities: dataActivities }),
      Worker.create({ connection, taskQueue: TASK_QUEUES.training, activities: trainingActivities }),
    ]);
  });

  const input = (over: PipelineInput = {}): PipelineInput => ({
    dataUri: 's3://stub-bucket/data',
    registeredModelName: 'stub-model',
    experimentName: 'stub-experiment',
    endpointName: 'stub-endpoint',
    lifetimeSeconds: 0,
    ...over,
  });

  function start(workflowId: string, over: PipelineInput, scenario: Scenario = {}): Promise<WorkflowHandle<typeof cnnSkinCancerWorkflow>> {
    scenarios.set(workflowId, scenario);
    return server().client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId,
      args: [input(over)],
      // A run a failed test leaves behind ends on its own.
      workflowExecutionTimeout: '2m',
    });
  }

  const failureOf = (handle: WorkflowHandle): Promise<WorkflowFailedError> =>
    handle.result().then(
      (r: unknown) => assert.fail(`expected the workflow to fail, it returned ${JSON.stringify(r)}`),
      (e: unknown) => {
        assert.ok(e instanceof WorkflowFailedError, `expected a WorkflowFailedError, got ${String(e)}`);
        return e;
      },
    );

  describe('selection', () => {
    it('deploys the best model on the selection metric, then promotes it, and records the decision', async () => {
      const id = 'select-best';
      // On accuracy Basic would win; the run selects on AUC, where ResNet50 is best.
      const handle = await start(
        id,
        { selectionMetric: 'auc' },
        {
          validation: {
            Basic: metrics(0.95, 0.5, { auc: 0.6 }),
            ResNet50: metrics(0.7, 0.5, { auc: 0.9 }),
            CrossVal: metrics(0.8, 0.5, { auc: 0.8 }),
          },
        },
      );
      const result = await handle.result();

      assert.deepEqual(orderOf(id), [
        'resolveDeployTarget',
        'preprocessDataset',
        'trainModel',
        'trainModel',
        'trainModel',
        'evaluateChampion',
        'tagModelVersion',
        'deployModel',
        'promoteModelVersion',
      ]);
      assert.deepEqual(
        inputsOf(id, 'trainModel')
          .map((t) => t.modelClass)
          .sort(),
        ['Basic', 'CrossVal', 'ResNet50'],
      );
      assert.ok(inputsOf(id, 'trainModel').every((t) => t.dataset.manifestUri === DATASET.manifestUri && t.workflowId === id));

      const [deployed] = inputsOf(id, 'deployModel');
      assert.deepEqual([deployed!.model.version, deployed!.model.modelClass, deployed!.target], [VERSION.ResNet50, 'ResNet50', 'local']);
      const [promoted] = inputsOf(id, 'promoteModelVersion');
      assert.equal(promoted!.version, VERSION.ResNet50);
      assert.match(
        promoted!.reason,
        /ResNet50 has the best validation auc \(0\.9000\); others: Basic 0\.6000, CrossVal 0\.8000; no champion yet/,
      );
      const [tagged] = inputsOf(id, 'tagModelVersion');
      assert.deepEqual(tagged, {
        registeredModelName: 'stub-model',
        version: VERSION.ResNet50,
        tags: { selection_decision: 'promote', selection_reason: 'no champion yet' },
      });

      assert.deepEqual([result.stage, result.model, result.version, result.deployment?.version], ['finished', 'ResNet50', '12', '12']);
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        [status.selection?.metric, status.selection?.winner, status.selection?.champion?.outcome],
        ['auc', 'ResNet50', 'promote'],
      );
      const attributes = (await handle.describe()).typedSearchAttributes;
      assert.equal(attributes.get(SEARCH_ATTRIBUTES.bestModel), 'ResNet50');
      assert.equal(attributes.get(SEARCH_ATTRIBUTES.bestMetric), 0.9);
    });

    it('breaks a tie (within 1e-9) on the lower validation loss, then on the order the models were requested in', async () => {
      const run = async (id: string, models: ModelClass[], validation: Scenario['validation']) =>
        (await (await start(id, { models }, { validation })).result()).model;
      const [byLoss, byOrder, withinTolerance] = await Promise.all([
        run('tie-loss', ['Basic', 'ResNet50', 'CrossVal'], {
          Basic: metrics(0.8, 0.5),
          ResNet50: metrics(0.8, 0.3),
          CrossVal: metrics(0.7, 0.1),
        }),
        run('tie-order', ['CrossVal', 'Basic'], { CrossVal: metrics(0.8, 0.4), Basic: metrics(0.8, 0.4) }),
        run('tie-tolerance', ['Basic', 'CrossVal'], { Basic: metrics(0.8, 0.4), CrossVal: metrics(0.8 + 5e-10, 0.4) }),
      ]);
      assert.equal(byLoss, 'ResNet50');
      assert.equal(byOrder, 'CrossVal');
      assert.equal(withinTolerance, 'Basic', 'a difference below 1e-9 is a tie, so the first requested keeps it');
      assert.equal(inputsOf('tie-order', 'promoteModelVersion')[0]?.version, VERSION.CrossVal);
    });

    // selectBestModel compares `a - b`: a null ranks as 0.
    it('never selects a model whose selection score is NaN (JSON carries it as null), even when it was requested first', async () => {
      const id = 'select-nan';
      const handle = await start(
        id,
        {},
        { validation: { Basic: metrics(Number.NaN, Number.NaN), ResNet50: metrics(0.6), CrossVal: metrics(0.55) } },
      );
      const result = await handle.result();
      assert.equal(result.model, 'ResNet50');
      assert.deepEqual(
        inputsOf(id, 'deployModel').map((d) => d.model.version),
        [VERSION.ResNet50],
      );
      assert.deepEqual(
        inputsOf(id, 'promoteModelVersion').map((p) => p.version),
        [VERSION.ResNet50],
      );
    });

    // A NaN reaches the workflow as null (JSON); the Web UI details render it as n/a, and a failure
    // to render could never count as a failed training.
    it('a model whose AUC is NaN is still a candidate when selecting on accuracy (rendering its details does not fail it)', async () => {
      const id = 'select-nan-other-metric';
      const handle = await start(
        id,
        { selectionMetric: 'accuracy' },
        { validation: { Basic: metrics(0.9, 0.5, { auc: Number.NaN }), ResNet50: metrics(0.6), CrossVal: metrics(0.55) } },
      );
      const result = await handle.result();
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        status.models.map((m) => [m.modelClass, m.state, m.error]),
        [
          ['Basic', 'trained', undefined],
          ['ResNet50', 'trained', undefined],
          ['CrossVal', 'trained', undefined],
        ],
      );
      assert.deepEqual(inputsOf(id, 'failAbandonedTrainingRuns'), []);
      assert.equal(result.model, 'Basic', 'the best on the selection metric');
    });
  });

  describe('champion/challenger', () => {
    const champion = (accuracy: number, comparable = true): Scenario['champion'] => ({
      modelClass: 'CrossVal',
      evaluation: {
        version: CHAMPION_VERSION,
        modelUri: `s3://stub/registry/${CHAMPION_VERSION}`,
        comparable,
        ...(comparable ? { metrics: metrics(accuracy, 0.4) } : { reason: 'champion v7 takes 64 px images' }),
      },
    });
    const validation = { Basic: metrics(0.9), ResNet50: metrics(0.6), CrossVal: metrics(0.7) };

    it('keeps the champion that the new best beats by less than minImprovement: serves it, promotes nothing', async () => {
      const id = 'cc-keep';
      const handle = await start(id, { minImprovement: 0.1 }, { validation, champion: champion(0.85) });
      const result = await handle.result();

      assert.deepEqual(inputsOf(id, 'evaluateChampion'), [{ registeredModelName: 'stub-model', dataset: DATASET }]);
      assert.deepEqual(inputsOf(id, 'promoteModelVersion'), [], 'nothing promoted');
      assert.deepEqual(inputsOf(id, 'resolveModelVersion'), [{ registeredModelName: 'stub-model', alias: 'champion' }]);
      assert.deepEqual(
        inputsOf(id, 'deployModel').map((d) => d.model.version),
        [CHAMPION_VERSION],
        'the endpoint is made to serve the champion',
      );
      const [tagged] = inputsOf(id, 'tagModelVersion');
      assert.equal(tagged?.version, VERSION.Basic, 'the decision is tagged on the new best');
      assert.equal(tagged?.tags.selection_decision, 'keep-champion');

      assert.deepEqual([result.model, result.version, result.deployment?.version], ['CrossVal', CHAMPION_VERSION, CHAMPION_VERSION]);
      assert.equal(result.metrics.validation.accuracy, 0.85, "the champion's score on this run's data");
      const gate = (await handle.query(statusQuery)).selection!.champion!;
      assert.deepEqual([gate.outcome, gate.challengerScore, gate.championScore, gate.championVersion], ['keep-champion', 0.9, 0.85, '7']);
      assert.match(gate.reason, /v11 accuracy 0\.9000 vs champion v7 0\.8500: \+0\.0500 < required 0\.1000/);
    });

    it('promotes the new best when it beats the champion by exactly minImprovement, or the champion is not comparable', async () => {
      const [atThreshold, incomparable] = await Promise.all([
        start('cc-threshold', { minImprovement: 0.05 }, { validation, champion: champion(0.85) }).then((h) => h.result()),
        start('cc-incomparable', { minImprovement: 0.5 }, { validation, champion: champion(0, false) }).then((h) => h.result()),
      ]);
      for (const [id, result] of [
        ['cc-threshold', atThreshold],
        ['cc-incomparable', incomparable],
      ] as const) {
        assert.equal(result.version, VERSION.Basic, id);
        assert.deepEqual(
          inputsOf(id, 'promoteModelVersion').map((p) => p.version),
          [VERSION.Basic],
          id,
        );
        assert.deepEqual(inputsOf(id, 'resolveModelVersion'), [], `${id}: no champion lookup`);
      }
      assert.match(inputsOf('cc-threshold', 'promoteModelVersion')[0]!.reason, /\+0\.0500 >= required 0\.0500/);
      assert.match(
        inputsOf('cc-incomparable', 'promoteModelVersion')[0]!.reason,
        /champion not comparable: champion v7 takes 64 px images/,
      );
    });
  });

  describe('failed trainings and retries', () => {
    /** ResNet50's training fails with a type the training retry policy declares non-retryable. */
    const resnetFails: Scenario = {
      validation: { Basic: metrics(0.6), CrossVal: metrics(0.7) },
      overrides: {
        trainModel: (input, fallback) =>
          input.modelClass === 'ResNet50'
            ? Promise.reject(typedFailure(FAILURE.invalidTrainingData, 'ResNet50: training data has 1 class (stub)'))
            : fallback(),
      },
    };

    it('goes on with the trainings that succeeded while at least minSuccessfulModels did', async () => {
      const id = 'min-two';
      const handle = await start(id, { minSuccessfulModels: 2 }, resnetFails);
      const result = await handle.result();
      assert.equal(result.model, 'CrossVal');
      assert.deepEqual(
        inputsOf(id, 'deployModel').map((d) => d.model.version),
        [VERSION.CrossVal],
      );
      assert.deepEqual(
        inputsOf(id, 'promoteModelVersion').map((p) => p.version),
        [VERSION.CrossVal],
      );
      const status = await handle.query(statusQuery);
      assert.deepEqual(
        status.models.map((m) => [m.modelClass, m.state]),
        [
          ['Basic', 'trained'],
          ['ResNet50', 'failed'],
          ['CrossVal', 'trained'],
        ],
      );
      assert.match(status.models[1]!.error!, /training data has 1 class \(stub\)/);
      assert.deepEqual(
        status.selection?.scores.map((s) => s.modelClass),
        ['Basic', 'CrossVal'],
      );
      const [closed] = inputsOf(id, 'failAbandonedTrainingRuns');
      assert.deepEqual([closed?.modelClass, closed?.experimentName], ['ResNet50', 'stub-experiment']);
    });

    it('fails with NotEnoughModelsTrainedError, naming the failure, when fewer than minSuccessfulModels succeed', async () => {
      const id = 'min-three';
      const handle = await start(id, { minSuccessfulModels: 3 }, resnetFails);
      const err = await failureOf(handle);
      assert.ok(err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, FAILURE.notEnoughModelsTrained);
      assert.equal(err.cause.nonRetryable, true);
      assert.match(
        err.cause.message,
        /^only 2 of 3 trainings succeeded, minSuccessfulModels is 3: ResNet50: ResNet50: training data has 1 class \(stub\)$/,
      );
      assert.equal((await handle.query(statusQuery)).stage, 'failed');
      for (const name of ['evaluateChampion', 'deployModel', 'promoteModelVersion'] as const) {
        assert.deepEqual(inputsOf(id, name), [], `no ${name} after the trainings failed`);
      }
    });

    it('does not retry failures the retry policies declare non-retryable (training, preprocessing), but retries a transient one', async () => {
      const [training, data, transient] = await Promise.all([
        start(
          'no-retry-training',
          { models: ['Basic'] },
          { overrides: { trainModel: () => Promise.reject(typedFailure(FAILURE.invalidTrainingData, 'labels out of range (stub)')) } },
        ).then(failureOf),
        start(
          'no-retry-data',
          {},
          { overrides: { preprocessDataset: () => Promise.reject(typedFailure(FAILURE.invalidDataset, 'no test/ split (stub)')) } },
        ).then(failureOf),
        // The registry's policy retries after 2 s: a failure of another type is tried again.
        start(
          'retry-transient',
          { models: ['Basic'] },
          {
            overrides: {
              tagModelVersion: (_input, fallback) =>
                Context.current().info.attempt === 1 ? Promise.reject(new Error('MLflow answered 503 (stub)')) : fallback(),
            },
          },
        ).then((h) => h.result()),
      ]);

      assert.deepEqual(
        callsOf('no-retry-training')
          .filter((c) => c.name === 'trainModel')
          .map((c) => c.attempt),
        [1],
        'the training was tried once',
      );
      assert.equal((training.cause as ApplicationFailure).type, FAILURE.allTrainingsFailed);
      assert.match(training.cause!.message, /every training failed: Basic: labels out of range \(stub\)/);

      assert.deepEqual(namesOf('no-retry-data'), ['resolveDeployTarget', 'preprocessDataset'], 'preprocessing was tried once');
      assert.ok(data.cause instanceof ActivityFailure);
      assert.equal((data.cause.cause as ApplicationFailure).type, FAILURE.invalidDataset);

      assert.equal(transient.deployment?.version, VERSION.Basic);
      assert.deepEqual(
        callsOf('retry-transient')
          .filter((c) => c.name === 'tagModelVersion')
          .map((c) => c.attempt),
        [1, 2],
      );
    });
  });

  describe('deploy-failed and redeploy', () => {
    it('waits in deploy-failed with nothing promoted; a redeploy retries, and the pending promotion follows the verified deploy of its version', async () => {
      const id = 'deploy-failed';
      let deploys = 0;
      const handle = await start(
        id,
        { lifetimeSeconds: 3600 },
        {
          validation: { Basic: metrics(0.6), ResNet50: metrics(0.9), CrossVal: metrics(0.7) },
          overrides: {
            // Its type is one the deploy policy does not retry.
            deployModel: (_input, fallback) =>
              deploys++ === 0 ? Promise.reject(typedFailure(FAILURE.endpointFailed, 'the endpoint failed to start (stub)')) : fallback(),
          },
        },
      );
      let status = await statusWhen(handle, (s) => s.stage === 'deploy-failed', 'deploy-failed', 20_000);
      assert.match(status.deployError!, /the endpoint failed to start \(stub\)/);
      assert.deepEqual(status.deployments, []);
      assert.equal(status.selection?.champion?.outcome, 'promote');
      assert.equal((await handle.describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.stage), 'deploy-failed');
      assert.deepEqual(inputsOf(id, 'promoteModelVersion'), [], 'no champion that never served');
      assert.equal(inputsOf(id, 'deployModel').length, 1, 'the failed deployment was not retried');

      // Another version served: the pending promotion (of ResNet50's version) still waits.
      await handle.signal(redeploySignal, { version: VERSION.Basic });
      status = await statusWhen(handle, (s) => s.redeploys.length === 1 && s.stage === 'serving', 'the signalled redeploy', 20_000);
      assert.deepEqual(
        status.redeploys.map((r) => [r.via, r.outcome, r.deployment?.version]),
        [['signal', 'deployed', VERSION.Basic]],
      );
      assert.equal(status.deployError, undefined);
      assert.deepEqual(inputsOf(id, 'promoteModelVersion'), [], 'the pending promotion is for another version');

      const deployment = await handle.executeUpdate(redeployUpdate, { args: [{ version: VERSION.ResNet50 }] });
      assert.equal(deployment.version, VERSION.ResNet50);
      const tail = namesOf(id).slice(-3);
      assert.deepEqual(tail, ['resolveModelVersion', 'deployModel', 'promoteModelVersion'], 'promoted after the verified deploy');
      const [promoted] = inputsOf(id, 'promoteModelVersion');
      assert.equal(promoted?.version, VERSION.ResNet50);
      assert.match(promoted!.reason, /ResNet50 has the best validation accuracy/);
      status = await handle.query(statusQuery);
      assert.equal(status.stage, 'serving');
      assert.deepEqual(
        status.deployments.map((d) => d.version),
        [VERSION.Basic, VERSION.ResNet50],
      );

      await handle.signal(finishSignal);
      const result = await handle.result();
      assert.deepEqual([result.stage, result.deployment?.version, result.pendingPromotion], ['finished', VERSION.ResNet50, undefined]);
      assert.equal(inputsOf(id, 'promoteModelVersion').length, 1);
    });

    it('two endpoints with default settings train, promote, keep and roll back within registered models of their own', async () => {
      const endpoints = ['ward-a', 'ward-b'];
      const rollback: Scenario['overrides'] = {
        resolveModelVersion: (input, fallback) =>
          input.alias === 'previous-champion'
            ? Promise.resolve({ registeredModelName: input.registeredModelName, version: '3', modelUri: 's3://stub/3', mlflowRunId: 'run' })
            : fallback(),
      };
      await Promise.all(
        endpoints.map(async (endpointName) => {
          // As a user starts it: the endpoint named, the registered model not.
          const handle = await start(
            `per-endpoint-${endpointName}`,
            { endpointName, registeredModelName: undefined, lifetimeSeconds: 3600 },
            {
              validation: { ResNet50: metrics(0.9) },
              champion: {
                evaluation: { version: CHAMPION_VERSION, modelUri: 's3://stub/7', comparable: true, metrics: metrics(0.55) },
                modelClass: 'Basic',
              },
              overrides: rollback,
            },
          );
          await statusWhen(handle, (s) => s.stage === 'serving', 'serving', 20_000);
          await handle.executeUpdate(redeployUpdate, { args: [{ alias: 'champion' }] });
          await handle.executeUpdate(redeployUpdate, { args: [{ alias: 'previous-champion' }] });
          await handle.signal(finishSignal);
          assert.equal((await handle.result()).deployment?.registeredModelName, endpointName);
        }),
      );
      for (const endpointName of endpoints) {
        const id = `per-endpoint-${endpointName}`;
        const named = callsOf(id).flatMap(({ name, input }) => {
          const i = input as { registeredModelName?: string; model?: { registeredModelName: string } };
          const model = i.registeredModelName ?? i.model?.registeredModelName;
          return model === undefined ? [] : [`${name} ${model}`];
        });
        for (const activity of ['trainModel', 'evaluateChampion', 'promoteModelVersion', 'resolveModelVersion', 'deployModel']) {
          assert.ok(named.includes(`${activity} ${endpointName}`), `${id} called ${activity} on ${endpointName}: ${named.join(', ')}`);
        }
        assert.deepEqual(
          named.filter((n) => !n.endsWith(` ${endpointName}`)),
          [],
          `every registered model ${id} touched is ${endpointName}'s`,
        );
      }
    });

    it('rejects invalid redeploy updates in the validator, saying why, without queueing them; invalid signals are refused on arrival and recorded', async () => {
      const id = 'redeploy-invalid';
      const handle = await start(id, { lifetimeSeconds: 3600, models: ['Basic'] });
      await statusWhen(handle, (s) => s.stage === 'serving', 'serving', 20_000);
      const deploysBefore = inputsOf(id, 'deployModel').length;

      const invalid: [unknown, RegExp][] = [
        [{}, /invalid input 'request': nothing to change/],
        [{ version: 'x' }, /invalid input 'version': expected a registered version as a positive integer string/],
        [{ version: '11', alias: 'champion' }, /invalid input 'version': give "version" or "alias", not both/],
        [{ instanceCount: 2 }, /invalid input 'instanceCount': applies to deployTarget 'sagemaker' only; this endpoint is 'local'/],
        [{ model: 'Basic' }, /invalid input 'model': unknown field\(s\): model/],
        ['11', /invalid input 'request': expected an object like/],
      ];
      for (const [request, message] of invalid) {
        await assert.rejects(
          handle.executeUpdate(redeployUpdate, { args: [request as never] }),
          (err: unknown) => err instanceof WorkflowUpdateFailedError && message.test(String(err.cause?.message)),
          `update ${JSON.stringify(request)}`,
        );
      }
      await handle.signal(redeploySignal, { version: 'x' } as never);
      const status = await statusWhen(handle, (s) => s.refusedCount === 1, 'the signal refused', 20_000);
      assert.deepEqual(
        status.refused!.map((r) => [r.via, r.request]),
        [['signal', '{"version":"x"}']],
      );
      assert.match(status.refused![0]!.reason, /positive integer/);
      assert.deepEqual(status.redeploys, [], 'a refused signal never joins the queue');
      assert.equal(inputsOf(id, 'deployModel').length, deploysBefore, 'nothing was deployed');

      // A valid update still goes through.
      assert.equal((await handle.executeUpdate(redeployUpdate, { args: [{ version: VERSION.Basic }] })).version, VERSION.Basic);
      assert.equal(inputsOf(id, 'deployModel').length, deploysBefore + 1);
      await handle.signal(finishSignal);
      await handle.result();
      await recordHistory(handle, 'serving-bounds-refused-signal');
    });
  });

  describe('lifetime', () => {
    it('lifetimeSeconds 0 ends the run right after deploying (and promoting); a longer lifetime keeps it serving until finish', async () => {
      const [short, long] = await Promise.all([
        start('lifetime-0', { models: ['Basic'] }),
        start('lifetime-long', { models: ['Basic'], lifetimeSeconds: 3600 }),
      ]);
      const result = await short.result();
      assert.deepEqual([result.stage, result.deployment?.version], ['finished', VERSION.Basic]);
      assert.deepEqual(namesOf('lifetime-0').slice(-2), ['deployModel', 'promoteModelVersion']);
      const events = (await short.fetchHistory()).events ?? [];
      assert.equal(events.filter((e) => e.timerStartedEventAttributes).length, 0, 'it did not wait for anything after deploying');
      assert.equal((await short.query(statusQuery)).stage, 'finished');
      assert.equal((await short.describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.stage), 'finished');

      await statusWhen(long, (s) => s.stage === 'serving', 'serving', 20_000);
      assert.equal((await long.describe()).status.name, 'RUNNING');
      await long.signal(finishSignal);
      assert.equal((await long.result()).stage, 'finished');
    });

    it('lifetimeSeconds 0 with a failed first deployment fails the run (NeverDeployedError) instead of completing as if it had deployed', async () => {
      const id = 'lifetime-0-deploy-failed';
      const handle = await start(
        id,
        { models: ['Basic'] },
        { overrides: { deployModel: () => Promise.reject(typedFailure(FAILURE.endpointFailed, 'the endpoint failed to start (stub)')) } },
      );
      const err = await handle.result().then(
        () => assert.fail('the run completed although nothing was deployed'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
      assert.equal(err.cause.type, FAILURE.neverDeployed);
      assert.match(err.cause.message, /without a successful deployment of Basic v\d+ \(.*the endpoint failed to start \(stub\)/);
      assert.deepEqual(inputsOf(id, 'promoteModelVersion'), [], 'nothing promoted');
      assert.equal((await handle.query(statusQuery)).stage, 'failed');
    });

    it('checks its endpoint every endpointCheckSeconds while serving; a down endpoint shows in the status and the next check that finds it repaired clears it', async () => {
      const id = 'endpoint-checks';
      let checks = 0;
      const handle = await start(
        id,
        { models: ['Basic'], lifetimeSeconds: 600, endpointCheckSeconds: 5 },
        {
          overrides: {
            checkEndpoint: (_input, fallback) => {
              const at = new Date().toISOString();
              checks++;
              if (checks === 1) return Promise.resolve({ state: 'down', detail: 'connection refused (stub)', checkedAt: at });
              if (checks === 2) return Promise.resolve({ state: 'repaired', detail: 'restarted (stub)', checkedAt: at });
              return fallback();
            },
          },
        },
      );
      const down = await statusWhen(handle, (s) => s.endpoint?.state === 'down', 'a down endpoint in the status', 20_000);
      assert.equal(down.stage, 'serving');
      assert.equal(down.endpoint!.detail, 'connection refused (stub)');
      await statusWhen(handle, (s) => s.endpoint?.state === 'repaired', 'the repaired endpoint', 20_000);
      const [checked] = inputsOf(id, 'checkEndpoint');
      assert.deepEqual(
        { endpoint: checked!.endpointName, version: checked!.model.version, uri: checked!.model.modelUri },
        { endpoint: 'stub-endpoint', version: VERSION.Basic, uri: `s3://stub/models/Basic` },
      );
      await handle.signal(finishSignal);
      await handle.result();
    }).timeout(60_000);
  });
});
