/** What every attempt of one activity shares: its identity, and heartbeats kept up while it works. */
import type { Context, Info } from '@temporalio/activity';

/** `<workflow id>/<run id>/<activity id>`: the same for every attempt of this activity, and for no other activity. */
export function activityIdentity(info: Info): string {
  const run = info.workflowExecution;
  return `${run?.workflowId}/${run?.runId}/${info.activityId}`;
}

/** Heartbeats every `everyMs` with the last details given (none until then), until stopped. */
export function keepAlive(ctx: Context, everyMs: number): { heartbeat: (details: unknown) => void; stop: () => void } {
  let last: unknown;
  const beat = setInterval(() => ctx.heartbeat(last), everyMs);
  return {
    heartbeat: (details) => ctx.heartbeat((last = details)),
    stop: () => clearInterval(beat),
  };
}
