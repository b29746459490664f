/**
 * `npm run bench:preprocess`: this project's preprocessing against two anchors, side by side on
 * the same generated images (Kaggle split sizes at 224 px, then 4x as many), each run in a process
 * of its own: the original pipeline's Python loop, and the tf.data input pipeline a Keras user
 * writes (bench/tfdata_preprocess.py, in .venv-bench). Ours and tf.data run alternately,
 * `--rounds` times each at 1x (default 5) and at most twice at 4x, best round counting. Prints images/s, ratios and peak RSS; the last line
 * is one JSON object with `ratio` (ours / the original's images/s at 1x), `ratioTfData` (ours /
 * tf.data's at 1x), `ratioTfData4x`, `rssGrowth` (our peak RSS at 4x / at 1x) and our per-stage
 * profile (bench/preprocess-profile.ts). A side that exits with an error ends the benchmark, naming it.
 *
 *   node dist/bench/preprocess.js [--rounds 5] [--quick]
 *
 * --quick: 1x and 4x are 5 % of those sizes (same 224 px), one round each.
 */
import { execFileSync } from 'node:child_process';
import { freemem, totalmem } from 'node:os';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { scaledCounts, writeSyntheticDataset } from '../src/data/generate';
import { LocalStore } from '../src/storage/object-store';
import { lastJsonLine } from './json-line';

const ROOT = resolve(__dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out');
const SIZE = 224;

interface Measure {
  images: number;
  seconds: number;
  maxRssMb: number;
}

/** `scale` times the Kaggle split sizes, generated once under bench/out as `<name>`. */
async function dataset(name: string, scale: number): Promise<string> {
  const dir = join(OUT, name);
  const uri = pathToFileURL(dir).href;
  if (!existsSync(join(dir, '.complete'))) {
    process.stderr.write(`generating the dataset ${name} in ${dir}\n`);
    await writeSyntheticDataset(new LocalStore(), { outUri: uri, counts: scaledCounts(scale), size: SIZE, seed: 2024, force: true });
    await new LocalStore().put(pathToFileURL(join(dir, '.complete')).href, '');
  }
  return dir;
}

/** Runs one side in a process of its own, writing to `out` (removed after); its last stdout line is its Measure. */
function measureIn(side: string, out: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Measure {
  try {
    return lastJsonLine<Measure>(side, command, [...args, String(SIZE)], env);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function ours(dir: string): Measure {
  const out = mkdtempSync(join(OUT, 'ours-'));
  const args = [join(__dirname, 'preprocess-ours.js'), pathToFileURL(dir).href, pathToFileURL(out).href];
  // TensorFlow's start-up notices from each decoding process, as the tf.data side silences its own.
  return measureIn('our preprocessing', out, process.execPath, args, { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' });
}

function tfData(dir: string): Measure {
  const out = mkdtempSync(join(OUT, 'tfdata-'));
  return measureIn('the tf.data reference', out, join(ROOT, '.venv-bench', 'bin', 'python'), [
    join(ROOT, 'bench', 'tfdata_preprocess.py'),
    dir,
    out,
  ]);
}

function original(dir: string): Measure {
  const out = join(OUT, 'original.pkl');
  return measureIn("the original pipeline's loop", out, join(ROOT, '.venv', 'bin', 'python'), [
    join(ROOT, 'bench', 'original_preprocess.py'),
    dir,
    out,
  ]);
}

/** The original pipeline's loop holds uint8 + float64 copies and pickles them: about 17 bytes per pixel value. */
function originalFits(images: number): boolean {
  const need = images * SIZE * SIZE * 3 * 17;
  return need < 0.7 * Math.min(freemem(), totalmem());
}

const rate = (m: Measure): number => m.images / m.seconds;
const fmt = (m: Measure | undefined): string =>
  m
    ? `${rate(m).toFixed(0).padStart(6)} img/s  ${m.maxRssMb.toFixed(0).padStart(6)} MB peak RSS  (${m.images} images in ${m.seconds.toFixed(1)} s)`
    : 'not run';

const best = (ms: Measure[]): Measure => ms.reduce((a, b) => (rate(b) > rate(a) ? b : a));

async function main(): Promise<void> {
  // A 1x pass takes about two seconds, so other work on the machine moves single rounds a lot.
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, quick: { type: 'boolean', default: false } } });
  const quick = values.quick;
  const rounds = quick ? 1 : Number(values.rounds);
  execFileSync('bash', [join(ROOT, 'scripts', 'bench-env.sh')], { stdio: 'inherit' });
  const base = quick ? 0.05 : 1;
  const one = await dataset(quick ? 'data-quick-1x' : 'data-1x', base);
  const four = await dataset(quick ? 'data-quick-4x' : 'data-4x', 4 * base);
  const results: Record<string, { ours: Measure; tfData: Measure; original?: Measure; originalNote?: string }> = {};
  for (const [label, dir] of [
    ['1x', one],
    ['4x', four],
  ] as const) {
    // Alternating, so a slow spell on the machine hits both sides.
    const oursRounds: Measure[] = [];
    const tfRounds: Measure[] = [];
    for (let r = 0; r < (label === '1x' ? rounds : Math.min(rounds, 2)); r++) {
      oursRounds.push(ours(dir));
      tfRounds.push(tfData(dir));
      console.log(
        `${label}  round ${r + 1}: ours ${rate(oursRounds.at(-1)!).toFixed(0)} img/s, tf.data ${rate(tfRounds.at(-1)!).toFixed(0)} img/s`,
      );
    }
    const o = best(oursRounds);
    const t = best(tfRounds);
    const images = o.images;
    let s: Measure | undefined;
    let note: string | undefined;
    if (originalFits(images)) s = original(dir);
    else
      note = `not run: the original pipeline's loop would need about ${((images * SIZE * SIZE * 3 * 17) / 2 ** 30).toFixed(0)} GiB of memory for ${images} images`;
    results[label] = { ours: o, tfData: t, original: s, originalNote: note };
    console.log(`${label}  ours: ${fmt(o)}`);
    console.log(`${label}  tf.data: ${fmt(t)}`);
    console.log(`${label}  ratio (ours / tf.data images/s): ${(rate(o) / rate(t)).toFixed(2)}`);
    console.log(`${label}  original: ${s ? fmt(s) : note}`);
    if (s) console.log(`${label}  ratio (ours / original images/s): ${(rate(o) / rate(s)).toFixed(2)}`);
  }
  // Where our time goes, stage by stage, in one process over the 1x files.
  console.log('our stages, one process, 1x:');
  const profile = lastJsonLine<{ msPerImage: number; stages: Record<string, { msPerImage: number; share: number }> }>(
    'the stage profile',
    process.execPath,
    [join(__dirname, 'preprocess-profile.js'), one, String(SIZE)],
  );
  const ratio = rate(results['1x']!.ours) / rate(results['1x']!.original!);
  const rssGrowth = results['4x']!.ours.maxRssMb / results['1x']!.ours.maxRssMb;
  console.log(`our peak RSS growth from 1x to 4x: ${rssGrowth.toFixed(2)}x`);
  console.log(
    JSON.stringify({
      ratio: Number(ratio.toFixed(3)),
      ratioTfData: Number((rate(results['1x']!.ours) / rate(results['1x']!.tfData)).toFixed(3)),
      ratioTfData4x: Number((rate(results['4x']!.ours) / rate(results['4x']!.tfData)).toFixed(3)),
      tfDataImagesPerSec1x: Number(rate(results['1x']!.tfData).toFixed(1)),
      tfDataPeakRssMb: { '1x': Math.round(results['1x']!.tfData.maxRssMb), '4x': Math.round(results['4x']!.tfData.maxRssMb) },
      rssGrowth: Number(rssGrowth.toFixed(3)),
      oursImagesPerSec1x: Number(rate(results['1x']!.ours).toFixed(1)),
      originalImagesPerSec1x: Number(rate(results['1x']!.original!).toFixed(1)),
      oursPeakRssMb: { '1x': Math.round(results['1x']!.ours.maxRssMb), '4x': Math.round(results['4x']!.ours.maxRssMb) },
      originalPeakRssMb: {
        '1x': Math.round(results['1x']!.original!.maxRssMb),
        '4x': results['4x']!.original ? Math.round(results['4x']!.original.maxRssMb) : null,
      },
      profileMsPerImage: profile.msPerImage,
      profileShares: Object.fromEntries(Object.entries(profile.stages).map(([k, v]) => [k, v.share])),
      ratio4x: results['4x']!.original ? Number((rate(results['4x']!.ours) / rate(results['4x']!.original)).toFixed(3)) : null,
    }),
  );
}

main().catch((err: Error) => {
  console.error(`bench:preprocess: ${err.message}`);
  process.exit(1);
});
