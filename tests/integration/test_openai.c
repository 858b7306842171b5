/* test_openai.c -- the OpenAI connector end to end, through the public
 * API, against the loopback mock server (tests/support/mockserver.c). */
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

#define KEY "sk-secret-test-key"

typedef struct mock {
    char url[64];
    char model[160];
    int pid;
    char log[256];
} mock;

/* Starts the mock with the scenario's JSON body (without the outer
 * braces' "log" member, which is added here). */
static int mock_start(mock *m, const char *scenario_members)
{
    static int seq;
    snprintf(m->log, sizeof m->log, "/tmp/skein-openai-%d-%d.jsonl", (int)getpid(), seq++);
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
    snprintf(m->model, sizeof m->model, "openai:test@%s/v1", m->url);
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

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int mock_requests(const mock *m)
{
    char *s = mock_log(m);
    int n = count_lines(s);
    free(s);
    return n;
}

/* A kernel with T.Echo on the mock, short retries, quiet. */
static sk_kernel *kernel_for(const mock *m, const char *config)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    if (!k)
        return NULL;
    /* connector tests: no checks after the model, so replies stream */
    CHECK_INT(sk_kernel_add_semantic(k, "T", "Echo", "Say {{$input}}",
                                     config ? config : "{\"uncertainty\": false}"), SK_OK);
    CHECK_INT(sk_kernel_set_model(k, m->model), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "quiet", "1"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "timeout_ms", "10000"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retry_base_ms", "10"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retries", "3"), SK_OK);
    return k;
}

/* Opens the mock's connector directly, bypassing the invoke path, for
 * tests that drive start/cancel themselves.  On failure it records the
 * check, frees the kernel, stops the mock and returns NULL. */
static sk_connector *open_direct(sk_kernel *k, mock *m)
{
    sk_err *err = NULL;
    sk_connector *c = conn_open(k, m->model, &err);
    CHECK(c != NULL);
    if (!c) {
        err_free(err);
        sk_kernel_free(k);
        mock_stop(m);
    }
    return c;
}

static sk_status invoke(sk_kernel *k, const char *input, const sk_invoke_opts *opts,
                        char **out)
{
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", input);
    *out = NULL;
    sk_status rc = sk_invoke(k, "T.Echo", v, opts, out);
    sk_vars_free(v);
    return rc;
}

TEST(test_plain_reply)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"reply\":\"Hello world\","
                       "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    char *out;
    CHECK_INT(invoke(k, "hi", NULL, &out), SK_OK);
    CHECK_STR(out, "Hello world");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 1);
    CHECK_INT(u.prompt_tokens, 7);
    CHECK_INT(u.completion_tokens, 3);
    CHECK_INT(u.retries, 0);
    /* a second call reuses the connection and adds up */
    CHECK_INT(invoke(k, "again", NULL, &out), SK_OK);
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 2);
    CHECK_INT(u.prompt_tokens, 14);
    CHECK_INT(u.completion_tokens, 6);
    char *log = mock_log(&m);
    CHECK_INT(count_lines(log), 2);
    CHECK_CONTAINS(log, "\"path\":\"/v1/chat/completions\"");
    CHECK_CONTAINS(log, "\"method\":\"POST\"");
    CHECK_CONTAINS(log, "\"content-type\":\"application/json\"");
    CHECK_CONTAINS(log, "\\\"model\\\":\\\"test\\\"");
    CHECK_CONTAINS(log, "Say hi");
    CHECK(strstr(log, "authorization") == NULL); /* no key, no header */
    CHECK(strstr(log, "\\\"stream\\\"") == NULL);
    free(log);
    sk_kernel_free(k);
    mock_stop(&m);
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
}

TEST(test_streamed_reply)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"stream\":\"The quick brown fox jumps\","
                       "\"chunk_delay_ms\":5,"
                       "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5}}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    deltas d = {{0}, 0};
    sk_invoke_opts o = {.stream = on_stream, .stream_ud = &d};
    char *out;
    CHECK_INT(invoke(k, "fox", &o, &out), SK_OK);
    CHECK_STR(out, "The quick brown fox jumps");
    CHECK_INT(d.n, 5); /* one per word, in order */
    CHECK_STR(d.text.p, "The quick brown fox jumps");
    sk_free(out);
    buf_free(&d.text);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.prompt_tokens, 4);
    CHECK_INT(u.completion_tokens, 5);
    char *log = mock_log(&m);
    CHECK_CONTAINS(log, "\\\"stream\\\":true");
    CHECK_CONTAINS(log, "\\\"include_usage\\\":true");
    free(log);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* ---- the connector directly: logprobs and cancel ---------------------- */

typedef struct outcome {
    int done;
    sk_status st;
    model_resp *resp;
    sk_err *err;
    int deltas;
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
    (void)text;
    (void)len;
    ((outcome *)ud)->deltas++;
}

static model_req simple_req(const sk_msg *msg)
{
    model_req r;
    memset(&r, 0, sizeof r);
    r.function = "T.Direct";
    r.model = "test";
    r.msgs = msg;
    r.n_msgs = 1;
    r.max_tokens = -1;
    r.temperature = r.top_p = r.presence_penalty = r.frequency_penalty = NAN;
    return r;
}

TEST(test_logprobs)
{
    mock m;
    if (mock_start(&m, "\"responses\":["
                       "{\"match\":\"STREAM\",\"stream\":\"a b\",\"logprobs\":[[\"a\",-0.5],[\" b\",-1.5]]},"
                       "{\"reply\":\"a b\",\"logprobs\":[[\"a\",-0.25],[\" b\",-0.75]]}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    sk_connector *c = open_direct(k, &m);
    if (!c)
        return;
    sk_err *err = NULL;
    CHECK_STR(c->model, "test");
    sk_msg msg = {.role = "user", .content = "plain"};
    model_req r = simple_req(&msg);
    r.logprobs = 1;
    r.top_logprobs = 2;
    outcome o = {0};
    void *h = NULL;
    CHECK_INT(c->vt->start(c->self, k, &r, on_delta, on_done, &o, &h, &err), SK_OK);
    CHECK(o.done == 0); /* never from inside start */
    loop_run_until(k, &o.done);
    CHECK_INT(o.done, 1);
    CHECK_INT(o.st, SK_OK);
    if (o.resp) {
        CHECK_STR(o.resp->text, "a b");
        CHECK_STR(o.resp->finish_reason, "stop");
        CHECK_STR(o.resp->model, "test");
        CHECK_INT(o.resp->http_status, 200);
        CHECK_INT(o.resp->attempts, 1);
        CHECK_INT(o.resp->n_logprobs, 2);
        if (o.resp->n_logprobs == 2) {
            CHECK_STR(o.resp->logprobs[1].token, " b");
            CHECK(o.resp->logprobs[1].logprob == -0.75);
        }
    }
    resp_free(o.resp);
    err_free(o.err);

    /* streamed: logprobs arrive per chunk */
    sk_msg smsg = {.role = "user", .content = "STREAM please"};
    r = simple_req(&smsg);
    r.logprobs = 1;
    r.stream = 1;
    memset(&o, 0, sizeof o);
    CHECK_INT(c->vt->start(c->self, k, &r, on_delta, on_done, &o, &h, &err), SK_OK);
    loop_run_until(k, &o.done);
    CHECK_INT(o.st, SK_OK);
    CHECK_INT(o.deltas, 2);
    if (o.resp) {
        CHECK_STR(o.resp->text, "a b");
        CHECK_INT(o.resp->n_logprobs, 2);
        if (o.resp->n_logprobs == 2)
            CHECK(o.resp->logprobs[0].logprob == -0.5);
    }
    resp_free(o.resp);
    err_free(o.err);
    char *log = mock_log(&m);
    CHECK_CONTAINS(log, "\\\"logprobs\\\":true,\\\"top_logprobs\\\":2");
    free(log);
    conn_close(c);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_cancel)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"match\":\"slow\",\"reply\":\"late\",\"delay_ms\":3000},"
                       "{\"status\":503,\"json\":{\"error\":\"busy\"}}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    sk_connector *c = open_direct(k, &m);
    if (!c)
        return;
    sk_err *err = NULL;
    /* in flight */
    sk_msg msg = {.role = "user", .content = "slow"};
    model_req r = simple_req(&msg);
    outcome o = {0};
    void *h = NULL;
    CHECK_INT(c->vt->start(c->self, k, &r, on_delta, on_done, &o, &h, &err), SK_OK);
    long long t0 = loop_now_ms();
    while (loop_now_ms() - t0 < 200)
        loop_pump(k, 20);
    c->vt->cancel(c->self, k, h);
    while (loop_pump(k, 20))
        ;
    CHECK_INT(o.done, 0);
    CHECK(loop_now_ms() - t0 < 2500);
    /* waiting on a retry timer (503 with a long backoff) */
    CHECK_INT(sk_kernel_set_option(k, "retry_base_ms", "5000"), SK_OK);
    sk_msg msg2 = {.role = "user", .content = "fast"};
    r = simple_req(&msg2);
    CHECK_INT(c->vt->start(c->self, k, &r, on_delta, on_done, &o, &h, &err), SK_OK);
    t0 = loop_now_ms();
    while (mock_requests(&m) < 2 && loop_now_ms() - t0 < 3000)
        loop_pump(k, 20);
    loop_pump(k, 50); /* the 503 is read and a retry scheduled */
    c->vt->cancel(c->self, k, h);
    while (loop_pump(k, 20))
        ;
    CHECK_INT(o.done, 0);
    CHECK_INT(mock_requests(&m), 2);
    conn_close(c);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* ---- retries ----------------------------------------------------------- */

TEST(test_429_retry_after)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},"
                       "\"json\":{\"error\":{\"message\":\"slow down\"}}},"
                       "{\"reply\":\"finally\"}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    long long t0 = loop_now_ms();
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "finally");
    sk_free(out);
    CHECK(loop_now_ms() - t0 >= 900); /* Retry-After honoured over 10 ms backoff */
    CHECK_INT(mock_requests(&m), 2);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.retries, 1);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_500_then_success)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":500,\"body\":\"oops\"},"
                       "{\"status\":502,\"body\":\"<html>bad gateway</html>\","
                       "\"headers\":{\"Content-Type\":\"text/html\"}},"
                       "{\"reply\":\"recovered\"}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_OK);
    CHECK_STR(out, "recovered");
    sk_free(out);
    CHECK_INT(mock_requests(&m), 3);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_503_exhausted)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":503,"
                       "\"json\":{\"error\":{\"message\":\"engine overloaded\"}}}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "2"), SK_OK);
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_MODEL);
    CHECK(out == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 503 from ");
    CHECK_CONTAINS(sk_errmsg(k), "/v1/chat/completions: engine overloaded");
    char *js = NULL;
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK_CONTAINS(js, "\"http_status\":503");
    CHECK_CONTAINS(js, "\"kind\":\"model\"");
    CHECK_CONTAINS(js, "\"attempts\":3");
    sk_free(js);
    CHECK_INT(mock_requests(&m), 3); /* 1 + 2 retries */
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_401_not_retried_no_key)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"status\":401,\"json\":{\"error\":{"
                       "\"message\":\"Incorrect API key provided: " KEY ". Check it.\"}}}]") != 0)
        return;
    setenv("OPENAI_API_KEY", KEY, 1);
    sk_kernel *k = kernel_for(&m, NULL);
    char trace[256];
    snprintf(trace, sizeof trace, "/tmp/skein-openai-trace-%d.jsonl", (int)getpid());
    unlink(trace);
    CHECK_INT(sk_kernel_set_trace(k, trace), SK_OK);
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 401");
    CHECK_CONTAINS(sk_errmsg(k), "Incorrect API key provided");
    CHECK(strstr(sk_errmsg(k), KEY) == NULL);
    char *js = NULL;
    CHECK_INT(sk_error_json(k, &js), SK_OK);
    CHECK_CONTAINS(js, "\"http_status\":401");
    CHECK(js && strstr(js, KEY) == NULL);
    sk_free(js);
    CHECK_INT(mock_requests(&m), 1);
    /* the key was sent, as a bearer token */
    char *log = mock_log(&m);
    CHECK_CONTAINS(log, "\"authorization\":\"Bearer " KEY "\"");
    free(log);
    sk_kernel_free(k); /* flushes and closes the trace */
    char *t = NULL;
    size_t tn;
    CHECK_INT(sk_read_file(trace, 0, &t, &tn), SK_OK);
    CHECK(tn > 0);
    CHECK(t && strstr(t, KEY) == NULL);
    free(t);
    unlink(trace);
    unsetenv("OPENAI_API_KEY");
    mock_stop(&m);
}

/* ---- transport and reply failures -------------------------------------- */

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

TEST(test_connection_refused)
{
    mock m;
    memset(&m, 0, sizeof m);
    snprintf(m.model, sizeof m.model, "openai:test@http://127.0.0.1:%d/v1", free_port());
    sk_kernel *k = kernel_for(&m, NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "1"), SK_OK);
    char *out;
    CHECK_INT(invoke(k, "x", NULL, &out), SK_NETWORK);
    CHECK_CONTAINS(sk_errmsg(k), "127.0.0.1");
    sk_kernel_free(k);
}

static void expect_failure(const char *scenario, const char *opt, const char *val,
                           int stream, sk_status want, const char *needle,
                           int want_requests)
{
    mock m;
    if (mock_start(&m, scenario) != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    CHECK_INT(sk_kernel_set_option(k, "retries", "1"), SK_OK);
    if (opt)
        CHECK_INT(sk_kernel_set_option(k, opt, val), SK_OK);
    deltas d = {{0}, 0};
    sk_invoke_opts o = {.stream = on_stream, .stream_ud = &d};
    long long t0 = loop_now_ms();
    char *out;
    CHECK_INT(invoke(k, "x", stream ? &o : NULL, &out), want);
    CHECK(out == NULL);
    sk_free(out);
    CHECK(loop_now_ms() - t0 < 5000);
    CHECK_CONTAINS(sk_errmsg(k), needle);
    if (want_requests >= 0)
        CHECK_INT(mock_requests(&m), want_requests);
    buf_free(&d.text);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_failures)
{
    /* deltas were delivered, so the cut stream is not retried */
    expect_failure("\"responses\":[{\"stream\":\"one two three four five six seven\","
                   "\"action\":\"cut\"}]",
                   NULL, NULL, 1, SK_PROTOCOL, "stream ended mid-reply", 1);
    /* a stream that ends cleanly but never finishes */
    expect_failure("\"responses\":[{\"sse\":[{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}]}]",
                   NULL, NULL, 1, SK_PROTOCOL, "stream ended mid-reply", 1);
    expect_failure("\"responses\":[{\"body\":\"{not json\"}]", NULL, NULL, 0,
                   SK_PROTOCOL, "not valid JSON", 1);
    expect_failure("\"responses\":[{\"json\":{\"choices\":[]}}]", NULL, NULL, 0,
                   SK_PROTOCOL, "choices", 1);
    expect_failure("\"responses\":[{\"json\":{\"choices\":[{\"message\":{\"content\":7}}]}}]",
                   NULL, NULL, 0, SK_PROTOCOL, "content is not a string", 1);
    expect_failure("\"responses\":[{\"action\":\"wrong_type\"}]", NULL, NULL, 0,
                   SK_PROTOCOL, "text/html", 1);
    /* a bad chunk inside a stream */
    expect_failure("\"responses\":[{\"sse\":[\"{broken\"]}]", NULL, NULL, 1,
                   SK_PROTOCOL, "not valid JSON", 1);
    /* retried once (retries=1), then a timeout */
    expect_failure("\"responses\":[{\"action\":\"stall\"}]", "timeout_ms", "300", 0,
                   SK_TIMEOUT, "within 300 ms", 2);
    expect_failure("\"responses\":[{\"action\":\"oversize\"}]", "max_response_bytes",
                   "100000", 0, SK_TOO_LARGE, "larger than 100000 bytes", 1);
    /* a finite reply just over the ceiling */
    char big[1400];
    memset(big, 'z', 1200);
    big[1200] = '\0';
    char *sc = sk_asprintf("\"responses\":[{\"reply\":\"%s\"}]", big);
    expect_failure(sc, "max_response_bytes", "1024", 0, SK_TOO_LARGE, "larger than 1024", 1);
    free(sc);
    expect_failure("\"responses\":[{\"action\":\"close\"}]", NULL, NULL, 0,
                   SK_NETWORK, "/v1/chat/completions", 2);
    expect_failure("\"responses\":[{\"action\":\"reset\"}]", NULL, NULL, 0,
                   SK_NETWORK, "/v1/chat/completions", 2);
    /* a 400 is the caller's fault: not retried */
    expect_failure("\"responses\":[{\"status\":400,\"json\":{\"detail\":\"bad model\"}}]",
                   NULL, NULL, 0, SK_MODEL, "HTTP 400 from", 1);
}

TEST(test_trickle)
{
    mock m;
    if (mock_start(&m, "\"responses\":[{\"stream\":\"slow but sure\",\"action\":\"trickle\","
                       "\"chunk_delay_ms\":0}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    deltas d = {{0}, 0};
    sk_invoke_opts o = {.stream = on_stream, .stream_ud = &d};
    char *out;
    CHECK_INT(invoke(k, "x", &o, &out), SK_OK);
    CHECK_STR(out, "slow but sure");
    CHECK_STR(d.text.p, "slow but sure");
    sk_free(out);
    buf_free(&d.text);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_concurrent)
{
    mock m;
    if (mock_start(&m, "\"echo\":true,\"responses\":[{\"delay_ms\":100}]") != 0)
        return;
    sk_kernel *k = kernel_for(&m, NULL);
    enum { N = 50 };
    sk_call *calls[N];
    long long t0 = loop_now_ms();
    for (int i = 0; i < N; i++) {
        char in[32];
        snprintf(in, sizeof in, "n%d", i);
        sk_vars *v = NULL;
        sk_vars_new(&v);
        sk_vars_set(v, "input", in);
        calls[i] = NULL;
        CHECK_INT(sk_invoke_async(k, "T.Echo", v, NULL, &calls[i]), SK_OK);
        sk_vars_free(v);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (!calls[i])
            continue;
        char want[32];
        snprintf(want, sizeof want, "Say n%d", i);
        if (sk_call_wait(calls[i]) == SK_OK && sk_call_result(calls[i]) &&
            strcmp(sk_call_result(calls[i]), want) == 0)
            ok++;
        else
            fprintf(stderr, "call %d: %s\n", i,
                    sk_call_errmsg(calls[i]) ? sk_call_errmsg(calls[i]) : "wrong text");
        sk_call_free(calls[i]);
    }
    CHECK_INT(ok, N);
    CHECK(loop_now_ms() - t0 < 3000); /* concurrent, not 50 x 100 ms */
    CHECK_INT(mock_requests(&m), N);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_settings_in_request)
{
    mock m;
    if (mock_start(&m, "\"echo\":true") != 0)
        return;
    sk_kernel *k = kernel_for(&m, "{\"schema\":1,\"type\":\"completion\","
                                  "\"completion\":{\"max_tokens\":77,\"temperature\":0.3,"
                                  "\"top_p\":0.9,\"presence_penalty\":0.5,"
                                  "\"frequency_penalty\":0.25,"
                                  "\"stop_sequences\":[\"###\"]}}");
    char *out;
    CHECK_INT(invoke(k, "settings \"quoted\"", NULL, &out), SK_OK);
    CHECK_STR(out, "Say settings \"quoted\"");
    sk_free(out);
    char *log = mock_log(&m);
    CHECK_CONTAINS(log, "\\\"max_tokens\\\":77");
    CHECK_CONTAINS(log, "\\\"temperature\\\":0.3");
    CHECK_CONTAINS(log, "\\\"top_p\\\":0.9");
    CHECK_CONTAINS(log, "\\\"presence_penalty\\\":0.5");
    CHECK_CONTAINS(log, "\\\"frequency_penalty\\\":0.25");
    CHECK_CONTAINS(log, "\\\"stop\\\":[\\\"###\\\"]");
    CHECK_CONTAINS(log, "\\\"role\\\":\\\"user\\\"");
    CHECK_CONTAINS(log, "Say settings \\\\\\\"quoted\\\\\\\"");
    free(log);
    sk_kernel_free(k);
    mock_stop(&m);
}

TEST(test_bad_specs)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    sk_err *err = NULL;
    sk_connector *c = conn_open(k, "openai:", &err);
    CHECK(c == NULL);
    CHECK(err != NULL);
    err_free(err);
    err = NULL;
    c = conn_open(k, "openai:m@ftp://x", &err);
    CHECK(c == NULL);
    CHECK(err && strstr(err->message, "http://"));
    err_free(err);
    /* a trailing slash on the base URL is fine */
    err = NULL;
    c = conn_open(k, "openai:gpt@http://127.0.0.1:9/v1/", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->model, "gpt");
        conn_close(c);
    }
    err_free(err);
    sk_kernel_free(k);
}

int main(void)
{
    RUN(test_plain_reply);
    RUN(test_streamed_reply);
    RUN(test_logprobs);
    RUN(test_cancel);
    RUN(test_429_retry_after);
    RUN(test_500_then_success);
    RUN(test_503_exhausted);
    RUN(test_401_not_retried_no_key);
    RUN(test_connection_refused);
    RUN(test_failures);
    RUN(test_trickle);
    RUN(test_concurrent);
    RUN(test_settings_in_request);
    RUN(test_bad_specs);
    return tu_finish();
}
