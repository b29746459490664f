import { strict as assert } from 'node:assert';
import { seededRandom } from '../../src/common/random';
import { shuffled, stratifiedFolds, stratifiedSplit } from '../../src/data/split';

const items = [
  ...Array.from({ length: 50 }, (_, i) => ({ id: i, label: 0 })),
  ...Array.from({ length: 30 }, (_, i) => ({ id: 100 + i, label: 1 })),
];
const label = (x: { label: number }): number => x.label;

describe('seeded splitting', () => {
  it('seededRandom is deterministic and differs between seeds', () => {
    const a = seededRandom(1);
    const b = seededRandom(1);
    const c = seededRandom(2);
    const xs = [a(), a(), a()];
    assert.deepEqual(xs, [b(), b(), b()]);
    assert.notDeepEqual(xs, [c(), c(), c()]);
    assert.ok(xs.every((x) => x >= 0 && x < 1));
  });

  it('shuffled is a permutation', () => {
    const s = shuffled(items, 5);
    assert.notDeepEqual(s, items);
    assert.deepEqual(
      [...s].sort((a, b) => a.id - b.id),
      items,
    );
  });

  it('stratifiedSplit holds out the fraction of each class, deterministically', () => {
    const { train, validation } = stratifiedSplit(items, label, 0.2, 42);
    assert.equal(validation.filter((x) => x.label === 0).length, 10);
    assert.equal(validation.filter((x) => x.label === 1).length, 6);
    assert.equal(train.length + validation.length, items.length);
    assert.equal(new Set([...train, ...validation].map((x) => x.id)).size, items.length);
    assert.deepEqual(stratifiedSplit(items, label, 0.2, 42), { train, validation });
    assert.notDeepEqual(stratifiedSplit(items, label, 0.2, 43).validation, validation);
  });

  it('stratifiedFolds partitions the items with balanced classes', () => {
    const folds = stratifiedFolds(items, label, 3, 1);
    assert.equal(folds.length, 3);
    assert.equal(
      folds.reduce((s, f) => s + f.length, 0),
      items.length,
    );
    assert.equal(new Set(folds.flat().map((x) => x.id)).size, items.length);
    for (const f of folds) {
      assert.ok(Math.abs(f.length - items.length / 3) <= 1, `fold size ${f.length}`);
      assert.ok(f.some((x) => x.label === 1) && f.some((x) => x.label === 0));
    }
  });
});
