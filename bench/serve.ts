/**
 * `npm run bench:serve`: our inference server against MLflow's own scoring server
 * (`mlflow models serve`, what the original pipeline deployed), both serving the Basic CNN at
 * 224 px (ours in tfjs-node, MLflow's in Keras, on the same libtensorflow), side by side in one
 * run, driven by the same load generator with the same request bodies (the original endpoint's
 * JSON). Prints requests/s and p50/p99 latency of each; the last line is one JSON object with
 * `ratio` (our req/s / MLflow's) and `p99Ratio` (our p99 / MLflow's).
 *
 *   node dist/bench/serve.js [--requests 300] [--concurrency 8] [--size 224]
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildBasicCnn } from '../src/ml/models';
import { loadTf } from '../src/ml/tf';
import { isProcessAlive, killGroup } from '../src/system/process';
import { runLoad, type LoadResult } from './serve-load';

const ROOT = resolve(__dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out', 'serve');

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    size: { type: 'string', default: '224' },
    bodies: { type: 'string', default: '16' },
  },
});
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const SIZE = Number(values.size);
const WARMUP = Math.max(20, 2 * CONCURRENCY);

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

async function measure(name: string, url: string, bodies: Buffer[]): Promise<LoadResult> {
  await runLoad(`${url}/invocations`, bodies, WARMUP, CONCURRENCY);
  const result = await runLoad(`${url}/invocations`, bodies, REQUESTS, CONCURRENCY);
  say(
    `${name.padEnd(7)} ${result.requestsPerSecond.toFixed(1)} req/s  p50 ${result.p50Ms.toFixed(0)} ms  p99 ${result.p99Ms.toFixed(0)} ms  ` +
      `${result.failed} failed${result.firstFailure ? ` (first: ${result.firstFailure})` : ''}`,
  );
  return result;
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

  const ours = { name: 'ours', url: 'http://127.0.0.1:18080' };
  const mlflow = { name: 'mlflow', url: 'http://127.0.0.1:18081' };
  const env = { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' };
  const oursPid = start(
    ours.name,
    process.execPath,
    [join(ROOT, 'dist', 'src', 'serving', 'main.js'), '--model-uri', tfjsDir, '--host', '127.0.0.1', '--port', '18080'],
    env,
  );
  const mlflowPid = start(
    mlflow.name,
    join(ROOT, '.venv-bench', 'bin', 'mlflow'),
    ['models', 'serve', '-m', mlflowDir, '--env-manager', 'local', '-h', '127.0.0.1', '-p', '18081'],
    { ...env, PATH: `${join(ROOT, '.venv-bench', 'bin')}:${process.env.PATH}` },
  );
  await Promise.all([waitForPing(ours.name, ours.url, oursPid), waitForPing(mlflow.name, mlflow.url, mlflowPid)]);

  const bodies = requestBodies(Number(values.bodies));
  say(
    `both servers up; ${REQUESTS} requests each (after ${WARMUP} warm-up), ${CONCURRENCY} concurrent, ${(bodies[0]!.length / 1e6).toFixed(2)} MB JSON bodies`,
  );
  // One server at a time, so neither competes with the other for the two cores.
  const a = await measure(ours.name, ours.url, bodies);
  const b = await measure(mlflow.name, mlflow.url, bodies);
  const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;
  const summary = (r: LoadResult) => ({
    requestsPerSecond: round(r.requestsPerSecond, 2),
    p50Ms: round(r.p50Ms, 1),
    p99Ms: round(r.p99Ms, 1),
    failed: r.failed,
  });
  console.log(
    JSON.stringify({
      ratio: round(a.requestsPerSecond / b.requestsPerSecond),
      p99Ratio: round(a.p99Ms / b.p99Ms),
      ours: summary(a),
      mlflow: summary(b),
      requests: REQUESTS,
      concurrency: CONCURRENCY,
      imageSize: SIZE,
    }),
  );
}

async function cleanup(): Promise<void> {
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
