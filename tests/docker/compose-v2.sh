#!/usr/bin/env bash
# Prints a DOCKER_CONFIG directory whose cli-plugins/ holds Docker Compose v2,
# taken from Debian unstable's docker-compose package (bookworm ships only
# v1.29). With DOCKER_CONFIG set to it, `docker compose` is v2; nothing is
# installed system-wide. Cached.
#
# usage: tests/docker/compose-v2.sh   (as root)
set -Eeuo pipefail
ME=compose-v2
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

CONFIG_DIR=$WEBCLUSTER_CACHE/compose-v2

fetch_plugin() {
  local rootfs download unpacked
  rootfs=$(bash "$HERE/../../scripts/rootfs.sh")
  download=$(mktemp -d "$rootfs/tmp/compose-v2.XXXXXX")
  unpacked=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the paths are local
  trap "rm -rf '$download' '$unpacked'" EXIT
  chmod 755 "$download" # apt downloads as its own user
  log "fetching docker-compose (v2) from Debian unstable"
  chroot "$rootfs" sh -c "cd '${download#"$rootfs"}' && apt-get download -qq docker-compose" >/dev/null ||
    die "apt-get download docker-compose failed in $rootfs"
  dpkg-deb -x "$download"/docker-compose_*.deb "$unpacked"
  mkdir -p "$CONFIG_DIR/cli-plugins"
  install -m 0755 "$unpacked/usr/libexec/docker/cli-plugins/docker-compose" "$CONFIG_DIR/cli-plugins/docker-compose"
}

main() {
  require_root "the package is fetched inside the chroot"
  [[ -x $CONFIG_DIR/cli-plugins/docker-compose ]] || fetch_plugin
  DOCKER_CONFIG=$CONFIG_DIR docker compose version >/dev/null ||
    die "docker compose v2 from $CONFIG_DIR does not run"
  printf '%s\n' "$CONFIG_DIR"
}

main "$@"
