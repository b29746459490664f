import { strict as assert } from 'node:assert';
import { evaluatePredictions, rocAuc } from '../../src/ml/metrics';

describe('classification metrics', () => {
  it('computes accuracy, macro precision/recall/F1 and the confusion matrix', () => {
    // labels: 0 0 1 1; predicted: 0 1 1 1
    const probs = [0.9, 0.1, 0.4, 0.6, 0.2, 0.8, 0.3, 0.7];
    const e = evaluatePredictions(probs, [0, 0, 1, 1], 2);
    assert.deepEqual(e.confusion, [
      [1, 1],
      [0, 2],
    ]);
    assert.equal(e.accuracy, 0.75);
    assert.ok(Math.abs(e.precision - (1 + 2 / 3) / 2) < 1e-12);
    assert.ok(Math.abs(e.recall - (0.5 + 1) / 2) < 1e-12);
    assert.ok(Math.abs(e.f1 - (2 / 3 + 0.8) / 2) < 1e-12);
    assert.equal(e.auc, 1);
    assert.ok(Math.abs(e.loss - -(Math.log(0.9) + Math.log(0.4) + Math.log(0.8) + Math.log(0.7)) / 4) < 1e-12);
  });

  it('ROC AUC counts ties as half and is NaN without both classes', () => {
    assert.equal(rocAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 0.75);
    assert.equal(rocAuc([0.5, 0.5], [false, true]), 0.5);
    assert.ok(Number.isNaN(rocAuc([0.1, 0.2], [true, true])));
  });

  it('refuses mismatched shapes', () => {
    assert.throws(() => evaluatePredictions([0.5, 0.5], [0, 1], 2), /expected 4 probabilities/);
  });
});
