#!/usr/bin/env bash
# --timeout / SKEIN_TIMEOUT (the whole request) and --idle-timeout /
# SKEIN_IDLE_TIMEOUT (silence), against a loopback server that accepts and
# never answers, one that sends headers and half a reply and then stalls,
# and a slow but steady stream that runs longer than the idle limit.  Each
# failure names the limit that was hit and how to raise it, exits 4, and
# says which limit in the JSON error.  No test here times anything: which
# limit fired is read from the error, so a slow machine changes nothing.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh

cat > "$TMP/scenario.json" <<EOF
{"log": "$TMP/log.jsonl", "idle_exit_ms": 900000, "responses": [
  {"match": "never", "action": "stall"},
  {"match": "midstream", "stream": "one two three four five six seven eight", "action": "stall_mid"},
  {"match": "midbody", "reply": "a reply long enough to be cut in the middle", "action": "stall_mid"},
  {"match": "steady", "stream": "one two three four five six seven eight nine ten eleven twelve", "chunk_delay_ms": 300},
  {"match": "quick", "reply": "QUICK"}]}
EOF
start_mock "$TMP/scenario.json"
: > "$TMP/log.jsonl"
mkdir -p "$TMP/skills/T/Say"
printf 'Say {{$input}}' > "$TMP/skills/T/Say/skprompt.txt"
SK=("$BIN" --skills "$TMP/skills" --model "$MODEL" --option retries=0)
# streamed: nothing after the model may replace the reply
STREAM=(--stream --policy '{"uncertainty": false}')

run() { # stdout to $TMP/out, stderr to $TMP/err, status in rc
  "$@" > "$TMP/out" 2> "$TMP/err"
  rc=$?
}
has() { grep -q -- "$2" "$TMP/err" && ok || bad "$1: stderr lacks [$2]: $(head -c 600 "$TMP/err")"; }

# ---- a server that accepts and never answers: a streamed request fails on
# the idle limit, long before the total one
run "${SK[@]}" --idle-timeout 1 --timeout 20 invoke T.Say "${STREAM[@]}" --input never
expect_eq "stalled server, streamed: exit" "$rc" 4
has "stalled server, streamed" "the idle timeout"
has "stalled server, streamed: how to raise it" "--idle-timeout SECONDS"
has "stalled server, streamed: JSON names the limit" '"timeout":"idle","timeout_ms":1000'
has "stalled server, streamed: kind" '"kind":"timeout"'

# ---- a request that is not streamed gets no bytes until the model is
# done, so before its first byte only the total limit applies
run "${SK[@]}" --idle-timeout 1 --timeout 2 invoke T.Say --input never
expect_eq "stalled server, not streamed: exit" "$rc" 4
has "stalled server, not streamed: the total limit" "within 2 s: the total timeout per request"
has "stalled server, not streamed: how to raise it" "--timeout SECONDS, SKEIN_TIMEOUT"
has "stalled server, not streamed: JSON" '"timeout":"total","timeout_ms":2000'

# ---- headers and half a stream, then silence
run "${SK[@]}" --idle-timeout 1 --timeout 20 invoke T.Say "${STREAM[@]}" --input midstream
expect_eq "stalls mid-stream: exit" "$rc" 4
has "stalls mid-stream" "no bytes from http://127.0.0.1:[0-9]*/v1/chat/completions for 1 s: the idle timeout"
expect_eq "stalls mid-stream: the words that came are printed" "$(head -c 9 "$TMP/out")" "one two t"

# ---- and a plain reply that stops halfway: its reply had begun
run "${SK[@]}" --idle-timeout 0.5 --timeout 20 invoke T.Say --input midbody
expect_eq "stalls mid-body: exit" "$rc" 4
has "stalls mid-body" "for 500 ms: the idle timeout"

# ---- a slow but steady stream (a word every 0.3 s, 4 s in all) outlives
# the idle limit
run "${SK[@]}" --idle-timeout 2 --timeout 20 invoke T.Say "${STREAM[@]}" --input steady
expect_eq "steady stream past the idle limit: exit" "$rc" 0
expect_eq "steady stream past the idle limit: every word" "$(cat "$TMP/out")" \
  "one two three four five six seven eight nine ten eleven twelve"

# ---- ... but not the total one
SKEIN_TIMEOUT=1 run "${SK[@]}" invoke T.Say "${STREAM[@]}" --input steady
expect_eq "SKEIN_TIMEOUT=1 on a 4 s stream: exit" "$rc" 4
has "SKEIN_TIMEOUT: the total limit" "within 1 s: the total timeout per request"

# ---- SKEIN_IDLE_TIMEOUT, and 0 turning the idle limit off
SKEIN_IDLE_TIMEOUT=0.5 run "${SK[@]}" invoke T.Say "${STREAM[@]}" --input midstream
expect_eq "SKEIN_IDLE_TIMEOUT: exit" "$rc" 4
has "SKEIN_IDLE_TIMEOUT" "for 500 ms: the idle timeout"
SKEIN_IDLE_TIMEOUT=0.5 run "${SK[@]}" --idle-timeout 0 --timeout 2 invoke T.Say "${STREAM[@]}" --input midstream
expect_eq "--idle-timeout 0 (over the environment): exit" "$rc" 4
has "--idle-timeout 0: only the total limit" "within 2 s: the total timeout per request"

# ---- the config file's options, and the environment over them
printf '{"options": {"idle_timeout_ms": 700}}' > "$TMP/config.json"
SKEIN_CONFIG="$TMP/config.json" run "${SK[@]}" invoke T.Say "${STREAM[@]}" --input midstream
has "config idle_timeout_ms" "for 700 ms: the idle timeout"
SKEIN_CONFIG="$TMP/config.json" SKEIN_IDLE_TIMEOUT=0.6 run "${SK[@]}" invoke T.Say "${STREAM[@]}" --input midstream
has "SKEIN_IDLE_TIMEOUT over the config file" "for 600 ms: the idle timeout"

# ---- a stall is retried like any timeout (nothing had been streamed)
: > "$TMP/log.jsonl"
run "$BIN" --skills "$TMP/skills" --model "$MODEL" --option retries=1 --option retry_base_ms=1 \
  --idle-timeout 0.5 invoke T.Say "${STREAM[@]}" --input never
expect_eq "stall retried: exit" "$rc" 4
expect_eq "stall retried: two requests" "$(requests)" 2
has "stall retried: attempts" '"attempts":2'

# ---- from Lua: the option, and the limit in the error table
cat > "$TMP/idle.lua" <<'EOF'
local skein = require("skein")
skein.set_option("idle_timeout_ms", 500)
skein.set_option("retries", 0)
local ok, err = pcall(skein.invoke, "T.Say", "midbody")
print(ok, err.kind, err.timeout, err.timeout_ms)
EOF
run "${SK[@]}" run "$TMP/idle.lua"
expect_eq "Lua: the error table names the limit" "$(cat "$TMP/out")" "false	timeout	idle	500"

# ---- a quick reply is untouched by either limit
run "${SK[@]}" --idle-timeout 0.2 --timeout 5 invoke T.Say --input quick
expect_eq "quick reply: exit" "$rc" 0
expect_eq "quick reply" "$(cat "$TMP/out")" QUICK

# ---- bad values are usage errors, naming the flag or variable
for v in 0 -1 abc 1e9 ""; do
  run "$BIN" --timeout "$v" skills
  expect_eq "--timeout '$v': exit" "$rc" 2
  has "--timeout '$v'" "--timeout expects a number of seconds above 0"
done
run "$BIN" --idle-timeout -2 skills
expect_eq "--idle-timeout -2: exit" "$rc" 2
SKEIN_TIMEOUT=soon run "$BIN" skills
expect_eq "SKEIN_TIMEOUT=soon: exit" "$rc" 3
has "SKEIN_TIMEOUT=soon" "SKEIN_TIMEOUT=soon: expected a number of seconds above 0"
SKEIN_IDLE_TIMEOUT=x run "$BIN" skills
expect_eq "SKEIN_IDLE_TIMEOUT=x: exit" "$rc" 3

finish
