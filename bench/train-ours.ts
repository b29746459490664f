/**
 * One side of `npm run bench:train`: trains a model with this project's loop on a bench data folder
 * and prints one JSON line: images/s over the timed epochs (all but the first, which warms up), the
 * final validation accuracy (after batch norm's statistics are computed over the training images,
 * as the product's training ends; before that, `valAccuracyMovingAverages`) and the process' peak
 * RSS; with `--folds K`, first K-fold cross-validation of the model on the training images (as
 * CrossVal does) and the folds' mean accuracy.
 * Usage: node train-ours.js <dataDir> <model> <epochs> <batchSize> <seed> [--folds K]
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { ModelClass } from '../src/common/constants';
import { memorySource, type ImageSource } from '../src/ml/image-source';
import { stratifiedFolds } from '../src/data/split';
import { evaluatePredictions } from '../src/ml/metrics';
import { buildModel, createOptimizer } from '../src/ml/models';
import { fitModel, predictProbabilities, recalibrateBatchNorm } from '../src/ml/trainer';
import { loadTf } from '../src/ml/tf';
import { readBenchData } from './train-data';

async function main(): Promise<void> {
  const [dir, modelClass, epochsArg, batchArg, seedArg] = process.argv.slice(2);
  const epochs = Number(epochsArg);
  const batchSize = Number(batchArg);
  const seed = Number(seedArg);
  const tf = loadTf();
  const data = readBenchData(dir!);
  const train = memorySource(data.train);
  const validation = memorySource(data.validation);
  const folds = process.argv.includes('--folds') ? Number(process.argv[process.argv.indexOf('--folds') + 1]) : 0;
  const spec = { imageSize: train.imageSize, numClasses: 2, seed };
  const fit = async (data: ImageSource, onEpochEnd?: () => void) => {
    const model = buildModel(modelClass as ModelClass, spec);
    const optimizer = createOptimizer('adam', 1e-3);
    await fitModel(model, optimizer, data, { epochs, batchSize, numClasses: 2, seed, onEpochEnd });
    optimizer.dispose();
    return model;
  };
  const accuracy = async (model: LayersModel, split: ImageSource) =>
    evaluatePredictions(await predictProbabilities(model, split, 2), split.labels, 2);
  let cvAccuracyMean: number | undefined;
  if (folds) {
    const all = [...Array(train.count).keys()];
    const parts = stratifiedFolds(all, (i) => train.labels[i]!, folds, seed);
    const scores: number[] = [];
    for (const part of parts) {
      const held = new Set(part);
      const foldData = train.subset(all.filter((i) => !held.has(i)));
      const m = await fit(foldData);
      await recalibrateBatchNorm(m, foldData, { passSize: batchSize, seed });
      scores.push((await accuracy(m, train.subset(part))).accuracy);
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
  const movingAverages = await accuracy(model, validation);
  await recalibrateBatchNorm(model, train, { passSize: batchSize, seed });
  const v = await accuracy(model, validation);
  process.stdout.write(
    JSON.stringify({
      side: 'tfjs-node',
      imagesPerSecond: (timedEpochs * train.count) / timed,
      firstEpochSeconds: (epochEnds[0]! - start) / 1000,
      valAccuracy: v.accuracy,
      valAccuracyMovingAverages: movingAverages.accuracy,
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
