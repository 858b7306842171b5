#!/usr/bin/env bash
# `make install`, as a user runs it: `make`, then `make install
# PREFIX=...` installs under that prefix (the later PREFIX wins, and the
# installed skein looks for its skills there); a later `make install`
# without PREFIX keeps it.  Staged with DESTDIR in a scratch build of its
# own, so nothing outside the scratch folder is touched.
set -u
cd "$(dirname "$0")" || exit 1
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
SRC=${SKEIN_SRC:?SKEIN_SRC must name the source tree}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
expect_in() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$2] lacks [$3]" ;; esac; }
has() { [ -e "$2" ] && ok || bad "$1: $2 is missing"; }

if [ -n "${SKEIN_TEST_SLOW:-}" ]; then
  # under valgrind: the build below checks the Makefile, not the binary
  echo "0 passed, 0 failed"
  exit 0
fi

B="$TMP/build"
# a make of its own: not the jobserver or the PREFIX of a make around it
MK=(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PREFIX make -C "$SRC" BUILD="$B" JOBS=2 CMAKE_ARGS="-DSKEIN_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug")
"${MK[@]}" build >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; bad "make"; }
# the build was configured for /usr/local; the prefix given now wins
DESTDIR="$TMP/dest" "${MK[@]}" install PREFIX="$TMP/p" >"$TMP/install.log" 2>&1
expect_eq "make install PREFIX=... rc" "$?" 0
P="$TMP/dest$TMP/p"
has "binary" "$P/bin/skein"
has "header" "$P/include/skein.h"
has "shared library" "$P/lib/libskein.so"
has "Lua module" "$P/lib/lua/5.4/skein.so"
has "built-in skills" "$P/share/skein/skills/Writer/Summarize/skprompt.txt"
has "manual page" "$P/share/man/man1/skein.1"
has "bash completion" "$P/share/bash-completion/completions/skein"
has "zsh completion" "$P/share/zsh/site-functions/_skein"
MANPAGER=cat man -l "$P/share/man/man1/skein.1" 2>/dev/null | grep -q "skein - run programs" && ok ||
  bad "the installed manual page does not render"
expect_in "skein.pc names the prefix" "$(cat "$P/lib/pkgconfig/skein.pc" 2>/dev/null)" "prefix=$TMP/p"
[ ! -e "$TMP/dest/usr/local" ] && ok || bad "make install PREFIX=...: something went to /usr/local"
grep -q "$TMP/p/share/skein/skills" "$P/bin/skein" && ok ||
  bad "the installed skein does not look for its skills under the new prefix"
expect_eq "the installed binary runs" "$("$P/bin/skein" --version 2>&1)" "$("$BIN" --version)"
# a later install without PREFIX keeps the one given before
rm -rf "$TMP/dest"
DESTDIR="$TMP/dest" "${MK[@]}" install >"$TMP/install2.log" 2>&1
expect_eq "make install again rc" "$?" 0
has "make install without PREFIX keeps the last one" "$P/bin/skein"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
