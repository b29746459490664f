import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Info } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createDataWatchActivities } from '../../src/activities/data-watch';
import { createDataActivities } from '../../src/activities/preprocess';
import type { PreprocessInput } from '../../src/common/types';
import { loadSplit } from '../../src/data/dataset';
import { writeSyntheticDataset } from '../../src/data/generate';
import { preprocess, type PreprocessProgress } from '../../src/data/preprocess';
import { ShardPool } from '../../src/data/shard-pool';
import { decodeShard, type DatasetManifest } from '../../src/data/shards';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
import { loadTf } from '../../src/ml/tf';
import { LocalStore, type ObjectStore } from '../../src/storage/object-store';
import { blackPng } from '../helpers/images';
import { runActivity, runTags, seededDataset, testMlflow, testS3, uniqueBucket } from '../helpers/services';
import { useTestStack } from '../helpers/global';

useTestStack();

describe('preprocessDataset activity (S3 on SeaweedFS, real MLflow)', () => {
  const s3 = testS3();
  const mlflow = testMlflow();
  const activities = createDataActivities({ store: s3, mlflow, shardSize: 16 });
  const run = (input: PreprocessInput, info?: Partial<Info>) => runActivity(activities.preprocessDataset, [input], info);
  const input = (dataUri: string, over: Partial<PreprocessInput> = {}): PreprocessInput => ({
    dataUri,
    imageSize: 24,
    numClasses: 2,
    validationSplit: 0.25,
    seed: 1,
    maxSkippedFraction: 0.05,
    ...over,
  });
  const preprocessingRuns = async (experimentName: string) => {
    const runs = await mlflow.searchRuns(await mlflow.getOrCreateExperiment(experimentName), "attributes.run_name = 'Preprocessing'");
    return Promise.all(runs.map((r) => mlflow.getRun(r.run_id)));
  };
  const params = (r: { data: { params?: { key: string; value: string }[] } }): Record<string, string> =>
    Object.fromEntries((r.data.params ?? []).map((p) => [p.key, p.value]));

  it('logs one Preprocessing run per activity however often it is retried, within MLflow limits for any class names', async () => {
    // 40 classes whose folder names MLflow would refuse as keys: 120 size params, more than one call takes.
    const bucket = uniqueBucket('many-classes');
    await s3.ensureBucket(bucket);
    const classes = Array.from({ length: 40 }, (_, i) => `lesion #${i} (α)`);
    const jpeg = await encodeJpeg(syntheticLesion('benign', 16, 1), 16);
    for (const c of classes) {
      for (let i = 0; i < 5; i++) await s3.put(`s3://${bucket}/data/train/${c}/${i}.jpg`, jpeg, 'image/jpeg');
      await s3.put(`s3://${bucket}/data/test/${c}/0.jpg`, jpeg, 'image/jpeg');
    }
    const info = { activityId: 'prep-retried' };
    const many = input(`s3://${bucket}/data`, { numClasses: 40, imageSize: 8, validationSplit: 0.2, experimentName: 'prep-many' });
    await run(many, info);
    await run(many, { ...info, attempt: 2 });
    const logged = await preprocessingRuns('prep-many');
    assert.equal(logged.length, 1, 'the retry found the run instead of starting another');
    assert.equal(logged[0]!.info.status, 'FINISHED');
    const keys = Object.keys(params(logged[0]!));
    assert.equal(keys.filter((k) => /_size_/.test(k)).length, 120);
    assert.ok(
      keys.every((k) => /^[\w\-. /]+$/.test(k)),
      `keys MLflow accepts: ${keys.slice(0, 3).join(', ')}`,
    );
    assert.ok(keys.includes('train_size_lesion _0 ___'));
  });

  it('skips and lists a decompression bomb instead of decoding it (a 150 KB PNG of 8000x6000 pixels)', async () => {
    const bucket = uniqueBucket('bomb');
    await s3.ensureBucket(bucket);
    const jpeg = await encodeJpeg(syntheticLesion('benign', 16, 1), 16);
    for (const c of ['benign', 'malignant']) {
      for (let i = 0; i < 6; i++) await s3.put(`s3://${bucket}/data/train/${c}/${i}.jpg`, jpeg, 'image/jpeg');
      await s3.put(`s3://${bucket}/data/test/${c}/0.jpg`, jpeg, 'image/jpeg');
    }
    await s3.put(`s3://${bucket}/data/train/benign/bomb.png`, blackPng(8000, 6000), 'image/png');
    const prepared = await run(input(`s3://${bucket}/data`, { imageSize: 8, maxSkippedFraction: 0.2 }));
    assert.deepEqual(prepared.skipped, { count: 1, keys: ['data/train/benign/bomb.png'] });
    assert.equal(prepared.splits.train.count + prepared.splits.validation.count, 12);
  });

  it('writes stratified, shuffled uint8 shards with correct labels; logs a Preprocessing run; hits its cache the second time', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 20, testPerClass: 6, size: 40 });
    const prepared = await run(input(dataUri, { experimentName: 'prep-test' }));
    assert.deepEqual(prepared.classes, ['benign', 'malignant']);
    assert.deepEqual(prepared.splits.validation.perClass, { benign: 5, malignant: 5 });
    assert.deepEqual(prepared.splits.train.perClass, { benign: 15, malignant: 15 });
    assert.deepEqual(prepared.splits.test.perClass, { benign: 6, malignant: 6 });
    assert.equal(prepared.cacheHit, false);
    assert.deepEqual(prepared.skipped, { count: 0, keys: [] });

    const manifest = await s3.getJson<DatasetManifest>(prepared.manifestUri);
    assert.deepEqual(manifest.labelMap, { benign: 0, malignant: 1 });
    assert.equal(manifest.contentHash, prepared.contentHash);
    assert.deepEqual(
      manifest.splits.train.shards.map((s) => s.count),
      [16, 14],
      'shards are bounded by shardSize',
    );
    const first = decodeShard(await s3.getBytes(manifest.splits.train.shards[0]!.uri));
    assert.ok(first.labels.includes(0) && first.labels.includes(1), 'every shard mixes the classes');
    const train = await loadSplit(s3, manifest, manifest.splits.train);
    assert.equal(train.pixels.length, 30 * 24 * 24 * 3);
    // Labels follow the folders: 15 of each, never collapsed to one class.
    assert.equal(train.labels.filter((l) => l === 1).length, 15);
    assert.equal(train.labels.filter((l) => l === 0).length, 15);

    // Another pipeline run's activity over the same data.
    const again = await run(input(dataUri, { experimentName: 'prep-test' }), { activityId: 'another-run' });
    assert.equal(again.cacheHit, true);
    assert.equal(again.manifestUri, prepared.manifestUri);
    assert.equal((await s3.getJson<DatasetManifest>(again.manifestUri)).createdAt, manifest.createdAt, 'a cache hit rewrites nothing');

    const logged = await preprocessingRuns('prep-test');
    assert.deepEqual(logged.map((r) => runTags(r).cache_hit).sort(), ['false', 'true']);
    const runs = logged.map(params);
    const p = runs[0]!;
    assert.equal(p.train_size_benign, '15');
    assert.equal(p.validation_size_malignant, '5');
    assert.equal(p.test_size_benign, '6');
    assert.equal(p.image_shape, '24x24x3');
    assert.equal(p.label_map, '{"benign":0,"malignant":1}');
    assert.equal(p.content_hash, prepared.contentHash);

    const other = await run(input(dataUri, { imageSize: 16 }));
    assert.notEqual(other.manifestUri, prepared.manifestUri, 'other parameters, another output');
  });

  it('splits deterministically: same seed same content, another seed another split', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 12, testPerClass: 3, size: 16 });
    const bucket = dataUri.split('/')[2];
    const a = await run(input(dataUri, { outputUri: `s3://${bucket}/out-a` }));
    const b = await run(input(dataUri, { outputUri: `s3://${bucket}/out-b` }));
    const c = await run(input(dataUri, { outputUri: `s3://${bucket}/out-c`, seed: 2 }));
    assert.equal(a.cacheHit || b.cacheHit, false);
    assert.equal(a.contentHash, b.contentHash);
    assert.notEqual(a.contentHash, c.contentHash);
    assert.deepEqual(c.splits.validation.perClass, a.splits.validation.perClass, 'stratified whatever the seed');
  });

  const png = async (channels: 1 | 3 | 4, size: number): Promise<Uint8Array> => {
    const tf = loadTf();
    const t = tf.tidy(() => tf.randomUniform([size, size, channels], 0, 255, 'int32')) as import('@tensorflow/tfjs-node').Tensor3D;
    return tf.node.encodePng(t).finally(() => t.dispose());
  };

  it('decodes JPEG and PNG of any size, grayscale and RGBA to RGB; skips and lists undecodable files', async () => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    const d = `s3://${bucket}/d`;
    const jpeg = (kind: 'benign' | 'malignant', size: number, seed: number) => encodeJpeg(syntheticLesion(kind, size, seed), size);
    await writeSyntheticDataset(s3, {
      outUri: d,
      counts: { train: { benign: 10, malignant: 10 }, test: { benign: 3, malignant: 3 } },
      size: 32,
      seed: 9,
    });
    await s3.put(`${d}/train/benign/gray.png`, await png(1, 50));
    await s3.put(`${d}/train/malignant/rgba.png`, await png(4, 17));
    await s3.put(`${d}/train/malignant/big.jpg`, await jpeg('malignant', 300, 1));
    await s3.put(`${d}/train/benign/notes.txt`, 'not an image');
    await s3.put(`${d}/test/malignant/broken.jpg`, (await jpeg('malignant', 32, 2)).subarray(0, 40));
    await s3.put(`${d}/train/README`, 'stray file outside any class folder');

    const prepared = await run(input(d, { maxSkippedFraction: 0.2, experimentName: 'prep-bad-data' }));
    assert.equal(prepared.splits.train.count + prepared.splits.validation.count, 23);
    assert.equal(prepared.skipped.count, 3);
    assert.deepEqual([...prepared.skipped.keys].sort(), ['d/test/malignant/broken.jpg', 'd/train/README', 'd/train/benign/notes.txt']);
    const [logged] = await preprocessingRuns('prep-bad-data');
    assert.equal(params(logged!).skipped_count, '3');
    // The endpoint's watch for new images counts what a preprocessing reads, skipped files included.
    const { splits, skipped } = prepared;
    const read = splits.train.count + splits.validation.count + splits.test.count + skipped.count;
    assert.equal(read, 32);
    assert.equal(await runActivity(createDataWatchActivities({ store: s3 }).countDatasetImages, [{ dataUri: d, numClasses: 2 }]), read);

    // The same data with a tighter limit fails non-retryably, naming the count and the files.
    await rejectsWith(
      run(input(d, { maxSkippedFraction: 0.05 })),
      /3 of 32 files under s3:\/\/.*\/d\/ are not decodable images \(limit 5\.0 %\): .*notes\.txt/,
    );
  });

  const rejectsWith = async (promise: Promise<unknown>, pattern: RegExp): Promise<void> => {
    await assert.rejects(promise, (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure, `expected ApplicationFailure, got ${String(err)}`);
      assert.equal(err.type, 'InvalidDatasetError');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, pattern);
      return true;
    });
  };

  const bucketWith = async (keys: string[]): Promise<string> => {
    const bucket = uniqueBucket();
    await s3.ensureBucket(bucket);
    const image = await encodeJpeg(syntheticLesion('benign', 16, 1), 16);
    for (const key of keys) await s3.put(`s3://${bucket}/d/${key}`, image, 'image/jpeg');
    return `s3://${bucket}/d`;
  };

  it('fails non-retryably on an empty prefix, naming it', async () => {
    const d = await bucketWith([]);
    await rejectsWith(run(input(d)), new RegExp(`no objects under ${d}/`));
  });

  it('fails non-retryably when the test split is missing', async () => {
    const d = await bucketWith(['train/benign/a.jpg', 'train/malignant/a.jpg']);
    await rejectsWith(run(input(d)), new RegExp(`no class folders under ${d}/test/`));
  });

  it('fails non-retryably with fewer than two classes', async () => {
    const d = await bucketWith(['train/benign/a.jpg', 'test/benign/a.jpg']);
    await rejectsWith(run(input(d)), /train\/ has 1 class folder\(s\) \(benign\); at least two/);
  });

  it('fails non-retryably when a class has no test images', async () => {
    const d = await bucketWith(['train/benign/a.jpg', 'train/malignant/a.jpg', 'train/malignant/b.jpg', 'test/benign/a.jpg']);
    await rejectsWith(run(input(d)), /d\/test\/malignant\/ is empty or missing/);
  });

  it('fails non-retryably when test has a class that train lacks', async () => {
    const d = await bucketWith([
      'train/benign/a.jpg',
      'train/malignant/a.jpg',
      'test/benign/a.jpg',
      'test/malignant/a.jpg',
      'test/other/a.jpg',
    ]);
    await rejectsWith(run(input(d)), /test\/ has class folder\(s\) that train\/ lacks: other/);
  });

  it('resumes after a killed attempt without redoing complete shards, and never takes a partial output for a cache hit', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 24, testPerClass: 4, size: 16 });
    const params = { ...input(dataUri), imageSize: 16 };
    const recording = (log: string[], crashAtRecord?: number): ObjectStore =>
      Object.assign(Object.create(s3) as ObjectStore, {
        put: async (uri: string, body: Uint8Array | string, type?: string) => {
          const name = uri.split('/').slice(-2).join('/');
          // Dies as the given shard record is about to be written: its shard is written, unrecorded.
          if (name.endsWith('.json') && log.filter((n) => n.endsWith('.json')).length + 1 === crashAtRecord)
            throw new Error('worker killed');
          log.push(name);
          return s3.put(uri, body, type);
        },
      });
    const first: string[] = [];
    await assert.rejects(preprocess(params, { store: recording(first, 2), shardSize: 8 }), /worker killed/);
    // Shards that were in flight when it died may still have landed: let them settle.
    await new Promise((r) => setTimeout(r, 500));
    const completed = first.filter((n) => n.endsWith('.json'));
    assert.ok(completed.length >= 1);

    const second: string[] = [];
    const outcome = await preprocess(params, { store: recording(second), shardSize: 8 });
    assert.equal(outcome.cacheHit, false, 'the crashed attempt left no manifest');
    for (const record of completed) assert.ok(!second.includes(record), `the complete shard (${record}) is reused, not rebuilt`);
    // 8 shards in all (train 5, validation 2, test 1): each recorded exactly once over both attempts.
    const recorded = second.filter((n) => /shard-\d+\.json$/.test(n));
    assert.equal(recorded.length + completed.length, 8, `first: ${completed.join(' ')}; second: ${recorded.join(' ')}`);
    assert.equal(second.at(-1), outcome.manifestUri.split('/').slice(-2).join('/'), 'the manifest is written last');

    // The resumed output equals a clean run's.
    const clean = await preprocess({ ...params, outputUri: `s3://${dataUri.split('/')[2]}/clean` }, { store: s3, shardSize: 8 });
    assert.equal(outcome.manifest.contentHash, clean.manifest.contentHash);
    const shardsOf = (m: DatasetManifest) => m.splits.train.shards.map((x) => x.count);
    assert.deepEqual(shardsOf(outcome.manifest), shardsOf(clean.manifest));
  });

  it('honours cancellation: stops starting shards, fails as cancelled, and a later attempt completes the dataset', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 24, testPerClass: 4, size: 16 });
    const activities = createDataActivities({ store: s3, shardSize: 4 });
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
    let cancelled = false;
    env.on('heartbeat', () => {
      if (cancelled) return;
      cancelled = true;
      env.cancel('CANCELLED');
    });
    await assert.rejects(env.run(activities.preprocessDataset, input(dataUri)), (err: unknown) => err instanceof CancelledFailure);
    // 14 shards in all (train 9, validation 3, test 2): the pool's builders (and one more) were busy at most.
    const recorded = async () =>
      (await s3.list(`s3://${dataUri.split('/')[2]}/preprocessed/`)).filter((o) => /shard-\d+\.json$/.test(o.key));
    await new Promise((r) => setTimeout(r, 500));
    const before = (await recorded()).length;
    assert.ok(before >= 1 && before < 14, `${before} of 14 shards recorded when it stopped`);
    const resumed = await runActivity(activities.preprocessDataset, [input(dataUri)]);
    assert.equal(resumed.cacheHit, false);
    assert.equal((await recorded()).length, 14);
  });

  it('reads a local folder too (file:// URIs)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'prep-'));
    const store = new LocalStore();
    const dataUri = pathToFileURL(join(dir, 'data')).href;
    await writeSyntheticDataset(store, {
      outUri: dataUri,
      counts: { train: { benign: 5, malignant: 5 }, test: { benign: 2, malignant: 2 } },
      size: 20,
      seed: 1,
    });
    const { manifest, manifestUri } = await preprocess({ ...input(dataUri), imageSize: 12 }, { store });
    assert.ok(manifestUri.startsWith(pathToFileURL(join(dir, 'preprocessed')).href));
    assert.equal(manifest.splits.test.count, 4);
  });
});

describe('preprocessDataset on a pool it shares (S3 on moto)', function () {
  this.timeout(120_000);
  const s3 = testS3();
  const input = (dataUri: string): PreprocessInput => ({
    dataUri,
    imageSize: 16,
    numClasses: 2,
    validationSplit: 0.25,
    seed: 1,
    maxSkippedFraction: 0.05,
  });

  it('heartbeats while it waits for a builder that another caller holds, and not while its own builds run', async () => {
    const dataUri = await seededDataset(s3, { trainPerClass: 20, testPerClass: 6, size: 32 });
    const pool = new ShardPool(1, { waitBeatMs: 10 });
    // Another caller's build that holds the only builder until this test writes to the FIFO it reads.
    const dir = mkdtempSync(join(tmpdir(), 'pool-wait-'));
    const fifo = join(dir, 'blocking.jpg');
    execFileSync('mkfifo', [fifo]);
    let released: Promise<void> | undefined;
    const release = () => (released ??= writeFile(fifo, 'not an image'));
    try {
      await pool.ready();
      const blocker = pool.build({
        images: [pathToFileURL(fifo).href],
        labels: [0],
        size: 16,
        shardUri: pathToFileURL(join(dir, 'blocker.bin')).href,
        concurrency: 1,
      });
      const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
      const beats: (PreprocessProgress & { waitingForBuilder?: boolean })[] = [];
      env.on('heartbeat', (d: PreprocessProgress) => beats.push({ ...d }));
      const activities = createDataActivities({ store: s3, pool, shardSize: 16 });
      const running = env.run(activities.preprocessDataset, input(dataUri)) as ReturnType<typeof activities.preprocessDataset>;

      for (let i = 0; i < 1000 && beats.length < 5; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(beats.length >= 5, `${beats.length} heartbeats while queued behind a busy pool`);
      // 52 images in 4 shards, none started.
      assert.deepEqual(beats[0], { done: 0, total: 52, shardsReused: 0, waitingForBuilder: true });
      assert.ok(beats.every((b) => b.waitingForBuilder && b.done === 0));

      await release();
      assert.deepEqual((await blocker).ok, [false]);
      // From here on one of its own builds holds the builder until it is done: it heartbeats progress only.
      const fromRelease = beats.length;
      const prepared = await running;
      assert.equal(prepared.splits.train.count + prepared.splits.validation.count, 40);
      const after = beats.slice(fromRelease);
      assert.deepEqual(
        after.filter((b) => b.waitingForBuilder),
        [],
        'no waiting heartbeat while its own build runs',
      );
      // One progress beat per shard (16 + 14 train, 10 validation, 12 test), in whichever order its
      // two waiting jobs got the builder.
      const done = after.map((b) => b.done);
      assert.deepEqual(
        done.map((d, i) => d - (done[i - 1] ?? 0)).sort((a, b) => a - b),
        [10, 12, 14, 16],
        `progress ${done}`,
      );
    } finally {
      void release();
      await pool.close();
    }
  });

  it('fails, naming the image and its size, when an image is over S3_MAX_OBJECT_MB', async () => {
    const bucket = uniqueBucket('huge-image');
    await s3.ensureBucket(bucket);
    const jpeg = await encodeJpeg(syntheticLesion('benign', 16, 1), 16);
    for (const c of ['benign', 'malignant']) {
      for (let i = 0; i < 4; i++) await s3.put(`s3://${bucket}/d/train/${c}/${i}.jpg`, jpeg, 'image/jpeg');
      await s3.put(`s3://${bucket}/d/test/${c}/0.jpg`, jpeg, 'image/jpeg');
    }
    await s3.put(`s3://${bucket}/d/train/benign/huge.jpg`, new Uint8Array(2 * 2 ** 20), 'image/jpeg');
    // The builders read S3 through stores built from the environment they were started with.
    const before = process.env.S3_MAX_OBJECT_MB;
    process.env.S3_MAX_OBJECT_MB = '1';
    const pool = new ShardPool(1);
    if (before === undefined) delete process.env.S3_MAX_OBJECT_MB;
    else process.env.S3_MAX_OBJECT_MB = before;
    try {
      await assert.rejects(
        preprocess(input(`s3://${bucket}/d`), { store: s3, pool }),
        /s3:\/\/huge-image-\w+\/d\/train\/benign\/huge\.jpg is 2\.0 MB, over the 1\.0 MB an S3 read accepts: raise S3_MAX_OBJECT_MB/,
      );
    } finally {
      await pool.close();
    }
  });
});
