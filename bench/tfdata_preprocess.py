"""The input pipeline a Keras user writes, as the anchor for our preprocessing: tf.data over the same
files (list, read, decode_image, resize, num_parallel_calls=AUTOTUNE, prefetch), the training
split's files shuffled with a seed and 20 % held out for validation, and the resized uint8 arrays
written as shards of 256 images (labels as uint16, then NHWC pixels), the kind of output our
preprocessing writes.

Resizing is tf.image.resize (bilinear), which image_dataset_from_directory applies to every image
whatever its size, then rounding to uint8.

usage: tfdata_preprocess.py DATA_DIR OUT_DIR SIZE
prints one JSON line: {"images": N, "seconds": S, "maxRssMb": M}
"""
import json
import os
import random
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHARD = 256
AUTOTUNE = tf.data.AUTOTUNE


def files(folder):
    classes = sorted(os.listdir(folder))
    out = []
    for label, name in enumerate(classes):
        d = os.path.join(folder, name)
        out.extend((os.path.join(d, f), label) for f in sorted(os.listdir(d)))
    return out


def write_split(items, size, out_dir, split):
    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, [size, size])
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), tf.cast(label, tf.uint16)

    paths = [p for p, _ in items]
    labels = [l for _, l in items]
    ds = (
        tf.data.Dataset.from_tensor_slices((paths, labels))
        .map(load, num_parallel_calls=AUTOTUNE)
        .batch(SHARD)
        .prefetch(AUTOTUNE)
    )
    count = 0
    for index, (x, y) in enumerate(ds):
        with open(os.path.join(out_dir, f"{split}-{index:05d}.bin"), "wb") as f:
            f.write(y.numpy().astype("<u2").tobytes())
            f.write(np.ascontiguousarray(x.numpy()).tobytes())
        count += int(x.shape[0])
    return count


def main():
    data_dir, out_dir, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out_dir, exist_ok=True)
    tf.constant(0)  # TensorFlow's start-up is not timed, as our worker pool's is not
    start = time.perf_counter()
    train = files(os.path.join(data_dir, "train"))
    random.Random(42).shuffle(train)
    held = int(len(train) * 0.2)
    count = write_split(train[held:], size, out_dir, "train")
    count += write_split(train[:held], size, out_dir, "validation")
    count += write_split(files(os.path.join(data_dir, "test")), size, out_dir, "test")
    seconds = time.perf_counter() - start
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": count, "seconds": seconds, "maxRssMb": max_rss_mb}))


if __name__ == "__main__":
    main()
