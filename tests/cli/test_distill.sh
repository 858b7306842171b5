#!/usr/bin/env bash
# `skein distill` as a user runs it: a function run through the real
# pipeline against a scripted model, with a trace and a cassette recorded
# as it goes: accepted answers, an uncertain one, a truncated one, one
# rejected by review, a failed call, a cache hit, an escalation whose first
# answer was uncertain, the same prompt answered two ways.  Then every
# file distill writes, exactly; the splits for two seeds; the cassette
# still replaying; and the inputs and options it refuses.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
FX=fixtures/distill
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE="$TMP/cache.db" SKEIN_HISTORY=off SKEIN_MEMORY=off SKEIN_RECORD=

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }
# every line of a JSONL file is valid JSON on its own
jsonl_ok() {
  local n=0
  while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | "$BIN" run fixtures/json_check.lua >/dev/null 2>&1 || { echo "line $n"; return 1; }
  done <"$1"
  return 0
}

TRACE=$TMP/trace.jsonl CAS=$TMP/run.jsonl
SK=("$BIN" --quiet --model "scripted:$FX/strong.json" --skills "$FX" --trace "$TRACE")
inv() { SKEIN_RECORD=$CAS run "${SK[@]}" invoke D.Label "$@"; }

# ---- a recorded run
inv --input hello --policy '{"cache": true}'
expect_eq "hello answered" "$out" "greeting"
inv --input hello --policy '{"cache": true}'
expect_eq "hello again, from the cache" "$out" "greeting"
expect_eq "the trace has the cache hit" "$(grep -c '"function":"D.Label".*"cache":"hit"' "$TRACE")" 1
inv --input refund
expect_eq "refund answered" "$out" "billing"
printf '{"input":"bill"}\n{"input":"bill"}\n' >"$TMP/bill.jsonl"
SKEIN_RECORD=$CAS "${SK[@]}" invoke D.Label --jsonl --concurrency 1 <"$TMP/bill.jsonl" >"$TMP/out" 2>"$TMP/err"
expect_eq "the same prompt, two answers" "$(cat "$TMP/out")" '{"result":"billing"}
{"result":"refund"}'
inv --input which
expect_eq "an answer that asks back is uncertain" "$rc" 7
inv --input long
expect_eq "a reply cut by the token limit is truncated" "$rc" 12
inv --input rude
expect_eq "an answer the review rejects" "$rc" 8
inv --input nomatch
expect_eq "a failed call" "$rc" 4
inv --input maybe --policy '{"models": ["scripted:'$FX'/small.json", "scripted:'$FX'/strong.json"]}'
expect_eq "escalated past an uncertain answer" "$out" "billing"
expect_in "the small model's answer is in the trace" "$(cat "$TRACE")" "Which account do you mean?"
expect_eq "the trace says how each call ended" \
  "$(grep -o '"type":"call_end","call":"[0-9a-f]*-[0-9]*","function":"D.Label","status":"[a-z]*"' "$TRACE" | sed 's/.*"status"://' | tr '\n' ' ')" \
  '"ok" "ok" "ok" "ok" "ok" "uncertain" "truncated" "rejected" "model" "ok" '
expect_eq "the cassette too" "$(grep -c '"type":"call_end"' "$CAS")" "$(grep -c '"type":"call_end"' "$TRACE")"

# ---- the cassette still replays: its call_end lines are skipped
run "$BIN" --quiet --model "scripted:$CAS" --skills "$FX" --no-cache invoke D.Label --input refund
expect_eq "the cassette replays" "$rc $out" "0 billing"

SYS='Sort the message into one label.'
ALL_TXT="$SYS

Message: hello
Label:greeting
<|endoftext|>
$SYS

Message: refund
Label:billing
<|endoftext|>
$SYS

Message: bill
Label:billing
<|endoftext|>
$SYS

Message: bill
Label:refund
<|endoftext|>
$SYS

Message: maybe
Label:billing
<|endoftext|>"
chat() { printf '{"messages":[{"role":"system","content":"%s"},{"role":"user","content":"Message: %s\\nLabel:"},{"role":"assistant","content":"%s"}]}' "$SYS" "$1" "$2"; }
held() { printf '{"input":"Message: %s\\nLabel:","expected":"%s","function":"D.Label","system":"%s"}' "$1" "$2" "$SYS"; }
ALL_JSONL="$(chat hello greeting)
$(chat refund billing)
$(chat bill billing)
$(chat bill refund)
$(chat maybe billing)"

# ---- everything into training: no held-out share
run "$BIN" distill D.Label --from "$TRACE" --from "$CAS" --out "$TMP/all" --calibration 0 --test 0
expect_eq "distill rc" "$rc" 0
expect_eq "distill counts" "$err" "D.Label: 5 examples: train 5, calibration 0, test 0 (seed 1)
skipped: uncertain 1, rejected 1, truncated 1, failed 1, duplicate 1"
expect_eq "train.txt, exactly" "$(cat "$TMP/all/train.txt")" "$ALL_TXT"
expect_eq "train.jsonl, exactly" "$(cat "$TMP/all/train.jsonl")" "$ALL_JSONL"
expect_eq "no calibration split" "$(wc -c <"$TMP/all/calibration.jsonl")" 0
expect_eq "no test split" "$(wc -c <"$TMP/all/test.jsonl")" 0
for f in train.jsonl; do
  where=$(jsonl_ok "$TMP/all/$f") && ok || bad "$f: invalid JSON at $where"
done
expect_eq "no temporary files left" "$(ls -A "$TMP/all" | tr '\n' ' ')" \
  "calibration.jsonl test.jsonl train.jsonl train.txt "
all=$(cat "$TMP/all"/*)
for never in "Which product" "Which account" "insult" "Label:bu" "nomatch" "PASS" "REVIEW"; do
  expect_not_in "never exported: $never" "$all" "$never"
done

# ---- the default shares, seed 1: exact files
run "$BIN" distill D.Label --from "$TRACE" --from "$CAS" --out "$TMP/s1"
expect_eq "seed 1 rc" "$rc" 0
expect_eq "seed 1 counts" "$(head -1 "$TMP/err")" \
  "D.Label: 5 examples: train 2, calibration 2, test 1 (seed 1)"
expect_eq "seed 1 train.txt" "$(cat "$TMP/s1/train.txt")" "$SYS

Message: refund
Label:billing
<|endoftext|>
$SYS

Message: maybe
Label:billing
<|endoftext|>"
expect_eq "seed 1 train.jsonl" "$(cat "$TMP/s1/train.jsonl")" "$(chat refund billing)
$(chat maybe billing)"
# a prompt answered two ways stays in one split
expect_eq "seed 1 calibration.jsonl" "$(cat "$TMP/s1/calibration.jsonl")" "$(held bill billing)
$(held bill refund)"
expect_eq "seed 1 test.jsonl" "$(cat "$TMP/s1/test.jsonl")" "$(held hello greeting)"
for f in train.jsonl calibration.jsonl test.jsonl; do
  where=$(jsonl_ok "$TMP/s1/$f") && ok || bad "seed 1 $f: invalid JSON at $where"
done

# the same inputs and seed: the same bytes; another seed: other splits
run "$BIN" distill D.Label --from "$TRACE" --from "$CAS" --out "$TMP/s1b" --seed 1
for f in train.txt train.jsonl calibration.jsonl test.jsonl; do
  cmp -s "$TMP/s1/$f" "$TMP/s1b/$f" && ok || bad "seed 1 twice: $f differs"
done
run "$BIN" distill D.Label --from "$TRACE" --from "$CAS" --out "$TMP/s2" --seed 2
expect_eq "seed 2 rc" "$rc" 0
expect_eq "seed 2 calibration.jsonl" "$(cat "$TMP/s2/calibration.jsonl")" "$(held hello greeting)"
expect_eq "seed 2 test.jsonl" "$(cat "$TMP/s2/test.jsonl")" "$(held refund billing)"
expect_eq "seed 2 train.jsonl" "$(cat "$TMP/s2/train.jsonl")" "$(chat bill billing)
$(chat bill refund)
$(chat maybe billing)"
for s in s1 s2; do
  # the union of the splits is the accepted set, each example once
  union=$( (cat "$TMP/$s/train.jsonl"
            sed -E 's/^\{"input":"([^"]*)","expected":"([^"]*)","function":"D.Label","system":"([^"]*)"\}$/{"messages":[{"role":"system","content":"\3"},{"role":"user","content":"\1"},{"role":"assistant","content":"\2"}]}/' \
              "$TMP/$s/calibration.jsonl" "$TMP/$s/test.jsonl") | sort)
  expect_eq "$s: the splits' union is the accepted set" "$union" "$(sort <<<"$ALL_JSONL")"
done

# ---- --json: the counts for a program
run "$BIN" distill D.Label --from "$TRACE" --out "$TMP/j" --json
expect_eq "--json" "$out" '{"function":"D.Label","examples":5,"train":2,"calibration":2,"test":1,"seed":1,"skipped":{"uncertain":1,"rejected":1,"filtered":0,"truncated":1,"failed":1,"tool_calls":0,"multi_turn":0,"no_outcome":0,"no_exchange":0,"end_marker":0,"duplicate":1}}'
printf '%s' "$out" | "$BIN" run fixtures/json_check.lua >/dev/null 2>&1 && ok || bad "--json: invalid JSON"

# ---- a cassette alone: an answer served from the cache sent nothing
run "$BIN" distill D.Label --from "$CAS" --out "$TMP/c" --calibration 0 --test 0
expect_eq "cassette alone" "$err" "D.Label: 5 examples: train 5, calibration 0, test 0 (seed 1)
skipped: uncertain 1, rejected 1, truncated 1, failed 1, no_exchange 1"
expect_eq "cassette alone: the same examples" "$(cat "$TMP/c/train.jsonl")" "$ALL_JSONL"

# ---- redaction: the prompt went out with placeholders, and so does the
# answer; the address stays home
run "${SK[@]/$TRACE/$TMP/red.jsonl}" invoke D.Label --input "write to bob@example.com" --policy '{"redact": true}'
expect_eq "redacted call, restored for the caller" "$rc $out" "0 contact bob@example.com"
expect_in "call_end says it was redacted" "$(cat "$TMP/red.jsonl")" '"redacted":true'
run "$BIN" distill D.Label --from "$TMP/red.jsonl" --out "$TMP/red" --calibration 0 --test 0
expect_eq "redacted: train.jsonl" "$(cat "$TMP/red/train.jsonl")" \
  "$(printf '{"messages":[{"role":"system","content":"%s"},{"role":"user","content":"Message: write to [EMAIL_1]\\nLabel:"},{"role":"assistant","content":"contact [EMAIL_1]"}]}' "$SYS")"
expect_not_in "redacted: the address is in no file" "$(cat "$TMP/red"/*)" "bob@example.com"

# ---- a chat prompt with earlier turns (few-shot): the trace shows only
# the last, so it says how many there were, and distill skips the call
SKEIN_RECORD=$TMP/few-cas.jsonl run "${SK[@]/$TRACE/$TMP/few.jsonl}" invoke D.Few --input refund
expect_eq "few-shot call" "$rc $out" "0 billing"
expect_in "the trace counts the turns" "$(cat "$TMP/few.jsonl")" '"prompt":"Message: refund","turns":3,'
for f in few.jsonl few-cas.jsonl; do
  run "$BIN" distill D.Few --from "$TMP/$f" --out "$TMP/few"
  expect_eq "few-shot from $f rc" "$rc" 11
  expect_in "few-shot from $f: skipped" "$err" "skipped: multi_turn 1"
done

# ---- lines written before calls had ids: their outcome is unknown
grep -v '"type":"call_end"' "$TRACE" | sed 's/,"call":"[^"]*"//' >"$TMP/old.jsonl"
run "$BIN" distill D.Label --from "$TMP/old.jsonl" --out "$TMP/old"
expect_eq "old trace rc" "$rc" 11
expect_in "old trace: nothing accepted" "$err" "skipped: no_outcome 13"
expect_in "old trace: says so" "$err" "no accepted answers of D.Label"
[ -e "$TMP/old" ] && bad "nothing accepted: nothing written" || ok

# ---- hand-made lines: tool calls, earlier turns, the end marker
cat >"$TMP/edge.jsonl" <<'EOF'
{"type":"model_call","function":"E.F","prompt":"use a tool","reply":"","tool_calls":[{"id":"c1","name":"T-X","arguments":"{}"}],"call":"r-1"}
{"type":"call_end","function":"E.F","status":"ok","answer":"done","call":"r-1"}
{"function":"E.F","model":"m","prompt":"and now?","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"and now?"}],"reply":"fine","call":"r-2"}
{"type":"call_end","function":"E.F","status":"ok","answer":"fine","call":"r-2"}
{"type":"model_call","function":"E.F","prompt":"say it","reply":"x","call":"r-3"}
{"type":"call_end","function":"E.F","status":"ok","answer":"a\n<|endoftext|>\nb","call":"r-3"}
{"type":"model_call","function":"E.F","prompt":"blocked","reply":"x","call":"r-4"}
{"type":"call_end","function":"E.F","status":"filtered","call":"r-4"}
{"type":"model_call","function":"E.F","prompt":"keep","reply":"kept\n","call":"r-5"}
{"type":"call_end","function":"E.F","status":"ok","answer":"kept\n","call":"r-5"}
{"type":"model_call","function":"E.F","prompt":"running","reply":"x","call":"r-6"}
{"type":"note","detail":"other lines are passed over"}
EOF
run "$BIN" distill E.F --from "$TMP/edge.jsonl" --out "$TMP/e" --calibration 0 --test 0
expect_eq "edge rc" "$rc" 0
expect_eq "edge counts" "$err" "E.F: 1 example: train 1, calibration 0, test 0 (seed 1)
skipped: filtered 1, tool_calls 1, multi_turn 1, no_outcome 1, end_marker 1"
expect_eq "an answer ending in a newline gets none more" "$(cat "$TMP/e/train.txt")" "keepkept
<|endoftext|>"
expect_eq "no system message: user and assistant" "$(cat "$TMP/e/train.jsonl")" \
  '{"messages":[{"role":"user","content":"keep"},{"role":"assistant","content":"kept\n"}]}'

# ---- bad input: file:line[:col], exit 11; nothing written
printf '%s\n' "$(head -3 "$TRACE")" '{"type":"model_call",' >"$TMP/torn.jsonl"
run "$BIN" distill D.Label --from "$TMP/torn.jsonl" --out "$TMP/bad"
expect_eq "malformed line rc" "$rc" 11
expect_in "malformed line: file:line:col" "$err" "$TMP/torn.jsonl:4:21: not JSON"
[ -e "$TMP/bad" ] && bad "malformed input: nothing written" || ok
run "$BIN" distill D.Label --from "$FX/strong.json" --out "$TMP/bad"
expect_eq "neither trace nor cassette rc" "$rc" 11
expect_in "neither trace nor cassette: named" "$err" "$FX/strong.json:1:"
printf '{"input":"x","expected":"y"}\n' >"$TMP/data.jsonl"
run "$BIN" distill D.Label --from "$TMP/data.jsonl" --out "$TMP/bad"
expect_eq "a JSON lines file of something else rc" "$rc" 11
expect_in "a JSON lines file of something else" "$err" \
  "$TMP/data.jsonl:1:1: neither a trace line nor a recorded exchange"
printf '{"type":"call_end","function":"D.Label","call":"x-1"}\n' >"$TMP/nostatus.jsonl"
run "$BIN" distill D.Label --from "$TMP/nostatus.jsonl" --out "$TMP/bad"
expect_eq "call_end without a status rc" "$rc" 11
expect_in "call_end without a status" "$err" "$TMP/nostatus.jsonl:1: a call_end line needs"
head -c $((64 * 1024 * 1024 + 1)) /dev/zero | tr '\0' 'a' >"$TMP/long.jsonl"
run "$BIN" distill D.Label --from "$TRACE" --from "$TMP/long.jsonl" --out "$TMP/bad"
expect_eq "a line past the ceiling rc" "$rc" 11
expect_in "a line past the ceiling" "$err" "$TMP/long.jsonl:1: a line longer than 64 MiB"
rm -f "$TMP/long.jsonl"
[ -e "$TMP/bad" ] && bad "bad input: nothing written" || ok
run "$BIN" distill D.Label --from "$TMP/missing.jsonl" --out "$TMP/bad"
expect_eq "missing file rc" "$rc" 3
expect_in "missing file named" "$err" "$TMP/missing.jsonl: No such file or directory"
run "$BIN" distill D.Label --from "$TRACE" --out "$TRACE"
expect_eq "--out a file rc" "$rc" 3
expect_in "--out a file" "$err" "Not a directory"
run "$BIN" distill Nope.Fn --from "$TRACE" --out "$TMP/bad"
expect_eq "a function not in the input rc" "$rc" 11
expect_in "a function not in the input" "$err" "skipped: none"

# ---- usage: exit 2
for args in "D.Label --out $TMP/u" "D.Label --from $TRACE" "--from $TRACE --out $TMP/u" \
  "Label --from $TRACE --out $TMP/u" "D.Label extra --from $TRACE --out $TMP/u" \
  "D.Label --from $TRACE --out $TMP/u --calibration 1" \
  "D.Label --from $TRACE --out $TMP/u --calibration -0.1" \
  "D.Label --from $TRACE --out $TMP/u --calibration x" \
  "D.Label --from $TRACE --out $TMP/u --test 0.5 --calibration 0.5" \
  "D.Label --from $TRACE --out $TMP/u --seed x"; do
  # shellcheck disable=SC2086
  run "$BIN" distill $args
  expect_eq "usage: distill $args" "$rc" 2
done
run "$BIN" --model "scripted:$FX/strong.json" --skills "$FX" invoke D.Label --input hi --from "$TRACE"
expect_eq "--from elsewhere rc" "$rc" 2
expect_in "--from elsewhere" "$err" "--from is for distill"
run "$BIN" --skills "$FX" calibrate D.Label --data "$TMP/data.jsonl" --test 0
expect_eq "calibrate still refuses --test 0" "$rc" 2
[ -e "$TMP/u" ] && bad "usage errors write nothing" || ok

# ---- help, the manual, the completions
run "$BIN" help distill
expect_in "help distill" "$out" "usage: skein distill Skill.Fn --from FILE"
run "$BIN" --help
expect_in "--help lists distill" "$out" "distill Skill.Fn"
run "$BIN" completion bash
expect_in "bash completion: the command" "$out" "distill"
expect_in "bash completion: --from" "$out" "--from"
expect_in "bash completion: --calibration" "$out" "--calibration"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
