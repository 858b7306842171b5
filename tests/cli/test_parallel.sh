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

finish
