#!/usr/bin/env bash
# Shared helpers for the project's scripts. Sourced, never executed.
# shellcheck disable=SC2034  # variables here are used by the scripts that source this file

# usage: log "message"   (timestamped, to stderr, tagged with the calling script)
log() {
  printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "${ME:-${0##*/}}" "$*" >&2
}

# usage: warn "message"
warn() {
  log "warning: $*"
}

# usage: die "message"   (exits 1)
die() {
  log "error: $*"
  exit 1
}

# usage: wait_until SECONDS "what we wait for" command [args...]
# Polls the command every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
  local deadline what
  deadline=$((SECONDS + $1))
  what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after $1 s waiting for: $what"
      return 1
    fi
    sleep 0.2
  done
}

# usage: is_running PIDFILE   (true when the file names a live process)
is_running() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# usage: stop_pidfile PIDFILE SECONDS   (SIGTERM, then SIGKILL after SECONDS; removes the file)
stop_pidfile() {
  local pid
  if is_running "$1"; then
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

_pid_gone() {
  ! kill -0 "$1" 2>/dev/null
}

# usage: require_root "why"
require_root() {
  ((EUID == 0)) || die "must run as root: $1"
}

# The cache lives outside the repository so a fresh clone reuses it.
WEBCLUSTER_CACHE=${WEBCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webcluster}
