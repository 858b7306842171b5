# lib.sh -- sourced by the shell tests that talk to the loopback server:
# pass/fail counters, a scratch folder removed at exit, the mock server.
#
#   . "$SKEIN_SRC_TESTS/support/lib.sh"   (or a path relative to the test)
#   start_mock SCENARIO.json              sets MODEL (openai:m@http://...)
#   requests                              lines in $TMP/log.jsonl
#   finish                                prints the counts; status 0 if all passed
#
# A test that starts processes of its own lists their pids in EXTRA_PIDS
# so that they are killed at exit too.
BIN=${SKEIN_BIN:?SKEIN_BIN must name the skein binary}
MOCK=${SKEIN_MOCKSERVER:?SKEIN_MOCKSERVER must name the mock server}
TMP=$(mktemp -d)
mock= EXTRA_PIDS=
trap 'kill $mock $EXTRA_PIDS 2>/dev/null; rm -rf "$TMP"' EXIT
export SKEIN_CONFIG=/nonexistent SKEIN_MODEL= SKEIN_SKILLS_PATH= OPENAI_API_KEY= OPENAI_BASE_URL= SKEIN_TRACE=
export SKEIN_CACHE=off SKEIN_HISTORY=off SKEIN_MEMORY=off SKEIN_EMBEDDINGS= SKEIN_NOW=

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2], want [$3]"; fi; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

start_mock() { # scenario file; a running server is replaced
  [ -n "$mock" ] && kill "$mock" 2>/dev/null
  : > "$TMP/port"
  "$MOCK" "$1" > "$TMP/port" &
  mock=$!
  for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
  MODEL="openai:m@http://127.0.0.1:$(head -1 "$TMP/port")/v1"
}
requests() { wc -l < "$TMP/log.jsonl" | tr -d ' '; }

# With an "echo_nonce" server: whether each {"result":"item N #K"} line of
# OUT holds the server's last answer for its prompt, so that no call that
# had been answered was asked again.
last_answers() { # out file
  sed -E 's/.*"n":([0-9]+),.*content\\":\\"(item [0-9]+)\\".*/\2 #\1/' "$TMP/log.jsonl" \
    | awk '{ last[$1 " " $2] = $3 } END { for (k in last) print k " " last[k] }' | sort > "$TMP/last"
  sed -E 's/^\{"result":"(item [0-9]+) (#[0-9]+)"\}$/\1 \2/' "$1" | sort > "$TMP/got"
  cmp -s "$TMP/last" "$TMP/got"
}
