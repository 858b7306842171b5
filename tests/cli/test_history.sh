#!/usr/bin/env bash
# The call history and `skein logs`: every model call recorded (from
# invoke and from scripts run by `skein run`), listed newest first,
# searched with FTS5, shown per conversation; where it lives and how it is
# turned off; its bound; and no key, Authorization header or redacted
# value in it, attacked through the environment, the config file, a URL,
# the prompt and the reply.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh
FX=$(pwd)/fixtures
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }
json_ok() { "$BIN" run "$FX/json_check.lua" <"$1" 2>/dev/null; }

export SKEIN_HISTORY="$TMP/h.db"
SCRIPTED="scripted:$FX/rules.json"
SK=("$BIN" --quiet --model "$SCRIPTED" --skills "$FX/skills")

# ---- one call, every field
run "${SK[@]}" invoke Cli.Sem --input "first words"
expect_eq "a call rc" "$rc" 0
run "$BIN" logs --json
expect_eq "logs --json rc" "$rc" 0
json_ok "$TMP/out" >/dev/null && ok || bad "logs --json: invalid JSON: $out"
expect_in "the function" "$out" '"function":"Cli.Sem"'
expect_in "the model" "$out" "\"model\":\"$SCRIPTED\""
expect_in "the prompt as sent" "$out" '"prompt":"Sem: first words"'
expect_in "the reply" "$out" '"reply":"the scripted reply"'
expect_in "tokens" "$out" '"prompt_tokens":3,"completion_tokens":3'
expect_in "from the model" "$out" '"source":"model"'
expect_in "duration" "$out" '"duration_ms":'
[[ "$out" =~ \"time\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\" ]] && ok || bad "time: $out"
[[ "$out" =~ \"conversation\":\"[0-9a-z]{26}\" ]] && ok || bad "conversation id: $out"
run "$BIN" logs
expect_in "logs as text: heading" "$out" "Cli.Sem  $SCRIPTED"
expect_in "logs as text: prompt" "$out" $'## Prompt\n\nSem: first words'
expect_in "logs as text: reply" "$out" $'## Reply\n\nthe scripted reply'

# ---- newest first, -n
for w in alpha bravo charlie delta; do "${SK[@]}" invoke Cli.Sem --input "$w" >/dev/null; done
run "$BIN" logs --json
expect_eq "three by default" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 3
expect_in "newest first" "$out" '[{"id":5,'
run "$BIN" logs -n 2 --json
expect_eq "-n 2" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 2
run "$BIN" logs -n 0 --json
expect_eq "-n 0: every call" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 5
run "$BIN" logs -n 0 -t
expect_eq "-t: one line per text" "$(grep -c '^Prompt: Sem: ' <<<"$out")" 5
run "$BIN" logs -n x
expect_eq "-n not a number rc" "$rc" 2

# ---- search: every word, FTS5, never syntax
run "$BIN" logs -q charlie --json
expect_eq "-q finds one" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 1
expect_in "-q finds the right one" "$out" '"prompt":"Sem: charlie"'
run "$BIN" logs -q "scripted charlie" --json
expect_eq "-q: all the words" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 1
run "$BIN" logs -q "charlie delta" --json
expect_eq "-q: all, not any" "$out" "[]"
run "$BIN" logs -q "reply" -n 0 --json
expect_eq "-q in replies" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 5
for q in 'NOT' '"' 'a"b' '*' 'AND OR' '(' 'col:x' '^'; do
  run "$BIN" logs -q "$q"
  expect_eq "-q '$q' is words, not syntax" "$rc" 0
done
run "$BIN" logs -q " "
expect_eq "-q with no word rc" "$rc" 2
run "$BIN" -q logs
expect_eq "-q before logs is still --quiet" "$rc" 0

# ---- conversations: a run is one; -c shows the last, in order
cat >"$TMP/three.lua" <<'EOF'
local skein = require("skein")
for _, w in ipairs({"one", "two", "three"}) do skein.invoke("Cli.Sem", w) end
EOF
run "${SK[@]}" run "$TMP/three.lua"
expect_eq "a script's calls rc" "$rc" 0
run "$BIN" logs -c --json
expect_eq "-c: the script's three calls" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 3
expect_in "-c: in order" "$out" '"prompt":"Sem: one"'
[[ "$out" == *'"prompt":"Sem: one"'*'"prompt":"Sem: two"'*'"prompt":"Sem: three"'* ]] && ok || bad "-c order: $out"
cid=$(head -1 <<<"$out" | sed -E 's/.*"conversation":"([0-9a-z]+)".*/\1/')
run "$BIN" logs --cid "$cid" --json
expect_eq "--cid" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 3
run "$BIN" logs --cid "$cid" -n 1 --json
expect_in "--cid -n 1: the newest of it" "$out" '"prompt":"Sem: three"'
run "$BIN" logs --cid nosuch --json
expect_eq "--cid unknown: nothing" "$out" "[]"
run "$BIN" logs -c -q one
expect_eq "-c with -q rc" "$rc" 2
# a conversation id of one's own, through the library
cat >"$TMP/conv.lua" <<'EOF'
local skein = require("skein")
skein.set_option("conversation", "my-thread-1")
skein.invoke("Cli.Sem", "in my thread")
EOF
"${SK[@]}" run "$TMP/conv.lua"
run "$BIN" logs --cid my-thread-1 --json
expect_in "option conversation" "$out" '"prompt":"Sem: in my thread"'

# ---- failures, the function filter, cache hits
run "${SK[@]}" invoke Cli.Fail --input boom
expect_eq "a failed call rc" "$rc" 4
run "$BIN" logs -n 1 --json
expect_in "a failure is recorded" "$out" '"reply":null,"error":"scripted server error"'
run "$BIN" logs --function Cli.Fail -n 0 --json
expect_eq "--function" "$(grep -o '"id":' <<<"$out" | wc -l | tr -d ' ')" 1
SKEIN_CACHE="$TMP/cache.db" "${SK[@]}" invoke Cli.Sem --input cached --policy '{"cache": true}' >/dev/null
SKEIN_CACHE="$TMP/cache.db" "${SK[@]}" invoke Cli.Sem --input cached --policy '{"cache": true}' >/dev/null
run "$BIN" logs -n 1 --json
expect_in "a cache hit is recorded as one" "$out" '"source":"cache"'
run "$BIN" logs -n 1
expect_in "a cache hit, as text" "$out" "from the cache"

# ---- turning it off, and on
n_calls() { "$BIN" logs status | sed -n 's/^calls: \([0-9]*\) .*/\1/p'; }
before=$(n_calls)
HOME="$TMP/offhome" XDG_DATA_HOME= SKEIN_HISTORY=off "${SK[@]}" invoke Cli.Sem --input x >/dev/null
expect_eq "SKEIN_HISTORY=off records nothing" "$(n_calls)" "$before"
[ ! -e "$TMP/offhome" ] && ok || bad "SKEIN_HISTORY=off: something was written in the home folder"
"${SK[@]}" --no-log invoke Cli.Sem --input x >/dev/null
expect_eq "--no-log records nothing" "$(n_calls)" "$before"
run "$BIN" logs off
expect_eq "logs off rc" "$rc" 0
[ -e "$TMP/h.db.off" ] && ok || bad "logs off leaves its switch beside the history"
"${SK[@]}" invoke Cli.Sem --input x >/dev/null
"${SK[@]}" run "$TMP/three.lua" >/dev/null
expect_eq "switched off: nothing recorded" "$(n_calls)" "$before"
run "$BIN" logs status
expect_in "status says off" "$out" "recording: off (switched off (skein logs off))"
"${SK[@]}" --log invoke Cli.Sem --input forced >/dev/null
expect_eq "--log records while off" "$(n_calls)" "$((before + 1))"
run "$BIN" logs on
expect_eq "logs on rc" "$rc" 0
"${SK[@]}" invoke Cli.Sem --input x >/dev/null
expect_eq "on again: recorded" "$(n_calls)" "$((before + 2))"
run "$BIN" logs status
expect_in "status says on" "$out" "recording: on"
expect_in "status: the file" "$out" "history: $TMP/h.db"
run "$BIN" --log --no-log logs
expect_eq "--log with --no-log rc" "$rc" 2
run "$BIN" logs sideways
expect_eq "unknown action rc" "$rc" 2

# ---- where it lives: the user's data dir, overridable
out=$(env -u SKEIN_HISTORY XDG_DATA_HOME="$TMP/xdg" "$BIN" logs path)
expect_eq "in XDG_DATA_HOME" "$out" "$TMP/xdg/skein/history.db"
out=$(env -u SKEIN_HISTORY -u XDG_DATA_HOME HOME="$TMP/home" "$BIN" logs path)
expect_eq "in ~/.local/share" "$out" "$TMP/home/.local/share/skein/history.db"
env -u SKEIN_HISTORY -u XDG_DATA_HOME HOME="$TMP/home" "${SK[@]}" invoke Cli.Sem --input x >/dev/null
[ -s "$TMP/home/.local/share/skein/history.db" ] && ok || bad "the default history was not written"
expect_eq "the history is private" "$(stat -c %a "$TMP/home/.local/share/skein/history.db")" 600
out=$(SKEIN_HISTORY=off "$BIN" logs status)
expect_in "status with SKEIN_HISTORY=off" "$out" "recording: off (SKEIN_HISTORY=off)"

# ---- not a history: the call goes on, logs says so
printf 'x' >"$TMP/not.db"
# a SQLite file of another kind: a journal
SKEIN_HISTORY=off "${SK[@]}" --journal "$TMP/journal.db" invoke Cli.Sem --input x >/dev/null
run env SKEIN_HISTORY="$TMP/journal.db" "$BIN" --model "$SCRIPTED" --skills "$FX/skills" invoke Cli.Sem --input x
expect_eq "another database: the call still succeeds" "$rc" 0
expect_in "another database: a notice" "$err" "not a skein history"
run env SKEIN_HISTORY="$TMP/journal.db" "$BIN" logs
expect_eq "another database: logs fails" "$rc" 3
run env SKEIN_HISTORY="$TMP/not.db" "$BIN" logs
expect_eq "not a database: logs fails" "$rc" 3

# ---- the bound: the oldest calls go, the newest stay
export SKEIN_HISTORY="$TMP/bounded.db"
pad=$(printf '%02000d' 0)
for i in $(seq 1 300); do printf '{"input":"line %d %s"}\n' "$i" "$pad"; done >"$TMP/many.jsonl"
"${SK[@]}" --option history_max_bytes=65536 invoke Cli.Sem --jsonl <"$TMP/many.jsonl" >/dev/null
n=$(n_calls)
[ "$n" -gt 0 ] && [ "$n" -lt 300 ] && ok || bad "bounded: $n calls kept of 300"
size=$(stat -c %s "$TMP/bounded.db")
[ "$size" -le $((65536 * 4)) ] && ok || bad "bounded: the file is $size bytes"
expect_in "bounded: the newest stays" "$("$BIN" logs -n 1 -t)" "Sem: line 300 "
run "$BIN" logs -q "line 1 " -n 0 --json
expect_not_in "bounded: the oldest went" "$out" '"prompt":"Sem: line 1 0'
run "$BIN" --option history_max_bytes=10 skills
expect_eq "history_max_bytes too small rc" "$rc" 2
# one text is kept up to 1 MiB
head -c 2100000 /dev/zero | tr '\0' 'x' | "${SK[@]}" invoke Cli.Sem >/dev/null
run "$BIN" logs -n 1 --json
expect_in "a long prompt is cut" "$out" "more bytes not kept"
[ "${#out}" -lt 2200000 ] && ok || bad "a long prompt and reply: ${#out} bytes of JSON"

# ---- several processes at once
export SKEIN_HISTORY="$TMP/shared.db"
for p in 1 2 3 4; do
  (for i in 1 2 3 4 5; do
    "$BIN" --model "$SCRIPTED" --skills "$FX/skills" invoke Cli.Sem --input "p$p c$i" \
      >/dev/null 2>>"$TMP/shared.err"
  done) &
done
wait
n=$(n_calls)
expect_eq "four processes, twenty calls" "$n" 20
[ "$n" = 20 ] || cat "$TMP/shared.err" >&2
expect_not_in "four processes: no record dropped" "$(cat "$TMP/shared.err")" "not recorded"

# ---- secrets never reach it
export SKEIN_HISTORY="$TMP/secret.db"
ENV_KEY=Zq8vL2mN4pR7sT1wX9yB
ENV_TOKEN=Tk5hB8nM2xQ7wE4rY1uI
URL_PASS=S3cr3tPassw0rd9
CFG_PASS=Cf9PassWordXyz1
CFG_KEY=Kc8dF3gH6jL9mN2pQ5
GH_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ012345
SK_KEY=sk-proj-AbCdEfGhIjKlMnOpQrStUvWx
BASIC=dXNlcjpwYXNzd29yZGxvbmc=
EMAIL=alice.secret@example.com
cat >"$TMP/echo.json" <<EOF
{ "log": "$TMP/log.jsonl", "echo": true }
EOF
start_mock "$TMP/echo.json"
port=$(head -1 "$TMP/port")
cat >"$TMP/config.json" <<EOF
{ "aliases": { "sec": "openai:m@http://carol:$CFG_PASS@127.0.0.1:$port/v1" },
  "api_key": "$CFG_KEY" }
EOF
# each process is told its secrets (the environment, its config file, its
# model's URL); the prompt holds them and keys of well-known shapes, and
# the server echoes the prompt back in its reply
prompt="keys: $ENV_KEY $ENV_TOKEN $CFG_PASS $CFG_KEY $GH_TOKEN $SK_KEY
Authorization: Basic $BASIC"
export OPENAI_API_KEY=$ENV_KEY MY_SERVICE_TOKEN=$ENV_TOKEN
SKEIN_CONFIG="$TMP/config.json" "$BIN" --quiet --model "openai:m@http://bob:$URL_PASS@127.0.0.1:$port/v1" \
  --skills "$FX/skills" invoke Cli.Sem --input "$prompt and $URL_PASS" >"$TMP/answer"
expect_in "the echo carries the secrets back" "$(cat "$TMP/answer")" "$ENV_KEY"
SKEIN_CONFIG="$TMP/config.json" "$BIN" --quiet --model sec --skills "$FX/skills" \
  invoke Cli.Sem --input "$prompt" >/dev/null
# a redacted value: sent as a placeholder, restored in the answer, kept as
# the placeholder
"$BIN" --quiet --model "$MODEL" --skills "$FX/skills" invoke Cli.Sem \
  --input "mail $EMAIL" --policy '{"redact": true}' >"$TMP/answer"
expect_in "redaction restores the value for the user" "$(cat "$TMP/answer")" "$EMAIL"
unset OPENAI_API_KEY MY_SERVICE_TOKEN
expect_eq "three calls recorded" "$(n_calls)" 3
"$BIN" logs -n 0 --json >"$TMP/logs.json"
expect_in "the prompt is there" "$(cat "$TMP/logs.json")" "keys: "
expect_in "the redacted value as its placeholder" "$(cat "$TMP/logs.json")" "mail [EMAIL_1]"
for s in "$ENV_KEY" "$ENV_TOKEN" "$URL_PASS" "$CFG_PASS" "$CFG_KEY" "$GH_TOKEN" "$SK_KEY" "$BASIC" "$EMAIL"; do
  expect_not_in "no secret in logs: ${s:0:6}..." "$(cat "$TMP/logs.json")" "$s"
  hits=$(cat "$TMP"/secret.db* | grep -a -c -F "$s")
  expect_eq "no secret in the file: ${s:0:6}..." "$hits" 0
done
expect_not_in "no Authorization value" "$(cat "$TMP/logs.json")" "Basic dXN"
expect_in "the model's URL, its password gone" "$(cat "$TMP/logs.json")" '"model":"openai:m@http://bob:[SECRET_'

finish
