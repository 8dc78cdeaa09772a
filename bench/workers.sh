#!/usr/bin/env bash
# Times the worker on 20 recordings, once with one worker and once with two
# workers sharing the work through a PostgreSQL catalog (as on two
# machines), and prints the throughput ratio (two / one) and the peak
# memory of each worker, from /usr/bin/time -v.
#
# The recordings are 10 body cameras × 2 chapters of 15 s of 1080p30
# H.264 at 25 Mb/s (about 47 MB each, 940 MB in all), made once under
# bench/footage/workers/ with make-bench-footage.sh; noise makes each one
# distinct. PostgreSQL comes from scripts/postgres.sh (started here when
# not running). The input is read once before timing, so both runs read
# it from the page cache.
# Usage: bench/workers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDINGS=20
SECONDS_EACH=15
footage=bench/footage/workers
mkdir -p "$footage"
for i in $(seq 0 $((RECORDINGS - 1))); do
    device=$(printf 'HB%04d' $((i / 2)))
    chapter=$((i % 2))
    start=$(printf '2024050110%02d%02d' $((chapter / 4)) $((chapter * SECONDS_EACH)))
    file="$footage/${device}_130631001_${start}_000$((chapter + 1)).MP4"
    [ -s "$file" ] || ./bench/make-bench-footage.sh "$file" "$SECONDS_EACH"
done
[ -x /usr/bin/time ] || apt-get install -y -q time >/dev/null
cargo build --release --quiet
evidence=$PWD/target/release/evidence

eval "$(./scripts/postgres.sh start)"
admin_url=$EVIDENCE_TEST_POSTGRES_URL
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$footage"/*.MP4 >/dev/null
bytes=$(cat "$footage"/*.MP4 | wc -c)

# A fresh database and data directory per run; prints the catalog URL.
fresh() {
    local name=$1
    psql "$admin_url" -q -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    echo "${admin_url/evidence_test/$name}"
}

# Runs N workers at once on the footage; prints the wall time in seconds.
run() {
    local workers=$1 url data
    url=$(fresh "bench_workers_$workers")
    data=$work/data-$workers
    mkdir -p "$data"
    printf '[roles]\nbench = ["operator"]\n' >"$data/config.toml"
    local started ended
    started=$(date +%s.%N)
    for n in $(seq 1 "$workers"); do
        EVIDENCE_ACTOR=bench EVIDENCE_CATALOG_URL=$url /usr/bin/time -v -o "$work/time-$workers-$n" \
            "$evidence" --data-dir "$data" --json worker --watch "$footage" --settle-secs 1 --until-idle \
            >"$work/summary-$workers-$n.json" 2>"$work/log-$workers-$n" &
    done
    wait
    ended=$(date +%s.%N)
    echo "$ended - $started" | bc -l
}

peak_mib() {
    awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"
}

cpu() {
    awk -F': ' '/Percent of CPU this job got/ { print $2 }' "$1"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
one=$(run 1)
two=$(run 2)
mb=$(echo "$bytes / 1000000" | bc -l)
printf '%d recordings, %.0f MB\n' "$RECORDINGS" "$mb"
printf '%s cores; load average before the runs: %s\n' "$(nproc)" "$load"
printf '| workers | time (s) | recordings/s | MB/s | peak memory per worker (MiB) | CPU per worker | jobs done per worker |\n|---|---|---|---|---|---|---|\n'
printf '| 1 | %.2f | %.2f | %.1f | %s | %s | %s |\n' "$one" "$(echo "$RECORDINGS / $one" | bc -l)" "$(echo "$mb / $one" | bc -l)" \
    "$(peak_mib "$work/time-1-1")" "$(cpu "$work/time-1-1")" "$(jq -r .jobs_done "$work/summary-1-1.json")"
printf '| 2 | %.2f | %.2f | %.1f | %s, %s | %s, %s | %s, %s |\n' "$two" "$(echo "$RECORDINGS / $two" | bc -l)" "$(echo "$mb / $two" | bc -l)" \
    "$(peak_mib "$work/time-2-1")" "$(peak_mib "$work/time-2-2")" "$(cpu "$work/time-2-1")" "$(cpu "$work/time-2-2")" \
    "$(jq -r .jobs_done "$work/summary-2-1.json")" "$(jq -r .jobs_done "$work/summary-2-2.json")"
printf 'throughput ratio (two workers / one worker): %.2fx\n' "$(echo "$one / $two" | bc -l)"
