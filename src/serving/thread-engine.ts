/**
 * A ModelEngine on a thread of its own. Decoding a 224 px JPEG or parsing a large JSON body takes
 * milliseconds, a model call tens to hundreds: on the HTTP server's event loop they would hold up
 * every other request, /ping included, and a health check would take a busy server for a hung
 * one. Here the event loop only moves bytes; the thread (inference-thread.ts) does the rest.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { configureTensorflowEnv } from '../ml/tf';
import type { Batched, BodyType, InferenceEngine, ModelDescription, ModelInfo, ModelRequest } from './engine';
import { HttpError } from './http-error';

export interface ThreadEngineOptions {
  model: ModelRequest;
  maxBatch?: number;
  maxInstances?: number;
  /** Offer the hot swap (models are loaded from their URI on the thread). */
  canSwap?: boolean;
  /** Where the thread writes its drift sample (drift-recorder.ts); unset: none is kept. */
  driftSampleUri?: string;
}

/** What the thread posts back. */
export type ThreadMessage =
  | { kind: 'ready'; served: ModelDescription }
  | { kind: 'failed'; message: string }
  | { kind: 'modelCall'; instances: number }
  | { kind: 'reply'; id: number; value?: unknown; error?: { status: number; message: string; headers: Record<string, string> } };

/** What the thread is asked. */
export type ThreadRequest = { id: number } & (
  | { op: 'invoke'; type: BodyType; body: Uint8Array }
  | { op: 'swap'; request: ModelRequest }
  /** Write what the thread still holds (its drift sample) before it is stopped. */
  | { op: 'flush' }
);

/** How long a closing engine waits for its thread to write what it holds. */
const FLUSH_MS = 5000;

export class ThreadEngine implements InferenceEngine {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: ((instances: number) => void)[] = [];
  private stopped: Error | undefined;
  private closing = false;

  private constructor(
    private readonly worker: Worker,
    private current: ModelDescription,
    readonly canSwap: boolean,
    private readonly onStop: (err: Error) => void,
  ) {
    worker.on('message', (m: ThreadMessage) => this.receive(m));
    worker.on('error', (err) => this.stop(err));
    worker.on('exit', (code) => this.stop(new Error(`the inference thread exited (code ${code})`)));
  }

  /**
   * Starts the thread and resolves once its model is loaded and warmed up. `onStop` is told if the
   * thread dies later: the process cannot serve without it and should exit so it is restarted.
   */
  static start(options: ThreadEngineOptions, onStop: (err: Error) => void = () => undefined): Promise<ThreadEngine> {
    // libtensorflow reads its variables from the process environment when the thread loads it.
    configureTensorflowEnv();
    // Compiled: the .js next to this file; under ts-node (tests) the .ts through its transpile-only hook.
    const ext = extname(__filename);
    const worker = new Worker(join(__dirname, `inference-thread${ext}`), {
      execArgv: ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : [],
      workerData: options,
    });
    return new Promise((resolve, reject) => {
      const early = (m: ThreadMessage): void => {
        if (m.kind === 'ready') {
          worker.off('message', early).off('error', reject).off('exit', exited);
          resolve(new ThreadEngine(worker, m.served, options.canSwap === true, onStop));
        } else if (m.kind === 'failed') {
          void worker.terminate();
          reject(new Error(m.message));
        }
      };
      const exited = (code: number): void => reject(new Error(`the inference thread exited (code ${code}) before its model was loaded`));
      worker.on('message', early).on('error', reject).on('exit', exited);
    });
  }

  served(): ModelDescription {
    return this.current;
  }

  onModelCall(listener: (instances: number) => void): void {
    this.listeners.push(listener);
  }

  invoke(type: BodyType, body: Buffer): Promise<Batched> {
    // A Buffer may be a view of a shared pool: only a buffer of its own is moved, others are copied.
    const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return this.ask({ op: 'invoke', type, body: bytes }, own ? [body.buffer as ArrayBuffer] : []) as Promise<Batched>;
  }

  async swap(request: ModelRequest): Promise<ModelInfo> {
    if (!this.canSwap) throw new HttpError(404, 'not found');
    const served = (await this.ask({ op: 'swap', request })) as ModelDescription;
    this.current = served;
    return served.info;
  }

  async close(): Promise<void> {
    this.closing = true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, FLUSH_MS)));
    await Promise.race([this.ask({ op: 'flush' }).catch(() => undefined), late]).finally(() => clearTimeout(timer));
    await this.worker.terminate();
  }

  private ask(request: DistributiveOmit<ThreadRequest, 'id'>, transfer: ArrayBuffer[] = []) {
    if (this.stopped) return Promise.reject(new HttpError(503, 'the inference thread has stopped; the server is restarting'));
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...request } satisfies ThreadRequest, transfer);
    });
  }

  private receive(m: ThreadMessage): void {
    if (m.kind === 'modelCall') for (const listener of this.listeners) listener(m.instances);
    if (m.kind !== 'reply') return;
    const waiter = this.waiting.get(m.id);
    this.waiting.delete(m.id);
    if (m.error) waiter?.reject(new HttpError(m.error.status, m.error.message, m.error.headers));
    else waiter?.resolve(m.value);
  }

  private stop(err: Error): void {
    if (this.stopped) return;
    this.stopped = err;
    for (const { reject } of this.waiting.values())
      reject(new HttpError(503, 'the inference thread has stopped; the server is restarting'));
    this.waiting.clear();
    if (!this.closing) this.onStop(err);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
