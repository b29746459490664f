#!/usr/bin/env bash
# One-command, idempotent set-up: npm dependencies, the native TensorFlow backend for
# @tensorflow/tfjs-node, the project-local Python environment (Temporal CLI, MLflow, moto)
# and the TypeScript build. Quick when everything is already in place.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUIET=0
[[ "${1:-}" == "--quiet" ]] && QUIET=1

log() { [[ $QUIET == 1 ]] || echo "[setup] $*" >&2; }
say() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

# Pinned here and nowhere else.
TF_WHEEL_VERSION=2.21.0
PYTHON=${PYTHON:-python3}
CACHE_DIR=${CNN_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cnn-skin-cancer}
TFJS_DIR=node_modules/@tensorflow/tfjs-node

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- npm dependencies --------------------------------------------------------------------
# tfjs-node's install script downloads libtensorflow from a host that may be unreachable, so
# scripts are skipped here and the native part is handled below.
npm_stamp=node_modules/.setup-npm-$(hash_of package-lock.json)
if [[ ! -f $npm_stamp ]]; then
  say "installing npm dependencies (npm ci --ignore-scripts)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  touch "$npm_stamp"
fi

# --- native TensorFlow backend -----------------------------------------------------------
tf_ok() {
  node -e '
    const tf = require("@tensorflow/tfjs-node");
    if (tf.getBackend() !== "tensorflow") { console.error("backend is " + tf.getBackend()); process.exit(1); }
    tf.tidy(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).dataSync());
  ' >/dev/null 2>&1
}

place_libtensorflow_from_wheel() {
  local extracted=$CACHE_DIR/tensorflow-cpu-$TF_WHEEL_VERSION
  if [[ ! -f $extracted/.complete ]]; then
    say "fetching libtensorflow from the tensorflow-cpu==$TF_WHEEL_VERSION wheel (pip cache)"
    local dl
    dl=$(mktemp -d)
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      "tensorflow-cpu==$TF_WHEEL_VERSION" -d "$dl" >&2 || die "pip could not download tensorflow-cpu==$TF_WHEEL_VERSION"
    rm -rf "$extracted" && mkdir -p "$extracted"
    (cd "$extracted" && unzip -q "$dl"/tensorflow_cpu-*.whl \
      'tensorflow/libtensorflow_cc.so.2' 'tensorflow/libtensorflow_framework.so.2' \
      'tensorflow/include/tensorflow/c/*' 'tensorflow/include/tensorflow/core/platform/*' \
      'tensorflow/include/tsl/*' 'tensorflow/include/xla/tsl/*') || die "could not unpack the tensorflow-cpu wheel"
    rm -rf "$dl"
    touch "$extracted/.complete"
  fi
  local deps=$TFJS_DIR/deps
  rm -rf "$deps" && mkdir -p "$deps/lib" "$deps/include"
  cp "$extracted/tensorflow/libtensorflow_cc.so.2" "$extracted/tensorflow/libtensorflow_framework.so.2" "$deps/lib/"
  cp -r "$extracted/tensorflow/include/." "$deps/include/"
  (cd "$deps/lib" &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so.2.9.1 &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so.2 &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so &&
    ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so)
}

if ! tf_ok; then
  say "building the native TensorFlow backend for @tensorflow/tfjs-node"
  # The normal install first (downloads libtensorflow); where its host is unreachable,
  # build the binding against the tensorflow-cpu wheel's C API instead.
  if ! (cd "$TFJS_DIR" && timeout 120 node scripts/install.js >/dev/null 2>&1) || ! tf_ok; then
    log "normal tfjs-node install unavailable; using the tensorflow-cpu wheel's libtensorflow"
    place_libtensorflow_from_wheel
    npm rebuild @tensorflow/tfjs-node --loglevel=error >&2 || die "npm rebuild @tensorflow/tfjs-node failed"
  fi
  tf_ok || die "@tensorflow/tfjs-node does not run on the native 'tensorflow' backend; refusing to fall back to the pure-JS backend"
  say "native TensorFlow backend ready"
fi

# --- Python environment: Temporal CLI, MLflow, moto ---------------------------------------
# (Skipped in container images, which need only the workers: SKIP_PYTHON_STACK=1.)
py_stamp=.venv/.setup-$(hash_of requirements-stack.txt)
if [[ ${SKIP_PYTHON_STACK:-0} == 1 ]]; then
  log "skipping the Python stack (SKIP_PYTHON_STACK=1)"
elif [[ ! -f $py_stamp ]]; then
  say "creating the project Python environment (.venv) from requirements-stack.txt"
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-stack.txt >&2 \
    || die "pip could not install requirements-stack.txt"
  rm -f .venv/.setup-* && touch "$py_stamp"
fi
if [[ ${SKIP_PYTHON_STACK:-0} != 1 ]]; then
  for bin in temporal mlflow moto_server; do
    [[ -x .venv/bin/$bin ]] || die ".venv/bin/$bin is missing; delete .venv and run npm run setup again"
  done
fi

# --- TypeScript build ----------------------------------------------------------------------
log "building TypeScript"
npx tsc -p tsconfig.build.json || die "TypeScript build failed"
log "ready ($ROOT)"
