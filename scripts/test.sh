#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian machine,
# then runs lints (with actionlint), the workflow rules, unit tests, SQL tests
# (MySQL 9.7 and MariaDB), the database group's mechanics, the end-to-end
# tests through nginx on the local stack, HTTPS at nginx (tests/tls.sh),
# then some end-to-end tests with the servers in containers, as CI runs
# them, the Docker Compose and Swarm end-to-end tests on this machine's
# engine, and the Swarm stack on three Docker-in-Docker nodes.
# usage: scripts/test.sh            (as root: it installs packages and uses chroot)
set -Eeuo pipefail
ME=tests
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

APT_PACKAGES=(debootstrap shellcheck dnsmasq-base mariadb-server mariadb-client curl ca-certificates openssl chromium)

install_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  apt_install "${missing[@]}"
}

APT_UPDATED=
apt_install() {
  log "installing: $*"
  [[ -n $APT_UPDATED ]] || apt-get update -qq
  APT_UPDATED=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Docker engine and a compose tool, for tests/compose.sh; started here
# when the machine has none running.
ensure_docker() {
  if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || apt_install docker.io
    log "starting dockerd"
    (dockerd >/var/log/webcluster-dockerd.log 2>&1 &)
    wait_until 60 "the Docker engine" docker info ||
      die_with_log "the Docker engine did not start" /var/log/webcluster-dockerd.log
  fi
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    apt_install docker-compose
  fi
}

# usage: purge_e2e_stacks   (each test purges its own stack; this catches
# those of a test binary that was killed, so no server keeps its port)
purge_e2e_stacks() {
  local dir rootfs servers
  rootfs=$(bash scripts/rootfs.sh)
  for dir in "$rootfs"/var/lib/webcluster/e2e-* "$WEBCLUSTER_CACHE"/stacks/e2e-*; do
    [[ -d $dir ]] || continue
    # local-stack.sh finds a stack of image servers only when told of them.
    servers=()
    [[ $dir == "$rootfs"/* ]] || servers=("${IMAGE_SERVERS[@]}")
    env "${servers[@]}" STACK_NAME="${dir##*/}" bash scripts/local-stack.sh purge >/dev/null 2>&1 ||
      warn "could not purge the stack in $dir"
  done
}

# The e2e stacks' servers from the stand-in images, as CI's e2e job runs them
# from the official ones.
IMAGE_SERVERS=(MYSQL_IMAGE=webcluster-standin/mysql:local NGINX_IMAGE=webcluster-standin/nginx:local)
# What depends on the servers being containers: stopping and stalling MySQL
# by its pid, and the image's accounts (the rest runs once, on the root filesystem).
IMAGE_E2E_TESTS=(outages::stopping_mysql outages::a_stalled_mysql privileges)

# Building the Docker stand-ins is mostly disk work (debootstrap tree, docker
# import): it runs in the background while the CPU-bound tests run.
PREPARE_PID=
PREPARE_LOG=
prepare_docker_tests() {
  PREPARE_LOG=$(mktemp)
  # At the lowest priority, so the timing-sensitive tests keep the CPU.
  {
    nice -n 19 bash tests/docker/standins.sh && nice -n 19 bash tests/docker/cli-plugins.sh
  } >"$PREPARE_LOG" 2>&1 &
  PREPARE_PID=$!
}

wait_docker_tests_ready() {
  wait "$PREPARE_PID" || die_with_log "preparing the Docker tests failed" "$PREPARE_LOG"
  PREPARE_PID=
}

on_exit() {
  [[ -z $PREPARE_PID ]] || kill "$PREPARE_PID" 2>/dev/null || true
  purge_e2e_stacks
}

main() {
  require_root "it installs packages and runs MySQL and nginx in a chroot"
  # The hostile-input tests hold 2,000 connections open at once.
  raise_open_file_limit 65536 8192 || die "the open-file limit must allow 8192 (ulimit -Hn: $(ulimit -Hn))"
  install_packages
  ensure_docker
  bash scripts/rootfs.sh >/dev/null
  trap on_exit EXIT
  prepare_docker_tests
  bash scripts/lint.sh install-tools
  bash scripts/lint.sh
  log "workflow rules (tests/workflows.py)"
  python3 tests/workflows.py
  log "Kubernetes manifests, validated offline (tests/kubernetes.py)"
  python3 tests/kubernetes.py
  log "unit tests"
  cargo test --release --lib --bins
  log "tiny_http's own tests: the hardening patches (vendor/README.md)"
  cargo test --release --locked --manifest-path vendor/tiny_http/Cargo.toml \
    --target-dir target/vendor --lib --tests
  log "SQL tests on MySQL 9.7 and MariaDB"
  bash tests/sql.sh
  log "the database group on real mysqld: forming, failover, a frozen primary, quorum loss (tests/db-group.sh)"
  bash tests/db-group.sh
  log "end-to-end tests through nginx on the local stack"
  # Stacks share addresses and ports: one test at a time.
  cargo test --release --test e2e -- --test-threads=1
  log "HTTPS at nginx on the local stack (tests/tls.sh)"
  bash tests/tls.sh
  wait_docker_tests_ready
  log "end-to-end tests with the servers in containers, as CI runs them: ${IMAGE_E2E_TESTS[*]}"
  env "${IMAGE_SERVERS[@]}" APP_BIN="$PWD/target/release/webcluster" \
    cargo test --release --test e2e -- --test-threads=1 "${IMAGE_E2E_TESTS[@]}"
  # Compose v2 and Buildx from Debian unstable, for this run only: both
  # Compose versions then build through BuildKit and share its layer cache.
  DOCKER_CONFIG=$(bash tests/docker/cli-plugins.sh)
  export DOCKER_CONFIG
  log "Docker Compose end-to-end test with docker compose v2"
  COMPOSE_TOOL=v2 bash tests/compose.sh
  log "the same, up to the first requests, with docker-compose v1.29"
  COMPOSE_TOOL=v1 COMPOSE_STEPS=smoke bash tests/compose.sh
  log "the same with the database as a group: its primary's container killed under load"
  COMPOSE_TOOL=v2 COMPOSE_STEPS=group bash tests/compose.sh
  log "Docker Swarm end-to-end test (deploy/swarm/stack.yml)"
  bash tests/swarm.sh
  log "the Swarm stack with the database group on 3 Docker-in-Docker nodes, whole nodes killed under load (tests/swarm-nodes.sh)"
  bash tests/swarm-nodes.sh
}

main "$@"
