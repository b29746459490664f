/**
 * The inference server, implementing the SageMaker inference-container contract:
 * GET /ping, POST /invocations. Bodies: JSON `{"instances": [<HxWx3 floats in [0,1]>, ...]}`
 * or a raw image/jpeg / image/png. The answer names the label and every class probability.
 * This is the HTTP side: routes, limits and answers. What turns a body into predictions is its
 * InferenceEngine (engine.ts): on a thread of its own in the `serve` process (thread-engine.ts).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ModelEngine, type Batched, type BodyType, type InferenceEngine, type LoadedModel, type ModelRequest } from './engine';
import { clip, HttpError } from './http-error';
import { ServingMetrics } from './metrics';

export type { LoadedModel, Prediction } from './engine';

export interface ServerOptions {
  /** Largest body one request may send (default 32 MiB). */
  maxBodyBytes?: number;
  /**
   * Most bytes of request bodies held at once, over all requests (default 256 MiB): beyond it an
   * invocation gets 503 with Retry-After, so many large concurrent bodies cannot exhaust memory.
   */
  maxBodyBytesTotal?: number;
  /** With a LoadedModel: see ModelEngineOptions. */
  maxInstances?: number;
  maxBatch?: number;
  loadModel?: (request: ModelRequest) => Promise<LoadedModel>;
  /**
   * The bearer token POST /admin/model requires (required with a hot swap). When set it also
   * guards GET /model (which tells where the model is stored) and GET /metrics.
   */
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

export function createInferenceServer(
  model: LoadedModel | InferenceEngine | undefined,
  options: ServerOptions = {},
): { server: Server; engine: InferenceEngine } {
  const maxBody = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const bodies = new BodyBudget(options.maxBodyBytesTotal ?? 256 * 1024 * 1024);
  const maxPending = options.maxPendingRequests ?? 128;
  let pending = 0;
  const engine =
    model !== undefined && 'invoke' in model
      ? model
      : new ModelEngine(model, { maxInstances: options.maxInstances, maxBatch: options.maxBatch, loadModel: options.loadModel });
  if (engine.canSwap && !options.adminToken) throw new Error('POST /admin/model needs an admin token');
  const token = options.adminToken;

  const metrics = new ServingMetrics();
  engine.onModelCall((n) => metrics.modelCall(n));

  const invocations = async (req: IncomingMessage): Promise<Batched> => {
    if (!engine.served()) throw new HttpError(503, 'no model loaded');
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
    // The body's bytes count against the budget until its answer is known.
    const held = bodies.holder();
    try {
      const body = await readBody(req, maxBody, held);
      if (body.length === 0)
        throw new HttpError(
          400,
          'the body is empty; send {"instances": [...]} as application/json, or a JPEG or PNG file as image/jpeg or image/png',
        );
      return await engine.invoke(type as BodyType, body);
    } finally {
      held.release();
    }
  };

  const adminLoad = async (req: IncomingMessage): Promise<object> => {
    if (!engine.canSwap) throw new HttpError(404, 'not found');
    checkBodyHeaders(req);
    authorize(req, 'POST /admin/model');
    let request: { modelUri?: unknown; name?: string; version?: string };
    try {
      request = JSON.parse((await readBody(req, 1024 * 1024)).toString('utf8'));
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    if (typeof request.modelUri !== 'string') throw new HttpError(400, 'expected {"modelUri": "...", "version": "..."}');
    return engine.swap({ modelUri: request.modelUri, name: request.name, version: request.version });
  };

  /** With a token set, a route that answers only to it. */
  const authorize = (req: IncomingMessage, route: string): void => {
    if (token === undefined || tokenMatches(req.headers.authorization, token)) return;
    req.resume();
    throw new HttpError(401, `${route} needs "authorization: Bearer <admin token>"`, { 'www-authenticate': 'Bearer' });
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
      if (token !== undefined && !tokenMatches(req.headers.authorization, token))
        return send(res, 401, { error: `${route} needs "authorization: Bearer <admin token>"` }, { 'www-authenticate': 'Bearer' });
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.render(engine.served()?.info.version));
      return;
    }
    const handle = async (): Promise<[number, object, Record<string, string>?]> => {
      switch (route) {
        case 'GET /ping':
          return engine.served() ? [200, { status: 'ok' }] : [503, { error: 'no model loaded' }];
        case 'GET /model': {
          authorize(req, route);
          const served = engine.served();
          if (!served) throw new HttpError(503, 'no model loaded');
          const { info, metadata } = served;
          return [200, { ...info, classes: metadata.classes, imageSize: metadata.imageSize, modelClass: metadata.modelClass }];
        }
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
  return { server, engine };
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

/**
 * Request bodies held at once, in bytes. A body reserves its declared length before it is read
 * (or each chunk as it arrives, when sent chunked) and gives it back once it has its answer.
 */
class BodyBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  holder(): BodyHold {
    let held = 0;
    return {
      take: (bytes: number): boolean => {
        if (this.used + bytes > this.limit) return false;
        this.used += bytes;
        held += bytes;
        return true;
      },
      release: (): void => {
        this.used -= held;
        held = 0;
      },
      held: () => held,
      budget: this,
    };
  }

  refusal(): HttpError {
    return new HttpError(
      503,
      `the server already holds ${bytes(this.used)} of request bodies, its limit being ${bytes(this.limit)}; retry shortly`,
      { 'retry-after': '1' },
    );
  }
}

const bytes = (n: number): string => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`);

interface BodyHold {
  take(bytes: number): boolean;
  release(): void;
  held(): number;
  budget: BodyBudget;
}

function readBody(req: IncomingMessage, limit: number, hold?: BodyHold): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return reject(new HttpError(413, `body of ${declared} bytes exceeds the ${limit}-byte limit; send less per request`));
    }
    if (hold && !hold.take(declared)) {
      req.resume();
      return reject(hold.budget.refusal());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused: HttpError | undefined;
    // An oversized body is drained, not buffered, so the client still gets its answer.
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (refused || size > limit) return;
      // A chunked body (or one longer than it declared) takes its bytes as they come.
      if (hold && size > hold.held() && !hold.take(size - hold.held())) {
        refused = hold.budget.refusal();
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) reject(refused);
      else if (size > limit) reject(new HttpError(413, `body exceeds the ${limit}-byte limit; send less per request`));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
