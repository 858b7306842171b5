/* test_local_model.c -- skein against a real model: llama.cpp's
 * llama-server serving the shared stories260K model (a 260K-parameter
 * TinyStories model that writes children's stories and follows no
 * instructions).  tests/local-model/setup builds and starts the server;
 * this test stops it at the end, also on failure.
 *
 * Built into ctest only with -DSKEIN_LOCAL_MODEL=ON.  A server that cannot
 * be started is a failure, never a skip: CI must not go green without
 * having talked to the model. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

/* Far below the longest story the model writes in this many tokens, but
 * a guard against a runaway reply filling memory. */
#define MAX_STREAM 65536

static char setup_path[1024];
static char model_spec[128];
static long server_pid;

static void stop_server(void)
{
    if (server_pid <= 0)
        return;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' stop %ld", setup_path, server_pid);
    server_pid = 0;
    if (system(cmd) != 0)
        fprintf(stderr, "local-model: stopping the server failed\n");
}

static void on_signal(int sig)
{
    /* the setup's owner watch stops the server once we are gone */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void find_setup(void)
{
    const char *src = getenv("SKEIN_SRC");
    if (src && *src)
        snprintf(setup_path, sizeof setup_path, "%s/tests/local-model/setup", src);
    else /* ctest runs integration tests from tests/ */
        snprintf(setup_path, sizeof setup_path, "local-model/setup");
}

/* Runs `setup start`; the server is stopped when this process exits,
 * however it exits.  Returns the exit status of setup, with the port in
 * *port. */
static int start_server(int *port)
{
    char env[32];
    snprintf(env, sizeof env, "%ld", (long)getpid());
    setenv("SKEIN_LOCAL_MODEL_OWNER", env, 1);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "'%s' start", setup_path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[128] = "";
    long pid = 0;
    *port = 0;
    if (fgets(line, sizeof line, p) && sscanf(line, "%d %ld", port, &pid) == 2)
        server_pid = pid;
    int st = pclose(p);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 0 && (*port <= 0 || pid <= 0))
        code = -2; /* setup said nothing we understand */
    return code;
}

/* Runs `setup start` with the model path overridden, expecting a
 * failure; returns what it printed on stderr (caller frees). */
static char *setup_failure(const char *model, int *code)
{
    char out[] = "/tmp/skein-local-model-XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0)
        return NULL;
    close(fd);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "SKEIN_TEST_MODEL='%s' '%s' start >/dev/null 2>'%s'", model,
             setup_path, out);
    int st = system(cmd);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *text = NULL;
    size_t n;
    if (sk_read_file(out, 0, &text, &n) != SK_OK)
        text = NULL;
    unlink(out);
    return text;
}

static sk_kernel *new_kernel(void)
{
    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    if (!k)
        return NULL;
    CHECK_INT(sk_kernel_set_model(k, model_spec), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "quiet", "1"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "timeout_ms", "60000"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "retries", "1"), SK_OK);
    return k;
}

static sk_status run(sk_kernel *k, const char *fn, const char *input,
                     const sk_invoke_opts *opts, char **out)
{
    sk_vars *v = NULL;
    *out = NULL;
    if (sk_vars_new(&v) != SK_OK)
        return SK_NOMEM;
    sk_vars_set(v, "input", input);
    sk_status rc = sk_invoke(k, fn, v, opts, out);
    if (rc != SK_OK)
        fprintf(stderr, "local-model: %s: %s\n", fn, sk_errmsg(k));
    sk_vars_free(v);
    return rc;
}

/* ---- the setup script's own checks -------------------------------------- */

TEST(test_setup_rejects_bad_model)
{
    int code;
    char *err = setup_failure("/nonexistent/stories.gguf", &code);
    CHECK(code != 0);
    CHECK_CONTAINS(err, "model not found");
    free(err);

    /* a file of the wrong content fails the checksum */
    const char *fake = tu_tmpfile("not a model", ".gguf");
    err = setup_failure(fake, &code);
    CHECK(code != 0);
    CHECK_CONTAINS(err, "sha256");
    free(err);
    unlink(fake);
}

/* ---- chat completion ------------------------------------------------------ */

TEST(test_chat)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    CHECK_INT(sk_kernel_add_semantic(k, "Story", "Tell", "{{$input}}",
                                     "{\"completion\":{\"max_tokens\":32}, \"truncated\": \"accept\"}"),
              SK_OK);
    char *out;
    CHECK_INT(run(k, "Story.Tell", "Once upon a time", NULL, &out), SK_OK);
    CHECK(out && strlen(out) > 0);
    printf("chat: %s\n", out ? out : "(null)");
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 1);
    CHECK(u.prompt_tokens > 0);
    CHECK(u.completion_tokens > 0);
    CHECK(u.completion_tokens <= 32);
    CHECK_INT(u.failures, 0);
    sk_free(out);
    sk_kernel_free(k);
}

/* ---- streaming ------------------------------------------------------------- */

typedef struct streamed {
    char text[MAX_STREAM];
    size_t len;
    int deltas;
    int overflow;
} streamed;

static void on_stream(void *ud, const char *text, size_t len)
{
    streamed *s = ud;
    s->deltas++;
    if (s->len + len >= sizeof s->text) {
        s->overflow = 1;
        return;
    }
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
}

TEST(test_stream)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    CHECK_INT(sk_kernel_add_semantic(k, "Story", "Tell", "{{$input}}",
                                     "{\"completion\":{\"max_tokens\":40}, \"truncated\": \"accept\","
                                     "\"uncertainty\": false}"),
              SK_OK);
    static streamed s;
    memset(&s, 0, sizeof s);
    sk_invoke_opts o = {0};
    o.stream = on_stream;
    o.stream_ud = &s;
    char *out;
    CHECK_INT(run(k, "Story.Tell", "The little dog", &o, &out), SK_OK);
    CHECK(s.deltas > 1);
    CHECK(!s.overflow);
    CHECK(out && strlen(out) > 0);
    CHECK_STR(s.text, out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK(u.completion_tokens > 0); /* stream_options.include_usage */
    sk_free(out);
    sk_kernel_free(k);
}

/* ---- temperature 0 ----------------------------------------------------------- */

TEST(test_deterministic)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    CHECK_INT(sk_kernel_add_semantic(k, "Story", "Same", "{{$input}}",
                                     "{\"completion\":{\"temperature\":0,\"max_tokens\":24}, "
                                     "\"truncated\": \"accept\"}"),
              SK_OK);
    char *a, *b;
    CHECK_INT(run(k, "Story.Same", "Lily found a red ball", NULL, &a), SK_OK);
    CHECK_INT(run(k, "Story.Same", "Lily found a red ball", NULL, &b), SK_OK);
    CHECK(a && *a);
    CHECK_STR(a, b);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 2); /* both went to the server, no cache between */
    /* a different prompt at temperature 0 is a different story */
    char *c;
    CHECK_INT(run(k, "Story.Same", "Tom had a big boat", NULL, &c), SK_OK);
    CHECK(a && c && strcmp(a, c) != 0);
    sk_free(a);
    sk_free(b);
    sk_free(c);
    sk_kernel_free(k);
}

/* ---- per-token logprobs ----------------------------------------------------- */

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

static void check_logprobs(const model_resp *r)
{
    CHECK(r->n_logprobs > 0);
    size_t bad = 0;
    for (size_t i = 0; i < r->n_logprobs; i++)
        if (!r->logprobs[i].token || !(r->logprobs[i].logprob <= 0) ||
            !isfinite(r->logprobs[i].logprob))
            bad++;
    CHECK_INT(bad, 0);
    /* one entry per generated token */
    if (r->completion_tokens > 0)
        CHECK_INT(r->n_logprobs, r->completion_tokens);
}

TEST(test_logprobs_direct)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    sk_err *err = NULL;
    sk_connector *c = conn_open(k, model_spec, &err);
    CHECK(c != NULL);
    if (!c) {
        err_free(err);
        sk_kernel_free(k);
        return;
    }
    sk_msg msg = {.role = "user", .content = "Once upon a time"};
    model_req r;
    memset(&r, 0, sizeof r);
    r.function = "Local.Direct";
    r.model = c->model;
    r.msgs = &msg;
    r.n_msgs = 1;
    r.max_tokens = 16;
    r.temperature = r.top_p = r.presence_penalty = r.frequency_penalty = NAN;
    r.logprobs = 1;

    for (int stream = 0; stream <= 1; stream++) {
        r.stream = stream;
        outcome o = {0};
        void *h = NULL;
        CHECK_INT(c->vt->start(c->self, k, &r, on_delta, on_done, &o, &h, &err), SK_OK);
        loop_run_until(k, &o.done);
        CHECK_INT(o.done, 1);
        CHECK_INT(o.st, SK_OK);
        if (o.err)
            fprintf(stderr, "local-model: %s\n", o.err->message);
        if (o.resp) {
            CHECK(o.resp->text && *o.resp->text);
            CHECK_INT(o.resp->http_status, 200);
            check_logprobs(o.resp);
            if (stream)
                CHECK(o.deltas > 1);
        }
        resp_free(o.resp);
        err_free(o.err);
    }
    conn_close(c);
    sk_kernel_free(k);
}

TEST(test_logprobs_policy_no_check)
{
    /* asked for and not judged: the call succeeds whatever they say */
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    CHECK_INT(sk_kernel_add_semantic(k, "Story", "Tell", "{{$input}}",
                                     "{\"completion\":{\"max_tokens\":24}, \"truncated\": \"accept\"}"),
              SK_OK);
    sk_invoke_opts o = {0};
    o.policy = "{\"uncertainty\":{\"logprobs\":{\"request\":true,\"check\":false}}}";
    char *out;
    CHECK_INT(run(k, "Story.Tell", "Compute the eigenvalues of a 3x3 Hermitian matrix", &o,
                  &out),
              SK_OK);
    CHECK(out && *out);
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.uncertain, 0);
    sk_kernel_free(k);
}

/* ---- uncertainty from real logprobs --------------------------------------- */

TEST(test_uncertain_from_logprobs)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    CHECK_INT(sk_kernel_add_semantic(k, "Math", "Solve", "{{$input}}",
                                     "{\"completion\":{\"temperature\":0,\"max_tokens\":32}, "
                                     "\"truncated\": \"accept\"}"),
              SK_OK);
    sk_invoke_opts o = {0};
    o.policy = "{\"uncertainty\":{\"logprobs\":{\"request\":true,\"check\":true,"
               "\"min_mean\":0.9}}}";
    char *out = NULL;
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "Compute the eigenvalues of a 3x3 Hermitian matrix");
    CHECK_INT(sk_invoke(k, "Math.Solve", v, &o, &out), SK_UNCERTAIN);
    sk_vars_free(v);
    CHECK(out == NULL);
    sk_free(out);
    const char *reason = sk_error_get(k, "reason");
    CHECK(reason && strncmp(reason, "logprobs", 8) == 0);
    if (reason)
        printf("uncertain: %s\n", reason);
    char *json = NULL;
    CHECK_INT(sk_error_json(k, &json), SK_OK);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    CHECK(root != NULL);
    if (root) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
        CHECK(cJSON_IsString(kind) && strcmp(kind->valuestring, "uncertain") == 0);
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "reason");
        CHECK(cJSON_IsString(r) && strstr(r->valuestring, "logprobs"));
        const cJSON *conf = cJSON_GetObjectItemCaseSensitive(root, "confidence");
        CHECK(cJSON_IsNumber(conf));
        if (cJSON_IsNumber(conf)) {
            CHECK(conf->valuedouble >= 0 && conf->valuedouble <= 1);
            /* below the threshold it was judged against */
            CHECK(conf->valuedouble < 0.9);
        }
        cJSON_Delete(root);
    }
    sk_free(json);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.uncertain, 1);
    sk_kernel_free(k);
}

/* ---- output constrained by a JSON schema ---------------------------------- */

/* The code points in a UTF-8 string. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

TEST(test_json_schema)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return;
    /* bounded fields: unbounded ones let the model ramble until
     * max_tokens cuts the JSON off.  The grammar still lets up to 21
     * whitespace characters sit between tokens, so the cap leaves room
     * for them: a cut reply is an error (truncated), not an answer. */
    const char *config =
        "{\"completion\":{\"max_tokens\":256},"
        "\"output\":{\"json_schema\":{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\",\"maxLength\":12},"
        "\"age\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9}},"
        "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}";
    sk_status rc = sk_kernel_add_semantic(k, "Story", "Child", "Describe {{$input}}", config);
    CHECK_INT(rc, SK_OK);
    if (rc != SK_OK) {
        fprintf(stderr, "local-model: output shape refused: %s\n", sk_errmsg(k));
        sk_kernel_free(k);
        return;
    }
    const char *inputs[5] = {"a girl", "a boy", "Lily", "a little bird", "Tom"};
    for (int i = 0; i < 5; i++) {
        char *out = NULL;
        CHECK_INT(run(k, "Story.Child", inputs[i], NULL, &out), SK_OK);
        printf("json_schema: %s\n", out ? out : "(null)");
        cJSON *root = out ? cJSON_Parse(out) : NULL;
        CHECK(cJSON_IsObject(root));
        if (!root) {
            fprintf(stderr, "local-model: not JSON: %s\n", out ? out : "(null)");
            sk_free(out);
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
        const cJSON *age = cJSON_GetObjectItemCaseSensitive(root, "age");
        /* maxLength counts characters, not bytes ("It\u2019s" is 4) */
        CHECK(cJSON_IsString(name) && utf8_chars(name->valuestring) <= 12);
        CHECK(cJSON_IsNumber(age) && age->valuedouble == floor(age->valuedouble) &&
              age->valueint >= 1 && age->valueint <= 9);
        CHECK_INT(cJSON_GetArraySize(root), 2);
        cJSON_Delete(root);
        sk_free(out);
    }
    sk_kernel_free(k);
}

int main(void)
{
    /* a response cache would answer the second temperature-0 call itself */
    setenv("SKEIN_CACHE", "off", 1);
    find_setup();
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int port = 0;
    int code = start_server(&port);
    if (code != 0) {
        fprintf(stderr,
                "local-model: FAILED to start llama-server with %s start (exit %d); "
                "see the messages above\n",
                setup_path, code);
        stop_server();
        tu_failed++;
        return tu_finish();
    }
    atexit(stop_server);
    snprintf(model_spec, sizeof model_spec, "openai:stories@http://127.0.0.1:%d/v1", port);
    printf("local-model: llama-server on port %d (pid %ld)\n", port, server_pid);

    RUN(test_setup_rejects_bad_model);
    RUN(test_chat);
    RUN(test_stream);
    RUN(test_deterministic);
    RUN(test_logprobs_direct);
    RUN(test_logprobs_policy_no_check);
    RUN(test_uncertain_from_logprobs);
    RUN(test_json_schema);
    stop_server();
    return tu_finish();
}
