#!/usr/bin/env bash
# Times the continuity scan (`evidence check`) against `ffprobe -show_packets`
# on the same 1080p recording, as MP4 and remuxed to MPEG-TS, in one run,
# and prints the ratios. Targets: at least 10x for MP4 (only the index needs
# reading) and 2x for MPEG-TS (every packet header must be read).
#
# The input is made once under bench/footage/ by make-bench-footage.sh
# (600 s, about 1.9 GB) and reused; the TS copy is a stream copy of it.
# Each command runs once to warm the page cache, then RUNS times; the best
# time counts, so that both sides read from memory, not disk.
# Usage: bench/continuity.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
footage=bench/footage
mp4=$footage/bench-600s.mp4
ts=$footage/bench-600s.ts
mkdir -p "$footage"

[ -s "$mp4" ] || ./bench/make-bench-footage.sh "$mp4" 600
[ -s "$ts" ] || ffmpeg -v error -y -i "$mp4" -map 0 -c copy -f mpegts "$ts"
cargo build --release --quiet
evidence=target/release/evidence
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

# Prints the best wall-clock seconds of RUNS runs of a command.
best_of() {
  "$@" >/dev/null 2>&1
  local best=
  for _ in $(seq "$runs"); do
    local start end took
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    took=$(echo "$end - $start" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$took < $best" | bc -l)" = 1 ]; then best=$took; fi
  done
  printf '%.3f' "$best"
}

printf '%-8s %10s %12s %14s %8s %8s\n' format "size (MB)" "evidence (s)" "ffprobe (s)" ratio target
for pair in "mp4:$mp4:10" "mpegts:$ts:2"; do
  IFS=: read -r format file target <<<"$pair"
  size=$(( $(stat -c %s "$file") / 1000000 ))
  ours=$(best_of "$evidence" --data-dir "$data" check --json "$file")
  peer=$(best_of ffprobe -v error -show_packets "$file")
  ratio=$(echo "$peer / $ours" | bc -l)
  printf '%-8s %10d %12s %14s %7.1fx %7sx\n' "$format" "$size" "$ours" "$peer" "$ratio" "$target"
done
