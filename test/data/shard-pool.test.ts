import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { ShardPool } from '../../src/data/shard-pool';

describe('shard pool', function () {
  this.timeout(120_000);

  it('is ready once a child killed while it starts has been replaced', async () => {
    const pool = new ShardPool(1);
    try {
      const first = (pool as unknown as { slots: { child: ChildProcess }[] }).slots[0]!.child;
      first.kill('SIGKILL');
      await pool.ready();
      const now = (pool as unknown as { slots: { child: ChildProcess }[] }).slots[0]!.child;
      assert.notEqual(now.pid, first.pid);
    } finally {
      await pool.close();
    }
  });
});
