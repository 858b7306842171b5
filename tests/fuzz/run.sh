#!/bin/sh
# Runs every libFuzzer binary in BUILD/tests/fuzz for SECONDS each, on a
# scratch copy of its corpus (tests/fuzz/corpus/<name>, plus
# tests/fuzz/regressions/<name>), so new inputs never land in the repo.
# Fails on the first crash, leak or timeout, naming the input that caused
# it (kept in BUILD/fuzz-artifacts/): copy that file into
# tests/fuzz/regressions/<name>/ once fixed, and ctest replays it.
#
#     tests/fuzz/run.sh BUILD SECONDS
set -eu
build=$1
seconds=$2
src=$(cd "$(dirname "$0")" && pwd)
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/skein-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
found=0
for bin in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    target=$(basename "$bin")
    name=${target#fuzz_}
    corpus="$src/corpus/$name"
    [ -d "$corpus" ] || corpus="$src/corpus/${name%%_*}"
    work="$scratch/$name"
    mkdir -p "$work"
    [ -d "$corpus" ] && cp "$corpus"/* "$work"/ 2>/dev/null || true
    [ -d "$src/regressions/$name" ] && cp "$src/regressions/$name"/* "$work"/ 2>/dev/null || true
    found=$((found + 1))
    echo "== $name: ${seconds}s on $(ls "$work" | wc -l) seed inputs"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$name-" "$work" >"$scratch/$name.log" 2>&1; then
        tail -n 60 "$scratch/$name.log"
        echo "fuzz: $name failed; the input is in $artifacts/" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$scratch/$name.log" | tail -n 2 || true
done
if [ "$found" -eq 0 ]; then
    echo "fuzz: no fuzz targets in $build/tests/fuzz" >&2
    exit 1
fi
echo "fuzz: $found targets, ${seconds}s each, no failures"
