/** A workflow's chain of runs (continue-as-new) read from its histories: sizes and timers. */
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

export interface RunFigures {
  runId: string;
  events: number;
  /** The history's size as Temporal stores and sends it (encoded protobuf). */
  bytes: number;
  /** Each fired timer's duration (ms), in the order they fired. */
  firedTimersMs: number[];
  /** The last argument this run continued as new with (JSON), if it did. */
  carried?: unknown;
}

/**
 * Every run of the chain that starts at `firstRunId`, oldest first. Read through a connection of
 * its own that takes large answers: a run that failed to stay small must still be measured (and
 * the time-skipping server sends a history whole, whatever the page size asked).
 */
export async function chainOf(server: Connection, namespace: string, workflowId: string, firstRunId: string): Promise<RunFigures[]> {
  const connection = await Connection.connect({
    address: server.options.address,
    channelArgs: { 'grpc.max_receive_message_length': 256 * 1024 * 1024 },
  });
  try {
    return await readChain(new Client({ connection, namespace }), workflowId, firstRunId);
  } finally {
    await connection.close();
  }
}

async function readChain(client: Client, workflowId: string, firstRunId: string): Promise<RunFigures[]> {
  const runs: RunFigures[] = [];
  let runId: string | undefined = firstRunId;
  while (runId) {
    const events = await eventsOf(client, workflowId, runId);
    const history: temporal.api.history.v1.IHistory = { events };
    const started = new Map<string, number>();
    const fired: number[] = [];
    for (const e of events) {
      const s = e.timerStartedEventAttributes;
      if (s) started.set(s.timerId!, Number(s.startToFireTimeout?.seconds ?? 0) * 1000 + (s.startToFireTimeout?.nanos ?? 0) / 1e6);
      const f = e.timerFiredEventAttributes;
      if (f) fired.push(started.get(f.timerId!) ?? NaN);
    }
    const next = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes;
    const last = next?.input?.payloads?.at(-1)?.data;
    runs.push({
      runId,
      events: events.length,
      bytes: temporal.api.history.v1.History.encode(history).finish().length,
      firedTimersMs: fired,
      ...(last ? { carried: JSON.parse(Buffer.from(last).toString()) as unknown } : {}),
    });
    runId = next?.newExecutionRunId ?? undefined;
  }
  return runs;
}

/**
 * A run's events, a few at a time: a whole history past 4 MB (a run that failed to stay small)
 * would not fit in one gRPC answer.
 */
async function eventsOf(client: Client, workflowId: string, runId: string): Promise<temporal.api.history.v1.IHistoryEvent[]> {
  const events: temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      maximumPageSize: 20,
      nextPageToken,
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

/** The fired timers shorter than `ms` that directly follow another such timer, across the chain. */
export function shortTimersInARow(runs: RunFigures[], ms = 1000): number {
  const fired = runs.flatMap((r) => r.firedTimersMs);
  let count = 0;
  for (let i = 1; i < fired.length; i++) if (fired[i]! < ms && fired[i - 1]! < ms) count++;
  return count;
}

/** The chain's largest run, in events and in bytes, and how many runs it had. */
export function chainFigures(runs: RunFigures[]): { runs: number; maxEvents: number; maxBytes: number; timersFired: number } {
  return {
    runs: runs.length,
    maxEvents: Math.max(...runs.map((r) => r.events)),
    maxBytes: Math.max(...runs.map((r) => r.bytes)),
    timersFired: runs.reduce((n, r) => n + r.firedTimersMs.length, 0),
  };
}
