/**
 * One model class's training, start to registered version, resumable at any point:
 *
 * - checkpoints (weights + optimizer state + where the run stands) go to S3 at every epoch end and
 *   when asked to stop; a later attempt with the same MLflow run continues from the newest one;
 * - a model already saved with its metrics (`training-result.json`) is not trained again;
 * - the registered version is one per MLflow run.
 *
 * Independent of Temporal: the activity runs it in a child process (see process.ts) and relays
 * its progress as heartbeats.
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { TrainingOptimizer } from '../ml/native-adam';
import type { ModelClass } from '../common/constants';
import type { ClassificationMetrics, TrainedModel, TrainModelInput } from '../common/types';
import type { LoadedSplit } from '../common/types';
import { loadSplit, subset } from '../data/dataset';
import type { DatasetManifest } from '../data/shards';
import { stratifiedFolds } from '../data/split';
import { checkpointInfo, encodeCheckpoint, restoreCheckpoint, type CheckpointInfo } from '../ml/checkpoint';
import { loadInitialWeights } from '../ml/initial-weights';
import { evaluatePredictions, type Evaluation } from '../ml/metrics';
import { MODEL_ARCHIVE, saveModelToS3 } from '../ml/model-store';
import { buildModel, createOptimizer } from '../ml/models';
import { defaultBudgetBytes, planMicroBatch } from '../ml/memory';
import { fitModel, predictProbabilities, type EpochLogs, type TrainPosition } from '../ml/trainer';
import { joinUri, parseS3Uri, s3Uri, type S3Store } from '../storage/s3';
import type { MlflowClient, MlflowMetric } from '../tracking/mlflow';
import { FAILURE } from '../common/failures';

export interface TrainingJob {
  input: TrainModelInput;
  /** The MLflow run this training logs to (created or found by the activity). */
  runId: string;
  /** Memory a training pass may plan to use (TRAINING_MEMORY_MB); default: 85 % of the container's limit. */
  memoryBudgetBytes?: number;
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
}

export interface TrainingHooks {
  progress(p: TrainingProgress): void;
  log(message: string): void;
  /** Polled after every batch: once true, training checkpoints and throws TrainingStoppedError. */
  shouldStop(): boolean;
}

export class TrainingStoppedError extends Error {
  override readonly name = 'TrainingStoppedError';
}

interface Checkpointed extends CheckpointInfo {
  phaseIndex: number;
  position: TrainPosition;
  foldScores: number[];
}

interface SavedResult {
  metrics: TrainedModel['metrics'];
}

export interface TrainingDeps {
  s3: S3Store;
  mlflow: MlflowClient;
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
const mb = (bytes: number) => Math.round(bytes / 2 ** 20);

export async function runTraining(
  { s3, mlflow }: TrainingDeps,
  { input, runId, memoryBudgetBytes }: TrainingJob,
  hooks: TrainingHooks,
): Promise<TrainedModel> {
  const { modelClass, hyperparams: hp, dataset } = input;
  const manifest = await s3.getJson<DatasetManifest>(dataset.manifestUri);
  const numClasses = manifest.classes.length;
  const { bucket } = parseS3Uri(dataset.manifestUri);
  const modelUri = s3Uri(bucket, `models/${input.registeredModelName}/${modelClass}/${runId}`);
  const checkpointPrefix = s3Uri(bucket, `checkpoints/${input.registeredModelName}/${modelClass}/${runId}/`);
  const resultUri = joinUri(modelUri, 'training-result.json');

  let saved = (await s3.exists(resultUri)) ? await s3.getJson<SavedResult>(resultUri) : undefined;
  if (saved) hooks.log(`${modelClass}: model and metrics already saved by an earlier attempt; registering it`);
  else saved = await trainAndSave();

  const version = await registerVersion(mlflow, input, runId, modelUri, modelClass);
  await mlflow.logBatch(runId, { tags: { model_uri: modelUri, registered_model: `${input.registeredModelName}/${version}` } });
  await deleteCheckpoints(s3, checkpointPrefix);
  await mlflow.setRunStatus(runId, 'FINISHED');
  return {
    modelClass,
    mlflowRunId: runId,
    registeredModelName: input.registeredModelName,
    version,
    metrics: saved.metrics,
    modelUri,
    archiveUri: joinUri(modelUri, MODEL_ARCHIVE),
  };

  async function trainAndSave(): Promise<SavedResult> {
    await mlflow.logBatch(runId, {
      params: {
        model_class: modelClass,
        optimizer: hp.optimizer,
        learning_rate: hp.learningRate,
        epochs: hp.epochs,
        batch_size: hp.batchSize,
        seed: hp.seed,
        loss: 'categorical_crossentropy',
        input_shape: `${manifest.imageSize}x${manifest.imageSize}x3`,
        classes: manifest.classes.join(','),
        train_size: manifest.splits.train.count,
        validation_size: manifest.splits.validation.count,
        test_size: manifest.splits.test.count,
        dataset_manifest: dataset.manifestUri,
        dataset_content_hash: dataset.contentHash,
        initial_weights: input.initialWeightsUri ?? 'none (trained from scratch)',
        ...(modelClass === 'CrossVal' ? { cv_folds: hp.crossValFolds } : {}),
      },
    });
    const [train, validation, test] = await Promise.all([
      loadSplit(s3, manifest, manifest.splits.train),
      loadSplit(s3, manifest, manifest.splits.validation),
      loadSplit(s3, manifest, manifest.splits.test),
    ]);
    assertBothClassesPresent(train, manifest.classes);

    const phases = modelClass === 'CrossVal' ? [...Array.from({ length: hp.crossValFolds }, (_, f) => `fold${f + 1}`), 'final'] : ['final'];
    let latest = await latestCheckpoint();
    const foldScores = latest?.info.foldScores ?? [];
    const folds =
      modelClass === 'CrossVal'
        ? stratifiedFolds(
            Array.from({ length: train.count }, (_, i) => i),
            (i) => train.labels[i]!,
            hp.crossValFolds,
            hp.seed,
          )
        : [];

    let finalModel: LayersModel | undefined;
    for (let p = latest?.info.phaseIndex ?? 0; p < phases.length; p++) {
      const phase = phases[p]!;
      const isFold = phase !== 'final';
      const held = isFold ? new Set(folds[p]) : undefined;
      const data = held
        ? subset(
            train,
            [...Array(train.count).keys()].filter((i) => !held.has(i)),
          )
        : train;
      const heldOut = held ? subset(train, folds[p]!) : validation;
      const model = buildModel(modelClass, { imageSize: manifest.imageSize, numClasses, seed: hp.seed });
      const optimizer = createOptimizer(hp.optimizer, hp.learningRate);
      try {
        let initial: TrainPosition | undefined;
        if (latest && latest.info.phaseIndex === p) {
          const info = (await restoreCheckpoint(latest.bytes, model, optimizer)) as Checkpointed;
          initial = info.position;
          latest = { ...latest, bytes: new Uint8Array() }; // no need to hold on to it
          hooks.log(`${modelClass} ${phase}: resuming from ${latest.uri} (epoch ${initial.epoch + 1}, batch ${initial.batch})`);
          // Where each attempt took over, as a durable record beside the run's metrics.
          await mlflow.logBatch(runId, { tags: { 'training.resumed_from': latest.uri } });
        } else if (input.initialWeightsUri) {
          const { loaded, kept } = await loadInitialWeights(s3, input.initialWeightsUri, model);
          hooks.log(
            `${modelClass} ${phase}: ${loaded} weight tensors from ${input.initialWeightsUri}${kept.length ? `; fresh head (${kept.join(', ')})` : ''}`,
          );
        }
        await trainPhase(p, phase, model, optimizer, data, heldOut, initial, foldScores);
        if (isFold) {
          const e = evaluatePredictions(await predictProbabilities(model, heldOut, numClasses), heldOut.labels, numClasses);
          foldScores[p] = e.accuracy;
          await mlflow.logBatch(runId, { metrics: [{ key: 'cv_fold_accuracy', value: e.accuracy, step: p + 1 }] });
          if (p === phases.length - 2) await logCrossValSummary(foldScores);
          model.dispose();
        } else finalModel = model;
      } catch (err) {
        model.dispose();
        throw err;
      } finally {
        optimizer.dispose();
      }
    }

    const model = finalModel!;
    try {
      hooks.progress({ phase: 'evaluating', epoch: hp.epochs, epochs: hp.epochs, batch: 0, batches: 0 });
      const [valProbs, testProbs] = [
        await predictProbabilities(model, validation, numClasses),
        await predictProbabilities(model, test, numClasses),
      ];
      if (!valProbs.every(Number.isFinite) || !testProbs.every(Number.isFinite))
        throw new TrainingDivergedError(
          `${modelClass}: the trained model's predictions are NaN or infinite; ${DIVERGED_HINT(hp.learningRate)}`,
        );
      const valEval = evaluatePredictions(valProbs, validation.labels, numClasses);
      const testEval = evaluatePredictions(testProbs, test.labels, numClasses);
      await mlflow.logBatch(runId, { metrics: [...metricList('validation_', valEval), ...metricList('test_', testEval)] });
      await mlflow.logArtifact(
        runId,
        'confusion_matrix.json',
        JSON.stringify(confusionArtifact(manifest.classes, valEval, testEval), null, 2),
      );
      hooks.progress({ phase: 'saving', epoch: hp.epochs, epochs: hp.epochs, batch: 0, batches: 0 });
      await saveModelToS3(s3, model, modelUri, { modelClass, classes: manifest.classes, imageSize: manifest.imageSize, inputScale: '0-1' });
      const result: SavedResult = { metrics: { validation: pick(valEval), test: pick(testEval) } };
      // Last: its presence means the model and its metrics are complete.
      await s3.putJson(resultUri, result);
      return result;
    } finally {
      model.dispose();
    }
  }

  async function trainPhase(
    p: number,
    phase: string,
    model: LayersModel,
    optimizer: TrainingOptimizer,
    data: LoadedSplit,
    heldOut: LoadedSplit,
    initial: TrainPosition | undefined,
    foldScores: number[],
  ): Promise<void> {
    const prefix = phase === 'final' ? '' : `${phase}_`;
    let checkpoint: string | undefined;
    const save = async (position: TrainPosition) => {
      const info: Checkpointed = { phase, phaseIndex: p, epoch: position.epoch, position, foldScores };
      const uri = `${checkpointPrefix}p${pad(p, 2)}-${phase}-e${pad(position.epoch, 4)}-b${pad(position.batch, 6)}.ckpt`;
      await s3.put(uri, await encodeCheckpoint(model, optimizer, info));
      // Older checkpoints go only once the new one is complete.
      for (const o of await s3.list(checkpointPrefix))
        if (s3.uriOf(checkpointPrefix, o.key) < uri) await s3.delete(s3.uriOf(checkpointPrefix, o.key));
      checkpoint = uri;
    };
    const batches = Math.ceil(data.count / hp.batchSize);
    const budgetBytes = memoryBudgetBytes ?? defaultBudgetBytes();
    const plan = planMicroBatch({
      modelClass,
      imageSize: data.imageSize,
      batchSize: hp.batchSize,
      budgetBytes,
      inUseBytes: process.memoryUsage().rss,
    });
    if (plan.microBatchSize < hp.batchSize || !plan.fits)
      hooks.log(
        `${modelClass} ${phase}: batches of ${hp.batchSize} run as passes of ${plan.microBatchSize} images (~${mb(plan.perImageBytes)} MB each, ` +
          `budget ${mb(budgetBytes)} MB${plan.fits ? '' : '; even one image per pass may not fit'})`,
      );
    await mlflow.logBatch(runId, { tags: { [`training.${prefix}micro_batch_size`]: String(plan.microBatchSize) } });
    let skipped = 0;
    const result = await fitModel(model, optimizer, data, {
      epochs: hp.epochs,
      batchSize: hp.batchSize,
      microBatchSize: plan.microBatchSize,
      numClasses,
      seed: hp.seed + p,
      initial,
      validation: heldOut,
      onEpochBegin: (epoch) => hooks.log(`${modelClass} ${phase}: epoch ${epoch + 1}/${hp.epochs} started`),
      onSkippedStep: (epoch, batch) => {
        skipped++;
        hooks.log(`${modelClass} ${phase}: epoch ${epoch + 1}, batch ${batch + 1}: the gradient was not finite; update skipped`);
      },
      onBatchEnd: (epoch, batch, _batches, loss) =>
        hooks.progress({ phase, epoch, epochs: hp.epochs, batch: batch + 1, batches, checkpoint, loss }),
      onEpochEnd: async (epoch, logs) => {
        await mlflow.logBatch(runId, { metrics: epochMetrics(prefix, epoch, logs) });
        // Its updates are skipped while its outputs overflow, so such a model would never recover.
        if (logs.valFinite === false)
          throw new TrainingDivergedError(
            `${modelClass} ${phase}: after epoch ${epoch + 1} the model's predictions are NaN or infinite ` +
              `(${skipped} update(s) skipped for non-finite gradients so far); ${DIVERGED_HINT(hp.learningRate)}`,
          );
        await save({ epoch: epoch + 1, batch: 0, lossSum: 0, correct: 0 });
        hooks.progress({ phase, epoch: epoch + 1, epochs: hp.epochs, batch: 0, batches, checkpoint });
      },
      shouldStop: () => hooks.shouldStop(),
    });
    if (result.stopped) {
      if (result.position.batch > 0) await save(result.position);
      throw new TrainingStoppedError(
        `${modelClass} ${phase} stopped at epoch ${result.position.epoch + 1}, batch ${result.position.batch}; checkpoint ${checkpoint}`,
      );
    }
  }

  /** The newest checkpoint of this run: names sort in the order they were written. */
  async function latestCheckpoint(): Promise<{ uri: string; bytes: Uint8Array; info: Checkpointed } | undefined> {
    const newest = (await s3.list(checkpointPrefix)).filter((o) => o.key.endsWith('.ckpt')).at(-1);
    if (!newest) return undefined;
    const uri = s3.uriOf(checkpointPrefix, newest.key);
    const bytes = await s3.getBytes(uri);
    return { uri, bytes, info: checkpointInfo(bytes) as Checkpointed };
  }

  async function logCrossValSummary(scores: number[]): Promise<void> {
    const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / scores.length);
    await mlflow.logBatch(runId, {
      metrics: [
        { key: 'cv_accuracy_mean', value: mean },
        { key: 'cv_accuracy_std', value: std },
      ],
    });
  }
}

async function deleteCheckpoints(s3: S3Store, prefix: string): Promise<void> {
  for (const o of await s3.list(prefix)) await s3.delete(s3.uriOf(prefix, o.key));
}

/** A split whose labels collapsed to one class trains a constant predictor that looks perfect. */
function assertBothClassesPresent(train: LoadedSplit, classes: string[]): void {
  const seen = new Set(train.labels);
  if (seen.size < 2) {
    throw new InvalidTrainingDataError(
      `the training split has labels of ${seen.size} class(es) only (${[...seen].map((l) => classes[l]).join(', ') || 'none'}); ` +
        `a classifier needs at least two: check the dataset's class folders`,
    );
  }
}

export class InvalidTrainingDataError extends Error {
  override readonly name = FAILURE.invalidTrainingData;
}

/** Training produced a model whose outputs are not finite: retrying the same run would reproduce it. */
export class TrainingDivergedError extends Error {
  override readonly name = FAILURE.trainingDiverged;
}

const DIVERGED_HINT = (learningRate: number) =>
  `training diverged: try a lower learningRate (this run used ${learningRate}) or check the initial weights`;

function epochMetrics(prefix: string, epoch: number, logs: EpochLogs): MlflowMetric[] {
  return Object.entries({ loss: logs.loss, accuracy: logs.accuracy, val_loss: logs.valLoss, val_accuracy: logs.valAccuracy })
    .filter((e): e is [string, number] => Number.isFinite(e[1]))
    .map(([key, value]) => ({ key: `${prefix}${key}`, value, step: epoch + 1 }));
}

function confusionArtifact(classes: string[], validation: Evaluation, test: Evaluation) {
  return { classes, rows: 'actual', columns: 'predicted', validation: validation.confusion, test: test.confusion };
}

async function registerVersion(
  mlflow: MlflowClient,
  input: TrainModelInput,
  runId: string,
  modelUri: string,
  modelClass: ModelClass,
): Promise<string> {
  await mlflow.createRegisteredModelIfAbsent(input.registeredModelName, { project: 'cnn-skin-cancer' });
  // Idempotent under retries: one version per MLflow run.
  const existing = await mlflow.searchModelVersions(`name='${input.registeredModelName}' and run_id='${runId}'`);
  if (existing[0]) return existing[0].version;
  const created = await mlflow.createModelVersion(input.registeredModelName, modelUri, runId, {
    model_class: modelClass,
    'temporal.workflow_id': input.workflowId,
  });
  return created.version;
}

/** Non-finite values (e.g. AUC of a single-class split) are reported as 0. */
function pick(e: Evaluation): ClassificationMetrics {
  const f = (x: number): number => (Number.isFinite(x) ? x : 0);
  return { loss: f(e.loss), accuracy: f(e.accuracy), precision: f(e.precision), recall: f(e.recall), f1: f(e.f1), auc: f(e.auc) };
}

function metricList(prefix: string, e: Evaluation): { key: string; value: number }[] {
  return Object.entries(pick(e)).map(([key, value]) => ({ key: `${prefix}${key}`, value }));
}
