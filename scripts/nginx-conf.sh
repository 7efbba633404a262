#!/bin/sh
# nginx's settings in one place: renders nginx.conf, a template naming
# ${SETTING}s, for one deployment, each setting checked first; in the nginx
# container it then starts nginx on the result. Compose, Swarm, Kubernetes
# and the local stack all render through here. POSIX sh: the official nginx
# image is Alpine, with no bash. A section between the lines `#@ if NAME=VALUE`
# and `#@ end` (NAME an on/off setting; not nested) is kept only when NAME
# has that value.
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
#   TLS (on)                      on: HTTPS on NGINX_HTTPS_LISTEN, HTTP/2, and
#                                 NGINX_LISTEN redirects there; off: plain HTTP
#                                 on NGINX_LISTEN (behind a TLS balancer)
#   NGINX_HTTPS_LISTEN (443)      the HTTPS server: port, or address:port
#   HTTPS_PORT (443)              the port clients reach it on: the redirect's
#   NGINX_TLS_CERT (/run/secrets/tls_cert)  the certificate chain (PEM)
#   NGINX_TLS_KEY (/run/secrets/tls_key)    its private key (PEM)
#   NGINX_ACME_ROOT (/var/www/acme)  webroot of /.well-known/acme-challenge/
#   HSTS (off)                    on: Strict-Transport-Security, two years;
#                                 only with a certificate browsers trust
#   TRUSTED_BALANCERS (none)      TLS=off: CIDR list of the balancers whose
#                                 X-Forwarded-Proto is passed on to the app
set -eu

fail() {
  echo "nginx-conf: $*" >&2
  exit 2
}

SED_SCRIPT=
# The on/off settings, "NAME=VALUE ...", for the template's conditions.
SWITCHES=

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
    switch)
      case $value in on | off) ;; *) fail "$1 must be on or off, got '$value'" ;; esac
      SWITCHES="$SWITCHES $1=$value"
      ;;
    port)
      case $value in '' | *[!0-9]*) fail "$1 must be a TCP port, got '$value'" ;; esac
      if [ "${#value}" -gt 5 ] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
        fail "$1 must be a TCP port (1-65535), got '$value'"
      fi
      ;;
    cidrs)
      value=$(cidr_entries "$1" "$value")
      ;;
    *) fail "unknown kind $3" ;;
  esac
  SED_SCRIPT="${SED_SCRIPT}s|\${$1}|$value|g
"
}

# usage: cidr_entries NAME LIST   (a comma-separated list of addresses or
# CIDR blocks, or none; prints them as geo entries, "ADDR 1;" each)
cidr_entries() {
  [ "$2" = none ] && return 0
  printf '%s\n' "$2" | tr ',' '\n' | while read -r entry; do
    [ -n "$entry" ] || continue
    case $entry in *[!0-9A-Fa-f.:/]* | */*/* | /* | */) fail "$1 must list addresses or CIDR blocks (or none), got '$entry'" ;; esac
    case $entry in *[.:]*) ;; *) fail "$1 must list addresses or CIDR blocks (or none), got '$entry'" ;; esac
    printf '%s 1; ' "$entry"
  done
}

settings() {
  setting COOKIE_TTL_SECONDS 300 seconds
  setting NGINX_LISTEN 80 address
  setting NGINX_RESOLVER 127.0.0.11 address
  setting NGINX_UPSTREAM app:8000 address
  setting NGINX_ACCESS_LOG /var/log/nginx/access.log path
  setting NGINX_PROXY_BIND off address
  setting TLS on switch
  setting NGINX_HTTPS_LISTEN 443 address
  setting HTTPS_PORT 443 port
  # Derived: the redirect names the port unless it is https' own.
  if [ "$value" = 443 ]; then derived HTTPS_PORT_SUFFIX ''; else derived HTTPS_PORT_SUFFIX ":$value"; fi
  setting NGINX_TLS_CERT /run/secrets/tls_cert path
  setting NGINX_TLS_KEY /run/secrets/tls_key path
  setting NGINX_ACME_ROOT /var/www/acme path
  setting HSTS off switch
  setting TRUSTED_BALANCERS none cidrs
}

# usage: derived NAME VALUE   (a value computed from checked settings)
derived() {
  SED_SCRIPT="${SED_SCRIPT}s|\${$1}|$2|g
"
}

# usage: sections TEMPLATE   (the template without the sections whose
# condition does not hold, and without the condition lines)
sections() {
  awk -v switches="$SWITCHES" '
    BEGIN { n = split(switches, pairs, " "); for (i = 1; i <= n; i++) known[pairs[i]] = 1
            for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); names[kv[1]] = 1 } }
    function bad(why) { printf "nginx-conf: %s:%d: %s\n", FILENAME, NR, why > "/dev/stderr"; failed = 1; exit 2 }
    /^[ \t]*#@ if [A-Z_]+=[a-z]+[ \t]*$/ {
      if (open) bad("a section inside a section")
      cond = $3; split(cond, kv, "=")
      if (!(kv[1] in names)) bad("no on/off setting " kv[1])
      open = 1; keep = (cond in known); next
    }
    /^[ \t]*#@ end[ \t]*$/ { if (!open) bad("#@ end without #@ if"); open = 0; next }
    /^[ \t]*#@/ { bad("not a condition line: " $0) }
    open && !keep { next }
    { print }
    END { if (!failed && open) bad("#@ if without #@ end") }
  ' "$1"
}

# usage: render TEMPLATE OUTPUT
render() {
  [ -r "$1" ] || fail "cannot read the template $1"
  settings
  sections "$1" >"$2.tmp" || {
    rm -f "$2.tmp"
    fail "$1 has malformed #@ lines (above)"
  }
  sed -i "$SED_SCRIPT" "$2.tmp"
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
