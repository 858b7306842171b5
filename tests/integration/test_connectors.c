/* test_connectors.c -- the Ollama and Anthropic connectors end to end,
 * against the loopback mock server (tests/support/mockserver.c): what is
 * sent (from the mock's request log), replies, streams, usage, errors and
 * retries. */
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

#define KEY "sk-ant-secret-test-key"

typedef struct mock {
    char url[64];
    int pid;
    char log[256];
} mock;

/* Starts the mock with the scenario's members (the "log" member is added
 * here). */
static int mock_start(mock *m, const char *scenario_members)
{
    static int seq;
    snprintf(m->log, sizeof m->log, "/tmp/skein-conn-%d-%d.jsonl", (int)getpid(), seq++);
    unlink(m->log);
    char *text = sk_asprintf("{\"log\":\"%s\",\"idle_exit_ms\":20000,%s}", m->log,
                             scenario_members);
    const char *path = tu_tmpfile(text, ".json");
    free(text);
    if (!path || tu_mock_start(path, m->url, &m->pid) != 0) {
        CHECK(!"mock server started");
        m->pid = 0;
        return -1;
    }
    unlink(path);
    return 0;
}

static void mock_stop(mock *m)
{
    tu_mock_stop(m->pid);
    unlink(m->log);
}

/* The request log's text ("" if none; caller frees). */
static char *mock_log(const mock *m)
{
    char *s = NULL;
    size_t n;
    if (sk_read_file(m->log, 0, &s, &n) != SK_OK)
        return strdup("");
    return s;
}

static int mock_requests(const mock *m)
{
    char *s = mock_log(m);
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

/* The last logged request as a parsed JSON object (caller frees with
 * cJSON_Delete), or NULL. */
static cJSON *last_request(const mock *m)
{
    char *s = mock_log(m);
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n')
        s[--n] = '\0';
    char *line = strrchr(s, '\n');
    cJSON *o = cJSON_Parse(line ? line + 1 : s);
    free(s);
    return o;
}

/* The last request's body text and one header (both caller frees; NULL
 * when absent). */
static char *last_body(const mock *m)
{
    cJSON *o = last_request(m);
    const char *b = cJSON_GetStringValue(cJSON_GetObjectItem(o, "body"));
    char *copy = b ? strdup(b) : NULL;
    cJSON_Delete(o);
    return copy;
}

static char *last_header(const mock *m, const char *name)
{
    cJSON *o = last_request(m);
    const char *v = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "headers"), name));
    char *copy = v ? strdup(v) : NULL;
    cJSON_Delete(o);
    return copy;
}

static char *last_path(const mock *m)
{
    cJSON *o = last_request(m);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(o, "path"));
    char *copy = v ? strdup(v) : NULL;
    cJSON_Delete(o);
    return copy;
}

/* A kernel whose T.Echo runs on model, short retries, quiet. */
static sk_kernel *kernel_for(const char *model, const char *config)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    if (!k)
        return NULL;
    /* connector tests: no checks after the model, so replies stream */
    CHECK_INT(sk_kernel_add_semantic(k, "T", "Echo", "Say {{$input}}",
                                     config ? config : "{\"uncertainty\": false}"), SK_OK);
    CHECK_INT(sk_kernel_set_model(k, model), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "quiet", "1"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "timeout_ms", "10000"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retry_base_ms", "10"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retries", "2"), SK_OK);
    return k;
}

typedef struct deltas {
    sk_buf text;
    int n;
} deltas;

static void on_stream(void *ud, const char *text, size_t len)
{
    deltas *d = ud;
    d->n++;
    buf_add(&d->text, text, len);
    buf_addc(&d->text, '|');
}

static sk_status invoke(sk_kernel *k, const char *input, deltas *d, char **out)
{
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", input);
    *out = NULL;
    sk_invoke_opts o = {.stream = on_stream, .stream_ud = d};
    sk_status rc = sk_invoke(k, "T.Echo", v, d ? &o : NULL, out);
    sk_vars_free(v);
    return rc;
}

/* ---- driving a connector directly -------------------------------------- */

typedef struct outcome {
    int done;
    sk_status st;
    model_resp *resp;
    sk_err *err;
    deltas d;
} outcome;

static void on_done(void *ud, sk_status st, model_resp *resp, sk_err *err)
{
    outcome *o = ud;
    o->done++;
    o->st = st;
    o->resp = resp;
    o->err = err;
}

static void on_delta(void *ud, const char *text, size_t len)
{
    on_stream(&((outcome *)ud)->d, text, len);
}

static model_req make_req(const sk_msg *msgs, size_t n)
{
    model_req r;
    memset(&r, 0, sizeof r);
    r.function = "T.Direct";
    r.msgs = msgs;
    r.n_msgs = n;
    r.max_tokens = -1;
    r.temperature = r.top_p = r.presence_penalty = r.frequency_penalty = NAN;
    return r;
}

/* Runs req on spec to the end; o gets the outcome (caller frees with
 * outcome_free). */
static void run_direct(sk_kernel *k, const char *spec, const model_req *req, outcome *o)
{
    memset(o, 0, sizeof *o);
    sk_err *err = NULL;
    sk_connector *c = conn_open(k, spec, &err);
    CHECK(c != NULL);
    if (!c) {
        o->err = err;
        o->st = err ? err->code : SK_NOMEM;
        return;
    }
    void *h = NULL;
    sk_status rc = c->vt->start(c->self, k, req, on_delta, on_done, o, &h, &err);
    CHECK_INT(rc, SK_OK);
    if (rc == SK_OK) {
        CHECK_INT(o->done, 0); /* never from inside start */
        loop_run_until(k, &o->done);
        CHECK_INT(o->done, 1);
    } else {
        o->st = rc;
        o->err = err;
    }
    conn_close(c);
}

static void outcome_free(outcome *o)
{
    resp_free(o->resp);
    err_free(o->err);
    buf_free(&o->d.text);
    memset(o, 0, sizeof *o);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd); /* nothing listens there now */
    return port;
}

/* ======================================================================
 * Ollama
 * ====================================================================== */

#define OLLAMA_REPLY(text)                                                   \
    "{\"json\":{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\"," \
    "\"message\":{\"role\":\"assistant\",\"content\":\"" text "\"},"         \
    "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":12,"       \
    "\"eval_count\":3}}"

static void ollama_spec(const mock *m, char *spec, size_t n)
{
    snprintf(spec, n, "ollama:llama3@%s", m->url);
}

TEST(test_ollama_plain)
{
    mock m;
    if (mock_start(&m, "\"responses\":[" OLLAMA_REPLY("Hello there") "]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    char *out;
    CHECK_INT(invoke(k, "hi", NULL, &out), SK_OK);
    CHECK_STR(out, "Hello there");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.prompt_tokens, 12);
    CHECK_INT(u.completion_tokens, 3);
    char *path = last_path(&m), *body = last_body(&m);
    CHECK_STR(path, "/api/chat");
    CHECK_CONTAINS(body, "\"model\":\"llama3\"");
    CHECK_CONTAINS(body, "\"stream\":false"); /* Ollama streams unless told */
    CHECK_CONTAINS(body, "{\"role\":\"user\",\"content\":\"Say hi\"}");
    CHECK(body && !strstr(body, "\"options\"")); /* nothing set, nothing sent */
    CHECK(body && !strstr(body, "\"format\""));
    free(path);
    free(body);

    /* directly: finish reason, model, status */
    sk_msg msg = {.role = "user", .content = "direct"};
    model_req r = make_req(&msg, 1);
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    if (o.resp) {
        CHECK_STR(o.resp->text, "Hello there");
        CHECK_STR(o.resp->finish_reason, "stop");
        CHECK_STR(o.resp->model, "llama3");
        CHECK_INT(o.resp->http_status, 200);
        CHECK_INT(o.resp->attempts, 1);
    }
    outcome_free(&o);
    sk_kernel_free(k);
    mock_stop(&m);
}

#define OLLAMA_CHUNK(text) \
    "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"" text "\"},\"done\":false}"
#define OLLAMA_DONE                                                           \
    "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"\"}," \
    "\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":8,\"eval_count\":4}"

TEST(test_ollama_stream)
{
    mock m;
    /* the second piece splits a line in two: framing must not care */
    if (mock_start(&m, "\"responses\":[{\"chunk_delay_ms\":5,\"chunks\":["
                       OLLAMA_CHUNK("The") "," OLLAMA_CHUNK(" quick") ","
                       "\"{\\\"model\\\":\\\"llama3\\\",\\\"message\\\":{\\\"content\\\"\","
                       "\":\\\" fox\\\"},\\\"done\\\":false}\\n\\n\","
                       OLLAMA_DONE "]}]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    sk_msg msg = {.role = "user", .content = "stream it"};
    model_req r = make_req(&msg, 1);
    r.stream = 1;
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    CHECK_INT(o.d.n, 3);
    CHECK_STR(o.d.text.p, "The| quick| fox|"); /* in order */
    if (o.resp) {
        CHECK_STR(o.resp->text, "The quick fox");
        CHECK_STR(o.resp->finish_reason, "length");
        CHECK_INT(o.resp->prompt_tokens, 8);
        CHECK_INT(o.resp->completion_tokens, 4);
    }
    outcome_free(&o);
    char *body = last_body(&m);
    CHECK_CONTAINS(body, "\"stream\":true");
    free(body);

    /* through the invoke path: Ollama's done_reason "length" is a cut
     * reply, never taken for a whole one; what streamed was the model's */
    deltas d = {{0}, 0};
    char *out;
    CHECK_INT(invoke(k, "x", &d, &out), SK_TRUNCATED);
    CHECK_CONTAINS(sk_errmsg(k), "cut by the token limit");
    CHECK_STR(d.text.p, "The| quick| fox|");
    sk_free(out);
    buf_free(&d.text);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_ollama_settings)
{
    mock m;
    if (mock_start(&m, "\"responses\":[" OLLAMA_REPLY("ok") "]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, "{\"schema\":1,\"type\":\"completion\","
                                    "\"completion\":{\"max_tokens\":50,\"temperature\":0.2,"
                                    "\"top_p\":0.9,\"presence_penalty\":0.5,"
                                    "\"frequency_penalty\":0.25,"
                                    "\"stop_sequences\":[\"###\",\"END\"]}}");
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    sk_free(out);
    char *body = last_body(&m);
    cJSON *b = cJSON_Parse(body ? body : "");
    cJSON *opts = cJSON_GetObjectItem(b, "options");
    CHECK(cJSON_IsObject(opts));
    CHECK_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(opts, "num_predict")), 50);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(opts, "temperature")) == 0.2);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(opts, "top_p")) == 0.9);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(opts, "presence_penalty")) == 0.5);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(opts, "frequency_penalty")) == 0.25);
    CHECK_CONTAINS(body, "\"stop\":[\"###\",\"END\"]");
    CHECK(cJSON_GetObjectItem(b, "max_tokens") == NULL); /* Ollama's name only */
    CHECK(cJSON_GetObjectItem(b, "temperature") == NULL); /* inside options */
    cJSON_Delete(b);
    free(body);

    /* a JSON schema goes in "format", compacted */
    sk_msg msg = {.role = "user", .content = "json please"};
    model_req r = make_req(&msg, 1);
    r.json_schema = "{ \"type\": \"object\", \"required\": [\"a\"] }";
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    outcome_free(&o);
    body = last_body(&m);
    CHECK_CONTAINS(body, "\"format\":{\"type\":\"object\",\"required\":[\"a\"]}");
    free(body);
    /* one that is not JSON still asks for JSON */
    r.json_schema = "{not json";
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    outcome_free(&o);
    body = last_body(&m);
    CHECK_CONTAINS(body, "\"format\":\"json\"");
    free(body);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_ollama_errors)
{
    mock m;
    if (mock_start(&m, "\"responses\":["
                       "{\"match\":\"missing\",\"status\":404,"
                       "\"json\":{\"error\":\"model \\\"nope\\\" not found, try pulling it first\"}},"
                       "{\"match\":\"garbage\",\"body\":\"this is not json\"},"
                       "{\"match\":\"badline\",\"chunks\":[" OLLAMA_CHUNK("a") ",\"{oops\\n\"]},"
                       "{\"match\":\"errline\",\"chunks\":[" OLLAMA_CHUNK("a") ","
                       "{\"error\":\"out of memory on GPU\"}]},"
                       "{\"match\":\"nodone\",\"chunks\":[" OLLAMA_CHUNK("a") "," OLLAMA_CHUNK("b") "]},"
                       "{\"match\":\"cutoff\",\"action\":\"cut\",\"chunks\":["
                       OLLAMA_CHUNK("a") "," OLLAMA_CHUNK("b") "," OLLAMA_CHUNK("c") "," OLLAMA_DONE "]}]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    char *out;
    CHECK_INT(invoke(k, "missing", NULL, &out), SK_MODEL);
    CHECK(out == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 404 from ");
    CHECK_CONTAINS(sk_errmsg(k), "/api/chat: model \"nope\" not found");
    char *js = NULL;
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK_CONTAINS(js, "\"http_status\":404");
    sk_free(js);
    CHECK_INT(mock_requests(&m), 1); /* 404 is not retried */

    CHECK_INT(invoke(k, "garbage", NULL, &out), SK_PROTOCOL);
    CHECK_CONTAINS(sk_errmsg(k), "not valid JSON");

    struct {
        const char *input;
        sk_status want;
        const char *needle;
    } streams[] = {
        {"badline", SK_PROTOCOL, "stream line is not valid JSON"},
        {"errline", SK_MODEL, "out of memory on GPU"},
        {"nodone", SK_PROTOCOL, "stream ended mid-reply"},
        {"cutoff", SK_PROTOCOL, "stream ended mid-reply"},
    };
    for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) {
        deltas d = {{0}, 0};
        int before = mock_requests(&m);
        CHECK_INT(invoke(k, streams[i].input, &d, &out), streams[i].want);
        CHECK(out == NULL);
        CHECK_CONTAINS(sk_errmsg(k), streams[i].needle);
        CHECK(d.n >= 1); /* deltas came first, so no retry */
        CHECK_INT(mock_requests(&m) - before, 1);
        buf_free(&d.text);
    }
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_ollama_retry)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},"
                       "\"json\":{\"error\":\"server busy, please try again\"}},"
                       OLLAMA_REPLY("after the wait") "]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    long long t0 = loop_now_ms();
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "after the wait");
    sk_free(out);
    CHECK(loop_now_ms() - t0 >= 900); /* Retry-After over the 10 ms backoff */
    CHECK_INT(mock_requests(&m), 2);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.retries, 1);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_ollama_host)
{
    mock m;
    if (mock_start(&m, "\"responses\":[" OLLAMA_REPLY("via env") "]") != 0)
        return;
    const char *port = strrchr(m.url, ':') + 1;
    char host[128];
    /* host:port, as `ollama serve` documents it */
    snprintf(host, sizeof host, "127.0.0.1:%s", port);
    setenv("OLLAMA_HOST", host, 1);
    sk_kernel *k = kernel_for("ollama:llama3", NULL);
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "via env");
    sk_free(out);
    sk_kernel_free(k);
    /* a URL, trailing slash and all */
    snprintf(host, sizeof host, "%s/", m.url);
    setenv("OLLAMA_HOST", host, 1);
    k = kernel_for("ollama:llama3", NULL);
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "via env");
    sk_free(out);
    sk_kernel_free(k);
    CHECK_INT(mock_requests(&m), 2);
    char *path = last_path(&m);
    CHECK_STR(path, "/api/chat");
    free(path);
    /* the spec's URL wins over the environment; a bare host gets the
     * default port (seen in the connection error) */
    int dead = free_port();
    snprintf(host, sizeof host, "http://127.0.0.1:%d", dead);
    setenv("OLLAMA_HOST", host, 1);
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    k = kernel_for(spec, NULL);
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    sk_free(out);
    sk_kernel_free(k);
    snprintf(host, sizeof host, "127.0.0.1:%d", dead);
    setenv("OLLAMA_HOST", host, 1);
    k = kernel_for("ollama:llama3", NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "0"), SK_OK);
    CHECK_INT(invoke(k, "x", NULL, &out), SK_NETWORK);
    char want[96];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/api/chat", dead);
    CHECK_CONTAINS(sk_errmsg(k), want);
    sk_kernel_free(k);
    setenv("OLLAMA_HOST", ":1", 1); /* ":port" means the default host */
    k = kernel_for("ollama:llama3", NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "0"), SK_OK);
    CHECK_INT(invoke(k, "x", NULL, &out), SK_NETWORK);
    CHECK_CONTAINS(sk_errmsg(k), "http://127.0.0.1:1/api/chat");
    sk_kernel_free(k);
    unsetenv("OLLAMA_HOST");
    mock_stop(&m);
}

/* Cancelling from inside the delta callback (curl's write callback) and
 * while waiting for bytes; a reply over the ceiling. */
typedef struct canceller {
    outcome o;
    sk_connector *c;
    sk_kernel *k;
    void *h;
} canceller;

static void cancel_on_delta(void *ud, const char *text, size_t len)
{
    canceller *x = ud;
    on_stream(&x->o.d, text, len);
    x->c->vt->cancel(x->c->self, x->k, x->h);
}

TEST(test_ollama_cancel_and_ceiling)
{
    mock m;
    if (mock_start(&m, "\"responses\":["
                       "{\"match\":\"huge\",\"action\":\"oversize\"},"
                       "{\"chunk_delay_ms\":300,\"chunks\":["
                       OLLAMA_CHUNK("one") "," OLLAMA_CHUNK(" two") "," OLLAMA_DONE "]}]") != 0)
        return;
    char spec[128];
    ollama_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    canceller x;
    memset(&x, 0, sizeof x);
    x.k = k;
    sk_err *err = NULL;
    x.c = conn_open(k, spec, &err);
    CHECK(x.c != NULL);
    if (!x.c) {
        err_free(err);
        sk_kernel_free(k);
        mock_stop(&m);
        return;
    }
    sk_msg msg = {.role = "user", .content = "stream"};
    model_req r = make_req(&msg, 1);
    r.stream = 1;
    long long t0 = loop_now_ms();
    CHECK_INT(x.c->vt->start(x.c->self, k, &r, cancel_on_delta, on_done, &x.o, &x.h, &err),
              SK_OK);
    while (loop_pump(k, 20))
        ;
    CHECK_INT(x.o.done, 0);   /* a cancelled request never finishes */
    CHECK_INT(x.o.d.n, 1);    /* and delivers nothing more */
    CHECK(loop_now_ms() - t0 < 550);
    buf_free(&x.o.d.text);
    /* cancelled while the stream is paused between lines */
    memset(&x.o, 0, sizeof x.o);
    CHECK_INT(x.c->vt->start(x.c->self, k, &r, on_delta, on_done, &x.o, &x.h, &err), SK_OK);
    while (x.o.d.n < 1 && loop_now_ms() - t0 < 5000)
        loop_pump(k, 20);
    x.c->vt->cancel(x.c->self, k, x.h);
    while (loop_pump(k, 20))
        ;
    CHECK_INT(x.o.done, 0);
    CHECK_INT(x.o.d.n, 1);
    buf_free(&x.o.d.text);
    conn_close(x.c);
    /* an endless body stops at the ceiling */
    CHECK_INT(sk_kernel_set_option(k, "max_response_bytes", "4096"), SK_OK);
    char *out;
    CHECK_INT(invoke(k, "huge", NULL, &out), SK_TOO_LARGE);
    CHECK_CONTAINS(sk_errmsg(k), "larger than 4096 bytes");
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_ollama_bad_specs)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    sk_err *err = NULL;
    CHECK(conn_open(k, "ollama:", &err) == NULL);
    CHECK(err && err->code == SK_USAGE);
    err_free(err);
    err = NULL;
    CHECK(conn_open(k, "ollama:m@ftp://x", &err) == NULL);
    CHECK(err && strstr(err->message, "http://"));
    err_free(err);
    err = NULL;
    sk_connector *c = conn_open(k, "ollama:qwen2.5:7b@http://127.0.0.1:9/", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->model, "qwen2.5:7b"); /* tags keep their colon */
        CHECK_STR(c->vt->name, "ollama");
        conn_close(c);
    }
    err_free(err);
    sk_kernel_free(k);
}

/* ======================================================================
 * Anthropic
 * ====================================================================== */

#define ANT_REPLY                                                              \
    "{\"json\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","  \
    "\"model\":\"claude-test-1\",\"content\":[{\"type\":\"text\",\"text\":\"Hello \"}," \
    "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"x\",\"input\":{}},"          \
    "{\"type\":\"text\",\"text\":\"world\"}],\"stop_reason\":\"end_turn\","      \
    "\"usage\":{\"input_tokens\":10,\"output_tokens\":2}}}"

static void ant_spec(const mock *m, char *spec, size_t n)
{
    snprintf(spec, n, "anthropic:claude-test@%s", m->url);
}

TEST(test_anthropic_plain)
{
    mock m;
    if (mock_start(&m, "\"responses\":[" ANT_REPLY "]") != 0)
        return;
    setenv("ANTHROPIC_API_KEY", KEY, 1);
    char spec[128];
    ant_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    char *out;
    CHECK_INT(invoke(k, "hi", NULL, &out), SK_OK);
    CHECK_STR(out, "Hello world"); /* text blocks joined, others skipped */
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.prompt_tokens, 10);
    CHECK_INT(u.completion_tokens, 2);
    char *path = last_path(&m), *body = last_body(&m);
    char *key = last_header(&m, "x-api-key");
    char *ver = last_header(&m, "anthropic-version");
    char *ct = last_header(&m, "content-type");
    CHECK_STR(path, "/v1/messages");
    CHECK_STR(key, KEY);
    CHECK_STR(ver, "2023-06-01");
    CHECK_STR(ct, "application/json");
    CHECK_CONTAINS(body, "\"model\":\"claude-test\"");
    CHECK_CONTAINS(body, "\"max_tokens\":1024"); /* required: a default */
    CHECK_CONTAINS(body, "\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}]");
    CHECK(body && !strstr(body, "\"stream\""));
    CHECK(body && !strstr(body, "\"system\""));
    free(path);
    free(body);
    free(key);
    free(ver);
    free(ct);

    sk_msg msg = {.role = "user", .content = "direct"};
    model_req r = make_req(&msg, 1);
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    if (o.resp) {
        CHECK_STR(o.resp->finish_reason, "end_turn");
        CHECK_STR(o.resp->model, "claude-test-1");
        CHECK_INT(o.resp->http_status, 200);
    }
    outcome_free(&o);
    sk_kernel_free(k);
    unsetenv("ANTHROPIC_API_KEY");
    mock_stop(&m);
}

TEST(test_anthropic_request_shape)
{
    mock m;
    if (mock_start(&m, "\"responses\":[" ANT_REPLY "]") != 0)
        return;
    unsetenv("ANTHROPIC_API_KEY");
    char spec[128];
    ant_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    sk_msg msgs[] = {{.role = "system", .content = "Be brief."}, {.role = "user", .content = "a"},      {.role = "user", .content = "b"},
                     {.role = "system", .content = "No lists."}, {.role = "assistant", .content = "c"}, {.role = "user", .content = "d"}};
    char *stop[] = {"STOP"};
    model_req r = make_req(msgs, 6);
    r.max_tokens = 77;
    r.temperature = 0.5;
    r.top_p = 0.75;
    r.presence_penalty = 0.1; /* not in this API: left out */
    r.stop = stop;
    r.n_stop = 1;
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    outcome_free(&o);
    char *body = last_body(&m);
    CHECK_CONTAINS(body, "\"system\":\"Be brief.\\n\\nNo lists.\"");
    CHECK_CONTAINS(body, "\"messages\":[{\"role\":\"user\",\"content\":\"a\\n\\nb\"},"
                         "{\"role\":\"assistant\",\"content\":\"c\"},"
                         "{\"role\":\"user\",\"content\":\"d\"}]");
    CHECK(body && !strstr(body, "\"role\":\"system\""));
    CHECK_CONTAINS(body, "\"max_tokens\":77");
    CHECK_CONTAINS(body, "\"temperature\":0.5");
    CHECK_CONTAINS(body, "\"top_p\":0.75");
    CHECK_CONTAINS(body, "\"stop_sequences\":[\"STOP\"]");
    CHECK(body && !strstr(body, "presence_penalty"));
    free(body);
    char *key = last_header(&m, "x-api-key");
    CHECK(key == NULL); /* no key, no header */
    free(key);
    /* a lone system prompt becomes the user turn */
    sk_msg only = {.role = "system", .content = "Just this."};
    r = make_req(&only, 1);
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    outcome_free(&o);
    body = last_body(&m);
    CHECK_CONTAINS(body, "\"messages\":[{\"role\":\"user\",\"content\":\"Just this.\"}]");
    free(body);
    sk_kernel_free(k);
    mock_stop(&m);
}

#define ANT_EVENTS_HEAD                                                       \
    "[\"message_start\",{\"type\":\"message_start\",\"message\":{\"id\":\"m\"," \
    "\"model\":\"claude-test-1\",\"content\":[],\"usage\":{\"input_tokens\":9," \
    "\"output_tokens\":1}}}],"                                                \
    "[\"content_block_start\",{\"type\":\"content_block_start\",\"index\":0,"   \
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}],"                   \
    "[\"ping\",{\"type\":\"ping\"}]"
#define ANT_DELTA(t) \
    "[\"content_block_delta\",{\"type\":\"content_block_delta\",\"index\":0," \
    "\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}]"
#define ANT_EVENTS_TAIL                                                        \
    "[\"content_block_stop\",{\"type\":\"content_block_stop\",\"index\":0}],"   \
    "[\"message_delta\",{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":" \
    "\"max_tokens\"},\"usage\":{\"output_tokens\":3}}],"                       \
    "[\"message_stop\",{\"type\":\"message_stop\"}]"

TEST(test_anthropic_stream)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"chunk_delay_ms\":5,\"sse_events\":["
                       ANT_EVENTS_HEAD "," ANT_DELTA("Hi") "," ANT_DELTA(" there")
                       ",[\"ping\",{\"type\":\"ping\"}]," ANT_DELTA("!") ","
                       ANT_EVENTS_TAIL "]}]") != 0)
        return;
    char spec[128];
    ant_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    sk_msg msg = {.role = "user", .content = "stream"};
    model_req r = make_req(&msg, 1);
    r.stream = 1;
    outcome o;
    run_direct(k, spec, &r, &o);
    CHECK_INT(o.st, SK_OK);
    CHECK_INT(o.d.n, 3);
    CHECK_STR(o.d.text.p, "Hi| there|!|");
    if (o.resp) {
        CHECK_STR(o.resp->text, "Hi there!");
        CHECK_STR(o.resp->finish_reason, "max_tokens");
        CHECK_STR(o.resp->model, "claude-test-1");
        CHECK_INT(o.resp->prompt_tokens, 9);
        CHECK_INT(o.resp->completion_tokens, 3);
    }
    outcome_free(&o);
    char *body = last_body(&m);
    CHECK_CONTAINS(body, "\"stream\":true");
    free(body);

    /* Anthropic's stop_reason "max_tokens": cut, so `truncated` */
    deltas d = {{0}, 0};
    char *out;
    CHECK_INT(invoke(k, "x", &d, &out), SK_TRUNCATED);
    CHECK_STR(d.text.p, "Hi| there|!|");
    sk_free(out);
    buf_free(&d.text);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.prompt_tokens, 9);
    CHECK_INT(u.completion_tokens, 3);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_anthropic_errors)
{
    mock m;
    if (mock_start(&m, "\"responses\":["
                       "{\"match\":\"toobig\",\"status\":400,\"json\":{\"type\":\"error\","
                       "\"error\":{\"type\":\"invalid_request_error\",\"message\":"
                       "\"max_tokens: 999999 > 8192\"}}},"
                       "{\"match\":\"badkey\",\"status\":401,\"json\":{\"type\":\"error\","
                       "\"error\":{\"type\":\"authentication_error\",\"message\":"
                       "\"invalid x-api-key " KEY "\"}}},"
                       "{\"match\":\"garbage\",\"body\":\"{\\\"content\\\": [\"},"
                       "{\"match\":\"errevent\",\"sse_events\":[" ANT_EVENTS_HEAD ","
                       ANT_DELTA("partial") ",[\"error\",{\"type\":\"error\",\"error\":"
                       "{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}]]},"
                       "{\"match\":\"badevent\",\"sse_events\":[" ANT_EVENTS_HEAD ","
                       ANT_DELTA("partial") ",[\"content_block_delta\",\"{nope\"]]},"
                       "{\"match\":\"nostop\",\"sse_events\":[" ANT_EVENTS_HEAD ","
                       ANT_DELTA("partial") "]},"
                       "{\"match\":\"cutoff\",\"action\":\"cut\",\"sse_events\":["
                       ANT_EVENTS_HEAD "," ANT_DELTA("a") "," ANT_DELTA("b") ","
                       ANT_DELTA("c") "," ANT_EVENTS_TAIL "]}]") != 0)
        return;
    setenv("ANTHROPIC_API_KEY", KEY, 1);
    char spec[128];
    ant_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    char trace[256];
    snprintf(trace, sizeof trace, "/tmp/skein-conn-trace-%d.jsonl", (int)getpid());
    unlink(trace);
    CHECK_INT(sk_kernel_set_trace(k, trace), SK_OK);
    char *out;
    CHECK_INT(invoke(k, "toobig", NULL, &out), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 400 from ");
    CHECK_CONTAINS(sk_errmsg(k), "max_tokens: 999999 > 8192 (invalid_request_error)");
    char *js = NULL;
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK_CONTAINS(js, "\"http_status\":400");
    sk_free(js);
    CHECK_INT(mock_requests(&m), 1); /* 400 is not retried */

    CHECK_INT(invoke(k, "badkey", NULL, &out), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "invalid x-api-key [redacted]");
    CHECK(strstr(sk_errmsg(k), KEY) == NULL);
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK(js && strstr(js, KEY) == NULL);
    sk_free(js);

    CHECK_INT(invoke(k, "garbage", NULL, &out), SK_PROTOCOL);
    CHECK_CONTAINS(sk_errmsg(k), "not valid JSON");

    struct {
        const char *input;
        sk_status want;
        const char *needle;
    } streams[] = {
        {"errevent", SK_MODEL, "Overloaded (overloaded_error)"},
        {"badevent", SK_PROTOCOL, "stream event is not valid JSON"},
        {"nostop", SK_PROTOCOL, "stream ended mid-reply"},
        {"cutoff", SK_PROTOCOL, "stream ended mid-reply"},
    };
    for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) {
        deltas d = {{0}, 0};
        CHECK_INT(invoke(k, streams[i].input, &d, &out), streams[i].want);
        CHECK(out == NULL);
        CHECK_CONTAINS(sk_errmsg(k), streams[i].needle);
        buf_free(&d.text);
    }
    sk_kernel_free(k); /* flushes the trace */
    char *t = NULL;
    size_t tn;
    CHECK_INT(sk_read_file(trace, 0, &t, &tn), SK_OK);
    CHECK(tn > 0);
    CHECK(t && strstr(t, KEY) == NULL);
    free(t);
    unlink(trace);
    unsetenv("ANTHROPIC_API_KEY");
    mock_stop(&m);
}

TEST(test_anthropic_retry)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":529,\"headers\":{\"retry-after\":\"1\"},"
                       "\"json\":{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                       "\"message\":\"Overloaded\"}}},"
                       "{\"status\":429,\"json\":{\"type\":\"error\",\"error\":{\"type\":"
                       "\"rate_limit_error\",\"message\":\"slow down\"}}},"
                       ANT_REPLY "]") != 0)
        return;
    char spec[128];
    ant_spec(&m, spec, sizeof spec);
    sk_kernel *k = kernel_for(spec, NULL);
    long long t0 = loop_now_ms();
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "Hello world");
    sk_free(out);
    CHECK(loop_now_ms() - t0 >= 900); /* retry-after honoured on the 529 */
    CHECK_INT(mock_requests(&m), 3);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.retries, 2);
    sk_kernel_free(k);
    mock_stop(&m);

    /* out of retries: the last error, with its status */
    if (mock_start(&m, "\"responses\":[{\"status\":529,\"json\":{\"type\":\"error\","
                       "\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}]") != 0)
        return;
    ant_spec(&m, spec, sizeof spec);
    k = kernel_for(spec, NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "1"), SK_OK);
    CHECK_INT(invoke(k, "x", NULL, &out), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 529 from ");
    char *js = NULL;
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK_CONTAINS(js, "\"http_status\":529");
    CHECK_CONTAINS(js, "\"attempts\":2");
    sk_free(js);
    CHECK_INT(mock_requests(&m), 2);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_anthropic_bad_specs)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    sk_err *err = NULL;
    CHECK(conn_open(k, "anthropic:", &err) == NULL);
    CHECK(err && err->code == SK_USAGE);
    err_free(err);
    err = NULL;
    CHECK(conn_open(k, "anthropic:m@api.example.com", &err) == NULL);
    CHECK(err && strstr(err->message, "http://"));
    err_free(err);
    err = NULL;
    sk_connector *c = conn_open(k, "anthropic:claude-x", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->model, "claude-x");
        CHECK_STR(c->spec, "anthropic:claude-x");
        conn_close(c);
    }
    err_free(err);
    sk_kernel_free(k);
}

int main(void)
{
    unsetenv("OLLAMA_HOST");
    unsetenv("ANTHROPIC_API_KEY");
    unsetenv("ANTHROPIC_BASE_URL");
    RUN(test_ollama_plain);
    RUN(test_ollama_stream);
    RUN(test_ollama_settings);
    RUN(test_ollama_errors);
    RUN(test_ollama_retry);
    RUN(test_ollama_host);
    RUN(test_ollama_cancel_and_ceiling);
    RUN(test_ollama_bad_specs);
    RUN(test_anthropic_plain);
    RUN(test_anthropic_request_shape);
    RUN(test_anthropic_stream);
    RUN(test_anthropic_errors);
    RUN(test_anthropic_retry);
    RUN(test_anthropic_bad_specs);
    return tu_finish();
}
