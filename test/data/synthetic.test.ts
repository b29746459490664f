import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KAGGLE_COUNTS, scaledCounts, writeSyntheticDataset } from '../../src/data/generate';
import { syntheticLesion } from '../../src/data/synthetic';
import { LocalStore } from '../../src/storage/object-store';

/** Share of pixels that differ clearly from the image's corner (skin) colour: the lesion's area. */
function lesionArea(pixels: Uint8Array, size: number): number {
  const skin = [0, 1, 2].map((c) => pixels[(2 * size + 2) * 3 + c]!);
  let lesion = 0;
  for (let i = 0; i < size * size; i++) {
    const d = [0, 1, 2].reduce((s, c) => s + Math.abs(pixels[i * 3 + c]! - skin[c]!), 0);
    if (d > 90) lesion++;
  }
  return lesion / (size * size);
}

describe('synthetic dermoscopy generator', () => {
  it('is deterministic per seed', () => {
    assert.deepEqual(syntheticLesion('malignant', 48, 7), syntheticLesion('malignant', 48, 7));
    assert.notDeepEqual(syntheticLesion('malignant', 48, 7), syntheticLesion('malignant', 48, 8));
    assert.equal(syntheticLesion('benign', 32, 1).length, 32 * 32 * 3);
  });

  it('draws malignant lesions larger on average than benign ones (the D of ABCD), with overlap', () => {
    const areas = (kind: 'benign' | 'malignant') =>
      Array.from({ length: 60 }, (_, i) => lesionArea(syntheticLesion(kind, 64, 1000 + i), 64));
    const benign = areas('benign');
    const malignant = areas('malignant');
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // The measure also counts vignetted corners as "lesion", which narrows the gap it can see.
    assert.ok(mean(malignant) > 1.2 * mean(benign), `mean areas: benign ${mean(benign)}, malignant ${mean(malignant)}`);
    assert.ok(Math.min(...malignant) < Math.max(...benign), 'the classes overlap');
  });

  it('writes the ImageFolder layout with the requested counts, and leaves an existing dataset alone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gen-'));
    const outUri = pathToFileURL(join(dir, 'data')).href;
    const store = new LocalStore();
    const counts = { train: { benign: 4, malignant: 3 }, test: { benign: 2, malignant: 1 } };
    assert.deepEqual(await writeSyntheticDataset(store, { outUri, counts, size: 16, seed: 1 }), { written: 10 });
    assert.deepEqual(readdirSync(join(dir, 'data', 'train', 'malignant')), [
      'malignant-00000.jpg',
      'malignant-00001.jpg',
      'malignant-00002.jpg',
    ]);
    assert.equal(readdirSync(join(dir, 'data', 'test', 'benign')).length, 2);
    assert.deepEqual(await writeSyntheticDataset(store, { outUri, counts, size: 16, seed: 1 }), { written: 0 });
  });

  it('defaults to the Kaggle split sizes', () => {
    assert.deepEqual(scaledCounts(1), KAGGLE_COUNTS);
    assert.deepEqual(scaledCounts(0.1), { train: { benign: 144, malignant: 120 }, test: { benign: 36, malignant: 30 } });
  });
});
