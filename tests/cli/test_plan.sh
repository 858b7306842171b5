#!/usr/bin/env bash
# Plans and agents at the command line: plan, --save, run-plan, --dot,
# errors with plan lines, NO PLAN, and an agent run.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
FX=fixtures
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
SK=("$BIN" --quiet --model "scripted:$FX/planner.json")

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

# ---- plan, save, run
run "${SK[@]}" plan "shout it" --save "$TMP/shout.plan"
expect_eq "plan rc" "$rc" 0
expect_in "plan printed" "$out" "1. Text.Upper(input=\$input)"
expect_in "plan goal line" "$out" "# goal: shout it"
expect_eq "plan saved as printed" "$(cat "$TMP/shout.plan")" "$out"
run "${SK[@]}" run-plan "$TMP/shout.plan" --var input=hello
expect_eq "run-plan rc" "$rc" 0
expect_eq "run-plan output" "$out" "HELLO!"
run "${SK[@]}" plan "shout it" --run --input hey
expect_eq "plan --run rc" "$rc" 0
expect_eq "plan --run output" "$out" "HEY!"
run "${SK[@]}" run-plan "$TMP/shout.plan" --dot
expect_in "dot graph" "$out" "digraph"
expect_in "dot edge" "$out" "s1 -> s2"

# ---- a hand-edited plan with mistakes: every problem, with its line.
# Syntax comes first (like a compiler), then the checks against the
# loaded functions.
printf '# goal: edited\n1. Text.Upper(input=$input)\nnot a step\n2. Text.Lower(input=\n' > "$TMP/syntax.plan"
run "${SK[@]}" run-plan "$TMP/syntax.plan" --var input=x
expect_eq "syntax rc" "$rc" 9
expect_in "malformed line" "$err" "syntax.plan:3:1:"
expect_in "unfinished call" "$err" "syntax.plan:4:"
expect_in "kind plan" "$err" '"kind":"plan"'
printf '# goal: edited\n1. Text.Upper(input=$input)\n2. Text.Uper(input=$1)\n3. Text.Concat(input=$4, colour="red")\n' > "$TMP/bad.plan"
run "${SK[@]}" run-plan "$TMP/bad.plan" --var input=x
expect_eq "bad plan rc" "$rc" 9
expect_in "unknown function with line" "$err" "bad.plan:3:"
expect_in "unknown function suggestion" "$err" "did you mean Text.Upper"
expect_in "bad reference" "$err" "bad.plan:4:"
expect_in "unknown parameter" "$err" "colour"
printf '1. Text.Upper(input=$2)\n2. Text.Lower(input=$1)\n' > "$TMP/cycle.plan"
run "${SK[@]}" run-plan "$TMP/cycle.plan"
expect_eq "cycle rc" "$rc" 9
expect_in "cycle reported" "$err" "cycle"

# ---- no plan possible
run "${SK[@]}" plan "fly to the moon"
expect_eq "no plan rc" "$rc" 9
expect_in "no plan reason" "$err" "none of these functions can book a flight"

# ---- agent
run "$BIN" --model "scripted:$FX/planner.json" agent "make hello loud" --functions Text.Upper,Text.Lower
expect_eq "agent rc" "$rc" 0
expect_eq "agent answer" "$out" "HELLO it is"
expect_in "agent steps on stderr" "$err" "Observation: HELLO"
run "${SK[@]}" agent "make hello loud" --functions Text.Upper --max-steps 1
expect_eq "agent limit rc" "$rc" 10
expect_in "agent limit message" "$err" "1 step"
run "${SK[@]}" agent
expect_eq "agent without goal rc" "$rc" 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
