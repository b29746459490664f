/**
 * Training activity (queue ml-training): one call trains one model class, tracks it in MLflow,
 * saves it to S3 and registers it as a model version.
 *
 * Retries are safe: the MLflow run id travels in the heartbeat details, so a retried attempt
 * continues the same run, and a version already registered for that run is reused.
 */
import { Context } from '@temporalio/activity';
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { ModelClass } from '../common/constants';
import type { ClassificationMetrics, TrainedModel, TrainModelInput } from '../common/types';
import { loadSplit, subset, type LoadedSplit } from '../data/dataset';
import type { DatasetManifest } from '../data/shards';
import { stratifiedFolds } from '../data/split';
import { evaluatePredictions, type Evaluation } from '../ml/metrics';
import { MODEL_ARCHIVE, saveModelToS3 } from '../ml/model-store';
import { buildModel, compileModel } from '../ml/models';
import { fitModel, predictProbabilities } from '../ml/trainer';
import { joinUri, parseS3Uri, s3Uri, type S3Store } from '../storage/s3';
import type { MlflowClient } from '../tracking/mlflow';

export interface TrainingDeps {
  s3: S3Store;
  mlflow: MlflowClient;
}

interface TrainingHeartbeat {
  mlflowRunId: string;
  epoch: number;
  stage: string;
}

export function createTrainingActivities({ s3, mlflow }: TrainingDeps) {
  return {
    async trainModel(input: TrainModelInput): Promise<TrainedModel> {
      const ctx = Context.current();
      const { modelClass, hyperparams: hp, dataset } = input;
      const manifest = await s3.getJson<DatasetManifest>(dataset.manifestUri);
      const numClasses = manifest.classes.length;

      const experimentId = await mlflow.getOrCreateExperiment(input.experimentName);
      const previous = ctx.info.heartbeatDetails as TrainingHeartbeat | undefined;
      const runId = previous?.mlflowRunId ?? (await mlflow.createRun(experimentId, modelClass, runTags(input, ctx))).run_id;
      const beat = (stage: string, epoch = 0): void => ctx.heartbeat({ mlflowRunId: runId, epoch, stage } satisfies TrainingHeartbeat);
      beat('loading data');
      if (previous) {
        await mlflow.setRunStatus(runId, 'RUNNING');
        await mlflow.logBatch(runId, { tags: { 'temporal.resumed_attempt': String(ctx.info.attempt) } });
      }

      try {
        await mlflow.logBatch(runId, {
          params: {
            model_class: modelClass,
            optimizer: hp.optimizer,
            learning_rate: hp.learningRate,
            epochs: hp.epochs,
            batch_size: hp.batchSize,
            seed: hp.seed,
            input_shape: `${manifest.imageSize}x${manifest.imageSize}x3`,
            classes: manifest.classes.join(','),
            train_size: manifest.splits.train.count,
            validation_size: manifest.splits.validation.count,
            test_size: manifest.splits.test.count,
            dataset_manifest: dataset.manifestUri,
            ...(modelClass === 'CrossVal' ? { cv_folds: hp.crossValFolds } : {}),
          },
        });
        const [train, validation, test] = await Promise.all([
          loadSplit(s3, manifest, manifest.splits.train),
          loadSplit(s3, manifest, manifest.splits.validation),
          loadSplit(s3, manifest, manifest.splits.test),
        ]);

        const spec = { imageSize: manifest.imageSize, numClasses, seed: hp.seed };
        const train1 = async (data: LoadedSplit, val: LoadedSplit | undefined, metricPrefix: string) => {
          const model = buildModel(modelClass, spec);
          compileModel(model, hp.optimizer, hp.learningRate);
          await fitModel(model, data, {
            epochs: hp.epochs,
            batchSize: hp.batchSize,
            numClasses,
            validation: val,
            onBatchEnd: (epoch) => beat(`training ${metricPrefix || 'final model'}`, epoch),
            shouldStop: () => ctx.cancellationSignal.aborted,
            onEpochEnd: async (epoch, logs) => {
              const metrics = Object.entries({
                loss: logs.loss,
                accuracy: logs.accuracy,
                val_loss: logs.valLoss,
                val_accuracy: logs.valAccuracy,
              })
                .filter((e): e is [string, number] => Number.isFinite(e[1]))
                .map(([key, value]) => ({ key: `${metricPrefix}${key}`, value, step: epoch + 1 }));
              await mlflow.logBatch(runId, { metrics });
            },
          });
          if (ctx.cancellationSignal.aborted) {
            model.dispose();
            throw ctx.cancellationSignal.reason;
          }
          return model;
        };

        if (modelClass === 'CrossVal')
          await crossValidate(train, hp.crossValFolds, hp.seed, numClasses, train1, (m) => mlflow.logBatch(runId, { metrics: m }));

        const model = await train1(train, validation, '');
        beat('evaluating', hp.epochs);
        const valEval = evaluatePredictions(await predictProbabilities(model, validation, numClasses), validation.labels, numClasses);
        const testEval = evaluatePredictions(await predictProbabilities(model, test, numClasses), test.labels, numClasses);
        await mlflow.logBatch(runId, { metrics: [...metricList('validation_', valEval), ...metricList('test_', testEval)] });

        beat('saving', hp.epochs);
        const { bucket } = parseS3Uri(dataset.manifestUri);
        const modelUri = s3Uri(bucket, `models/${input.registeredModelName}/${modelClass}/${runId}`);
        await saveModelToS3(s3, model, modelUri, {
          modelClass,
          classes: manifest.classes,
          imageSize: manifest.imageSize,
          inputScale: '0-1',
        });
        model.dispose();

        const version = await registerVersion(mlflow, input, runId, modelUri, modelClass);
        await mlflow.logBatch(runId, {
          tags: {
            model_uri: modelUri,
            registered_model: `${input.registeredModelName}/${version}`,
            confusion_matrix_val: JSON.stringify(valEval.confusion),
          },
        });
        await mlflow.setRunStatus(runId, 'FINISHED');
        return {
          modelClass,
          mlflowRunId: runId,
          registeredModelName: input.registeredModelName,
          version,
          metrics: { validation: pick(valEval), test: pick(testEval) },
          modelUri,
          archiveUri: joinUri(modelUri, MODEL_ARCHIVE),
        };
      } catch (err) {
        // A retried attempt sets the run back to RUNNING; no run is left RUNNING by a failure.
        await mlflow.setRunStatus(runId, ctx.cancellationSignal.aborted ? 'KILLED' : 'FAILED').catch(() => undefined);
        throw err;
      }
    },
  };
}

type Train1 = (data: LoadedSplit, val: LoadedSplit | undefined, prefix: string) => Promise<LayersModel>;

/** k-fold cross-validation on the training split; logs each fold's score and their mean and std. */
async function crossValidate(
  train: LoadedSplit,
  k: number,
  seed: number,
  numClasses: number,
  train1: Train1,
  log: (metrics: { key: string; value: number; step?: number }[]) => Promise<void>,
): Promise<void> {
  const indices = Array.from({ length: train.count }, (_, i) => i);
  const folds = stratifiedFolds(indices, (i) => train.labels[i]!, k, seed);
  const scores: number[] = [];
  for (let f = 0; f < k; f++) {
    const held = new Set(folds[f]);
    const foldTrain = subset(
      train,
      indices.filter((i) => !held.has(i)),
    );
    const foldVal = subset(train, folds[f]!);
    const model = await train1(foldTrain, foldVal, `fold${f + 1}_`);
    const evaluation = evaluatePredictions(await predictProbabilities(model, foldVal, numClasses), foldVal.labels, numClasses);
    model.dispose();
    scores.push(evaluation.accuracy);
    await log([{ key: 'cv_fold_accuracy', value: evaluation.accuracy, step: f + 1 }]);
  }
  const mean = scores.reduce((s, x) => s + x, 0) / k;
  const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / k);
  await log([
    { key: 'cv_accuracy_mean', value: mean },
    { key: 'cv_accuracy_std', value: std },
  ]);
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

function runTags(input: TrainModelInput, ctx: Context): Record<string, string> {
  return {
    model_class: input.modelClass,
    'temporal.workflow_id': input.workflowId,
    'temporal.workflow_run_id': ctx.info.workflowExecution?.runId ?? '',
    'temporal.activity_id': ctx.info.activityId,
  };
}

/** Non-finite values (e.g. AUC of a single-class split) are reported as 0. */
function pick(e: Evaluation): ClassificationMetrics {
  const f = (x: number): number => (Number.isFinite(x) ? x : 0);
  return { loss: f(e.loss), accuracy: f(e.accuracy), precision: f(e.precision), recall: f(e.recall), f1: f(e.f1), auc: f(e.auc) };
}

function metricList(prefix: string, e: Evaluation): { key: string; value: number }[] {
  return Object.entries(pick(e)).map(([key, value]) => ({ key: `${prefix}${key}`, value }));
}
