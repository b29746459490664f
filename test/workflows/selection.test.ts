import { strict as assert } from 'node:assert';
import type { ClassificationMetrics, TrainedModel } from '../../src/common/types';
import { championGate, selectBestModel } from '../../src/workflows/selection';
import { appendBounded, STATUS_HISTORY_LIMIT } from '../../src/workflows/status';
import { metrics } from '../helpers/metrics';

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

describe('championGate', () => {
  const challenger = model('Basic', metrics(0.85));
  const champion = (accuracy: number) => ({ version: '9', modelUri: 's3://b/9', comparable: true, metrics: metrics(accuracy) });

  it('promotes when there is no champion', () => {
    assert.deepEqual([championGate(challenger, undefined, 'accuracy', 0.1).outcome], ['promote']);
  });

  it('promotes only with at least minImprovement over the champion on the same data, recording both scores', () => {
    const d = championGate(challenger, champion(0.8), 'accuracy', 0.05);
    assert.deepEqual([d.outcome, d.challengerScore, d.championScore, d.championVersion], ['promote', 0.85, 0.8, '9']);
    const kept = championGate(challenger, champion(0.8), 'accuracy', 0.06);
    assert.equal(kept.outcome, 'keep-champion');
    assert.match(kept.reason, /v1 accuracy 0\.8500 vs champion v9 0\.8000: \+0\.0500 < required 0\.0600/);
    assert.equal(championGate(challenger, champion(0.85), 'accuracy', 0).outcome, 'promote', 'a tie passes a zero threshold');
    assert.equal(championGate(challenger, champion(0.9), 'accuracy', 0).outcome, 'keep-champion');
  });

  it('uses the selection metric', () => {
    const c = { ...champion(0.8), metrics: metrics(0.8, 0.5, { auc: 0.99 }) };
    assert.equal(championGate(challenger, c, 'accuracy', 0).outcome, 'promote');
    assert.equal(championGate(challenger, c, 'auc', 0).outcome, 'keep-champion');
  });

  it('promotes over a champion that cannot be scored on this data, saying why', () => {
    const d = championGate(
      challenger,
      { version: '9', modelUri: 's3://b/9', comparable: false, reason: 'takes 64 px images' },
      'accuracy',
      0.5,
    );
    assert.equal(d.outcome, 'promote');
    assert.match(d.reason, /not comparable: takes 64 px/);
  });
});

describe('appendBounded (the status keeps the newest deployments and redeploys)', () => {
  it('keeps the newest STATUS_HISTORY_LIMIT entries, oldest first', () => {
    const list: number[] = [];
    for (let i = 1; i <= STATUS_HISTORY_LIMIT + 7; i++) appendBounded(list, i);
    assert.equal(list.length, STATUS_HISTORY_LIMIT);
    assert.deepEqual([list[0], list.at(-1)], [8, STATUS_HISTORY_LIMIT + 7]);
  });
  it('keeps everything below the limit', () => {
    const list = [1, 2];
    appendBounded(list, 3, 5);
    assert.deepEqual(list, [1, 2, 3]);
  });
});
