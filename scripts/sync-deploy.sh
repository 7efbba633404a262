#!/usr/bin/env bash
# Kustomize reads no file outside deploy/kubernetes/, so the files the
# Kubernetes manifests ship live there as copies of their one source:
#   deploy/kubernetes/nginx.conf, nginx-conf.sh   nginx.conf and scripts/nginx-conf.sh
#                                    (nginx.yaml's environment holds the cluster's settings)
#   deploy/kubernetes/schema/        scripts/apply-sql.sh, scripts/lib-core.sh, sql/*.sql,
#                                    scripts/db-member.sh (deploy/kubernetes-group/'s members)
#
# usage: scripts/sync-deploy.sh           write them
#        scripts/sync-deploy.sh --check   exit 1, naming them, if any is stale
set -Eeuo pipefail
ME=sync-deploy
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
REPO=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
K8S=$REPO/deploy/kubernetes

# usage: each_copy FUNCTION   (calls FUNCTION SOURCE DESTINATION per copied file)
each_copy() {
  local file
  "$1" "$REPO/nginx.conf" "$K8S/nginx.conf"
  "$1" "$REPO/scripts/nginx-conf.sh" "$K8S/nginx-conf.sh"
  for file in "$REPO"/scripts/apply-sql.sh "$REPO"/scripts/lib-core.sh "$REPO"/scripts/db-member.sh "$REPO"/sql/*.sql; do
    "$1" "$file" "$K8S/schema/${file##*/}"
  done
}

write_copy() {
  cp "$1" "$2"
}

STALE=()
check_copy() {
  cmp -s "$1" "$2" || STALE+=("${2#"$REPO"/}")
}

main() {
  case ${1:-} in
    "")
      mkdir -p "$K8S/schema"
      rm -f "$K8S"/schema/*
      each_copy write_copy
      log "wrote deploy/kubernetes/nginx.conf, nginx-conf.sh and schema/"
      ;;
    --check)
      each_copy check_copy
      [[ $(find "$K8S/schema" -type f | wc -l) == $(($(find "$REPO/sql" -name '*.sql' | wc -l) + 3)) ]] ||
        STALE+=("deploy/kubernetes/schema/ (files added or removed)")
      ((${#STALE[@]} == 0)) || die "stale copies: ${STALE[*]}; run scripts/sync-deploy.sh"
      ;;
    *) die "usage: $0 [--check]" ;;
  esac
}

main "$@"
