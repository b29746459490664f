/**
 * The local stack: Temporal dev server (+ Web UI), MLflow tracking server, SeaweedFS for the S3
 * API and a moto server for the SageMaker API. Loopback only. Each service's pid file, log and
 * data live under one folder; `stop` only touches processes whose pid file that folder holds.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../common/constants';
import { SEAWEEDFS_ENV, SEAWEEDFS_STOP_GRACE_MS, seaweedArgs, seaweedDataDir, seaweedHealthy, seaweedPorts } from './seaweedfs';
import { isGroupAlive, isProcessAlive, killGroup, tcpOpen } from '../system/process';
import { LocalEndpoints } from '../serving/local-endpoints';

export interface StackPorts {
  temporal: number;
  temporalUi: number;
  mlflow: number;
  /** moto: the SageMaker API. */
  moto: number;
  /** SeaweedFS's S3 gateway. */
  s3: number;
  /** First of SeaweedFS's 7 internal ports (default: `s3` + 10000). */
  s3Internal?: number;
}

export interface StackOptions {
  dir: string;
  host: string;
  ports: StackPorts;
  /** Folder holding the project's .venv (for the temporal, mlflow, moto_server and weed binaries). */
  projectRoot: string;
  /** Which services to manage (default: all). */
  services?: ServiceName[];
}

export type ServiceName = 'temporal' | 'mlflow' | 'moto' | 's3';
export const SERVICE_NAMES: ServiceName[] = ['temporal', 'mlflow', 'moto', 's3'];

interface ServiceSpec {
  name: ServiceName;
  port: number;
  /** Other ports it listens on, which must be free before it starts. */
  otherPorts?: number[];
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** Folder it keeps its data in, made before it starts. */
  dataDir?: string;
  /** How long a stop waits after SIGTERM before SIGKILL (default 10 s). */
  stopGraceMs?: number;
  healthy: () => Promise<boolean>;
  urls: Record<string, string>;
}

export function stackOptionsFromEnv(env: Record<string, string | undefined>, projectRoot: string): StackOptions {
  const port = (key: string, fallback: number): number => {
    const n = Number(env[key] ?? fallback);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${key} must be a port number, got '${env[key]}'`);
    return n;
  };
  const s3 = port('S3_PORT', 8333);
  const ports: StackPorts = {
    temporal: port('TEMPORAL_PORT', 7233),
    temporalUi: port('TEMPORAL_UI_PORT', 8233),
    mlflow: port('MLFLOW_PORT', 5000),
    moto: port('MOTO_PORT', 4566),
    s3,
    ...(env.S3_INTERNAL_PORT ? { s3Internal: port('S3_INTERNAL_PORT', 0) } : {}),
  };
  try {
    seaweedPorts(ports.s3, ports.s3Internal);
  } catch (err) {
    throw new Error(`S3_PORT / S3_INTERNAL_PORT: ${(err as Error).message}`);
  }
  return { dir: resolve(projectRoot, env.STACK_DIR || '.stack'), host: '127.0.0.1', projectRoot, ports };
}

function specs(o: StackOptions): ServiceSpec[] {
  const bin = (name: string): string => join(o.projectRoot, '.venv', 'bin', name);
  const http = (url: string) => async (): Promise<boolean> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      return res.status < 500;
    } catch {
      return false;
    }
  };
  const data = join(o.dir, 'data');
  const all: ServiceSpec[] = [
    {
      name: 'temporal',
      port: o.ports.temporal,
      command: bin('temporal'),
      args: [
        'server',
        'start-dev',
        '--ip',
        o.host,
        '--port',
        String(o.ports.temporal),
        '--ui-port',
        String(o.ports.temporalUi),
        '--db-filename',
        join(data, 'temporal.db'),
        '--ui-disable-news-fetch',
        '--log-level',
        'warn',
        ...SEARCH_ATTRIBUTE_DEFINITIONS.flatMap((d) => ['--search-attribute', d]),
      ],
      healthy: async () => (await tcpOpen(o.host, o.ports.temporal)) && (await http(`http://${o.host}:${o.ports.temporalUi}/`)()),
      urls: { address: `${o.host}:${o.ports.temporal}`, ui: `http://localhost:${o.ports.temporalUi}` },
    },
    {
      name: 'mlflow',
      port: o.ports.mlflow,
      command: bin('mlflow'),
      args: [
        'server',
        '--host',
        o.host,
        '--port',
        String(o.ports.mlflow),
        '--workers',
        '1',
        '--backend-store-uri',
        `sqlite:///${join(data, 'mlflow.db')}`,
        '--artifacts-destination',
        join(data, 'mlflow-artifacts'),
      ],
      healthy: http(`http://${o.host}:${o.ports.mlflow}/health`),
      urls: { ui: `http://localhost:${o.ports.mlflow}` },
    },
    {
      name: 'moto',
      port: o.ports.moto,
      command: bin('moto_server'),
      args: ['-H', o.host, '-p', String(o.ports.moto)],
      healthy: http(`http://${o.host}:${o.ports.moto}/moto-api/`),
      urls: { sagemaker: `http://${o.host}:${o.ports.moto}` },
    },
    s3Spec(o, bin('weed'), data),
  ];
  return all.filter((s) => (o.services ?? SERVICE_NAMES).includes(s.name));
}

function s3Spec(o: StackOptions, command: string, data: string): ServiceSpec {
  const ports = seaweedPorts(o.ports.s3, o.ports.s3Internal);
  const dataDir = seaweedDataDir(data);
  return {
    name: 's3',
    port: ports.s3,
    otherPorts: Object.values(ports).filter((p) => p !== ports.s3),
    command,
    args: seaweedArgs(o.host, ports, dataDir),
    env: SEAWEEDFS_ENV,
    dataDir,
    stopGraceMs: SEAWEEDFS_STOP_GRACE_MS,
    healthy: () => seaweedHealthy(o.host, ports),
    urls: { endpoint: `http://${o.host}:${ports.s3}` },
  };
}

interface PidFile {
  pid: number;
  port: number;
  startedAt: string;
}

const pidPath = (o: StackOptions, name: string): string => join(o.dir, 'run', `${name}.pid`);

function readPid(o: StackOptions, name: string): PidFile | undefined {
  try {
    return JSON.parse(readFileSync(pidPath(o, name), 'utf8')) as PidFile;
  } catch {
    return undefined;
  }
}

export interface ServiceStatus {
  name: ServiceName;
  state: 'running' | 'stopped' | 'unhealthy' | 'foreign';
  pid?: number;
  port: number;
  urls: Record<string, string>;
  log: string;
}

export async function stackStatus(o: StackOptions): Promise<ServiceStatus[]> {
  return Promise.all(
    specs(o).map(async (s) => {
      const pid = readPid(o, s.name);
      const ours = pid !== undefined && isProcessAlive(pid.pid);
      const healthy = await s.healthy();
      const state = ours ? (healthy ? 'running' : 'unhealthy') : (await tcpOpen(o.host, s.port)) ? 'foreign' : 'stopped';
      return {
        name: s.name,
        state,
        pid: ours ? pid.pid : undefined,
        port: s.port,
        urls: s.urls,
        log: join(o.dir, 'logs', `${s.name}.log`),
      };
    }),
  );
}

/** Starts every service not already running, and waits until each is healthy. */
export async function stackUp(o: StackOptions, log: (line: string) => void = () => undefined): Promise<ServiceStatus[]> {
  for (const sub of ['run', 'logs', 'data']) mkdirSync(join(o.dir, sub), { recursive: true });
  const started: ServiceSpec[] = [];
  for (const s of specs(o)) {
    const pid = readPid(o, s.name);
    if (pid && isProcessAlive(pid.pid)) {
      log(`${s.name}: already running (pid ${pid.pid})`);
      started.push(s);
      continue;
    }
    for (const port of [s.port, ...(s.otherPorts ?? [])]) {
      if (await tcpOpen(o.host, port)) {
        throw new Error(
          `${s.name}: port ${port} on ${o.host} is already in use by a process this stack did not start; stop it or choose another port (see docs/configuration.md)`,
        );
      }
    }
    if (!existsSync(s.command)) throw new Error(`${s.name}: ${s.command} is missing; run 'npm run setup' first`);
    if (s.dataDir) mkdirSync(s.dataDir, { recursive: true });
    const logFile = join(o.dir, 'logs', `${s.name}.log`);
    const fd = openSync(logFile, 'a');
    // Detached in its own process group so `down` can stop the service and its children.
    const child = spawn(s.command, s.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: o.dir,
      env: { ...process.env, ...s.env },
    });
    closeSync(fd);
    child.unref();
    writeFileSync(
      pidPath(o, s.name),
      JSON.stringify({ pid: child.pid!, port: s.port, startedAt: new Date().toISOString() } satisfies PidFile),
    );
    log(`${s.name}: started (pid ${child.pid}, log ${logFile})`);
    started.push(s);
  }
  await Promise.all(started.map((s) => waitHealthy(o, s)));
  return stackStatus(o);
}

async function waitHealthy(o: StackOptions, s: ServiceSpec, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await s.healthy()) return;
    const pid = readPid(o, s.name);
    if (!pid || !isProcessAlive(pid.pid)) {
      throw new Error(`${s.name} exited during start-up; see ${join(o.dir, 'logs', `${s.name}.log`)}`);
    }
    await sleep(500);
  }
  throw new Error(`${s.name} was not healthy within ${timeoutMs / 1000}s; see ${join(o.dir, 'logs', `${s.name}.log`)}`);
}

/**
 * Stops one service and starts it again on the same data (Temporal's database file, MLflow's
 * sqlite store), leaving the local endpoints alone: what the chaos harness (scripts/chaos.ts) does
 * to the Temporal dev server and MLflow mid-run. `stackDown` would also stop every endpoint.
 */
export async function restartService(
  o: StackOptions,
  name: ServiceName,
  log: (line: string) => void = () => undefined,
  { downSeconds = 0 }: { downSeconds?: number } = {},
): Promise<void> {
  const only: StackOptions = { ...o, services: [name] };
  await stopService(only, specs(only)[0]!, log);
  if (downSeconds > 0) await sleep(downSeconds * 1000);
  await stackUp(only, log);
}

/** Stops the services this stack started (by their pid files), newest first. */
export async function stackDown(o: StackOptions, log: (line: string) => void = () => undefined): Promise<void> {
  // Local endpoints started by the pipeline's deploy activity keep their state in the same folder.
  const endpoints = new LocalEndpoints({ stateDir: o.dir, host: o.host, port: 0, env: {} });
  for (const name of endpoints.names()) if (await endpoints.stop(name)) log(`endpoint ${name}: stopped`);
  for (const s of specs(o).reverse()) await stopService(o, s, log);
}

/**
 * SIGTERM to the service's process group, then waits for the whole group to exit (SIGKILL after
 * the service's grace time), whether it is serving or still starting.
 */
async function stopService(o: StackOptions, s: ServiceSpec, log: (line: string) => void): Promise<void> {
  const pid = readPid(o, s.name);
  if (!pid) return;
  // The group too: a leader that died can leave children (MLflow's workers) holding ports.
  if (isProcessAlive(pid.pid) || isGroupAlive(pid.pid)) {
    const graceMs = s.stopGraceMs ?? 10_000;
    // Announced, so that a long wait (SeaweedFS takes about 17 s) does not look like a hang.
    if (graceMs > 10_000) log(`${s.name}: stopping (pid ${pid.pid}; SIGKILL if still running after ${graceMs / 1000} s)`);
    await killGroup(pid.pid, graceMs);
    log(`${s.name}: stopped (pid ${pid.pid})`);
  }
  rmSync(pidPath(o, s.name), { force: true });
}
