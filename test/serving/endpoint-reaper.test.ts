import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { buildBasicCnn } from '../../src/ml/models';
import { ownerStanding, reapEndpoints } from '../../src/serving/endpoint-reaper';
import { LocalEndpoints } from '../../src/serving/local-endpoints';
import { isProcessAlive } from '../../src/system/process';
import { startDevServer } from '../helpers/temporal';

describe('local endpoints of ended owners (a real Temporal dev server and real server processes)', () => {
  let env: TestWorkflowEnvironment;
  let dir: string;
  let endpoints: LocalEndpoints;

  before(async function () {
    this.timeout(120_000);
    env = await startDevServer({ withSearchAttributes: false });
    dir = mkdtempSync(join(tmpdir(), 'reaper-'));
    const model = buildBasicCnn({ imageSize: 8, numClasses: 2, seed: 1 });
    await model.save(`file://${join(dir, 'model')}`);
    model.dispose();
    writeFileSync(
      join(dir, 'model', 'metadata.json'),
      JSON.stringify({ modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: 8, inputScale: '0-1' }),
    );
    endpoints = new LocalEndpoints({
      stateDir: join(dir, 'state'),
      host: '127.0.0.1',
      port: Number(process.env.TEST_ENDPOINT_PORT ?? 8091) + 60,
      env: process.env,
    });
  });

  after(async () => {
    for (const name of endpoints.names()) await endpoints.retire(name);
    await env?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stops the endpoint of a terminated owner, and leaves a running owner's, an unknown owner's and an unowned one", async function () {
    this.timeout(120_000);
    // Owners that stay running: no worker polls their task queue.
    const start = (workflowId: string) =>
      env.client.workflow.start('cnnSkinCancerWorkflow', { taskQueue: 'nobody-polls', workflowId, args: [] });
    const terminated = await start('owner-terminated');
    await start('owner-running');
    const model = { registeredModelName: 'm', version: '1', modelUri: join(dir, 'model') };
    const deploy = async (name: string, owner?: string) => (await endpoints.deploy(name, model, undefined, owner)).state;
    const orphan = await deploy('orphan', 'owner-terminated');
    const owned = await deploy('owned', 'owner-running');
    const unknown = await deploy('unknown', 'no-such-workflow');
    const unowned = await deploy('unowned');
    await terminated.terminate('the test ends it');

    const standing = ownerStanding(env.client.workflowService, env.namespace ?? 'default');
    assert.deepEqual(await reapEndpoints(endpoints, standing), ['orphan']);
    assert.equal(isProcessAlive(orphan.pid), false, "the terminated owner's endpoint still runs");
    assert.equal(endpoints.read('orphan'), undefined);
    for (const kept of [owned, unknown, unowned]) {
      assert.equal(isProcessAlive(kept.pid), true, `${kept.name} was stopped`);
      assert.deepEqual(endpoints.read(kept.name), kept);
    }
    // A later sweep finds nothing more to do.
    assert.deepEqual(await reapEndpoints(endpoints, standing), []);
  });
});
