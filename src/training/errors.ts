/** How a training ends when it does not return a model. */
import { FAILURE } from '../common/failures';

/** The run was asked to stop (its worker shuts down or its attempt is gone); a checkpoint holds its place. */
export class TrainingStoppedError extends Error {
  override readonly name = 'TrainingStoppedError';
}

/** A later attempt of the same training took it over (this one had lost its activity); see fence.ts. */
export class TrainingSupersededError extends Error {
  override readonly name = 'TrainingSupersededError';
}

export class InvalidTrainingDataError extends Error {
  override readonly name = FAILURE.invalidTrainingData;
}

/** Training produced a model whose outputs are not finite: retrying the same run would reproduce it. */
export class TrainingDivergedError extends Error {
  override readonly name = FAILURE.trainingDiverged;
}

export const divergedHint = (learningRate: number): string =>
  `training diverged: try a lower learningRate (this run used ${learningRate}) or check the initial weights`;
