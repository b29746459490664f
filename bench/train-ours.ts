/**
 * One side of `npm run bench:train`: trains a model with this project's loop on a bench data folder
 * and prints one JSON line: images/s over the timed epochs (all but the first, which warms up) and
 * the final validation accuracy. Usage: node train-ours.js <dataDir> <model> <epochs> <batchSize> <seed>
 */
import type { ModelClass } from '../src/common/constants';
import { buildModel, createOptimizer } from '../src/ml/models';
import { fitModel, predictProbabilities, scoreProbabilities } from '../src/ml/trainer';
import { loadTf } from '../src/ml/tf';
import { readBenchData } from './train-data';

async function main(): Promise<void> {
  const [dir, modelClass, epochsArg, batchArg, seedArg] = process.argv.slice(2);
  const epochs = Number(epochsArg);
  const batchSize = Number(batchArg);
  const seed = Number(seedArg);
  const tf = loadTf();
  const { train, validation } = readBenchData(dir!);
  const model = buildModel(modelClass as ModelClass, { imageSize: train.imageSize, numClasses: 2, seed });
  const optimizer = createOptimizer('adam', 1e-3);
  const epochEnds: number[] = [];
  const start = performance.now();
  await fitModel(model, optimizer, train, {
    epochs,
    batchSize,
    numClasses: 2,
    seed,
    onEpochEnd: () => {
      epochEnds.push(performance.now());
    },
  });
  const timed = epochs > 1 ? (epochEnds.at(-1)! - epochEnds[0]!) / 1000 : (epochEnds[0]! - start) / 1000;
  const timedEpochs = epochs > 1 ? epochs - 1 : 1;
  const probs = await predictProbabilities(model, validation, 2);
  const v = scoreProbabilities(probs, validation.labels, 2);
  process.stdout.write(
    JSON.stringify({
      side: 'tfjs-node',
      imagesPerSecond: (timedEpochs * train.count) / timed,
      firstEpochSeconds: (epochEnds[0]! - start) / 1000,
      valAccuracy: v.accuracy,
      valLoss: v.loss,
      onednn: process.env.TF_ENABLE_ONEDNN_OPTS,
      tensorsLeft: tf.memory().numTensors,
    }) + '\n',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
