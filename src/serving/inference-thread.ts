/** The thread a ThreadEngine runs: a ModelEngine on the model it was started with, answering its requests. */
import { parentPort, workerData } from 'node:worker_threads';
import { loadConfig } from '../config';
import { createS3Client, S3Store } from '../storage/s3';
import { DriftRecorder } from './drift-recorder';
import { ModelEngine } from './engine';
import { HttpError } from './http-error';
import { loadServedModel } from './load';
import type { ThreadEngineOptions, ThreadMessage, ThreadRequest } from './thread-engine';

const port = parentPort!;
const post = (m: ThreadMessage): void => port.postMessage(m);

async function main(options: ThreadEngineOptions): Promise<void> {
  let engine: ModelEngine;
  const drift = options.driftSampleUri
    ? new DriftRecorder(new S3Store(createS3Client(loadConfig(process.env))), {
        prefixUri: options.driftSampleUri,
        // How often a batch is written (default 60 s): a drift check counts it once it is.
        flushSeconds: Number(process.env.DRIFT_SAMPLE_FLUSH_SECONDS) || undefined,
        warn: (message) => console.error(`serve: ${message}`),
      })
    : undefined;
  try {
    engine = new ModelEngine(await loadServedModel(options.model), {
      maxBatch: options.maxBatch,
      maxInstances: options.maxInstances,
      ...(options.canSwap ? { loadModel: loadServedModel } : {}),
      ...(drift
        ? { observe: (pixels, n, size, labels, info) => drift.observe(pixels, n, size, labels, { name: info.name, version: info.version }) }
        : {}),
    });
  } catch (err) {
    return post({ kind: 'failed', message: (err as Error).message });
  }
  engine.onModelCall((instances) => post({ kind: 'modelCall', instances }));
  port.on('message', (request: ThreadRequest) => {
    const answer =
      request.op === 'invoke'
        ? engine.invoke(request.type, Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength))
        : request.op === 'swap'
          ? engine.swap(request.request).then(() => engine.served())
          : Promise.resolve(drift?.close());
    answer.then(
      (value) => post({ kind: 'reply', id: request.id, value }),
      (err: Error) =>
        post({
          kind: 'reply',
          id: request.id,
          error:
            err instanceof HttpError
              ? { status: err.status, message: err.message, headers: err.headers }
              : { status: 500, message: `internal error: ${err.message}`, headers: {} },
        }),
    );
  });
  post({ kind: 'ready', served: engine.served()! });
}

void main(workerData as ThreadEngineOptions);
