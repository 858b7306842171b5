/* test_faults.c -- the fault matrix: every transport and protocol fault the
 * loopback mock (tests/support/mockserver.c) can play, against each HTTP
 * connector (OpenAI, Ollama, Anthropic).
 *
 * Each case must end in a retry that succeeds or in a typed error whose
 * message says what went wrong, within its timeout budget (so a fault can
 * never hang a caller), and both the trace and the SKEIN_RECORD cassette
 * must say what happened.  Leaks and memory errors are the sanitized
 * suite's job; this file makes sure every fault path runs there.
 *
 * test_openai.c and test_connectors.c test each connector's wire format in
 * depth; this file is deliberately a table so that a new fault is one row
 * per connector. */
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

enum wire_kind { OPENAI, OLLAMA, ANTHROPIC };
static const char *const conn_names[] = {"openai", "ollama", "anthropic"};

/* Replies that succeed, per connector, in the mock's response syntax. */
#define OAI_OK "{\"reply\":\"recovered fine\"}"
#define OLL_OK                                                                 \
    "{\"json\":{\"model\":\"m\",\"message\":{\"role\":\"assistant\","          \
    "\"content\":\"recovered fine\"},\"done\":true,\"done_reason\":\"stop\","  \
    "\"prompt_eval_count\":5,\"eval_count\":2}}"
#define ANT_OK                                                                 \
    "{\"json\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\"," \
    "\"model\":\"m\",\"content\":[{\"type\":\"text\",\"text\":\"recovered "    \
    "fine\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":5,"     \
    "\"output_tokens\":2}}}"

/* Streams, per connector, long enough that "cut" leaves a partial event. */
#define OAI_STREAM "\"stream\":\"one two three four five six seven eight\""
#define OLL_CHUNK(t) \
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"" t "\"},\"done\":false}"
#define OLL_DONE                                                               \
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"  \
    "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":5,"          \
    "\"eval_count\":4}"
#define OLL_STREAM                                                             \
    "\"chunks\":[" OLL_CHUNK("one ") "," OLL_CHUNK("two ") ","                 \
    OLL_CHUNK("three ") "," OLL_CHUNK("four") "," OLL_DONE "]"
#define ANT_DELTA(t)                                                           \
    "[\"content_block_delta\",{\"type\":\"content_block_delta\",\"index\":0,"  \
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}]"
#define ANT_STREAM                                                             \
    "\"sse_events\":["                                                         \
    "[\"message_start\",{\"type\":\"message_start\",\"message\":{\"id\":\"m\"," \
    "\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":5,"            \
    "\"output_tokens\":1}}}],"                                                 \
    "[\"content_block_start\",{\"type\":\"content_block_start\",\"index\":0,"  \
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}],"                   \
    ANT_DELTA("one ") "," ANT_DELTA("two ") "," ANT_DELTA("three ") ","        \
    "[\"content_block_stop\",{\"type\":\"content_block_stop\",\"index\":0}],"  \
    "[\"message_delta\",{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":" \
    "\"end_turn\"},\"usage\":{\"output_tokens\":3}}],"                         \
    "[\"message_stop\",{\"type\":\"message_stop\"}]]"

#define REFUSED NULL /* no server: connect to a closed port */

typedef struct fault_case {
    const char *name;
    enum wire_kind conn;
    const char *responses; /* the mock's "responses" array, or REFUSED */
    const char *opt, *val; /* one kernel option on top of the defaults */
    int stream;            /* invoke with a stream callback */
    sk_status want;
    const char *needle;    /* in the error message, or in the reply */
    int requests;          /* the mock must have seen this many (-1: skip) */
    int http_status;       /* in the trace's and cassette's error, or 0 */
} fault_case;

/* Defaults for every case: one retry, short backoff, 3 s per request. */
#define TIMEOUT_MS 3000
#define RETRIES 1

static const fault_case cases[] = {
    /* ---- OpenAI ---- */
    {"429 Retry-After", OPENAI,
     "[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},\"json\":{\"error\":"
     "{\"message\":\"slow down\"}}}," OAI_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"429 no Retry-After", OPENAI,
     "[{\"status\":429,\"json\":{\"error\":{\"message\":\"slow down\"}}}," OAI_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"429 exhausted", OPENAI,
     "[{\"status\":429,\"json\":{\"error\":{\"message\":\"quota used up\"}}}]",
     NULL, NULL, 0, SK_MODEL, "quota used up", 2, 429},
    {"500 then ok", OPENAI,
     "[{\"status\":500,\"json\":{\"error\":{\"message\":\"boom\"}}}," OAI_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"503 exhausted", OPENAI,
     "[{\"status\":503,\"body\":\"upstream unavailable\"}]",
     NULL, NULL, 0, SK_MODEL, "HTTP 503", 2, 503},
    {"refused", OPENAI, REFUSED, NULL, NULL, 0, SK_NETWORK, "127.0.0.1", -1, 0},
    {"reset before reply", OPENAI, "[{\"action\":\"reset\"}]",
     NULL, NULL, 0, SK_NETWORK, "/v1/chat/completions", 2, 0},
    {"reset mid-body", OPENAI, "[{\"action\":\"reset_mid\",\"reply\":\""
     "a reply long enough to be cut in the middle of its JSON body\"}]",
     NULL, NULL, 0, SK_NETWORK, "/v1/chat/completions", 2, 0},
    {"reset mid-body then ok", OPENAI, "[{\"action\":\"reset_mid\",\"reply\":\""
     "a reply long enough to be cut in the middle of its JSON body\"}," OAI_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"sse cut mid-event", OPENAI, "[{" OAI_STREAM ",\"action\":\"cut\"}]",
     NULL, NULL, 1, SK_PROTOCOL, "stream ended mid-reply", 1, 0},
    {"invalid JSON", OPENAI, "[{\"body\":\"{\\\"choices\\\": [\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "not valid JSON", 1, 0},
    {"wrong shape", OPENAI, "[{\"json\":{\"choices\":{\"text\":1}}}]",
     NULL, NULL, 0, SK_PROTOCOL, "choices", 1, 0},
    {"stall past timeout", OPENAI, "[{\"action\":\"stall\"}]",
     "timeout_ms", "300", 0, SK_TIMEOUT, "within 300 ms", 2, 0},
    {"endless body", OPENAI, "[{\"action\":\"oversize\"}]",
     "max_response_bytes", "65536", 0, SK_TOO_LARGE, "larger than 65536 bytes", 1, 0},
    {"wrong content-type", OPENAI, "[{\"action\":\"wrong_type\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "text/html", 1, 0},
    {"slow trickle", OPENAI,
     "[{\"reply\":\"slow but sure\",\"action\":\"trickle\",\"chunk_delay_ms\":2}]",
     NULL, NULL, 0, SK_OK, "slow but sure", 1, 0},

    /* ---- Ollama (NDJSON) ---- */
    {"429 Retry-After", OLLAMA,
     "[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},\"json\":{\"error\":"
     "\"server busy\"}}," OLL_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"429 no Retry-After", OLLAMA,
     "[{\"status\":429,\"json\":{\"error\":\"server busy\"}}," OLL_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"500 exhausted", OLLAMA, "[{\"status\":500,\"json\":{\"error\":\"llama runner crashed\"}}]",
     NULL, NULL, 0, SK_MODEL, "llama runner crashed", 2, 500},
    {"503 then ok", OLLAMA, "[{\"status\":503,\"body\":\"loading\"}," OLL_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"refused", OLLAMA, REFUSED, NULL, NULL, 0, SK_NETWORK, "127.0.0.1", -1, 0},
    {"reset mid-body", OLLAMA, "[{\"action\":\"reset_mid\"," OLL_STREAM "}]",
     NULL, NULL, 0, SK_NETWORK, "/api/chat", 2, 0},
    {"ndjson cut mid-stream", OLLAMA, "[{\"action\":\"cut\"," OLL_STREAM "}]",
     NULL, NULL, 1, SK_PROTOCOL, "stream ended mid-reply", 1, 0},
    {"invalid JSON", OLLAMA, "[{\"body\":\"<<not json>>\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "not valid JSON", 1, 0},
    {"wrong shape", OLLAMA, "[{\"json\":{\"message\":[1,2],\"done\":true}}]",
     NULL, NULL, 0, SK_PROTOCOL, "message", 1, 0},
    {"stall past timeout", OLLAMA, "[{\"action\":\"stall\"}]",
     "timeout_ms", "300", 0, SK_TIMEOUT, "within 300 ms", 2, 0},
    {"endless body", OLLAMA, "[{\"action\":\"oversize\"}]",
     "max_response_bytes", "65536", 0, SK_TOO_LARGE, "larger than 65536 bytes", 1, 0},
    {"wrong content-type", OLLAMA, "[{\"action\":\"wrong_type\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "text/html", 1, 0},
    {"slow trickle", OLLAMA, "[{\"action\":\"trickle\",\"chunk_delay_ms\":1," OLL_STREAM "}]",
     NULL, NULL, 1, SK_OK, "one two three four", 1, 0},

    /* ---- Anthropic (typed SSE events) ---- */
    {"429 Retry-After", ANTHROPIC,
     "[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},\"json\":{\"type\":\"error\","
     "\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}}," ANT_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"429 exhausted", ANTHROPIC,
     "[{\"status\":429,\"json\":{\"type\":\"error\",\"error\":{\"type\":"
     "\"rate_limit_error\",\"message\":\"slow down\"}}}]",
     NULL, NULL, 0, SK_MODEL, "slow down", 2, 429},
    {"500 then ok", ANTHROPIC, "[{\"status\":500,\"body\":\"oops\"}," ANT_OK "]",
     NULL, NULL, 0, SK_OK, "recovered fine", 2, 0},
    {"529 overloaded exhausted", ANTHROPIC,
     "[{\"status\":529,\"json\":{\"type\":\"error\",\"error\":{\"type\":"
     "\"overloaded_error\",\"message\":\"Overloaded\"}}}]",
     NULL, NULL, 0, SK_MODEL, "Overloaded", 2, 529},
    {"refused", ANTHROPIC, REFUSED, NULL, NULL, 0, SK_NETWORK, "127.0.0.1", -1, 0},
    {"reset before reply", ANTHROPIC, "[{\"action\":\"reset\"}]",
     NULL, NULL, 0, SK_NETWORK, "/v1/messages", 2, 0},
    {"sse cut mid-event", ANTHROPIC, "[{\"action\":\"cut\"," ANT_STREAM "}]",
     NULL, NULL, 1, SK_PROTOCOL, "stream ended mid-reply", 1, 0},
    /* deltas were delivered, so no retry; the message keeps the cause */
    {"sse reset mid-event", ANTHROPIC, "[{\"action\":\"reset_mid\"," ANT_STREAM "}]",
     NULL, NULL, 1, SK_PROTOCOL, "Connection reset by peer", 1, 0},
    {"invalid JSON", ANTHROPIC, "[{\"body\":\"{\\\"content\\\": [\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "not valid JSON", 1, 0},
    {"wrong shape", ANTHROPIC, "[{\"json\":{\"type\":\"message\",\"content\":\"hi\"}}]",
     NULL, NULL, 0, SK_PROTOCOL, "content", 1, 0},
    {"stall past timeout", ANTHROPIC, "[{\"action\":\"stall\"}]",
     "timeout_ms", "300", 0, SK_TIMEOUT, "within 300 ms", 2, 0},
    {"endless body", ANTHROPIC, "[{\"action\":\"oversize\"}]",
     "max_response_bytes", "65536", 0, SK_TOO_LARGE, "larger than 65536 bytes", 1, 0},
    {"wrong content-type", ANTHROPIC, "[{\"action\":\"wrong_type\"}]",
     NULL, NULL, 0, SK_PROTOCOL, "text/html", 1, 0},
    {"slow trickle", ANTHROPIC, "[{\"action\":\"trickle\",\"chunk_delay_ms\":1," ANT_STREAM "}]",
     NULL, NULL, 1, SK_OK, "one two three", 1, 0},
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A loopback port nobody listens on: bound, then closed. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int count_lines(const char *path)
{
    char *s = NULL;
    size_t n;
    if (sk_read_file(path, 0, &s, &n) != SK_OK)
        return 0;
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += s[i] == '\n';
    free(s);
    return lines;
}

/* The last line of a JSON-lines file that has `member` at top level, parsed
 * (caller frees with cJSON_Delete), or NULL. */
static cJSON *last_line_with(const char *path, const char *member)
{
    char *s = NULL;
    size_t n;
    if (sk_read_file(path, 0, &s, &n) != SK_OK)
        return NULL;
    cJSON *found = NULL;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (o && cJSON_GetObjectItem(o, member)) {
            cJSON_Delete(found);
            found = o;
        } else {
            cJSON_Delete(o);
        }
    }
    free(s);
    return found;
}

static void on_stream(void *ud, const char *text, size_t len)
{
    (void)text;
    *(size_t *)ud += len;
}

/* The trace line of the failed (or final) call: "error" names the kind and
 * the attempts made; a success counts its attempts at top level. */
static void check_trace(const fault_case *c, const char *trace)
{
    cJSON *t = last_line_with(trace, "latency_ms");
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "type")), "model_call");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "function")), "T.Echo");
    cJSON *err = cJSON_GetObjectItem(t, "error");
    int want_attempts = c->requests >= 0 ? c->requests : RETRIES + 1;
    if (c->want == SK_OK) {
        CHECK(err == NULL);
        CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(t, "reply")), c->needle);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(t, "attempts")), want_attempts);
    } else {
        CHECK(err != NULL);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(err, "kind")), sk_status_kind(c->want));
        CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(err, "message")), c->needle);
        CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(err, "attempts")), want_attempts);
        if (c->http_status)
            CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(err, "http_status")), c->http_status);
    }
    cJSON_Delete(t);
}

/* The cassette line: the reply on success, otherwise the error. */
static void check_cassette(const fault_case *c, const char *cassette)
{
    /* the exchange, then how the call ended (for skein distill) */
    CHECK_INT(count_lines(cassette), 2);
    cJSON *end = last_line_with(cassette, "status");
    CHECK(end != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(end, "type")), "call_end");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(end, "status")), sk_status_kind(c->want));
    cJSON *r = last_line_with(cassette, "prompt");
    CHECK(r != NULL);
    if (r && end)
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(end, "call")),
                  cJSON_GetStringValue(cJSON_GetObjectItem(r, "call")));
    cJSON_Delete(end);
    if (!r)
        return;
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r, "function")), "T.Echo");
    CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(r, "prompt")), "fault probe");
    cJSON *err = cJSON_GetObjectItem(r, "error");
    if (c->want == SK_OK) {
        CHECK(err == NULL);
        CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(r, "reply")), c->needle);
    } else {
        CHECK(cJSON_GetObjectItem(r, "reply") == NULL);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(err, "kind")), sk_status_kind(c->want));
        CHECK_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(err, "message")), c->needle);
        if (c->http_status)
            CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(err, "http_status")), c->http_status);
    }
    cJSON_Delete(r);
}

static void run_case(const fault_case *c, int seq)
{
    char label[128];
    snprintf(label, sizeof label, "%s: %s", conn_names[c->conn], c->name);
    tu_current = label;
    int failed_before = tu_failed;

    char log[128], trace[128], cassette[128], url[64] = "";
    int pid = 0;
    snprintf(log, sizeof log, "/tmp/skein-faults-%d-%d.log", (int)getpid(), seq);
    snprintf(trace, sizeof trace, "/tmp/skein-faults-%d-%d.trace.jsonl", (int)getpid(), seq);
    snprintf(cassette, sizeof cassette, "/tmp/skein-faults-%d-%d.rec.jsonl", (int)getpid(), seq);
    unlink(log);
    unlink(trace);
    unlink(cassette);

    if (c->responses) {
        char *sc = sk_asprintf("{\"log\":\"%s\",\"idle_exit_ms\":20000,\"responses\":%s}",
                               log, c->responses);
        const char *path = sc ? tu_tmpfile(sc, ".json") : NULL;
        free(sc);
        if (!path || tu_mock_start(path, url, &pid) != 0) {
            CHECK(!"mock server started");
            return;
        }
        unlink(path);
    } else {
        snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port());
    }

    char spec[160];
    switch (c->conn) {
    case OPENAI: snprintf(spec, sizeof spec, "openai:test@%s/v1", url); break;
    case OLLAMA: snprintf(spec, sizeof spec, "ollama:m@%s", url); break;
    case ANTHROPIC: snprintf(spec, sizeof spec, "anthropic:m@%s", url); break;
    }

    setenv("SKEIN_RECORD", cassette, 1);
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    unsetenv("SKEIN_RECORD");
    if (!k) {
        tu_mock_stop(pid);
        return;
    }
    char timeout[32], retries[32];
    snprintf(timeout, sizeof timeout, "%d", TIMEOUT_MS);
    snprintf(retries, sizeof retries, "%d", RETRIES);
    CHECK_INT(sk_kernel_add_semantic(k, "T", "Echo", "Say {{$input}}", "{\"uncertainty\": false}"), SK_OK);
    CHECK_INT(sk_kernel_set_model(k, spec), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "quiet", "1"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "timeout_ms", timeout), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "connect_timeout_ms", "2000"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retry_base_ms", "10"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retries", retries), SK_OK);
    if (c->opt)
        CHECK_INT(sk_kernel_set_option(k, c->opt, c->val), SK_OK);
    CHECK_INT(sk_kernel_set_trace(k, trace), SK_OK);

    sk_vars *v = NULL;
    CHECK_INT(sk_vars_new(&v), SK_OK);
    CHECK_INT(sk_vars_set(v, "input", "fault probe"), SK_OK);
    size_t streamed = 0;
    sk_invoke_opts o = {.stream = on_stream, .stream_ud = &streamed};

    /* Every attempt may use its whole timeout, plus the backoffs between
     * them (Retry-After: 1 s at most here) and slack for a loaded,
     * sanitized machine.  Past that, the fault hung the call. */
    long per_try = c->opt && !strcmp(c->opt, "timeout_ms") ? atol(c->val) : TIMEOUT_MS;
    long long budget = per_try * (RETRIES + 1) + 1000 + 3000;
    long long t0 = mono_ms();
    char *out = NULL;
    sk_status rc = sk_invoke(k, "T.Echo", v, c->stream ? &o : NULL, &out);
    long long took = mono_ms() - t0;

    CHECK_INT(rc, c->want);
    CHECK(took < budget);
    if (c->want == SK_OK) {
        CHECK_CONTAINS(out, c->needle);
        if (c->stream)
            CHECK(streamed > 0);
    } else {
        CHECK(out == NULL);
        CHECK_CONTAINS(sk_errmsg(k), c->needle);
        CHECK_INT(sk_errcode(k), c->want);
        char *js = NULL;
        CHECK_INT(sk_error_json(k, &js), SK_OK);
        char kind[64];
        snprintf(kind, sizeof kind, "\"kind\":\"%s\"", sk_status_kind(c->want));
        CHECK_CONTAINS(js, kind);
        sk_free(js);
    }
    sk_free(out);
    sk_vars_free(v);
    sk_kernel_free(k); /* closes the trace and the cassette */

    if (c->responses && c->requests >= 0)
        CHECK_INT(count_lines(log), c->requests);
    check_trace(c, trace);
    check_cassette(c, cassette);

    if (tu_failed != failed_before)
        fprintf(stderr, "  (case took %lld ms, status %s)\n", took, sk_status_kind(rc));
    if (pid)
        tu_mock_stop(pid);
    unlink(log);
    unlink(trace);
    unlink(cassette);
    tu_current = NULL;
}

/* Every connector must appear with every fault class, so that adding a
 * connector without its rows fails here rather than going unnoticed. */
TEST(test_matrix_is_complete)
{
    static const char *const classes[] = {"429", "refused", "reset", "cut", "invalid JSON",
                                          "wrong shape", "stall", "endless", "content-type",
                                          "trickle"};
    for (int conn = OPENAI; conn <= ANTHROPIC; conn++)
        for (size_t j = 0; j < sizeof classes / sizeof *classes; j++) {
            int seen = 0;
            for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
                seen += cases[i].conn == (enum wire_kind)conn && strstr(cases[i].name, classes[j]);
            if (!seen)
                fprintf(stderr, "no %s case for %s\n", classes[j], conn_names[conn]);
            CHECK(seen > 0);
        }
}

int main(int argc, char **argv)
{
    setenv("ANTHROPIC_API_KEY", "sk-ant-fault-test", 1);
    RUN(test_matrix_is_complete);
    /* one case by name (substring of "connector: name") while debugging */
    const char *only = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char label[128];
        snprintf(label, sizeof label, "%s: %s", conn_names[cases[i].conn], cases[i].name);
        if (!only || strstr(label, only))
            run_case(&cases[i], (int)i);
    }
    return tu_finish();
}
