#!/bin/bash
# Compares lossless splitting with ffmpeg's stream copy on the same input in
# the same run: the 600 s bench recording (1.88 GB) cut in two at 300 s, by
# `evidence split --case` (two clips written into the store with SHA-256 and
# SM3, verified, manifests, catalog) and by two `ffmpeg -ss … -to … -c copy`
# runs. The recording is ingested first and not timed, so both sides read a
# file from the page cache. Prints both times and the ratio.
# Usage: bench/split.sh   (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/evidence
footage=bench/footage/bench-600s.mp4
work=bench/footage/split

[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$footage" ]; then
  mkdir -p "$(dirname "$footage")"
  bench/make-bench-footage.sh "$footage" 600
fi
rm -rf "$work" && mkdir -p "$work"

# Ingest once (not timed) and read the recording's start from the report.
start=$("$bin" --data-dir "$work/data" --json process "$footage" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["start"])')
cat > "$work/case.json" <<JSON
{"case_id":"BENCH-1","kind":"daily_inspection","ended_at":"2100-01-01T00:00:00Z","units":[
 {"unit_id":"U1","from":"$start","to":"$(date -u -d "$start + 300 seconds" +%Y-%m-%dT%H:%M:%SZ)"},
 {"unit_id":"U2","from":"$(date -u -d "$start + 300 seconds" +%Y-%m-%dT%H:%M:%SZ)","to":"$(date -u -d "$start + 601 seconds" +%Y-%m-%dT%H:%M:%SZ)"}]}
JSON

seconds() { date +%s.%N; }
cat "$footage" > /dev/null

t0=$(seconds)
"$bin" --data-dir "$work/data" --json split --case "$work/case.json" > "$work/split.json"
product=$(echo "$(seconds) - $t0" | bc)

t0=$(seconds)
ffmpeg -v error -y -ss 0 -to 300 -i "$footage" -c copy -map 0 "$work/ffmpeg-1.mp4"
ffmpeg -v error -y -ss 300 -to 601 -i "$footage" -c copy -map 0 "$work/ffmpeg-2.mp4"
peer=$(echo "$(seconds) - $t0" | bc)

python3 - "$work/split.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for clip in report["clips"]:
    print(f'{clip["unit_id"]}: {clip["bytes"] / 1e6:.0f} MB, {clip["duration"]:.3f} s, preroll {clip["preroll"]:.3f} s, {clip["method"]}')
PY
ls -l "$work"/ffmpeg-*.mp4 | awk '{printf "ffmpeg: %.0f MB %s\n", $5 / 1e6, $9}'
printf 'evidence split: %.2f s\nffmpeg -c copy: %.2f s\nratio (ffmpeg time / evidence time): %.2fx (target >= 1x)\n' \
  "$product" "$peer" "$(echo "$peer / $product" | bc -l)"
