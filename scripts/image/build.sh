# shellcheck shell=bash
# Builds the Dockerfile with buildah (chroot isolation, as root) on top of the locally made base.
# Sourced by scripts/image.sh, which provides lib.sh and base.sh.

# Arguments: extra options for buildah bud (such as --no-cache).
build_image() {
  require_root
  local started tmp seconds
  started=$(date +%s.%N)
  ensure_tools buildah=buildah mmdebstrap=mmdebstrap
  build_base 0
  tmp=$(mktemp -d)
  at_exit "rm -rf '$tmp'"

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
  # --pull=never: FROM node:24-bookworm-slim must be the base made above, never a download.
  # --layers: an unchanged step is taken from the previous build. --force-rm: no working container
  # is left behind when a step fails.
  buildah bud --isolation chroot --network host --pull=never --layers --force-rm \
    "${volumes[@]}" "$@" -f Dockerfile -t "$IMAGE" . 2>&1 | tee "$tmp/bud.log" >&2 || die "buildah bud failed"
  seconds=$(elapsed "$started")
  log "built $IMAGE in $seconds s (with the base image, if it had to be made)"
  # For the smoke test's report of timings.
  mkdir -p .stack && echo "$(image_id "$IMAGE") $seconds" >"$BUILD_RECORD"
  # Every step's image, made or taken from the cache: this build's layer cache.
  prune_stale_builds "$(grep -oE '^--> (Using cache )?[0-9a-f]{11,}' "$tmp/bud.log" | awk '{ print substr($NF, 1, 11) }')"
  buildah images --filter "reference=$IMAGE" --filter "reference=$BASE_IMAGE"
  log "image size: $(buildah images --format '{{.Size}}' "$IMAGE" | head -n1) (base $(buildah images --format '{{.Size}}' "$BASE_IMAGE" | head -n1))"
}

# Untagged images that earlier builds left behind (the image this build replaced, the build
# stage's layer cache of older sources, images on an older base) hold more than 1 GB each. Removed
# here: untagged images on a base made by base.sh (the current or an older one; recognised by its
# first layer) that this build did not make or reuse: its own untagged images are its layer cache
# and stay. Removing a leaf can make its parent one: repeat until nothing goes.
# Argument: the ids (11 hex digits) of this build's images, one a line.
prune_stale_builds() {
  local keep=$1 id removed ours=" "
  for id in $(buildah images --all --noheading --format '{{.ID}}'); do
    [[ -n $(buildah inspect --type image --format '{{index .ImageAnnotations "io.cnn-skin-cancer.base-recipe"}}' "$id") ]] &&
      ours+="$(first_layer "$id") "
  done
  while :; do
    removed=0
    for id in $(buildah images --noheading --filter dangling=true --format '{{.ID}}'); do
      [[ $ours == *" $(first_layer "$id") "* ]] || continue
      grep -qx "${id:0:11}" <<<"$keep" && continue
      buildah rmi "$id" >/dev/null 2>&1 && removed=1
    done
    ((removed)) || break
  done
}

first_layer() { buildah inspect --type image --format '{{index .OCIv1.RootFS.DiffIDs 0}}' "$1"; }
