import { strict as assert } from 'node:assert';
import { imageDimensions, MAX_DECODED_PIXELS } from '../../src/data/image-size';
import { decodeAndResize, ImageTooLargeError } from '../../src/data/images';
import { encodeJpeg, syntheticLesion } from '../../src/data/synthetic';
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
