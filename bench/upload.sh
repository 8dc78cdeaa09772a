#!/usr/bin/env bash
# Times storing the ~1 GB bench recording in a local Garage with the product
# (`evidence process` with the S3 backend: SHA-256, SM3 and a SHA-256 per
# part in one pass, multipart upload from the incoming file with each part's
# SHA-256 checked by the server, the composite checksum compared, probe and
# continuity) and with `aws s3 cp` (awscli, which sends CRC32 per part and
# verifies nothing else), in one run, and prints the ratio (awscli time /
# product time; target >= 1) and the peak memory of each, from
# /usr/bin/time -v. The same file is also stored
# with the local backend, for what the S3 path adds.
#
# Garage comes from scripts/s3-servers.sh (started here when not running).
# The input is made once under bench/footage/ by make-bench-footage.sh.
# Usage: bench/upload.sh
set -euo pipefail
cd "$(dirname "$0")/.."

footage=bench/footage
input=$footage/bench-300s.mp4
mkdir -p "$footage"
[ -s "$input" ] || ./bench/make-bench-footage.sh "$input" 300
command -v aws >/dev/null || python3 -m pip install --quiet awscli
[ -x /usr/bin/time ] || apt-get install -y -q time >/dev/null
cargo build --release --quiet
evidence=$PWD/target/release/evidence

eval "$(./scripts/s3-servers.sh start)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bucket_product="bench-product-$(date +%s)"
bucket_peer="bench-awscli-$(date +%s)"

mkdir -p "$work/data"
cat >"$work/data/config.toml" <<EOF
[store]
backend = "s3"
endpoint = "$EVIDENCE_TEST_GARAGE_ENDPOINT"
region = "$EVIDENCE_TEST_GARAGE_REGION"
access_key_id = "$EVIDENCE_TEST_GARAGE_KEY_ID"
secret_access_key = "$EVIDENCE_TEST_GARAGE_SECRET"
bucket = "$bucket_product"
EOF
"$evidence" --data-dir "$work/data" storage init >/dev/null

export AWS_ACCESS_KEY_ID=$EVIDENCE_TEST_GARAGE_KEY_ID AWS_SECRET_ACCESS_KEY=$EVIDENCE_TEST_GARAGE_SECRET
export AWS_DEFAULT_REGION=$EVIDENCE_TEST_GARAGE_REGION AWS_EC2_METADATA_DISABLED=true
aws --endpoint-url "$EVIDENCE_TEST_GARAGE_ENDPOINT" s3 mb "s3://$bucket_peer" >/dev/null

# Warm the page cache so that both read the input from memory.
cat "$input" >/dev/null

# Prints "SECONDS PEAK_KIB" of one run of a command.
measure() {
  local log=$work/time.log
  /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
  local wall peak
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  peak=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  echo "$wall $peak"
}

read -r peer_s peer_kib < <(measure aws --endpoint-url "$EVIDENCE_TEST_GARAGE_ENDPOINT" s3 cp "$input" "s3://$bucket_peer/bench.mp4")
read -r product_s product_kib < <(measure "$evidence" --data-dir "$work/data" process "$input")
mkdir -p "$work/local"
read -r local_s local_kib < <(measure "$evidence" --data-dir "$work/local" process "$input")

bytes=$(stat -c %s "$input")
awk -v b="$bytes" -v p="$product_s" -v a="$peer_s" -v pm="$product_kib" -v am="$peer_kib" -v l="$local_s" -v lm="$local_kib" 'BEGIN {
  printf "input: %.0f MB\n", b / 1e6
  printf "evidence process (S3): %6.2f s  %6.1f MB/s  peak %5.0f MiB\n", p, b / 1e6 / p, pm / 1024
  printf "evidence process (local): %6.2f s  %6.1f MB/s  peak %5.0f MiB\n", l, b / 1e6 / l, lm / 1024
  printf "aws s3 cp:             %6.2f s  %6.1f MB/s  peak %5.0f MiB\n", a, b / 1e6 / a, am / 1024
  printf "ratio (aws s3 cp time / evidence time): %.2fx (target >= 1x)\n", a / p
}'
