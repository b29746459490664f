/**
 * Watching an endpoint's data for new images (queue ml-pipeline): one listing of its `dataUri`,
 * counted as preprocessing reads it (src/data/layout.ts), without reading an image. The count
 * equals a preprocessing's train, validation, test and skipped files together.
 */
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../common/failures';
import { DatasetLayoutError, readLayout } from '../data/layout';
import type { ObjectStore } from '../storage/store';

export function createDataWatchActivities({ store }: { store: ObjectStore }) {
  return {
    /** How many files sit under `dataUri`'s train/ and test/: what a preprocessing reads, images or not. */
    async countDatasetImages({ dataUri, numClasses }: { dataUri: string; numClasses: number }): Promise<number> {
      const base = dataUri.replace(/\/+$/, '');
      try {
        const layout = readLayout(await store.list(`${base}/`), store.keyOf(`${base}/`), base, numClasses);
        return layout.train.length + layout.test.length + layout.stray.length;
      } catch (err) {
        if (err instanceof DatasetLayoutError) throw ApplicationFailure.nonRetryable(err.message, FAILURE.invalidDataset);
        throw err;
      }
    },
  };
}
