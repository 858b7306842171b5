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

# runs the driver; with "kill", kill -9 the worker process that runs a
# partition once the server has seen 600 requests
run() { # out, journal dir or "", kill or ""
  local jd=()
  [ -n "$2" ] && jd=(--journal-dir "$2")
  : > "$TMP/log.jsonl"
  "$PY" scripts/dask_map.py J.Echo "$TMP/rows.csv" "$1" --rows 250 --concurrency 8 \
    --workers 2 --skein "$BIN" "${jd[@]}" -- --model "$MODEL" --skills "$TMP/skills" 2> "$TMP/err" &
  driver=$!
  EXTRA_PIDS=$driver
  KILLED=
  if [ -n "$3" ]; then
    for _ in $(seq 1200); do [ "$(requests)" -ge 600 ] && break; sleep 0.05; done
    local sk worker
    # this run's skein only (its skills folder is in $TMP): another test's
    # `invoke --jsonl --concurrency 8` is not ours to kill, nor its parent
    sk=$(pgrep -f -n -- "--skills $TMP/skills.*--jsonl --concurrency 8")
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
# only the killed partition's calls in flight (8) may repeat
[ "$paid" -ge 0 ] && [ "$paid" -le 8 ] && ok || bad "$paid calls paid twice with journals"
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
