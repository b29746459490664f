/**
 * A reverse proxy in front of one upstream (SeaweedFS's S3, moto's SageMaker API, MLflow) that, for a
 * seeded fraction of requests, misbehaves the way networks and overloaded services do:
 *
 * - `error`: answers 503 itself, the request never reaches the upstream (retry is always safe);
 * - `reset-before`: destroys the client's connection before forwarding (a refused/reset socket);
 * - `reset-after`: forwards the request, lets the upstream do it, then destroys the client's
 *   connection instead of answering: the client cannot tell whether its call happened, which is
 *   what finds non-idempotent retries (a second MLflow run, a second registered version);
 * - `latency`: waits 0.2-2 s, then forwards normally;
 * - `hang`: forwards the request, lets the upstream do it, and never answers: the connection stays
 *   open and silent until the client gives up (its own timeout), as with a stuck load balancer or
 *   a peer gone without a FIN. A client without a timeout waits forever, which is what it finds.
 *
 * Plain node:http, streaming both ways, so large S3 objects pass without being buffered.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ProxyFault = 'error' | 'reset-before' | 'reset-after' | 'latency' | 'hang';
const FAULTS: readonly ProxyFault[] = ['error', 'reset-before', 'reset-after', 'latency', 'hang'];
/** A hung connection is closed by the proxy after this long if its client never gives up. */
const HANG_MAX_MS = 10 * 60_000;

export interface FaultProxyOptions {
  name: string;
  host: string;
  port: number;
  upstream: { host: string; port: number };
  /** Fraction of requests that get a fault (0 disables them). */
  rate: number;
  random: () => number;
  /** The body of a 503, in the upstream's own error format so clients parse it as they would a real one. */
  errorBody: 'json' | 'xml';
}

/**
 * Called when a request the hook matches has been answered by the upstream, before the client gets
 * the answer: the moment to kill the caller mid-call (how kills are aimed at registration and
 * promotion, which last too little for the status query to catch).
 */
export interface RequestHook {
  matches: (method: string, path: string, headers: IncomingMessage['headers']) => boolean;
  fire: () => void;
}

export class FaultProxy {
  readonly counts: Record<ProxyFault, number> = { error: 0, 'reset-before': 0, 'reset-after': 0, latency: 0, hang: 0 };
  requests = 0;
  private server?: Server;
  private readonly hooks = new Set<RequestHook>();

  /** Arms a one-shot hook; returns its disarm. */
  once(hook: RequestHook): () => void {
    this.hooks.add(hook);
    return () => void this.hooks.delete(hook);
  }

  constructor(private readonly o: FaultProxyOptions) {}

  get url(): string {
    return `http://${this.o.host}:${this.o.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    // Clients keep connections alive; idle ones must not keep close() waiting.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => resolve());
    });
    this.o.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private pick(): ProxyFault | undefined {
    if (this.o.rate <= 0 || this.o.random() >= this.o.rate) return undefined;
    return FAULTS[Math.floor(this.o.random() * FAULTS.length)]!;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    const fault = this.pick();
    if (fault) this.counts[fault]++;
    switch (fault) {
      case 'error': {
        // Drain the body first, so the client is not left writing into a closed socket.
        req.resume();
        req.on('end', () => {
          const json = this.o.errorBody === 'json';
          const body = json
            ? JSON.stringify({ error_code: 'TEMPORARILY_UNAVAILABLE', message: `chaos: injected 503 by ${this.o.name} proxy` })
            : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>chaos: injected 503</Message></Error>`;
          res.writeHead(503, { 'content-type': json ? 'application/json' : 'application/xml', connection: 'close' });
          res.end(body);
        });
        return;
      }
      case 'reset-before':
        req.socket.destroy();
        return;
      case 'latency':
        setTimeout(() => this.forward(req, res), 200 + Math.floor(this.o.random() * 1800));
        return;
      default:
        this.forward(req, res, fault === 'reset-after' ? 'reset' : fault === 'hang' ? 'hang' : undefined);
    }
  }

  private forward(req: IncomingMessage, res: ServerResponse, instead?: 'reset' | 'hang'): void {
    const upstream = request(
      {
        host: this.o.upstream.host,
        port: this.o.upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `${this.o.upstream.host}:${this.o.upstream.port}` },
      },
      (up) => {
        const path = (req.url ?? '').split('?')[0]!;
        for (const hook of this.hooks)
          if (hook.matches(req.method ?? '', path, req.headers)) {
            this.hooks.delete(hook);
            hook.fire();
          }
        if (instead === 'reset') {
          // The upstream has done the work; the client never hears of it.
          up.resume();
          up.on('end', () => req.socket.destroy());
          return;
        }
        if (instead === 'hang') {
          // Done upstream, and silence: the client's socket stays open until it closes it.
          up.resume();
          setTimeout(() => req.socket.destroy(), HANG_MAX_MS).unref();
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      // The upstream is down (e.g. restarted by the harness): a bad gateway, as a load balancer says.
      if (res.headersSent) return void res.destroy();
      res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`${this.o.name} proxy: upstream unreachable (${err.message})`);
    });
    req.pipe(upstream);
  }
}
