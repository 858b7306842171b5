/* test_stages.c -- the invoke path's stages cannot undo each other.  Each
 * test puts two stages together and checks the invariant between them:
 *   the cache and the checks: a hit ends as the call it stands for did
 *     (uncertain, escalated, filtered, rejected, shaped alike);
 *   the cache and the endpoint: two servers behind one model name never
 *     share answers, nor two versions of one scripted model's rules;
 *   truncation and everything after it: a cut reply is never taken for a
 *     whole one, never cached, and continues where the function asks;
 *   streaming and the checks: nothing streams that a check may replace;
 *   clarification and the re-run: the answer always reaches the model. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "all.h"
#include "testutil.h"

static char cache_path[300];

static sk_kernel *kernel(const char *rules_json)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", tu_tmpfile(rules_json, ".json"));
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    return k;
}

static sk_status call(sk_kernel *k, const char *fn, const char *input, char **out)
{
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", input);
    *out = NULL;
    sk_status st = sk_invoke(k, fn, v, NULL, out);
    sk_vars_free(v);
    return st;
}

static long model_calls(sk_kernel *k)
{
    sk_usage u;
    sk_kernel_usage(k, &u);
    return u.calls;
}

static long hits(sk_kernel *k)
{
    sk_usage u;
    sk_kernel_usage(k, &u);
    return u.cache_hits;
}

#define DETERMINISTIC "\"completion\": {\"temperature\": 0}"

TEST(test_cache_keeps_uncertainty)
{
    sk_kernel *k = kernel("{\"rules\":["
        "{\"match\":\"^hedge\",\"reply\":\"I'm not sure which one you mean.\"},"
        "{\"match\":\"^lowlp\",\"reply\":\"maybe\",\"logprobs\":[[\"may\",-2.5],[\"be\",-1.9]]}]}");
    CHECK(sk_kernel_add_semantic(k, "U", "Hedge", "hedge {{$input}}", "{" DETERMINISTIC "}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Low", "lowlp {{$input}}", "{" DETERMINISTIC "}") == SK_OK);
    for (int run = 0; run < 2; run++) {
        char *out;
        long h = hits(k);
        CHECK_INT(call(k, "U.Hedge", "x", &out), SK_UNCERTAIN);
        CHECK_INT(call(k, "U.Low", "x", &out), SK_UNCERTAIN);
        CHECK_CONTAINS(sk_error_get(k, "reason"), "logprobs");
        /* the second time both came from the cache, and were judged again */
        CHECK_INT(hits(k) - h, run ? 2 : 0);
    }
    sk_kernel_free(k);
}

TEST(test_cache_keeps_the_cascade)
{
    const char *small = tu_tmpfile("{\"rules\":[{\"match\":\"^ask\",\"reply\":\"Which one do you mean?\"}]}", ".json");
    const char *big = tu_tmpfile("{\"rules\":[{\"match\":\"^ask\",\"reply\":\"42\"}]}", ".json");
    sk_kernel *k = kernel("{\"rules\":[]}");
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{" DETERMINISTIC ", \"models\": [\"scripted:%s\", \"scripted:%s\"]}",
             small, big);
    CHECK(sk_kernel_add_semantic(k, "C", "Ask", "ask {{$input}}", cfg) == SK_OK);
    for (int run = 0; run < 2; run++) {
        char *out;
        sk_usage u0, u1;
        sk_kernel_usage(k, &u0);
        CHECK_INT(call(k, "C.Ask", "x", &out), SK_OK);
        CHECK_STR(out, "42");
        sk_free(out);
        sk_kernel_usage(k, &u1);
        /* the cheap model's answer, cached or not, is escalated again */
        CHECK_INT(u1.escalations - u0.escalations, 1);
        CHECK_INT(u1.cache_hits - u0.cache_hits, run ? 2 : 0);
    }
    sk_kernel_free(k);
}

TEST(test_cache_keeps_filters_review_and_shape)
{
    sk_kernel *k = kernel("{\"rules\":["
        "{\"match\":\"^advice\",\"reply\":\"take a double dosage\"},"
        "{\"match\":\"^REVIEW\",\"reply\":\"FAIL: too short\"},"
        "{\"match\":\"^short\",\"reply\":\"short\"},"
        "{\"match\":\"^color\",\"reply\":\"Probably, I think it might be blue\"}]}");
    CHECK(sk_kernel_add_semantic(k, "R", "Check", "REVIEW {{$output}}", "{" DETERMINISTIC "}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "F", "Advice", "advice {{$input}}",
              "{" DETERMINISTIC ", \"uncertainty\": false, \"filters\": {\"output\": "
              "[{\"name\": \"dosage\", \"pattern\": \"dosage\"}]}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "F", "Short", "short {{$input}}",
              "{" DETERMINISTIC ", \"uncertainty\": false, \"review\": "
              "{\"function\": \"R.Check\", \"rounds\": 1}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "F", "Color", "color {{$input}}",
              "{" DETERMINISTIC ", \"uncertainty\": false, \"output\": {\"choice\": "
              "[\"red\", \"blue\"], \"retries\": 1}}") == SK_OK);
    for (int run = 0; run < 2; run++) {
        char *out;
        long h = hits(k);
        CHECK_INT(call(k, "F.Advice", "x", &out), SK_FILTERED);
        CHECK_INT(call(k, "F.Short", "x", &out), SK_REJECTED);
        CHECK_INT(call(k, "F.Color", "x", &out), SK_DATA);
        if (run)
            CHECK(hits(k) - h >= 3);
    }
    sk_kernel_free(k);
}

TEST(test_cache_keys_on_the_endpoint)
{
    /* one model name, two servers (OPENAI_BASE_URL changes between runs) */
    char url_a[64], url_b[64];
    int pid_a = 0, pid_b = 0;
    const char *sa = tu_tmpfile("{\"responses\": [{\"reply\": \"from A\"}]}", ".json");
    char sa_path[300];
    snprintf(sa_path, sizeof sa_path, "%s", sa);
    const char *sb = tu_tmpfile("{\"responses\": [{\"reply\": \"from B\"}]}", ".json");
    if (tu_mock_start(sa_path, url_a, &pid_a) != 0 || tu_mock_start(sb, url_b, &pid_b) != 0) {
        CHECK(0);
        return;
    }
    const char *base[2] = {url_a, url_b};
    const char *want[2] = {"from A", "from B"};
    for (int i = 0; i < 2; i++) {
        char b[128];
        snprintf(b, sizeof b, "%s/v1", base[i]);
        setenv("OPENAI_BASE_URL", b, 1);
        sk_kernel *k = NULL;
        CHECK(sk_kernel_new(&k) == SK_OK);
        sk_kernel_set_option(k, "quiet", "1");
        CHECK(sk_kernel_set_model(k, "openai:same-name") == SK_OK);
        CHECK(sk_kernel_add_semantic(k, "E", "Say", "say {{$input}}",
                                     "{" DETERMINISTIC ", \"uncertainty\": false}") == SK_OK);
        char *out;
        CHECK_INT(call(k, "E.Say", "x", &out), SK_OK);
        CHECK_STR(out, want[i]);
        sk_free(out);
        sk_kernel_free(k);
    }
    unsetenv("OPENAI_BASE_URL");
    tu_mock_stop(pid_a);
    tu_mock_stop(pid_b);
}

TEST(test_cache_keys_on_the_scripted_rules)
{
    /* one scripted file, rewritten between runs: the new rules answer */
    const char *path = tu_tmpfile("{\"rules\":[{\"match\":\".\",\"reply\":\"first\"}]}", ".json");
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", path);
    const char *want[2] = {"first", "second"};
    for (int i = 0; i < 2; i++) {
        if (i) {
            FILE *f = fopen(path, "w");
            CHECK(f != NULL);
            if (!f)
                return;
            fputs("{\"rules\":[{\"match\":\".\",\"reply\":\"second\"}]}", f);
            fclose(f);
        }
        sk_kernel *k = NULL;
        CHECK(sk_kernel_new(&k) == SK_OK);
        sk_kernel_set_option(k, "quiet", "1");
        CHECK(sk_kernel_set_model(k, spec) == SK_OK);
        CHECK(sk_kernel_add_semantic(k, "E", "Say", "say {{$input}}",
                                     "{" DETERMINISTIC ", \"uncertainty\": false}") == SK_OK);
        char *out;
        CHECK_INT(call(k, "E.Say", "x", &out), SK_OK);
        CHECK_STR(out, want[i]);
        sk_free(out);
        sk_kernel_free(k);
    }
}

TEST(test_no_cache_option)
{
    sk_kernel *k = kernel("{\"rules\":[{\"match\":\".\",\"reply\":\"ok\"}]}");
    CHECK(sk_kernel_add_semantic(k, "N", "Say", "say {{$input}}",
                                 "{" DETERMINISTIC ", \"uncertainty\": false}") == SK_OK);
    char *out;
    CHECK_INT(call(k, "N.Say", "no-cache", &out), SK_OK);
    sk_free(out);
    CHECK(sk_kernel_set_option(k, "cache", "0") == SK_OK);
    long before = model_calls(k), h = hits(k);
    CHECK_INT(call(k, "N.Say", "no-cache", &out), SK_OK);
    sk_free(out);
    CHECK_INT(model_calls(k) - before, 1);
    CHECK_INT(hits(k) - h, 0);
    sk_kernel_free(k);
}

TEST(test_truncated_is_never_whole)
{
    sk_kernel *k = kernel("{\"rules\":["
        "{\"match\":\"^cut\",\"reply\":\"the first half of\",\"finish_reason\":\"length\"},"
        "{\"match\":\"^anthropic\",\"reply\":\"half\",\"finish_reason\":\"max_tokens\"},"
        "{\"match\":\"Continue exactly where you stopped\",\"reply\":\" the answer.\"},"
        "{\"match\":\"You write plans\",\"reply\":\"1. Text.Upper(input=\\\"a\\\")\\n2. Text.Lo\","
        "\"finish_reason\":\"length\"}]}");
    sk_kernel_load_default_skills(k);
    CHECK(sk_kernel_add_semantic(k, "T", "Cut", "cut {{$input}}",
              "{\"uncertainty\": false, \"completion\": "
              "{\"temperature\": 0, \"max_tokens\": 5}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "T", "Half", "anthropic {{$input}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    for (int run = 0; run < 2; run++) {
        char *out;
        long before = model_calls(k);
        CHECK_INT(call(k, "T.Cut", "x", &out), SK_TRUNCATED);
        CHECK(out == NULL);
        CHECK_CONTAINS(sk_errmsg(k), "max_tokens 5");
        CHECK_STR(sk_error_get(k, "output"), "the first half of");
        /* never cached: the second run asks again */
        CHECK_INT(model_calls(k) - before, 1);
    }
    char *out;
    CHECK_INT(call(k, "T.Half", "x", &out), SK_TRUNCATED);
    /* a plan cut short is not a plan */
    sk_plan *p = NULL;
    CHECK_INT(sk_plan_create(k, "shout", NULL, &p), SK_TRUNCATED);
    CHECK(p == NULL);
    /* a function that continues cut replies gets the rest */
    CHECK(sk_kernel_add_semantic(k, "T", "Long", "cut {{$input}}",
              "{\"uncertainty\": false, \"truncated\": {\"continue\": 2}}") == SK_OK);
    CHECK_INT(call(k, "T.Long", "x", &out), SK_OK);
    CHECK_STR(out, "the first half of the answer.");
    sk_free(out);
    /* and one that means its limit as a budget takes the cut reply */
    CHECK(sk_kernel_add_semantic(k, "T", "Budget", "cut {{$input}}",
              "{\"uncertainty\": false, \"truncated\": \"accept\"}") == SK_OK);
    CHECK_INT(call(k, "T.Budget", "x", &out), SK_OK);
    CHECK_STR(out, "the first half of");
    sk_free(out);
    sk_kernel_free(k);
}

static void collect(void *ud, const char *text, size_t len) { buf_add(ud, text, len); }

TEST(test_nothing_streams_that_a_check_replaces)
{
    sk_kernel *k = kernel("{\"rules\":["
        "{\"match\":\"(?s)yes or no.*previous answer\",\"reply\":\"yes\"},"
        "{\"match\":\"^maybe\",\"reply\":\"I'm not sure, but probably yes\"},"
        "{\"match\":\"yes or no\",\"reply\":\"Probably, I think it might be\"},"
        "{\"match\":\"^asks\",\"reply\":\"Do you want the total or the average?\"},"
        "{\"match\":\"^free\",\"reply\":\"streamed as it came\"}]}");
    CHECK(sk_kernel_add_semantic(k, "S", "YesNo", "yes or no: {{$input}}",
              "{\"uncertainty\": false, \"output\": {\"choice\": [\"yes\", \"no\"]}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "S", "Hedged", "maybe {{$input}}",
              "{\"uncertainty\": {\"hedging\": true}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "S", "Asks", "asks {{$input}}", NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "S", "Free", "free {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    sk_buf got = {0};
    sk_invoke_opts o = {.stream = collect, .stream_ud = &got};
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "x");
    char *out = NULL;
    CHECK_INT(sk_invoke(k, "S.YesNo", v, &o, &out), SK_OK);
    CHECK_STR(out, "yes");
    CHECK(got.len == 0); /* the replaced answer never reached the caller */
    sk_free(out);
    CHECK_INT(sk_invoke(k, "S.Hedged", v, &o, &out), SK_UNCERTAIN);
    CHECK(got.len == 0);
    /* the default signal acts on the whole reply, so nothing streams */
    CHECK_INT(sk_invoke(k, "S.Asks", v, &o, &out), SK_UNCERTAIN);
    CHECK(got.len == 0);
    CHECK_INT(sk_invoke(k, "S.Free", v, &o, &out), SK_OK);
    CHECK_STR(got.p, "streamed as it came");
    sk_free(out);
    buf_free(&got);
    sk_vars_free(v);
    sk_kernel_free(k);
}

TEST(test_clarification_reaches_the_rerun)
{
    sk_kernel *k = kernel("{\"rules\":["
        "{\"match\":\"(?s)user answered:\\\\s+French\",\"reply\":\"Bonjour\"},"
        "{\"match\":\"^translate\",\"reply\":\"Which language do you mean?\"}]}");
    /* a template that does not place {{$clarification}} */
    CHECK(sk_kernel_add_semantic(k, "W", "Tr", "translate {{$input}}", NULL) == SK_OK);
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "hello");
    char *out = NULL;
    CHECK_INT(sk_invoke(k, "W.Tr", v, NULL, &out), SK_UNCERTAIN);
    sk_vars_set(v, "clarification", "French");
    CHECK_INT(sk_invoke(k, "W.Tr", v, NULL, &out), SK_OK);
    CHECK_STR(out, "Bonjour");
    sk_free(out);
    /* one that places it gets it there, once */
    CHECK(sk_kernel_add_semantic(k, "W", "Placed",
              "translate {{$input}} (the user answered: {{$clarification}})", NULL) == SK_OK);
    CHECK_INT(sk_invoke(k, "W.Placed", v, NULL, &out), SK_OK);
    CHECK_STR(out, "Bonjour");
    sk_free(out);
    sk_vars_free(v);
    sk_kernel_free(k);
}

int main(void)
{
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    unsetenv("SKEIN_MODEL");
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENAI_BASE_URL");
    snprintf(cache_path, sizeof cache_path, "%s", tu_tmpfile("", ".db"));
    setenv("SKEIN_CACHE", cache_path, 1);
    RUN(test_cache_keeps_uncertainty);
    RUN(test_cache_keeps_the_cascade);
    RUN(test_cache_keeps_filters_review_and_shape);
    RUN(test_cache_keys_on_the_endpoint);
    RUN(test_cache_keys_on_the_scripted_rules);
    RUN(test_no_cache_option);
    RUN(test_truncated_is_never_whole);
    RUN(test_nothing_streams_that_a_check_replaces);
    RUN(test_clarification_reaches_the_rerun);
    unlink(cache_path);
    return tu_finish();
}
