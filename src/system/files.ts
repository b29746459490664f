/** Writing local files so that nothing half-written is ever read. */
import { renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Writes `text` to `path` whole or not at all: into `<path>.tmp`, then renamed over `path`. A
 * process killed mid-write leaves the old file; a write that fails (a full disk) removes its
 * partial temporary file and throws an error naming the file and the cause, the old file intact.
 */
export function writeFileAtomic(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.tmp`;
  try {
    writeFileSync(tmp, text, { mode });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOSPC' ? 'no space left on its file system; free some and the next attempt writes it' : e.message;
    throw new Error(`could not write ${path}: ${why}`, { cause: err });
  }
}
