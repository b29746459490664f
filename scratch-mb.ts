import { loadTf } from './src/ml/tf';
const tf = loadTf();
const be = tf.backend() as any;
const { TF_ATTR_TYPE, TF_FLOAT, TF_ATTR_INT, TF_ATTR_STRING, TF_ATTR_BOOL } = be.binding;
const T = { name: 'T', type: TF_ATTR_TYPE, value: TF_FLOAT };
const time = (name: string, f: () => any, n = 5) => { f().dispose?.(); const t = performance.now(); for (let i = 0; i < n; i++) { const r = f(); (Array.isArray(r) ? r : [r]).forEach((x: any) => { x.dataSync(); x.dispose(); }); } console.log(name, ((performance.now() - t) / n).toFixed(1), 'ms'); };
const x = tf.randomNormal([32, 128, 128, 64]);
const y = tf.maxPool(x as any, 2, 2, 'valid');
const dy = tf.randomNormal(y.shape);
const poolAttrs = [T, { name: 'ksize', type: TF_ATTR_INT, value: [1, 2, 2, 1] }, { name: 'strides', type: TF_ATTR_INT, value: [1, 2, 2, 1] }, { name: 'padding', type: TF_ATTR_STRING, value: 'VALID' }, { name: 'data_format', type: TF_ATTR_STRING, value: 'NHWC' }];
time('MaxPool', () => be.executeSingleOutput('MaxPool', poolAttrs, [x]));
time('MaxPoolGrad', () => be.executeSingleOutput('MaxPoolGrad', poolAttrs, [x, y, dy]));
try {
  const wsAttrs = [...poolAttrs, { name: 'workspace_enabled', type: TF_ATTR_BOOL, value: true }, { name: '_kernel', type: TF_ATTR_STRING, value: 'MklNameChangeOp' }];
  const [o, ws] = be.executeMultipleOutputs('_MklNativeMaxPool', wsAttrs, [x], 2);
  console.log('mkl maxpool ok', o.shape, ws.shape, ws.dtype);
  time('_MklNativeMaxPool', () => { const [a, w] = be.executeMultipleOutputs('_MklNativeMaxPool', wsAttrs, [x], 2); w.dispose(); return a; });
  time('_MklNativeMaxPoolGrad', () => be.executeSingleOutput('_MklNativeMaxPoolGrad', wsAttrs, [x, o, dy, ws]));
  const d1 = be.executeSingleOutput('MaxPoolGrad', poolAttrs, [x, y, dy]); const d2 = be.executeSingleOutput('_MklNativeMaxPoolGrad', wsAttrs, [x, o, dy, ws]);
  console.log('max diff', tf.max(tf.abs(tf.sub(d1, d2))).dataSync()[0]);
} catch (e) { console.log('mkl maxpool failed', (e as Error).message.slice(0, 300)); }
try {
  const am = [...poolAttrs.filter(a => a.name !== 'data_format'), { name: 'Targmax', type: TF_ATTR_TYPE, value: be.binding.TF_INT64 }, { name: 'include_batch_in_index', type: TF_ATTR_BOOL, value: false }];
  time('MaxPoolWithArgmax', () => be.executeMultipleOutputs('MaxPoolWithArgmax', am, [x], 2));
  const [, arg] = be.executeMultipleOutputs('MaxPoolWithArgmax', am, [x], 2);
  time('MaxPoolGradWithArgmax', () => be.executeSingleOutput('MaxPoolGradWithArgmax', am, [x, dy, arg]));
} catch (e) { console.log('argmax failed', (e as Error).message.slice(0, 300)); }
const dz = tf.randomNormal([32, 128, 128, 64]);
time('Sum[0,1,2]', () => tf.sum(dz, [0, 1, 2]));
time('BiasAddGrad', () => be.executeSingleOutput('BiasAddGrad', [T, { name: 'data_format', type: TF_ATTR_STRING, value: 'NHWC' }], [dz]));
time('Sum reshape [N,C] axis0', () => tf.sum(dz.reshape([-1, 64]), 0));
const b = tf.randomNormal([64]);
time('Add bias', () => tf.add(dz, b));
time('BiasAdd', () => be.executeSingleOutput('BiasAdd', [T, { name: 'data_format', type: TF_ATTR_STRING, value: 'NHWC' }], [dz, b]));
time('Relu', () => tf.relu(dz));
