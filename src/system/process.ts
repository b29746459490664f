/** Process and port helpers shared by the local stack and the local endpoints. */
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether any process of the group `pgid` is left (a leader may exit before its children). */
export function isGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    // EPERM: a member exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SIGTERM to the process group, SIGKILL to what is left of it after `graceMs`; returns once the
 * process and every other member of its group are gone. A process that is no group leader is
 * signalled alone.
 */
export async function killGroup(pid: number, graceMs = 10_000): Promise<void> {
  const group = isGroupAlive(pid);
  const alive = (): boolean => isProcessAlive(pid) || (group && isGroupAlive(pid));
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(group ? -pid : pid, sig);
    } catch {
      /* already gone */
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) signal('SIGKILL');
  while (alive()) await sleep(50);
}

export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host, port });
    const finish = (open: boolean): void => {
      socket.destroy();
      done(open);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}
