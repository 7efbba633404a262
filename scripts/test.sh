#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian machine,
# then runs lints, unit tests, SQL tests (MySQL 9.7 and MariaDB) and the
# end-to-end tests through nginx on the local stack.
# usage: scripts/test.sh            (as root: it installs packages and uses chroot)
set -Eeuo pipefail
ME=tests
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

APT_PACKAGES=(debootstrap shellcheck dnsmasq-base mariadb-server mariadb-client curl ca-certificates)

install_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

run_lints() {
  log "lint: cargo fmt, clippy, shellcheck"
  cargo fmt --check
  cargo clippy --release --all-targets --quiet -- -D warnings
  shellcheck -x scripts/*.sh tests/*.sh .ci/run
}

# usage: purge_e2e_stacks   (each test purges its own stack; this catches
# those of a test binary that was killed, so no server keeps its port)
purge_e2e_stacks() {
  local dir rootfs
  rootfs=$(bash scripts/rootfs.sh)
  for dir in "$rootfs"/var/lib/webcluster/e2e-*; do
    [[ -d $dir ]] || continue
    STACK_NAME=${dir##*/} bash scripts/local-stack.sh purge >/dev/null 2>&1 ||
      warn "could not purge the stack in $dir"
  done
}

main() {
  require_root "it installs packages and runs MySQL and nginx in a chroot"
  install_packages
  bash scripts/rootfs.sh >/dev/null
  trap purge_e2e_stacks EXIT
  run_lints
  log "unit tests"
  cargo test --release --lib --bins
  log "SQL tests on MySQL 9.7 and MariaDB"
  bash tests/sql.sh
  log "end-to-end tests through nginx on the local stack"
  # Stacks share addresses and ports: one test at a time.
  cargo test --release --test e2e -- --test-threads=1
}

main "$@"
