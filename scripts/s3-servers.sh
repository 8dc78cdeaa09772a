#!/usr/bin/env bash
# Installs and runs the S3 servers the storage tests need, on 127.0.0.1 only:
#   Garage (single node)  - the data path: uploads, multipart resume, fixity
#   moto's standalone server - object lock and legal hold, which Garage lacks
#
#   scripts/s3-servers.sh start          install if needed, start both, print `export` lines
#   scripts/s3-servers.sh stop           stop both
#   scripts/s3-servers.sh stop-garage    stop Garage only (fault tests), keeping its data
#   scripts/s3-servers.sh start-garage   start Garage again on the same data
#   scripts/s3-servers.sh env            print the `export` lines again
#
# State lives in $EVIDENCE_S3_DIR (default: a directory under /tmp). The keys
# below are local test credentials of these throwaway servers, nothing else.
set -euo pipefail

DIR="${EVIDENCE_S3_DIR:-/tmp/evidence-s3-servers}"
GARAGE_S3_PORT="${EVIDENCE_GARAGE_PORT:-39000}"
GARAGE_RPC_PORT=$((GARAGE_S3_PORT + 1))
GARAGE_ADMIN_PORT=$((GARAGE_S3_PORT + 3))
MOTO_PORT="${EVIDENCE_MOTO_PORT:-39010}"
# Local test credentials: Garage accepts imported keys of this shape
# (GK + 24 hex digits, 64 hex digits of secret); moto accepts any.
GARAGE_KEY_ID="GK0123456789abcdef01234567"
GARAGE_SECRET="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
MOTO_KEY_ID="moto-test-key"
MOTO_SECRET="moto-test-secret"
RPC_SECRET="fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

log() { echo "s3-servers: $*" >&2; }

garage_bin() {
    if command -v garage >/dev/null 2>&1; then command -v garage; return; fi
    if [ -x "$HOME/.cargo/bin/garage" ]; then echo "$HOME/.cargo/bin/garage"; return; fi
    return 1
}

install() {
    if ! garage_bin >/dev/null; then
        log "installing Garage (cargo install garage --locked; about 10 minutes on 2 cores)"
        cargo install garage --locked >&2
    fi
    if ! command -v moto_server >/dev/null 2>&1; then
        log "installing moto's server"
        python3 -m pip install --quiet 'moto[server]' >&2
    fi
}

wait_port() {
    local port=$1 name=$2
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    log "$name did not open port $port; see $DIR/$name.log"
    return 1
}

is_running() {
    local pidfile="$DIR/$1.pid"
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

write_garage_config() {
    mkdir -p "$DIR/garage/meta" "$DIR/garage/data"
    cat >"$DIR/garage/garage.toml" <<EOF
metadata_dir = "$DIR/garage/meta"
data_dir = "$DIR/garage/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
EOF
}

garage_cli() { "$(garage_bin)" -c "$DIR/garage/garage.toml" "$@"; }

start_garage() {
    if is_running garage; then return 0; fi
    [ -f "$DIR/garage/garage.toml" ] || write_garage_config
    RUST_LOG=warn nohup "$(garage_bin)" -c "$DIR/garage/garage.toml" server >>"$DIR/garage.log" 2>&1 &
    echo $! >"$DIR/garage.pid"
    wait_port "$GARAGE_S3_PORT" garage
    if [ ! -f "$DIR/garage/.configured" ]; then
        local node=""
        for _ in $(seq 1 50); do
            node=$(garage_cli node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
            sleep 0.2
        done
        garage_cli layout assign -z local -c 1G "$node" >&2
        garage_cli layout apply --version 1 >&2
        garage_cli key import --yes -n evidence-test "$GARAGE_KEY_ID" "$GARAGE_SECRET" >&2
        garage_cli key allow --create-bucket evidence-test >&2
        touch "$DIR/garage/.configured"
    fi
    # The S3 API answers only once the layout is live.
    for _ in $(seq 1 50); do
        if garage_cli status >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
}

stop_one() {
    local name=$1 pidfile="$DIR/$1.pid"
    if [ -f "$pidfile" ]; then
        local pid
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    fi
}

start_moto() {
    if is_running moto; then return 0; fi
    nohup moto_server -H 127.0.0.1 -p "$MOTO_PORT" >>"$DIR/moto.log" 2>&1 &
    echo $! >"$DIR/moto.pid"
    wait_port "$MOTO_PORT" moto
}

print_env() {
    cat <<EOF
export EVIDENCE_S3_DIR="$DIR"
export EVIDENCE_TEST_S3_SCRIPT="$(cd "$(dirname "$0")" && pwd)/s3-servers.sh"
export EVIDENCE_TEST_GARAGE_ENDPOINT="http://127.0.0.1:$GARAGE_S3_PORT"
export EVIDENCE_TEST_GARAGE_REGION="garage"
export EVIDENCE_TEST_GARAGE_KEY_ID="$GARAGE_KEY_ID"
export EVIDENCE_TEST_GARAGE_SECRET="$GARAGE_SECRET"
export EVIDENCE_TEST_MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
export EVIDENCE_TEST_MOTO_KEY_ID="$MOTO_KEY_ID"
export EVIDENCE_TEST_MOTO_SECRET="$MOTO_SECRET"
EOF
}

mkdir -p "$DIR"
case "${1:-start}" in
    start)
        install
        start_garage
        start_moto
        print_env
        ;;
    stop)
        stop_one garage
        stop_one moto
        ;;
    stop-garage) stop_one garage ;;
    start-garage) start_garage ;;
    env) print_env ;;
    *)
        echo "usage: $0 start|stop|stop-garage|start-garage|env" >&2
        exit 2
        ;;
esac
