#!/usr/bin/env bash
# `skein invoke --jsonl` as a stage that gets killed: each result is on
# disk as soon as it and the lines before it are done; SIGTERM and SIGINT
# stop the reading, let the calls in flight finish, write every line in
# input order (an unfinished one as a "cancelled" error) and exit 128 +
# the signal; a closed stdout stops it with 141.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE= SKEIN_CACHE=off

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }

# 200 lines; each reply takes 100 ms and names its line
{
  printf '{"rules": [\n'
  for i in $(seq 1 200); do
    printf '{"match": "^item %d$", "reply": "done %d", "delay_ms": 100}%s\n' "$i" "$i" "$([ "$i" -lt 200 ] && echo ,)"
  done
  printf ']}\n'
} >"$TMP/model.json"
mkdir -p "$TMP/skills/J/Echo"
printf 'item {{$input}}' >"$TMP/skills/J/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false}\n' >"$TMP/skills/J/Echo/config.json"
for i in $(seq 1 200); do printf '{"input": "%d"}\n' "$i"; done >"$TMP/in.jsonl"
SK=("$BIN" --quiet --model "scripted:$TMP/model.json" --skills "$TMP/skills")

# Every line written is whole, and they are the first lines, in order:
# results, then at most the cancelled ones, never a gap.
check_prefix() {
  local file=$1 what=$2 n=0 cancelled=0 line
  LINES=0 CANCELLED=0
  while IFS= read -r line; do
    n=$((n + 1))
    case "$line" in
      "{\"result\":\"done $n\"}")
        [ "$cancelled" -eq 0 ] || { bad "$what: a result after a cancelled line: $line"; return; } ;;
      "{\"error\":{\"kind\":\"cancelled\","*"\"line\":$n}}")
        cancelled=$((cancelled + 1)) ;;
      *) bad "$what: line $n is not whole or not in order: [$line]"; return ;;
    esac
  done <"$file"
  ok
  LINES=$n CANCELLED=$cancelled
}

# Waits (up to 120 s) until FILE holds at least N lines.
wait_lines() {
  local i
  for i in $(seq 1 1200); do
    [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# ---- SIGTERM mid-run: what finished is on disk, in order
"${SK[@]}" invoke J.Echo --jsonl --concurrency 4 <"$TMP/in.jsonl" >"$TMP/out" 2>"$TMP/err" &
pid=$!
# results reach the disk one by one, not in 4 KB bursts
wait_lines "$TMP/out" 8 && ok || bad "SIGTERM: no lines on disk while running"
kill -TERM "$pid"
wait "$pid"
expect_eq "SIGTERM exit code" "$?" 143
check_prefix "$TMP/out" "SIGTERM"; lines=$LINES cancelled=$CANCELLED
[ "${lines:-0}" -ge 8 ] && ok || bad "SIGTERM: only ${lines:-0} lines on disk"
[ "${lines:-0}" -lt 200 ] && ok || bad "SIGTERM: it did not stop reading"
expect_eq "SIGTERM: the calls in flight finished in the grace period" "${cancelled:-x}" 0
grep -q "stopped by signal 15" "$TMP/err" && ok || bad "SIGTERM: no notice on stderr: $(cat "$TMP/err")"

# ---- a call that outlasts the grace period: cancelled, in its place
printf '{"rules": [{"match": "^item fast$", "reply": "done 1"}, {"match": "^item slow$", "reply": "late", "delay_ms": 60000}]}\n' >"$TMP/slow.json"
printf '{"input": "fast"}\n{"input": "slow"}\n' >"$TMP/slow.jsonl"
"$BIN" --quiet --model "scripted:$TMP/slow.json" --skills "$TMP/skills" invoke J.Echo --jsonl \
  <"$TMP/slow.jsonl" >"$TMP/out" 2>/dev/null &
pid=$!
wait_lines "$TMP/out" 1
t0=$(date +%s)
kill -TERM "$pid"
wait "$pid"
expect_eq "grace period exit code" "$?" 143
# bounded: the 60 s call is abandoned after the 5 s grace, not waited for
[ $(($(date +%s) - t0)) -lt 30 ] && ok || bad "grace period: the stop waited for the call in flight"
check_prefix "$TMP/out" "grace period"
expect_eq "grace period lines" "$LINES $CANCELLED" "2 1"

# ---- SIGINT likewise, 130
"${SK[@]}" invoke J.Echo --jsonl --concurrency 4 <"$TMP/in.jsonl" >"$TMP/out" 2>/dev/null &
pid=$!
wait_lines "$TMP/out" 4
kill -INT "$pid"
wait "$pid"
expect_eq "SIGINT exit code" "$?" 130
check_prefix "$TMP/out" "SIGINT"

# ---- a reader that goes away: stop, 141, no hang
out=$("${SK[@]}" invoke J.Echo --jsonl --concurrency 4 <"$TMP/in.jsonl" 2>/dev/null | head -3)
expect_eq "closed stdout: the reader got its lines" "$(printf '%s\n' "$out" | wc -l)" 3
"${SK[@]}" invoke J.Echo --jsonl --concurrency 4 <"$TMP/in.jsonl" 2>/dev/null | head -1 >/dev/null
expect_eq "closed stdout exit code" "${PIPESTATUS[0]}" 141

# ---- undisturbed, every line
"${SK[@]}" invoke J.Echo --jsonl --concurrency 50 <"$TMP/in.jsonl" >"$TMP/out" 2>/dev/null
expect_eq "full run exit code" "$?" 0
check_prefix "$TMP/out" "full run"; lines=$LINES
expect_eq "full run lines" "${lines:-0}" 200

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
