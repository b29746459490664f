/** Image decoding and resizing on the native TensorFlow backend. */
import type { Tensor, Tensor3D } from '@tensorflow/tfjs-node';
import { attrKit, native, reshape, type DType } from '../ml/native-backend';
import { loadTf, type Tf } from '../ml/tf';
import { imageDimensions, MAX_DECODED_PIXELS } from './image-size';

export class ImageDecodeError extends Error {
  override readonly name: string = 'ImageDecodeError';
}

/** An image whose declared size is beyond MAX_DECODED_PIXELS: refused before anything is decoded. */
export class ImageTooLargeError extends ImageDecodeError {
  override readonly name = 'ImageTooLargeError';
}

/**
 * Decodes a JPEG or PNG (any size; grayscale and RGBA made RGB) into size x size x 3 uint8
 * pixels, resized bilinearly to the square the models expect.
 */
export function decodeAndResize(bytes: Uint8Array, size: number): Uint8Array {
  const dims = imageDimensions(bytes);
  if (dims && dims.width * dims.height > MAX_DECODED_PIXELS) {
    throw new ImageTooLargeError(
      `the image declares ${dims.width}x${dims.height} pixels, more than the ${MAX_DECODED_PIXELS / 1e6}-megapixel limit`,
    );
  }
  const tf = loadTf();
  let pixels: Tensor;
  try {
    // The typed array is read outside tidy(): tidy() walks every element of a returned container.
    pixels = tf.tidy(() => resizeUint8(tf, decodeUint8(tf, bytes), size));
  } catch (err) {
    throw new ImageDecodeError(`not a decodable image: ${(err as Error).message}`);
  }
  try {
    return uint8Bytes(tf, pixels);
  } finally {
    pixels.dispose();
  }
}

/*
 * Images stay uint8, TensorFlow's type for them, from decoding to reading. tfjs has no uint8: its
 * decodeImage casts to int32 (a pass over every value) and reading one back widens every byte to
 * four in a new array that the caller narrows again, together a quarter of preprocessing's CPU.
 * Tensors below hold uint8 data under tfjs' int32 label; only the native ops here touch them.
 */

/** TensorFlow's DecodeImage (JPEG, PNG, GIF's first frame, BMP) to [height, width, 3] uint8. */
export function decodeUint8(tf: Tf, bytes: Uint8Array): Tensor3D {
  const k = attrKit(tf);
  const contents = tf.scalar(bytes as unknown as string, 'string');
  try {
    return native(tf).executeSingleOutput(
      'DecodeImage',
      [k.int('channels', 3), k.dtype('dtype', 'uint8'), k.bool('expand_animations', false)],
      [contents],
    ) as Tensor3D;
  } finally {
    contents.dispose();
  }
}

/** A decoded image resized bilinearly to size x size, still uint8; the image itself at that size already. */
export function resizeUint8(tf: Tf, image: Tensor3D, size: number): Tensor {
  if (image.shape[0] === size && image.shape[1] === size) return image;
  return tf.tidy(() => {
    const float = cast(tf, image, 'uint8', 'float32') as Tensor3D;
    return cast(tf, tf.image.resizeBilinear(float, [size, size], true).round().clipByValue(0, 255), 'float32', 'uint8');
  });
}

/** TensorFlow's Cast (float to uint8 only of values already rounded into [0, 255]). */
function cast(tf: Tf, x: Tensor, from: DType, to: DType): Tensor {
  const k = attrKit(tf);
  const attrs = [k.dtype('SrcT', from), k.dtype('DstT', to), k.bool('Truncate', false)];
  return native(tf).executeSingleOutput('Cast', attrs, [x]);
}

/**
 * The bytes of a uint8 tensor, read as whole 32-bit words (Bitcast of its [n / 4, 4] view, no
 * copy) and viewed as bytes; when n is not a multiple of 4, cast to int32 and narrowed.
 */
export function uint8Bytes(tf: Tf, pixels: Tensor): Uint8Array {
  const n = pixels.size;
  const temps: Tensor[] = [];
  try {
    if (n % 4 !== 0) {
      const wide = cast(tf, pixels, 'uint8', 'int32');
      temps.push(wide);
      return new Uint8Array(wide.dataSync());
    }
    const grouped = reshape(tf, pixels, [n / 4, 4], 'uint8');
    temps.push(grouped);
    const k = attrKit(tf);
    const words = native(tf).executeSingleOutput('Bitcast', [k.dtype('T', 'uint8'), k.dtype('type', 'int32')], [grouped]);
    temps.push(words);
    const data = words.dataSync() as Int32Array;
    return new Uint8Array(data.buffer, data.byteOffset, n);
  } finally {
    tf.dispose(temps);
  }
}
