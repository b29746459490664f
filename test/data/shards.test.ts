import { strict as assert } from 'node:assert';
import { decodeShard, encodeShard, ShardFormatError, ShardWriter } from '../../src/data/shards';

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

  it('writes images in place, closes the gap when fewer are kept than planned, and reuses a dirty buffer', () => {
    const image = (k: number) => shard.pixels.subarray(12 * k, 12 * (k + 1));
    // A buffer left over from a larger shard, full of other bytes.
    const used = new Uint8Array(200).fill(0xee);
    const writer = new ShardWriter(5, 2, 2, 3, used);
    assert.equal(writer.buffer, used);
    for (let k = 0; k < 3; k++) writer.image(k).set(image(k));
    const bytes = writer.finish(shard.labels);
    assert.deepEqual(Array.from(bytes), Array.from(encodeShard(shard)));
    assert.deepEqual(decodeShard(bytes), shard);
    // A buffer too small is not used.
    assert.notEqual(new ShardWriter(5, 2, 2, 3, new Uint8Array(10)).buffer.length, 10);
    assert.throws(() => writer.image(5), RangeError);
    assert.throws(() => new ShardWriter(2, 2, 2, 3).finish(shard.labels), /3 labels for a shard of 2 images/);
  });
});
