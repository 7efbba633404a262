#!/usr/bin/env bash
# Benchmark: GET / (nginx -> app -> group commit -> MySQL, durable commits)
# side by side with its baselines, on one local stack of its own:
#   - GET / with HIT_BATCH_MAX=1: one commit per hit, as before group commit;
#   - GET /healthz through the same nginx and app: everything but the database;
#   - record_hits with one hit, called straight from mysqlslap at the same
#     concurrency: the database's own one-call-per-hit ceiling.
# At BENCH_CONNECTIONS (32 and 64), then at one connection for low-load
# latency. Each GET / figure is the mean of BENCH_ROUNDS runs, the two
# settings taking turns (A B B A ...) on the same warm MySQL, with the app
# instances restarted for each. Prints requests/s, p50, p99, the mean batch
# the app committed and the ratios; stops with an error on any non-2xx
# answer or counter != rows.
# Then the database as a 3-member group beside one server (a second local
# stack, DB_MEMBERS=3), at BENCH_GROUP_CONNECTIONS: GET / through nginx on
# each, in turns, the other stack's instances stopped.
# Then HTTPS at nginx (TLS=on; nginx reloaded between the two, the app
# instances restarted for each run as above), at BENCH_TLS_CONNECTIONS:
#   - GET / over https with keep-alive beside GET / over http, in turns;
#   - the handshake's cost: new connections per second (GET /healthz with
#     Connection: close) over https beside http.
# usage: scripts/bench.sh   (as root)
# env:   BENCH_SECONDS (10)  BENCH_CONNECTIONS ("32 64")  BENCH_INSTANCES (3)
#        BENCH_ROUNDS (2)  BENCH_TLS_CONNECTIONS (64)  BENCH_GROUP_CONNECTIONS (64)
#        BENCH_PARTS ("core group tls"; core: everything before the group)
set -Eeuo pipefail
ME=bench
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SECONDS_EACH=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
read -r -a CONNECTIONS <<<"${BENCH_CONNECTIONS:-32 64}"
INSTANCES=${BENCH_INSTANCES:-3}
# Stacks of its own, away from the default stack's and the tests' addresses:
# one server, and a group whose members listen on MYSQL_PORT and the next two.
# shellcheck disable=SC2034  # read through bench_use's name reference
SINGLE=(STACK_NAME=bench HTTP_PORT=18090 HTTPS_PORT=18493 MYSQL_PORT=13308 DNS_PORT=15354 APP_NET=127.0.3 DB_MEMBERS=1)
# shellcheck disable=SC2034
GROUP=(STACK_NAME=bench-group HTTP_PORT=18091 HTTPS_PORT=18494 MYSQL_PORT=13320 DNS_PORT=15355 APP_NET=127.0.4 DB_MEMBERS=3)
GROUP_CONNECTIONS=${BENCH_GROUP_CONNECTIONS:-64}

# usage: bench_use SINGLE|GROUP   (the stack the next commands act on)
bench_use() {
  local -n settings=$1
  export "${settings[@]}"
  HTTP_URL=http://127.0.0.1:$HTTP_PORT
  HTTPS_URL=https://127.0.0.1:$HTTPS_PORT
  URL=$HTTP_URL
}
bench_use SINGLE
# Where wrk sends its requests: plain HTTP but for the HTTPS runs.
URL=$HTTP_URL
TLS_CONNECTIONS=${BENCH_TLS_CONNECTIONS:-64}
read -r -a PARTS <<<"${BENCH_PARTS:-core group tls}"

# usage: bench_part NAME   (true when BENCH_PARTS names it)
bench_part() {
  [[ " ${PARTS[*]} " == *" $1 "* ]]
}
ROW='%-6s %-34s %9s %9s %9s %8s %7s\n'

bench_check_args() {
  local name value
  for name in SECONDS_EACH INSTANCES ROUNDS; do
    [[ ${!name} =~ ^[1-9][0-9]{0,3}$ ]] || die "$name must be a whole number from 1 to 9999, got: ${!name}"
  done
  for value in "${CONNECTIONS[@]}" "$TLS_CONNECTIONS" "$GROUP_CONNECTIONS"; do
    [[ $value =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_CONNECTIONS must list whole numbers, got: $value"
  done
  ((${#PARTS[@]} > 0)) || die "BENCH_PARTS must name at least one of: core group tls"
  for value in "${PARTS[@]}"; do
    [[ $value =~ ^(core|group|tls)$ ]] || die "BENCH_PARTS: '$value' is not one of: core group tls"
  done
}

bench_install() {
  command -v wrk >/dev/null && return 0
  log "installing wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

# usage: bench_stack [VAR=VALUE...]   (starts what is not running: after
# bench_stop_apps, the app instances, with these settings)
bench_stack() {
  local out
  out=$(env "$@" "$HERE/local-stack.sh" up "$INSTANCES" 2>&1) || die "the stack did not start: $out"
}

# usage: bench_stop_apps   (SIGTERM to the instances, which log their commit
# counts as they exit; the other servers keep running)
bench_stop_apps() {
  local dir file pids=()
  dir=$("$HERE/local-stack.sh" dir)
  for file in "$dir"/run/app-*.pid; do
    pids+=("$(<"$file")")
  done
  kill -TERM "${pids[@]}"
  wait_until 30 "the instances to exit" _bench_gone "${pids[@]}" || die "an instance did not exit"
}

_bench_gone() {
  local pid
  for pid in "$@"; do
    ! kill -0 "$pid" 2>/dev/null || return 1
  done
}

# usage: bench_wrk CONNECTIONS PATH [wrk args...]   (prints "req/s p50_ms
# p99_ms non-2xx")
bench_wrk() {
  local out threads=$(($1 < 2 ? 1 : 2))
  out=$(wrk -t"$threads" -c"$1" -d"${SECONDS_EACH}s" --latency "${@:3}" "$URL$2")
  awk 'function ms(v) {
         if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
         if (v ~ /s$/) return v * 1000; return v }
       /Requests\/sec/ { rps = $2 }
       $1 == "50%" { p50 = ms($2) }
       $1 == "99%" { p99 = ms($2) }
       /Non-2xx/ { bad = $NF }
       END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad + 0 }' <<<"$out"
}

# usage: bench_mean_batch   (after the instances stopped: hits / batches over
# the last run of each, from the line each logs at exit)
bench_mean_batch() {
  local dir file line h b hits=0 batches=0
  dir=$("$HERE/local-stack.sh" dir)
  for file in "$dir"/log/app-*.log; do
    line=$(grep 'committed .* hits in .* batches' "$file" | tail -n1) || continue
    read -r h b <<<"$(sed -E 's/.*committed ([0-9]+) hits in ([0-9]+) batches.*/\1 \2/' <<<"$line")"
    hits=$((hits + h))
    batches=$((batches + b))
  done
  awk -v h="$hits" -v b="$batches" 'BEGIN { printf "%.1f\n", (b ? h / b : 0) }'
}

# usage: bench_hits CONNECTIONS [VAR=VALUE...]   (GET / on instances freshly
# started with these settings; prints "req/s p50 p99 non-2xx mean-batch")
bench_hits() {
  local connections=$1 result
  shift
  bench_stack "$@"
  wrk -t1 -c"$connections" -d2s "$URL/" >/dev/null
  result=$(bench_wrk "$connections" /)
  bench_stop_apps
  bench_check_counts
  printf '%s %s\n' "$result" "$(bench_mean_batch)"
}

# usage: bench_pair CONNECTIONS   (group commit and HIT_BATCH_MAX=1, ROUNDS
# runs each, in turns A B B A ...; prints two lines, each the means of a setting)
bench_pair() {
  local c=$1 round order batched=() single=()
  for ((round = 0; round < ROUNDS; round++)); do
    for order in $( ((round % 2 == 0)) && echo "batched single" || echo "single batched"); do
      case $order in
        batched) batched+=("$(bench_hits "$c")") ;;
        single) single+=("$(bench_hits "$c" HIT_BATCH_MAX=1)") ;;
      esac
    done
  done
  bench_mean "${batched[@]}"
  bench_mean "${single[@]}"
}

# usage: bench_mean "req p50 p99 bad batch"...   (field by field; non-2xx summed)
bench_mean() {
  printf '%s\n' "$@" | awk '{ for (i = 1; i <= NF; i++) sum[i] += $i; n++ }
    END { printf "%.0f %.2f %.2f %d %.1f\n", sum[1] / n, sum[2] / n, sum[3] / n, sum[4], sum[5] / n }'
}

# usage: bench_mysqlslap CONNECTIONS   (calls/s of record_hits with one hit)
bench_mysqlslap() {
  local calls=$(($1 * 200)) out seconds
  out=$(chroot "$(bash "$HERE/rootfs.sh")" mysqlslap -h127.0.0.1 -P"$MYSQL_PORT" -uroot \
    --create-schema=webcluster --concurrency="$1" --iterations=1 --number-of-queries="$calls" \
    --query="CALL record_hits(JSON_ARRAY(JSON_OBJECT('request_id', REPLACE(UUID(), '-', ''), 'client_ip', '192.0.2.1', 'internal_ip', '192.0.2.2')))" 2>&1)
  seconds=$(awk '/Average number of seconds/ { print $(NF - 1) }' <<<"$out")
  [[ -n $seconds ]] || die "mysqlslap failed: $out"
  awk -v n="$calls" -v s="$seconds" 'BEGIN { printf "%.0f\n", n / s }'
}

# usage: bench_check_counts   (counter == rows, or the benchmark failed)
bench_check_counts() {
  local out totals
  out=$("$HERE/local-stack.sh" mysql -N -e \
    'SELECT (SELECT hits FROM hit_total), (SELECT COUNT(*) FROM access_log)') ||
    die "cannot read the counter and the rows: $out"
  read -r -a totals <<<"$out"
  ((${#totals[@]} == 2 && totals[0] == totals[1])) || die "counter and access_log rows differ: $out"
}

# usage: bench_row CONNECTIONS NAME REQ P50 P99 BAD [BATCH]   (a table row;
# any non-2xx answer fails the benchmark)
bench_row() {
  # shellcheck disable=SC2059  # ROW is the table's format
  printf "$ROW" "$1" "$2" "$3" "$4" "$5" "$6" "${7:--}"
  [[ $6 == - ]] || (($6 == 0)) || die "$2 at $1 connections: $6 non-2xx answers"
}

# usage: bench_ratio NAME A B   (A / B to two places)
bench_ratio() {
  awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "  %-44s %6.2f\n", n, a / b }'
}

# usage: bench_at CONNECTIONS   (the four runs at one concurrency, and their ratios)
bench_at() {
  local c=$1 pair batched single health ceiling
  pair=$(bench_pair "$c")
  read -r -a batched <<<"$(head -n1 <<<"$pair")"
  read -r -a single <<<"$(tail -n1 <<<"$pair")"
  bench_stack
  read -r -a health <<<"$(bench_wrk "$c" /healthz)"
  ceiling=$(bench_mysqlslap "$c")
  bench_check_counts
  bench_stop_apps
  bench_row "$c" "GET / (group commit)" "${batched[@]}"
  bench_row "$c" "GET / (HIT_BATCH_MAX=1)" "${single[@]}"
  bench_row "$c" "GET /healthz (nginx -> app)" "${health[@]}"
  bench_row "$c" "record_hits, 1 hit, via mysqlslap" "$ceiling" - - -
  bench_ratio "group commit : HIT_BATCH_MAX=1" "${batched[0]}" "${single[0]}"
  bench_ratio "group commit : database ceiling" "${batched[0]}" "$ceiling"
  bench_ratio "group commit : /healthz" "${batched[0]}" "${health[0]}"
}

# usage: bench_tls on|off   (nginx reloaded with TLS on or off, the URL to
# match; waits until nginx answers the new way: its own /nginx-health, since
# the app instances may be stopped, over https, or over plain HTTP with the
# HTTPS port closed)
bench_tls() {
  local out
  out=$(TLS=$1 "$HERE/local-stack.sh" reload 2>&1) || die "reloading nginx with TLS=$1 failed: $out"
  if [[ $1 == on ]]; then
    URL=$HTTPS_URL
  else
    URL=$HTTP_URL
  fi
  wait_until 20 "nginx with TLS=$1" _bench_nginx_is "$1" || die "nginx did not answer as with TLS=$1 after the reload"
}

# usage: _bench_nginx_is on|off
_bench_nginx_is() {
  local https
  https=$(curl -sk -o /dev/null -w '%{http_code}' -m 2 "$HTTPS_URL/nginx-health" || true)
  if [[ $1 == on ]]; then
    [[ $https == 200 ]]
  else
    [[ $https == 000 && $(curl -s -o /dev/null -w '%{http_code}' -m 2 "$HTTP_URL/nginx-health") == 200 ]]
  fi
}

# usage: bench_tls_at CONNECTIONS   (GET / over https and over http, in
# turns, ROUNDS runs each; then new connections per second over each)
bench_tls_at() {
  local c=$1 round order plain=() tls=() p t hp ht
  for ((round = 0; round < ROUNDS; round++)); do
    for order in $( ((round % 2 == 0)) && echo "https http" || echo "http https"); do
      case $order in
        https) bench_tls on && tls+=("$(bench_hits "$c")") ;;
        http) bench_tls off && plain+=("$(bench_hits "$c")") ;;
      esac
    done
  done
  read -r -a t <<<"$(bench_mean "${tls[@]}")"
  read -r -a p <<<"$(bench_mean "${plain[@]}")"
  bench_stack
  bench_tls on
  read -r -a ht <<<"$(bench_wrk "$c" /healthz -H 'Connection: close')"
  bench_tls off
  read -r -a hp <<<"$(bench_wrk "$c" /healthz -H 'Connection: close')"
  bench_stop_apps
  bench_row "$c" "GET / over https (keep-alive)" "${t[@]}"
  bench_row "$c" "GET / over http (keep-alive)" "${p[@]}"
  bench_row "$c" "new connections/s, https (/healthz)" "${ht[@]}"
  bench_row "$c" "new connections/s, http (/healthz)" "${hp[@]}"
  bench_ratio "GET / https : http (target >= 0.80)" "${t[0]}" "${p[0]}"
  bench_ratio "new connections/s https : http" "${ht[0]}" "${hp[0]}"
}

# usage: bench_group_at CONNECTIONS   (GET / with one server and with the
# group, ROUNDS runs each, in turns; prints both and the ratio)
bench_group_at() {
  local c=$1 round order single=() group=() s g
  for ((round = 0; round < ROUNDS; round++)); do
    for order in $( ((round % 2 == 0)) && echo "group single" || echo "single group"); do
      case $order in
        group) bench_use GROUP && group+=("$(bench_hits "$c")") ;;
        single) bench_use SINGLE && single+=("$(bench_hits "$c")") ;;
      esac
    done
  done
  bench_use SINGLE
  read -r -a g <<<"$(bench_mean "${group[@]}")"
  read -r -a s <<<"$(bench_mean "${single[@]}")"
  bench_row "$c" "GET / (3-member group)" "${g[@]}"
  bench_row "$c" "GET / (one server)" "${s[@]}"
  bench_ratio "group : one server (target >= 0.45)" "${g[0]}" "${s[0]}"
}

bench_cleanup() {
  local stack
  for stack in SINGLE GROUP; do
    bench_use "$stack"
    "$HERE/local-stack.sh" purge >/dev/null 2>&1 || warn "could not purge the bench stack $STACK_NAME"
  done
}

main() {
  local c pair batched single
  require_root "the local stack runs MySQL and nginx in a chroot"
  bench_check_args
  bench_install
  trap bench_cleanup EXIT
  bench_cleanup
  bench_use SINGLE
  bench_stack
  log "warming MySQL up for 10 s, then ${SECONDS_EACH}s per run over $INSTANCES instances"
  wrk -t2 -c64 -d10s "$URL/" >/dev/null
  bench_stop_apps
  # shellcheck disable=SC2059
  printf "\n$ROW" conns run 'req/s' 'p50 ms' 'p99 ms' 'non-2xx' batch
  if bench_part core; then
    for c in "${CONNECTIONS[@]}"; do
      bench_at "$c"
    done
    pair=$(bench_pair 1)
    read -r -a batched <<<"$(head -n1 <<<"$pair")"
    read -r -a single <<<"$(tail -n1 <<<"$pair")"
    bench_row 1 "GET / (group commit)" "${batched[@]}"
    bench_row 1 "GET / (HIT_BATCH_MAX=1)" "${single[@]}"
    bench_ratio "p50 group commit : p50 HIT_BATCH_MAX=1" "${batched[1]}" "${single[1]}"
  fi
  if bench_part group; then
    log "the database as a group: a second stack, warmed up for 10 s"
    bench_use GROUP
    bench_stack
    wrk -t2 -c64 -d10s "$URL/" >/dev/null
    bench_stop_apps
    bench_use SINGLE
    bench_group_at "$GROUP_CONNECTIONS"
  fi
  if bench_part tls; then
    bench_tls_at "$TLS_CONNECTIONS"
  fi
  printf 'counter == access_log rows after every run\n'
}

main "$@"
