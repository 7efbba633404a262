#!/usr/bin/env bash
# A throwaway or local MySQL/MariaDB server on 127.0.0.1. Sourced, never
# executed; needs scripts/lib.sh. Call mysql_configure first.
#
# A server lives in one directory DIR (a host path):
#   DIR/mysql/            data directory
#   DIR/mysql-files/      --secure-file-priv (MySQL in a chroot refuses to start without it)
#   DIR/run/mysqld.pid    DIR/run/mysqld.sock
#   DIR/log/mysqld.log    error log
# By default the server is MySQL 9.7's mysqld inside the root filesystem built
# by scripts/rootfs.sh, so DIR must be inside that tree. A host binary (for
# example the host's MariaDB `mariadbd`) runs instead when one is named, or
# the mysqld of a Docker image (the official mysql:9.7 where images can be
# pulled): a container on the host's network and pid namespace, with DIR
# mounted at its own path, so pids, ports and paths are the host's.

# Seconds to wait for a start (InnoDB recovery after a KILL is slow) and a stop.
MYSQL_START_SECONDS=${MYSQL_START_SECONDS:-60}
MYSQL_STOP_SECONDS=${MYSQL_STOP_SECONDS:-60}

_MYSQL_ROOT=      # chroot directory; empty when host binaries run
_MYSQL_SERVER=()  # the server command, host-side (chroot prefix included)
_MYSQL_CLIENT=()  # the client command, host-side
_MYSQL_FLAVOR=    # mysql | mariadb
_MYSQL_VERSION=   # e.g. 9.7.4
_MYSQL_IMAGE=     # Docker image whose mysqld runs; empty otherwise
_MYSQL_CONTAINER= # that server's container name

# usage: mysql_configure ROOTFS SERVER_BIN [IMAGE CONTAINER]
#   SERVER_BIN empty: mysqld inside ROOTFS (chroot), with its mysql client.
#   SERVER_BIN set:   that host binary and the host client (tests/sql.sh's MariaDB).
#   IMAGE set:        that image's mysqld and mysql, in a container named CONTAINER.
# ie: mysql_configure "$(scripts/rootfs.sh)" ""
#     mysql_configure "" mariadbd
#     mysql_configure "" "" mysql:9.7 webcluster-default-mysqld
mysql_configure() {
  local rootfs=$1 bin=$2 image=${3:-} version
  _MYSQL_IMAGE=
  _MYSQL_CONTAINER=
  if [[ -n $image ]]; then
    command -v docker >/dev/null || die "docker is missing, and MySQL is to run from the image $image"
    [[ ${4:-} =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || die "mysql_configure: bad container name '${4:-}'"
    _MYSQL_ROOT=
    _MYSQL_IMAGE=$image
    _MYSQL_CONTAINER=$4
    _MYSQL_SERVER=(docker run --rm --entrypoint mysqld "$image")
  elif [[ -n $bin ]]; then
    command -v "$bin" >/dev/null || die "MySQL server binary not found: $bin"
    _MYSQL_ROOT=
    _MYSQL_SERVER=("$bin")
  else
    [[ -x $rootfs/usr/sbin/mysqld ]] || die "no mysqld in the root filesystem '$rootfs' (run scripts/rootfs.sh)"
    require_root "the MySQL server runs in a chroot"
    _MYSQL_ROOT=$rootfs
    _MYSQL_SERVER=(chroot "$rootfs" mysqld)
  fi
  version=$("${_MYSQL_SERVER[@]}" --version 2>&1) || die "cannot run ${_MYSQL_SERVER[*]} --version: $version"
  [[ $version =~ Ver\ ([0-9]+\.[0-9]+\.[0-9]+) ]] || die "unrecognised server version: $version"
  _MYSQL_VERSION=${BASH_REMATCH[1]}
  if [[ $version == *MariaDB* ]]; then
    _MYSQL_FLAVOR=mariadb
    _MYSQL_CLIENT=(mariadb)
  else
    _MYSQL_FLAVOR=mysql
    _MYSQL_CLIENT=(mysql)
    [[ -z $_MYSQL_ROOT ]] || _MYSQL_CLIENT=(chroot "$_MYSQL_ROOT" mysql)
    # The running server's own container; MYSQL_PWD passes through.
    [[ -z $_MYSQL_IMAGE ]] || _MYSQL_CLIENT=(docker exec -i -e MYSQL_PWD "$_MYSQL_CONTAINER" mysql)
  fi
}

# usage: mysql_flavor   (prints mysql or mariadb)
mysql_flavor() {
  printf '%s\n' "$_MYSQL_FLAVOR"
}

# usage: mysql_version   (prints e.g. 9.7.4)
mysql_version() {
  printf '%s\n' "$_MYSQL_VERSION"
}

# usage: mysql_client_command   (prints the client command, space separated,
# for scripts/apply-sql.sh's MYSQL_CLIENT)
mysql_client_command() {
  printf '%s\n' "${_MYSQL_CLIENT[*]}"
}

# usage: mysql_tempdir NAME   (prints a new empty directory the server can use)
mysql_tempdir() {
  mktemp -d "$_MYSQL_ROOT/tmp/$1.XXXXXX"
}

# usage: mysql_log DIR   (prints the host path of the server's error log)
mysql_log() {
  printf '%s\n' "$1/log/mysqld.log"
}

# usage: mysql_init DIR   (initialises DIR/mysql unless it already holds data;
# root@localhost gets no password, so keep the server on loopback). A fresh
# data directory is a copy of one initialised once per machine and server:
# initialising takes MySQL 9.7 about 5 s, copying under one.
mysql_init() {
  local dir=$1 datadir=$1/mysql log template
  log=$(mysql_log "$dir")
  mkdir -p "$dir/log" "$dir/run" "$dir/mysql-files"
  if [[ -d $datadir ]] && [[ -n $(ls -A "$datadir") ]]; then
    return 0
  fi
  template=$(_mysql_template)
  if [[ ! -d $template ]]; then
    log "initialising a $_MYSQL_FLAVOR $_MYSQL_VERSION data directory (once; copied for each server)"
    _mysql_template_build "$template" "$log"
  fi
  mkdir -p "$datadir"
  cp -a --reflink=auto "$template/." "$datadir/" ||
    { rm -rf "$datadir"; die "cannot copy $template to $datadir"; }
}

# usage: _mysql_template   (prints where this server's initialised data directory is kept)
_mysql_template() {
  local source=rootfs
  [[ -z $_MYSQL_IMAGE ]] || source=image-${_MYSQL_IMAGE//[^A-Za-z0-9._-]/_}
  [[ -n $_MYSQL_ROOT ]] || [[ -n $_MYSQL_IMAGE ]] || source=host
  printf '%s\n' "$WEBCLUSTER_CACHE/mysql-templates/$_MYSQL_FLAVOR-$_MYSQL_VERSION-$source"
}

# usage: _mysql_template_build TEMPLATE LOG   (initialises it in a scratch
# directory the server can reach, then moves it into place)
_mysql_template_build() {
  local scratch
  scratch=$(mysql_tempdir webcluster-mysql-template)
  if ! _mysql_initialise "$scratch/mysql" >>"$2" 2>&1; then
    rm -rf "$scratch"
    die_with_log "initialising the $_MYSQL_FLAVOR data directory failed" "$2"
  fi
  mkdir -p "${1%/*}"
  rm -rf "$1.tmp"
  cp -a --reflink=auto "$scratch/mysql" "$1.tmp" && mv "$1.tmp" "$1"
  rm -rf "$scratch"
}

_mysql_initialise() {
  local datadir
  datadir=$(rootfs_path "$_MYSQL_ROOT" "$1")
  if [[ $_MYSQL_FLAVOR == mariadb ]]; then
    # normal: root@localhost/127.0.0.1 with an empty password, reachable over TCP.
    mariadb-install-db --no-defaults --user=root --datadir="$datadir" \
      --auth-root-authentication-method=normal --skip-test-db
  else
    _mysql_server_in "${datadir%/*}" --no-defaults --initialize-insecure --user=root --datadir="$datadir"
  fi
}

# usage: _mysql_server_in DIR [server args...]   (runs the server command in
# the foreground; an image's container sees DIR at the same path)
_mysql_server_in() {
  local dir=$1
  shift
  if [[ -n $_MYSQL_IMAGE ]]; then
    docker run --rm --network host -v "$dir:$dir" --entrypoint mysqld "$_MYSQL_IMAGE" "$@"
  else
    "${_MYSQL_SERVER[@]}" "$@"
  fi
}

# usage: _mysql_spawn DIR [server args...]   (starts the server in the
# background and writes its host pid to DIR/run/mysqld.pid)
_mysql_spawn() {
  local dir=$1 pidfile=$1/run/mysqld.pid log pid
  shift
  log=$(mysql_log "$dir")
  if [[ -z $_MYSQL_IMAGE ]]; then
    # setsid: a Ctrl-C or a closed terminal in the caller must not reach the server.
    setsid "${_MYSQL_SERVER[@]}" "$@" </dev/null >>"$log" 2>&1 &
    printf '%s\n' "$!" >"$pidfile"
    return 0
  fi
  host_container_start "$_MYSQL_CONTAINER" "$_MYSQL_IMAGE" mysqld "$dir" "$@" >>"$log" 2>&1 ||
    die_with_log "docker run $_MYSQL_IMAGE failed" "$log"
  # Empty when the server already exited; mysql_wait then reports it.
  pid=$(docker inspect -f '{{.State.Pid}}' "$_MYSQL_CONTAINER" 2>/dev/null || true)
  printf '%s\n' "${pid:-0}" >"$pidfile"
}

# usage: _mysql_server_args DIR PORT [more flags...]   (prints one flag per
# line; the only place the server's flags are set)
_mysql_server_args() {
  local in port=$2
  in=$(rootfs_path "$_MYSQL_ROOT" "$1")
  shift 2
  printf '%s\n' --no-defaults --user=root \
    "--datadir=$in/mysql" "--port=$port" --bind-address=127.0.0.1 \
    "--socket=$in/run/mysqld.sock" "--pid-file=$in/run/mysqld.pid" \
    "--log-error=$in/log/mysqld.log" "--secure-file-priv=$in/mysql-files"
  # X Protocol would open a second port (33060) that nothing uses.
  [[ $_MYSQL_FLAVOR == mariadb ]] || printf '%s\n' --mysqlx=OFF
  (($# == 0)) || printf '%s\n' "$@"
}

# usage: mysql_start DIR PORT [more server flags...]   (starts the server
# unless it runs, then waits until it answers on 127.0.0.1:PORT)
mysql_start() {
  mysql_spawn "$@"
  mysql_wait "$1" "$2"
}

# usage: mysql_spawn DIR PORT [more server flags...]   (as mysql_start,
# without waiting for the server to answer: servers start in parallel)
mysql_spawn() {
  local dir=$1 port=$2 pidfile=$1/run/mysqld.pid log args
  log=$(mysql_log "$dir")
  if pid_alive "$pidfile"; then
    # Starting, or shutting down after a SIGTERM: wait to see which.
    wait_until "$MYSQL_STOP_SECONDS" "$_MYSQL_FLAVOR on port $port to answer or exit" \
      answers_or_exited "$dir/run/mysqld.pid" _mysql_answers "$port" || true
    pid_alive "$pidfile" && return 0
  fi
  # A killed server's threads may still hold its listening socket for a
  # moment after its main thread is gone.
  wait_until 10 "port $port on 127.0.0.1 to be free" port_free "$port" ||
    die "cannot start $_MYSQL_FLAVOR: port $port on 127.0.0.1 is already in use"
  # A server killed with SIGKILL stays a zombie until its parent reaps it
  # (seconds, here), and mysqld takes the pid in its socket's lock file for
  # a live server and refuses to start. That server is gone: so is its lock.
  rm -f "$dir/run/mysqld.sock" "$dir/run/mysqld.sock.lock"
  mysql_init "$dir"
  mapfile -t args < <(_mysql_server_args "$@")
  log "starting $_MYSQL_FLAVOR${_MYSQL_IMAGE:+ from $_MYSQL_IMAGE} on 127.0.0.1:$port (log: $log)"
  # The server rewrites the pid file with the same pid once it is up; writing
  # it now lets a failed start be noticed (and stopped) before that.
  _mysql_spawn "$dir" "${args[@]}"
}

# usage: mysql_wait DIR PORT   (waits until the server answers a query over TCP)
mysql_wait() {
  local dir=$1 port=$2 log
  log=$(mysql_log "$dir")
  wait_until "$MYSQL_START_SECONDS" "$_MYSQL_FLAVOR on port $port" answers_or_exited "$dir/run/mysqld.pid" _mysql_answers "$port" || true
  pid_alive "$dir/run/mysqld.pid" ||
    die_with_log "the $_MYSQL_FLAVOR server on port $port exited while starting" "$log"
  _mysql_answers "$port" ||
    die_with_log "the $_MYSQL_FLAVOR server on port $port did not answer within $MYSQL_START_SECONDS s" "$log"
}

_mysql_answers() {
  mysql_client "$1" -uroot --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
}

# usage: mysql_stop DIR   (SIGTERM, then SIGKILL after MYSQL_STOP_SECONDS; quiet
# when nothing runs)
mysql_stop() {
  local pidfile=$1/run/mysqld.pid
  if pid_alive "$pidfile"; then
    log "stopping $_MYSQL_FLAVOR (pid $(<"$pidfile"))"
    stop_pidfile "$pidfile" "$MYSQL_STOP_SECONDS"
  fi
  rm -f "$pidfile"
  [[ -z $_MYSQL_IMAGE ]] || container_gone "$_MYSQL_CONTAINER"
}

# usage: mysql_running DIR
mysql_running() {
  pid_alive "$1/run/mysqld.pid"
}

# usage: mysql_client PORT [client args...]   (the mysql/mariadb client against
# 127.0.0.1:PORT; pass -u, and the password through MYSQL_PWD)
# ie: mysql_client 13306 -uroot -D webcluster -e 'CALL read_hits()'
mysql_client() {
  local port=$1
  shift
  "${_MYSQL_CLIENT[@]}" --protocol=TCP -h127.0.0.1 -P"$port" "$@"
}
