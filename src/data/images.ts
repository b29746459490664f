/** Image decoding and resizing on the native TensorFlow backend. */
import type { Tensor3D } from '@tensorflow/tfjs-node';
import { loadTf } from '../ml/tf';
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
  let pixels: Tensor3D;
  try {
    // The typed array is read outside tidy(): tidy() walks every element of a returned container.
    pixels = tf.tidy(() => {
      const image = tf.node.decodeImage(bytes, 3, 'int32', false) as Tensor3D;
      if (image.shape[0] === size && image.shape[1] === size) return image;
      return tf.image.resizeBilinear(image, [size, size], true).round().clipByValue(0, 255) as Tensor3D;
    });
  } catch (err) {
    throw new ImageDecodeError(`not a decodable image: ${(err as Error).message}`);
  }
  try {
    return new Uint8Array(pixels.dataSync());
  } finally {
    pixels.dispose();
  }
}
