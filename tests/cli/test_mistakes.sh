#!/usr/bin/env bash
# Mistakes caught before a request goes out, and the hints that come with
# the errors they would cause: a model spec with the model name left out,
# a missing API key for a server that needs one (named, never printed), a
# 401 and a 404 with what to do about them, secrets in URLs masked, and
# Azure OpenAI's deployment URLs with their api-version and api-key
# header, checked at the loopback server.
set -u
cd "$(dirname "$0")" || exit 1
. ../support/lib.sh
unset ANTHROPIC_API_KEY ANTHROPIC_BASE_URL AZURE_OPENAI_API_KEY AZURE_OPENAI_ENDPOINT OLLAMA_HOST

KEY=sk-test-0123456789abcdefSECRET
AZKEY=az-test-fedcba9876543210SECRET
cat > "$TMP/scenario.json" <<EOF
{"log": "$TMP/log.jsonl", "idle_exit_ms": 900000, "responses": [
  {"match": "refused", "status": 401, "json": {"error": {"message": "Incorrect API key provided: $KEY"}}},
  {"match": "nowhere", "status": 404, "json": {"error": {"message": "Not Found"}}},
  {"match": "broken", "status": 500, "json": {"error": {"message": "boom"}}},
  {"reply": "OK"}]}
EOF
start_mock "$TMP/scenario.json"
PORT=${MODEL#*127.0.0.1:}
PORT=${PORT%%/*}
URL="http://127.0.0.1:$PORT"
: > "$TMP/log.jsonl"
mkdir -p "$TMP/skills/T/Say"
printf 'Say {{$input}}' > "$TMP/skills/T/Say/skprompt.txt"
printf '{"uncertainty": false}' > "$TMP/skills/T/Say/config.json"
SK=("$BIN" --skills "$TMP/skills" --option retries=0)

run() { # stdout to $TMP/out, stderr to $TMP/err, status in rc
  "$@" > "$TMP/out" 2> "$TMP/err"
  rc=$?
}
has() { grep -qF -- "$2" "$TMP/err" && ok || bad "$1: stderr lacks [$2]: $(head -c 600 "$TMP/err")"; }
lacks() { grep -qF -- "$2" "$TMP/err" && bad "$1: stderr holds [$2]" || ok; }
last() { tail -1 "$TMP/log.jsonl"; }

# ---- the model name left out: the URL would go to api.openai.com as a
# model name; it is refused, and nothing is sent anywhere
for kind in openai anthropic ollama; do
  run "${SK[@]}" --model "$kind:$URL/v1" invoke T.Say --input hi
  expect_eq "$kind:URL: exit" "$rc" 2
  has "$kind:URL names the fix" "has no model name, so the URL would be sent as one: write $kind:MODEL@$URL/v1"
done
SKEIN_MODEL="openai:$URL/v1" run "${SK[@]}" invoke T.Say --input hi
expect_eq "SKEIN_MODEL=openai:URL: exit" "$rc" 2
expect_eq "the model name left out: no request" "$(requests)" 0

# ---- a missing key for a server that needs one: named, before any request
OPENAI_API_KEY= run "${SK[@]}" --model openai:gpt-4o-mini invoke T.Say --input hi
expect_eq "no OPENAI_API_KEY for api.openai.com: exit" "$rc" 3
has "no OPENAI_API_KEY" "no API key for https://api.openai.com/v1/chat/completions: set OPENAI_API_KEY"
has "no OPENAI_API_KEY: kind" '"kind":"config"'
OPENAI_BASE_URL=https://api.openai.com/v1/ run "${SK[@]}" invoke T.Say --input hi
expect_eq "OPENAI_BASE_URL alone, no key: exit" "$rc" 3
has "OPENAI_BASE_URL alone, no key" "set OPENAI_API_KEY"
run "${SK[@]}" --model anthropic:claude-sonnet-4-5 invoke T.Say --input hi
expect_eq "no ANTHROPIC_API_KEY: exit" "$rc" 3
has "no ANTHROPIC_API_KEY" "no API key for https://api.anthropic.com/v1/messages: set ANTHROPIC_API_KEY"
OPENAI_API_KEY=$KEY run "${SK[@]}" --model openai:gpt-4o@https://myres.openai.azure.com invoke T.Say --input hi
expect_eq "Azure without AZURE_OPENAI_API_KEY: exit" "$rc" 3
has "Azure without its key: the variable, not OPENAI_API_KEY" "set AZURE_OPENAI_API_KEY"
run "${SK[@]}" --model azure:gpt-4o invoke T.Say --input hi
expect_eq "azure: without AZURE_OPENAI_ENDPOINT: exit" "$rc" 3
has "azure: without its endpoint" "set AZURE_OPENAI_ENDPOINT"
# a local server needs none
run "${SK[@]}" --model "openai:m@$URL/v1" invoke T.Say --input hi
expect_eq "loopback, no key: exit" "$rc" 0
expect_eq "loopback, no key: no Authorization header" \
  "$(last | grep -c '"authorization"')" 0

# ---- a 401: the hint names the variable; the key never shows, even when
# the server echoes it
OPENAI_API_KEY=$KEY run "${SK[@]}" --model "openai:m@$URL/v1" invoke T.Say --input refused
expect_eq "401 with a key: exit" "$rc" 4
has "401 with a key: hint" "(the key in OPENAI_API_KEY was refused)"
lacks "401 with a key: the key is not printed" "$KEY"
has "401 with a key: the server's message, scrubbed" "Incorrect API key provided: [redacted]"
expect_eq "401: the key went out as a bearer token" \
  "$(last | grep -c "\"authorization\":\"Bearer $KEY\"")" 1
run "${SK[@]}" --model "openai:m@$URL/v1" invoke T.Say --input refused
has "401 without a key: hint" "(no API key was sent: set OPENAI_API_KEY)"

# ---- a 404 from a base URL without /v1 gets a hint; one with it does not
run "${SK[@]}" --model "openai:m@$URL" invoke T.Say --input nowhere
expect_eq "404 without /v1: exit" "$rc" 4
has "404 without /v1: hint" "HTTP 404 from $URL/chat/completions: Not Found (the base URL has no /v1, under which OpenAI-compatible servers answer: try openai:MODEL@$URL/v1)"
run "${SK[@]}" --model "openai:m@$URL/v1" invoke T.Say --input nowhere
expect_eq "404 with /v1: exit" "$rc" 4
lacks "404 with /v1: no hint" "has no /v1"

# ---- secrets in a URL are masked wherever it is shown
run "${SK[@]}" --model "openai:m@http://ann:pw-SECRET-1@127.0.0.1:$PORT/v1?sig=SECRET-2&x=1" invoke T.Say --input broken
expect_eq "URL with secrets: exit" "$rc" 4
has "URL with secrets: user kept, password masked" "http://ann:***@127.0.0.1:$PORT/v1/chat/completions?sig=***&x=1"
lacks "URL with secrets: no password" "SECRET-1"
lacks "URL with secrets: no signature" "SECRET-2"
expect_eq "URL with secrets: the query went out after the path" \
  "$(last | grep -c '"path":"/v1/chat/completions?sig=SECRET-2&x=1"')" 1

# ---- Azure OpenAI: a deployment URL with its api-version, an api-key
# header from AZURE_OPENAI_API_KEY and no bearer token
AZURE_OPENAI_API_KEY=$AZKEY OPENAI_API_KEY=$KEY run "${SK[@]}" \
  --model "openai:gpt-4o@$URL/openai/deployments/gpt-4o?api-version=2024-06-01" invoke T.Say --input hi
expect_eq "Azure deployment URL: exit" "$rc" 0
expect_eq "Azure deployment URL: answer" "$(cat "$TMP/out")" OK
expect_eq "Azure deployment URL: path and api-version" \
  "$(last | grep -c '"path":"/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"')" 1
expect_eq "Azure deployment URL: api-key header" "$(last | grep -c "\"api-key\":\"$AZKEY\"")" 1
expect_eq "Azure deployment URL: no Authorization header" "$(last | grep -c '"authorization"')" 0
expect_eq "Azure deployment URL: the OpenAI key is not sent" "$(last | grep -c "$KEY")" 0
# the resource alone: azure:DEPLOYMENT with AZURE_OPENAI_ENDPOINT
AZURE_OPENAI_API_KEY=$AZKEY AZURE_OPENAI_ENDPOINT=$URL/ run "${SK[@]}" --model azure:my-gpt invoke T.Say --input hi
expect_eq "azure:DEPLOYMENT: exit" "$rc" 0
expect_eq "azure:DEPLOYMENT: the deployment URL, current api-version" \
  "$(last | grep -c '"path":"/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"')" 1
expect_eq "azure:DEPLOYMENT: api-key header" "$(last | grep -c "\"api-key\":\"$AZKEY\"")" 1
# the whole endpoint as the portal shows it
AZURE_OPENAI_API_KEY=$AZKEY run "${SK[@]}" \
  --model "azure:d@$URL/openai/deployments/d/chat/completions?api-version=2025-01-01-preview" invoke T.Say --input hi
expect_eq "full Azure endpoint: kept as written" \
  "$(last | grep -c '"path":"/openai/deployments/d/chat/completions?api-version=2025-01-01-preview"')" 1
# the v1 API: no api-version
AZURE_OPENAI_API_KEY=$AZKEY run "${SK[@]}" --model "azure:gpt-4.1@$URL/openai/v1" invoke T.Say --input hi
expect_eq "Azure v1: exit" "$rc" 0
expect_eq "Azure v1: path" "$(last | grep -c '"path":"/openai/v1/chat/completions"')" 1
expect_eq "Azure v1: the deployment as the model" "$(last | grep -c '\\"model\\":\\"gpt-4.1\\"')" 1
# a refused Azure key: the hint names AZURE_OPENAI_API_KEY
AZURE_OPENAI_API_KEY=$AZKEY run "${SK[@]}" --model "azure:d@$URL" invoke T.Say --input refused
has "Azure 401: hint" "(the key in AZURE_OPENAI_API_KEY was refused)"
lacks "Azure 401: no key printed" "$AZKEY"

finish
