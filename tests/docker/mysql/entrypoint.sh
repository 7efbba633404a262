#!/bin/bash
# Stand-in for the official mysql image's entrypoint. It keeps the part of that
# image's contract the compose file relies on:
# - on an empty data directory, initialise it, set root's password from
#   MYSQL_ROOT_PASSWORD, or the file MYSQL_ROOT_PASSWORD_FILE names (one is
#   required then), for 'root'@'localhost' and 'root'@MYSQL_ROOT_HOST (default
#   '%'; none more when it is localhost), during which the server listens on
#   a socket only; before that, load the time zone tables (unless
#   MYSQL_INITDB_SKIP_TZINFO is set) with the binary log on, as the official
#   image does, so a server started with --gtid-mode=ON comes out of its
#   first run holding transactions of its own;
# - create and hand to mysql the directories of --*-file and --log-error options;
# - run mysqld as the mysql user; run any other command as given.
set -Eeuo pipefail

note() {
  printf '%s [Note] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*"
}

# usage: option_dirs ARGS...   (directories of file-valued server options)
option_dirs() {
  local arg
  for arg in "$@"; do
    case $arg in
      --log-error=* | --*-file=* | --*_file=*) dirname "${arg#*=}" ;;
    esac
  done
}

# usage: sql_quote TEXT   (TEXT as the body of a single-quoted SQL string)
sql_quote() {
  local text=${1//\\/\\\\}
  printf '%s' "${text//\'/\\\'}"
}

init_database() {
  local socket=/var/run/mysqld/init.sock password i root_host=${MYSQL_ROOT_HOST:-%} remote=
  [[ -n ${MYSQL_ROOT_PASSWORD:-} ]] || {
    echo >&2 "error: database is uninitialized and password option is not specified"
    echo >&2 "  You need to specify one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
    exit 1
  }
  note "Initializing database files"
  "$@" --initialize-insecure --default-time-zone=SYSTEM
  note "Starting temporary server"
  "$@" --daemonize --skip-networking --default-time-zone=SYSTEM --socket="$socket" >/dev/null
  for ((i = 0; i < 300; i++)); do
    mysqladmin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  if [[ -z ${MYSQL_INITDB_SKIP_TZINFO:-} ]]; then
    # The sed is the official image's (a zoneinfo file mysql_tzinfo_to_sql mis-reads).
    mysql_tzinfo_to_sql /usr/share/zoneinfo 2>/dev/null |
      sed 's/Local time zone must be set--see zic manual page/FCTY/' |
      mysql --protocol=socket --socket="$socket" -uroot --database=mysql
  fi
  password=$(sql_quote "$MYSQL_ROOT_PASSWORD")
  if [[ $root_host != localhost ]]; then
    root_host=$(sql_quote "$root_host")
    remote="CREATE USER 'root'@'$root_host' IDENTIFIED BY '$password';
GRANT ALL ON *.* TO 'root'@'$root_host' WITH GRANT OPTION;"
  fi
  mysql --protocol=socket --socket="$socket" -uroot <<SQL
SET @@SESSION.SQL_LOG_BIN = 0;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';
$remote
SQL
  note "Stopping temporary server"
  MYSQL_PWD=$MYSQL_ROOT_PASSWORD mysqladmin --socket="$socket" -uroot shutdown
  note "MySQL init process done. Ready for start up."
}

# usage: file_env VAR   (VAR, or the contents of the file VAR_FILE names; not both)
file_env() {
  local var=$1 file_var=${1}_FILE
  if [[ -n ${!var:-} ]] && [[ -n ${!file_var:-} ]]; then
    echo >&2 "error: both $var and $file_var are set (but are exclusive)"
    exit 1
  fi
  if [[ -n ${!file_var:-} ]]; then
    printf -v "$var" '%s' "$(<"${!file_var}")"
    export "${var?}"
  fi
  unset "$file_var"
}

main() {
  file_env MYSQL_ROOT_PASSWORD
  if [[ ${1:-} == -* ]]; then
    set -- mysqld "$@"
  fi
  if [[ ${1:-} != mysqld ]]; then
    exec "$@"
  fi
  local dir
  if ((EUID == 0)); then
    while read -r dir; do
      [[ -z $dir ]] && continue
      mkdir -p "$dir"
      chown mysql:mysql "$dir"
    done < <(option_dirs "$@")
    chown mysql:mysql /var/lib/mysql
    # As the official image does with gosu: the rest runs as mysql.
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
  fi
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    init_database "$@"
  fi
  exec "$@"
}

main "$@"
