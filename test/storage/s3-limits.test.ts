import { strict as assert } from 'node:assert';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { loadConfig } from '../../src/config';
import { createS3Client, S3ObjectTooLargeError, S3Store, S3TimeoutError } from '../../src/storage/s3';
import { useTestStack } from '../helpers/global';
import { testS3, uniqueBucket } from '../helpers/services';

useTestStack();

const MB = 2 ** 20;

/** A store built as the workers build theirs, with some variables of its own. */
const storeWith = (env: Record<string, string>): S3Store => new S3Store(createS3Client(loadConfig({ ...process.env, ...env })));

/** Runs `fn` and returns what it settled to, with the bytes every client socket it opened has read. */
async function countingReads<T>(fn: () => Promise<T>): Promise<{ settled: PromiseSettledResult<T>; bytesRead: number }> {
  const sockets: Socket[] = [];
  const onSocket = (message: unknown): void => void sockets.push((message as { socket: Socket }).socket);
  subscribe('net.client.socket', onSocket);
  try {
    const [settled] = await Promise.allSettled([fn()]);
    return { settled: settled!, bytesRead: sockets.reduce((sum, s) => sum + s.bytesRead, 0) };
  } finally {
    unsubscribe('net.client.socket', onSocket);
  }
}

const rejection = (settled: PromiseSettledResult<unknown>): unknown => {
  assert.equal(settled.status, 'rejected', 'the read must fail');
  return (settled as PromiseRejectedResult).reason;
};

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('S3 limits: object size cap and timeouts', function () {
  this.timeout(60_000);

  it('refuses an object over S3_MAX_OBJECT_MB, naming it and its size, before reading its body', async () => {
    const s3 = testS3();
    const bucket = uniqueBucket('cap');
    await s3.ensureBucket(bucket);
    const big = `s3://${bucket}/shards/big.bin`;
    const atCap = `s3://${bucket}/shards/at-cap.bin`;
    await s3.put(big, new Uint8Array(8 * MB).fill(7));
    await s3.put(atCap, new Uint8Array(MB).fill(3));

    const capped = storeWith({ S3_MAX_OBJECT_MB: '1' });
    const { settled, bytesRead } = await countingReads(() => capped.getBytes(big));
    const err = rejection(settled);
    assert.ok(err instanceof S3ObjectTooLargeError, `expected S3ObjectTooLargeError, got ${String(err)}`);
    assert.equal(err.uri, big);
    assert.equal(err.size, 8 * MB);
    assert.match(err.message, /s3:\/\/cap-\w+\/shards\/big\.bin is 8\.0 MB, over the 1\.0 MB .*raise S3_MAX_OBJECT_MB/);
    // The body was destroyed unread: what reached this process is the headers and whatever its
    // socket had buffered, far less than the object (or the cap).
    assert.ok(bytesRead < MB, `${bytesRead} bytes read for an 8 MB object`);

    assert.equal((await capped.getBytes(atCap)).length, MB, 'an object of exactly the cap is read');
  });

  describe('against a local server', () => {
    const servers: Server[] = [];
    const sockets: Socket[] = [];
    afterEach(async () => {
      sockets.splice(0).forEach((s) => s.destroy());
      await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    });
    /** An HTTP server answering every request with `handle`; counts the requests. */
    const httpServer = async (handle: (req: IncomingMessage, res: ServerResponse) => void) => {
      const served = { requests: 0, endpoint: '' };
      const server = createHttpServer((req, res) => {
        served.requests++;
        handle(req, res);
      });
      server.on('connection', (s) => sockets.push(s));
      servers.push(server);
      served.endpoint = await listen(server);
      return served;
    };

    it('fails a request that is never answered after its retries, naming the object and the timeout', async () => {
      // Accepts every connection and never says a word.
      let connections = 0;
      const server = createServer((socket) => {
        connections++;
        sockets.push(socket);
      });
      servers.push(server);
      const endpoint = await listen(server);
      const store = storeWith({ AWS_ENDPOINT_URL_S3: endpoint, S3_CONNECT_TIMEOUT_MS: '1000', S3_IDLE_TIMEOUT_MS: '200' });
      const err = await store.getBytes('s3://silent/data/train/benign/0.jpg').then(
        () => assert.fail('a server that never answers cannot give bytes'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof S3TimeoutError, `expected S3TimeoutError, got ${String(err)}`);
      assert.equal(err.uri, 's3://silent/data/train/benign/0.jpg');
      assert.equal(err.attempts, 3);
      assert.match(err.message, /^S3 GetObject s3:\/\/silent\/data\/train\/benign\/0\.jpg failed on all 3 attempt\(s\): /);
      assert.match(err.message, /timed out after 200 ms of inactivity.*S3_IDLE_TIMEOUT_MS/);
      assert.equal(connections, 3, 'each attempt was a request of its own');
    });

    it('reads a body that stalls after its headers again, then fails naming the object', async () => {
      const served = await httpServer((_req, res) => {
        res.writeHead(200, { 'content-length': '1000', 'content-type': 'image/jpeg' });
        res.write(Buffer.alloc(10));
      });
      const store = storeWith({ AWS_ENDPOINT_URL_S3: served.endpoint, S3_IDLE_TIMEOUT_MS: '200' });
      const err = await store.getBytes('s3://stall/a.jpg').then(
        () => assert.fail('a stalled body cannot complete'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof S3TimeoutError, `expected S3TimeoutError, got ${String(err)}`);
      assert.equal(err.uri, 's3://stall/a.jpg');
      assert.equal(err.attempts, 3);
      assert.equal(served.requests, 3);
    });

    it('reads a slow, steady body that takes many times the idle timeout', async () => {
      // 40 chunks, one every 50 ms: 2 s in all under an idle timeout of 300 ms.
      const chunk = Buffer.alloc(32 * 1024, 1);
      const served = await httpServer((_req, res) => {
        res.writeHead(200, { 'content-length': String(40 * chunk.length) });
        let sent = 0;
        const timer = setInterval(() => {
          res.write(chunk);
          if (++sent === 40) {
            clearInterval(timer);
            res.end();
          }
        }, 50);
        res.on('close', () => clearInterval(timer));
      });
      const store = storeWith({ AWS_ENDPOINT_URL_S3: served.endpoint, S3_IDLE_TIMEOUT_MS: '300' });
      const bytes = await store.getBytes('s3://slow/shard-00000.bin');
      assert.equal(bytes.length, 40 * chunk.length);
      assert.equal(served.requests, 1);
    });

    it('cuts off a body without a Content-Length once it passes the cap', async () => {
      // Chunked transfer encoding: the response does not say how large the object is.
      const chunk = Buffer.alloc(64 * 1024, 2);
      const served = await httpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let sent = 0;
        const more = (): void => {
          while (sent < 8 * MB && !res.destroyed) {
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          res.end();
        };
        more();
      });
      const store = storeWith({ AWS_ENDPOINT_URL_S3: served.endpoint, S3_MAX_OBJECT_MB: '1' });
      const { settled, bytesRead } = await countingReads(() => store.getBytes('s3://chunked/huge.png'));
      const err = rejection(settled);
      assert.ok(err instanceof S3ObjectTooLargeError, `expected S3ObjectTooLargeError, got ${String(err)}`);
      assert.equal(err.size, undefined);
      assert.match(err.message, /^s3:\/\/chunked\/huge\.png is larger than the 1\.0 MB .*S3_MAX_OBJECT_MB/);
      assert.ok(bytesRead < 2 * MB, `${bytesRead} bytes read of an 8 MB body`);
    });
  });
});
