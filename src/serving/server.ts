/**
 * The inference server, implementing the SageMaker inference-container contract:
 * GET /ping, POST /invocations. Bodies: JSON `{"instances": [<HxWx3 floats in [0,1]>, ...]}`
 * or a raw image/jpeg / image/png. The answer names the label and every class probability.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { LayersModel, Tensor } from '@tensorflow/tfjs-node';
import { decodeAndResize, ImageTooLargeError } from '../data/images';
import type { ModelMetadata } from '../ml/model-store';
import { loadTf } from '../ml/tf';
import { ServingMetrics } from './metrics';

export interface LoadedModel {
  model: LayersModel;
  metadata: ModelMetadata;
  /** What is being served, reported by GET /model. */
  info: { name?: string; version?: string; modelUri: string };
}

export interface ServerOptions {
  maxBodyBytes?: number;
  maxInstances?: number;
  /** Most instances one model call takes when concurrent requests are batched together. */
  maxBatch?: number;
  /** Enables POST /admin/model (hot swap); local endpoints only. */
  loadModel?: (request: { modelUri: string; name?: string; version?: string }) => Promise<LoadedModel>;
  /** The bearer token POST /admin/model requires (required with loadModel). */
  adminToken?: string;
  /** Invocations in progress (reading, decoding, waiting for the model) beyond which new ones get 503 with Retry-After (default 128). */
  maxPendingRequests?: number;
  /** Open connections beyond which new ones are refused (default 256). */
  maxConnections?: number;
  /** How long a client may take to send its headers, and its whole request (defaults 10 s and 60 s). */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface Prediction {
  label: string;
  probabilities: Record<string, number>;
}

export function createInferenceServer(
  initial: LoadedModel | undefined,
  options: ServerOptions = {},
): { server: Server; current: () => LoadedModel | undefined } {
  const maxBody = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const maxInstances = options.maxInstances ?? 64;
  const maxPending = options.maxPendingRequests ?? 128;
  let pending = 0;
  if (options.loadModel && !options.adminToken) throw new Error('POST /admin/model needs an admin token');
  let current = initial;

  const batcher = new Batcher(options.maxBatch ?? 32, (pixels, n) => {
    const tf = loadTf();
    const { model, metadata } = current!;
    const size = metadata.imageSize;
    if (pixels.length !== n * size * size * 3)
      throw new HttpError(503, 'the model was swapped for one with another input size; send the request again');
    const probs = tf.tidy(() => model.predict(tf.tensor4d(pixels, [n, size, size, 3])) as Tensor);
    try {
      const rows = probs.arraySync() as number[][];
      return {
        version: current!.info.version,
        predictions: rows.map((row) => {
          const best = row.indexOf(Math.max(...row));
          return { label: metadata.classes[best]!, probabilities: Object.fromEntries(metadata.classes.map((c, i) => [c, row[i]!])) };
        }),
      };
    } finally {
      probs.dispose();
    }
  });

  const invocations = async (req: IncomingMessage): Promise<Batched> => {
    if (!current) throw new HttpError(503, 'no model loaded');
    const size = current.metadata.imageSize;
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const body = await readBody(req, maxBody);
    if (type === 'image/jpeg' || type === 'image/png') {
      let pixels: Uint8Array;
      try {
        pixels = decodeAndResize(body, size);
      } catch (err) {
        if (err instanceof ImageTooLargeError) throw new HttpError(413, err.message);
        throw new HttpError(400, `the body is not a decodable ${type} image`);
      }
      const floats = new Float32Array(pixels.length);
      for (let i = 0; i < pixels.length; i++) floats[i] = pixels[i]! / 255;
      return batcher.run(floats, 1);
    }
    if (type !== 'application/json')
      throw new HttpError(415, `unsupported content type '${type || '(none)'}'; send application/json, image/jpeg or image/png`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    const instances = (parsed as { instances?: unknown })?.instances;
    if (!Array.isArray(instances) || instances.length === 0)
      throw new HttpError(400, 'expected {"instances": [...]} with at least one instance');
    if (instances.length > maxInstances) throw new HttpError(413, `at most ${maxInstances} instances per request, got ${instances.length}`);
    const flat = new Float32Array(instances.length * size * size * 3);
    instances.forEach((instance, i) => flattenInstance(instance, size, flat, i * size * size * 3, `instances[${i}]`));
    return batcher.run(flat, instances.length);
  };

  const adminLoad = async (req: IncomingMessage): Promise<object> => {
    if (!options.loadModel) throw new HttpError(404, 'not found');
    if (!tokenMatches(req.headers.authorization, options.adminToken!)) {
      req.resume();
      throw new HttpError(401, 'POST /admin/model needs "authorization: Bearer <admin token>"', { 'www-authenticate': 'Bearer' });
    }
    let request: { modelUri?: unknown; name?: string; version?: string };
    try {
      request = JSON.parse((await readBody(req, 1024 * 1024)).toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    if (typeof request.modelUri !== 'string') throw new HttpError(400, 'expected {"modelUri": "...", "version": "..."}');
    const next = await options.loadModel({ modelUri: request.modelUri, name: request.name, version: request.version });
    // Model calls run synchronously (see Batcher), so no request is using the old model while we swap.
    const previous = current;
    current = next;
    previous?.model.dispose();
    return next.info;
  };

  const metrics = new ServingMetrics();
  // A slow or stalled client cannot hold a connection (checked every second; Node's default is
  // every 30 s), and a flood of them cannot exhaust the process.
  const timeouts = {
    headersTimeout: options.headersTimeoutMs ?? 10_000,
    requestTimeout: options.requestTimeoutMs ?? 60_000,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: 1_000,
  };
  const server = createServer(timeouts, (req, res) => {
    const route = `${req.method} ${(req.url ?? '').split('?')[0]}`;
    const started = process.hrtime.bigint();
    res.on('finish', () =>
      metrics.observe(KNOWN_ROUTES.has(route) ? route : 'other', res.statusCode, Number(process.hrtime.bigint() - started) / 1e9),
    );
    if (route === 'GET /metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.render(current?.info.version));
      return;
    }
    const handle = async (): Promise<[number, object, Record<string, string>?]> => {
      switch (route) {
        case 'GET /ping':
          return current ? [200, { status: 'ok' }] : [503, { error: 'no model loaded' }];
        case 'GET /model':
          if (!current) throw new HttpError(503, 'no model loaded');
          return [
            200,
            {
              ...current.info,
              classes: current.metadata.classes,
              imageSize: current.metadata.imageSize,
              modelClass: current.metadata.modelClass,
            },
          ];
        case 'POST /invocations': {
          // Beyond this a longer queue only adds latency: the client is told to come back.
          if (pending >= maxPending) {
            req.resume();
            throw new HttpError(503, `${pending} requests are already in progress; retry shortly`, { 'retry-after': '1' });
          }
          pending++;
          try {
            const { version, predictions } = await invocations(req);
            return [200, { predictions }, version ? { 'x-model-version': version } : {}];
          } finally {
            pending--;
          }
        }
        case 'POST /admin/model':
          return [200, await adminLoad(req)];
        default:
          throw new HttpError(404, `no route ${route}; use GET /ping or POST /invocations`);
      }
    };
    handle().then(
      ([status, body, headers]) => send(res, status, body, headers),
      (err: Error) =>
        send(
          res,
          err instanceof HttpError ? err.status : 500,
          { error: err instanceof HttpError ? err.message : `internal error: ${err.message}` },
          err instanceof HttpError ? err.headers : {},
        ),
    );
  });
  server.maxConnections = options.maxConnections ?? 256;
  return { server, current: () => current };
}

const KNOWN_ROUTES = new Set(['GET /ping', 'GET /model', 'POST /invocations', 'POST /admin/model', 'GET /metrics']);

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function flattenInstance(instance: unknown, size: number, out: Float32Array, offset: number, path: string): void {
  const shapeError = (): HttpError =>
    new HttpError(400, `${path} must have shape [${size}, ${size}, 3] (rows, columns, RGB floats in [0, 1])`);
  if (!Array.isArray(instance) || instance.length !== size) throw shapeError();
  let o = offset;
  for (const row of instance) {
    if (!Array.isArray(row) || row.length !== size) throw shapeError();
    for (const px of row) {
      if (!Array.isArray(px) || px.length !== 3) throw shapeError();
      for (const v of px) {
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, `${path} holds a non-numeric value`);
        out[o++] = v;
      }
    }
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return reject(new HttpError(413, `body of ${declared} bytes exceeds the ${limit}-byte limit`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    // An oversized body is drained, not buffered, so the client still gets its 413 answer.
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () =>
      size > limit ? reject(new HttpError(413, `body exceeds the ${limit}-byte limit`)) : resolve(Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

interface Batched {
  version?: string;
  predictions: Prediction[];
}

/**
 * Batches concurrent requests into one model call. A model call blocks the event loop; requests
 * that arrive meanwhile queue up and go together in the next call, so a lone request waits for
 * nothing and a busy server makes fewer, larger calls.
 */
export class Batcher {
  private queue: { pixels: Float32Array; n: number; resolve: (b: Batched) => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;

  constructor(
    private readonly maxBatch: number,
    private readonly predict: (pixels: Float32Array, n: number) => Batched,
  ) {}

  run(pixels: Float32Array, n: number): Promise<Batched> {
    return new Promise((resolve, reject) => {
      this.queue.push({ pixels, n, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const take: typeof this.queue = [];
    let n = 0;
    while (this.queue.length && (take.length === 0 || n + this.queue[0]!.n <= this.maxBatch)) {
      const item = this.queue.shift()!;
      take.push(item);
      n += item.n;
    }
    try {
      const pixels = take.length === 1 ? take[0]!.pixels : new Float32Array(n * (take[0]!.pixels.length / take[0]!.n));
      if (take.length > 1) {
        let offset = 0;
        for (const item of take) {
          pixels.set(item.pixels, offset);
          offset += item.pixels.length;
        }
      }
      const out = this.predict(pixels, n);
      let at = 0;
      for (const item of take) {
        item.resolve({ version: out.version, predictions: out.predictions.slice(at, at + item.n) });
        at += item.n;
      }
    } catch (err) {
      for (const item of take) item.reject(err as Error);
    }
    if (this.queue.length) setImmediate(() => this.flush());
    else this.scheduled = false;
  }
}
