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
  /** Images read so far, in any pass: what tells a working child from a stuck one. */
  | { work: { imagesRead: number } }
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

/** The child read no image (and reported no progress) for stallMs: it was ended so the attempt can be retried. */
export class TrainingStalledError extends Error {
  override readonly name = 'TrainingStalledError';
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
  /** Images the child has read so far (at most every second or so). */
  onWork?: (work: { imagesRead: number }) => void;
  /**
   * A child that reads no image and reports no progress for this long is killed, and the call
   * fails with TrainingStalledError (default: never). Alive is not progressing: a read that hangs
   * would otherwise hold the slot, heartbeating, until the activity's start-to-close timeout.
   */
  stallMs?: number;
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
    let workedAt = Date.now();
    let imagesRead = 0;
    const stallMs = options.stallMs;
    const watch =
      stallMs === undefined
        ? undefined
        : setInterval(
            () => {
              if (settled || Date.now() - workedAt < stallMs) return;
              settled = {
                err: new TrainingStalledError(
                  `the ${'train' in task ? 'training' : 'evaluation'} process read no image and reported no progress for ` +
                    `${Math.round(stallMs / 1000)} s (${imagesRead} images read before); it was stopped so the attempt can be retried`,
                ),
              };
              child.kill('SIGKILL');
            },
            Math.min(5_000, Math.max(50, stallMs / 4)),
          );
    const onAbort = () => {
      if (child.connected) child.send({ stop: true } satisfies ParentMessage);
      killTimer = setTimeout(() => child.kill('SIGKILL'), options.stopGraceMs ?? 60_000);
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('message', (m: ChildMessage) => {
      if ('progress' in m) {
        workedAt = Date.now();
        options.onProgress?.(m.progress);
      } else if ('work' in m) {
        workedAt = Date.now();
        imagesRead = m.work.imagesRead;
        options.onWork?.(m.work);
      } else if ('log' in m) options.onLog?.(m.log);
      else {
        settled = 'result' in m ? { ok: m.result } : { err: new TrainingError(m.error) };
        child.disconnect();
      }
    });
    child.on('error', (err) => (settled ??= { err }));
    child.on('exit', (code, signal) => {
      clearTimeout(killTimer);
      clearInterval(watch);
      options.signal?.removeEventListener('abort', onAbort);
      if (settled && 'ok' in settled) resolve(settled.ok);
      else reject(settled?.err ?? new TrainingProcessDiedError(signal, code));
    });
    child.send({ task } satisfies ParentMessage);
  });
}
