/**
 * A small, deterministic synthetic lesion dataset: benign lesions are small, round and one
 * even brown; malignant ones are larger, irregular and multi-coloured. Simple on purpose.
 */
import { loadTf } from '../ml/tf';
import { seededRandom } from './split';

export const SYNTHETIC_CLASSES = ['benign', 'malignant'] as const;

/** One RGB image, size x size x 3 bytes. */
export function syntheticLesion(kind: (typeof SYNTHETIC_CLASSES)[number], size: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  const skin = [200 + rand() * 40, 150 + rand() * 40, 120 + rand() * 40];
  const malignant = kind === 'malignant';
  const radius = size * (malignant ? 0.22 + rand() * 0.12 : 0.12 + rand() * 0.1);
  const cx = size / 2 + (rand() - 0.5) * size * 0.15;
  const cy = size / 2 + (rand() - 0.5) * size * 0.15;
  const harmonics = malignant
    ? [2, 3, 5].map((k) => ({ k, amp: 0.1 + rand() * 0.2, phase: rand() * 6.28 }))
    : [{ k: 2, amp: rand() * 0.05, phase: 0 }];
  const colours = malignant
    ? [
        [90, 50, 30],
        [30, 20, 20],
        [90, 100, 130],
        [160, 60, 60],
      ]
    : [[110 + rand() * 30, 70 + rand() * 20, 40]];
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const angle = Math.atan2(dy, dx);
      const edge = radius * (1 + harmonics.reduce((s, h) => s + h.amp * Math.sin(h.k * angle + h.phase), 0));
      const inside = Math.hypot(dx, dy) < edge;
      const base = inside
        ? colours[Math.floor(((angle + Math.PI) / (2 * Math.PI)) * colours.length * (malignant ? 1.5 : 1)) % colours.length]!
        : skin;
      for (let c = 0; c < 3; c++) out[(y * size + x) * 3 + c] = Math.max(0, Math.min(255, base[c]! + (rand() - 0.5) * 30));
    }
  }
  return out;
}

export function encodeJpeg(pixels: Uint8Array, size: number): Promise<Uint8Array> {
  const tf = loadTf();
  const t = tf.tensor3d(pixels, [size, size, 3], 'int32');
  return tf.node.encodeJpeg(t, 'rgb', 95).finally(() => t.dispose());
}
