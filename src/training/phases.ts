/**
 * The phases of one training: a single `final` phase, or for CrossVal one phase per fold (trained on
 * the other folds, scored on its own) before the `final` phase on all of the training split.
 */
import type { ModelClass } from '../common/constants';
import type { ImageSource } from '../ml/image-source';
import { stratifiedFolds } from '../data/split';

export interface Phase {
  index: number;
  name: string;
  isFold: boolean;
}

export interface PhasePlan {
  phases: Phase[];
  /** The data a phase trains on and the data it is scored on after each epoch: views of the splits, nothing copied. */
  dataOf(phase: Phase): { data: ImageSource; heldOut: ImageSource };
}

export function planPhases(
  modelClass: ModelClass,
  { crossValFolds, seed }: { crossValFolds: number; seed: number },
  train: ImageSource,
  validation: ImageSource,
): PhasePlan {
  const names = modelClass === 'CrossVal' ? [...Array.from({ length: crossValFolds }, (_, f) => `fold${f + 1}`), 'final'] : ['final'];
  const phases = names.map((name, index) => ({ index, name, isFold: name !== 'final' }));
  const folds =
    modelClass === 'CrossVal'
      ? stratifiedFolds(
          Array.from({ length: train.count }, (_, i) => i),
          (i) => train.labels[i]!,
          crossValFolds,
          seed,
        )
      : [];
  return {
    phases,
    dataOf(phase) {
      if (!phase.isFold) return { data: train, heldOut: validation };
      const held = new Set(folds[phase.index]);
      return {
        data: train.subset([...Array(train.count).keys()].filter((i) => !held.has(i))),
        heldOut: train.subset(folds[phase.index]!),
      };
    },
  };
}
