/**
 * Model selection: pure and deterministic, so it runs inside workflow code.
 * Only validation metrics are considered; the test split is reported, never used to choose.
 */
import type { SelectionMetric } from '../common/constants';
import type { TrainedModel } from '../common/types';

export interface SelectionDecision {
  metric: SelectionMetric;
  winner: TrainedModel;
  /** Every candidate's validation score, in the order they were requested. */
  scores: { modelClass: string; score: number }[];
  reason: string;
}

/**
 * Highest validation `metric` wins. Ties (within 1e-9) go to the lower validation loss, then to
 * the model requested first, so the choice never depends on the order trainings finished in.
 */
export function selectBestModel(candidates: readonly TrainedModel[], metric: SelectionMetric): SelectionDecision {
  if (candidates.length === 0) throw new Error('selectBestModel: no trained model to choose from');
  const scores = candidates.map((c) => ({ modelClass: c.modelClass, score: c.metrics.validation[metric] }));
  let winner = candidates[0]!;
  for (const c of candidates.slice(1)) {
    const diff = c.metrics.validation[metric] - winner.metrics.validation[metric];
    if (diff > 1e-9 || (Math.abs(diff) <= 1e-9 && c.metrics.validation.loss < winner.metrics.validation.loss)) winner = c;
  }
  const others = scores.filter((s) => s.modelClass !== winner.modelClass);
  const reason =
    `${winner.modelClass} has the best validation ${metric} (${fmt(winner.metrics.validation[metric])})` +
    (others.length ? `; others: ${others.map((s) => `${s.modelClass} ${fmt(s.score)}`).join(', ')}` : '');
  return { metric, winner, scores, reason };
}

const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : String(x));
