#!/usr/bin/env bash
# scripts/dask_map.py on a Dask LocalCluster of two worker processes over
# loopback: 2,000 rows against the loopback server, one worker process
# killed with kill -9 mid-run.  The output holds every row exactly once,
# in order, and with a journal per partition only the calls in flight in
# the killed worker are paid twice.  `make test-scaleout` runs it.
set -u
PY=${SKEIN_PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/../.." || exit 1
. tests/support/lib.sh

"$PY" -c 'import distributed' 2>/dev/null || { echo "needs $PY with Dask distributed (python3-distributed)" >&2; exit 1; }

printf '{"log": "%s", "echo": true, "echo_nonce": true, "echo_delay_ms": 20}' "$TMP/log.jsonl" > "$TMP/scen.json"
start_mock "$TMP/scen.json"

mkdir -p "$TMP/skills/J/Echo"
printf 'item {{$input}}' > "$TMP/skills/J/Echo/skprompt.txt"
printf '{"schema": 1, "type": "completion", "uncertainty": false, "execution_settings": {"default": {"temperature": 0.9}}}\n' \
  > "$TMP/skills/J/Echo/config.json"
N=2000
{ echo "id,input"; for i in $(seq 1 $N); do echo "$i,$i"; done; } > "$TMP/rows.csv"
for i in $(seq 1 $N); do printf '{"result":"item %d"}\n' "$i"; done > "$TMP/want"
strip() { sed 's/ #[0-9]*"}$/"}/' "$1"; }

# skein through a wrapper that notes each start, so the test knows how
# many times Dask ran each partition (its journal's name)
printf '#!/bin/sh\necho "$*" >> "%s/starts"\nexec "%s" "$@"\n' "$TMP" "$BIN" > "$TMP/skein"
chmod +x "$TMP/skein"

# runs the driver; with "kill", kill -9 the worker process that runs a
# partition once the server has seen 600 requests
run() { # out, journal dir or "", kill or ""
  local jd=()
  [ -n "$2" ] && jd=(--journal-dir "$2")
  : > "$TMP/log.jsonl"
  : > "$TMP/starts"
  "$PY" scripts/dask_map.py J.Echo "$TMP/rows.csv" "$1" --rows 250 --concurrency 8 \
    --workers 2 --skein "$TMP/skein" "${jd[@]}" -- --model "$MODEL" --skills "$TMP/skills" 2> "$TMP/err" &
  driver=$!
  EXTRA_PIDS=$driver
  KILLED=
  if [ -n "$3" ]; then
    for _ in $(seq 1200); do [ "$(requests)" -ge 600 ] && break; sleep 0.05; done
    local sk worker
    # this test's skein (its own skills folder), never another test's
    sk=$(pgrep -f -n -- "--skills $TMP/skills .*--jsonl --concurrency 8")
    worker=$(ps -o ppid= -p "$sk" 2>/dev/null | tr -d ' ')
    if [ -n "$worker" ] && kill -9 "$worker"; then KILLED=$worker; fi
  fi
  wait "$driver"
  RC=$?
  EXTRA_PIDS=
}

run "$TMP/out" "$TMP/journals" kill
expect_eq "killed worker, journals: exit" "$RC" 0
[ -n "$KILLED" ] && ok || bad "no worker process was killed"
expect_eq "killed worker, journals: every row once, in order" \
  "$(strip "$TMP/out" | cmp -s - "$TMP/want" && echo same)" same
paid=$(($(requests) - N))
echo "dask: killed worker $KILLED; $(requests) requests for $N rows, $paid paid twice (journal per partition)"
# Only calls in flight in a run of a partition that did not finish may
# repeat: at most 8 (its --concurrency) for each such run.  That is the
# killed worker's partition, and any partition Dask ran twice: it runs a
# task at least once, and when a worker dies it may start a task again
# that was already running elsewhere.
repeats=$(sed -nE 's/.*content\\":\\"item ([0-9]+)\\".*/\1/p' "$TMP/log.jsonl" | sort -n | uniq -c \
  | awk '$1 > 1 { r[int(($2 - 1) / 250)] += $1 - 1 } END { for (p in r) print p, r[p] }')
over=0 reruns=0
while read -r part n; do
  [ -n "$part" ] || continue
  runs=$(grep -c -- "part-$part.db " "$TMP/starts")
  reruns=$((reruns + runs - 1))
  [ "$n" -le $(((runs - 1) * 8)) ] || { over=1; echo "partition $part: $n repeated over $runs runs" >&2; }
done <<< "$repeats"
echo "dask: repeats by partition: $(echo $repeats) (partition, calls); runs past the first: $reruns"
[ "$paid" -ge 0 ] && [ "$over" -eq 0 ] && ok || bad "$paid calls paid twice with journals: more than the calls in flight"
[ "$(grep -c -- '--journal' "$TMP/starts")" -gt 8 ] && ok || bad "no partition was run again after the kill"
# each row's answer is the server's last for it: no answered call repeated
last_answers "$TMP/out" && ok || bad "a row's answer is not the server's last for it"
ls "$TMP" | grep -q '^\.dask_map-' && bad "a temporary output was left behind" || ok

# the same without journals, for comparison: the killed partition runs again
run "$TMP/out2" "" kill
expect_eq "killed worker, no journal: exit" "$RC" 0
expect_eq "killed worker, no journal: every row once, in order" \
  "$(strip "$TMP/out2" | cmp -s - "$TMP/want" && echo same)" same
echo "dask: without journals, $(($(requests) - N)) calls paid twice"

# a bad function name fails the run with skein's message, and no output
"$PY" scripts/dask_map.py J.Nope "$TMP/rows.csv" "$TMP/out3" --rows 1000 --retries 0 --skein "$BIN" \
  -- --model "$MODEL" --skills "$TMP/skills" 2> "$TMP/err3"
[ "$?" -ne 0 ] && ok || bad "a bad function name succeeded"
grep -q 'unknown function' "$TMP/err3" && ok || bad "bad function: $(tail -3 "$TMP/err3")"
[ ! -e "$TMP/out3" ] && ok || bad "a failed run left an output"

finish
