"""The original pipeline's Basic CNN in Keras, saved as an MLflow model for `mlflow models serve`.

usage: serve_keras_model.py OUT_DIR IMAGE_SIZE
"""
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import mlflow.tensorflow  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
import numpy as np  # noqa: E402

out, size = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(1)
model = keras.Sequential(
    [
        keras.Input((size, size, 3)),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.25),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ],
    name="Basic",
)
example = np.zeros((1, size, size, 3), dtype=np.float32)
shutil.rmtree(out, ignore_errors=True)
mlflow.tensorflow.save_model(model, out, signature=infer_signature(example, model.predict(example, verbose=0)))
print(f"saved {model.count_params()} parameters to {out}")
