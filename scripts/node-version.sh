# shellcheck shell=bash
# The Node.js the project runs on: 24 LTS ('Krypton'), in the image (scripts/image/lib.sh) and in CI
# (scripts/node-runtime.sh), with the npm that release bundles (its CHANGELOG: npm 11.19.1).
# Sourced, never run.
# shellcheck disable=SC2034 # used by the scripts that source this file
NODE_VERSION=24.22.3
NPM_VERSION=11.19.1
