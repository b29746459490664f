import { strict as assert } from 'node:assert';
import { crc32, inflateSync } from 'node:zlib';
import { CURVE_COLOURS, ROC_LAYOUT, confusionMatrixLayout, confusionMatrixPng, rocCurvePng } from '../../src/ml/plots';
import { loadTf } from '../../src/ml/tf';

type Rgb = readonly [number, number, number];

interface Decoded {
  width: number;
  height: number;
  rgb: Uint8Array;
  at(x: number, y: number): Rgb;
}

/**
 * Just enough of a PNG reader for what plots.ts writes (8-bit RGB, not interlaced), checking the
 * signature and every chunk's CRC (zlib's crc32, not the module's own) and undoing all five filters.
 */
function readPng(bytes: Uint8Array): Decoded {
  const buf = Buffer.from(bytes);
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const idat: Buffer[] = [];
  let ihdr: Buffer | undefined;
  let pos = 8;
  let last = '';
  while (pos < buf.length) {
    const length = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + length);
    assert.equal(buf.readUInt32BE(pos + 8 + length), crc32(buf.subarray(pos + 4, pos + 8 + length)), `CRC of ${type}`);
    if (type === 'IHDR') ihdr = data;
    if (type === 'IDAT') idat.push(data);
    last = type;
    pos += 12 + length;
  }
  assert.equal(pos, buf.length, 'chunks end at the end of the file');
  assert.equal(last, 'IEND');
  assert.ok(ihdr, 'IHDR');
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  assert.deepEqual([...ihdr.subarray(8)], [8, 2, 0, 0, 0], '8-bit RGB, not interlaced');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  assert.equal(raw.length, height * (stride + 1));
  const rgb = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const a = i >= 3 ? rgb[y * stride + i - 3]! : 0;
      const b = y ? rgb[(y - 1) * stride + i]! : 0;
      const c = i >= 3 && y ? rgb[(y - 1) * stride + i - 3]! : 0;
      const p = a + b - c;
      const paeth =
        Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const predictor = [0, a, b, (a + b) >> 1, paeth][filter];
      assert.ok(predictor !== undefined, `filter type ${filter}`);
      rgb[y * stride + i] = (raw[y * (stride + 1) + 1 + i]! + predictor) & 0xff;
    }
  }
  return {
    width,
    height,
    rgb,
    at: (x, y) => {
      const o = (Math.round(y) * width + Math.round(x)) * 3;
      return [rgb[o]!, rgb[o + 1]!, rgb[o + 2]!];
    },
  };
}

/** The most frequent colour in a rectangle: a cell's fill, whatever text sits on it. */
function modalColour(img: Decoded, x: number, y: number, w: number, h: number): Rgb {
  const counts = new Map<string, number>();
  for (let yy = y; yy < y + h; yy++)
    for (let xx = x; xx < x + w; xx++) {
      const key = img.at(xx, yy).join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  const [best] = [...counts].sort((p, q) => q[1] - p[1])[0]!;
  return best.split(',').map(Number) as unknown as Rgb;
}

const luminance = ([r, g, b]: Rgb): number => 0.2126 * r + 0.7152 * g + 0.0722 * b;

describe('evaluation plots', () => {
  it('writes PNGs of the laid-out size with valid chunks that TensorFlow decodes to the same pixels', () => {
    const tf = loadTf();
    const classes = ['benign', 'malignant'];
    const title = 'validation';
    const images = [
      {
        png: confusionMatrixPng(
          classes,
          [
            [3, 1],
            [0, 4],
          ],
          title,
        ),
        size: confusionMatrixLayout(classes, title),
      },
      {
        png: rocCurvePng(
          [
            {
              label: 'malignant',
              points: [
                { fpr: 0, tpr: 0 },
                { fpr: 0.2, tpr: 0.7 },
                { fpr: 1, tpr: 1 },
              ],
              auc: 0.85,
            },
          ],
          title,
        ),
        size: ROC_LAYOUT,
      },
    ];
    for (const { png, size } of images) {
      const img = readPng(png);
      assert.deepEqual([img.width, img.height], [size.width, size.height]);
      const t = tf.node.decodePng(png, 3);
      try {
        assert.deepEqual(t.shape, [size.height, size.width, 3]);
        assert.ok(Buffer.from(t.dataSync()).equals(Buffer.from(img.rgb)), 'TensorFlow and the test reader agree on every pixel');
      } finally {
        t.dispose();
      }
    }
  });

  it('shades a perfect diagonal darker than every off-diagonal cell', () => {
    const classes = ['akiec', 'bcc', 'mel'];
    const layout = confusionMatrixLayout(classes, 'test');
    const img = readPng(
      confusionMatrixPng(
        classes,
        [
          [5, 0, 0],
          [0, 120, 0],
          [0, 0, 1],
        ],
        'test',
      ),
    );
    const cellColour = (r: number, c: number): Rgb => {
      const { gridLeft, gridTop, cell } = layout;
      return modalColour(img, gridLeft + c * cell + 2, gridTop + r * cell + 2, cell - 4, cell - 4);
    };
    const diagonal = classes.map((_, i) => luminance(cellColour(i, i)));
    const off = classes.flatMap((_, r) => classes.flatMap((__, c) => (r === c ? [] : [luminance(cellColour(r, c))])));
    assert.ok(Math.max(...diagonal) < Math.min(...off) - 50, `diagonal ${diagonal} vs off-diagonal ${off}`);
    // Row-normalised: every row is 100% on its diagonal however few samples it has.
    assert.equal(new Set(classes.map((_, i) => cellColour(i, i).join())).size, 1);
  });

  it('shades by the share of the row, not the raw count', () => {
    const classes = ['a', 'b'];
    const { gridLeft, gridTop, cell } = confusionMatrixLayout(classes, '');
    const img = readPng(
      confusionMatrixPng(
        classes,
        [
          [90, 10],
          [1, 1],
        ],
        '',
      ),
    );
    const shade = (r: number, c: number): number =>
      luminance(modalColour(img, gridLeft + c * cell + 2, gridTop + r * cell + 2, cell - 4, cell - 4));
    // 1 of 2 (50%) reads darker than 10 of 100 (10%) although it is the smaller count.
    assert.ok(shade(1, 0) < shade(0, 1) - 20, `${shade(1, 0)} vs ${shade(0, 1)}`);
  });

  it("draws a perfect classifier's ROC curve up the left edge and along the top, in its own colour", () => {
    const { plotLeft, plotTop, plotSize, inset } = ROC_LAYOUT;
    const img = readPng(
      rocCurvePng(
        [
          {
            label: 'perfect',
            points: [
              { fpr: 0, tpr: 0 },
              { fpr: 0, tpr: 1 },
              { fpr: 1, tpr: 1 },
            ],
            auc: 1,
          },
          {
            label: 'inverted',
            points: [
              { fpr: 0, tpr: 0 },
              { fpr: 1, tpr: 0 },
              { fpr: 1, tpr: 1 },
            ],
            auc: 0,
          },
        ],
        'ROC',
      ),
    );
    const span = plotSize - 2 * inset;
    /** Whether the colour is within 4 px of the data point (fpr, tpr). */
    const near = (fpr: number, tpr: number, colour: Rgb): boolean => {
      const x = plotLeft + inset + fpr * span;
      const y = plotTop + plotSize - inset - tpr * span;
      for (let dy = -4; dy <= 4; dy++) for (let dx = -4; dx <= 4; dx++) if (img.at(x + dx, y + dy).join() === colour.join()) return true;
      return false;
    };
    const [first, second] = [CURVE_COLOURS[0]!, CURVE_COLOURS[1]!];
    assert.ok(near(0, 1, first), 'the perfect curve reaches the top-left corner');
    assert.ok(near(0, 0.5, first) && near(0.5, 1, first), 'the perfect curve runs up the left edge and along the top');
    assert.ok(!near(0.5, 0.5, first) && !near(0.25, 0.75, first), 'and nowhere inside');
    assert.ok(near(1, 0.5, second) && !near(0, 0.5, second), 'the second curve has the second colour, on the right edge');
  });

  it('draws the chance diagonal dashed', () => {
    const { plotLeft, plotTop, plotSize, inset } = ROC_LAYOUT;
    const img = readPng(rocCurvePng([], ''));
    const span = plotSize - 2 * inset;
    // Walk the diagonal between 0.1 and 0.9 (clear of the gridlines at 0.5 by a margin): both ink and gaps.
    const onDiagonal = Array.from({ length: Math.round(span * 0.8) }, (_, i) => {
      const d = Math.round(span * 0.1) + i;
      return luminance(img.at(plotLeft + inset + d, plotTop + plotSize - inset - d));
    }).filter((_, i, all) => Math.abs(i - all.length / 2) > 4);
    assert.ok(onDiagonal.some((l) => l < 200) && onDiagonal.some((l) => l > 250), 'dashes and gaps along the diagonal');
  });
});
