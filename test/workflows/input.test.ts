import { strict as assert } from 'node:assert';
import { checkSizing, DEFAULT_PARAMS, InvalidInputError, parsePipelineInput, validateRedeploy } from '../../src/workflows/input';

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
});
