#!/bin/sh
# nginx's settings in one place: renders nginx.conf, a template naming
# ${SETTING}s, for one deployment, each setting checked first; in the nginx
# container it then starts nginx on the result. Compose, Swarm, Kubernetes
# and the local stack all render through here. POSIX sh: the official nginx
# image is Alpine, with no bash.
#
# usage: nginx-conf.sh render TEMPLATE OUTPUT
#        nginx-conf.sh run [TEMPLATE]   the container's command: renders
#                                       TEMPLATE (default: nginx.conf beside
#                                       this script) to /tmp/nginx.conf, then
#                                       runs nginx on it in the foreground
# settings (environment; default):
#   COOKIE_TTL_SECONDS (300)      the sticky cookie's lifetime; the app's
#                                 internal_ip cookie reads the same variable
#   NGINX_LISTEN (80)             the public server: port, or address:port
#   NGINX_RESOLVER (127.0.0.11)   the DNS server that knows the app's name
#   NGINX_UPSTREAM (app:8000)     that name and port: each address is a replica
#   NGINX_ACCESS_LOG (/var/log/nginx/access.log)
#   NGINX_PROXY_BIND (off)        source address of connections to the app
set -eu

fail() {
  echo "nginx-conf: $*" >&2
  exit 2
}

SED_SCRIPT=

# usage: setting NAME DEFAULT KIND   (NAME's value, or DEFAULT, must be of KIND;
# it then replaces ${NAME} in the template)
setting() {
  eval "value=\${$1:-$2}"
  # shellcheck disable=SC2154  # set by the eval above
  case $3 in
    seconds)
      case $value in '' | *[!0-9]*) fail "$1 must be a whole number of seconds, got '$value'" ;; esac
      if [ "${#value}" -gt 8 ] || [ "$value" -lt 1 ] || [ "$value" -gt 31536000 ]; then
        fail "$1 must be 1 to 31536000 seconds, got '$value'"
      fi
      ;;
    address)
      case $value in '' | *[!A-Za-z0-9.:_\[\]-]*) fail "$1 must be a host, address or port, got '$value'" ;; esac
      ;;
    path)
      case $value in /*) ;; *) fail "$1 must be an absolute path, got '$value'" ;; esac
      case $value in *[!A-Za-z0-9._/-]*) fail "$1 has characters a path here may not, got '$value'" ;; esac
      ;;
    *) fail "unknown kind $3" ;;
  esac
  SED_SCRIPT="${SED_SCRIPT}s|\${$1}|$value|g
"
}

settings() {
  setting COOKIE_TTL_SECONDS 300 seconds
  setting NGINX_LISTEN 80 address
  setting NGINX_RESOLVER 127.0.0.11 address
  setting NGINX_UPSTREAM app:8000 address
  setting NGINX_ACCESS_LOG /var/log/nginx/access.log path
  setting NGINX_PROXY_BIND off address
}

# usage: render TEMPLATE OUTPUT
render() {
  [ -r "$1" ] || fail "cannot read the template $1"
  settings
  sed "$SED_SCRIPT" "$1" >"$2.tmp"
  # shellcheck disable=SC2016  # a literal ${NAME}, not an expansion
  if grep -n '^[^#]*\${[A-Z_][A-Z0-9_]*}' "$2.tmp" >&2; then
    rm -f "$2.tmp"
    fail "$1 names a setting this script does not know (above)"
  fi
  mv "$2.tmp" "$2"
}

main() {
  case ${1:-} in
    render)
      [ $# -eq 3 ] || fail "usage: $0 render TEMPLATE OUTPUT"
      render "$2" "$3"
      ;;
    run)
      render "${2:-$(dirname "$0")/nginx.conf}" /tmp/nginx.conf
      exec nginx -c /tmp/nginx.conf -g 'daemon off;'
      ;;
    *) fail "usage: $0 render TEMPLATE OUTPUT | run [TEMPLATE]" ;;
  esac
}

main "$@"
