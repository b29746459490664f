/**
 * The probes Kubernetes asks a worker: GET /healthz (the process is alive and reaches the Temporal
 * frontend) and GET /readyz (the worker is polling its task queue). Both answer JSON.
 */
import { createServer, type Server } from 'node:http';

export interface HealthSource {
  /** The SDK worker's state: INITIALIZED, RUNNING, STOPPING, DRAINING, DRAINED, STOPPED or FAILED. */
  workerState(): string | undefined;
  /** Resolves when the frontend answers its health check. */
  checkConnection(): Promise<void>;
}

export function startHealthServer(port: number, host: string, source: HealthSource, info: Record<string, string>): Promise<Server> {
  const server = createServer((req, res) => {
    const reply = (code: number, body: Record<string, unknown>): void => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify({ ...body, ...info }));
    };
    const state = source.workerState() ?? 'STARTING';
    if (req.method !== 'GET') return reply(405, { error: 'GET only' });
    if (req.url === '/readyz') return reply(state === 'RUNNING' ? 200 : 503, { ready: state === 'RUNNING', state });
    if (req.url !== '/healthz') return reply(404, { error: 'GET /healthz or /readyz' });
    // A worker that is shutting down is still alive: restarting it would cut its grace period short.
    if (state === 'FAILED' || state === 'STOPPED') return reply(503, { healthy: false, state });
    withTimeout(source.checkConnection(), 3000).then(
      () => reply(200, { healthy: true, state }),
      (err: Error) => reply(503, { healthy: false, state, error: `Temporal frontend unreachable: ${err.message}` }),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
