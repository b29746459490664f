/**
 * One model class's training, start to registered version, resumable at any point:
 *
 * - checkpoints (weights + optimizer state + where the run stands) go to S3 at every epoch end and
 *   when asked to stop; a later attempt with the same MLflow run continues from the newest one;
 * - each attempt saves its model under a prefix of its own (`attempt-<n>/`); a model already saved
 *   with its metrics (`training-result.json`) by any attempt is not trained again;
 * - the registered version is one per MLflow run, and its files are never written again;
 * - an attempt that a later one has superseded (its worker was cut off from Temporal) stops before
 *   its next write (fence.ts).
 *
 * Independent of Temporal: the activity runs it in a child process (see process.ts) and relays
 * its progress as heartbeats.
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { TrainedModel, TrainModelInput } from '../common/types';
import type { ImageSource } from '../ml/image-source';
import { maxResidentShards, openShardStream, streamBufferBytes, windowShardsFor } from '../data/shard-stream';
import type { DatasetManifest } from '../data/shards';
import { loadInitialWeights } from '../ml/initial-weights';
import { evaluatePredictions, reportedMetrics } from '../ml/metrics';
import { MODEL_ARCHIVE, saveModelToS3 } from '../ml/model-store';
import { buildModel, createOptimizer } from '../ml/models';
import { defaultBudgetBytes, planMicroBatch } from '../ml/memory';
import type { TrainingOptimizer } from '../ml/native-adam';
import { fitModel, predictProbabilities, recalibrateBatchNorm, type TrainPosition } from '../ml/trainer';
import { joinUri, parseS3Uri, s3Uri, type S3Store } from '../storage/s3';
import type { MlflowClient } from '../tracking/mlflow';
import { RunCheckpoints, type StoredCheckpoint } from './checkpoints';
import { AttemptFence } from './fence';
import { divergedHint, InvalidTrainingDataError, TrainingDivergedError, TrainingStoppedError } from './errors';
import { planPhases, type Phase } from './phases';
import { TrainingRunLog } from './run-log';

export { InvalidTrainingDataError, TrainingDivergedError, TrainingStoppedError, TrainingSupersededError } from './errors';

export interface TrainingJob {
  input: TrainModelInput;
  /** The MLflow run this training logs to (created or found by the activity). */
  runId: string;
  /** Memory a training pass may plan to use (TRAINING_MEMORY_MB); default: 85 % of the container's limit. */
  memoryBudgetBytes?: number;
  /** The activity's attempt number (default 1): a later attempt supersedes an earlier one. */
  attempt?: number;
}

export interface TrainingProgress {
  phase: string;
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  /** The newest checkpoint written, if any. */
  checkpoint?: string;
  /** The last batch's mean training loss. */
  loss?: number;
  /** Set once the epochs are done and batch norm's statistics are computed (`batch` of `batches` passes). */
  step?: 'batch-norm statistics';
}

export interface TrainingHooks {
  progress(p: TrainingProgress): void;
  log(message: string): void;
  /** Polled after every batch: once true, training checkpoints and throws TrainingStoppedError. */
  shouldStop(): boolean;
}

export interface TrainingDeps {
  s3: S3Store;
  mlflow: MlflowClient;
}

/** Written last, so its presence means the model and its metrics are complete. */
interface SavedResult {
  metrics: TrainedModel['metrics'];
}

/** Everything one run's steps share. */
interface Run {
  s3: S3Store;
  input: TrainModelInput;
  manifest: DatasetManifest;
  modelUri: string;
  resultUri: string;
  log: TrainingRunLog;
  checkpoints: RunCheckpoints;
  fence: AttemptFence;
  hooks: TrainingHooks;
  memoryBudgetBytes?: number;
}

const mb = (bytes: number) => Math.round(bytes / 2 ** 20);

/** How often a running attempt looks whether a later one superseded it. */
const FENCE_POLL_MS = 30_000;

export async function runTraining(
  { s3, mlflow }: TrainingDeps,
  { input, runId, memoryBudgetBytes, attempt = 1 }: TrainingJob,
  hooks: TrainingHooks,
): Promise<TrainedModel> {
  const { modelClass, registeredModelName } = input;
  const manifest = await s3.getJson<DatasetManifest>(input.dataset.manifestUri);
  const { bucket } = parseS3Uri(input.dataset.manifestUri);
  const runPrefix = s3Uri(bucket, `models/${registeredModelName}/${modelClass}/${runId}`);
  const fence = new AttemptFence(s3, joinUri(runPrefix, 'lease.json'), attempt);
  await fence.claim();
  let superseded = false;
  const poll = setInterval(() => {
    fence.check('go on').catch((err: Error) => void (superseded ||= err.name === 'TrainingSupersededError'));
  }, FENCE_POLL_MS);
  const modelUri = joinUri(runPrefix, `attempt-${attempt}`);
  const run: Run = {
    s3,
    input,
    manifest,
    modelUri,
    resultUri: joinUri(modelUri, 'training-result.json'),
    log: new TrainingRunLog(mlflow, runId),
    checkpoints: new RunCheckpoints(s3, s3Uri(bucket, `checkpoints/${registeredModelName}/${modelClass}/${runId}/`)),
    fence,
    // Superseded: stop after the batch, where the checkpoint's fence check ends the attempt.
    hooks: { ...hooks, shouldStop: () => superseded || hooks.shouldStop() },
    ...(memoryBudgetBytes !== undefined ? { memoryBudgetBytes } : {}),
  };
  try {
    // A version registered for this run, by any attempt, is final: its files are never written again.
    let registered = await run.log.registeredVersion(input);
    if (!registered) {
      const saved = (await savedModel(s3, runPrefix)) ?? { modelUri, result: await trainAndSave(run) };
      if (saved.modelUri !== modelUri)
        hooks.log(`${modelClass}: model and metrics already saved by an earlier attempt (${saved.modelUri}); registering it`);
      await fence.check('register the model');
      registered = await run.log.registerVersion(input, saved.modelUri, modelClass);
    }
    const { version, source } = registered;
    const { metrics } = await s3.getJson<SavedResult>(joinUri(source, 'training-result.json'));
    await run.log.tags({ model_uri: source, registered_model: `${registeredModelName}/${version}` });
    await fence.check('delete the checkpoints');
    await run.checkpoints.deleteAll();
    await run.log.finished();
    return {
      modelClass,
      mlflowRunId: runId,
      registeredModelName,
      version,
      metrics,
      modelUri: source,
      archiveUri: joinUri(source, MODEL_ARCHIVE),
    };
  } finally {
    clearInterval(poll);
  }
}

/** A model some attempt of this run saved completely (its result is written last), if any. */
async function savedModel(s3: S3Store, runPrefix: string): Promise<{ modelUri: string; result: SavedResult } | undefined> {
  const results = (await s3.list(`${runPrefix}/`)).filter((o) => o.key.endsWith('/training-result.json'));
  if (!results[0]) return undefined;
  const uri = s3.uriOf(runPrefix, results[0].key);
  return { modelUri: uri.slice(0, -'/training-result.json'.length), result: await s3.getJson<SavedResult>(uri) };
}

async function trainAndSave(run: Run): Promise<SavedResult> {
  const { s3, manifest } = run;
  await run.log.params(run.input, manifest);
  // Streamed from their shards: only labels and a few shards are ever in memory.
  const [train, validation, test] = await Promise.all([
    openShardStream(s3, manifest, manifest.splits.train),
    openShardStream(s3, manifest, manifest.splits.validation),
    openShardStream(s3, manifest, manifest.splits.test),
  ]);
  assertBothClassesPresent(train, manifest.classes);
  const model = await trainAllPhases(run, train, validation);
  try {
    return await evaluateAndSave(run, model, validation, test);
  } finally {
    model.dispose();
  }
}

/** Trains each phase in turn from where the newest checkpoint left off; returns the final phase's model. */
async function trainAllPhases(run: Run, train: ImageSource, validation: ImageSource): Promise<LayersModel> {
  const { modelClass, hyperparams: hp } = run.input;
  const numClasses = run.manifest.classes.length;
  const plan = planPhases(modelClass, hp, train, validation);
  let resumeFrom = await run.checkpoints.latest();
  const foldScores = resumeFrom?.info.foldScores ?? [];
  for (const phase of plan.phases.slice(resumeFrom?.info.phaseIndex ?? 0)) {
    const { data, heldOut } = plan.dataOf(phase);
    const model = buildModel(modelClass, {
      imageSize: run.manifest.imageSize,
      numClasses,
      seed: hp.seed,
      ...(hp.kernelInitializer ? { kernelInitializer: hp.kernelInitializer } : {}),
      ...(hp.denseInitializer ? { denseInitializer: hp.denseInitializer } : {}),
    });
    const optimizer = createOptimizer(hp.optimizer, hp.learningRate);
    try {
      const initial = await startingPoint(run, phase, model, optimizer, resumeFrom);
      resumeFrom = undefined; // only the phase it was written in resumes from it
      await trainPhase(run, phase, model, optimizer, data, heldOut, initial, foldScores);
      if (!phase.isFold) return model;
      const e = evaluatePredictions(await predictProbabilities(model, heldOut, numClasses), heldOut.labels, numClasses);
      foldScores[phase.index] = e.accuracy;
      await run.log.foldAccuracy(phase.index, e.accuracy);
      if (phase.index === plan.phases.length - 2) await run.log.crossValSummary(foldScores);
      model.dispose();
    } catch (err) {
      model.dispose();
      throw err;
    } finally {
      optimizer.dispose();
    }
  }
  throw new Error(`${modelClass}: the phase plan has no final phase`);
}

/** A checkpoint of this phase, else the initial weights asked for, else fresh weights. */
async function startingPoint(
  run: Run,
  phase: Phase,
  model: LayersModel,
  optimizer: TrainingOptimizer,
  checkpoint: StoredCheckpoint | undefined,
): Promise<TrainPosition | undefined> {
  const { modelClass, initialWeightsUri } = run.input;
  if (checkpoint && checkpoint.info.phaseIndex === phase.index) {
    const position = await run.checkpoints.restore(checkpoint, model, optimizer);
    run.hooks.log(`${modelClass} ${phase.name}: resuming from ${checkpoint.uri} (epoch ${position.epoch + 1}, batch ${position.batch})`);
    // Where each attempt took over, as a durable record beside the run's metrics.
    await run.log.tags({ 'training.resumed_from': checkpoint.uri });
    return position;
  }
  if (initialWeightsUri) {
    const { loaded, kept } = await loadInitialWeights(run.s3, initialWeightsUri, model);
    run.hooks.log(
      `${modelClass} ${phase.name}: ${loaded} weight tensors from ${initialWeightsUri}${kept.length ? `; fresh head (${kept.join(', ')})` : ''}`,
    );
  }
  return undefined;
}

async function trainPhase(
  run: Run,
  phase: Phase,
  model: LayersModel,
  optimizer: TrainingOptimizer,
  data: ImageSource,
  heldOut: ImageSource,
  initial: TrainPosition | undefined,
  foldScores: number[],
): Promise<void> {
  const { modelClass, hyperparams: hp } = run.input;
  const { hooks } = run;
  const prefix = phase.isFold ? `${phase.name}_` : '';
  let checkpoint: string | undefined;
  const save = async (position: TrainPosition) => {
    await run.fence.check('write a checkpoint');
    checkpoint = await run.checkpoints.save(model, optimizer, { phase: phase.name, phaseIndex: phase.index, position, foldScores });
  };
  const batches = Math.ceil(data.count / hp.batchSize);
  const microBatchSize = await planPasses(run, phase);
  let skipped = 0;
  const result = await fitModel(model, optimizer, data, {
    epochs: hp.epochs,
    batchSize: hp.batchSize,
    microBatchSize,
    numClasses: run.manifest.classes.length,
    seed: hp.seed + phase.index,
    initial,
    validation: heldOut,
    onEpochBegin: (epoch) => hooks.log(`${modelClass} ${phase.name}: epoch ${epoch + 1}/${hp.epochs} started`),
    onSkippedStep: (epoch, batch) => {
      skipped++;
      hooks.log(`${modelClass} ${phase.name}: epoch ${epoch + 1}, batch ${batch + 1}: the gradient was not finite; update skipped`);
    },
    onBatchEnd: (epoch, batch, _batches, loss) =>
      hooks.progress({ phase: phase.name, epoch, epochs: hp.epochs, batch: batch + 1, batches, checkpoint, loss }),
    onEpochEnd: async (epoch, logs) => {
      await run.log.epoch(prefix, epoch, logs);
      // Its updates are skipped while its outputs overflow, so such a model would never recover.
      if (logs.valFinite === false)
        throw new TrainingDivergedError(
          `${modelClass} ${phase.name}: after epoch ${epoch + 1} the model's predictions are NaN or infinite ` +
            `(${skipped} update(s) skipped for non-finite gradients so far); ${divergedHint(hp.learningRate)}`,
        );
      await save({ epoch: epoch + 1, batch: 0, lossSum: 0, correct: 0 });
      hooks.progress({ phase: phase.name, epoch: epoch + 1, epochs: hp.epochs, batch: 0, batches, checkpoint });
    },
    shouldStop: () => hooks.shouldStop(),
  });
  if (result.stopped) {
    if (result.position.batch > 0) await save(result.position);
    throw new TrainingStoppedError(
      `${modelClass} ${phase.name} stopped at epoch ${result.position.epoch + 1}, batch ${result.position.batch}; checkpoint ${checkpoint}`,
    );
  }
  // After the last checkpoint, which holds the trained weights: a resumed attempt restores them and
  // computes the same statistics again.
  const statisticsStarted = Date.now();
  const statistics = await recalibrateBatchNorm(model, data, {
    passSize: microBatchSize,
    seed: hp.seed + phase.index,
    onPass: (pass, passes) =>
      hooks.progress({
        phase: phase.name,
        epoch: hp.epochs,
        epochs: hp.epochs,
        batch: pass,
        batches: passes,
        checkpoint,
        step: 'batch-norm statistics',
      }),
    shouldStop: () => hooks.shouldStop(),
  });
  if (statistics.stopped)
    throw new TrainingStoppedError(
      `${modelClass} ${phase.name} stopped while computing batch-norm statistics; it resumes from its last checkpoint`,
    );
  if (statistics.images) {
    const seconds = ((Date.now() - statisticsStarted) / 1000).toFixed(1);
    hooks.log(`${modelClass} ${phase.name}: batch-norm statistics from ${statistics.images} training images in ${seconds} s`);
    await run.log.tags({ [`training.${prefix}batch_norm_images`]: String(statistics.images) });
  }
}

/**
 * How many images one forward/backward pass takes so that a batch fits the memory budget, next to
 * what is already in use and the shards the data stream may hold.
 */
async function planPasses(run: Run, phase: Phase): Promise<number> {
  const { modelClass, hyperparams: hp } = run.input;
  const { imageSize, params } = run.manifest;
  const budgetBytes = run.memoryBudgetBytes ?? defaultBudgetBytes();
  const streamBytes = streamBufferBytes(run.manifest);
  const plan = planMicroBatch({
    modelClass,
    imageSize,
    batchSize: hp.batchSize,
    budgetBytes,
    inUseBytes: process.memoryUsage().rss + streamBytes,
  });
  if (plan.microBatchSize < hp.batchSize || !plan.fits)
    run.hooks.log(
      `${modelClass} ${phase.name}: batches of ${hp.batchSize} run as passes of ${plan.microBatchSize} images (~${mb(plan.perImageBytes)} MB each, ` +
        `budget ${mb(budgetBytes)} MB with ${mb(streamBytes)} MB for ${maxResidentShards(windowShardsFor(params.shardSize))} shards of data` +
        `${plan.fits ? '' : '; even one image per pass may not fit'})`,
    );
  const prefix = phase.isFold ? `${phase.name}_` : '';
  await run.log.tags({ [`training.${prefix}micro_batch_size`]: String(plan.microBatchSize) });
  return plan.microBatchSize;
}

/** Scores the final model on validation and test, logs that, then saves the model and (last) its result. */
async function evaluateAndSave(run: Run, model: LayersModel, validation: ImageSource, test: ImageSource): Promise<SavedResult> {
  const { modelClass, hyperparams: hp } = run.input;
  const { classes, imageSize } = run.manifest;
  const numClasses = classes.length;
  run.hooks.progress({ phase: 'evaluating', epoch: hp.epochs, epochs: hp.epochs, batch: 0, batches: 0 });
  const valProbs = await predictProbabilities(model, validation, numClasses);
  const testProbs = await predictProbabilities(model, test, numClasses);
  if (!valProbs.every(Number.isFinite) || !testProbs.every(Number.isFinite))
    throw new TrainingDivergedError(`${modelClass}: the trained model's predictions are NaN or infinite; ${divergedHint(hp.learningRate)}`);
  const valEval = evaluatePredictions(valProbs, validation.labels, numClasses);
  const testEval = evaluatePredictions(testProbs, test.labels, numClasses);
  await run.log.evaluation(classes, {
    validation: { evaluation: valEval, probabilities: valProbs, labels: validation.labels },
    test: { evaluation: testEval, probabilities: testProbs, labels: test.labels },
  });
  run.hooks.progress({ phase: 'saving', epoch: hp.epochs, epochs: hp.epochs, batch: 0, batches: 0 });
  await run.fence.check('save the model');
  await saveModelToS3(run.s3, model, run.modelUri, { modelClass, classes, imageSize, inputScale: '0-1' });
  const result: SavedResult = { metrics: { validation: reportedMetrics(valEval), test: reportedMetrics(testEval) } };
  await run.s3.putJson(run.resultUri, result);
  return result;
}

/** A split whose labels collapsed to one class trains a constant predictor that looks perfect. */
function assertBothClassesPresent(train: ImageSource, classes: string[]): void {
  const seen = new Set(train.labels);
  if (seen.size < 2) {
    throw new InvalidTrainingDataError(
      `the training split has labels of ${seen.size} class(es) only (${[...seen].map((l) => classes[l]).join(', ') || 'none'}); ` +
        `a classifier needs at least two: check the dataset's class folders`,
    );
  }
}
