#!/usr/bin/env bash
# Benchmark: the full path (nginx -> app -> CALL record_hit, durable commit)
# side by side with its two baselines, on a local stack of its own:
#   - /healthz through the same nginx and app: everything but the database;
#   - record_hit called straight from mysqlslap: the database's own ceiling.
# Prints requests/s, latency and the ratios, then checks counter == rows.
# usage: scripts/bench.sh   (as root)
# env:   BENCH_SECONDS (10)  BENCH_CONNECTIONS (32)  BENCH_INSTANCES (3)
set -Eeuo pipefail
ME=bench
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SECONDS_EACH=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
INSTANCES=${BENCH_INSTANCES:-3}
# A stack of its own, away from the default stack's and the tests' addresses.
export STACK_NAME=bench HTTP_PORT=18090 MYSQL_PORT=13308 DNS_PORT=15354 APP_NET=127.0.3
URL=http://127.0.0.1:$HTTP_PORT

bench_check_args() {
  local name
  for name in SECONDS_EACH CONNECTIONS INSTANCES; do
    [[ ${!name} =~ ^[1-9][0-9]{0,3}$ ]] || die "$name must be a whole number from 1 to 9999, got: ${!name}"
  done
}

bench_install() {
  command -v wrk >/dev/null && return 0
  log "installing wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

# usage: bench_wrk PATH   (prints "requests/s p50 p99 non-2xx")
bench_wrk() {
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency "$URL$1")
  awk '/Requests\/sec/ { rps = $2 }
       $1 == "50%" { p50 = $2 }
       $1 == "99%" { p99 = $2 }
       /Non-2xx/ { bad = $NF }
       END { printf "%s %s %s %s\n", rps, p50, p99, bad + 0 }' <<<"$out"
}

# usage: bench_mysqlslap   (prints calls/s of record_hit at the same concurrency)
bench_mysqlslap() {
  local calls out seconds
  calls=$((CONNECTIONS * 200))
  out=$(chroot "$(bash "$HERE/rootfs.sh")" mysqlslap -h127.0.0.1 -P"$MYSQL_PORT" -uroot \
    --create-schema=webcluster --concurrency="$CONNECTIONS" --iterations=1 \
    --number-of-queries="$calls" \
    --query="CALL record_hit(REPLACE(UUID(), '-', ''), '192.0.2.1', '192.0.2.2', FLOOR(RAND() * 64))" 2>&1)
  seconds=$(awk '/Average number of seconds/ { print $(NF - 1) }' <<<"$out")
  [[ -n $seconds ]] || die "mysqlslap failed: $out"
  awk -v n="$calls" -v s="$seconds" 'BEGIN { printf "%.0f\n", n / s }'
}

bench_totals() {
  "$HERE/local-stack.sh" mysql -N -e 'SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log)'
}

bench_cleanup() {
  "$HERE/local-stack.sh" purge >/dev/null 2>&1 || warn "could not purge the bench stack"
}

main() {
  local hit health ceiling totals
  require_root "the local stack runs MySQL and nginx in a chroot"
  bench_check_args
  bench_install
  trap bench_cleanup EXIT
  "$HERE/local-stack.sh" purge >/dev/null 2>&1 || true
  "$HERE/local-stack.sh" up "$INSTANCES" >/dev/null
  log "warming up, then ${SECONDS_EACH}s per run at $CONNECTIONS connections over $INSTANCES instances"
  wrk -t2 -c"$CONNECTIONS" -d2s "$URL/" >/dev/null
  read -r -a hit <<<"$(bench_wrk /)"
  read -r -a health <<<"$(bench_wrk /healthz)"
  ceiling=$(bench_mysqlslap)
  totals=$(bench_totals)
  printf '\n%-44s %10s %9s %9s %8s\n' run 'req/s' p50 p99 'non-2xx'
  printf '%-44s %10s %9s %9s %8s\n' "GET / (nginx -> app -> MySQL)" "${hit[@]}"
  printf '%-44s %10s %9s %9s %8s\n' "baseline: GET /healthz (nginx -> app)" "${health[@]}"
  printf '%-44s %10s %9s %9s %8s\n' "baseline: CALL record_hit via mysqlslap" "$ceiling" - - -
  awk -v h="${hit[0]}" -v b="${health[0]}" -v c="$ceiling" 'BEGIN {
    printf "\nratio GET / : GET /healthz       = %.2f\n", h / b
    printf "ratio GET / : database ceiling    = %.2f\n", h / c }'
  read -r -a totals <<<"$totals"
  ((totals[0] == totals[1])) || die "counter ${totals[0]} != access_log rows ${totals[1]}"
  printf 'counter == access_log rows         = %s\n' "${totals[0]}"
}

main "$@"
