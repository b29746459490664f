import { strict as assert } from 'node:assert';
import type { LayersModel } from '@tensorflow/tfjs-node';
import {
  maxResidentShards,
  openShardStream,
  ShardIntegrityError,
  streamBufferBytes,
  windowShardsFor,
  type ShardStream,
} from '../../src/data/shard-stream';
import { writeSyntheticShards } from '../../src/data/synthetic-shards';
import type { DatasetManifest } from '../../src/data/shards';
import type { ImageSource } from '../../src/ml/image-source';
import { createOptimizer } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';
import { fitModel, type TrainPosition } from '../../src/ml/trainer';
import { useTestStack } from '../helpers/global';
import { testS3, uniqueBucket } from '../helpers/services';

/** The index an image of `pattern: 'index'` carries in its first four bytes. */
const idOf = (pixels: Uint8Array): number => new DataView(pixels.buffer, pixels.byteOffset, 4).getUint32(0, true);

describe('training data streamed from shards', () => {
  useTestStack();
  const s3 = testS3();
  const size = 8;
  const shardSize = 16;
  // 40 training shards: 10 shuffle windows of 4 shards.
  const counts = { train: 640, validation: 40, test: 24 };
  let manifest: DatasetManifest;
  let manifestUri: string;

  before(async () => {
    const bucket = uniqueBucket('stream');
    await s3.ensureBucket(bucket);
    manifestUri = await writeSyntheticShards(s3, {
      outUri: `s3://${bucket}/ds`,
      counts,
      imageSize: size,
      shardSize,
      seed: 1,
      pattern: 'index',
    });
    manifest = await s3.getJson<DatasetManifest>(manifestUri);
  });

  const open = (windowShards = 4): Promise<ShardStream> => openShardStream(s3, manifest, manifest.splits.train, { windowShards });
  const shardBytes = () => manifest.splits.train.shards[0]!.bytes;

  it('reads its labels from the shard headers, and shuffles each epoch within windows of shards, seeded', async () => {
    const stream = await open();
    assert.equal(stream.count, 640);
    assert.deepEqual(Array.from(stream.labels.subarray(0, 4)), [0, 1, 0, 1]);
    assert.equal(stream.stats.shardsFetched, 0, 'opening fetches no pixels');
    const order = stream.epochOrder(7, 0);
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      [...Array(640).keys()],
      'a permutation',
    );
    assert.deepEqual(stream.epochOrder(7, 0), order, 'the same for the same seed and epoch');
    assert.notDeepEqual(stream.epochOrder(7, 1), order, 'another each epoch');
    // Each window of 64 positions (4 shards of 16) draws from exactly 4 shards, in no shard order.
    for (let w = 0; w < 10; w++) {
      const shards = new Set(Array.from(order.subarray(w * 64, (w + 1) * 64), (i) => Math.floor(i / shardSize)));
      assert.equal(shards.size, 4, `window ${w} spans ${[...shards]}`);
    }
    assert.notDeepEqual(
      Array.from(order.subarray(0, 16), (i) => Math.floor(i / shardSize)),
      Array(16).fill(Math.floor(order[0]! / shardSize)),
      'images mix across the window',
    );
  });

  it('hands out the right images while holding at most two windows of shards, on a split ten times that size', async () => {
    const stream = await open();
    const order = stream.epochOrder(3, 2);
    const reader = stream.open(order);
    for (let from = 0; from < order.length; from += 24) {
      const images = await reader.read(from, 24);
      images.forEach((img, k) => assert.equal(idOf(img), order[from + k], `position ${from + k}`));
    }
    reader.close();
    const bound = maxResidentShards(4) * shardBytes();
    assert.ok(stream.stats.peakResidentBytes <= bound, `held ${stream.stats.peakResidentBytes} bytes, bound ${bound}`);
    assert.ok(manifest.splits.train.shards.length * shardBytes() >= 5 * bound, 'the split is many times the bound');
    assert.equal(stream.stats.shardsFetched, 40, 'each shard fetched once per epoch');
    assert.equal(stream.stats.residentBytes, 0, 'nothing held once closed');
    // What the training's memory plan sets aside for its data is that same bound (for 16-image shards: windows of 64).
    assert.equal(streamBufferBytes(manifest), maxResidentShards(windowShardsFor(shardSize)) * shardBytes());
  });

  it('a fold is a view over the same shards: only its images, in windows, none copied', async () => {
    const stream = await open();
    const members = [...Array(640).keys()].filter((i) => i % 5 !== 2);
    const fold = stream.subset(members);
    assert.equal(fold.count, members.length);
    const order = fold.epochOrder(1, 0);
    const reader = fold.open(order);
    const seen = new Set<number>();
    for (let from = 0; from < order.length; from += 32) for (const img of await reader.read(from, 32)) seen.add(idOf(img));
    reader.close();
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      members,
    );
    assert.ok(stream.stats.peakResidentBytes <= maxResidentShards(4) * shardBytes());
  });

  it('a training stopped mid-epoch and resumed reads the same images in the same order as one that ran through', async () => {
    const tf = loadTf();
    const stream = await open();
    const run = async (stopAfter?: number, initial?: TrainPosition) => {
      const seen: number[] = [];
      const recording: ImageSource = {
        count: stream.count,
        imageSize: stream.imageSize,
        labels: stream.labels,
        epochOrder: (seed, epoch) => stream.epochOrder(seed, epoch),
        subset: (i) => stream.subset(i),
        open: (order) => {
          const r = stream.open(order);
          return {
            read: async (from, n) => {
              const images = await r.read(from, n);
              seen.push(...images.map(idOf));
              return images;
            },
            close: () => r.close(),
          };
        },
      };
      const model: LayersModel = tf.sequential({
        layers: [tf.layers.flatten({ inputShape: [size, size, 3] }), tf.layers.dense({ units: 2, activation: 'softmax' })],
      });
      let batches = 0;
      const result = await fitModel(model, createOptimizer('sgd', 1e-3), recording, {
        epochs: 2,
        batchSize: 48,
        numClasses: 2,
        seed: 9,
        ...(initial ? { initial } : {}),
        shouldStop: () => stopAfter !== undefined && ++batches >= stopAfter,
      });
      model.dispose();
      return { seen, result };
    };
    const through = await run();
    const first = await run(17);
    assert.ok(first.result.stopped);
    assert.deepEqual(first.result.position.epoch, 1, 'stopped in the second epoch');
    const rest = await run(undefined, first.result.position);
    assert.deepEqual([...first.seen, ...rest.seen], through.seen);
  });

  it('keeps reading while the main thread is held longer than the S3 idle timeout, as a training step holds it', async () => {
    // 224 px shards of 128 images (19 MB each); the fetching thread reads with a 200 ms idle timeout.
    const bucket = uniqueBucket('stream-busy');
    await s3.ensureBucket(bucket);
    const uri = await writeSyntheticShards(s3, {
      outUri: `s3://${bucket}/ds`,
      counts: { train: 1024, validation: 8, test: 8 },
      imageSize: 224,
      shardSize: 128,
      seed: 2,
      pattern: 'index',
    });
    const big = await s3.getJson<DatasetManifest>(uri);
    const saved = process.env.S3_IDLE_TIMEOUT_MS;
    process.env.S3_IDLE_TIMEOUT_MS = '200';
    let stream: ShardStream;
    try {
      // The thread takes its environment when it starts: with the first fetch.
      stream = await openShardStream(s3, big, big.splits.train);
      const order = stream.epochOrder(1, 0);
      const reader = stream.open(order);
      let done = false;
      const reading = (async () => {
        for (let from = 0; from < order.length; from += 64) await reader.read(from, 64);
      })().finally(() => (done = true));
      // Half a second at a time on the main thread, as TensorFlow's kernels hold it during a step.
      while (!done) {
        const until = Date.now() + 500;
        while (Date.now() < until) {
          /* busy */
        }
        await new Promise((r) => setImmediate(r));
      }
      await reading;
      reader.close();
      assert.equal(stream.stats.shardsFetched, 8);
    } finally {
      if (saved === undefined) delete process.env.S3_IDLE_TIMEOUT_MS;
      else process.env.S3_IDLE_TIMEOUT_MS = saved;
    }
    await stream.close();
  });

  it('refuses a shard whose bytes changed since preprocessing, naming it', async () => {
    const ref = manifest.splits.train.shards[5]!;
    const original = await s3.getBytes(ref.uri);
    const changed = original.slice();
    changed[changed.length - 1] ^= 0xff;
    await s3.put(ref.uri, changed);
    const readAll = async () => {
      const stream = await open();
      const reader = stream.open(stream.epochOrder(1, 0));
      try {
        for (let from = 0; from < stream.count; from += 64) await reader.read(from, 64);
      } finally {
        reader.close();
      }
    };
    try {
      await assert.rejects(
        readAll,
        (err: Error) => err instanceof ShardIntegrityError && err.message.includes(ref.uri) && err.message.includes('sha256'),
      );
      await s3.put(ref.uri, original.subarray(0, 100));
      await assert.rejects(readAll, (err: Error) => err instanceof ShardIntegrityError && err.message.includes(`${ref.uri} is 100 bytes`));
      // Another image size in the header is refused when the split is opened.
      const other = original.slice();
      other[8] = 9;
      await s3.put(ref.uri, other);
      await assert.rejects(open(), (err: Error) => err instanceof ShardIntegrityError && err.message.includes('9x8x3'));
    } finally {
      await s3.put(ref.uri, original);
    }
  });
});
