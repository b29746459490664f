/**
 * Reading a Temporal Schedule (queue ml-pipeline), with the worker's own client: when a retraining
 * schedule ticks next, so the endpoint's owner can show it (src/workflows/retraining.ts).
 */
import { Context } from '@temporalio/activity';

export function createScheduleActivities() {
  return {
    /** The schedule's next action time (ISO), or undefined when none is coming (paused, or its spec has ended). */
    async nextScheduledTime({ scheduleId }: { scheduleId: string }): Promise<string | undefined> {
      const description = await Context.current().client.schedule.getHandle(scheduleId).describe();
      if (description.state.paused) return undefined;
      return description.info.nextActionTimes[0]?.toISOString();
    },
  };
}
