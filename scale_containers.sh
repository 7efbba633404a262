#!/usr/bin/env bash
# Changes the number of app containers, waits until all of them are healthy,
# then lists each with its internal IP. nginx is not restarted or reloaded: it
# finds replicas through Docker's DNS within about a second, and a container
# that is removed drains its requests first (SIGTERM, stop_grace_period).
#
# usage: ./scale_containers.sh N        N: a whole number from 1 to 20
# env:   SCALE_TIMEOUT   seconds to wait for health (default 180)
#        COMPOSE         the compose command, e.g. "docker-compose" (default:
#                        `docker compose`, else `docker-compose`)
set -Eeuo pipefail

MAX_REPLICAS=20
ME=scale
# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/lib.sh"

usage_error() {
  log "error: $*"
  printf 'usage: %s N   (N: a whole number from 1 to %d)\n' "${0##*/}" "$MAX_REPLICAS" >&2
  exit 2
}

# usage: parse_count ARGS...   (prints N, or exits 2 before anything changes)
parse_count() {
  (($# == 1)) || usage_error "expected exactly one argument, got $#"
  [[ $1 =~ ^[0-9]+$ ]] || usage_error "N must be a whole number, got: '$1'"
  # Strip leading zeros so bash does not read the number as octal.
  local n=$((10#$1))
  ((n >= 1 && n <= MAX_REPLICAS)) || usage_error "N must be from 1 to $MAX_REPLICAS, got: $1"
  printf '%d\n' "$n"
}

COMPOSE_CMD=()
pick_compose() {
  if [[ -n ${COMPOSE:-} ]]; then
    read -ra COMPOSE_CMD <<<"$COMPOSE"
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE_CMD=(docker compose)
  elif command -v docker-compose >/dev/null; then
    COMPOSE_CMD=(docker-compose)
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
}

compose() {
  "${COMPOSE_CMD[@]}" "$@"
}

# usage: health CONTAINER   (healthy | unhealthy | starting | none | gone)
health() {
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null ||
    echo gone
}

require_stack_up() {
  local db
  db=$(compose ps -q db) || die "'${COMPOSE_CMD[*]} ps' failed (see above)"
  if [[ -z $db ]] || [[ $(health "$db") != healthy ]]; then
    die "the stack is not up (no healthy db service): run 'docker compose up -d --build' first"
  fi
}

# usage: setting NAME DEFAULT   (from the environment, else .env, else DEFAULT;
# the same order compose uses)
setting() {
  local value=${!1:-}
  if [[ -z $value ]] && [[ -f .env ]]; then
    value=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" .env | tail -n 1)
    value=${value%\"}
    value=${value#\"}
  fi
  printf '%s\n' "${value:-$2}"
}

# The database refuses connections beyond max_connections: N replicas' pools
# and committers must fit. The defaults are the app's (README, Configuration).
warn_connections() {
  local n=$1 pool committers each max db
  pool=$(setting DB_POOL_SIZE 4)
  committers=$(setting HIT_COMMITTERS 1)
  db=$(compose ps -q db)
  # Ask the server itself; fall back to the configured value.
  max=$(docker exec "$db" sh -c 'MYSQL_PWD=$MYSQL_ROOT_PASSWORD mysql -uroot -h127.0.0.1 -N -B -e "SELECT @@max_connections"' 2>/dev/null) ||
    max=$(setting DB_MAX_CONNECTIONS 200)
  [[ $pool =~ ^[0-9]+$ ]] && [[ $committers =~ ^[0-9]+$ ]] && [[ $max =~ ^[0-9]+$ ]] || return 0
  each=$((pool + committers))
  if ((n * each > max)); then
    warn "$n replicas x $each connections (DB_POOL_SIZE $pool + HIT_COMMITTERS $committers) = $((n * each)), more than MySQL's max_connections ($max); raise DB_MAX_CONNECTIONS or lower DB_POOL_SIZE"
  fi
}

# usage: app_containers   (ids of the app service's running containers)
app_containers() {
  compose ps -q app | while read -r id; do
    [[ -n $id ]] && [[ $(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null) == true ]] && echo "$id"
  done
}

# usage: wait_healthy N   (polls until exactly N app containers run and all are healthy)
wait_healthy() {
  local n=$1 deadline=$((SECONDS + ${SCALE_TIMEOUT:-180})) ids healthy id last=
  while :; do
    mapfile -t ids < <(app_containers)
    healthy=0
    for id in "${ids[@]}"; do
      [[ $(health "$id") == healthy ]] && healthy=$((healthy + 1))
    done
    if ((${#ids[@]} == n && healthy == n)); then
      return 0
    fi
    if [[ "${#ids[@]}/$healthy" != "$last" ]]; then
      log "waiting: ${#ids[@]} app container(s) running, $healthy of $n healthy"
      last="${#ids[@]}/$healthy"
    fi
    ((SECONDS < deadline)) || die "timed out after ${SCALE_TIMEOUT:-180} s: $healthy of $n app containers healthy (see: ${COMPOSE_CMD[*]} logs app)"
    sleep 1
  done
}

list_containers() {
  local id
  printf '%-32s %-16s %s\n' CONTAINER "INTERNAL IP" HEALTH
  for id in $(app_containers); do
    docker inspect -f '{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" |
      while read -r name ip _; do
        printf '%-32s %-16s %s\n' "${name#/}" "$ip" "$(health "$id")"
      done
  done | sort -V -k1,1
}

main() {
  local n
  n=$(parse_count "$@")
  cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
  command -v docker >/dev/null || die "docker is not installed"
  pick_compose
  require_stack_up
  warn_connections "$n"
  log "scaling app to $n container(s)"
  # --no-deps: the schema step and the database stay as they are.
  compose up -d --no-recreate --no-deps --scale "app=$n" app
  wait_healthy "$n"
  log "app has $n healthy container(s)"
  list_containers
}

main "$@"
