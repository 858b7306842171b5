#!/usr/bin/env bash
# The manual page and the shell completions the build makes from skein's
# own help: the page builds, `man -l` renders it, and every command's help
# is in it; the bash completion loads and completes commands, options,
# function names (with the --skills folders of the line) and actions; the
# zsh completion does the same in a real interactive zsh.
set -u
cd "$(dirname "$0")" || exit 1
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
BUILD=$(cd "$(dirname "$BIN")" && pwd)
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

COMMANDS="invoke render skills run review plan run-plan agent df cache eval calibrate distill models logs prompt chat completion help"

# ---- the manual page
page="$BUILD/skein.1"
[ -s "$page" ] && ok || bad "the build made no manual page ($page)"
"$BIN" help --man >"$TMP/skein.1"
expect_eq "help --man rc" "$?" 0
cmp -s "$page" "$TMP/skein.1" && ok || bad "the page the build made is not what help --man prints"
warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
expect_eq "groff: no warnings" "$warnings" ""
MANWIDTH=100 MANPAGER=cat PAGER=cat man -l "$page" >"$TMP/page.txt" 2>"$TMP/man.err"
expect_eq "man -l renders it" "$?" 0
expect_eq "man -l: nothing on stderr" "$(cat "$TMP/man.err")" ""
page_text=$(cat "$TMP/page.txt")
expect_in "the page: its name" "$page_text" "skein - run programs whose steps are prompts"
for c in $COMMANDS; do
  # every line of every command's help is on the page
  "$BIN" help "$c" | grep -v '^$' | while IFS= read -r line; do
    line=$(printf '%s' "$line" | sed 's/^ *//; s/ *$//')
    grep -qF -- "$line" "$TMP/page.txt" || { echo "missing: $c: $line"; break; }
  done >"$TMP/missing"
  expect_eq "the page has all of help $c" "$(cat "$TMP/missing")" ""
done
run_help() { "$BIN" help --man extra >/dev/null 2>&1; }
run_help
expect_eq "help --man with an argument rc" "$?" 2

# ---- bash
[ -s "$BUILD/skein.bash" ] && ok || bad "the build made no bash completion"
complete_bash() { # WORDS...: the completions of the last word
  bash --norc --noprofile -c '
    source "$1" || exit 9
    shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _skein
    printf "%s\n" "${COMPREPLY[@]}"' bash "$BUILD/skein.bash" "$@"
}
out=$(bash --norc --noprofile -c 'source "$1" && complete -p skein' bash "$BUILD/skein.bash")
expect_eq "bash: it loads and registers" "$out" "complete -F _skein skein"
expect_eq "bash: a command" "$(complete_bash "$BIN" inv)" "invoke"
expect_eq "bash: commands" "$(complete_bash "$BIN" "" | wc -l | tr -d ' ')" "$(wc -w <<<"$COMMANDS" | tr -d ' ')"
expect_eq "bash: an option" "$(complete_bash "$BIN" invoke --no-cal)" "--no-calls"
expect_eq "bash: a function" "$(complete_bash "$BIN" invoke Writer.Su)" "Writer.Summarize"
expect_eq "bash: a function from --skills" "$(complete_bash "$BIN" --skills "$FX/skills" invoke Cli.Re)" "Cli.Reverse"
expect_eq "bash: help COMMAND" "$(complete_bash "$BIN" help ag)" "agent"
expect_eq "bash: logs actions" "$(complete_bash "$BIN" logs sta)" "status"
expect_eq "bash: completion shells" "$(complete_bash "$BIN" completion z)" "zsh"
expect_eq "bash: --signal" "$(complete_bash "$BIN" calibrate X --signal ent)" "entropy"
printf '{"aliases": {"speedy": "scripted:x.json"}}' >"$TMP/config.json"
expect_eq "bash: model names" "$(SKEIN_CONFIG="$TMP/config.json" complete_bash "$BIN" -m spe)" "speedy"
# the completion's list of options that take a value is the parser's
values=$(sed -n 's/^ *local value_options="\(.*\)"$/\1/p' "$BUILD/skein.bash")
options=$(sed -n 's/^ *local options="\(.*\)"$/\1/p' "$BUILD/skein.bash")
[ -n "$values" ] && [ -n "$options" ] && ok || bad "bash: no option lists in the script"
for o in $options; do
  case "$o" in --help|-h|--version) continue ;; esac
  msg=$("$BIN" help "$o" 2>&1 </dev/null) # parsed before any kernel is made
  case " $values " in
    *" $o "*) expect_in "$o takes a value" "$msg" "needs a value" ;;
    *) case "$msg" in *"needs a value"*) bad "$o takes no value, yet: $msg" ;; *) ok ;; esac ;;
  esac
done
"$BIN" completion fish >/dev/null 2>&1
expect_eq "completion for an unknown shell rc" "$?" 2
"$BIN" completion >/dev/null 2>&1
expect_eq "completion without a shell rc" "$?" 2

# ---- zsh, in an interactive zsh driven through a pty
[ -s "$BUILD/_skein" ] && ok || bad "the build made no zsh completion"
if command -v zsh >/dev/null 2>&1; then
  zsh -n "$BUILD/_skein" && ok || bad "zsh: the completion does not parse"
  mkdir -p "$TMP/fpath" "$TMP/bin"
  cp "$BUILD/_skein" "$TMP/fpath/_skein"
  ln -s "$BIN" "$TMP/bin/skein"
  cat >"$TMP/complete.zsh" <<'EOF'
zmodload zsh/zpty
# types LINE and Tab in an interactive zsh; true when WANT shows
complete_line() {
  zpty z zsh -f -i
  zpty -w z "stty columns 1000; PS1='> '; fpath=($ZF \$fpath); path=($ZBIN \$path); autoload -U compinit; compinit -u -D; unsetopt beep"
  zpty -w -n z "$1"$'\t'
  local out= chunk i
  for i in {1..600}; do
    sleep 0.1
    while zpty -r -t z chunk 2>/dev/null; do out+=$chunk; done
    [[ $out == *"$2"* ]] && break
  done
  zpty -d z
  [[ $out == *"$2"* ]] || print -r -- "zsh: '$1' did not complete to '$2'"
}
complete_line 'skein inv' 'skein invoke'
complete_line 'skein invoke Writer.Su' 'Writer.Summarize'
complete_line "skein --skills $FX/skills invoke Cli.Re" 'Cli.Reverse'
complete_line 'skein logs sta' 'status'
EOF
  out=$(ZF="$TMP/fpath" ZBIN="$TMP/bin" FX="$FX" zsh -f "$TMP/complete.zsh" 2>&1)
  expect_eq "zsh: commands, functions, --skills, actions" "$out" ""
else
  bad "zsh is missing (tools/install-deps.sh installs it): cannot test its completion"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
