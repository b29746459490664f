import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { isGroupAlive, isProcessAlive, killGroup } from '../../src/system/process';

/** A shell in a process group of its own; its first output line is returned (a pid it prints). */
async function group(script: string): Promise<{ child: ChildProcess; firstLine: string }> {
  const child = spawn('sh', ['-c', script], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, firstLine: chunk.toString().trim() };
}

describe('killGroup', () => {
  const leftovers: number[] = [];
  after(() => {
    for (const pid of leftovers) if (isGroupAlive(pid)) process.kill(-pid, 'SIGKILL');
  });

  it('stops a process that exits on SIGTERM without SIGKILL', async () => {
    const { child } = await group('echo ready; exec sleep 300');
    leftovers.push(child.pid!);
    const exited = once(child, 'exit');
    await killGroup(child.pid!, 5000);
    const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, 'SIGTERM');
    assert.equal(isGroupAlive(child.pid!), false);
  });

  it('waits for the whole group: a child that ignores SIGTERM is killed after the grace time', async () => {
    // The leader dies on SIGTERM; its child ignores it (an ignored signal stays ignored across exec).
    const { child, firstLine } = await group(`(trap '' TERM; exec sleep 300) & echo $!; wait`);
    leftovers.push(child.pid!);
    const sleeper = Number(firstLine);
    assert.ok(isProcessAlive(sleeper));
    const started = Date.now();
    await killGroup(child.pid!, 1500);
    const waited = Date.now() - started;
    assert.equal(isProcessAlive(sleeper), false, 'the child that ignored SIGTERM is gone');
    assert.equal(isGroupAlive(child.pid!), false, 'nothing of the group is left');
    assert.ok(waited >= 1400, `it waited the grace time before SIGKILL (${waited} ms)`);
  });
});
