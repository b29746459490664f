/**
 * The serving phase's bounds. A run owns its endpoint for weeks and anyone allowed to signal it
 * can send anything, so everything a run holds, answers or carries into its next run has a fixed
 * size, and each run ends (continues as new) long before Temporal's history limits (51,200 events,
 * 50 MB; a run that reaches them is terminated, and the endpoint loses its owner).
 */

/** Redeploy requests waiting their turn; one more is refused, saying so. */
export const MAX_PENDING_REDEPLOYS = 20;

/**
 * An update is taken only while at most this many requests wait ahead of it: its caller waits for
 * the answer, and a run that should continue as new must first answer every update it took (the
 * requests ahead of them too, in order), so this bounds both waits.
 */
export const MAX_AHEAD_OF_UPDATE = 5;

/** Deployments, redeploy records and refused requests the status keeps, each list its newest. */
export const STATUS_HISTORY_LIMIT = 25;

/** A refused request is recorded as its JSON text, cut to this many characters. */
export const REFUSED_REQUEST_CHARS = 200;

/** Reasons and other messages in the status are cut to this many characters. */
export const REASON_CHARS = 500;

/** A run continues as new once its history has this many events... */
export const CONTINUE_AS_NEW_EVENTS = 2_000;

/** ...or this many bytes (Temporal's own suggestion comes at 4 MB, far past what a run needs). */
export const CONTINUE_AS_NEW_BYTES = 512 * 1024;

/**
 * A redeploy in progress is interrupted and handed to the next run (which runs it first) once the
 * history passes these: a run cannot continue as new while it waits for an activity, and every
 * request that arrives meanwhile stays in its history, refused or not (a flood during a SageMaker
 * update of many minutes could otherwise reach Temporal's limit).
 */
export const HAND_OVER_EVENTS = 2 * CONTINUE_AS_NEW_EVENTS;
export const HAND_OVER_BYTES = 2 * CONTINUE_AS_NEW_BYTES;

/**
 * What an event costs in history bytes, beyond the request payloads counted one by one: the
 * history's size is only estimated where the server does not report it (the time-skipping test
 * server), from these and the requests received.
 */
export const BYTES_PER_EVENT = 300;

/** No timer of the serving loop is shorter: nothing it waits for is due sooner than that matters. */
export const MIN_WAIT_MS = 1_000;

/** `text` cut to `max` characters, saying how long it was. */
export function clip(text: string, max = REASON_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

/** A request as JSON text, cut to REFUSED_REQUEST_CHARS; whatever it is (even not JSON-able). */
export function describeRequest(request: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(request) ?? String(request);
  } catch {
    text = String(request);
  }
  return clip(text, REFUSED_REQUEST_CHARS);
}

/** The size of a request as it arrived (its JSON text), counted towards the run's history. */
export function requestBytes(request: unknown): number {
  try {
    return (JSON.stringify(request) ?? '').length;
  } catch {
    return 0;
  }
}
