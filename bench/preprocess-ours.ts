/**
 * One measured run of this project's preprocessing on a local folder, in a process of its own so
 * that its peak RSS is its own. usage: node preprocess-ours.js DATA_URI OUTPUT_URI SIZE
 * prints one JSON line: {"images": N, "seconds": S, "maxRssMb": M}
 */
import { preprocess } from '../src/data/preprocess';
import { ShardPool } from '../src/data/shard-pool';
import { LocalStore } from '../src/storage/object-store';

async function main(): Promise<void> {
  const [dataUri, outputUri, size] = process.argv.slice(2);
  // Start-up (loading TensorFlow in each decoding thread) is not timed, as the Python loop's imports
  // are not: a data worker pays it once, not per dataset.
  const pool = new ShardPool();
  await pool.ready();
  const started = process.hrtime.bigint();
  const { manifest } = await preprocess(
    { dataUri: dataUri!, outputUri, imageSize: Number(size), numClasses: 2, validationSplit: 0.2, seed: 42, maxSkippedFraction: 0 },
    { store: new LocalStore(), pool },
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // Decoding runs in child processes: the peak is this process's plus each child's (an upper bound).
  const children = await pool.childPeakRssMb();
  await pool.close();
  const images = manifest.splits.train.count + manifest.splits.validation.count + manifest.splits.test.count;
  console.log(JSON.stringify({ images, seconds, maxRssMb: process.resourceUsage().maxRSS / 1024 + children.reduce((a, b) => a + b, 0) }));
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
