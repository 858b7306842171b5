#!/usr/bin/env bash
# --journal: a run killed with kill -9 at a random point and run again with
# the same journal repeats no finished model call, and ends with the
# output an uninterrupted run gives.  The loopback server numbers every
# reply (" #N"), as a model at temperature > 0 would never repeat itself,
# so a repeated call shows in the output as well as in the server's count.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh

printf '{"log": "%s", "echo": true, "echo_nonce": true, "echo_delay_ms": 40}' \
  "$TMP/log.jsonl" > "$TMP/echo.json"
start_mock "$TMP/echo.json"

mkdir -p "$TMP/skills/J/Echo"
printf 'item {{$input}}' > "$TMP/skills/J/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false, "execution_settings": {"default": {"temperature": 0.9}}}\n' \
  > "$TMP/skills/J/Echo/config.json"
N=300
for i in $(seq 1 $N); do printf '{"input": "%d"}\n' "$i"; done > "$TMP/in.jsonl"
SK=("$BIN" --quiet --skills "$TMP/skills")

# ---- an uninterrupted run, for the output to compare with
: > "$TMP/log.jsonl"
"${SK[@]}" --model "$MODEL" invoke J.Echo --jsonl --concurrency 8 < "$TMP/in.jsonl" > "$TMP/plain.out"
expect_eq "uninterrupted run: exit" "$?" 0
expect_eq "uninterrupted run: one request a line" "$(requests)" "$N"
strip() { sed 's/ #[0-9]*"}$/"}/' "$1"; }
strip "$TMP/plain.out" > "$TMP/plain.stripped"
expect_eq "uninterrupted run: every line, in order" \
  "$(cmp -s "$TMP/plain.stripped" <(for i in $(seq 1 $N); do printf '{"result":"item %d"}\n' "$i"; done) && echo same)" same

# ---- kill -9 at random points, again and again, then let it finish
: > "$TMP/log.jsonl"
rm -f "$TMP/j.db"
RANDOM=4242 # the same points each time the test runs
slow=1
[ -n "${SKEIN_TEST_SLOW:-}" ] && slow=10
kills=0 attempt=0 rc=1
while [ "$rc" -ne 0 ] && [ "$attempt" -lt 40 ]; do
  attempt=$((attempt + 1))
  "${SK[@]}" --model "$MODEL" --journal "$TMP/j.db" invoke J.Echo --jsonl --concurrency 8 \
    < "$TMP/in.jsonl" > "$TMP/out.$attempt" 2> "$TMP/err.$attempt" &
  pid=$!
  base=$(requests)
  if [ "$attempt" -le 3 ]; then
    # 20 to 200 ms in (ten times that under valgrind): before the first
    # reply, or just after it
    ms=$(((20 + RANDOM % 180) * slow))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  elif [ "$attempt" -le 10 ]; then
    # mid-run: once the server has seen 2 to 16 new requests.  The point
    # is set by the run's progress, not by the clock, so a slow machine
    # (or valgrind) cannot let the run finish before the kill comes.
    want=$((base + 2 + RANDOM % 15))
    for _ in $(seq 3000); do
      [ "$(requests)" -ge "$want" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  elif [ "$attempt" -le 12 ]; then
    # and twice once it has written 20 lines, most of them served from
    # the journal, whatever the machine's speed
    for _ in $(seq 3000); do
      [ "$(wc -l < "$TMP/out.$attempt")" -ge 20 ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  fi
  { wait "$pid"; } 2>/dev/null
  rc=$?
done
expect_eq "the last run finished" "$rc" 0
[ "$kills" -ge 12 ] && ok || bad "only $kills runs were killed mid-run"

# the final output is the uninterrupted run's (up to the numbered replies)
expect_eq "resumed output equals the uninterrupted run's" \
  "$(strip "$TMP/out.$attempt" | cmp -s - "$TMP/plain.stripped" && echo same)" same

# Every line any killed run wrote is whole and is the final run's line:
# the re-runs saw the answers the first run saw, at temperature 0.9.
partial_bad=0 partial_lines=0
for f in "$TMP"/out.*; do
  [ "$f" = "$TMP/out.$attempt" ] && continue
  n=$(wc -l < "$f")
  partial_lines=$((partial_lines + n))
  cmp -s "$f" <(head -n "$n" "$TMP/out.$attempt") || partial_bad=$((partial_bad + 1))
  # no half line at the end
  [ ! -s "$f" ] || [ "$(tail -c1 "$f" | od -An -c | tr -d ' ')" = '\n' ] || partial_bad=$((partial_bad + 1))
done
expect_eq "lines the killed runs wrote are the final ones" "$partial_bad" 0
[ "$partial_lines" -gt 0 ] && ok || bad "no killed run wrote a line: the kills came too early"

# The server's count: a repeated request is one that was in flight when
# a kill came (at most 8 at a time), never one that had been answered to
# skein: each line's answer is the last the server gave for that prompt.
total=$(requests)
repeats=$((total - N))
echo "journal: $attempt runs, $kills killed, $total requests for $N lines ($repeats repeated)"
[ "$repeats" -le $((kills * 8)) ] && ok || bad "$repeats requests repeated over $kills kills of 8 in flight"
last_answers "$TMP/out.$attempt" && ok || bad "a line's answer is not the server's last for its prompt"

# ---- once finished, running it again calls nothing and prints the same
before=$(requests)
"${SK[@]}" --model "$MODEL" --journal "$TMP/j.db" --stats invoke J.Echo --jsonl < "$TMP/in.jsonl" \
  > "$TMP/again.out" 2> "$TMP/again.err"
expect_eq "complete journal: exit" "$?" 0
expect_eq "complete journal: no request" "$(requests)" "$before"
expect_eq "complete journal: the same output" "$(cmp -s "$TMP/again.out" "$TMP/out.$attempt" && echo same)" same
grep -q "served from the journal $N" "$TMP/again.err" && ok || bad "--stats: $(cat "$TMP/again.err")"

# ---- identical requests are told apart by their occurrence: three equal
# lines get three answers, and the re-run serves each its own
printf '{"input": "same"}\n{"input": "same"}\n{"input": "same"}\n' > "$TMP/same.jsonl"
"${SK[@]}" --model "$MODEL" --journal "$TMP/same.db" invoke J.Echo --jsonl --concurrency 1 < "$TMP/same.jsonl" > "$TMP/same1"
expect_eq "equal lines: three answers" "$(sort -u "$TMP/same1" | wc -l | tr -d ' ')" 3
before=$(requests)
"${SK[@]}" --model "$MODEL" --journal "$TMP/same.db" invoke J.Echo --jsonl --concurrency 1 < "$TMP/same.jsonl" > "$TMP/same2"
expect_eq "equal lines: served from the journal" "$(requests)" "$before"
expect_eq "equal lines: each its own answer" "$(cmp -s "$TMP/same1" "$TMP/same2" && echo same)" same
# a fourth equal line is new work
printf '{"input": "same"}\n' >> "$TMP/same.jsonl"
"${SK[@]}" --model "$MODEL" --journal "$TMP/same.db" invoke J.Echo --jsonl --concurrency 1 < "$TMP/same.jsonl" > "$TMP/same3"
expect_eq "a fourth equal line: one request" "$(requests)" $((before + 1))

# ---- a changed request is not served: another model, another prompt
before=$(requests)
printf '{"input": "1"}\n' | "${SK[@]}" --model "${MODEL/openai:m@/openai:other@}" --journal "$TMP/j.db" \
  invoke J.Echo --jsonl > /dev/null
expect_eq "another model is new work" "$(requests)" $((before + 1))

# ---- a failed call is not journaled: the re-run asks again
printf '{"log": "%s", "responses": [{"status": 500, "json": {"error": {"message": "overloaded"}}}]}' \
  "$TMP/log.jsonl" > "$TMP/fail.json"
start_mock "$TMP/fail.json"
: > "$TMP/log.jsonl"
"${SK[@]}" --model "$MODEL" --option retries=0 --journal "$TMP/fail.db" invoke J.Echo --input x > /dev/null 2>&1
expect_eq "server error: exit" "$?" 4
start_mock "$TMP/echo.json"
"${SK[@]}" --model "$MODEL" --journal "$TMP/fail.db" invoke J.Echo --input x > "$TMP/fail.out"
expect_eq "after a failure the re-run calls the model" "$(requests)" 2
grep -q '^item x #' "$TMP/fail.out" && ok || bad "after a failure: $(cat "$TMP/fail.out")"

# ---- a plan killed mid-run, resumed in a new process: the steps that had
# finished are not asked again.  Four steps in a chain, 300 ms each.
printf '{"log": "%s", "echo": true, "echo_nonce": true, "echo_delay_ms": 300}' \
  "$TMP/log.jsonl" > "$TMP/slow.json"
start_mock "$TMP/slow.json"
: > "$TMP/log.jsonl"
printf '# goal: a chain\n1. J.Echo(input="a")\n2. J.Echo(input=$1)\n3. J.Echo(input=$2)\n4. J.Echo(input=$3)\n' > "$TMP/chain.plan"
"${SK[@]}" --model "$MODEL" --journal "$TMP/plan.db" run-plan "$TMP/chain.plan" > "$TMP/plan.out" 2>&1 &
pid=$!
for _ in $(seq 600); do [ "$(requests)" -ge 3 ] && break; sleep 0.02; done # step 3 asked
kill -9 "$pid"; { wait "$pid"; } 2>/dev/null
expect_eq "plan: killed at step 3" "$(requests)" 3
"${SK[@]}" --model "$MODEL" --journal "$TMP/plan.db" run-plan "$TMP/chain.plan" > "$TMP/plan.out"
expect_eq "plan resumed: exit" "$?" 0
# steps 1 and 2 from the journal; step 3 again (it was in flight), then 4
expect_eq "plan resumed: requests in all" "$(requests)" 5
expect_eq "plan resumed: the first run's answers, then new ones" "$(cat "$TMP/plan.out")" \
  "item item item item a #1 #2 #4 #5"

# ---- a Lua script that stopped to ask the user, re-run with the answer:
# it pays only for the call after the question
printf '{"log": "%s", "echo": true, "echo_nonce": true, "responses": [
  {"match": "the user answered", "reply": "Paris"},
  {"match": "the capital", "reply": "Which country do you mean?"}]}' "$TMP/log.jsonl" > "$TMP/ask.json"
start_mock "$TMP/ask.json"
: > "$TMP/log.jsonl"
mkdir -p "$TMP/skills/J/Ask"
printf 'Name {{$input}}.' > "$TMP/skills/J/Ask/skprompt.txt"
printf '{"schema": 1, "type": "completion"}\n' > "$TMP/skills/J/Ask/config.json"
cat > "$TMP/ask.lua" <<'LUA'
local skein = require("skein")
local a = skein.invoke("J.Echo", "one")
local b = skein.invoke("J.Echo", "two")
local c = skein.clarify("J.Ask", { input = "the capital" }, function() return arg[1] end)
print(a, b, c)
LUA
"${SK[@]}" --model "$MODEL" --journal "$TMP/ask.db" run "$TMP/ask.lua" > "$TMP/ask.out" 2> "$TMP/ask.err"
expect_eq "script asks: exit" "$?" 7
expect_eq "script asks: three calls" "$(requests)" 3
"${SK[@]}" --model "$MODEL" --journal "$TMP/ask.db" run "$TMP/ask.lua" "France" > "$TMP/ask.out" 2> "$TMP/ask.err"
expect_eq "script re-run with the answer: exit" "$?" 0
expect_eq "script re-run with the answer: one more call" "$(requests)" 4
expect_eq "script re-run with the answer: output" "$(cat "$TMP/ask.out")" "$(printf 'item one #1\titem two #2\tParis')"
tail -1 "$TMP/log.jsonl" | grep -q 'France' && ok || bad "the paid call did not carry the answer"

# ---- row operators and to_csv under kill -9: the CSV is whole or absent,
# and the re-run pays only for the rows not yet answered
start_mock "$TMP/echo.json"
: > "$TMP/log.jsonl"
{ echo "id,note"; for i in $(seq 1 200); do echo "$i,note $i"; done; } > "$TMP/notes.csv"
cat > "$TMP/map.lua" <<LUA
local skein = require("skein")
local df = skein.df.read_csv("$TMP/notes.csv")
local out, summary = df:ai_map("Say {note}", { as = "said", concurrency = 8, cache = false })
out:to_csv("$TMP/said.csv")
print(summary.rows, summary.failed)
LUA
"${SK[@]}" --model "$MODEL" --journal "$TMP/map.db" run "$TMP/map.lua" > /dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do [ "$(requests)" -ge 100 ] && break; sleep 0.02; done
kill -9 "$pid"; { wait "$pid"; } 2>/dev/null
[ ! -e "$TMP/said.csv" ] && ok || bad "a killed ai_map left $TMP/said.csv"
expect_eq "a killed ai_map left no temporary file" "$(ls "$TMP" | grep -c 'said.csv')" 0
first=$(requests)
"${SK[@]}" --model "$MODEL" --journal "$TMP/map.db" run "$TMP/map.lua" > "$TMP/map.out"
expect_eq "ai_map resumed: exit" "$?" 0
expect_eq "ai_map resumed: summary" "$(cat "$TMP/map.out")" "$(printf '200\t0')"
printf 'print(require("skein").df.read_csv(arg[1]):count())' > "$TMP/count.lua"
expect_eq "ai_map resumed: rows in the file" "$("$BIN" --quiet run "$TMP/count.lua" "$TMP/said.csv")" 200
repeats=$(($(requests) - 200))
[ "$repeats" -le 8 ] && ok || bad "ai_map resumed: $repeats rows paid twice (at most 8 were in flight)"
echo "ai_map: killed after $first requests, $repeats paid twice"

# ---- a reply cut by the token limit: the re-run ends the same way,
# truncated (exit 12), from the journal and without a call
printf '{"log": "%s", "responses": [{"json": {"id": "c", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "half a rep"}, "finish_reason": "length"}]}}]}' \
  "$TMP/log.jsonl" > "$TMP/cut.json"
start_mock "$TMP/cut.json"
: > "$TMP/log.jsonl"
"${SK[@]}" --model "$MODEL" --journal "$TMP/cut.db" invoke J.Echo --input x > /dev/null 2>&1
expect_eq "cut reply: exit" "$?" 12
"${SK[@]}" --model "$MODEL" --journal "$TMP/cut.db" invoke J.Echo --input x > /dev/null 2>&1
expect_eq "cut reply re-run: truncated again" "$?" 12
expect_eq "cut reply re-run: from the journal" "$(requests)" 1
start_mock "$TMP/echo.json"

# ---- where the journal meets the other stages on the same path
cat > "$TMP/meet.json" <<JSON
{"log": "$TMP/log.jsonl", "echo": true, "echo_nonce": true, "responses": [
  {"match": "\\"model\\":\\"small\\"", "reply": "Which country do you mean?"},
  {"match": "Text.Upper", "reply": "1. Text.Lower(input=\\"a\\")"}]}
JSON
start_mock "$TMP/meet.json"
URL=${MODEL#openai:m@}
mkdir -p "$TMP/skills/J/Det"
printf 'det {{$input}}' > "$TMP/skills/J/Det/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false, "execution_settings": {"default": {"temperature": 0}}}\n' \
  > "$TMP/skills/J/Det/config.json"
# the cache: a hit is journaled too, so the journal alone replays the run
: > "$TMP/log.jsonl"
SKEIN_CACHE=$TMP/cache.db "${SK[@]}" --model "$MODEL" invoke J.Det --input c > "$TMP/c1"
SKEIN_CACHE=$TMP/cache.db "${SK[@]}" --model "$MODEL" --journal "$TMP/c.db" invoke J.Det --input c > "$TMP/c2"
expect_eq "cache hit: one request in all" "$(requests)" 1
"${SK[@]}" --model "$MODEL" --journal "$TMP/c.db" invoke J.Det --input c > "$TMP/c3"
expect_eq "cache off: the journal serves what the cache gave" "$(requests)" 1
expect_eq "cache off: the same answer" "$(cat "$TMP/c3")" "$(cat "$TMP/c1")"
# streaming: an answer from the journal streams like one from the model
"${SK[@]}" --model "$MODEL" --journal "$TMP/s.db" invoke J.Echo --input s --stream --policy '{"uncertainty": false}' > "$TMP/s1"
before=$(requests)
"${SK[@]}" --model "$MODEL" --journal "$TMP/s.db" invoke J.Echo --input s --stream --policy '{"uncertainty": false}' > "$TMP/s2"
expect_eq "stream from the journal: no request" "$(requests)" "$before"
expect_eq "stream from the journal: the same text" "$(cat "$TMP/s2")" "$(cat "$TMP/s1")"
# a cascade: the re-run escalates as the first run did, with no call
casc="{\"models\": [\"openai:small@$URL\", \"openai:big@$URL\"]}"
: > "$TMP/log.jsonl"
"${SK[@]}" --journal "$TMP/k.db" --stats invoke J.Ask --input where --policy "$casc" > "$TMP/k1" 2> "$TMP/k1.err"
expect_eq "cascade: exit" "$?" 0
expect_eq "cascade: small, then big" "$(requests)" 2
"${SK[@]}" --journal "$TMP/k.db" --stats invoke J.Ask --input where --policy "$casc" > "$TMP/k2" 2> "$TMP/k2.err"
expect_eq "cascade from the journal: no request" "$(requests)" 2
expect_eq "cascade from the journal: the big model's answer" "$(cat "$TMP/k2")" "$(cat "$TMP/k1")"
grep -q 'escalations 1' "$TMP/k2.err" && ok || bad "cascade from the journal: not escalated: $(cat "$TMP/k2.err")"
# the trust boundary: a plan served from the journal is checked again
: > "$TMP/log.jsonl"
"${SK[@]}" --model "$MODEL" --journal "$TMP/p.db" plan "lower it" --functions Text.Upper --run > /dev/null 2> "$TMP/p1.err"
expect_eq "plan outside --functions: exit" "$?" 9
paid=$(requests)
"${SK[@]}" --model "$MODEL" --journal "$TMP/p.db" plan "lower it" --functions Text.Upper --run > /dev/null 2> "$TMP/p2.err"
expect_eq "the same plan from the journal: still refused" "$?" 9
expect_eq "the same plan from the journal: no request" "$(requests)" "$paid"
grep -q 'Text.Lower is not allowed' "$TMP/p2.err" && ok || bad "plan from the journal: $(cat "$TMP/p2.err")"
start_mock "$TMP/echo.json"

# ---- bad journals: a clear error, exit 3, and the file untouched
printf 'x\n1\n' > "$TMP/sales.csv"
printf 'local df = require("skein").df.read_csv(arg[1], { table = "sales" }); print(df:count())' > "$TMP/mk.lua"
"$BIN" --quiet --db "$TMP/other.db" run "$TMP/mk.lua" "$TMP/sales.csv" > /dev/null
"${SK[@]}" --model "$MODEL" --journal "$TMP/other.db" invoke J.Echo --input x > /dev/null 2> "$TMP/err"
expect_eq "someone else's database: exit" "$?" 3
grep -q "is a database but not a skein journal" "$TMP/err" && ok || bad "someone else's database: $(cat "$TMP/err")"
printf 'print(require("skein").df.from_table("sales"):count())' > "$TMP/rd.lua"
expect_eq "someone else's database is untouched" "$("$BIN" --quiet --db "$TMP/other.db" run "$TMP/rd.lua")" 1
printf 'not a database at all, just text that goes on and on for a while\n%.0s' $(seq 40) > "$TMP/text.db"
"${SK[@]}" --model "$MODEL" --journal "$TMP/text.db" invoke J.Echo --input x > /dev/null 2> "$TMP/err"
expect_eq "a text file: exit" "$?" 3
grep -q "journal $TMP/text.db" "$TMP/err" && ok || bad "a text file: $(cat "$TMP/err")"
"${SK[@]}" --model "$MODEL" --journal "$TMP/no/such/dir/j.db" invoke J.Echo --input x > /dev/null 2> "$TMP/err"
expect_eq "no such folder: exit" "$?" 3
"${SK[@]}" invoke J.Echo --journal > /dev/null 2> "$TMP/err"
expect_eq "--journal with no file: usage" "$?" 2

finish
