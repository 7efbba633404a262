#!/usr/bin/env bash
# The helpers every script needs, and all that the scripts shipped into the
# database's containers (apply-sql.sh, db-member.sh) need: log lines, dying
# with one, waiting for a condition with a deadline, and passwords from
# files into SQL. Sourced, never
# executed; scripts/lib.sh sources it and adds the host-side helpers.

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
  local seconds=$1 what=$2 deadline
  deadline=$((SECONDS + seconds))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after $seconds s waiting for: $what"
      return 1
    fi
    sleep 0.2
  done
}

# usage: secret_file FILE   (prints FILE's contents without trailing line
# breaks, as the app reads DB_PASSWORD_FILE)
secret_file() {
  local value
  value=$(<"$1")
  while [[ $value == *[$'\r\n'] ]]; do value=${value%?}; done
  printf '%s' "$value"
}

# usage: sql_string TEXT   (TEXT as an SQL string literal written as its
# bytes, X'...', so a password needs no quoting)
sql_string() {
  printf "CONVERT(X'%s' USING utf8mb4)" "$(printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n')"
}
