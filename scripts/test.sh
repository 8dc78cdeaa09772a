#!/usr/bin/env bash
# Sets up the machine and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# The storage tests need Garage and moto; stop them however the run ends.
eval "$(./scripts/s3-servers.sh start)"
trap './scripts/s3-servers.sh stop' EXIT
# Two workers sharing one catalog need PostgreSQL.
eval "$(./scripts/postgres.sh start)"
trap './scripts/s3-servers.sh stop; ./scripts/postgres.sh stop' EXIT
cargo test --release --no-fail-fast "$@"
