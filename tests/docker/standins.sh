#!/usr/bin/env bash
# Builds local stand-ins for the official images that docker-compose.yml and the
# Dockerfile name, for a Docker engine that cannot pull: nginx 1.30, MySQL 9.7,
# a Rust toolchain and a distroless-like runtime, all from Debian unstable
# packages (debootstrap, then `docker import`). Cached: a second run reuses the
# images and takes seconds.
#
# usage: tests/docker/standins.sh   (as root; prints NAME=IMAGE lines for
#        NGINX_IMAGE, MYSQL_IMAGE, RUST_IMAGE and RUNTIME_IMAGE)
set -Eeuo pipefail
ME=standins
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

REPO=webcluster-standin
# Packages added to scripts/rootfs.sh's tree (nginx, MySQL server and client).
EXTRA_PACKAGES=(curl ca-certificates rustc cargo)

# usage: base_tag ROOTFS   (changes whenever the tree's versions or the extra
# package list change, so a stale base is never reused)
base_tag() {
  local sum
  sum=$({
    cat "$1/.webcluster-rootfs"
    printf '%s\n' "${EXTRA_PACKAGES[@]}"
  } | sha256sum)
  printf '%s/base:%s\n' "$REPO" "${sum:0:12}"
}

# usage: build_base ROOTFS TAG   (copies the tree, installs the extras, imports it)
build_base() {
  local tree
  tree=$(mktemp -d "$WEBCLUSTER_CACHE/standin-base.XXXXXX")
  BASE_TREE=$tree
  log "building $2 from $1 plus ${EXTRA_PACKAGES[*]} (a few minutes, once)"
  # Not the local stacks' state: tests may be writing it while this copies.
  tar -C "$1" --exclude=./var/lib/webcluster --exclude='./tmp/*' -cf - . | tar -C "$tree" -xf -
  chroot "$tree" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    apt-get install -y -qq --no-install-recommends "${EXTRA_PACKAGES[@]}" >"$tree.log" 2>&1 ||
    die_with_log "installing ${EXTRA_PACKAGES[*]} into the base tree failed" "$tree.log"
  chroot "$tree" apt-get clean
  rm -rf "$tree/var/lib/apt/lists"/* "$tree/usr/share/doc" "$tree/usr/share/man"
  rm -f "$tree.log"
  log "importing $2"
  tar -C "$tree" -c . | docker import --change 'CMD ["bash"]' - "$2" >/dev/null
  rm -rf "$tree"
}

BASE_TREE=
# A failed build leaves no half-made tree behind.
cleanup() {
  [[ -z $BASE_TREE ]] || rm -rf "$BASE_TREE"
}

# usage: build_role NAME BASE   (tests/docker/NAME/Dockerfile FROM BASE; the
# layer cache makes reruns instant; prints NAME_IMAGE=TAG)
build_role() {
  local tag=$REPO/$1:local build_log
  build_log=$(mktemp)
  docker build --build-arg "BASE=$2" -t "$tag" "$HERE/$1" >"$build_log" 2>&1 ||
    die_with_log "building the $1 stand-in failed" "$build_log"
  rm -f "$build_log"
  printf '%s_IMAGE=%s\n' "${1^^}" "$tag"
}

main() {
  local rootfs base
  require_root "debootstrap and chroot need root"
  trap cleanup EXIT
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
  rootfs=$(bash "$HERE/../../scripts/rootfs.sh")
  base=$(base_tag "$rootfs")
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    build_base "$rootfs" "$base"
  fi
  build_role nginx "$base"
  build_role mysql "$base"
  build_role rust "$base"
  build_role runtime "$base"
}

main "$@"
