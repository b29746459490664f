/**
 * Runs a training, or a champion's evaluation, in a child process of its own (child.ts):
 *
 * - the activity's event loop stays free while TensorFlow works, so heartbeats flow even when one
 *   batch takes longer than the heartbeat timeout;
 * - stopping asks the child to checkpoint and stop after its current batch, and kills it if it does
 *   not within `stopGraceMs`;
 * - a native crash (e.g. oneDNN's SIGFPE on some CPUs) ends the child, not the worker, and is
 *   reported as TrainingProcessDiedError with its signal, so the caller can retry differently.
 */
import { fork } from 'node:child_process';
import { extname, join } from 'node:path';
import type { ChampionEvaluation, TrainedModel } from '../common/types';
import { configureTensorflowEnv } from '../ml/tf';
import { childEnv } from '../system/child-env';
import type { ChampionEvaluationJob } from './evaluate-champion';
import type { TrainingJob, TrainingProgress } from './run-training';

/** What a child is asked to do. */
export type ChildTask = { train: TrainingJob } | { evaluateChampion: ChampionEvaluationJob };
export type ParentMessage = { task: ChildTask } | { stop: true };
export type ChildMessage =
  | { progress: TrainingProgress }
  | { log: string }
  // `null`: the task's result was undefined (no champion), which IPC cannot carry.
  | { result: TrainedModel | ChampionEvaluation | null }
  | { error: { name: string; message: string; stack?: string } };

export class TrainingProcessDiedError extends Error {
  override readonly name = 'TrainingProcessDiedError';
  constructor(
    readonly signal: NodeJS.Signals | null,
    readonly exitCode: number | null,
  ) {
    super(`the training process died (${signal ?? `exit code ${exitCode}`})`);
  }
}

/** An error the training raised, re-created in the parent with its name, message and stack. */
export class TrainingError extends Error {
  constructor(error: { name: string; message: string; stack?: string }) {
    super(error.message);
    this.name = error.name;
    if (error.stack) this.stack = error.stack;
  }
}

export interface ChildOptions {
  onProgress?: (progress: TrainingProgress) => void;
  onLog?: (message: string) => void;
  /** Aborting asks the child to checkpoint and stop. */
  signal?: AbortSignal;
  /** Extra environment for the child (e.g. TF_ENABLE_ONEDNN_OPTS). */
  env?: Record<string, string>;
  stopGraceMs?: number;
}

export function trainInChildProcess(job: TrainingJob, options: ChildOptions = {}): Promise<TrainedModel> {
  return runInChildProcess({ train: job }, options) as Promise<TrainedModel>;
}

export async function evaluateInChildProcess(
  job: ChampionEvaluationJob,
  options: ChildOptions = {},
): Promise<ChampionEvaluation | undefined> {
  return ((await runInChildProcess({ evaluateChampion: job }, options)) as ChampionEvaluation | null) ?? undefined;
}

function runInChildProcess(task: ChildTask, options: ChildOptions): Promise<unknown> {
  configureTensorflowEnv();
  // Compiled: child.js; under ts-node (tests): child.ts through its hook.
  const ext = extname(__filename);
  const child = fork(join(__dirname, `child${ext}`), [], {
    serialization: 'advanced',
    execArgv: ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: childEnv('training', process.env, options.env),
  });
  return new Promise<unknown>((resolve, reject) => {
    let settled: { ok: unknown } | { err: Error } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      if (child.connected) child.send({ stop: true } satisfies ParentMessage);
      killTimer = setTimeout(() => child.kill('SIGKILL'), options.stopGraceMs ?? 60_000);
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('message', (m: ChildMessage) => {
      if ('progress' in m) options.onProgress?.(m.progress);
      else if ('log' in m) options.onLog?.(m.log);
      else {
        settled = 'result' in m ? { ok: m.result } : { err: new TrainingError(m.error) };
        child.disconnect();
      }
    });
    child.on('error', (err) => (settled ??= { err }));
    child.on('exit', (code, signal) => {
      clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      if (settled && 'ok' in settled) resolve(settled.ok);
      else reject(settled?.err ?? new TrainingProcessDiedError(signal, code));
    });
    child.send({ task } satisfies ParentMessage);
  });
}
