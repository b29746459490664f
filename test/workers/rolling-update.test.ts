import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { TASK_QUEUES } from '../../src/common/constants';
import { loadConfig } from '../../src/config';
import { setCurrentVersion } from '../../src/runtime/deployment';
import { deploymentOptions } from '../../src/runtime/versioning';
import { watchCurrentVersion } from '../../src/runtime/version-watch';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import { finishSignal, statusQuery } from '../../src/workflows/messages';
import { ROOT, useTestStack } from '../helpers/global';
import { seededDataset, testS3 } from '../helpers/services';
import { startDevServer } from '../helpers/temporal';

const WORKERS = ['pipeline', 'data', 'training'] as const;

interface Proc {
  name: string;
  proc: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
  metricsUrl: string;
  readyUrl: string;
}

/**
 * One release as the base Deployments run it: each worker its own process from its entry point, with
 * the ConfigMap's variables only (no versioning variable, no build id), started one by one.
 */
function startRelease(address: string, firstPort: number): Proc[] {
  return WORKERS.map((name, i) => {
    const port = firstPort + 2 * i;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      WORKER_HEALTH_PORT: String(port),
      WORKER_METRICS_PORT: String(port + 1),
      TRAINING_CONCURRENCY: '1',
      TRAINING_ONEDNN: 'off',
      LOG_FORMAT: 'json',
    };
    delete env.TEMPORAL_WORKER_VERSIONING;
    delete env.TEMPORAL_WORKER_BUILD_ID;
    const proc = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', join(ROOT, 'src', 'workers', `${name}.ts`)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    const logs: string[] = [];
    const keep = (chunk: Buffer) => logs.push(...chunk.toString().split('\n').filter(Boolean));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    return {
      name,
      proc,
      logs,
      exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))),
      metricsUrl: `http://127.0.0.1:${port + 1}/metrics`,
      readyUrl: `http://127.0.0.1:${port}/readyz`,
    };
  });
}

const get = async (url: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(url).catch(() => undefined);
  return res ? { status: res.status, text: await res.text() } : { status: 0, text: '' };
};
const batches = async (p: Proc): Promise<number> => {
  const line = (await get(p.metricsUrl)).text.split('\n').find((l) => l.startsWith('pipeline_training_batches_total'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
};
const until = async <T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, procs: Proc[], timeoutMs = 240_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    const dead = procs.find((p) => p.proc.exitCode !== null);
    if (dead) throw new Error(`the ${dead.name} worker exited while waiting for ${what}:\n${dead.logs.slice(-10).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

useTestStack();

describe('a rolling update of the base Deployments (worker processes, real dev server, MLflow and S3)', function () {
  let env: TestWorkflowEnvironment;
  const procs: Proc[] = [];

  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    for (const p of procs) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    await env?.teardown();
  });

  it('workers started one by one run a run started like the CLI; replaced by release 2 mid-training, the run completes, serves there, and new runs start there', async () => {
    const s3 = testS3();
    const dataUri = await seededDataset(s3, { trainPerClass: 40, testPerClass: 6, size: 32 });
    const release1 = startRelease(env.address, 19400);
    procs.push(...release1);
    for (const p of release1)
      await until(
        () => get(p.readyUrl),
        (r) => r.status === 200,
        `release 1's ${p.name} worker to be ready`,
        release1,
        180_000,
      );
    for (const p of release1)
      assert.ok(
        p.logs.some((l) => l.includes('"msg":"worker started"') && l.includes('"version":"unversioned"')),
        `${p.name} polls unversioned`,
      );

    const input = (lifetimeSeconds: number) => ({
      dataUri,
      imageSize: 32,
      epochs: 40,
      batchSize: 8,
      learningRate: 1e-3,
      models: ['Basic' as const],
      registeredModelName: 'rolling-model',
      experimentName: 'rolling-test',
      lifetimeSeconds,
    });
    const run = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: 'rolling-a',
      args: [input(3600)],
    });
    const training1 = release1.find((p) => p.name === 'training')!;
    await until(
      () => batches(training1),
      (n) => n >= 10,
      "release 1's training to be under way",
      release1,
    );

    // kubectl set image: release 2's pods start, then release 1's get SIGTERM.
    const release2 = startRelease(env.address, 19500);
    procs.push(...release2);
    for (const p of release2)
      await until(
        () => get(p.readyUrl),
        (r) => r.status === 200,
        `release 2's ${p.name} worker to be ready`,
        release2,
        180_000,
      );
    for (const p of release1) p.proc.kill('SIGTERM');
    for (const p of release1) assert.equal(await p.exited, 0, `release 1's ${p.name} exit code:\n${p.logs.slice(-5).join('\n')}`);

    // Only release 2 is left: the run's training continues there, and it deploys and serves.
    const serving = await until(
      () => run.query(statusQuery),
      (s) => s.stage === 'serving' || s.stage === 'failed',
      'run A to serve',
      release2,
    );
    assert.equal(serving.stage, 'serving', JSON.stringify(serving));
    const training2 = release2.find((p) => p.name === 'training')!;
    assert.ok((await batches(training2)) > 0, "release 2's training worker finished the training");

    // A new run starts and completes on release 2.
    const b = await env.client.workflow.start(cnnSkinCancerWorkflow, {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: 'rolling-b',
      args: [{ ...input(0), epochs: 2 }],
    });
    const result = (await b.result()) as { deployment?: { version: string } };
    assert.ok(result.deployment?.version, JSON.stringify(result));

    await run.signal(finishSignal);
    await run.result();
    for (const p of release2) p.proc.kill('SIGTERM');
    for (const p of release2) assert.equal(await p.exited, 0);
  });

  it('a versioned worker whose version is not current says so in its log, with the command, until it is made current', async () => {
    const { deploymentName } = loadConfig(process.env).temporal;
    const buildId = 'rolling-watch-1';
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'rolling-watch',
      workflowsPath: require.resolve('../../src/workflows'),
      workerDeploymentOptions: deploymentOptions(deploymentName, buildId),
    });
    const warnings: string[] = [];
    const stop = new AbortController();
    const running = worker.run();
    try {
      const ref = { namespace: 'default', deploymentName, buildId };
      const watch = watchCurrentVersion(env.client.workflowService, ref, {
        firstMs: 500,
        everyMs: 500,
        signal: stop.signal,
        warn: (message) => void warnings.push(message),
      });
      await until(
        () => Promise.resolve(warnings.length),
        (n) => n >= 2,
        'two warnings',
        [],
        60_000,
      );
      assert.match(warnings[0]!, /not the deployment's current version \(there is none: new runs wait\)/);
      assert.match(warnings[0]!, new RegExp(`set-current-version --deployment-name ${deploymentName} --build-id ${buildId}`));
      await setCurrentVersion(env.client.workflowService, ref);
      await watch;
      const after = warnings.length;
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(warnings.length, after, 'no warning once current');
    } finally {
      stop.abort();
      worker.shutdown();
      await running;
    }
  });
});
