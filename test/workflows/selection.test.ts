import { strict as assert } from 'node:assert';
import type { ClassificationMetrics, TrainedModel } from '../../src/common/types';
import { selectBestModel } from '../../src/workflows/selection';

const metrics = (accuracy: number, loss = 0.5, extra: Partial<ClassificationMetrics> = {}): ClassificationMetrics => ({
  loss,
  accuracy,
  precision: accuracy,
  recall: accuracy,
  f1: accuracy,
  auc: accuracy,
  ...extra,
});

const model = (
  modelClass: TrainedModel['modelClass'],
  validation: ClassificationMetrics,
  test: ClassificationMetrics = validation,
): TrainedModel => ({
  modelClass,
  mlflowRunId: `run-${modelClass}`,
  registeredModelName: 'm',
  version: modelClass === 'Basic' ? '1' : modelClass === 'ResNet50' ? '2' : '3',
  metrics: { validation, test },
  modelUri: `s3://b/${modelClass}`,
  archiveUri: `s3://b/${modelClass}/model.tar.gz`,
});

describe('selectBestModel', () => {
  it('picks the highest validation metric and ignores the test split', () => {
    const d = selectBestModel([model('Basic', metrics(0.8), metrics(0.99)), model('ResNet50', metrics(0.9), metrics(0.5))], 'accuracy');
    assert.equal(d.winner.modelClass, 'ResNet50');
    assert.deepEqual(
      d.scores.map((s) => s.score),
      [0.8, 0.9],
    );
    assert.match(d.reason, /ResNet50 has the best validation accuracy \(0\.9000\)/);
  });

  it('uses the configured metric', () => {
    const a = model('Basic', metrics(0.9, 0.5, { auc: 0.7 }));
    const b = model('CrossVal', metrics(0.8, 0.5, { auc: 0.95 }));
    assert.equal(selectBestModel([a, b], 'accuracy').winner.modelClass, 'Basic');
    assert.equal(selectBestModel([a, b], 'auc').winner.modelClass, 'CrossVal');
  });

  it('breaks ties on lower validation loss, then on request order', () => {
    assert.equal(
      selectBestModel([model('Basic', metrics(0.8, 0.6)), model('CrossVal', metrics(0.8, 0.4))], 'accuracy').winner.modelClass,
      'CrossVal',
    );
    assert.equal(
      selectBestModel([model('CrossVal', metrics(0.8, 0.4)), model('Basic', metrics(0.8, 0.4))], 'accuracy').winner.modelClass,
      'CrossVal',
    );
  });

  it('refuses an empty candidate list', () => {
    assert.throws(() => selectBestModel([], 'accuracy'), /no trained model/);
  });
});
