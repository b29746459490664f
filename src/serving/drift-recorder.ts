/**
 * The inference server's drift sample (src/monitoring/drift.ts): every image it predicts on is
 * summarised into a profile (its predicted class, its channels' mean intensity; never the image),
 * and the profile is written to S3 as one batch every `flushSeconds`, or sooner once it holds
 * `flushImages` images. A profile has a fixed size, so a write that fails is merged into the next
 * one and nothing grows while S3 is away; a server that stops loses at most its last batch.
 */
import { randomBytes } from 'node:crypto';
import { addImages, DRIFT_SAMPLE_FORMAT, emptyProfile, mergeProfile, type DriftProfile, type DriftSampleBatch } from '../monitoring/drift';
import type { ObjectStore } from '../storage/store';

/** The serving container's variable naming its endpoint's drift prefix (set by the deploy on SageMaker). */
export const ENDPOINT_DRIFT_SAMPLE_ENV = 'ENDPOINT_DRIFT_SAMPLE_URI';

export interface DriftRecorderOptions {
  /** The endpoint's prefix: batches are written below it. */
  prefixUri: string;
  flushSeconds?: number;
  flushImages?: number;
  /** Told when a batch could not be written (it is kept for the next). */
  warn?: (message: string) => void;
}

export class DriftRecorder {
  private profile = emptyProfile();
  private from: Date | undefined;
  private model: DriftSampleBatch['model'];
  private readonly timer: NodeJS.Timeout;
  private writing: Promise<void> | undefined;
  private readonly flushImages: number;

  constructor(
    private readonly store: ObjectStore,
    private readonly o: DriftRecorderOptions,
  ) {
    this.flushImages = o.flushImages ?? 1000;
    this.timer = setInterval(() => void this.flush(), (o.flushSeconds ?? 60) * 1000);
    this.timer.unref();
  }

  /** Summarises `count` images (floats in [0, 1], `size` x `size` x 3 each) and their predicted classes. */
  observe(pixels: Float32Array, count: number, size: number, predicted: readonly string[], model: DriftSampleBatch['model']): void {
    // A batch holds one model's predictions: another version (a hot swap) starts the next one.
    if (this.model && (this.model.name !== model?.name || this.model.version !== model?.version)) void this.flush();
    this.from ??= new Date();
    this.model = model;
    addImages(this.profile, pixels, count, size * size, predicted);
    if (this.profile.images >= this.flushImages) void this.flush();
  }

  /** Writes what was observed since the last batch, if anything; one write at a time. */
  async flush(): Promise<void> {
    if (this.writing) return this.writing;
    if (this.profile.images === 0) return;
    const profile = this.profile;
    const from = this.from!;
    this.profile = emptyProfile();
    this.from = undefined;
    const batch: DriftSampleBatch = {
      format: DRIFT_SAMPLE_FORMAT,
      model: this.model,
      from: from.toISOString(),
      to: new Date().toISOString(),
      profile,
    };
    // A folder per day, names by time: a drift check lists only the days of its window.
    const uri = `${this.o.prefixUri.replace(/\/+$/, '')}/${batch.from.slice(0, 10)}/${batch.from}-${randomBytes(4).toString('hex')}.json`;
    this.writing = this.store
      .putJson(uri, batch)
      .catch((err: Error) => {
        this.o.warn?.(`drift sample not written to ${uri} (${err.message}); kept for the next batch`);
        this.keep(profile, from);
      })
      .finally(() => (this.writing = undefined));
    return this.writing;
  }

  /** Stops the timer and writes the last batch. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.writing;
    await this.flush();
  }

  private keep(profile: DriftProfile, from: Date): void {
    mergeProfile(this.profile, profile);
    if (!this.from || from < this.from) this.from = from;
  }
}
