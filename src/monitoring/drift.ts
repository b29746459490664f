/**
 * Drift: whether the images an endpoint sees still look like those its model learnt from.
 *
 * Both sides are summarised alike, as a DriftProfile: how many images; their classes (predicted by
 * the endpoint, labelled in the training data); and for each colour channel a histogram of the
 * images' mean intensity, in DRIFT_BINS equal bins over [0, 1]. No image is kept, and a profile has
 * the same small size however many images it summarises, so profiles merge by adding.
 *
 * Two profiles are compared by the population stability index per feature (red, green, blue,
 * class): PSI = sum over bins of (a - e) * ln(a / e), with a and e the bins' shares. The shares are
 * smoothed by half an image per bin, so an empty bin does not make the index infinite. The largest
 * of the three channels' is the drift figure; 0.1-0.2 is commonly read as a moderate shift, above
 * 0.2 a large one. The predicted classes' shares are compared with the training labels' and shown
 * beside it, but do not set it: a model's own bias (predicting one class more often than the labels
 * have it) would read as drift from its first day.
 */

export const DRIFT_BINS = 10;
export { MIN_DRIFT_IMAGES } from '../common/constants';
export const DRIFT_FEATURES = ['red', 'green', 'blue', 'class'] as const;
export type DriftFeature = (typeof DRIFT_FEATURES)[number];

export interface DriftProfile {
  images: number;
  /** Images per class name. */
  classes: Record<string, number>;
  /** Per channel (red, green, blue): images per bin of their mean intensity. */
  channelMeans: number[][];
}

export interface DriftFigures {
  /** The largest of the colour channels' indexes. */
  psi: number;
  features: Record<DriftFeature, number>;
  /** The images the endpoint saw in the window, and those of the reference (the training data). */
  images: number;
  referenceImages: number;
}

export const emptyProfile = (): DriftProfile => ({
  images: 0,
  classes: {},
  channelMeans: [0, 1, 2].map(() => new Array<number>(DRIFT_BINS).fill(0)),
});

/**
 * Adds `count` images of `pixelsPerImage` interleaved RGB values each (floats in [0, 1] with scale
 * 1, or bytes with scale 1/255), and their classes.
 */
export function addImages(
  profile: DriftProfile,
  pixels: ArrayLike<number>,
  count: number,
  pixelsPerImage: number,
  classes: readonly string[],
  scale = 1,
): void {
  for (let i = 0; i < count; i++) {
    const sums = [0, 0, 0];
    const start = i * pixelsPerImage * 3;
    for (let p = 0; p < pixelsPerImage; p++) {
      const at = start + p * 3;
      sums[0] += pixels[at]!;
      sums[1] += pixels[at + 1]!;
      sums[2] += pixels[at + 2]!;
    }
    for (let c = 0; c < 3; c++) profile.channelMeans[c]![binOf((sums[c]! * scale) / pixelsPerImage)]!++;
    const name = classes[i]!;
    profile.classes[name] = (profile.classes[name] ?? 0) + 1;
  }
  profile.images += count;
}

const binOf = (mean: number): number => Math.min(DRIFT_BINS - 1, Math.max(0, Math.floor(mean * DRIFT_BINS)));

/** `into` plus `other`. */
export function mergeProfile(into: DriftProfile, other: DriftProfile): void {
  into.images += other.images;
  for (const [name, n] of Object.entries(other.classes)) into.classes[name] = (into.classes[name] ?? 0) + n;
  for (let c = 0; c < 3; c++) for (let b = 0; b < DRIFT_BINS; b++) into.channelMeans[c]![b]! += other.channelMeans[c]?.[b] ?? 0;
}

/** The population stability index of `actual` against `expected` (counts per bin, the same bins). */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  const bins = expected.length;
  const share = (counts: readonly number[]) => {
    const total = counts.reduce((a, b) => a + b, 0) + 0.5 * bins;
    return counts.map((n) => (n + 0.5) / total);
  };
  const e = share(expected);
  const a = share(actual);
  return e.reduce((sum, ei, i) => sum + (a[i]! - ei) * Math.log(a[i]! / ei), 0);
}

/** How far `observed` has moved from `reference`, feature by feature, over the classes of `classNames`. */
export function compareProfiles(reference: DriftProfile, observed: DriftProfile, classNames: readonly string[]): DriftFigures {
  const features = {
    red: psi(reference.channelMeans[0]!, observed.channelMeans[0]!),
    green: psi(reference.channelMeans[1]!, observed.channelMeans[1]!),
    blue: psi(reference.channelMeans[2]!, observed.channelMeans[2]!),
    class: psi(
      classNames.map((c) => reference.classes[c] ?? 0),
      classNames.map((c) => observed.classes[c] ?? 0),
    ),
  };
  const round = (x: number): number => Math.round(x * 1e4) / 1e4;
  return {
    psi: round(Math.max(features.red, features.green, features.blue)),
    features: Object.fromEntries(Object.entries(features).map(([k, v]) => [k, round(v)])) as Record<DriftFeature, number>,
    images: observed.images,
    referenceImages: reference.images,
  };
}

export interface DriftMeasurement {
  /** The figures, when any image was seen in the window. */
  figures?: DriftFigures;
  /** Why there is no figure: no sample configured, or nothing seen. */
  unavailable?: string;
  /** Sample batches read, and objects under the prefix that were not batches (skipped). */
  batches: number;
  skipped: number;
}

/** What the inference server writes to S3, one object per batch: `<prefix><day>/<from ISO time>-<random>.json`. */
export interface DriftSampleBatch {
  format: typeof DRIFT_SAMPLE_FORMAT;
  /** The registered model and version that predicted the classes. */
  model?: { name?: string; version?: string };
  from: string;
  to: string;
  profile: DriftProfile;
}

export const DRIFT_SAMPLE_FORMAT = 'cnn-skin-cancer/drift-sample@1';

/** An endpoint's own prefix below DRIFT_SAMPLE_URI: where its servers write, and where its drift checks read. */
export const driftPrefixOf = (rootUri: string, endpointName: string): string => `${rootUri.replace(/\/+$/, '')}/${endpointName}/`;

/** Whether `value` is a batch this code wrote (a stray object under the prefix is skipped, not trusted). */
export function isDriftSampleBatch(value: unknown): value is DriftSampleBatch {
  const v = value as DriftSampleBatch | undefined;
  return (
    v?.format === DRIFT_SAMPLE_FORMAT &&
    typeof v.profile?.images === 'number' &&
    typeof v.profile.classes === 'object' &&
    Array.isArray(v.profile.channelMeans) &&
    v.profile.channelMeans.length === 3
  );
}
