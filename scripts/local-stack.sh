#!/usr/bin/env bash
# The real stack without Compose: MySQL 9.7 and nginx 1.30 from the sid root
# filesystem (chroot, scripts/rootfs.sh), or from Docker images, plus dnsmasq
# and N app instances on the host.
#
# usage: scripts/local-stack.sh up [N]   start what is not running; N instances
#                                        (default: the recorded count, 3 at first)
#        scripts/local-stack.sh scale N  start or stop instances; never reloads nginx
#        scripts/local-stack.sh down     stop everything, keep the data
#        scripts/local-stack.sh purge    down, then delete the stack's data
#        scripts/local-stack.sh status   one line per server (exit 3 if one is stopped)
#        scripts/local-stack.sh mysql [--member I] [client args...]   mysql client as
#                                        root, on the primary (or member I) of a group
#        scripts/local-stack.sh reload   nginx re-reads its certificate and key
#                                        (replace them first) and nginx.conf, rendered
#                                        with the settings given (HSTS=on ...),
#                                        dropping no connection
#        scripts/local-stack.sh dir      print the stack's directory
# env (optional): STACK_NAME (default)  HTTP_PORT (8080)  MYSQL_PORT (13306)
#   TLS (off: plain HTTP on HTTP_PORT, as the e2e tests speak; on: HTTPS with
#   HTTP/2 on HTTPS_PORT (8443), and HTTP_PORT redirects there. The
#   certificate is the stack's tls/tls.crt and tls/tls.key: self-signed for
#   localhost and 127.0.0.1, made on the first `up` with TLS=on)  HSTS (off)
#   TRUSTED_BALANCERS (none; with TLS=off, whose X-Forwarded-Proto nginx passes
#   on: read whenever nginx.conf is rendered, not recorded)
#   DB_MEMBERS (1: one MySQL server; 3: a Group Replication group whose member
#   i listens on MYSQL_PORT + i - 1, the app given all of them; the root
#   filesystem's mysqld only)
#   DNS_PORT (5353)  APP_PORT (8000)  METRICS_PORT (9100)  APP_NET (127.0.0: instance i is APP_NET.(i+1))
#   COOKIE_TTL_SECONDS (300: the lifetime of both stickiness cookies, nginx's and the app's)
#   APP_BIN (target/release/webcluster, built by cargo)  MYSQL_IMAGE,
#   NGINX_IMAGE (the servers of those Docker images instead of the chroot's,
#   e.g. mysql:9.7 and nginx:1.30: containers on the host's network and pid
#   namespace). With both servers from images no root filesystem is built, and the stack
#   lives in $WEBCLUSTER_CACHE/stacks/STACK_NAME. Settings are recorded in the
#   stack's stack.env and reused by later commands. Other exported variables
#   (LOG_LEVEL, WORKERS, ...) reach the app instances; TRUSTED_PROXIES defaults
#   to nginx's own address, APP_NET.1, which it connects from (proxy_bind).
set -Eeuo pipefail
ME=local-stack
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
REPO=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
# shellcheck source=scripts/mysql-server.sh
source "$HERE/mysql-server.sh"
# shellcheck source=scripts/db-group.sh
source "$HERE/db-group.sh"

DB_NAME=webcluster
# The app's account: passed to apply-sql.sh and to the app, and recorded.
APP_USER=webcluster_app
# Settings recorded in stack.env (besides the paths and INSTANCES).
SETTINGS=(HTTP_PORT MYSQL_PORT DNS_PORT APP_PORT METRICS_PORT APP_NET APP_BIN MYSQL_IMAGE NGINX_IMAGE COOKIE_TTL_SECONDS DB_MEMBERS TLS HTTPS_PORT HSTS)
# The generated certificate's lifetime.
TLS_CERT_DAYS=365
APP_START_SECONDS=30
# A new group elects its primary within about 20 s; a single server is up already.
DB_GROUP_FORM_SECONDS=120
# nginx re-resolves the app name every second (resolver valid=1s).
DNS_SETTLE_SECONDS=1.5
APP_NOFILE=65536
NGINX_START_SECONDS=10
# The app drains for up to SHUTDOWN_TIMEOUT_MS after SIGTERM.
APP_STOP_SECONDS=$((${SHUTDOWN_TIMEOUT_MS:-10000} / 1000 + 5))

ROOTFS=
STACK_DIR=
RUN_DIR=
LOG_DIR=
NGINX_ROOT=   # chroot directory for nginx; empty for an image
NGINX=()
NGINX_CONTAINER= # nginx's container when it runs from NGINX_IMAGE

# usage: _stack_saved KEY DEFAULT   (prints KEY from stack.env, else DEFAULT)
_stack_saved() {
  local line
  if [[ -f $STACK_DIR/stack.env ]]; then
    line=$(grep -m1 "^$1=" "$STACK_DIR/stack.env" || true)
    [[ -z $line ]] || { printf '%s\n' "${line#*=}"; return 0; }
  fi
  printf '%s\n' "$2"
}

# usage: stack_settings   (environment, else stack.env, else defaults; validated)
stack_settings() {
  STACK_NAME=${STACK_NAME:-default}
  [[ $STACK_NAME =~ ^[a-z0-9-]{1,32}$ ]] || die "STACK_NAME must match ^[a-z0-9-]{1,32}\$, got: $STACK_NAME"
  require_root "MySQL and nginx run in a chroot or in containers"
  if _stack_needs_rootfs; then
    ROOTFS=$(bash "$HERE/rootfs.sh")
    STACK_DIR=$ROOTFS/var/lib/webcluster/$STACK_NAME
  else
    ROOTFS=
    STACK_DIR=$WEBCLUSTER_CACHE/stacks/$STACK_NAME
  fi
  RUN_DIR=$STACK_DIR/run
  LOG_DIR=$STACK_DIR/log
  HTTP_PORT=${HTTP_PORT:-$(_stack_saved HTTP_PORT 8080)}
  MYSQL_PORT=${MYSQL_PORT:-$(_stack_saved MYSQL_PORT 13306)}
  DNS_PORT=${DNS_PORT:-$(_stack_saved DNS_PORT 5353)}
  APP_PORT=${APP_PORT:-$(_stack_saved APP_PORT 8000)}
  METRICS_PORT=${METRICS_PORT:-$(_stack_saved METRICS_PORT 9100)}
  APP_NET=${APP_NET:-$(_stack_saved APP_NET 127.0.0)}
  APP_BIN=${APP_BIN:-$(_stack_saved APP_BIN "")}
  MYSQL_IMAGE=${MYSQL_IMAGE:-$(_stack_saved MYSQL_IMAGE "")}
  NGINX_IMAGE=${NGINX_IMAGE:-$(_stack_saved NGINX_IMAGE "")}
  COOKIE_TTL_SECONDS=${COOKIE_TTL_SECONDS:-$(_stack_saved COOKIE_TTL_SECONDS 300)}
  DB_MEMBERS=${DB_MEMBERS:-$(_stack_saved DB_MEMBERS 1)}
  TLS=${TLS:-$(_stack_saved TLS off)}
  HTTPS_PORT=${HTTPS_PORT:-$(_stack_saved HTTPS_PORT 8443)}
  HSTS=${HSTS:-$(_stack_saved HSTS off)}
  _stack_validate
  _stack_forget_old_pids
  mysql_configure "$ROOTFS" "" "$MYSQL_IMAGE" "webcluster-$STACK_NAME-mysqld"
  ((DB_MEMBERS == 1)) || group_configure "$STACK_DIR" "$MYSQL_PORT" "$DB_MEMBERS"
  NGINX_CONTAINER=
  if [[ -n $NGINX_IMAGE ]]; then
    NGINX_ROOT=
    NGINX_CONTAINER=webcluster-$STACK_NAME-nginx
    NGINX=(host_container_start "$NGINX_CONTAINER" "$NGINX_IMAGE" nginx "$STACK_DIR")
  else
    NGINX_ROOT=$ROOTFS
    NGINX=(chroot "$ROOTFS" nginx)
  fi
}

# usage: _stack_needs_rootfs   (a server comes from the chroot: the stack's
# directory must then be inside it. Only the environment decides, since the
# recorded settings are inside that directory.)
_stack_needs_rootfs() {
  [[ -z ${MYSQL_IMAGE:-} ]] || [[ -z ${NGINX_IMAGE:-} ]]
}

# usage: _stack_forget_old_pids   (pid files from before a reboot name other
# processes now: never signal those; stack_up records the boot)
_stack_forget_old_pids() {
  [[ -f $RUN_DIR/boot-id ]] || return 0
  [[ $(<"$RUN_DIR/boot-id") != "$(</proc/sys/kernel/random/boot_id)" ]] || return 0
  warn "forgetting the pid files of stack '$STACK_NAME': the machine rebooted since"
  rm -rf "${RUN_DIR:?}"/*
}

_stack_validate() {
  local name
  for name in HTTP_PORT HTTPS_PORT MYSQL_PORT DNS_PORT APP_PORT METRICS_PORT; do
    _stack_is_port "${!name}" || die "$name must be a TCP port (1-65535), got: ${!name}"
  done
  # Only loopback: instances bind APP_NET.2, APP_NET.3, ...
  _stack_is_loopback_net "$APP_NET" ||
    die "APP_NET must be the first three octets of a 127.0.0.0/8 address (e.g. 127.0.0), got: $APP_NET"
  [[ $DB_MEMBERS =~ ^[1-9]$ ]] || die "DB_MEMBERS must be 1 (one server) or a group's size (3), got: $DB_MEMBERS"
  [[ $TLS == on || $TLS == off ]] || die "TLS must be on or off, got: $TLS"
  [[ $HSTS == on || $HSTS == off ]] || die "HSTS must be on or off, got: $HSTS"
}

_stack_is_port() {
  [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] && (($1 <= 65535))
}

_stack_is_loopback_net() {
  [[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] <= 255 && BASH_REMATCH[2] <= 255))
}

# usage: _stack_count COMMAND N   (N must be an instance count: 1-253, as
# instance N listens on APP_NET.(N+1))
_stack_count() {
  [[ $2 =~ ^[1-9][0-9]{0,2}$ ]] && (($2 <= 253)) && return 0
  die "$1: the number of instances must be 1-253, got: '$2'"
}

# usage: stack_db_host   (the app's DB_HOST, with DB_PORT=MYSQL_PORT: the
# server, or every member as host:port)
stack_db_host() {
  if ((DB_MEMBERS == 1)); then
    printf '127.0.0.1\n'
  else
    group_members
  fi
}

# usage: stack_db_up   (init on first use, start, wait, apply sql/ every time;
# to a group's primary, once the group has formed)
stack_db_up() {
  local password_file=$STACK_DIR/app-db-password
  if ((DB_MEMBERS == 1)); then
    mysql_start "$STACK_DIR" "$MYSQL_PORT"
  else
    group_up
  fi
  if [[ ! -s $password_file ]]; then
    # Generated once and kept: the app instances read it on every start.
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$password_file.tmp")
    mv "$password_file.tmp" "$password_file"
  fi
  env -u DB_ROOT_PASSWORD_FILE -u APP_DB_PASSWORD \
    DB_HOST="$(stack_db_host)" DB_PORT="$MYSQL_PORT" DB_NAME="$DB_NAME" DB_ROOT_USER=root \
    DB_WAIT_SECONDS="$((DB_MEMBERS == 1 ? 0 : DB_GROUP_FORM_SECONDS))" \
    DB_ROOT_PASSWORD='' APP_DB_PASSWORD_FILE="$password_file" APP_DB_USER="$APP_USER" \
    MYSQL_CLIENT="$(mysql_client_command)" "$HERE/apply-sql.sh" >&2
}

# usage: stack_app_bin [--build]   (prints the app binary; --build first runs
# cargo for the default one. Only `up` builds, so `scale` starts the same build.)
stack_app_bin() {
  local bin=${APP_BIN:-$REPO/target/release/webcluster}
  if [[ -z $APP_BIN ]] && [[ ${1:-} == --build ]]; then
    # cargo decides whether the binary is stale.
    (cd "$REPO" && cargo build --release --bin webcluster >&2) ||
      die "cargo build --release failed (run it in $REPO to see why)"
  fi
  [[ -x $bin ]] || die "the app binary is missing or not executable: $bin (set APP_BIN, or run up to build it)"
  readlink -f "$bin"
}

# usage: stack_app_ip I   (instance I, counted from 1)
stack_app_ip() {
  printf '%s.%s\n' "$APP_NET" "$(($1 + 1))"
}

# usage: stack_app_start I BIN   (in the background; quiet if it runs)
stack_app_start() {
  local i=$1 bin=$2 ip pidfile=$RUN_DIR/app-$1.pid log=$LOG_DIR/app-$1.log
  ip=$(stack_app_ip "$i")
  if pid_alive "$pidfile"; then
    # Starting, or draining after a SIGTERM: wait to see which.
    wait_until "$APP_STOP_SECONDS" "app-$i to answer or exit" \
      answers_or_exited "$pidfile" _stack_healthy "http://$ip:$APP_PORT/healthz" || true
    pid_alive "$pidfile" && return 0
  fi
  port_in_use "$APP_PORT" "$ip" && die "cannot start app-$i: $ip:$APP_PORT is already in use"
  log "starting app-$i on $ip:$APP_PORT (log: $log)"
  # The caller's exported settings pass through; these win. DB_PASSWORD would
  # clash with DB_PASSWORD_FILE. Only nginx's address is a trusted proxy,
  # unless the caller says otherwise. Each connection holds two descriptors,
  # for up to MAX_CONNECTIONS of them: a limit of 1024 would run out first.
  (
    raise_open_file_limit "$APP_NOFILE" 4096 ||
      warn "app-$i may run out of file descriptors below MAX_CONNECTIONS: ulimit -n is $(ulimit -n)"
    exec env -u DB_PASSWORD LISTEN_ADDR="$ip:$APP_PORT" INTERNAL_IP="$ip" \
      METRICS_ADDR="$ip:$METRICS_PORT" COOKIE_TTL_SECONDS="$COOKIE_TTL_SECONDS" \
      TRUSTED_PROXIES="${TRUSTED_PROXIES:-$(stack_nginx_ip)}" \
      DB_HOST="$(stack_db_host)" DB_PORT="$MYSQL_PORT" DB_NAME="$DB_NAME" DB_USER="$APP_USER" \
      DB_PASSWORD_FILE="$STACK_DIR/app-db-password" LOG_DIR="$LOG_DIR/app" \
      setsid "$bin" </dev/null >>"$log" 2>&1
  ) &
  printf '%s\n' "$!" >"$pidfile"
}

# usage: stack_nginx_ip   (the address nginx connects to the instances from:
# APP_NET.1, just below instance 1)
stack_nginx_ip() {
  printf '%s.1\n' "$APP_NET"
}

# usage: stack_app_wait I   (until /healthz answers 200, or the instance died)
stack_app_wait() {
  local pidfile=$RUN_DIR/app-$1.pid log=$LOG_DIR/app-$1.log url
  url="http://$(stack_app_ip "$1"):$APP_PORT/healthz"
  wait_until "$APP_START_SECONDS" "app-$1 at $url" answers_or_exited "$pidfile" _stack_healthy "$url" || true
  pid_alive "$pidfile" || die_with_log "app-$1 exited while starting" "$log"
  _stack_healthy "$url" || die_with_log "app-$1 did not answer $url with 200 within $APP_START_SECONDS s" "$log"
}

_stack_healthy() {
  curl -fsS -o /dev/null --max-time 2 "$1"
}

# usage: stack_apps_stop I...   (SIGTERM to all first, so they drain in parallel)
stack_apps_stop() {
  local i
  for i in "$@"; do
    if pid_alive "$RUN_DIR/app-$i.pid"; then
      log "stopping app-$i (pid $(<"$RUN_DIR/app-$i.pid"))"
      kill -TERM "$(<"$RUN_DIR/app-$i.pid")" 2>/dev/null || true
    fi
  done
  for i in "$@"; do
    stop_pidfile "$RUN_DIR/app-$i.pid" "$APP_STOP_SECONDS"
  done
}

# usage: stack_app_numbers   (prints the instance numbers that have a pid file)
stack_app_numbers() {
  local file name
  for file in "$RUN_DIR"/app-*.pid; do
    [[ -e $file ]] || continue
    name=${file##*/app-}
    printf '%s\n' "${name%.pid}"
  done | sort -n
}

# usage: stack_dns_update N   (the name `app` answers with instances 1..N;
# dnsmasq is started, or re-reads the file on SIGHUP. nginx re-resolves
# within valid=1s, so nothing else is told.)
stack_dns_update() {
  local i hosts=$STACK_DIR/dnsmasq.hosts pidfile=$RUN_DIR/dnsmasq.pid
  for ((i = 1; i <= $1; i++)); do
    printf '%s app\n' "$(stack_app_ip "$i")"
  done >"$hosts.tmp"
  mv "$hosts.tmp" "$hosts"
  if pid_alive "$pidfile"; then
    kill -HUP "$(<"$pidfile")"
  else
    _stack_dns_start
  fi
}

_stack_dns_start() {
  local log=$LOG_DIR/dnsmasq.log
  log "starting dnsmasq on 127.0.0.1:$DNS_PORT (log: $log)"
  # --user=root: dnsmasq reads the hosts file (at start and on SIGHUP) after
  # dropping privileges, and the file sits under root's 0700 home.
  dnsmasq --no-resolv --no-hosts --addn-hosts="$STACK_DIR/dnsmasq.hosts" \
    --listen-address=127.0.0.1 --port="$DNS_PORT" --bind-interfaces --user=root \
    --pid-file="$RUN_DIR/dnsmasq.pid" --log-facility="$log" 2>>"$log" ||
    die_with_log "dnsmasq failed to start on 127.0.0.1:$DNS_PORT" "$log"
  pid_alive "$RUN_DIR/dnsmasq.pid" || die_with_log "dnsmasq exited while starting" "$log"
}

# usage: stack_nginx_render   (the repository's nginx.conf with this stack's
# addresses, ports and paths, through the one renderer every deployment uses)
stack_nginx_render() {
  env "NGINX_LISTEN=127.0.0.1:$HTTP_PORT" "NGINX_RESOLVER=127.0.0.1:$DNS_PORT" \
    "NGINX_UPSTREAM=app:$APP_PORT" "NGINX_PROXY_BIND=$(stack_nginx_ip)" \
    "NGINX_ACCESS_LOG=$(rootfs_path "$NGINX_ROOT" "$LOG_DIR/nginx-access.log")" \
    "COOKIE_TTL_SECONDS=$COOKIE_TTL_SECONDS" "TLS=$TLS" "HSTS=$HSTS" \
    "NGINX_HTTPS_LISTEN=127.0.0.1:$HTTPS_PORT" "HTTPS_PORT=$HTTPS_PORT" \
    "NGINX_TLS_CERT=$(rootfs_path "$NGINX_ROOT" "$STACK_DIR/tls/tls.crt")" \
    "NGINX_TLS_KEY=$(rootfs_path "$NGINX_ROOT" "$STACK_DIR/tls/tls.key")" \
    "NGINX_ACME_ROOT=$(rootfs_path "$NGINX_ROOT" "$STACK_DIR/acme")" \
    sh "$HERE/nginx-conf.sh" render "$REPO/nginx.conf" "$STACK_DIR/nginx.conf" ||
    die "cannot render nginx.conf for stack '$STACK_NAME'"
}

# usage: stack_tls_files   (TLS=on: the stack's certificate and key, made
# when neither exists; the ACME webroot)
stack_tls_files() {
  local cert=$STACK_DIR/tls/tls.crt key=$STACK_DIR/tls/tls.key
  [[ $TLS == on ]] || return 0
  mkdir -p "$STACK_DIR/acme"
  [[ -e $cert && -e $key ]] && return 0
  [[ ! -e $cert && ! -e $key ]] || die "$cert or $key is missing: put both back, or remove the other"
  new_certificate "$cert" "$key" "$TLS_CERT_DAYS"
  log "created a self-signed certificate for localhost and 127.0.0.1: $cert"
}

# usage: stack_reload   (nginx.conf rendered again, with the settings given
# now, e.g. HSTS=on; then SIGHUP: nginx re-reads it, the certificate and the
# key; old workers finish their requests, no connection is dropped)
stack_reload() {
  local pidfile=$RUN_DIR/nginx.pid
  pid_alive "$pidfile" || die "nginx of stack '$STACK_NAME' is not running"
  stack_tls_files
  stack_nginx_render
  stack_write_env "$(_stack_saved INSTANCES 0)"
  kill -HUP "$(<"$pidfile")"
  log "nginx (pid $(<"$pidfile")) reloads"
}

# usage: stack_nginx_up   (renders the config and starts nginx unless it runs)
stack_nginx_up() {
  local pidfile=$RUN_DIR/nginx.pid log=$LOG_DIR/nginx-error.log in_pid in_log in_conf
  pid_alive "$pidfile" && return 0
  stack_tls_files
  stack_nginx_render
  in_pid=$(rootfs_path "$NGINX_ROOT" "$pidfile")
  in_log=$(rootfs_path "$NGINX_ROOT" "$log")
  in_conf=$(rootfs_path "$NGINX_ROOT" "$STACK_DIR/nginx.conf")
  log "starting nginx${NGINX_IMAGE:+ from $NGINX_IMAGE} on 127.0.0.1:$HTTP_PORT (log: $log)"
  # nginx.conf has no pid or error_log lines: the image and this stack differ.
  local globals="pid $in_pid; error_log $in_log info;"
  # In a container, nginx's master must stay the container's process.
  [[ -z $NGINX_CONTAINER ]] || globals+=" daemon off;"
  "${NGINX[@]}" -e "$in_log" -c "$in_conf" -g "$globals" >>"$log" 2>&1 ||
    die_with_log "nginx failed to start" "$log"
  wait_until "$NGINX_START_SECONDS" "nginx on port $HTTP_PORT" _stack_http_answers "http://127.0.0.1:$HTTP_PORT/healthz" ||
    die_with_log "nginx did not answer on 127.0.0.1:$HTTP_PORT within $NGINX_START_SECONDS s" "$log"
  [[ $TLS == off ]] ||
    wait_until "$NGINX_START_SECONDS" "nginx on port $HTTPS_PORT" _stack_http_answers \
      "https://127.0.0.1:$HTTPS_PORT/healthz" --cacert "$STACK_DIR/tls/tls.crt" ||
    die_with_log "nginx did not answer on https://127.0.0.1:$HTTPS_PORT within $NGINX_START_SECONDS s" "$log"
}

# usage: _stack_http_answers URL [CURL ARGS...]   (any HTTP status will do;
# /healthz, not /, which would count a hit)
_stack_http_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${@:2}" "$1" || true)
  [[ $code != 000 ]]
}

# usage: stack_apps_converge N BIN   (instances 1..N run and are healthy, the
# DNS name lists exactly them, instances above N are stopped)
stack_apps_converge() {
  local n=$1 bin=$2 i extra=()
  for ((i = 1; i <= n; i++)); do
    stack_app_start "$i" "$bin"
  done
  for ((i = 1; i <= n; i++)); do
    stack_app_wait "$i"
  done
  mapfile -t extra < <(stack_app_numbers | awk -v n="$n" '$1 > n')
  # New instances are added to DNS once healthy; old ones are removed from it,
  # and nginx given time to re-resolve (valid=1s), before they stop.
  stack_dns_update "$n"
  if ((${#extra[@]} > 0)); then
    sleep "$DNS_SETTLE_SECONDS"
    stack_apps_stop "${extra[@]}"
  fi
  stack_write_env "$n"
}

# usage: stack_write_env INSTANCES   (machine-readable KEY=VALUE, read by tests)
stack_write_env() {
  local name
  {
    printf 'STACK_NAME=%s\nSTACK_DIR=%s\nINSTANCES=%s\nDB_NAME=%s\n' \
      "$STACK_NAME" "$STACK_DIR" "$1" "$DB_NAME"
    printf 'APP_USER=%s\nAPP_DB_PASSWORD_FILE=%s\nLOG_DIR=%s\n' "$APP_USER" "$STACK_DIR/app-db-password" "$LOG_DIR/app"
    for name in "${SETTINGS[@]}"; do
      printf '%s=%s\n' "$name" "${!name}"
    done
  } >"$STACK_DIR/stack.env.tmp"
  mv "$STACK_DIR/stack.env.tmp" "$STACK_DIR/stack.env"
}

# usage: stack_check_unchanged   (a running stack keeps its ports and binaries)
stack_check_unchanged() {
  local name saved
  [[ -f $STACK_DIR/stack.env ]] && stack_any_running || return 0
  for name in "${SETTINGS[@]}"; do
    saved=$(_stack_saved "$name" "")
    [[ $saved == "${!name}" ]] ||
      die "stack '$STACK_NAME' runs with $name=$saved, not ${!name}: run down first, or pick another STACK_NAME"
  done
}

# usage: stack_any_running
stack_any_running() {
  local file
  for file in "$RUN_DIR"/*.pid; do
    pid_alive "$file" && return 0
  done
  return 1
}

# usage: stack_up [N]
stack_up() {
  local n=${1:-$(_stack_saved INSTANCES 3)} bin
  _stack_count up "$n"
  stack_check_unchanged
  mkdir -p "$RUN_DIR" "$LOG_DIR/app"
  cp /proc/sys/kernel/random/boot_id "$RUN_DIR/boot-id"
  bin=$(stack_app_bin --build)
  stack_db_up
  # Recorded now: status, mysql and down find the database even if an
  # instance fails to start.
  stack_write_env "$n"
  stack_apps_converge "$n" "$bin"
  stack_nginx_up
  log "stack '$STACK_NAME' is up with $n instances"
  if [[ $TLS == on ]]; then
    printf 'URL:      https://127.0.0.1:%s/ (curl --cacert %s; http://127.0.0.1:%s/ redirects)\n' \
      "$HTTPS_PORT" "$STACK_DIR/tls/tls.crt" "$HTTP_PORT"
  else
    printf 'URL:      http://127.0.0.1:%s/\n' "$HTTP_PORT"
  fi
  cat <<EOT
database: scripts/local-stack.sh mysql   (or mysql -h127.0.0.1 -P$MYSQL_PORT -uroot $DB_NAME)
status:   scripts/local-stack.sh status  (settings in $STACK_DIR/stack.env)
EOT
  ((DB_MEMBERS == 1)) ||
    printf 'members:  %s (scripts/local-stack.sh mysql --member I)\n' "$(group_members)"
}

# usage: stack_scale N
stack_scale() {
  local bin
  _stack_count scale "${1:-}"
  stack_is_up || die "stack '$STACK_NAME' is not up: run scripts/local-stack.sh up first"
  bin=$(stack_app_bin)
  stack_apps_converge "$1" "$bin"
  log "stack '$STACK_NAME' runs $1 instances"
}

# usage: stack_is_up   (nginx and dnsmasq run)
stack_is_up() {
  pid_alive "$RUN_DIR/nginx.pid" && pid_alive "$RUN_DIR/dnsmasq.pid"
}

# usage: stack_down   (quiet when nothing runs)
stack_down() {
  local instances=()
  [[ -d $RUN_DIR ]] || return 0
  stop_pidfile "$RUN_DIR/nginx.pid" 10
  [[ -z $NGINX_CONTAINER ]] || container_gone "$NGINX_CONTAINER"
  mapfile -t instances < <(stack_app_numbers)
  ((${#instances[@]} == 0)) || stack_apps_stop "${instances[@]}"
  stop_pidfile "$RUN_DIR/dnsmasq.pid" 10
  if ((DB_MEMBERS == 1)); then
    mysql_stop "$STACK_DIR"
  else
    group_down
  fi
  log "stack '$STACK_NAME' is down (data kept in $STACK_DIR)"
}

# usage: stack_purge   (down, then delete the stack's directory)
stack_purge() {
  stack_down
  # STACK_NAME is validated, so this is always one stack's own directory.
  [[ $STACK_DIR == "$ROOTFS/var/lib/webcluster/$STACK_NAME" ]] ||
    [[ $STACK_DIR == "$WEBCLUSTER_CACHE/stacks/$STACK_NAME" ]] || die "refusing to delete $STACK_DIR"
  rm -rf "$STACK_DIR"
  log "stack '$STACK_NAME' purged"
}

# usage: stack_status   (exit 3 when a server of the stack is stopped)
stack_status() {
  local n i status=0
  [[ -f $STACK_DIR/stack.env ]] || { log "stack '$STACK_NAME' does not exist ($STACK_DIR)"; return 3; }
  n=$(_stack_saved INSTANCES 0)
  if ((DB_MEMBERS == 1)); then
    _stack_status_line mysqld "$RUN_DIR/mysqld.pid" "127.0.0.1:$MYSQL_PORT" || status=3
  else
    _stack_status_members || status=3
  fi
  _stack_status_line dnsmasq "$RUN_DIR/dnsmasq.pid" "127.0.0.1:$DNS_PORT app -> $(_stack_dns_names)" || status=3
  local urls=http://127.0.0.1:$HTTP_PORT/
  [[ $TLS == off ]] || urls="https://127.0.0.1:$HTTPS_PORT/ $urls"
  _stack_status_line nginx "$RUN_DIR/nginx.pid" "$urls" || status=3
  for i in $( (seq 1 "$n"; stack_app_numbers) | sort -nu); do
    _stack_status_line "app-$i" "$RUN_DIR/app-$i.pid" "$(stack_app_ip "$i"):$APP_PORT" || status=3
  done
  return "$status"
}

# usage: _stack_status_line NAME PIDFILE DETAIL
_stack_status_line() {
  if pid_alive "$2"; then
    printf '%-8s running  pid %-8s %s\n' "$1" "$(<"$2")" "$3"
  else
    printf '%-8s stopped  pid %-8s %s\n' "$1" - "$3"
    return 1
  fi
}

# usage: _stack_status_members   (per member: mysqld-I, its address and
# role, then its agent)
_stack_status_members() {
  local i dir status=0
  for ((i = 1; i <= DB_MEMBERS; i++)); do
    dir=$(group_member_dir "$i")
    _stack_status_line "mysqld-$i" "$dir/run/mysqld.pid" \
      "127.0.0.1:$(group_member_port "$i") $(group_member_role "$i")" || status=3
    _stack_status_line "agent-$i" "$dir/run/agent.pid" "log: $dir/log/agent.log" || status=3
  done
  return "$status"
}

_stack_dns_names() {
  [[ -f $STACK_DIR/dnsmasq.hosts ]] || return 0
  awk '{ printf "%s ", $1 }' "$STACK_DIR/dnsmasq.hosts"
}

# usage: stack_mysql [--member I] [client args...]   (root on the app
# database: the server, a group's primary, or its member I)
stack_mysql() {
  local member port=$MYSQL_PORT
  if [[ ${1:-} == --member ]]; then
    member=${2:-}
    ((DB_MEMBERS > 1)) || die "--member: stack '$STACK_NAME' has one server (DB_MEMBERS=1)"
    [[ $member =~ ^[1-9]$ ]] || member=0
    ((member >= 1 && member <= DB_MEMBERS)) || die "--member takes 1-$DB_MEMBERS, got: '${2:-}'"
    shift 2
  elif ((DB_MEMBERS > 1)); then
    member=$(group_primary) || die "no member of stack '$STACK_NAME' takes writes now (status shows each)"
  fi
  if [[ -n ${member:-} ]]; then
    port=$(group_member_port "$member")
    mysql_running "$(group_member_dir "$member")" ||
      die "member $member of stack '$STACK_NAME' is not running: scripts/local-stack.sh up"
  else
    mysql_running "$STACK_DIR" ||
      die "mysqld of stack '$STACK_NAME' is not running: scripts/local-stack.sh up"
  fi
  mysql_client "$port" -uroot -D "$DB_NAME" "$@"
}

# usage: stack_dir
stack_dir() {
  printf '%s\n' "$STACK_DIR"
}

main() {
  local command=${1:-}
  shift || true
  case $command in
    up | scale | down | purge | status | mysql | reload | dir) ;;
    *) die "usage: $0 up [N] | scale N | down | purge | status | mysql [--member I] [args...] | reload | dir" ;;
  esac
  stack_settings
  "stack_$command" "$@"
}

main "$@"
