#!/usr/bin/env bash
# The Python environment for the benchmarks' reference side (Keras, `mlflow models serve`), kept
# apart from .venv (the services) because TensorFlow is large. Idempotent: stamps on the
# requirements' hash. Prints nothing on success unless it had to install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-bench
stamp=$VENV/.requirements.sha256
want=$(sha256sum requirements-bench.txt | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then exit 0; fi
echo "bench-env: installing requirements-bench.txt into $VENV (TensorFlow, MLflow; first time only)" >&2
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt >&2 \
  || { echo "bench-env: pip could not install requirements-bench.txt" >&2; exit 1; }
echo "$want" >"$stamp"
