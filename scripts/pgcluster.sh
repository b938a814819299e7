#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for the demo, the benchmarks and the integration tests, of PG_CONFIG's
# version (scripts/pg_config.sh: PostgreSQL 15 unless PG_CONFIG or PG_VERSION says otherwise).
#
#   scripts/pgcluster.sh start NAME [extra postgresql.conf lines...]   start (initdb if needed); prints env
#   scripts/pgcluster.sh standby NAME PRIMARY [extra lines...]         a streaming hot standby of the running
#                                                                      cluster PRIMARY (pg_basebackup -R); prints env
#   scripts/pgcluster.sh stop NAME                                      stop it (data kept)
#   scripts/pgcluster.sh crash NAME                                     stop it as a crash would (data kept)
#   scripts/pgcluster.sh destroy NAME                                   stop and delete it
#   scripts/pgcluster.sh env NAME                                       print PGHOST/PGPORT/PGUSER of a running one
#   scripts/pgcluster.sh root                                           print the build directory clusters live in
#
# A cluster lives in $PG_STRESS_BUILD/clusters/NAME (default: target/pg_stress inside the project),
# one of PostgreSQL 16-18 in clusters-pgNN/NAME: the same name on two versions is two clusters.
# It listens only on a private Unix socket directory (no TCP), with trust authentication: nothing but
# the local user (and root) can reach it. As root, PostgreSQL runs as the `postgres` OS user.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$here/scripts/pg_config.sh"
bindir=$("$PG_CONFIG" --bindir)

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

build_root() {
  local root=${PG_STRESS_BUILD:-$here/target/pg_stress}
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$root"
    # The postgres OS user must reach the directory; a project under /root, say, is not reachable.
    if ! runuser -u postgres -- test -x "$root" 2>/dev/null; then
      root=/var/tmp/pg_stress-$(printf '%s' "$here" | md5sum | cut -c1-12)
      mkdir -p "$root"
    fi
    chown postgres:postgres "$root"
  else
    mkdir -p "$root"
  fi
  printf '%s\n' "$root"
}

# (below Linux's ephemeral range, 32768-60999: a port there can be taken, between the check and
# the server's bind, by the local end of any client connection, and tests open thousands)
free_port() {
  local p
  for p in $(seq 25400 25999); do
    # taken if something listens on TCP or any of our clusters has claimed it
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! grep -qs "^$p\$" "$1"/clusters*/*/port; then
      echo "$p"; return 0
    fi
  done
  echo "no free port in 25400-25999" >&2; return 1
}

cmd=${1:?usage: pgcluster.sh start|stop|destroy|env NAME}
if [ "$cmd" = root ]; then build_root; exit 0; fi
name=${2:?cluster name}
shift 2
root=$(build_root)
clusters=$root/clusters$([ "$PG_MAJOR" = 15 ] || echo "-pg$PG_MAJOR")
dir=$clusters/$name
data=$dir/data sock=$dir/socket log=$dir/postgres.log
user=$([ "$(id -u)" = 0 ] && echo postgres || id -un)

print_env() {
  printf 'PGHOST=%s\nPGPORT=%s\nPGUSER=%s\n' "$sock" "$(cat "$dir/port")" "$user"
}

running() { [ -f "$dir/port" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

case "$cmd" in
  standby)
    primary=${1:?usage: pgcluster.sh standby NAME PRIMARY}
    shift
    if running; then print_env; exit 0; fi
    pdir=$clusters/$primary
    [ -f "$pdir/port" ] || { echo "cluster $primary is not running" >&2; exit 1; }
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    rm -rf "$data"
    # (-R: standby.signal and primary_conninfo; the copy includes the primary's pg_stress.conf,
    # rewritten below with this cluster's own port and socket)
    as_owner "$bindir/pg_basebackup" -h "$pdir/socket" -p "$(cat "$pdir/port")" -U "$user" -D "$data" \
      -R -X stream -c fast >"$dir/basebackup.log" 2>&1 \
      || { cat "$dir/basebackup.log" >&2; exit 1; }
    echo "primary_conninfo = 'host=$pdir/socket port=$(cat "$pdir/port") user=$user application_name=$name'" \
      | as_owner tee -a "$data/postgresql.auto.conf" >/dev/null
    # the primary's settings (its extra lines too), then this standby's own
    mapfile -t settings < <(grep -v '^#\|^port\|^listen_addresses\|^unix_socket_directories' "$data/pg_stress.conf")
    exec "$0" start "$name" "${settings[@]}" "hot_standby = on" "$@"
    ;;
  start)
    if running; then print_env; exit 0; fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$data/PG_VERSION" ]; then
      rm -rf "$data"
      as_owner "$bindir/initdb" -D "$data" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
      echo "include_if_exists = 'pg_stress.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
    fi
    as_owner mkdir -p "$sock"
    as_owner chmod 700 "$sock"
    # (claimed under a lock: tests start clusters side by side, and two must not pick one port)
    exec 9>"$root/ports.lock"
    flock 9
    port=$(free_port "$root")
    echo "$port" > "$dir/port"
    exec 9>&-
    {
      echo "# written by scripts/pgcluster.sh at each start"
      echo "port = $port"
      echo "listen_addresses = ''"
      echo "unix_socket_directories = '$sock'"
      # (pg_cron where this version has it: Debian packages it for 15 only)
      if [ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ]; then
        echo "shared_preload_libraries = 'pg_stress, pg_cron'"
      else
        echo "shared_preload_libraries = 'pg_stress'"
      fi
      echo "max_worker_processes = 32"
      echo "max_connections = 100"
      # (each line says its SQLSTATE: make test fails on an XX000 anywhere in a test server's log)
      echo "log_line_prefix = '%m [%p] %e '"
      for line in "$@"; do echo "$line"; done
    } | as_owner tee "$data/pg_stress.conf" >/dev/null
    # A server that inherits RUST_BACKTRACE would put a Rust backtrace in the DETAIL of errors that
    # pass through pgrx: start it as a user's server would be started, without it.
    as_owner env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null \
      || { tail -20 "$log" >&2; exit 1; }
    print_env
    ;;
  stop)
    if running; then as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null; fi
    ;;
  crash)
    # stop as a crash would (immediate: no shutdown checkpoint, workers get no chance to clean up)
    if running; then as_owner "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null; fi
    ;;
  destroy)
    if running; then as_owner "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null; fi
    rm -rf "$dir"
    ;;
  env)
    running || { echo "cluster $name is not running" >&2; exit 1; }
    print_env
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
