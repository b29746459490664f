/**
 * The default build id of this release: the package version and a hash of the code that runs, so
 * any code change is a new Worker Deployment Version and an unchanged build keeps its id.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative } from 'node:path';

/** Hashes every source file (compiled `.js`, or `.ts` under ts-node) below `root`, in a stable order. */
export function codeHash(root: string, ext = extname(__filename)): string {
  const hash = createHash('sha256');
  const files = listFiles(root).filter((f) => f.endsWith(ext) && !f.endsWith(`.d${ext}`));
  for (const file of files.sort()) {
    hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex').slice(0, 12);
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? listFiles(path) : e.isFile() ? [path] : [];
  });
}

export function defaultBuildId(): string {
  const srcRoot = join(__dirname, '..');
  const { version } = JSON.parse(
    readFileSync(join(srcRoot, '..', ...(extname(__filename) === '.js' ? ['..'] : []), 'package.json'), 'utf8'),
  ) as {
    version: string;
  };
  return `${version}-${codeHash(srcRoot)}`;
}
