#!/usr/bin/env bash
# The Swarm stack (deploy/swarm/stack.yml with deploy/swarm/stack.group.yml:
# the database as a 3-member group) on a real 3-node swarm: three containers
# on a network of their own, each running its own dockerd (Docker-in-Docker),
# all three managers, each holding one database member. Under the load of
# sticky clients it kills a whole node (docker kill: no warning) that holds
# the database primary, an nginx and an app task, then the swarm's leader,
# and checks that the stack goes on serving: no request fails once its
# client moved to the surviving nginx, every acknowledged hit is in the
# database exactly once, the group elects a new primary, tasks are
# rescheduled, clients are re-pinned and stay pinned; the killed node rejoins
# when started again, and its member rejoins the group and catches up; a new
# leader is elected. Prints TAP lines, the time of each phase, and removes
# every node, volume, network and image it made (the node image is kept:
# tests/docker/node/image.sh caches it).
#
# Here the routing mesh and service VIPs cannot work (no IPVS), so nginx is
# published in host mode (NGINX_PUBLISH_MODE=host, one per node) and the
# clients, in a container on the nodes' network, hold the two nginx nodes'
# addresses, as a browser given two addresses for one name.
#
# usage: tests/swarm-nodes.sh   (as root)
set -Eeuo pipefail
ME=swarm-nodes
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"
# shellcheck source=tests/docker/checkout.sh
source "$REPO/tests/docker/checkout.sh"

PREFIX=wcb-nodes
NETWORK=$PREFIX-net
# The nodes' addresses: $NET_PREFIX.11, .12, .13.
NET_PREFIX=${SWARM_NODES_NET_PREFIX:-10.213.0}
NODES=(1 2 3)
CLIENT=$PREFIX-client
APP_IMAGE=$PREFIX-app:local
# Named by tests/docker/node/image.sh, which builds it once and keeps it.
NODE_IMAGE_NAME=webcluster-test/swarm-node:local
NODE_IMAGE=
STACK=webcluster
LOAD_CLIENTS=6
# Answers each client must have after a kill before the load stops.
ANSWERS_AFTER=15
WORK=
NODE_DIR=/opt/swarm-nodes
# Swarm declares a node down after 3 missed heartbeats (5 s each by default).
# After a leader change it waits 6 heartbeats for every node to report again,
# but a node's agent, which kept failing to reach a manager while there was
# no leader, retries only every 8 s by then: with 1 s, a live node was
# sometimes declared down and its tasks restarted. 2 s waits 12 s.
HEARTBEAT_SECONDS=${SWARM_NODES_HEARTBEAT:-2}
HEARTBEAT=${HEARTBEAT_SECONDS}s

# --- timing ------------------------------------------------------------------------

PHASES=()
PHASE_START=0

now_ms() {
  date +%s%3N
}

# usage: phase_begin   (starts the clock for the next phase_end)
phase_begin() {
  PHASE_START=$(now_ms)
}

# usage: phase_end "what"   (prints and keeps "what: N.N s")
phase_end() {
  local line
  line=$(printf '%s: %s s' "$1" "$(seconds_since "$PHASE_START")")
  PHASES+=("$line")
  printf '# phase: %s\n' "$line"
}

# usage: seconds_since MILLIS   (e.g. 12.3)
seconds_since() {
  awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'
}

# --- nodes -----------------------------------------------------------------------------

node_name() {
  printf '%s-%s\n' "$PREFIX" "$1"
}

node_ip() {
  printf '%s.1%s\n' "$NET_PREFIX" "$1"
}

# usage: node_number HOSTNAME   (wcb-nodes-2 -> 2)
node_number() {
  printf '%s\n' "${1##*-}"
}

# usage: node_docker N ARGS...   (the docker CLI against node N's own dockerd,
# through a socket it shares with this machine)
node_docker() {
  local n=$1
  shift
  DOCKER_HOST=unix://$WORK/api/$n/docker.sock timeout 30 docker "$@"
}

# The flags that let dockerd run inside a container on this engine, where
# --privileged fails ("unable to apply caps": the outer bounding set lacks
# CAP_SYS_RESOURCE, and --privileged ignores --cap-drop).
NODE_FLAGS=(
  --cap-add ALL --cap-drop SYS_RESOURCE
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --security-opt systempaths=unconfined --cgroupns=private
)

node_start() {
  local n=$1
  mkdir -p "$WORK/api/$n"
  docker run -d --name "$(node_name "$n")" --hostname "$(node_name "$n")" \
    --network "$NETWORK" --ip "$(node_ip "$n")" "${NODE_FLAGS[@]}" \
    -v "$(node_name "$n")-docker:/var/lib/docker" -v "$WORK/api/$n:/run/node-api" \
    "$NODE_IMAGE" -H unix:///var/run/docker.sock -H unix:///run/node-api/docker.sock >/dev/null ||
    die "node $n did not start"
}

node_up() {
  node_docker "$1" info >/dev/null 2>&1
}

# usage: wait_node N   (its dockerd answers)
wait_node() {
  wait_until 60 "node $1's dockerd" node_up "$1" || {
    docker logs --tail 20 "$(node_name "$1")" >&2 2>&1 || true
    die "node $1's dockerd did not start"
  }
}

nodes_start() {
  local n
  docker network create --subnet "$NET_PREFIX.0/24" "$NETWORK" >/dev/null ||
    die "could not create network $NETWORK on $NET_PREFIX.0/24 (set SWARM_NODES_NET_PREFIX to a free /24)"
  for n in "${NODES[@]}"; do
    node_start "$n"
  done
  for n in "${NODES[@]}"; do
    wait_node "$n"
  done
}

# --- the swarm ---------------------------------------------------------------------------

# MANAGER: a node that is up, which the next commands talk to.
MANAGER=1

manager_docker() {
  node_docker "$MANAGER" "$@"
}

swarm_form() {
  local token n
  # Set at init: a heartbeat changed later had not taken effect by a kill.
  node_docker 1 swarm init --dispatcher-heartbeat "$HEARTBEAT" --advertise-addr "$(node_ip 1)" >/dev/null ||
    die "docker swarm init failed on node 1"
  token=$(node_docker 1 swarm join-token -q manager)
  for n in "${NODES[@]:1}"; do
    node_docker "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" "$(node_ip 1):2377" \
      >/dev/null || die "node $n did not join the swarm"
  done
  wait_until 60 "3 ready managers" managers_ready 3 || die "the swarm did not reach 3 ready managers"
}

# usage: managers_ready N   (N nodes ready and reachable as managers)
managers_ready() {
  [[ $(manager_docker node ls --format '{{.Status}} {{.ManagerStatus}}' |
    grep -cE '^Ready (Leader|Reachable)$') == "$1" ]]
}

# usage: leader_node   (the leader's number, asked of MANAGER)
leader_node() {
  local name
  name=$(manager_docker node ls --format '{{.Hostname}} {{.ManagerStatus}}' | awk '$2 == "Leader" { print $1 }')
  [[ -n $name ]] && node_number "$name"
}

# usage: node_state N   (e.g. "ready reachable", "down unreachable")
node_state() {
  manager_docker node inspect -f '{{.Status.State}} {{.ManagerStatus.Reachability}}' "$(node_name "$1")"
}

node_is() {
  [[ $(node_state "$1") == "$2" ]]
}

# --- images ----------------------------------------------------------------------------

build_app_image() {
  local config
  # BuildKit (Buildx from tests/docker/cli-plugins.sh) keeps its layer cache
  # when the image is removed, so the next run builds in seconds.
  config=$(bash "$REPO/tests/docker/cli-plugins.sh") || die "tests/docker/cli-plugins.sh failed"
  DOCKER_CONFIG=$config DOCKER_BUILDKIT=1 docker build -q --build-arg RUST_IMAGE="$RUST_IMAGE" \
    --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" -t "$APP_IMAGE" "$WORK" >"$WORK/build.log" 2>&1 ||
    die_with_log "building the app image failed" "$WORK/build.log"
}

# One `docker save` streamed into every node's `docker load` at once (the
# stand-ins share one large base layer: the archive is ~1.2 GB).
images_load() {
  local n pids=() status=0
  for n in "${NODES[@]}"; do
    mkfifo "$WORK/images-$n"
    node_docker_long "$n" load -q -i /dev/stdin <"$WORK/images-$n" >"$WORK/load-$n.log" 2>&1 &
    pids+=($!)
  done
  docker save "$APP_IMAGE" "$NGINX_IMAGE" "$MYSQL_IMAGE" |
    tee "$WORK/images-1" "$WORK/images-2" >"$WORK/images-3" || status=1
  for n in "${!pids[@]}"; do
    wait "${pids[n]}" || status=1
  done
  rm -f "$WORK"/images-?
  ((status == 0)) || die_with_log "docker save | docker load into the nodes failed" "$WORK/load-1.log"
}

# usage: node_docker_long N ARGS...   (node_docker with no time limit)
node_docker_long() {
  local n=$1
  shift
  DOCKER_HOST=unix://$WORK/api/$n/docker.sock docker "$@"
}

images_on_node() {
  local image
  for image in "$APP_IMAGE" "$NGINX_IMAGE" "$MYSQL_IMAGE"; do
    node_docker "$1" image inspect "$image" >/dev/null 2>&1 || return 1
  done
}

# --- the database: a 3-member group, member N on node N ---------------------------------
#
# deploy/swarm/stack.group.yml: db, db2 and db3, each pinned by a label to its
# own node, so every node holds one member and any kill takes one down.

# usage: db_label_nodes   (member N may run only on node N; member 1, db, also
# needs the label a single database has)
db_label_nodes() {
  local n
  for n in "${NODES[@]}"; do
    manager_docker node update --label-add "webcluster.db-member=$n" "$(node_name "$n")" >/dev/null
  done
  manager_docker node update --label-add webcluster.db=true "$(node_name 1)" >/dev/null
}

# usage: member_service N   (db, db2, db3)
member_service() {
  if (($1 == 1)); then echo db; else echo "db$1"; fi
}

# usage: member_container N   (member N's container id, on node N)
member_container() {
  node_docker "$1" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$(member_service "$1")" | head -n 1
}

# usage: member_sql N SQL   (as root on member N; prints rows)
member_sql() {
  local id
  id=$(member_container "$1") && [[ -n $id ]] || return 1
  node_docker "$1" exec "$id" sh -c "$ROOT_SQL" sh "$2"
}

# usage: member_role N   (PRIMARY or SECONDARY when ONLINE, else its state;
# fails when it does not answer)
member_role() {
  local role
  role=$(member_sql "$1" "SELECT IF(MEMBER_STATE = 'ONLINE', MEMBER_ROLE, MEMBER_STATE)
    FROM performance_schema.replication_group_members WHERE MEMBER_ID = @@server_uuid" 2>/dev/null) &&
    [[ -n $role ]] && printf '%s\n' "$role"
}

# usage: role_is N ROLE
role_is() {
  [[ $(member_role "$1") == "$2" ]]
}

# usage: db_primary [SKIP]   (the number of the member that takes writes; a
# member that says it is the primary and is writable)
db_primary() {
  local n
  for n in "${NODES[@]}"; do
    [[ $n == "${1:-}" ]] && continue
    [[ $(member_role "$n") == PRIMARY ]] || continue
    [[ $(member_sql "$n" 'SELECT @@GLOBAL.super_read_only' 2>/dev/null) == 0 ]] || continue
    printf '%s\n' "$n"
    return 0
  done
  return 1
}

# usage: primary_is N
primary_is() {
  [[ $(db_primary) == "$1" ]]
}

# usage: primary_not N   (a member other than N is the primary)
primary_not() {
  db_primary "$1" >/dev/null
}

# usage: group_online N   (the primary sees N members ONLINE)
group_online() {
  local primary
  primary=$(db_primary) || return 1
  [[ $(member_sql "$primary" "SELECT COUNT(*) FROM performance_schema.replication_group_members
    WHERE MEMBER_STATE = 'ONLINE'") == "$1" ]]
}

# usage: member_books N   (prints "COUNTER ROWS GTID_EXECUTED" as member N has them)
member_books() {
  member_sql "$1" "SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log),
    REPLACE(@@GLOBAL.gtid_executed, '\n', '')" | tr '\t' ' '
}

# usage: members_agree   (all three members ONLINE, with the same counter,
# rows and transactions)
members_agree() {
  local n first books
  group_online 3 || return 1
  for n in "${NODES[@]}"; do
    books=$(member_books "$n") && [[ -n $books ]] || return 1
    [[ -n ${first:-} ]] || first=$books
    [[ $books == "$first" ]] || return 1
  done
}

# usage: db_before_kill N   (makes member N the primary, before any load)
db_before_kill() {
  local primary uuid
  primary=$(db_primary) || die "no database primary before the kill"
  if [[ $primary != "$1" ]]; then
    uuid=$(member_sql "$1" 'SELECT @@server_uuid') || die "member $1 does not answer"
    member_sql "$primary" "SELECT group_replication_set_as_primary('$uuid')" >/dev/null ||
      die "member $primary could not hand the primary over to member $1"
  fi
  wait_until 60 "member $1 to be the primary" primary_is "$1" || die "member $1 did not become the primary"
  log "member $1, on node $1, is the database primary"
}

# usage: db_after_kill N KILL_MS WHICH   (node N held the primary: another
# member must take over; WHICH names the kill in the figures)
db_after_kill() {
  tap_check "the group elects a new primary" \
    timed_wait "$2" 60 "$3: a new database primary" primary_not "$1"
}

# usage: db_after_rejoin N SINCE_MS   (member N is back in the group and has
# caught up)
db_after_rejoin() {
  tap_check "member $1 rejoins the group: ONLINE, a secondary" \
    timed_wait "$2" 180 "restart: member $1 back ONLINE" role_is "$1" SECONDARY
  tap_check "every member holds the same counter, rows and transactions" \
    timed_wait "$2" 120 "restart: the 3 members agree" members_agree
}

# usage: db_sql SQL   (as root, on the primary; prints rows)
db_sql() {
  local primary
  primary=$(db_primary) || return 1
  member_sql "$primary" "$1"
}

# usage: db_totals   (prints "COUNTER ROWS")
db_totals() {
  db_sql 'SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log)' | tr '\t' ' '
}

# usage: db_request_ids FILE   (every access_log request_id, one a line)
db_request_ids() {
  db_sql 'SELECT request_id FROM access_log' >"$1"
}

# --- the stack ----------------------------------------------------------------------------

# TLS=off: the nodes answer plain HTTP, as behind a balancer that terminates
# TLS (tests/swarm.sh deploys the same stack with TLS on).
stack_deploy() {
  (cd "$WORK" && env STACK_NAME="$STACK" APP_IMAGE="$APP_IMAGE" NGINX_IMAGE="$NGINX_IMAGE" \
    MYSQL_IMAGE="$MYSQL_IMAGE" HTTP_PORT=80 TLS=off NGINX_PUBLISH_MODE=host NGINX_MAX_PER_NODE=1 \
    DEPLOY_ID="$(date +%s)" DOCKER_HOST="unix://$WORK/api/$MANAGER/docker.sock" \
    docker stack deploy --resolve-image never -c deploy/swarm/stack.yml -c deploy/swarm/stack.group.yml \
    "$STACK" >"$WORK/deploy.log" 2>&1) ||
    die_with_log "docker stack deploy failed" "$WORK/deploy.log"
}

# usage: running_tasks SERVICE   (prints "NODE_NAME" per running task)
running_tasks() {
  manager_docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' \
    "${STACK}_$1" | awk '$2 == "Running" { print $1 }' | sort
}

# usage: service_nodes SERVICE   (the numbers of the nodes running its tasks, one a line)
service_nodes() {
  local name
  for name in $(running_tasks "$1" | sort -u); do
    node_number "$name"
  done
}

# usage: tasks_on SERVICE N   (how many of its tasks run on node N)
tasks_on() {
  running_tasks "$1" | grep -cx "$(node_name "$2")" || true
}

schema_done() {
  manager_docker service ps --format '{{.DesiredState}} {{.CurrentState}}' "${STACK}_schema" |
    grep -q '^Shutdown Complete'
}

# usage: nginx_addresses   (the addresses of the nodes that run nginx)
nginx_addresses() {
  local n
  for n in $(service_nodes nginx); do
    node_ip "$n"
  done
}

stack_ready() {
  local address n
  [[ $(running_tasks nginx | wc -l) == 2 && $(running_tasks app | wc -l) == 3 ]] || return 1
  for n in "${NODES[@]}"; do
    [[ $(running_tasks "$(member_service "$n")") == "$(node_name "$n")" ]] || return 1
  done
  schema_done && group_online 3 || return 1
  for address in $(nginx_addresses); do
    [[ $(client_get "$address" /showcount) == 200\ * ]] || return 1
  done
}

# usage: app_addresses_on N   (every address of the app tasks on node N: the
# app answers with one of them, that of its route to the database, or of its
# host name when no member resolved as it started)
app_addresses_on() {
  local id
  for id in $(node_docker "$1" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_app"); do
    node_docker "$1" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id"
  done
}

# --- the client ----------------------------------------------------------------------------

client_start() {
  docker run -d --name "$CLIENT" --network "$NETWORK" -v "$WORK/tests/docker/node:$NODE_DIR:ro" \
    "$NGINX_IMAGE" sleep infinity >/dev/null || die "the client container did not start"
}

# usage: client_get ADDRESS PATH   (prints "STATUS BODY")
client_get() {
  docker exec "$CLIENT" sh -c '
    code=$(curl -s -m 10 -o /tmp/get.body -w "%{http_code}" --resolve "webcluster:80:$1" "http://webcluster$2") ||
      code=000
    printf "%s %s\n" "$code" "$(cat /tmp/get.body 2>/dev/null)"' sh "$1" "$2"
}

LOAD_DIR=
# usage: load_start NAME ADDRESS...   (LOAD_CLIENTS sticky clients, each
# with its own cookie jar kept across runs, over those nginx addresses)
load_start() {
  local id
  LOAD_DIR=/tmp/load/$1
  shift
  docker exec "$CLIENT" mkdir -p "$LOAD_DIR" /tmp/jars
  for ((id = 1; id <= LOAD_CLIENTS; id++)); do
    docker exec -d "$CLIENT" bash "$NODE_DIR/sticky-client.sh" "/tmp/jars/$id" "$LOAD_DIR/$id.out" "$@"
  done
  wait_until 30 "every client answered" load_answers_after 0 3 ||
    die "the load clients got no answers: $(load_lines | tail -n 3)"
}

# usage: load_lines   (every line the clients wrote, each prefixed with its
# client's number)
load_lines() {
  docker exec "$CLIENT" sh -c 'cd "$1" && for f in *.out; do sed "s/^/${f%.out} /" "$f"; done' sh "$LOAD_DIR"
}

# usage: load_answers_after MILLIS N   (every client has N answers after MILLIS)
load_answers_after() {
  load_lines | awk -v t="$1" -v n="$2" -v clients="$LOAD_CLIENTS" '
    $4 != "dropped" && $2 > t { count[$1]++ }
    END { for (c = 1; c <= clients; c++) if (count[c] < n) exit 1 }'
}

load_stopped() {
  [[ $(docker exec "$CLIENT" sh -c 'ls "$1"/*.done 2>/dev/null | wc -l' sh "$LOAD_DIR") == "$LOAD_CLIENTS" ]]
}

# usage: load_stop FILE   (stops the clients; writes their lines to FILE)
load_stop() {
  docker exec "$CLIENT" touch "$LOAD_DIR/stop"
  wait_until 90 "the load clients to stop" load_stopped || die "the load clients did not stop"
  load_lines >"$1"
}

# --- checks on the clients' answers --------------------------------------------------------

# usage: moved_clients FILE ADDRESS   (true when every client dropped ADDRESS)
moved_clients() {
  local moved
  moved=$(awk -v a="$2" '$4 == "dropped" && $3 == a { print $1 }' "$1" | sort -u | wc -l)
  tap_expect_equal "clients that left $2" "$LOAD_CLIENTS" "$moved"
}

# usage: failures_after_move FILE ADDRESS KILL_MS   (answers that were not 200
# after their client left ADDRESS, or after KILL_MS for a client that never
# used it; names them)
failures_after_move() {
  local bad
  bad=$(awk -v a="$2" -v t="$3" '
    $4 == "dropped" { if ($3 == a) moved[$1] = $2; next }
    ($1 in moved) && $2 > moved[$1] && $4 != 200 { print "client " $1 ": " $0 }
    a == "-" && $2 > t && $4 != 200 { print "client " $1 ": " $0 }' "$1")
  [[ -z $bad ]] && return 0
  tap_diag "answers that failed after their client moved:"
  tap_diag "$bad"
  return 1
}

# usage: answers_after FILE MILLIS   (how many answers came after MILLIS)
answers_after() {
  awk -v t="$2" '$4 != "dropped" && $2 > t' "$1" | wc -l
}

# usage: failed_answers FILE   (how many answers were not 200; their lines
# go to stderr)
failed_answers() {
  local lines
  lines=$(awk '$4 != "dropped" && $4 != 200 { print "#     client " $0 }' "$1")
  if [[ -z $lines ]]; then
    echo 0
    return
  fi
  printf '%s\n' "$lines" >&2
  wc -l <<<"$lines"
}

# usage: repinned FILE KILL_MS DEAD_APPS   (after the kill, each client is
# answered by one app, alive; a client whose app lived is still on it)
repinned() {
  local bad
  # Answers in the kill's first second may still come from a request the
  # dead app answered just before.
  bad=$(awk -v t="$2" -v dead=" $3 " '
    $4 == "dropped" || $4 != 200 { next }
    $2 <= t { before[$1] = $6; next }
    $2 <= t + 1000 { next }
    { if (!($1 in after)) after[$1] = $6; else if (after[$1] != $6) moves[$1] = moves[$1] " " $6 }
    END {
      for (c in after) {
        if (moves[c] != "") print "client " c " went on from " after[c] " to" moves[c]
        if (index(dead, " " after[c] " ")) print "client " c " still answered by the dead " after[c]
        if (!index(dead, " " before[c] " ") && before[c] != after[c])
          print "client " c " left its live app " before[c] " for " after[c]
      }
    }' "$1")
  [[ -z $bad ]] && return 0
  tap_diag "$bad"
  return 1
}

# usage: stayed_pinned FILE APPS_FILE   (every client's answers all come from
# the app it had at the end of the earlier run, in APPS_FILE: "CLIENT APP")
stayed_pinned() {
  local bad
  bad=$(awk 'NR == FNR { app[$1] = $2; next }
    $4 == 200 && $6 != app[$1] { print "client " $1 ": " $6 ", not " app[$1] }' "$2" "$1" | sort -u)
  [[ -z $bad ]] && return 0
  tap_diag "$bad"
  return 1
}

# usage: last_apps FILE   (prints "CLIENT APP": each client's last app)
last_apps() {
  awk '$4 == 200 { app[$1] = $6 } END { for (c in app) print c, app[c] }' "$1" | sort
}

# usage: check_books   (counter == rows; every 200's request id is a row;
# no row but those and the failed answers'). Reads every run's FILE in $WORK/answers.
check_books() {
  local totals counter rows acked failed unknown
  totals=$(db_totals) || {
    tap_check "the database answers" false
    return
  }
  read -r counter rows <<<"$totals"
  tap_check "counter == access_log rows ($counter)" tap_expect_equal "rows" "$counter" "$rows"
  awk '$4 == 200 { print $5 }' "$WORK"/answers/* | sort >"$WORK/acked-ids"
  db_request_ids "$WORK/row-ids.unsorted" && sort "$WORK/row-ids.unsorted" >"$WORK/row-ids"
  acked=$(wc -l <"$WORK/acked-ids")
  tap_check "every 200 ($acked) carries an X-Request-ID" \
    tap_expect_equal "200s without one" "" "$(grep -vxE '[0-9a-f]{32}' "$WORK/acked-ids" | sort | uniq -c)"
  tap_check "no two 200s share a request id" \
    tap_expect_equal "repeated ids" "" "$(uniq -d "$WORK/acked-ids" | head -n 5)"
  tap_check "every acknowledged hit is in access_log, once" \
    tap_expect_equal "acknowledged ids not in access_log" "" "$(comm -23 "$WORK/acked-ids" "$WORK/row-ids" | head -n 5)"
  failed=$(cat "$WORK"/answers/* | awk '$4 != "dropped" && $4 != 200' | wc -l)
  unknown=$(comm -13 "$WORK/acked-ids" "$WORK/row-ids" | wc -l)
  tap_check "no row but the 200s' and at most one per failed answer ($unknown rows, $failed failed)" \
    test "$unknown" -le "$failed"
}

# --- steps ------------------------------------------------------------------------------------

step_nodes() {
  local before state=cached
  phase_begin
  before=$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE_NAME" 2>/dev/null) || before=
  NODE_IMAGE=$(bash "$REPO/tests/docker/node/image.sh") || die "tests/docker/node/image.sh failed"
  [[ $(docker image inspect -f '{{.Id}}' "$NODE_IMAGE") == "$before" ]] || state=built
  phase_end "node image ($state)"
  phase_begin
  nodes_start
  swarm_form
  phase_end "3 nodes up, swarm formed"
  tap_check "3 nodes are ready managers" managers_ready 3
  tap_check "node 1 leads the swarm" tap_expect_equal "leader" 1 "$(leader_node)"
}

step_images() {
  local n
  phase_begin
  build_app_image
  phase_end "app image built"
  phase_begin
  images_load
  phase_end "images loaded into the 3 nodes"
  for n in "${NODES[@]}"; do
    tap_check "node $n has the app, nginx and MySQL images" images_on_node "$n"
  done
}

# The node the first kill takes down: one with an nginx that does not lead
# (there is one, as the two nginx tasks run on two nodes).
VICTIM=
plan_kills() {
  local n leader
  wait_until 120 "nginx's 2 tasks to be placed" nginx_placed || die "nginx's tasks were not placed"
  leader=$(leader_node)
  for n in $(placed_nodes nginx); do
    [[ $n == "$leader" ]] || {
      VICTIM=$n
      break
    }
  done
  log "node $VICTIM will be killed, then the leader, node $leader"
}

nginx_placed() {
  [[ $(placed_nodes nginx | wc -l) == 2 ]]
}

# usage: placed_nodes SERVICE   (the numbers of the nodes its tasks are
# assigned to, running or not yet)
placed_nodes() {
  local name
  for name in $(manager_docker service ps --filter desired-state=running --format '{{.Node}}' "${STACK}_$1" | sort -u); do
    node_number "$name"
  done
}

step_deploy() {
  phase_begin
  client_start
  db_label_nodes
  stack_deploy
  plan_kills
  wait_until 300 "the stack to serve through both nginx nodes" stack_ready || {
    manager_docker service ps "${STACK}_nginx" "${STACK}_app" "${STACK}_db" "${STACK}_db2" "${STACK}_db3" "${STACK}_schema" >&2 || true
    die "the stack did not serve within 300 s"
  }
  phase_end "stack ready"
  tap_check "nginx runs 2 tasks, on 2 nodes" tap_expect_equal "nginx nodes" 2 "$(service_nodes nginx | wc -l)"
  tap_check "the app's 3 tasks are spread over the 3 nodes" \
    tap_expect_equal "app nodes" 3 "$(service_nodes app | wc -l)"
  tap_check "each node holds one database member, and the 3 are ONLINE" members_placed
  tap_check "node $VICTIM, to be killed first, runs an nginx and an app task" victim_ready
  tap_check "each nginx node answers on its own address" each_nginx_answers
}

each_nginx_answers() {
  local address status=0
  for address in $(nginx_addresses); do
    [[ $(client_get "$address" /showcount) == 200\ * ]] || {
      tap_diag "$address: $(client_get "$address" /showcount)"
      status=1
    }
  done
  return "$status"
}

# usage: dump_tasks KILL_MS   (after a failed check: every task's history
# and the nodes, for the log)
dump_tasks() {
  local service
  tap_diag "the kill was at $(date -u -d "@$(($1 / 1000))" +%H:%M:%S); the nodes and every task:"
  manager_docker node ls >&2 || true
  manager_docker service ps --no-trunc --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' \
    "${STACK}_nginx" "${STACK}_app" "${STACK}_db" "${STACK}_db2" "${STACK}_db3" >&2 || true
  tap_diag "what the apps and nginx logged of note since then:"
  for service in app nginx; do
    manager_docker service logs --timestamps --since "$(($1 / 1000 - 2))" "${STACK}_$service" 2>&1 |
      grep -E 'WARN|ERROR|error|upstream' | tail -n 30 >&2 || true
  done
}

# usage: tasks_elsewhere N   (the ids of the nginx, app and db tasks meant
# to run on the other nodes)
tasks_elsewhere() {
  local n
  for n in "${NODES[@]}"; do
    [[ $n == "$1" ]] && continue
    manager_docker service ps -q --filter desired-state=running --filter "node=$(node_name "$n")" \
      "${STACK}_nginx" "${STACK}_app" "${STACK}_db" "${STACK}_db2" "${STACK}_db3"
  done | sort
}

# usage: tasks_kept FILE N   (every task in FILE still meant to run: none
# on a surviving node was restarted or moved)
tasks_kept() {
  local gone
  gone=$(comm -23 "$1" <(tasks_elsewhere "$2"))
  [[ -z $gone ]] && return 0
  tap_diag "tasks that were running on the surviving nodes and are not any more:"
  manager_docker service ps --no-trunc --format '{{.ID}} {{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' \
    "${STACK}_nginx" "${STACK}_app" "${STACK}_db" "${STACK}_db2" "${STACK}_db3" | grep -F "$gone" >&2 || true
  return 1
}

# usage: members_placed   (member N runs on node N, and the 3 are ONLINE)
members_placed() {
  local n
  for n in "${NODES[@]}"; do
    tap_expect_equal "$(member_service "$n")'s node" "$(node_name "$n")" "$(running_tasks "$(member_service "$n")")" ||
      return 1
  done
  group_online 3
}

victim_ready() {
  (($(tasks_on nginx "$VICTIM") == 1 && $(tasks_on app "$VICTIM") > 0))
}

KILLED=
# usage: kill_node N   (docker kill; MANAGER moves to a live node)
kill_node() {
  local n
  docker kill "$(node_name "$1")" >/dev/null
  KILLED=$1
  for n in "${NODES[@]}"; do
    [[ $n == "$1" ]] || {
      MANAGER=$n
      break
    }
  done
}

# usage: app_back N   (3 app tasks running, none on node N)
app_back() {
  local names
  names=$(running_tasks app)
  [[ $(wc -l <<<"$names") == 3 ]] && ! grep -qx "$(node_name "$1")" <<<"$names"
}

nginx_back() {
  local names
  names=$(running_tasks nginx)
  [[ $(wc -l <<<"$names") == 2 ]] && ! grep -qx "$(node_name "$1")" <<<"$names"
}

# usage: timed_wait SINCE_MS SECONDS "what" COMMAND...   (waits; prints and
# keeps how long after SINCE_MS it came true)
timed_wait() {
  local since=$1 seconds=$2 what=$3 took
  shift 3
  wait_until "$seconds" "$what" "$@" || return 1
  took=$(seconds_since "$since")
  RECOVERY+=("$what: $took s")
  printf '# %s: %s s\n' "$what" "$took"
}

RECOVERY=()

# usage: clients_served_at FILE ADDRESS KILL_MS   (seconds from the kill to
# the last client's first 200 after it moved)
clients_served_at() {
  awk -v a="$2" -v t="$3" '
    $4 == "dropped" { if ($3 == a) moved[$1] = 1; next }
    $2 > t && $4 == 200 && (a == "-" || ($1 in moved)) && !($1 in first) { first[$1] = $2 }
    END { m = 0; for (c in first) if (first[c] - t > m) m = first[c] - t; printf "%.1f", m / 1000 }' "$1"
}

# usage: slowest_after FILE MILLIS   (the longest an answer after MILLIS took,
# in seconds: a request nginx sent over a kept-alive connection to an app on
# the dead node waits for proxy_read_timeout, then goes to another app)
slowest_after() {
  awk -v t="$2" '$4 != "dropped" && $2 > t && $7 > m { m = $7 } END { printf "%.1f", m }' "$1"
}

step_kill_node() {
  local victim=$VICTIM address kill_ms dead_apps addresses file=$WORK/answers/1-node-kill
  victim_ready || die "node $victim no longer runs an nginx and an app task: $(running_tasks nginx | tr '\n' ' ')"
  address=$(node_ip "$victim")
  dead_apps=$(app_addresses_on "$victim" | xargs)
  mapfile -t addresses < <(nginx_addresses)
  db_before_kill "$victim"
  log "load of $LOAD_CLIENTS sticky clients on ${addresses[*]}"
  load_start node-kill "${addresses[@]}"
  wait_until 30 "answers before the kill" load_answers_after 0 10 || true
  tasks_elsewhere "$victim" >"$WORK/tasks-before-node-kill"
  log "killing node $victim ($address: nginx, app at $dead_apps, the database primary)"
  phase_begin
  kill_ms=$PHASE_START
  kill_node "$victim"
  tap_check "the killed node $victim is marked down" timed_wait "$kill_ms" 60 "node kill: node $victim marked down" \
    node_is "$victim" "down unreachable"
  db_after_kill "$victim" "$kill_ms" "node kill"
  tap_check "the app is rescheduled: 3 tasks, none on node $victim" \
    timed_wait "$kill_ms" 90 "node kill: app back to 3 tasks" app_back "$victim"
  tap_check "nginx is rescheduled: 2 tasks, none on node $victim" \
    timed_wait "$kill_ms" 90 "node kill: nginx back to 2 tasks" nginx_back "$victim"
  phase_end "node kill until its tasks ran elsewhere"
  tap_check "no task on the surviving nodes was restarted" tasks_kept "$WORK/tasks-before-node-kill" "$victim"
  wait_until 120 "$ANSWERS_AFTER answers per client after the kill" load_answers_after "$((kill_ms + 2000))" "$ANSWERS_AFTER" || true
  load_stop "$file"
  RECOVERY+=("node kill: every client served again: $(clients_served_at "$file" "$address" "$kill_ms") s")
  RECOVERY+=("node kill: slowest answer after it: $(slowest_after "$file" "$kill_ms") s")
  tap_check "every client moved to the surviving nginx" moved_clients "$file" "$address"
  tap_check "no request failed once its client had moved ($(answers_after "$file" "$kill_ms") answers after the kill)" \
    failures_after_move "$file" "$address" "$kill_ms" || dump_tasks "$kill_ms"
  tap_diag "answers that failed before their client moved: $(failed_answers "$file")"
  tap_check "clients of the lost app are re-pinned and stay; the others stay put" \
    repinned "$file" "$kill_ms" "$dead_apps"
  check_books
  last_apps "$file" >"$WORK/apps-after-kill"
}

step_rejoin() {
  local victim=$KILLED start
  log "starting node $victim again"
  phase_begin
  start=$PHASE_START
  docker start "$(node_name "$victim")" >/dev/null || die "node $victim did not start again"
  wait_node "$victim"
  tap_check "node $victim rejoins the swarm as a ready, reachable manager" \
    timed_wait "$start" 90 "restart: node $victim rejoined" node_is "$victim" "ready reachable"
  phase_end "node restart until it rejoined"
  tap_check "the swarm has 3 ready managers again" managers_ready 3
  db_after_rejoin "$victim" "$start"
}

# usage: reported_since ELECTED_MS N   (the new leader's wait for the nodes,
# 6 heartbeats, is over, and every node but N is ready)
reported_since() {
  local n
  (($(now_ms) > $1 + (6 * HEARTBEAT_SECONDS + 1) * 1000)) || return 1
  for n in "${NODES[@]}"; do
    [[ $n == "$2" ]] || node_is "$n" "ready reachable" || return 1
  done
}

new_leader() {
  local n
  for n in "${NODES[@]}"; do
    [[ $n == "$KILLED" ]] && continue
    MANAGER=$n
    leader_node >/dev/null 2>&1 && return 0
  done
  return 1
}

step_kill_leader() {
  local leader primary address kill_ms elected_ms addresses file=$WORK/answers/2-leader-kill
  leader=$(leader_node)
  primary=$(db_primary) || die "no database primary before the leader kill"
  address=-
  if (($(tasks_on nginx "$leader") > 0)); then
    address=$(node_ip "$leader")
  fi
  mapfile -t addresses < <(nginx_addresses)
  log "load of $LOAD_CLIENTS sticky clients on ${addresses[*]} (their cookies kept)"
  load_start leader-kill "${addresses[@]}"
  wait_until 30 "answers before the kill" load_answers_after 0 10 || true
  tasks_elsewhere "$leader" >"$WORK/tasks-before-leader-kill"
  log "killing the leader, node $leader (database member $leader, $(member_role "$leader"))"
  phase_begin
  kill_ms=$PHASE_START
  kill_node "$leader"
  # The group's failover takes less time than the swarm's election.
  if [[ $primary == "$leader" ]]; then
    db_after_kill "$leader" "$kill_ms" "leader kill"
  else
    tap_check "the database primary stays member $primary" primary_is "$primary"
  fi
  tap_check "a new leader is elected" timed_wait "$kill_ms" 120 "leader kill: new leader elected" new_leader
  elected_ms=$(now_ms)
  log "node $(leader_node) leads"
  tap_check "the app is rescheduled: 3 tasks, none on node $leader" \
    timed_wait "$kill_ms" 120 "leader kill: app back to 3 tasks" app_back "$leader"
  phase_end "leader kill until a new leader rescheduled the app"
  # The load goes on while the new leader waits for the nodes to report:
  # a node it declares down then has its tasks restarted.
  wait_until 60 "the nodes to report to the new leader" reported_since "$elected_ms" "$leader" ||
    tap_diag "the surviving nodes are not all ready: $(manager_docker node ls --format '{{.Hostname}} {{.Status}}' | xargs)"
  tap_check "no task on the surviving nodes was restarted" tasks_kept "$WORK/tasks-before-leader-kill" "$leader"
  wait_until 120 "$ANSWERS_AFTER answers per client after the kill" load_answers_after "$((kill_ms + 2000))" "$ANSWERS_AFTER" || true
  load_stop "$file"
  RECOVERY+=("leader kill: every client served again: $(clients_served_at "$file" "$address" "$kill_ms") s")
  RECOVERY+=("leader kill: slowest answer after it: $(slowest_after "$file" "$kill_ms") s")
  tap_check "restarting the node moved no client (answers before the leader kill)" \
    stayed_pinned <(awk -v t="$kill_ms" '$2 <= t' "$file") "$WORK/apps-after-kill"
  [[ $address == - ]] || tap_check "every client moved to the surviving nginx" moved_clients "$file" "$address"
  tap_check "the stack kept serving: no request failed once its client had moved ($(answers_after "$file" "$kill_ms") answers after the kill)" \
    failures_after_move "$file" "$address" "$kill_ms" || dump_tasks "$kill_ms"
  tap_diag "answers that failed before their client moved: $(failed_answers "$file")"
  check_books
}

# --- setup and cleanup ---------------------------------------------------------------------------

# Also what an earlier run, killed before its own cleanup, left behind.
remove_all() {
  local n
  docker rm -f "$CLIENT" >/dev/null 2>&1 || true
  for n in "${NODES[@]}"; do
    docker rm -f "$(node_name "$n")" >/dev/null 2>&1 &
  done
  wait
  for n in "${NODES[@]}"; do
    docker volume rm "$(node_name "$n")-docker" >/dev/null 2>&1 &
  done
  wait
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
  docker image rm "$APP_IMAGE" >/dev/null 2>&1 || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  remove_all
  [[ -z $WORK ]] || rm -rf "$WORK"
  return "$status"
}

leftovers() {
  {
    docker ps -aq --filter "name=^$PREFIX-"
    docker volume ls -q --filter "name=^$PREFIX-"
    docker network ls -q --filter "name=^$NETWORK\$"
    docker image ls -q "$APP_IMAGE"
  } 2>/dev/null
}

step_cleanup_checks() {
  phase_begin
  cleanup
  WORK=
  phase_end "teardown (nodes, volumes, network, app image)"
  tap_check "no node, client, volume, network or app image is left" \
    tap_expect_equal "left over" "" "$(leftovers | tr '\n' ' ')"
}

main() {
  local started line
  started=$(now_ms)
  require_root "it builds images and runs Docker-in-Docker nodes"
  [[ $HEARTBEAT_SECONDS =~ ^[1-9][0-9]?$ ]] || die "SWARM_NODES_HEARTBEAT must be whole seconds, 1-99: $HEARTBEAT_SECONDS"
  remove_all
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  pick_images
  make_checkout swarm-nodes
  mkdir -p "$WORK/answers"
  vendor_if_offline
  (cd "$WORK" && scripts/init-secrets.sh >/dev/null 2>&1) || die "scripts/init-secrets.sh failed"
  step_nodes
  step_images
  step_deploy
  step_kill_node
  step_rejoin
  step_kill_leader
  step_cleanup_checks
  printf '# %s\n' "${PHASES[@]}" "${RECOVERY[@]}"
  printf '# whole run: %s s\n' "$(seconds_since "$started")"
  tap_summary swarm-nodes
}

main "$@"
