import { strict as assert } from 'node:assert';
import { decodeShard, encodeShard, ShardFormatError } from '../../src/data/shards';

describe('shard format', () => {
  const shard = {
    count: 3,
    height: 2,
    width: 2,
    channels: 3,
    labels: Uint16Array.from([0, 1, 300]),
    pixels: Uint8Array.from({ length: 36 }, (_, i) => (i * 7) % 256),
  };

  it('round-trips images and labels', () => {
    const back = decodeShard(encodeShard(shard));
    assert.deepEqual(back, shard);
  });

  it('rejects truncated shards and foreign bytes', () => {
    const bytes = encodeShard(shard);
    assert.throws(() => decodeShard(bytes.subarray(0, bytes.length - 1)), ShardFormatError);
    assert.throws(() => decodeShard(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])), /bad magic/);
  });

  it('refuses to encode inconsistent buffers', () => {
    assert.throws(() => encodeShard({ ...shard, count: 4 }), /4 images but 3 labels/);
  });
});
