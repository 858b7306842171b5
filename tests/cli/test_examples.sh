#!/usr/bin/env bash
# The example scripts in scripts/ run offline, as the README says, and show
# what they claim to show.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
SRC=${SKEIN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$SRC" || exit 1
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_MEMORY=off SKEIN_EMBEDDINGS= SKEIN_NOW=

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CACHE=$TMP/cache.db
out=$("$BIN" run scripts/demo.lua 2>/dev/null </dev/null); rc=$?
expect_eq "demo rc" "$rc" 0
expect_in "demo calls the model" "$out" "4 model calls, 1 answered from the cache"
again=$("$BIN" run scripts/demo.lua 2>/dev/null </dev/null)
expect_in "a cached re-run of the demo makes no model calls" "$again" "0 model calls, 5 answered from the cache"
rm -f "$SKEIN_CACHE" "$SKEIN_CACHE-wal" "$SKEIN_CACHE-shm"
expect_in "demo says which model" "$out" "the bundled scripted model"
expect_in "demo nested step" "$out" "Town library opens its doors until midnight"
expect_in "demo parallel step" "$out" "German: Stadtbibliothek"

out=$("$BIN" run scripts/clarify.lua 2>/dev/null </dev/null); rc=$?
expect_eq "clarify rc" "$rc" 0
expect_in "clarify raises" "$out" "raised: kind=uncertain in Assistant.Message"
expect_in "clarify asks" "$out" "question: Do you mean the team channel or your manager?"
expect_in "clarify retries" "$out" "to the team channel."
expect_in "clarify escalates" "$out" "model calls: 2, escalations: 1"
# --stats says which model answered: the strong one, once
err=$("$BIN" --stats run scripts/clarify.lua 2>&1 >/dev/null </dev/null)
expect_in "stats answered column" "$err" "answered"
strong=$(printf '%s\n' "$err" | grep '^scripted:scripts/clarify-strong.json')
expect_eq "stats strong model answered" "$(echo $strong | awk '{print $2, $4}')" "1 1"

out=$("$BIN" run scripts/review.lua 2>/dev/null </dev/null); rc=$?
expect_eq "review rc" "$rc" 0
expect_in "review revises" "$out" "reviews: 2, revisions: 1"
expect_in "review final reply" "$out" "arrives on 14 March"
expect_in "review filter" "$out" "filtered: output filter \"tone\""
expect_in "review redacts" "$out" "sent to the model: ECHO Contact [EMAIL_1] or [PHONE_1], card [CARD_1]."
expect_in "review restores" "$out" "caller sees:       ECHO Contact jane.doe@example.com"

out=$("$BIN" run scripts/agent.lua 2>/dev/null </dev/null); rc=$?
expect_eq "agent rc" "$rc" 0
expect_in "agent acts" "$out" "Action: Shop.Stock(item=\"widget\")"
expect_in "agent observes" "$out" "Observation: 90.00"
expect_in "agent answers" "$out" "answer: Buying all 12 widgets in stock would cost 90.00."

export SKEIN_CACHE=off
out=$("$BIN" run scripts/rag.lua 2>/dev/null </dev/null); rc=$?
expect_eq "rag rc" "$rc" 0
expect_in "rag saves" "$out" "5 passages saved in collection \"handbook\""
expect_in "rag recalls the passage" "$out" "recalled 1: Parental leave is 16 weeks at full pay, for every parent. (leave,"
expect_in "rag answers from it" "$out" "answer:   Parents get 16 weeks of parental leave at full pay."
expect_in "rag says what it lacks" "$out" "answer:   The handbook does not say."
# with its memory in a file, a second run finds the first run's passages
sed 's/^skein.set_option("memory", "off")$/skein.set_option("memory", os.getenv("RAG_DB"))/' \
    scripts/rag.lua > "$TMP/rag.lua"
cp scripts/rag-model.json "$TMP/"
RAG_DB=$TMP/rag.db "$BIN" run "$TMP/rag.lua" >/dev/null 2>&1 </dev/null
expect_eq "rag keeps its memory in the file it is given" "$(test -s "$TMP/rag.db" && echo yes)" yes
out=$(printf '%s\n' 'print(require("skein").memory.get("leave", "handbook"))' > "$TMP/get.lua"
      SKEIN_MEMORY=$TMP/rag.db "$BIN" run "$TMP/get.lua" 2>&1 </dev/null)
expect_eq "another process reads it" "$out" "Parental leave is 16 weeks at full pay, for every parent."
out=$("$BIN" run scripts/sales.lua "$TMP/sales.csv" 2>/dev/null </dev/null); rc=$?
expect_eq "sales rc" "$rc" 0
expect_in "sales loads" "$out" "24 rows: dept TEXT, week INTEGER, sales INTEGER, note TEXT"
expect_in "sales transforms" "$out" "PARTITION BY dept"
expect_in "sales maps" "$out" "24 rows, 24 model calls"
expect_in "sales verifies" "$out" "holds: true"
expect_in "sales refuses" "$out" "rows before: 24, after: 24"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
