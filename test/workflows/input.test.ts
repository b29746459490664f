import { strict as assert } from 'node:assert';
import { DAG_MODEL_PARAMS } from '../helpers/airflow';
import {
  checkSizing,
  DEFAULT_PARAMS,
  InvalidInputError,
  parsePipelineInput,
  parsePipelineInputWithNotes,
  validateRedeploy,
} from '../../src/workflows/input';

describe('parsePipelineInput', () => {
  it("fills the original Airflow DAG's parameters when given an empty object", () => {
    const p = parsePipelineInput({});
    assert.equal(p.numClasses, 2);
    assert.equal(p.imageSize, 224);
    assert.equal(p.optimizer, 'adam');
    assert.equal(p.epochs, 2);
    assert.equal(p.batchSize, 64);
    assert.equal(p.learningRate, 1e-5);
    assert.equal(p.validationSplit, 0.2);
    assert.deepEqual(p.models, ['Basic', 'ResNet50', 'CrossVal']);
    assert.deepEqual(parsePipelineInput(undefined), p);
  });

  it("names the registered model after the endpoint unless the input names one; earlier runs' shared default on request", () => {
    assert.equal(parsePipelineInput({}).registeredModelName, 'cnn-skin-cancer');
    assert.equal(parsePipelineInput({ endpointName: 'ward-a' }).registeredModelName, 'ward-a');
    assert.equal(parsePipelineInput({ endpointName: 'ward-a', registeredModelName: 'shared' }).registeredModelName, 'shared');
    assert.equal(parsePipelineInput({ endpointName: 'ward-a' }, { sharedRegisteredModel: true }).registeredModelName, 'cnn-skin-cancer');
    assert.throws(() => parsePipelineInput({ endpointName: 'ward a' }), /endpointName/);
  });

  it('keeps given values and does not share the defaults array', () => {
    const p = parsePipelineInput({ imageSize: 64, models: ['Basic'] });
    assert.equal(p.imageSize, 64);
    assert.deepEqual(p.models, ['Basic']);
    p.models.push('ResNet50');
    assert.deepEqual(DEFAULT_PARAMS.models, ['Basic', 'ResNet50', 'CrossVal']);
  });

  const rejects = (input: unknown, field: string, pattern: RegExp): void => {
    assert.throws(
      () => parsePipelineInput(input),
      (err: unknown) => err instanceof InvalidInputError && err.field === field && pattern.test(err.message),
    );
  };

  it('rejects unknown keys, naming them', () => rejects({ epoch: 3 }, 'epoch', /unknown field/));
  it('rejects wrong types', () => rejects({ batchSize: '64' }, 'batchSize', /expected an integer, got "64"/));
  it('rejects non-integers where integers are needed', () => rejects({ epochs: 1.5 }, 'epochs', /integer/));
  it('rejects out-of-range values', () => rejects({ learningRate: 0 }, 'learningRate', /greater than 0/));
  it('rejects a validation split outside (0.05, 0.5)', () => rejects({ validationSplit: 0.9 }, 'validationSplit', /at most 0.5/));
  it('rejects unknown model classes by index', () => rejects({ models: ['Basic', 'VGG'] }, 'models[1]', /'ResNet50'/));
  it('rejects duplicate models', () => rejects({ models: ['Basic', 'Basic'] }, 'models', /twice/));
  it('rejects an empty model list', () => rejects({ models: [] }, 'models', /non-empty/));
  it('rejects a non-S3 data URI', () => rejects({ dataUri: '/tmp/data' }, 'dataUri', /S3 URI/));
  it('rejects an endpoint name SageMaker would refuse', () => rejects({ endpointName: 'bad_name' }, 'endpointName', /hyphens/));
  it('rejects a non-object input', () => rejects([1], 'input', /JSON object/));
  it('takes SageMaker sizing for the sagemaker target only', () => {
    const p = parsePipelineInput({ deployTarget: 'sagemaker', instanceType: 'ml.c5.xlarge', instanceCount: 2 });
    assert.deepEqual([p.instanceType, p.instanceCount], ['ml.c5.xlarge', 2]);
    assert.equal('instanceType' in parsePipelineInput({}), false);
    rejects({ deployTarget: 'local', instanceCount: 2 }, 'instanceCount', /applies to deployTarget 'sagemaker' only, not 'local'/);
    // Without a target the worker's default decides; sizing is checked against it then (checkSizing).
    assert.equal(parsePipelineInput({ instanceCount: 2 }).instanceCount, 2);
    assert.throws(
      () => checkSizing({ deployTarget: 'local', instanceCount: 2 }),
      /'instanceCount': applies to deployTarget 'sagemaker' only/,
    );
    checkSizing({ deployTarget: 'sagemaker', instanceCount: 2 });
    rejects({ deployTarget: 'sagemaker', instanceType: 'm5.large' }, 'instanceType', /SageMaker instance type/);
    rejects({ deployTarget: 'sagemaker', instanceCount: 0 }, 'instanceCount', /between 1 and 100/);
  });
  it('takes deleteEndpointAtEnd as a boolean only (default false)', () => {
    assert.equal(parsePipelineInput({}).deleteEndpointAtEnd, false);
    assert.equal(parsePipelineInput({ deleteEndpointAtEnd: true }).deleteEndpointAtEnd, true);
    rejects({ deleteEndpointAtEnd: 'yes' }, 'deleteEndpointAtEnd', /expected true or false, got "yes"/);
  });
  it('rejects a deploy target it does not know', () => rejects({ deployTarget: 'k8s' }, 'deployTarget', /'local', 'sagemaker'/));
  it('rejects minSuccessfulModels above the number of models', () =>
    rejects({ models: ['Basic'], minSuccessfulModels: 2 }, 'minSuccessfulModels', /only 1 model/));
  it('rejects minImprovement outside [0, 1]', () => rejects({ minImprovement: -0.1 }, 'minImprovement', /at least 0/));
  it('takes initial ResNet50 weights as an S3 prefix, only when ResNet50 is trained', () => {
    assert.equal(parsePipelineInput({ resnetWeightsUri: 's3://weights/resnet50' }).resnetWeightsUri, 's3://weights/resnet50');
    assert.ok(!('resnetWeightsUri' in parsePipelineInput({})));
    rejects({ resnetWeightsUri: '/tmp/resnet' }, 'resnetWeightsUri', /expected an S3 URI/);
    rejects({ resnetWeightsUri: 's3://weights/r', models: ['Basic'] }, 'resnetWeightsUri', /has no ResNet50/);
  });
});

describe("the Airflow DAG's model_params", () => {
  const SEED = DAG_MODEL_PARAMS;
  const parse = (modelParams: Record<string, unknown>, rest: Record<string, unknown> = {}) =>
    parsePipelineInputWithNotes({ model_params: modelParams, ...rest });
  const rejects = (modelParams: unknown, field: string, pattern: RegExp, rest: Record<string, unknown> = {}): void => {
    assert.throws(
      () => parsePipelineInput({ model_params: modelParams, ...rest }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidInputError, String(err));
        assert.equal(err.field, field);
        assert.match(err.message, pattern);
        return true;
      },
    );
  };

  it('maps the original seed dictionary onto the defaults, naming verbose as ignored', () => {
    assert.deepEqual(parse(SEED), { params: parsePipelineInput({}), ignored: ['model_params.verbose'] });
    assert.deepEqual(parsePipelineInput({ model_params: SEED }), parsePipelineInput({}));
    assert.deepEqual(parsePipelineInputWithNotes({}), { params: parsePipelineInput({}), ignored: [] });
  });

  it('maps each key onto its field', () => {
    const { params, ignored } = parse({
      num_classes: 3,
      input_shape: '(64, 64, 3)',
      epochs: 5,
      batch_size: 16,
      learning_rate: 0.001,
      validation_split: 0.25,
      optimizer: 'RMSprop',
      loss: 'SparseCategoricalCrossentropy',
      metrics: ['AUC', 'acc', 'Precision'],
      kernel_initializer_glob: 'he_uniform',
      kernel_initializer_norm: 'truncated_normal',
    });
    assert.deepEqual(
      [params.numClasses, params.imageSize, params.epochs, params.batchSize, params.learningRate, params.validationSplit],
      [3, 64, 5, 16, 0.001, 0.25],
    );
    assert.equal(params.optimizer, 'rmsprop');
    assert.equal(params.selectionMetric, 'auc');
    assert.deepEqual([params.kernelInitializer, params.denseInitializer], ['he_uniform', 'truncated_normal']);
    assert.deepEqual(ignored, ['model_params.metrics[1]', 'model_params.metrics[2]']);
    assert.equal(parse({ input_shape: '[96, 96, 3]' }).params.imageSize, 96);
    assert.equal(parse({ optimizer: 'SGD' }).params.optimizer, 'sgd');
  });

  it('takes the camelCase fields alongside, and equal values given both ways', () => {
    const { params, ignored } = parse(SEED, { epochs: 2, imageSize: 224, optimizer: 'adam', learningRate: 0.00001, models: ['Basic'] });
    assert.deepEqual(params, { ...parsePipelineInput({}), models: ['Basic'] });
    assert.deepEqual(ignored, ['model_params.verbose']);
  });

  it('picks the selectionMetric given when metrics list it; the rest are ignored', () => {
    const { params, ignored } = parse({ metrics: ['accuracy', 'f1_score'] }, { selectionMetric: 'f1' });
    assert.equal(params.selectionMetric, 'f1');
    assert.deepEqual(ignored, ['model_params.metrics[0]']);
    // Only metrics that cannot select: the selection metric stays, all are ignored.
    assert.deepEqual(parse({ metrics: ['precision'] }, { selectionMetric: 'recall' }), {
      params: parsePipelineInput({ selectionMetric: 'recall' }),
      ignored: ['model_params.metrics[0]'],
    });
  });

  it('names the keys without meaning here as ignored', () => {
    assert.deepEqual(parse({ verbose: 0, shuffle: true, workers: 4, use_multiprocessing: true, max_queue_size: 10 }).ignored, [
      'model_params.verbose',
      'model_params.shuffle',
      'model_params.workers',
      'model_params.use_multiprocessing',
      'model_params.max_queue_size',
    ]);
  });

  it('refuses an input_shape that is not square HxWx3', () => {
    rejects({ input_shape: [224, 192, 3] }, 'model_params.input_shape', /square/);
    rejects({ input_shape: '(224, 192, 3)' }, 'model_params.input_shape', /square/);
    rejects({ input_shape: [224, 224, 1] }, 'model_params.input_shape', /3 channels last/);
    rejects({ input_shape: [3, 224, 224] }, 'model_params.input_shape', /3 channels last/);
    rejects({ input_shape: [224, 224] }, 'model_params.input_shape', /\(height, width, channels\)/);
    rejects({ input_shape: '(None, None, 3)' }, 'model_params.input_shape', /\(height, width, channels\)/);
    rejects({ input_shape: [1024, 1024, 3] }, 'model_params.input_shape', /between 8 and 512, got 1024/);
  });

  it("refuses values out of their field's range, naming the key", () => {
    rejects({ epochs: 0 }, 'model_params.epochs', /between 1 and 1000/);
    rejects({ batch_size: '64' }, 'model_params.batch_size', /expected an integer/);
    rejects({ num_classes: 1 }, 'model_params.num_classes', /between 2 and 1000/);
    rejects({ learning_rate: 0 }, 'model_params.learning_rate', /greater than 0/);
    rejects({ validation_split: 0.9 }, 'model_params.validation_split', /at most 0.5/);
  });

  it('refuses an optimizer the pipeline does not have, naming the supported ones', () =>
    rejects({ optimizer: 'Nadam' }, 'model_params.optimizer', /adam, sgd, rmsprop.*got "Nadam"/));

  it('takes binary cross-entropy for two classes only (over two softmax outputs it is the categorical one)', () => {
    assert.equal(parse({ loss: 'binary_crossentropy', num_classes: 2 }).params.numClasses, 2);
    assert.equal(parse({ loss: 'BinaryCrossentropy' }, { numClasses: 2 }).params.numClasses, 2);
    rejects(
      { loss: 'binary_crossentropy', num_classes: 3 },
      'model_params.loss',
      /only for 2 classes; with num_classes 3 use 'categorical_crossentropy'/,
    );
    rejects({ loss: 'binary_crossentropy' }, 'model_params.loss', /only for 2 classes; with num_classes 4/, { numClasses: 4 });
    rejects(
      { loss: 'mse' },
      'model_params.loss',
      /'categorical_crossentropy', 'sparse_categorical_crossentropy' or \(2 classes\) 'binary_crossentropy', got "mse"/,
    );
  });

  it("refuses an activation other than the models' ReLU, and initializers Keras does not name", () => {
    assert.deepEqual(parse({ activation: 'ReLU' }).ignored, []);
    rejects({ activation: 'tanh' }, 'model_params.activation', /only 'relu' matches, got "tanh"/);
    rejects(
      { kernel_initializer_glob: 'orthogonal' },
      'model_params.kernel_initializer_glob',
      /expected one of 'glorot_uniform'.*got "orthogonal"/,
    );
    rejects({ kernel_initializer_norm: 'Normal' }, 'model_params.kernel_initializer_norm', /got "Normal"/);
    rejects({ kernel_initializer_glob: 'he_normal' }, 'model_params.kernel_initializer_glob', /conflicts with 'kernelInitializer'/, {
      kernelInitializer: 'glorot_uniform',
    });
  });

  it('refuses metrics the trainer does not log, and metrics that are not a list', () => {
    rejects({ metrics: ['accuracy', 'mae'] }, 'model_params.metrics[1]', /metric the trainer logs.*got "mae"/);
    rejects({ metrics: 'accuracy' }, 'model_params.metrics', /list of metric names/);
  });

  it("refuses a pooling other than ResNet50's global average", () => {
    rejects({ pooling: 'max' }, 'model_params.pooling', /only 'avg' matches, got "max"/);
    rejects({ pooling: null }, 'model_params.pooling', /only 'avg' matches, got null/);
  });

  it('refuses shuffle: false (every epoch is shuffled)', () => rejects({ shuffle: false }, 'model_params.shuffle', /always shuffles/));

  it('refuses unknown keys, listing the known ones', () =>
    rejects({ steps_per_epoch: 10 }, 'model_params.steps_per_epoch', /unknown key; known keys are num_classes, input_shape, .*verbose/));

  it('refuses a model_params that is not an object', () => rejects([SEED], 'model_params', /model_params object/));

  it('refuses a key given both ways with different values, naming both', () => {
    rejects({ epochs: 3 }, 'model_params.epochs', /conflicts with 'epochs': model_params.epochs sets it to 3, but epochs is 2/, {
      epochs: 2,
    });
    rejects({ input_shape: [224, 224, 3] }, 'model_params.input_shape', /'imageSize'.* 224, but imageSize is 64/, { imageSize: 64 });
    rejects({ optimizer: 'Adam' }, 'model_params.optimizer', /"adam", but optimizer is "sgd"/, { optimizer: 'sgd' });
    rejects({ metrics: ['accuracy'] }, 'model_params.metrics', /'selectionMetric'.*"accuracy", but selectionMetric is "auc"/, {
      selectionMetric: 'auc',
    });
    // A bad camelCase value is named as itself.
    rejects({ batch_size: 64 }, 'batchSize', /expected an integer, got "64"/, { batchSize: '64' });
  });
});

describe('validateRedeploy', () => {
  const local = { deployTarget: 'local' as const };
  const sagemaker = { deployTarget: 'sagemaker' as const };
  it('accepts a version, an alias, or sizing alone (sagemaker)', () => {
    assert.equal(validateRedeploy({ version: '3' }, local), undefined);
    assert.equal(validateRedeploy({ alias: 'previous-champion' }, local), undefined);
    assert.equal(validateRedeploy({ instanceType: 'ml.c5.xlarge', instanceCount: 2 }, sagemaker), undefined);
  });
  it('names what is wrong', () => {
    assert.match(validateRedeploy({}, local)!, /nothing to change/);
    assert.match(validateRedeploy({ version: '1', alias: 'champion' }, local)!, /not both/);
    assert.match(validateRedeploy({ version: 3 }, local)!, /'version': expected a string, got 3/);
    assert.match(validateRedeploy({ model: 'x' }, local)!, /unknown field\(s\): model/);
    assert.match(
      validateRedeploy({ instanceCount: 2 }, local)!,
      /'instanceCount': applies to deployTarget 'sagemaker' only; this endpoint is 'local'/,
    );
    assert.match(validateRedeploy({ instanceCount: 0 }, sagemaker)!, /'instanceCount': must be between 1 and 100, got 0/);
    assert.match(validateRedeploy('v3', local)!, /expected an object/);
    assert.match(validateRedeploy({ version: '0' }, local)!, /positive integer string/);
    assert.match(validateRedeploy({ alias: 'a b' }, local)!, /'alias': expected an alias name/);
    assert.match(validateRedeploy({ instanceType: 'm5.large' }, sagemaker)!, /'instanceType': expected a SageMaker instance type/);
  });
  // A request may be anything a sender makes up: what it says about one stays short.
  it('refuses fields of any length without repeating them: versions past 18 digits, instance types past 64 characters, any number of unknown keys', () => {
    const long = '1'.repeat(100_000);
    assert.match(validateRedeploy({ version: long }, local)!, /'version': expected at most 18 characters, got 100000/);
    assert.equal(validateRedeploy({ version: '1'.repeat(18) }, local), undefined);
    const type = `ml.${'m'.repeat(100_000)}.large`;
    assert.match(validateRedeploy({ instanceType: type }, sagemaker)!, /'instanceType': expected at most 64 characters/);
    const keys = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`${'k'.repeat(50_000)}${i}`, 1]));
    const message = validateRedeploy(keys, local)!;
    assert.match(message, /unknown field\(s\): k{37}\.\.\., .* and 995 more;/);
    assert.ok(message.length < 600, `${message.length} characters`);
    assert.match(
      validateRedeploy({ alias: 'a'.repeat(100_000) }, local)!,
      /'alias': expected an alias name such as "champion", got "a{56}\.\.\.$/,
    );
    assert.match(validateRedeploy({ toString: 1 }, local)!, /unknown field\(s\): toString/);
  });
});
