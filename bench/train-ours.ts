/**
 * One side of `npm run bench:train`: trains a model with this project's loop on a bench data folder
 * and prints one JSON line: images/s over the timed epochs (all but the first, which warms up), the
 * final validation accuracy and the process' peak RSS; with `--folds K`, first K-fold
 * cross-validation of the model on the training images (as CrossVal does) and the folds' mean accuracy.
 * Usage: node train-ours.js <dataDir> <model> <epochs> <batchSize> <seed> [--folds K]
 */
import type { ModelClass } from '../src/common/constants';
import type { LoadedSplit } from '../src/common/types';
import { subset } from '../src/data/dataset';
import { stratifiedFolds } from '../src/data/split';
import { evaluatePredictions } from '../src/ml/metrics';
import { buildModel, createOptimizer } from '../src/ml/models';
import { fitModel, predictProbabilities } from '../src/ml/trainer';
import { loadTf } from '../src/ml/tf';
import { readBenchData } from './train-data';

async function main(): Promise<void> {
  const [dir, modelClass, epochsArg, batchArg, seedArg] = process.argv.slice(2);
  const epochs = Number(epochsArg);
  const batchSize = Number(batchArg);
  const seed = Number(seedArg);
  const tf = loadTf();
  const { train, validation } = readBenchData(dir!);
  const folds = process.argv.includes('--folds') ? Number(process.argv[process.argv.indexOf('--folds') + 1]) : 0;
  const spec = { imageSize: train.imageSize, numClasses: 2, seed };
  const fit = async (data: LoadedSplit, onEpochEnd?: () => void) => {
    const model = buildModel(modelClass as ModelClass, spec);
    const optimizer = createOptimizer('adam', 1e-3);
    await fitModel(model, optimizer, data, { epochs, batchSize, numClasses: 2, seed, onEpochEnd });
    optimizer.dispose();
    return model;
  };
  let cvAccuracyMean: number | undefined;
  if (folds) {
    const all = [...Array(train.count).keys()];
    const parts = stratifiedFolds(all, (i) => train.labels[i]!, folds, seed);
    const scores: number[] = [];
    for (const part of parts) {
      const held = new Set(part);
      const m = await fit(
        subset(
          train,
          all.filter((i) => !held.has(i)),
        ),
      );
      const heldOut = subset(train, part);
      scores.push(evaluatePredictions(await predictProbabilities(m, heldOut, 2), heldOut.labels, 2).accuracy);
      m.dispose();
    }
    cvAccuracyMean = scores.reduce((a, b) => a + b, 0) / folds;
  }
  const epochEnds: number[] = [];
  const start = performance.now();
  const model = await fit(train, () => {
    epochEnds.push(performance.now());
  });
  const timed = epochs > 1 ? (epochEnds.at(-1)! - epochEnds[0]!) / 1000 : (epochEnds[0]! - start) / 1000;
  const timedEpochs = epochs > 1 ? epochs - 1 : 1;
  const probs = await predictProbabilities(model, validation, 2);
  const v = evaluatePredictions(probs, validation.labels, 2);
  process.stdout.write(
    JSON.stringify({
      side: 'tfjs-node',
      imagesPerSecond: (timedEpochs * train.count) / timed,
      firstEpochSeconds: (epochEnds[0]! - start) / 1000,
      valAccuracy: v.accuracy,
      cvAccuracyMean,
      valLoss: v.loss,
      onednn: process.env.TF_ENABLE_ONEDNN_OPTS,
      tensorsLeft: tf.memory().numTensors,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    }) + '\n',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
