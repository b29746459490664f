/**
 * Evaluation plots (confusion-matrix heat map, ROC curves) as PNG bytes for MLflow artifacts.
 * Drawn pixel by pixel with a built-in bitmap font so that training needs no canvas or image
 * library: the only dependency is node:zlib for the PNG's deflate stream.
 */
import { deflateSync } from 'node:zlib';

type Rgb = readonly [number, number, number];

/** Line colours of successive ROC curves (Tableau 10 without its grey, which marks chance). */
export const CURVE_COLOURS: readonly Rgb[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [188, 189, 34],
  [23, 190, 207],
];

const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [33, 33, 33];
const GREY: Rgb = [128, 128, 128];
const LIGHT: Rgb = [225, 225, 225];
/** Text scale: the 5x8 font doubled reads comfortably at these image sizes. */
const TEXT = 2;
const PAD = 12;

/** Where confusionMatrixPng puts the grid: cell (r, c) spans gridLeft + c*cell, gridTop + r*cell, cell x cell. */
export interface ConfusionMatrixLayout {
  width: number;
  height: number;
  gridLeft: number;
  gridTop: number;
  cell: number;
}

export function confusionMatrixLayout(classes: string[], title: string): ConfusionMatrixLayout {
  const k = classes.length;
  // At least ~300 px of grid, wider where the class names or a 4-digit count need it at full text
  // size, but no more than ~480 px (past that they shrink or are cut) and never under 36 px a cell.
  const need = Math.max(textWidth('9999', TEXT), ...classes.map((c) => textWidth(c, TEXT))) + 8;
  const cell = Math.max(36, Math.min(150, Math.floor(480 / k), Math.max(Math.floor(300 / k), need)));
  const rowLabels = Math.min(MAX_ROW_LABEL, Math.max(...classes.map((c) => textWidth(c, TEXT))));
  const gridLeft = PAD + lineHeight(TEXT) + 10 + rowLabels + 8;
  const gridTop = PAD + lineHeight(TEXT) + 14;
  // A long title widens the image up to a point, then is cut.
  const width = Math.max(gridLeft + k * cell + 20, Math.min(MAX_WIDTH, textWidth(title, TEXT) + 2 * PAD));
  const height = gridTop + k * cell + 8 + lineHeight(TEXT) + 10 + lineHeight(TEXT) + PAD;
  return { width, height, gridLeft, gridTop, cell };
}
const MAX_ROW_LABEL = 160;
const MAX_WIDTH = 640;

/**
 * A heat map of confusion[actual][predicted]: each cell shaded by its share of the row (so a
 * rare class's errors show as plainly as a common one's), with the count and that share written in.
 */
export function confusionMatrixPng(classes: string[], confusion: number[][], title: string): Uint8Array {
  const k = classes.length;
  if (k === 0 || confusion.length !== k || confusion.some((row) => row.length !== k))
    throw new Error(`confusionMatrixPng: need a ${k}x${k} matrix for ${k} classes`);
  const { width, height, gridLeft, gridTop, cell } = confusionMatrixLayout(classes, title);
  const cv = new Canvas(width, height);
  const grid = k * cell;
  const titleText = truncate(title, width - 2 * PAD, TEXT);
  cv.text(centred(gridLeft, grid, textWidth(titleText, TEXT), width), PAD, titleText, INK);

  for (let r = 0; r < k; r++) {
    const total = confusion[r]!.reduce((s, v) => s + v, 0);
    for (let c = 0; c < k; c++) {
      const count = confusion[r]![c]!;
      const share = total ? count / total : 0;
      const x = gridLeft + c * cell;
      const y = gridTop + r * cell;
      cv.rect(x, y, cell, cell, heat(share));
      const ink = share > 0.5 ? WHITE : INK;
      const lines = [String(count), ...(total ? [`${Math.round(share * 100)}%`] : [])];
      // Both lines at the largest scale at which they fit; the share is dropped before the count shrinks.
      const scale = [TEXT, 1].find(
        (s) => lines.every((l) => textWidth(l, s) <= cell - 6) && lines.length * (lineHeight(s) + 4) <= cell - 6,
      );
      const shown = scale ? lines : lines.slice(0, 1);
      const s = scale ?? 1;
      const blockTop = y + (cell - shown.length * (lineHeight(s) + 4) + 4) / 2;
      shown.forEach((l, i) => cv.text(x + (cell - textWidth(l, s)) / 2, blockTop + i * (lineHeight(s) + 4), l, ink, s));
    }
  }
  for (let i = 1; i < k; i++) {
    cv.rect(gridLeft + i * cell, gridTop, 1, grid, LIGHT);
    cv.rect(gridLeft, gridTop + i * cell, grid, 1, LIGHT);
  }
  cv.frame(gridLeft, gridTop, grid, grid, GREY);

  const rowScale = fittingScale(classes, MAX_ROW_LABEL);
  classes.forEach((name, r) => {
    const label = truncate(name, MAX_ROW_LABEL, rowScale);
    cv.text(gridLeft - 8 - textWidth(label, rowScale), gridTop + r * cell + (cell - lineHeight(rowScale)) / 2, label, INK, rowScale);
  });
  const colScale = fittingScale(classes, cell - 4);
  classes.forEach((name, c) => {
    const label = truncate(name, cell - 4, colScale);
    cv.text(
      gridLeft + c * cell + (cell - textWidth(label, colScale)) / 2,
      gridTop + grid + 8 + lineHeight(TEXT) - lineHeight(colScale),
      label,
      INK,
      colScale,
    );
  });
  cv.text(gridLeft + (grid - textWidth('predicted', TEXT)) / 2, gridTop + grid + 8 + lineHeight(TEXT) + 10, 'predicted', INK);
  cv.text(PAD, gridTop + (grid - textWidth('actual', TEXT)) / 2, 'actual', INK, TEXT, true);
  return cv.png();
}

/** Where rocCurvePng draws: the frame's square; the data's 0..1 lies `inset` px inside it so curves on the border stay visible. */
export const ROC_LAYOUT = { width: 468, height: 462, plotLeft: 88, plotTop: 44, plotSize: 360, inset: 6 } as const;

export interface PlotCurve {
  label: string;
  points: { fpr: number; tpr: number }[];
  auc: number;
}

/** ROC curves on the unit square with the dashed chance diagonal and a legend of the AUCs. */
export function rocCurvePng(curves: PlotCurve[], title: string): Uint8Array {
  const { width, height, plotLeft, plotTop, plotSize, inset } = ROC_LAYOUT;
  const cv = new Canvas(width, height);
  const span = plotSize - 2 * inset;
  const px = (fpr: number): number => Math.round(plotLeft + inset + clamp01(fpr) * span);
  const py = (tpr: number): number => Math.round(plotTop + plotSize - inset - clamp01(tpr) * span);
  const bottom = plotTop + plotSize;

  const titleText = truncate(title, width - 2 * PAD, TEXT);
  cv.text(centred(plotLeft, plotSize, textWidth(titleText, TEXT), width), PAD, titleText, INK);
  cv.line(px(0.5), plotTop + 1, px(0.5), bottom - 2, LIGHT);
  cv.line(plotLeft + 1, py(0.5), plotLeft + plotSize - 2, py(0.5), LIGHT);
  for (const [v, label] of [
    [0, '0'],
    [0.5, '0.5'],
    [1, '1'],
  ] as const) {
    cv.line(px(v), bottom, px(v), bottom + 5, INK);
    cv.text(px(v) - textWidth(label, TEXT) / 2, bottom + 9, label, INK);
    cv.line(plotLeft - 5, py(v), plotLeft, py(v), INK);
    cv.text(plotLeft - 9 - textWidth(label, TEXT), py(v) - lineHeight(TEXT) / 2, label, INK);
  }
  cv.text(
    plotLeft + (plotSize - textWidth('false positive rate', TEXT)) / 2,
    bottom + 9 + lineHeight(TEXT) + 10,
    'false positive rate',
    INK,
  );
  cv.text(PAD, plotTop + (plotSize - textWidth('true positive rate', TEXT)) / 2, 'true positive rate', INK, TEXT, true);
  cv.line(px(0), py(0), px(1), py(1), GREY, 0, 6);
  cv.frame(plotLeft, plotTop, plotSize, plotSize, INK);

  curves.forEach((curve, i) => {
    const points = curve.points.filter((p) => Number.isFinite(p.fpr) && Number.isFinite(p.tpr));
    for (let j = 1; j < points.length; j++)
      cv.line(px(points[j - 1]!.fpr), py(points[j - 1]!.tpr), px(points[j]!.fpr), py(points[j]!.tpr), curveColour(i), 1);
  });

  // Lower right: the corner a useful classifier's curve stays away from.
  if (curves.length) {
    const labels = curves.map((c) => `${c.label} (AUC ${Number.isFinite(c.auc) ? c.auc.toFixed(2) : 'n/a'})`);
    const room = plotSize - 2 * inset - 12 - 34;
    const scale = fittingScale(labels, room);
    const shown = labels.map((l) => truncate(l, room, scale));
    const rowH = lineHeight(scale) + 8;
    const boxW = 34 + Math.max(...shown.map((l) => textWidth(l, scale))) + 8;
    const boxH = shown.length * rowH + 6;
    const x = plotLeft + plotSize - inset - 4 - boxW;
    const y = bottom - inset - 4 - boxH;
    cv.rect(x, y, boxW, boxH, WHITE);
    cv.frame(x, y, boxW, boxH, LIGHT);
    shown.forEach((l, i) => {
      const mid = y + 7 + i * rowH + lineHeight(scale) / 2;
      cv.line(x + 6, mid, x + 28, mid, curveColour(i), 1);
      cv.text(x + 34, mid - lineHeight(scale) / 2, l, INK, scale);
    });
  }
  return cv.png();
}

const curveColour = (i: number): Rgb => CURVE_COLOURS[i % CURVE_COLOURS.length]!;
/** Left edge for text of width w centred over [left, left + span], kept inside the image. */
const centred = (left: number, span: number, w: number, width: number): number =>
  Math.max(PAD, Math.min(left + (span - w) / 2, width - PAD - w));
const clamp01 = (v: number): number => Math.min(1, Math.max(0, v));

/** White through mid blue to dark blue (matplotlib's "Blues" endpoints): light cells read as few. */
function heat(share: number): Rgb {
  const stops: Rgb[] = [
    [247, 251, 255],
    [107, 174, 214],
    [8, 48, 107],
  ];
  const t = clamp01(share) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2);
  const [a, b] = [stops[i]!, stops[i + 1]!];
  const mix = (ch: 0 | 1 | 2): number => Math.round(a[ch] + (b[ch] - a[ch]) * (t - i));
  return [mix(0), mix(1), mix(2)];
}

/**
 * 5x8 glyphs for ASCII 32..126, five column bytes each (bit 0 the top row), in hex: the classic
 * 5x7 table with descenders on g j p q y in the eighth row, which keeps "benign" from reading
 * "benisn". Anything else draws as BOX.
 */
const FONT = [
  '0000000000 00005f0000 0007000700 147f147f14 242a7f2a12 2313086462 3649552250 0005030000', //  !"#$%&'
  '001c224100 0041221c00 082a1c2a08 08083e0808 0050300000 0808080808 0060600000 2010080402', // ()*+,-./
  '3e5149453e 00427f4000 4261514946 2141454b31 1814127f10 2745454539 3c4a494930 0171090503', // 01234567
  '3649494936 064949291e 0036360000 0056360000 0814224100 1414141414 0041221408 0201510906', // 89:;<=>?
  '324979413e 7e1111117e 7f49494936 3e41414122 7f4141221c 7f49494941 7f09090101 3e41415132', // @ABCDEFG
  '7f0808087f 00417f4100 2040413f01 7f08142241 7f40404040 7f0204027f 7f0408107f 3e4141413e', // HIJKLMNO
  '7f09090906 3e4151215e 7f09192946 4649494931 01017f0101 3f4040403f 1f2040201f 7f2018207f', // PQRSTUVW
  '6314081463 0304780403 6151494543 007f414100 0204081020 0041417f00 0402010204 4040404040', // XYZ[\]^_
  '0001020400 2054545478 7f48444438 3844444420 384444487f 3854545418 087e090102 18a4a4a47c', // `abcdefg
  '7f08040478 00447d4000 4080847d00 007f102844 00417f4000 7c04180478 7c08040478 3844444438', // hijklmno
  'fc24242418 18242418fc 7c08040408 4854545420 043f444020 3c4040207c 1c2040201c 3c4030403c', // pqrstuvw
  '4428102844 1ca0a0a07c 4464544c44 0008364100 00007f0000 0041360800 0804081008', // xyz{|}~
].join('');
const GLYPHS = Uint8Array.from(FONT.replace(/ /g, '').match(/../g)!, (h) => parseInt(h, 16));
const BOX = [0x7f, 0x41, 0x41, 0x41, 0x7f];

function glyph(ch: string): ArrayLike<number> {
  const code = ch.codePointAt(0)!;
  return code >= 32 && code <= 126 ? GLYPHS.subarray((code - 32) * 5, (code - 31) * 5) : BOX;
}

/** Each glyph is 5 columns plus 1 of spacing; no spacing after the last. */
const textWidth = (s: string, scale: number): number => (s.length ? [...s].length * 6 * scale - scale : 0);
const lineHeight = (scale: number): number => 8 * scale;
/** The normal scale if every text fits maxWidth at it, else the smallest. */
const fittingScale = (texts: string[], maxWidth: number): number => (texts.every((t) => textWidth(t, TEXT) <= maxWidth) ? TEXT : 1);

function truncate(s: string, maxWidth: number, scale: number): string {
  const chars = [...s];
  if (textWidth(s, scale) <= maxWidth) return s;
  while (chars.length > 1 && textWidth(chars.join('') + '.', scale) > maxWidth) chars.pop();
  return chars.join('') + '.';
}

/** An RGB raster, white to start. Coordinates outside it are clipped, so callers needn't check. */
class Canvas {
  private readonly px: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.px = new Uint8Array(width * height * 3).fill(255);
  }

  rect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const [x0, y0] = [Math.max(0, Math.round(x)), Math.max(0, Math.round(y))];
    const [x1, y1] = [Math.min(this.width, Math.round(x) + w), Math.min(this.height, Math.round(y) + h)];
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.px.set(c, (yy * this.width + xx) * 3);
  }

  frame(x: number, y: number, w: number, h: number, c: Rgb): void {
    this.rect(x, y, w, 1, c);
    this.rect(x, y + h - 1, w, 1, c);
    this.rect(x, y, 1, h, c);
    this.rect(x + w - 1, y, 1, h, c);
  }

  /** Bresenham, each step stamping a (2*radius+1)-px square; with dash, `dash` steps on then `dash` off. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, radius = 0, dash = 0): void {
    [x0, y0, x1, y1] = [x0, y0, x1, y1].map(Math.round) as [number, number, number, number];
    const dx = Math.abs(x1 - x0);
    const dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1;
    const sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    for (let step = 0; ; step++) {
      if (!dash || step % (2 * dash) < dash) this.rect(x0 - radius, y0 - radius, 2 * radius + 1, 2 * radius + 1, c);
      if (x0 === x1 && y0 === y1) return;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /** (x, y) is the top left of the text's box; vertical text reads bottom to top. */
  text(x: number, y: number, s: string, c: Rgb, scale = TEXT, vertical = false): void {
    const w = textWidth(s, scale);
    [...s].forEach((ch, i) => {
      const g = glyph(ch);
      for (let col = 0; col < 5; col++)
        for (let row = 0; row < 8; row++) {
          if (!((g[col]! >> row) & 1)) continue;
          const gx = (i * 6 + col) * scale;
          const gy = row * scale;
          if (vertical) this.rect(x + gy, y + w - gx - scale, scale, scale, c);
          else this.rect(x + gx, y + gy, scale, scale, c);
        }
    });
  }

  /** 8-bit truecolour, no interlace, filter "none" on every row: flat colours deflate well enough. */
  png(): Uint8Array {
    const stride = this.width * 3;
    const raw = Buffer.alloc((stride + 1) * this.height);
    for (let y = 0; y < this.height; y++) raw.set(this.px.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(this.width, 0);
    ihdr.writeUInt32BE(this.height, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(raw, { level: 9 })),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  }
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1;
  return n;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
