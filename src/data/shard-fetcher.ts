/**
 * Fetches shards on a worker thread (shard-fetch-thread.ts). TensorFlow's kernels run on the main
 * thread and hold it for a whole training step (seconds; far longer on a busy node): reads left to
 * the main thread's event loop stall meanwhile, and one step longer than the S3 idle timeout would
 * end every read in flight. On a thread of its own the reads, and the sha256 checks, go on during
 * the step, and each shard arrives whole, handed over without a copy.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FetchReply, FetchRequest } from './shard-fetch-thread';
import type { ShardRef } from './shards';

export class ShardFetcher {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();

  constructor(private readonly integrityError: (message: string) => Error) {}

  fetch(ref: ShardRef): Promise<Uint8Array> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, uri: ref.uri, bytes: ref.bytes, sha256: ref.sha256 } satisfies FetchRequest);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Compiled: the .js beside this file; under ts-node (tests): the .ts through its hook.
    const ext = extname(__filename);
    const worker = new Worker(join(__dirname, `shard-fetch-thread${ext}`), {
      execArgv: ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : [],
    });
    worker.on('message', (reply: FetchReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (!this.pending.size) worker.unref();
      if ('buffer' in reply) p.resolve(new Uint8Array(reply.buffer));
      else {
        const err = reply.error.integrity ? this.integrityError(reply.error.message) : new Error(reply.error.message);
        if (!reply.error.integrity) err.name = reply.error.name;
        p.reject(err);
      }
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`the shard fetching thread exited (code ${code})`)));
    // Idle, it does not keep the process alive.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private fail(err: Error): void {
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}
