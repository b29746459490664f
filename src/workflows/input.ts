/**
 * The pipeline's input: defaults equal to the original Airflow DAG's parameters, and a strict validator whose
 * errors name the offending field. Pure code, shared by the workflow and by clients.
 */
import {
  DEPLOY_TARGETS,
  INITIALIZERS,
  INSTANCE_TYPE_PATTERN,
  MODEL_CLASSES,
  OPTIMIZERS,
  SELECTION_METRICS,
  type DeployTarget,
  type InitializerName,
  type ModelClass,
  type OptimizerName,
  type SelectionMetric,
} from '../common/constants';
import type { RedeployRequest } from './messages';
import { FAILURE } from '../common/failures';

export interface PipelineParams {
  /** S3 prefix holding `train/<class>/*` and `test/<class>/*` images. */
  dataUri: string;
  /** Number of classes the dataset must have (its folder names become the labels). */
  numClasses: number;
  /** Images are resized to imageSize x imageSize x 3. */
  imageSize: number;
  optimizer: OptimizerName;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Share of `train/` held out (stratified, seeded) for validation and model selection. */
  validationSplit: number;
  /** Share of undecodable files tolerated (skipped and listed) before preprocessing fails. */
  maxSkippedFraction: number;
  models: ModelClass[];
  /** The run goes on to selection while at least this many trainings succeeded. */
  minSuccessfulModels: number;
  crossValFolds: number;
  seed: number;
  /**
   * How the Basic CNN's (and CrossVal's) convolution and output kernels are drawn, by Keras name
   * (the DAG's `kernel_initializer_glob`); ResNet50 draws its own (he_normal).
   */
  kernelInitializer: InitializerName;
  /** How the Basic CNN's hidden dense kernel is drawn (the DAG's `kernel_initializer_norm`). */
  denseInitializer: InitializerName;
  /** Initial ResNet50 weights: an S3 prefix with a tfjs layers model (model.json + weights) of the same architecture. */
  resnetWeightsUri?: string;
  selectionMetric: SelectionMetric;
  /** How much the new best must beat the registry's champion (on the same validation data) by. */
  minImprovement: number;
  experimentName: string;
  /**
   * The MLflow registered model whose versions, `champion` and `previous-champion` this endpoint
   * trains, keeps and rolls back to. Defaults to the endpoint's name, so two endpoints never
   * promote into, or serve from, each other's champion; name the same one only to share it.
   */
  registeredModelName: string;
  deployTarget: DeployTarget;
  endpointName: string;
  /** SageMaker sizing for this endpoint; unset means the worker's SAGEMAKER_INSTANCE_TYPE / _COUNT. */
  instanceType?: string;
  instanceCount?: number;
  /** How long the workflow stays alive after deploying, to serve `redeploy` signals. 0 ends at once. */
  lifetimeSeconds: number;
  /**
   * When the run ends (`finish`, or its lifetime is over): delete its SageMaker endpoint, with its
   * configs and models. Otherwise a SageMaker endpoint stays in service (and billing). A local
   * endpoint always stops then; with lifetimeSeconds 0 nothing is stopped or deleted (the
   * deployment is the run's result).
   */
  deleteEndpointAtEnd: boolean;
  /**
   * While serving, how often the workflow checks whether a newer worker build became current, to
   * continue as new onto it (Worker Versioning); an old build drains within this after its runs' pipelines end.
   */
  versionCheckSeconds: number;
  /**
   * While serving, how often the run checks its endpoint: a crashed or hung local server is started
   * again, and the `status` query's `endpoint` says what the last check found.
   */
  endpointCheckSeconds: number;
  /**
   * Retrain once this many images have arrived under `dataUri` since the data the last training
   * read (docs/retraining.md); 0: never for that reason.
   */
  retrainOnNewImages: number;
  /** How often the run counts the images under `dataUri`, while retrainOnNewImages is set. */
  newImagesCheckSeconds: number;
  /** Whether a model that passed the gate waits for a person's `approve` before it serves (docs/retraining.md#approval). */
  approval: ApprovalPolicy;
  /** How often the run compares what its endpoint saw with the training data (docs/drift.md); 0: never. */
  driftCheckHours: number;
  /** The population stability index above which the endpoint has drifted: announced, and retrained with retrainOnDrift. */
  driftThreshold: number;
  retrainOnDrift: boolean;
}

export interface ApprovalPolicy {
  required: boolean;
  /** How long a model waits for a decision before `onTimeout` decides. */
  timeoutHours: number;
  onTimeout: 'approve' | 'reject';
}

export type PipelineInput = Partial<PipelineParams> & {
  /**
   * The original Airflow DAG's `model_params` (Keras names: `num_classes`, `input_shape`, `epochs`,
   * ...), mapped onto the fields above (docs/airflow.md); a field given both ways must agree.
   */
  model_params?: Record<string, unknown>;
};

/** The validated parameters, and the input keys accepted without effect here (e.g. `model_params.verbose`). */
export interface ParsedPipelineInput {
  params: PipelineParams;
  ignored: string[];
}

export const DEFAULT_PARAMS: Readonly<PipelineParams> = Object.freeze({
  dataUri: 's3://cnn-skin-cancer/data',
  numClasses: 2,
  imageSize: 224,
  optimizer: 'adam',
  epochs: 2,
  batchSize: 64,
  learningRate: 1e-5,
  validationSplit: 0.2,
  maxSkippedFraction: 0.05,
  models: [...MODEL_CLASSES],
  minSuccessfulModels: 1,
  crossValFolds: 3,
  seed: 42,
  kernelInitializer: 'glorot_uniform',
  denseInitializer: 'normal',
  selectionMetric: 'accuracy',
  minImprovement: 0,
  experimentName: 'cnn_skin_cancer',
  // The default endpoint's; other endpoints default to their own name (parsePipelineInput).
  registeredModelName: 'cnn-skin-cancer',
  deployTarget: 'local',
  endpointName: 'cnn-skin-cancer',
  lifetimeSeconds: 7 * 24 * 3600,
  deleteEndpointAtEnd: false,
  versionCheckSeconds: 600,
  endpointCheckSeconds: 120,
  retrainOnNewImages: 0,
  newImagesCheckSeconds: 3600,
  approval: Object.freeze({ required: false, timeoutHours: 72, onTimeout: 'reject' }),
  driftCheckHours: 0,
  driftThreshold: 0.2,
  retrainOnDrift: false,
});

export class InvalidInputError extends Error {
  override readonly name = FAILURE.invalidInput;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`invalid input '${field}': ${message}`);
  }
}

type Check = (value: unknown, field: string) => unknown;

const int =
  (min: number, max: number): Check =>
  (v, f) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidInputError(f, `expected an integer, got ${show(v)}`);
    if (v < min || v > max) throw new InvalidInputError(f, `must be between ${min} and ${max}, got ${v}`);
    return v;
  };

const num =
  (min: number, max: number, { exclusiveMin = false } = {}): Check =>
  (v, f) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidInputError(f, `expected a number, got ${show(v)}`);
    if ((exclusiveMin ? v <= min : v < min) || v > max) {
      throw new InvalidInputError(f, `must be ${exclusiveMin ? 'greater than' : 'at least'} ${min} and at most ${max}, got ${v}`);
    }
    return v;
  };

const str =
  (pattern: RegExp, hint: string): Check =>
  (v, f) => {
    if (typeof v !== 'string') throw new InvalidInputError(f, `expected a string, got ${show(v)}`);
    if (!pattern.test(v)) throw new InvalidInputError(f, `${hint}, got ${show(v)}`);
    return v;
  };

const oneOf =
  (options: readonly string[]): Check =>
  (v, f) => {
    if (typeof v !== 'string' || !options.includes(v)) {
      throw new InvalidInputError(f, `expected one of ${options.map((o) => `'${o}'`).join(', ')}, got ${show(v)}`);
    }
    return v;
  };

const bool: Check = (v, f) => {
  if (typeof v !== 'boolean') throw new InvalidInputError(f, `expected true or false, got ${show(v)}`);
  return v;
};

const optional =
  (check: Check): Check =>
  (v, f) =>
    v === undefined ? undefined : check(v, f);

const modelList: Check = (v, f) => {
  if (!Array.isArray(v) || v.length === 0) throw new InvalidInputError(f, `expected a non-empty list of model classes, got ${show(v)}`);
  v.forEach((m, i) => oneOf(MODEL_CLASSES)(m, `${f}[${i}]`));
  if (new Set(v).size !== v.length) throw new InvalidInputError(f, `lists a model class twice: ${show(v)}`);
  return [...(v as string[])];
};

/** A string of at most `max` characters, then `check`: a pattern alone would let any length through. */
const short =
  (max: number, check: Check): Check =>
  (v, f) => {
    if (typeof v === 'string' && v.length > max) throw new InvalidInputError(f, `expected at most ${max} characters, got ${v.length}`);
    return check(v, f);
  };

/** SageMaker sizing, in the input and in redeploy requests. */
const SIZING_CHECKS = {
  instanceType: optional(short(64, str(INSTANCE_TYPE_PATTERN, 'expected a SageMaker instance type such as ml.m5.large'))),
  instanceCount: optional(int(1, 100)),
};

const CHECKS: { [K in keyof PipelineParams]: Check } = {
  dataUri: str(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'expected an S3 URI like s3://bucket/prefix'),
  numClasses: int(2, 1000),
  imageSize: int(8, 512),
  optimizer: oneOf(OPTIMIZERS),
  epochs: int(1, 1000),
  batchSize: int(1, 4096),
  learningRate: num(0, 1, { exclusiveMin: true }),
  validationSplit: num(0.05, 0.5),
  maxSkippedFraction: num(0, 1),
  models: modelList,
  minSuccessfulModels: int(1, MODEL_CLASSES.length),
  crossValFolds: int(2, 10),
  seed: int(0, 2 ** 31 - 1),
  kernelInitializer: oneOf(INITIALIZERS),
  denseInitializer: oneOf(INITIALIZERS),
  resnetWeightsUri: optional(
    str(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/, 'expected an S3 URI like s3://bucket/weights/resnet50'),
  ),
  selectionMetric: oneOf(SELECTION_METRICS),
  minImprovement: num(0, 1),
  experimentName: str(/^[\w .\-/]{1,200}$/, 'expected 1-200 letters, digits, spaces or . _ - /'),
  registeredModelName: str(/^[\w.-]{1,200}$/, 'expected 1-200 letters, digits or . _ -'),
  deployTarget: oneOf(DEPLOY_TARGETS),
  // SageMaker's endpoint name rule, so the same name works on every target.
  endpointName: str(/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/, 'expected 1-63 letters, digits or inner hyphens'),
  ...SIZING_CHECKS,
  lifetimeSeconds: int(0, 365 * 24 * 3600),
  deleteEndpointAtEnd: bool,
  versionCheckSeconds: int(1, 24 * 3600),
  endpointCheckSeconds: int(5, 24 * 3600),
  retrainOnNewImages: int(0, 100_000_000),
  newImagesCheckSeconds: int(5, 7 * 24 * 3600),
  driftCheckHours: num(0, 30 * 24),
  driftThreshold: num(0, 10, { exclusiveMin: true }),
  retrainOnDrift: bool,
  approval: (v, f) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new InvalidInputError(
        f,
        `expected an object like {"required": true, "timeoutHours": 72, "onTimeout": "reject"}, got ${show(v)}`,
      );
    }
    const { required, timeoutHours, onTimeout, ...rest } = v as Record<string, unknown>;
    const unknown = Object.keys(rest);
    if (unknown.length)
      throw new InvalidInputError(`${f}.${unknown[0]}`, 'unknown field; approval takes required, timeoutHours and onTimeout');
    const d = DEFAULT_PARAMS.approval;
    return {
      required: bool(required ?? d.required, `${f}.required`),
      // A year at most: the wait is a durable timer, and a decision that never comes is a decision too.
      timeoutHours: num(0, 365 * 24, { exclusiveMin: true })(timeoutHours ?? d.timeoutHours, `${f}.timeoutHours`),
      onTimeout: oneOf(['approve', 'reject'])(onTimeout ?? d.onTimeout, `${f}.onTimeout`),
    };
  },
};

/** Applies defaults and validates; throws InvalidInputError naming the first bad field. */
export function parsePipelineInput(raw: unknown, options: ParseOptions = {}): PipelineParams {
  return parsePipelineInputWithNotes(raw, options).params;
}

export interface ParseOptions {
  /**
   * Every endpoint shares the registered model `cnn-skin-cancer` when the input names none: how
   * runs started before registered models were per endpoint resolved it.
   */
  sharedRegisteredModel?: boolean;
}

/** parsePipelineInput, also naming the input keys it accepted without effect (the Airflow DAG's `verbose`, ...). */
export function parsePipelineInputWithNotes(raw: unknown, options: ParseOptions = {}): ParsedPipelineInput {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidInputError('input', `expected a JSON object, got ${show(raw)}`);
  const { [MODEL_PARAMS]: airflow, ...given } = raw as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(key in CHECKS)) {
      throw new InvalidInputError(key, `unknown field; known fields are ${[...Object.keys(CHECKS), MODEL_PARAMS].join(', ')}`);
    }
  }
  const mapped = airflow === undefined || airflow === null ? { values: {}, ignored: [] } : fromModelParams(airflow, given);
  const input = { ...given, ...mapped.values };
  const params: Record<string, unknown> = {};
  for (const [key, check] of Object.entries(CHECKS)) {
    const value = input[key] ?? DEFAULT_PARAMS[key as keyof PipelineParams];
    params[key] = check(value, key);
  }
  const p = params as unknown as PipelineParams;
  // Checked above as the shared default; an endpoint name is always a valid registered model name.
  if (input.registeredModelName === undefined && !options.sharedRegisteredModel) p.registeredModelName = p.endpointName;
  if (p.minSuccessfulModels > p.models.length) {
    throw new InvalidInputError('minSuccessfulModels', `is ${p.minSuccessfulModels} but only ${p.models.length} model(s) are requested`);
  }
  if (p.resnetWeightsUri === undefined) delete p.resnetWeightsUri;
  else if (!p.models.includes('ResNet50')) throw new InvalidInputError('resnetWeightsUri', `is set but 'models' has no ResNet50`);
  for (const field of ['instanceType', 'instanceCount'] as const) {
    // Without a target in the input, the worker's default decides (checkSizing, once it is known).
    if (input.deployTarget !== undefined) checkSizing(p, field);
    if (p[field] === undefined) delete p[field];
  }
  return { params: p, ignored: mapped.ignored };
}

const MODEL_PARAMS = 'model_params';

/** What one `model_params` key means here: input fields to set, and keys (or list items) without effect. */
interface AirflowMapping {
  set?: Partial<Record<keyof PipelineParams, unknown>>;
  ignored?: string[];
}

/** A `model_params` key's mapping; `f` names it in errors, `given` is the rest of the input, `all` the whole `model_params`. */
type AirflowKey = (value: unknown, f: string, given: Record<string, unknown>, all: Record<string, unknown>) => AirflowMapping;

const to =
  (field: keyof PipelineParams): AirflowKey =>
  (v, f) => ({ set: { [field]: CHECKS[field]!(v, f) } });

const ignoredKey: AirflowKey = (_, f) => ({ ignored: [f] });

/** Keras metric names (lower case, without underscores) of the metrics every training logs. */
const KERAS_METRICS: Record<string, SelectionMetric | 'precision'> = {
  accuracy: 'accuracy',
  acc: 'accuracy',
  categoricalaccuracy: 'accuracy',
  sparsecategoricalaccuracy: 'accuracy',
  auc: 'auc',
  f1: 'f1',
  f1score: 'f1',
  precision: 'precision',
  recall: 'recall',
};

/** The Airflow DAG's `model_params`, by key, in the order docs/airflow.md lists them. */
const AIRFLOW_KEYS: Record<string, AirflowKey> = {
  num_classes: to('numClasses'),
  input_shape: (v, f) => ({ set: { imageSize: imageSizeOf(v, f) } }),
  // The models' hidden layers are ReLU, and the native training kernels fuse it into the
  // convolutions (src/ml/models.ts): another activation would be another model.
  activation: (v, f) => {
    if (typeof v !== 'string' || v.toLowerCase() !== 'relu') {
      throw new InvalidInputError(
        f,
        `the models' hidden layers are ReLU (fused into the training kernels): only 'relu' matches, got ${show(v)}`,
      );
    }
    return {};
  },
  kernel_initializer_glob: to('kernelInitializer'),
  kernel_initializer_norm: to('denseInitializer'),
  optimizer: (v, f) => {
    const name = typeof v === 'string' ? v.toLowerCase() : undefined;
    if (!OPTIMIZERS.some((o) => o === name)) {
      throw new InvalidInputError(
        f,
        `expected an optimizer this pipeline has: ${OPTIMIZERS.join(', ')} (Keras names, any case), got ${show(v)}`,
      );
    }
    return { set: { optimizer: name } };
  },
  // The trainer builds one-hot targets from the integer labels and minimises the softmax's
  // cross-entropy (src/ml/trainer.ts): Keras' categorical loss, and the sparse one's value. With
  // two classes, Keras' binary cross-entropy over the two softmax outputs and one-hot labels has
  // the same value; with more, it is a per-class (multi-label) loss, not what is trained here.
  loss: (v, f, given, all) => {
    const name = typeof v === 'string' ? v.toLowerCase().replace(/_/g, '') : undefined;
    if (name === 'binarycrossentropy') {
      const classes = all.num_classes ?? given.numClasses ?? DEFAULT_PARAMS.numClasses;
      if (classes === 2) return {};
      throw new InvalidInputError(
        f,
        `binary cross-entropy equals the categorical cross-entropy trained here only for 2 classes; with num_classes ${show(classes)} use 'categorical_crossentropy'`,
      );
    }
    if (name !== 'categoricalcrossentropy' && name !== 'sparsecategoricalcrossentropy') {
      throw new InvalidInputError(
        f,
        `training minimises the softmax's categorical cross-entropy: expected 'categorical_crossentropy', 'sparse_categorical_crossentropy' or (2 classes) 'binary_crossentropy', got ${show(v)}`,
      );
    }
    return {};
  },
  metrics: (v, f, given) => metricsOf(v, f, given.selectionMetric),
  validation_split: to('validationSplit'),
  epochs: to('epochs'),
  batch_size: to('batchSize'),
  learning_rate: to('learningRate'),
  // buildResNet50 (src/ml/models.ts) ends in global average pooling.
  pooling: (v, f) => {
    if (v !== 'avg') throw new InvalidInputError(f, `ResNet50 here ends in global average pooling: only 'avg' matches, got ${show(v)}`);
    return {};
  },
  // Every epoch is shuffled, in an order drawn from `seed`.
  shuffle: (v, f) => {
    if (v !== true)
      throw new InvalidInputError(f, `training always shuffles each epoch (seeded by 'seed'): only true matches, got ${show(v)}`);
    return { ignored: [f] };
  },
  // Keras' logging and data-loading settings: no effect on what is trained.
  verbose: ignoredKey,
  workers: ignoredKey,
  use_multiprocessing: ignoredKey,
  max_queue_size: ignoredKey,
};

/** The input fields the Airflow DAG's `model_params` set, checked against the same fields given directly. */
function fromModelParams(raw: unknown, given: Record<string, unknown>): { values: Record<string, unknown>; ignored: string[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidInputError(MODEL_PARAMS, `expected the Airflow DAG's model_params object, got ${show(raw)}`);
  }
  const entries = Object.entries(raw);
  for (const [key] of entries) {
    if (!Object.hasOwn(AIRFLOW_KEYS, key)) {
      throw new InvalidInputError(`${MODEL_PARAMS}.${key}`, `unknown key; known keys are ${Object.keys(AIRFLOW_KEYS).join(', ')}`);
    }
  }
  const values: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [key, value] of entries) {
    const f = `${MODEL_PARAMS}.${key}`;
    const mapping = AIRFLOW_KEYS[key]!(value, f, given, raw as Record<string, unknown>);
    for (const [field, v] of Object.entries(mapping.set ?? {})) {
      const direct = given[field];
      if (direct !== undefined && direct !== null && CHECKS[field as keyof PipelineParams]!(direct, field) !== v) {
        throw new InvalidInputError(
          f,
          `conflicts with '${field}': ${f} sets it to ${show(v)}, but ${field} is ${show(direct)}; give one, or equal values`,
        );
      }
      values[field] = v;
    }
    ignored.push(...(mapping.ignored ?? []));
  }
  return { values, ignored };
}

/** `input_shape` as a list or a Python tuple's text, [224, 224, 3] or "(224, 224, 3)": square, RGB, channels last. */
function imageSizeOf(v: unknown, f: string): number {
  const dims =
    typeof v === 'string'
      ? v
          .trim()
          .replace(/^[([](.*)[)\]]$/, '$1')
          .replace(/,\s*$/, '')
          .split(',')
          .map((d) => (/^\s*\d+\s*$/.test(d) ? Number(d) : d.trim()))
      : v;
  if (!Array.isArray(dims) || dims.length !== 3 || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d > 0)) {
    throw new InvalidInputError(f, `expected (height, width, channels) such as [224, 224, 3] or "(224, 224, 3)", got ${show(v)}`);
  }
  const [height, width, channels] = dims as number[];
  if (channels !== 3) throw new InvalidInputError(f, `expected 3 channels last (images are read as RGB), got ${show(v)}`);
  if (height !== width)
    throw new InvalidInputError(f, `expected a square shape (images are resized to imageSize x imageSize), got ${show(v)}`);
  return CHECKS.imageSize(height, f) as number;
}

/**
 * Keras `metrics`: every training logs accuracy, precision, recall, F1 and AUC anyway, so the list
 * only picks the selection metric: `selectionMetric` when given and listed, else the first listed
 * one that can select. The other entries are reported as ignored.
 */
function metricsOf(v: unknown, f: string, selectionMetric: unknown): AirflowMapping {
  if (!Array.isArray(v)) throw new InvalidInputError(f, `expected a list of metric names such as ["accuracy"], got ${show(v)}`);
  const names = v.map((m, i) => {
    const key = typeof m === 'string' ? m.toLowerCase().replace(/_/g, '') : '';
    const name = Object.hasOwn(KERAS_METRICS, key) ? KERAS_METRICS[key] : undefined;
    if (name === undefined) {
      throw new InvalidInputError(
        `${f}[${i}]`,
        `expected a metric the trainer logs: accuracy (acc, categorical_accuracy), auc, f1 (f1_score), precision or recall, got ${show(m)}`,
      );
    }
    return name;
  });
  const selectable = names.filter((n): n is SelectionMetric => SELECTION_METRICS.some((s) => s === n));
  const chosen = selectable.find((n) => n === selectionMetric) ?? selectable[0];
  const at = chosen === undefined ? -1 : names.indexOf(chosen);
  return { set: chosen === undefined ? {} : { selectionMetric: chosen }, ignored: v.flatMap((_, i) => (i === at ? [] : [`${f}[${i}]`])) };
}

/** SageMaker sizing on a run whose target is not SageMaker. */
export function checkSizing(
  p: Pick<PipelineParams, 'deployTarget' | 'instanceType' | 'instanceCount'>,
  field?: 'instanceType' | 'instanceCount',
): void {
  for (const f of field ? [field] : (['instanceType', 'instanceCount'] as const)) {
    if (p[f] !== undefined && p.deployTarget !== 'sagemaker') {
      throw new InvalidInputError(f, `applies to deployTarget 'sagemaker' only, not '${p.deployTarget}'`);
    }
  }
}

const REDEPLOY_EXAMPLE =
  'expected an object like {"version":"3"}, {"alias":"previous-champion"} or {"instanceType":"ml.c5.xlarge","instanceCount":2}';

/** A redeploy request's fields, checked by the same rules as the pipeline's input. */
const REDEPLOY_CHECKS: { [K in keyof Required<RedeployRequest>]: Check } = {
  version: optional(short(18, str(/^[1-9]\d*$/, 'expected a registered version as a positive integer string such as "3"'))),
  alias: optional(str(/^[\w-]{1,100}$/, 'expected an alias name such as "champion"')),
  ...SIZING_CHECKS,
};

/** Validates a `redeploy` signal's or update's request; throws InvalidInputError naming the field. */
export function parseRedeployRequest(raw: unknown, params: Pick<PipelineParams, 'deployTarget'>): RedeployRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InvalidInputError('request', REDEPLOY_EXAMPLE);
  const input = raw as Record<string, unknown>;
  const unknown = Object.keys(input).filter((k) => !Object.hasOwn(REDEPLOY_CHECKS, k));
  if (unknown.length) {
    // At most five names of at most 40 characters: a request may carry any number of keys of any length.
    const names = unknown.slice(0, 5).map((k) => (k.length > 40 ? `${k.slice(0, 37)}...` : k));
    const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : '';
    throw new InvalidInputError(names[0]!, `unknown field(s): ${names.join(', ')}${more}; ${REDEPLOY_EXAMPLE}`);
  }
  const request: Record<string, unknown> = {};
  for (const [key, check] of Object.entries(REDEPLOY_CHECKS)) {
    const value = check(input[key], key);
    if (value !== undefined) request[key] = value;
  }
  const r = request as RedeployRequest;
  if (r.version !== undefined && r.alias !== undefined) throw new InvalidInputError('version', 'give "version" or "alias", not both');
  if (Object.keys(r).length === 0) throw new InvalidInputError('request', `nothing to change: ${REDEPLOY_EXAMPLE}`);
  for (const field of ['instanceType', 'instanceCount'] as const) {
    if (r[field] !== undefined && params.deployTarget !== 'sagemaker') {
      throw new InvalidInputError(field, `applies to deployTarget 'sagemaker' only; this endpoint is '${params.deployTarget}'`);
    }
  }
  return r;
}

/** Why a redeploy request cannot be run, or undefined when it is well-formed. */
export function validateRedeploy(request: unknown, params: Pick<PipelineParams, 'deployTarget'>): string | undefined {
  try {
    parseRedeployRequest(request, params);
    return undefined;
  } catch (err) {
    if (err instanceof InvalidInputError) return err.message;
    throw err;
  }
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
