/**
 * The inference server, implementing the SageMaker inference-container contract:
 * GET /ping, POST /invocations. Bodies: JSON `{"instances": [<HxWx3 floats in [0,1]>, ...]}`
 * or a raw image/jpeg / image/png. The answer names the label and every class probability.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
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
  /**
   * Open connections beyond which new ones are refused (default 256): the next CONTROL_CONNECTIONS
   * get 503 to an invocation but an answer to anything else, then are closed; any more are closed unanswered.
   */
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
  if (initial) warmUp(initial);
  let current = initial;

  const metrics = new ServingMetrics();
  const batcher = new Batcher(options.maxBatch ?? 32, (pixels, n) => {
    metrics.modelCall(n);
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
    checkBodyHeaders(req);
    if (!acceptsJson(req.headers.accept))
      throw new HttpError(
        406,
        `accept '${clip(req.headers.accept!)}' excludes application/json, the only type answered; accept application/json or */*`,
      );
    const { type, charset } = mediaType(req.headers['content-type']);
    if (type !== 'application/json' && type !== 'image/jpeg' && type !== 'image/png')
      throw new HttpError(415, `unsupported content type '${type || '(none)'}'; send application/json, image/jpeg or image/png`);
    // JSON is UTF-8 (RFC 8259); a valid body is all ASCII, so only charsets that are not ASCII-compatible are unreadable.
    if (type === 'application/json' && charset !== undefined && !ASCII_CHARSETS.has(charset))
      throw new HttpError(415, `charset '${clip(charset)}' cannot be read: send the JSON as UTF-8, with charset=utf-8 or no charset`);
    const body = await readBody(req, maxBody);
    if (body.length === 0)
      throw new HttpError(
        400,
        'the body is empty; send {"instances": [...]} as application/json, or a JPEG or PNG file as image/jpeg or image/png',
      );
    if (type === 'image/jpeg' || type === 'image/png') {
      let pixels: Uint8Array;
      try {
        pixels = decodeAndResize(body, size);
      } catch (err) {
        if (err instanceof ImageTooLargeError) throw new HttpError(413, `${err.message}; send a smaller image`);
        throw new HttpError(400, `the body is not a decodable ${type} image; send the bytes of a JPEG or PNG file`);
      }
      const floats = new Float32Array(pixels.length);
      for (let i = 0; i < pixels.length; i++) floats[i] = pixels[i]! / 255;
      return batcher.run(floats, 1);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      // JSON has no NaN or Infinity: those tokens land here too.
      throw new HttpError(400, `the body is not valid JSON (${(err as Error).message}); send numbers only, no NaN or Infinity`);
    }
    const instances = (parsed as { instances?: unknown })?.instances;
    if (!Array.isArray(instances) || instances.length === 0)
      throw new HttpError(400, `expected {"instances": [...]} with at least one instance, each of shape [${size}, ${size}, 3]`);
    if (instances.length > maxInstances) {
      // One image not wrapped in a list looks like too many instances: its shape error says so better.
      flattenInstance(instances[0], size, new Float32Array(size * size * 3), 0, 'instances[0]');
      throw new HttpError(413, `at most ${maxInstances} instances per request, got ${instances.length}; send the rest in another request`);
    }
    const flat = new Float32Array(instances.length * size * size * 3);
    instances.forEach((instance, i) => flattenInstance(instance, size, flat, i * size * size * 3, `instances[${i}]`));
    return batcher.run(flat, instances.length);
  };

  const adminLoad = async (req: IncomingMessage): Promise<object> => {
    if (!options.loadModel) throw new HttpError(404, 'not found');
    checkBodyHeaders(req);
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
    try {
      warmUp(next);
    } catch (err) {
      next.model.dispose();
      throw new HttpError(422, `${(err as Error).message}; the served model was kept`);
    }
    // Model calls run synchronously (see Batcher), so no request is using the old model while we swap.
    const previous = current;
    current = next;
    batcher.relearn();
    previous?.model.dispose();
    return next.info;
  };

  // A slow or stalled client cannot hold a connection (checked every second, Node's default being
  // every 30 s; more often for short timeouts), and a flood of them cannot exhaust the process.
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const requestTimeout = options.requestTimeoutMs ?? 60_000;
  const timeouts = {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(Math.min(headersTimeout, requestTimeout) / 4))),
  };
  const maxConnections = options.maxConnections ?? 256;
  // Connections past maxConnections, up to CONTROL_CONNECTIONS more: invocations there are refused,
  // but /ping still answers, so a server whose connections are all busy is not taken for a hung one.
  const overflow = new WeakSet<Socket>();
  let open = 0;
  const server = createServer(timeouts, (req, res) => {
    const route = `${req.method} ${(req.url ?? '').split('?')[0]}`;
    const started = process.hrtime.bigint();
    res.on('finish', () =>
      metrics.observe(KNOWN_ROUTES.has(route) ? route : 'other', res.statusCode, Number(process.hrtime.bigint() - started) / 1e9),
    );
    // One answer, then the connection is given back.
    const overflowing = overflow.has(req.socket);
    if (overflowing) res.setHeader('connection', 'close');
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
          if (overflowing) {
            req.resume();
            throw new HttpError(503, `all ${maxConnections} connections are in use; retry shortly`, { 'retry-after': '1' });
          }
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
  server.on('connection', (socket: Socket) => {
    if (++open > maxConnections) overflow.add(socket);
    socket.once('close', () => open--);
  });
  server.maxConnections = maxConnections + CONTROL_CONNECTIONS;
  // Node's parser refuses a malformed request (a bad or duplicate content-length, headers too
  // large, a request too slow) with a bare status; this answers why, as JSON like every other error.
  server.on('clientError', (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex) => {
    const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (err.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
      const [status, message] = clientErrorAnswer(err, headersTimeout, requestTimeout);
      const text = JSON.stringify({ error: message });
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
    }
    socket.destroy();
  });
  return { server, current: () => current };
}

/** Connections beyond maxConnections that are still answered (all but invocations): health checks, metrics, hot swaps. */
const CONTROL_CONNECTIONS = 16;

function clientErrorAnswer(err: NodeJS.ErrnoException & { reason?: string }, headersMs: number, requestMs: number): [number, string] {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, `the request arrived too slowly: send the headers within ${headersMs} ms and all of it within ${requestMs} ms`];
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'the request headers are too large; send only the headers the request needs'];
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return [400, `malformed request: ${err.reason}; send one content-length, the body's size in bytes, or transfer-encoding: chunked`];
    default:
      return [400, `malformed request: ${err.reason ?? err.message}`];
  }
}

/** Charsets in which a valid JSON body (ASCII only) reads the same as in UTF-8. */
const ASCII_CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii', 'iso-8859-1', 'latin1', 'windows-1252']);
/** Far longer than any real content-type ("application/json; charset=utf-8"). */
const MAX_CONTENT_TYPE = 256;

/** A header value cut short for an error message. */
function clip(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}...` : value;
}

/** The media type and charset of a content-type header ('' when there is none). */
function mediaType(header: string | undefined): { type: string; charset?: string } {
  if (header === undefined || header.trim() === '') return { type: '' };
  if (header.length > MAX_CONTENT_TYPE)
    throw new HttpError(
      400,
      `the content-type header is ${header.length} characters long; send just the media type, e.g. application/json`,
    );
  const [type, ...params] = header.split(';');
  const media = type!.trim().toLowerCase();
  if (!/^[\w!#$%&'*+.^`|~-]+\/[\w!#$%&'*+.^`|~-]+$/.test(media))
    throw new HttpError(
      400,
      `content-type '${clip(header)}' is not a media type (type/subtype); send application/json, image/jpeg or image/png`,
    );
  const charset = params.map((p) => /^\s*charset\s*=\s*"?([^"]*)"?\s*$/i.exec(p)?.[1]).find((c) => c !== undefined);
  return { type: media, charset: charset?.trim().toLowerCase() };
}

/** Whether an accept header admits JSON: none, a wildcard, or application/json, at a quality above 0. */
function acceptsJson(header: string | undefined): boolean {
  if (header === undefined || header.trim() === '') return true;
  return header.split(',').some((range) => {
    const [type, ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    if (params.some((p) => /^q\s*=\s*0(\.0*)?$/.test(p))) return false;
    return type === '*/*' || type === '*' || type === 'application/*' || type === 'application/json';
  });
}

/**
 * Headers that decide how a body is read. Node keeps the first of two content-type or
 * authorization headers and drops the second: two that disagree are refused, not guessed between.
 */
function checkBodyHeaders(req: IncomingMessage): void {
  const seen = new Map<string, string>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (name !== 'content-type' && name !== 'authorization') continue;
    const value = req.rawHeaders[i + 1]!;
    if (seen.has(name) && seen.get(name) !== value) throw new HttpError(400, `the request has two different ${name} headers; send one`);
    seen.set(name, value);
  }
  const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity')
    throw new HttpError(415, `content-encoding '${clip(encoding)}' is not supported; send the body uncompressed`);
}

const KNOWN_ROUTES = new Set(['GET /ping', 'GET /model', 'POST /invocations', 'POST /admin/model', 'GET /metrics']);

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Above this a value becomes Infinity in the model's float32 input. */
const FLOAT32_MAX = 3.4028234663852886e38;

function flattenInstance(instance: unknown, size: number, out: Float32Array, offset: number, path: string): void {
  // Each error names the first element that is wrong, and what it should be.
  const shaped = (value: unknown, length: number, at: string): unknown[] => {
    if (Array.isArray(value) && value.length === length) return value;
    throw new HttpError(
      400,
      `${path} must have shape [${size}, ${size}, 3] (rows, columns, RGB floats in [0, 1]): ${at} is ${describe(value)}, not an array of ${length}`,
    );
  };
  let o = offset;
  const rows = shaped(instance, size, path);
  for (let r = 0; r < size; r++) {
    const row = shaped(rows[r], size, `${path}[${r}]`);
    for (let c = 0; c < size; c++) {
      const px = shaped(row[c], 3, `${path}[${r}][${c}]`);
      for (let k = 0; k < 3; k++) {
        const v = px[k];
        if (typeof v !== 'number')
          throw new HttpError(400, `${path}[${r}][${c}][${k}] is ${describe(v)}; every value must be a number (RGB floats in [0, 1])`);
        // JSON.parse reads 1e400 as Infinity; 1e39 is finite but overflows float32.
        if (!(Math.abs(v) <= FLOAT32_MAX))
          throw new HttpError(400, `${path}[${r}][${c}][${k}] is out of float32 range; send RGB floats in [0, 1]`);
        out[o++] = v;
      }
    }
  }
}

/** What a JSON value is, for an error message. */
function describe(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'string') return `a string (${JSON.stringify(clip(value))})`;
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value} (${String(value)})`;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return reject(new HttpError(413, `body of ${declared} bytes exceeds the ${limit}-byte limit; send less per request`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    // An oversized body is drained, not buffered, so the client still gets its 413 answer.
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () =>
      size > limit
        ? reject(new HttpError(413, `body exceeds the ${limit}-byte limit; send less per request`))
        : resolve(Buffer.concat(chunks)),
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
 * Runs a model WARM_UP_CALLS times on one blank image before it serves. A fresh model's first
 * calls cost several times a steady one (the 224 px Basic CNN on 2 cores: 116 ms, then 29, then
 * 15-25; ResNet50 156, 70, then 44-63): the first requests would pay it, and the batch sizer would
 * take it for what a call of one image costs. It also refuses, before it replaces anything, a
 * model that cannot predict on its metadata's input size or whose outputs are not its classes.
 */
function warmUp({ model, metadata, info }: LoadedModel): void {
  const tf = loadTf();
  const size = metadata.imageSize;
  for (let i = 0; i < WARM_UP_CALLS; i++) {
    let shape: number[];
    try {
      const out = tf.tidy(() => model.predict(tf.zeros([1, size, size, 3])) as Tensor);
      shape = out.shape;
      out.dispose();
    } catch (err) {
      throw new Error(
        `${info.modelUri}: the model cannot predict on one ${size}x${size} RGB image, the size its metadata gives (${(err as Error).message})`,
      );
    }
    if (shape.length !== 2 || shape[1] !== metadata.classes.length)
      throw new Error(
        `${info.modelUri}: the model outputs shape [${shape.join(', ')}] for one image, not one probability per class of its metadata (${metadata.classes.length}: ${metadata.classes.join(', ')})`,
      );
  }
}

/** Model calls made on a model before it serves (warmUp). */
const WARM_UP_CALLS = 3;

/**
 * Batches concurrent requests into one model call. A model call blocks the event loop; requests
 * that arrive meanwhile queue up and go together in the next call, so a lone request waits for
 * nothing and a busy server makes fewer, larger calls. How large is measured, not assumed
 * (BatchSizer): at most maxBatch instances, and fewer where larger calls cost more per image.
 */
export class Batcher {
  private queue: { pixels: Float32Array; n: number; resolve: (b: Batched) => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;
  private sizer: BatchSizer;

  constructor(
    private readonly maxBatch: number,
    private readonly predict: (pixels: Float32Array, n: number) => Batched,
  ) {
    this.sizer = new BatchSizer(maxBatch);
  }

  /** Forgets the measured costs (another model was loaded). */
  relearn(): void {
    this.sizer = new BatchSizer(this.maxBatch);
  }

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
    const cap = this.sizer.next();
    while (this.queue.length && (take.length === 0 || n + this.queue[0]!.n <= cap)) {
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
      const started = performance.now();
      const out = this.predict(pixels, n);
      this.sizer.record(n, performance.now() - started);
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

/**
 * The batch size that serves most images per second, learnt from the model calls themselves.
 * Batching pays when a larger call costs less per image; for a large input on a small CPU it does
 * not (the Basic CNN at 224 px on 2 cores: 63 images/s one at a time, 45 at 32; npm run
 * bench:serve), and a large call only makes every request in it wait. Per power-of-two size class
 * it keeps a moving average of milliseconds per image; calls may take up to the largest size of
 * the smallest class within TIE of the cheapest, or of a neighbouring class while that one is
 * unmeasured, and every EXPLORE calls of a neighbouring class, so a cost that changed is seen.
 * Before anything is measured, calls take up to maxBatch.
 */
export class BatchSizer {
  private readonly msPerImage = new Map<number, number>();
  private calls = 0;

  constructor(private readonly maxBatch: number) {}

  /** The most instances the call being made now may take. */
  next(): number {
    return this.capAt(this.calls++);
  }

  record(instances: number, ms: number): void {
    const size = sizeClass(instances);
    const perImage = ms / instances;
    const before = this.msPerImage.get(size);
    this.msPerImage.set(size, before === undefined ? perImage : before + 0.2 * (perImage - before));
  }

  private capAt(call: number): number {
    if (!this.msPerImage.size) return this.maxBatch;
    // The smallest class within TIE of the cheapest: a larger call that is not clearly cheaper per
    // image only makes its requests wait, and on a flat stretch of costs the choice slides down it.
    const cheapest = Math.min(...this.msPerImage.values());
    const best = Math.min(...[...this.msPerImage].filter(([, cost]) => cost <= cheapest * (1 + TIE)).map(([size]) => size));
    // A neighbouring class not yet measured is tried at once: a burst after light load ramps up,
    // and a first large call walks down, within a few calls. Every EXPLORE calls a neighbour,
    // larger and smaller in turn, is measured again, so a cost that changed moves the choice one
    // class at a time: the cost per image has one valley over the batch size. Re-measuring every
    // class in turn instead cost a busy server 15 % of its images per second where one image per
    // call is cheapest (the costs in test/serving/server.test.ts).
    const up = best * 2 <= this.maxBatch ? best * 2 : undefined;
    const down = best > 1 ? best / 2 : undefined;
    let size = [up, down].find((c) => c !== undefined && !this.msPerImage.has(c)) ?? best;
    if (size === best && call % EXPLORE === 0) size = (up && (!down || Math.floor(call / EXPLORE) % 2 === 0) ? up : down) ?? best;
    return Math.min(this.maxBatch, 2 * size - 1);
  }
}

/** Calls between two re-measurements of a neighbouring size class. */
const EXPLORE = 16;

/** Costs per image this close (relative) count as equal. */
const TIE = 0.03;

/** The power of two at or below n. */
const sizeClass = (n: number): number => 2 ** Math.floor(Math.log2(n));
