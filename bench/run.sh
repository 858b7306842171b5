#!/usr/bin/env bash
# Side-by-side benchmarks: skein against a raw curl floor and LangChain.js,
# all talking to the same loopback OpenAI-compatible server (bench/fastmock.c).
# Prints a Markdown section; `make bench` appends it to bench/RESULTS.md.
#   bench/run.sh [BUILD_DIR]
# Environment: RUNS (repetitions of the quick workloads, 5), SLOW_RUNS (of
# the multi-second ones, 3), MAP_ROWS (10000).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SKEIN=$BUILD/skein
RUNS=${RUNS:-5}
SLOW_RUNS=${SLOW_RUNS:-3}
MAP_ROWS=${MAP_ROWS:-10000}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_CACHE=off SKEIN_HISTORY=off SKEIN_QUIET=1 OPENAI_API_KEY=bench
unset OPENAI_BASE_URL LANGCHAIN_TRACING_V2 LANGSMITH_TRACING 2>/dev/null || true
log() { echo "bench: $*" >&2; }

[ -x "$SKEIN" ] || { echo "bench/run.sh: $SKEIN not built (make build)" >&2; exit 2; }
if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q time >/dev/null
  else
    echo "bench/run.sh: needs GNU time (apt-get install time)" >&2; exit 2
  fi
fi
CC=${CC:-cc}
$CC -O2 -std=c11 -Wall -Wextra -o "$TMP/fastmock" bench/fastmock.c
$CC -O2 -std=c11 -Wall -Wextra -o "$TMP/loadgen" bench/loadgen.c
$CC -O2 -std=c11 -Wall -Wextra -o "$TMP/rtime" bench/rtime.c

HAVE_LC=0
if command -v node >/dev/null && command -v npm >/dev/null; then
  log "npm ci in bench/node"
  if (cd bench/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$TMP/npm.err"); then
    HAVE_LC=1
  else
    log "npm ci failed, LangChain.js is left out: $(tail -1 "$TMP/npm.err")"
  fi
fi

# ---- servers: a fixed reply "ok" after 0 ms and after 50 ms
start_server() { # VAR PROGRAM ARGS...: starts it, sets VAR to its port
  local var=$1; shift
  local out="$TMP/port.$RANDOM"
  "$@" > "$out" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.02; done
  printf -v "$var" '%s' "$(head -1 "$out")"
}
start_server P0 "$TMP/fastmock" 0
start_server P50 "$TMP/fastmock" 50
echo '{"idle_exit_ms": 600000, "responses": [{"reply": "ok", "delay_ms": 0}]}' > "$TMP/m0.json"
echo '{"idle_exit_ms": 600000, "responses": [{"reply": "ok", "delay_ms": 50}]}' > "$TMP/m50.json"
start_server MP0 "$BUILD/tests/skein-mockserver" "$TMP/m0.json"
start_server MP50 "$BUILD/tests/skein-mockserver" "$TMP/m50.json"
URL0=http://127.0.0.1:$P0/v1
URL50=http://127.0.0.1:$P50/v1
SPEC0=openai:bench@$URL0
SPEC50=openai:bench@$URL50

# ---- helpers
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v == "") print "n/a"; else printf "%.*f", d, v }'; }
ratio() { # A B: A/B with an x, n/a if either is missing
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'
}

# measure NAME RUNS EXPECT CMD...: runs CMD under bench/rtime.c (GNU time's
# "%e %U %S %M" at microsecond resolution) RUNS times and
# sets NAME_wall (s), NAME_cpu (user+sys, s), NAME_rss (MB): medians.  The
# output must contain EXPECT, else the benchmark stops: a fast wrong
# answer is not a result.
measure() {
  local name=$1 runs=$2 expect=$3; shift 3
  local w=() c=() r=() ip=()
  for _ in $(seq "$runs"); do
    if ! "$TMP/rtime" "$TMP/time" "$@" > "$TMP/out" 2> "$TMP/err"; then
      echo "bench/run.sh: $name failed: $*" >&2; tail -5 "$TMP/err" >&2; exit 1
    fi
    grep -q -- "$expect" "$TMP/out" || {
      echo "bench/run.sh: $name: no '$expect' in the output of $*" >&2; head -5 "$TMP/out" >&2; exit 1; }
    read -r tw tu ts tm < <(tail -1 "$TMP/time")
    w+=("$tw"); c+=("$(calc "$tu + $ts")"); r+=("$(calc "$tm / 1024")")
    # in-process time of the workload when the client reports it: skein
    # --stats "wall time N ms", lc.mjs "inproc_ms=N"
    local t
    t=$(sed -n 's/.*wall time \([0-9.]*\) ms.*/\1/p; s/^inproc_ms=\([0-9.]*\)$/\1/p' "$TMP/err" | tail -1)
    [ -n "$t" ] && ip+=("$t")
  done
  if [ ${#ip[@]} -gt 0 ]; then
    printf -v "${name}_inproc" '%s' "$(printf '%s\n' "${ip[@]}" | median)"
  fi
  printf -v "${name}_wall" '%s' "$(printf '%s\n' "${w[@]}" | median)"
  printf -v "${name}_cpu" '%s' "$(printf '%s\n' "${c[@]}" | median)"
  printf -v "${name}_rss" '%s' "$(printf '%s\n' "${r[@]}" | median)"
  log "$name: wall $(eval echo \$${name}_wall) s, cpu $(eval echo \$${name}_cpu) s, rss $(eval echo \$${name}_rss) MB"
}
LC=(node bench/node/lc.mjs)

# curl config with N identical chat requests to URL (no process per call)
curl_cfg() { # FILE URL N
  local body='{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"temperature":0}'
  awk -v url="$2/chat/completions" -v n="$3" -v body="$body" 'BEGIN {
    gsub(/"/, "\\\"", body)
    for (i = 1; i <= n; i++) {
      if (i > 1) print "next"
      printf "url = \"%s\"\nheader = \"Content-Type: application/json\"\ndata = \"%s\"\noutput = \"/dev/stdout\"\n", url, body
    } }' > "$1"
}
# curl with --parallel caps --parallel-max at 300, so 1000 in flight are
# four curl processes of 250 each.
curl_split() { # N PER URL: N requests, PER in flight per process
  local n=$1 per=$2 url=$3 procs=$(( ($1 + $2 - 1) / $2 ))
  curl_cfg "$TMP/split.cfg" "$url" "$per"
  for _ in $(seq "$procs"); do
    curl -s --parallel --parallel-immediate --parallel-max "$per" -K "$TMP/split.cfg" &
  done
  wait
}

# ---- 0. the server is not the bottleneck
log "server check"
lg() { "$TMP/loadgen" "$@" | sed 's/.*wall_ms=\([0-9.]*\) req_per_s=\([0-9]*\).*/\1 \2/'; }
srv_rows=""
for srv in "fastmock:$P0:$P50" "skein-mockserver:$MP0:$MP50"; do
  IFS=: read -r sname s0 s50 <<< "$srv"
  seq_rps=(); par_rps=(); burst=()
  for _ in $(seq "$RUNS"); do
    read -r _ r < <(lg "$s0" 1 2000); seq_rps+=("$r")
    read -r _ r < <(lg "$s0" 1000 5); par_rps+=("$r")
    read -r ms _ < <(lg "$s50" 1000 1); burst+=("$ms")
  done
  srv_rows+="| $sname | $(printf '%s\n' "${seq_rps[@]}" | median) | $(printf '%s\n' "${par_rps[@]}" | median) | $(fmt "$(printf '%s\n' "${burst[@]}" | median)" 0) |"$'\n'
done

# ---- 1. cold start to first reply, one call, 0 ms
log "1. cold start"
curl_cfg "$TMP/one.cfg" "$URL0" 1
measure sk_cold "$RUNS" '^ok$' "$SKEIN" --skills bench/skills --model "$SPEC0" invoke Bench.Echo --input hello
measure cu_cold "$RUNS" '"ok"' curl -s -K "$TMP/one.cfg"
[ $HAVE_LC = 1 ] && measure lc_cold "$RUNS" '^ok$' "${LC[@]}" cold "$URL0"

# ---- 2. 1000 sequential calls, 0 ms
log "2. 1000 sequential"
curl_cfg "$TMP/seq.cfg" "$URL0" 1000
measure sk_seq "$RUNS" 'calls=1000' "$SKEIN" run bench/lua/seq.lua "$SPEC0" 1000
measure cu_seq "$RUNS" '"ok"' curl -s -K "$TMP/seq.cfg"
[ $HAVE_LC = 1 ] && measure lc_seq "$SLOW_RUNS" 'calls=1000' "${LC[@]}" seq "$URL0" 1000
# the skein CLI's batch mode, one call in flight: the same calls without Lua
for i in $(seq 1000); do echo '{"input": "hello"}'; done > "$TMP/seq.jsonl"
measure skj_seq "$RUNS" '"result":"ok"' sh -c "'$SKEIN' --skills bench/skills --model '$SPEC0' invoke Bench.Echo --jsonl --concurrency 1 < '$TMP/seq.jsonl'"

# ---- 3. 1000 concurrent calls, 50 ms
log "3. 1000 concurrent"
measure sk_conc "$RUNS" 'calls=1000' "$SKEIN" run bench/lua/conc.lua "$SPEC50" 1000
measure skj_conc "$RUNS" '"result":"ok"' sh -c "'$SKEIN' --skills bench/skills --model '$SPEC50' invoke Bench.Echo --jsonl --concurrency 1000 < '$TMP/seq.jsonl'"
measure cu_conc "$RUNS" '"ok"' bash -c "$(declare -f curl_cfg curl_split); TMP='$TMP'; curl_split 1000 250 '$URL50'"
[ $HAVE_LC = 1 ] && measure lc_conc "$SLOW_RUNS" 'calls=1000' "${LC[@]}" conc "$URL50" 1000

# ---- 4. 3-step chain, 50 ms
log "4. chain"
curl_cfg "$TMP/chain.cfg" "$URL50" 3
measure sk_chain "$RUNS" '^ok$' "$SKEIN" --stats run bench/lua/chain.lua "$SPEC50"
measure cu_chain "$RUNS" '"ok"' curl -s -K "$TMP/chain.cfg"
[ $HAVE_LC = 1 ] && measure lc_chain "$RUNS" '^ok$' "${LC[@]}" chain "$URL50"

# ---- 5. plan of 8 independent steps + native join, 50 ms
log "5. plan k=8"
curl_cfg "$TMP/plan.cfg" "$URL50" 8
measure sk_plan "$RUNS" '^ok$' "$SKEIN" --stats --skills bench/skills --model "$SPEC50" run-plan bench/plan8.plan
measure cu_plan "$RUNS" '"ok"' curl -s --parallel --parallel-immediate --parallel-max 8 -K "$TMP/plan.cfg"
[ $HAVE_LC = 1 ] && measure lc_plan "$RUNS" '^ok$' "${LC[@]}" plan "$URL50"

# ---- 6. ai_map over MAP_ROWS rows, 50 ms, 64 in flight
log "6. ai_map $MAP_ROWS rows"
curl_cfg "$TMP/map.cfg" "$URL50" "$MAP_ROWS"
measure sk_map "$SLOW_RUNS" "rows=$MAP_ROWS failed=0" "$SKEIN" run bench/ai_map.lua "$SPEC50" "$MAP_ROWS" 64
measure cu_map "$SLOW_RUNS" '"ok"' curl -s --parallel --parallel-immediate --parallel-max 64 -K "$TMP/map.cfg"
[ $HAVE_LC = 1 ] && measure lc_map "$SLOW_RUNS" "rows=$MAP_ROWS" "${LC[@]}" batch "$URL50" "$MAP_ROWS" 64

# ---- derived numbers
ms() { [ -n "${1:-}" ] && calc "$1 * 1000" || true; }
per_call_us() { # TOTAL COLD N: marginal cost per call, start-up removed
  [ -n "${1:-}" ] && [ -n "${2:-}" ] && calc "($1 - $2) / $3 * 1e6" || true
}
v() { eval "echo \${$1:-}"; }
for p in sk cu lc; do
  printf -v "${p}_seq_call" '%s' "$(per_call_us "$(v ${p}_seq_wall)" "$(v ${p}_cold_wall)" 1000)"
  printf -v "${p}_seq_cpucall" '%s' "$(per_call_us "$(v ${p}_seq_cpu)" "$(v ${p}_cold_cpu)" 1000)"
  for w in map; do
    wall=$(v ${p}_${w}_wall); cold=$(v ${p}_cold_wall)
    [ -n "$wall" ] && [ -n "$cold" ] && printf -v "${p}_${w}_net" '%s' "$(calc "($wall - $cold) * 1000")"
  done
done
# the batch-mode runs start the same skein binary
skj_seq_call=$(per_call_us "${skj_seq_wall:-}" "$sk_cold_wall" 1000)
skj_seq_cpucall=$(per_call_us "${skj_seq_cpu:-}" "$sk_cold_cpu" 1000)
map_floor=$(calc "$MAP_ROWS / 64 * 50")

row() { # LABEL SKEIN CURL LC DECIMALS
  local d=${5:-1}
  echo "| $1 | $(fmt "$2" "$d") | $(fmt "$3" "$d") | $(fmt "$4" "$d") | $(ratio "$2" "$3") | $(ratio "$4" "$2") |"
}

cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -s)
lc_versions=n/a
if [ $HAVE_LC = 1 ]; then
  lc_versions=$(node -e 'for (const p of ["@langchain/core", "@langchain/openai", "openai"])
    process.stdout.write(p + " " + require("./bench/node/node_modules/" + p + "/package.json").version + (p === "openai" ? "" : ", "))')
fi

cat <<MD
## skein vs curl floor vs LangChain.js ($(date -u +%Y-%m-%d))

Machine: $(nproc) cores, $cpu_model, $os, Linux $(uname -r).
Versions: $("$SKEIN" --version 2>&1 | head -1); $(curl --version | head -1 | cut -d' ' -f1-2); node $(node --version 2>/dev/null || echo n/a); $lc_versions.
Command: \`bench/run.sh $BUILD\`; RUNS=$RUNS, SLOW_RUNS=$SLOW_RUNS.

Every call is one short chat message (skein: \`Bench.Echo\` from
bench/skills; LangChain.js: \`ChatPromptTemplate | ChatOpenAI |
StringOutputParser\`; curl: the same JSON body) to bench/fastmock.c on
127.0.0.1, which replies "ok" after 0 or 50 ms.  Each client is a whole
process measured by bench/rtime.c (GNU time's wall, user+sys CPU and
peak RSS, at microsecond resolution); each cell
is the median of $RUNS runs ($SLOW_RUNS for LangChain.js loops of 1000
calls and for workload 6).  skein ran with SKEIN_CACHE=off, SKEIN_HISTORY=off, SKEIN_QUIET=1.
"per call" figures are marginal: (1000-call run - cold start) / 1000.
"after start-up" (workload 6) is the wall time minus the same client's
cold start; for the 50 ms chain and plan, where start-up noise would
swamp the difference, the clients report their own in-process time.

### The server is not the bottleneck

bench/loadgen.c (epoll, connections opened before timing).  The test
mock (tests/support/mockserver.c) rebuilds its pollfd set and visits
every connection on each loop turn, which costs CPU at 1000 connections,
so the benchmarks use bench/fastmock.c (epoll, a FIFO of due replies).

| server | 1 connection, 0 ms: req/s | 1000 connections, 0 ms: req/s | 1000 requests at once, 50 ms: ms until the last reply |
| --- | --- | --- | --- |
${srv_rows}
### Results

| workload | skein | curl floor | LangChain.js | skein / curl | LangChain / skein |
| --- | --- | --- | --- | --- | --- |
$(row "1. cold start to first reply: wall ms" "$(ms "$sk_cold_wall")" "$(ms "$cu_cold_wall")" "$(ms "${lc_cold_wall:-}")" 1)
$(row "1. cold start: peak RSS MB" "$sk_cold_rss" "$cu_cold_rss" "${lc_cold_rss:-}" 1)
$(row "2. 1000 sequential, 0 ms: wall us per call" "$sk_seq_call" "$cu_seq_call" "${lc_seq_call:-}" 1)
$(row "2. 1000 sequential: client CPU us per call" "$sk_seq_cpucall" "$cu_seq_cpucall" "${lc_seq_cpucall:-}" 1)
$(row "2. the same, skein \`invoke --jsonl --concurrency 1\`: wall us per call" "$skj_seq_call" "$cu_seq_call" "${lc_seq_call:-}" 1)
$(row "2. the same, \`invoke --jsonl\`: client CPU us per call" "$skj_seq_cpucall" "$cu_seq_cpucall" "${lc_seq_cpucall:-}" 1)
$(row "3. 1000 concurrent, 50 ms (\`skein.parallel\`): wall ms" "$(ms "$sk_conc_wall")" "$(ms "$cu_conc_wall")" "$(ms "${lc_conc_wall:-}")" 0)
$(row "3. 1000 concurrent: client CPU ms" "$(ms "$sk_conc_cpu")" "$(ms "$cu_conc_cpu")" "$(ms "${lc_conc_cpu:-}")" 0)
$(row "3. 1000 concurrent: peak RSS MB (curl: one of its 4 processes)" "$sk_conc_rss" "$cu_conc_rss" "${lc_conc_rss:-}" 1)
$(row "3. the same, \`invoke --jsonl --concurrency 1000\`: wall ms" "$(ms "$skj_conc_wall")" "$(ms "$cu_conc_wall")" "$(ms "${lc_conc_wall:-}")" 0)
$(row "3. \`invoke --jsonl --concurrency 1000\`: peak RSS MB" "$skj_conc_rss" "$cu_conc_rss" "${lc_conc_rss:-}" 1)
$(row "4. 3-step chain, 50 ms: wall ms" "$(ms "$sk_chain_wall")" "$(ms "$cu_chain_wall")" "$(ms "${lc_chain_wall:-}")" 0)
$(row "4. 3-step chain: in-process ms (skein \`--stats\` wall time; LangChain from before the first call)" "${sk_chain_inproc:-}" "" "${lc_chain_inproc:-}" 1)
$(row "5. plan, 8 independent steps + join, 50 ms: wall ms" "$(ms "$sk_plan_wall")" "$(ms "$cu_plan_wall")" "$(ms "${lc_plan_wall:-}")" 0)
$(row "5. plan k=8: in-process ms (as in 4)" "${sk_plan_inproc:-}" "" "${lc_plan_inproc:-}" 1)
$(row "6. ai_map / batch(), $MAP_ROWS rows, 64 in flight, 50 ms: wall s" "$sk_map_wall" "$cu_map_wall" "${lc_map_wall:-}" 2)
$(row "6. $MAP_ROWS rows: wall s after start-up (floor $(fmt "$(calc "$map_floor / 1000")" 2))" "$(calc "${sk_map_net:-0} / 1000")" "$(calc "${cu_map_net:-0} / 1000")" "$( [ -n "${lc_map_net:-}" ] && calc "$lc_map_net / 1000")" 2)
$(row "6. $MAP_ROWS rows: client CPU s" "$sk_map_cpu" "$cu_map_cpu" "${lc_map_cpu:-}" 2)
$(row "6. $MAP_ROWS rows: peak RSS MB" "$sk_map_rss" "$cu_map_rss" "${lc_map_rss:-}" 1)

MD
