#!/usr/bin/env bash
# DataFrames and batch mode at the command line: skein df, --sql, --out,
# refusals with exit code 11, malformed CSV with its line, --db, --jsonl.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
SRC=${SKEIN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$(dirname "$0")" || exit 1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE="$TMP/cache.db"
SALES="$SRC/scripts/data/sales.csv"
SK=("$BIN" --quiet --model "scripted:$SRC/scripts/sales-model.json")

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

run "${SK[@]}" df "$SALES" "get 4 week moving average sales by dept" --sql
expect_eq "df rc" "$rc" 0
expect_eq "df header" "$(head -1 "$TMP/out")" "dept,week,sales,avg4"
expect_eq "df rows" "$(wc -l < "$TMP/out" | tr -d ' ')" "25"
expect_in "df first row" "$out" "garden,2,768,777.5"
expect_in "df --sql on stderr" "$err" "PARTITION BY dept"
run "${SK[@]}" df "$SALES" "get 4 week moving average sales by dept" --out "$TMP/avg.csv"
expect_eq "df --out rc" "$rc" 0
expect_eq "df --out nothing on stdout" "$out" ""
expect_eq "df --out file" "$(sed -n 3p "$TMP/avg.csv")" "garden,2,768,777.5"
# the data cannot be changed: refused, exit 11, and the db file intact
run "${SK[@]}" --db "$TMP/work.db" df "$SALES" "delete the toys rows"
expect_eq "refused rc" "$rc" 11
expect_in "refused message" "$err" "refused"
expect_in "refused JSON keeps the SQL" "$err" '"sql":"DELETE FROM'
# malformed input
printf 'a,b\n1,2\n3\n' > "$TMP/ragged.csv"
run "${SK[@]}" df "$TMP/ragged.csv" "anything"
expect_eq "ragged rc" "$rc" 11
expect_in "ragged line" "$err" "ragged.csv:3"
run "${SK[@]}" df "$TMP/missing.csv" "anything"
expect_in "missing file" "$err" "missing.csv"
run "${SK[@]}" df "$SALES"
expect_eq "df usage rc" "$rc" 2

# ---- batch mode
printf '{"input":"hello"}\n\n{"input":"world"}\nnot json\n{"input": 42}\n' > "$TMP/in.jsonl"
"$BIN" --quiet invoke Text.Upper --jsonl < "$TMP/in.jsonl" > "$TMP/out.jsonl" 2>/dev/null; rc=$?
expect_eq "jsonl rc (one bad line)" "$rc" 11
expect_eq "jsonl line 1" "$(sed -n 1p "$TMP/out.jsonl")" '{"result":"HELLO"}'
expect_eq "jsonl line 2" "$(sed -n 2p "$TMP/out.jsonl")" '{"result":"WORLD"}'
expect_in "jsonl bad line" "$(sed -n 3p "$TMP/out.jsonl")" '"kind":"data"'
expect_eq "jsonl number" "$(sed -n 4p "$TMP/out.jsonl")" '{"result":"42"}'
expect_eq "jsonl count" "$(wc -l < "$TMP/out.jsonl" | tr -d ' ')" "4"
# many lines, many in flight, order kept
seq 1 300 | awk '{printf "{\"input\":\"n%d\"}\n", $1}' > "$TMP/many.jsonl"
"$BIN" --quiet invoke Text.Upper --jsonl --concurrency 7 < "$TMP/many.jsonl" > "$TMP/many.out"; rc=$?
expect_eq "jsonl many rc" "$rc" 0
expect_eq "jsonl many order" "$(sed -n 300p "$TMP/many.out")" '{"result":"N300"}'
expect_eq "jsonl many count" "$(wc -l < "$TMP/many.out" | tr -d ' ')" "300"
printf '{"input":"x"}\n' | "$BIN" --quiet invoke No.Such --jsonl > "$TMP/nf.out" 2>/dev/null; rc=$?
expect_eq "jsonl unknown function rc" "$rc" 6
expect_in "jsonl unknown function line" "$(cat "$TMP/nf.out")" "not_found"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
