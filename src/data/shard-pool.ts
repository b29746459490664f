/**
 * A pool of child processes that build shards (fetch, decode, encode, write), so that decoding
 * uses every core and no pixel crosses a process boundary. Each child loads its own native
 * TensorFlow backend and builds its store from the environment (loadConfig(process.env)); one
 * that dies fails only its current job and is replaced.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { extname, join } from 'node:path';
import { configureTensorflowEnv } from '../ml/tf';
import type { BuiltShard, ShardJob } from './shard-builder';
import { childEnv } from '../system/child-env';
import { containerCpus } from '../system/cpus';

interface Slot {
  child: ChildProcess;
  ready: Promise<void>;
  /** Taken by a caller (set synchronously, before any await, so no two callers share a slot). */
  busy: boolean;
  /** Who took it, when build() was told. */
  caller?: PoolCaller;
  job?: { resolve: (result: never) => void; reject: (err: Error) => void };
}

/** Who asks for builds: the jobs given one caller are one preprocessing's. */
export interface PoolCaller {
  /**
   * Called every `waitBeatMs` while a job of this caller waits for a free builder and none of its
   * jobs holds one: it is queued behind other callers, alive. While one of its own builds runs, that
   * build's completion is its sign of life, so a build that hangs is not hidden by these calls.
   */
  onWaiting(): void;
}

export interface ShardPoolOptions {
  /** How often a waiting caller is told (default 10 s, well inside the data activity's 1 min heartbeat timeout). */
  waitBeatMs?: number;
}

type Message = { ready: true } | { built: BuiltShard } | { maxRssMb: number } | { error: string };

/** A shard-building process ended (killed by `signal`, or exited with `code`). */
export class ShardBuilderExitError extends Error {
  override readonly name = 'ShardBuilderExitError';
  constructor(
    readonly signal: NodeJS.Signals | null,
    readonly code: number | null,
  ) {
    super(`shard builder process exited (${signal ?? code})`);
  }
}

/** How many rounds of killed-while-starting children ready() waits through before it gives up. */
const MAX_READY_ATTEMPTS = 5;

export class ShardPool {
  private readonly slots: Slot[] = [];
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  private readonly waitBeatMs: number;

  // One decoding process per CPU the container may use (its quota, not the node's cores).
  constructor(
    readonly size = containerCpus(),
    { waitBeatMs = 10_000 }: ShardPoolOptions = {},
  ) {
    this.waitBeatMs = waitBeatMs;
    configureTensorflowEnv();
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /**
   * Resolves once every child has loaded its TensorFlow backend. A child killed by a signal while
   * it starts (the OOM killer, a node under pressure, the chaos harness) has already been replaced
   * by its exit handler, so its replacement is waited for instead: before, that one kill rejected
   * this and the data worker exited at start-up. A child that exits by itself (no native backend)
   * still fails it, as it would fail every job.
   */
  async ready(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await Promise.all(this.slots.map((s) => s.ready));
        return;
      } catch (err) {
        if (!(err instanceof ShardBuilderExitError && err.signal) || attempt >= MAX_READY_ATTEMPTS) throw err;
      }
    }
  }

  /** Builds a shard on the next free child; `caller` hears while the job waits for one (see PoolCaller). */
  async build(job: ShardJob, caller?: PoolCaller): Promise<BuiltShard> {
    return this.request(await this.acquire(undefined, caller), { job });
  }

  /** The peak RSS of each child so far, in MB (for benchmarks). */
  async childPeakRssMb(): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) out.push(await this.request<number>(await this.acquire(this.slots[i]), { stats: true }));
    return out;
  }

  /** Takes a free slot (or `wanted` once it is free) and waits for its child to be ready. */
  private async acquire(wanted?: Slot, caller?: PoolCaller): Promise<Slot> {
    if (this.closed) throw new Error('ShardPool is closed');
    const beat = caller
      ? setInterval(() => {
          if (!this.slots.some((s) => s.busy && s.caller === caller)) caller.onWaiting();
        }, this.waitBeatMs).unref()
      : undefined;
    try {
      let slot: Slot | undefined;
      while (!(slot = this.slots.find((s) => !s.busy && (!wanted || s === wanted)))) await new Promise<void>((r) => this.waiting.push(r));
      slot.busy = true;
      slot.caller = caller;
      try {
        await slot.ready;
      } catch (err) {
        this.release(slot);
        throw err;
      }
      return slot;
    } finally {
      clearInterval(beat);
    }
  }

  private release(slot: Slot): void {
    slot.busy = false;
    slot.caller = undefined;
    slot.job = undefined;
    slot.child.channel?.unref();
    this.waiting.splice(0).forEach((wake) => wake());
  }

  private request<T>(slot: Slot, body: object): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      slot.job = { resolve: resolve as (r: never) => void, reject };
      slot.child.channel?.ref();
      slot.child.send(body);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
            s.child.ref();
            s.child.once('exit', () => resolve());
            s.child.disconnect();
          }),
      ),
    );
  }

  private spawn(): Slot {
    // Compiled: shard-worker.js; under ts-node (tests): shard-worker.ts through its hook.
    const ext = extname(__filename);
    const child = fork(join(__dirname, `shard-worker${ext}`), [], {
      serialization: 'advanced',
      execArgv: ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // What a builder needs to read and write S3, nothing more: it decodes files from anywhere.
      env: childEnv('shard-builder', process.env),
    });
    let markReady: () => void = () => undefined;
    let markFailed: (err: Error) => void = () => undefined;
    const slot: Slot = {
      child,
      busy: false,
      ready: new Promise<void>((resolve, reject) => {
        markReady = resolve;
        markFailed = reject;
      }),
    };
    slot.ready.catch(() => undefined);
    // Only a child that is starting or working keeps this process alive; idle ones never do.
    child.unref();
    child.channel?.ref();
    child.on('message', (m: Message) => {
      if ('ready' in m) {
        child.channel?.unref();
        return markReady();
      }
      const job = slot.job!;
      this.release(slot);
      if ('error' in m) job.reject(new Error(`shard builder: ${m.error}`));
      else job.resolve(('built' in m ? m.built : m.maxRssMb) as never);
    });
    child.on('exit', (code, signal) => {
      const err = new ShardBuilderExitError(signal, code);
      markFailed(err);
      slot.job?.reject(err);
      if (this.closed) return;
      // Replace it, so that the pool keeps its size.
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots[index] = this.spawn();
      this.waiting.splice(0).forEach((wake) => wake());
    });
    return slot;
  }
}
