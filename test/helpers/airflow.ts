/**
 * The Airflow DAG's `model_params`, word for word (its tuple `input_shape` as JSON carries it: a
 * list). A run must take it as it is.
 */
export const DAG_MODEL_PARAMS = Object.freeze({
  num_classes: 2,
  input_shape: [224, 224, 3],
  activation: 'relu',
  kernel_initializer_glob: 'glorot_uniform',
  kernel_initializer_norm: 'normal',
  optimizer: 'adam',
  loss: 'binary_crossentropy',
  metrics: ['accuracy'],
  validation_split: 0.2,
  epochs: 2,
  batch_size: 64,
  learning_rate: 1e-5,
  pooling: 'avg', // needed for resnet50
  verbose: 2,
});
