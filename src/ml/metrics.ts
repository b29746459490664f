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
  for (let c = 0; c < (k === 2 ? 1 : k); c++) {
    // For two classes the positive class is label 1 (its AUC equals class 0's).
    const positive = k === 2 ? 1 : c;
    const auc = rocAuc(
      Array.from({ length: n }, (_, i) => probs[i * k + positive]!),
      Array.from({ length: n }, (_, i) => labels[i] === positive),
    );
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

/** ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half. NaN if one class is absent. */
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

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
