#!/usr/bin/env bash
# Creates what `docker compose up` needs before its first run, and nothing
# that exists already:
#   secrets/mysql_root_password  MySQL's root password        } random, mode
#   secrets/app_db_password      the app's EXECUTE-only account } 0600
#   secrets/repl_password        a database group's replication }
#                                account (docker-compose.group.yml)
#   .env                         from .env.example, with APP_UID/APP_GID set
#                                to yours, plus SECRETS_DIR=./secrets
#   secrets/tls.crt, tls.key     nginx's certificate: self-signed (ECDSA P-256)
#                                for localhost and 127.0.0.1, the key mode
#                                0600, where .env's TLS_CERT_FILE and
#                                TLS_KEY_FILE name no file yet; a certificate
#                                of your own there is never touched
#   acme/                        the webroot nginx serves the ACME challenge from
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
# The generated certificate's lifetime.
CERT_DAYS=365

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

# usage: repo_path PATH   (a path from .env, relative to the repository as
# Compose reads it)
repo_path() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$REPO" "${1#./}" ;;
  esac
}

# nginx's certificate and key, where .env names them: made when neither
# exists, kept when both do; one without the other is a mistake to report,
# not to repair by overwriting.
make_certificate() {
  local cert key
  cert=$(repo_path "$(env_value TLS_CERT_FILE ./secrets/tls.crt)")
  key=$(repo_path "$(env_value TLS_KEY_FILE ./secrets/tls.key)")
  if [[ -e $cert && -e $key ]]; then
    log "kept the certificate $cert and its key $key"
    return 0
  fi
  [[ ! -e $cert && ! -e $key ]] ||
    die "one of $cert and $key exists without the other: put both there (or remove the one) and run this again"
  new_certificate "$cert" "$key" "$CERT_DAYS"
  log "created a self-signed certificate for localhost and 127.0.0.1: $cert (key: $key)"
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
  make_certificate
  mkdir -p "$REPO/acme"
  hand_to_app
  log "ready: docker compose up -d --build"
}

main "$@"
