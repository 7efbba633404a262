#!/usr/bin/env bash
# Shared by tests/compose.sh and tests/swarm.sh: a copy of the user's checkout,
# the images to run, and the crates for a build that cannot reach crates.io.
# Sourced, never executed; needs scripts/lib.sh, tests/tap.sh and REPO.

# usage: make_checkout PREFIX   (copies the repository's files, tracked and
# new but not ignored, into a new directory /tmp/PREFIX.XXXXXX; sets WORK)
make_checkout() {
  local file list
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  list=$WORK.files
  # As root in a checkout someone else owns (CI), git wants it named safe.
  (cd "$REPO" && git -c safe.directory="$REPO" ls-files -z --cached --others --exclude-standard) >"$list" ||
    die "git ls-files failed in $REPO"
  while IFS= read -r -d '' file; do
    [[ -e $REPO/$file ]] || continue # deleted, not yet committed
    (cd "$REPO" && cp --parents -a -t "$WORK" "$file") || die "could not copy $file into $WORK"
  done <"$list"
  rm -f "$list"
  [[ -f $WORK/docker-compose.yml ]] || die "the checkout in $WORK has no docker-compose.yml"
  log "checkout in $WORK"
}

# usage: pick_images   (sets IMAGES, and NGINX_IMAGE, MYSQL_IMAGE, RUST_IMAGE,
# RUNTIME_IMAGE: the stand-ins, or with COMPOSE_IMAGES=official .env.example's)
pick_images() {
  local name
  IMAGES=${COMPOSE_IMAGES:-standins}
  case $IMAGES in
    standins)
      log "stand-in images for the official ones (cached after the first run)"
      eval "$(bash "$REPO/tests/docker/standins.sh")"
      ;;
    official)
      for name in NGINX_IMAGE MYSQL_IMAGE RUST_IMAGE RUNTIME_IMAGE; do
        printf -v "$name" '%s' "$(sed -n "s/^$name=//p" "$REPO/.env.example")"
        [[ -n ${!name} ]] || die "no $name in .env.example"
      done
      log "official images: $NGINX_IMAGE $MYSQL_IMAGE $RUST_IMAGE $RUNTIME_IMAGE"
      ;;
    *) die "COMPOSE_IMAGES must be standins or official, got: $IMAGES" ;;
  esac
}

# Build containers may not reach crates.io (here a TLS-intercepting proxy
# stops them): then vendor the crates into the checkout's build context.
vendor_if_offline() {
  [[ $IMAGES == standins ]] || return 0
  if docker run --rm "$RUST_IMAGE" curl -fsS -m 20 -o /dev/null https://index.crates.io/config.json >/dev/null 2>&1; then
    log "build containers reach crates.io: building from the registry"
    return 0
  fi
  log "build containers cannot reach crates.io: vendoring crates into the build context"
  (cd "$WORK" && cargo vendor --locked --versioned-dirs --quiet vendor/crates >/dev/null) ||
    die "cargo vendor failed"
  printf '[source.crates-io]\nreplace-with = "vendored-sources"\n\n[source.vendored-sources]\ndirectory = "vendor/crates"\n' \
    >"$WORK/vendor/cargo-config.toml"
}

# The db container's mysql client as root, its password read from the
# secret file; the SQL is $1: docker exec DB sh -c "$ROOT_SQL" sh SQL
# shellcheck disable=SC2016,SC2034  # expanded by the container's shell; used by the suites
ROOT_SQL='MYSQL_PWD=$(cat /run/secrets/mysql_root_password) exec mysql -uroot -D webcluster --batch --skip-column-names -e "$1"'

# usage: env_holds_no_password WHAT ENV   (ENV: VAR=value lines, a container's
# or a service's; true when no *PASSWORD variable and no password from
# $WORK/secrets/ is in it; names WHAT otherwise)
env_holds_no_password() {
  local secret status=0
  if grep -E '^[A-Z_]*PASSWORD=' <<<"$2" >&2; then
    tap_diag "$1 has a password variable"
    status=1
  fi
  for secret in "$WORK"/secrets/*; do
    if grep -qF -- "$(<"$secret")" <<<"$2"; then
      tap_diag "$1's environment holds ${secret##*/}"
      status=1
    fi
  done
  return "$status"
}

# The cookie lifetime the suites deploy with: not the default 300, so a
# setting that reached only one of nginx and the app shows.
COOKIE_TTL=420

# usage: both_cookies_carry HEADERS ATTRIBUTE   (HEADERS: a response's head,
# as curl -I prints it; true when nginx's webcluster_route and the app's
# internal_ip Set-Cookie lines both carry ATTRIBUTE, case aside)
both_cookies_carry() {
  local name line status=0
  for name in webcluster_route internal_ip; do
    line=$(grep -i "^set-cookie: $name=" <<<"$1" | tr -d '\r')
    if ! grep -qi "; *$2\(;\|$\)" <<<"$line"; then
      tap_diag "$name: no $2 in '$line'"
      status=1
    fi
  done
  return "$status"
}

# usage: cookie_lifetimes HEADERS   (both cookies live COOKIE_TTL seconds)
cookie_lifetimes() {
  both_cookies_carry "$1" "max-age=$COOKIE_TTL"
}

# usage: cookies_secure HEADERS   (both cookies are Secure)
cookies_secure() {
  both_cookies_carry "$1" secure
}
