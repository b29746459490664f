import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/system/files';

describe('writeFileAtomic', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'atomic-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the file whole', () => {
    const path = join(dir, 'state.json');
    writeFileAtomic(path, '{"v":1}');
    writeFileAtomic(path, '{"v":2}');
    assert.equal(readFileSync(path, 'utf8'), '{"v":2}');
    assert.deepEqual(readdirSync(dir), ['state.json']);
  });

  it('on a full disk keeps the old file, leaves no temporary file, and names the file and the cause', () => {
    const path = join(dir, 'state.json');
    writeFileSync(path, '{"v":1}');
    // /dev/full answers every write with ENOSPC, as a full file system does.
    symlinkSync('/dev/full', `${path}.tmp`);
    assert.throws(
      () => writeFileAtomic(path, '{"v":2}'),
      (err: Error) => err.message === `could not write ${path}: no space left on its file system; free some and the next attempt writes it`,
    );
    assert.equal(readFileSync(path, 'utf8'), '{"v":1}');
    assert.equal(existsSync(`${path}.tmp`), false);
  });
});
