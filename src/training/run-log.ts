/** What one training records in MLflow: its parameters, per-epoch curves, evaluations and registered version. */
import type { ModelClass } from '../common/constants';
import type { TrainModelInput } from '../common/types';
import type { DatasetManifest } from '../data/shards';
import { reportedMetrics, rocCurves, type Evaluation } from '../ml/metrics';
import { confusionMatrixPng, rocCurvePng } from '../ml/plots';
import type { EpochLogs } from '../ml/trainer';
import { isTransientMlflowError, type MlflowClient, type MlflowMetric } from '../tracking/mlflow';

/** Rounds of search-then-create registerVersion makes when a create's answer is lost. */
const REGISTER_ATTEMPTS = 3;

/** A split as the final model scored it. */
export interface ScoredSplit {
  evaluation: Evaluation;
  /** Row-major [n, classes] predicted probabilities. */
  probabilities: ArrayLike<number>;
  labels: ArrayLike<number>;
}

export interface RegisteredVersion {
  version: string;
  /** The version's model files (MLflow's `source`). */
  source: string;
}

export class TrainingRunLog {
  constructor(
    private readonly mlflow: MlflowClient,
    readonly runId: string,
  ) {}

  async params(input: TrainModelInput, manifest: DatasetManifest): Promise<void> {
    const { modelClass, hyperparams: hp, dataset } = input;
    await this.mlflow.logBatch(this.runId, {
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
        ...(modelClass !== 'ResNet50'
          ? {
              kernel_initializer: hp.kernelInitializer ?? 'glorot_uniform',
              dense_initializer: hp.denseInitializer ?? 'normal',
            }
          : {}),
        ...(modelClass === 'CrossVal' ? { cv_folds: hp.crossValFolds } : {}),
      },
    });
  }

  tags(tags: Record<string, string>): Promise<void> {
    return this.mlflow.logBatch(this.runId, { tags });
  }

  /** One step of the training curves; a fold's curves carry its name as a prefix (`fold2_val_loss`). */
  epoch(phasePrefix: string, epoch: number, logs: EpochLogs): Promise<void> {
    const metrics: MlflowMetric[] = Object.entries({
      loss: logs.loss,
      accuracy: logs.accuracy,
      val_loss: logs.valLoss,
      val_accuracy: logs.valAccuracy,
    })
      .filter((e): e is [string, number] => Number.isFinite(e[1]))
      .map(([key, value]) => ({ key: `${phasePrefix}${key}`, value, step: epoch + 1 }));
    return this.mlflow.logBatch(this.runId, { metrics });
  }

  foldAccuracy(foldIndex: number, accuracy: number): Promise<void> {
    return this.mlflow.logBatch(this.runId, { metrics: [{ key: 'cv_fold_accuracy', value: accuracy, step: foldIndex + 1 }] });
  }

  crossValSummary(scores: number[]): Promise<void> {
    const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / scores.length);
    return this.mlflow.logBatch(this.runId, {
      metrics: [
        { key: 'cv_accuracy_mean', value: mean },
        { key: 'cv_accuracy_std', value: std },
      ],
    });
  }

  /**
   * The final model's validation and test metrics; its confusion matrices as data, and for each
   * split a confusion-matrix and a ROC-curve PNG (`plots/`), shown by MLflow's artifact viewer.
   */
  async evaluation(classes: string[], splits: { validation: ScoredSplit; test: ScoredSplit }): Promise<void> {
    const { validation, test } = splits;
    const list = (prefix: string, e: Evaluation) =>
      Object.entries(reportedMetrics(e)).map(([key, value]) => ({ key: `${prefix}${key}`, value }));
    await this.mlflow.logBatch(this.runId, { metrics: [...list('validation_', validation.evaluation), ...list('test_', test.evaluation)] });
    const confusion = {
      classes,
      rows: 'actual',
      columns: 'predicted',
      validation: validation.evaluation.confusion,
      test: test.evaluation.confusion,
    };
    await this.mlflow.logArtifact(this.runId, 'confusion_matrix.json', JSON.stringify(confusion, null, 2));
    for (const [name, split] of Object.entries(splits)) {
      const matrix = confusionMatrixPng(classes, split.evaluation.confusion, `${name} confusion matrix`);
      await this.mlflow.logArtifact(this.runId, `plots/confusion_matrix_${name}.png`, matrix, 'image/png');
      const curves = rocCurves(split.probabilities, split.labels, classes.length).map((c) => ({
        label: classes[c.positive]!,
        points: c.points,
        auc: c.auc,
      }));
      await this.mlflow.logArtifact(this.runId, `plots/roc_${name}.png`, rocCurvePng(curves, `${name} ROC curve`), 'image/png');
    }
  }

  /**
   * Idempotent under retries: one registered version per MLflow run. A create whose answer was
   * lost (connection reset, timeout) may have happened, so it is not simply repeated: the search
   * by run id goes first again, and only finds nothing when the create did not happen. Before, such
   * a loss failed the whole training attempt (the next attempt's search found the version).
   */
  async registerVersion(input: TrainModelInput, modelUri: string, modelClass: ModelClass): Promise<RegisteredVersion> {
    await this.mlflow.createRegisteredModelIfAbsent(input.registeredModelName, { project: 'cnn-skin-cancer' });
    for (let attempt = 1; ; attempt++) {
      const existing = await this.registeredVersion(input);
      if (existing) return existing;
      try {
        const created = await this.mlflow.createModelVersion(input.registeredModelName, modelUri, this.runId, {
          model_class: modelClass,
          'temporal.workflow_id': input.workflowId,
        });
        return { version: created.version, source: created.source };
      } catch (err) {
        if (attempt >= REGISTER_ATTEMPTS || !isTransientMlflowError(err)) throw err;
      }
    }
  }

  /** This run's registered version and where its files are, if it has one. */
  async registeredVersion(input: TrainModelInput): Promise<RegisteredVersion | undefined> {
    const [existing] = await this.mlflow.searchModelVersions(`name='${input.registeredModelName}' and run_id='${this.runId}'`);
    return existing ? { version: existing.version, source: existing.source } : undefined;
  }

  finished(): Promise<void> {
    return this.mlflow.setRunStatus(this.runId, 'FINISHED');
  }
}
