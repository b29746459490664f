/**
 * One measurement of `npm run bench:scale`: a Basic CNN trains `steps` batches on a preprocessed
 * split in S3, either streamed from its shards (`stream`, as the product trains) or loaded whole
 * into memory first (`memory`, the path training took before streaming), and prints one JSON line:
 * images/s over the steps after the first `warmup`, the process' peak RSS, and (streaming) the most
 * shard bytes the stream held.
 * Usage: node scale-train.js <manifestUri> <stream|memory> <steps> <batchSize> [warmup]
 */
import { loadConfig } from '../src/config';
import { loadSplit } from '../src/data/dataset';
import { openShardStream } from '../src/data/shard-stream';
import type { DatasetManifest } from '../src/data/shards';
import { memorySource, type ImageSource } from '../src/ml/image-source';
import { buildModel, createOptimizer } from '../src/ml/models';
import { loadTf } from '../src/ml/tf';
import { fitModel } from '../src/ml/trainer';
import { createS3Client, S3Store } from '../src/storage/s3';

async function main(): Promise<void> {
  const [manifestUri, mode, stepsArg, batchArg, warmupArg] = process.argv.slice(2);
  const steps = Number(stepsArg);
  const batchSize = Number(batchArg);
  const warmup = Number(warmupArg ?? 2);
  if (!manifestUri || (mode !== 'stream' && mode !== 'memory') || !(steps > warmup) || !(batchSize > 0))
    throw new Error('usage: scale-train.js <manifestUri> <stream|memory> <steps> <batchSize> [warmup < steps]');
  loadTf();
  const s3 = new S3Store(createS3Client(loadConfig(process.env)));
  const manifest = await s3.getJson<DatasetManifest>(manifestUri);
  const split = manifest.splits.train;
  const stream = mode === 'stream' ? await openShardStream(s3, manifest, split) : undefined;
  const train: ImageSource = stream ?? memorySource(await loadSplit(s3, manifest, split));
  const model = buildModel('Basic', { imageSize: manifest.imageSize, numClasses: manifest.classes.length, seed: 1 });
  const optimizer = createOptimizer('adam', 1e-5);
  const ends: number[] = [];
  await fitModel(model, optimizer, train, {
    epochs: 1,
    batchSize,
    numClasses: manifest.classes.length,
    seed: 1,
    onBatchEnd: () => void ends.push(performance.now()),
    shouldStop: () => ends.length >= steps,
  });
  const timed = ends.length - 1 - warmup;
  process.stdout.write(
    JSON.stringify({
      mode,
      images: split.count,
      steps: ends.length,
      imagesPerSecond: (timed * batchSize) / ((ends.at(-1)! - ends[warmup]!) / 1000),
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      streamPeakMb: stream ? Math.round(stream.stats.peakResidentBytes / 2 ** 20) : undefined,
    }) + '\n',
  );
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  },
);
