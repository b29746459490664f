/**
 * Where our preprocessing's time goes: each stage a shard builder runs per image, timed alone in
 * one process over the same files, through the functions the builders use (read, header check,
 * decode, resize, read back the uint8 pixels, content hash), then per shard (encode, write). Stages
 * run one after another here; in the pipeline the pool runs one builder per core, so these are
 * CPU-seconds, not wall time.
 *
 * usage: node preprocess-profile.js DATA_DIR SIZE (at the Kaggle sizes, 224 px files to 224 px, resize is skipped)
 * prints per-stage milliseconds per image and shares, then one JSON line.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { imageDimensions } from '../src/data/image-size';
import { decodeUint8, resizeUint8, uint8Bytes } from '../src/data/images';
import { ShardWriter } from '../src/data/shards';
import { loadTf } from '../src/ml/tf';

const [dir, sizeArg] = process.argv.slice(2);
const SIZE = Number(sizeArg ?? 224);
const SHARD = 256;

function listImages(root: string): string[] {
  const out: string[] = [];
  for (const split of ['train', 'test'])
    for (const cls of readdirSync(join(root, split)).sort())
      for (const f of readdirSync(join(root, split, cls)).sort()) out.push(join(root, split, cls, f));
  return out;
}

function main(): void {
  const tf = loadTf();
  const files = listImages(dir!);
  const ms: Record<string, number> = { read: 0, header: 0, decode: 0, resize: 0, readback: 0, hash: 0, encode: 0, write: 0 };
  const time = <T>(stage: string, fn: () => T): T => {
    const t0 = process.hrtime.bigint();
    const out = fn();
    ms[stage]! += Number(process.hrtime.bigint() - t0) / 1e6;
    return out;
  };
  const tmp = mkdtempSync(join(dir!, '..', 'profile-'));
  // As a builder does: pixels go straight into the shard's bytes, one buffer reused shard after shard.
  let writer = new ShardWriter(SHARD, SIZE, SIZE, 3);
  let inShard = 0;
  let shards = 0;
  const flush = (): void => {
    const bytes = time('encode', () => writer.finish(new Uint16Array(inShard)));
    time('write', () => writeFileSync(join(tmp, `shard-${shards++}.bin`), bytes));
    writer = new ShardWriter(SHARD, SIZE, SIZE, 3, writer.buffer);
    inShard = 0;
  };
  // Warm-up: the first decode loads the codec.
  decodeUint8(tf, readFileSync(files[0]!)).dispose();
  const started = process.hrtime.bigint();
  const hash = createHash('sha256');
  for (const file of files) {
    const bytes = time('read', () => readFileSync(file));
    time('header', () => imageDimensions(bytes));
    const decoded = time('decode', () => decodeUint8(tf, bytes));
    const resized = time('resize', () => resizeUint8(tf, decoded, SIZE));
    time('readback', () => writer.image(inShard).set(uint8Bytes(tf, resized)));
    if (resized !== decoded) resized.dispose();
    decoded.dispose();
    time('hash', () => hash.update(bytes));
    if (++inShard === SHARD) flush();
  }
  if (inShard) flush();
  const totalMs = Number(process.hrtime.bigint() - started) / 1e6;
  rmSync(tmp, { recursive: true, force: true });
  const per = (x: number): number => Math.round((x / files.length) * 1000) / 1000;
  for (const [stage, t] of Object.entries(ms))
    console.log(`${stage.padEnd(9)} ${per(t).toFixed(3).padStart(7)} ms/image  ${((100 * t) / totalMs).toFixed(1).padStart(5)} %`);
  console.log(`all       ${per(totalMs).toFixed(3).padStart(7)} ms/image  (${files.length} images, one process)`);
  console.log(
    JSON.stringify({
      images: files.length,
      msPerImage: per(totalMs),
      stages: Object.fromEntries(
        Object.entries(ms).map(([k, v]) => [k, { msPerImage: per(v), share: Math.round((v / totalMs) * 1000) / 1000 }]),
      ),
    }),
  );
}

main();
