import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config';
import { stackDown, stackStatus, stackUp, type StackOptions } from '../../src/stack/services';
import { createS3Client, S3Store } from '../../src/storage/s3';
import { isGroupAlive, tcpOpen } from '../../src/system/process';
import { ROOT } from '../helpers/global';

/** pids of the `weed` processes whose command line names `dir`. */
function weedProcesses(dir: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return argv[0]!.endsWith('/weed') && argv.some((a) => a.includes(dir));
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('local stack: S3 on SeaweedFS across down and up (the real stack, its own folder and ports)', function () {
  this.timeout(300_000);
  // Its own ports, next to the test stack's (TEST_S3_PORT; internal ones from TEST_S3_PORT + 10000).
  const testS3 = Number(process.env.TEST_S3_PORT ?? 8343);
  const testInternal = Number(process.env.TEST_S3_INTERNAL_PORT ?? testS3 + 10_000);
  const stack: StackOptions = {
    dir: join(ROOT, '.stack', 'test-s3-store'),
    host: '127.0.0.1',
    projectRoot: ROOT,
    services: ['s3'],
    ports: { temporal: 0, temporalUi: 0, mlflow: 0, moto: 0, s3: testS3 + 1, s3Internal: testInternal + 7 },
  };
  const s3 = new S3Store(createS3Client(loadConfig({ ...process.env, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${testS3 + 1}` })));

  before(async () => {
    await stackDown(stack);
    rmSync(stack.dir, { recursive: true, force: true });
  });
  after(async () => {
    await stackDown(stack);
  });

  it('finds an object again after down and up, and down leaves no weed process or port behind', async () => {
    await stackUp(stack);
    const uri = 's3://kept/data/shard-0001.bin';
    const bytes = randomBytes(300_000);
    await s3.ensureBucket('kept');
    await s3.put(uri, bytes);
    const [status] = await stackStatus(stack);
    assert.equal(status!.state, 'running');
    const pid = status!.pid!;

    await stackDown(stack);
    // SeaweedFS's own last words when SIGTERM let it stop cleanly (SIGKILL leaves none).
    const log = readFileSync(join(stack.dir, 'logs', 's3.log'), 'utf8');
    assert.match(log, /Shut down successfully!/, 'the volume server closed its volumes');
    assert.deepEqual(weedProcesses(stack.dir), [], 'no weed process of this stack is left');
    assert.equal(isGroupAlive(pid), false, 'its process group is gone');
    assert.equal(await tcpOpen(stack.host, stack.ports.s3), false, 'its S3 port is closed');

    await stackUp(stack);
    assert.deepEqual(Buffer.from(await s3.getBytes(uri)), bytes);
    assert.deepEqual(
      (await s3.list('s3://kept/data/')).map((o) => [o.key, o.size]),
      [['data/shard-0001.bin', bytes.length]],
    );
  });
});
