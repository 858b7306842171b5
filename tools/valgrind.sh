#!/bin/sh
# Runs a command under valgrind's memcheck and fails (exit 99) on any
# memory error or definite leak.  `make test-valgrind` makes it CTest's
# wrapper for every test binary (CMAKE_CROSSCOMPILING_EMULATOR) and for the
# skein binary the Lua and CLI tests run; by hand:
#
#     tools/valgrind.sh ./build/tests/test_template
#
# Only the process itself is checked, not its children (the mock server),
# unless SKEIN_VALGRIND_CHILDREN=1; shells and common tools are skipped
# even then.
set -eu
children=no
[ "${SKEIN_VALGRIND_CHILDREN:-0}" = 1 ] && children=yes
# PCRE2's JIT code has no object file ("???" in a stack) and reads 16
# bytes at a time past what it needs, into the same block, and branches on
# those bytes without using them: reported as Addr16 and Cond errors.  The
# suppressions match only frames with no object, which only JIT code has.
supp="${TMPDIR:-/tmp}/skein-valgrind-$(id -u).supp"
if [ ! -s "$supp" ]; then
    tmp="$supp.$$"
    cat >"$tmp" <<'SUPP'
{
   pcre2-jit-cond
   Memcheck:Cond
   obj:???
}
{
   pcre2-jit-read16
   Memcheck:Addr16
   obj:???
}
SUPP
    mv -f "$tmp" "$supp"
fi
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --track-origins=no --trace-children=$children \
    --trace-children-skip='*/bash,*/sh,*/dash,*/skein-mockserver,*/cmp,*/grep,*/sed,*/cat,*/diff,*/mktemp,*/rm,*/python3,*/lua5.4' \
    --child-silent-after-fork=yes --suppressions="$supp" "$@"
