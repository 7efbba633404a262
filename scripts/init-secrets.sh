#!/usr/bin/env bash
# Creates what `docker compose up` needs before its first run, and nothing
# that exists already:
#   secrets/mysql_root_password  MySQL's root password        } random, mode
#   secrets/app_db_password      the app's EXECUTE-only account } 0600
#   secrets/repl_password        a database group's replication }
#                                account (docker-compose.group.yml)
#   .env                         from .env.example, with APP_UID/APP_GID set
#                                to yours, plus SECRETS_DIR=./secrets
# The app container runs as APP_UID and reads its password file: run as root,
# this hands that file (and logs/) to APP_UID; otherwise they are yours.
#
# usage: scripts/init-secrets.sh
set -Eeuo pipefail
ME=init-secrets
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
REPO=$(dirname "$HERE")
SECRETS=$REPO/secrets
ENV_FILE=$REPO/.env
NAMES=(mysql_root_password app_db_password repl_password)

# usage: new_secret FILE   (32 random hex digits, mode 0600, written whole or not at all)
new_secret() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
  chmod 600 "$tmp"
  mv -n "$tmp" "$1"
  rm -f "$tmp"
}

make_secrets() {
  local name file
  mkdir -p "$SECRETS"
  chmod 700 "$SECRETS"
  for name in "${NAMES[@]}"; do
    file=$SECRETS/$name
    if [[ -s $file ]]; then
      log "kept $file"
    else
      # An empty file holds no password: it is replaced.
      rm -f "$file"
      new_secret "$file"
      log "created $file"
    fi
  done
}

# usage: env_value NAME DEFAULT   (NAME's value in .env, else DEFAULT)
env_value() {
  local value
  value=$(dotenv_value "$ENV_FILE" "$1")
  printf '%s\n' "${value:-$2}"
}

make_env() {
  local uid gid
  if [[ ! -f $ENV_FILE ]]; then
    # root's files would be root's in logs/: an ordinary uid runs the app.
    uid=$(id -u) gid=$(id -g)
    ((uid != 0)) || uid=1000 gid=1000
    sed -e "s/^APP_UID=.*/APP_UID=$uid/" -e "s/^APP_GID=.*/APP_GID=$gid/" \
      "$REPO/.env.example" >"$ENV_FILE"
    log "created $ENV_FILE from .env.example (APP_UID=$uid, APP_GID=$gid)"
  fi
  if ! grep -q '^SECRETS_DIR=' "$ENV_FILE"; then
    printf '\n# Added by scripts/init-secrets.sh: where the password files are.\nSECRETS_DIR=./secrets\n' >>"$ENV_FILE"
    log "added SECRETS_DIR=./secrets to $ENV_FILE"
  fi
}

# The app reads its password as APP_UID, and writes logs/ as APP_UID.
hand_to_app() {
  local uid gid
  uid=$(env_value APP_UID 1000)
  gid=$(env_value APP_GID 1000)
  [[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ ]] || die "APP_UID and APP_GID in .env must be numbers, got: $uid $gid"
  mkdir -p "$REPO/logs"
  if ((EUID == 0)); then
    chown "$uid:$gid" "$SECRETS/app_db_password" "$REPO/logs"
  elif [[ $uid != "$(id -u)" ]]; then
    warn "the app runs as APP_UID=$uid but secrets/app_db_password is yours ($(id -u)): set APP_UID=$(id -u) in .env, or run this as root"
  fi
}

main() {
  (($# == 0)) || die "usage: $0   (takes no arguments)"
  make_secrets
  make_env
  hand_to_app
  log "ready: docker compose up -d --build"
}

main "$@"
