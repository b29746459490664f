/**
 * Failure types: the `type` of the ApplicationFailures that activities throw and the workflow
 * raises, and which of them no retry can fix. One list, used on both sides of the activity
 * boundary. Imported by workflow code, so free of Node built-ins and I/O.
 */
export const FAILURE = {
  /** The workflow's input or a redeploy request is malformed. */
  invalidInput: 'InvalidInputError',
  /** The dataset itself is wrong (missing split, empty class, too many undecodable files). */
  invalidDataset: 'InvalidDatasetError',
  invalidTrainingData: 'InvalidTrainingDataError',
  /** A preprocessed shard is not what its manifest says (changed or truncated after preprocessing). */
  shardIntegrity: 'ShardIntegrityError',
  /** A checkpoint that does not belong to this training (other architecture or data). */
  checkpointMismatch: 'CheckpointMismatchError',
  invalidInitialWeights: 'InvalidInitialWeightsError',
  /** The model's outputs became non-finite: the same hyper-parameters would diverge again. */
  trainingDiverged: 'TrainingDivergedError',
  /** A registry lookup named a version or alias that does not exist. */
  modelVersionNotFound: 'ModelVersionNotFoundError',
  sageMakerConfig: 'SageMakerConfigError',
  endpointRolledBack: 'EndpointRolledBackError',
  endpointFailed: 'EndpointFailedError',
  endpointPortInUse: 'EndpointPortInUseError',
  invalidDeployRequest: 'InvalidDeployRequestError',
  allTrainingsFailed: 'AllTrainingsFailedError',
  notEnoughModelsTrained: 'NotEnoughModelsTrainedError',
  redeployFailed: 'RedeployFailedError',
  /** The notification webhook refused an event for good (a 4xx other than 408 and 429): its URL or secret is wrong. */
  notificationRefused: 'NotificationRefusedError',
  /** A scheduled retraining failed, or its endpoint's run gave no outcome in time. */
  retrainingFailed: 'RetrainingFailedError',
  /** The run ended (lifetime over, or `finish`) while no deployment of it had ever succeeded. */
  neverDeployed: 'NeverDeployedError',
  /** An attempt ended because its worker is shutting down; retried on another worker. */
  workerShutdown: 'WorkerShutdownError',
} as const;

export type FailureType = (typeof FAILURE)[keyof typeof FAILURE];

/** Per activity group: the failure types its retry policy must not retry. */
export const NON_RETRYABLE = {
  data: [FAILURE.invalidDataset],
  training: [
    FAILURE.invalidDataset,
    FAILURE.invalidTrainingData,
    FAILURE.shardIntegrity,
    FAILURE.checkpointMismatch,
    FAILURE.invalidInitialWeights,
    FAILURE.trainingDiverged,
  ],
  registry: [FAILURE.modelVersionNotFound],
  deploy: [
    FAILURE.sageMakerConfig,
    FAILURE.endpointRolledBack,
    FAILURE.endpointFailed,
    FAILURE.endpointPortInUse,
    FAILURE.invalidDeployRequest,
  ],
} as const satisfies Record<string, readonly FailureType[]>;

/** Whether an error raised inside the training is one of the training's permanent failures. */
export function isPermanentTrainingFailure(name: string): boolean {
  return (NON_RETRYABLE.training as readonly string[]).includes(name);
}
