import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

describe('native convolution, pooling and batch-norm layers (against tfjs built-ins, same weights)', () => {
  for (const onednn of ['1', '0']) {
    it(`match forward and every gradient with oneDNN ${onednn === '1' ? 'on' : 'off'}`, () => {
      // oneDNN is fixed when libtensorflow loads: each setting needs a process of its own.
      const out = execFileSync(process.execPath, ['-r', 'ts-node/register/transpile-only', join(__dirname, 'native-ops-check.ts')], {
        encoding: 'utf8',
        env: { ...process.env, TF_ENABLE_ONEDNN_OPTS: onednn, TF_CPP_MIN_LOG_LEVEL: '3' },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const { diffs } = JSON.parse(out.trim().split('\n').at(-1)!) as { diffs: Record<string, number> };
      assert.equal(Object.keys(diffs).length, 22, JSON.stringify(diffs));
      for (const [name, d] of Object.entries(diffs)) assert.ok(d < 1e-4, `${name} differs by ${d}`);
    });
  }
});
