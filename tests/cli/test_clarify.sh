#!/usr/bin/env bash
# Uncertainty at the command line: exit code 7 and JSON when nobody can
# answer; the interactive clarify loop on a terminal; `skein review`.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
FX=fixtures
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
SK=("$BIN" --quiet --model "scripted:$FX/unsure.json" --skills "$FX/unsure_skills")

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

# ---- not a terminal: exit 7, the question in the JSON error
run "${SK[@]}" invoke U.Report --input revenue
expect_eq "uncertain rc" "$rc" 7
expect_eq "nothing on stdout" "$out" ""
expect_in "uncertain JSON kind" "$err" '"kind":"uncertain"'
expect_in "uncertain JSON question" "$err" '"question":"Which quarter?"'
expect_in "uncertain JSON function" "$err" '"function":"U.Report"'
# a clarification given up front answers it
run "${SK[@]}" invoke U.Report --input revenue --var clarification="Q3 please"
expect_eq "clarified rc" "$rc" 0
expect_eq "clarified output" "$out" "Q3 revenue rose 12%."
# the signal can be switched off for one call
run "${SK[@]}" invoke U.Report --input revenue --policy '{"uncertainty": false}'
expect_eq "policy off rc" "$rc" 0
expect_eq "policy off output" "$out" "It depends on which quarter you mean. Which quarter?"
run "${SK[@]}" invoke U.Report --input revenue --policy '{"uncertainty": 3}'
expect_eq "bad policy rc" "$rc" 3

# ---- a terminal: the question is asked, the answer re-runs the call
if command -v script >/dev/null 2>&1; then
  printf 'Q3\n' | script -qec "${SK[*]} --trace $TMP/trace.jsonl invoke U.Report --input revenue" /dev/null >"$TMP/tty" 2>&1
  rc=$?
  tty=$(tr -d '\r' <"$TMP/tty")
  expect_eq "interactive rc" "$rc" 0
  expect_in "interactive shows the question" "$tty" "Which quarter?"
  expect_in "interactive prompt" "$tty" "your answer"
  expect_in "interactive result" "$tty" "Q3 revenue rose 12%."
  expect_in "trace records the clarification" "$(cat "$TMP/trace.jsonl")" '"type":"clarified","function":"U.Report","handled_by":"cli"'
  expect_in "trace records where it was raised" "$(cat "$TMP/trace.jsonl")" '"type":"uncertain","function":"U.Report"'
  # disagreeing samples are shown as candidates; a number picks one
  printf '2\n' | script -qec "${SK[*]} invoke U.City --input south" /dev/null >"$TMP/tty" 2>&1
  rc=$?
  tty=$(tr -d '\r' <"$TMP/tty")
  expect_eq "candidates rc" "$rc" 0
  expect_in "candidates listed" "$tty" "The answers it gave:"
  expect_in "candidate 1" "$tty" "1) Lyon"
  expect_in "candidate 2" "$tty" "2) Nice"
  expect_in "candidate 3" "$tty" "3) Lille"
  expect_in "candidates prompt" "$tty" "or the number of one above"
  expect_eq "picked candidate is the answer" "$(printf '%s\n' "$tty" | tail -1 | sed 's/.*> //')" "Nice"
  # an empty answer gives up with exit 7
  printf '\n' | script -qec "${SK[*]} invoke U.Report --input revenue" /dev/null >"$TMP/tty" 2>&1
  expect_eq "interactive give up rc" "$?" 7
  # the answer reaches the re-run even where the template does not place
  # {{$clarification}}
  printf 'Q3\n' | script -qec "${SK[*]} invoke U.Plain --input revenue" /dev/null >"$TMP/tty" 2>&1
  expect_eq "clarification without the variable rc" "$?" 0
  expect_in "clarification without the variable" "$(tr -d '\r' <"$TMP/tty")" "Q3 it is."
  # nothing reaches the terminal that a later check replaces: the first
  # answer is of the wrong shape and asked for again
  script -qec "${SK[*]} invoke U.YesNo --input blue" /dev/null </dev/null >"$TMP/tty" 2>&1
  expect_eq "checked reply rc" "$?" 0
  expect_eq "checked reply: only what passed" "$(tr -d '\r' <"$TMP/tty")" "yes"
  script -qec "${SK[*]} invoke U.Free --input x" /dev/null </dev/null >"$TMP/tty" 2>&1
  expect_eq "unchecked reply" "$(tr -d '\r' <"$TMP/tty")" "words as they come"
  # while the checked reply is held back, the terminal says so, and the
  # line goes once the answer is there
  script -qec "$BIN --model scripted:$FX/unsure.json --skills $FX/unsure_skills invoke U.Slow --input x" \
    /dev/null </dev/null >"$TMP/tty" 2>&1
  expect_in "busy line" "$(cat "$TMP/tty")" "U.Slow: waiting for the model and its checks"
  expect_in "busy line erased" "$(cat "$TMP/tty")" $'\r\033[K'"done"
  expect_eq "busy line: the answer alone on the last line" "$(tr -d '\r' <"$TMP/tty" | sed 's/.*\x1b\[K//' | tail -1)" "done"
else
  bad "script(1) is missing: cannot drive a terminal"
fi

# ---- review
run "${SK[@]}" review --reviewer U.Check --task "say it is fine" --input "fine"
expect_eq "review pass rc" "$rc" 0
expect_eq "review pass output" "$out" "PASS"
out=$(printf 'nothing\n' | "${SK[@]}" review --reviewer U.Check 2>/dev/null); rc=$?
expect_eq "review fail rc" "$rc" 8
expect_eq "review fail output" "$out" "FAIL: the answer is empty of content"
run "${SK[@]}" review
expect_eq "review without text rc" "$rc" 2
run "${SK[@]}" review --reviewer No.Such --input x
expect_eq "review unknown reviewer rc" "$rc" 6

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
