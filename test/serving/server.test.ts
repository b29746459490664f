import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
import { buildBasicCnn } from '../../src/ml/models';
import { Batcher, createInferenceServer, type LoadedModel } from '../../src/serving/server';
import { blackPng } from '../helpers/images';

const SIZE = 8;
const model = (version: string, seed: number): LoadedModel => ({
  model: buildBasicCnn({ imageSize: SIZE, numClasses: 2, seed }),
  metadata: { modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: SIZE, inputScale: '0-1' },
  info: { name: 'm', version, modelUri: `s3://b/m/${version}` },
});
const instance = (v = 0.5): number[][][] => Array.from({ length: SIZE }, () => Array.from({ length: SIZE }, () => [v, v, v]));

describe('inference server', () => {
  let server: Server;
  let url: string;

  before(async () => {
    ({ server } = createInferenceServer(model('1', 1), {
      maxBodyBytes: 64 * 1024,
      maxInstances: 4,
      loadModel: async ({ version }) => model(version ?? '?', 2),
      adminToken: 'admin-secret',
    }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const post = (body: string | Uint8Array, type = 'application/json', path = '/invocations', headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': type, ...headers }, body });

  it('answers /ping', async () => {
    const res = await fetch(`${url}/ping`);
    assert.equal(res.status, 200);
  });

  it("predicts from the original endpoint's JSON body: a label and a probability per class", async () => {
    const res = await post(JSON.stringify({ instances: [instance(0.2), instance(0.9)] }));
    assert.equal(res.status, 200);
    const { predictions } = (await res.json()) as { predictions: { label: string; probabilities: Record<string, number> }[] };
    assert.equal(predictions.length, 2);
    for (const p of predictions) {
      assert.ok(['benign', 'malignant'].includes(p.label));
      assert.ok(Math.abs(p.probabilities.benign! + p.probabilities.malignant! - 1) < 1e-5);
    }
  });

  it('counts requests by route and status, and times invocations, on GET /metrics (Prometheus text)', async () => {
    const before = await (await fetch(`${url}/metrics`)).text();
    const count = (text: string, labels: string): number =>
      Number(new RegExp(`^serving_requests_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const ok = 'route="POST /invocations",status="200"';
    const bad = 'route="POST /invocations",status="400"';
    assert.equal((await post(JSON.stringify({ instances: [instance()] }))).status, 200);
    assert.equal((await post('{"instances": 3}')).status, 400);
    const after = await (await fetch(`${url}/metrics`)).text();
    assert.equal(count(after, ok) - count(before, ok), 1);
    assert.equal(count(after, bad) - count(before, bad), 1);
    assert.match(after, /^serving_invocation_seconds_count [1-9]\d*$/m);
    assert.match(after, /^serving_model_info\{version="1"\} 1$/m);
  });

  it('predicts from a raw JPEG body of any size', async () => {
    const res = await post(await encodeJpeg(syntheticLesion('malignant', 40, 3), 40), 'image/jpeg');
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { predictions: unknown[] }).predictions.length, 1);
  });

  const expectError = async (res: Response, status: number, pattern: RegExp): Promise<void> => {
    assert.equal(res.status, status);
    const { error } = (await res.json()) as { error: string };
    assert.match(error, pattern);
  };

  it('rejects bad bodies with 4xx and a clear message, and keeps serving', async () => {
    await expectError(await post('{"instances": [[[1, 2]]]}'), 400, /instances\[0\] must have shape \[8, 8, 3\]/);
    await expectError(await post('not json'), 400, /not valid JSON/);
    await expectError(await post('{"rows": []}'), 400, /expected \{"instances"/);
    await expectError(
      await post(JSON.stringify({ instances: [instance(), instance(), instance(), instance(), instance()] })),
      413,
      /at most 4 instances/,
    );
    await expectError(await post('x'.repeat(70 * 1024)), 413, /exceeds the 65536-byte limit/);
    await expectError(await post('abc', 'image/png'), 400, /not a decodable image\/png/);
    await expectError(await post('abc', 'text/plain'), 415, /unsupported content type 'text\/plain'/);
    await expectError(await fetch(`${url}/nope`), 404, /no route GET \/nope/);
    assert.equal((await fetch(`${url}/ping`)).status, 200);
  });

  it('swaps the model with no failed request under concurrent load', async () => {
    const body = JSON.stringify({ instances: [instance()] });
    let stop = false;
    const statuses: number[] = [];
    const load = async (): Promise<void> => {
      while (!stop) statuses.push((await post(body)).status);
    };
    const clients = Array.from({ length: 4 }, load);
    await new Promise((r) => setTimeout(r, 100));
    const request = JSON.stringify({ modelUri: 's3://b/m/2', version: '2' });
    assert.equal((await post(request, 'application/json', '/admin/model')).status, 401, 'no token, no swap');
    assert.equal((await post(request, 'application/json', '/admin/model', { authorization: 'Bearer wrong' })).status, 401);
    const swap = await post(request, 'application/json', '/admin/model', { authorization: 'Bearer admin-secret' });
    assert.equal(swap.status, 200);
    await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await Promise.all(clients);
    assert.ok(statuses.length > 10, `only ${statuses.length} requests were made`);
    assert.deepEqual([...new Set(statuses)], [200]);
    assert.equal(((await (await fetch(`${url}/model`)).json()) as { version: string }).version, '2');
  });

  it('answers concurrent requests, batched into shared model calls, each with its own predictions', async () => {
    const bodies = [0.1, 0.3, 0.5, 0.7, 0.9].map((v) => JSON.stringify({ instances: [instance(v), instance(1 - v)] }));
    type P = { label: string; probabilities: Record<string, number> }[];
    const one = async (body: string) => ((await (await post(body)).json()) as { predictions: P }).predictions;
    const alone: P[] = [];
    for (const body of bodies) alone.push(await one(body));
    const together = await Promise.all(bodies.map(one));
    // A batched call may round differently in the last float digits, nothing more.
    const rounded = (ps: P[]) =>
      ps.map((p) => p.map((x) => ({ ...x, probabilities: Object.values(x.probabilities).map((v) => v.toFixed(5)) })));
    assert.deepEqual(rounded(together), rounded(alone));
  });

  it('batches what arrives while the model is busy into one call, and never more than maxBatch instances', async () => {
    const calls: number[] = [];
    const batcher = new Batcher(5, (pixels, n) => {
      calls.push(n);
      return { version: '1', predictions: Array.from({ length: n }, (_, i) => ({ label: String(pixels[i * 3]), probabilities: {} })) };
    });
    const one = (v: number, n: number) => batcher.run(new Float32Array(n * 3).fill(v), n);
    const answers = await Promise.all([one(1, 2), one(2, 2), one(3, 1), one(4, 2)]);
    assert.deepEqual(calls, [5, 2], 'the first three requests shared one call; the fourth did not fit in it');
    assert.deepEqual(
      answers.map((a) => a.predictions.map((p) => p.label)),
      [['1', '1'], ['2', '2'], ['3'], ['4', '4']],
      'each request gets its own rows back',
    );
  });

  it('answers 413 to an image that would decode to too many pixels, and keeps answering', async () => {
    const { server: big } = createInferenceServer(model('1', 1), { maxBodyBytes: 1024 * 1024, maxInstances: 4 });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(big.address() as AddressInfo).port}`;
      const bomb = await fetch(`${at}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: blackPng(8000, 6000),
      });
      assert.equal(bomb.status, 413);
      assert.match(((await bomb.json()) as { error: string }).error, /8000x6000 pixels/);
      const after = await fetch(`${at}/invocations`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: blackPng(40, 40) });
      assert.equal(after.status, 200);
    } finally {
      big.close();
    }
  });

  it('sheds requests beyond its limit with 503 and Retry-After, and keeps answering', async () => {
    const { server: small } = createInferenceServer(model('1', 1), { maxPendingRequests: 1 });
    await new Promise<void>((r) => small.listen(0, '127.0.0.1', r));
    const port = (small.address() as AddressInfo).port;
    const invoke = () =>
      fetch(`http://127.0.0.1:${port}/invocations`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: blackPng(40, 40) });
    try {
      // One request in progress (its body still arriving) fills the server; the next is told to come back.
      const body = blackPng(40, 40);
      const first = new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/invocations',
            method: 'POST',
            headers: { 'content-type': 'image/png', 'content-length': body.length },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        req.write(body.subarray(0, 10));
        setTimeout(() => req.end(body.subarray(10)), 300);
      });
      await new Promise((r) => setTimeout(r, 100));
      const shed = await invoke();
      assert.equal(shed.status, 503);
      assert.equal(shed.headers.get('retry-after'), '1');
      assert.equal(await first, 200);

      assert.equal((await invoke()).status, 200);
    } finally {
      small.close();
    }
  });

  it('will not offer the hot swap without a token', () => {
    assert.throws(() => createInferenceServer(model('1', 1), { loadModel: async () => model('2', 2) }), /needs an admin token/);
  });
});
