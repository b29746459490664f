/**
 * Reads an ImageFolder layout from a listing: `<base>/{train,test}/<class>/<file>`.
 * Class names are the folder names, sorted; a label is the class's index.
 */
import type { ObjectInfo } from '../storage/store';

export class DatasetLayoutError extends Error {
  override readonly name = 'DatasetLayoutError';
}

export interface LabelledObject {
  key: string;
  label: number;
}

export interface DatasetLayout {
  classes: string[];
  train: LabelledObject[];
  test: LabelledObject[];
  /** Files that sit in a split folder but outside any class folder. */
  stray: string[];
}

/**
 * @param baseKey the listing's prefix (e.g. `data/` for s3://bucket/data), ending in `/`
 * @param baseUri the same prefix as a URI, for error messages
 */
export function readLayout(listing: readonly ObjectInfo[], baseKey: string, baseUri: string, expectedClasses: number): DatasetLayout {
  if (listing.length === 0)
    throw new DatasetLayoutError(`no objects under ${baseUri}/; expected ${baseUri}/train/<class>/* and ${baseUri}/test/<class>/*`);
  const groups = { train: new Map<string, string[]>(), test: new Map<string, string[]>() };
  const stray: string[] = [];
  for (const o of listing) {
    if (!o.key.startsWith(baseKey)) continue;
    const parts = o.key.slice(baseKey.length).split('/');
    const split = parts[0];
    if (split !== 'train' && split !== 'test') continue;
    if (parts.length < 3 || !parts[1]) {
      stray.push(o.key);
      continue;
    }
    const files = groups[split].get(parts[1]) ?? [];
    files.push(o.key);
    groups[split].set(parts[1], files);
  }
  for (const split of ['train', 'test'] as const) {
    if (groups[split].size === 0)
      throw new DatasetLayoutError(`no class folders under ${baseUri}/${split}/; expected ${baseUri}/${split}/<class>/<image>`);
  }
  const classes = [...groups.train.keys()].sort();
  if (classes.length < 2)
    throw new DatasetLayoutError(
      `${baseUri}/train/ has ${classes.length} class folder(s) (${classes.join(', ')}); at least two are needed`,
    );
  if (classes.length !== expectedClasses) {
    throw new DatasetLayoutError(
      `${baseUri}/train/ has ${classes.length} classes (${classes.join(', ')}) but numClasses is ${expectedClasses}`,
    );
  }
  const extra = [...groups.test.keys()].filter((c) => !classes.includes(c));
  if (extra.length) throw new DatasetLayoutError(`${baseUri}/test/ has class folder(s) that train/ lacks: ${extra.join(', ')}`);
  for (const split of ['train', 'test'] as const) {
    for (const c of classes) {
      if (!groups[split].get(c)?.length) throw new DatasetLayoutError(`${baseUri}/${split}/${c}/ is empty or missing`);
    }
  }
  const labelled = (split: 'train' | 'test'): LabelledObject[] =>
    classes.flatMap((c, label) => groups[split].get(c)!.map((key) => ({ key, label })));
  return { classes, train: labelled('train'), test: labelled('test'), stray };
}
