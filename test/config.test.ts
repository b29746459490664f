import { strict as assert } from 'node:assert';
import { ConfigError, loadConfig } from '../src/config';

describe('loadConfig: SageMaker', () => {
  it('defaults the sizing and traffic shifting, and leaves image and role unset', () => {
    const { sagemaker } = loadConfig({});
    assert.deepEqual(sagemaker, {
      imageUri: undefined,
      executionRoleArn: undefined,
      instanceType: 'ml.m5.large',
      allowedInstanceTypes: ['ml.m5.large'],
      instanceCount: 1,
      trafficRouting: 'all-at-once',
      trafficPercent: 10,
      trafficWaitSeconds: 300,
      rollbackAlarms: [],
      maxWaitSeconds: 3600,
      pollSeconds: 15,
    });
  });

  it('allows the listed instance types, which must include the default one', () => {
    const { sagemaker } = loadConfig({ SAGEMAKER_INSTANCE_TYPES: 'ml.m5.large, ml.c5.xlarge' });
    assert.deepEqual(sagemaker.allowedInstanceTypes, ['ml.m5.large', 'ml.c5.xlarge']);
    assert.throws(
      () => loadConfig({ SAGEMAKER_INSTANCE_TYPES: 'ml.c5.xlarge' }),
      /SAGEMAKER_INSTANCE_TYPE ml\.m5\.large is not among SAGEMAKER_INSTANCE_TYPES/,
    );
    assert.throws(
      () => loadConfig({ SAGEMAKER_INSTANCE_TYPES: 'm5, ml.m5.large' }),
      /SAGEMAKER_INSTANCE_TYPES must list instance types such as ml\.m5\.large, got 'm5'/,
    );
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
  it('defaults to oneDNN on, no fixed memory budget and a 15-minute stall limit', () => {
    assert.deepEqual(loadConfig({}).training, { onednn: true, concurrency: 3, stallSeconds: 900 });
  });
  it('reads TRAINING_ONEDNN, TRAINING_MEMORY_MB, TRAINING_CONCURRENCY and TRAINING_STALL_SECONDS', () => {
    assert.deepEqual(
      loadConfig({ TRAINING_ONEDNN: 'off', TRAINING_MEMORY_MB: '6000', TRAINING_CONCURRENCY: '1', TRAINING_STALL_SECONDS: '120' }).training,
      { onednn: false, memoryMb: 6000, concurrency: 1, stallSeconds: 120 },
    );
    assert.throws(() => loadConfig({ TRAINING_CONCURRENCY: '0' }), /TRAINING_CONCURRENCY must be an integer from 1 to 64, got '0'/);
    assert.throws(() => loadConfig({ TRAINING_STALL_SECONDS: '5' }), /TRAINING_STALL_SECONDS must be an integer from 10 to 86400, got '5'/);
  });
  it('refuses a memory budget that is not a whole number of MB from 256', () => {
    assert.throws(() => loadConfig({ TRAINING_MEMORY_MB: '6GB' }), /TRAINING_MEMORY_MB must be an integer from 256 to 4194304, got '6GB'/);
    assert.throws(() => loadConfig({ TRAINING_MEMORY_MB: '100' }), /TRAINING_MEMORY_MB must be an integer/);
  });
});

describe('loadConfig: notifications', () => {
  it('sends nothing by default, and takes a webhook with a secret', () => {
    assert.deepEqual(loadConfig({}).notifications, {});
    const env = { NOTIFY_WEBHOOK_URL: 'https://hooks.example.com/services/T0/B0/x', NOTIFY_WEBHOOK_SECRET: 'sixteen-chars-ok' };
    assert.deepEqual(loadConfig(env).notifications, { webhookUrl: env.NOTIFY_WEBHOOK_URL, secret: env.NOTIFY_WEBHOOK_SECRET });
  });
  it('refuses a webhook without a secret of 16 characters, or that is not http(s)', () => {
    assert.throws(
      () => loadConfig({ NOTIFY_WEBHOOK_URL: 'https://h.example.com/x' }),
      /NOTIFY_WEBHOOK_SECRET must be set, at least 16 characters/,
    );
    assert.throws(
      () => loadConfig({ NOTIFY_WEBHOOK_URL: 'https://h.example.com/x', NOTIFY_WEBHOOK_SECRET: 'short' }),
      /NOTIFY_WEBHOOK_SECRET must be set, at least 16 characters/,
    );
    assert.throws(
      () => loadConfig({ NOTIFY_WEBHOOK_URL: 'ftp://h.example.com/x', NOTIFY_WEBHOOK_SECRET: 'sixteen-chars-ok' }),
      /NOTIFY_WEBHOOK_URL must be an http\(s\) URL/,
    );
  });
});

describe('loadConfig: S3 limits', () => {
  it('defaults to 5 s to connect, 30 s of silence, and objects up to 512 MB', () => {
    assert.deepEqual(loadConfig({}).aws.s3Limits, { connectTimeoutMs: 5000, idleTimeoutMs: 30_000, maxObjectBytes: 512 * 2 ** 20 });
  });
  it('reads S3_CONNECT_TIMEOUT_MS, S3_IDLE_TIMEOUT_MS and S3_MAX_OBJECT_MB', () => {
    const env = { S3_CONNECT_TIMEOUT_MS: '1500', S3_IDLE_TIMEOUT_MS: '120000', S3_MAX_OBJECT_MB: '2048' };
    assert.deepEqual(loadConfig(env).aws.s3Limits, { connectTimeoutMs: 1500, idleTimeoutMs: 120_000, maxObjectBytes: 2048 * 2 ** 20 });
  });
  it('names each bad limit', () => {
    assert.throws(
      () => loadConfig({ S3_CONNECT_TIMEOUT_MS: '0', S3_IDLE_TIMEOUT_MS: '30s', S3_MAX_OBJECT_MB: '5000' }),
      (err: Error) =>
        /S3_CONNECT_TIMEOUT_MS must be an integer from 1 to 600000, got '0'/.test(err.message) &&
        /S3_IDLE_TIMEOUT_MS must be an integer from 1 to 3600000, got '30s'/.test(err.message) &&
        /S3_MAX_OBJECT_MB must be an integer from 1 to 4096, got '5000'/.test(err.message),
    );
  });
});

describe('loadConfig: Temporal connection and worker process', () => {
  it('defaults to the local server, the cnn-skin-cancer deployment, versioning on, no TLS', () => {
    const { temporal, worker } = loadConfig({});
    assert.deepEqual(temporal, { address: '127.0.0.1:7233', namespace: 'default', deploymentName: 'cnn-skin-cancer', versioning: false });
    assert.deepEqual(worker, { healthPort: 9090, httpHost: '127.0.0.1', metricsPort: 9464, logFormat: 'auto' });
  });
  it("reads the Worker Controller's variables", () => {
    const { temporal } = loadConfig({
      TEMPORAL_ADDRESS: 'temporal-frontend.temporal:7233',
      TEMPORAL_NAMESPACE: 'ml',
      TEMPORAL_DEPLOYMENT_NAME: 'ml-pipeline-workers',
      TEMPORAL_WORKER_BUILD_ID: '1.4.0-abc123',
    });
    assert.deepEqual(
      [temporal.address, temporal.namespace, temporal.deploymentName, temporal.buildId, temporal.versioning],
      ['temporal-frontend.temporal:7233', 'ml', 'ml-pipeline-workers', '1.4.0-abc123', true],
    );
  });
  it('polls unversioned unless the build is named or versioning is asked for, so a worker started on its own runs workflows', () => {
    assert.equal(loadConfig({}).temporal.versioning, false);
    assert.equal(loadConfig({ TEMPORAL_WORKER_BUILD_ID: 'b1' }).temporal.versioning, true);
    assert.equal(loadConfig({ TEMPORAL_WORKER_VERSIONING: 'on' }).temporal.versioning, true);
    assert.equal(loadConfig({ TEMPORAL_WORKER_BUILD_ID: 'b1', TEMPORAL_WORKER_VERSIONING: 'off' }).temporal.versioning, false);
  });
  it('turns TLS on for mTLS files or an API key, and wants cert and key together', () => {
    assert.deepEqual(loadConfig({ TEMPORAL_TLS_CERT: '/c.pem', TEMPORAL_TLS_KEY: '/k.pem', TEMPORAL_TLS_CA: '/ca.pem' }).temporal.tls, {
      certPath: '/c.pem',
      keyPath: '/k.pem',
      caPath: '/ca.pem',
    });
    const cloud = loadConfig({ TEMPORAL_API_KEY: 'secret' }).temporal;
    assert.deepEqual([cloud.tls, cloud.apiKey], [{}, 'secret']);
    assert.throws(() => loadConfig({ TEMPORAL_TLS_CERT: '/c.pem' }), /TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together/);
  });
  it('names bad worker variables', () => {
    assert.throws(
      () => loadConfig({ WORKER_HEALTH_PORT: 'x', LOG_FORMAT: 'xml', TEMPORAL_WORKER_VERSIONING: 'yes', TEMPORAL_WORKER_BUILD_ID: 'a b' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        /WORKER_HEALTH_PORT must be a port number \(0-65535\)/.test(err.message) &&
        /LOG_FORMAT must be 'json', 'text' or 'auto'/.test(err.message) &&
        /TEMPORAL_WORKER_VERSIONING must be 'on' or 'off'/.test(err.message) &&
        /TEMPORAL_WORKER_BUILD_ID must be letters, digits/.test(err.message),
    );
  });
});
