import { strict as assert } from 'node:assert';
import { evaluatePredictions, rocAuc, rocCurve, rocCurves, type RocPoint } from '../../src/ml/metrics';

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

  it('ROC curve: one point per distinct score, highest first, from (0,0) to (1,1)', () => {
    assert.deepEqual(rocCurve([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), [
      { fpr: 0, tpr: 0 },
      { fpr: 0, tpr: 0.5 },
      { fpr: 0.5, tpr: 0.5 },
      { fpr: 0.5, tpr: 1 },
      { fpr: 1, tpr: 1 },
    ]);
    // A tie between a positive and a negative is one diagonal step, whatever their order.
    assert.deepEqual(rocCurve([0.9, 0.5, 0.5, 0.1], [true, false, true, false]), [
      { fpr: 0, tpr: 0 },
      { fpr: 0, tpr: 0.5 },
      { fpr: 0.5, tpr: 1 },
      { fpr: 1, tpr: 1 },
    ]);
    const diagonal = [
      { fpr: 0, tpr: 0 },
      { fpr: 1, tpr: 1 },
    ];
    assert.deepEqual(rocCurve([], []), diagonal);
    assert.deepEqual(rocCurve([0.3, 0.7], [true, true]), diagonal);
    assert.deepEqual(rocCurve([0.3, 0.7], [false, false]), diagonal);
  });

  it('ROC AUC is the trapezoid area under the ROC curve, ties included', () => {
    const random = mulberry32(42);
    for (let trial = 0; trial < 300; trial++) {
      const n = 2 + Math.floor(random() * 80);
      // Few distinct scores, so that most trials have ties, many of them mixed.
      const levels = 1 + Math.floor(random() * 8);
      const scores = Array.from({ length: n }, () => Math.floor(random() * levels) / levels);
      const positive = scores.map((s) => random() < 0.3 + 0.4 * s);
      const curve = rocCurve(scores, positive);
      assert.deepEqual(curve[0], { fpr: 0, tpr: 0 });
      assert.deepEqual(curve.at(-1), { fpr: 1, tpr: 1 });
      curve.slice(1).forEach((p, i) => assert.ok(p.fpr >= curve[i]!.fpr && p.tpr >= curve[i]!.tpr, 'monotone'));
      const auc = rocAuc(scores, positive);
      if (positive.every(Boolean) || !positive.some(Boolean)) assert.ok(Number.isNaN(auc));
      else assert.ok(Math.abs(trapezoid(curve) - auc) < 1e-9, `trial ${trial}: trapezoid ${trapezoid(curve)} vs rank sum ${auc}`);
    }
  });

  it('one-vs-rest ROC curves for the classes whose AUCs evaluatePredictions averages', () => {
    const binary = [0.9, 0.1, 0.4, 0.6, 0.2, 0.8, 0.7, 0.3];
    const two = rocCurves(binary, [0, 0, 1, 1], 2);
    assert.deepEqual(
      two.map((c) => c.positive),
      [1],
    );
    assert.deepEqual(two[0]!.points, rocCurve([0.1, 0.6, 0.8, 0.3], [false, false, true, true]));
    assert.equal(two[0]!.auc, evaluatePredictions(binary, [0, 0, 1, 1], 2).auc);

    const random = mulberry32(7);
    const labels = Array.from({ length: 60 }, () => Math.floor(random() * 3));
    const probs = labels.flatMap(() => {
      const raw = [random(), random(), random()];
      const sum = raw.reduce((s, v) => s + v, 0);
      return raw.map((v) => v / sum);
    });
    const three = rocCurves(probs, labels, 3);
    assert.deepEqual(
      three.map((c) => c.positive),
      [0, 1, 2],
    );
    const meanAuc = three.reduce((s, c) => s + c.auc, 0) / 3;
    assert.ok(Math.abs(meanAuc - evaluatePredictions(probs, labels, 3).auc) < 1e-12);
    three.forEach((c) => assert.ok(Math.abs(trapezoid(c.points) - c.auc) < 1e-9));
    assert.throws(() => rocCurves([0.5], [0, 1], 2), /expected 4 probabilities/);
  });

  it('refuses mismatched shapes', () => {
    assert.throws(() => evaluatePredictions([0.5, 0.5], [0, 1], 2), /expected 4 probabilities/);
  });
});

function trapezoid(points: RocPoint[]): number {
  let area = 0;
  for (let i = 1; i < points.length; i++) area += ((points[i]!.fpr - points[i - 1]!.fpr) * (points[i]!.tpr + points[i - 1]!.tpr)) / 2;
  return area;
}

/** A small seeded PRNG, so that a failure reproduces. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
