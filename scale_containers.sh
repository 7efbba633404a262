#!/usr/bin/env bash
# Changes the number of app containers, waits until all of them are healthy,
# then lists each with its internal IP. nginx is not restarted or reloaded: it
# finds replicas through Docker's DNS within about a second, and a container
# that is removed drains its requests first (SIGTERM, stop_grace_period).
#
# usage: ./scale_containers.sh N           N: a whole number from 1 to 20 (Compose)
#        ./scale_containers.sh --swarm N   the same on a Docker Swarm stack
#                                          (deploy/swarm/stack.yml)
# env:   SCALE_TIMEOUT   seconds to wait for health (default 180)
#        COMPOSE         the compose command, e.g. "docker-compose" (default:
#                        `docker compose`, else `docker-compose`)
#        STACK           the Swarm stack's name (default webcluster)
set -Eeuo pipefail

MAX_REPLICAS=20
ME=scale
# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/lib.sh"

usage_error() {
  log "error: $*"
  printf 'usage: %s [--swarm] N   (N: a whole number from 1 to %d)\n' "${0##*/}" "$MAX_REPLICAS" >&2
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

compose() {
  "${COMPOSE_CMD[@]}" "$@"
}

require_stack_up() {
  local db
  db=$(compose ps -q db) || die "'${COMPOSE_CMD[*]} ps' failed (see above)"
  if [[ -z $db ]] || [[ $(container_health "$db") != healthy ]]; then
    die "the stack is not up (no healthy db service): run 'docker compose up -d --build' first"
  fi
}

# usage: setting NAME DEFAULT   (from the environment, else .env, else DEFAULT;
# the same order compose uses)
setting() {
  local value=${!1:-}
  [[ -n $value ]] || value=$(dotenv_value .env "$1")
  printf '%s\n' "${value:-$2}"
}

# The database refuses connections beyond max_connections: N replicas' pools
# and committers must fit. The defaults are the app's (README, Configuration).
warn_connections() {
  local n=$1 db=$2 pool committers each max
  pool=$(setting DB_POOL_SIZE 4)
  committers=$(setting HIT_COMMITTERS 1)
  # Ask the server itself (where it runs on this node); fall back to the configured value.
  # shellcheck disable=SC2016  # expanded by the container's shell
  max=$(docker exec "$db" sh -c 'p=${MYSQL_ROOT_PASSWORD:-$(cat "${MYSQL_ROOT_PASSWORD_FILE:-/dev/null}")}
    MYSQL_PWD=$p mysql -uroot -h127.0.0.1 -N -B -e "SELECT @@max_connections"' 2>/dev/null) ||
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

# usage: containers_healthy N   (prints how many run and are healthy; true
# when exactly N run and all are healthy)
containers_healthy() {
  local n=$1 ids healthy=0 id
  mapfile -t ids < <(app_containers)
  for id in "${ids[@]}"; do
    [[ $(container_health "$id") == healthy ]] && healthy=$((healthy + 1))
  done
  printf '%s app container(s) running, %s of %s healthy\n' "${#ids[@]}" "$healthy" "$n"
  ((${#ids[@]} == n && healthy == n))
}

# usage: wait_healthy N
wait_healthy() {
  wait_with_progress "${SCALE_TIMEOUT:-180}" containers_healthy "$1" ||
    die "timed out after ${SCALE_TIMEOUT:-180} s: $WAIT_STATE (see: ${COMPOSE_CMD[*]} logs app)"
}

list_containers() {
  local id
  printf '%-32s %-16s %s\n' CONTAINER "INTERNAL IP" HEALTH
  for id in $(app_containers); do
    docker inspect -f '{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" |
      while read -r name ip _; do
        printf '%-32s %-16s %s\n' "${name#/}" "$ip" "$(container_health "$id")"
      done
  done | sort -V -k1,1
}

# --- Docker Swarm ---------------------------------------------------------------

# usage: swarm_service NAME   (the stack's service)
swarm_service() {
  printf '%s_%s\n' "${STACK:-webcluster}" "$1"
}

require_swarm_stack_up() {
  [[ $(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) == active ]] ||
    die "this engine is not in a swarm: use it without --swarm, or on a swarm manager"
  docker service inspect "$(swarm_service app)" >/dev/null 2>&1 ||
    die "no stack '${STACK:-webcluster}' with an app service: deploy deploy/swarm/stack.yml first (STACK names another)"
  [[ -n $(swarm_tasks db) ]] ||
    die "the stack's database has no running task: the stack is not up"
}

# usage: swarm_tasks SERVICE   (ids of its tasks that run and are to keep
# running; a task with a health check runs only once it has passed it)
swarm_tasks() {
  swarm_task_states "$1" | awk '$2 == "Running" && $3 == "Running" { print $1 }'
}

# usage: swarm_task_states SERVICE   ("ID DESIRED CURRENT" per task)
swarm_task_states() {
  docker service ps --no-trunc --format '{{.ID}} {{.DesiredState}} {{.CurrentState}}' \
    "$(swarm_service "$1")" 2>/dev/null
}

# usage: tasks_settled N   (prints how many run and stop; true when exactly N
# run and none is stopping)
tasks_settled() {
  local n=$1 running stopping
  running=$(swarm_tasks app | wc -l)
  stopping=$(swarm_task_states app | awk '$2 != "Running" && $3 == "Running"' | wc -l)
  printf '%s of %s app task(s) running, %s stopping\n' "$running" "$n" "$stopping"
  ((running == n && stopping == 0))
}

# usage: swarm_wait N   (polls until exactly N app tasks run, and none that is
# to stop still does)
swarm_wait() {
  wait_with_progress "${SCALE_TIMEOUT:-180}" tasks_settled "$1" ||
    die "timed out after ${SCALE_TIMEOUT:-180} s: $WAIT_STATE (see: docker service ps $(swarm_service app))"
}

swarm_list() {
  local id
  printf '%-32s %-16s %s\n' TASK "INTERNAL IP" NODE
  for id in $(swarm_tasks app); do
    # The backend address: the one the app answers with (its route to the database).
    docker inspect -f "{{.ID}} {{range .NetworksAttachments}}{{if eq .Network.Spec.Name \"$(swarm_service backend)\"}}{{range .Addresses}}{{.}} {{end}}{{end}}{{end}}" "$id" |
      while read -r task address _; do
        printf '%-32s %-16s %s\n' "$(swarm_service app).${task:0:12}" "${address%/*}" \
          "$(docker node inspect -f '{{.Description.Hostname}}' "$(docker inspect -f '{{.NodeID}}' "$id")")"
      done
  done | sort -V -k2,2
}

scale_swarm() {
  local n=$1 db
  require_swarm_stack_up
  db=$(docker ps -q --filter "label=com.docker.swarm.service.name=$(swarm_service db)" | head -n1)
  warn_connections "$n" "$db"
  log "scaling $(swarm_service app) to $n task(s)"
  # Rolls out by the stack's update policy; nginx is neither restarted nor reloaded.
  docker service scale --detach "$(swarm_service app)=$n" >/dev/null
  swarm_wait "$n"
  log "$(swarm_service app) has $n running task(s)"
  swarm_list
}

main() {
  local n swarm=
  if [[ ${1:-} == --swarm ]]; then
    swarm=1
    shift
  fi
  n=$(parse_count "$@")
  cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
  command -v docker >/dev/null || die "docker is not installed"
  if [[ -n $swarm ]]; then
    scale_swarm "$n"
    return 0
  fi
  pick_compose
  require_stack_up
  warn_connections "$n" "$(compose ps -q db)"
  log "scaling app to $n container(s)"
  # --no-deps: the schema step and the database stay as they are.
  compose up -d --no-recreate --no-deps --scale "app=$n" app
  wait_healthy "$n"
  log "app has $n healthy container(s)"
  list_containers
}

main "$@"
