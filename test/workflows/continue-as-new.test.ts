import { strict as assert } from 'node:assert';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { TASK_QUEUES } from '../../src/common/constants';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import { finishSignal, redeploySignal, redeployUpdate, statusQuery } from '../../src/workflows/messages';
import { createPipelineWorkers, startDevServer, recordHistory } from '../helpers/temporal';
import { seededDataset, testS3 } from '../helpers/services';
import { useTestStack } from '../helpers/global';

useTestStack();

describe('cnnSkinCancerWorkflow continue-as-new (dev server suggesting it after 40 history events)', function () {
  let env: TestWorkflowEnvironment;
  const s3 = testS3();

  before(async () => {
    env = await startDevServer({ extraArgs: ['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=40'] });
  });
  after(async () => {
    await env?.teardown();
  });

  it('carries its state, deployments and queued requests into the next run, and still answers updates', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 10, testPerClass: 4, size: 16 });
    const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') });
    const workers = await createPipelineWorkers(env.nativeConnection, bundle);
    const test = async (): Promise<void> => {
      const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'pipeline-can',
        args: [
          {
            dataUri,
            imageSize: 12,
            epochs: 1,
            batchSize: 8,
            learningRate: 1e-3,
            models: ['Basic'],
            registeredModelName: 'can-model',
            experimentName: 'can-test',
            lifetimeSeconds: 3600,
          },
        ],
      });
      let status = await handle.query(statusQuery);
      while (status.stage !== 'serving') {
        await new Promise((r) => setTimeout(r, 300));
        status = await handle.query(statusQuery);
      }
      const version = status.deployments[0]!.version;
      for (let i = 0; i < 4; i++) await handle.signal(redeploySignal, { version });
      const viaUpdate = await handle.executeUpdate(redeployUpdate, { args: [{ alias: 'champion' }] });
      assert.equal(viaUpdate.version, version);
      while ((status = await handle.query(statusQuery)).redeploys.length < 5) await new Promise((r) => setTimeout(r, 300));
      await handle.signal(finishSignal);
      const result = await handle.result();

      assert.notEqual((await handle.describe()).runId, handle.firstExecutionRunId, 'the workflow continued as new');
      assert.equal(result.stage, 'finished');
      assert.equal(result.version, version);
      status = await handle.query(statusQuery);
      assert.deepEqual(
        status.redeploys.map((r) => `${r.via}:${r.outcome}`),
        ['signal:deployed', 'signal:deployed', 'signal:deployed', 'signal:deployed', 'update:deployed'],
      );
      assert.equal(status.deployments.length, 6, 'the first deployment and five redeploys, across runs');
      assert.equal(status.models[0]?.state, 'trained');
      // The first run (pipeline, then serving until continue-as-new) and the last (serving only).
      await recordHistory(env.client.workflow.getHandle('pipeline-can', handle.firstExecutionRunId), 'can-first-run');
      await recordHistory(handle, 'can-last-run');
    };
    const main = test();
    await Promise.all([main, ...workers.map((w) => w.runUntil(main.catch(() => undefined)))]);
  });
});
