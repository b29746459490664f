/**
 * `npm run bench:serve`: two comparisons of our inference server serving the Basic CNN at 224 px.
 *
 * 1. Against MLflow's own scoring server (`mlflow models serve`, what the original pipeline
 *    deployed; Keras on the same libtensorflow), driven by the same load generator with the same
 *    bodies (the original endpoint's JSON): `ratio` (our req/s / MLflow's) and `p99Ratio`.
 * 2. Against the model's limit: clients send what real clients send, 224 px JPEG files
 *    (`image/jpeg`), at 1, 8 and 32 concurrent clients; the limit is the same model's batched
 *    predict on already-decoded tensors in this process, with no HTTP, at the mean batch the
 *    server formed at 32 clients (read from its /metrics). Measured alternately, two rounds:
 *    `ratioToLimit` (our req/s at 32 clients / the limit's images/s).
 * 3. Health checks while it is busy: /ping every 50 ms during the 32-client JPEG load,
 *    `pingP99Ms` (the worst round's p99; goal under 100 ms, so a health check never takes a busy
 *    server for a hung one).
 *
 * The last line is one JSON object with those fields. Either server exiting ends the benchmark at
 * once with the end of its log.
 *
 *   node dist/bench/serve.js [--requests 300] [--concurrency 8] [--size 224] [--rounds 2] [--quick]
 *
 * --quick: 64 px, 40 requests per measurement, 4 bodies, one round, limit measurements of 0.3 s.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { decodeAndResize } from '../src/data/images';
import { encodeJpeg, syntheticLesion } from '../src/data/synthetic';
import { buildBasicCnn } from '../src/ml/models';
import { loadTf } from '../src/ml/tf';
import { isProcessAlive, killGroup } from '../src/system/process';
import { benchPort } from './ports';
import { runLoad, type LoadResult } from './serve-load';
import { DependencyWatch } from './watch';

const ROOT = resolve(__dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out', 'serve');

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    size: { type: 'string', default: '224' },
    bodies: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '2' },
    quick: { type: 'boolean', default: false },
  },
});
if (values.quick) Object.assign(values, { requests: '40', size: '64', bodies: '4', rounds: '1' });
/** Concurrent JPEG clients; the last is the one set against the limit. */
const JPEG_CONCURRENCY = [1, 8, 32];
const ROUNDS = Number(values.rounds);
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const SIZE = Number(values.size);
const WARMUP = Math.max(20, 2 * CONCURRENCY);
/** The shortest limit measurement: single calls vary by tens of percent here. */
const LIMIT_SECONDS = values.quick ? 0.3 : 3;
const OURS_PORT = benchPort(18080);
const MLFLOW_PORT = benchPort(18081);
const watch = new DependencyWatch();

const say = (line: string): void => void process.stderr.write(`[bench:serve] ${line}\n`);
const pids: number[] = [];

function start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const fd = openSync(join(OUT, `${name}.log`), 'w');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  child.unref();
  pids.push(child.pid!);
  return child.pid!;
}

async function waitForPing(name: string, url: string, pid: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/ping`, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {
      /* not up yet */
    }
    if (!isProcessAlive(pid)) throw new Error(`${name} exited during start-up; see ${join(OUT, `${name}.log`)}`);
    if (Date.now() > deadline) throw new Error(`${name} did not answer /ping within 180 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Deterministic images in the original endpoint's JSON: {"instances": [HxWx3 floats in [0,1]]}. */
function requestBodies(count: number): Buffer[] {
  let state = 12345;
  const rand = (): number => (state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  return Array.from({ length: count }, () => {
    const image = Array.from({ length: SIZE }, () =>
      Array.from({ length: SIZE }, () => [rand(), rand(), rand()].map((v) => Math.round(v * 1000) / 1000)),
    );
    return Buffer.from(JSON.stringify({ instances: [image] }));
  });
}

async function measure(name: string, url: string, bodies: Buffer[], concurrency = CONCURRENCY, type?: string): Promise<LoadResult> {
  await watch.race(runLoad(`${url}/invocations`, bodies, Math.max(20, 2 * concurrency), concurrency, type));
  const result = await watch.race(runLoad(`${url}/invocations`, bodies, REQUESTS, concurrency, type));
  say(
    `${name.padEnd(7)} ${result.requestsPerSecond.toFixed(1)} req/s  p50 ${result.p50Ms.toFixed(0)} ms  p99 ${result.p99Ms.toFixed(0)} ms  ` +
      `${result.failed} failed${result.firstFailure ? ` (first: ${result.firstFailure})` : ''}`,
  );
  return result;
}

/** 224 px lesion-like JPEG files, as the Kaggle dataset's are, both classes. */
async function jpegBodies(count: number): Promise<Buffer[]> {
  const kinds = ['benign', 'malignant'] as const;
  return Promise.all(
    Array.from({ length: count }, async (_, i) => Buffer.from(await encodeJpeg(syntheticLesion(kinds[i % 2]!, SIZE, 1000 + i), SIZE))),
  );
}

/** The server's model calls and the images in them so far (GET /metrics). */
async function modelCalls(url: string): Promise<{ calls: number; instances: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { calls: value('serving_model_calls_total'), instances: value('serving_model_instances_total') };
}

/** JPEG load at one concurrency, with the mean batch the server formed meanwhile and its /ping times. */
async function measureJpeg(
  url: string,
  bodies: Buffer[],
  concurrency: number,
): Promise<LoadResult & { meanBatch: number; pingP99Ms: number }> {
  const before = await modelCalls(url);
  const pings: number[] = [];
  let loaded = true;
  const pinger = (async () => {
    while (loaded) {
      const t0 = performance.now();
      const ok = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(10_000) }).then(
        (r) => r.ok,
        () => false,
      );
      pings.push(ok ? performance.now() - t0 : Infinity);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const result = await measure(`jpeg x${concurrency}`, url, bodies, concurrency, 'image/jpeg').finally(() => (loaded = false));
  await pinger;
  const after = await modelCalls(url);
  // The warm-up's calls are in the difference too; it runs the same load, so the mean is the same.
  const meanBatch = (after.instances - before.instances) / (after.calls - before.calls);
  const sorted = pings.sort((x, y) => x - y);
  const pingP99Ms = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? NaN;
  say(`          mean batch ${meanBatch.toFixed(1)}; /ping p99 ${pingP99Ms.toFixed(1)} ms over ${pings.length} pings`);
  return { ...result, meanBatch, pingP99Ms };
}

/**
 * The limit: the served model's predict on already-decoded images, batched `batch` at a time,
 * the way the server calls it (predict, then read the probabilities back), in this process with
 * no HTTP and no decoding. Images per second over at least `total` images and LIMIT_SECONDS, after two warm-up calls.
 */
function limitImagesPerSecond(model: LayersModel, decoded: Float32Array[], batch: number, total: number): number {
  const tf = loadTf();
  const inputs = Array.from({ length: Math.min(4, decoded.length) }, (_, k) => {
    const pixels = new Float32Array(batch * SIZE * SIZE * 3);
    for (let i = 0; i < batch; i++) pixels.set(decoded[(k * batch + i) % decoded.length]!, i * SIZE * SIZE * 3);
    return tf.tensor4d(pixels, [batch, SIZE, SIZE, 3]);
  });
  const call = (x: Tensor): void => {
    const probs = model.predict(x) as Tensor;
    probs.arraySync();
    probs.dispose();
  };
  call(inputs[0]!);
  call(inputs[1 % inputs.length]!);
  const t0 = process.hrtime.bigint();
  let calls = 0;
  let seconds = 0;
  while (calls * batch < total || seconds < LIMIT_SECONDS) {
    call(inputs[calls++ % inputs.length]!);
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  inputs.forEach((x) => x.dispose());
  const ips = (calls * batch) / seconds;
  say(`limit   ${ips.toFixed(1)} images/s at batch ${batch} (predict on decoded tensors, no HTTP)`);
  return ips;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  execFileSync('bash', [join(ROOT, 'scripts', 'bench-env.sh')], { stdio: 'inherit' });

  say(`saving the Basic CNN at ${SIZE} px: tfjs (ours) and Keras as an MLflow model`);
  const tfjsDir = join(OUT, 'tfjs');
  const model = buildBasicCnn({ imageSize: SIZE, numClasses: 2, seed: 1 });
  await model.save(`file://${tfjsDir}`);
  model.dispose();
  writeFileSync(
    join(tfjsDir, 'metadata.json'),
    JSON.stringify({ modelClass: 'Basic', classes: ['benign', 'malignant'], imageSize: SIZE, inputScale: '0-1' }),
  );
  const mlflowDir = join(OUT, 'mlflow-model');
  execFileSync(join(ROOT, '.venv-bench', 'bin', 'python'), [join(ROOT, 'bench', 'serve_keras_model.py'), mlflowDir, String(SIZE)], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });

  const ours = { name: 'ours', url: `http://127.0.0.1:${OURS_PORT}` };
  const mlflow = { name: 'mlflow', url: `http://127.0.0.1:${MLFLOW_PORT}` };
  const env = { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' };
  const oursPid = start(
    ours.name,
    process.execPath,
    [join(ROOT, 'dist', 'src', 'serving', 'main.js'), '--model-uri', tfjsDir, '--host', '127.0.0.1', '--port', String(OURS_PORT)],
    env,
  );
  const mlflowPid = start(
    mlflow.name,
    join(ROOT, '.venv-bench', 'bin', 'mlflow'),
    ['models', 'serve', '-m', mlflowDir, '--env-manager', 'local', '-h', '127.0.0.1', '-p', String(MLFLOW_PORT)],
    { ...env, PATH: `${join(ROOT, '.venv-bench', 'bin')}:${process.env.PATH}` },
  );
  await Promise.all([waitForPing(ours.name, ours.url, oursPid), waitForPing(mlflow.name, mlflow.url, mlflowPid)]);
  watch.pid('our server', oursPid, join(OUT, `${ours.name}.log`));
  const unwatchMlflow = watch.pid("MLflow's scoring server", mlflowPid, join(OUT, `${mlflow.name}.log`));

  const bodies = requestBodies(Number(values.bodies));
  say(
    `both servers up; ${REQUESTS} requests each (after ${WARMUP} warm-up), ${CONCURRENCY} concurrent, ${(bodies[0]!.length / 1e6).toFixed(2)} MB JSON bodies`,
  );
  // One server at a time, so neither competes with the other for the two cores.
  const a = await measure(ours.name, ours.url, bodies);
  const b = await measure(mlflow.name, mlflow.url, bodies);
  unwatchMlflow();
  await killGroup(mlflowPid);

  const jpegs = await jpegBodies(Number(values.bodies));
  const meanKb = jpegs.reduce((n, x) => n + x.length, 0) / jpegs.length / 1024;
  say(`JPEG bodies: ${jpegs.length} files of ${SIZE} px, ${meanKb.toFixed(0)} KB on average; concurrency ${JPEG_CONCURRENCY.join(', ')}`);
  const decoded = jpegs.map((j) => Float32Array.from(decodeAndResize(j, SIZE), (v) => v / 255));
  const served = await loadTf().loadLayersModel(`file://${join(tfjsDir, 'model.json')}`);
  const perConcurrency: Record<number, LoadResult & { meanBatch: number; pingP99Ms: number }> = {};
  const rounds: { requestsPerSecond: number; meanBatch: number; limitBatch: number; limitImagesPerSecond: number; pingP99Ms: number }[] =
    [];
  for (let r = 0; r < ROUNDS; r++) {
    // The first round also measures the lower concurrencies; each round then sets 32 clients against the limit.
    for (const c of r === 0 ? JPEG_CONCURRENCY : JPEG_CONCURRENCY.slice(-1)) perConcurrency[c] = await measureJpeg(ours.url, jpegs, c);
    const top = perConcurrency[JPEG_CONCURRENCY.at(-1)!]!;
    const limitBatch = Math.max(1, Math.round(top.meanBatch));
    rounds.push({
      // Answered requests only: a refused one (503) is not served throughput.
      requestsPerSecond: (top.requests - top.failed) / top.seconds,
      meanBatch: top.meanBatch,
      pingP99Ms: top.pingP99Ms,
      limitBatch,
      limitImagesPerSecond: limitImagesPerSecond(served, decoded, limitBatch, REQUESTS),
    });
  }
  const limitAt = Object.fromEntries(JPEG_CONCURRENCY.map((n) => [n, round(limitImagesPerSecond(served, decoded, n, REQUESTS), 1)]));
  served.dispose();

  const sum = (xs: number[]): number => xs.reduce((x, y) => x + y, 0);
  console.log(
    JSON.stringify({
      ratio: round(a.requestsPerSecond / b.requestsPerSecond),
      p99Ratio: round(a.p99Ms / b.p99Ms),
      ratioToLimit: round(sum(rounds.map((x) => x.requestsPerSecond)) / sum(rounds.map((x) => x.limitImagesPerSecond))),
      pingP99Ms: round(Math.max(...rounds.map((x) => x.pingP99Ms)), 1),
      ours: summary(a),
      mlflow: summary(b),
      jpeg: Object.fromEntries(
        Object.entries(perConcurrency).map(([c, r]) => [
          c,
          { ...summary(r), meanBatch: round(r.meanBatch, 1), pingP99Ms: round(r.pingP99Ms, 1) },
        ]),
      ),
      limitRounds: rounds.map((x) => ({
        oursRequestsPerSecond: round(x.requestsPerSecond, 2),
        limitBatch: x.limitBatch,
        limitImagesPerSecond: round(x.limitImagesPerSecond, 2),
      })),
      limitImagesPerSecondAtBatch: limitAt,
      jpegKb: round(meanKb, 1),
      requests: REQUESTS,
      concurrency: CONCURRENCY,
      imageSize: SIZE,
    }),
  );
}

const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;
const summary = (r: LoadResult) => ({
  requestsPerSecond: round(r.requestsPerSecond, 2),
  p50Ms: round(r.p50Ms, 1),
  p99Ms: round(r.p99Ms, 1),
  failed: r.failed,
});

async function cleanup(): Promise<void> {
  watch.close();
  await Promise.all(pids.filter(isProcessAlive).map((pid) => killGroup(pid)));
}

process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)));
loadTf();
main()
  .then(cleanup)
  .catch(async (err: Error) => {
    await cleanup();
    console.error(`bench:serve: ${err.message}`);
    process.exit(1);
  });
