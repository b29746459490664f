/**
 * `npm run seed -- [--out s3://bucket/prefix] [--train-per-class N] [--test-per-class N] [--size PX] [--seed N] [--force]`
 * Writes a synthetic dataset in the layout <out>/{train,test}/{benign,malignant}/*.jpg to S3.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config';
import { seedSyntheticDataset } from '../src/data/seed';
import { withLocalStackDefaults } from '../src/stack/local-env';
import { createS3Client, S3Store } from '../src/storage/s3';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 's3://cnn-skin-cancer/data' },
      'train-per-class': { type: 'string', default: '60' },
      'test-per-class': { type: 'string', default: '15' },
      size: { type: 'string', default: '64' },
      seed: { type: 'string', default: '7' },
      force: { type: 'boolean', default: false },
    },
  });
  const int = (name: keyof typeof values): number => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${values[name]}'`);
    return n;
  };
  const s3 = new S3Store(createS3Client(loadConfig(withLocalStackDefaults(process.env, join(__dirname, '..', '..')))));
  const result = await seedSyntheticDataset(s3, {
    outUri: values.out!,
    trainPerClass: int('train-per-class'),
    testPerClass: int('test-per-class'),
    size: int('size'),
    seed: int('seed'),
    force: values.force!,
  });
  console.log(
    result.written ? `wrote ${result.written} images to ${values.out}` : `${values.out} already holds a dataset (use --force to rewrite)`,
  );
}

main().catch((err: Error) => {
  console.error(`seed: ${err.message}`);
  process.exit(1);
});
