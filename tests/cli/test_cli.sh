#!/usr/bin/env bash
# The skein command line: help, pipes, exit codes, render, skills, run.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
FX=fixtures
MODEL="scripted:$FX/rules.json"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
# expect_eq WHAT GOT WANT
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
# expect_in WHAT HAYSTACK NEEDLE
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
# run CMD...: sets out, err, rc
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

# ---- help and version
run "$BIN" --version
expect_eq "--version" "$out" "skein 0.1.0"
expect_eq "--version rc" "$rc" 0
run "$BIN" --help
expect_eq "--help rc" "$rc" 0
expect_in "--help lists commands" "$out" "invoke Skill.Fn"
expect_in "--help documents exit codes" "$out" "Exit codes:"
expect_in "--help exit code 6" "$out" "6  not found"
run "$BIN" help invoke
expect_in "help invoke" "$out" "usage: skein invoke"
run "$BIN" render --help
expect_in "render --help" "$out" "usage: skein render"
expect_eq "render --help rc" "$rc" 0
run "$BIN"
expect_eq "no command rc" "$rc" 2

# ---- pipes
out=$(printf 'hello' | "$BIN" invoke Text.Upper)
expect_eq "stdin to invoke" "$out" "HELLO"
out=$(printf 'Hello World\n' | "$BIN" invoke Text.Upper | "$BIN" invoke Text.Lower)
expect_eq "two invokes chained" "$out" "hello world"
out=$(printf 'abc\n' | "$BIN" --skills $FX/skills invoke Cli.Reverse | od -c | head -1)
expect_in "one trailing newline stripped, one added" "$out" "c   b   a  \\n"
out=$(printf 'abc\n\n' | "$BIN" --skills $FX/skills invoke Cli.Reverse | od -An -c | tr -d ' ')
expect_eq "only one newline stripped" "$out" '\ncba\n'
run "$BIN" invoke Text.Upper --input "from option" --quiet
expect_eq "--input, options after the command" "$out" "FROM OPTION"
run "$BIN" invoke Text.Concat --var input=a --var input2=b --var separator=-
expect_eq "--var" "$out" "a-b"
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet invoke Cli.Sem --input x
expect_eq "semantic via scripted model" "$out" "the scripted reply"
expect_eq "semantic rc" "$rc" 0
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet invoke Cli.Sem --input x --stream
expect_eq "--stream into a pipe" "$out" "the scripted reply"

# ---- usage errors: 2
run "$BIN" invok Text.Upper
expect_eq "command typo rc" "$rc" 2
expect_in "command typo suggestion" "$err" "did you mean 'invoke'?"
run "$BIN" --bogus skills
expect_eq "unknown option rc" "$rc" 2
run "$BIN" skills --jsn
expect_in "option typo suggestion" "$err" "did you mean '--json'?"
run "$BIN" invoke
expect_eq "missing function rc" "$rc" 2
run "$BIN" invoke Text.Upper --var novalue
expect_eq "--var without = rc" "$rc" 2
run "$BIN" --model
expect_eq "option without its value rc" "$rc" 2
run "$BIN" help nosuch
expect_eq "help for an unknown command rc" "$rc" 2

# ---- template errors: 3
run "$BIN" render $FX/bad.txt
expect_eq "bad template rc" "$rc" 3
expect_in "bad template file:line:col" "$err" "fixtures/bad.txt:2:"
expect_in "bad template JSON error" "$err" '{"kind":"template"'
run "$BIN" render $FX/missing.txt
expect_eq "missing template rc" "$rc" 3
run "$BIN" --skills $FX/nonexistent skills
expect_eq "missing --skills folder rc" "$rc" 3

# ---- not found: 6
run "$BIN" invoke Text.Uper --input x
expect_eq "unknown function rc" "$rc" 6
expect_in "unknown function suggestion" "$err" "did you mean Text.Upper"
expect_in "unknown function JSON" "$err" '"kind":"not_found"'

# ---- no model configured
run "$BIN" --skills $FX/skills invoke Cli.Sem --input x
expect_in "no model message" "$err" "no model configured"
expect_in "no model hint" "$err" "--model"
test "$rc" -ne 0 && ok || bad "no model must fail"

# ---- model errors: 4
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet invoke Cli.Fail --input x
expect_eq "model error rc" "$rc" 4
expect_in "model error message" "$err" "scripted server error"
expect_in "model error JSON http_status" "$err" '"http_status":503'
run "$BIN" --model "openai:x@http://127.0.0.1:1/v1" --quiet invoke Writer.Summarize --input x
expect_eq "connection refused rc" "$rc" 4
expect_in "connection refused JSON" "$err" '"kind":"network"'

# ---- uncertain: 7
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet invoke Cli.Hedge --input x
expect_eq "uncertain rc" "$rc" 7

# ---- script errors: 5
run "$BIN" --skills $FX/skills invoke Cli.Boom --input x
expect_eq "native Lua failure rc" "$rc" 5
expect_in "native Lua failure file:line" "$err" "skill.lua:3: native failure"
run "$BIN" --model "$MODEL" --skills $FX/skills invoke Cli.Nest --input x
expect_eq "nested native failure rc" "$rc" 5
expect_in "nested chain" "$err" '"chain":["Cli.Boom","Cli.Nest"]'
run "$BIN" run $FX/plain_error.lua
expect_eq "script error rc" "$rc" 5
expect_in "script error message" "$err" "plain_error.lua:1: plain script failure"
expect_in "script error traceback" "$err" "stack traceback:"
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet run $FX/fail.lua
expect_eq "uncaught skein error exits by kind" "$rc" 4
expect_in "uncaught skein error as JSON off a terminal" "$err" '{"kind":"model","code":4,"message":"scripted server error"'
expect_eq "uncaught skein error: one JSON line, no text" "$(printf '%s\n' "$err" | grep -c '^skein:')" 0
expect_in "uncaught skein error traceback" "$err" "fail.lua:2"
run "$BIN" run $FX/nonexistent.lua
expect_eq "missing script rc" "$rc" 3

# ---- render
run "$BIN" render $FX/greet.txt --var name=ann --no-calls
expect_eq "render --no-calls" "$out" "Hello ann!
Upper: {{Text.Upper \$name}}"
run "$BIN" render $FX/greet.txt --var name=ann
expect_eq "render with calls" "$out" "Hello ann!
Upper: ANN"
out=$(printf 'In: {{$input}}' | "$BIN" render - --input zz)
expect_eq "render from stdin" "$out" "In: zz"

# ---- skills
run "$BIN" --skills $FX/skills skills
expect_eq "skills rc" "$rc" 0
expect_in "skills lists a native" "$out" "Cli.Reverse"
expect_in "skills shows the description" "$out" "Reverses the input."
expect_in "skills lists parameters" "$out" "--var input"
line=$(printf '%s\n' "$out" | grep '^Cli.Reverse ')
line2=$(printf '%s\n' "$out" | grep '^Text.Upper ')
expect_eq "skills columns aligned" "$(expr index "$line" n)" "$(expr index "$line2" n)"
"$BIN" --skills $FX/skills skills --json >"$TMP/skills.json"
expect_eq "skills --json rc" "$?" 0
n=$("$BIN" run $FX/json_check.lua <"$TMP/skills.json")
expect_eq "skills --json is valid JSON" "$?" 0
total=$(printf '%s\n' "$out" | grep -c '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_]* ')
expect_eq "skills --json has every function" "$n" "$total"
expect_in "skills --json fields" "$(cat "$TMP/skills.json")" '"full_name":"Cli.Reverse"'

# ---- run
run "$BIN" run $FX/args.lua one two
expect_eq "run: arg table and varargs" "$(printf '%s\n' "$out" | head -1)" "script-ok	2	one	two"
expect_eq "run: the skein module" "$(printf '%s\n' "$out" | tail -1)" "ONE"

# ---- trace
run "$BIN" --model "$MODEL" --skills $FX/skills --quiet --trace "$TMP/trace.jsonl" invoke Cli.Sem --input x
lines=$(grep -c '"type":"model_call"' "$TMP/trace.jsonl" 2>/dev/null || echo 0)
expect_eq "--trace writes a line per model call" "$lines" 1
lines=$(grep -c '"type":"call_end","call":"[0-9a-f]*-1","function":"Cli.Sem","status":"ok","answer":"the scripted reply"' "$TMP/trace.jsonl" 2>/dev/null || echo 0)
expect_eq "--trace writes how the call ended" "$lines" 1

# ---- streaming to a terminal
if command -v script >/dev/null 2>&1; then
  out=$(script -qec "$BIN --model $MODEL --skills $FX/skills --quiet invoke Cli.Sem --input x" /dev/null </dev/null | tr -d '\r')
  expect_eq "streamed to a terminal" "$out" "the scripted reply"
  out=$(script -qec "$BIN --model $MODEL --skills $FX/skills --quiet invoke Cli.Sem --input x --no-stream" /dev/null </dev/null | tr -d '\r')
  expect_eq "--no-stream to a terminal" "$out" "the scripted reply"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
