# shellcheck shell=bash
# Builds the Dockerfile with buildah (chroot isolation, as root) on top of the locally made base.
# Sourced by scripts/image.sh, which provides lib.sh and base.sh.

build_image() {
  require_root
  ensure_tools buildah=buildah mmdebstrap=mmdebstrap
  build_base 0
  local started tmp
  started=$(date +%s.%N)
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: tmp is local to this function
  trap "rm -rf '$tmp'" RETURN

  # Big downloads (the tensorflow-cpu wheel in pip's cache and its unpacked copy that setup.sh
  # keeps in ~/.cache/cnn-skin-cancer, npm packages) stay in the host's own caches, outside the
  # clone and outside the image: a rebuild, or a build after `npm run setup`, downloads nothing.
  local cache=${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}}
  local npm_cache=${IMAGE_NPM_CACHE:-$(npm config get cache)}
  mkdir -p "$cache" "$npm_cache"
  local volumes=(--volume "$cache:/root/.cache" --volume "$npm_cache:/root/.npm")

  # Registries may sit behind a TLS-inspecting proxy whose CA only the host trusts (as here). The
  # host's CA bundle goes into the build's RUN steps, with an npm and a pip config that use it;
  # none of it ends up in an image (the stage that sees it is thrown away) or in the Dockerfile.
  local bundle=${IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  if [[ -f $bundle ]]; then
    cp "$bundle" "$tmp/ca.crt"
    printf 'cafile=/usr/local/share/build-host-ca.crt\n' >"$tmp/npmrc"
    printf '[global]\ncert = /usr/local/share/build-host-ca.crt\n' >"$tmp/pip.conf"
    volumes+=(--volume "$tmp/ca.crt:/usr/local/share/build-host-ca.crt:ro"
      --volume "$tmp/npmrc:/usr/local/etc/npmrc:ro" --volume "$tmp/pip.conf:/etc/pip.conf:ro")
  fi

  log "building $IMAGE from Dockerfile (buildah bud, chroot isolation; caches: $cache, $npm_cache)"
  # --pull=never: FROM node:20-bookworm-slim must be the base made above, never a download.
  # --layers: an unchanged step is taken from the previous build.
  buildah bud --isolation chroot --network host --pull=never --layers \
    "${volumes[@]}" -f Dockerfile -t "$IMAGE" . >&2 || die "buildah bud failed"
  BUILD_SECONDS=$(elapsed "$started")
  log "built $IMAGE in $BUILD_SECONDS s"
  buildah images --filter "reference=$IMAGE" --filter "reference=$BASE_IMAGE"
  log "image size: $(buildah images --format '{{.Size}}' "$IMAGE" | head -n1) (base $(buildah images --format '{{.Size}}' "$BASE_IMAGE" | head -n1))"
}
