#!/usr/bin/env bash
# Loading Semantic Kernel material as a user meets it: one bad plugin fails
# only itself (./skills included) and every command keeps working, `skills
# --check` lists every problem at once.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh
DATA=$(cd ../data && pwd)

# run CMD...: sets out, err, rc (stdin from /dev/null unless IN is set)
run() { "$@" >"$TMP/out" 2>"$TMP/err" <"${IN:-/dev/null}"; rc=$?; out=$(cat "$TMP/out"); err=$(cat "$TMP/err"); }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
expect_not_in() { case "$2" in *"$3"*) bad "$1: [$2] has [$3]" ;; *) ok ;; esac; }
# count_lines TEXT NEEDLE: how many lines of TEXT hold NEEDLE
count_lines() { printf '%s\n' "$1" | grep -cF -- "$2"; }

# ---- a scratch project whose ./skills has one broken plugin of each kind
proj="$TMP/proj"
mkdir -p "$proj/skills/Good/Hello" "$proj/skills/BadJson/Fn" "$proj/skills/BadTpl/Fn" \
         "$proj/skills/BadLua" "$proj/skills/Mixed/Fine" "$proj/skills/Mixed/Hot"
printf 'Hello {{$input}}!' > "$proj/skills/Good/Hello/skprompt.txt"
printf 'x' > "$proj/skills/BadJson/Fn/skprompt.txt"
printf '{\n  "schema": 1,\n  "description": "broken"\n  "type": "completion"\n}\n' \
    > "$proj/skills/BadJson/Fn/config.json"
printf 'line one\nsay {{$a-b}}\n' > "$proj/skills/BadTpl/Fn/skprompt.txt"
printf 'return {\n  Up = function(a) return a.input:upper() end\n  Down = 1,\n}\n' \
    > "$proj/skills/BadLua/skill.lua"
printf 'fine {{$input}}' > "$proj/skills/Mixed/Fine/skprompt.txt"
printf 'hot' > "$proj/skills/Mixed/Hot/skprompt.txt"
printf '{"completion": {"temperature": 7}}' > "$proj/skills/Mixed/Hot/config.json"

cd "$proj" || exit 1
# every command keeps working, and says what it skipped, where
IN=/dev/null run "$BIN" invoke Text.Upper --input ok
expect_eq "a broken ./skills does not stop invoke" "$rc" 0
expect_eq "invoke still answers" "$out" "OK"
expect_in "warning names config.json:line:col" "$err" "skills/BadJson/Fn/config.json:4:3:"
expect_in "warning names skprompt.txt:line:col" "$err" "skills/BadTpl/Fn/skprompt.txt:2:7:"
expect_in "warning names skill.lua:line" "$err" "skills/BadLua/skill.lua:3:"
expect_in "warning names the bad value" "$err" "skills/Mixed/Hot/config.json:1:32:"
expect_in "warning says what was skipped" "$err" "skipped Mixed.Hot"
expect_in "a warning is a warning" "$err" "skein: warning: "
IN=/dev/null run "$BIN" --quiet skills
expect_eq "skills works" "$rc" 0
expect_in "the good plugin loads" "$out" "Good.Hello"
expect_in "the good function of a half-broken plugin loads" "$out" "Mixed.Fine"
expect_not_in "the bad function is not listed" "$out" "Mixed.Hot"
expect_eq "--quiet silences the warnings" "$err" ""
printf 'World' > "$TMP/in"
IN="$TMP/in" run "$BIN" --quiet render --no-calls -
expect_eq "render output" "$out" "World"
expect_eq "render works" "$rc" 0

# calling a skipped function says why, with the class of its problem
IN=/dev/null run "$BIN" --quiet invoke Mixed.Hot --input x
expect_eq "a skipped function: the config exit code" "$rc" 3
expect_in "a skipped function: why" "$err" "Mixed.Hot did not load: skills/Mixed/Hot/config.json:1:32:"
IN=/dev/null run "$BIN" --quiet invoke BadLua.Up --input x
expect_eq "a skipped skill.lua: the script exit code" "$rc" 5

# skills --check lists every problem at once and exits 3
IN=/dev/null run "$BIN" skills --check
expect_eq "--check rc with problems" "$rc" 3
expect_eq "--check: no warnings on stderr (the list is the output)" "$err" ""
expect_in "--check lists the JSON problem" "$out" "skills/BadJson/Fn/config.json:4:3:"
expect_in "--check lists the template problem" "$out" "skills/BadTpl/Fn/skprompt.txt:2:7:"
expect_in "--check lists the Lua problem" "$out" "skills/BadLua/skill.lua:3:"
expect_in "--check lists the bad value" "$out" "skills/Mixed/Hot/config.json:1:32:"
expect_in "--check counts them" "$out" "4 problems;"
expect_eq "--check: one line per problem" "$(count_lines "$out" "skipped ")" 4
IN=/dev/null run "$BIN" --check skills
expect_eq "--check before the command" "$rc" 3
IN=/dev/null run "$BIN" skills --check --json
expect_eq "--check --json rc" "$rc" 3
expect_in "--check --json: file" "$out" '"file":"skills/Mixed/Hot/config.json","line":1,"col":32,"kind":"config","skipped":"Mixed.Hot"'
expect_in "--check --json: a Lua line without a column" "$out" '"line":3,"col":0,"kind":"script","skipped":"BadLua"'
cd - >/dev/null || exit 1

IN=/dev/null run "$BIN" skills --check
expect_eq "--check with no problems: rc" "$rc" 0
expect_in "--check with no problems says so" "$out" "no problems;"
IN=/dev/null run "$BIN" skills --check --skills "$DATA/sk_samples"
expect_eq "--check of SK's samples: rc" "$rc" 0
IN=/dev/null run "$BIN" --skills "$DATA/bad_skills" skills --check
expect_eq "--check of a --skills folder: rc" "$rc" 3
expect_in "--check of a --skills folder: its problem" "$out" "bad_skills/BadConfig/Hot/config.json:4:20:"
# ---- template formats skein does not run: a warning naming the file and
# the format, that function skipped, never an unrelated error
hb="$TMP/formats/Hbs"
mkdir -p "$hb/Greet" "$hb/Plain" "$hb/Odd"
printf 'Hello {{input}}, {{#if name}}{{name}}{{/if}}' > "$hb/Greet/skprompt.txt"
printf '{\n  "name": "Greet",\n  "template_format": "handlebars"\n}\n' > "$hb/Greet/config.json"
printf 'Plain {{$input}}' > "$hb/Plain/skprompt.txt"
printf '{"template_format": "semantic-kernel"}' > "$hb/Plain/config.json"
printf '{{ input }}' > "$hb/Odd/skprompt.txt"
printf '{"template_format": "mustache"}' > "$hb/Odd/config.json"
IN=/dev/null run "$BIN" --skills "$TMP/formats" invoke Text.Upper --input ok
expect_eq "an unsupported format does not stop a command" "$rc" 0
expect_in "handlebars: the file, line, col and format" "$err" \
    "$hb/Greet/config.json:3:22: template_format 'handlebars' is not supported"
expect_in "handlebars: skipped" "$err" "skipped Hbs.Greet"
expect_in "an unknown format is named too" "$err" "unknown template_format 'mustache'"
expect_not_in "never an unrelated error" "$err" "unknown function"
IN=/dev/null run "$BIN" --quiet --skills "$TMP/formats" skills
expect_in "semantic-kernel loads" "$out" "Hbs.Plain"
expect_not_in "handlebars is not listed" "$out" "Hbs.Greet"
IN=/dev/null run "$BIN" --quiet --skills "$TMP/formats" invoke Hbs.Greet --input x
expect_eq "invoking a handlebars function: config exit code" "$rc" 3
expect_in "invoking a handlebars function says why" "$err" "template_format 'handlebars' is not supported"
IN=/dev/null run "$BIN" --skills "$TMP/formats" skills --check --json
expect_in "--check reports the format" "$out" '"line":3,"col":22,"kind":"config","skipped":"Hbs.Greet"'

# ---- YAML prompt functions beside skprompt.txt folders
yp="$TMP/yaml/Story"
mkdir -p "$yp/Folder"
printf 'folder {{$input}}' > "$yp/Folder/skprompt.txt"
# SK's own sample, byte order mark and all (see tests/data/sk_corpus)
cp "$DATA/sk_corpus/microsoft+semantic-kernel/dotnet/samples/Concepts/Resources/GenerateStory.yaml" "$yp/"
cat > "$yp/poem.yml" <<'YAML'
# no name: the file names it
description: A short poem.
template: |
  Write a {{$form}} about {{$input}}.
input_variables:
  - name: input
  - name: form
    default: haiku
execution_settings:
  default:
    max_tokens: 0x40
    stop_sequences: ["\n\n"]
YAML
cat > "$yp/broken.yaml" <<'YAML'
name: Broken
template: |
  fine so far
 description: the indentation is wrong
YAML
cat > "$yp/j2.yaml" <<'YAML'
name: Jinja
template_format: jinja2
template: "Hello {{ name }}"
YAML
cat > "$yp/hot.yaml" <<'YAML'
name: Hot
template: x
execution_settings:
  default:
    temperature: hot
YAML
IN=/dev/null run "$BIN" --skills "$TMP/yaml" skills --json
expect_eq "YAML skills rc" "$rc" 0
expect_in "SK's YAML sample loads" "$out" '"full_name":"Story.GenerateStory"'
expect_in "its input variables are its parameters" "$out" \
    '{"name":"topic","description":"The topic of the story.","required":true}'
expect_in "a YAML without name is named by its file" "$out" '"full_name":"Story.poem"'
expect_in "its path is the YAML file" "$out" "Story/poem.yml\""
expect_in "the folder function loads beside them" "$out" '"full_name":"Story.Folder"'
expect_in "malformed YAML: file:line:col" "$err" "$yp/broken.yaml:4:2: did not find expected key"
expect_in "a bad value in YAML: its line and column" "$err" "$yp/hot.yaml:5:18: 'temperature' must be a number"
expect_in "jinja2 in YAML: the file and the format" "$err" "$yp/j2.yaml:2:18: template_format 'jinja2' is not supported"
expect_in "jinja2 in YAML: skipped" "$err" "skipped Story.Jinja"
expect_not_in "never an unrelated error" "$err" "unknown function"

start_mock <(printf '{"echo": true, "log": "%s"}' "$TMP/log.jsonl")
IN=/dev/null run "$BIN" --quiet --model "$MODEL" --skills "$TMP/yaml" invoke Story.GenerateStory \
    --var topic=foxes --var length=2
expect_eq "a YAML function runs" "$rc" 0
expect_eq "its template, as rendered" "$out" "Tell a story about foxes that is 2 sentences long."
expect_in "its execution settings reach the request" "$(tail -1 "$TMP/log.jsonl")" '\"temperature\":0.6'
IN=/dev/null run "$BIN" --quiet --model "$MODEL" --skills "$TMP/yaml" invoke Story.poem --input rain
expect_eq "a YAML default fills in" "$out" "Write a haiku about rain."
expect_in "max_tokens 0x40 is 64" "$(tail -1 "$TMP/log.jsonl")" '\"max_tokens\":64'
IN=/dev/null run "$BIN" --quiet --model "$MODEL" --skills "$TMP/yaml" invoke Story.Hot --input x
expect_eq "a skipped YAML function: config exit code" "$rc" 3
expect_in "a skipped YAML function: why" "$err" "hot.yaml:5:18:"

# ---- render Skill.Fn: the function's prompt with its own defaults, as
# invoke renders it (the request the server got holds the same text)
IN=/dev/null run "$BIN" --quiet --skills "$TMP/yaml" render Story.poem --input rain
expect_eq "render Skill.Fn rc" "$rc" 0
expect_eq "render Skill.Fn: the YAML default fills in" "$out" "Write a haiku about rain."
IN=/dev/null run "$BIN" --quiet --skills "$TMP/yaml" render Story.poem --input rain --var form=limerick
expect_eq "render Skill.Fn: --var overrides the default" "$out" "Write a limerick about rain."
IN=/dev/null run "$BIN" --quiet render Writer.Translate --input Hola
expect_in "render Skill.Fn: a config.json default fills in" "$out" "Translate the text below into English."
IN=/dev/null run "$BIN" --quiet --model "$MODEL" invoke Writer.Translate --input Hola --policy '{"uncertainty": false}'
expect_in "invoke sent what render showed" "$(tail -1 "$TMP/log.jsonl")" "Translate the text below into English."
mkdir -p "$TMP/rs/R/Nest"
printf 'Say {{Text.Upper $input}} in {{$lang}}.' > "$TMP/rs/R/Nest/skprompt.txt"
printf '{"input_variables": [{"name": "input"}, {"name": "lang", "default": "Welsh"}]}' > "$TMP/rs/R/Nest/config.json"
IN=/dev/null run "$BIN" --quiet --skills "$TMP/rs" render R.Nest --input hi
expect_eq "render Skill.Fn runs its blocks" "$out" "Say HI in Welsh."
IN=/dev/null run "$BIN" --quiet --skills "$TMP/rs" render R.Nest --input hi --no-calls
expect_eq "render Skill.Fn --no-calls" "$out" "Say {{Text.Upper \$input}} in Welsh."
IN=/dev/null run "$BIN" --quiet --skills "$TMP/rs" --model "$MODEL" invoke R.Nest --input hi --policy '{"uncertainty": false}'
expect_eq "invoke renders the same" "$out" "Say HI in Welsh."
IN=/dev/null run "$BIN" --quiet render Writer.Translat
expect_eq "render of an unknown function: rc" "$rc" 6
expect_in "render of an unknown function: a suggestion" "$err" "did you mean Writer.Translate"
expect_in "render of an unknown function: not a file either" "$err" "no file named Writer.Translat"
IN=/dev/null run "$BIN" --quiet render Text.Upper
expect_eq "render of a native function: usage" "$rc" 2
IN=/dev/null run "$BIN" --quiet --skills "$TMP/yaml" render Story.Hot
expect_eq "render of a skipped function: its problem's code" "$rc" 3
printf 'Hi {{$who}}' > "$TMP/Story.poem"
(cd "$TMP" && IN=/dev/null run "$BIN" --quiet --skills "$TMP/yaml" render Story.poem --var who=file)
expect_eq "a file of that name is still a file" "$(cat "$TMP/out")" "Hi file"

# ---- --skills takes a plugin folder itself, as SK .NET users pass it, or
# its parent, as before
IN=/dev/null run "$BIN" --skills "$DATA/sk_samples/WriterSkill" skills
expect_eq "--skills PluginFolder rc" "$rc" 0
expect_in "--skills PluginFolder loads its functions" "$out" "WriterSkill.ShortPoem"
expect_in "--skills PluginFolder: each of them" "$out" "WriterSkill.Brainstorm"
expect_eq "an unambiguous plugin folder: no notice" "$err" ""
IN=/dev/null run "$BIN" --skills "$DATA/sk_samples/FunSkill/" skills --json
expect_in "a trailing slash: named by the folder" "$out" '"full_name":"FunSkill.Excuses"'
IN=/dev/null run "$BIN" --skills "$DATA/sk_samples" skills
expect_in "--skills parent folder still works" "$out" "SummarizePlugin.Summarize"
IN=/dev/null run "$BIN" --skills "$yp" skills --json
expect_in "a plugin folder of YAML prompts" "$out" '"full_name":"Story.GenerateStory"'
expect_in "a plugin folder of YAML prompts and folders" "$out" '"full_name":"Story.Folder"'
mkdir -p "$TMP/amb/Own" "$TMP/amb/Sub/Inner"
printf 'own' > "$TMP/amb/Own/skprompt.txt"
printf 'inner' > "$TMP/amb/Sub/Inner/skprompt.txt"
IN=/dev/null run "$BIN" --skills "$TMP/amb" skills --json
expect_in "ambiguous: its own functions load" "$out" '"full_name":"amb.Own"'
expect_in "ambiguous: its skill folders load" "$out" '"full_name":"Sub.Inner"'
expect_in "ambiguous: a notice says which it took" "$err" \
    "holds functions of its own (Own/skprompt.txt) and skill folders (Sub/Inner/skprompt.txt): loading both"
mkdir -p "$TMP/bad-name/Fn"
printf 'x' > "$TMP/bad-name/Fn/skprompt.txt"
IN=/dev/null run "$BIN" --skills "$TMP/bad-name" skills --check
expect_eq "a plugin folder whose name is no skill name: a problem" "$rc" 3
expect_in "a plugin folder whose name is no skill name: why" "$out" "a skill folder's name may only hold"

# --check of eval still takes a function
IN=/dev/null run "$BIN" eval Text.Upper --check
expect_eq "eval --check still needs its value" "$rc" 2

finish
