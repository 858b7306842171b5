/* test_kernel.c -- the kernel, the registry and the invoke path, driven
 * through the public API with native C functions and the scripted model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static sk_status upper(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)ud;
    const char *in = sk_vars_get(args, "input");
    if (!in)
        in = "";
    char *s = malloc(strlen(in) + 1);
    for (size_t i = 0; in[i]; i++)
        s[i] = (char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
    s[strlen(in)] = '\0';
    *out = s;
    return SK_OK;
}

static sk_status fails(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)args;
    (void)out;
    (void)ud;
    sk_set_error(k, SK_SCRIPT, "native failure on purpose");
    return SK_SCRIPT;
}

static int counter;
static sk_status count(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)args;
    (void)ud;
    char buf[32];
    snprintf(buf, sizeof buf, "%d", ++counter);
    *out = strdup(buf);
    return SK_OK;
}

static sk_status join(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)ud;
    const char *a = sk_vars_get(args, "a"), *b = sk_vars_get(args, "b");
    char buf[256];
    snprintf(buf, sizeof buf, "%s+%s", a ? a : "?", b ? b : "?");
    *out = strdup(buf);
    return SK_OK;
}

static sk_kernel *new_kernel(void)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_add_native(k, "T", "Upper", "upper-cases", NULL, 0, upper, NULL) == SK_OK);
    CHECK(sk_kernel_add_native(k, "T", "Fail", NULL, NULL, 0, fails, NULL) == SK_OK);
    CHECK(sk_kernel_add_native(k, "T", "Count", NULL, NULL, 0, count, NULL) == SK_OK);
    sk_param_info ps[] = {{"a", "first", NULL, 1}, {"b", "second", "B!", 0}};
    CHECK(sk_kernel_add_native(k, "T", "Join", "joins", ps, 2, join, NULL) == SK_OK);
    return k;
}

static const char *rules_path(void)
{
    static const char *p;
    if (!p)
        p = tu_tmpfile(
            "{\"rules\":["
            "{\"match\":\"^Summarize: (?s:.*)HELLO\",\"reply\":\"a greeting\"},"
            "{\"match\":\"^slow\",\"reply\":\"done\",\"delay_ms\":200},"
            "{\"match\":\"^glacial\",\"reply\":\"done\",\"delay_ms\":2000},"
            "{\"match\":\"^broken\",\"error\":{\"kind\":\"model\",\"message\":\"server on fire\",\"http_status\":500}},"
            "{\"match\":\"^echo\",\"reply\":\"<{{echo}}>\"},"
            "{\"match\":\"^twice\",\"replies\":[\"one\",\"two\"]},"
            "{\"match\":\"^lp\",\"reply\":\"x\",\"logprobs\":[[\"x\",-0.5]]}"
            "]}",
            ".json");
    return p;
}

static char *invoke1(sk_kernel *k, const char *fn, const char *input, sk_status *st)
{
    sk_vars *v;
    sk_vars_new(&v);
    if (input)
        sk_vars_set(v, "input", input);
    char *out = NULL;
    *st = sk_invoke(k, fn, v, NULL, &out);
    sk_vars_free(v);
    return out;
}

TEST(test_vars)
{
    sk_vars *v;
    CHECK(sk_vars_new(&v) == SK_OK);
    CHECK(sk_vars_set(v, "Input", "x") == SK_OK);
    CHECK_STR(sk_vars_get(v, "input"), "x");
    CHECK(sk_vars_set(v, "INPUT", "y") == SK_OK);
    CHECK_INT(sk_vars_count(v), 1);
    CHECK_STR(sk_vars_get(v, "input"), "y");
    CHECK(sk_vars_set(v, "input", NULL) == SK_OK);
    CHECK_INT(sk_vars_count(v), 0);
    CHECK(sk_vars_get(v, "input") == NULL);
    CHECK(sk_vars_at(v, 0, NULL, NULL) == SK_USAGE);
    sk_vars_free(v);
    sk_vars_free(NULL);
}

TEST(test_strerror)
{
    for (int c = SK_OK; c <= SK_STATUS_MAX; c++) {
        CHECK(strcmp(sk_strerror((sk_status)c), "unknown error") != 0);
        CHECK(strcmp(sk_status_kind((sk_status)c), "unknown") != 0);
    }
    CHECK_STR(sk_status_kind(SK_UNCERTAIN), "uncertain");
    CHECK_STR(sk_version(), SKEIN_VERSION);
}

TEST(test_options)
{
    sk_kernel *k = new_kernel();
    CHECK(sk_kernel_set_option(k, "timeout_ms", "1500") == SK_OK);
    CHECK(sk_kernel_set_option(k, "timeout_ms", "soon") == SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "timeout_ms");
    CHECK(sk_kernel_set_option(k, "bogus", "1") == SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "unknown option");
    CHECK(sk_kernel_set_model(k, "nocolon") == SK_USAGE);
    CHECK(sk_kernel_set_model(k, "openai:gpt-x") == SK_OK);
    CHECK_STR(sk_kernel_model(k), "openai:gpt-x");
    sk_kernel_free(k);
    sk_kernel_free(NULL);
}

TEST(test_registry)
{
    sk_kernel *k = new_kernel();
    CHECK_INT(sk_kernel_function_count(k), 4);
    sk_function_info fi;
    CHECK(sk_kernel_function_at(k, 0, &fi) == SK_OK);
    CHECK_STR(fi.full_name, "T.Count"); /* sorted */
    CHECK(sk_kernel_function_find(k, "t.join", &fi) == SK_OK);
    CHECK_STR(fi.full_name, "T.Join");
    CHECK_INT(fi.n_params, 2);
    CHECK_STR(fi.params[1].default_value, "B!");
    CHECK_STR(fi.kind, "native");
    CHECK(sk_kernel_function_find(k, "T.Nope", &fi) == SK_NOT_FOUND);
    CHECK(sk_kernel_add_native(k, "Bad Skill", "x", NULL, NULL, 0, upper, NULL) == SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "invalid function name");
    /* replacing keeps one entry */
    CHECK(sk_kernel_add_native(k, "T", "Upper", "again", NULL, 0, upper, NULL) == SK_OK);
    CHECK_INT(sk_kernel_function_count(k), 4);
    CHECK(sk_kernel_function_find(k, "T.Upper", &fi) == SK_OK);
    CHECK_STR(fi.description, "again");
    /* a semantic function infers parameters from its template */
    CHECK(sk_kernel_add_semantic(k, "S", "Ask", "Q: {{$question}} {{T.Join a=$x}}", NULL) == SK_OK);
    CHECK(sk_kernel_function_find(k, "S.Ask", &fi) == SK_OK);
    CHECK_STR(fi.kind, "semantic");
    CHECK_INT(fi.n_params, 2);
    CHECK(sk_kernel_add_semantic(k, "S", "Bad", "x {{ $a $b }}", NULL) == SK_TEMPLATE);
    CHECK_CONTAINS(sk_errmsg(k), "S.Bad:1:");
    CHECK(sk_kernel_add_semantic(k, "S", "BadCfg", "x", "{ nope") == SK_CONFIG);
    sk_kernel_free(k);
}

TEST(test_native_invoke)
{
    sk_kernel *k = new_kernel();
    sk_status st;
    char *out = invoke1(k, "T.Upper", "abc", &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "ABC");
    sk_free(out);
    out = invoke1(k, "Upper", "bare name", &st); /* unique short name */
    CHECK(st == SK_OK);
    CHECK_STR(out, "BARE NAME");
    sk_free(out);
    out = invoke1(k, "T.Fail", "x", &st);
    CHECK(st == SK_SCRIPT && out == NULL);
    CHECK_STR(sk_errmsg(k), "native failure on purpose");
    char *json = NULL;
    CHECK(sk_error_json(k, &json) == SK_OK);
    CHECK_CONTAINS(json, "\"kind\":\"script\"");
    CHECK_CONTAINS(json, "\"function\":\"T.Fail\"");
    sk_free(json);
    out = invoke1(k, "T.Uper", "x", &st);
    CHECK(st == SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(k), "did you mean T.Upper?");
    /* defaults fill unset parameters */
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "a", "A");
    CHECK(sk_invoke(k, "T.Join", v, NULL, &out) == SK_OK);
    CHECK_STR(out, "A+B!");
    sk_free(out);
    sk_vars_free(v);
    sk_kernel_free(k);
}

static sk_status tag(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)args;
    *out = strdup(ud);
    return SK_OK;
}

/* A name without a skill resolves as in Semantic Kernel: the skill
 * registered first that has it, whatever the names sort as; the caller's
 * own skill first.  A name a model chose resolves only among what its
 * grant allows, and must be unambiguous there. */
TEST(test_bare_names)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_add_native(k, "Zeta", "Same", NULL, NULL, 0, tag, "zeta") == SK_OK);
    CHECK(sk_kernel_add_native(k, "Alpha", "Same", NULL, NULL, 0, tag, "alpha") == SK_OK);
    CHECK(sk_kernel_add_native(k, "Alpha", "Other", NULL, NULL, 0, tag, "other") == SK_OK);
    /* replacing a function keeps its skill's place */
    CHECK(sk_kernel_add_native(k, "Zeta", "Same", NULL, NULL, 0, tag, "zeta2") == SK_OK);
    sk_status st;
    char *out = invoke1(k, "Same", NULL, &st);
    CHECK_INT(st, SK_OK);
    CHECK_STR(out, "zeta2");
    sk_free(out);
    out = invoke1(k, "sAmE", NULL, &st); /* names compare case-insensitively */
    CHECK_STR(out, "zeta2");
    sk_free(out);
    CHECK(reg_find_short(k, "Same", "Alpha") == reg_find(k, "Alpha.Same"));
    CHECK(reg_find_short(k, "Same", "Nope") == reg_find(k, "Zeta.Same"));
    sk_template *t = NULL;
    sk_vars *v = NULL;
    sk_vars_new(&v);
    const char *src;
    src = "{{Same}}";
    CHECK(sk_template_parse(k, src, strlen(src), "t", &t) == SK_OK);
    CHECK(sk_render(k, t, v, 0, &out) == SK_OK);
    CHECK_STR(out, "zeta2");
    sk_free(out);
    sk_template_free(t);
    sk_vars_free(v);

    /* a model's name: only what the grant allows */
    sk_grant *g = NULL;
    sk_err *e = NULL;
    const char *only_alpha[] = {"Alpha.Same"};
    CHECK(grant_new(k, "this plan", only_alpha, 1, &g, &e) == SK_OK);
    CHECK(inv_lookup(k, "Same", NULL, g, &e) == reg_find(k, "Alpha.Same"));
    grant_release(g);
    const char *only_other[] = {"Alpha.Other"};
    CHECK(grant_new(k, "this plan", only_other, 1, &g, &e) == SK_OK);
    CHECK(inv_lookup(k, "Same", NULL, g, &e) == NULL);
    CHECK(e && e->code == SK_DENIED);
    err_free(e);
    e = NULL;
    grant_release(g);
    /* every function allowed: two of them are called Same */
    CHECK(grant_new(k, "this plan", NULL, 0, &g, &e) == SK_OK);
    CHECK(inv_lookup(k, "Same", NULL, g, &e) == NULL);
    CHECK(e && e->code == SK_NOT_FOUND);
    err_free(e);
    e = NULL;
    CHECK(inv_lookup(k, "Other", NULL, g, &e) == reg_find(k, "Alpha.Other"));
    grant_release(g);
    sk_kernel_free(k);
}

TEST(test_render)
{
    sk_kernel *k = new_kernel();
    sk_template *t = NULL;
    const char *src = "Hi {{$name}}! {{T.Upper $name}} {{T.Join 'x' b='y'}} {{T.Upper}}";
    CHECK(sk_template_parse(k, src, strlen(src), "t.txt", &t) == SK_OK);
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "name", "bo");
    sk_vars_set(v, "input", "in");
    char *out = NULL;
    CHECK(sk_render(k, t, v, 0, &out) == SK_OK);
    CHECK_STR(out, "Hi bo! BO x+y IN");
    sk_free(out);
    CHECK(sk_render(k, t, v, SK_RENDER_NO_CALLS, &out) == SK_OK);
    CHECK_STR(out, "Hi bo! {{T.Upper $name}} {{T.Join 'x' b='y'}} {{T.Upper}}");
    sk_free(out);
    sk_template_free(t);
    /* an unknown function in a block is an error with its position */
    const char *bad = "line one\n  {{Nope.Fn}}";
    CHECK(sk_template_parse(k, bad, strlen(bad), "bad.txt", &t) == SK_OK);
    CHECK(sk_render(k, t, v, 0, &out) == SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(k), "bad.txt:2:3: unknown function Nope.Fn");
    sk_template_free(t);
    /* function output is not re-rendered */
    sk_vars_set(v, "name", "{{$input}}");
    const char *src2 = "{{T.Join a=$name}}";
    CHECK(sk_template_parse(k, src2, strlen(src2), "t2", &t) == SK_OK);
    CHECK(sk_render(k, t, v, 0, &out) == SK_OK);
    CHECK_STR(out, "{{$input}}+B!");
    sk_free(out);
    sk_template_free(t);
    sk_vars_free(v);
    sk_kernel_free(k);
}

TEST(test_scripted_semantic)
{
    sk_kernel *k = new_kernel();
    CHECK(sk_kernel_set_model(k, "scripted:bogus-missing.json") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "W", "Sum", "Summarize: {{T.Upper}}", NULL) == SK_OK);
    sk_status st;
    char *out = invoke1(k, "W.Sum", "hello", &st);
    CHECK(st == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "bogus-missing.json");
    CHECK(sk_kernel_set_model(k, "scripted:") == SK_USAGE);
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", rules_path());
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    out = invoke1(k, "W.Sum", "hello", &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "a greeting");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 1);
    CHECK(u.prompt_tokens > 0);
    /* no rule matches */
    out = invoke1(k, "W.Sum", "bye", &st);
    CHECK(st == SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "no rule matches");
    /* scripted error, with the function chain through a nested template */
    CHECK(sk_kernel_add_semantic(k, "W", "Broken", "broken {{$input}}", NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "W", "Outer", "echo {{W.Broken}}", NULL) == SK_OK);
    out = invoke1(k, "W.Outer", "x", &st);
    CHECK(st == SK_MODEL);
    CHECK_STR(sk_errmsg(k), "server on fire");
    char *json = NULL;
    sk_error_json(k, &json);
    CHECK_CONTAINS(json, "\"function\":\"W.Broken\"");
    CHECK_CONTAINS(json, "\"chain\":[\"W.Broken\",\"W.Outer\"]");
    CHECK_CONTAINS(json, "\"http_status\":500");
    sk_free(json);
    /* echo and replies in sequence */
    CHECK(sk_kernel_add_semantic(k, "W", "Echo", "echo {{$input}}", NULL) == SK_OK);
    out = invoke1(k, "W.Echo", "me", &st);
    CHECK_STR(out, "<echo me>");
    sk_free(out);
    CHECK(sk_kernel_add_semantic(k, "W", "Twice", "twice", NULL) == SK_OK);
    out = invoke1(k, "W.Twice", NULL, &st);
    CHECK_STR(out, "one");
    sk_free(out);
    out = invoke1(k, "W.Twice", NULL, &st);
    CHECK_STR(out, "two");
    sk_free(out);
    out = invoke1(k, "W.Twice", NULL, &st);
    CHECK_STR(out, "two");
    sk_free(out);
    /* per-call model override */
    sk_invoke_opts o = {.model = "nope:thing"};
    CHECK(sk_invoke(k, "W.Echo", NULL, &o, &out) == SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(k), "unknown model kind");
    sk_kernel_free(k);
}

TEST(test_no_model)
{
    sk_kernel *k = new_kernel();
    CHECK(sk_kernel_model(k) == NULL);
    CHECK(sk_kernel_add_semantic(k, "W", "Q", "question", NULL) == SK_OK);
    sk_status st;
    char *out = invoke1(k, "W.Q", "x", &st);
    CHECK(st == SK_CONFIG && !out);
    CHECK_CONTAINS(sk_errmsg(k), "no model configured for W.Q");
    sk_kernel_free(k);
}

static void on_chunk(void *ud, const char *text, size_t len)
{
    sk_buf *b = ud;
    buf_add(b, text, len);
    buf_addc(b, '|');
}

TEST(test_stream)
{
    sk_kernel *k = new_kernel();
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", rules_path());
    sk_kernel_set_model(k, spec);
    /* a function with no checks after the model streams */
    sk_kernel_add_semantic(k, "W", "Echo", "echo {{$input}}", "{\"uncertainty\": false}");
    sk_buf b = {0};
    sk_invoke_opts o = {.stream = on_chunk, .stream_ud = &b};
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "a b c");
    char *out = NULL;
    CHECK(sk_invoke(k, "W.Echo", v, &o, &out) == SK_OK);
    CHECK_STR(out, "<echo a b c>");
    CHECK_STR(b.p, "<echo| a| b| c>|");
    sk_free(out);
    buf_free(&b);
    /* one whose reply a check may still replace does not: nothing reaches
     * the caller before it has passed */
    sk_kernel_add_semantic(k, "W", "Checked", "echo {{$input}}", NULL);
    memset(&b, 0, sizeof b);
    CHECK(sk_invoke(k, "W.Checked", v, &o, &out) == SK_OK);
    CHECK_STR(out, "<echo a b c>");
    CHECK(b.len == 0);
    sk_free(out);
    buf_free(&b);
    sk_vars_free(v);
    sk_kernel_free(k);
}

TEST(test_concurrency)
{
    /* 100 calls with a 200 ms scripted delay overlap on one thread: the
     * loop has them all pending at once, which we observe through the
     * kernel's in-flight count rather than through wall time. */
    sk_kernel *k = new_kernel();
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", rules_path());
    sk_kernel_set_model(k, spec);
    sk_kernel_add_semantic(k, "W", "Slow", "slow {{$input}}", NULL);
    sk_call *calls[100];
    for (int i = 0; i < 100; i++)
        CHECK(sk_invoke_async(k, "W.Slow", NULL, NULL, &calls[i]) == SK_OK);
    CHECK(sk_kernel_run(k, 0) == 100); /* all started, none finished */
    size_t left = sk_kernel_run(k, -1);
    CHECK_INT(left, 0);
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        ok += sk_call_done(calls[i]) && sk_call_status(calls[i]) == SK_OK &&
              strcmp(sk_call_result(calls[i]), "done") == 0;
        sk_call_free(calls[i]);
    }
    CHECK_INT(ok, 100);
    /* max_inflight bounds model calls; everything still completes */
    sk_kernel_set_option(k, "max_inflight", "3");
    for (int i = 0; i < 10; i++)
        sk_invoke_async(k, "W.Slow", NULL, NULL, &calls[i]);
    sk_kernel_run(k, -1);
    ok = 0;
    for (int i = 0; i < 10; i++) {
        ok += sk_call_status(calls[i]) == SK_OK;
        sk_call_free(calls[i]);
    }
    CHECK_INT(ok, 10);
    /* sk_kernel_run returns once a call finishes, not at its timeout, so a
     * caller that keeps N calls in flight refills at once: a quick call
     * beside a 2 s one ends the run with the slow one still in flight */
    sk_kernel_add_semantic(k, "W", "Glacial", "glacial {{$input}}", NULL);
    sk_kernel_add_semantic(k, "W", "Quick", "echo {{$input}}", NULL);
    sk_call *slow, *quick;
    CHECK(sk_invoke_async(k, "W.Glacial", NULL, NULL, &slow) == SK_OK);
    CHECK(sk_invoke_async(k, "W.Quick", NULL, NULL, &quick) == SK_OK);
    CHECK_INT(sk_kernel_run(k, 60000), 1);
    CHECK(sk_call_done(quick) && !sk_call_done(slow));
    sk_call_free(quick);
    sk_call_free(slow);
    /* a call freed before it finishes is cleaned up by the loop */
    sk_call *c;
    sk_invoke_async(k, "W.Slow", NULL, NULL, &c);
    sk_call_free(c);
    sk_kernel_free(k); /* waits for it; ASan checks nothing leaks */
}

TEST(test_template_blocks_run_concurrently)
{
    sk_kernel *k = new_kernel();
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", rules_path());
    sk_kernel_set_model(k, spec);
    sk_kernel_add_semantic(k, "W", "Slow", "slow {{$input}}", NULL);
    sk_kernel_add_semantic(k, "W", "Fan", "echo {{W.Slow}} {{W.Slow}} {{W.Slow}}", NULL);
    sk_call *c;
    CHECK(sk_invoke_async(k, "W.Fan", NULL, NULL, &c) == SK_OK);
    /* run until the three nested model calls are in flight together */
    int seen = 0;
    for (int i = 0; i < 50 && !sk_call_done(c); i++) {
        sk_kernel_run(k, 10);
        sk_usage u;
        sk_kernel_usage(k, &u);
        if (u.calls == 0 && kern_model_inflight(k) == 3)
            seen = 1;
    }
    CHECK(seen);
    CHECK(sk_call_wait(c) == SK_OK);
    CHECK_STR(sk_call_result(c), "<echo done done done>");
    sk_call_free(c);
    sk_kernel_free(k);
}

static sk_status recurse(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)ud;
    return sk_invoke(k, "R.Self", args, NULL, out);
}

TEST(test_recursion)
{
    sk_kernel *k = new_kernel();
    sk_kernel_set_option(k, "max_depth", "8");
    /* a template that calls itself */
    CHECK(sk_kernel_add_semantic(k, "R", "Loop", "again {{R.Loop}}", NULL) == SK_OK);
    sk_status st;
    char *out = invoke1(k, "R.Loop", "x", &st);
    CHECK(st == SK_RECURSION && !out);
    CHECK_CONTAINS(sk_errmsg(k), "nested more than 8 deep");
    /* a native C function that invokes itself through the public API */
    CHECK(sk_kernel_add_native(k, "R", "Self", NULL, NULL, 0, recurse, NULL) == SK_OK);
    out = invoke1(k, "R.Self", "x", &st);
    CHECK(st == SK_RECURSION && !out);
    sk_kernel_free(k);
}

TEST(test_alloc_failures)
{
    /* Fail each allocation of a nested render in turn: every attempt must
     * end in SK_NOMEM (or success once past the last allocation), with no
     * crash or leak. */
    int successes = 0;
    for (long n = 1; n < 400 && successes < 3; n++) {
        sk_kernel *k = NULL;
        sk_alloc_fail_at(n);
        sk_status st = sk_kernel_new(&k);
        if (st == SK_OK) {
            sk_kernel_set_option(k, "quiet", "1");
            st = sk_kernel_add_native(k, "T", "Upper", NULL, NULL, 0, upper, NULL);
            if (st == SK_OK)
                st = sk_kernel_add_semantic(k, "S", "A", "x {{T.Upper $v}} {{$w}}", NULL);
            sk_template *t = NULL;
            if (st == SK_OK)
                st = sk_template_parse(k, "a {{T.Upper 'q'}} b", 19, "t", &t);
            char *out = NULL;
            if (st == SK_OK)
                st = sk_render(k, t, NULL, 0, &out);
            if (st == SK_OK) {
                CHECK_STR(out, "a Q b");
                successes++;
            }
            sk_free(out);
            sk_template_free(t);
        }
        sk_alloc_fail_at(0);
        CHECK(st == SK_OK || st == SK_NOMEM);
        sk_kernel_free(k);
    }
    CHECK(successes > 0);
}

TEST(test_user_config)
{
    const char *good = tu_tmpfile(
        "{\"model\": \"scripted:x.json\",\n"
        " \"services\": {\"local\": \"openai:llama@http://127.0.0.1:9/v1\"},\n"
        " \"options\": {\"retries\": 7, \"quiet\": true}}",
        ".json");
    setenv("SKEIN_CONFIG", good, 1);
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK_STR(sk_kernel_model(k), "scripted:x.json");
    CHECK_STR(kern_service(k, "local"), "openai:llama@http://127.0.0.1:9/v1");
    CHECK_INT(kern_net_settings(k)->retries, 7);
    sk_kernel_free(k);
    /* SKEIN_MODEL wins over the file */
    setenv("SKEIN_MODEL", "openai:from-env", 1);
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK_STR(sk_kernel_model(k), "openai:from-env");
    sk_kernel_free(k);
    unsetenv("SKEIN_MODEL");
    const char *bad = tu_tmpfile("{\"model\": \"a:b\",\n  \"options\": {,}}", ".json");
    setenv("SKEIN_CONFIG", bad, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_CONFIG);
    CHECK(k != NULL);
    CHECK_CONTAINS(sk_errmsg(k), bad);
    CHECK_CONTAINS(sk_errmsg(k), ":2:");
    sk_kernel_free(k);
    const char *badopt = tu_tmpfile("{\"options\": {\"timeout_ms\": \"soon\"}}", ".json");
    setenv("SKEIN_CONFIG", badopt, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "option timeout_ms");
    sk_kernel_free(k);
    const char *badmodel = tu_tmpfile("{\"model\": \"gpt-4o\"}", ".json");
    setenv("SKEIN_CONFIG", badmodel, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "model \"gpt-4o\": not KIND:MODEL");
    CHECK_CONTAINS(sk_errmsg(k), badmodel);
    sk_kernel_free(k);
    /* names for models: "model" may be one, defined in the same file */
    const char *named = tu_tmpfile("{\"model\": \"fast\", \"aliases\": {\"fast\": "
                                   "\"scripted:a.json\"}, \"services\": {\"svc\": "
                                   "\"openai:x@http://127.0.0.1:9/v1\"}}", ".json");
    setenv("SKEIN_CONFIG", named, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK_STR(sk_kernel_model(k), "scripted:a.json");
    CHECK(sk_kernel_model_name_count(k) == 2);
    sk_model_name mn;
    CHECK(sk_kernel_model_name_at(k, 0, &mn) == SK_OK);
    CHECK_STR(mn.name, "svc");
    CHECK(mn.alias == 0);
    CHECK(sk_kernel_model_name_at(k, 1, &mn) == SK_OK);
    CHECK_STR(mn.name, "fast");
    CHECK(mn.alias == 1);
    CHECK(sk_kernel_model_name_at(k, 2, &mn) == SK_USAGE);
    CHECK(sk_kernel_set_model(k, "svc") == SK_OK);
    CHECK_STR(sk_kernel_model(k), "openai:x@http://127.0.0.1:9/v1");
    CHECK(sk_kernel_set_model(k, "nosuch") == SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "known: svc, fast");
    CHECK(sk_kernel_set_alias(k, "a:b", "scripted:x.json") == SK_USAGE);
    CHECK(sk_kernel_set_alias(k, "fast", "nospec") == SK_USAGE);
    CHECK(sk_kernel_set_alias(k, "fast", "scripted:b.json") == SK_OK);
    CHECK(sk_kernel_set_model(k, "fast") == SK_OK);
    CHECK_STR(sk_kernel_model(k), "scripted:b.json");
    int has_ollama = 0;
    for (size_t i = 0; i < sk_kernel_connector_kind_count(k); i++)
        has_ollama |= strcmp(sk_kernel_connector_kind_at(k, i), "ollama") == 0;
    CHECK(has_ollama);
    CHECK(sk_kernel_connector_kind_at(k, sk_kernel_connector_kind_count(k)) == NULL);
    sk_kernel_free(k);
    /* SKEIN_MODEL may be a name the file gives */
    setenv("SKEIN_MODEL", "svc", 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK_STR(sk_kernel_model(k), "openai:x@http://127.0.0.1:9/v1");
    sk_kernel_free(k);
    unsetenv("SKEIN_MODEL");
    const char *withpol = tu_tmpfile("{\"policy\": {\"review\": \"X.Y\"}}", ".json");
    setenv("SKEIN_CONFIG", withpol, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK(kern_base_policy(k) && kern_base_policy(k)->review &&
          strcmp(kern_base_policy(k)->review, "X.Y") == 0);
    sk_kernel_free(k);
    const char *badpol = tu_tmpfile("{\"policy\": {\"models\": 5}}", ".json");
    setenv("SKEIN_CONFIG", badpol, 1);
    k = NULL;
    CHECK(sk_kernel_new(&k) == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "policy");
    CHECK_CONTAINS(sk_errmsg(k), badpol);
    sk_kernel_free(k);
    /* OPENAI_API_KEY alone picks the openai connector */
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    setenv("OPENAI_API_KEY", "sk-test", 1);
    CHECK(sk_kernel_new(&k) == SK_OK);
    CHECK_STR(sk_kernel_model(k), "openai:gpt-4o-mini");
    sk_kernel_free(k);
    unsetenv("OPENAI_API_KEY");
}

int main(void)
{
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    unsetenv("SKEIN_MODEL");
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENAI_BASE_URL");
    RUN(test_vars);
    RUN(test_strerror);
    RUN(test_options);
    RUN(test_registry);
    RUN(test_native_invoke);
    RUN(test_bare_names);
    RUN(test_render);
    RUN(test_scripted_semantic);
    RUN(test_no_model);
    RUN(test_stream);
    RUN(test_concurrency);
    RUN(test_template_blocks_run_concurrently);
    RUN(test_recursion);
    RUN(test_alloc_failures);
    RUN(test_user_config);
    return tu_finish();
}
