#!/usr/bin/env bash
# Sets up the machine, builds the product, makes the example footage and
# runs the main job on it with the embedded default (local store, SQLite),
# then prints where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --quiet
footage=example-footage
data=example-data
./fixtures/make-fixtures.sh "$footage" >/dev/null
./target/release/evidence process "$footage" --case "$footage/case.json" --data-dir "$data" "$@"
echo
echo "example footage: $PWD/$footage"
echo "results:         $PWD/$data (catalog.sqlite, store/)"
