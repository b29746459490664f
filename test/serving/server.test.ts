import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { gzipSync } from 'node:zlib';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
import { buildBasicCnn } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';
import { Batcher, BatchSizer, type LoadedModel } from '../../src/serving/engine';
import { createInferenceServer } from '../../src/serving/server';
import { getJson, LocalEndpoints, ping, postJson } from '../../src/serving/local-endpoints';
import { isProcessAlive } from '../../src/system/process';
import { blackPng } from '../helpers/images';

const SIZE = 8;
const model = (version: string, seed: number): LoadedModel => ({
  model: buildBasicCnn({ imageSize: SIZE, numClasses: 2, seed }),
  metadata: { modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: SIZE, inputScale: '0-1' },
  info: { name: 'm', version, modelUri: `s3://b/m/${version}` },
});
const instance = (v = 0.5): number[][][] => Array.from({ length: SIZE }, () => Array.from({ length: SIZE }, () => [v, v, v]));
const listen = async (server: Server): Promise<number> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The token the test servers' guarded routes (/model, /metrics, /admin/model) take. */
const admin = { headers: { authorization: 'Bearer admin-secret' } };
/** POST /invocations of a JSON body (one blank instance unless given) to the server at `at`. */
const invokeJson = (at: string, body = JSON.stringify({ instances: [instance()] })): Promise<Response> =>
  fetch(`${at}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
/** The model, with `before` run ahead of each of its predict calls. */
const beforePredict = (loaded: LoadedModel, before: () => void): LoadedModel => {
  const predict = loaded.model.predict.bind(loaded.model);
  loaded.model.predict = (x, args) => (before(), predict(x, args));
  return loaded;
};

interface RawAnswer {
  status: number;
  body: string;
  /** Whether the server closed the connection (else `waitMs` ran out). */
  closed: boolean;
  ms: number;
}
/**
 * Writes `parts` to a new connection, `gapMs` apart, and resolves with what the server sent once
 * it closes the connection (or, with `untilAnswer`, once one whole answer is in) or `waitMs`
 * passes: bytes no HTTP client library would send.
 */
function raw(port: number, parts: (string | Buffer)[], { gapMs = 0, waitMs = 5_000, untilAnswer = false } = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let next: NodeJS.Timeout | undefined;
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      clearTimeout(next);
      socket.destroy();
      const text = Buffer.concat(received).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4), closed, ms: Date.now() - started });
    };
    const guard = setTimeout(() => done(false), waitMs);
    socket.on('data', (d: Buffer) => {
      received.push(d);
      const text = Buffer.concat(received).toString('latin1');
      const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text)?.[1];
      const at = text.indexOf('\r\n\r\n');
      if (untilAnswer && length !== undefined && at >= 0 && text.length - at - 4 >= Number(length)) done(false);
    });
    socket.on('error', () => undefined); // a reset is a close here
    socket.on('close', () => done(true));
    let i = 0;
    const write = (): void => {
      while (i < parts.length && !socket.destroyed) {
        socket.write(parts[i++]!);
        if (gapMs) {
          next = setTimeout(write, gapMs);
          return;
        }
      }
    };
    socket.on('connect', write);
  });
}
const rawError = (answer: RawAnswer): string => (JSON.parse(answer.body) as { error: string }).error;

/**
 * An invocation whose body arrives `delayMs` after its headers (0: all at once): a client the
 * server is busy with (agent false: on a new connection).
 */
function slowInvocation(port: number, delayMs: number, agent?: Agent | false): Promise<number> {
  const body = JSON.stringify({ instances: [instance()] });
  return new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/invocations',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    if (delayMs === 0) return void req.end(body);
    req.write(body.slice(0, 10));
    setTimeout(() => req.end(body.slice(10)), delayMs);
  });
}

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
    const before = await (await fetch(`${url}/metrics`, admin)).text();
    const count = (text: string, labels: string): number =>
      Number(new RegExp(`^serving_requests_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const ok = 'route="POST /invocations",status="200"';
    const bad = 'route="POST /invocations",status="400"';
    assert.equal((await post(JSON.stringify({ instances: [instance()] }))).status, 200);
    assert.equal((await post('{"instances": 3}')).status, 400);
    const after = await (await fetch(`${url}/metrics`, admin)).text();
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
    const json = (instances: unknown): string => JSON.stringify({ instances });
    const withValue = (v: unknown): string => {
      const x: unknown[][][] = instance();
      x[2]![3]![1] = v;
      return json([x]);
    };
    /** withValue, but `v` written into the JSON text as is. */
    const withToken = (v: string): string => withValue('<token>').replace('"<token>"', v);
    /** A PNG that is only its header, declaring width x height: what a client that stops sending looks like. */
    const pngHeader = (width: number, height: number): Buffer => {
      const head = Buffer.alloc(33);
      head.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      head.writeUInt32BE(13, 8);
      head.write('IHDR', 12, 'latin1');
      head.writeUInt32BE(width, 16);
      head.writeUInt32BE(height, 20);
      head.set([8, 2, 0, 0, 0], 24);
      return head;
    };
    const shape = 'instances\\[0\\] must have shape \\[8, 8, 3\\] \\(rows, columns, RGB floats in \\[0, 1\\]\\): ';
    // [what, body, content-type (undefined: none), status, what the answer must say]
    const cases: [string, string | Uint8Array, string | undefined, number, RegExp][] = [
      ['malformed JSON', 'not json', 'application/json', 400, /not valid JSON \(Unexpected token 'o'.*\); send numbers only/],
      [
        'NaN, which JSON cannot carry',
        withToken('NaN'),
        'application/json',
        400,
        /not valid JSON \(Unexpected token 'N'.*no NaN or Infinity/,
      ],
      ['Infinity, which JSON cannot carry', withToken('Infinity'), 'application/json', 400, /not valid JSON \(Unexpected token 'I'/],
      ['a number beyond float64', withToken('1e400'), 'application/json', 400, /instances\[0\]\[2\]\[3\]\[1\] is out of float32 range/],
      ['a number beyond float32', withToken('-1e39'), 'application/json', 400, /instances\[0\]\[2\]\[3\]\[1\] is out of float32 range/],
      [
        'no instances',
        '{"rows": []}',
        'application/json',
        400,
        /expected \{"instances": \[\.\.\.\]\} with at least one instance, each of shape \[8, 8, 3\]/,
      ],
      ['an empty list', json([]), 'application/json', 400, /at least one instance/],
      [
        'a wrong shape',
        '{"instances": [[[1, 2]]]}',
        'application/json',
        400,
        new RegExp(`${shape}instances\\[0\\] is an array of 1, not an array of 8`),
      ],
      [
        'a pixel of 2 values',
        json([instance().map((row, r) => (r === 1 ? [[0.5, 0.5], ...row.slice(1)] : row))]),
        'application/json',
        400,
        new RegExp(`${shape}instances\\[0\\]\\[1\\]\\[0\\] is an array of 2, not an array of 3`),
      ],
      ['an object for an instance', json([{ r: 1 }]), 'application/json', 400, new RegExp(`${shape}instances\\[0\\] is an object`)],
      [
        'one image not wrapped in a list',
        json(instance()),
        'application/json',
        400,
        new RegExp(`${shape}instances\\[0\\]\\[0\\] is an array of 3, not an array of 8`),
      ],
      [
        'a string',
        withValue('0.5'),
        'application/json',
        400,
        /instances\[0\]\[2\]\[3\]\[1\] is a string \("0\.5"\); every value must be a number/,
      ],
      [
        'a boolean',
        withValue(true),
        'application/json',
        400,
        /instances\[0\]\[2\]\[3\]\[1\] is a boolean \(true\); every value must be a number/,
      ],
      ['null', withValue(null), 'application/json', 400, /instances\[0\]\[2\]\[3\]\[1\] is null; every value must be a number/],
      [
        'a value nested one level too deep',
        withValue([0.5]),
        'application/json',
        400,
        /instances\[0\]\[2\]\[3\]\[1\] is an array of 1; every value must be a number/,
      ],
      [
        'too many instances',
        json([instance(), instance(), instance(), instance(), instance()]),
        'application/json',
        413,
        /at most 4 instances per request, got 5; send the rest/,
      ],
      ['too large a body', 'x'.repeat(70 * 1024), 'application/json', 413, /exceeds the 65536-byte limit; send less/],
      ['an empty JSON body', '', 'application/json', 400, /the body is empty; send \{"instances"/],
      ['an empty image body', new Uint8Array(0), 'image/jpeg', 400, /the body is empty/],
      ['non-image bytes as image/png', 'abc', 'image/png', 400, /not a decodable image\/png image; send the bytes of a JPEG or PNG file/],
      ['non-image bytes as image/jpeg', 'abc', 'image/jpeg', 400, /not a decodable image\/jpeg image/],
      [
        'a 100000x100000 image, only its header sent',
        pngHeader(100_000, 100_000),
        'image/png',
        413,
        /declares 100000x100000 pixels, more than the 40-megapixel limit; send a smaller image/,
      ],
      [
        'a wrong content type',
        'abc',
        'text/plain',
        415,
        /unsupported content type 'text\/plain'; send application\/json, image\/jpeg or image\/png/,
      ],
      ['no content type', Buffer.from(json([instance()])), undefined, 415, /unsupported content type '\(none\)'/],
    ];
    for (const [what, body, type, status, pattern] of cases) {
      const res = await fetch(`${url}/invocations`, { method: 'POST', headers: type ? { 'content-type': type } : {}, body });
      assert.equal(res.status, status, what);
      assert.match(((await res.json()) as { error: string }).error, pattern, what);
    }
    // A declared 100000x100000 instance (some 1.2e11 bytes of JSON), of which only the start is sent: answered at once.
    const port = Number(new URL(url).port);
    const huge = await raw(
      port,
      [
        'POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 120000000000\r\n\r\n{"instances": [[[[0.5,',
      ],
      { untilAnswer: true },
    );
    assert.equal(huge.status, 413);
    assert.match(huge.body, /body of 120000000000 bytes exceeds the 65536-byte limit/);
    await expectError(await fetch(`${url}/nope`), 404, /no route GET \/nope/);
    assert.equal((await fetch(`${url}/ping`)).status, 200);
    assert.equal((await post(json([instance()]))).status, 200);
  });

  it("answers what Node's HTTP parser refuses (bad content-length, oversized headers) with a clear 4xx, and keeps serving", async () => {
    const port = Number(new URL(url).port);
    const head = 'POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n';
    const cases: [string, string, number, RegExp][] = [
      [
        'a non-numeric content-length',
        `${head}content-length: abc\r\n\r\n`,
        400,
        /Invalid character in Content-Length; send one content-length/,
      ],
      ['a negative content-length', `${head}content-length: -5\r\n\r\nhello`, 400, /Invalid character in Content-Length/],
      ['two content-lengths that disagree', `${head}content-length: 5\r\ncontent-length: 6\r\n\r\nhello!`, 400, /Duplicate Content-Length/],
      [
        'content-length with chunked',
        `${head}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
        400,
        /Transfer-Encoding can't be present with Content-Length/,
      ],
      [
        'a 20 KB content-type',
        `${head.replace('json', `json; x=${'a'.repeat(20_000)}`)}content-length: 2\r\n\r\n{}`,
        431,
        /headers are too large/,
      ],
      [
        'a control character in a header name',
        `${head}x-bad\u0001: 1\r\ncontent-length: 2\r\n\r\n{}`,
        400,
        /malformed request: Invalid header token/,
      ],
    ];
    for (const [what, bytes, status, pattern] of cases) {
      const answer = await raw(port, [Buffer.from(bytes, 'latin1')]);
      assert.equal(answer.status, status, what);
      assert.ok(answer.closed, `${what}: the connection is closed`);
      assert.match(rawError(answer), pattern, what);
      assert.equal((await fetch(`${url}/ping`)).status, 200, `${what}: still answering`);
    }
  });

  it('refuses header values it cannot act on with a clear 4xx, and serves the valid ones as before', async () => {
    const port = Number(new URL(url).port);
    const body = JSON.stringify({ instances: [instance()] });
    const rawPost = (path: string, headers: string) =>
      raw(port, [`POST ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${headers}content-length: ${body.length}\r\n\r\n${body}`]);
    const twoTypes = await rawPost('/invocations', 'content-type: application/json\r\ncontent-type: image/png\r\n');
    assert.equal(twoTypes.status, 400);
    assert.match(rawError(twoTypes), /two different content-type headers; send one/);
    const twoTokens = await rawPost('/admin/model', 'authorization: Bearer admin-secret\r\nauthorization: Bearer other\r\n');
    assert.equal(twoTokens.status, 400);
    assert.match(rawError(twoTokens), /two different authorization headers; send one/);
    const same = await rawPost('/invocations', 'content-type: application/json\r\ncontent-type: application/json\r\n');
    assert.equal(same.status, 200, 'a repeated header that agrees with itself is no conflict');

    const cases: [string, Record<string, string>, string | Uint8Array, number, RegExp][] = [
      [
        'a 1 KB content-type',
        { 'content-type': `application/json; x=${'a'.repeat(1000)}` },
        body,
        400,
        /content-type header is 1020 characters long; send just the media type/,
      ],
      [
        'a content-type that is no media type',
        { 'content-type': 'json' },
        body,
        400,
        /content-type 'json' is not a media type \(type\/subtype\)/,
      ],
      [
        'a charset JSON is not read in',
        { 'content-type': 'application/json; charset=utf-16' },
        Buffer.from(body, 'utf16le'),
        415,
        /charset 'utf-16' cannot be read: send the JSON as UTF-8/,
      ],
      [
        'a compressed body',
        { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        gzipSync(body),
        415,
        /content-encoding 'gzip' is not supported; send the body uncompressed/,
      ],
      [
        'an accept without JSON',
        { 'content-type': 'application/json', accept: 'text/csv' },
        body,
        406,
        /accept 'text\/csv' excludes application\/json.*accept application\/json or \*\/\*/,
      ],
      [
        'an accept refusing JSON',
        { 'content-type': 'application/json', accept: 'application/json;q=0, text/csv' },
        body,
        406,
        /excludes application\/json/,
      ],
    ];
    for (const [what, headers, sent, status, pattern] of cases) {
      const res = await fetch(`${url}/invocations`, { method: 'POST', headers, body: sent });
      assert.equal(res.status, status, `${what}: ${await res.clone().text()}`);
      assert.match(((await res.json()) as { error: string }).error, pattern, what);
    }
    const valid: Record<string, string>[] = [
      { 'content-type': 'application/json; charset=UTF-8' },
      { 'content-type': 'Application/JSON;charset="utf-8"' },
      { 'content-type': 'application/json; charset=us-ascii', accept: 'application/json' },
      { 'content-type': 'application/json;', accept: 'text/html, */*;q=0.8', 'content-encoding': 'identity' },
    ];
    for (const headers of valid)
      assert.equal((await fetch(`${url}/invocations`, { method: 'POST', headers, body })).status, 200, JSON.stringify(headers));
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
    assert.equal(((await (await fetch(`${url}/model`, admin)).json()) as { version: string }).version, '2');
  });

  it('answers concurrent requests, batched into shared model calls, each with its own predictions (model calls given a fixed cost)', async () => {
    // The server batches only where a larger call costs less per image (BatchSizer), and what the
    // 8 px model's calls cost is too close to linear, and too noisy, to say so every run. A fixed
    // 20 ms per call, as a small model's per-call overhead, makes batching clearly pay.
    const loaded = beforePredict(model('1', 1), () => {
      const until = performance.now() + 20;
      while (performance.now() < until);
    });
    const { server: own } = createInferenceServer(loaded, { maxInstances: 4 });
    const at = `http://127.0.0.1:${await listen(own)}`;
    try {
      const bodies = Array.from({ length: 16 }, (_, i) => (i + 0.5) / 16).map((v) =>
        JSON.stringify({ instances: [instance(v), instance(1 - v)] }),
      );
      type P = { label: string; probabilities: Record<string, number> }[];
      const one = async (body: string) => ((await (await invokeJson(at, body)).json()) as { predictions: P }).predictions;
      const alone: P[] = [];
      for (const body of bodies) alone.push(await one(body));
      // The clients are another process, as real ones are: a client in this process could not send
      // while the model call holds the event loop, so nothing would arrive while the model is busy.
      const { predictions, modelCalls } = await concurrentClients(at, bodies);
      const together = predictions as P[];
      // Requests that arrive while the model is busy share its next call: fewer calls than requests.
      assert.ok(modelCalls < bodies.length, `${bodies.length} concurrent requests took ${modelCalls} model calls`);
      // A batched call may round differently in the last float digits, nothing more.
      together.forEach((answer, i) =>
        answer.forEach((p, j) => {
          const expected = alone[i]![j]!;
          assert.equal(p.label, expected.label);
          for (const [c, v] of Object.entries(p.probabilities))
            assert.ok(Math.abs(v - expected.probabilities[c]!) < 1e-4, `${c}: ${v} vs ${expected.probabilities[c]}`);
        }),
      );
    } finally {
      own.close();
    }
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

  it('learns the batch size from what model calls cost: large where batching pays, one where it does not', () => {
    // A busy server: always more waiting than the cap, so every call takes the whole cap.
    const busy = (msPerImage: (n: number) => number, calls = 200): number[] => {
      const sizer = new BatchSizer(32);
      const sizes: number[] = [];
      for (let i = 0; i < calls; i++) {
        const n = sizer.next();
        sizes.push(n);
        sizer.record(n, n * msPerImage(n));
      }
      return sizes.slice(-100);
    };
    /** Images per second over those calls, as a share of the cheapest batch size's. */
    const efficiency = (sizes: number[], msPerImage: (n: number) => number): number => {
      const images = sizes.reduce((a, n) => a + n, 0);
      const ms = sizes.reduce((a, n) => a + n * msPerImage(n), 0);
      const best = Math.min(...Array.from({ length: 32 }, (_, i) => msPerImage(i + 1)));
      return images / ms / (1 / best);
    };
    const share = (sizes: number[], n: number): number => sizes.filter((x) => x === n).length / sizes.length;
    // A small model: a call's fixed cost dominates, so the larger the cheaper per image.
    const small = busy((n) => 5 / n + 0.2);
    assert.ok(small.filter((n) => n >= 16).length > 90, `small model: calls took ${JSON.stringify(small.slice(-20))}`);
    // The 224 px Basic CNN on 2 cores (bench:serve): 15.9 ms per image alone, 21.4 at 8, 22.4 at 32.
    const largeCost = (n: number) => (n === 1 ? 15.9 : n < 8 ? 19 : n < 32 ? 21.4 : 22.4);
    const large = busy(largeCost);
    assert.ok(share(large, 1) > 0.9, `large model: calls took ${JSON.stringify(large.slice(-20))}`);
    // Re-measuring costs little: the calls that do it are not the largest ones.
    assert.ok(efficiency(large, largeCost) > 0.95, `large model: ${efficiency(large, largeCost)} of the best rate`);
    assert.ok(efficiency(small, (n) => 5 / n + 0.2) > 0.95, `small model: ${efficiency(small, (n) => 5 / n + 0.2)} of the best rate`);
    assert.equal(new BatchSizer(32).next(), 32, 'before anything is measured, calls take up to maxBatch');
  });

  it('warms a model up before it serves it, at start and at a hot swap, outside the served model calls', async () => {
    let calls = 0;
    const counted = (version: string): LoadedModel => beforePredict(model(version, 1), () => calls++);
    const { server: own } = createInferenceServer(counted('1'), {
      loadModel: async ({ version }) => counted(version ?? '?'),
      adminToken: 'admin-secret',
    });
    assert.equal(calls, 3, 'the model ran before the server took a request');
    const at = `http://127.0.0.1:${await listen(own)}`;
    try {
      const served = async () => Number(/^serving_model_calls_total (\d+)$/m.exec(await (await fetch(`${at}/metrics`, admin)).text())![1]);
      assert.equal((await invokeJson(at)).status, 200);
      assert.deepEqual([calls, await served()], [4, 1], 'one request, one model call; the warm-up is not counted as served');
      await postJson(`${at}/admin/model`, { modelUri: 's3://b/m/2', version: '2' }, 10_000, 'admin-secret');
      assert.equal(calls, 7, 'the new model ran three times before it replaced the old one');
      assert.equal((await invokeJson(at)).headers.get('x-model-version'), '2');
    } finally {
      own.close();
    }
  });

  it('refuses a model that cannot serve its metadata (input size, classes) at start, and at a hot swap keeps the served one', async () => {
    const wrong = (version: string, change: Partial<LoadedModel['metadata']>): LoadedModel => {
      const loaded = model(version, 1);
      return { ...loaded, metadata: { ...loaded.metadata, ...change } };
    };
    assert.throws(
      () => createInferenceServer(wrong('1', { classes: ['benign', 'malignant', 'other'] })),
      /s3:\/\/b\/m\/1: the model outputs shape \[1, 2\] for one image, not one probability per class of its metadata \(3: benign, malignant, other\)/,
    );
    assert.throws(
      () => createInferenceServer(wrong('1', { imageSize: 16 })),
      /cannot predict on one 16x16 RGB image, the size its metadata gives/,
    );
    const { server: own } = createInferenceServer(model('1', 1), {
      loadModel: async ({ version }) => wrong(version ?? '?', { imageSize: 16 }),
      adminToken: 'admin-secret',
    });
    const at = `http://127.0.0.1:${await listen(own)}`;
    try {
      const swap = await fetch(`${at}/admin/model`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer admin-secret' },
        body: JSON.stringify({ modelUri: 's3://b/m/2', version: '2' }),
      });
      assert.equal(swap.status, 422);
      assert.match(
        ((await swap.json()) as { error: string }).error,
        /s3:\/\/b\/m\/2: the model cannot predict on one 16x16 RGB image.*; the served model was kept$/,
      );
      assert.equal(((await (await fetch(`${at}/model`, admin)).json()) as { version: string }).version, '1');
      const answer = await invokeJson(at);
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('x-model-version'), '1');
    } finally {
      own.close();
    }
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

  it('with a token set, answers GET /model and GET /metrics only to it; /ping and /invocations stay open', async () => {
    for (const route of ['/model', '/metrics']) {
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'admin-secret' }] as Record<string, string>[]) {
        const res = await fetch(`${url}${route}`, { headers });
        assert.equal(res.status, 401, `${route} with ${JSON.stringify(headers)}`);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
        assert.equal(((await res.json()) as { error: string }).error, `GET ${route} needs "authorization: Bearer <admin token>"`);
      }
      assert.equal((await fetch(`${url}${route}`, admin)).status, 200);
    }
    const described = (await (await fetch(`${url}/model`, admin)).json()) as { modelUri: string };
    assert.match(described.modelUri, /^s3:\/\/b\/m\//);
    assert.equal((await fetch(`${url}/ping`)).status, 200);
    assert.equal((await post(JSON.stringify({ instances: [instance()] }))).status, 200);
    // Without a token (a SageMaker container) they are open, as the container contract has it.
    const { server: open } = createInferenceServer(model('1', 1));
    const at = `http://127.0.0.1:${await listen(open)}`;
    try {
      for (const route of ['/model', '/metrics']) assert.equal((await fetch(`${at}${route}`)).status, 200);
    } finally {
      open.close();
    }
  });

  it('holds at most maxBodyBytesTotal of request bodies at once (declared or chunked): beyond it 503 and Retry-After, then serves again', async () => {
    const png = blackPng(40, 40);
    // Room for two bodies of this size, not three.
    const { server: small } = createInferenceServer(model('1', 1), { maxBodyBytesTotal: Math.floor(png.length * 2.5) });
    const port = await listen(small);
    const at = `http://127.0.0.1:${port}`;
    /** An invocation whose body is held back until `release` (chunked: no content-length). */
    const held = (chunked: boolean) => {
      let release!: () => void;
      const status = new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/invocations',
            method: 'POST',
            agent: false,
            headers: { 'content-type': 'image/png', ...(chunked ? {} : { 'content-length': png.length }) },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        // A chunked body takes its bytes as they come: all but its last byte now.
        req.write(chunked ? png.subarray(0, png.length - 1) : png.subarray(0, 10));
        release = () => req.end(chunked ? png.subarray(png.length - 1) : png.subarray(10));
      });
      return { status, release: () => release() };
    };
    const invoke = () => fetch(`${at}/invocations`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    try {
      const first = held(false);
      const second = held(true);
      await sleep(300);
      const refused = await invoke();
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.match(
        ((await refused.json()) as { error: string }).error,
        /already holds \d+ bytes of request bodies, its limit being \d+ bytes; retry shortly/,
      );
      first.release();
      second.release();
      assert.deepEqual(await Promise.all([first.status, second.status]), [200, 200]);
      // Every byte held was given back: two at once fit again.
      assert.deepEqual(await Promise.all([invoke(), invoke()]).then((rs) => rs.map((r) => r.status)), [200, 200]);
    } finally {
      small.close();
    }
  });

  it('will not offer the hot swap without a token', () => {
    assert.throws(() => createInferenceServer(model('1', 1), { loadModel: async () => model('2', 2) }), /needs an admin token/);
  });

  it('cuts off a slow client (headers byte by byte, or a trickled body) with 408, answering others meanwhile, and frees its slot', async () => {
    const { server: slow } = createInferenceServer(model('1', 1), { headersTimeoutMs: 400, requestTimeoutMs: 800, maxPendingRequests: 2 });
    const port = await listen(slow);
    try {
      const headers = 'POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n';
      const byteByByte = raw(port, [...headers], { gapMs: 50, waitMs: 4_000 });
      const trickledBody = raw(port, [headers, ...'['.repeat(200)], { gapMs: 20, waitMs: 4_000 });
      let slowOnes = 2;
      void Promise.allSettled([byteByByte, trickledBody]).then(() => (slowOnes = 0));
      const others: number[] = [];
      while (slowOnes) {
        others.push((await fetch(`http://127.0.0.1:${port}/ping`)).status, (await invokeJson(`http://127.0.0.1:${port}`)).status);
        await sleep(50);
      }
      for (const [what, answer, limit] of [
        ['headers byte by byte', await byteByByte, 400],
        ['a trickled body', await trickledBody, 800],
      ] as const) {
        assert.ok(answer.closed, `${what}: cut off`);
        assert.ok(answer.ms < limit + 700, `${what}: cut off after ${answer.ms} ms, more than ${limit} ms and a check`);
        assert.equal(answer.status, 408, what);
        assert.match(rawError(answer), /arrived too slowly: send the headers within 400 ms and all of it within 800 ms/, what);
      }
      assert.ok(others.length >= 4, `only ${others.length} answers to other clients meanwhile`);
      assert.deepEqual([...new Set(others)], [200], 'other clients were answered meanwhile');
      // The cut-off invocation gave its slot back: one busy request and one more still fit in 2.
      const [busy, next] = await Promise.all([slowInvocation(port, 200), sleep(50).then(() => invokeJson(`http://127.0.0.1:${port}`))]);
      assert.deepEqual([busy, next.status], [200, 200]);
    } finally {
      slow.close();
    }
  });

  it('refuses connections beyond maxConnections, keeps serving the connected clients, and serves new ones after the flood', async () => {
    const { server: small } = createInferenceServer(model('1', 1), { maxConnections: 4, headersTimeoutMs: 500, requestTimeoutMs: 1_000 });
    const port = await listen(small);
    const agent = new Agent({ keepAlive: true, maxSockets: 2 });
    const flood: Socket[] = [];
    try {
      // Two clients already connected (kept alive), each with an invocation in progress.
      assert.deepEqual(await Promise.all([slowInvocation(port, 50, agent), slowInvocation(port, 50, agent)]), [200, 200]);
      assert.equal(await new Promise((r) => small.getConnections((_, n) => r(n))), 2);
      // The flood: 60 connections that connect and send nothing.
      let refused = 0;
      const flooding = Array.from(
        { length: 60 },
        () =>
          new Promise<void>((resolve) => {
            const socket = connect(port, '127.0.0.1');
            flood.push(socket);
            socket.on('error', () => undefined).resume();
            socket.on('close', () => {
              refused++;
              resolve();
            });
            socket.on('connect', () => setTimeout(resolve, 200));
          }),
      );
      await Promise.all(flooding);
      assert.ok(refused > 0, 'connections beyond the limit are closed');
      assert.ok(refused < 60, 'connections up to the limit are not');
      // The connected clients are still served, while a newcomer is turned away.
      assert.deepEqual(await Promise.all([slowInvocation(port, 10, agent), slowInvocation(port, 10, agent)]), [200, 200]);
      // (Closed unanswered: Node's http client sees ECONNRESET, while fetch may wait out its own timeout.)
      const newcomer = await raw(port, ['GET /ping HTTP/1.1\r\nhost: x\r\n\r\n'], { waitMs: 2_000 });
      assert.deepEqual([newcomer.closed, newcomer.status], [true, 0], 'a newcomer is closed unanswered');
      // The flood ends: new clients are served again.
      for (const socket of flood) socket.destroy();
      await sleep(100);
      assert.equal(await slowInvocation(port, 10, false), 200);
      // A flood that never ends (idle connections held open) is cut off by headersTimeout.
      const held = Array.from({ length: 40 }, () => connect(port, '127.0.0.1').on('error', () => undefined));
      flood.push(...held);
      const cutOff = Promise.all(held.map((socket) => new Promise((r) => socket.resume().on('close', r))));
      await sleep(100);
      assert.notEqual(await slowInvocation(port, 10, false).catch(() => 0), 200, 'the held connections fill the server');
      assert.notEqual(await Promise.race([cutOff, sleep(1_500).then(() => 'open')]), 'open', 'every idle connection was closed');
      assert.equal(await slowInvocation(port, 10, false), 200);
    } finally {
      agent.destroy();
      for (const socket of flood) socket.destroy();
      small.close();
    }
  });

  it('at its connection limit, still answers /ping, /model and a hot swap (a redeploy sees it alive), and turns invocations away with 503', async () => {
    const { server: full } = createInferenceServer(model('1', 1), {
      maxConnections: 2,
      loadModel: async ({ version }) => model(version ?? '?', 2),
      adminToken: 'admin-secret',
    });
    const port = await listen(full);
    const at = `http://127.0.0.1:${port}`;
    try {
      // Both connections busy: invocations whose bodies are still arriving.
      const busy = [slowInvocation(port, 2_000, false), slowInvocation(port, 2_000, false)];
      await sleep(100);
      // What LocalEndpoints.deploy asks before it decides between a hot swap and a restart,
      // answered while both busy clients still hold their connections.
      const asked = Date.now();
      assert.equal(await ping(at, 10_000, 3), true, 'the redeploy would take the busy server for a hung one');
      assert.ok(Date.now() - asked < 1_000, `/ping was answered only after ${Date.now() - asked} ms, once a busy client left`);
      assert.equal((await getJson<{ version: string }>(`${at}/model`, 'admin-secret')).version, '1');
      await postJson(`${at}/admin/model`, { modelUri: 's3://b/m/2', version: '2' }, 10_000, 'admin-secret');
      const turnedAway = await invokeJson(at);
      assert.equal(turnedAway.status, 503);
      assert.equal(turnedAway.headers.get('retry-after'), '1');
      assert.match(((await turnedAway.json()) as { error: string }).error, /all 2 connections are in use; retry shortly/);
      assert.deepEqual(await Promise.all(busy), [200, 200], 'the busy clients were served');
      assert.equal(await slowInvocation(port, 10), 200);
    } finally {
      full.close();
    }
  });
});

/**
 * A stand-in endpoint process: the real inference server (tiny model, 2 connections), whose first
 * model call for a request blocks its event loop for BLOCK_MS. Run as <dir>/serving/main.js, which is what
 * LocalEndpoints takes for its own server.
 */
const BUSY_SERVER = `
const { createInferenceServer } = require(process.env.SRC + '/serving/server');
const { buildBasicCnn } = require(process.env.SRC + '/ml/models');
// Set once the server is created, so the warm-up calls it makes on the model do not block.
let blockMs = 0;
const served = (version, modelUri, blocks) => {
  const model = buildBasicCnn({ imageSize: 8, numClasses: 2, seed: 1 });
  const predict = model.predict.bind(model);
  model.predict = (...args) => {
    if (blocks && blockMs > 0) {
      console.log('blocking');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockMs);
      blockMs = 0;
    }
    return predict(...args);
  };
  const metadata = { modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: 8, inputScale: '0-1' };
  return { model, metadata, info: { name: 'm', version, modelUri } };
};
const { server } = createInferenceServer(served('1', 'v1', true), {
  maxConnections: 2,
  adminToken: process.env.ADMIN_TOKEN,
  loadModel: async ({ version, modelUri }) => served(version, modelUri, false),
});
blockMs = Number(process.env.BLOCK_MS);
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

describe('redeploying a busy local endpoint (a server process; no S3)', () => {
  it('hot-swaps a server whose /ping outlasts a ping try (a 12 s model call) and whose connections are all busy, rather than restart it', async function () {
    this.timeout(90_000);
    const dir = mkdtempSync(join(tmpdir(), 'busy-endpoint-'));
    mkdirSync(join(dir, 'serving'));
    writeFileSync(join(dir, 'serving', 'main.js'), BUSY_SERVER);
    const token = 'busy-secret';
    const child = spawn(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), join(dir, 'serving', 'main.js')], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        TS_NODE_PROJECT: resolve(__dirname, '../../tsconfig.json'),
        SRC: resolve(__dirname, '../../src'),
        ADMIN_TOKEN: token,
        BLOCK_MS: '12000',
      },
    });
    const lines = createInterface({ input: child.stdout! });
    const said = (pattern: RegExp) =>
      new Promise<RegExpExecArray>((r) => lines.on('line', (line) => pattern.exec(line) && r(pattern.exec(line)!)));
    const stateDir = join(dir, 'state');
    const endpoints = new LocalEndpoints({ stateDir, host: '127.0.0.1', port: 1, env: process.env });
    try {
      const blocking = said(/^blocking$/);
      const port = Number((await said(/^listening (\d+)$/))[1]);
      const url = `http://127.0.0.1:${port}`;
      mkdirSync(join(stateDir, 'endpoints'), { recursive: true });
      const state = { name: 'busy', pid: child.pid!, url, adminToken: token, registeredModelName: 'm', version: '1', modelUri: 'v1' };
      writeFileSync(join(stateDir, 'endpoints', 'busy.json'), JSON.stringify(state));
      // Both connections busy for all of the redeploy: an invocation whose body is still arriving,
      // and a client whose first invocation's model call blocks for 12 s and which then keeps asking.
      const body = JSON.stringify({ instances: [instance()] });
      const trickling = request({
        host: '127.0.0.1',
        port,
        path: '/invocations',
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      }).on('error', () => undefined);
      trickling.write(body.slice(0, 10));
      await sleep(300);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const statuses: number[] = [];
      let stop = false;
      const client = (async () => {
        while (!stop) statuses.push(await slowInvocation(port, 0, agent).catch(() => 0)); // 0: no answer
      })();
      await blocking;
      const started = Date.now();
      const v2 = { registeredModelName: 'm', version: '2', modelUri: join(dir, 'v2'), mlflowRunId: 'run-2' };
      try {
        const { state: after, unchanged } = await endpoints.deploy('busy', v2);
        assert.ok(Date.now() - started > 10_000, 'the first /ping try went unanswered, as intended');
        assert.equal(unchanged, false);
        assert.equal(after.pid, child.pid, 'the same server process');
        assert.ok(isProcessAlive(child.pid!), 'the busy server was not stopped');
        assert.equal((await getJson<{ version: string }>(`${url}/model`, token)).version, '2', 'the new version was swapped in');
      } finally {
        stop = true;
        trickling.destroy();
        await client;
        agent.destroy();
      }
      assert.ok(statuses.length > 1);
      assert.deepEqual([...new Set(statuses)], [200], 'the busy client was answered throughout');
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already stopped (by the deploy under test) */
      }
      await endpoints.stop('busy'); // a server the deploy may have started in its place
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Posts every body at once from a process of its own, twice: the first round opens the connections,
 * the second sends on them (as a busy client's are) and is the one measured. Resolves with the
 * second round's predictions, in order, and the model calls the server made for it.
 */
function concurrentClients(url: string, bodies: string[]): Promise<{ predictions: unknown[]; modelCalls: number }> {
  const script = `
    const [url, file] = process.argv.slice(1);
    const bodies = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
    const calls = () => fetch(url + '/metrics').then((r) => r.text()).then((t) => Number(/^serving_model_calls_total (\\d+)$/m.exec(t)[1]));
    const round = () => Promise.all(bodies.map((body) =>
      fetch(url + '/invocations', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
        .then((r) => r.json()).then((j) => j.predictions)));
    (async () => {
      await round();
      const before = await calls();
      const predictions = await round();
      process.stdout.write(JSON.stringify({ predictions, modelCalls: (await calls()) - before }));
    })();`;
  const dir = mkdtempSync(join(tmpdir(), 'clients-'));
  const file = join(dir, 'bodies.json');
  writeFileSync(file, JSON.stringify(bodies));
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['-e', script, url, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code === 0) resolvePromise(JSON.parse(out) as { predictions: unknown[]; modelCalls: number });
      else reject(new Error(`the client process exited with ${code}`));
    });
  });
}

describe('the serve process (src/serving/main.ts; a model from a folder, no S3)', () => {
  it('answers /ping while a model call is in progress: decoding and predicting run on a thread of their own', async function () {
    this.timeout(120_000);
    const tf = loadTf();
    const dir = mkdtempSync(join(tmpdir(), 'slow-model-'));
    // A model whose one call takes most of a second or more on these cores: eight 3x3 convolutions of
    // 128 channels over 64x64 (about 9.7 GFLOP an image), then a softmax over the two classes.
    const slow = tf.sequential();
    slow.add(tf.layers.conv2d({ inputShape: [64, 64, 3], filters: 128, kernelSize: 3, padding: 'same' }));
    for (let i = 0; i < 7; i++) slow.add(tf.layers.conv2d({ filters: 128, kernelSize: 3, padding: 'same' }));
    slow.add(tf.layers.globalAveragePooling2d({}));
    slow.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
    await slow.save(`file://${dir}`);
    slow.dispose();
    writeFileSync(
      join(dir, 'metadata.json'),
      JSON.stringify({ modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: 64, inputScale: '0-1' }),
    );
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        resolve(__dirname, '../../src/serving/main.ts'),
        '--model-uri',
        dir,
        '--host',
        '127.0.0.1',
        '--port',
        '0',
      ],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, TS_NODE_PROJECT: resolve(__dirname, '../../tsconfig.json') },
      },
    );
    try {
      const lines = createInterface({ input: child.stdout! });
      const at = await new Promise<string>((r) =>
        lines.on('line', (line) => /on (http:\S+)$/.exec(line) && r(/on (http:\S+)$/.exec(line)![1]!)),
      );
      const calls = async () => Number(/^serving_model_calls_total (\d+)$/m.exec(await (await fetch(`${at}/metrics`)).text())![1]);
      assert.equal(await calls(), 0);
      // Eight images in one request: one model call of several seconds.
      const body = JSON.stringify({ instances: Array.from({ length: 8 }, (_, i) => instanceOf(64, i / 8)) });
      let answered = false;
      const invocation = fetch(`${at}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => {
        answered = true;
        return r.status;
      });
      // The server says the call has started (the thread tells it so as it starts it)...
      while ((await calls()) === 0) await sleep(20);
      // ...and answers /ping while the call runs.
      const pinged = await fetch(`${at}/ping`);
      assert.equal(pinged.status, 200);
      assert.equal(answered, false, 'the invocation was answered first: /ping waited for the model call');
      assert.equal(await invocation, 200);
    } finally {
      process.kill(-child.pid!, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** One blank instance of shape [size, size, 3] at value v. */
function instanceOf(size: number, v: number): number[][][] {
  return Array.from({ length: size }, () => Array.from({ length: size }, () => [v, v, v]));
}
