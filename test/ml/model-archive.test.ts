import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packModelArchive, unpackModelArchive } from '../../src/ml/model-archive';

describe('model archive (model.tar.gz)', () => {
  const files = [
    { name: 'model.json', bytes: Buffer.from('{"format":"layers-model"}') },
    { name: 'weights.bin', bytes: Buffer.from(Array.from({ length: 1300 }, (_, i) => i % 251)) },
  ];
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'archive-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is read by the system tar exactly as written', () => {
    writeFileSync(join(dir, 'model.tar.gz'), packModelArchive(files));
    execFileSync('tar', ['xzf', 'model.tar.gz'], { cwd: dir });
    for (const f of files) assert.deepEqual(readFileSync(join(dir, f.name)), f.bytes);
  });

  it('reads archives made by the system tar', () => {
    for (const f of files) writeFileSync(join(dir, f.name), f.bytes);
    execFileSync('tar', ['czf', 'out.tar.gz', '-C', dir, 'model.json', 'weights.bin'], { cwd: dir });
    const read = unpackModelArchive(readFileSync(join(dir, 'out.tar.gz')));
    assert.deepEqual(
      read.map((f) => [f.name, Buffer.from(f.bytes)]),
      files.map((f) => [f.name, f.bytes]),
    );
  });

  it('is byte-identical for the same files', () => {
    assert.deepEqual(packModelArchive(files), packModelArchive(files));
  });

  it('refuses names a serving container could not use', () => {
    assert.throws(() => packModelArchive([{ name: '../x', bytes: new Uint8Array() }]), /unsupported file name/);
  });
});
