/** Classification metrics for tests: every score but the loss equal to `accuracy` unless given. */
import type { ClassificationMetrics } from '../../src/common/types';

export const metrics = (accuracy: number, loss = 0.5, extra: Partial<ClassificationMetrics> = {}): ClassificationMetrics => ({
  loss,
  accuracy,
  precision: accuracy,
  recall: accuracy,
  f1: accuracy,
  auc: accuracy,
  ...extra,
});
