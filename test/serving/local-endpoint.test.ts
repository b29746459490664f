import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDeployActivities } from '../../src/activities/deploy';
import type { DeployInput } from '../../src/common/types';
import { loadConfig } from '../../src/config';
import { saveModelToS3 } from '../../src/ml/model-store';
import { buildBasicCnn } from '../../src/ml/models';
import { endpointId, endpointServers, LocalEndpoints, ping, servedBy, type EndpointState } from '../../src/serving/local-endpoints';
import { DRIFT_SAMPLE_FORMAT, type DriftSampleBatch } from '../../src/monitoring/drift';
import { isProcessAlive } from '../../src/system/process';
import { runActivity, testS3, uniqueBucket } from '../helpers/services';
import { useTestStack } from '../helpers/global';

useTestStack();

describe('local endpoint (a real server process, models from S3 on SeaweedFS)', () => {
  const config = loadConfig(process.env);
  // A port of its own, so it never meets the endpoint the workflow tests start.
  const local = new LocalEndpoints({ stateDir: config.stateDir, host: '127.0.0.1', port: config.localEndpoint.port + 1, env: process.env });
  const { deployModel } = createDeployActivities({ local });
  const s3 = testS3();
  const size = 16;
  const input = (version: string, modelUri: string): DeployInput => ({
    target: 'local',
    endpointName: 'swap-test',
    model: { registeredModelName: 'swap-model', version, modelUri, mlflowRunId: `run-${version}` },
  });

  after(() => local.stop('swap-test'));

  /** A Basic CNN of `seed` saved to a fresh bucket under `path`; its URI. */
  const uploadModel = async (path: string, seed: number): Promise<string> => {
    const bucket = uniqueBucket('models');
    await s3.ensureBucket(bucket);
    const uri = `s3://${bucket}/${path}`;
    const model = buildBasicCnn({ imageSize: size, numClasses: 2, seed });
    await saveModelToS3(s3, model, uri, { modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: size, inputScale: '0-1' });
    model.dispose();
    return uri;
  };
  /** Endpoints from a port of their own (LOCAL_ENDPOINT_PORT + offset). */
  const endpointsFrom = (offset: number) =>
    new LocalEndpoints({ stateDir: config.stateDir, host: '127.0.0.1', port: config.localEndpoint.port + offset, env: process.env });
  const servedVersion = async (state: EndpointState): Promise<string | undefined> => (await servedBy(config.stateDir, state.name)).version;

  it('swaps to a new version under concurrent load with zero failed requests', async () => {
    const uris = [await uploadModel('swap/1', 1), await uploadModel('swap/2', 2)];
    const first = await runActivity(deployModel, [input('1', uris[0]!)]);
    assert.equal(first.unchanged, false);

    const pixel = (r: number, c: number): number[] => [((r * 7 + c) % 16) / 15, (r % 5) / 4, (c % 3) / 2];
    const body = JSON.stringify({
      instances: [Array.from({ length: size }, (_, r) => Array.from({ length: size }, (_, c) => pixel(r, c)))],
    });
    const seen: { status: number; version: string | null; answer: string }[] = [];
    let stop = false;
    const client = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await fetch(`${first.url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          seen.push({ status: res.status, version: res.headers.get('x-model-version'), answer: await res.text() });
        } catch (err) {
          seen.push({ status: 0, version: null, answer: (err as Error).message });
        }
      }
    };
    const clients = Array.from({ length: 6 }, client);
    while (seen.length < 20) await new Promise((r) => setTimeout(r, 20));
    const second = await runActivity(deployModel, [input('2', uris[1]!)]);
    const atSwap = seen.length;
    while (seen.length < atSwap + 20) await new Promise((r) => setTimeout(r, 20));
    stop = true;
    await Promise.all(clients);

    assert.equal(second.url, first.url);
    assert.deepEqual(
      seen.filter((s) => s.status !== 200),
      [],
      'every request during the swap succeeded',
    );
    const versions = seen.map((s) => s.version);
    assert.equal(versions[0], '1');
    assert.equal(versions.at(-1), '2');
    // Versions never interleave: once v2 answers, v1 never does again.
    assert.equal(versions.lastIndexOf('1') < versions.indexOf('2'), true);
    // The two versions are different models, and each answers with real probabilities.
    const answerOf = (v: string) =>
      JSON.parse(seen.find((s) => s.version === v)!.answer) as { predictions: { probabilities: Record<string, number> }[] };
    assert.notDeepEqual(answerOf('1').predictions, answerOf('2').predictions);
    for (const v of ['1', '2']) {
      const p = answerOf(v).predictions[0]!.probabilities;
      assert.ok(Math.abs(p.benign! + p.malignant! - 1) < 1e-5);
    }
  });

  it('gives each endpoint its own port, keeps it across restarts, and never signals a process a stale pid file names', async () => {
    const uri = await uploadModel('ports/1', 3);
    const endpoints = endpointsFrom(10);
    const ref = { registeredModelName: 'ports-model', version: '1', modelUri: uri, mlflowRunId: 'run-1' };
    const names = ['ports-a', 'ports-b', 'ports-c'];
    const stranger = spawn('sleep', ['120']);
    try {
      const a = (await endpoints.deploy('ports-a', ref)).state;
      const b = (await endpoints.deploy('ports-b', ref)).state;
      assert.notEqual(a.url, b.url, 'two endpoints, two ports');
      for (const s of [a, b]) assert.equal(await servedVersion(s), '1');

      // A crashed server comes back on the same URL at the serving workflow's next endpoint check.
      const { checkEndpoint } = createDeployActivities({ local: endpoints });
      const check = () => runActivity(checkEndpoint, [{ target: 'local', endpointName: 'ports-a', model: ref }]);
      assert.equal((await check()).state, 'up');
      process.kill(a.pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      const found = await check();
      assert.equal(found.state, 'repaired');
      assert.equal(found.detail, `its server (pid ${a.pid}) was not running; restarted at ${a.url}`);
      const again = endpoints.read('ports-a')!;
      assert.equal(again.url, a.url);
      assert.notEqual(again.pid, a.pid);
      assert.equal(await servedVersion(again), '1');
      assert.deepEqual(await check().then((h) => [h.state, h.detail]), ['up', 'serves v1']);

      // A state file left behind whose pid now belongs to another process.
      mkdirSync(join(config.stateDir, 'endpoints'), { recursive: true });
      const stale = { ...b, name: 'ports-c', pid: stranger.pid!, url: `http://127.0.0.1:${config.localEndpoint.port + 30}` };
      writeFileSync(join(config.stateDir, 'endpoints', 'ports-c.json'), JSON.stringify(stale));
      const c = (await endpoints.deploy('ports-c', ref)).state;
      assert.deepEqual([stranger.exitCode, stranger.signalCode], [null, null], 'the unrelated process was left alone');
      assert.equal(await endpoints.stop('ports-c'), true);
      assert.notEqual(c.pid, stranger.pid);
    } finally {
      stranger.kill();
      for (const name of names) await endpoints.stop(name);
    }
  });

  it('stops a server that a deploy started but never recorded (its worker killed in between), and only that one', async () => {
    const uri = await uploadModel('strays/1', 4);
    const endpoints = endpointsFrom(40);
    const ref = { registeredModelName: 'strays-model', version: '1', modelUri: uri, mlflowRunId: 'run-1' };
    // What start() runs, as a deploy killed right after spawning it leaves it: no state file names it.
    const serve = (name: string, port: number) =>
      spawn(
        process.execPath,
        ['-r', 'ts-node/register/transpile-only', join(__dirname, '..', '..', 'src', 'serving', 'main.ts')].concat([
          '--model-uri',
          uri,
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--endpoint-id',
          endpointId(config.stateDir, name),
        ]),
        { stdio: 'ignore', detached: true, env: process.env },
      );
    const stray = serve('strays-a', config.localEndpoint.port + 50);
    const neighbour = serve('strays-b', config.localEndpoint.port + 51);
    try {
      for (const port of [50, 51]) {
        const url = `http://127.0.0.1:${config.localEndpoint.port + port}`;
        for (let i = 0; i < 240 && !(await ping(url)); i++) await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(endpointServers(endpointId(config.stateDir, 'strays-a')), [stray.pid]);
      assert.equal(endpoints.read('strays-a'), undefined);

      const { state, restarted } = await endpoints.deploy('strays-a', ref);
      assert.equal(restarted, `started at ${state.url}; stopped server ${stray.pid} that no state file named`);
      assert.equal(isProcessAlive(stray.pid!), false, 'the unrecorded server was stopped');
      assert.equal(isProcessAlive(neighbour.pid!), true, "another endpoint's server was left alone");
      assert.deepEqual(endpointServers(endpointId(config.stateDir, 'strays-a')), [state.pid]);
      assert.equal(await servedVersion(state), '1');
    } finally {
      await endpoints.stop('strays-a');
      for (const p of [stray, neighbour]) if (isProcessAlive(p.pid!)) process.kill(-p.pid!, 'SIGKILL');
    }
  });

  it("writes its drift sample to S3 under its endpoint's prefix, a batch per flush, and on stopping", async () => {
    const bucket = uniqueBucket('drift');
    await s3.ensureBucket(bucket);
    const root = `s3://${bucket}/drift-samples`;
    const endpoints = new LocalEndpoints({
      stateDir: config.stateDir,
      host: '127.0.0.1',
      port: config.localEndpoint.port + 9,
      env: { ...process.env, DRIFT_SAMPLE_FLUSH_SECONDS: '1' },
      driftSampleUri: root,
    });
    const uri = await uploadModel('drift/1', 1);
    await endpoints.deploy('drift-test', { registeredModelName: 'drift-model', version: '1', modelUri: uri });
    try {
      const url = endpoints.read('drift-test')!.url;
      const instances = Array.from({ length: 30 }, (_, i) =>
        Array.from({ length: size }, () => Array.from({ length: size }, () => [i / 30, 0.5, 1 - i / 30])),
      );
      const res = await fetch(`${url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instances }),
      });
      assert.equal(res.status, 200, await res.text());
      let batches = await s3.list(`${root}/drift-test/`);
      for (let i = 0; batches.length === 0 && i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        batches = await s3.list(`${root}/drift-test/`);
      }
      assert.equal(batches.length, 1, 'one batch, within a second or so');
      const batch = await s3.getJson<DriftSampleBatch>(s3.uriOf(root, batches[0]!.key));
      assert.deepEqual([batch.format, batch.model?.version, batch.profile.images], [DRIFT_SAMPLE_FORMAT, '1', 30]);
      // Red from 0 to 1 across the images: spread over the bins; green all in the middle one.
      assert.equal(batch.profile.channelMeans[1]![5], 30);
      assert.ok(batch.profile.channelMeans[0]!.filter((n) => n > 0).length >= 5);
    } finally {
      await endpoints.stop('drift-test');
    }
  });
});
