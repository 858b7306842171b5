#!/usr/bin/env bash
# Parallel means parallel, measured where it happens: the most requests
# the loopback server had in flight at once, for natives run as plan
# steps, natives in skein.parallel branches, a template's native blocks,
# DataFrame operations in branches, and ai()/skein() over many rows.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
MOCK=${SKEIN_MOCKSERVER:?SKEIN_MOCKSERVER must name the mock server}
cd "$(dirname "$0")" || exit 1
FX=$PWD/fixtures/parallel
TMP=$(mktemp -d)
trap 'kill $mock 2>/dev/null; rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE=off

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }

printf '{"log": "%s", "responses": [{"match": "quick", "reply": "ok", "delay_ms": 20}, {"reply": "ok", "delay_ms": 300}]}' \
  "$TMP/log.jsonl" > "$TMP/scen.json"
"$MOCK" "$TMP/scen.json" > "$TMP/port" &
mock=$!
for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
MODEL="openai:m@http://127.0.0.1:$(head -1 "$TMP/port")/v1"

# the most requests in flight the server saw, and how many it got
max_inflight() { grep -o '"inflight":[0-9]*' "$TMP/log.jsonl" | cut -d: -f2 | sort -n | tail -1; }
requests() { wc -l < "$TMP/log.jsonl" | tr -d ' '; }
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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
