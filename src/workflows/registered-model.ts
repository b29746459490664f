/**
 * registeredModelWorkflow: the one place a registered model's champion changes. A promotion reads
 * `champion`, then moves it and `previous-champion`; two runs promoting into one registered model
 * at once (endpoints that share a `registeredModelName`) could interleave those reads and writes
 * and leave `previous-champion` naming a version that never was champion before the current one.
 * So the promoteModelVersion activity does not promote: it asks this workflow (update `promote`,
 * sent with update-with-start, src/activities/registry.ts), which carries out the promotions one
 * at a time, in the order they came, and answers each when it is done.
 *
 * It lives only while promotions wait (seconds), then completes; the next promotion starts it
 * again. So it never holds a build: under Worker Versioning it is pinned, like every workflow of
 * these workers, for the length of a promotion.
 */
import { allHandlersFinished, ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { registry } from './activities';
import type { PromotionRequest } from '../common/types';
import { promoteUpdate } from './messages';

export interface RegisteredModelInput {
  registeredModelName: string;
}

export async function registeredModelWorkflow({ registeredModelName }: RegisteredModelInput): Promise<{ promotions: number }> {
  // Tickets in arrival order: only the head of the line runs, so no two promotions overlap.
  const line: number[] = [];
  let tickets = 0;
  let promotions = 0;
  setHandler(
    promoteUpdate,
    async (request) => {
      const ticket = tickets++;
      line.push(ticket);
      try {
        await condition(() => line[0] === ticket);
        const outcome = await registry.applyPromotion({ registeredModelName, ...request });
        promotions++;
        return outcome;
      } finally {
        line.shift();
      }
    },
    { validator: validatePromotionRequest },
  );
  // Update-with-start brings the first promotion with the start; one started otherwise ends idle.
  if (!(await condition(() => tickets > 0, '1 minute'))) return { promotions };
  await condition(() => line.length === 0 && allHandlersFinished());
  return { promotions };
}

/** Refused before it is admitted: nothing of a malformed request reaches the history. */
function validatePromotionRequest(request: PromotionRequest): void {
  if (typeof request !== 'object' || request === null)
    throw ApplicationFailure.nonRetryable('a promotion is an object { version, reason }');
  if (typeof request.version !== 'string' || !/^[1-9]\d{0,9}$/.test(request.version))
    throw ApplicationFailure.nonRetryable(
      `version must be a registered version number, got ${JSON.stringify(request.version)?.slice(0, 40)}`,
    );
  if (typeof request.reason !== 'string' || request.reason.length > 5000)
    throw ApplicationFailure.nonRetryable('reason must be a string of at most 5000 characters');
}
