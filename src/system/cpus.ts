/**
 * CPUs this process may use: the container's CPU quota (cgroup v2 `cpu.max`, or v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up, and never more than the host's cores. A
 * 2-CPU pod on a 64-core node gets 2, not 64.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

export function containerCpus(cgroupRoot = '/sys/fs/cgroup', hostCpus = availableParallelism()): number {
  const quota = cgroupQuota(cgroupRoot);
  return Math.max(1, Math.min(hostCpus, quota === undefined ? hostCpus : Math.ceil(quota)));
}

/** The quota in CPUs, or undefined when there is none (or no cgroup file to read). */
function cgroupQuota(root: string): number | undefined {
  const read = (file: string): string | undefined => {
    try {
      return readFileSync(join(root, file), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const v2 = read('cpu.max'); // "max 100000" or "200000 100000"
  if (v2 !== undefined) {
    const [quota, period] = v2.split(/\s+/);
    return quota === 'max' ? undefined : Number(quota) / Number(period);
  }
  const quota = Number(read('cpu/cpu.cfs_quota_us') ?? read('cpu,cpuacct/cpu.cfs_quota_us'));
  const period = Number(read('cpu/cpu.cfs_period_us') ?? read('cpu,cpuacct/cpu.cfs_period_us'));
  return quota > 0 && period > 0 ? quota / period : undefined;
}
