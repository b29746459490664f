/** Hand-made image files for tests of what decoders are given, and synthetic lesions as JSON instances. */
import { deflateSync } from 'node:zlib';
import { syntheticLesion } from '../../src/data/synthetic';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A valid black RGB PNG of width x height: all zeros compress about 1000:1, so a file of a few
 * hundred KB decodes to hundreds of MB (a decompression bomb).
 */
export function blackPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter, no interlace
  const rows = Buffer.alloc(height * (1 + width * 3)); // filter byte 0 then the row, all zeros
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * `count` synthetic lesions of `size` px (benign and malignant in turn, seeds from `seed`) as the
 * server's JSON instances (RGB floats in [0, 1]); `shift` changes each pixel's colour (clipped).
 */
export function lesionInstances(count: number, size: number, seed: number, shift?: (rgb: number[]) => number[]): number[][][][] {
  return Array.from({ length: count }, (_, i) => {
    const pixels = syntheticLesion(i % 2 ? 'malignant' : 'benign', size, seed + i);
    return Array.from({ length: size }, (_, r) =>
      Array.from({ length: size }, (_, c) => {
        const at = (r * size + c) * 3;
        const rgb = [pixels[at]! / 255, pixels[at + 1]! / 255, pixels[at + 2]! / 255];
        return shift ? shift(rgb).map((v) => Math.min(1, Math.max(0, v))) : rgb;
      }),
    );
  });
}

/** A new camera: everything redder, and darker in blue. */
export const SHIFTED_COLOURS = ([r, g, b]: number[]): number[] => [r! * 1.3 + 0.1, g!, b! * 0.6];
