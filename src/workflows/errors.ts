import { clip } from './bounds';

/** The innermost cause's message (an ActivityFailure wraps the activity's own error), cut to a bounded length. */
export function errorMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && typeof e === 'object' && e.cause) e = e.cause as typeof e;
  return clip(e?.message ?? String(err));
}
