/**
 * The workers' scratch folder (their TMPDIR and PIPELINE_STATE_DIR, what /tmp is to a worker pod:
 * k8s/base/worker-common.yaml mounts an emptyDir there), on a tmpfs of a fixed size so that the
 * harness can fill it: a full /tmp. Mounting needs root; without it the folder is a plain one and
 * the fault is skipped (reported in `details.skipped`).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Room for the endpoints' state and logs of a harness run, a small multiple of what they take. */
const SIZE = '64m';

/** Makes `dir` and mounts a tmpfs of SIZE on it when it can; returns why not otherwise. */
export function makeScratch(dir: string): { mounted: boolean; why?: string } {
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() !== 0) return { mounted: false, why: 'needs root to mount a tmpfs' };
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${SIZE},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? { mounted: true } : { mounted: false, why: `mount: ${(r.stderr || r.error?.message || '').trim()}` };
}

/** Unmounts every tmpfs at or under `dir` (a previous run's too), so the folder can be removed. */
export function unmountScratch(dir: string): void {
  const root = resolve(dir);
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, at, type]) => type === 'tmpfs' && at && (at === root || at.startsWith(`${root}/`)))
    .map(([, at]) => at!);
  for (const at of mounts.reverse()) spawnSync('umount', ['-l', at]);
}

/**
 * Writes a file into `dir` until the file system says ENOSPC; returns its removal. Nothing else
 * can write there until then.
 */
export function fillUp(dir: string): { bytes: number; release: () => void } {
  const path = join(dir, 'chaos-filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  let bytes = 0;
  try {
    for (;;) {
      try {
        bytes += writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        // The last partial megabyte: fill what is left to the byte.
        const small = Buffer.alloc(4096);
        try {
          for (;;) bytes += writeSync(fd, small);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, release: () => unlinkSync(path) };
}
