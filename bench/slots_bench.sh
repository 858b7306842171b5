#!/usr/bin/env bash
# Prefix-aware slot routing on the real llama-server: a row-operator
# workload (ROWS calls, CONC in flight, each prompt a long fixed system
# prompt and a short row) run by skein without routing (the server picks
# slots) and with it (--option slots=4), alternately, each run on a fresh
# `llama-server -np 4` serving stories260K.  Two workloads: every row on
# one function (one shared prefix), and rows spread over four functions
# with four different prefixes.  Reports throughput and what the server
# says of its prompt cache (/metrics: prompt tokens evaluated, prompt
# tokens reused from a slot's cache).  Prints a Markdown section.
#   bench/slots_bench.sh [BUILD_DIR]
# Environment: ROWS (default 400), CONC (16), REPS (3), PREFIX_TOKENS
# (the target prefix length, default: what fits the slot's context).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SKEIN=$(cd "$BUILD" && pwd)/skein
ROWS=${ROWS:-400} CONC=${CONC:-16} REPS=${REPS:-3} NP=4
MODEL_FILE=${SKEIN_TEST_MODEL:-$(pwd)/../shared/models/stories260K.gguf}
[ -f "$MODEL_FILE" ] || { echo "model not found: $MODEL_FILE (set SKEIN_TEST_MODEL)" >&2; exit 1; }
# Built once per machine into the cache (waits on its lock if another
# build is under way).
LLAMA=$(tests/local-model/setup path)
TMP=$(mktemp -d)
SERVER=
stop_server() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  SERVER=
}
trap 'stop_server; rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_CACHE=off SKEIN_HISTORY=off SKEIN_QUIET=1
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start_server() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    "$LLAMA" -m "$MODEL_FILE" --host 127.0.0.1 --port "$port" -np $NP -c "$CTX" \
      -t 2 --metrics --offline --no-webui </dev/null >"$TMP/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 300); do
      curl -fsS -m 2 "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { PORT=$port; return 0; }
      kill -0 "$SERVER" 2>/dev/null || break
      sleep 0.1
    done
    stop_server
  done
  echo "llama-server did not start; log:" >&2
  tail -20 "$TMP/server.log" >&2
  exit 1
}
metric() { # name: the counter's value on the running server
  curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="llamacpp:$1" '$1 == m {print $2}'
}

# The slot context: the model's training context (the server caps a slot
# there), four slots' worth.
CTX=$((NP * 512))
start_server
N_CTX_TRAIN=$(curl -fsS "http://127.0.0.1:$PORT/v1/models" |
  sed -nE 's/.*"n_ctx_train":([0-9]+).*/\1/p')
stop_server
N_CTX_TRAIN=${N_CTX_TRAIN:-512}
CTX=$((NP * N_CTX_TRAIN))
start_server
SLOT_CTX=$(curl -fsS "http://127.0.0.1:$PORT/props" | sed -nE 's/.*"n_ctx":([0-9]+).*/\1/p')
VERSION=$(cat "$(dirname "$LLAMA")/llama.cpp-version" 2>/dev/null || echo unknown)

# Four prefixes of about PREFIX_TOKENS tokens (default 1,500, the issue's
# figure, or less when a slot holds less: room is left for the row, the
# chat template and the answer), grown one sentence at a time and
# measured with the server's own tokenizer.
PREFIX_TOKENS=${PREFIX_TOKENS:-1500}
[ "$PREFIX_TOKENS" -le $((SLOT_CTX - 96)) ] || PREFIX_TOKENS=$((SLOT_CTX - 96))
tokens() { # text on stdin: its token count
  python3 -c 'import json,sys; print(json.dumps({"content": sys.stdin.read()}))' |
    curl -fsS "http://127.0.0.1:$PORT/tokenize" -H 'Content-Type: application/json' -d @- |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tokens"]))'
}
sentences=("The little dog ran to the park and saw a big red ball."
  "Lily liked to play with her cat in the warm sun."
  "One day, Tom found a shiny stone near the old tree."
  "The bird sang a happy song and flew over the blue sea."
  "Mom said it was time to eat, so they went home."
  "Ben was sad because his toy car was broken."
  "They all smiled and said thank you to the kind man."
  "The sky was dark and the rain fell on the roof.")
# Each sentence's tokens, counted once; a prefix takes sentences while
# their sum stays under the target (the final count is the server's).
declare -a stoks
for i in 0 1 2 3 4 5 6 7; do stoks[i]=$(printf '%s ' "${sentences[i]}" | tokens); done
S="$TMP/skills"
for f in 1 2 3 4; do
  mkdir -p "$S/Rows/F$f"
  text="Task $f. Read the row and answer in one word. "
  i=$f sum=16
  while [ $((sum + stoks[i % 8])) -le "$PREFIX_TOKENS" ]; do
    text="$text${sentences[i % 8]} "
    sum=$((sum + stoks[i % 8]))
    i=$((i + 3))
  done
  printf '%s' "$text" > "$TMP/prefix$f.txt"
  printf '<message role="system">%s</message>\n<message role="user">{{$input}}</message>\n' \
    "$text" > "$S/Rows/F$f/skprompt.txt"
  printf '{"schema": 1, "type": "completion", "uncertainty": false, "truncated": "accept", "execution_settings": {"default": {"max_tokens": 4, "temperature": 0}}}\n' \
    > "$S/Rows/F$f/config.json"
done
PTOK=$(tokens < "$TMP/prefix1.txt")
stop_server

# One run on a fresh server: R_WALL seconds, R_EVAL prompt tokens
# evaluated and R_CACHED reused (the server's counters).
run() { # funcs slots
  start_server
  local t0 t1 out
  t0=$(now)
  out=$(FUNCS=$1 ROWS=$ROWS CONC=$CONC "$SKEIN" --skills "$S" \
    -m "openai+llamacpp:stories@http://127.0.0.1:$PORT/v1" --option "slots=$2" \
    run bench/slots_bench.lua)
  t1=$(now)
  case "$out" in *"calls $ROWS "*"failures 0"*) ;; *) echo "run failed: $out" >&2; exit 1 ;; esac
  R_WALL=$(awk "BEGIN { print $t1 - $t0 }")
  R_EVAL=$(metric prompt_tokens_total)
  R_CACHED=$(metric prompt_tokens_cached_total)
  stop_server
}

declare -A wall evald cached
for funcs in 1 4; do
  for rep in $(seq "$REPS"); do
    for slots in 0 $NP; do
      run "$funcs" "$slots"
      wall[$funcs.$slots]+="$R_WALL "
      evald[$funcs.$slots]+="$R_EVAL "
      cached[$funcs.$slots]+="$R_CACHED "
    done
  done
done
med() { printf '%s\n' $1 | median; }

cat <<MD

## Prefix-aware slot routing on llama-server ($(date +%Y-%m-%d), $(nproc) cores, $(uname -m))

Command: \`bench/slots_bench.sh $BUILD\` (\`make bench\`).  llama-server
($VERSION) with \`-np $NP -c $CTX\` ($SLOT_CTX tokens per slot: stories260K
was trained on $N_CTX_TRAIN, so that is the most a slot holds), a fresh
server per run.  $ROWS calls through \`skein run bench/slots_bench.lua\`,
$CONC in flight on one kernel; each prompt is a fixed system prompt of
$PTOK tokens (the issue asks for about 1,500; less where a slot holds
less), then a one-line row; 4 tokens of answer.  Medians of $REPS runs, the two modes alternating.  Prompt tokens are the server's
own counters (\`/metrics\`): evaluated, and reused from a slot's cache.

| workload | skein | wall time | calls/s | prompt tokens evaluated | reused from cache | speed-up |
| --- | --- | --- | --- | --- | --- | --- |
MD
for funcs in 1 4; do
  base=$(med "${wall[$funcs.0]}")
  for slots in 0 $NP; do
    w=$(med "${wall[$funcs.$slots]}")
    label=$([ "$slots" = 0 ] && echo "the server picks slots" || echo "\`--option slots=$NP\`")
    what=$([ "$funcs" = 1 ] && echo "one function (one prefix)" || echo "four functions, rows interleaved")
    printf '| %s | %s | %.2f s | %.1f | %s | %s | %.2fx |\n' "$what" "$label" "$w" \
      "$(awk "BEGIN { print $ROWS / $w }")" "$(med "${evald[$funcs.$slots]}")" \
      "$(med "${cached[$funcs.$slots]}")" "$(awk "BEGIN { print $base / $w }")"
  done
done
