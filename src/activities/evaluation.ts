/**
 * Champion evaluation (queue ml-training, where trainings run): scores the registry's current
 * champion on the new run's validation split (src/training/evaluate-champion.ts), in a child
 * process like a training, heartbeating while it works.
 */
import { Context } from '@temporalio/activity';
import type { ChampionEvaluation, PreparedDataset } from '../common/types';
import { evaluateInChildProcess, type ChildOptions } from '../training/process';
import type { ChampionEvaluationJob } from '../training/evaluate-champion';

export interface EvaluationDeps {
  /** Start the child with oneDNN kernels (as trainings do). */
  onednn: boolean;
  /** An evaluation that reads no image for this long is ended and retried (ChildOptions.stallMs). */
  stallMs?: number;
  /** How an evaluation runs; default: in a child process. */
  run?: (job: ChampionEvaluationJob, options: ChildOptions) => Promise<ChampionEvaluation | undefined>;
}

const HEARTBEAT_INTERVAL_MS = 10_000;

export function createEvaluationActivities({ onednn, stallMs, run = evaluateInChildProcess }: EvaluationDeps) {
  return {
    /** The champion's validation metrics on `dataset`; undefined when the registry has no champion. */
    async evaluateChampion(input: { registeredModelName: string; dataset: PreparedDataset }): Promise<ChampionEvaluation | undefined> {
      const ctx = Context.current();
      let imagesRead = 0;
      const details = () => ({ what: 'evaluating the champion', imagesRead });
      ctx.heartbeat(details());
      const beat = setInterval(() => ctx.heartbeat(details()), HEARTBEAT_INTERVAL_MS);
      try {
        return await run(input, {
          env: { TF_ENABLE_ONEDNN_OPTS: onednn ? '1' : '0' },
          signal: ctx.cancellationSignal,
          // Nothing to checkpoint: a cancelled evaluation need not be waited for.
          stopGraceMs: 5_000,
          ...(stallMs ? { stallMs } : {}),
          onWork: (work) => void (imagesRead = work.imagesRead),
          onLog: (message) => ctx.log.info(message),
        });
      } finally {
        clearInterval(beat);
      }
    },
  };
}
