import { seededRandom } from '../common/random';
/** Seeded, stratified splitting; pure code. */

/** mulberry32: a small, fast, seedable PRNG returning floats in [0, 1). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const rand = seededRandom(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function byLabel<T>(items: readonly T[], labelOf: (item: T) => number): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const label = labelOf(item);
    groups.set(label, [...(groups.get(label) ?? []), item]);
  }
  return new Map([...groups.entries()].sort((a, b) => a[0] - b[0]));
}

/**
 * Holds out `fraction` of each class (rounded, at least one item of any class with two or more)
 * for validation. The same items and seed always give the same split.
 */
export function stratifiedSplit<T>(
  items: readonly T[],
  labelOf: (item: T) => number,
  fraction: number,
  seed: number,
): { train: T[]; validation: T[] } {
  const train: T[] = [];
  const validation: T[] = [];
  for (const [label, group] of byLabel(items, labelOf)) {
    const order = shuffled(group, seed + label);
    const held = group.length < 2 ? 0 : Math.min(group.length - 1, Math.max(1, Math.round(group.length * fraction)));
    validation.push(...order.slice(0, held));
    train.push(...order.slice(held));
  }
  return { train, validation };
}

/** k stratified folds: fold i is the validation part of the i-th split; every item is in exactly one fold. */
export function stratifiedFolds<T>(items: readonly T[], labelOf: (item: T) => number, k: number, seed: number): T[][] {
  const folds: T[][] = Array.from({ length: k }, () => []);
  let next = 0;
  for (const [label, group] of byLabel(items, labelOf)) {
    // Deal each class round-robin, continuing where the previous class stopped, so fold sizes differ by at most one.
    for (const item of shuffled(group, seed + label)) folds[next++ % k]!.push(item);
  }
  return folds;
}
