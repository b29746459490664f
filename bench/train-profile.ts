/**
 * Where a training step's time goes: trains a model with this project's loop and times every
 * TensorFlow op it executes (through tfjs-node's binding), after the first epoch (warm-up).
 * Prints ms per step for each op, their total, and the whole step (the rest is JavaScript).
 * Usage: TF_ENABLE_ONEDNN_OPTS=1 node dist/bench/train-profile.js <dataDir> <model> [epochs] [batchSize]
 */
import type { ModelClass } from '../src/common/constants';
import { buildModel, createOptimizer } from '../src/ml/models';
import { memorySource } from '../src/ml/image-source';
import { fitModel } from '../src/ml/trainer';
import { loadTf } from '../src/ml/tf';
import { readBenchData } from './train-data';

type ExecuteOp = (name: string, attrs: unknown, inputs: unknown, outputs: number) => unknown;

async function main(): Promise<void> {
  const [dir, model = 'Basic', epochsArg = '3', batchArg = '32'] = process.argv.slice(2);
  if (!dir) throw new Error('usage: train-profile.js <dataDir> <model> [epochs] [batchSize]');
  const tf = loadTf();
  // The binding object is frozen: time its executeOp through a wrapper the backend uses instead.
  const backend = tf.backend() as unknown as { binding: { executeOp: ExecuteOp } };
  const real = backend.binding;
  const execute = real.executeOp.bind(real);
  const stats = new Map<string, { calls: number; ms: number }>();
  let timing = false;
  backend.binding = Object.create(real, {
    executeOp: {
      value: ((name, attrs, inputs, outputs) => {
        if (!timing) return execute(name, attrs, inputs, outputs);
        const start = performance.now();
        const result = execute(name, attrs, inputs, outputs);
        const s = stats.get(name) ?? { calls: 0, ms: 0 };
        s.calls++;
        s.ms += performance.now() - start;
        stats.set(name, s);
        return result;
      }) satisfies ExecuteOp,
    },
  }) as typeof real;

  const train = memorySource(readBenchData(dir).train);
  const m = buildModel(model as ModelClass, { imageSize: train.imageSize, numClasses: 2, seed: 1 });
  const optimizer = createOptimizer('adam', 1e-3);
  let steps = 0;
  let start = 0;
  await fitModel(m, optimizer, train, {
    epochs: Number(epochsArg),
    batchSize: Number(batchArg),
    numClasses: 2,
    seed: 1,
    onBatchEnd: () => void (timing && steps++),
    onEpochEnd: (epoch) => {
      if (epoch === 0) [timing, start] = [true, performance.now()];
    },
  });
  const total = performance.now() - start;
  timing = false;
  let ops = 0;
  console.log(`${model}, ${train.imageSize} px, batch ${batchArg}: ms per step over ${steps} steps`);
  for (const [name, s] of [...stats].sort((a, b) => b[1].ms - a[1].ms)) {
    ops += s.ms;
    if (s.ms / steps >= 0.05)
      console.log(`${name.padEnd(36)} ${(s.calls / steps).toFixed(0).padStart(4)} calls ${(s.ms / steps).toFixed(2).padStart(8)}`);
  }
  console.log(`${'all ops'.padEnd(47)} ${(ops / steps).toFixed(1).padStart(8)}`);
  console.log(`${'whole step (ops + JavaScript)'.padEnd(47)} ${(total / steps).toFixed(1).padStart(8)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
