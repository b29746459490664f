#!/usr/bin/env bash
# One-command, idempotent set-up: npm dependencies, the native TensorFlow backend for
# @tensorflow/tfjs-node, the project-local Python environment (Temporal CLI, MLflow, moto, SeaweedFS),
# Temporal's time-skipping test server (Maven) and the TypeScript build. Quick when everything is
# already in place.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUIET=0
BROWSER=0
for arg in "$@"; do
  case $arg in
    --quiet) QUIET=1 ;;
    --browser) BROWSER=1 ;; # also the browser the Web UI test drives (npm test)
    *) echo "[setup] unknown option $arg (expected --quiet, --browser)" >&2; exit 2 ;;
  esac
done

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
# tfjs-node's binding is always built against the libtensorflow of the pinned tensorflow-cpu
# wheel (its installer would download libtensorflow 2.9.1 from a host that may be unreachable):
# the training ops library below is compiled against that wheel's headers and must load into the
# same TensorFlow, and the training benchmark compares against Keras on that same libtensorflow.
# The binding is patched first (scripts/patches/tfjs-node-list-attrs.patch) so that it can pass
# list(string) and list(type) attributes: oneDNN's fused convolution + bias + ReLU takes them.
WHEEL_DIR=$CACHE_DIR/tensorflow-cpu-$TF_WHEEL_VERSION
BINDING_PATCH=scripts/patches/tfjs-node-list-attrs.patch
WHEEL_STAMP=$TFJS_DIR/deps/.tensorflow-cpu-$TF_WHEEL_VERSION-$(hash_of "$BINDING_PATCH")

tf_ok() {
  # Node.js 23 removed util.isNullOrUndefined, which tfjs-node calls; src/ml/tf.ts puts it back.
  node -e '
    require("util").isNullOrUndefined ??= (v) => v === null || v === undefined;
    const tf = require("@tensorflow/tfjs-node");
    if (tf.getBackend() !== "tensorflow") { console.error("backend is " + tf.getBackend()); process.exit(1); }
    tf.tidy(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).dataSync());
  ' >/dev/null 2>&1
}

unpack_wheel() {
  [[ -f $WHEEL_DIR/.complete-with-headers ]] && return
  say "fetching libtensorflow and its headers from the tensorflow-cpu==$TF_WHEEL_VERSION wheel (pip cache)"
  local dl
  dl=$(mktemp -d)
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    "tensorflow-cpu==$TF_WHEEL_VERSION" -d "$dl" >&2 || die "pip could not download tensorflow-cpu==$TF_WHEEL_VERSION"
  rm -rf "$WHEEL_DIR" && mkdir -p "$WHEEL_DIR"
  (cd "$WHEEL_DIR" && unzip -q "$dl"/tensorflow_cpu-*.whl \
    'tensorflow/libtensorflow_cc.so.2' 'tensorflow/libtensorflow_framework.so.2' 'tensorflow/include/*') ||
    die "could not unpack the tensorflow-cpu wheel"
  rm -rf "$dl"
  touch "$WHEEL_DIR/.complete-with-headers"
}

place_libtensorflow_from_wheel() {
  local deps=$TFJS_DIR/deps
  local inc=$WHEEL_DIR/tensorflow/include
  rm -rf "$deps" && mkdir -p "$deps/lib" "$deps/include/tensorflow/core" "$deps/include/xla"
  cp "$WHEEL_DIR/tensorflow/libtensorflow_cc.so.2" "$WHEEL_DIR/tensorflow/libtensorflow_framework.so.2" "$deps/lib/"
  # The binding needs the C API's headers and what they include.
  cp -r "$inc/tensorflow/c" "$deps/include/tensorflow/"
  cp -r "$inc/tensorflow/core/platform" "$deps/include/tensorflow/core/"
  cp -r "$inc/tsl" "$deps/include/"
  cp -r "$inc/xla/tsl" "$deps/include/xla/"
  (cd "$deps/lib" &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so.2.9.1 &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so.2 &&
    ln -sf libtensorflow_cc.so.2 libtensorflow.so &&
    ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so)
}

if [[ ! -f $WHEEL_STAMP ]] || ! tf_ok; then
  say "building the native TensorFlow backend for @tensorflow/tfjs-node (libtensorflow $TF_WHEEL_VERSION)"
  unpack_wheel
  place_libtensorflow_from_wheel
  if ! grep -q TFE_OpSetAttrStringList "$TFJS_DIR/binding/tfjs_backend.cc"; then
    patch --quiet -p1 -d "$TFJS_DIR" <"$BINDING_PATCH" >&2 || die "could not apply $BINDING_PATCH to $TFJS_DIR"
  fi
  # An addon already there would be kept as it is: build it again, from the patched source.
  rm -rf "$TFJS_DIR"/lib/napi-v* "$TFJS_DIR"/build-tmp-napi-v*
  npm rebuild @tensorflow/tfjs-node --loglevel=error >&2 || die "npm rebuild @tensorflow/tfjs-node failed"
  tf_ok || die "@tensorflow/tfjs-node does not run on the native 'tensorflow' backend; refusing to fall back to the pure-JS backend"
  touch "$WHEEL_STAMP"
  say "native TensorFlow backend ready"
fi

# --- training ops library ----------------------------------------------------------------
# Fused kernels (src/native/cnn_ops.cc) registered into that TensorFlow; src/ml/tf.ts loads them.
OPS_LIB=dist/native/cnn_ops.node
# The wheel's own compile flags (tf.sysconfig.get_compile_flags()); no floating-point contraction
# (a * b + c stays two roundings), so the kernels round as TensorFlow's do.
OPS_FLAGS="-shared -fPIC -O3 -ffp-contract=off -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -DEIGEN_MAX_ALIGN_BYTES=64"
ops_stamp=dist/native/.cnn_ops-$( (cat src/native/cnn_ops.cc && echo "$TF_WHEEL_VERSION $OPS_FLAGS") | sha256sum | cut -c1-16)
if [[ ! -f $ops_stamp || ! -f $OPS_LIB ]]; then
  unpack_wheel
  say "compiling the training ops library ($OPS_LIB)"
  mkdir -p dist/native
  command -v "${CXX:-g++}" >/dev/null || die "a C++ compiler (g++) is needed to build $OPS_LIB; install build-essential"
  # shellcheck disable=SC2086 # OPS_FLAGS is a list of flags
  "${CXX:-g++}" $OPS_FLAGS \
    -Wno-deprecated-declarations -isystem "$WHEEL_DIR/tensorflow/include" src/native/cnn_ops.cc -o "$OPS_LIB.tmp" \
    -L"$TFJS_DIR/deps/lib" -l:libtensorflow_framework.so.2 -Wl,-rpath,"\$ORIGIN/../../$TFJS_DIR/deps/lib" ||
    die "could not compile src/native/cnn_ops.cc"
  mv "$OPS_LIB.tmp" "$OPS_LIB"
  rm -f dist/native/.cnn_ops-* && touch "$ops_stamp"
fi

# --- Python environment: Temporal CLI, MLflow, moto, SeaweedFS -----------------------------
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
  for bin in temporal mlflow moto_server weed; do
    [[ -x .venv/bin/$bin ]] || die ".venv/bin/$bin is missing; delete .venv and run npm run setup again"
  done
fi

# --- Temporal's time-skipping test server ---------------------------------------------------
# The workflow tests that simulate weeks run it (test/helpers/temporal.ts): the Java build from
# Maven Central, its jars in Maven's own cache (~/.m2), outside the clone; quick once there.
if [[ ${SKIP_PYTHON_STACK:-0} != 1 ]]; then
  if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      say "installing Maven and a Java runtime for Temporal's time-skipping test server (apt-get)"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven default-jre-headless; } >&2 ||
        die "apt-get could not install maven"
    else
      die "the workflow tests need Java 17+ and Maven (mvn) for Temporal's time-skipping test server: install them"
    fi
  fi
  scripts/temporal-test-server/run --install || die "could not install Temporal's time-skipping test server"
fi

# --- Kubernetes manifests ------------------------------------------------------------------
# The tests render the kustomize overlays with `kubectl kustomize` (kubectl >= 1.14 carries
# kustomize) or a standalone kustomize; without either, kustomize is built from the Go module proxy.
if [[ ${SKIP_PYTHON_STACK:-0} != 1 ]] && ! command -v kubectl >/dev/null && ! command -v kustomize >/dev/null &&
  [[ ! -x .venv/bin/kustomize ]]; then
  command -v go >/dev/null || die "rendering k8s/ needs kubectl or kustomize on the PATH (or Go, to build kustomize)"
  say "building kustomize into .venv/bin (no kubectl or kustomize on the PATH)"
  GOBIN="$ROOT/.venv/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0 >&2 || die "go install of kustomize failed"
fi

# --- A browser for the Web UI test ----------------------------------------------------------
# playwright-core (npm) drives Debian's chromium and never downloads a browser of its own.
if [[ $BROWSER == 1 && -z ${CHROMIUM_PATH:-} ]] && ! command -v chromium >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the Web UI test (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >&2 ||
      die "apt-get could not install chromium"
  else
    die "the Web UI test needs Chromium: install it (apt-get install chromium) or set CHROMIUM_PATH"
  fi
fi

# --- TypeScript build ----------------------------------------------------------------------
log "building TypeScript"
npx tsc -p tsconfig.build.json || die "TypeScript build failed"
log "ready ($ROOT)"
