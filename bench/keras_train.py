"""Reference side of `npm run bench:train`: Keras (TensorFlow backend, the tensorflow-cpu wheel whose
libtensorflow tfjs-node also runs on) trains the same architecture on the same bench data folder
with the same hyper-parameters, and prints one JSON line: images/s over the timed epochs (all but
the first, which traces and warms up), the final validation accuracy and the peak RSS.

usage: keras_train.py <data_dir> <Basic|ResNet50> <epochs> <batch_size> <seed> [--folds K]
"""
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402


def basic_cnn(size, classes, seed):
    """The original pipeline's CNN, as models.ts builds it (its own weights for every layer)."""
    glorot = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=glorot(1)),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=glorot(2)),
            layers.Dropout(0.25, seed=seed + 3),
            layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=glorot(4)),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25, seed=seed + 5),
            layers.Flatten(),
            layers.Dense(128, activation="relu", kernel_initializer=keras.initializers.RandomNormal(0, 0.05, seed=seed + 6)),
            layers.Dense(classes, activation="softmax", kernel_initializer=glorot(7)),
        ],
        name="Basic",
    )


def resnet50(size, classes, seed):
    """ResNet-50 exactly as models.ts builds it: bias-free convolutions, batch norm, projection shortcuts."""
    n = [0]

    def init():
        n[0] += 1
        return keras.initializers.HeNormal(seed=seed + n[0] - 1)

    conv = lambda x, f, k, s=1: layers.Conv2D(f, k, strides=s, padding="same", use_bias=False, kernel_initializer=init())(x)  # noqa: E731
    bn = lambda x: layers.BatchNormalization(axis=3, epsilon=1.001e-5)(x)  # noqa: E731
    relu = lambda x: layers.Activation("relu")(x)  # noqa: E731

    def block(x, filters, strides, project):
        shortcut = bn(conv(x, 4 * filters, 1, strides)) if project else x
        y = relu(bn(conv(x, filters, 1, strides)))
        y = relu(bn(conv(y, filters, 3)))
        y = bn(conv(y, 4 * filters, 1))
        return relu(layers.Add()([y, shortcut]))

    inp = keras.Input((size, size, 3))
    x = relu(bn(conv(inp, 64, 7, 2)))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for filters, blocks, strides in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            x = block(x, filters, strides if b == 0 else 1, b == 0)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(classes, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + n[0]))(x)
    return keras.Model(inp, out, name="ResNet50")


def load(data_dir):
    meta = json.load(open(os.path.join(data_dir, "meta.json")))
    s = meta["size"]
    images = np.fromfile(os.path.join(data_dir, "images.u8"), dtype=np.uint8).reshape(-1, s, s, 3)
    labels = np.fromfile(os.path.join(data_dir, "labels.u8"), dtype=np.uint8)
    x = images.astype(np.float32) / 255.0
    y = keras.utils.to_categorical(labels, 2)
    t = meta["train"]
    return s, (x[:t], y[:t]), (x[t:], y[t:])


class EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def train(model_class, size, x, y, epochs, batch, seed):
    build = resnet50 if model_class == "ResNet50" else basic_cnn
    model = build(size, 2, seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    times = EpochTimes()
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[times])
    return model, start, times.ends


def main():
    data_dir, model_class, epochs, batch, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    folds = int(sys.argv[sys.argv.index("--folds") + 1]) if "--folds" in sys.argv else 0
    keras.utils.set_random_seed(seed)
    size, (x, y), (vx, vy) = load(data_dir)
    result = {"side": "keras", "keras": keras.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}
    if folds:
        # Stratified folds of the training split, as CrossVal does: each fold trains a fresh Basic.
        rng = np.random.default_rng(seed)
        labels = y.argmax(1)
        fold_of = np.zeros(len(labels), dtype=int)
        for c in np.unique(labels):
            idx = rng.permutation(np.where(labels == c)[0])
            fold_of[idx] = np.arange(len(idx)) % folds
        scores = []
        for f in range(folds):
            m, _, _ = train("Basic", size, x[fold_of != f], y[fold_of != f], epochs, batch, seed)
            scores.append(float(m.evaluate(x[fold_of == f], y[fold_of == f], verbose=0)[1]))
        result["cvAccuracyMean"] = float(np.mean(scores))
    model, start, ends = train(model_class, size, x, y, epochs, batch, seed)
    timed = (ends[-1] - ends[0]) if epochs > 1 else (ends[0] - start)
    result["imagesPerSecond"] = (max(epochs - 1, 1) * len(x)) / timed
    result["firstEpochSeconds"] = ends[0] - start
    loss, acc = model.evaluate(vx, vy, batch_size=64, verbose=0)
    result["valAccuracy"] = float(acc)
    result["valLoss"] = float(loss)
    result["peakRssMb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
