/** The thread a ThreadEngine runs: a ModelEngine on the model it was started with, answering its requests. */
import { parentPort, workerData } from 'node:worker_threads';
import { ModelEngine } from './engine';
import { HttpError } from './http-error';
import { loadServedModel } from './load';
import type { ThreadEngineOptions, ThreadMessage, ThreadRequest } from './thread-engine';

const port = parentPort!;
const post = (m: ThreadMessage): void => port.postMessage(m);

async function main(options: ThreadEngineOptions): Promise<void> {
  let engine: ModelEngine;
  try {
    engine = new ModelEngine(await loadServedModel(options.model), {
      maxBatch: options.maxBatch,
      maxInstances: options.maxInstances,
      ...(options.canSwap ? { loadModel: loadServedModel } : {}),
    });
  } catch (err) {
    return post({ kind: 'failed', message: (err as Error).message });
  }
  engine.onModelCall((instances) => post({ kind: 'modelCall', instances }));
  port.on('message', (request: ThreadRequest) => {
    const answer =
      request.op === 'invoke'
        ? engine.invoke(request.type, Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength))
        : engine.swap(request.request).then(() => engine.served());
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
