#!/usr/bin/env bash
# Kustomize reads no file outside deploy/kubernetes/, so the files the
# Kubernetes manifests ship live there as copies of their one source:
#   deploy/kubernetes/nginx.conf     nginx.conf, with the cluster's DNS and the
#                                    app Service's full name (nginx's resolver
#                                    uses no search domains)
#   deploy/kubernetes/schema/        scripts/apply-sql.sh, scripts/lib.sh, sql/*.sql
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

# usage: render_nginx   (prints the Kubernetes nginx.conf)
render_nginx() {
  local old
  for old in 'resolver 127.0.0.11 valid=1s ipv6=off;' 'server app:8000 resolve'; do
    (($(grep -cF -- "$old" "$REPO/nginx.conf") == 1)) ||
      die "nginx.conf no longer has exactly one '$old': update $0"
  done
  sed -e 's|resolver 127.0.0.11 valid=1s ipv6=off;|resolver kube-dns.kube-system.svc.cluster.local valid=1s ipv6=off;|' \
    -e 's|server app:8000 resolve|server app.webcluster.svc.cluster.local:8000 resolve|' \
    -e 's|^# Needs open-source nginx|# Kubernetes copy (scripts/sync-deploy.sh): the cluster DNS, the app Service by full name.\n# Needs open-source nginx|' \
    "$REPO/nginx.conf"
}

# usage: each_copy FUNCTION   (calls FUNCTION SOURCE DESTINATION per schema file)
each_copy() {
  local file
  for file in "$REPO"/scripts/apply-sql.sh "$REPO"/scripts/lib.sh "$REPO"/sql/*.sql; do
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
      render_nginx >"$K8S/nginx.conf"
      each_copy write_copy
      log "wrote deploy/kubernetes/nginx.conf and deploy/kubernetes/schema/"
      ;;
    --check)
      render_nginx | cmp -s - "$K8S/nginx.conf" || STALE+=(deploy/kubernetes/nginx.conf)
      each_copy check_copy
      [[ $(find "$K8S/schema" -type f | wc -l) == $(($(find "$REPO/sql" -name '*.sql' | wc -l) + 2)) ]] ||
        STALE+=("deploy/kubernetes/schema/ (files added or removed)")
      ((${#STALE[@]} == 0)) || die "stale copies: ${STALE[*]}; run scripts/sync-deploy.sh"
      ;;
    *) die "usage: $0 [--check]" ;;
  esac
}

main "$@"
