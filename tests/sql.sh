#!/usr/bin/env bash
# SQL tests: applies sql/ (twice) to a fresh throwaway server and checks the
# procedures, the views and the app account's privileges. Runs on MySQL 9.7
# (chroot, from scripts/rootfs.sh) and on the host's MariaDB (mariadbd).
#
# usage: tests/sql.sh [mysql] [mariadb]   (default: both)
# Prints one "ok - ..." / "not ok - ..." line per check, then "sql: N passed, M failed".
set -Eeuo pipefail
ME=sql
REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/..")
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
# shellcheck source=scripts/mysql-server.sh
source "$REPO/scripts/mysql-server.sh"
# shellcheck source=tests/tap.sh
source "$REPO/tests/tap.sh"

DB=webcluster
APP_USER=wc_sql_test_app # not the default: the name is passed in
HITS=120   # more than latest_accesses shows
PORT=
DIR=          # its state directory, removed on exit
APP_PASSWORD=
APP_PASSWORD_FILE=

# usage: sql_as_root SQL   (prints the result, tab-separated, no headers)
sql_as_root() {
  mysql_client "$PORT" -uroot -D "$DB" --batch --skip-column-names -e "$1"
}

# usage: sql_as_app SQL
sql_as_app() {
  MYSQL_PWD=$APP_PASSWORD mysql_client "$PORT" -u"$APP_USER" -D "$DB" --batch --skip-column-names -e "$1"
}

# usage: sql_apply   (scripts/apply-sql.sh against the server under test)
sql_apply() {
  local out
  if ! out=$(DB_HOST=127.0.0.1 DB_PORT=$PORT DB_NAME=$DB DB_ROOT_USER=root DB_ROOT_PASSWORD='' \
    APP_DB_PASSWORD_FILE=$APP_PASSWORD_FILE APP_DB_USER=$APP_USER MYSQL_CLIENT="$(mysql_client_command)" \
    "$REPO/scripts/apply-sql.sh" 2>&1); then
    tap_diag "scripts/apply-sql.sh failed:"
    printf '%s\n' "$out" | sed 's/^/#     /' >&2
    return 1
  fi
}

# usage: sql_request_id N   (a valid, distinct 32-hex request id)
sql_request_id() {
  printf '%032x' "$1"
}

# usage: sql_hit N [CLIENT] [INSTANCE]   (one element of a batch)
sql_hit() {
  printf '{"request_id":"%s","client_ip":"%s","internal_ip":"%s"}' \
    "$(sql_request_id "$1")" "${2:-203.0.113.7}" "${3:-10.0.0.2}"
}

# usage: sql_batch ELEMENT...   (a JSON array of the elements)
sql_batch() {
  local IFS=,
  printf '[%s]' "$*"
}

# usage: sql_record_hits BATCH   (CALL record_hits as the app; prints how many were new)
sql_record_hits() {
  sql_as_app "CALL record_hits('$1')"
}

# usage: sql_counter / sql_rows   (read_hits() as the app; access_log rows as root)
sql_counter() { sql_as_app 'CALL read_hits()'; }
sql_rows() { sql_as_root 'SELECT COUNT(*) FROM access_log'; }

# usage: sql_hits_recorded   (HITS distinct ids in batches of 40, two clients,
# two instances: all counted, each call reporting its batch)
sql_hits_recorded() {
  local i first elements=() clients=(203.0.113.7 2001:db8::7) instances=(10.0.0.2 10.0.0.3)
  for ((first = 1; first <= HITS; first += 40)); do
    elements=()
    for ((i = first; i < first + 40 && i <= HITS; i++)); do
      elements+=("$(sql_hit "$i" "${clients[i % 2]}" "${instances[i % 2]}")")
    done
    tap_expect_equal "hits recorded by one batch" "${#elements[@]}" \
      "$(sql_record_hits "$(sql_batch "${elements[@]}")")" || return 1
  done
  tap_expect_equal "read_hits()" "$HITS" "$(sql_counter)"
}

# usage: sql_counter_matches_rows
sql_counter_matches_rows() {
  local hits
  hits=$(sql_counter) || return 1
  tap_expect_equal "read_hits() vs rows in access_log" "$hits" "$(sql_rows)" &&
    tap_expect_equal "read_hits() vs distinct request ids" "$hits" \
      "$(sql_as_root 'SELECT COUNT(DISTINCT request_id) FROM access_log')"
}

# usage: sql_batch_counts BATCH NEW   (the batch reports NEW hits, the counter and
# the rows grow by NEW, and still agree)
sql_batch_counts() {
  local before recorded
  before=$(sql_counter) || return 1
  recorded=$(sql_record_hits "$1") || return 1
  tap_expect_equal "hits reported new" "$2" "$recorded" &&
    tap_expect_equal "counter" "$((before + $2))" "$(sql_counter)" &&
    sql_counter_matches_rows
}

# usage: sql_invalid_batch_rejected BATCH   (the call fails with the procedure's
# error, or MySQL's own for text that is not JSON, and changes nothing)
sql_invalid_batch_rejected() {
  local before out
  before=$(sql_snapshot) || return 1
  if out=$(sql_as_app "CALL record_hits($1)" 2>&1); then
    tap_diag "CALL record_hits($1) succeeded"
    return 1
  fi
  [[ $out == *"record_hits: "* || $out == *"Invalid JSON text"* ]] ||
    { tap_diag "unexpected error: $out"; return 1; }
  tap_expect_equal "access_log and hit_counter" "$before" "$(sql_snapshot)"
}

# usage: sql_bad_element_rejected ELEMENT   (a valid new hit, then ELEMENT:
# the whole batch is refused, the valid hit included)
sql_bad_element_rejected() {
  sql_invalid_batch_rejected "'$(sql_batch "$(sql_hit 2999)" "$1")'"
}

# usage: sql_app_denied SQL...   (every statement fails as access denied, 1142;
# a login failure or any other error does not count)
sql_app_denied() {
  local sql out status=0
  for sql in "$@"; do
    if out=$(sql_as_app "$sql" 2>&1); then
      tap_diag "allowed: $sql"
      status=1
    elif [[ $out != *"ERROR 1142 "* ]]; then
      tap_diag "not an access-denied error for: $sql"
      tap_diag "$out"
      status=1
    fi
  done
  return "$status"
}

# usage: sql_object_denied OBJECT COLUMN   (SELECT, INSERT, UPDATE, DELETE)
sql_object_denied() {
  sql_app_denied "SELECT * FROM $1 LIMIT 1" "INSERT INTO $1 ($2) VALUES (DEFAULT)" \
    "UPDATE $1 SET $2 = $2" "DELETE FROM $1 WHERE 1 = 0"
}

# usage: sql_view_agrees VIEW SQL EXPECTED   (SQL reads VIEW as root)
sql_view_agrees() {
  local actual
  actual=$(sql_as_root "$2") || return 1
  tap_expect_equal "$1" "$3" "$actual"
}

# usage: sql_views_agree   (one check per view, against the counter and the table)
sql_views_agree() {
  local hits
  hits=$(sql_counter)
  tap_check "latest_accesses shows the newest 100 rows" sql_view_agrees latest_accesses \
    'SELECT COUNT(*), MIN(id), MAX(id) FROM latest_accesses' \
    "$(sql_as_root 'SELECT COUNT(*), MIN(id), MAX(id) FROM (SELECT id FROM access_log ORDER BY id DESC LIMIT 100) AS newest')"
  tap_check "hits_per_instance adds up to the counter" sql_view_agrees hits_per_instance \
    'SELECT COUNT(*), SUM(hits) FROM hits_per_instance' "2	$hits"
  tap_check "hits_per_client adds up to the counter" sql_view_agrees hits_per_client \
    'SELECT COUNT(*), SUM(hits) FROM hits_per_client' "2	$hits"
  tap_check "hit_total equals the counter" sql_view_agrees hit_total 'SELECT hits FROM hit_total' "$hits"
}

# usage: sql_app_account_setup_needs_password   (04 alone, without @app_password)
sql_app_account_setup_needs_password() {
  local out
  if out=$(mysql_client "$PORT" -uroot -D "$DB" <"$REPO/sql/04_app_account.sql" 2>&1); then
    tap_diag "04_app_account.sql applied without @app_password"
    return 1
  fi
  [[ $out == *"Set @app_password before applying 04_app_account.sql"* ]] ||
    { tap_diag "unclear error: $out"; return 1; }
}

# usage: sql_snapshot   (every row of both tables, summarised)
sql_snapshot() {
  sql_as_root "SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', id, request_id, client_ip, accessed_at, internal_ip)))
             FROM access_log;
           SELECT GROUP_CONCAT(slot, ':', hits ORDER BY slot) FROM hit_counter;"
}

# usage: sql_reapply_keeps_data   (over a database of the earlier schema, with
# its two extra indexes: they go, every row stays)
sql_reapply_keeps_data() {
  local before
  sql_as_root "ALTER TABLE access_log ADD KEY ix_access_log_internal_ip (internal_ip, accessed_at),
                                      ADD KEY ix_access_log_client_ip (client_ip, accessed_at)" || return 1
  before=$(sql_snapshot) || return 1
  sql_apply || return 1
  tap_expect_equal "access_log and hit_counter after a second apply" "$before" "$(sql_snapshot)" &&
    tap_expect_equal "access_log's indexes" "ix_access_log_accessed_at PRIMARY uq_access_log_request_id" \
      "$(sql_as_root "SELECT GROUP_CONCAT(DISTINCT INDEX_NAME ORDER BY INDEX_NAME SEPARATOR ' ')
                    FROM information_schema.STATISTICS
                   WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'access_log'")"
}

# usage: sql_app_works_after_reapply   (re-creating the procedures dropped their
# grants; 04 must have restored them, and its helper must be gone)
sql_app_works_after_reapply() {
  sql_batch_counts "$(sql_batch "$(sql_hit 1000 198.51.100.1)")" 1 &&
    tap_expect_equal "check_ready()" 1 "$(sql_as_app 'CALL check_ready()')" &&
    tap_expect_equal "leftover procedures" "" \
      "$(sql_as_root "SELECT ROUTINE_NAME FROM information_schema.ROUTINES
                  WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME NOT IN ('record_hits', 'read_hits', 'check_ready', 'assert_primary', 'purge_access_log')")"
}

# usage: sql_reads_only_from_a_writable_member   (a read-only server, as a
# group's secondary is, refuses the app's reads and readiness with 1290, the
# error the app takes as "look for the primary")
sql_reads_only_from_a_writable_member() {
  local call out status=0
  sql_as_root 'SET GLOBAL read_only = ON' || return 1
  for call in 'CALL check_ready()' 'CALL read_hits()'; do
    if out=$(sql_as_app "$call" 2>&1) || [[ $out != *1290* ]]; then
      tap_diag "$call on a read-only server: $out"
      status=1
    fi
  done
  sql_as_root 'SET GLOBAL read_only = OFF' || return 1
  tap_expect_equal "check_ready() once writable again" 1 "$(sql_as_app 'CALL check_ready()')" || status=1
  return "$status"
}

# usage: sql_purge_refuses_bad_arguments   (each call fails with the procedure's
# message and deletes nothing)
sql_purge_refuses_bad_arguments() {
  local args out before
  before=$(sql_snapshot) || return 1
  for args in "NULL, 100" "UTC_TIMESTAMP(6) + INTERVAL 1 DAY, 100" "UTC_TIMESTAMP(6), 0" "UTC_TIMESTAMP(6), 100001"; do
    if out=$(sql_as_root "CALL purge_access_log($args)" 2>&1); then
      tap_diag "CALL purge_access_log($args) succeeded"
      return 1
    fi
    [[ $out == *"purge_access_log: "* ]] || { tap_diag "unclear error for ($args): $out"; return 1; }
  done
  tap_expect_equal "access_log and hit_counter" "$before" "$(sql_snapshot)"
}

# usage: sql_purge_balances   (the oldest 25 rows, moved a month back, go in
# chunks of 7; the rest stay; counter = rows kept + rows purged, before and
# after more hits)
sql_purge_balances() {
  local rows counter
  rows=$(sql_rows) && counter=$(sql_counter) || return 1
  sql_as_root "UPDATE access_log SET accessed_at = accessed_at - INTERVAL 30 DAY ORDER BY id LIMIT 25" || return 1
  tap_expect_equal "rows purged" 25 \
    "$(sql_as_root "CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 7 DAY, 7)")" &&
    tap_expect_equal "rows kept" $((rows - 25)) "$(sql_rows)" &&
    tap_expect_equal "counter" "$counter" "$(sql_counter)" &&
    tap_expect_equal "log_audit" "$counter	$((rows - 25))	25	1" \
      "$(sql_as_root 'SELECT counter, rows_kept, rows_purged, consistent FROM log_audit')" &&
    tap_expect_equal "a second purge" 0 \
      "$(sql_as_root "CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 7 DAY, 7)")" &&
    sql_batch_counts_after_purge
}

# usage: sql_batch_counts_after_purge   (new hits keep the books balanced)
sql_batch_counts_after_purge() {
  sql_record_hits "$(sql_batch "$(sql_hit 3000)" "$(sql_hit 3001)")" >/dev/null &&
    tap_expect_equal "log_audit consistent" 1 "$(sql_as_root 'SELECT consistent FROM log_audit')"
}

# usage: sql_purge_rolls_back_a_lock_timeout   (a second session holds
# access_log_purged's row, so a chunk's UPDATE times out (1205) after its
# DELETE; the purging session then commits another transaction: no row may be
# lost uncounted, and log_audit must balance; once the lock is gone, the same
# purge deletes the old rows and balances)
sql_purge_rolls_back_a_lock_timeout() {
  local fifo=$DIR/lock-holder.fifo out=$DIR/lock-holder.out holder fd status=0
  sql_as_root "UPDATE access_log SET accessed_at = accessed_at - INTERVAL 30 DAY ORDER BY id LIMIT 10" || return 1
  rm -f "$fifo" "$out"
  mkfifo "$fifo"
  mysql_client "$PORT" -uroot -D "$DB" --batch --skip-column-names --unbuffered <"$fifo" >"$out" 2>&1 &
  holder=$!
  exec {fd}>"$fifo"
  printf '%s\n' "START TRANSACTION;" "SELECT 'held' FROM access_log_purged WHERE id = 1 FOR UPDATE;" >&"$fd"
  if wait_until 30 "the second session's lock" grep -qx held "$out"; then
    sql_purge_times_out_cleanly || status=1
  else
    tap_diag "the second session did not take the lock: $(cat "$out")"
    status=1
  fi
  printf '%s\n' "COMMIT;" >&"$fd"
  exec {fd}>&-
  wait "$holder" || { tap_diag "the second session failed: $(cat "$out")"; status=1; }
  ((status == 0)) || return 1
  tap_expect_equal "a purge once the lock is gone" 10 \
    "$(sql_as_root "CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 7 DAY, 100)")" &&
    tap_expect_equal "log_audit consistent" 1 "$(sql_as_root 'SELECT consistent FROM log_audit')"
}

# usage: sql_purge_times_out_cleanly   (while the lock is held)
sql_purge_times_out_cleanly() {
  local before rows errors
  before=$(sql_snapshot) && rows=$(sql_rows) || return 1
  # One session, as an administrator's: the purge fails, then the session's
  # next transaction commits whatever the purge left open.
  errors=$(mysql_client "$PORT" -uroot -D "$DB" --batch --skip-column-names --force 2>&1 >/dev/null <<'SQL'
SET SESSION innodb_lock_wait_timeout = 1;
CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 7 DAY, 100);
START TRANSACTION;
SELECT COUNT(*) FROM access_log;
COMMIT;
SQL
  )
  [[ $errors == *"ERROR 1205 "* ]] || { tap_diag "the purge did not time out on the lock: $errors"; return 1; }
  tap_expect_equal "rows in access_log after the failed purge" "$rows" "$(sql_rows)" &&
    tap_expect_equal "log_audit consistent" 1 "$(sql_as_root 'SELECT consistent FROM log_audit')" &&
    tap_expect_equal "access_log and hit_counter after the failed purge" "$before" "$(sql_snapshot)"
}

# usage: sql_free_port   (prints a TCP port nothing listens on at 127.0.0.1)
sql_free_port() {
  local port tries
  for ((tries = 0; tries < 50; tries++)); do
    port=$((20000 + RANDOM % 30000))
    if ! port_in_use "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "found no free port on 127.0.0.1"
}

# usage: sql_start_server   (in a subshell, so a failed start is one failed check)
sql_start_server() {
  (mysql_start "$DIR" "$PORT")
}

# usage: sql_stop_server   (the trap calls it too)
sql_stop_server() {
  [[ -n $DIR ]] || return 0
  mysql_stop "$DIR" || true
  rm -rf "$DIR"
  DIR=
}

# usage: sql_test_server ROOTFS SERVER_BIN   (every check on one fresh server)
sql_test_server() {
  mysql_configure "$1" "$2"
  TAP_LABEL=$(mysql_flavor)-$(mysql_version | cut -d. -f1-2)
  DIR=$(mysql_tempdir webcluster-sql-test)
  PORT=$(sql_free_port)
  # Quotes, a backslash, a space, a semicolon and non-ASCII: the password must
  # survive scripts/apply-sql.sh's hex quoting and still log in.
  APP_PASSWORD="t'e\"s\\t ü;$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  APP_PASSWORD_FILE=$DIR/app-password
  (umask 077 && printf '%s\n' "$APP_PASSWORD" >"$APP_PASSWORD_FILE")
  if tap_check "a fresh server starts on port $PORT" sql_start_server &&
    tap_check "sql/ applies to an empty server" sql_apply; then
    sql_checks
  fi
  sql_stop_server
}

# usage: sql_checks   (after the first apply; the order matters: the last
# checks re-apply over what the first ones wrote)
sql_checks() {
  local object
  tap_check "check_ready() returns 1" tap_expect_equal "check_ready()" 1 "$(sql_as_app 'CALL check_ready()')"
  tap_check "the app account has the name passed in (APP_DB_USER), and no other exists" \
    tap_expect_equal "app accounts" "$APP_USER" \
    "$(sql_as_root "SELECT GROUP_CONCAT(user) FROM mysql.user WHERE user IN ('$APP_USER', 'webcluster_app')")"
  tap_check "the app account records $HITS hits with distinct ids, in batches" sql_hits_recorded
  tap_check "read_hits() == distinct request ids == rows in access_log" sql_counter_matches_rows
  tap_check "a request id twice in one batch is counted once" \
    sql_batch_counts "$(sql_batch "$(sql_hit 900)" "$(sql_hit 900 198.51.100.9)" "$(sql_hit 901)")" 2
  tap_check "ids already logged are skipped, the rest of the batch counted" \
    sql_batch_counts "$(sql_batch "$(sql_hit 900)" "$(sql_hit 1)" "$(sql_hit 902)")" 1
  tap_check "a batch of ids all logged before counts nothing" \
    sql_batch_counts "$(sql_batch "$(sql_hit 900)" "$(sql_hit 901)")" 0
  tap_check "an empty batch records nothing" sql_batch_counts '[]' 0
  # Each bad batch carries a valid new hit too: a wrongly accepted call, or
  # half of one, shows as a changed snapshot.
  tap_check "rejects a bad client ip" sql_bad_element_rejected "$(sql_hit 2000 203.0.113.999)"
  tap_check "rejects an empty client ip" sql_bad_element_rejected '{"request_id":"'"$(sql_request_id 2001)"'","client_ip":"","internal_ip":"10.0.0.2"}'
  tap_check "rejects a bad internal ip" sql_bad_element_rejected "$(sql_hit 2002 203.0.113.7 app)"
  tap_check "rejects a short request id" sql_bad_element_rejected '{"request_id":"'"$(sql_request_id 2003 | cut -c2-)"'","client_ip":"203.0.113.7","internal_ip":"10.0.0.2"}'
  tap_check "rejects an uppercase request id" sql_bad_element_rejected '{"request_id":"'"$(sql_request_id 2004 | tr a-f A-F)"'","client_ip":"203.0.113.7","internal_ip":"10.0.0.2"}'
  tap_check "rejects an element without a request id" sql_bad_element_rejected '{"client_ip":"203.0.113.7","internal_ip":"10.0.0.2"}'
  tap_check "rejects an element that is not an object" sql_bad_element_rejected '"'"$(sql_request_id 2005)"'"'
  tap_check "rejects an id with a character that is not hex" sql_bad_element_rejected '{"request_id":"'"$(sql_request_id 2006 | sed 's/^0/g/')"'","client_ip":"203.0.113.7","internal_ip":"10.0.0.2"}'
  tap_check "rejects an argument that is an object, not an array" sql_invalid_batch_rejected "'$(sql_hit 2007)'"
  tap_check "rejects text that is not JSON" sql_invalid_batch_rejected "'[not json'"
  tap_check "rejects NULL" sql_invalid_batch_rejected NULL
  tap_check "counter == rows after every batch" sql_counter_matches_rows
  tap_check "the app account is denied on access_log" sql_object_denied access_log request_id
  tap_check "the app account is denied on hit_counter" sql_object_denied hit_counter hits
  for object in latest_accesses hits_per_instance hits_per_client hit_total; do
    tap_check "the app account is denied on the view $object" sql_object_denied "$object" hits
  done
  tap_check "the app account cannot create tables or read mysql.user" \
    sql_app_denied 'CREATE TABLE probe (x INT)' 'SELECT * FROM mysql.user'
  sql_views_agree
  tap_check "04_app_account.sql without @app_password fails with a clear message" sql_app_account_setup_needs_password
  tap_check "a second apply keeps every row and the counter, and drops the old indexes" sql_reapply_keeps_data
  tap_check "after the second apply the app account still works" sql_app_works_after_reapply
  tap_check "a read-only member refuses the app's reads and readiness with 1290" \
    sql_reads_only_from_a_writable_member
  tap_check "purge_access_log refuses a missing or future cutoff and a bad chunk size" sql_purge_refuses_bad_arguments
  tap_check "the app account cannot purge access_log (no DELETE)" \
    sql_app_denied "CALL purge_access_log(UTC_TIMESTAMP(6) - INTERVAL 1 DAY, 100)"
  tap_check "the app account is denied on access_log_purged and log_audit" \
    sql_app_denied 'SELECT * FROM access_log_purged' 'SELECT * FROM log_audit'
  tap_check "purge_access_log deletes old rows in chunks, and counter = rows kept + rows purged" sql_purge_balances
  tap_check "a purge that times out on a lock (1205) leaves nothing for the session's next commit" \
    sql_purge_rolls_back_a_lock_timeout
}

# usage: sql_apply_refuses "expected message" VAR=VALUE...   (apply-sql.sh
# rejects bad settings before it connects anywhere)
sql_apply_refuses() {
  local expected=$1 out
  shift
  if out=$(env -u APP_DB_PASSWORD -u APP_DB_PASSWORD_FILE -u DB_NAME DB_PORT=1 "$@" \
    "$REPO/scripts/apply-sql.sh" 2>&1); then
    tap_diag "apply-sql.sh accepted: $*"
    return 1
  fi
  [[ $out == *"$expected"* ]] || { tap_diag "unclear error: $out"; return 1; }
}

# usage: sql_apply_settings_checked
sql_apply_settings_checked() {
  TAP_LABEL=apply-sql.sh
  tap_check "refuses a DB_NAME that is not a plain identifier" \
    sql_apply_refuses "DB_NAME must match" 'DB_NAME=web`cluster' APP_DB_PASSWORD=x
  tap_check "refuses to run without an app password" \
    sql_apply_refuses "set APP_DB_PASSWORD or APP_DB_PASSWORD_FILE" APP_DB_PASSWORD=
  tap_check "refuses both APP_DB_PASSWORD and APP_DB_PASSWORD_FILE" \
    sql_apply_refuses "not both" APP_DB_PASSWORD=x APP_DB_PASSWORD_FILE=/dev/null
  tap_check "refuses an APP_DB_USER that is not a plain name" \
    sql_apply_refuses "APP_DB_USER must match" "APP_DB_USER=x'@'%" APP_DB_PASSWORD=x
}

main() {
  local servers=("$@") server rootfs
  ((${#servers[@]})) || servers=(mysql mariadb)
  trap sql_stop_server EXIT
  trap 'exit 130' INT TERM
  sql_apply_settings_checked
  for server in "${servers[@]}"; do
    case $server in
      mysql)
        rootfs=$(bash "$REPO/scripts/rootfs.sh")
        sql_test_server "$rootfs" ""
        ;;
      mariadb) sql_test_server "" mariadbd ;;
      *) die "unknown server '$server' (expected mysql or mariadb)" ;;
    esac
  done
  tap_summary sql
}

main "$@"
