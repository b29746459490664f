/**
 * `npm run bench:scale`: what training costs as the dataset grows. Synthetic preprocessed datasets
 * of 5,000, 20,000 and 60,000 images at 224 px (80 % train, 10 % validation, 10 % test; generated
 * once into the bench's own on-disk S3 and kept there) each feed a training process (Basic CNN,
 * batch 64 as in the original pipeline) for the same number of steps, streamed from their shards.
 * At 5,000 images the in-memory path (the whole split loaded first) runs too, alternating with
 * streaming, `--rounds` times each (best round counting). The last line is one JSON object:
 * `peakRssMb` and `imagesPerSecond` per size, `rssGrowth` (largest / smallest peak RSS) and
 * `ratioToInMemory` (streaming / in-memory images/s at 5,000). Goals: rssGrowth <= 1.1,
 * ratioToInMemory >= 0.95. `--quick`: 600 and 2,400 images at 32 px, a few steps, one round.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeSyntheticShards } from '../src/data/synthetic-shards';
import { stackDown, stackUp } from '../src/stack/services';
import { createS3Client, S3Store } from '../src/storage/s3';
import { loadConfig } from '../src/config';
import { privateStack } from './private-stack';

interface Measure {
  mode: 'stream' | 'memory';
  images: number;
  steps: number;
  imagesPerSecond: number;
  peakRssMb: number;
  streamPeakMb?: number;
}

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, rounds: { type: 'string', default: '2' } },
});
const quick = args.quick!;
const SIZES = quick ? [600, 2400] : [5000, 20000, 60000];
const IMAGE_SIZE = quick ? 32 : 224;
const BATCH = 64;
const STEPS = quick ? 6 : 40;
const WARMUP = 2;
const ROUNDS = quick ? 1 : Number(args.rounds);
const BUCKET = 'bench-scale';

const { stack, env } = privateStack(
  'bench-scale',
  { temporal: 0, temporalUi: 0, mlflow: 0, moto: 0, s3: 8393 },
  // No endpoint is deployed; the variable must still name a port.
  8199,
);
stack.services = ['s3'];
const say = (line: string): void => void process.stderr.write(`[bench:scale] ${line}\n`);

async function dataset(s3: S3Store, images: number): Promise<string> {
  const outUri = `s3://${BUCKET}/synthetic-${images}-${IMAGE_SIZE}px`;
  const manifestUri = `${outUri}/manifest.json`;
  if (await s3.exists(manifestUri)) return manifestUri;
  const counts = { train: Math.round(images * 0.8), validation: Math.round(images * 0.1), test: 0 };
  counts.test = images - counts.train - counts.validation;
  say(`generating ${images} images at ${IMAGE_SIZE} px into ${outUri} (once; kept in ${stack.dir})`);
  let last = 0;
  await writeSyntheticShards(s3, {
    outUri,
    counts,
    imageSize: IMAGE_SIZE,
    shardSize: 256,
    seed: 5,
    onShard: (done, total) => {
      if (done === total || Date.now() - last > 10_000) [last] = [Date.now(), say(`  ${done}/${total} shards`)];
    },
  });
  return manifestUri;
}

function measure(manifestUri: string, mode: Measure['mode']): Measure {
  // A process of its own per measurement: its peak RSS is this measurement's alone. A failing
  // child throws here with its exit status, and its stderr is on ours.
  const stdout = execFileSync(
    process.execPath,
    [join(__dirname, 'scale-train.js'), manifestUri, mode, String(STEPS), String(BATCH), String(WARMUP)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      // oneDNN's kernels, as the training worker's processes have them (TRAINING_ONEDNN, on by default).
      env: { ...env, TF_CPP_MIN_LOG_LEVEL: '2', TF_ENABLE_ONEDNN_OPTS: '1' },
    },
  );
  const m = JSON.parse(stdout.trim().split('\n').at(-1)!) as Measure;
  say(
    `${mode} ${m.images} training images: ${m.imagesPerSecond.toFixed(1)} images/s, peak RSS ${m.peakRssMb} MB${m.streamPeakMb !== undefined ? `, shards held at most ${m.streamPeakMb} MB` : ''}`,
  );
  return m;
}

async function main(): Promise<void> {
  await stackUp(stack, say);
  try {
    const s3 = new S3Store(createS3Client(loadConfig(env)));
    await s3.ensureBucket(BUCKET);
    const manifests = new Map<number, string>();
    for (const n of SIZES) manifests.set(n, await dataset(s3, n));
    const smallest = manifests.get(SIZES[0]!)!;
    const streamed: Measure[] = [];
    const inMemory: Measure[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      streamed.push(measure(smallest, 'stream'));
      inMemory.push(measure(smallest, 'memory'));
    }
    const best = (ms: Measure[]) => ms.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
    const perSize = new Map<number, Measure>([[SIZES[0]!, best(streamed)]]);
    for (const n of SIZES.slice(1)) perSize.set(n, measure(manifests.get(n)!, 'stream'));
    const peaks = [...perSize.values()].map((m) => m.peakRssMb);
    const round3 = (x: number) => Math.round(x * 1000) / 1000;
    process.stdout.write(
      JSON.stringify({
        imageSize: IMAGE_SIZE,
        batchSize: BATCH,
        steps: STEPS,
        peakRssMb: Object.fromEntries([...perSize].map(([n, m]) => [n, m.peakRssMb])),
        imagesPerSecond: Object.fromEntries([...perSize].map(([n, m]) => [n, Math.round(m.imagesPerSecond * 10) / 10])),
        streamPeakMb: Object.fromEntries([...perSize].map(([n, m]) => [n, m.streamPeakMb])),
        inMemory: {
          images: SIZES[0],
          peakRssMb: best(inMemory).peakRssMb,
          imagesPerSecond: Math.round(best(inMemory).imagesPerSecond * 10) / 10,
        },
        rssGrowth: round3(Math.max(...peaks) / Math.min(...peaks)),
        ratioToInMemory: round3(best(streamed).imagesPerSecond / best(inMemory).imagesPerSecond),
      }) + '\n',
    );
  } finally {
    await stackDown(stack, say);
  }
}

main().catch((err: Error) => {
  console.error(`[bench:scale] ${err.message}`);
  process.exit(1);
});
