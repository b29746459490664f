import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { TASK_QUEUES } from '../../src/common/constants';
import { cnnSkinCancerWorkflow } from '../../src/workflows';
import { statusQuery } from '../../src/workflows/messages';
import { ROOT, useTestStack } from '../helpers/global';
import { runTags, seededDataset, testMlflow, testS3 } from '../helpers/services';
import { createPipelineWorkers, startDevServer } from '../helpers/temporal';

// The training at the size this test runs; SHUTDOWN_TEST_IMAGE_SIZE / _MODEL / _BATCH measure
// other sizes by hand (224 px, ResNet50, batch 64 is what the seed's input trains).
const IMAGE_SIZE = Number(process.env.SHUTDOWN_TEST_IMAGE_SIZE ?? 128);
const MODEL = (process.env.SHUTDOWN_TEST_MODEL ?? 'Basic') as 'Basic' | 'ResNet50';
const BATCH = Number(process.env.SHUTDOWN_TEST_BATCH ?? 8);
const EPOCHS = 3;

/** A training worker as Kubernetes runs it: its own process, started from its entry point. */
function startTrainingWorker(address: string, port: number): { proc: ChildProcess; logs: string[]; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', join(ROOT, 'src', 'workers', 'training.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      // The in-process pipeline worker is unversioned; versioned workers are the rollout test's.
      TEMPORAL_WORKER_VERSIONING: 'off',
      WORKER_HEALTH_PORT: String(port),
      WORKER_METRICS_PORT: String(port + 1),
      TRAINING_CONCURRENCY: '1',
      TRAINING_ONEDNN: 'off',
      LOG_FORMAT: 'json',
    },
  });
  const logs: string[] = [];
  const keep = (chunk: Buffer) => logs.push(...chunk.toString().split('\n').filter(Boolean));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return { proc, logs, exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))) };
}

const get = async (url: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(url).catch(() => undefined);
  return res ? { status: res.status, text: await res.text() } : { status: 0, text: '' };
};
const metric = (text: string, name: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
};
const until = async <T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 240_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

useTestStack();

describe('training worker process: probes, Prometheus metrics and graceful shutdown (real processes, dev server, MLflow, SeaweedFS)', function () {
  let env: TestWorkflowEnvironment;
  const workers: ChildProcess[] = [];

  before(async () => {
    env = await startDevServer();
  });
  after(async () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    await env?.teardown();
  });

  it('serves /healthz, /readyz and both kinds of metrics; on SIGTERM checkpoints at its batch and exits; the next worker resumes there', async () => {
    const s3 = testS3();
    const mlflow = testMlflow();
    const dataUri = await seededDataset(s3, { trainPerClass: 40, testPerClass: 6, size: 32 });
    const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: new DefaultLogger('WARN') });
    const inProcess = await createPipelineWorkers(env.nativeConnection, bundle, undefined, {}, { withoutTraining: true });
    const done = (async () => {
      const first = startTrainingWorker(env.address, 19190);
      workers.push(first.proc);
      const base = 'http://127.0.0.1:19190';
      const metricsUrl = 'http://127.0.0.1:19191/metrics';
      await until(
        () => get(`${base}/readyz`),
        (r) => r.status === 200,
        'the first worker to be ready',
        120_000,
      );
      assert.match((await get(`${base}/healthz`)).text, /"healthy":true/);

      const handle = await env.client.workflow.start(cnnSkinCancerWorkflow, {
        taskQueue: TASK_QUEUES.pipeline,
        workflowId: 'shutdown-resume',
        args: [
          {
            dataUri,
            imageSize: IMAGE_SIZE,
            epochs: EPOCHS,
            batchSize: BATCH,
            learningRate: 1e-3,
            models: [MODEL],
            registeredModelName: 'shutdown-model',
            experimentName: 'shutdown-test',
            lifetimeSeconds: 0,
          },
        ],
      });
      const { dataset } = await until(
        () => handle.query(statusQuery),
        (s) => s.dataset !== undefined,
        'preprocessing',
      );
      const perEpoch = Math.ceil(dataset!.splits.train.count / BATCH);
      const planned = perEpoch * EPOCHS;

      // Mid-epoch of the second epoch: the SDK's metrics and the pipeline's are both there.
      const scrape = await until(
        () => get(metricsUrl),
        (r) => (metric(r.text, 'pipeline_training_batches_total') ?? 0) >= perEpoch + 2,
        'the second epoch',
      );
      for (const name of [
        'temporal_num_pollers',
        'temporal_activity_schedule_to_start_latency_count',
        'temporal_worker_task_slots_available',
        'pipeline_training_epoch',
        'pipeline_training_loss',
        'pipeline_training_images_per_second',
        'pipeline_training_checkpoint_age_seconds',
      ]) {
        assert.notEqual(metric(scrape.text, name), undefined, `${name} in the scrape`);
      }
      assert.equal(metric(scrape.text, 'pipeline_training_epoch'), 2);

      const sigterm = Date.now();
      first.proc.kill('SIGTERM');
      // The counter until the process is gone: how many batches the first worker really finished.
      let firstBatches = 0;
      const watching = (async () => {
        while (first.proc.exitCode === null) {
          const n = metric((await get(metricsUrl)).text, 'pipeline_training_batches_total');
          if (n !== undefined) firstBatches = Math.max(firstBatches, n);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      assert.equal(await first.exited, 0, `exit code; logs:\n${first.logs.slice(-5).join('\n')}`);
      const secondsToExit = (Date.now() - sigterm) / 1000;
      await watching;

      const experiment = await mlflow.getOrCreateExperiment('shutdown-test');
      const [run] = await mlflow.searchRuns(experiment, "tags.`temporal.workflow_id` = 'shutdown-resume'");
      const tags = (id: string) => mlflow.getRun(id).then(runTags);
      const interrupted = (await tags(run!.run_id))['training.interrupted'] ?? '';
      const at = /stopped at epoch (\d+), batch (\d+); checkpoint (\S+)/.exec(interrupted);
      assert.ok(at, `the interrupted attempt says where it stopped: '${interrupted}'`);
      const [epoch, batch, checkpoint] = [Number(at[1]), Number(at[2]), at[3]!];
      const position = new RegExp(`-e${String(epoch - 1).padStart(4, '0')}-b${String(batch).padStart(6, '0')}\\.ckpt$`);
      assert.match(checkpoint, position, 'checkpoint at that batch');
      assert.equal(firstBatches, (epoch - 1) * perEpoch + batch, 'the first worker stopped right after the checkpointed batch');

      const second = startTrainingWorker(env.address, 19290);
      workers.push(second.proc);
      await handle.result();
      const secondBatches = metric((await get('http://127.0.0.1:19291/metrics')).text, 'pipeline_training_batches_total') ?? 0;
      const resumedFrom = (await tags(run!.run_id))['training.resumed_from'];
      assert.equal(resumedFrom, checkpoint, 'the next attempt resumed from the checkpoint written at SIGTERM');
      const redone = firstBatches + secondBatches - planned;
      assert.ok(
        redone >= 0 && redone <= 1,
        `batches redone: ${redone} (first ${firstBatches}, second ${secondBatches}, planned ${planned})`,
      );
      console.log(
        `      SIGTERM -> exit ${secondsToExit.toFixed(1)} s at ${IMAGE_SIZE} px (${MODEL}, batch ${BATCH}); ` +
          `stopped at epoch ${epoch} batch ${batch}/${perEpoch}; batches redone after resume: ${redone}`,
      );
      second.proc.kill('SIGTERM');
      assert.equal(await second.exited, 0);
    })();
    await Promise.all([done, ...inProcess.map((w) => w.runUntil(done.catch(() => undefined)))]);
  });
});
