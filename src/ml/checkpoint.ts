/**
 * Training checkpoints: every model weight (trainable or not, e.g. batch-norm moving statistics) and
 * the optimizer's state (iteration count and slots, e.g. Adam's moments), in one object:
 *
 *   "CKPT1\n" | uint32 LE header length | header JSON | float32 LE data, tensor after tensor
 *
 * One object per checkpoint, written with a single PUT, so a reader sees all of it or nothing.
 */
import type { LayersModel } from '@tensorflow/tfjs-node';
import type { TrainingOptimizer } from './native-adam';
import { loadTf } from './tf';
import { FAILURE } from '../common/failures';

const MAGIC = 'CKPT1\n';

export interface CheckpointInfo {
  /** Phase of the run this checkpoint belongs to (e.g. `final`, `fold2`). */
  phase: string;
  /** Epochs completed in this phase. */
  epoch: number;
  [key: string]: unknown;
}

interface Header {
  info: CheckpointInfo;
  model: { shape: number[]; dtype: string }[];
  optimizer: { name: string; shape: number[]; dtype: string }[];
}

export class CheckpointMismatchError extends Error {
  override readonly name = FAILURE.checkpointMismatch;
}

export async function encodeCheckpoint(model: LayersModel, optimizer: TrainingOptimizer, info: CheckpointInfo): Promise<Buffer> {
  const weights = model.getWeights();
  const slots = await optimizer.getWeights();
  const tensors = [...weights, ...slots.map((s) => s.tensor)];
  const header: Header = {
    info,
    model: weights.map((w) => ({ shape: w.shape, dtype: w.dtype })),
    optimizer: slots.map((s) => ({ name: s.name, shape: s.tensor.shape, dtype: s.tensor.dtype })),
  };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const data = await Promise.all(tensors.map((t) => t.data()));
  // Fresh tensors (the iteration count, slots read out of TensorFlow variables) are ours to free; tfjs' own slot variables are not.
  for (const s of slots) if (!(s.tensor instanceof loadTf().Variable)) s.tensor.dispose();
  const parts: Buffer[] = [Buffer.from(MAGIC), Buffer.alloc(4), headerBytes];
  parts[1]!.writeUInt32LE(headerBytes.length);
  for (const values of data) {
    const f32 = values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
    parts.push(Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength));
  }
  return Buffer.concat(parts);
}

function readHeader(bytes: Uint8Array): { buf: Buffer; header: Header; dataOffset: number } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.subarray(0, MAGIC.length).toString() !== MAGIC) throw new CheckpointMismatchError('not a training checkpoint');
  const headerLength = buf.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  return { buf, header: JSON.parse(buf.subarray(start, start + headerLength).toString()) as Header, dataOffset: start + headerLength };
}

/** The info a checkpoint was written with. */
export function checkpointInfo(bytes: Uint8Array): CheckpointInfo {
  return readHeader(bytes).header.info;
}

/** Restores weights and optimizer state into a freshly built model of the same architecture. */
export async function restoreCheckpoint(bytes: Uint8Array, model: LayersModel, optimizer: TrainingOptimizer): Promise<CheckpointInfo> {
  const tf = loadTf();
  const { buf, header, dataOffset } = readHeader(bytes);
  let offset = dataOffset;
  const current = model.getWeights();
  const describe = (shapes: { shape: number[] }[]) => shapes.map((s) => `[${s.shape.join(',')}]`).join(' ');
  if (describe(header.model) !== describe(current)) {
    throw new CheckpointMismatchError(
      `checkpoint weights ${describe(header.model)} do not fit the model's ${describe(current)}: was it made by another architecture or image size?`,
    );
  }
  const read = (shape: number[], dtype: string) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    Buffer.from(values.buffer).set(buf.subarray(offset, offset + 4 * n));
    offset += 4 * n;
    return dtype === 'int32' ? tf.tensor(Int32Array.from(values), shape, 'int32') : tf.tensor(values, shape, 'float32');
  };
  const weights = header.model.map((w) => read(w.shape, w.dtype));
  model.setWeights(weights);
  tf.dispose(weights);
  const slots = header.optimizer.map((s) => ({ name: s.name, tensor: read(s.shape, s.dtype) }));
  await optimizer.setWeights(slots);
  // setWeights copies the slots into variables of its own, except the iteration count it reads.
  tf.dispose(slots.map((s) => s.tensor));
  return header.info;
}
