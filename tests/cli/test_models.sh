#!/usr/bin/env bash
# Names for models: the config file's "aliases" (and its service ids) work
# wherever a model is named (-m, --model, SKEIN_MODEL, the file's own
# "model", a function's config.json, a policy's cascade, Lua), and `skein
# models` lists the default model, the names and the connector kinds.
set -u
cd "$(dirname "$0")" || exit 1
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
FX=$(pwd)/fixtures
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE=off SKEIN_HISTORY=off

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
run() { "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }

# two scripted models that say who they are
printf '{"default": "from A"}\n' >"$TMP/a.json"
printf '{"default": "from B"}\n' >"$TMP/b.json"
cat >"$TMP/config.json" <<EOF
{
  "model": "first",
  "aliases": {
    "first": "scripted:$TMP/a.json",
    "second": "scripted:$TMP/b.json",
    "remote": "openai:gpt-4o@http://bob:Pw9xK3vB7nQ2@127.0.0.1:9/v1?api-key=Qz7Lm2Vx9Rt4&v=1",
    "odd": "nosuchkind:m"
  },
  "services": { "svc": "scripted:$TMP/b.json" }
}
EOF
mkdir -p "$TMP/skills/M/Named" "$TMP/skills/M/Cascade" "$TMP/skills/M/Plain"
printf 'Say {{$input}}' >"$TMP/skills/M/Named/skprompt.txt"
printf '{"model": "second"}' >"$TMP/skills/M/Named/config.json"
printf 'Say {{$input}}' >"$TMP/skills/M/Cascade/skprompt.txt"
printf '{"models": ["second"], "uncertainty": false}' >"$TMP/skills/M/Cascade/config.json"
printf 'Say {{$input}}' >"$TMP/skills/M/Plain/skprompt.txt"
SK=("$BIN" --quiet --skills "$TMP/skills")
export SKEIN_CONFIG="$TMP/config.json"

# ---- a name wherever a model is named
run "${SK[@]}" invoke M.Plain --input x
expect_eq "the config's model by name" "$out" "from A"
run "${SK[@]}" -m second invoke M.Plain --input x
expect_eq "-m NAME" "$out" "from B"
run "${SK[@]}" --model second invoke M.Plain --input x
expect_eq "--model NAME" "$out" "from B"
run "${SK[@]}" --model=svc invoke M.Plain --input x
expect_eq "--model=SERVICE" "$out" "from B"
out=$(SKEIN_MODEL=second "${SK[@]}" invoke M.Plain --input x 2>/dev/null)
expect_eq "SKEIN_MODEL=NAME" "$out" "from B"
run "${SK[@]}" invoke M.Named --input x
expect_eq "a function's config.json model by name" "$out" "from B"
run "${SK[@]}" invoke M.Cascade --input x
expect_eq "a policy's models by name" "$out" "from B"
run "${SK[@]}" -m "scripted:$TMP/b.json" invoke M.Plain --input x
expect_eq "a spec is still a spec" "$out" "from B"
printf 'local skein = require("skein")\nskein.set_model("second")\nprint(skein.model())\nprint(skein.invoke("M.Plain", "x"))\n' >"$TMP/set.lua"
run "${SK[@]}" run "$TMP/set.lua"
expect_eq "Lua set_model(NAME)" "$out" "scripted:$TMP/b.json
from B"

# ---- mistakes
run "${SK[@]}" -m secnd invoke M.Plain --input x
expect_eq "unknown name rc" "$rc" 2
expect_in "unknown name says so" "$err" 'unknown model \"secnd\"'
expect_in "unknown name lists the known ones" "$err" "known: svc, first, second, remote, odd"
printf '{"aliases": {"a:b": "scripted:x.json"}}' >"$TMP/colon.json"
out=$(SKEIN_CONFIG="$TMP/colon.json" "$BIN" models 2>&1); rc=$?
expect_eq "a name with ':' rc" "$rc" 3
expect_in "a name with ':' names the file" "$out" "$TMP/colon.json"
printf '{"aliases": {"x": "gpt-4o"}}' >"$TMP/nospec.json"
out=$(SKEIN_CONFIG="$TMP/nospec.json" "$BIN" models 2>&1); rc=$?
expect_eq "an alias that is no spec rc" "$rc" 3
expect_in "an alias that is no spec says so" "$out" 'alias x: invalid model \"gpt-4o\"'
printf '{"aliases": ["x"]}' >"$TMP/arr.json"
out=$(SKEIN_CONFIG="$TMP/arr.json" "$BIN" models 2>&1); rc=$?
expect_eq "aliases not an object rc" "$rc" 3

# ---- skein models
run "$BIN" models
expect_eq "models rc" "$rc" 0
expect_in "models: the default, resolved" "$out" "default model: scripted:$TMP/a.json (scripted)"
expect_in "models: an alias" "$out" "second"
expect_in "models: a service" "$out" "svc"
expect_in "models: alias or service" "$out" "service"
expect_in "models: kinds" "$out" "connector kinds: openai, openai+FLAVOR, ollama, anthropic, scripted, azure"
expect_in "models: a kind with no connector" "$out" "(no connector of this kind)"
expect_not_in "models: no password" "$out" "Pw9xK3vB7nQ2"
expect_not_in "models: no key in the URL" "$out" "Qz7Lm2Vx9Rt4"
expect_in "models: the masked URL" "$out" "http://bob:***@127.0.0.1:9/v1?api-key=***&v=1"
run "$BIN" models --json
expect_eq "models --json rc" "$rc" 0
"$BIN" run "$FX/json_check.lua" <"$TMP/out" >/dev/null && ok || bad "models --json: invalid JSON: $out"
expect_in "models --json names" "$out" '{"name":"second","spec":"scripted:'"$TMP"'/b.json","kind":"scripted","from":"aliases","known_kind":true}'
expect_in "models --json kinds" "$out" '"kinds":["openai","openai+","ollama","anthropic","scripted","azure"]'
expect_not_in "models --json: no password" "$out" "Pw9xK3vB7nQ2"
out=$(SKEIN_CONFIG=/nonexistent "$BIN" models)
expect_in "models without a config" "$out" "default model: none"
out=$(SKEIN_CONFIG=/nonexistent "$BIN" models --json)
expect_in "models --json without a config" "$out" '{"default":null,"names":[],'
run "$BIN" models extra
expect_eq "models: extra argument rc" "$rc" 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
