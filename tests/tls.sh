#!/usr/bin/env bash
# HTTPS at the edge, on a local stack of its own with TLS=on (three app
# instances behind nginx, real MySQL), over real sockets:
#   - the generated certificate: ECDSA P-256, key mode 0600, and curl taking
#     it as its CA verifies the chain and the name (and refuses another name);
#   - plain HTTP answers 301 to the same URL over https, port included, but
#     for the ACME challenge path; HSTS absent by default, present (two
#     years) with HSTS=on;
#   - HTTP/2 negotiated by ALPN; TLS 1.0 and 1.1 refused, and no TLS 1.2 or
#     1.3 suite outside Mozilla's intermediate list accepted (each probe
#     shown able to fail against an openssl s_server that allows them); no
#     session tickets;
#   - 32 clients at once over https: each stays on one instance, every 200 is
#     counted once, both cookies carry Secure; the app believes
#     X-Forwarded-Proto from nginx alone;
#   - headless Chromium, trusting the certificate by its key's hash, loads
#     the page several times and stays on one instance, its cookies Secure;
#   - hostile input at the TLS port (plain HTTP, garbage, 200 connections
#     that stall half-way through a ClientHello) hurts no other client, and
#     the stalled handshakes end at client_header_timeout (10 s);
#   - a new certificate and key, then a reload under load: no failed request,
#     the new certificate served, the counter still exact;
#   - TLS=off (behind a balancer that terminates TLS): plain HTTP, and the
#     balancer's X-Forwarded-Proto reaches the app from TRUSTED_BALANCERS only.
#
# usage: tests/tls.sh   (as root; one "ok - ..." / "not ok - ..." per check)
set -Eeuo pipefail
ME=tls
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"

# A stack of its own, away from the e2e tests', the benchmark's and a
# developer's.
export STACK_NAME=tls-suite HTTP_PORT=18190 HTTPS_PORT=18543 MYSQL_PORT=13310 DNS_PORT=15356 \
  APP_NET=127.0.5 TLS=on HSTS=off
INSTANCES=3
# An openssl s_server that allows what nginx must refuse: the probes' control.
CONTROL_PORT=18544
CLIENTS="python3 $REPO/tests/tls_clients.py"
# nginx's client_header_timeout, which also bounds a TLS handshake.
HANDSHAKE_TIMEOUT=10
# Mozilla's intermediate suites (guidelines 6.0); the certificate is ECDSA,
# so the ECDSA ones are those a handshake can agree on.
ALLOWED_TLS12="ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305"
ALLOWED_TLS13="TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256"

WORK=
STACK_DIR=
CERT=
KEY=
CONTROL_PID=
LOAD_PID=

stack() {
  bash "$REPO/scripts/local-stack.sh" "$@"
}

# usage: https_code PATH [curl args...]   (the status of GET PATH over https,
# 000 when the request failed)
https_code() {
  curl -s -o /dev/null -w '%{http_code}' -m 20 --cacert "$CERT" "${@:2}" "https://localhost:$HTTPS_PORT$1" || true
}

# usage: showcount   (the counter, over https)
showcount() {
  curl -sS -m 20 --cacert "$CERT" "https://localhost:$HTTPS_PORT/showcount"
}

rows() {
  stack mysql -N -e 'SELECT COUNT(*) FROM access_log'
}

# usage: json EXPRESSION   (EXPRESSION, in Python, of the JSON object on stdin, as `d`)
json() {
  python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# usage: handshake PORT ARGS...   (openssl s_client to 127.0.0.1:PORT as
# localhost; prints the protocol and suite agreed, or fails)
handshake() {
  local port=$1 out
  shift
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -brief "$@" </dev/null 2>&1) ||
    return 1
  grep -q '^CONNECTION ESTABLISHED' <<<"$out" || return 1
  sed -n -e 's/^Protocol version: //p' -e 's/^Ciphersuite: //p' <<<"$out" | tr '\n' ' '
}

cleanup() {
  local status=$?
  [[ -z $LOAD_PID ]] || kill "$LOAD_PID" 2>/dev/null || true
  [[ -z $CONTROL_PID ]] || kill "$CONTROL_PID" 2>/dev/null || true
  stack purge >/dev/null 2>&1 || warn "could not purge stack $STACK_NAME"
  [[ -z $WORK ]] || rm -rf "$WORK"
  return "$status"
}

# --- steps ------------------------------------------------------------------------

step_up() {
  stack purge >/dev/null 2>&1 || true
  log "starting stack $STACK_NAME with TLS=on and $INSTANCES instances"
  stack up "$INSTANCES" >"$WORK/up.log" 2>&1 || die_with_log "the stack did not start" "$WORK/up.log"
  STACK_DIR=$(stack dir)
  CERT=$STACK_DIR/tls/tls.crt
  KEY=$STACK_DIR/tls/tls.key
  tap_check "the generated key is mode 0600" tap_expect_equal "mode" 600 "$(stat -c %a "$KEY")"
  tap_check "the generated certificate is ECDSA P-256 for DNS:localhost and IP:127.0.0.1" cert_as_designed
}

cert_as_designed() {
  local text
  text=$(openssl x509 -in "$CERT" -noout -text)
  if ! grep -q 'NIST CURVE: P-256' <<<"$text" || ! grep -q 'DNS:localhost, IP Address:127.0.0.1' <<<"$text"; then
    tap_diag "$(grep -E 'Public Key Algorithm|NIST|DNS:' <<<"$text")"
    return 1
  fi
}

step_verify() {
  tap_check "curl --cacert with the generated certificate verifies https://localhost/" \
    tap_expect_equal "status, verify result" "200 0" \
    "$(curl -s -o /dev/null -w '%{http_code} %{ssl_verify_result}' -m 20 --cacert "$CERT" "https://localhost:$HTTPS_PORT/healthz")"
  tap_check "and https://127.0.0.1/ (the IP in the SAN)" tap_expect_equal "status" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -m 20 --cacert "$CERT" "https://127.0.0.1:$HTTPS_PORT/healthz")"
  tap_check "without it, curl refuses the certificate (exit 60)" curl_exit 60 "https://localhost:$HTTPS_PORT/healthz"
  tap_check "with it, curl refuses another name (exit 60)" curl_exit 60 --cacert "$CERT" \
    --resolve "elsewhere.test:$HTTPS_PORT:127.0.0.1" "https://elsewhere.test:$HTTPS_PORT/healthz"
}

# usage: curl_exit STATUS ARGS...
curl_exit() {
  local want=$1 got=0
  shift
  curl -s -o /dev/null -m 20 "$@" || got=$?
  tap_expect_equal "curl's exit status" "$want" "$got"
}

step_redirect() {
  local head
  head=$(curl -sS -m 20 -I "http://localhost:$HTTP_PORT/some/path?x=1&y=2" | tr -d '\r')
  tap_check "http answers 301 to the same URL over https, HTTPS_PORT included" \
    tap_expect_equal "status and Location" \
    "HTTP/1.1 301 Moved Permanently|Location: https://localhost:$HTTPS_PORT/some/path?x=1&y=2" \
    "$(head -n1 <<<"$head")|$(grep -i '^location:' <<<"$head")"
  tap_check "curl -L from http lands on https with a 200" tap_expect_equal "landing" \
    "200 https://localhost:$HTTPS_PORT/healthz" \
    "$(curl -sS -L -m 20 -o /dev/null -w '%{http_code} %{url_effective}' --cacert "$CERT" "http://localhost:$HTTP_PORT/healthz")"
  tap_check "the ACME challenge path is not redirected" not_redirected \
    "http://localhost:$HTTP_PORT/.well-known/acme-challenge/probe"
  tap_check "a redirect counts no hit" redirect_counts_nothing
}

# usage: not_redirected URL
not_redirected() {
  local code
  code=$(curl -s -o /dev/null -m 20 -w '%{http_code}' "$1")
  [[ $code != 301 && $code != 000 ]] || {
    tap_diag "$1 answered $code"
    return 1
  }
}

redirect_counts_nothing() {
  local before
  before=$(showcount)
  curl -s -o /dev/null -m 20 "http://localhost:$HTTP_PORT/"
  tap_expect_equal "counter" "$before" "$(showcount)"
}

# usage: hsts_header   (the Strict-Transport-Security line of an https answer)
hsts_header() {
  curl -sS -m 20 -I --cacert "$CERT" "https://localhost:$HTTPS_PORT/healthz" | tr -d '\r' |
    grep -i '^strict-transport-security:' || true
}

hsts_is() {
  [[ $(hsts_header) == "$1" ]]
}

step_hsts() {
  tap_check "no HSTS by default (HSTS=off: a self-signed localhost certificate)" tap_expect_equal "header" "" "$(hsts_header)"
  HSTS=on stack reload >>"$WORK/reload.log" 2>&1
  tap_check "HSTS=on: Strict-Transport-Security max-age=63072000 on https" \
    wait_until 20 "the HSTS header" hsts_is "strict-transport-security: max-age=63072000"
  tap_check "and not on the plain HTTP redirect" test -z \
    "$(curl -sS -m 20 -I "http://localhost:$HTTP_PORT/" | grep -i '^strict-transport-security' || true)"
  HSTS=off stack reload >>"$WORK/reload.log" 2>&1
  tap_check "HSTS=off again: no header" wait_until 20 "no HSTS header" hsts_is ""
}

step_http2() {
  tap_check "curl negotiates HTTP/2" tap_expect_equal "HTTP version" 2 \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_version}' --http2 --cacert "$CERT" "https://localhost:$HTTPS_PORT/healthz")"
  tap_check "ALPN: nginx picks h2 when offered" alpn_is h2 "h2,http/1.1"
  tap_check "ALPN: http/1.1 when only that is offered" alpn_is http/1.1 "http/1.1"
}

# usage: alpn_is WANT OFFER
alpn_is() {
  local got
  got=$(timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost -alpn "$2" \
    </dev/null 2>/dev/null | sed -n 's/^ALPN protocol: //p')
  tap_expect_equal "ALPN protocol for $2" "$1" "$got"
}

# An openssl s_server with the same certificate that accepts every protocol
# version and suite this OpenSSL knows, and issues session tickets.
control_start() {
  openssl s_server -accept "127.0.0.1:$CONTROL_PORT" -cert "$CERT" -key "$KEY" \
    -cipher 'ALL:@SECLEVEL=0' -ciphersuites 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256' \
    -min_protocol TLSv1 -quiet -naccept 100000 </dev/null >"$WORK/control.log" 2>&1 &
  CONTROL_PID=$!
  wait_until 10 "the control server" port_in_use "$CONTROL_PORT" || die_with_log "openssl s_server did not start" "$WORK/control.log"
}

step_protocols() {
  local version
  control_start
  for version in tls1 tls1_1; do
    tap_check "the probe completes a -$version handshake with a server that allows it" \
      completes "$CONTROL_PORT" "-$version" -cipher 'ALL:@SECLEVEL=0'
    tap_check "nginx refuses a -$version handshake" refused "-$version" -cipher 'ALL:@SECLEVEL=0'
  done
  for version in tls1_2 tls1_3; do
    tap_check "nginx completes a -$version handshake" completes "$HTTPS_PORT" "-$version"
  done
  tap_check "TLS 1.2: nginx accepts exactly the intermediate suites ($ALLOWED_TLS12)" \
    tap_expect_equal "accepted" "$ALLOWED_TLS12" "$(accepted_tls12 "$HTTPS_PORT")"
  tap_check "the TLS 1.2 probe sees more suites on the control server" more_on_control
  tap_check "TLS 1.3: nginx accepts exactly the intermediate suites ($ALLOWED_TLS13)" \
    tap_expect_equal "accepted" "$ALLOWED_TLS13" "$(accepted_tls13 "$HTTPS_PORT")"
  tap_check "no TLS 1.2 session ticket from nginx (the control server sends one)" no_tickets
}

# usage: completes PORT ARGS...   (the handshake completes)
completes() {
  handshake "$@" >/dev/null
}

# usage: refused ARGS...   (nginx does not complete the handshake)
refused() {
  local got
  if got=$(handshake "$HTTPS_PORT" "$@"); then
    tap_diag "agreed: $got"
    return 1
  fi
}

# usage: accepted_tls12 PORT   (the TLS 1.2 suites, of all this OpenSSL
# knows, with which a handshake completes; in the order of ALLOWED_TLS12
# where they are in it)
accepted_tls12() {
  local suite accepted=()
  for suite in $(openssl ciphers -tls1_2 'ALL:COMPLEMENTOFALL:@SECLEVEL=0' | tr ':' ' '); do
    [[ $suite != TLS_* ]] || continue # TLS 1.3's, probed below
    handshake "$1" -tls1_2 -cipher "$suite:@SECLEVEL=0" >/dev/null && accepted+=("$suite")
  done
  sort_like "$ALLOWED_TLS12" "${accepted[@]}"
}

# usage: accepted_tls13 PORT
accepted_tls13() {
  local suite accepted=()
  for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 \
    TLS_AES_128_CCM_SHA256 TLS_AES_128_CCM_8_SHA256; do
    handshake "$1" -tls1_3 -ciphersuites "$suite" >/dev/null && accepted+=("$suite")
  done
  sort_like "$ALLOWED_TLS13" "${accepted[@]}"
}

# usage: sort_like "A B C" WORDS...   (WORDS in the order of the list, the
# others after it, space-separated)
sort_like() {
  local order=$1 word out=()
  shift
  for word in $order; do
    [[ " $* " == *" $word "* ]] && out+=("$word")
  done
  for word in "$@"; do
    [[ " $order " == *" $word "* ]] || out+=("$word")
  done
  printf '%s' "${out[*]}"
}

more_on_control() {
  local on_control
  on_control=$(accepted_tls12 "$CONTROL_PORT")
  (($(wc -w <<<"$on_control") > $(wc -w <<<"$ALLOWED_TLS12"))) || {
    tap_diag "the control server accepted only: $on_control"
    return 1
  }
}

no_tickets() {
  local ours theirs
  ours=$(timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost -tls1_2 </dev/null 2>&1 |
    grep -c 'TLS session ticket:' || true)
  theirs=$(timeout 10 openssl s_client -connect "127.0.0.1:$CONTROL_PORT" -servername localhost -tls1_2 </dev/null 2>&1 |
    grep -c 'TLS session ticket:' || true)
  tap_expect_equal "tickets from nginx, from the control server" "0 1" "$ours $theirs"
}

step_sticky_counting() {
  local before rows_before out clients=32 each=25
  before=$(showcount)
  rows_before=$(rows)
  out=$($CLIENTS sticky localhost "$HTTPS_PORT" "$CERT" "$clients" "$each")
  tap_check "$clients clients at once over https: $((clients * each)) answers, all 200" \
    tap_expect_equal "statuses, errors" "{'200': $((clients * each))} []" "$(json 'd["statuses"], d["errors"]' <<<"$out")"
  tap_check "each client stays on one instance" tap_expect_equal "clients seeing one instance" "$clients" \
    "$(json 'sum(len(ips) == 1 for ips in d["ips_per_client"])' <<<"$out")"
  tap_check "new clients spread over the $INSTANCES instances" tap_expect_equal "instances" "$INSTANCES" \
    "$(json 'len({ip for ips in d["ips_per_client"] for ip in ips})' <<<"$out")"
  tap_check "every 200 is counted once" tap_expect_equal "counter, rows" \
    "$((before + clients * each)) $((rows_before + clients * each))" "$(showcount) $(rows)"
  tap_check "both cookies carry Secure" tap_expect_equal "cookies" \
    "['internal_ip; Secure', 'webcluster_route; Secure']" "$(json 'd["cookies"]' <<<"$out")"
  tap_check "straight to an instance, a client's X-Forwarded-Proto: https gets no Secure cookie" \
    untrusted_proto_ignored
}

# HEAD / sets the cookie and counts nothing; from 127.0.0.1, not nginx's
# address (APP_NET.1), the header is a client's.
untrusted_proto_ignored() {
  local line
  line=$(curl -sS -m 20 -I -H 'X-Forwarded-Proto: https' "http://$APP_NET.2:8000/" | tr -d '\r' |
    grep -i '^set-cookie: internal_ip=')
  [[ -n $line && $line != *Secure* ]] || {
    tap_diag "Set-Cookie: '$line'"
    return 1
  }
}

step_browser() {
  local spki profile dom ip ips=() cookies
  command -v chromium >/dev/null || {
    tap_check "Chromium is installed (apt-get install chromium)" false
    return 0
  }
  spki=$(openssl x509 -in "$CERT" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)
  profile=$WORK/chromium
  for _ in 1 2 3 4; do
    dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions \
      --user-data-dir="$profile" --ignore-certificate-errors-spki-list="$spki" \
      --dump-dom "https://localhost:$HTTPS_PORT/" 2>>"$WORK/chromium.log") || true
    ip=$(grep -oE '127\.[0-9]+\.[0-9]+\.[0-9]+' <<<"$dom" | head -n1)
    ips+=("${ip:-none}")
  done
  tap_check "headless Chromium loads the https page (${ips[*]})" test "${ips[0]}" != none
  tap_check "and stays on one instance over 4 loads" tap_expect_equal "instances" 1 \
    "$(printf '%s\n' "${ips[@]}" | sort -u | wc -l)"
  cookies=$(python3 -c 'import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("SELECT name, is_secure FROM cookies ORDER BY name").fetchall()
print(" ".join(f"{n}={s}" for n, s in rows))' "$profile/Default/Cookies" 2>&1 || true)
  tap_check "its cookie store holds both cookies as Secure" tap_expect_equal "name=is_secure" \
    "internal_ip=1 webcluster_route=1" "$cookies"
}

step_hostile() {
  local out before
  tap_check "plain HTTP sent to the TLS port gets 400" tap_expect_equal "status" 400 \
    "$(curl -s -o /dev/null -m 20 -w '%{http_code}' "http://127.0.0.1:$HTTPS_PORT/")"
  tap_check "garbage sent to the TLS port is closed, not answered" garbage_closed
  before=$(showcount)
  log "200 connections that stall half-way through a ClientHello, while a client uses https"
  out=$($CLIENTS stall localhost "$HTTPS_PORT" "$CERT" 200 $((HANDSHAKE_TIMEOUT + 4)))
  log "stall: $out"
  tap_check "meanwhile another client's requests all get 2xx" stall_others_served "$out"
  tap_check "nginx closes all 200 stalled handshakes after client_header_timeout ($HANDSHAKE_TIMEOUT s; 9-$((HANDSHAKE_TIMEOUT + 5)) s)" \
    stall_closed_in_time "$out"
  tap_check "counting is unchanged by it" tap_expect_equal "counter" "$before" "$(showcount)"
  tap_check "afterwards https answers 200" tap_expect_equal "status" 200 "$(https_code /healthz)"
}

garbage_closed() {
  local answer
  # 1 KiB of random bytes: nginx closes the connection.
  # shellcheck disable=SC2016  # expanded by the inner bash
  answer=$(timeout 15 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; head -c 1024 /dev/urandom >&3; cat <&3 | head -c 100 | od -An -c' \
    bash "$HTTPS_PORT" 2>/dev/null) || {
    tap_diag "the connection stayed open past 15 s"
    return 1
  }
  [[ $answer != *HTTP* ]] || {
    tap_diag "answered: $answer"
    return 1
  }
}

stall_others_served() {
  local verdict
  verdict=$(json '"ok" if d["statuses"] and all(200 <= int(k) < 300 for k in d["statuses"]) and not d["errors"] else d' <<<"$1")
  tap_expect_equal "the other client's answers" ok "$verdict"
}

stall_closed_in_time() {
  local verdict
  verdict=$(json "'ok' if d['closed'] == 200 and 9 <= d['first_closed_s'] and d['last_closed_s'] <= $((HANDSHAKE_TIMEOUT + 5)) else d" <<<"$1")
  tap_expect_equal "the stalled connections" ok "$verdict"
}

# usage: counter_past N   (the counter has reached N)
counter_past() {
  (($(showcount) >= $1))
}

step_rotation() {
  local both=$WORK/both.crt old new before rows_before out pid_before mark
  old=$($CLIENTS cert localhost "$HTTPS_PORT" "$CERT")
  new_certificate "$WORK/new.crt" "$WORK/new.key" 30
  cat "$CERT" "$WORK/new.crt" >"$both"
  pid_before=$(<"$STACK_DIR/run/nginx.pid")
  before=$(showcount)
  rows_before=$(rows)
  log "a new certificate and key, then a reload, under the load of 16 clients"
  rm -f "$WORK/stop"
  $CLIENTS load localhost "$HTTPS_PORT" "$both" 16 "$WORK/stop" >"$WORK/load.json" 2>"$WORK/load.log" &
  LOAD_PID=$!
  mark=$((before + 300))
  wait_until 60 "300 hits under load" counter_past "$mark" || true
  # Renamed into place, each file whole; nginx reads both on the reload.
  cp "$WORK/new.key" "$KEY.new" && chmod 600 "$KEY.new" && mv "$KEY.new" "$KEY"
  cp "$WORK/new.crt" "$CERT.new" && mv "$CERT.new" "$CERT"
  stack reload >>"$WORK/reload.log" 2>&1
  new=$(openssl x509 -in "$WORK/new.crt" -outform der | sha256sum | cut -d' ' -f1)
  wait_until 30 "the new certificate served" served_cert_is "$both" "$new" || true
  mark=$(($(showcount) + 300))
  wait_until 60 "300 more hits after the reload" counter_past "$mark" || true
  touch "$WORK/stop"
  wait "$LOAD_PID" || true
  LOAD_PID=
  out=$(<"$WORK/load.json")
  log "load: $out"
  tap_check "after the reload, new connections are shown the new certificate" served_cert_is "$both" "$new"
  tap_check "which is not the old one" test "$new" != "$old"
  tap_check "clients saw both certificates during the run" tap_expect_equal "certificates seen" 2 \
    "$(json 'len(d["certs"])' <<<"$out")"
  tap_check "no request failed across the reload ($(json 'd["ok"]' <<<"$out") answered, $(json 'd["retried"]' <<<"$out") resent on a new connection after an idle one closed)" \
    tap_expect_equal "failed" 0 "$(json 'd["failed"]' <<<"$out")"
  tap_check "every 200 is counted once" tap_expect_equal "counter, rows" \
    "$((before + $(json 'd["ok"]' <<<"$out"))) $((rows_before + $(json 'd["ok"]' <<<"$out")))" "$(showcount) $(rows)"
  tap_check "nginx was reloaded, not restarted (same master pid)" \
    tap_expect_equal "master pid" "$pid_before" "$(<"$STACK_DIR/run/nginx.pid")"
}

# usage: served_cert_is CAFILE FINGERPRINT
served_cert_is() {
  [[ $($CLIENTS cert localhost "$HTTPS_PORT" "$1") == "$2" ]]
}

# usage: proxied_cookie   (the internal_ip Set-Cookie line of HEAD / over
# plain HTTP, sent as a balancer would, X-Forwarded-Proto: https; HEAD
# counts nothing)
proxied_cookie() {
  curl -sS -m 20 -I -H 'X-Forwarded-Proto: https' "http://127.0.0.1:$HTTP_PORT/" | tr -d '\r' |
    grep -i '^set-cookie: internal_ip=' || true
}

# usage: proxied_cookie_is secure|plain
proxied_cookie_is() {
  local line
  line=$(proxied_cookie)
  [[ -n $line ]] || return 1
  if [[ $1 == secure ]]; then [[ $line == *Secure* ]]; else [[ $line != *Secure* ]]; fi
}

step_tls_off() {
  TLS=off TRUSTED_BALANCERS=none stack reload >>"$WORK/reload.log" 2>&1
  tap_check "TLS=off: plain HTTP answers 200 on HTTP_PORT" wait_until 20 "plain HTTP" http_healthz_ok
  tap_check "TLS=off: a client's X-Forwarded-Proto: https is not believed (no Secure cookie)" \
    proxied_cookie_is plain
  TLS=off TRUSTED_BALANCERS=127.0.0.1/32 stack reload >>"$WORK/reload.log" 2>&1
  tap_check "TLS=off with the sender in TRUSTED_BALANCERS: the app's cookie is Secure" \
    wait_until 20 "a Secure cookie" proxied_cookie_is secure
}

http_healthz_ok() {
  [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/healthz") == 200 ]]
}

main() {
  require_root "the local stack runs MySQL and nginx in a chroot"
  local tool
  for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  WORK=$(mktemp -d /tmp/webcluster-tls.XXXXXX)
  trap cleanup EXIT
  step_up
  step_verify
  step_redirect
  step_hsts
  step_http2
  step_protocols
  step_sticky_counting
  step_browser
  step_hostile
  step_rotation
  step_tls_off
  tap_summary tls
}

main "$@"
