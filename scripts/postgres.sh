#!/usr/bin/env bash
# Runs a throwaway PostgreSQL cluster for the tests that share one catalog
# between several workers. It listens on a unix socket in its own folder
# only (no TCP port), with trust authentication for that socket.
#
#   scripts/postgres.sh start    install PostgreSQL from Debian if needed, start, print `export` lines
#   scripts/postgres.sh stop     stop the cluster and remove its folder
#   scripts/postgres.sh env      print the `export` lines again
#
# State lives in $EVIDENCE_PG_DIR (default: a folder under /tmp).
set -euo pipefail

DIR="${EVIDENCE_PG_DIR:-/tmp/evidence-postgres}"
DATABASE="evidence_test"

log() { echo "postgres: $*" >&2; }

bin_dir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$found" ] && echo "$found"
}

install() {
    if [ -z "$(bin_dir)" ]; then
        log "installing PostgreSQL from Debian"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
}

# The server refuses to run as root: run its tools as the `postgres` user
# that the Debian package creates.
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

print_env() {
    echo "export EVIDENCE_TEST_POSTGRES_URL='postgres://postgres@localhost/$DATABASE?host=$DIR/socket'"
}

start() {
    install
    local bin
    bin=$(bin_dir)
    if [ -f "$DIR/data/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        print_env
        return
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/socket"
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$DIR"
    as_postgres "$bin/initdb" -D "$DIR/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { log "initdb failed; see $DIR/initdb.log"; return 1; }
    as_postgres "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
        -o "-c listen_addresses='' -k $DIR/socket -c max_connections=50" start >&2
    as_postgres "$bin/createdb" -h "$DIR/socket" -U postgres "$DATABASE"
    log "running; socket in $DIR/socket"
    print_env
}

stop() {
    local bin
    bin=$(bin_dir) || true
    if [ -n "$bin" ] && [ -d "$DIR/data" ]; then
        as_postgres "$bin/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
