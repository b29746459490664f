/**
 * Images a training or evaluation process has read, in any pass (training batches, validation,
 * batch-norm statistics, scoring). A process that reads no image for long is stuck, not busy: its
 * parent ends it (process.ts, stallMs) so that the attempt is retried rather than held for hours.
 */
let imagesRead = 0;
const listeners: ((imagesRead: number) => void)[] = [];

export function countImagesRead(n: number): void {
  imagesRead += n;
  for (const listener of listeners) listener(imagesRead);
}

/** Calls `listener` with the running total after every read. */
export function onImagesRead(listener: (imagesRead: number) => void): void {
  listeners.push(listener);
}
