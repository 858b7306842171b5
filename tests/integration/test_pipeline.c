/* test_pipeline.c -- uncertainty, the cascade, review, filters and
 * redaction on the invoke path, with the scripted model and, for
 * redaction, the loopback mock server's request log. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static char rules[300], small[300], big[300], trace_path[300];

static void setup_files(void)
{
    const char *r = tu_tmpfile(
        "{\"rules\":["
        "{\"match\":\"UNSURE: <the question\",\"reply\":\"UNSURE: Which city do you mean?\"},"
        "{\"match\":\"^hedge\",\"reply\":\"I'm not sure what you want. Do you mean the capital?\"},"
        "{\"match\":\"^plain\",\"reply\":\"Paris\"},"
        "{\"match\":\"^lowlp\",\"reply\":\"maybe\",\"logprobs\":[[\"may\",-2.5],[\"be\",-1.9]]},"
        "{\"match\":\"^highlp\",\"reply\":\"Paris\",\"logprobs\":[[\"Par\",-0.01],[\"is\",-0.02]]},"
        "{\"match\":\"^vary\",\"replies\":[\"Lyon\",\"Nice\",\"Lille\"]},"
        "{\"match\":\"^same\",\"replies\":[\"Paris\",\"paris.\",\" Paris \"]},"
        "{\"match\":\"judge these\",\"reply\":\"PASS\"},"
        "{\"match\":\"^revise(?s:.*)reviewer rejected\",\"reply\":\"a long and complete answer\"},"
        "{\"match\":\"^revise\",\"reply\":\"short\"},"
        "{\"match\":\"^stubborn\",\"reply\":\"short\"},"
        "{\"match\":\"REVIEW(?s:.*)a long and complete\",\"reply\":\"PASS\"},"
        "{\"match\":\"REVIEW\",\"reply\":\"FAIL: too short\"},"
        "{\"match\":\"POLICY(?s:.*)dosage\",\"reply\":\"BLOCK: medical advice\"},"
        "{\"match\":\"POLICY\",\"reply\":\"ALLOW\"},"
        "{\"match\":\"^advice\",\"reply\":\"take a double dosage\"},"
        "{\"match\":\"^secret\",\"reply\":\"the code is 1234\"},"
        "{\"match\":\"^slowish\",\"reply\":\"ok\",\"delay_ms\":50}"
        "]}",
        ".json");
    snprintf(rules, sizeof rules, "scripted:%s", r);
    const char *s = tu_tmpfile(
        "{\"rules\":[{\"match\":\"^cascade\",\"reply\":\"Which one do you mean?\"},"
        "{\"match\":\"^label\",\"reply\":\"bug\",\"logprobs\":[[\"bug\",-1.2]]},"
        "{\"match\":\"^both\",\"reply\":\"Do you want the total or the average?\"}]}", ".json");
    snprintf(small, sizeof small, "scripted:%s", s);
    const char *b = tu_tmpfile(
        "{\"rules\":[{\"match\":\"^cascade\",\"reply\":\"42\"},"
        "{\"match\":\"^label\",\"reply\":\"billing\",\"logprobs\":[[\"billing\",-0.01]]},"
        "{\"match\":\"^both\",\"reply\":\"Could you clarify which one?\"}]}", ".json");
    snprintf(big, sizeof big, "scripted:%s", b);
    const char *t = tu_tmpfile("", ".jsonl");
    snprintf(trace_path, sizeof trace_path, "%s", t);
}

static sk_kernel *kernel(void)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_set_model(k, rules) == SK_OK);
    return k;
}

static char *run(sk_kernel *k, const char *fn, const char *input,
                 const char *policy, sk_status *st)
{
    sk_vars *v;
    sk_vars_new(&v);
    if (input)
        sk_vars_set(v, "input", input);
    sk_invoke_opts o = {.policy = policy};
    char *out = NULL;
    *st = sk_invoke(k, fn, v, &o, &out);
    sk_vars_free(v);
    return out;
}

static char *slurp(const char *path)
{
    char *s = NULL;
    size_t n;
    return sk_read_file(path, 1 << 24, &s, &n) == SK_OK ? s : NULL;
}

TEST(test_hedging_and_chain)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "U", "Inner", "hedge {{$input}}", NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Mid", "plain {{U.Inner}}", NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Outer", "plain {{U.Mid}}", NULL) == SK_OK);
    sk_status st;
    char *out = run(k, "U.Outer", "x", NULL, &st);
    CHECK(st == SK_UNCERTAIN && !out);
    CHECK_CONTAINS(sk_errmsg(k), "U.Inner is uncertain: asks back");
    CHECK_STR(sk_error_get(k, "question"), "Do you mean the capital?");
    CHECK_CONTAINS(sk_error_get(k, "reason"), "asks instead of answering");
    CHECK_STR(sk_error_get(k, "output"), "I'm not sure what you want. Do you mean the capital?");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"kind\":\"uncertain\"");
    CHECK_CONTAINS(js, "\"function\":\"U.Inner\"");
    CHECK_CONTAINS(js, "\"chain\":[\"U.Inner\",\"U.Mid\",\"U.Outer\"]");
    sk_free(js);
    /* the signal can be turned off per call and per function */
    out = run(k, "U.Inner", "x", "{\"uncertainty\": {\"asks_back\": false}}", &st);
    CHECK(st == SK_OK);
    sk_free(out);
    /* hedge phrases are an opt-in signal of their own */
    out = run(k, "U.Inner", "x",
              "{\"uncertainty\": {\"asks_back\": false, \"hedging\": true}}", &st);
    CHECK(st == SK_UNCERTAIN && !out);
    CHECK_STR(sk_error_get(k, "reason"), "hedging: \"I'm not sure\"");
    CHECK(sk_kernel_add_semantic(k, "U", "Calm", "hedge {{$input}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    out = run(k, "U.Calm", "x", NULL, &st);
    CHECK(st == SK_OK);
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.uncertain, 2);
    sk_kernel_free(k);
}

TEST(test_protocol_marker)
{
    sk_kernel *k = kernel();
    /* the rule only matches when the instruction was appended */
    CHECK(sk_kernel_add_semantic(k, "U", "Ask", "weather in {{$input}}",
                                 "{\"uncertainty\": {\"protocol\": true}}") == SK_OK);
    sk_status st;
    char *out = run(k, "U.Ask", "Springfield", NULL, &st);
    CHECK(st == SK_UNCERTAIN && !out);
    CHECK_STR(sk_error_get(k, "question"), "Which city do you mean?");
    /* without the protocol the same prompt gets no instruction */
    out = run(k, "U.Ask", "Springfield", "{\"uncertainty\": {\"protocol\": false}}", &st);
    CHECK(st == SK_MODEL); /* no rule matches the bare prompt */
    sk_kernel_free(k);
}

TEST(test_logprobs)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "U", "Low", "lowlp", NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "High", "highlp", NULL) == SK_OK);
    sk_status st;
    char *out = run(k, "U.Low", NULL, NULL, &st);
    CHECK(st == SK_UNCERTAIN);
    CHECK_CONTAINS(sk_errmsg(k), "logprobs");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"confidence\":");
    sk_free(js);
    out = run(k, "U.High", NULL, NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "Paris");
    sk_free(out);
    /* thresholds are settings */
    out = run(k, "U.Low", NULL, "{\"uncertainty\": {\"logprobs\": {\"min_mean\": 0.05}}}", &st);
    CHECK(st == SK_OK);
    sk_free(out);
    sk_kernel_free(k);
}

TEST(test_self_consistency)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "U", "Vary", "vary",
                                 "{\"uncertainty\": {\"samples\": 3}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Same", "same",
                                 "{\"uncertainty\": {\"samples\": 3}}") == SK_OK);
    sk_status st;
    char *out = run(k, "U.Vary", NULL, NULL, &st);
    CHECK(st == SK_UNCERTAIN);
    CHECK_CONTAINS(sk_errmsg(k), "self-consistency");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"candidates\":[\"Lyon\",\"Nice\",\"Lille\"]");
    sk_free(js);
    out = run(k, "U.Same", NULL, NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "Paris");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 6); /* three samples each, in parallel */
    /* a judge decides instead of exact match */
    CHECK(sk_kernel_add_semantic(k, "U", "Judge", "judge these: {{$input}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Vary2", "vary",
                                 "{\"uncertainty\": {\"samples\": 3, \"judge\": \"U.Judge\"}}") == SK_OK);
    out = run(k, "U.Vary2", NULL, NULL, &st);
    CHECK(st == SK_OK);
    sk_free(out);
    sk_kernel_free(k);
}

static sk_status native_unsure(sk_kernel *k, const sk_vars *a, char **out, void *ud)
{
    (void)a;
    (void)out;
    (void)ud;
    return sk_raise_uncertain(k, "two files match", "Which file, a.txt or b.txt?", 0.4);
}

TEST(test_native_raise)
{
    sk_kernel *k = kernel();
    sk_kernel_set_trace(k, trace_path);
    CHECK(sk_kernel_add_native(k, "N", "Pick", NULL, NULL, 0, native_unsure, NULL) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "U", "Wrap", "plain {{N.Pick}}", NULL) == SK_OK);
    sk_status st;
    char *out = run(k, "U.Wrap", "x", NULL, &st);
    CHECK(st == SK_UNCERTAIN && !out);
    CHECK_STR(sk_error_get(k, "question"), "Which file, a.txt or b.txt?");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"chain\":[\"N.Pick\",\"U.Wrap\"]");
    CHECK_CONTAINS(js, "\"confidence\":0.4");
    sk_free(js);
    sk_kernel_free(k);
    char *t = slurp(trace_path);
    CHECK_CONTAINS(t, "\"type\":\"uncertain\",\"function\":\"N.Pick\"");
    CHECK_CONTAINS(t, "\"source\":\"native\"");
    free(t);
}

TEST(test_cascade)
{
    sk_kernel *k = kernel();
    sk_kernel_set_trace(k, trace_path);
    char cfg[800];
    snprintf(cfg, sizeof cfg, "{\"models\": [\"%s\", \"%s\"]}", small, big);
    CHECK(sk_kernel_add_semantic(k, "C", "Ask", "cascade {{$input}}", cfg) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "C", "Both", "both {{$input}}", cfg) == SK_OK);
    sk_status st;
    char *out = run(k, "C.Ask", "q", NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "42");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.escalations, 1);
    CHECK_INT(u.calls, 2);
    /* each model asked once; the strong one gave the answer */
    sk_model_usage mu[2];
    CHECK_INT(sk_kernel_model_usage_count(k), 2);
    CHECK_INT(sk_kernel_model_usage_at(k, 0, &mu[0]), SK_OK);
    CHECK_INT(sk_kernel_model_usage_at(k, 1, &mu[1]), SK_OK);
    CHECK_STR(mu[0].model, small);
    CHECK_INT(mu[0].calls, 1);
    CHECK_INT(mu[0].answered, 0);
    CHECK_STR(mu[1].model, big);
    CHECK_INT(mu[1].answered, 1);
    /* unsure everywhere: raised after the last model */
    out = run(k, "C.Both", "q", NULL, &st);
    CHECK(st == SK_UNCERTAIN);
    CHECK_CONTAINS(sk_errmsg(k), "clarify");
    sk_kernel_usage(k, &u);
    CHECK_INT(u.escalations, 2);
    CHECK_INT(u.calls, 4);
    sk_kernel_model_usage_at(k, 1, &mu[1]);
    CHECK_INT(mu[1].answered, 1); /* a raised call is nobody's answer */
    sk_kernel_free(k);
    char *t = slurp(trace_path);
    CHECK_CONTAINS(t, "\"type\":\"escalate\",\"function\":\"C.Ask\"");
    CHECK_CONTAINS(t, small + 9);
    free(t);
}

/* A calibrated threshold decides the cascade: the cheap model's label
 * below it goes to the strong one. */
TEST(test_cascade_on_the_calibrated_signal)
{
    sk_kernel *k = kernel();
    char cfg[1200];
    snprintf(cfg, sizeof cfg,
             "{\"models\": [\"%s\", \"%s\"], \"output\": {\"choice\": "
             "[\"billing\", \"bug\"]}, \"uncertainty\": {\"calibrated\": "
             "{\"signal\": \"logprob\", \"threshold\": 0.5, \"alpha\": 0.1}}}",
             small, big);
    CHECK(sk_kernel_add_semantic(k, "C", "Label", "label {{$input}}", cfg) == SK_OK);
    sk_status st;
    char *out = run(k, "C.Label", "q", NULL, &st);
    CHECK_INT(st, SK_OK);
    CHECK_STR(out, "billing"); /* exp(-1.2) = 0.30 < 0.5: escalated */
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.escalations, 1);
    /* the same threshold lowered under the cheap label: it answers */
    out = run(k, "C.Label", "q",
              "{\"uncertainty\": {\"calibrated\": {\"signal\": \"logprob\","
              " \"threshold\": 0.25, \"alpha\": 0.1}}}", &st);
    CHECK_INT(st, SK_OK);
    CHECK_STR(out, "bug");
    sk_free(out);
    sk_kernel_free(k);
}

TEST(test_review)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "R", "Check", "REVIEW task={{$task}} out={{$output}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "R", "Write", "revise {{$input}}",
                                 "{\"review\": \"R.Check\"}") == SK_OK);
    sk_status st;
    char *out = run(k, "R.Write", "x", NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "a long and complete answer");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.reviews, 2);
    CHECK_INT(u.revisions, 1);
    /* never good enough: rejected after the rounds, with every critique */
    CHECK(sk_kernel_add_semantic(k, "R", "Stub", "stubborn {{$input}}",
                                 "{\"review\": {\"function\": \"R.Check\", \"rounds\": 2}}") == SK_OK);
    out = run(k, "R.Stub", "x", NULL, &st);
    CHECK(st == SK_REJECTED && !out);
    CHECK_CONTAINS(sk_errmsg(k), "rejected by R.Check after 2 revisions: too short");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"critiques\":[\"too short\",\"too short\",\"too short\"]");
    CHECK_CONTAINS(js, "\"kind\":\"rejected\"");
    sk_free(js);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.rejected, 1);
    /* ad hoc review of any text */
    int passed = -1;
    char *crit = NULL;
    CHECK(sk_review(k, "short", "say something long", NULL, "R.Check", &passed, &crit) == SK_OK);
    CHECK_INT(passed, 0);
    CHECK_STR(crit, "too short");
    sk_free(crit);
    CHECK(sk_review(k, "a long and complete text", NULL, NULL, "R.Check", &passed, &crit) == SK_OK);
    CHECK_INT(passed, 1);
    CHECK(crit == NULL);
    sk_kernel_free(k);
}

TEST(test_filters)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "F", "Pol", "POLICY {{$policy}} TEXT {{$input}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    CHECK(sk_kernel_add_semantic(
              k, "F", "Ask", "plain {{$input}}",
              "{\"filters\": {\"input\": [{\"name\": \"no-ssn\", "
              "\"pattern\": \"\\\\b\\\\d{3}-\\\\d{2}-\\\\d{4}\\\\b\"}]}}") == SK_OK);
    sk_status st;
    char *out = run(k, "F.Ask", "my number is 123-45-6789", NULL, &st);
    CHECK(st == SK_FILTERED && !out);
    CHECK_CONTAINS(sk_errmsg(k), "input filter \"no-ssn\"");
    CHECK_STR(sk_error_get(k, "rule"), "no-ssn");
    out = run(k, "F.Ask", "nothing sensitive", NULL, &st);
    CHECK(st == SK_OK);
    sk_free(out);
    /* a model-based output filter */
    CHECK(sk_kernel_add_semantic(
              k, "F", "Advice", "advice {{$input}}",
              "{\"filters\": {\"output\": [{\"name\": \"medical\", \"function\": "
              "\"F.Pol\", \"policy\": \"No medical advice.\"}]}}") == SK_OK);
    out = run(k, "F.Advice", "x", NULL, &st);
    CHECK(st == SK_FILTERED);
    CHECK_CONTAINS(sk_errmsg(k), "output filter \"medical\"");
    CHECK_CONTAINS(sk_errmsg(k), "medical advice");
    /* a kernel-wide policy applies to every function */
    CHECK(sk_kernel_set_policy(k, "{\"filters\": {\"output\": [{\"name\": \"no-codes\", "
                                  "\"pattern\": \"code is \\\\d+\"}]}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "F", "Secret", "secret", NULL) == SK_OK);
    out = run(k, "F.Secret", NULL, NULL, &st);
    CHECK(st == SK_FILTERED);
    CHECK_STR(sk_error_get(k, "rule"), "no-codes");
    CHECK(sk_kernel_set_policy(k, "{\"filters\": 7}") == SK_CONFIG);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.filtered, 3);
    sk_kernel_free(k);
}

TEST(test_bad_policy)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "B", "Bad", "x",
                                 "{\"uncertainty\": {\"samples\": \"many\"}}") == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "samples");
    CHECK(sk_kernel_add_semantic(k, "B", "Ok", "plain", NULL) == SK_OK);
    sk_status st;
    char *out = run(k, "B.Ok", NULL, "{\"review\": 5}", &st);
    CHECK(st == SK_CONFIG && !out);
    sk_kernel_free(k);
}

TEST(test_redaction_round_trip)
{
    char scen[512];
    const char *log = tu_tmpfile("", ".jsonl");
    snprintf(scen, sizeof scen, "{\"log\": \"%s\", \"echo\": true}", log);
    char url[64];
    int pid = 0;
    if (tu_mock_start(tu_tmpfile(scen, ".json"), url, &pid) != 0) {
        CHECK(0);
        return;
    }
    sk_kernel *k = kernel();
    char spec[128];
    snprintf(spec, sizeof spec, "openai:test@%s/v1", url);
    sk_kernel_set_model(k, spec);
    CHECK(sk_kernel_add_semantic(k, "P", "Echo", "{{$input}}",
                                 "{\"redact\": true, \"uncertainty\": false}") == SK_OK);
    const char *text = "Mail alice@example.com or call +44 20 7946 0958; "
                       "card 4111 1111 1111 1111, alice@example.com again";
    sk_status st;
    char *out = run(k, "P.Echo", text, NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, text); /* the caller sees the originals */
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK(u.redacted >= 3);
    /* on loopback redaction is off by default */
    CHECK(sk_kernel_add_semantic(k, "P", "Plain", "{{$input}}",
                                 "{\"uncertainty\": false}") == SK_OK);
    out = run(k, "P.Plain", "bob@example.org", NULL, &st);
    CHECK_STR(out, "bob@example.org");
    sk_free(out);
    sk_kernel_free(k);
    tu_mock_stop(pid);
    char *l = slurp(log);
    CHECK(l != NULL);
    if (l) {
        CHECK(strstr(l, "alice@example.com") == NULL); /* never left the machine */
        CHECK(strstr(l, "4111 1111 1111 1111") == NULL);
        CHECK(strstr(l, "7946") == NULL);
        CHECK_CONTAINS(l, "[EMAIL_1]");
        CHECK_CONTAINS(l, "bob@example.org");
    }
    free(l);
}

static void collect(void *ud, const char *text, size_t len)
{
    buf_add(ud, text, len);
}

TEST(test_redaction_while_streaming)
{
    /* the scripted model echoes the prompt it got, placeholders and all,
     * word by word; the stream must show the originals */
    sk_kernel *k = kernel();
    const char *echo = tu_tmpfile("{\"default\": \"{{echo}}\"}", ".json");
    char spec[320];
    snprintf(spec, sizeof spec, "scripted:%s", echo);
    sk_kernel_set_model(k, spec);
    CHECK(sk_kernel_add_semantic(k, "P", "Echo", "{{$input}}",
                                 "{\"redact\": true, \"uncertainty\": false}") == SK_OK);
    const char *text = "write to ann@example.org and [EMAIL_1] stays as typed";
    sk_buf got = {0};
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", text);
    sk_invoke_opts o = {.stream = collect, .stream_ud = &got};
    char *out = NULL;
    CHECK(sk_invoke(k, "P.Echo", v, &o, &out) == SK_OK);
    CHECK_STR(out, text);
    CHECK_STR(got.p, text);
    sk_free(out);
    buf_free(&got);
    sk_vars_free(v);
    sk_kernel_free(k);
}

TEST(test_response_cache)
{
    char cache[256];
    snprintf(cache, sizeof cache, "%s", tu_tmpfile("", ".db"));
    setenv("SKEIN_CACHE", cache, 1);
    sk_kernel *k = kernel();
    const char *trace = tu_tmpfile("", ".jsonl");
    sk_kernel_set_trace(k, trace);
    /* temperature 0: cached automatically */
    CHECK(sk_kernel_add_semantic(k, "C", "Det", "plain {{$input}}",
                                 "{\"completion\": {\"temperature\": 0}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "C", "Warm", "plain {{$input}}",
                                 "{\"completion\": {\"temperature\": 0.7}}") == SK_OK);
    sk_status st;
    sk_usage u;
    char *out = run(k, "C.Det", "a", NULL, &st);
    CHECK_STR(out, "Paris");
    sk_free(out);
    out = run(k, "C.Det", "a", NULL, &st);
    CHECK_STR(out, "Paris");
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 1);
    CHECK_INT(u.cache_hits, 1);
    CHECK_INT(u.cache_misses, 1);
    out = run(k, "C.Det", "b", NULL, &st); /* another prompt: a miss */
    sk_free(out);
    /* not deterministic: never cached unless forced */
    out = run(k, "C.Warm", "a", NULL, &st);
    sk_free(out);
    out = run(k, "C.Warm", "a", NULL, &st);
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 4);
    out = run(k, "C.Warm", "a", "{\"cache\": true}", &st);
    sk_free(out);
    out = run(k, "C.Warm", "a", "{\"cache\": true}", &st);
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 5);
    CHECK_INT(u.cache_hits, 2);
    out = run(k, "C.Det", "a", "{\"cache\": false}", &st); /* forced off */
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 6);
    sk_model_usage mu;
    CHECK_INT(sk_kernel_model_usage_count(k), 1);
    CHECK(sk_kernel_model_usage_at(k, 0, &mu) == SK_OK);
    CHECK_INT(mu.calls, 6);
    CHECK_INT(mu.cache_hits, 2);
    CHECK_STR(mu.model, rules);
    sk_kernel_free(k);
    /* a second kernel (another process, in effect) shares the cache */
    k = kernel();
    CHECK(sk_kernel_add_semantic(k, "C", "Det", "plain {{$input}}",
                                 "{\"completion\": {\"temperature\": 0}}") == SK_OK);
    out = run(k, "C.Det", "a", NULL, &st);
    CHECK_STR(out, "Paris");
    sk_free(out);
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 0);
    sk_kernel_free(k);
    char *t = slurp(trace);
    CHECK_CONTAINS(t, "\"cache\":\"hit\"");
    CHECK_CONTAINS(t, "\"cache\":\"miss\"");
    free(t);
    setenv("SKEIN_CACHE", "off", 1);
}

TEST(test_record_and_replay)
{
    char cassette[256];
    snprintf(cassette, sizeof cassette, "%s", tu_tmpfile("", ".jsonl"));
    setenv("SKEIN_RECORD", cassette, 1);
    sk_kernel *k = kernel();
    unsetenv("SKEIN_RECORD");
    CHECK(sk_kernel_add_semantic(k, "R", "A", "plain {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "R", "B", "vary {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    sk_status st;
    char *a = run(k, "R.A", "one", NULL, &st);
    char *b1 = run(k, "R.B", "two", NULL, &st);
    char *b2 = run(k, "R.B", "two", NULL, &st);
    CHECK_STR(b1, "Lyon");
    CHECK_STR(b2, "Nice");
    sk_kernel_free(k);
    /* the cassette replays the run exactly, in order, offline */
    k = kernel();
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", cassette);
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "R", "A", "plain {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "R", "B", "vary {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    char *ra = run(k, "R.A", "one", NULL, &st);
    char *rb1 = run(k, "R.B", "two", NULL, &st);
    char *rb2 = run(k, "R.B", "two", NULL, &st);
    CHECK_STR(ra, a);
    CHECK_STR(rb1, b1);
    CHECK_STR(rb2, b2);
    char *none = run(k, "R.A", "never recorded", NULL, &st);
    CHECK(st == SK_MODEL && !none);
    sk_free(a);
    sk_free(b1);
    sk_free(b2);
    sk_free(ra);
    sk_free(rb1);
    sk_free(rb2);
    sk_kernel_free(k);
    /* a broken cassette line is reported with its line */
    const char *bad = tu_tmpfile("{\"prompt\":\"x\",\"reply\":\"y\"}\n{\"nope\":1}\n", ".jsonl");
    k = kernel();
    snprintf(spec, sizeof spec, "scripted:%s", bad);
    sk_kernel_set_model(k, spec);
    sk_kernel_add_semantic(k, "R", "A", "x", NULL);
    none = run(k, "R.A", NULL, NULL, &st);
    CHECK(st == SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), ":2: not a recorded exchange");
    sk_kernel_free(k);
}

TEST(test_limits)
{
    sk_kernel *k = kernel();
    /* rpm 2 on one endpoint: the third request must wait */
    CHECK(sk_kernel_set_limits(k, "openai:x@http://h/v1", 2, 0, 0) == SK_OK);
    CHECK_INT(lim_admit(k, "openai:x@http://h/v1", 10), 0);
    CHECK_INT(lim_admit(k, "openai:x@http://h/v1", 10), 0);
    long wait = lim_admit(k, "openai:x@http://h/v1", 10);
    CHECK(wait > 59000 && wait <= 60000);
    CHECK_INT(lim_admit(k, "openai:other@http://h/v1", 10), 0); /* not limited */
    /* tpm by kind, corrected by what the server counted */
    CHECK(sk_kernel_set_limits(k, "ollama", 0, 100, 0) == SK_OK);
    CHECK_INT(lim_admit(k, "ollama:m", 80), 0);
    CHECK(lim_admit(k, "ollama:m", 50) > 0);
    lim_done(k, "ollama:m", 80, 20);
    CHECK_INT(lim_admit(k, "ollama:m", 50), 0);
    CHECK(sk_kernel_set_limits(k, "x", -1, 0, 0) == SK_USAGE);
    /* an in-flight cap of 1 on the scripted model: calls still all end */
    CHECK(sk_kernel_set_limits(k, rules, 0, 0, 1) == SK_OK);
    /* 50 ms each, so overlapping calls would be seen in flight together */
    CHECK(sk_kernel_add_semantic(k, "L", "S", "slowish", "{\"uncertainty\": false}") == SK_OK);
    sk_call *c[4];
    for (int i = 0; i < 4; i++)
        CHECK(sk_invoke_async(k, "L.S", NULL, NULL, &c[i]) == SK_OK);
    long peak = 0;
    while (sk_kernel_run(k, 5) > 0)
        if (kern_model_inflight(k) > peak)
            peak = kern_model_inflight(k);
    CHECK_INT(peak, 1);
    for (int i = 0; i < 4; i++) {
        CHECK(sk_call_status(c[i]) == SK_OK);
        sk_call_free(c[i]);
    }
    sk_kernel_free(k);
}

TEST(test_output_shapes)
{
    sk_kernel *k = kernel();
    const char *r = tu_tmpfile(
        "{\"rules\":["
        "{\"match\":\"^pick(?s:.*)not have the required form\",\"reply\":\"Yes.\"},"
        "{\"match\":\"^pick\",\"reply\":\"Perhaps\"},"
        "{\"match\":\"^person\",\"reply\":\"Sure! ```json\\n{\\\"name\\\": \\\"Ada\\\", \\\"age\\\": 7}\\n```\"},"
        "{\"match\":\"^stubborn\",\"reply\":\"not json at all\"}"
        "]}", ".json");
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", r);
    sk_kernel_set_model(k, spec);
    CHECK(sk_kernel_add_semantic(k, "O", "Pick", "pick one",
              "{\"uncertainty\": false, \"output\": {\"choice\": [\"yes\", \"no\"]}}") == SK_OK);
    sk_status st;
    char *out = run(k, "O.Pick", NULL, NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "yes"); /* retried with the problem, then normalised */
    sk_free(out);
    const char *schema = "{\"uncertainty\": false, \"output\": {\"json_schema\": {\"type\": \"object\","
                         " \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\","
                         " \"maximum\": 9}}, \"required\": [\"name\", \"age\"]}}}";
    CHECK(sk_kernel_add_semantic(k, "O", "Person", "person", schema) == SK_OK);
    out = run(k, "O.Person", NULL, NULL, &st);
    CHECK(st == SK_OK);
    CHECK_STR(out, "{\"name\": \"Ada\", \"age\": 7}"); /* the bare JSON */
    sk_free(out);
    CHECK(sk_kernel_add_semantic(k, "O", "Stub", "stubborn",
              "{\"uncertainty\": false, \"output\": {\"regex\": \"^\\\\d+$\", \"retries\": 1}}") == SK_OK);
    out = run(k, "O.Stub", NULL, NULL, &st);
    CHECK(st == SK_DATA && !out);
    CHECK_CONTAINS(sk_errmsg(k), "after 2 tries");
    CHECK_STR(sk_error_get(k, "output"), "not json at all");
    CHECK(sk_kernel_add_semantic(k, "O", "Bad", "x",
              "{\"output\": {\"json_schema\": {\"type\": \"int\"}}}") == SK_CONFIG);
    sk_kernel_free(k);
}

int main(void)
{
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    unsetenv("SKEIN_MODEL");
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENAI_BASE_URL");
    setenv("SKEIN_CACHE", "off", 1);
    setup_files();
    RUN(test_hedging_and_chain);
    RUN(test_protocol_marker);
    RUN(test_logprobs);
    RUN(test_self_consistency);
    RUN(test_native_raise);
    RUN(test_cascade);
    RUN(test_cascade_on_the_calibrated_signal);
    RUN(test_review);
    RUN(test_filters);
    RUN(test_bad_policy);
    RUN(test_redaction_round_trip);
    RUN(test_redaction_while_streaming);
    RUN(test_response_cache);
    RUN(test_record_and_replay);
    RUN(test_limits);
    RUN(test_output_shapes);
    return tu_finish();
}
