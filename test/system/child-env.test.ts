import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ShardPool } from '../../src/data/shard-pool';
import { childEnv } from '../../src/system/child-env';

const PLANTED = {
  TEMPORAL_API_KEY: 'planted-temporal-api-key-7f3a',
  TEMPORAL_TLS_KEY: '/etc/planted/client.key',
  DATABASE_PASSWORD: 'planted-db-password-91c2',
  ENDPOINT_ADMIN_TOKEN: 'planted-admin-token-of-another-endpoint',
};

/** The environment of a running process, as the kernel holds it. */
const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );

describe('child processes get an allow-listed environment', () => {
  const worker = {
    ...process.env,
    ...PLANTED,
    AWS_REGION: 'eu-west-1',
    S3_MAX_OBJECT_MB: '64',
    MLFLOW_TRACKING_URI: 'http://mlflow:5000',
    TRAINING_MEMORY_MB: '5500',
  };

  it("keeps the worker's secrets and unlisted variables out of every kind, and gives each what it needs", () => {
    for (const kind of ['training', 'shard-builder', 'endpoint'] as const) {
      const env = childEnv(kind, worker);
      for (const key of Object.keys(PLANTED)) assert.equal(env[key], undefined, `${kind} gets ${key}`);
      assert.equal(env.AWS_REGION, 'eu-west-1');
      assert.equal(env.S3_MAX_OBJECT_MB, '64');
      assert.equal(env.PATH, process.env.PATH);
      assert.equal(env.MLFLOW_TRACKING_URI, kind === 'training' ? 'http://mlflow:5000' : undefined);
    }
    assert.equal(childEnv('training', worker).TRAINING_MEMORY_MB, '5500');
    assert.equal(childEnv('endpoint', worker, { ENDPOINT_ADMIN_TOKEN: 'its-own' }).ENDPOINT_ADMIN_TOKEN, 'its-own');
  });

  it('a shard builder process started by a worker whose environment holds planted secrets has none of them', async function () {
    this.timeout(120_000);
    const saved = { ...process.env };
    Object.assign(process.env, PLANTED);
    let pool: ShardPool | undefined;
    try {
      pool = new ShardPool(1);
      await pool.ready();
      const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(process.pid)], { encoding: 'utf8' })
        .split('\n')
        .map((l) => Number(l.trim()))
        .filter((pid) => pid > 0);
      // `ps` itself was one of them, and is gone by now.
      const alive = children.flatMap((pid) => {
        try {
          return [environOf(pid)];
        } catch {
          return [];
        }
      });
      const builders = alive.filter((e) => e.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED === 'true' && !('MOCHA_COLORS' in e));
      assert.ok(builders.length >= 1, `found the builder among ${children.length} children`);
      for (const env of builders) {
        for (const [key, value] of Object.entries(PLANTED)) {
          assert.equal(env[key], undefined, `the builder has ${key}`);
          assert.ok(!Object.values(env).includes(value), `the builder holds ${key}'s value`);
        }
        assert.equal(env.AWS_ENDPOINT_URL_S3, process.env.AWS_ENDPOINT_URL_S3, 'it still reaches S3');
      }
    } finally {
      await pool?.close();
      for (const key of Object.keys(PLANTED)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });
});
