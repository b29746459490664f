/**
 * Model selection: pure and deterministic, so it runs inside workflow code.
 * Only validation metrics are considered; the test split is reported, never used to choose.
 */
import type { SelectionMetric } from '../common/constants';
import type { ChampionEvaluation, TrainedModel } from '../common/types';

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

/** The champion/challenger gate's verdict, with both scores. */
export interface ChampionDecision {
  outcome: 'promote' | 'keep-champion';
  metric: SelectionMetric;
  challengerVersion: string;
  challengerScore: number;
  championVersion?: string;
  championScore?: number;
  minImprovement: number;
  reason: string;
}

/**
 * The new best replaces the champion only if it scores at least `minImprovement` more on the same
 * validation data. No champion, or one that cannot be scored on this data (other input size or
 * classes, artifacts gone), lets the new best through; the reason says which.
 */
export function championGate(
  challenger: TrainedModel,
  champion: ChampionEvaluation | undefined,
  metric: SelectionMetric,
  minImprovement: number,
): ChampionDecision {
  const challengerScore = challenger.metrics.validation[metric];
  const base = { metric, challengerVersion: challenger.version, challengerScore, minImprovement };
  if (!champion) return { ...base, outcome: 'promote', reason: 'no champion yet' };
  if (champion.version === challenger.version)
    return { ...base, outcome: 'promote', championVersion: champion.version, reason: 'already the champion' };
  if (!champion.comparable || !champion.metrics) {
    return { ...base, outcome: 'promote', championVersion: champion.version, reason: `champion not comparable: ${champion.reason}` };
  }
  const championScore = champion.metrics[metric];
  const gain = challengerScore - championScore;
  const promote = gain >= minImprovement - 1e-9;
  return {
    ...base,
    outcome: promote ? 'promote' : 'keep-champion',
    championVersion: champion.version,
    championScore,
    reason:
      `v${challenger.version} ${metric} ${fmt(challengerScore)} vs champion v${champion.version} ${fmt(championScore)}: ` +
      `${gain >= 0 ? '+' : ''}${fmt(gain)} ${promote ? '>=' : '<'} required ${fmt(minImprovement)}`,
  };
}
