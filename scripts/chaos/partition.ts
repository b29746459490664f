/**
 * A TCP proxy between one worker and the Temporal server that can cut the worker off: during a
 * partition no byte passes either way on the connections it carries (as when packets are dropped,
 * the worker's sockets stay open and simply hear nothing), new connections are accepted and held
 * without an upstream, and when it ends every connection that lived through it is reset, as a
 * real partition's dead connections are once keepalives notice. The worker and its training
 * child keep running throughout; only Temporal stops hearing from them.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Pair {
  client: Socket;
  upstream?: Socket;
}

export class PartitionProxy {
  private server?: Server;
  private readonly pairs = new Set<Pair>();
  private cutOff = false;

  constructor(private readonly o: { host: string; port: number; upstream: { host: string; port: number } }) {}

  get address(): string {
    return `${this.o.host}:${this.o.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port, this.o.host, () => resolve());
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const p of this.pairs) this.drop(p);
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Cuts the worker off for `ms`; resolves when the partition has ended. */
  async partition(ms: number): Promise<void> {
    this.cutOff = true;
    for (const p of this.pairs) {
      p.client.unpipe();
      p.upstream?.unpipe();
      p.client.pause();
      p.upstream?.pause();
    }
    await new Promise((r) => setTimeout(r, ms));
    this.cutOff = false;
    for (const p of [...this.pairs]) this.drop(p);
  }

  private accept(client: Socket): void {
    const pair: Pair = { client };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    // Cut off: the connection is accepted and hears nothing until the partition ends.
    if (this.cutOff) return void client.pause();
    const upstream = connect(this.o.upstream.port, this.o.upstream.host);
    pair.upstream = upstream;
    upstream.on('error', () => this.drop(pair));
    upstream.on('close', () => this.drop(pair));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}
