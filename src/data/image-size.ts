/**
 * An image's dimensions from its header, read before decoding: a small PNG or JPEG can declare
 * a size that would take gigabytes to decode, and that must be refused, not allocated.
 */
export interface ImageDimensions {
  width: number;
  height: number;
}

/** Decoded pixels beyond which an image is refused: 40 megapixels (an RGB int32 decode of 480 MB). */
export const MAX_DECODED_PIXELS = 40_000_000;

/** Width and height from a PNG's IHDR or a JPEG's start-of-frame, or undefined for other bytes. */
export function imageDimensions(bytes: Uint8Array): ImageDimensions | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // PNG: 8-byte signature, then the IHDR chunk: length, "IHDR", width, height (big-endian).
  if (bytes.length >= 24 && view.getUint32(0) === 0x89504e47 && view.getUint32(12) === 0x49484452) {
    return { width: view.getUint32(16), height: view.getUint32(20) };
  }
  // JPEG: SOI, then segments until a start-of-frame marker (SOF0-SOF15 but DHT, JPG and DAC).
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let at = 2;
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return undefined;
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = view.getUint16(at + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: view.getUint16(at + 5), width: view.getUint16(at + 7) };
    }
    at += 2 + length;
  }
  return undefined;
}
