#!/bin/bash
# Compares lossless splitting with ffmpeg's stream copy on the same input in
# the same run: the 600 s bench recording (1.88 GB) cut in two at 300 s, by
# `evidence split --case` (two clips written into the store with SHA-256 and
# SM3, verified, manifests, catalog) and by two `ffmpeg -ss … -to … -c copy`
# runs. The recording is ingested first and not timed, so both sides read a
# file from the page cache, and the disk is synced before each side starts.
#
# The product's clips are durable when it returns (fsynced, read back and
# hashed), but ffmpeg's stay in the page cache until writeback. So the
# headline peer is `ffmpeg …; sync -f`, which is like for like. The raw
# ffmpeg time is printed too. For scale, the script also times ffmpeg +
# sync + the digests the product records: sha256sum and
# `openssl dgst -sm3` on both outputs, run side by side.
# The page cache of this kind of machine makes single runs vary by up to
# twofold, so the two sides take turns for ROUNDS rounds (default 3) and
# the medians are compared; every round's times are printed too.
# Prints the times, the load average and the ratios.
# Usage: bench/split.sh [ROUNDS]   (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/evidence
footage=bench/footage/bench-600s.mp4
work=bench/footage/split
rounds=${1:-3}

[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$footage" ]; then
  mkdir -p "$(dirname "$footage")"
  bench/make-bench-footage.sh "$footage" 600
fi
rm -rf "$work" && mkdir -p "$work"

# Ingest once (not timed) and read the recording's start from the report.
start=$("$bin" --data-dir "$work/data" --json process "$footage" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["start"])')
at() { date -u -d "$start + $1 seconds" +%Y-%m-%dT%H:%M:%SZ; }

seconds() { date +%s.%N; }
elapsed() { echo "$(seconds) - $1" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
cat "$footage" > /dev/null
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

products=() peers_raw=() peers=() peers_digests=()
for round in $(seq "$rounds"); do
  # A new case id each round, so every round cuts and stores both clips.
  cat > "$work/case.json" <<JSON
{"case_id":"BENCH-$round","kind":"daily_inspection","ended_at":"2100-01-01T00:00:00Z","units":[
 {"unit_id":"U1","from":"$start","to":"$(at 300)"},
 {"unit_id":"U2","from":"$(at 300)","to":"$(at 601)"}]}
JSON
  sync
  t0=$(seconds)
  "$bin" --data-dir "$work/data" --json split --case "$work/case.json" > "$work/split.json"
  products+=("$(elapsed "$t0")")

  rm -f "$work"/ffmpeg-*.mp4
  sync
  t0=$(seconds)
  ffmpeg -v error -y -ss 0 -to 300 -i "$footage" -c copy -map 0 "$work/ffmpeg-1.mp4"
  ffmpeg -v error -y -ss 300 -to 601 -i "$footage" -c copy -map 0 "$work/ffmpeg-2.mp4"
  peers_raw+=("$(elapsed "$t0")")
  sync -f "$work/ffmpeg-1.mp4"
  peers+=("$(elapsed "$t0")")
  # Four digests side by side, as the product spreads its hashing over
  # both cores.
  for output in "$work"/ffmpeg-*.mp4; do
    sha256sum "$output" > /dev/null &
    openssl dgst -sm3 "$output" > /dev/null &
  done
  wait
  peers_digests+=("$(elapsed "$t0")")
  printf 'round %s: evidence %.2f s; ffmpeg %.2f s raw, %.2f s + sync, %.2f s + sync + digests\n' \
    "$round" "${products[-1]}" "${peers_raw[-1]}" "${peers[-1]}" "${peers_digests[-1]}"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
product=$(median "${products[@]}")
peer_raw=$(median "${peers_raw[@]}")
peer=$(median "${peers[@]}")
peer_digests=$(median "${peers_digests[@]}")

python3 - "$work/split.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for clip in report["clips"]:
    print(f'{clip["unit_id"]}: {clip["bytes"] / 1e6:.0f} MB, {clip["duration"]:.3f} s, preroll {clip["preroll"]:.3f} s, {clip["method"]}')
PY
ls -l "$work"/ffmpeg-*.mp4 | awk '{printf "ffmpeg: %.0f MB %s\n", $5 / 1e6, $9}'
ratio() { printf '%.2f' "$(echo "$1 / $product" | bc -l)"; }
printf 'load average before: %s, after: %s\n' "$load_before" "$load_after"
printf 'medians of %s rounds\n' "$rounds"
printf 'evidence split (durable, SHA-256 + SM3, read back): %.2f s\n' "$product"
printf 'ffmpeg -c copy: %.2f s (raw), %.2f s (+ sync), %.2f s (+ sync + sha256sum + sm3)\n' \
  "$peer_raw" "$peer" "$peer_digests"
printf 'ratio (peer time / evidence time): %sx against ffmpeg + sync (target >= 1x); %sx raw; %sx with digests\n' \
  "$(ratio "$peer")" "$(ratio "$peer_raw")" "$(ratio "$peer_digests")"
