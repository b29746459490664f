/** Error types that cross the activity boundary. Their `name` is the ApplicationFailure type. */
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from './failures';

/** The dataset itself is wrong (missing split, empty class, ...): retrying cannot help. */
export function invalidDataset(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, FAILURE.invalidDataset);
}

/** A registry lookup named a version or alias that does not exist. */
export function modelVersionNotFound(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, FAILURE.modelVersionNotFound);
}
