#!/usr/bin/env bash
# Parallel means parallel, measured where it happens: the most requests
# the loopback server had in flight at once, for natives run as plan
# steps, natives in skein.parallel branches, a template's native blocks,
# DataFrame operations in branches, and ai()/skein() over many rows.
set -u
cd "$(dirname "$0")" || exit 1
FX=$PWD/fixtures/parallel
. ../support/lib.sh

printf '{"log": "%s", "responses": [{"match": "quick", "reply": "ok", "delay_ms": 20}, {"reply": "ok", "delay_ms": 300}]}' \
  "$TMP/log.jsonl" > "$TMP/scen.json"
start_mock "$TMP/scen.json"

# the most requests in flight the server saw, and how many it got
max_inflight() { grep -o '"inflight":[0-9]*' "$TMP/log.jsonl" | cut -d: -f2 | sort -n | tail -1; }
check() { # name, kind, want in flight, want requests
  : > "$TMP/log.jsonl"
  "$BIN" --model "$MODEL" --skills "$FX/skills" run "$FX/concurrency.lua" "$2" > "$TMP/out" 2> "$TMP/err"
  expect_eq "$1: exit" "$?" 0
  expect_eq "$1: in flight at the server" "$(max_inflight)" "$3"
  expect_eq "$1: requests" "$(requests)" "$4"
}
check "plan of 4 native steps" plan 4 4
check "4 natives in skein.parallel" natives 4 4
check "a native step does not wait for its neighbours" independent 4 5
check "a template's 4 native blocks (and its own call)" template 4 5
check "ai_map in 4 parallel branches" dataframes 8 8
check "ai() and skein() over 64 rows, sql_concurrency 8" sql 8 128

# invoke --jsonl keeps --concurrency calls in flight even while the first
# line's call is slow: the lines after it are asked (and their results
# held back for the order) before the first one is answered.  The first
# reply takes 3 s (15 s under valgrind); the other 40 are quick.
slow_ms=3000
[ -n "${SKEIN_TEST_SLOW:-}" ] && slow_ms=15000
printf '{"log": "%s", "responses": [{"match": "slow", "reply": "late", "delay_ms": %d}, {"reply": "ok", "delay_ms": 20}]}' \
  "$TMP/log.jsonl" "$slow_ms" > "$TMP/hol.json"
start_mock "$TMP/hol.json"
: > "$TMP/log.jsonl"
{ echo '{"input": "slow"}'; for i in $(seq 1 40); do echo "{\"input\": \"quick $i\"}"; done; } > "$TMP/hol.jsonl"
mkdir -p "$TMP/skills/J/Echo"
printf 'item {{$input}}' > "$TMP/skills/J/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false}\n' > "$TMP/skills/J/Echo/config.json"
"$BIN" --quiet --model "$MODEL" --skills "$TMP/skills" invoke J.Echo --jsonl --concurrency 4 < "$TMP/hol.jsonl" > "$TMP/hol.out" 2>&1 &
pid=$!
for _ in $(seq 3000); do
  [ "$(requests)" -ge 41 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
expect_eq "--jsonl: all 41 lines asked while the first is still out" "$(requests)/$(wc -l < "$TMP/hol.out" | tr -d ' ')" "41/0"
wait "$pid"
expect_eq "--jsonl behind a slow line: exit" "$?" 0
expect_eq "--jsonl behind a slow line: order" "$(head -1 "$TMP/hol.out")/$(wc -l < "$TMP/hol.out" | tr -d ' ')" '{"result":"late"}/41'

finish
