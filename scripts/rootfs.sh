#!/usr/bin/env bash
# Builds (once) and prints the path of a Debian unstable root filesystem holding
# nginx >= 1.30 and MySQL 9.7, which bookworm does not ship.
# usage: scripts/rootfs.sh
set -Eeuo pipefail
ME=rootfs
# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

ROOTFS=${WEBCLUSTER_ROOTFS:-$WEBCLUSTER_CACHE/rootfs-sid}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
MARKER=.webcluster-rootfs
# Bump when the package list changes, so cached trees are rebuilt.
ROOTFS_VERSION=1

rootfs_ready() {
  [[ -f $ROOTFS/$MARKER ]] && [[ $(head -n1 "$ROOTFS/$MARKER") == "version=$ROOTFS_VERSION" ]]
}

rootfs_build() {
  local tmp
  require_root "debootstrap and chroot need root"
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  mkdir -p "$(dirname "$ROOTFS")"
  tmp=$(mktemp -d "$ROOTFS.tmp.XXXXXX")
  log "building the sid root filesystem in $tmp (about a minute)"
  debootstrap --variant=minbase --include=nginx sid "$tmp" "$MIRROR" >"$tmp.log" 2>&1 ||
    die "debootstrap failed; see $tmp.log"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  # Packages' maintainer scripts must not start services inside the tree.
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
  chmod +x "$tmp/usr/sbin/policy-rc.d"
  log "installing mysql-server-core and mysql-client"
  {
    chroot "$tmp" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y --no-install-recommends \
      mysql-server-core mysql-client &&
      chroot "$tmp" apt-get clean
  } >>"$tmp.log" 2>&1 || die "installing MySQL into the root filesystem failed; see $tmp.log"
  {
    echo "version=$ROOTFS_VERSION"
    chroot "$tmp" nginx -v 2>&1
    chroot "$tmp" mysqld --version 2>&1
  } >"$tmp/$MARKER"
  rm -rf "$ROOTFS"
  mv "$tmp" "$ROOTFS"
  rm -f "$tmp.log"
  log "root filesystem ready: $(tail -n +2 "$ROOTFS/$MARKER" | tr '\n' ' ')"
}

main() {
  rootfs_ready || rootfs_build
  printf '%s\n' "$ROOTFS"
}

main "$@"
