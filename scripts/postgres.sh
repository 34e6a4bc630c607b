#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for benchmarks (the tests make their own in
# tests/suite/common/postgres.rs): initdb and pg_ctl as an unprivileged user (`postgres`, else
# `nobody`, when run as root), a free loopback port, the data in DIR, stopped by its PID file.
#
#   scripts/postgres.sh bindir            # prints the directory of initdb/pg_ctl/postgres
#   scripts/postgres.sh start DIR         # prints the URL of its database `stagegate`
#   scripts/postgres.sh stop DIR          # fast shutdown of that cluster, nothing else
set -euo pipefail
cmd=${1:?bindir|start|stop}

# Debian keeps initdb and pg_ctl off PATH: pg_config, the newest /usr/lib/postgresql/*/bin,
# then PATH. A STAGEGATE_PG_BIN already set wins.
bindir() {
  local dir
  for dir in "${STAGEGATE_PG_BIN:-}" "$(pg_config --bindir 2>/dev/null)" \
             $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV) \
             "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"; return 0
    fi
  done
  return 1
}

# As root, PostgreSQL refuses to run: use its own user (Debian's package creates it).
as_user() {
  if [ "$(id -u)" != 0 ]; then "$@"; return; fi
  local user=postgres
  id "$user" >/dev/null 2>&1 || user=nobody
  runuser -u "$user" -- "$@"
}

case "$cmd" in
  bindir) bindir ;;
  start)
    dir=${2:?DIR}; mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    bin=$(bindir) || { echo "postgres.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 2; }
    if [ "$(id -u)" = 0 ]; then
      user=postgres; id "$user" >/dev/null 2>&1 || user=nobody
      chown -R "$user" "$dir"; chmod 711 "$dir"
      runuser -u "$user" -- test -x "$dir" || {
        echo "postgres.sh: $user cannot enter $dir (a parent is not o+x; mktemp makes 0700 dirs)" >&2; exit 2; }
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_user "$bin/initdb" -D "$dir/data" --auth=trust -U stagegate -E UTF8 --locale=C >"$dir/initdb.log" 2>&1
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    env -u PGPASSWORD "$bin/createdb" -h 127.0.0.1 -p "$port" -U stagegate stagegate 2>/dev/null \
      || as_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U stagegate stagegate
    echo "postgres://stagegate@127.0.0.1:$port/stagegate"
    ;;
  stop)
    dir=${2:?DIR}
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    bin=$(bindir)
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 bindir|start DIR|stop DIR" >&2; exit 2 ;;
esac
