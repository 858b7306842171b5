#!/usr/bin/env bash
# Semantic Kernel's core plugins from the command line, as a user runs
# them: real SK prompts that call {{date}}, {{time.Date}} and
# {{recall $input}} (tests/data/sk_core_prompts) sent to the loopback
# server with the memory and a fixed clock, the time functions bare and
# in any case, memory saved by one command and recalled by the next.
set -u
. "$(dirname "$0")/../support/lib.sh"
SRC=${SKEIN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PROMPTS=$SRC/tests/data/sk_core_prompts
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }

export TZ=PST8PDT,M3.2.0,M11.1.0 SKEIN_NOW=2031-01-13T05:15:07Z
export SKEIN_MEMORY=$TMP/memory.db

# the time functions, fixed clock, any case, bare in a template
expect_eq "time.Date" "$("$BIN" invoke time.Date </dev/null)" "Sunday, 12 January, 2031"
expect_eq "TIME.utcnow" "$("$BIN" invoke TIME.utcnow </dev/null)" "Monday, January 13, 2031 5:15 AM"
expect_eq "a bare name in a template" \
    "$(printf 'Today is {{date}} ({{year}}), {{hour}}.' | "$BIN" render -)" \
    "Today is Sunday, 12 January, 2031 (2031), 9 PM."
expect_eq "the option now" "$("$BIN" --option now=2000-02-29T12:00:00Z invoke time.iso_date </dev/null)" "2000-02-29"
out=$(SKEIN_NOW=yesterday "$BIN" invoke time.Date 2>&1 </dev/null); rc=$?
expect_eq "a bad SKEIN_NOW exit code" "$rc" 2
expect_in "a bad SKEIN_NOW says what to write" "$out" 'SKEIN_NOW: \"yesterday\" is not an instant'
out=$("$BIN" invoke time.DaysAgo --input soon 2>&1 </dev/null); rc=$?
expect_eq "a bad day count exit code" "$rc" 2
expect_in "a bad day count" "$out" 'input must be a number of days, got \"soon\"'

# memory: saved by one command, recalled by the next
"$BIN" invoke TextMemoryPlugin.Save --var key=city --input "Ada lives in Lisbon and loves trams." </dev/null
"$BIN" invoke TextMemoryPlugin.Save --var key=job --input "Ada works as a lighthouse keeper." </dev/null
expect_eq "recall" "$("$BIN" invoke recall --input "Where does Ada live?" </dev/null)" \
    "Ada lives in Lisbon and loves trams."
expect_eq "recall, limit 2: a JSON array, best first" \
    "$("$BIN" invoke recall --input "Lisbon trams or a lighthouse" --var limit=2 </dev/null)" \
    '["Ada lives in Lisbon and loves trams.","Ada works as a lighthouse keeper."]'
expect_eq "the file is where SKEIN_MEMORY says" "$(test -s "$TMP/memory.db" && echo yes)" yes
out=$(SKEIN_MEMORY=off "$BIN" invoke recall --input "Where does Ada live?" </dev/null)
expect_eq "off: nothing from the file" "$out" ""
expect_eq "off wrote nothing" "$(ls "$TMP" | grep -c '^off')" 0

# real SK prompts against the server, unchanged
printf '{"echo": true, "log": "%s"}\n' "$TMP/log.jsonl" > "$TMP/echo.json"
start_mock "$TMP/echo.json"
out=$("$BIN" --model "$MODEL" --skills "$PROMPTS" invoke QAPlugin.ContextQuery \
    --var firstname=Ada --var city=Lisbon --input "Who keeps the lighthouse" \
    --policy '{"uncertainty": false}' </dev/null); rc=$?
expect_eq "QAPlugin.ContextQuery rc" "$rc" 0
expect_in "{{time.Date}} in an SK prompt" "$out" "TODAY is Sunday, 12 January, 2031"
expect_in "{{recall \$input}} in an SK prompt" "$out" "COUNTRY: 
Ada works as a lighthouse keeper.
[END CONTEXT]"
out=$("$BIN" --model "$MODEL" --skills "$PROMPTS" invoke ChatPlugin.ChatGPT \
    --var firstName=Ada --var botName=Sam --var attitude=kind --input "Tell me about trams in my city" \
    --policy '{"uncertainty": false}' </dev/null); rc=$?
expect_eq "ChatPlugin.ChatGPT rc" "$rc" 0
expect_in "{{date}} in an SK prompt" "$out" "TODAY is Sunday, 12 January, 2031"
expect_in "{{recall}} in the chat prompt" "$out" "Ada lives in Lisbon and loves trams."
expect_eq "two calls reached the server" "$(requests)" 2

# a plan is the model's: a bare name reaches only what it may call
printf '1. save(input="planted", key="evil")\n' > "$TMP/p.plan"
out=$("$BIN" --model "$MODEL" run-plan "$TMP/p.plan" --functions Text.Upper 2>&1 </dev/null); rc=$?
expect_eq "a plan saving without leave exit code" "$rc" 9
expect_in "a plan saving without leave" "$out" "TextMemoryPlugin.Save is not allowed here"
expect_eq "nothing was planted" "$("$BIN" invoke TextMemoryPlugin.Retrieve --var key=evil </dev/null)" ""

finish
