"""The original Airflow pipeline's preprocessing loop, reimplemented as it was written: PIL decode of every
image, numpy stacking, scaling to float64 in [0, 1], and one pickle of the whole dataset.

usage: original_preprocess.py DATA_DIR OUT_PICKLE SIZE
prints one JSON line: {"images": N, "seconds": S, "maxRssMb": M}
"""
import json
import os
import pickle
import resource
import sys
import time

import numpy as np
from PIL import Image


def load_folder(folder, size):
    images = []
    for name in sorted(os.listdir(folder)):
        img = Image.open(os.path.join(folder, name)).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size))
        images.append(np.asarray(img))
    return images


def main():
    data_dir, out_path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.perf_counter()
    splits = {}
    count = 0
    for split in ("train", "test"):
        classes = sorted(os.listdir(os.path.join(data_dir, split)))
        xs, ys = [], []
        for label, name in enumerate(classes):
            images = load_folder(os.path.join(data_dir, split, name), size)
            xs.extend(images)
            ys.extend([label] * len(images))
        x = np.array(xs, dtype="uint8")
        y = np.array(ys)
        splits[split] = (x / 255.0, y)  # float64, as the original did
        count += len(xs)
        del xs
    with open(out_path, "wb") as f:
        pickle.dump(splits, f, protocol=4)
    seconds = time.perf_counter() - start
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": count, "seconds": seconds, "maxRssMb": max_rss_mb}))


if __name__ == "__main__":
    main()
