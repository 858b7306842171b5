#!/usr/bin/env bash
# DataFrame benchmarks: CSV import rows/s, and ai_map rows/s against a
# loopback OpenAI-compatible server with a fixed 50 ms latency.  Prints a
# Markdown section; `make bench` appends it to bench/RESULTS.md.
#   bench/df_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SKEIN=$BUILD/skein
MOCK=$BUILD/tests/skein-mockserver
TMP=$(mktemp -d)
trap 'kill "${MOCK_PID:-0}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_CACHE=off SKEIN_HISTORY=off SKEIN_QUIET=1
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }
secs() { calc "$2 - $1"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ---- CSV import, 1,000,000 rows x 5 columns
awk 'BEGIN { srand(1); print "id,dept,week,sales,note";
  for (i = 1; i <= 1000000; i++)
    printf "%d,dept%d,%d,%.2f,\"note, number %d\"\n", i, i % 17, i % 52, rand() * 1000, i }' > "$TMP/big.csv"
times=()
for run in 1 2 3; do
  t0=$(now); "$SKEIN" run bench/csv_import.lua "$TMP/big.csv" > "$TMP/import.out"; t1=$(now)
  times+=("$(secs "$t0" "$t1")")
done
import_s=$(printf '%s\n' "${times[@]}" | median)
import_rate=$(awk "BEGIN { printf \"%d\", 1000000 / $import_s }")

# ---- ai_map, 2000 rows, 50 ms per call, concurrency 64
echo '{"idle_exit_ms": 60000, "responses": [{"reply": "teal", "delay_ms": 50}]}' > "$TMP/scen.json"
exec 3< <("$MOCK" "$TMP/scen.json")
read -r PORT <&3
MOCK_PID=$(pgrep -n -f "skein-mockserver $TMP/scen.json" || true)
times=()
for run in 1 2 3; do
  t0=$(now)
  "$SKEIN" run bench/ai_map.lua "openai:bench@http://127.0.0.1:$PORT/v1" 2000 64 > "$TMP/map.out"
  t1=$(now)
  times+=("$(secs "$t0" "$t1")")
done
map_s=$(printf '%s\n' "${times[@]}" | median)
map_rate=$(awk "BEGIN { printf \"%d\", 2000 / $map_s }")
ideal=$(calc "2000 / 64 * 0.05")

# ---- ai() in SQL against ai_map, 10,000 rows, 50 ms per call, 64 in flight
run3() { # script: median seconds of 3 runs
  local ts=()
  for run in 1 2 3; do
    t0=$(now)
    "$SKEIN" run "bench/$1" "openai:bench@http://127.0.0.1:$PORT/v1" 10000 64 > "$TMP/$1.out"
    t1=$(now)
    ts+=("$(secs "$t0" "$t1")")
  done
  printf '%s\n' "${ts[@]}" | median
}
map10_s=$(run3 ai_map.lua)
sql10_s=$(run3 sql_ai.lua)
grep -q "answered=10000 model_calls=10000" "$TMP/sql_ai.lua.out" || { echo "sql ai(): $(cat "$TMP/sql_ai.lua.out")" >&2; exit 1; }
floor10=$(calc "10000 / 64 * 0.05")

cat <<MD
## DataFrames ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m))

Command: \`bench/df_bench.sh $BUILD\`; medians of 3 runs, whole process wall time.

| workload | result |
| --- | --- |
| CSV import, 1,000,000 rows x 5 columns (\`skein.df.read_csv\`) | $(printf '%.2f' "$import_s") s, $import_rate rows/s |
| \`ai_map\` over 2,000 rows, loopback server with 50 ms latency, concurrency 64, cache off | $(printf '%.2f' "$map_s") s, $map_rate rows/s (latency floor: $(printf '%.2f' "$ideal") s) |
| \`ai_map\` over 10,000 rows, 50 ms, 64 in flight | $(printf '%.2f' "$map10_s") s (latency floor: $(printf '%.2f' "$floor10") s) |
| \`SELECT ai(...)\` over the same 10,000 rows, \`sql_concurrency\` 64 | $(printf '%.2f' "$sql10_s") s, $(calc "$sql10_s / $map10_s")x the \`ai_map\` time |

MD
