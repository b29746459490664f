import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { codeHash } from '../../src/runtime/build-id';
import { logFormat, ProcessLogger } from '../../src/runtime/logger';

describe('ProcessLogger', () => {
  it('writes one JSON object per line with the run, activity and model class, without task tokens', () => {
    const lines: string[] = [];
    const logger = new ProcessLogger('json', 'INFO', { worker: 'training' }, (l) => lines.push(l));
    logger.debug('hidden');
    logger.info('epoch 2/3 started', {
      workflowId: 'endpoint-x',
      workflowRunId: 'r1',
      activityType: 'trainModel',
      modelClass: 'Basic',
      taskToken: 'abc',
    });
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(
      { ...entry, time: undefined },
      {
        time: undefined,
        level: 'info',
        msg: 'epoch 2/3 started',
        worker: 'training',
        workflowId: 'endpoint-x',
        runId: 'r1',
        activity: 'trainModel',
        modelClass: 'Basic',
      },
    );
  });
  it('writes readable lines on a terminal', () => {
    const lines: string[] = [];
    new ProcessLogger('text', 'INFO', {}, (l) => lines.push(l)).warn('slow', { modelClass: 'ResNet50' });
    assert.match(lines[0]!, /^\S+ WARN {2}slow {2}modelClass=ResNet50$/);
    assert.equal(logFormat('auto', true), 'text');
    assert.equal(logFormat('auto', false), 'json');
  });
});

describe('codeHash (default build id)', () => {
  it('changes when any source file changes, and only then', () => {
    const dir = mkdtempSync(join(tmpdir(), 'build-id-'));
    writeFileSync(join(dir, 'a.js'), 'one');
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    const first = codeHash(dir, '.js');
    assert.equal(codeHash(dir, '.js'), first);
    writeFileSync(join(dir, 'notes.txt'), 'still ignored');
    assert.equal(codeHash(dir, '.js'), first);
    writeFileSync(join(dir, 'a.js'), 'two');
    assert.notEqual(codeHash(dir, '.js'), first);
  });
});
