/**
 * Every benchmark's quick mode (`node dist/bench/<name>.js --quick`: tiny sizes, one round, its
 * Python reference included), so that a benchmark that no longer runs, or that waits on a process
 * that died, fails here with its own last lines instead of when someone next runs it. Its figures
 * are not checked, only that its last line is its JSON and that each of its ratios is a finite,
 * positive number. `npm test`'s set-up builds dist/; the Python reference side (.venv-bench) is
 * installed here on first use by scripts/bench-env.sh.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/global';

interface QuickBench {
  /** bench/<name>.ts, run by `npm run bench:<name>`. */
  name: string;
  /** Fields that must be there, finite and positive; any other field named like a ratio must be too. */
  positive: string[];
  /** What else its JSON must say. */
  check?: (result: Record<string, unknown>) => void;
  /** How long its quick mode may take (default 300 s). */
  seconds?: number;
}

// A new benchmark joins with one line here (and package.json's bench:<name>).
const BENCHES: QuickBench[] = [
  { name: 'preprocess', positive: ['ratio', 'ratioTfData', 'ratioTfData4x', 'rssGrowth'] },
  {
    name: 'train',
    positive: ['ratio64', 'ratio128', 'ratio224', 'ratioResnet64', 'ratioResnet224', 'rssRatioResnet224'],
    check: parity,
    seconds: 1200,
  },
  { name: 'resume', positive: ['epochsExecuted', 'secondsToRecover'], check: resumed },
  { name: 'serve', positive: ['ratio', 'p99Ratio', 'ratioToLimit', 'pingP99Ms'] },
  { name: 'overhead', positive: ['overheadShare', 'overheadMsPerActivity', 'ratioToAnchor'] },
  { name: 'scale', positive: ['rssGrowth', 'ratioToInMemory'] },
];

function parity(r: Record<string, unknown>): void {
  for (const model of ['Basic', 'CrossVal', 'ResNet50']) assert.equal(typeof r[`accuracyDiffPoints${model}`], 'number', model);
}

function resumed(r: Record<string, unknown>): void {
  assert.equal(r.workflowStatus, 'COMPLETED');
  assert.match(String(r.resumedFrom), /^s3:\/\/.+\.ckpt$/, 'the new training worker resumed from a checkpoint');
  // Checkpoints at every epoch's end: at most the killed epoch runs twice.
  assert.ok((r.epochsExecuted as number) <= (r.epochsPlanned as number) + 1, `epochsExecuted ${String(r.epochsExecuted)}`);
}

/** Lines kept from a benchmark's output to say why it failed. */
const TAIL = 40;

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Runs one quick mode to its end; resolves with its stdout lines, rejects with its last lines (stdout and stderr). */
function runQuick(name: string, seconds: number): Promise<string[]> {
  const script = join(ROOT, 'dist', 'bench', `${name}.js`);
  if (!existsSync(script)) throw new Error(`${script} is missing: build first (npx tsc -p tsconfig.build.json; npm test's set-up does)`);
  return new Promise((resolve, reject) => {
    // Its own process group, so a benchmark that overstays is stopped with what it started.
    const child = spawn(process.execPath, [script, '--quick'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const stdout: string[] = [];
    // Whole lines only: a long JSON line arrives in several chunks.
    const reader = (into: string[][]) => {
      let rest = '';
      const add = (line: string): void => void (line && into.forEach((list) => list.push(line)));
      return {
        data: (chunk: Buffer): void => {
          const parts = (rest + chunk.toString()).split('\n');
          rest = parts.pop()!;
          parts.forEach(add);
        },
        end: (): void => add(rest),
      };
    };
    const out = reader([lines, stdout]);
    const err = reader([lines]);
    child.stdout.on('data', out.data).on('end', out.end);
    child.stderr.on('data', err.data).on('end', err.end);
    const tail = (): string => lines.slice(-TAIL).join('\n  ');
    let overstayed = false;
    const deadline = setTimeout(() => {
      overstayed = true;
      // SIGTERM first: each benchmark then stops its workers, servers and stack.
      signalGroup(child.pid!, 'SIGTERM');
      setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), 30_000).unref();
    }, seconds * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      if (overstayed) reject(new Error(`bench:${name} --quick did not finish within ${seconds} s; its last lines:\n  ${tail()}`));
      else if (code !== 0)
        reject(new Error(`bench:${name} --quick failed (${signal ?? `exit code ${code}`}); its last lines:\n  ${tail()}`));
      else resolve(stdout);
    });
  });
}

describe('benchmarks in quick mode', function () {
  before(function () {
    this.timeout(1_800_000);
    // TensorFlow and MLflow for the reference side: about 80 s the first time, from PyPI.
    execFileSync('bash', [join(ROOT, 'scripts', 'bench-env.sh')], { stdio: 'inherit' });
  });

  it('covers every bench:* script in package.json', function () {
    const scripts = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: object }).scripts);
    const benches = scripts.filter((s) => s.startsWith('bench:')).map((s) => s.slice('bench:'.length));
    assert.deepEqual(benches.sort(), BENCHES.map((b) => b.name).sort());
  });

  for (const bench of BENCHES) {
    it(`bench:${bench.name} --quick ends with its JSON line, every ratio finite and positive`, async function () {
      const seconds = bench.seconds ?? 300;
      this.timeout((seconds + 60) * 1000);
      const last = (await runQuick(bench.name, seconds)).at(-1) ?? '';
      let result: Record<string, unknown>;
      try {
        result = JSON.parse(last) as Record<string, unknown>;
      } catch {
        assert.fail(`the last line bench:${bench.name} --quick printed on stdout is not JSON: '${last.slice(0, 300)}'`);
      }
      const ratios = Object.keys(result).filter((k) => /ratio/i.test(k) && typeof result[k] === 'number');
      for (const key of new Set([...bench.positive, ...ratios])) {
        const value = result[key];
        assert.ok(typeof value === 'number' && Number.isFinite(value) && value > 0, `${key} is ${JSON.stringify(value)}`);
      }
      bench.check?.(result);
    });
  }
});
