#!/usr/bin/env bash
# Prints a DOCKER_CONFIG directory whose cli-plugins/ hold Docker Compose v2
# and Buildx, taken from Debian unstable's docker-compose and docker-buildx
# packages (bookworm ships Compose v1.29 only, and no Buildx). With
# DOCKER_CONFIG set to it, `docker compose` is v2 and `docker build` (also as
# run by docker-compose v1) uses the engine's BuildKit, so both Compose
# versions share one layer cache. Nothing is installed system-wide. Cached.
#
# usage: tests/docker/cli-plugins.sh   (as root)
set -Eeuo pipefail
ME=cli-plugins
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

CONFIG_DIR=$WEBCLUSTER_CACHE/docker-config
PACKAGES=(docker-compose docker-buildx)

fetch_plugins() {
  local rootfs download unpacked
  rootfs=$(bash "$HERE/../../scripts/rootfs.sh")
  download=$(mktemp -d "$rootfs/tmp/cli-plugins.XXXXXX")
  unpacked=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the paths are local
  trap "rm -rf '$download' '$unpacked'" EXIT
  chmod 1777 "$download" # apt downloads as its own user
  log "fetching ${PACKAGES[*]} from Debian unstable"
  chroot "$rootfs" sh -c "cd '${download#"$rootfs"}' && apt-get download -qq ${PACKAGES[*]}" >/dev/null ||
    die "apt-get download ${PACKAGES[*]} failed in $rootfs"
  for deb in "$download"/*.deb; do
    dpkg-deb -x "$deb" "$unpacked"
  done
  mkdir -p "$CONFIG_DIR/cli-plugins"
  install -m 0755 "$unpacked"/usr/libexec/docker/cli-plugins/* "$CONFIG_DIR/cli-plugins/"
}

main() {
  require_root "the packages are fetched inside the chroot"
  if [[ ! -x $CONFIG_DIR/cli-plugins/docker-compose ]] || [[ ! -x $CONFIG_DIR/cli-plugins/docker-buildx ]]; then
    fetch_plugins
  fi
  DOCKER_CONFIG=$CONFIG_DIR docker compose version >/dev/null ||
    die "docker compose v2 from $CONFIG_DIR does not run"
  DOCKER_CONFIG=$CONFIG_DIR docker buildx version >/dev/null ||
    die "docker buildx from $CONFIG_DIR does not run"
  printf '%s\n' "$CONFIG_DIR"
}

main "$@"
