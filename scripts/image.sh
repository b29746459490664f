#!/usr/bin/env bash
# `npm run image -- build|smoke|base`: the container image of the workers and the model server,
# built and run without a Docker engine (buildah, chroot isolation; see docs/image.md).
#
#   build  makes the base image offline if it is missing or stale (scripts/image/base.sh), then
#          builds the Dockerfile into localhost/cnn-skin-cancer-worker:<package version>; more
#          arguments go to buildah bud (e.g. --no-cache)
#   smoke  runs that image against a private local stack: three workers, one pipeline run, then
#          the `serve` entry point answering a prediction (scripts/image/smoke.sh)
#   base   makes the base image again, even when it is current
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/image/lib.sh
source scripts/image/lib.sh
# shellcheck source=scripts/image/base.sh
source scripts/image/base.sh
# shellcheck source=scripts/image/build.sh
source scripts/image/build.sh
# shellcheck source=scripts/image/smoke.sh
source scripts/image/smoke.sh

trap run_at_exit EXIT
# Interrupted (Ctrl-C, a CI timeout): exit, so that the EXIT trap cleans up.
trap 'die "interrupted"' INT TERM

usage() {
  echo "usage: npm run image -- build [buildah bud options]|smoke|base" >&2
  exit 2
}

case "${1:-}" in
  build) build_image "${@:2}" ;;
  smoke) smoke ;;
  base) build_base 1 ;;
  *) usage ;;
esac
