/**
 * The critical path of a finished workflow run, read from its event history, and the
 * orchestration overhead on it (used by bench/overhead.ts).
 *
 * The path is walked back from the run's completion: each activity on it is the one whose closing
 * event (completed, failed, timed out, cancelled) most closely precedes the scheduling of the next
 * activity on the path (or the run's completion, for the last). With trainings in parallel it goes
 * through the one that finished last before selection scheduled its next activity. On that path:
 *
 *   activity execution = sum of (ActivityTaskCompleted - ActivityTaskStarted), the started event
 *                        being the last attempt's (the only one the history keeps)
 *   overhead           = wall (WorkflowExecutionStarted -> WorkflowExecutionCompleted) - execution
 *                      = activity schedule-to-start waits + the gaps between one activity's end and
 *                        the next one's scheduling (workflow tasks: queued, then running on the
 *                        worker; anything else)
 */
import type { temporal } from '@temporalio/proto';

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

interface ActivityRun {
  scheduledId: number;
  activityType: string;
  activityId: string;
  scheduled: number;
  started?: number;
  attempt: number;
  closedId?: number;
  closed?: number;
  outcome?: 'completed' | 'failed' | 'timedOut' | 'canceled';
}

interface WorkflowTask {
  scheduled: number;
  started?: number;
  closed?: number;
}

interface ReadHistory {
  start: number;
  end: number;
  endId: number;
  activities: ActivityRun[];
  workflowTasks: WorkflowTask[];
}

/** The time between two path activities (or the run's start / end), and what filled it. */
export interface Gap {
  ms: number;
  /** Workflow tasks waiting in their queue (scheduled -> started) inside the gap. */
  workflowTaskQueueMs: number;
  /** Workflow tasks running on the worker and completing (started -> completed) inside the gap. */
  workflowTaskRunMs: number;
  /** The rest of the gap (e.g. waiting for a workflow task already in flight to end, then the next). */
  otherMs: number;
}

export interface PathStep {
  activity: string;
  activityId: string;
  attempt: number;
  /** From the previous path activity's end (the run's start, for the first) to this one's scheduling. */
  gapBefore: Gap;
  scheduleToStartMs: number;
  executionMs: number;
  outcome: string;
}

export interface OffPathActivity {
  activity: string;
  activityId: string;
  scheduleToStartMs: number;
  executionMs: number;
}

export interface CriticalPath {
  wallMs: number;
  activityExecutionMs: number;
  overheadMs: number;
  overheadShare: number;
  overheadMsPerActivity: number;
  overheadByKind: {
    activityScheduleToStartMs: number;
    workflowTaskMs: number;
    workflowTaskQueueMs: number;
    workflowTaskRunMs: number;
    otherGapMs: number;
  };
  workflowTasks: number;
  path: PathStep[];
  /** From the last path activity's end to the run's completion. */
  tailGap: Gap;
  /** The activities the path does not go through (the trainings that finished earlier). */
  offPath: OffPathActivity[];
  /** Start time of each activity's last attempt (epoch ms), by activity id, for log correlation. */
  startedAt: Record<string, number>;
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(String(v)));
const timeOf = (e: HistoryEvent): number => num(e.eventTime?.seconds) * 1000 + num(e.eventTime?.nanos) / 1e6;
const round = (ms: number): number => Math.round(ms * 10) / 10;

function read(history: History): ReadHistory {
  const events = history.events ?? [];
  const activities = new Map<number, ActivityRun>();
  const tasks = new Map<number, WorkflowTask>();
  let start: number | undefined;
  let end: { time: number; id: number } | undefined;
  for (const e of events) {
    const id = num(e.eventId);
    const time = timeOf(e);
    if (e.workflowExecutionStartedEventAttributes) start = time;
    else if (e.workflowExecutionCompletedEventAttributes) end = { time, id };
    else if (e.activityTaskScheduledEventAttributes) {
      const a = e.activityTaskScheduledEventAttributes;
      activities.set(id, {
        scheduledId: id,
        activityType: a.activityType?.name ?? '?',
        activityId: a.activityId ?? '?',
        scheduled: time,
        attempt: 1,
      });
    } else if (e.activityTaskStartedEventAttributes) {
      const a = activities.get(num(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (a) {
        a.started = time;
        a.attempt = e.activityTaskStartedEventAttributes.attempt ?? 1;
      }
    } else {
      const closing: [ActivityRun['outcome'], { scheduledEventId?: unknown } | null | undefined][] = [
        ['completed', e.activityTaskCompletedEventAttributes],
        ['failed', e.activityTaskFailedEventAttributes],
        ['timedOut', e.activityTaskTimedOutEventAttributes],
        ['canceled', e.activityTaskCanceledEventAttributes],
      ];
      const hit = closing.find(([, attrs]) => attrs);
      if (hit) {
        const a = activities.get(num(hit[1]!.scheduledEventId));
        if (a) Object.assign(a, { closedId: id, closed: time, outcome: hit[0] });
        continue;
      }
      if (e.workflowTaskScheduledEventAttributes) tasks.set(id, { scheduled: time });
      const startedWft = e.workflowTaskStartedEventAttributes;
      if (startedWft) {
        const t = tasks.get(num(startedWft.scheduledEventId));
        if (t) t.started = time;
      }
      const closedWft =
        e.workflowTaskCompletedEventAttributes ?? e.workflowTaskFailedEventAttributes ?? e.workflowTaskTimedOutEventAttributes;
      if (closedWft) {
        const t = tasks.get(num(closedWft.scheduledEventId));
        if (t) t.closed = time;
      }
    }
  }
  if (start === undefined || !end) throw new Error('the history has no WorkflowExecutionStarted/Completed pair: did the run complete?');
  return { start, end: end.time, endId: end.id, activities: [...activities.values()], workflowTasks: [...tasks.values()] };
}

/** Length of the overlap of [a0, a1] with [b0, b1]. */
const overlap = (a0: number, a1: number, b0: number, b1: number): number => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

function gap(from: number, to: number, tasks: WorkflowTask[]): Gap {
  let queue = 0;
  let run = 0;
  for (const t of tasks) {
    if (t.started === undefined) continue;
    queue += overlap(t.scheduled, t.started, from, to);
    if (t.closed !== undefined) run += overlap(t.started, t.closed, from, to);
  }
  const ms = to - from;
  return { ms: round(ms), workflowTaskQueueMs: round(queue), workflowTaskRunMs: round(run), otherMs: round(ms - queue - run) };
}

export function criticalPath(history: History): CriticalPath {
  const h = read(history);
  const closed = h.activities.filter((a) => a.closedId !== undefined && a.started !== undefined);
  const path: ActivityRun[] = [];
  let boundary = h.endId;
  for (;;) {
    const before = closed.filter((a) => a.closedId! < boundary);
    if (before.length === 0) break;
    const last = before.reduce((x, y) => (y.closedId! > x.closedId! ? y : x));
    path.unshift(last);
    boundary = last.scheduledId;
  }
  const steps: PathStep[] = path.map((a, i) => ({
    activity: a.activityType,
    activityId: a.activityId,
    attempt: a.attempt,
    gapBefore: gap(i === 0 ? h.start : path[i - 1]!.closed!, a.scheduled, h.workflowTasks),
    scheduleToStartMs: round(a.started! - a.scheduled),
    executionMs: round(a.closed! - a.started!),
    outcome: a.outcome!,
  }));
  const tailGap = gap(path.length ? path.at(-1)!.closed! : h.start, h.end, h.workflowTasks);
  const wallMs = h.end - h.start;
  const activityExecutionMs = path.reduce((s, a) => s + (a.closed! - a.started!), 0);
  const overheadMs = wallMs - activityExecutionMs;
  const gaps = [...steps.map((s) => s.gapBefore), tailGap];
  const sum = (f: (g: Gap) => number): number => round(gaps.reduce((s, g) => s + f(g), 0));
  const workflowTaskQueueMs = sum((g) => g.workflowTaskQueueMs);
  const workflowTaskRunMs = sum((g) => g.workflowTaskRunMs);
  return {
    wallMs: round(wallMs),
    activityExecutionMs: round(activityExecutionMs),
    overheadMs: round(overheadMs),
    overheadShare: Math.round((overheadMs / wallMs) * 1e5) / 1e5,
    overheadMsPerActivity: round(overheadMs / Math.max(path.length, 1)),
    overheadByKind: {
      activityScheduleToStartMs: round(path.reduce((s, a) => s + (a.started! - a.scheduled), 0)),
      workflowTaskMs: round(workflowTaskQueueMs + workflowTaskRunMs),
      workflowTaskQueueMs,
      workflowTaskRunMs,
      otherGapMs: sum((g) => g.otherMs),
    },
    workflowTasks: h.workflowTasks.length,
    path: steps,
    tailGap,
    offPath: h.activities
      .filter((a) => !path.includes(a) && a.started !== undefined && a.closed !== undefined)
      .map((a) => ({
        activity: a.activityType,
        activityId: a.activityId,
        scheduleToStartMs: round(a.started! - a.scheduled),
        executionMs: round(a.closed! - a.started!),
      })),
    startedAt: Object.fromEntries(h.activities.filter((a) => a.started !== undefined).map((a) => [a.activityId, a.started!])),
  };
}
