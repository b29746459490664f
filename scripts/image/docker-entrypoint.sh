#!/bin/sh
# Entry point of the locally made base image, as in the official node images: a first argument
# that is an option or not a command runs under node; anything else (`serve`, `bash`) runs as is.
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
