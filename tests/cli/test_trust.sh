#!/usr/bin/env bash
# The trust boundary at the command line, attacked as a user's data and a
# misbehaving model would: what a model writes reaches only what the user
# allowed (plans and --functions, generated SQL and its ai()/skein()),
# natives run for a model get no way out of the process even through a
# saved reference, and generated SQL is bounded on the output path and
# never cached when it failed.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
SRC=${SKEIN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$(dirname "$0")" || exit 1
FX=$PWD/fixtures/trust
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE="$TMP/cache.db"
SALES="$SRC/scripts/data/sales.csv"
PEOPLE="$FX/people.csv"
SK=("$BIN" --quiet --model "scripted:$FX/model.json" --skills "$SRC/tests/data/sandbox")

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
expect_absent() { if [ -e "$2" ]; then bad "$1: $2 exists"; rm -f "$2"; else ok; fi; }
# runs in $TMP, so that a file a model makes appears there
run() { (cd "$TMP" && "$@" >"$TMP/out" 2>"$TMP/err" </dev/null); rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

# ---- generated SQL cannot call functions unless the user allows them
run "${SK[@]}" df "$SALES" "who am i"
expect_eq "skein() in generated SQL refused: rc" "$rc" 11
expect_in "refused, and why" "$err" "refused"
expect_in "names the function" "$err" "skein()"
expect_not_in "no user name leaked" "$out" "$(id -un)"

# a planted instruction in a CSV cell reaches the model, which obeys; the
# SQL it writes is refused and the repaired one runs; nothing is touched
run "${SK[@]}" --trace "$TMP/planted.jsonl" df "$PEOPLE" "list the names"
expect_eq "planted instruction: rc" "$rc" 0
expect_in "planted instruction: the model obeyed and was refused" \
  "$(grep sql_repair "$TMP/planted.jsonl")" "skein('Sys.Touch'"
expect_in "planted instruction: refused" "$(grep sql_repair "$TMP/planted.jsonl")" "refused"
expect_eq "planted instruction: output" "$out" "$(printf 'name\nada\nbob\ncy')"
expect_absent "planted instruction: no file" "$TMP/pwned"

# allowed functions work ...
run "${SK[@]}" df "$PEOPLE" "shout the names" --functions Text.Upper
expect_eq "allowed skein(): rc" "$rc" 0
expect_eq "allowed skein(): output" "$out" "$(printf 'loud\nADA\nBOB\nCY')"
# ... and only they: a function name taken from the data is refused at the call
run "${SK[@]}" df "$PEOPLE" "let the data choose" --functions Text.Upper
expect_eq "name from a cell: rc" "$rc" 11
expect_in "name from a cell: why" "$err" "Sys.Touch is not allowed"
expect_absent "name from a cell: no file" "$TMP/pwned"
# an allowed native still runs untrusted: no os.execute
run "${SK[@]}" df "$PEOPLE" "touch it" --functions Sys.Touch
expect_eq "allowed native sandboxed: rc" "$rc" 11
expect_in "allowed native sandboxed: why" "$err" "os.execute is not allowed"
expect_absent "allowed native sandboxed: no file" "$TMP/pwned"
run "${SK[@]}" --allow-os df "$PEOPLE" "touch it" --functions Sys.Touch
expect_eq "--allow-os widens it: rc" "$rc" 0
if [ -e "$TMP/pwned" ]; then ok; rm -f "$TMP/pwned"; else bad "--allow-os: the file was not made"; fi
run "${SK[@]}" df "$PEOPLE" "shout the names" --functions Text.Uper
expect_eq "a misspelt allowed function: rc" "$rc" 6
expect_in "a misspelt allowed function: hint" "$err" "did you mean Text.Upper"

# ---- generated SQL is bounded on the output path
# The default bounds (a million rows, 64 MB) take seconds natively and
# minutes under valgrind, where the same path is checked at a smaller bound.
bound=()
[ -n "${SKEIN_TEST_SLOW:-}" ] && bound=(--option sql_max_bytes=2000000)
# the guard is for a hang only: on a loaded machine or under a sanitizer
# the 30 s time bound may be the one that stops it
run timeout 240 "${SK[@]}" "${bound[@]}" df "$SALES" "runaway"
expect_eq "runaway CTE: rc" "$rc" 11
expect_in "runaway CTE: names the limit" "$err" "sql_"
expect_in "runaway CTE: says how to raise it" "$err" "--option"
size=$(wc -c < "$TMP/out")
if [ "$size" -le $((70 * 1024 * 1024)) ]; then ok; else bad "runaway CTE printed $size bytes"; fi
run "${SK[@]}" --option sql_max_rows=1000 df "$SALES" "runaway"
expect_eq "row limit: rc" "$rc" 11
expect_in "row limit: named" "$err" "more than 1000 rows"
expect_in "row limit: option named" "$err" "sql_max_rows"
expect_eq "row limit: header and 1000 rows" "$(wc -l < "$TMP/out" | tr -d ' ')" "1001"
run "${SK[@]}" --option sql_max_rows=1000 df "$SALES" "runaway" --out "$TMP/run.csv"
expect_eq "row limit with --out: rc" "$rc" 11
expect_absent "no half-written --out" "$TMP/run.csv"
if ls "$TMP"/run.csv.tmp-* >/dev/null 2>&1; then bad "a temporary file was left"; else ok; fi
run timeout 60 "${SK[@]}" --option sql_timeout_ms=300 df "$SALES" "cross"
expect_eq "15-way cross join: rc" "$rc" 11
expect_in "15-way cross join: time limit" "$err" "time limit"
expect_in "15-way cross join: option" "$err" "sql_timeout_ms"
run "${SK[@]}" --option sql_max_rows=x df "$SALES" "runaway"
expect_eq "bad --option: rc" "$rc" 2
# a query that hit a limit is not the instruction's cached answer: asking
# again asks the model again
# (a cache of their own, that no earlier run wrote to)
run env SKEIN_CACHE="$TMP/fresh.db" "${SK[@]}" --trace "$TMP/t1.jsonl" --option sql_max_rows=10 df "$SALES" "runaway"
run env SKEIN_CACHE="$TMP/fresh.db" "${SK[@]}" --trace "$TMP/t2.jsonl" --option sql_max_rows=10 df "$SALES" "runaway"
expect_eq "not cached after a limit" "$(grep -c '"type":"model_call"' "$TMP/t2.jsonl")" "1"
expect_in "trace says it was not cached" "$(cat "$TMP/t2.jsonl")" '"cached":false'
# and a query that ran whole is
run "${SK[@]}" df "$PEOPLE" "shout the names" --functions Text.Upper
run "${SK[@]}" --trace "$TMP/t3.jsonl" df "$PEOPLE" "shout the names" --functions Text.Upper
expect_eq "cached once it ran whole" "$(grep -c '"type":"model_call"' "$TMP/t3.jsonl")" "0"

# ---- plans: --functions holds the checks and the run, not just the prompt
run "${SK[@]}" plan "touch the file" --functions Text.Upper --run
expect_eq "plan outside --functions: rc" "$rc" 9
expect_in "plan outside --functions: why" "$err" "Sys.Touch is not allowed"
expect_absent "plan outside --functions: no file" "$TMP/pwned"
printf '1. Text.Upper(input="a")\n2. Sys.Touch(input="pwned")\n' > "$TMP/edit.plan"
run "${SK[@]}" run-plan "$TMP/edit.plan" --functions Text.Upper
expect_eq "run-plan --functions: rc" "$rc" 9
expect_in "run-plan --functions: line and column" "$err" "edit.plan:2:4: Sys.Touch is not allowed"
expect_absent "run-plan --functions: no file" "$TMP/pwned"
# without --functions a plan may call any function, but its natives are
# sandboxed, saved references included
run "${SK[@]}" run-plan "$TMP/edit.plan"
expect_eq "sandboxed plan step: rc" "$rc" 5
expect_in "sandboxed plan step: why" "$err" "os.execute is not allowed"
expect_absent "sandboxed plan step: no file" "$TMP/pwned"
for fn in Run Write; do
  printf '1. Saved.%s(input="pwned")\n' "$fn" > "$TMP/saved.plan"
  run "${SK[@]}" run-plan "$TMP/saved.plan"
  expect_eq "saved reference $fn: rc" "$rc" 5
  expect_in "saved reference $fn: why" "$err" "is not allowed in a function run for a model"
  expect_absent "saved reference $fn: no file" "$TMP/pwned"
done
printf '1. Saved.Env(input="HOME")\n' > "$TMP/env.plan"
run "${SK[@]}" run-plan "$TMP/env.plan"
expect_in "os.getenv refused" "$err" "os.getenv is not allowed"
printf '1. Saved.Unwrap(input="x")\n' > "$TMP/unwrap.plan"
run "${SK[@]}" run-plan "$TMP/unwrap.plan"
expect_in "debug refused" "$err" "debug.getupvalue is not allowed"
printf '1. Saved.Load(input="string")\n' > "$TMP/load.plan"
run "${SK[@]}" run-plan "$TMP/load.plan"
expect_eq "require of a loaded module" "$out" "table"
printf '1. Saved.Load(input="socket")\n' > "$TMP/load2.plan"
run "${SK[@]}" run-plan "$TMP/load2.plan"
expect_in "require of a new module refused" "$err" "require is not allowed"
run "${SK[@]}" --allow-os run-plan "$TMP/saved.plan"
expect_eq "--allow-os: rc" "$rc" 0
if [ -e "$TMP/pwned" ]; then ok; rm -f "$TMP/pwned"; else bad "--allow-os run-plan: no file"; fi
# the user's own call is the user's: not sandboxed
run "${SK[@]}" invoke Saved.Run --input pwned
expect_eq "the user's own call: rc" "$rc" 0
if [ -e "$TMP/pwned" ]; then ok; rm -f "$TMP/pwned"; else bad "user call: no file"; fi
# the planner's own prompt is not something a plan may call
run "${SK[@]}" plan "ask the planner" --run
expect_eq "plan calling Planner.Create: rc" "$rc" 9
expect_in "plan calling Planner.Create: why" "$err" "Planner.Create is not allowed"

# ---- PII stays home: redaction is on by default for a remote endpoint
# (reached here through a proxy on loopback, so the server sees what
# would have left the machine) and off for a loopback one
MOCK=${SKEIN_MOCKSERVER:?SKEIN_MOCKSERVER must name the mock server}
printf '{"log": "%s", "echo": true}' "$TMP/pii.jsonl" > "$TMP/pii.json"
"$MOCK" "$TMP/pii.json" > "$TMP/port" &
mock=$!
for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
port=$(head -1 "$TMP/port")
run env http_proxy="http://127.0.0.1:$port" "$BIN" --quiet --model "openai:m@http://remote.example/v1" \
  invoke Writer.Summarize --input "mail ada@example.com or call +44 20 7946 0958"
expect_eq "remote: rc" "$rc" 0
expect_in "remote: the reply has the value back" "$out" "ada@example.com"
expect_not_in "remote: the server never saw it" "$(cat "$TMP/pii.jsonl")" "ada@example.com"
expect_in "remote: it saw a placeholder" "$(cat "$TMP/pii.jsonl")" "[EMAIL_1]"
: > "$TMP/pii.jsonl"
run "$BIN" --quiet --model "openai:m@http://127.0.0.1:$port/v1" invoke Writer.Summarize --input "mail ada@example.com"
expect_in "loopback: sent as written" "$(cat "$TMP/pii.jsonl")" "ada@example.com"
kill "$mock" 2>/dev/null; wait "$mock" 2>/dev/null

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
