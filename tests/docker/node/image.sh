#!/usr/bin/env bash
# Builds (once) the image of a Docker-in-Docker swarm node for
# tests/swarm-nodes.sh: Debian bookworm with its docker.io (20.10) and what
# dockerd needs, from debootstrap and `docker import`, with entrypoint.sh
# beside this file as its entrypoint. Cached: the image carries a key made
# of NODE_IMAGE_VERSION, the package list and the entrypoint, and is rebuilt
# only when that key changes.
#
# usage: tests/docker/node/image.sh   (as root; prints the image's name)
set -Eeuo pipefail
ME=node-image
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"

IMAGE=webcluster-test/swarm-node:local
# Bump to rebuild the cached image for a reason the key cannot see.
NODE_IMAGE_VERSION=1
PACKAGES=(docker.io iptables fuse-overlayfs iproute2 ca-certificates procps dnsmasq-base)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LABEL=webcluster.node-image
TREE=

image_key() {
  local sum
  sum=$({
    printf '%s\n' "$NODE_IMAGE_VERSION" "${PACKAGES[@]}"
    cat "$HERE/entrypoint.sh"
  } | sha256sum)
  printf '%s\n' "${sum:0:16}"
}

image_current() {
  [[ $(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null) == "$1" ]]
}

# usage: build KEY   (debootstrap into a fresh tree, trim it, import it)
build() {
  local packages
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; } \
      >/dev/null || die "could not install debootstrap: apt-get install debootstrap"
  fi
  mkdir -p "$WEBCLUSTER_CACHE"
  TREE=$(mktemp -d "$WEBCLUSTER_CACHE/swarm-node.XXXXXX")
  packages=$(
    IFS=,
    echo "${PACKAGES[*]}"
  )
  log "building $IMAGE: debootstrap bookworm with $packages (about a minute, once)"
  debootstrap --variant=minbase --include="$packages" bookworm "$TREE" "$MIRROR" >"$TREE.log" 2>&1 ||
    die_with_log "debootstrap failed" "$TREE.log"
  rm -rf "$TREE"/var/lib/apt/lists/* "$TREE"/var/cache/apt/*.bin "$TREE"/var/cache/apt/archives/*.deb \
    "$TREE/usr/share/doc" "$TREE/usr/share/man" "$TREE/usr/share/locale"
  install -m 0755 "$HERE/entrypoint.sh" "$TREE/usr/local/bin/node-entrypoint.sh"
  log "importing $IMAGE"
  tar -C "$TREE" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/node-entrypoint.sh"]' \
    --change "LABEL $LABEL=$1" - "$IMAGE" >/dev/null || die "docker import of $IMAGE failed"
  rm -rf "$TREE" "$TREE.log"
  TREE=
}

# A failed or interrupted build leaves no half-made tree behind.
cleanup() {
  [[ -z $TREE ]] || rm -rf "$TREE" "$TREE.log"
}

main() {
  local key
  require_root "debootstrap needs root"
  trap cleanup EXIT
  key=$(image_key)
  image_current "$key" || build "$key"
  image_current "$key" || die "$IMAGE does not carry the key $key after its build"
  printf '%s\n' "$IMAGE"
}

main "$@"
