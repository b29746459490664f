/** Image decoding and resizing on the native TensorFlow backend. */
import { loadTf } from '../ml/tf';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png'];

/** Decodes a JPEG or PNG (any size, grayscale/RGBA -> RGB) into size x size x 3 uint8 pixels. */
export function decodeAndResize(bytes: Uint8Array, size: number): Uint8Array {
  const tf = loadTf();
  return tf.tidy(() => {
    const image = tf.node.decodeImage(bytes, 3, 'int32', false) as import('@tensorflow/tfjs-node').Tensor3D;
    const resized = tf.image.resizeBilinear(image, [size, size], true);
    return new Uint8Array(resized.round().clipByValue(0, 255).dataSync());
  });
}
