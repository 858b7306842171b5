#!/usr/bin/env bash
# `skein eval` and `skein calibrate` as a user runs them: a labelled JSONL
# file, a scripted model whose answers and logprobs come from a known
# distribution (fixtures/eval/make_data.lua), the table, --json, the SVG
# plot, a calibration written into the skill's config.json and then acting
# on the next call; the refusals; and the real Semantic Kernel prompts
# with their ordinary answers next to replies that ask the user back.
set -u
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
cd "$(dirname "$0")" || exit 1
FX=fixtures
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE="$TMP/cache.db"

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

LUA=$(command -v lua5.4 || command -v lua)
cp -r "$FX/eval/Label" "$TMP/"
"$LUA" "$FX/eval/make_data.lua" "$TMP" 1000 7 || { echo "FAIL: make_data" >&2; exit 1; }
SK=("$BIN" --quiet --model "scripted:$TMP/model.json" --skills "$TMP")

# ---- eval: the table
run "${SK[@]}" eval Label.Pick --data "$TMP/data.jsonl" --plot "$TMP/curve.svg"
expect_eq "eval rc" "$rc" 0
expect_in "eval names the set" "$out" "Label.Pick over 1000 examples"
expect_in "eval accuracy" "$out" "accuracy"
expect_in "eval calls" "$out" "calls          1000 (0 more from the cache)"
expect_in "eval risk-coverage header" "$out" "logprob    threshold  coverage  risk"
# at threshold 0 everything is answered; the error rate is the model's
expect_in "eval full coverage row" "$out" "0.00     1.000"
svg=$(cat "$TMP/curve.svg" 2>/dev/null)
expect_in "plot is SVG" "$svg" "<svg"
expect_in "plot has a curve" "$svg" "<polyline"
expect_in "plot names the signal" "$svg" "logprob"

# ---- eval --json: one object a program can read
run "${SK[@]}" eval Label.Pick --data "$TMP/data.jsonl" --json
expect_eq "eval --json rc" "$rc" 0
expect_in "json n" "$out" '"examples":1000'
expect_in "json curve" "$out" '"signals":{"logprob":[{"threshold":0,"coverage":1,'
expect_in "json signal" "$out" '"logprob"'
# the second run came from the cache, and says so
expect_in "json cache hits" "$out" '"calls":0,"cache_hits":1000'

# ---- calibrate: fits, holds on held-out data, writes the config
cfg="$TMP/Label/Pick/config.json"
run "${SK[@]}" calibrate Label.Pick --data "$TMP/data.jsonl" --alpha 0.1 --test 0.3 --seed 1 --dry-run
expect_eq "dry-run rc" "$rc" 0
expect_in "dry-run says so" "$out" "not written (--dry-run)"
expect_not_in "dry-run leaves the config" "$(cat "$cfg")" "calibrated"
run "${SK[@]}" calibrate Label.Pick --data "$TMP/data.jsonl" --alpha 0.1 --test 0.3 --seed 1
expect_eq "calibrate rc" "$rc" 0
expect_in "calibrate states the bound" "$out" "bound 0.1, with probability 0.90"
expect_in "calibrate checks held-out data" "$out" "the bound held"
expect_in "calibrate writes" "$out" "written to"
conf=$(cat "$cfg")
expect_in "config signal" "$conf" '"signal": "logprob"'
expect_in "config alpha" "$conf" '"alpha": 0.1'
expect_in "config n" "$conf" '"n": 700'
expect_in "config date" "$conf" '"date": "20'
expect_in "config keeps the rest" "$conf" '"choice": ["billing", "bug", "praise"]'
expect_not_in "config has no tabs" "$conf" $'\t'
th=$(sed -n 's/.*"threshold": \([0-9.]*\).*/\1/p' "$cfg")
[ -n "$th" ] && ok || bad "no threshold in $conf"
# a YAML prompt is the user's own text: calibrate shows what to add and
# leaves the file as it is
cat >"$TMP/Label/pick.yaml" <<'YAML'
# the same function, as a YAML prompt
name: PickYaml
description: Sorts a message into billing, bug or praise
template: |
  Sort the message into one label: billing, bug or praise.
  Message: {{$input}}
  Label:
execution_settings:
  default: {max_tokens: 4, temperature: 0}
output: {choice: [billing, bug, praise]}
YAML
cp "$TMP/Label/pick.yaml" "$TMP/pick.before"
run "${SK[@]}" calibrate Label.PickYaml --data "$TMP/data.jsonl" --alpha 0.1 --seed 1
expect_eq "calibrate a YAML prompt rc" "$rc" 0
expect_in "calibrate a YAML prompt: shown, not written" "$out" "not written (a YAML prompt"
expect_in "calibrate a YAML prompt: the calibration" "$out" '"signal": "logprob"'
cmp -s "$TMP/Label/pick.yaml" "$TMP/pick.before" && ok || bad "calibrate rewrote the YAML prompt"
rm -f "$TMP/Label/pick.yaml"

# the calibrated skill raises below the threshold and answers above it
lo=$(grep -n '"logprobs": \[\["[a-z]*", -[3-9]\.' "$TMP/model.json" | head -1 | sed 's/.*msg-\([0-9]*\).*/\1/')
hi=$(grep -n '"logprobs": \[\["[a-z]*", -0\.00' "$TMP/model.json" | head -1 | sed 's/.*msg-\([0-9]*\).*/\1/')
run "${SK[@]}" invoke Label.Pick --input "msg-$lo"
expect_eq "low confidence rc" "$rc" 7
expect_in "low confidence reason" "$err" "calibrated: logprob"
expect_in "low confidence names the bound" "$err" "(alpha 0.10)"
run "${SK[@]}" invoke Label.Pick --input "msg-$hi"
expect_eq "high confidence rc" "$rc" 0
[ -n "$out" ] && ok || bad "high confidence printed nothing"
# the same call from the cache is judged again: still raised
run "${SK[@]}" invoke Label.Pick --input "msg-$lo"
expect_eq "low confidence from the cache rc" "$rc" 7

# ---- refusals: too few examples, bad data, bad options
head -5 "$TMP/data.jsonl" >"$TMP/few.jsonl"
run "${SK[@]}" calibrate Label.Pick --data "$TMP/few.jsonl" --alpha 0.1
expect_eq "too few rc" "$rc" 11
expect_in "too few says how many" "$err" "are too few for alpha 0.1"
expect_in "too few gives the minimum" "$err" "at least"
run "${SK[@]}" calibrate Label.Pick --data "$TMP/few.jsonl" --alpha 0.001
expect_eq "tiny alpha rc" "$rc" 11
{ head -3 "$TMP/data.jsonl"; echo '{"input": "msg-00003", "expected": }'; } >"$TMP/broken.jsonl"
run "${SK[@]}" eval Label.Pick --data "$TMP/broken.jsonl"
expect_eq "bad line rc" "$rc" 11
expect_in "bad line position" "$err" "broken.jsonl:4:"
run "${SK[@]}" eval Label.Pick --data "$TMP/nonexistent.jsonl"
[ "$rc" -ne 0 ] && ok || bad "missing data file exited 0"
expect_in "missing file named" "$err" "nonexistent.jsonl"
run "${SK[@]}" calibrate Label.Pick --data "$TMP/data.jsonl" --alpha 1.5
expect_eq "bad alpha rc" "$rc" 2
run "${SK[@]}" calibrate Label.Pick --data "$TMP/data.jsonl" --signal nonsense
expect_eq "bad signal rc" "$rc" 2
run "${SK[@]}" eval No.Such --data "$TMP/data.jsonl"
expect_eq "unknown function rc" "$rc" 6

# ---- the real Semantic Kernel prompts, with ordinary answers
cat >"$TMP/sk.json" <<'EOF'
{ "rules": [
  { "match": "(?i)joke", "reply": "Why did the T. rex never clap? I am not sure, but I think his arms were too short." },
  { "match": "(?i)brainstorm|ideas", "reply": "1. It depends on what you mean by fast: sprint intervals for speed.\n2. Hill repeats.\n3. Tempo runs." },
  { "match": "(?i)translate", "reply": "I'm not sure what you mean... could you clarify which language you want?" }
] }
EOF
SKS=("$BIN" --quiet --model "scripted:$TMP/sk.json" --skills ../data/sk_samples)
run "${SKS[@]}" invoke FunPlugin.Joke --input "dinosaurs"
expect_eq "Joke rc" "$rc" 0
expect_in "Joke output" "$out" "arms were too short"
run "${SKS[@]}" invoke WriterSkill.Brainstorm --input "getting faster at running"
expect_eq "Brainstorm rc" "$rc" 0
expect_in "Brainstorm output" "$out" "Hill repeats"
# a built-in skill whose reply asks back instead of translating
run "${SKS[@]}" invoke Writer.Translate --input "good morning" --var language=
expect_eq "Translate asks back rc" "$rc" 7
expect_in "Translate asks back reason" "$err" "asks back"
expect_in "Translate question" "$err" "could you clarify which language you want?"
expect_eq "Translate prints nothing" "$out" ""

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
