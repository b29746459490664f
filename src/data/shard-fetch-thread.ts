/**
 * The thread that fetches shards for a ShardStream (see shard-fetcher.ts): it reads each shard from
 * S3 and checks its length and sha256 with an event loop of its own, so a training step that holds
 * the main thread for many seconds never leaves a socket unread until its idle timeout.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { loadConfig } from '../config';
import { createS3Client, S3Store } from '../storage/s3';

export interface FetchRequest {
  id: number;
  uri: string;
  bytes: number;
  sha256: string;
}

export type FetchReply = { id: number; buffer: ArrayBuffer } | { id: number; error: { name: string; message: string; integrity: boolean } };

const s3 = new S3Store(createS3Client(loadConfig(process.env)));

parentPort!.on('message', (req: FetchRequest) => {
  fetchShard(req).then(
    (buffer) => parentPort!.postMessage({ id: req.id, buffer } satisfies FetchReply, [buffer]),
    (err: Error & { integrity?: boolean }) =>
      parentPort!.postMessage({
        id: req.id,
        error: { name: err.name, message: err.message, integrity: err.integrity === true },
      } satisfies FetchReply),
  );
});

async function fetchShard({ uri, bytes, sha256 }: FetchRequest): Promise<ArrayBuffer> {
  const data = await s3.getBytes(uri);
  const integrity = (message: string) => Object.assign(new Error(`${message}; preprocess the dataset again`), { integrity: true });
  if (data.length !== bytes) throw integrity(`${uri} is ${data.length} bytes, the manifest says ${bytes}`);
  const digest = createHash('sha256').update(data).digest('hex');
  if (digest !== sha256) throw integrity(`${uri} has sha256 ${digest}, the manifest says ${sha256}: the shard changed after preprocessing`);
  // A buffer of its own, so that it can be handed over without a copy on the other side.
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? (data.buffer as ArrayBuffer) : data.slice().buffer;
}
