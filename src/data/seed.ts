/** Writes the synthetic dataset to S3 in the seed's ImageFolder layout, unless one is there. */
import { joinUri, parseS3Uri, type S3Store } from '../storage/s3';
import { encodeJpeg, SYNTHETIC_CLASSES, syntheticLesion } from './synthetic';

export interface SeedOptions {
  outUri: string;
  trainPerClass: number;
  testPerClass: number;
  size: number;
  seed: number;
  force?: boolean;
}

export async function seedSyntheticDataset(s3: S3Store, o: SeedOptions): Promise<{ written: number }> {
  await s3.ensureBucket(parseS3Uri(o.outUri).bucket);
  if (!o.force && (await s3.list(joinUri(o.outUri, 'train') + '/')).length > 0) return { written: 0 };
  let written = 0;
  for (const [split, count, offset] of [
    ['train', o.trainPerClass, 0],
    ['test', o.testPerClass, 1_000_000],
  ] as const) {
    for (const [c, kind] of SYNTHETIC_CLASSES.entries()) {
      for (let i = 0; i < count; i++) {
        const pixels = syntheticLesion(kind, o.size, o.seed * 7919 + offset + c * 100_000 + i);
        await s3.put(
          joinUri(o.outUri, split, kind, `${kind}-${String(i).padStart(5, '0')}.jpg`),
          await encodeJpeg(pixels, o.size),
          'image/jpeg',
        );
        written++;
      }
    }
  }
  return { written };
}
