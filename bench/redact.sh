#!/bin/bash
# Compares smart redaction with ffmpeg on the same input in the same run:
# a 20 s blurred region inside a 10 min 1080p recording, redacted by
# `evidence redact` (only the touched GOPs re-encoded) and by ffmpeg
# re-encoding the whole file with the same box blur (boxblur, libx264 at
# the same preset and CRF). Prints the ratio of wall times, then the
# full-frame redaction throughput of `evidence redact --full` on a 60 s
# excerpt in frames per second.
# Usage: bench/redact.sh   (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/evidence
footage=bench/footage/bench-600s.mp4
work=bench/footage/redact
preset=veryfast
crf=20
# The mask: 400x300 pixels at (760, 390), from 300 s to 320 s, blur radius 24.
x=760 y=390 w=400 h=300 from=300 to=320 radius=24

[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -f "$footage" ]; then
  mkdir -p "$(dirname "$footage")"
  bench/make-bench-footage.sh "$footage" 600
fi
rm -rf "$work" && mkdir -p "$work"

cat > "$work/spec.json" <<JSON
{"masks":[{"shape":"rectangle","style":"blur","radius":$radius,"from":$from,"to":$to,
  "keyframes":[{"at":$from,"x":$x,"y":$y,"width":$w,"height":$h}],
  "reason":"personal_privacy","author":"bench"}]}
JSON

seconds() { date +%s.%N; }

start=$(seconds)
"$bin" redact "$footage" --spec "$work/spec.json" --out "$work/smart.mp4" --preset $preset --quality $crf >/dev/null
smart=$(echo "$(seconds) - $start" | bc)

# ffmpeg's boxblur takes the radius and the number of passes; three
# passes match the renderer's three box filter passes.
start=$(seconds)
ffmpeg -v error -y -i "$footage" -filter_complex \
  "[0:v]crop=$w:$h:$x:$y,boxblur=$radius:3[b];[0:v][b]overlay=$x:$y:enable='between(t,$from,$to)'" \
  -c:v libx264 -preset $preset -crf $crf -c:a copy "$work/ffmpeg.mp4"
peer=$(echo "$(seconds) - $start" | bc)

ffmpeg -v error -y -i "$footage" -t 60 -c copy "$work/excerpt-60s.mp4"
frames=$(ffprobe -v error -select_streams v -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$work/excerpt-60s.mp4")
cat > "$work/full.json" <<JSON
{"masks":[{"shape":"rectangle","style":"blur","radius":$radius,
  "keyframes":[{"at":0,"x":$x,"y":$y,"width":$w,"height":$h}],
  "reason":"personal_privacy","author":"bench"}]}
JSON
start=$(seconds)
"$bin" redact "$work/excerpt-60s.mp4" --spec "$work/full.json" --out "$work/full.mp4" --full --preset $preset --quality $crf >/dev/null
full=$(echo "$(seconds) - $start" | bc)

printf 'smart redaction, 20 s mask in 600 s 1080p: %.1f s\n' "$smart"
printf 'ffmpeg boxblur + libx264 %s whole file:    %.1f s\n' "$preset" "$peer"
printf 'ratio (ffmpeg / smart):                     %.1fx (target >= 20x)\n' "$(echo "$peer / $smart" | bc -l)"
printf 'full-frame redaction throughput:            %.1f fps (%s frames in %.1f s)\n' \
  "$(echo "$frames / $full" | bc -l)" "$frames" "$full"
