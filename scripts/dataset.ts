/**
 * `npm run dataset -- --out <s3://bucket/prefix | ./local/dir> [options]`
 * Generates the synthetic dermoscopy dataset in the layout <out>/{train,test}/{benign,malignant}/*.jpg.
 *
 *   --size PX            image size (default 224)
 *   --seed N             generator seed (default 7)
 *   --scale X            multiplies the Kaggle split sizes (default 1: train 1440/1197, test 360/300)
 *   --train-benign N, --train-malignant N, --test-benign N, --test-malignant N   exact counts
 *   --force              rewrite even if <out>/train/ holds objects
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config';
import { scaledCounts, writeSyntheticDataset } from '../src/data/generate';
import { withLocalStackDefaults } from '../src/stack/local-env';
import { RoutingStore } from '../src/storage/object-store';
import { createS3Client, parseS3Uri, S3Store } from '../src/storage/s3';
import { Progress } from './progress';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      size: { type: 'string', default: '224' },
      seed: { type: 'string', default: '7' },
      scale: { type: 'string', default: '1' },
      'train-benign': { type: 'string' },
      'train-malignant': { type: 'string' },
      'test-benign': { type: 'string' },
      'test-malignant': { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  if (!values.out) throw new Error('--out is required: an S3 prefix (s3://bucket/data) or a local folder');
  const number = (name: string, raw: string | undefined, min: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got '${raw}'`);
    return n;
  };
  const int = (name: string, raw: string | undefined, min: number): number => {
    const n = number(name, raw, min);
    if (!Number.isInteger(n)) throw new Error(`--${name} must be an integer, got '${raw}'`);
    return n;
  };
  const counts = scaledCounts(number('scale', values.scale, 0.0001));
  for (const split of ['train', 'test'] as const) {
    for (const kind of ['benign', 'malignant'] as const) {
      const raw = values[`${split}-${kind}`];
      if (raw !== undefined) counts[split][kind] = int(`${split}-${kind}`, raw, 1);
    }
  }
  const outUri = values.out.startsWith('s3://') ? values.out : pathToFileURL(resolve(values.out)).href;
  const s3 = new S3Store(createS3Client(loadConfig(withLocalStackDefaults(process.env, resolve(__dirname, '..', '..')))));
  if (outUri.startsWith('s3://')) await s3.ensureBucket(parseS3Uri(outUri).bucket);
  const started = Date.now();
  const progress = new Progress('dataset');
  const { written } = await writeSyntheticDataset(new RoutingStore(s3), {
    outUri,
    counts,
    size: int('size', values.size, 8),
    seed: int('seed', values.seed, 0),
    force: values.force,
    onProgress: (done, total) => progress.update([{ fraction: done / total, text: `${done}/${total} images` }]),
  }).finally(() => progress.end());
  console.log(
    written
      ? `wrote ${written} images (${JSON.stringify(counts)}) to ${outUri} in ${((Date.now() - started) / 1000).toFixed(1)} s`
      : `${outUri} already holds a dataset (use --force to rewrite)`,
  );
}

main().catch((err: Error) => {
  console.error(`dataset: ${err.message}`);
  process.exit(1);
});
