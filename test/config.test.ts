import { strict as assert } from 'node:assert';
import { ConfigError, loadConfig } from '../src/config';

describe('loadConfig: SageMaker', () => {
  it('defaults the sizing and traffic shifting, and leaves image and role unset', () => {
    const { sagemaker } = loadConfig({});
    assert.deepEqual(sagemaker, {
      imageUri: undefined,
      executionRoleArn: undefined,
      instanceType: 'ml.m5.large',
      instanceCount: 1,
      trafficRouting: 'all-at-once',
      trafficPercent: 10,
      trafficWaitSeconds: 300,
      rollbackAlarms: [],
      maxWaitSeconds: 3600,
      pollSeconds: 15,
    });
  });

  it('reads every variable', () => {
    const { sagemaker } = loadConfig({
      SAGEMAKER_IMAGE_URI: '123456789012.dkr.ecr.us-east-1.amazonaws.com/cnn:1.0',
      SAGEMAKER_EXECUTION_ROLE_ARN: 'arn:aws:iam::123456789012:role/exec',
      SAGEMAKER_INSTANCE_TYPE: 'ml.c5.xlarge',
      SAGEMAKER_INSTANCE_COUNT: '3',
      SAGEMAKER_TRAFFIC_ROUTING: 'linear',
      SAGEMAKER_TRAFFIC_PERCENT: '25',
      SAGEMAKER_ROLLBACK_ALARMS: '5xx-rate, latency-p99',
    });
    assert.equal(sagemaker.trafficRouting, 'linear');
    assert.deepEqual(sagemaker.rollbackAlarms, ['5xx-rate', 'latency-p99']);
    assert.deepEqual([sagemaker.instanceType, sagemaker.instanceCount, sagemaker.trafficPercent], ['ml.c5.xlarge', 3, 25]);
  });

  it('names every bad variable at once', () => {
    assert.throws(
      () =>
        loadConfig({
          SAGEMAKER_EXECUTION_ROLE_ARN: 'exec-role',
          SAGEMAKER_INSTANCE_TYPE: 'm5.large',
          SAGEMAKER_INSTANCE_COUNT: '0',
          SAGEMAKER_TRAFFIC_ROUTING: 'gradual',
        }),
      (err: unknown) =>
        err instanceof ConfigError &&
        /SAGEMAKER_EXECUTION_ROLE_ARN must be an IAM role ARN/.test(err.message) &&
        /SAGEMAKER_INSTANCE_TYPE must be a SageMaker instance type/.test(err.message) &&
        /SAGEMAKER_INSTANCE_COUNT must be an integer from 1 to 100, got '0'/.test(err.message) &&
        /SAGEMAKER_TRAFFIC_ROUTING must be one of all-at-once, canary, linear/.test(err.message),
    );
  });
});

describe('loadConfig: training', () => {
  it('defaults to oneDNN on and no fixed memory budget', () => {
    assert.deepEqual(loadConfig({}).training, { onednn: true });
  });
  it('reads TRAINING_ONEDNN and TRAINING_MEMORY_MB', () => {
    assert.deepEqual(loadConfig({ TRAINING_ONEDNN: 'off', TRAINING_MEMORY_MB: '6000' }).training, { onednn: false, memoryMb: 6000 });
  });
  it('refuses a memory budget that is not a whole number of MB from 256', () => {
    assert.throws(() => loadConfig({ TRAINING_MEMORY_MB: '6GB' }), /TRAINING_MEMORY_MB must be an integer from 256 to 4194304, got '6GB'/);
    assert.throws(() => loadConfig({ TRAINING_MEMORY_MB: '100' }), /TRAINING_MEMORY_MB must be an integer/);
  });
});
