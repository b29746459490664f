/** Classification metrics from predicted probabilities; pure code, no tfjs. */
import type { ClassificationMetrics } from '../common/types';

export interface Evaluation extends ClassificationMetrics {
  /** confusion[actual][predicted] */
  confusion: number[][];
}

/**
 * @param probs row-major [n, k] class probabilities
 * @param labels n integer labels in [0, k)
 */
export function evaluatePredictions(probs: ArrayLike<number>, labels: ArrayLike<number>, k: number): Evaluation {
  const n = labels.length;
  if (probs.length !== n * k)
    throw new Error(`evaluatePredictions: expected ${n * k} probabilities for ${n} samples and ${k} classes, got ${probs.length}`);
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let loss = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (probs[i * k + c]! > probs[i * k + best]!) best = c;
    confusion[labels[i]!]![best]!++;
    loss -= Math.log(Math.max(probs[i * k + labels[i]!]!, 1e-7));
  }
  let correct = 0;
  const precision: number[] = [];
  const recall: number[] = [];
  for (let c = 0; c < k; c++) {
    const tp = confusion[c]![c]!;
    correct += tp;
    const predicted = confusion.reduce((s, row) => s + row[c]!, 0);
    const actual = confusion[c]!.reduce((s, v) => s + v, 0);
    precision.push(predicted ? tp / predicted : 0);
    recall.push(actual ? tp / actual : 0);
  }
  const f1 = precision.map((p, c) => (p + recall[c]! ? (2 * p * recall[c]!) / (p + recall[c]!) : 0));
  const aucs: number[] = [];
  for (const positive of curveClasses(k)) {
    const auc = rocAuc(...oneVsRest(probs, labels, k, positive));
    if (!Number.isNaN(auc)) aucs.push(auc);
  }
  return {
    loss: n ? loss / n : NaN,
    accuracy: n ? correct / n : NaN,
    precision: mean(precision),
    recall: mean(recall),
    f1: mean(f1),
    auc: aucs.length ? mean(aucs) : NaN,
    confusion,
  };
}

/**
 * ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half. NaN if one class is absent.
 * Equals the trapezoid area under rocCurve: a tied group is one diagonal step there, which is the
 * half credit here.
 */
export function rocAuc(scores: number[], positive: boolean[]): number {
  const idx = scores.map((_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  const ranks = new Array<number>(scores.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    for (let t = i; t <= j; t++) ranks[idx[t]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  const nPos = positive.filter(Boolean).length;
  const nNeg = positive.length - nPos;
  if (!nPos || !nNeg) return NaN;
  const rankSum = positive.reduce((s, p, i) => (p ? s + ranks[i]! : s), 0);
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface RocPoint {
  fpr: number;
  tpr: number;
}

/**
 * The ROC curve from (0,0) to (1,1): one point per distinct score, highest first, so that tied
 * scores make one (diagonal) step rather than an order-dependent staircase. Without both classes
 * there is no curve to draw and only the chance diagonal's endpoints come back.
 */
export function rocCurve(scores: number[], positive: boolean[]): RocPoint[] {
  if (scores.length !== positive.length) throw new Error(`rocCurve: ${scores.length} scores but ${positive.length} labels`);
  const nPos = positive.filter(Boolean).length;
  const nNeg = positive.length - nPos;
  if (!nPos || !nNeg)
    return [
      { fpr: 0, tpr: 0 },
      { fpr: 1, tpr: 1 },
    ];
  const idx = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const points: RocPoint[] = [{ fpr: 0, tpr: 0 }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < idx.length;) {
    const score = scores[idx[i]!]!;
    for (; i < idx.length && scores[idx[i]!] === score; i++)
      if (positive[idx[i]!]) tp++;
      else fp++;
    // Divide the counts each time (no running sums of fractions) so the last point is exactly (1,1).
    points.push({ fpr: fp / nNeg, tpr: tp / nPos });
  }
  return points;
}

export interface ClassRocCurve {
  /** the class scored one-vs-rest */
  positive: number;
  points: RocPoint[];
  /** NaN when the class or all the others are absent (points is then the chance diagonal) */
  auc: number;
}

/** One-vs-rest ROC curves for the classes evaluatePredictions averages the AUC over. */
export function rocCurves(probs: ArrayLike<number>, labels: ArrayLike<number>, k: number): ClassRocCurve[] {
  if (probs.length !== labels.length * k)
    throw new Error(
      `rocCurves: expected ${labels.length * k} probabilities for ${labels.length} samples and ${k} classes, got ${probs.length}`,
    );
  return curveClasses(k).map((positive) => {
    const [scores, isPositive] = oneVsRest(probs, labels, k, positive);
    return { positive, points: rocCurve(scores, isPositive), auc: rocAuc(scores, isPositive) };
  });
}

/** For two classes only label 1: class 0's curve is its mirror image and has the same AUC. */
const curveClasses = (k: number): number[] => (k === 2 ? [1] : Array.from({ length: k }, (_, c) => c));

function oneVsRest(probs: ArrayLike<number>, labels: ArrayLike<number>, k: number, positive: number): [number[], boolean[]] {
  const n = labels.length;
  return [Array.from({ length: n }, (_, i) => probs[i * k + positive]!), Array.from({ length: n }, (_, i) => labels[i] === positive)];
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

/** The metrics as reported and compared: a non-finite value (e.g. the AUC of a single-class split) becomes 0. */
export function reportedMetrics(e: ClassificationMetrics): ClassificationMetrics {
  const f = (x: number): number => (Number.isFinite(x) ? x : 0);
  return { loss: f(e.loss), accuracy: f(e.accuracy), precision: f(e.precision), recall: f(e.recall), f1: f(e.f1), auc: f(e.auc) };
}
