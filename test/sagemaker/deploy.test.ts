import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DescribeEndpointCommand,
  DescribeEndpointConfigCommand,
  DescribeModelCommand,
  ListEndpointConfigsCommand,
  ListEndpointsCommand,
} from '@aws-sdk/client-sagemaker';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createDeployActivities } from '../../src/activities/deploy';
import type { DeployInput } from '../../src/common/types';
import { loadConfig } from '../../src/config';
import { createSageMakerClient, SAGEMAKER_TIMEOUTS, sageMakerApi, type SageMakerApi } from '../../src/sagemaker/api';
import { fakeUpdateEndpoint } from '../helpers/fake-sagemaker';
import { LocalEndpoints } from '../../src/serving/local-endpoints';
import { runActivity } from '../helpers/services';
import { useTestStack } from '../helpers/global';

const config = loadConfig({
  ...process.env,
  SAGEMAKER_IMAGE_URI: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cnn-skin-cancer:1.0',
  SAGEMAKER_EXECUTION_ROLE_ARN: 'arn:aws:iam::123456789012:role/sagemaker-exec',
});
const client = createSageMakerClient(config);
const moto = sageMakerApi(client);
const local = new LocalEndpoints({ stateDir: config.stateDir, ...config.localEndpoint, env: process.env });

const input = (endpointName: string, version: string, over: Partial<DeployInput> = {}): DeployInput => ({
  target: 'sagemaker',
  endpointName,
  model: { registeredModelName: 'sm-model', version, modelUri: `s3://models/sm-model/${version}`, mlflowRunId: `run-${version}` },
  ...over,
});

const activities = (api: SageMakerApi, over: Partial<typeof config.sagemaker> = {}) =>
  createDeployActivities({
    local,
    sagemaker: {
      api,
      config: { ...config.sagemaker, allowedInstanceTypes: ['ml.m5.large', 'ml.c5.xlarge'], ...over },
      region: 'us-east-1',
      sleep: async () => undefined,
    },
  });

const endpointsNamed = async (name: string) =>
  ((await client.send(new ListEndpointsCommand({ NameContains: name }))).Endpoints ?? []).map((e) => e.EndpointName);
const configsOf = async (name: string) =>
  ((await client.send(new ListEndpointConfigsCommand({ NameContains: name }))).EndpointConfigs ?? []).map((c) => c.EndpointConfigName!);

const failsWith = (type: string, pattern: RegExp) => (err: unknown) =>
  err instanceof ApplicationFailure && err.type === type && err.nonRetryable && pattern.test(err.message);

useTestStack();

describe('deploy to SageMaker', () => {
  const unique = () => `ep-${randomUUID().slice(0, 8)}`;

  it('creates model, endpoint config and endpoint on moto; a repeat changes nothing', async () => {
    const name = unique();
    const { deployModel } = activities(moto);
    const first = await runActivity(deployModel, [input(name, '1')]);
    assert.equal(first.unchanged, false);
    assert.match(first.arn!, new RegExp(`:endpoint/${name}$`));
    assert.equal(first.url, `https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/${name}/invocations`);
    assert.match(first.endpointConfigName!, new RegExp(`^${name}-[0-9a-f]{8}-v1-[0-9a-f]{8}$`));
    assert.deepEqual([first.instanceType, first.instanceCount], ['ml.m5.large', 1]);
    const described = await client.send(new DescribeEndpointCommand({ EndpointName: name }));
    assert.deepEqual([described.EndpointStatus, described.EndpointConfigName], ['InService', first.endpointConfigName]);

    const again = await runActivity(deployModel, [input(name, '1')]);
    assert.equal(again.unchanged, true);
    assert.deepEqual(await endpointsNamed(name), [name]);
    assert.deepEqual(await configsOf(name), [first.endpointConfigName]);
  });

  it("gives the serving container its endpoint's drift prefix (DRIFT_SAMPLE_URI on the worker)", async () => {
    const name = unique();
    const { deployModel } = createDeployActivities({
      local,
      sagemaker: { api: moto, config: config.sagemaker, region: 'us-east-1', sleep: async () => undefined },
      driftSampleUri: 's3://cnn-skin-cancer/drift-samples',
    });
    const deployed = await runActivity(deployModel, [input(name, '1')]);
    const { ProductionVariants } = await client.send(
      new DescribeEndpointConfigCommand({ EndpointConfigName: deployed.endpointConfigName }),
    );
    const model = await client.send(new DescribeModelCommand({ ModelName: ProductionVariants![0]!.ModelName }));
    assert.deepEqual(model.PrimaryContainer?.Environment, { ENDPOINT_DRIFT_SAMPLE_URI: `s3://cnn-skin-cancer/drift-samples/${name}/` });
  });

  it('a retry after a crash just before CreateEndpoint reuses the model and config: one endpoint, one config', async () => {
    const name = unique();
    let crashes = 1;
    const crashing: SageMakerApi = {
      ...moto,
      async createEndpoint(...args) {
        if (crashes-- > 0) throw new Error('worker crashed');
        return moto.createEndpoint(...args);
      },
    };
    const { deployModel } = activities(crashing);
    await assert.rejects(runActivity(deployModel, [input(name, '4')]), /worker crashed/);
    const retried = await runActivity(deployModel, [input(name, '4')]);
    assert.deepEqual(await endpointsNamed(name), [name]);
    assert.deepEqual(await configsOf(name), [retried.endpointConfigName]);
    assert.deepEqual(retried.removed, []);
  });

  it("two endpoints whose 56-character names share their first 50 keep their own configs and models through each other's deploys (fake SageMaker: moto has no UpdateEndpoint)", async () => {
    const stem = `ward-${randomUUID().replaceAll('-', '')}`.padEnd(50, 'x').slice(0, 50);
    const [a, b] = [`${stem}-aaaaa`, `${stem}-bbbbb`];
    assert.deepEqual([a.length, b.length], [56, 56]);
    const { api } = fakeUpdateEndpoint(moto);
    const { deployModel } = activities(api);
    const a1 = await runActivity(deployModel, [input(a, '1')]);
    const b1 = await runActivity(deployModel, [input(b, '1')]);
    assert.notEqual(a1.endpointConfigName, b1.endpointConfigName);
    // A's update cleans up A's old config and model only: B's, in use, stay.
    const a2 = await runActivity(deployModel, [input(a, '2')]);
    assert.deepEqual(a2.removed, [`endpoint config ${a1.endpointConfigName}`, `model ${a1.endpointConfigName}`]);
    assert.deepEqual((await configsOf(stem.slice(0, 40))).sort(), [a2.endpointConfigName, b1.endpointConfigName].sort());
    const b2 = await runActivity(deployModel, [input(b, '2')]);
    assert.deepEqual(b2.removed, [`endpoint config ${b1.endpointConfigName}`, `model ${b1.endpointConfigName}`]);
    assert.deepEqual((await configsOf(stem.slice(0, 40))).sort(), [a2.endpointConfigName, b2.endpointConfigName].sort());
  });

  it("deletes an endpoint with its configs and models at its run's end, and leaves another's whose name shares its first 50 characters", async () => {
    const stem = `ward-${randomUUID().replaceAll('-', '')}`.padEnd(50, 'x').slice(0, 50);
    const [a, b] = [`${stem}-aaaaa`, `${stem}-bbbbb`];
    const { deployModel, retireEndpoint } = activities(moto);
    const a1 = await runActivity(deployModel, [input(a, '1')]);
    const b1 = await runActivity(deployModel, [input(b, '1')]);
    const done = await runActivity(retireEndpoint, [{ target: 'sagemaker' as const, endpointName: a }]);
    assert.equal(done, `deleted endpoint ${a}, endpoint config ${a1.endpointConfigName}, model ${a1.endpointConfigName}`);
    assert.deepEqual(await endpointsNamed(stem), [b]);
    assert.deepEqual(await configsOf(stem.slice(0, 40)), [b1.endpointConfigName]);
    // moto's ListModels ignores NameContains: the filter is ours.
    assert.deepEqual(
      (await moto.listModels(stem)).filter((m) => m.startsWith(stem.slice(0, 40))),
      [b1.endpointConfigName],
    );
    // Again (a retried attempt): nothing is left to delete, and that is not an error.
    assert.equal(
      await runActivity(retireEndpoint, [{ target: 'sagemaker' as const, endpointName: a }]),
      `SageMaker has no endpoint '${a}' nor any config or model of it`,
    );
  });

  it('refuses an instance type outside SAGEMAKER_INSTANCE_TYPES before calling SageMaker, naming the allowed ones', async () => {
    const name = unique();
    const { deployModel } = activities(moto);
    await assert.rejects(
      runActivity(deployModel, [input(name, '1', { instanceType: 'ml.p4d.24xlarge' })]),
      failsWith(
        'InvalidDeployRequestError',
        /ml\.p4d\.24xlarge is not allowed here \(SAGEMAKER_INSTANCE_TYPES .*: ml\.m5\.large, ml\.c5\.xlarge\)/,
      ),
    );
    assert.deepEqual(await configsOf(name), []);
  });

  it('refuses to start without an image and a role, naming the variables', async () => {
    const { deployModel } = activities(moto, { imageUri: undefined, executionRoleArn: undefined });
    await assert.rejects(
      runActivity(deployModel, [input(unique(), '1')]),
      failsWith('SageMakerConfigError', /SAGEMAKER_IMAGE_URI and SAGEMAKER_EXECUTION_ROLE_ARN/),
    );
  });

  it('updates blue/green (canary, alarms) to a new version and removes the old config (fake SageMaker: moto has no UpdateEndpoint)', async () => {
    const name = unique();
    const { api, updates } = fakeUpdateEndpoint(moto);
    const { deployModel } = activities(api, { trafficRouting: 'canary', trafficPercent: 20, rollbackAlarms: ['5xx-rate'] });
    const v1 = await runActivity(deployModel, [input(name, '1')]);
    const v2 = await runActivity(deployModel, [input(name, '2')]);
    assert.equal(v2.unchanged, false);
    assert.deepEqual(
      updates.map((u) => u.configName),
      [v2.endpointConfigName],
    );
    const policy = updates[0]!.deployment!;
    assert.equal(policy.BlueGreenUpdatePolicy?.TrafficRoutingConfiguration?.Type, 'CANARY');
    assert.equal(policy.BlueGreenUpdatePolicy?.TrafficRoutingConfiguration?.CanarySize?.Value, 20);
    assert.deepEqual(policy.AutoRollbackConfiguration?.Alarms, [{ AlarmName: '5xx-rate' }]);
    assert.deepEqual(v2.removed, [`endpoint config ${v1.endpointConfigName}`, `model ${v1.endpointConfigName}`]);
    assert.deepEqual(await configsOf(name), [v2.endpointConfigName]);
    assert.deepEqual(await endpointsNamed(name), [name]);

    // The same version on other instances is a new config, deployed the same way.
    const bigger = await runActivity(deployModel, [input(name, '2', { instanceType: 'ml.c5.xlarge', instanceCount: 2 })]);
    assert.notEqual(bigger.endpointConfigName, v2.endpointConfigName);
    assert.deepEqual([bigger.instanceType, bigger.instanceCount, bigger.version], ['ml.c5.xlarge', 2, '2']);
    assert.deepEqual(await configsOf(name), [bigger.endpointConfigName]);
  });

  it('reports an auto-rollback as a failure and removes the unused new config (fake SageMaker: moto has no UpdateEndpoint)', async () => {
    const name = unique();
    const { api } = fakeUpdateEndpoint(moto, { rollback: true });
    const { deployModel } = activities(api);
    const v1 = await runActivity(deployModel, [input(name, '1')]);
    await assert.rejects(
      runActivity(deployModel, [input(name, '2')]),
      failsWith(
        'EndpointRolledBackError',
        new RegExp(`rolled back to ${v1.endpointConfigName}.*5xx-rate.*removed the unused endpoint config ${name}-[0-9a-f]{8}-v2-`),
      ),
    );
    assert.deepEqual(await configsOf(name), [v1.endpointConfigName]);
  });

  it('a retry after a crash while an update was rolling back reports the rollback instead of updating again (fake SageMaker: moto has no UpdateEndpoint)', async () => {
    const name = unique();
    const { api, updates } = fakeUpdateEndpoint(moto, { rollback: true });
    const { deployModel } = activities(api);
    await runActivity(deployModel, [input(name, '1')]);
    const attempt1 = await runActivity(deployModel, [input(name, '2')]).then(
      () => assert.fail('expected a rollback'),
      (err: ApplicationFailure) => err,
    );
    const v2 = /instead of running (\S+)/.exec(attempt1.message)![1]!;
    // The next attempt sees the first one's last heartbeat, which says the update was sent.
    await assert.rejects(
      runActivity(deployModel, [input(name, '2')], { heartbeatDetails: { what: 'waiting', updateIssued: v2 } }),
      failsWith('EndpointRolledBackError', /rolled back/),
    );
    assert.equal(updates.length, 1, 'UpdateEndpoint was sent once');
  });

  it('a retry after a crash right after UpdateEndpoint was sent (before any heartbeat said so) does not send the rolled-back update again (fake SageMaker: moto has no UpdateEndpoint)', async () => {
    const name = unique();
    const { api, updates } = fakeUpdateEndpoint(moto, { rollback: true });
    await runActivity(activities(api).deployModel, [input(name, '1')]);
    // The worker dies as soon as the update is out: no heartbeat carries the news.
    const crashing: SageMakerApi = {
      ...api,
      async updateEndpoint(...args) {
        await api.updateEndpoint(...args);
        throw new Error('worker killed right after UpdateEndpoint (test)');
      },
    };
    await assert.rejects(runActivity(activities(crashing).deployModel, [input(name, '2')]), /worker killed/);
    // The next attempt of the same activity: no heartbeat details, the endpoint rolled back meanwhile.
    await assert.rejects(runActivity(activities(api).deployModel, [input(name, '2')]), failsWith('EndpointRolledBackError', /rolled back/));
    assert.equal(updates.length, 1, 'UpdateEndpoint was sent once');
    // Another deploy (a redeploy is another activity) may send it again.
    await assert.rejects(
      runActivity(activities(api).deployModel, [input(name, '2')], { activityId: 'a-later-redeploy' }),
      failsWith('EndpointRolledBackError', /rolled back/),
    );
    assert.equal(updates.length, 2, 'a new deploy sends its own update');
  });

  it('a redeploy cancelled while its update runs and handed to the next run (same deployKey, another activity) does not send the update again (fake SageMaker: moto has no UpdateEndpoint)', async () => {
    const name = unique();
    const { api, updates } = fakeUpdateEndpoint(moto, { rollback: true });
    await runActivity(activities(api).deployModel, [input(name, '1')]);
    const deployKey = 'first-run/redeploy-7';
    // The first run's attempt is cancelled while it waits for its update (its hand-over).
    const first = new MockActivityEnvironment({ activityId: '9' }, { logger: new DefaultLogger('ERROR') });
    const cancelledWhileWaiting = createDeployActivities({
      local,
      sagemaker: {
        api,
        config: { ...config.sagemaker, allowedInstanceTypes: ['ml.m5.large'] },
        sleep: (ms) => {
          first.cancel();
          return Context.current().sleep(ms);
        },
      },
    });
    await assert.rejects(first.run(cancelledWhileWaiting.deployModel, input(name, '2', { deployKey })), CancelledFailure);
    assert.equal(updates.length, 1);
    // The next run's deploy: another activity, no heartbeat details; the update was rolled back meanwhile.
    await assert.rejects(
      runActivity(activities(api).deployModel, [input(name, '2', { deployKey })], { activityId: '2' }),
      failsWith('EndpointRolledBackError', /rolled back/),
    );
    assert.equal(updates.length, 1, 'UpdateEndpoint was sent once');
  });

  it('fails non-retryably on a Failed endpoint, saying how to recover (fake SageMaker: moto never fails an endpoint)', async () => {
    const name = unique();
    await runActivity(activities(moto).deployModel, [input(name, '1')]);
    const failed: SageMakerApi = {
      ...moto,
      describeEndpoint: async (n) => {
        const base = await moto.describeEndpoint(n);
        return base && { ...base, status: 'Failed', failureReason: 'image pull failed' };
      },
    };
    await assert.rejects(
      runActivity(activities(failed).deployModel, [input(name, '2')]),
      failsWith('EndpointFailedError', /is Failed \(image pull failed\).*delete-endpoint --endpoint-name/),
    );
  });
});

describe('the SageMaker client', () => {
  it('gives up on a call whose connection stays silent, within its timeout, on every attempt', async () => {
    // A server that reads every request and never answers (a hung load balancer).
    const held: import('node:net').Socket[] = [];
    const silent = createServer((req) => void held.push(req.socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const hung = createSageMakerClient(loadConfig({ ...process.env, AWS_ENDPOINT_URL_SAGEMAKER: `http://127.0.0.1:${port}` }), {
        ...SAGEMAKER_TIMEOUTS,
        socketTimeout: 300,
      });
      // Without the timeout the call waits forever, and mocha's limit fails the test.
      await assert.rejects(hung.send(new DescribeEndpointCommand({ EndpointName: 'silent' })), (err: Error) => {
        assert.equal(err.name, 'TimeoutError');
        // The SDK's standard strategy retries a timed-out attempt: three attempts, each on a new connection.
        assert.equal((err as { $metadata?: { attempts?: number } }).$metadata?.attempts, 3);
        return true;
      });
      assert.equal(held.length, 3);
    } finally {
      held.forEach((s) => s.destroy());
      silent.close();
    }
  });
});
