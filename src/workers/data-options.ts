/** The ml-data worker's options, apart from its entry point (data.ts) so that a test can read them. */
import type { WorkerOptions } from '@temporalio/worker';
import { createDataActivities, type DataDeps } from '../activities/preprocess';
import type { ShardPool } from '../data/shard-pool';

export function dataWorkerOptions(
  deps: DataDeps & { pool: ShardPool },
): Pick<WorkerOptions, 'activities' | 'maxConcurrentActivityTaskExecutions'> {
  return {
    activities: createDataActivities(deps),
    // One preprocessing keeps every builder of the pool busy (src/data/preprocess.ts keeps
    // pool.size + 1 shards in flight, whatever the pool's size). A second one beside it would halve
    // the speed of both and space out their heartbeats; it waits in the task queue instead, where
    // no timeout runs (the activity sets no schedule-to-start timeout), or another data worker takes it.
    maxConcurrentActivityTaskExecutions: 1,
  };
}
