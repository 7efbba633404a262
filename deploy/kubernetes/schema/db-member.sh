#!/usr/bin/env bash
# One member of the database's MySQL Group Replication group (single
# primary): its server flags, and the agent that runs beside its mysqld and
# keeps it in the group. The same script serves the local stack, Compose,
# Swarm and Kubernetes (docs/design.md, "The database group").
#
# usage: db-member.sh flags        print this member's mysqld flags, one a line
#        db-member.sh entrypoint [mysqld [args...]]
#                                  in the official mysql image: start the agent,
#                                  then exec the image's entrypoint with the flags
#        db-member.sh agent        the agent, in the foreground, until killed
#        db-member.sh state        print this member's state and role
#                                  (ONLINE PRIMARY, ONLINE SECONDARY, OFFLINE -, ...)
#        db-member.sh bootstrap --force
#                                  start a new group from this member although not
#                                  every member answers (docs/operations.md)
# env: GROUP_MEMBERS       every member, in order: host[:port],... (port 3306);
#                          each is its report host and group address
#      MEMBER_INDEX        this member's place in GROUP_MEMBERS, from 1; unset,
#                          a StatefulSet pod's ordinal plus 1 (db-0 -> 1)
#      GROUP_NAME          the group's UUID (default below; the same on every member)
#      REPL_USER (webcluster_repl)  REPL_PASSWORD_FILE (required): the
#                          recovery and group account, created on each member
#      DB_ROOT_USER (root)  DB_ROOT_PASSWORD_FILE (unset: no password): the
#                          agent's own login, on LOCAL_HOST (127.0.0.1)
#      MYSQL_CLIENT (mysql)  the client command, split on spaces
#      AGENT_INTERVAL (1)  seconds between the agent's checks
set -Eeuo pipefail
ME=db-member
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib-core.sh
source "$HERE/lib-core.sh"

DEFAULT_GROUP_NAME=6c9c1f0e-3b1d-4f6a-9d2e-5a7b8c0d1e2f
# Failure detection and safety (docs/design.md explains each choice):
# a suspected member is expelled as soon as GR's fixed 5 s detection ends;
EXPEL_TIMEOUT=0
# a member cut off from the majority gives up (and refuses writes) after this;
UNREACHABLE_MAJORITY_TIMEOUT=10
# a member that leaves in error turns read-only and refuses the app's logins;
# the agent, not GR's 5-minute auto-rejoin, brings it back.
EXIT_STATE_ACTION=OFFLINE_MODE
AUTOREJOIN_TRIES=0
# The primary alone drives consensus (group_replication_paxos_single_leader,
# a flag below): with every member a leader, each commit waited for a silent
# member's turn until it was expelled, 0.1-0.5 s a write for 5 s.
# Seconds a peer's query may take (a frozen peer accepts TCP and says nothing).
PEER_TIMEOUT=4
# After a failed START GROUP_REPLICATION, wait this long before another.
RETRY_SECONDS=10
SYSTEM_SCHEMAS="'mysql','sys','information_schema','performance_schema'"

HOSTS=()   # member i's host is HOSTS[i-1]
PORTS=()
INDEX=
CLIENT=()
ROOT_PASSWORD=
REPL_PASSWORD=

# usage: member_settings   (reads and checks the environment)
member_settings() {
  local entry entries
  GROUP_MEMBERS=${GROUP_MEMBERS:-}
  [[ -n $GROUP_MEMBERS ]] || die "GROUP_MEMBERS must list every member: host[:port],..."
  IFS=, read -ra entries <<<"$GROUP_MEMBERS"
  HOSTS=() PORTS=()
  for entry in "${entries[@]}"; do
    [[ $entry =~ ^([A-Za-z0-9][A-Za-z0-9.-]*)(:([0-9]{1,5}))?$ ]] ||
      die "GROUP_MEMBERS: '$entry' is not host[:port]"
    HOSTS+=("${BASH_REMATCH[1]}")
    PORTS+=("${BASH_REMATCH[3]:-3306}")
  done
  ((${#HOSTS[@]} >= 1 && ${#HOSTS[@]} <= 9)) || die "GROUP_MEMBERS: 1 to 9 members, got ${#HOSTS[@]}"
  INDEX=${MEMBER_INDEX:-}
  if [[ -z $INDEX ]] && [[ ${HOSTNAME:-} =~ -([0-9]+)$ ]]; then
    INDEX=$((BASH_REMATCH[1] + 1))
  fi
  if ! [[ $INDEX =~ ^[1-9]$ ]] || ((INDEX > ${#HOSTS[@]})); then
    die "MEMBER_INDEX must be this member's place in GROUP_MEMBERS (1-${#HOSTS[@]}), got: '$INDEX'"
  fi
  GROUP_NAME=${GROUP_NAME:-$DEFAULT_GROUP_NAME}
  [[ $GROUP_NAME =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
    die "GROUP_NAME must be a lowercase UUID, got: $GROUP_NAME"
  REPL_USER=${REPL_USER:-webcluster_repl}
  [[ $REPL_USER =~ ^[A-Za-z0-9_]{1,32}$ ]] || die "REPL_USER must match ^[A-Za-z0-9_]{1,32}\$"
  DB_ROOT_USER=${DB_ROOT_USER:-root}
  LOCAL_HOST=${LOCAL_HOST:-127.0.0.1}
  AGENT_INTERVAL=${AGENT_INTERVAL:-1}
  read -ra CLIENT <<<"${MYSQL_CLIENT:-mysql}"
}

# usage: member_secrets   (the passwords, read once; the agent needs both)
member_secrets() {
  [[ -r ${REPL_PASSWORD_FILE:-} ]] ||
    die "REPL_PASSWORD_FILE must name the replication account's password file"
  REPL_PASSWORD=$(secret_file "$REPL_PASSWORD_FILE")
  [[ -n $REPL_PASSWORD ]] || die "$REPL_PASSWORD_FILE is empty"
  ROOT_PASSWORD=
  [[ -z ${DB_ROOT_PASSWORD_FILE:-} ]] || ROOT_PASSWORD=$(secret_file "$DB_ROOT_PASSWORD_FILE")
}

# usage: member_address I   (host:port of member I)
member_address() {
  printf '%s:%s\n' "${HOSTS[$1 - 1]}" "${PORTS[$1 - 1]}"
}

# usage: member_flags   (one flag a line; "loose-": a first run's
# --initialize loads no plugin, and would refuse the plugin's options)
member_flags() {
  local i seeds=()
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    seeds+=("$(member_address "$i")")
  done
  printf '%s\n' "--server-id=$INDEX" --gtid-mode=ON --enforce-gtid-consistency=ON \
    "--report-host=${HOSTS[INDEX - 1]}" "--report-port=${PORTS[INDEX - 1]}" \
    --plugin-load-add=group_replication.so --plugin-load-add=mysql_clone.so \
    "--loose-group-replication-group-name=$GROUP_NAME" \
    "--loose-group-replication-local-address=$(member_address "$INDEX")" \
    "--loose-group-replication-group-seeds=$(
      IFS=,
      printf '%s' "${seeds[*]}"
    )" \
    --loose-group-replication-communication-stack=MYSQL --loose-group-replication-paxos-single-leader=ON \
    --loose-group-replication-recovery-use-ssl=ON --loose-group-replication-ssl-mode=REQUIRED \
    "--loose-group-replication-member-expel-timeout=$EXPEL_TIMEOUT" \
    "--loose-group-replication-unreachable-majority-timeout=$UNREACHABLE_MAJORITY_TIMEOUT" \
    "--loose-group-replication-exit-state-action=$EXIT_STATE_ACTION" \
    "--loose-group-replication-autorejoin-tries=$AUTOREJOIN_TRIES"
  # The agent starts group replication, once the group has let go of this
  # member's previous run: a start at boot would race that. Until it is in
  # the group, the member takes no login from the app (offline mode) and no
  # write but an administrator's (read_only; GR adds super_read_only when
  # it starts, and lifts both on the primary). super_read_only here would
  # also stop the official image's first-run setup, which writes as root.
  printf '%s\n' --loose-group-replication-start-on-boot=OFF --read-only=ON --offline-mode=ON
}

# --- SQL ---------------------------------------------------------------------

# usage: local_sql SQL   (as root on this member; tab-separated rows)
local_sql() {
  MYSQL_PWD=$ROOT_PASSWORD timeout "$PEER_TIMEOUT" "${CLIENT[@]}" --protocol=TCP \
    -h "$LOCAL_HOST" -P "${PORTS[INDEX - 1]}" -u "$DB_ROOT_USER" --connect-timeout=2 \
    --batch --skip-column-names -e "$1"
}

# usage: local_sql_all SQL   (as local_sql, but every statement runs even
# after one fails: a bootstrap flag must always be turned off again)
local_sql_all() {
  MYSQL_PWD=$ROOT_PASSWORD "${CLIENT[@]}" --protocol=TCP -h "$LOCAL_HOST" \
    -P "${PORTS[INDEX - 1]}" -u "$DB_ROOT_USER" --connect-timeout=2 --force \
    --batch --skip-column-names -e "$1"
}

# usage: peer_sql I SQL   (as the replication account on member I)
peer_sql() {
  MYSQL_PWD=$REPL_PASSWORD timeout "$PEER_TIMEOUT" "${CLIENT[@]}" --protocol=TCP \
    -h "${HOSTS[$1 - 1]}" -P "${PORTS[$1 - 1]}" -u "$REPL_USER" --connect-timeout=2 \
    --batch --skip-column-names -e "$2"
}

# usage: sql_literal TEXT   (TEXT as a quoted SQL string: IDENTIFIED BY and
# SOURCE_PASSWORD take a literal, not an expression)
sql_literal() {
  local text=${1//\\/\\\\}
  printf "'%s'" "${text//\'/\\\'}"
}

# This member's view: its state and role, how many members its group has
# and how many of them are ONLINE or RECOVERING, every transaction it holds
# (executed, or received and waiting to be applied), and its group's
# members as host:port. One line, tab-separated.
VIEW_SQL="SELECT
  COALESCE((SELECT MEMBER_STATE FROM performance_schema.replication_group_members
            WHERE MEMBER_ID = @@server_uuid), 'OFFLINE'),
  COALESCE((SELECT MEMBER_ROLE FROM performance_schema.replication_group_members
            WHERE MEMBER_ID = @@server_uuid AND MEMBER_ROLE <> ''), '-'),
  (SELECT COUNT(*) FROM performance_schema.replication_group_members
    WHERE MEMBER_STATE IN ('ONLINE', 'RECOVERING')),
  (SELECT COUNT(*) FROM performance_schema.replication_group_members WHERE MEMBER_ID <> ''),
  REPLACE(CONCAT_WS(',', NULLIF(@@GLOBAL.gtid_executed, ''),
    (SELECT NULLIF(RECEIVED_TRANSACTION_SET, '') FROM performance_schema.replication_connection_status
      WHERE CHANNEL_NAME = 'group_replication_applier')), '\n', ''),
  COALESCE((SELECT GROUP_CONCAT(CONCAT(MEMBER_HOST, ':', MEMBER_PORT))
            FROM performance_schema.replication_group_members WHERE MEMBER_ID <> ''), '')"

# --- the member's own setup --------------------------------------------------

# usage: ensure_account   (the replication account and the recovery channel's
# login, on this member only: SQL_LOG_BIN=0. Run while the member is in no
# group; it starts read-only and offline, so the app cannot write meanwhile.)
ensure_account() {
  local exists channel_user password
  exists=$(local_sql "SELECT COUNT(*) FROM mysql.user WHERE user = '$REPL_USER' AND host = '%'")
  password=$(sql_literal "$REPL_PASSWORD")
  if ((exists == 0)); then
    log "creating the replication account $REPL_USER on this member"
    # Recovery: REPLICATION SLAVE (the binary log), BACKUP_ADMIN (clone),
    # GROUP_REPLICATION_STREAM (the MySQL communication stack), CONNECTION_ADMIN
    # (a donor in offline mode). The two SELECTs let peers' agents read this
    # member's state; nothing else.
    local_sql "SET GLOBAL super_read_only = OFF; SET SESSION sql_log_bin = 0;
      CREATE USER '$REPL_USER'@'%' IDENTIFIED BY $password REQUIRE SSL;
      GRANT REPLICATION SLAVE, CONNECTION_ADMIN, BACKUP_ADMIN, GROUP_REPLICATION_STREAM ON *.* TO '$REPL_USER'@'%';
      GRANT SELECT ON performance_schema.replication_group_members TO '$REPL_USER'@'%';
      GRANT SELECT ON performance_schema.replication_connection_status TO '$REPL_USER'@'%';
      SET SESSION sql_log_bin = 1; SET GLOBAL super_read_only = ON" >/dev/null
  fi
  channel_user=$(local_sql "SELECT USER FROM performance_schema.replication_connection_configuration
    WHERE CHANNEL_NAME = 'group_replication_recovery'")
  if [[ $channel_user != "$REPL_USER" ]]; then
    local_sql "CHANGE REPLICATION SOURCE TO SOURCE_USER = '$REPL_USER', SOURCE_PASSWORD = $password
      FOR CHANNEL 'group_replication_recovery'" >/dev/null
  fi
}

# usage: forget_init_gtids   (a data directory fresh from an image's
# initialisation may hold transactions of its own, e.g. time zone tables
# loaded with the binary log on. The group has none of them and would refuse
# the member. Forgotten only on a member that never started group
# replication (which makes its applier channel), holds no schema but the
# system ones, and whose every GTID is its own.)
forget_init_gtids() {
  local row
  row=$(local_sql "SELECT
      (SELECT COUNT(*) FROM performance_schema.replication_connection_configuration
        WHERE CHANNEL_NAME = 'group_replication_applier'),
      (SELECT COUNT(*) FROM information_schema.schemata WHERE SCHEMA_NAME NOT IN ($SYSTEM_SCHEMAS)),
      @@GLOBAL.gtid_executed = '',
      GTID_SUBSET(@@GLOBAL.gtid_executed, CONCAT(@@server_uuid, ':1-9223372036854775806'))")
  [[ $row == $'0\t0\t0\t1' ]] || return 0
  log "forgetting this fresh member's own initialisation GTIDs, which no group holds"
  local_sql "RESET BINARY LOGS AND GTIDS" >/dev/null
}

# usage: after_join   (once ONLINE: let the app's logins in again)
after_join() {
  if [[ $(local_sql "SELECT @@GLOBAL.offline_mode") != 0 ]]; then
    log "in the group: the app may log in"
    local_sql "SET GLOBAL offline_mode = OFF" >/dev/null
  fi
}

# --- deciding ----------------------------------------------------------------

# Filled by survey: per member (index - 1) its view line, or "" if it did not answer.
VIEWS=()

# usage: survey   (asks every member, this one as root, the others as the
# replication account)
survey() {
  local i
  VIEWS=()
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    if ((i == INDEX)); then
      VIEWS+=("$(local_sql "$VIEW_SQL" 2>/dev/null || true)")
    else
      VIEWS+=("$(peer_sql "$i" "$VIEW_SQL" 2>/dev/null || true)")
    fi
  done
}

# usage: view_field I N   (field N, from 1, of member I's view)
view_field() {
  cut -f "$2" <<<"${VIEWS[$1 - 1]}"
}

# usage: healthy_group_at   (prints the index of a member that is ONLINE in
# a group whose majority is ONLINE or RECOVERING; false when none is)
healthy_group_at() {
  local i state
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    [[ -n ${VIEWS[i - 1]} ]] || continue
    IFS=$'\t' read -r state _ alive size _ <<<"${VIEWS[i - 1]}"
    if [[ $state == ONLINE ]] && ((alive * 2 > size)); then
      printf '%s\n' "$i"
      return 0
    fi
  done
  return 1
}

# usage: bootstrapper   (sets WINNER to the member that may start a new
# group: every member answered, none is in a group (ONLINE or RECOVERING),
# and its transactions contain every other member's; the lowest such index.
# False, with the reason in WHY, when no member may.)
WHY=
WINNER=
bootstrapper() {
  local i j state check sets=() checks=() row
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    if [[ -z ${VIEWS[i - 1]} ]]; then
      WHY="member $i ($(member_address "$i")) does not answer"
      return 1
    fi
    state=$(view_field "$i" 1)
    if [[ $state == ONLINE || $state == RECOVERING ]]; then
      WHY="member $i is $state in a group without a majority"
      return 1
    fi
    sets+=("$(sql_string "$(view_field "$i" 5)")")
  done
  # One query: member i qualifies when every member's set is a subset of its own.
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    check="TRUE"
    for ((j = 1; j <= ${#HOSTS[@]}; j++)); do
      check+=" AND GTID_SUBSET(${sets[j - 1]}, ${sets[i - 1]})"
    done
    checks+=("$check")
  done
  row=$(local_sql "SELECT $(
    IFS=,
    printf '%s' "${checks[*]}"
  )") || { WHY="this member cannot compare the GTID sets"; return 1; }
  IFS=$'\t' read -ra row <<<"$row"
  for ((i = 1; i <= ${#HOSTS[@]}; i++)); do
    if [[ ${row[i - 1]} == 1 ]]; then
      WINNER=$i
      return 0
    fi
  done
  WHY="no member holds every other member's transactions: they diverged; see docs/operations.md"
  return 1
}

# usage: start_group_replication [--bootstrap]   (the member is OFFLINE)
start_group_replication() {
  local out state
  if [[ ${1:-} == --bootstrap ]]; then
    log "bootstrapping the group from this member"
    out=$(local_sql_all "SET GLOBAL group_replication_bootstrap_group = ON;
      START GROUP_REPLICATION; SET GLOBAL group_replication_bootstrap_group = OFF" 2>&1) || true
  else
    out=$(local_sql_all "START GROUP_REPLICATION" 2>&1) || true
  fi
  state=$(local_sql "$VIEW_SQL" 2>/dev/null | cut -f1) || true
  if [[ $state == ONLINE || $state == RECOVERING ]]; then
    log "this member is $state"
    return 0
  fi
  warn "START GROUP_REPLICATION left this member ${state:-unreachable}: ${out//$'\n'/ }"
  return 1
}

# usage: note_once MESSAGE   (logged unless it was the last one logged)
LAST_NOTE=
note_once() {
  [[ $1 == "$LAST_NOTE" ]] || log "$1"
  LAST_NOTE=$1
}

# usage: agent_step   (one look, and at most one action; true when nothing failed)
agent_step() {
  local own state group
  own=$(local_sql "$VIEW_SQL" 2>/dev/null) || return 0 # not up yet
  state=${own%%$'\t'*}
  case $state in
    ONLINE) after_join; LAST_NOTE=; return 0 ;;
    RECOVERING | UNREACHABLE) return 0 ;;
    ERROR)
      # Out of the group already (expelled, or cut off from the majority).
      # Stopping now, while nothing waits on it, spares the later start
      # the stop's wait for peers that may be gone (about 20 s).
      log "this member left the group in error; stopping group replication"
      local_sql_all "STOP GROUP_REPLICATION" >/dev/null 2>&1 || true
      return 0
      ;;
  esac
  ensure_account
  forget_init_gtids
  survey
  if group=$(healthy_group_at); then
    if [[ ,$(view_field "$group" 6), == *,$(member_address "$INDEX"),* ]]; then
      # Restarted before the group noticed: joining now would wait 60 s for
      # a view that never comes. GR expels the old one within about 5 s.
      note_once "waiting for the group to expel this member's previous run"
    else
      note_once "member $group is ONLINE in a group with a majority: joining it"
      start_group_replication
    fi
  elif bootstrapper; then
    if ((WINNER == INDEX)); then
      start_group_replication --bootstrap
    else
      note_once "no group runs; member $WINNER holds every transaction and starts it"
    fi
  else
    note_once "no group to join, and none may be started: $WHY"
  fi
}

agent() {
  member_secrets
  log "member $INDEX of ${#HOSTS[@]} ($(member_address "$INDEX")), group $GROUP_NAME"
  while :; do
    if agent_step; then
      sleep "$AGENT_INTERVAL"
    else
      sleep "$RETRY_SECONDS"
    fi
  done
}

# usage: force_bootstrap   (an operator's decision: docs/operations.md)
force_bootstrap() {
  member_secrets
  survey
  if healthy_group_at >/dev/null; then
    die "a group with a majority is running: join it instead"
  fi
  warn "starting a new group from member $INDEX without every member's agreement"
  [[ $(local_sql "$VIEW_SQL" | cut -f1) == OFFLINE ]] || local_sql "STOP GROUP_REPLICATION" >/dev/null
  start_group_replication --bootstrap
}

# usage: container_entrypoint [mysqld [args...]]   (the agent in the
# background, then the image's own entrypoint with this member's flags)
container_entrypoint() {
  local flags=()
  [[ ${1:-} != mysqld ]] || shift
  mapfile -t flags < <(member_flags)
  member_secrets
  bash "${BASH_SOURCE[0]}" agent &
  exec docker-entrypoint.sh mysqld "${flags[@]}" "$@"
}

main() {
  local command=${1:-}
  shift || true
  member_settings
  case $command in
    flags) member_flags ;;
    agent) agent ;;
    entrypoint) container_entrypoint "$@" ;;
    state)
      member_secrets
      local_sql "$VIEW_SQL" | cut -f1,2 | tr '\t' ' '
      ;;
    bootstrap)
      [[ ${1:-} == --force ]] || die "usage: $0 bootstrap --force   (read docs/operations.md first)"
      force_bootstrap
      ;;
    *) die "usage: $0 flags | entrypoint [mysqld args...] | agent | state | bootstrap --force" ;;
  esac
}

main "$@"
