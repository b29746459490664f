/**
 * `npm run bench:train`: training speed and accuracy of this project's tfjs-node training against
 * Keras on the same libtensorflow (the tensorflow-cpu wheel), side by side in one run, on the same
 * generated images and hyper-parameters (Adam 1e-3), each run in a process of its own.
 *
 * Speed: the Basic CNN at 64, 128 and 224 px (batch 32), images/s over all epochs but the first
 * (warm-up), ours with oneDNN on (the default) and Keras as it comes (oneDNN on), in ROUNDS
 * alternating rounds; each side's best round counts (other work on the machine only ever slows a
 * run down), and every round is printed. Ours with oneDNN off once per size. ResNet50 the same way
 * at 64 px (batch 32, oneDNN off once too) and at 224 px, at batch 16, what a training pod on a
 * t3.large holds in one pass (see src/ml/memory.ts), in at most 3 rounds, with each side's peak RSS
 * and their ratio (rssRatioResnet224, ours / Keras).
 * Accuracy: Basic and ResNet50 (means of three seeds) and CrossVal (3 folds) trained to the end on both
 * sides; the validation accuracies and their difference in points. Ours ends as the product's
 * training does, with batch norm's statistics computed over the training images; ResNet50's
 * accuracy without that step is `accuracyMovingAveragesResNet50`.
 *
 * The last line is one JSON object: ratio64, ratio128, ratio224 (our images/s / Keras'), the
 * oneDNN-off ratios, ratioResnet64 and ratioResnet224 with their images/s, and the accuracy parity
 * figures. `--speed-only` skips the accuracy part, `--parity-only` the speed part; `--rounds N` sets
 * the rounds (default 5), `--sizes 64,128` times only those Basic sizes (and skips ResNet50),
 * `--resnet-only` times only ResNet50. `--quick`: the same runs (one round, one seed) on a few
 * dozen images, 2 epochs each, to show that every part still runs; its figures mean nothing.
 * A side that fails ends the benchmark, naming it.
 */
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { lastJsonLine } from './json-line';
import { benchData } from './train-data';

const ROOT = resolve(__dirname, '..', '..');
const OUT = join(ROOT, 'bench', 'out');
const PY = join(ROOT, '.venv-bench', 'bin', 'python');

interface SideResult {
  imagesPerSecond: number;
  peakRssMb: number;
  valAccuracy: number;
  /** Ours: before batch norm's statistics are computed over the training images (what Keras scores). */
  valAccuracyMovingAverages?: number;
  cvAccuracyMean?: number;
}

function run(side: 'ours' | 'keras', args: (string | number)[], env: Record<string, string> = {}): SideResult {
  const [cmd, script] =
    side === 'ours' ? [process.execPath, join(__dirname, 'train-ours.js')] : [PY, join(ROOT, 'bench', 'keras_train.py')];
  const what = `${side === 'ours' ? 'our training' : 'the Keras reference'} (${args.join(' ')})`;
  return lastJsonLine<SideResult>(what, cmd, [script, ...args.map(String)], { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', ...env });
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** `--name value` from the command line. */
function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : Number(flag('rounds') ?? 5);
/** Epochs of a timed run: the first warms up, the rest are timed. */
const EPOCHS = QUICK ? 2 : 3;
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error(`--rounds must be a positive integer, got ${flag('rounds')}`);
/** The Basic sizes to time (all by default); ResNet50 runs only with all of them. */
const SIZES = flag('sizes')?.split(',').map(Number);
if (SIZES?.some((s) => ![64, 128, 224].includes(s))) throw new Error(`--sizes takes a list of 64, 128, 224; got ${flag('sizes')}`);

const RESNET_ONLY = process.argv.includes('--resnet-only');

const list = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' ');

/**
 * `rounds` alternating rounds of ours (oneDNN on) and Keras on the same arguments, each side's best
 * counting, then (with `off`) ours with oneDNN off once.
 */
function bestOfRounds(
  args: (string | number)[],
  rounds = ROUNDS,
  off = true,
): { ours: number[]; keras: number[]; on: number; k: number; off?: number; rss: { ours: number; keras: number } } {
  const ours: SideResult[] = [];
  const keras: SideResult[] = [];
  for (let r = 0; r < rounds; r++) {
    ours.push(run('ours', args, { TF_ENABLE_ONEDNN_OPTS: '1' }));
    keras.push(run('keras', args));
  }
  const rate = (xs: SideResult[]) => xs.map((x) => x.imagesPerSecond);
  const peak = (xs: SideResult[]) => Math.round(Math.max(...xs.map((x) => x.peakRssMb)));
  return {
    ours: rate(ours),
    keras: rate(keras),
    on: Math.max(...rate(ours)),
    k: Math.max(...rate(keras)),
    off: off ? run('ours', args, { TF_ENABLE_ONEDNN_OPTS: '0' }).imagesPerSecond : undefined,
    rss: { ours: peak(ours), keras: peak(keras) },
  };
}

function speed(): Record<string, unknown> {
  const out: Record<string, unknown> = { rounds: ROUNDS };
  // Enough images for a few seconds per timed epoch at each size on two cores.
  const plan = (
    [
      [64, QUICK ? 64 : 1024],
      [128, QUICK ? 32 : 512],
      [224, QUICK ? 32 : 192],
    ] as [number, number][]
  ).filter(([size]) => !SIZES || SIZES.includes(size));
  const validation = QUICK ? 16 : 64;
  if (!RESNET_ONLY) {
    console.log(`Basic CNN, batch 32, Adam: images/s (epochs 2-${EPOCHS} of ${EPOCHS}), best of ${ROUNDS} alternating rounds`);
    console.log('size   ours(oneDNN on)  Keras   ratio  ours(oneDNN off)  ratio(off)  rounds ours | Keras');
    for (const [size, n] of plan) {
      const data = benchData(OUT, size, n, validation);
      const { ours, keras, on, k, off } = bestOfRounds([data.dir, 'Basic', EPOCHS, 32, 1]);
      out[`ours${size}`] = round(on, 1);
      out[`keras${size}`] = round(k, 1);
      out[`ratio${size}`] = round(on / k);
      out[`oursOnednnOff${size}`] = round(off!, 1);
      out[`ratioOnednnOff${size}`] = round(off! / k);
      console.log(
        `${String(size).padEnd(6)} ${on.toFixed(1).padStart(15)}  ${k.toFixed(1).padStart(5)}  ${(on / k).toFixed(2).padStart(5)}  ${off!
          .toFixed(1)
          .padStart(16)}  ${(off! / k).toFixed(2).padStart(10)}  ${list(ours)} | ${list(keras)}`,
      );
    }
  }
  if (SIZES) return out;
  // 64 px: 16 steps a timed epoch; 224 px: 6 steps of 16 images, each a few seconds.
  const small = bestOfRounds([benchData(OUT, 64, QUICK ? 32 : 512, validation).dir, 'ResNet50', EPOCHS, 32, 1]);
  console.log(
    `ResNet50 at 64 px, batch 32, best of ${ROUNDS}: ours ${small.on.toFixed(1)} img/s (oneDNN off: ${small.off!.toFixed(1)}), ` +
      `Keras ${small.k.toFixed(1)}, ratio ${(small.on / small.k).toFixed(2)}; rounds ${list(small.ours)} | ${list(small.keras)}`,
  );
  const rounds224 = Math.min(ROUNDS, 3);
  const large = bestOfRounds([benchData(OUT, 224, QUICK ? 16 : 96, QUICK ? 16 : 32).dir, 'ResNet50', EPOCHS, 16, 1], rounds224, false);
  console.log(
    `ResNet50 at 224 px, batch 16, best of ${rounds224}: ours ${large.on.toFixed(2)} img/s, Keras ${large.k.toFixed(2)}, ` +
      `ratio ${(large.on / large.k).toFixed(2)}; rounds ${list(large.ours)} | ${list(large.keras)}; ` +
      `peak RSS ours ${large.rss.ours} MB, Keras ${large.rss.keras} MB`,
  );
  return {
    ...out,
    ratioResnet64: round(small.on / small.k),
    resnetOurs64: round(small.on, 1),
    resnetOursOnednnOff64: round(small.off!, 1),
    resnetKeras64: round(small.k, 1),
    ratioResnet224: round(large.on / large.k),
    resnetOurs224: round(large.on, 2),
    resnetKeras224: round(large.k, 2),
    resnetBatch224: 16,
    resnetPeakRssMb224: large.rss,
    rssRatioResnet224: round(large.rss.ours / large.rss.keras),
  };
}

function parity(): Record<string, number> {
  const out: Record<string, number> = {};
  console.log('\nValidation accuracy, same data / epochs / hyper-parameters (ours | Keras | difference in points)');
  // A single run swings by a point or more with the seed (and with oneDNN's rounding): Basic and
  // ResNet50 rows are means over three seeds on each side. CrossVal's final model is Basic's seed-1
  // run; its fold mean is what it adds.
  const cases: { model: string; size: number; train: number; val: number; epochs: number; folds?: number; seeds: number[] }[] = QUICK
    ? [
        { model: 'Basic', size: 64, train: 64, val: 32, epochs: 2, seeds: [1] },
        { model: 'CrossVal', size: 64, train: 64, val: 32, epochs: 2, folds: 3, seeds: [1] },
        { model: 'ResNet50', size: 32, train: 64, val: 32, epochs: 2, seeds: [1] },
      ]
    : [
        { model: 'Basic', size: 64, train: 1200, val: 400, epochs: 8, seeds: [1, 2, 3] },
        { model: 'CrossVal', size: 64, train: 1200, val: 400, epochs: 8, folds: 3, seeds: [1] },
        { model: 'ResNet50', size: 32, train: 1200, val: 400, epochs: 8, seeds: [1, 2, 3] },
      ];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const c of cases) {
    const data = benchData(OUT, c.size, c.train, c.val, 11);
    const folds = c.folds ? ['--folds', c.folds] : [];
    const arch = c.model === 'CrossVal' ? 'Basic' : c.model;
    const ours = c.seeds.map((seed) => run('ours', [data.dir, arch, c.epochs, 32, seed, ...folds], { TF_ENABLE_ONEDNN_OPTS: '1' }));
    const keras = c.seeds.map((seed) => run('keras', [data.dir, arch, c.epochs, 32, seed, ...folds]));
    const [o, k] = [mean(ours.map((r) => r.valAccuracy)), mean(keras.map((r) => r.valAccuracy))];
    const diff = (o - k) * 100;
    out[`accuracy${c.model}`] = round(o, 4);
    out[`kerasAccuracy${c.model}`] = round(k, 4);
    out[`accuracyDiffPoints${c.model}`] = round(diff, 1);
    const moving = mean(ours.map((r) => r.valAccuracyMovingAverages ?? r.valAccuracy));
    if (moving !== o) out[`accuracyMovingAverages${c.model}`] = round(moving, 4);
    const cv = c.folds ? ` (fold mean: ours ${ours[0]!.cvAccuracyMean?.toFixed(3)}, Keras ${keras[0]!.cvAccuracyMean?.toFixed(3)})` : '';
    const perSeed =
      c.seeds.length > 1
        ? ` (mean of seeds ${c.seeds.join(', ')}: ours ${ours.map((r) => r.valAccuracy.toFixed(4)).join(' ')}, Keras ${keras.map((r) => r.valAccuracy.toFixed(4)).join(' ')})`
        : '';
    const before = moving !== o ? ` (ours with the moving averages training leaves: ${moving.toFixed(4)})` : '';
    console.log(
      `${c.model.padEnd(9)} ${c.size} px, ${c.epochs} epochs: ${o.toFixed(4)} | ${k.toFixed(4)} | ${diff.toFixed(1)}${cv}${perSeed}${before}`,
    );
  }
  return out;
}

function main(): void {
  execFileSync('bash', [join(ROOT, 'scripts', 'bench-env.sh')], { stdio: 'inherit' });
  const result = {
    ...(process.argv.includes('--parity-only') ? {} : speed()),
    ...(process.argv.includes('--speed-only') ? {} : parity()),
  };
  console.log(JSON.stringify(result));
}

try {
  main();
} catch (err) {
  console.error(`bench:train: ${(err as Error).message}`);
  process.exit(1);
}
