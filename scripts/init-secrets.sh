#!/usr/bin/env bash
# Creates the passwords the stack needs, as files only their owner reads:
# secrets/mysql_root_password (MySQL's root) and secrets/app_db_password (the
# app's EXECUTE-only account). Random, and never overwritten: run it again and
# it only reports what is there.
#
# usage: scripts/init-secrets.sh
set -Eeuo pipefail
ME=init-secrets
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
SECRETS=$(dirname "$HERE")/secrets
NAMES=(mysql_root_password app_db_password)

# usage: new_secret FILE   (32 random hex digits, mode 0600, written whole or not at all)
new_secret() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
  chmod 600 "$tmp"
  mv -n "$tmp" "$1"
  rm -f "$tmp"
}

main() {
  local name file
  (($# == 0)) || die "usage: $0   (takes no arguments)"
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

main "$@"
