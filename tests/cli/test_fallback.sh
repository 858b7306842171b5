#!/usr/bin/env bash
# Falling back to the next model on errors that remain after retries
# (policy "fallbacks"), against loopback servers: A fails in every way a
# server can (5xx, 429, a refused connection, a stall, a cut stream) or
# the caller's way (400, 401); B and C answer.  Where the fallback shows
# (--stats, the trace, the final error), and how it meets the response
# cache, the journal and the uncertainty cascade on the same path.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh

# A: the failing server; every request's body says what it should do
cat > "$TMP/a.json" <<EOF
{"log": "$TMP/a.jsonl", "idle_exit_ms": 900000, "responses": [
  {"match": "down", "status": 503, "json": {"error": {"message": "engine overloaded"}}},
  {"match": "busy", "status": 429, "json": {"error": {"message": "rate limit reached"}}},
  {"match": "badreq", "status": 400, "json": {"error": {"message": "malformed request"}}},
  {"match": "badkey", "status": 401, "json": {"error": {"message": "invalid key"}}},
  {"match": "stall", "action": "stall"},
  {"match": "cutstream", "stream": "one two three four five six", "action": "cut"},
  {"match": "unsure", "reply": "Could you tell me which language you want?"},
  {"reply": "A answered"}]}
EOF
cat > "$TMP/b.json" <<EOF
{"log": "$TMP/b.jsonl", "idle_exit_ms": 900000, "responses": [
  {"match": "alldown", "status": 502, "json": {"error": {"message": "bad gateway"}}},
  {"match": "bunsure", "reply": "Which language do you mean?"},
  {"reply": "B answered"}]}
EOF
cat > "$TMP/c.json" <<EOF
{"log": "$TMP/c.jsonl", "idle_exit_ms": 900000, "responses": [
  {"match": "cdown", "status": 500, "json": {"error": {"message": "internal error"}}},
  {"reply": "C answered"}]}
EOF
start_mock "$TMP/a.json"
A=$MODEL
start_server() { # scenario -> SERVER=openai:m@URL (not in a subshell: the
  # exit trap must see its pid)
  "$MOCK" "$1" > "$1.port" &
  EXTRA_PIDS="$EXTRA_PIDS $!"
  for _ in $(seq 50); do [ -s "$1.port" ] && break; sleep 0.1; done
  SERVER="openai:m@http://127.0.0.1:$(head -1 "$1.port")/v1"
}
start_server "$TMP/b.json"
B=$SERVER
start_server "$TMP/c.json"
C=$SERVER
# a port where nothing listens: a server started and stopped
printf '{"responses": [{"reply": "x"}]}' > "$TMP/gone.json"
"$MOCK" "$TMP/gone.json" > "$TMP/gone.port" & gone=$!
for _ in $(seq 50); do [ -s "$TMP/gone.port" ] && break; sleep 0.1; done
kill "$gone"; wait "$gone" 2>/dev/null
GONE="openai:m@http://127.0.0.1:$(head -1 "$TMP/gone.port")/v1"
: > "$TMP/a.jsonl"; : > "$TMP/b.jsonl"; : > "$TMP/c.jsonl"
count() { wc -l < "$TMP/$1.jsonl" | tr -d ' '; }

mkdir -p "$TMP/skills/T/Say" "$TMP/skills/T/Exact" "$TMP/skills/T/Own"
printf 'Say {{$input}}' > "$TMP/skills/T/Say/skprompt.txt"
printf 'Say {{$input}}' > "$TMP/skills/T/Exact/skprompt.txt"
printf '{"execution_settings": {"default": {"temperature": 0}}}' > "$TMP/skills/T/Exact/config.json"
printf 'Say {{$input}}' > "$TMP/skills/T/Own/skprompt.txt"
printf '{"fallbacks": ["%s"]}' "$B" > "$TMP/skills/T/Own/config.json"
SK=("$BIN" --skills "$TMP/skills" --model "$A" --option retries=1 --option retry_base_ms=1)
FB="{\"fallbacks\": [\"$B\"]}"

run() { # stdout to $TMP/out, stderr to $TMP/err, status in rc
  "$@" > "$TMP/out" 2> "$TMP/err"
  rc=$?
}
has() { grep -qF -- "$2" "$TMP/err" && ok || bad "$1: stderr lacks [$2]: $(head -c 800 "$TMP/err")"; }
lacks() { grep -qF -- "$2" "$TMP/err" && bad "$1: stderr holds [$2]" || ok; }

# ---- without fallbacks, a server error is the call's error
run "${SK[@]}" invoke T.Say --input down
expect_eq "no fallbacks: exit" "$rc" 4
expect_eq "no fallbacks: A asked, with its retry" "$(count a)" 2
expect_eq "no fallbacks: B never asked" "$(count b)" 0

# ---- with them: A's 503 (after its retry), then B answers
: > "$TMP/a.jsonl"
run "${SK[@]}" --stats --trace "$TMP/trace.jsonl" invoke T.Say --policy "$FB" --input down
expect_eq "503 falls back: exit" "$rc" 0
expect_eq "503 falls back: B's answer" "$(cat "$TMP/out")" "B answered"
expect_eq "503 falls back: A retried first" "$(count a)" 2
expect_eq "503 falls back: B asked once" "$(count b)" 1
has "--stats counts the fallback" "fallbacks 1,"
grep -E "^${A:0:38} +1 +0 +0 .* 1 " "$TMP/err" > /dev/null && ok || bad "--stats: A's row (1 call, 0 answered, 1 failed): $(cat "$TMP/err")"
grep -E "^${B:0:38} +1 +0 +1 " "$TMP/err" > /dev/null && ok || bad "--stats: B's row (1 call, 1 answered): $(cat "$TMP/err")"
grep -q "\"type\":\"fallback\",\"function\":\"T.Say\",\"from\":\"$A\",\"to\":\"$B\",\"error\":\"model\",\"http_status\":\"503\"" "$TMP/trace.jsonl" \
  && ok || bad "the trace's fallback line: $(grep fallback "$TMP/trace.jsonl")"

# ---- the other errors that are the server's or the way's
run "${SK[@]}" invoke T.Say --policy "$FB" --input busy
expect_eq "429 after retries falls back" "$rc:$(cat "$TMP/out")" "0:B answered"
run "${SK[@]}" --model "$GONE" invoke T.Say --policy "$FB" --input hi
expect_eq "a refused connection falls back" "$rc:$(cat "$TMP/out")" "0:B answered"
run "${SK[@]}" --timeout 0.5 invoke T.Say --policy "$FB" --input stall
expect_eq "a timeout falls back" "$rc:$(cat "$TMP/out")" "0:B answered"

# ---- the caller's mistakes do not: another model would only hide them
: > "$TMP/b.jsonl"
run "${SK[@]}" invoke T.Say --policy "$FB" --input badreq
expect_eq "400: exit" "$rc" 4
has "400: A's message" "malformed request"
run "${SK[@]}" invoke T.Say --policy "$FB" --input badkey
expect_eq "401: exit" "$rc" 4
expect_eq "400 and 401: B never asked" "$(count b)" 0

# ---- a streamed reply that was cut after its first words: no other
# model may answer after them
run "${SK[@]}" invoke T.Say --stream --policy "{\"fallbacks\": [\"$B\"], \"uncertainty\": false}" --input cutstream
expect_eq "cut stream: exit" "$rc" 4
expect_eq "cut stream: B never asked" "$(count b)" 0

# ---- every model failing: the last one's error, naming those before it
run "${SK[@]}" invoke T.Say --policy "{\"fallbacks\": [\"$B\", \"$C\"]}" --input "down alldown cdown"
expect_eq "all fail: exit" "$rc" 4
has "all fail: the last error" "HTTP 500 from"
has "all fail: the models fallen back from" "(after falling back from $A (model), $B (model))"

# ---- a chain of three: A and B down, C answers
run "${SK[@]}" --stats invoke T.Say --policy "{\"fallbacks\": [\"$B\", \"$C\"]}" --input "down alldown"
expect_eq "chain of three: C's answer" "$rc:$(cat "$TMP/out")" "0:C answered"
has "chain of three: two fallbacks" "fallbacks 2,"

# ---- where it is configured: a function's config.json, and the config
# file's kernel-wide policy
run "${SK[@]}" invoke T.Own --input down
expect_eq "config.json fallbacks" "$rc:$(cat "$TMP/out")" "0:B answered"
printf '{"policy": {"fallbacks": ["%s"]}}' "$C" > "$TMP/config.json"
SKEIN_CONFIG="$TMP/config.json" run "${SK[@]}" invoke T.Say --input down
expect_eq "kernel-wide fallbacks" "$rc:$(cat "$TMP/out")" "0:C answered"
SKEIN_CONFIG="$TMP/config.json" run "${SK[@]}" invoke T.Say --policy '{"fallbacks": false}' --input down
expect_eq "fallbacks: false in a call's policy" "$rc" 4
run "${SK[@]}" invoke T.Say --policy '{"fallbacks": ["not a spec"]}' --input down
expect_eq "a bad fallbacks entry: exit" "$rc" 3
has "a bad fallbacks entry" "fallbacks[0] must be a model spec"

# ---- the response cache: B's answer is cached under B, so the same call
# tries A again, then gets B's answer from the cache
export SKEIN_CACHE="$TMP/cache.db"
: > "$TMP/a.jsonl"; : > "$TMP/b.jsonl"
run "${SK[@]}" --option retries=0 invoke T.Exact --policy "$FB" --input "down cached"
expect_eq "cache, first run" "$rc:$(cat "$TMP/out")" "0:B answered"
run "${SK[@]}" --option retries=0 --stats invoke T.Exact --policy "$FB" --input "down cached"
expect_eq "cache, second run: the same answer" "$rc:$(cat "$TMP/out")" "0:B answered"
expect_eq "cache, second run: A asked again" "$(count a)" 2
expect_eq "cache, second run: B from the cache" "$(count b)" 1
grep -E "^${B:0:38} +0 +1 +1 " "$TMP/err" > /dev/null && ok || bad "cache: B's row (0 calls, 1 cached, 1 answered): $(cat "$TMP/err")"
export SKEIN_CACHE=off

# ---- the journal: a re-run falls back as the first run did, asking
# neither server again
: > "$TMP/a.jsonl"; : > "$TMP/b.jsonl"
run "${SK[@]}" --journal "$TMP/j.db" invoke T.Say --policy "$FB" --input "down journaled"
expect_eq "journal, first run" "$rc:$(cat "$TMP/out")" "0:B answered"
run "${SK[@]}" --journal "$TMP/j.db" --stats invoke T.Say --policy "$FB" --input "down journaled"
expect_eq "journal, re-run: the same answer" "$rc:$(cat "$TMP/out")" "0:B answered"
expect_eq "journal, re-run: A not asked again" "$(count a)" 2
expect_eq "journal, re-run: B not asked again" "$(count b)" 1
has "journal, re-run: both from the journal" "served from the journal 2"
has "journal, re-run: still a fallback" "fallbacks 1,"
# without fallbacks now, the journaled failure is not replayed: A is asked
run "${SK[@]}" --journal "$TMP/j.db" --option retries=0 invoke T.Say --input "down journaled"
expect_eq "journal without fallbacks: A's error" "$rc" 4
expect_eq "journal without fallbacks: A asked" "$(count a)" 3

# ---- with the uncertainty cascade on the same path: an error moves along
# the cascade too (A down: C, the cascade's next step, answers) ...
CASCADE="{\"models\": [\"$A\", \"$C\"], \"fallbacks\": [\"$B\"]}"
run "${SK[@]}" --trace "$TMP/t2.jsonl" invoke T.Say --policy "$CASCADE" --input down
expect_eq "error in a cascade: the next step answers" "$rc:$(cat "$TMP/out")" "0:C answered"
grep -q "\"type\":\"fallback\",\"function\":\"T.Say\",\"from\":\"$A\",\"to\":\"$C\"" "$TMP/t2.jsonl" \
  && ok || bad "error in a cascade: fallback to C in the trace"
# ... an unsure answer escalates as before, and is not a fallback
run "${SK[@]}" --stats invoke T.Say --policy "$CASCADE" --input unsure
expect_eq "unsure in a cascade: escalates" "$rc:$(cat "$TMP/out")" "0:C answered"
has "unsure in a cascade: an escalation" "escalations 1, fallbacks 0,"
# ... and a fallback model that is unsure raises: fallbacks stand in for
# errors, they are not a stronger model
: > "$TMP/c.jsonl"
run "${SK[@]}" invoke T.Say --policy "{\"fallbacks\": [\"$B\", \"$C\"]}" --input "down bunsure"
expect_eq "an unsure fallback raises: exit" "$rc" 7
expect_eq "an unsure fallback raises: C never asked" "$(count c)" 0

# ---- from Lua: the usage counter
cat > "$TMP/fb.lua" <<EOF
local skein = require("skein")
print(skein.invoke("T.Say", "down", { policy = { fallbacks = { "$B" } } }), skein.usage().fallbacks)
EOF
run "${SK[@]}" run "$TMP/fb.lua"
expect_eq "Lua: the answer and usage().fallbacks" "$(cat "$TMP/out")" "B answered	1"

finish
