/** A closed-loop HTTP load generator: `concurrency` clients, each sending its next request when the last one answered. */
import { Agent, request } from 'node:http';

export interface LoadResult {
  requests: number;
  failed: number;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** The first failure's status and body, to say why. */
  firstFailure?: string;
}

function post(agent: Agent, url: URL, body: Buffer, contentType: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': contentType, 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function runLoad(
  url: string,
  bodies: Buffer[],
  total: number,
  concurrency: number,
  contentType = 'application/json',
): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const target = new URL(url);
  const latencies: number[] = [];
  let failed = 0;
  let firstFailure: string | undefined;
  let next = 0;
  const started = process.hrtime.bigint();
  const client = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      try {
        const res = await post(agent, target, bodies[i % bodies.length]!, contentType);
        if (res.status !== 200 || !res.text.includes('predictions')) {
          failed++;
          firstFailure ??= `${res.status} ${res.text.slice(0, 200)}`;
        }
      } catch (err) {
        failed++;
        firstFailure ??= (err as Error).message;
      }
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  return { requests: total, failed, seconds, requestsPerSecond: total / seconds, p50Ms: pct(0.5), p99Ms: pct(0.99), firstFailure };
}
