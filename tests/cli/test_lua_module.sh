#!/usr/bin/env bash
# require("skein") from a stock lua5.4 interpreter, through LUA_CPATH.
set -u
cd "$(dirname "$0")" || exit 1
CPATH_SO=${SKEIN_LUA_CPATH:?SKEIN_LUA_CPATH must point at build/lua/?.so}
if ! command -v lua5.4 >/dev/null 2>&1; then
  echo "lua5.4 not installed: skipped"
  exit 0
fi
# A sanitizer build of the module needs its runtimes loaded first, since
# the stock interpreter is not built with them.  The module is preloaded
# too, so lua_close's dlclose does not unload it and the libraries it
# brings (gnutls, p11-kit: thread-local storage): GCC 12's LeakSanitizer
# crashes at exit reading the thread-local blocks of unloaded libraries
# ("Tracer caught signal 11").  require() still finds it by LUA_CPATH.
so=${CPATH_SO/\?/skein}
if [ -f "$so" ]; then
  pre=$(ldd "$so" 2>/dev/null | awk '/lib(asan|ubsan)\.so/ {print $3}' | tr '\n' ' ')
  [ -n "$pre" ] && export LD_PRELOAD="$pre $(cd "$(dirname "$so")" && pwd)/$(basename "$so")"
fi
export SKEIN_CONFIG=/nonexistent SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }

out=$(SKEIN_MODEL= LUA_CPATH="$CPATH_SO" lua5.4 -e '
local skein = require("skein")
assert(require("skein") == skein, "require twice gives the same module")
io.write(skein.version, " ", skein.invoke("Text.Upper", "stock"), "\n")' 2>&1)
expect_eq "require from lua5.4" "$out" "0.1.0 STOCK"

# SKEIN_MODEL is honoured; skills and semantic calls work; the kernel is
# freed with the state (no crash at exit).
out=$(SKEIN_MODEL="scripted:fixtures/rules.json" LUA_CPATH="$CPATH_SO" lua5.4 -e '
local skein = require("skein")
skein.set_option("quiet", "1")
skein.load_skills("fixtures/skills")
local r = skein.parallel({ { "Cli.Sem", "a" }, { "Cli.Reverse", "abc" } })
local ok, e = pcall(skein.invoke, "Cli.Fail", "x")
io.write(skein.model(), "|", r[1], "|", r[2], "|", e.kind, "|", tostring(e), "\n")' 2>&1)
expect_eq "model, skills, parallel, errors" "$out" \
  "scripted:fixtures/rules.json|the scripted reply|cba|model|model: scripted server error"

# A coroutine can require it too, and a collected state frees its kernel.
out=$(SKEIN_MODEL= LUA_CPATH="$CPATH_SO" lua5.4 -e '
local co = coroutine.wrap(function() return require("skein").invoke("Text.Lower", "CO") end)
io.write(co(), "\n")
collectgarbage()' 2>&1)
expect_eq "require inside a coroutine" "$out" "co"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
