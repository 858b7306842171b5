#!/usr/bin/env bash
# Scale-out: 10,000 rows at 50 ms through scripts/dask_map.py on a Dask
# LocalCluster of 2 worker processes (2 partitions in flight, 32 calls
# each), against one `skein invoke --jsonl` process with the same total
# bound of 64 calls in flight.  Prints a Markdown section.
#   bench/dask_bench.sh [BUILD_DIR]     (needs python3-distributed)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SKEIN=$(cd "$BUILD" && pwd)/skein
MOCK=$BUILD/tests/skein-mockserver
PY=${SKEIN_PYTHON:-/usr/bin/python3}
"$PY" -c 'import distributed' 2>/dev/null || { echo "needs $PY with python3-distributed" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'kill "${MOCK_PID:-0}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_CACHE=off SKEIN_HISTORY=off SKEIN_QUIET=1
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

N=10000
mkdir -p "$TMP/skills/B/Echo"
printf 'item {{$input}}' > "$TMP/skills/B/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false}\n' > "$TMP/skills/B/Echo/config.json"
{ echo "id,input"; for i in $(seq 1 $N); do echo "$i,$i"; done; } > "$TMP/rows.csv"
for i in $(seq 1 $N); do printf '{"input": "%d"}\n' "$i"; done > "$TMP/rows.jsonl"

echo '{"idle_exit_ms": 600000, "echo": true, "echo_delay_ms": 50}' > "$TMP/scen.json"
exec 3< <("$MOCK" "$TMP/scen.json")
read -r PORT <&3
MOCK_PID=$(pgrep -n -f "skein-mockserver $TMP/scen.json" || true)
MODEL="openai:bench@http://127.0.0.1:$PORT/v1"

one=() dask=()
for run in 1 2 3; do
  t0=$(now)
  "$SKEIN" --skills "$TMP/skills" --model "$MODEL" invoke B.Echo --jsonl --concurrency 64 \
    < "$TMP/rows.jsonl" > "$TMP/one.out"
  t1=$(now)
  one+=("$(awk "BEGIN { print $t1 - $t0 }")")
  [ "$(wc -l < "$TMP/one.out")" -eq $N ] || { echo "one process: $(wc -l < "$TMP/one.out") lines" >&2; exit 1; }

  t0=$(now)
  "$PY" scripts/dask_map.py B.Echo "$TMP/rows.csv" "$TMP/dask.out" --rows 1000 --concurrency 32 \
    --workers 2 --skein "$SKEIN" -- --skills "$TMP/skills" --model "$MODEL" 2> "$TMP/dask.err"
  t1=$(now)
  dask+=("$(awk "BEGIN { print $t1 - $t0 }")")
  cmp -s "$TMP/one.out" "$TMP/dask.out" || { echo "dask output differs from one process's" >&2; exit 1; }
done
one_s=$(printf '%s\n' "${one[@]}" | median)
dask_s=$(printf '%s\n' "${dask[@]}" | median)
floor=$(awk "BEGIN { printf \"%.2f\", $N / 64 * 0.05 }")

cat <<MD

## Scale-out on Dask ($(date +%Y-%m-%d), $(nproc) cores, $(uname -m))

Command: \`bench/dask_bench.sh $BUILD\`; medians of 3 runs, whole-process
wall time.  $N rows, loopback server with 50 ms latency, 64 calls in
flight in all (latency floor: $floor s).

| run | wall time | ratio |
| --- | --- | --- |
| one \`skein invoke --jsonl --concurrency 64\` | $(printf '%.2f' "$one_s") s | 1.00 |
| \`scripts/dask_map.py\`, LocalCluster of 2 worker processes, 10 partitions of 1,000 rows, 32 in flight each | $(printf '%.2f' "$dask_s") s | $(awk "BEGIN { printf \"%.2f\", $dask_s / $one_s }") |
MD
