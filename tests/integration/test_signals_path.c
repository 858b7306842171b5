/* test_signals_path.c -- each uncertainty signal on the invoke path, as a
 * function's policy turns it on: the self-check judge and its verdict
 * token, verbalised confidence, samples at a temperature of their own and
 * their extracted answers, semantic entropy, a label's probability, the
 * logprobs a calibrated threshold asks for, and what sk_call_signals
 * reports.  The scripted model, and for what the server receives, the
 * loopback mock server's request log. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "all.h"
#include "testutil.h"

static const char *RULES =
    "{\"rules\":["
    "{\"match\":\"^CHECK(?s:.*)ANSWER Paris\",\"reply\":\"Yes\",\"logprobs\":[[\"Yes\",-0.1]]},"
    "{\"match\":\"^CHECK(?s:.*)ANSWER Lyon\",\"reply\":\"No\",\"logprobs\":[[\"No\",-0.05]]},"
    "{\"match\":\"^CHECK(?s:.*)ANSWER Nice\",\"reply\":\"Yes\"},"
    "{\"match\":\"^capital of France\",\"reply\":\"Paris\"},"
    "{\"match\":\"^capital of Italy\",\"reply\":\"Lyon\"},"
    "{\"match\":\"^capital of Spain\",\"reply\":\"Nice\"},"
    "{\"match\":\"(?s)^verbal low.*CONFIDENCE: N\",\"reply\":\"Lyon\\nCONFIDENCE: 20\"},"
    "{\"match\":\"(?s)^verbal high.*CONFIDENCE: N\",\"reply\":\"Paris\\n**Confidence:** 95\"},"
    "{\"match\":\"^verbal\",\"reply\":\"no instruction reached the model\"},"
    "{\"match\":\"^vary\",\"replies\":[\"Lyon\",\"Nice\",\"Lille\"]},"
    "{\"match\":\"^twoway\",\"replies\":[\"Lyon\",\"Lyon\",\"Nice\",\"Nice\"]},"
    "{\"match\":\"^extract\",\"replies\":[\"Six times seven. Answer: 42\","
    "\"Seven sixes make forty-two.\\nFinal answer: 42.\",\"So it is $\\\\boxed{42}$\"]},"
    "{\"match\":\"^label\",\"reply\":\"billing\",\"logprobs\":[[\"bill\",-0.01],[\"ing\",-1.2]]},"
    "{\"match\":\"^sure label\",\"reply\":\"billing\",\"logprobs\":[[\"bill\",-0.01],[\"ing\",-0.02]]}"
    "]}";

static sk_kernel *kernel(void)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", tu_tmpfile(RULES, ".json"));
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "J", "Check", "CHECK {{$task}} ANSWER {{$input}}",
                                 "{\"uncertainty\": {\"logprobs\": {\"request\": true,"
                                 " \"check\": false}, \"asks_back\": false}}") == SK_OK);
    return k;
}

static sk_status call(sk_kernel *k, const char *fn, const char *input,
                      const char *policy, char **out)
{
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", input);
    sk_invoke_opts o = {.policy = policy};
    *out = NULL;
    sk_status st = sk_invoke(k, fn, v, &o, out);
    sk_vars_free(v);
    return st;
}

TEST(test_self_check)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "S", "Capital", "capital of {{$input}}",
                                 "{\"uncertainty\": {\"self_check\": \"J.Check\"}}") == SK_OK);
    char *out;
    /* the judge's Yes at probability 0.90 vouches for the answer */
    CHECK_INT(call(k, "S.Capital", "France", NULL, &out), SK_OK);
    CHECK_STR(out, "Paris");
    sk_free(out);
    /* its No at 0.95 is P(True) 0.05: raised, and the judge was fresh:
     * it saw the request and the answer, nothing else */
    CHECK_INT(call(k, "S.Capital", "Italy", NULL, &out), SK_UNCERTAIN);
    CHECK_CONTAINS(sk_error_get(k, "reason"), "self-check");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"confidence\":0.04877");
    sk_free(js);
    /* with no logprobs its word decides */
    CHECK_INT(call(k, "S.Capital", "Spain", NULL, &out), SK_OK);
    CHECK_STR(out, "Nice");
    sk_free(out);
    /* a stricter floor raises even on the 0.90 Yes */
    CHECK_INT(call(k, "S.Capital", "France",
                   "{\"uncertainty\": {\"min_self_check\": 0.95}}", &out),
              SK_UNCERTAIN);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 8); /* one answer and one judge per call */
    sk_kernel_free(k);
}

TEST(test_verbalized)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "V", "Ask", "verbal {{$input}}",
                                 "{\"uncertainty\": {\"verbalized\": true}}") == SK_OK);
    char *out;
    CHECK_INT(call(k, "V.Ask", "low", NULL, &out), SK_UNCERTAIN);
    CHECK_CONTAINS(sk_error_get(k, "reason"), "confidence");
    CHECK_CONTAINS(sk_error_get(k, "reason"), "20% confidence");
    /* the protocol line never reaches the caller */
    CHECK_INT(call(k, "V.Ask", "high", NULL, &out), SK_OK);
    CHECK_STR(out, "Paris");
    sk_free(out);
    /* off: no instruction is sent */
    CHECK_INT(call(k, "V.Ask", "high", "{\"uncertainty\": {\"verbalized\": false}}", &out),
              SK_OK);
    CHECK_STR(out, "no instruction reached the model");
    sk_free(out);
    sk_kernel_free(k);
}

TEST(test_samples_extract_cluster_and_entropy)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "A", "Vary", "vary {{$input}}",
                                 "{\"uncertainty\": {\"samples\": 3}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "A", "Two", "twoway {{$input}}",
                                 "{\"uncertainty\": {\"samples\": 4, \"agreement\": 0.5,"
                                 " \"entropy\": 0.6}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "A", "Extract", "extract {{$input}}",
                                 "{\"uncertainty\": {\"samples\": 3, \"agreement\": 1}}") == SK_OK);
    char *out;
    CHECK_INT(call(k, "A.Vary", "x", NULL, &out), SK_UNCERTAIN);
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"candidates\":[\"Lyon\",\"Nice\",\"Lille\"]");
    sk_free(js);
    /* half and half passes agreement 0.5 but not entropy 0.6: two
     * clusters of two over four samples score 1 - log 2 / log 4 = 0.5 */
    CHECK_INT(call(k, "A.Two", "x", NULL, &out), SK_UNCERTAIN);
    CHECK_CONTAINS(sk_error_get(k, "reason"), "semantic entropy: score 0.50");
    /* three wordings of one answer agree once the answer is extracted */
    CHECK_INT(call(k, "A.Extract", "x", NULL, &out), SK_OK);
    CHECK_CONTAINS(out, "42");
    sk_free(out);
    sk_kernel_free(k);
}

TEST(test_label_probability)
{
    sk_kernel *k = kernel();
    const char *cfg = "{\"output\": {\"choice\": [\"billing\", \"bug\"]}}";
    CHECK(sk_kernel_add_semantic(k, "L", "Pick", "label {{$input}}", cfg) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "L", "Sure", "sure label {{$input}}", cfg) == SK_OK);
    char *out;
    /* the label's probability is the product over its tokens,
     * 0.99 * 0.30 = 0.30, where the mean would be 0.65 */
    CHECK_INT(call(k, "L.Pick", "x", NULL, &out), SK_UNCERTAIN);
    CHECK_CONTAINS(sk_error_get(k, "reason"), "label's probability 0.30");
    CHECK_INT(call(k, "L.Sure", "x", NULL, &out), SK_OK);
    CHECK_STR(out, "billing");
    sk_free(out);
    sk_kernel_free(k);
}

/* What sk_call_signals reports: every enabled signal, with raising off. */
TEST(test_call_signals)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_add_semantic(k, "S", "Capital", "capital of {{$input}}",
                                 "{\"uncertainty\": {\"self_check\": \"J.Check\","
                                 " \"raise\": false}}") == SK_OK);
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "Italy");
    sk_call *c = NULL;
    CHECK_INT(sk_invoke_async(k, "S.Capital", v, NULL, &c), SK_OK);
    CHECK_INT(sk_call_wait(c), SK_OK); /* scored, not raised */
    CHECK_STR(sk_call_result(c), "Lyon");
    const char *s = sk_call_signals(c);
    CHECK_CONTAINS(s, "\"answer\":\"Lyon\"");
    CHECK_CONTAINS(s, "\"raised\":\"self_check\"");
    CHECK_CONTAINS(s, "\"asks_back\":false");
    CHECK_CONTAINS(s, "\"self_check\":0.04877");
    sk_call_free(c);
    sk_vars_free(v);
    sk_kernel_free(k);
}

/* What the server receives: samples at their own temperature, and the
 * logprobs a calibrated threshold needs. */
TEST(test_what_the_server_sees)
{
    char scen[512];
    char logp[300];
    snprintf(logp, sizeof logp, "%s", tu_tmpfile("", ".jsonl"));
    snprintf(scen, sizeof scen, "{\"log\": \"%s\", \"echo\": true}", logp);
    char url[64];
    int pid = 0;
    if (tu_mock_start(tu_tmpfile(scen, ".json"), url, &pid) != 0) {
        CHECK(0);
        return;
    }
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    sk_kernel_set_option(k, "no_cache", "1");
    char spec[128];
    snprintf(spec, sizeof spec, "openai:test@%s/v1", url);
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "T", "Cold", "{{$input}}",
                                 "{\"completion\": {\"temperature\": 0},"
                                 " \"uncertainty\": {\"samples\": 3}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "T", "Once", "{{$input}}",
                                 "{\"completion\": {\"temperature\": 0}}") == SK_OK);
    CHECK(sk_kernel_add_semantic(k, "T", "Cal", "{{$input}}",
                                 "{\"uncertainty\": {\"calibrated\": {\"signal\": \"logprob\","
                                 " \"threshold\": 0.8, \"alpha\": 0.1}}}") == SK_OK);
    char *out;
    CHECK_INT(call(k, "T.Cold", "sampled", NULL, &out), SK_OK);
    sk_free(out);
    CHECK_INT(call(k, "T.Once", "single", NULL, &out), SK_OK);
    sk_free(out);
    call(k, "T.Cal", "calibrated", NULL, &out);
    sk_free(out);
    sk_kernel_free(k);
    tu_mock_stop(pid);
    char *l = NULL;
    size_t n = 0;
    CHECK(sk_read_file(logp, 1 << 24, &l, &n) == SK_OK);
    int hot = 0, cold = 0, lp = 0;
    for (char *line = l ? strtok(l, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *rec = cJSON_Parse(line);
        cJSON *body = cJSON_Parse(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "body")));
        char *flat = cJSON_PrintUnformatted(body);
        const cJSON *t = cJSON_GetObjectItem(body, "temperature");
        double temp = cJSON_IsNumber(t) ? t->valuedouble : -1;
        if (flat && strstr(flat, "sampled"))
            hot += temp == 0.7;
        if (flat && strstr(flat, "single"))
            cold += temp == 0;
        if (flat && strstr(flat, "calibrated"))
            lp += cJSON_IsTrue(cJSON_GetObjectItem(body, "logprobs"));
        cJSON_free(flat);
        cJSON_Delete(body);
        cJSON_Delete(rec);
    }
    CHECK_INT(hot, 3);  /* each sample at 0.7, not the function's 0 */
    CHECK_INT(cold, 1); /* one call keeps the function's own */
    CHECK_INT(lp, 1);   /* asked for without being configured */
    sk_free(l);
}

int main(void)
{
    RUN(test_self_check);
    RUN(test_verbalized);
    RUN(test_samples_extract_cluster_and_entropy);
    RUN(test_label_probability);
    RUN(test_call_signals);
    RUN(test_what_the_server_sees);
    return tu_finish();
}
