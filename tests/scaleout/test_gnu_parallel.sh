#!/usr/bin/env bash
# The README's GNU parallel recipe, as written there: `parallel --pipe
# --keep-order` over chunks of a JSON-lines file, one `skein invoke
# --jsonl` per chunk, a journal per chunk ({#}).  One skein process is
# killed with kill -9 mid-run; parallel's --retries runs its chunk again,
# which pays only for the calls that were in flight.  Then the whole
# pipeline is killed and run again: every finished call is served from
# the journals.  `make test-scaleout` runs it (Debian's parallel).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/support/lib.sh
command -v parallel > /dev/null || { echo "needs GNU parallel (Debian: parallel)" >&2; exit 1; }

printf '{"log": "%s", "echo": true, "echo_nonce": true, "echo_delay_ms": 20}' "$TMP/log.jsonl" > "$TMP/scen.json"
start_mock "$TMP/scen.json"
mkdir -p "$TMP/skills/J/Echo"
printf 'item {{$input}}' > "$TMP/skills/J/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false, "execution_settings": {"default": {"temperature": 0.9}}}\n' \
  > "$TMP/skills/J/Echo/config.json"
N=2000
for i in $(seq 1 $N); do printf '{"input": "%d"}\n' "$i"; done > "$TMP/in.jsonl"
for i in $(seq 1 $N); do printf '{"result":"item %d"}\n' "$i"; done > "$TMP/want"
strip() { sed 's/ #[0-9]*"}$/"}/' "$1"; }

run() { # out; runs the recipe in the background, sets PAR
  parallel --pipe -N 250 --keep-order -j 2 --retries 3 \
    "$BIN" --quiet --skills "$TMP/skills" --model "$MODEL" --journal "$TMP/j/part-{#}.db" \
    invoke J.Echo --jsonl --concurrency 8 < "$TMP/in.jsonl" > "$1" 2> "$TMP/err" &
  PAR=$!
  EXTRA_PIDS=$PAR
}
wait_requests() { for _ in $(seq 1200); do [ "$(requests)" -ge "$1" ] && return; sleep 0.02; done; }

# ---- one skein killed mid-run: parallel retries its chunk
mkdir -p "$TMP/j"
: > "$TMP/log.jsonl"
run "$TMP/out"
wait_requests 600
# the newest skein process itself, not a shell parallel may have put
# around it (killing that would orphan the skein and let the retry run
# beside it)
victim=$(pgrep -n -f -- "^$BIN .*--journal $TMP/j/part-")
[ -n "$victim" ] && kill -9 "$victim" && ok || bad "no skein process to kill"
wait "$PAR"
expect_eq "a chunk's skein killed: exit" "$?" 0
expect_eq "a chunk's skein killed: every line once, in order" \
  "$(strip "$TMP/out" | cmp -s - "$TMP/want" && echo same)" same
paid=$(($(requests) - N))
echo "parallel: one skein killed; $(requests) requests for $N lines, $paid paid twice"
[ "$paid" -ge 0 ] && [ "$paid" -le 8 ] && ok || bad "$paid calls paid twice (8 were in flight)"
last_answers "$TMP/out" && ok || bad "a line's answer is not the server's last for it"

# ---- the whole pipeline killed, then run again with the same journals
rm -rf "$TMP/j"; mkdir -p "$TMP/j"
: > "$TMP/log.jsonl"
run "$TMP/out2"
wait_requests 900
{ kill -9 "$PAR"; pkill -9 -f -- "--journal $TMP/j/part-"; wait "$PAR"; } 2>/dev/null
first=$(requests)
run "$TMP/out2"
wait "$PAR"
expect_eq "re-run after the pipeline was killed: exit" "$?" 0
expect_eq "re-run: every line once, in order" \
  "$(strip "$TMP/out2" | cmp -s - "$TMP/want" && echo same)" same
paid=$(($(requests) - N))
echo "parallel: pipeline killed after $first requests; re-run paid $paid twice"
# two chunks ran side by side, 8 in flight each
[ "$paid" -ge 0 ] && [ "$paid" -le 16 ] && ok || bad "$paid calls paid twice (16 were in flight)"
last_answers "$TMP/out2" && ok || bad "re-run: a line's answer is not the server's last for it"

finish
