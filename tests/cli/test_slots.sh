#!/usr/bin/env bash
# Prefix-aware routing to llama.cpp's slots (the option slots): requests
# that share a prompt prefix carry the same id_slot, different prefixes
# take different slots, a hot prefix spreads once its slot runs ahead of
# the others, and nothing about slots goes to a server that was not named
# as llama.cpp's or when the option is off.  Checked where it happens: in
# the loopback server's log of each request's id_slot and cache_prompt.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh

cat > "$TMP/scenario.json" <<EOF
{"log": "$TMP/log.jsonl", "idle_exit_ms": 900000, "echo": true}
EOF
start_mock "$TMP/scenario.json"
URL=${MODEL#openai:m@}
LLAMA="openai+llamacpp:m@$URL"

# Two functions, each a long fixed system prompt (its prefix) and the row.
S="$TMP/skills"
for fn in Sort Tag; do
  mkdir -p "$S/Rows/$fn"
  {
    printf '<message role="system">'
    for i in $(seq 40); do printf '%s rule %d: answer with one word. ' "$fn" "$i"; done
    printf '</message>\n<message role="user">{{$input}}</message>\n'
  } > "$S/Rows/$fn/skprompt.txt"
  printf '{"schema": 1, "type": "completion", "uncertainty": false}\n' > "$S/Rows/$fn/config.json"
done
cat > "$TMP/interleave.lua" <<'EOF'
local skein = require("skein")
for i = 1, 4 do
  assert(skein.invoke("Rows.Sort", { input = "row " .. i }))
  assert(skein.invoke("Rows.Tag", { input = "row " .. i }))
end
EOF
SK=("$BIN" --quiet --skills "$S")

# slot of each logged request, one per line, "-" when it carried none
# (the log's own fields: inside the logged body the quotes are escaped)
slot_of() { sed -nE 's/.*"id_slot":([0-9-]+),"cache_prompt":(true|false).*/\1 \2/p; t; s/.*/-/p'; }
slots() { slot_of < "$TMP/log.jsonl"; }

# 1. One function's rows, one after another: all on one slot, with the
#    prompt cache asked for.
: > "$TMP/log.jsonl"
for i in $(seq 6); do printf '{"input": "row %d"}\n' "$i"; done > "$TMP/rows.jsonl"
"${SK[@]}" -m "$LLAMA" --option slots=4 invoke Rows.Sort --jsonl --concurrency 1 \
  < "$TMP/rows.jsonl" > "$TMP/out.jsonl" || bad "rows on llama.cpp: exit $?"
expect_eq "six requests" "$(requests)" 6
expect_eq "rows sharing a prefix share a slot" "$(slots | sort -u | wc -l | tr -d ' ')" 1
expect_eq "with the prompt cache" "$(slots | sort -u | cut -d' ' -f2)" true
expect_eq "a slot among 4" "$(slots | sort -u | awk '$1 >= 0 && $1 < 4' | wc -l | tr -d ' ')" 1

# 2. Two functions interleaved in one run: each keeps its own slot.
: > "$TMP/log.jsonl"
"${SK[@]}" -m "$LLAMA" --option slots=4 run "$TMP/interleave.lua" \
  || bad "interleaved run: exit $?"
sort_slots=$(grep 'Sort rule' "$TMP/log.jsonl" | slot_of | sort -u)
tag_slots=$(grep 'Tag rule' "$TMP/log.jsonl" | slot_of | sort -u)
expect_eq "Sort's four calls on one slot" "$(printf '%s\n' "$sort_slots" | wc -l | tr -d ' ')" 1
expect_eq "Tag's four calls on one slot" "$(printf '%s\n' "$tag_slots" | wc -l | tr -d ' ')" 1
if [ -n "$sort_slots" ] && [ "$sort_slots" != "$tag_slots" ]; then ok
else bad "different prefixes share slot [$sort_slots]"; fi

# 3. A hot prefix: eight rows at once on a server that answers slowly (so
#    that all are in flight together).  No slot takes more than two more
#    than the least loaded: the eight spread two per slot.
cat > "$TMP/slow.json" <<EOF
{"log": "$TMP/log.jsonl", "idle_exit_ms": 900000, "echo": true, "echo_delay_ms": 1500}
EOF
start_mock "$TMP/slow.json"
URL=${MODEL#openai:m@}
: > "$TMP/log.jsonl"
for i in $(seq 8); do printf '{"input": "row %d"}\n' "$i"; done > "$TMP/rows8.jsonl"
"${SK[@]}" -m "openai+llamacpp:m@$URL" --option slots=4 invoke Rows.Sort --jsonl \
  --concurrency 8 < "$TMP/rows8.jsonl" > /dev/null || bad "hot prefix: exit $?"
expect_eq "all eight in flight at once" \
  "$(grep -o '"inflight":[0-9]*' "$TMP/log.jsonl" | cut -d: -f2 | sort -n | tail -1)" 8
expect_eq "a busy slot overflows to the others, two each" \
  "$(slots | cut -d' ' -f1 | sort | uniq -c | awk '{print $1}' | sort -u | tr '\n' ' ')" "2 "

# 4. Nothing about slots where it was not asked for: a plain OpenAI
#    server with the option set, and llama.cpp's without it.
: > "$TMP/log.jsonl"
"${SK[@]}" -m "openai:m@$URL" --option slots=4 invoke Rows.Sort --input x > /dev/null \
  || bad "plain openai: exit $?"
"${SK[@]}" -m "openai+llamacpp:m@$URL" invoke Rows.Sort --input x > /dev/null \
  || bad "llama.cpp without slots: exit $?"
expect_eq "no id_slot or cache_prompt sent" "$(slots | tr '\n' ' ')" "- - "
expect_eq "nor in the body" "$(grep -c 'id_slot\|cache_prompt' "$TMP/log.jsonl")" 0

# 5. A dry run shows the slot it would use, and sends nothing.
: > "$TMP/log.jsonl"
out=$("${SK[@]}" -m "openai+llamacpp:m@$URL" --option slots=4 invoke Rows.Sort --input x --dry-run)
expect_eq "dry run: id_slot in the body" \
  "$(printf '%s\n' "$out" | grep '"body":' | slot_of)" "0 true"
expect_eq "dry run: nothing sent" "$(requests)" 0

# 6. A bad count is a usage error naming the option.
"${SK[@]}" -m "$LLAMA" --option slots=many invoke Rows.Sort --input x > /dev/null 2> "$TMP/err"
expect_eq "slots=many: exit 2" "$?" 2
grep -q 'option slots' "$TMP/err" && ok || bad "no message naming the option: $(cat "$TMP/err")"

finish
