#!/usr/bin/env bash
# Shared helpers for the project's scripts run on a host: processes, pid
# files, containers, compose, .env. Sourced, never executed; brings in
# lib-core.sh (log, warn, die, wait_until, secret_file, sql_string) too.
# shellcheck disable=SC2034  # variables here are used by the scripts that source this file

# shellcheck source=scripts/lib-core.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-core.sh"

# usage: answers_or_exited PIDFILE COMMAND [ARGS...]   (true once the process
# PIDFILE names has exited, or COMMAND succeeds: whether a server that is
# starting, or draining after a SIGTERM, comes up or goes)
answers_or_exited() {
  local pidfile=$1
  shift
  ! pid_alive "$pidfile" || "$@"
}

# usage: wait_with_progress SECONDS COMMAND [ARGS...]   (runs COMMAND every
# second until it succeeds, logging what it prints whenever that changes;
# false after SECONDS, with its last words in WAIT_STATE)
WAIT_STATE=
wait_with_progress() {
  local deadline=$((SECONDS + $1)) last=
  shift
  while :; do
    WAIT_STATE=$("$@") && return 0
    [[ $WAIT_STATE == "$last" ]] || log "waiting: $WAIT_STATE"
    last=$WAIT_STATE
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# usage: dotenv_value FILE NAME   (NAME's value in a .env FILE as Compose reads
# it: the last assignment, spaces and double quotes around it dropped;
# nothing if FILE or NAME is missing)
dotenv_value() {
  local value
  [[ -f $1 ]] || return 0
  value=$(sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n 1)
  value=${value%\"}
  printf '%s\n' "${value#\"}"
}

# usage: pick_compose   (sets COMPOSE_CMD: $COMPOSE if set, e.g.
# "docker-compose", else `docker compose` (v2), else docker-compose (v1))
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

# usage: container_health ID   (healthy | unhealthy | starting | none | gone)
container_health() {
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null ||
    echo gone
}

# usage: pid_alive PIDFILE   (true when the file names a live process; a
# zombie counts as dead: a killed process stays one until init reaps it,
# which took ~1.5 s here and may never happen in a container)
pid_alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && _pid_live "$pid"
}

_pid_live() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The state follows the command name, which is in parentheses.
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

_pid_gone() {
  ! _pid_live "$1"
}

# usage: stop_pidfile PIDFILE SECONDS   (SIGTERM, then SIGKILL after SECONDS; removes the file)
stop_pidfile() {
  local pid
  if pid_alive "$1"; then
    pid=$(<"$1")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$2" "pid $pid to exit" _pid_gone "$pid"; then
      warn "pid $pid ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_until 10 "pid $pid to exit" _pid_gone "$pid" || true
    fi
  fi
  rm -f "$1"
}

# usage: port_in_use PORT [HOST]   (something accepts TCP connections there;
# checked before a start, so a foreign server is not taken for ours)
port_in_use() {
  (: <"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

# usage: port_free PORT [HOST]
port_free() {
  ! port_in_use "$@"
}

# usage: host_container_start NAME IMAGE PROGRAM DIR [args...]   (runs
# IMAGE's PROGRAM in the background as container NAME, replacing a leftover
# one. On the host's network and pid namespace, with DIR mounted at its own
# path, so its ports, pid file, signals and paths are a host process's; --rm:
# once it exits, no container is left.)
host_container_start() {
  local name=$1 image=$2 program=$3 dir=$4
  shift 4
  container_gone "$name"
  docker run -d --rm --name "$name" --network host --pid host \
    -v "$dir:$dir" --entrypoint "$program" "$image" "$@"
}

# usage: container_gone NAME   (removes the container if there is one, and
# waits until it is gone: a --rm container may still be being removed)
container_gone() {
  docker rm -f "$1" >/dev/null 2>&1 || true
  wait_until 30 "container $1 to be removed" _container_absent "$1" ||
    die "container $1 is still there: docker rm -f $1"
}

_container_absent() {
  ! docker container inspect "$1" >/dev/null 2>&1
}

# usage: die_with_log "what failed" LOG   (shows the end of the server's log,
# then dies naming it)
die_with_log() {
  if [[ -s $2 ]]; then
    warn "last lines of $2:"
    tail -n 25 "$2" | sed 's/^/    /' >&2
  fi
  die "$1; see its log: $2"
}

# usage: rootfs_path ROOTFS PATH   (prints PATH as a process chrooted to ROOTFS
# sees it; PATH unchanged when ROOTFS is empty)
rootfs_path() {
  local root=${1%/} path=$2
  if [[ -z $root ]]; then
    printf '%s\n' "$path"
  elif [[ $path == "$root"/* ]]; then
    printf '%s\n' "${path#"$root"}"
  else
    die "$path is outside the root filesystem $root, so a chrooted server cannot see it"
  fi
}

# usage: raise_open_file_limit WANT NEED   (soft limit to WANT, or to the
# hard limit when that is lower; fails when that leaves less than NEED)
raise_open_file_limit() {
  local want=$1 hard
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ((hard >= want)) || want=$hard
  ulimit -n "$want" 2>/dev/null && ((want >= $2))
}

# usage: require_root "why"
require_root() {
  ((EUID == 0)) || die "must run as root: $1"
}

# The cache lives outside the repository so a fresh clone reuses it.
WEBCLUSTER_CACHE=${WEBCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webcluster}

# usage: new_certificate CERT KEY DAYS   (a self-signed ECDSA P-256
# certificate for localhost and 127.0.0.1, valid DAYS, and its key, mode
# 0600; neither file may exist. A leaf that is its own issuer: a client
# trusts it by taking it as its CA, e.g. curl --cacert CERT.)
new_certificate() {
  local cert=$1 key=$2 tmp
  command -v openssl >/dev/null || die "openssl is needed to create a certificate (apt-get install openssl)"
  mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
  tmp=$(mktemp -d "$(dirname "$key")/.tls.XXXXXX")
  chmod 700 "$tmp"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days "$3" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$tmp/key" -out "$tmp/cert" 2>"$tmp/log" || {
    cat "$tmp/log" >&2
    rm -rf "$tmp"
    die "openssl could not create a certificate"
  }
  chmod 600 "$tmp/key"
  chmod 644 "$tmp/cert"
  # The key first: the certificate is never there without it.
  mv -n "$tmp/key" "$key"
  mv -n "$tmp/cert" "$cert"
  rm -rf "$tmp"
}
