/**
 * The native backend's op runner (`executeSingleOutput` / `executeMultipleOutputs`, the binding
 * tfjs-node's own kernels use) and the attribute lists its ops take, every one given: the eager
 * runtime fills in no defaults for TensorFlow's internal ops.
 */
import type { Tensor } from '@tensorflow/tfjs-node';
import type { Tf } from './tf';

export interface Attr {
  name: string;
  type: number;
  value: unknown;
}

interface Binding {
  TF_ATTR_TYPE: number;
  TF_ATTR_INT: number;
  TF_ATTR_FLOAT: number;
  TF_ATTR_STRING: number;
  TF_ATTR_BOOL: number;
  TF_FLOAT: number;
  TF_INT32: number;
  TF_UINT8: number;
}

export interface NativeBackend {
  binding: Binding;
  executeSingleOutput(name: string, attrs: Attr[], inputs: Tensor[]): Tensor;
  executeMultipleOutputs(name: string, attrs: Attr[], inputs: Tensor[], count: number): Tensor[];
}

export function native(tf: Tf): NativeBackend {
  return tf.backend() as unknown as NativeBackend;
}

/** oneDNN is on in this process (read once by libtensorflow when it loaded). */
export function onednnEnabled(): boolean {
  return process.env.TF_ENABLE_ONEDNN_OPTS === '1';
}

/** Element types as TensorFlow names them; uint8 has no tfjs dtype (tfjs labels such tensors int32). */
export type DType = 'float32' | 'int32' | 'uint8';

/** Attribute builders for one backend. */
export interface AttrKit {
  int(name: string, value: number | number[]): Attr;
  float(name: string, value: number): Attr;
  str(name: string, value: string | string[]): Attr;
  bool(name: string, value: boolean): Attr;
  /** float32, as `T` (or another type attribute's name). */
  float32(name?: string): Attr;
  /** A type attribute with one of the element types used here. */
  dtype(name: string, type: DType): Attr;
  nhwc: Attr;
  /** oneDNN's kernels under their registered label, as TensorFlow's graph rewrite would pick them. */
  mkl: Attr;
}

export function attrKit(tf: Tf): AttrKit {
  const b = native(tf).binding;
  const str = (name: string, value: string | string[]): Attr => ({ name, type: b.TF_ATTR_STRING, value });
  return {
    int: (name, value) => ({ name, type: b.TF_ATTR_INT, value }),
    float: (name, value) => ({ name, type: b.TF_ATTR_FLOAT, value }),
    str,
    bool: (name, value) => ({ name, type: b.TF_ATTR_BOOL, value }),
    float32: (name = 'T') => ({ name, type: b.TF_ATTR_TYPE, value: b.TF_FLOAT }),
    dtype: (name, type) => ({ name, type: b.TF_ATTR_TYPE, value: { float32: b.TF_FLOAT, int32: b.TF_INT32, uint8: b.TF_UINT8 }[type] }),
    nhwc: str('data_format', 'NHWC'),
    mkl: str('_kernel', 'MklNameChangeOp'),
  };
}

/** TensorFlow's Reshape of `t` (elements of `type`): a new handle on the same buffer. */
export function reshape(tf: Tf, t: Tensor, shape: number[], type: DType = 'float32'): Tensor {
  const k = attrKit(tf);
  const s = tf.tensor1d(shape, 'int32');
  try {
    return native(tf).executeSingleOutput('Reshape', [k.dtype('T', type), k.dtype('Tshape', 'int32')], [t, s]);
  } finally {
    s.dispose();
  }
}

/** Returns `next`, freeing `previous` (an intermediate no one else holds). */
export function consume(previous: Tensor, next: Tensor): Tensor {
  previous.dispose();
  return next;
}
