#!/usr/bin/env bash
# The database group's mechanics on real mysqld (the root filesystem's
# MySQL 9.7), three members on 127.0.0.1 run by scripts/db-group.sh and
# scripts/db-member.sh as the local stack runs them: the group forms by
# itself; SIGKILL of the primary elects another, and the killed member,
# restarted, rejoins and catches up; a primary frozen (SIGSTOP) past its
# expulsion never commits a write once it runs again; SIGKILL of a
# secondary leaves the primary writing; with two of three killed the
# survivor refuses writes, and the group comes back by itself when they
# return. Every member's data ends equal.
#
# usage: tests/db-group.sh   (as root; one "ok - ..." / "not ok - ..." per check)
# env:   GROUP_TEST_PORT (13331): members listen on it and the next two ports
set -Eeuo pipefail
ME=db-group-test
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=scripts/mysql-server.sh
source "$REPO/scripts/mysql-server.sh"
# shellcheck source=scripts/db-group.sh
source "$REPO/scripts/db-group.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"

PORT=${GROUP_TEST_PORT:-13331}
FORM_SECONDS=120
# GR's failure detection is 5 s; the settings aim at a new primary within
# about 7 s. The bound leaves room for a loaded machine; the figure is shown.
FAILOVER_SECONDS=30
CONVERGE_SECONDS=120
# unreachable_majority_timeout (10 s) and a rollback, with room.
GIVE_UP_SECONDS=60
DIR=
WRITES=0 # rows written and acknowledged so far

# --- helpers -----------------------------------------------------------------

# usage: sql I SQL   (root on member I; tab-separated rows)
sql() {
  mysql_client "$(group_member_port "$1")" -uroot --connect-timeout=2 --batch --skip-column-names -e "$2"
}

# usage: member_pid I
member_pid() {
  cat "$(group_member_dir "$1")/run/mysqld.pid"
}

# usage: roles   (e.g. "PRIMARY SECONDARY SECONDARY")
roles() {
  local i out=()
  for ((i = 1; i <= 3; i++)); do
    out+=("$(group_member_role "$i")")
  done
  printf '%s\n' "${out[*]}"
}

# usage: all_online   (one PRIMARY, two SECONDARY)
all_online() {
  local r
  r=$(roles)
  [[ $(grep -o PRIMARY <<<"$r" | wc -l) == 1 ]] && [[ $(grep -o SECONDARY <<<"$r" | wc -l) == 2 ]]
}

# usage: write I   (one row on member I; counted once acknowledged)
write() {
  sql "$1" "INSERT INTO grtest.t (note) VALUES ('write')" || return 1
  WRITES=$((WRITES + 1))
}

# usage: other_primary OLD   (a member other than OLD takes writes)
other_primary() {
  local p
  p=$(group_primary) && [[ $p != "$1" ]]
}

# usage: converged   (every member ONLINE, with the same transactions and rows)
converged() {
  local i sets=() rows=()
  all_online || return 1
  for ((i = 1; i <= 3; i++)); do
    sets+=("$(sql "$i" 'SELECT REPLACE(@@GLOBAL.gtid_executed, "\n", "")')") || return 1
    rows+=("$(sql "$i" 'SELECT COUNT(*) FROM grtest.t')") || return 1
  done
  [[ ${sets[0]} == "${sets[1]}" && ${sets[1]} == "${sets[2]}" ]] &&
    [[ ${rows[0]} == "${rows[1]}" && ${rows[1]} == "${rows[2]}" ]]
}

# usage: rows_everywhere N   (each member holds N rows, or says why not)
rows_everywhere() {
  local i n ok=0
  for ((i = 1; i <= 3; i++)); do
    n=$(sql "$i" 'SELECT COUNT(*) FROM grtest.t')
    [[ $n == "$1" ]] || { tap_diag "member $i holds $n rows, expected $1"; ok=1; }
  done
  return "$ok"
}

# usage: marker_nowhere NOTE...   (no member holds a row with one of those notes)
marker_nowhere() {
  local i n ok=0 notes
  notes=$(printf "'%s'," "$@")
  for ((i = 1; i <= 3; i++)); do
    n=$(sql "$i" "SELECT COUNT(*) FROM grtest.t WHERE note IN (${notes%,})")
    [[ $n == 0 ]] || { tap_diag "member $i holds $n rows noted ${notes%,}"; ok=1; }
  done
  return "$ok"
}

# usage: seconds_since START   (START from date +%s.%N; one decimal)
seconds_since() {
  awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'
}

# usage: wait_converged WHAT
wait_converged() {
  local start
  start=$(date +%s.%N)
  wait_until "$CONVERGE_SECONDS" "$1" converged || tap_diag "roles: $(roles)"
  log "$1: $(seconds_since "$start") s"
  converged
}

cleanup() {
  local i
  [[ -n $DIR ]] || return 0
  [[ -z ${GROUP_TEST_KEEP:-} ]] || { log "kept $DIR (GROUP_TEST_KEEP)"; return 0; }
  for ((i = 1; i <= 3; i++)); do
    kill -CONT "$(member_pid "$i" 2>/dev/null)" 2>/dev/null || true
  done
  group_down >/dev/null 2>&1 || true
  rm -rf "$DIR"
}

# --- the steps ---------------------------------------------------------------

step_forms() {
  local start
  start=$(date +%s.%N)
  group_up 2>/dev/null
  wait_until "$FORM_SECONDS" "the group to form" all_online || true
  tap_check "three fresh members form a group by themselves ($(seconds_since "$start") s): $(roles)" all_online
  sql "$(group_primary)" "CREATE DATABASE grtest;
    CREATE TABLE grtest.t (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(32) NOT NULL)"
  write "$(group_primary)"
  write "$(group_primary)"
  tap_check "the secondaries refuse writes (super_read_only)" secondaries_refuse
}

secondaries_refuse() {
  local i p
  p=$(group_primary)
  for ((i = 1; i <= 3; i++)); do
    ((i == p)) && continue
    ! sql "$i" "INSERT INTO grtest.t (note) VALUES ('secondary')" 2>/dev/null || return 1
  done
}

step_kill_primary() {
  local old start took
  old=$(group_primary)
  start=$(date +%s.%N)
  kill -KILL "$(member_pid "$old")"
  wait_until "$FAILOVER_SECONDS" "another primary" other_primary "$old" || true
  took=$(seconds_since "$start")
  log "SIGKILL of the primary (member $old): another member took writes after $took s"
  tap_check "SIGKILL of the primary: member $(group_primary || echo none) takes writes after $took s" other_primary "$old"
  tap_check "the new primary takes writes" write "$(group_primary)"
  group_member_start "$old"
  tap_check "the killed member, restarted, rejoins and every member holds the same transactions and rows" \
    wait_converged "the killed member to catch up"
  tap_check "no acknowledged write lost: $WRITES rows on every member" rows_everywhere "$WRITES"
}

step_freeze_primary() {
  local old pid writer result
  old=$(group_primary)
  pid=$(member_pid "$old")
  kill -STOP "$pid"
  wait_until "$FAILOVER_SECONDS" "another primary" other_primary "$old" || true
  tap_check "SIGSTOP of the primary (member $old): member $(group_primary || echo none) takes writes" other_primary "$old"
  write "$(group_primary)"
  # Sent while it is frozen: the kernel accepts the connection, and the
  # statement runs when the server does.
  result=$(mktemp)
  (sql "$old" "INSERT INTO grtest.t (note) VALUES ('frozen')" >"$result" 2>&1 && echo COMMITTED >>"$result") &
  writer=$!
  sleep 1 # the write is waiting on the frozen server
  kill -CONT "$pid"
  wait_until "$GIVE_UP_SECONDS" "the write sent to the frozen primary to end" _pid_gone "$writer" || true
  wait "$writer" 2>/dev/null || true
  tap_check "the write sent to it while frozen fails once it runs again" \
    expect_refused "$(cat "$result")"
  rm -f "$result"
  tap_check "a new write on it fails" \
    expect_refused "$(sql "$old" "INSERT INTO grtest.t (note) VALUES ('after')" 2>&1 && echo COMMITTED)"
  tap_check "it rejoins as a secondary and every member holds the same transactions and rows" \
    wait_converged "the frozen member to rejoin"
  tap_check "it is a secondary: $(group_member_role "$old")" test "$(group_member_role "$old")" = SECONDARY
  tap_check "neither write reached any member" marker_nowhere frozen after
  tap_check "no acknowledged write lost: $WRITES rows on every member" rows_everywhere "$WRITES"
}

# usage: expect_refused OUTPUT   (the client reported an error, no commit)
expect_refused() {
  [[ $1 != *COMMITTED* ]] && [[ $1 == *ERROR* ]] && return 0
  tap_diag "the client said: $1"
  return 1
}

step_kill_secondary() {
  local primary victim
  primary=$(group_primary)
  victim=$((primary % 3 + 1))
  kill -KILL "$(member_pid "$victim")"
  tap_check "SIGKILL of a secondary (member $victim): the primary takes writes at once" write "$primary"
  tap_check "the primary stays member $primary" test "$(group_primary)" = "$primary"
  group_member_start "$victim"
  tap_check "the secondary, restarted, rejoins and catches up" wait_converged "the secondary to rejoin"
}

# usage: online_seen_by I   (how many members member I sees ONLINE)
online_seen_by() {
  sql "$1" "SELECT COUNT(*) FROM performance_schema.replication_group_members WHERE MEMBER_STATE = 'ONLINE'"
}

# usage: online_seen_by_is I N
online_seen_by_is() {
  [[ $(online_seen_by "$1") == "$2" ]]
}

# A host gone silent (its node lost, say) sends nothing, not even a reset:
# SIGSTOP. With every member a consensus leader, each commit would wait for
# the silent member's turn until the group expelled it.
step_freeze_secondary() {
  local primary victim writes=0 deadline
  primary=$(group_primary)
  victim=$((primary % 3 + 1))
  tap_check "the primary (member $primary) alone drives consensus" tap_expect_equal "consensus leaders" \
    "$(sql "$primary" 'SELECT @@server_uuid')" \
    "$(sql "$primary" 'SELECT WRITE_CONSENSUS_LEADERS_ACTUAL FROM performance_schema.replication_group_communication_information')"
  kill -STOP "$(member_pid "$victim")"
  deadline=$((SECONDS + FAILOVER_SECONDS))
  while [[ $(online_seen_by "$primary") != 2 ]] && ((SECONDS < deadline)); do
    write "$primary" || break
    writes=$((writes + 1))
  done
  tap_check "SIGSTOP of a secondary (member $victim): the primary took $writes writes until the group expelled it" \
    test "$(online_seen_by "$primary")" = 2
  kill -CONT "$(member_pid "$victim")"
  # Until it hears of its expulsion, it may still call itself ONLINE.
  wait_until "$CONVERGE_SECONDS" "the primary to see 3 members ONLINE" online_seen_by_is "$primary" 3 || true
  tap_check "it rejoins and every member holds the same transactions and rows" \
    wait_converged "the frozen secondary to rejoin"
  tap_check "no acknowledged write lost: $WRITES rows on every member" rows_everywhere "$WRITES"
}

step_majority_lost() {
  local survivor a b result writer start
  survivor=$(group_primary)
  a=$((survivor % 3 + 1)) b=$(((survivor + 1) % 3 + 1))
  kill -KILL "$(member_pid "$a")" "$(member_pid "$b")"
  result=$(mktemp)
  start=$(date +%s.%N)
  (sql "$survivor" "INSERT INTO grtest.t (note) VALUES ('minority')" >"$result" 2>&1 && echo COMMITTED >>"$result") &
  writer=$!
  wait_until "$GIVE_UP_SECONDS" "the survivor to give up the write" _pid_gone "$writer" || true
  tap_check "two of three killed: the survivor's write ends after $(seconds_since "$start") s" _pid_gone "$writer"
  wait "$writer" 2>/dev/null || true
  tap_check "and fails" expect_refused "$(cat "$result")"
  rm -f "$result"
  tap_check "the survivor refuses writes" \
    expect_refused "$(sql "$survivor" "INSERT INTO grtest.t (note) VALUES ('refused')" 2>&1 && echo COMMITTED)"
  start=$(date +%s.%N)
  group_member_spawn "$a"
  group_member_spawn "$b"
  wait_until "$CONVERGE_SECONDS" "the group to come back" all_online || true
  tap_check "the killed members restarted: the group is back by itself after $(seconds_since "$start") s: $(roles)" all_online
  tap_check "the group takes writes again" write "$(group_primary)"
  tap_check "every member holds the same transactions and rows" wait_converged "the members to agree"
  tap_check "the refused writes reached no member" marker_nowhere minority refused
  tap_check "no acknowledged write lost: $WRITES rows on every member" rows_everywhere "$WRITES"
}

main() {
  local rootfs
  require_root "mysqld runs in a chroot"
  rootfs=$(bash "$REPO/scripts/rootfs.sh")
  mysql_configure "$rootfs" ""
  DIR=$(mysql_tempdir webcluster-db-group)
  trap cleanup EXIT
  group_configure "$DIR" "$PORT" 3
  local step
  for step in forms kill_primary freeze_primary kill_secondary freeze_secondary majority_lost; do
    log "step $step (at $SECONDS s)"
    "step_$step"
  done
  tap_summary "database group"
}

main "$@"
