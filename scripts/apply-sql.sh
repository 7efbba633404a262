#!/usr/bin/env bash
# Applies sql/*.sql in name order with the mysql command-line client (the files
# use DELIMITER, which only that client understands). Re-runnable: the files
# keep existing data.
#
# usage: scripts/apply-sql.sh
# env:   DB_HOST (127.0.0.1): a host, or a database group's members,
#          host[:port],...: sql/ goes to the one that takes writes
#        DB_PORT (3306): the port of a host given without one  DB_NAME (webcluster)
#        DB_ROOT_USER (root)  DB_ROOT_PASSWORD or DB_ROOT_PASSWORD_FILE (may be empty)
#        APP_DB_PASSWORD or APP_DB_PASSWORD_FILE (required): the app account's password
#        APP_DB_USER (optional): the app account's name, the app's DB_USER;
#          unset, sql/04_app_account.sql's default (webcluster_app)
#        MYSQL_CLIENT (mysql): the client command, split on spaces,
#          e.g. "chroot /path/to/rootfs mysql"
#        DB_WAIT_SECONDS (0): how long to wait for the server to accept the
#          root login first (an orchestrator may start this before MySQL)
set -Eeuo pipefail
ME=apply-sql
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib-core.sh
source "$HERE/lib-core.sh"
SQL_DIR=$(readlink -f "$HERE/../sql")

# usage: sql_secret NAME   (prints $NAME, or the contents of the file named by
# ${NAME}_FILE, as the app reads DB_PASSWORD_FILE)
sql_secret() {
  local name=$1 file_name=${1}_FILE
  if [[ -n ${!name:-} ]] && [[ -n ${!file_name:-} ]]; then
    die "set $name or $file_name, not both"
  fi
  if [[ -n ${!file_name:-} ]]; then
    [[ -r ${!file_name} ]] || die "$file_name names an unreadable file: ${!file_name}"
    secret_file "${!file_name}"
  else
    printf '%s' "${!name:-}"
  fi
}

# usage: sql_script APP_PASSWORD   (prints the whole session: database,
# password, then every file with a line naming it once it is applied)
sql_script() {
  local file name
  # shellcheck disable=SC2016  # the backticks quote an SQL identifier
  printf 'CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4;\nUSE `%s`;\n' "$DB_NAME" "$DB_NAME"
  printf 'SET @app_password = %s;\n' "$(sql_string "$1")"
  printf "SET @app_user = '%s';\n" "$APP_DB_USER" # empty: 04's default
  for file in "$SQL_DIR"/*.sql; do
    name=${file##*/}
    cat "$file"
    printf "\nSELECT 'applied sql/%s' AS '';\n" "$name"
  done
  printf 'SET @app_password = NULL, @app_user = NULL;\n'
}

# usage: sql_check_files   (file names are echoed inside SQL string literals)
sql_check_files() {
  local file
  [[ -n $(compgen -G "$SQL_DIR/*.sql") ]] || die "no .sql files in $SQL_DIR"
  for file in "$SQL_DIR"/*.sql; do
    [[ ${file##*/} =~ ^[A-Za-z0-9_.-]+$ ]] || die "unexpected file name in sql/: ${file##*/}"
  done
}

# usage: sql_login HOST PORT [client args...]   (root on HOST:PORT; the
# password through MYSQL_PWD, so it never shows in the process list)
sql_login() {
  local host=$1 port=$2
  shift 2
  MYSQL_PWD=$ROOT_PASSWORD "${CLIENT[@]}" -h "$host" -P "$port" -u "$DB_ROOT_USER" --batch "$@"
}

# 1 on the writable primary of a group that holds a majority (the rule
# sql/02's assert_primary applies for the app).
PRIMARY_SQL="SELECT @@GLOBAL.read_only = 0 AND (
  SELECT SUM(MEMBER_STATE = 'ONLINE') * 2 > COUNT(*)
     AND SUM(MEMBER_ID = @@server_uuid AND MEMBER_STATE = 'ONLINE' AND MEMBER_ROLE = 'PRIMARY') = 1
    FROM performance_schema.replication_group_members)"

# usage: sql_find_primary   (several hosts: sets TARGET to the one that
# takes writes, the group's primary; false when none does)
TARGET=()
sql_find_primary() {
  local entry host port
  for entry in "${HOSTS[@]}"; do
    host=${entry%:*} port=${entry##*:}
    # read_only: a group's secondaries, and a member not (yet) in the group;
    # a primary cut off from the majority would block the statements.
    if [[ $(sql_login "$host" "$port" --connect-timeout=2 --skip-column-names \
      -e "$PRIMARY_SQL" 2>/dev/null) == 1 ]]; then
      TARGET=("$host" "$port")
      return 0
    fi
  done
  return 1
}

# usage: sql_pick_target   (sets TARGET: the one host, or the writable one
# of several; waits DB_WAIT_SECONDS for it)
sql_pick_target() {
  if ((${#HOSTS[@]} > 1)); then
    log "looking for the writable member of $DB_HOST (up to $DB_WAIT_SECONDS s)"
    wait_until "$DB_WAIT_SECONDS" "a writable member of $DB_HOST" sql_find_primary ||
      sql_find_primary || die "no member of $DB_HOST takes writes as $DB_ROOT_USER"
    return 0
  fi
  TARGET=("${HOSTS[0]%:*}" "${HOSTS[0]##*:}")
  if ((DB_WAIT_SECONDS > 0)); then
    log "waiting up to $DB_WAIT_SECONDS s for ${HOSTS[0]} to accept $DB_ROOT_USER"
    wait_until "$DB_WAIT_SECONDS" "MySQL at ${HOSTS[0]}" sql_login "${TARGET[@]}" -e 'SELECT 1' ||
      die "${HOSTS[0]} did not accept $DB_ROOT_USER within $DB_WAIT_SECONDS s"
  fi
}

# usage: sql_apply   (one client session on the target)
sql_apply() {
  local app_password where
  ROOT_PASSWORD=$(sql_secret DB_ROOT_PASSWORD)
  app_password=$(sql_secret APP_DB_PASSWORD)
  [[ -n $app_password ]] ||
    die "the app account needs a password: set APP_DB_PASSWORD or APP_DB_PASSWORD_FILE"
  read -ra CLIENT <<<"$MYSQL_CLIENT"
  sql_pick_target
  where="${TARGET[0]}:${TARGET[1]}"
  log "applying $SQL_DIR to database $DB_NAME on $where as $DB_ROOT_USER"
  sql_script "$app_password" |
    sql_login "${TARGET[@]}" --skip-column-names --unbuffered --default-character-set=utf8mb4 ||
    die "applying sql/ to $DB_NAME on $where failed (the file after the last 'applied' line is at fault)"
  log "database $DB_NAME is up to date"
}

# usage: sql_hosts   (DB_HOST, host[:port],... with DB_PORT by default, into HOSTS as host:port)
HOSTS=()
sql_hosts() {
  local entry entries
  IFS=, read -ra entries <<<"$DB_HOST"
  for entry in "${entries[@]}"; do
    [[ $entry =~ ^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?$ ]] || die "DB_HOST: '$entry' is not host[:port]"
    [[ $entry == *:* ]] || entry+=":$DB_PORT"
    HOSTS+=("$entry")
  done
  ((${#HOSTS[@]} > 0)) || die "DB_HOST names no host"
}

main() {
  DB_HOST=${DB_HOST:-127.0.0.1}
  DB_PORT=${DB_PORT:-3306}
  DB_NAME=${DB_NAME:-webcluster}
  DB_ROOT_USER=${DB_ROOT_USER:-root}
  MYSQL_CLIENT=${MYSQL_CLIENT:-mysql}
  DB_WAIT_SECONDS=${DB_WAIT_SECONDS:-0}
  APP_DB_USER=${APP_DB_USER:-}
  # Spliced into SQL as a string, so a plain name only.
  [[ $APP_DB_USER =~ ^[A-Za-z0-9_]{0,32}$ ]] ||
    die "APP_DB_USER must match ^[A-Za-z0-9_]{1,32}\$, got: $APP_DB_USER"
  [[ $DB_WAIT_SECONDS =~ ^[0-9]{1,5}$ ]] || die "DB_WAIT_SECONDS must be a number of seconds, got: $DB_WAIT_SECONDS"
  # DB_NAME is spliced into SQL as an identifier, so it must be a plain one.
  [[ $DB_NAME =~ ^[A-Za-z0-9_]{1,64}$ ]] ||
    die "DB_NAME must match ^[A-Za-z0-9_]{1,64}\$, got: $DB_NAME"
  [[ $DB_PORT =~ ^[0-9]{1,5}$ ]] || die "DB_PORT must be a port number, got: $DB_PORT"
  sql_hosts
  sql_check_files
  sql_apply
}

main "$@"
