#!/usr/bin/env bash
# One sticky client of tests/swarm-nodes.sh, run inside its client container:
# a browser that keeps its cookies and has several addresses for one name
# (the nginx nodes). It sends GET / to them in turn until a file named stop
# appears beside OUT. An address it cannot connect to is dropped and the
# request goes to the next one at once, as a browser does (the request never
# reached nginx). A request that fails after it was sent is an answer (000: it
# may have been counted), and its address is dropped too. The last address
# is never dropped.
#
# usage: sticky-client.sh JAR OUT ADDRESS...   (creates OUT.done when it stops)
# JAR holds the cookies, kept from an earlier run. OUT gets one line per answer:
#   MILLIS ADDRESS CODE REQUEST_ID APP SECONDS
# and one per dropped address:
#   MILLIS ADDRESS dropped CURL_EXIT
set -Eeuo pipefail

JAR=$1 OUT=$2
shift 2
ADDRESSES=("$@")
STOP=$(dirname "$OUT")/stop
# Longer than nginx may take: a read timeout on a vanished replica (30 s),
# then a fresh attempt elsewhere.
MAX_SECONDS=60

now_ms() {
  date +%s%3N
}

# usage: drop ADDRESS EXIT   (stop using ADDRESS, unless it is the last one)
drop() {
  local kept=() address
  ((${#ADDRESSES[@]} > 1)) || return 0
  for address in "${ADDRESSES[@]}"; do
    [[ $address == "$1" ]] || kept+=("$address")
  done
  ADDRESSES=("${kept[@]}")
  printf '%s %s dropped %s\n' "$(now_ms)" "$1" "$2" >>"$OUT"
}

# usage: request ADDRESS   (one GET /; prints "CODE CONNECT_SECONDS TOTAL_SECONDS"
# and keeps the answer's headers and body; fails as curl does)
request() {
  curl -s --connect-timeout 2 -m "$MAX_SECONDS" -o "$OUT.body" -D "$OUT.head" \
    -w '%{http_code} %{time_connect} %{time_total}' \
    -b "$JAR" -c "$JAR" --resolve "webcluster:80:$1" http://webcluster/
}

# usage: header NAME   (its value in the last answer's headers)
header() {
  tr -d '\r' <"$OUT.head" | awk -v name="$1" 'tolower($1) == tolower(name) ":" { print $2 }' | tail -n 1
}

main() {
  local turn=0 address result status code connect total id app
  : >"$OUT"
  while [[ ! -e $STOP ]]; do
    address=${ADDRESSES[turn % ${#ADDRESSES[@]}]}
    turn=$((turn + 1))
    rm -f "$OUT.head" "$OUT.body"
    status=0
    result=$(request "$address") || status=$?
    read -r code connect total <<<"$result"
    if ((status != 0)) && [[ $connect == 0.000000 ]] && ((${#ADDRESSES[@]} > 1)); then
      # Never connected: the browser tries the next address for this request.
      drop "$address" "$status"
      continue
    fi
    id=$(header X-Request-ID 2>/dev/null) || id=
    # The app's address; anything else (an error page) as one word.
    app=$(head -c 40 "$OUT.body" 2>/dev/null | tr -d '\r\n' | tr -c '0-9A-Za-z.:' _) || app=
    printf '%s %s %s %s %s %s\n' "$(now_ms)" "$address" "${code:-000}" "${id:--}" "${app:--}" "${total:-0}" >>"$OUT"
    ((status == 0)) || drop "$address" "$status"
    sleep 0.05
  done
  touch "$OUT.done"
}

main
