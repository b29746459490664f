/**
 * Measuring an endpoint's drift (queue ml-pipeline): the drift sample its servers wrote since the
 * last check (src/serving/drift-recorder.ts), against the training data of the model it serves
 * (src/monitoring/drift.ts). The training data's profile is computed once per dataset, from up to
 * REFERENCE_IMAGES of its training and validation images spread over their shards, and kept
 * beside its manifest.
 */
import { ApplicationFailure } from '@temporalio/common';
import { FAILURE } from '../common/failures';
import { decodeShard, type DatasetManifest } from '../data/shards';
import {
  addImages,
  compareProfiles,
  driftPrefixOf,
  emptyProfile,
  isDriftSampleBatch,
  mergeProfile,
  type DriftMeasurement,
  type DriftProfile,
} from '../monitoring/drift';
import type { ObjectStore } from '../storage/store';

/** Training images read for a dataset's profile: enough for 10 bins, and a few shards at 224 px. */
export const REFERENCE_IMAGES = 2000;

export function createDriftActivities({ store, sampleUri }: { store: ObjectStore; sampleUri?: string }) {
  return {
    /**
     * The drift of what `endpointName` saw from `since` until `until` (ISO times; a batch counts
     * in the window its first image falls in) from the training data in `manifestUri`; with
     * `version`, only what that version predicted on.
     */
    async measureDrift(input: {
      endpointName: string;
      manifestUri: string;
      since: string;
      until: string;
      version?: string;
    }): Promise<DriftMeasurement> {
      if (!sampleUri) {
        return {
          unavailable: 'DRIFT_SAMPLE_URI is not set on the ml-pipeline worker: the endpoints keep no sample',
          batches: 0,
          skipped: 0,
        };
      }
      const manifest = await store.getJson<DatasetManifest>(input.manifestUri).catch((err: Error) => {
        throw ApplicationFailure.nonRetryable(
          `the training data's manifest ${input.manifestUri} cannot be read (${err.message})`,
          FAILURE.invalidDataset,
        );
      });
      const observed = emptyProfile();
      let batches = 0;
      let skipped = 0;
      const prefix = driftPrefixOf(sampleUri, input.endpointName);
      for (const day of daysFrom(input.since, input.until)) {
        for (const object of await store.list(`${prefix}${day}/`)) {
          // Batches are named by the time their first image was seen.
          const name = object.key.slice(object.key.lastIndexOf('/') + 1);
          const from = name.slice(0, 24);
          if (from < input.since || from >= input.until) continue;
          const batch = await store.getJson<unknown>(store.uriOf(prefix, object.key)).catch(() => undefined);
          if (!isDriftSampleBatch(batch)) {
            skipped++;
            continue;
          }
          if (input.version !== undefined && batch.model?.version !== input.version) continue;
          mergeProfile(observed, batch.profile);
          batches++;
        }
      }
      if (observed.images === 0)
        return { unavailable: `no image was predicted on from ${input.since} until ${input.until}`, batches, skipped };
      const reference = await referenceProfile(store, input.manifestUri, manifest);
      return { figures: compareProfiles(reference, observed, manifest.classes), batches, skipped };
    },
  };
}

/** The UTC days (YYYY-MM-DD) from `since` to `until`, both included: the folders batches are written in. */
function daysFrom(since: string, until: string): string[] {
  const days: string[] = [];
  const [start, end] = [Date.parse(since.slice(0, 10)), Date.parse(until)];
  if (!Number.isFinite(start) || !Number.isFinite(end))
    throw ApplicationFailure.nonRetryable(`expected ISO times, got since '${since}' and until '${until}'`, FAILURE.invalidInput);
  for (let t = start; t <= end; t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  return days;
}

/** The training data's profile: read from beside the manifest, or computed from its shards and kept there. */
async function referenceProfile(store: ObjectStore, manifestUri: string, manifest: DatasetManifest): Promise<DriftProfile> {
  const uri = manifestUri.replace(/[^/]+$/, 'drift-reference.json');
  if (await store.exists(uri)) return store.getJson<DriftProfile>(uri);
  const { train, validation } = manifest.splits;
  const shards = [...train.shards, ...validation.shards];
  const profile = emptyProfile();
  // Every k-th shard, so that the images come from the whole data (shards are shuffled, not sorted by class).
  const perShard = Math.max(1, shards[0]?.count ?? 1);
  const step = Math.max(1, Math.floor(shards.length / Math.ceil(REFERENCE_IMAGES / perShard)));
  for (let i = 0; i < shards.length && profile.images < REFERENCE_IMAGES; i += step) {
    const shard = decodeShard(await store.getBytes(shards[i]!.uri));
    const names = Array.from(shard.labels, (label) => manifest.classes[label]!);
    addImages(profile, shard.pixels, shard.count, shard.height * shard.width, names, 1 / 255);
  }
  // The classes are the training split's labels, all of them, not only those read.
  profile.classes = { ...train.perClass };
  await store.putJson(uri, profile);
  return profile;
}
