import { strict as assert } from 'node:assert';
import type { Tensor3D } from '@tensorflow/tfjs-node';
import { imageDimensions, MAX_DECODED_PIXELS } from '../../src/data/image-size';
import { decodeAndResize, ImageTooLargeError } from '../../src/data/images';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
import { loadTf } from '../../src/ml/tf';
import { blackPng } from '../helpers/images';

describe('image dimensions from headers, and the decoded-pixel cap', () => {
  it('reads a PNG and a JPEG header', async () => {
    assert.deepEqual(imageDimensions(blackPng(37, 21)), { width: 37, height: 21 });
    assert.deepEqual(imageDimensions(await encodeJpeg(syntheticLesion('benign', 24, 1), 24)), { width: 24, height: 24 });
    assert.equal(imageDimensions(Buffer.from('not an image at all')), undefined);
  });

  it('refuses a decompression bomb before decoding it: a 150 KB PNG of 8000x6000 pixels', () => {
    const bomb = blackPng(8000, 6000);
    assert.ok(bomb.length < 300_000, `${bomb.length} bytes`);
    assert.ok(8000 * 6000 > MAX_DECODED_PIXELS);
    assert.throws(
      () => decodeAndResize(bomb, 32),
      (err: unknown) => err instanceof ImageTooLargeError && /8000x6000 pixels, more than the 40-megapixel limit/.test(err.message),
    );
    // Below the cap the same kind of file decodes as usual.
    assert.equal(decodeAndResize(blackPng(300, 200), 16).length, 16 * 16 * 3);
  });
});

describe('decoding to uint8 pixels', () => {
  const tf = loadTf();
  /** tfjs' own way: decodeImage to int32, resized as decodeAndResize resizes, read back as numbers. */
  const reference = (bytes: Uint8Array, size: number) =>
    tf.tidy(() => {
      const image = tf.node.decodeImage(bytes, 3, 'int32', false) as Tensor3D;
      if (image.shape[0] === size && image.shape[1] === size) return Array.from(image.dataSync());
      return Array.from(tf.image.resizeBilinear(image, [size, size], true).round().clipByValue(0, 255).dataSync());
    });

  it("gives tfjs' pixels for a JPEG at its size, resized, and at a size whose byte count is not a multiple of 4", async () => {
    const jpeg = await encodeJpeg(syntheticLesion('malignant', 40, 3), 40);
    const before = tf.memory().numTensors;
    for (const size of [40, 24, 33]) {
      const ours = decodeAndResize(jpeg, size);
      assert.ok(ours instanceof Uint8Array);
      assert.equal(ours.length, size * size * 3);
      assert.deepEqual(Array.from(ours), reference(jpeg, size), `size ${size}`);
    }
    // A PNG, resized.
    assert.deepEqual(Array.from(decodeAndResize(blackPng(5, 4), 2)), reference(blackPng(5, 4), 2));
    assert.equal(tf.memory().numTensors, before, 'no tensor is left behind');
  });
});
