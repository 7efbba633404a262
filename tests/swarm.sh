#!/usr/bin/env bash
# The Swarm deployment (deploy/swarm/stack.yml) on this machine's engine, with
# stand-ins for the official images: deploy; counting; stickiness through both
# nginx replicas; scaling 2 -> 5 -> 2 and a rolling update of the app image
# under load, with no failed request; a killed task replaced and its client
# re-stuck; the data surviving `docker stack rm` and a redeploy. Everything it
# made is removed afterwards, and the swarm left if this test created it.
#
# The routing mesh's published port does not answer on this engine (nor do
# service VIPs), so requests come from a client container on the stack's
# attachable edge network, sent to each nginx task under one host name, as a
# browser behind an L4 balancer would send them.
#
# usage: tests/swarm.sh   (as root; prints one "ok - ..." / "not ok - ..." per check)
set -Eeuo pipefail
ME=swarm
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"
# shellcheck source=tests/docker/checkout.sh
source "$REPO/tests/docker/checkout.sh"

STACK=wcswarm
HTTP_PORT=${SWARM_HTTP_PORT:-18380}
HTTPS_PORT=${SWARM_HTTPS_PORT:-18780}
CLIENT=$STACK-client
READY_SECONDS=300
CREATED_SWARM=
NODE=
WORK=
NGINX_IPS=()
LOAD_WORKERS=6
# The proxy network's subnet, which the app trusts: not the default, so the
# test shows the setting takes effect.
PROXY_SUBNET=10.253.77.0/24

# --- the stack ---------------------------------------------------------------------

# usage: deploy IMAGE   (docker stack deploy from the checkout, the app from IMAGE)
deploy() {
  (cd "$WORK" && env STACK_NAME="$STACK" NGINX_IMAGE="$NGINX_IMAGE" MYSQL_IMAGE="$MYSQL_IMAGE" \
    APP_IMAGE="$1" HTTP_PORT="$HTTP_PORT" HTTPS_PORT="$HTTPS_PORT" DEPLOY_ID="$(date +%s%N)" COOKIE_TTL_SECONDS="$COOKIE_TTL" \
    PROXY_SUBNET="$PROXY_SUBNET" \
    docker stack deploy --resolve-image never -c deploy/swarm/stack.yml "$STACK" >>"$WORK/deploy.log" 2>&1) ||
    fatal "docker stack deploy failed"
}

# usage: replicas SERVICE   (e.g. 3/3)
replicas() {
  docker service ls --filter "name=${STACK}_$1" --format '{{.Name}} {{.Replicas}}' |
    awk -v n="${STACK}_$1" '$1 == n { print $2 }'
}

# usage: replicas_are SERVICE N/M
replicas_are() {
  [[ $(replicas "$1") == "$2" ]]
}

schema_done() {
  docker service ps --format '{{.DesiredState}} {{.CurrentState}}' "${STACK}_schema" 2>/dev/null |
    grep -q '^Shutdown Complete'
}

# usage: task_ips SERVICE   (the addresses of its running tasks on the edge or
# backend network, sorted)
task_ips() {
  local id
  for id in $(docker service ps -q --filter desired-state=running "${STACK}_$1"); do
    docker inspect -f '{{if eq .Status.State "running"}}{{range .NetworksAttachments}}{{.Network.Spec.Name}} {{range .Addresses}}{{.}}{{end}}{{"\n"}}{{end}}{{end}}' "$id"
  done | awk -v net="${2:-${STACK}_backend}" '$1 == net { sub("/.*", "", $2); print $2 }' | sort -V
}

# usage: stack_serves   (both nginx tasks known, and GET /showcount answers 200)
stack_serves() {
  mapfile -t NGINX_IPS < <(task_ips nginx "${STACK}_edge")
  ((${#NGINX_IPS[@]} == 2)) || return 1
  # Each nginx on its own: one that tried app tasks still starting has them
  # marked failed (fail_timeout, 10 s), and answers 502 until then.
  [[ $(client_get /showcount "" 0) == 200\ * && $(client_get /showcount "" 1) == 200\ * ]]
}

# usage: wait_stack   (up and serving, the schema applied)
wait_stack() {
  wait_until "$READY_SECONDS" "the stack to serve" stack_serves ||
    fatal "the stack did not serve within $READY_SECONDS s"
  wait_until 60 "the schema step to complete" schema_done || fatal "the schema step did not complete"
}

# usage: db_container   (the database task's local container)
db_container() {
  docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_db" | head -n1
}

db_sql() {
  docker exec "$(db_container)" sh -c "$ROOT_SQL" sh "$1"
}

fatal() {
  warn "$1; the stack's state:"
  docker stack services "$STACK" >&2 || true
  docker service logs --tail 20 "${STACK}_app" >&2 2>&1 || true
  die "$1"
}

# --- the client container ----------------------------------------------------------

# usage: client_get PATH [JAR] [N]   (prints "STATUS BODY", through nginx task N
# (0 or 1), over https to the name the generated certificate holds,
# localhost, so one cookie jar serves both)
client_get() {
  local jar=${2:-} ip=${NGINX_IPS[${3:-0}]}
  docker exec "$CLIENT" sh -c '
    path=$1 jar=$2 ip=$3
    set -- -s -m 20 -o /tmp/body -w "%{http_code}" --cacert /tmp/tls.crt --resolve "localhost:443:$ip"
    [ -z "$jar" ] || set -- "$@" -b "$jar" -c "$jar"
    code=$(curl "$@" "https://localhost$path") || code=000
    printf "%s %s\n" "$code" "$(cat /tmp/body 2>/dev/null)"' sh "$1" "$jar" "$ip"
}

# usage: client_hits N   (N requests for GET /, four at a time, each client
# alternating between the nginx tasks; prints "STATUS BODY" per request)
client_hits() {
  docker exec "$CLIENT" sh -c '
    n=$1 a=$2 b=$3 each=$(( ($1 + 3) / 4 ))
    for c in 1 2 3 4; do
      ( i=0
        while [ $i -lt $each ] && [ $(( (c - 1) * each + i )) -lt $n ]; do
          ip=$a; [ $((i % 2)) -eq 0 ] || ip=$b
          code=$(curl -s -m 20 -o /tmp/hit-$c -w "%{http_code}" --cacert /tmp/tls.crt --resolve "localhost:443:$ip" https://localhost/) || code=000
          echo "$code $(cat /tmp/hit-$c)"
          i=$((i + 1))
        done ) &
    done
    wait' sh "$1" "${NGINX_IPS[0]}" "${NGINX_IPS[1]}"
}

# The load: LOAD_WORKERS sticky clients, each alternating between the nginx
# tasks, until /tmp/load-stop appears; each line of /tmp/load-N.out is one answer.
load_start() {
  local id
  docker exec "$CLIENT" sh -c 'rm -f /tmp/load-*'
  for ((id = 1; id <= LOAD_WORKERS; id++)); do
    docker exec -d "$CLIENT" sh -c '
      id=$1 a=$2 b=$3 n=0
      while [ ! -e /tmp/load-stop ]; do
        ip=$a; [ $((n % 2)) -eq 0 ] || ip=$b
        code=$(curl -s -m 20 -o /tmp/load-$id.body -w "%{http_code}" --cacert /tmp/tls.crt --resolve "localhost:443:$ip" \
          -b /tmp/load-$id.jar -c /tmp/load-$id.jar https://localhost/) || code=000
        echo "$code $(cat /tmp/load-$id.body 2>/dev/null)" >>/tmp/load-$id.out
        n=$((n + 1))
        sleep 0.05
      done
      touch /tmp/load-$id.done' sh "$id" "${NGINX_IPS[0]}" "${NGINX_IPS[1]}"
  done
  wait_until 30 "every load client answered" load_answered 3
}

# usage: load_answered N   (every load client has N more answers than when counted before)
load_answered() {
  local id lines
  for ((id = 1; id <= LOAD_WORKERS; id++)); do
    lines=$(docker exec "$CLIENT" sh -c "cat /tmp/load-$id.out 2>/dev/null | wc -l")
    ((lines >= ${LOAD_MARK[$id]:-0} + $1)) || return 1
  done
}

LOAD_MARK=()
load_mark() {
  local id
  for ((id = 1; id <= LOAD_WORKERS; id++)); do
    LOAD_MARK[id]=$(docker exec "$CLIENT" sh -c "cat /tmp/load-$id.out 2>/dev/null | wc -l")
  done
}

load_stopped() {
  docker exec "$CLIENT" sh -c "[ \$(ls /tmp/load-*.done 2>/dev/null | wc -l) -eq $LOAD_WORKERS ]"
}

# usage: load_stop   (prints every answer)
load_stop() {
  docker exec "$CLIENT" touch /tmp/load-stop
  wait_until 60 "the load clients to stop" load_stopped || fatal "the load clients did not stop"
  docker exec "$CLIENT" sh -c 'cat /tmp/load-*.out'
  LOAD_MARK=()
}

# usage: no_failures WHAT ANSWERS   (every answer 200)
no_failures() {
  local bad
  bad=$(awk '$1 != 200' <<<"$2" | sort | uniq -c)
  tap_expect_equal "non-200 answers during $1 ($(wc -l <<<"$2") answers)" "" "$bad"
}

# --- steps ----------------------------------------------------------------------------

# The client container joins the stack's edge network, which a deploy creates
# and `docker stack rm` can only remove once the client has left it.
client_start() {
  docker run -d --name "$CLIENT" --network "${STACK}_edge" "$NGINX_IMAGE" sleep infinity >/dev/null ||
    fatal "the client container did not start"
  # The generated certificate, the client's CA for https://localhost.
  docker cp "$WORK/secrets/tls.crt" "$CLIENT:/tmp/tls.crt" || fatal "could not give the client the certificate"
}

client_stop() {
  docker rm -f "$CLIENT" >/dev/null 2>&1 || true
}

step_deploy() {
  log "deploying stack $STACK (MySQL's first start takes a minute)"
  deploy "$STACK-app:v1"
  client_start
  wait_stack
  tap_check "nginx runs 2 replicas" tap_expect_equal "nginx" 2/2 "$(replicas nginx)"
  # A task that started before the database answered may still be on its way.
  tap_check "the app runs 3 replicas" wait_until 60 "3 app replicas" replicas_are app 3/3
  wait_until 30 "both nginx tasks to serve again" stack_serves || true
  tap_check "the database runs 1 replica, on the labelled node" tap_expect_equal "db" 1/1 "$(replicas db)"
  tap_check "the schema step ran once and completed" schema_done
  tap_check "no password is in a service's environment" no_password_in_env
}

no_password_in_env() {
  local service status=0
  for service in nginx app db schema; do
    env_holds_no_password "service $service" \
      "$(docker service inspect -f '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' "${STACK}_$service")" ||
      status=1
  done
  return "$status"
}

# Both nginx tasks serve HTTPS with the certificate from the stack's secrets,
# HTTP/2, Secure cookies, and redirect plain HTTP.
step_tls() {
  local n answer
  for n in 0 1; do
    answer=$(docker exec "$CLIENT" curl -sS -m 20 -o /dev/null -w '%{http_code} %{ssl_verify_result} %{http_version}' \
      --cacert /tmp/tls.crt --resolve "localhost:443:${NGINX_IPS[$n]}" https://localhost/healthz)
    tap_check "nginx task $n serves https with the stack's certificate, over HTTP/2" \
      tap_expect_equal "status, verify result, HTTP version" "200 0 2" "$answer"
    answer=$(docker exec "$CLIENT" curl -sS -m 20 -o /dev/null -w '%{http_code} %{redirect_url}' \
      "http://${NGINX_IPS[$n]}/a?b=1")
    tap_check "nginx task $n redirects http to https" \
      tap_expect_equal "status, Location" "301 https://${NGINX_IPS[$n]}:$HTTPS_PORT/a?b=1" "$answer"
  done
  tap_check "over https both cookies carry Secure" cookies_secure "$(docker exec "$CLIENT" curl -sS -m 20 -I \
    --cacert /tmp/tls.crt --resolve "localhost:443:${NGINX_IPS[1]}" https://localhost/)"
  tap_check "the key secret is mode 0400 in the nginx tasks" tap_expect_equal "mode" 400 \
    "$(docker exec "$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_nginx" | head -n1)" \
      stat -c %a /run/secrets/tls_key)"
}

step_counting() {
  local before after answers ok rows
  before=$(client_get /showcount | cut -d' ' -f2)
  answers=$(client_hits 200)
  ok=$(awk '$1 == 200' <<<"$answers" | wc -l)
  after=$(client_get /showcount | cut -d' ' -f2)
  rows=$(db_sql 'SELECT COUNT(*) FROM access_log')
  tap_check "200 requests through both nginx replicas all answered 200" tap_expect_equal "200s" 200 "$ok"
  tap_check "the counter grew by the 200s" tap_expect_equal "counter" "$((before + ok))" "$after"
  tap_check "access_log has a row per counted hit" tap_expect_equal "rows" "$after" "$rows"
}

# What the app believes: X-Request-ID and X-Real-IP from the proxy network,
# where nginx's tasks are; from a task on the backend network they are a client's.
step_trust() {
  local marker id
  tap_check "nginx's tasks are on the proxy network, not on the backend network" nginx_networks
  tap_check "the app trusts the proxy network's subnet ($PROXY_SUBNET)" tap_expect_equal "TRUSTED_PROXIES, subnet" \
    "TRUSTED_PROXIES=$PROXY_SUBNET $PROXY_SUBNET" \
    "$(docker service inspect -f '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' "${STACK}_app" |
      grep '^TRUSTED_PROXIES=') $(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "${STACK}_proxy")"
  marker=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  client_get "/?trust=$marker" >/dev/null
  id=$(wait_for_nginx_id "$marker") || true
  tap_check "a hit through nginx is logged under nginx's request id ($id)" \
    tap_expect_equal "access_log rows with nginx's id" 1 \
    "$(db_sql "SELECT COUNT(*) FROM access_log WHERE request_id = '${id:-none}'")"
  tap_check "the database's task replaying that id straight to an app task is counted, under a fresh id" \
    replay_is_counted "$id"
}

nginx_networks() {
  tap_expect_equal "nginx tasks on the backend network" "" "$(task_ips nginx "${STACK}_backend")" &&
    tap_expect_equal "nginx tasks on the proxy network" 2 "$(task_ips nginx "${STACK}_proxy" | wc -l)"
}

# usage: nginx_request_id MARKER   (the id nginx logged for GET /?trust=MARKER)
nginx_request_id() {
  docker service logs --raw "${STACK}_nginx" 2>/dev/null | grep -E "\"GET /[?]trust=$1 HTTP/[0-9.]+\" 200 " |
    sed -n 's/.* id=\([0-9a-f]\{32\}\).*/\1/p' | grep .
}

# usage: wait_for_nginx_id MARKER   (nginx flushes its access log within a second)
wait_for_nginx_id() {
  wait_until 30 "nginx's log line for $1" nginx_request_id "$1" || {
    tap_diag "no access-log line of nginx's for GET /?trust=$1"
    return 1
  }
  nginx_request_id "$1" | head -n1
}

# usage: replay_is_counted ID   (from the database's container, on the
# backend network: GET / to an app task's backend address, with ID as
# X-Request-ID and a made-up X-Real-IP; bash's /dev/tcp, since the MySQL
# image has no HTTP client)
replay_is_counted() {
  local id=$1 db app peer before answer row_id row_client
  [[ -n $id ]] || return 1
  db=$(db_container)
  app=$(task_ips app | head -n1)
  peer=$(docker inspect -f "{{with index .NetworkSettings.Networks \"${STACK}_backend\"}}{{.IPAddress}}{{end}}" "$db")
  before=$(client_get /showcount | cut -d' ' -f2)
  # shellcheck disable=SC2016  # expanded by the container's shell
  answer=$(docker exec "$db" bash -c 'exec 3<>"/dev/tcp/$2/8000" &&
    printf "GET / HTTP/1.1\r\nHost: app\r\nX-Request-ID: %s\r\nX-Real-IP: 203.0.113.9\r\nConnection: close\r\n\r\n" "$1" >&3 &&
    timeout 20 cat <&3' bash "$id" "$app" | tr -d '\r' | head -n1) || true
  read -r row_id row_client < <(db_sql "SELECT request_id, client_ip FROM access_log ORDER BY id DESC LIMIT 1")
  tap_expect_equal "the answer" "HTTP/1.1 200 OK" "$answer" || return 1
  tap_expect_equal "the counter" $((before + 1)) "$(client_get /showcount | cut -d' ' -f2)" || return 1
  tap_expect_equal "rows with the replayed id" 1 \
    "$(db_sql "SELECT COUNT(*) FROM access_log WHERE request_id = '$id'")" || return 1
  tap_expect_equal "the new row's client (the sender, not its X-Real-IP)" "$peer" "$row_client" || return 1
  [[ $row_id =~ ^[0-9a-f]{32}$ && $row_id != "$id" ]] || {
    tap_diag "the new row's request id: $row_id"
    return 1
  }
}

step_sticky() {
  local c i home answer homes=() strays=0
  for ((c = 0; c < 6; c++)); do
    docker exec "$CLIENT" rm -f "/tmp/sticky-$c.jar"
    home=$(client_get / "/tmp/sticky-$c.jar" "$((c % 2))" | cut -d' ' -f2)
    homes+=("$home")
    for ((i = 1; i <= 10; i++)); do
      answer=$(client_get / "/tmp/sticky-$c.jar" "$(((c + i) % 2))")
      [[ $answer == "200 $home" ]] || {
        strays=$((strays + 1))
        tap_diag "client $c, request $i through nginx $(((c + i) % 2)): $answer, not $home"
      }
    done
  done
  tap_check "clients alternating between the two nginx replicas stay on one app task" \
    tap_expect_equal "requests that left their task" 0 "$strays"
  tap_check "new clients spread over the app tasks" test "$(printf '%s\n' "${homes[@]}" | sort -u | wc -l)" -gt 1
  tap_check "COOKIE_TTL_SECONDS ($COOKIE_TTL) sets both cookies' lifetime" \
    cookie_lifetimes "$(docker exec "$CLIENT" curl -sS -m 20 -I \
      --cacert /tmp/tls.crt --resolve "localhost:443:${NGINX_IPS[0]}" https://localhost/)"
}

# usage: scale N   (the checkout's scale_containers.sh, in swarm mode)
scale() {
  (cd "$WORK" && STACK=$STACK ./scale_containers.sh --swarm "$1") >>"$WORK/scale.log" 2>&1 ||
    fatal "scale_containers.sh --swarm $1 failed (see $WORK/scale.log)"
}

# usage: listed_ips   (the addresses in the last task list scale_containers.sh printed)
listed_ips() {
  awk -v task="^${STACK}_app[.]" '/^TASK / { n = 0 } $1 ~ task { ips[n++] = $2 }
    END { for (i = 0; i < n; i++) print ips[i] }' "$WORK/scale.log" | sort -V
}

step_scale() {
  local answers
  scale 2
  log "scaling 2 -> 5 -> 2 under a load of $LOAD_WORKERS sticky clients"
  load_start
  scale 5
  tap_check "scale_containers.sh --swarm 5 runs 5 app tasks" tap_expect_equal "app tasks" 5 "$(task_ips app | wc -l)"
  tap_check "and lists each with its internal (backend) address" \
    tap_expect_equal "listed addresses" "$(task_ips app | tr '\n' ' ')" "$(listed_ips | tr '\n' ' ')"
  load_mark
  wait_until 60 "answers after scaling up" load_answered 5 || true
  scale 2
  load_mark
  wait_until 60 "answers after scaling down" load_answered 5 || true
  answers=$(load_stop)
  tap_check "scale_containers.sh --swarm 2 leaves 2 app tasks" tap_expect_equal "app tasks" 2 "$(task_ips app | wc -l)"
  tap_check "no failed request while scaling 2 -> 5 -> 2" no_failures "scaling" "$answers"
}

step_rolling_update() {
  local answers images
  log "rolling update of the app image under load"
  load_start
  docker service update --quiet --image "$STACK-app:v2" "${STACK}_app" >>"$WORK/update.log" 2>&1 ||
    fatal "docker service update --image failed (see $WORK/update.log)"
  load_mark
  wait_until 60 "answers after the update" load_answered 5 || true
  answers=$(load_stop)
  images=$(docker service ps --filter desired-state=running --format '{{.Image}}' "${STACK}_app" | sort -u)
  tap_check "every app task runs the new image" tap_expect_equal "images" "$STACK-app:v2" "$images"
  tap_check "no failed request during the rolling update" no_failures "the update" "$answers"
}

# usage: container_at IP   (the local app container with that address)
container_at() {
  local id
  for id in $(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_app"); do
    if docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" | grep -qw -- "$1"; then
      echo "$id"
      return 0
    fi
  done
  return 1
}

step_kill_task() {
  local home victim moved i strays=0 before
  before=$(task_ips app | wc -l)
  docker exec "$CLIENT" rm -f /tmp/victim.jar
  home=$(client_get / /tmp/victim.jar 0 | cut -d' ' -f2)
  victim=$(container_at "$home") || fatal "no local container has the address $home"
  log "killing the app task at $home (container ${victim:0:12}); tasks: $(task_ips app | tr '\n' ' ')"
  local n
  for n in $(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_nginx"); do
    log "nginx $n resolves app to: $(docker exec "$n" getent ahostsv4 app | awk '{print $1}' | sort -u | tr '\n' ' ')"
  done
  docker kill "$victim" >/dev/null
  moved=$(client_get / /tmp/victim.jar 1)
  tap_check "the killed task's client is answered by another task" \
    answered_elsewhere "$moved" "$home"
  for ((i = 0; i < 10; i++)); do
    [[ $(client_get / /tmp/victim.jar "$((i % 2))") == "200 ${moved#* }" ]] || strays=$((strays + 1))
  done
  tap_check "and re-sticks there, through both nginx replicas" tap_expect_equal "requests elsewhere" 0 "$strays"
  tap_check "Swarm replaces the killed task" wait_until 120 "a replacement task" task_count_is "$before"
}

# usage: answered_elsewhere "STATUS BODY" HOME   (200 from another task than HOME)
answered_elsewhere() {
  [[ ${1%% *} == 200 && ${1#* } != "$2" ]] && return 0
  tap_diag "answered '${1:0:60}' (the killed task was $2); nginx's lines about it:"
  sleep 2 # nginx writes its access log at least once a second
  docker service logs --raw --tail 400 "${STACK}_nginx" 2>&1 | grep -E " (50[0-9]) |$2|error" | tail -20 >&2 || true
  return 1
}

task_count_is() {
  (($(task_ips app | wc -l) == $1))
}

step_persistence() {
  local counter
  counter=$(client_get /showcount | cut -d' ' -f2)
  log "docker stack rm, then deploy again"
  client_stop
  docker stack rm "$STACK" >/dev/null
  wait_until 120 "the stack's networks to go" stack_networks_gone || fatal "the stack's networks stayed"
  deploy "$STACK-app:v2"
  client_start
  wait_stack
  tap_check "the counter survives stack rm and a redeploy ($counter)" \
    tap_expect_equal "counter" "$counter" "$(client_get /showcount | cut -d' ' -f2)"
  tap_check "so does access_log" tap_expect_equal "rows" "$counter" "$(db_sql 'SELECT COUNT(*) FROM access_log')"
}

stack_networks_gone() {
  [[ -z $(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK") ]]
}

# --- setup and cleanup -------------------------------------------------------------------

swarm_join() {
  if [[ $(docker info --format '{{.Swarm.LocalNodeState}}') != active ]]; then
    log "creating a single-node swarm"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null || die "docker swarm init failed"
    CREATED_SWARM=1
  fi
  NODE=$(docker info --format '{{.Swarm.NodeID}}')
  docker node update --label-add webcluster.db=true "$NODE" >/dev/null
}

build_images() {
  log "building the app image, and a second tag of it for the rolling update"
  docker build -q --build-arg RUST_IMAGE="$RUST_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    -t "$STACK-app:v1" "$WORK" >"$WORK/build.log" 2>&1 || {
    tail -n 30 "$WORK/build.log" >&2
    die "building the app image failed"
  }
  printf 'FROM %s\nLABEL org.opencontainers.image.version=v2\n' "$STACK-app:v1" |
    docker build -q -t "$STACK-app:v2" - >/dev/null || die "building the v2 tag failed"
}

cleanup() {
  local status=$?
  client_stop
  if docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$STACK"; then
    docker stack rm "$STACK" >/dev/null 2>&1 || true
  fi
  wait_until 120 "the stack's networks to go" stack_networks_gone || warn "the stack's networks stayed"
  wait_until 60 "the stack's containers to go" stack_containers_gone || warn "the stack's containers stayed"
  docker volume rm "${STACK}_db-data" "${STACK}_db-logs" "${STACK}_app-logs" >/dev/null 2>&1 || true
  docker image rm "$STACK-app:v2" "$STACK-app:v1" >/dev/null 2>&1 || true
  [[ -z $NODE ]] || docker node update --label-rm webcluster.db "$NODE" >/dev/null 2>&1 || true
  if [[ -n $CREATED_SWARM ]]; then
    docker swarm leave --force >/dev/null 2>&1 || warn "could not leave the swarm"
  fi
  [[ -z $WORK ]] || rm -rf "$WORK"
  return "$status"
}

stack_containers_gone() {
  [[ -z $(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK") ]]
}

step_cleanup_checks() {
  cleanup
  WORK=
  NODE=
  CREATED_SWARM=
  tap_check "no service of the stack is left" test -z "$(docker service ls -q --filter "label=com.docker.stack.namespace=$STACK" 2>/dev/null)"
  tap_check "no secret or config of the stack is left" test -z \
    "$(docker secret ls -q --filter "label=com.docker.stack.namespace=$STACK" 2>/dev/null)$(docker config ls -q --filter "label=com.docker.stack.namespace=$STACK" 2>/dev/null)"
  tap_check "no network of the stack is left" stack_networks_gone
  tap_check "no volume of the stack is left" test -z "$(docker volume ls -q --filter "name=^${STACK}_")"
}

main() {
  require_root "it creates a swarm, builds images and runs containers"
  ! port_in_use "$HTTP_PORT" || die "port $HTTP_PORT is taken; set SWARM_HTTP_PORT"
  ! port_in_use "$HTTPS_PORT" || die "port $HTTPS_PORT is taken; set SWARM_HTTPS_PORT"
  pick_images
  make_checkout webcluster-swarm
  trap cleanup EXIT
  tap_check "shellcheck: scale_containers.sh is clean" shellcheck -x "$REPO/scale_containers.sh"
  vendor_if_offline
  build_images
  swarm_join
  (cd "$WORK" && scripts/init-secrets.sh >/dev/null 2>&1) || die "scripts/init-secrets.sh failed"
  step_deploy
  step_tls
  step_counting
  step_trust
  step_sticky
  step_scale
  step_rolling_update
  step_kill_task
  step_persistence
  step_cleanup_checks
  trap - EXIT
  tap_summary swarm
}

main "$@"
