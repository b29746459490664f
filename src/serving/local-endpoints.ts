/**
 * Local endpoints: the inference server as a detached process on localhost, one per endpoint
 * name, with its state (pid, url, served version) in <stateDir>/endpoints/<name>.json.
 * Redeploying a running endpoint hot-swaps the model inside the process: no request fails.
 * Each endpoint keeps its own port (the first free one from LOCAL_ENDPOINT_PORT up, recorded in
 * its state, so a worker restart or a crashed server gets the same URL back).
 */
import { childEnv } from '../system/child-env';
import { writeFileAtomic } from '../system/files';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { FAILURE } from '../common/failures';
import type { ModelVersionRef } from '../common/types';
import { isProcessAlive, killGroup, tcpOpen } from '../system/process';
import { driftPrefixOf } from '../monitoring/drift';

export interface EndpointState {
  name: string;
  pid: number;
  url: string;
  /** The bearer token of the server's POST /admin/model (state files are readable by their owner only). */
  adminToken?: string;
  registeredModelName: string;
  version: string;
  modelUri: string;
  /**
   * The id of the workflow that owns the endpoint (the last one that deployed to it). When that
   * workflow ends without retiring it (terminated, failed, timed out), EndpointReaper stops it.
   */
  owner?: string;
}

/** What an endpoint needs to know of the version it serves. */
export type ServedModel = Pick<ModelVersionRef, 'registeredModelName' | 'version' | 'modelUri'>;

export class EndpointError extends Error {
  override readonly name = 'EndpointError';
}

export interface LocalEndpointOptions {
  stateDir: string;
  host: string;
  port: number;
  /** Environment for the server process (S3 endpoint and credentials). */
  env: NodeJS.ProcessEnv;
  /** Where the servers write their drift samples (DRIFT_SAMPLE_URI; a prefix per endpoint below it). */
  driftSampleUri?: string;
}

export class LocalEndpoints {
  constructor(private readonly o: LocalEndpointOptions) {}

  private statePath(name: string): string {
    return join(resolve(this.o.stateDir), 'endpoints', `${name}.json`);
  }

  read(name: string): EndpointState | undefined {
    try {
      return JSON.parse(readFileSync(this.statePath(name), 'utf8')) as EndpointState;
    } catch {
      return undefined;
    }
  }

  /**
   * Serves `model` at endpoint `name`; returns whether anything had to change. `cancel` stops it
   * between steps and aborts its requests to the server (a swap it aborted may still finish there:
   * the next deploy finds the version served and records it).
   */
  async deploy(
    name: string,
    model: ServedModel,
    progress: (what: string) => void = () => undefined,
    owner?: string,
    cancel?: AbortSignal,
  ): Promise<{ state: EndpointState; unchanged: boolean; restarted?: string }> {
    const read = this.read(name);
    // The owner is recorded before anything else, so an endpoint is never left without one.
    const state = read && owner !== undefined && read.owner !== owner ? this.write({ ...read, owner }) : read;
    const alive = state !== undefined && isOurServer(state.pid);
    // A server busy with a long batch answers /ping late: it is given time before it counts as hung.
    const answers = alive && (await ping(state.url, 10_000, 3));
    // A ping cut short by a cancellation must not count as a hung server.
    cancel?.throwIfAborted();
    if (state && answers) {
      const served = await getJson<{ version?: string; modelUri?: string }>(`${state.url}/model`, state.adminToken, cancel);
      const next = { ...state, registeredModelName: model.registeredModelName, version: model.version, modelUri: model.modelUri };
      if (served.version === model.version && served.modelUri === model.modelUri) {
        const recorded = state.version === model.version && state.modelUri === model.modelUri;
        return { state: recorded ? state : this.write(next), unchanged: true };
      }
      progress(`swapping ${name} to v${model.version}`);
      await postJson(
        `${state.url}/admin/model`,
        { modelUri: model.modelUri, name: model.registeredModelName, version: model.version },
        undefined,
        state.adminToken,
        cancel,
      );
      return { state: this.write(next), unchanged: false };
    }
    // A stale state file's pid may belong to another process by now: only our server is stopped.
    if (state && alive) await killGroup(state.pid);
    const strays = await this.stopStrays(name);
    cancel?.throwIfAborted();
    progress(`starting ${name} with v${model.version}`);
    const next = await this.start(name, model, await this.port(name, state), owner ?? state?.owner);
    const stopped = strays.length ? `; stopped server${strays.length > 1 ? 's' : ''} ${strays.join(', ')} that no state file named` : '';
    if (!state) return { state: next, unchanged: false, ...(stopped ? { restarted: `started at ${next.url}${stopped}` } : {}) };
    const why = alive ? `its server (pid ${state.pid}) stopped answering /ping` : `its server (pid ${state.pid}) was not running`;
    return { state: next, unchanged: false, restarted: `${why}; restarted at ${next.url}${stopped}` };
  }

  async stop(name: string): Promise<boolean> {
    const state = this.read(name);
    const strays = await this.stopStrays(name, state?.pid);
    if (!state || !isOurServer(state.pid)) return strays.length > 0;
    await killGroup(state.pid);
    return true;
  }

  /**
   * Stops the endpoint for good: its servers, then its state file (its port is free for others).
   * Returns whether a server was running.
   */
  async retire(name: string): Promise<boolean> {
    const stopped = await this.stop(name);
    rmSync(this.statePath(name), { force: true });
    return stopped;
  }

  /**
   * Stops this endpoint's servers other than `keep`: a deploy killed after it started a server
   * and before it wrote the state file leaves one that nothing names, holding a port and memory.
   * Each server carries its endpoint's id on its command line (endpointId), so it is found
   * without the state file. Returns the pids stopped.
   */
  private async stopStrays(name: string, keep?: number): Promise<number[]> {
    const strays = endpointServers(endpointId(this.o.stateDir, name)).filter((pid) => pid !== keep);
    await Promise.all(strays.map((pid) => killGroup(pid)));
    return strays;
  }

  /** The endpoint's own port if it is free again, else the first free port no other endpoint holds. */
  private async port(name: string, state: EndpointState | undefined): Promise<number> {
    const own = state ? Number(new URL(state.url).port) : undefined;
    if (own && !(await tcpOpen(this.o.host, own))) return own;
    const taken = new Set(this.others(name).map((s) => Number(new URL(s.url).port)));
    for (let port = this.o.port; port < this.o.port + PORT_RANGE && port <= 65535; port++) {
      if (!taken.has(port) && !(await tcpOpen(this.o.host, port))) return port;
    }
    // A configuration problem that retrying cannot fix.
    throw ApplicationFailure.nonRetryable(
      `no free port for endpoint '${name}' in ${this.o.port}-${this.o.port + PORT_RANGE - 1} on ${this.o.host}; ` +
        'stop endpoints that are no longer needed or set LOCAL_ENDPOINT_PORT',
      FAILURE.endpointPortInUse,
    );
  }

  /** Every endpoint with a state file in this folder. */
  names(): string[] {
    try {
      return readdirSync(join(resolve(this.o.stateDir), 'endpoints'))
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -'.json'.length));
    } catch {
      return []; // no endpoint yet
    }
  }

  private others(name: string): EndpointState[] {
    return this.names().flatMap((n) => (n === name ? [] : (this.read(n) ?? [])));
  }

  private async start(name: string, model: ServedModel, port: number, owner: string | undefined): Promise<EndpointState> {
    const url = `http://${this.o.host}:${port}`;
    const dir = resolve(this.o.stateDir);
    mkdirSync(join(dir, 'endpoints'), { recursive: true });
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const logFile = join(dir, 'logs', `endpoint-${name}.log`);
    const fd = openSync(logFile, 'a');
    // Compiled: run main.js; under ts-node (tests): main.ts through its transpile-only hook.
    const ext = extname(__filename);
    const script = join(__dirname, `main${ext}`);
    const args = [...(ext === '.ts' ? ['-r', 'ts-node/register/transpile-only'] : []), script];
    args.push('--model-uri', model.modelUri, '--model-name', model.registeredModelName, '--model-version', model.version);
    args.push('--host', this.o.host, '--port', String(port), '--admin', '--endpoint-id', endpointId(this.o.stateDir, name));
    if (this.o.driftSampleUri) args.push('--drift-sample-uri', driftPrefixOf(this.o.driftSampleUri, name));
    const adminToken = randomBytes(24).toString('base64url');
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      // The server parses requests from the network: it gets what it needs to load its model, no more.
      env: childEnv('endpoint', this.o.env, { ENDPOINT_ADMIN_TOKEN: adminToken }),
    });
    closeSync(fd);
    child.unref();
    const state: EndpointState = {
      name,
      pid: child.pid!,
      url,
      adminToken,
      registeredModelName: model.registeredModelName,
      version: model.version,
      modelUri: model.modelUri,
      ...(owner !== undefined ? { owner } : {}),
    };
    this.write(state);
    const deadline = Date.now() + 120_000;
    while (!(await ping(url))) {
      if (!isProcessAlive(child.pid!))
        throw new EndpointError(`endpoint '${name}' exited during start-up; see ${logFile}:\n${tail(logFile)}`);
      if (Date.now() > deadline) throw new EndpointError(`endpoint '${name}' did not answer /ping within 120 s; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return state;
  }

  /** Whole or not at all: a worker killed mid-write must not leave a file that reads as no endpoint. */
  private write(state: EndpointState): EndpointState {
    writeFileAtomic(this.statePath(state.name), JSON.stringify(state, null, 2));
    return state;
  }
}

/** How many ports from LOCAL_ENDPOINT_PORT up local endpoints may take. */
const PORT_RANGE = 100;

/** Whether `pid` is a live inference server started from this code (not a process that reused a stale pid). */
export function isOurServer(pid: number): boolean {
  if (!isProcessAlive(pid)) return false;
  try {
    return /serving[/\\]main\.(js|ts)\0/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    // No /proc (not Linux): liveness is all that can be known.
    return true;
  }
}

/** Names one endpoint (its state folder and name) on its server's command line, in a form safe for any name. */
export function endpointId(stateDir: string, name: string): string {
  return createHash('sha256')
    .update(`${resolve(stateDir)}\0${name}`)
    .digest('hex')
    .slice(0, 24);
}

/** Live inference servers started for the endpoint with this id (none found where there is no /proc). */
export function endpointServers(id: string): number[] {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  return pids.map(Number).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv.some((a) => /serving[/\\]main\.(js|ts)$/.test(a)) && argv[argv.indexOf('--endpoint-id') + 1] === id;
    } catch {
      return false; // gone meanwhile
    }
  });
}

export async function ping(url: string, timeoutMs = 2000, tries = 1): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    try {
      if ((await fetch(`${url}/ping`, { signal: AbortSignal.timeout(timeoutMs) })).ok) return true;
    } catch {
      /* not up, or not answering in time */
    }
  }
  return false;
}

/** A request's deadline, and its caller's cancellation where there is one (a deploy activity's). */
function deadline(timeoutMs: number, cancel?: AbortSignal): AbortSignal {
  return cancel ? AbortSignal.any([AbortSignal.timeout(timeoutMs), cancel]) : AbortSignal.timeout(timeoutMs);
}

export async function getJson<T>(url: string, bearer?: string, cancel?: AbortSignal): Promise<T> {
  const res = await fetch(url, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {}, signal: deadline(10_000, cancel) });
  if (!res.ok) throw new EndpointError(`GET ${url} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

/** What a local endpoint says it serves (GET /model, asked with the token from its state file in `stateDir`). */
export async function servedBy(
  stateDir: string,
  name: string,
): Promise<{ version?: string; modelUri?: string; imageSize: number; classes: string[] }> {
  const state = new LocalEndpoints({ stateDir, host: '', port: 0, env: {} }).read(name);
  if (!state) throw new EndpointError(`no local endpoint '${name}' in ${resolve(stateDir)}`);
  return getJson(`${state.url}/model`, state.adminToken);
}

export async function postJson<T = unknown>(
  url: string,
  body: unknown,
  timeoutMs = 120_000,
  bearer?: string,
  cancel?: AbortSignal,
): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
    signal: deadline(timeoutMs, cancel),
  });
  if (!res.ok) throw new EndpointError(`POST ${url} answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}
