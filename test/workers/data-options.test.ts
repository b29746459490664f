import { strict as assert } from 'node:assert';
import type { ShardPool } from '../../src/data/shard-pool';
import { LocalStore } from '../../src/storage/object-store';
import { dataWorkerOptions } from '../../src/workers/data-options';

describe('data worker options', () => {
  it('accept one preprocessing at a time, whatever the size of the pool it keeps busy', () => {
    for (const size of [1, 2, 8]) {
      // The options only hold the pool; no process is started.
      const options = dataWorkerOptions({ store: new LocalStore(), pool: { size } as ShardPool });
      assert.equal(options.maxConcurrentActivityTaskExecutions, 1, `pool of ${size}`);
      assert.deepEqual(Object.keys(options.activities ?? {}), ['preprocessDataset']);
    }
  });
});
