#!/usr/bin/env bash
# A local database group: N MySQL members on 127.0.0.1, each with its own
# port and directory, and each with its agent (scripts/db-member.sh), as the
# containers run them. Sourced, never executed; needs scripts/lib.sh and
# scripts/mysql-server.sh (mysql_configure with the root filesystem's mysqld).
#
# Member I lives in GROUP_DIR/mysqld-I (mysql-server.sh's layout, plus
# run/agent.pid and log/agent.log) and listens on GROUP_PORT + I - 1, which
# is also its group address: the MySQL communication stack carries the
# group's traffic over each member's SQL port.

GROUP_DIR=
GROUP_PORT=
GROUP_SIZE=
GROUP_AGENT_STOP_SECONDS=5
_GROUP_MEMBER_SH=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/db-member.sh

# usage: group_configure DIR FIRST_PORT N
group_configure() {
  GROUP_DIR=$1 GROUP_PORT=$2 GROUP_SIZE=$3
  [[ -n $_MYSQL_ROOT ]] || die "a local database group runs the root filesystem's mysqld (no MYSQL_IMAGE)"
  ((GROUP_PORT + GROUP_SIZE - 1 <= 65535)) || die "the members' ports would pass 65535"
}

# usage: group_member_dir I
group_member_dir() {
  printf '%s/mysqld-%s\n' "$GROUP_DIR" "$1"
}

# usage: group_member_port I
group_member_port() {
  printf '%s\n' "$((GROUP_PORT + $1 - 1))"
}

# usage: group_members   (GROUP_MEMBERS for db-member.sh and DB_HOST for the app)
group_members() {
  local i list=()
  for ((i = 1; i <= GROUP_SIZE; i++)); do
    list+=("127.0.0.1:$(group_member_port "$i")")
  done
  (
    IFS=,
    printf '%s\n' "${list[*]}"
  )
}

# usage: group_repl_password_file   (made once, kept: every member's account
# has this password)
group_repl_password_file() {
  local file=$GROUP_DIR/repl-password
  if [[ ! -s $file ]]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$file.tmp")
    mv "$file.tmp" "$file"
  fi
  printf '%s\n' "$file"
}

# usage: group_member_env I   (db-member.sh's environment for member I, a
# NAME=VALUE a line)
group_member_env() {
  printf '%s\n' "GROUP_MEMBERS=$(group_members)" "MEMBER_INDEX=$1" \
    "REPL_PASSWORD_FILE=$(group_repl_password_file)" "MYSQL_CLIENT=$(mysql_client_command)"
  [[ -z ${GROUP_NAME:-} ]] || printf '%s\n' "GROUP_NAME=$GROUP_NAME"
}

# usage: group_member_sh I COMMAND [args...]   (db-member.sh for member I)
group_member_sh() {
  local i=$1 vars=()
  shift
  mapfile -t vars < <(group_member_env "$i")
  env "${vars[@]}" bash "$_GROUP_MEMBER_SH" "$@"
}

# usage: group_member_start I   (its mysqld, then its agent; each unless it runs)
group_member_start() {
  group_member_spawn "$1"
  mysql_wait "$(group_member_dir "$1")" "$(group_member_port "$1")"
}

# usage: group_member_spawn I   (as group_member_start, without waiting for
# mysqld to answer: the agent waits for it)
group_member_spawn() {
  local i=$1 dir flags=() vars=()
  dir=$(group_member_dir "$i")
  if [[ ! -d $dir/mysql ]]; then
    mysql_init "$dir"
    # The data directory is a copy: each member needs its own server UUID
    # and certificates, which mysqld makes when they are missing.
    rm -f "$dir"/mysql/auto.cnf "$dir"/mysql/*.pem
  fi
  mapfile -t flags < <(group_member_sh "$i" flags)
  ((${#flags[@]} > 0)) || die "db-member.sh printed no flags for member $i"
  mysql_spawn "$dir" "$(group_member_port "$i")" "${flags[@]}"
  pid_alive "$dir/run/agent.pid" && return 0
  mapfile -t vars < <(group_member_env "$i")
  # setsid: a Ctrl-C in the caller must not reach it; env and bash exec, so
  # the pid is the agent's.
  setsid env "${vars[@]}" bash "$_GROUP_MEMBER_SH" agent </dev/null >>"$dir/log/agent.log" 2>&1 &
  printf '%s\n' "$!" >"$dir/run/agent.pid"
}

# usage: group_up   (every member started at once, then each waited for; the
# group forms by itself)
group_up() {
  local i
  mkdir -p "$GROUP_DIR"
  for ((i = 1; i <= GROUP_SIZE; i++)); do
    group_member_spawn "$i"
  done
  for ((i = 1; i <= GROUP_SIZE; i++)); do
    mysql_wait "$(group_member_dir "$i")" "$(group_member_port "$i")"
  done
}

# usage: group_member_stop I   (the agent first, so it does not act on the stop)
group_member_stop() {
  local dir
  dir=$(group_member_dir "$1")
  stop_pidfile "$dir/run/agent.pid" "$GROUP_AGENT_STOP_SECONDS"
  mysql_stop "$dir"
}

# usage: group_down   (members in parallel: each waits to leave the group)
group_down() {
  local i pids=()
  for ((i = 1; i <= GROUP_SIZE; i++)); do
    group_member_stop "$i" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do
    wait "$i" || true
  done
}

# usage: group_member_role I   (PRIMARY, SECONDARY, or its state: OFFLINE,
# RECOVERING, ERROR; "down" when its mysqld does not answer)
group_member_role() {
  local state role
  read -r state role < <(group_member_sh "$1" state 2>/dev/null || echo down -)
  if [[ $state == ONLINE ]]; then
    printf '%s\n' "$role"
  else
    printf '%s\n' "${state:-down}"
  fi
}

# usage: group_primary   (prints the index of the member that takes writes;
# false when none does)
group_primary() {
  local i
  for ((i = 1; i <= GROUP_SIZE; i++)); do
    mysql_running "$(group_member_dir "$i")" || continue
    if [[ $(mysql_client "$(group_member_port "$i")" -uroot --connect-timeout=2 --batch \
      --skip-column-names -e 'SELECT @@GLOBAL.read_only' 2>/dev/null) == 0 ]]; then
      printf '%s\n' "$i"
      return 0
    fi
  done
  return 1
}
