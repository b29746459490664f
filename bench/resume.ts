/**
 * `npm run bench:resume`: the resume proof. On a private local stack (Temporal, MLflow, SeaweedFS,
 * moto), it runs the pipeline with one model (Basic, N epochs) and real workers in processes of
 * their own, kills the training worker with SIGKILL in the middle of epoch k, starts a new one, and
 * waits for the workflow to complete. It counts the epochs that started in both workers' logs: with
 * checkpoints, at most N + 1 (epoch k runs twice); a training that starts over would run N + k - 1.
 *
 * The last line is one JSON object: epochsPlanned, epochsExecuted, killedInEpoch, resumedFrom,
 * workflowStatus, secondsToRecover (kill -> first batch of the resumed attempt).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Connection, WorkflowClient } from '@temporalio/client';
import { TASK_QUEUES } from '../src/common/constants';
import { writeSyntheticDataset } from '../src/data/generate';
import { stackDown, stackUp } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { loadConfig } from '../src/config';
import type { cnnSkinCancerWorkflow } from '../src/workflows';
import { privateStack } from './private-stack';

const ROOT = resolve(__dirname, '..', '..');
const EPOCHS = 6;
const KILL_IN_EPOCH = 3;

const { stack, env } = privateStack('bench-resume', { temporal: 7263, temporalUi: 8263, mlflow: 5093, moto: 4593, s3: 8363 }, 8193);

const log = (line: string) => console.log(`[resume] ${line}`);

interface WorkerHandle {
  child: ChildProcess;
  lines: string[];
}

function startWorker(name: string, onLine?: (line: string) => void): WorkerHandle {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'src', 'workers', `${name}.js`)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const take = (chunk: Buffer) =>
    chunk
      .toString()
      .split('\n')
      .filter(Boolean)
      .forEach((line) => {
        lines.push(line);
        onLine?.(line);
      });
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  return { child, lines };
}

async function main(): Promise<void> {
  rmSync(stack.dir, { recursive: true, force: true });
  await stackUp(stack, log);
  const workers: WorkerHandle[] = [];
  try {
    const s3 = new S3Store(createS3Client(loadConfig(env)));
    await s3.ensureBucket('bench-resume');
    await writeSyntheticDataset(s3, {
      outUri: 's3://bench-resume/data',
      counts: { train: { benign: 160, malignant: 160 }, test: { benign: 20, malignant: 20 } },
      size: 128,
      seed: 5,
    });
    workers.push(startWorker('pipeline'), startWorker('data'));

    let epochStarts: number[] = [];
    let killedAt = 0;
    let resumedFrom = '';
    let firstBatchAfterKill = 0;
    const epochStarted = /Basic final: epoch (\d+)\/(\d+) started/;
    const first = startWorker('training', (line) => {
      const m = epochStarted.exec(line);
      if (!m) return;
      epochStarts.push(Date.now());
      if (Number(m[1]) === KILL_IN_EPOCH) {
        // Half an epoch in, as timed by the epochs before.
        const epochMs = (epochStarts.at(-1)! - epochStarts[0]!) / (KILL_IN_EPOCH - 1);
        setTimeout(() => {
          killedAt = Date.now();
          log(`killing the training worker (pid ${first.child.pid}) with SIGKILL, half-way through epoch ${KILL_IN_EPOCH}`);
          first.child.kill('SIGKILL');
          workers.push(
            startWorker('training', (l) => {
              const resumed = /resuming from (\S+)/.exec(l);
              if (resumed) resumedFrom = resumed[1]!;
              if (resumed || epochStarted.test(l)) firstBatchAfterKill ||= Date.now();
            }),
          );
          log('started a new training worker');
        }, epochMs / 2);
      }
    });
    workers.push(first);

    const client = new WorkflowClient({ connection: await Connection.connect({ address: env.TEMPORAL_ADDRESS! }) });
    const handle = await client.start<typeof cnnSkinCancerWorkflow>('cnnSkinCancerWorkflow', {
      taskQueue: TASK_QUEUES.pipeline,
      workflowId: `bench-resume-${Date.now()}`,
      args: [
        {
          dataUri: 's3://bench-resume/data',
          imageSize: 128,
          epochs: EPOCHS,
          batchSize: 16,
          learningRate: 1e-3,
          models: ['Basic'],
          endpointName: 'bench-resume',
          lifetimeSeconds: 0,
        },
      ],
    });
    log(
      `started workflow ${handle.workflowId}; Web UI http://localhost:${stack.ports.temporalUi}/namespaces/default/workflows/${handle.workflowId}`,
    );
    await handle.result();
    const description = await handle.describe();
    const started = workers
      .filter((w) => w !== workers[0] && w !== workers[1])
      .flatMap((w) => w.lines)
      .filter((l) => epochStarted.test(l)).length;
    epochStarts = [];
    const result = {
      epochsPlanned: EPOCHS,
      epochsExecuted: started,
      killedInEpoch: KILL_IN_EPOCH,
      resumedFrom,
      workflowStatus: description.status.name,
      secondsToRecover: killedAt && firstBatchAfterKill ? Math.round((firstBatchAfterKill - killedAt) / 100) / 10 : null,
    };
    log(
      `${result.epochsExecuted} epochs started for ${EPOCHS} planned (killed in epoch ${KILL_IN_EPOCH}); resumed from ${resumedFrom || 'nothing'}; workflow ${result.workflowStatus}`,
    );
    console.log(JSON.stringify(result));
    if (!killedAt) throw new Error('the training worker was never killed: did the log format change?');
  } finally {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
    await stackDown(stack);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
