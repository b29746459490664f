import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerCpus } from '../../src/system/cpus';

describe('containerCpus', () => {
  const root = (files: Record<string, string>): string => {
    const dir = mkdtempSync(join(tmpdir(), 'cgroup-'));
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(join(dir, file, '..'), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
    return dir;
  };

  it("takes a 2-CPU pod's quota on a 64-core node (cgroup v2), rounding a fractional quota up", () => {
    assert.equal(containerCpus(root({ 'cpu.max': '200000 100000\n' }), 64), 2);
    assert.equal(containerCpus(root({ 'cpu.max': '150000 100000\n' }), 64), 2);
    assert.equal(containerCpus(root({ 'cpu.max': '50000 100000\n' }), 64), 1);
  });
  it('uses the host cores without a quota, and never more than them', () => {
    assert.equal(containerCpus(root({ 'cpu.max': 'max 100000\n' }), 8), 8);
    assert.equal(containerCpus(root({ 'cpu.max': '1600000 100000\n' }), 4), 4);
    assert.equal(containerCpus(root({}), 6), 6);
  });
  it('reads cgroup v1 too', () => {
    assert.equal(containerCpus(root({ 'cpu/cpu.cfs_quota_us': '300000', 'cpu/cpu.cfs_period_us': '100000' }), 64), 3);
    assert.equal(containerCpus(root({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' }), 12), 12);
  });
});
