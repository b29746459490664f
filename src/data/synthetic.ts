/**
 * A synthetic dermoscopy generator whose images carry the ABCD cues dermatologists use:
 * benign lesions are small, roughly symmetric, with a smooth regular border and one even colour;
 * malignant ones are larger, asymmetric, notched, and several colours (brown, black, blue-grey,
 * red). About one image in seven borrows traits of the other class, so the classes overlap.
 * Every image sits on a varied skin tone with lighting gradients, vignetting, hairs and noise.
 * Deterministic: the same (kind, size, seed) always gives the same pixels.
 */
import { loadTf } from '../ml/tf';
import { seededRandom } from '../common/random';

export const SYNTHETIC_CLASSES = ['benign', 'malignant'] as const;
export type LesionKind = (typeof SYNTHETIC_CLASSES)[number];

type RGB = [number, number, number];

const SKIN_TONES: RGB[] = [
  [241, 194, 167],
  [224, 172, 138],
  [198, 134, 100],
  [161, 102, 69],
  [115, 72, 48],
  [84, 55, 40],
];
const BENIGN_BROWNS: RGB[] = [
  [160, 105, 70],
  [130, 82, 52],
  [105, 66, 44],
];
const MALIGNANT_COLOURS: RGB[] = [
  [125, 78, 50], // brown
  [42, 30, 26], // black
  [98, 108, 138], // blue-grey
  [168, 68, 66], // red
];

/** Smooth value noise in [0, 1): a random g x g grid, bilinearly interpolated with smoothstep. */
function valueNoise(rand: () => number, g: number): (u: number, v: number) => number {
  const grid = Array.from({ length: (g + 1) * (g + 1) }, rand);
  const s = (t: number): number => t * t * (3 - 2 * t);
  return (u, v) => {
    const x = Math.min(u, 0.9999) * g;
    const y = Math.min(v, 0.9999) * g;
    const i = Math.floor(x);
    const j = Math.floor(y);
    const fx = s(x - i);
    const fy = s(y - j);
    const at = (a: number, b: number): number => grid[b * (g + 1) + a]!;
    return (at(i, j) * (1 - fx) + at(i + 1, j) * fx) * (1 - fy) + (at(i, j + 1) * (1 - fx) + at(i + 1, j + 1) * fx) * fy;
  };
}

/** One RGB image, size x size x 3 bytes. */
export function syntheticLesion(kind: LesionKind, size: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  const between = (lo: number, hi: number): number => lo + rand() * (hi - lo);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const malignant = kind === 'malignant';
  // Which ABCD traits look malignant. Atypical lesions swap one or two of them.
  const traits = { asymmetric: malignant, irregular: malignant, multicolour: malignant, large: malignant };
  if (rand() < 0.15) {
    const keys = Object.keys(traits) as (keyof typeof traits)[];
    for (let n = 1 + Math.floor(rand() * 2); n > 0; n--) {
      const k = pick(keys);
      traits[k] = !traits[k];
    }
  }

  const skinBase = pick(SKIN_TONES).map((c) => c + between(-10, 10)) as RGB;
  const lightAngle = between(0, 2 * Math.PI);
  const lightStrength = between(0, 0.3);
  const vignette = between(0, 0.5);

  const radius = size * (traits.large ? between(0.2, 0.34) : between(0.12, 0.24));
  const cx = size * between(0.4, 0.6);
  const cy = size * between(0.4, 0.6);
  const ellipse = traits.asymmetric ? between(0.6, 0.95) : between(0.85, 1);
  const rotation = between(0, Math.PI);
  const harmonics = traits.irregular
    ? [
        { k: 1, amp: between(0.08, 0.2), phase: between(0, 6.3) },
        ...Array.from({ length: 3 }, () => ({ k: 3 + Math.floor(rand() * 6), amp: between(0.04, 0.12), phase: between(0, 6.3) })),
      ]
    : [{ k: 2 + Math.floor(rand() * 2), amp: between(0, 0.05), phase: between(0, 6.3) }];
  const softness = traits.irregular ? between(1.5, 4) : between(0.6, 1.5);
  const palette = traits.multicolour
    ? [...MALIGNANT_COLOURS].sort(() => rand() - 0.5).slice(0, 2 + Math.floor(rand() * 3))
    : [pick(BENIGN_BROWNS)];
  const zones = valueNoise(rand, 4);
  const texture = valueNoise(rand, 12);
  const noise = between(3, 8);
  // Per-pixel sensor noise from a cheap inline LCG, seeded from the image's generator.
  let noiseState = Math.floor(rand() * 2 ** 32);

  const out = new Uint8Array(size * size * 3);
  const cosR = Math.cos(rotation);
  const sinR = Math.sin(rotation);
  const diag2 = (size * size) / 2;
  const reach = (radius * (1 + harmonics.reduce((t, h) => t + h.amp, 0))) / ellipse + softness;
  const reach2 = reach * reach;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x / size;
      const v = y / size;
      const dx = x - cx;
      const dy = y - cy;
      let alpha = 0;
      // Outside the lesion's reach (the largest edge plus the soft border) there is only skin.
      if (dx * dx + dy * dy < reach2) {
        const ex = dx * cosR + dy * sinR;
        const ey = (-dx * sinR + dy * cosR) / ellipse;
        const angle = Math.atan2(ey, ex);
        let edge = radius;
        for (const h of harmonics) edge += radius * h.amp * Math.sin(h.k * angle + h.phase);
        alpha = Math.max(0, Math.min(1, (edge - Math.hypot(ex, ey)) / softness + 0.5));
      }
      const light =
        (1 + lightStrength * ((u - 0.5) * Math.cos(lightAngle) + (v - 0.5) * Math.sin(lightAngle))) *
        (1 - (vignette * ((x - size / 2) ** 2 + (y - size / 2) ** 2)) / diag2);
      const lesion = alpha > 0 ? palette[Math.min(palette.length - 1, Math.floor(zones(u, v) * palette.length))]! : skinBase;
      const shade = alpha > 0 ? 0.85 + 0.3 * texture(u, v) : 1;
      for (let c = 0; c < 3; c++) {
        const value =
          (skinBase[c]! * (1 - alpha) + lesion[c]! * shade * alpha) * light +
          ((noiseState = (Math.imul(noiseState, 1664525) + 1013904223) >>> 0) / 2147483648 - 1) * noise;
        out[(y * size + x) * 3 + c] = value < 0 ? 0 : value > 255 ? 255 : value;
      }
    }
  }
  drawHairs(out, size, rand);
  return out;
}

/** A few dark, curved hairs (quadratic Bezier strokes) over half of the images. */
function drawHairs(out: Uint8Array, size: number, rand: () => number): void {
  if (rand() < 0.5) return;
  const hairs = 1 + Math.floor(rand() * 5);
  for (let h = 0; h < hairs; h++) {
    const p = Array.from({ length: 6 }, () => rand() * size);
    const width = (size / 224) * (0.5 + rand() * 0.8);
    const darkness = 0.4 + rand() * 0.35;
    const steps = size * 3;
    for (let s = 0; s <= steps; s++) {
      const t = s / steps;
      const x = (1 - t) ** 2 * p[0]! + 2 * (1 - t) * t * p[2]! + t * t * p[4]!;
      const y = (1 - t) ** 2 * p[1]! + 2 * (1 - t) * t * p[3]! + t * t * p[5]!;
      const r = Math.ceil(width);
      for (let oy = -r; oy <= r; oy++) {
        for (let ox = -r; ox <= r; ox++) {
          const px = Math.round(x + ox);
          const py = Math.round(y + oy);
          if (px < 0 || py < 0 || px >= size || py >= size || ox * ox + oy * oy > width * width + 0.25) continue;
          const i = (py * size + px) * 3;
          for (let c = 0; c < 3; c++) out[i + c] = out[i + c]! * darkness;
        }
      }
    }
  }
}

export function encodeJpeg(pixels: Uint8Array, size: number, quality = 92): Promise<Uint8Array> {
  const tf = loadTf();
  const t = tf.tensor3d(pixels, [size, size, 3], 'int32');
  return tf.node.encodeJpeg(t, 'rgb', quality).finally(() => t.dispose());
}

export function encodePng(pixels: Uint8Array, size: number): Promise<Uint8Array> {
  const tf = loadTf();
  const t = tf.tensor3d(pixels, [size, size, 3], 'int32');
  return tf.node.encodePng(t).finally(() => t.dispose());
}
