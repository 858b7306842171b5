/* test_policy.c -- policy parsing (defaults, overlays, every error) and
 * the uncertainty, review and filter detectors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* Parses a NUL-terminated document over base; NULL on error, with the
 * message left in *err (caller frees). */
static sk_policy *parse(const char *json, const sk_policy *base, char **err)
{
    sk_policy *p = NULL;
    char *e = NULL;
    sk_status rc = pol_parse(json, json ? strlen(json) : 0, "f.json", base,
                             &p, &e);
    if (err)
        *err = e;
    else
        free(e);
    if (rc != SK_OK && p)
        return NULL; /* never: a failed parse leaves *out NULL */
    return p;
}

/* The status and message of a parse expected to fail. */
static sk_status parse_err(const char *json, char **err)
{
    sk_policy *p = NULL;
    *err = NULL;
    sk_status rc = pol_parse(json, strlen(json), "f.json", NULL, &p, err);
    CHECK(p == NULL);
    pol_free(p);
    return rc;
}

static void check_error(const char *json, const char *want)
{
    char *err;
    sk_status rc = parse_err(json, &err);
    CHECK_INT(rc, SK_CONFIG);
    CHECK_STR(err, want);
    free(err);
}

/* A text verdict: uncertain, its reason and question (NULL for none). */
static void check_text(const sk_policy *p, const char *reply, int uncertain,
                       const char *reason, const char *question)
{
    unc_verdict v = {0};
    CHECK_INT(unc_check_text(p, reply, NULL, &v), SK_OK);
    CHECK_INT(v.uncertain, uncertain);
    if (!uncertain) {
        CHECK(v.reason == NULL);
    } else if (reason) {
        CHECK_STR(v.reason, reason);
    }
    if (question)
        CHECK_STR(v.question, question);
    else
        CHECK(v.question == NULL);
    CHECK(v.confidence == -1);
    unc_verdict_clear(&v);
}

TEST(test_defaults)
{
    sk_policy *p = parse(NULL, NULL, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_INT(p->protocol, 0);
    /* Hedge phrases are an opt-in; a reply that asks back is the default
     * signal. */
    CHECK_INT(p->hedging, 0);
    CHECK(p->hedge_re == NULL);
    CHECK_INT(p->asks_back, 1);
    CHECK_INT(p->raise, 1);
    CHECK(p->sample_temperature == 0.7);
    CHECK_INT(p->self_check, 0);
    CHECK_INT(p->verbalized, 0);
    CHECK_INT(p->want_logprobs, 0);
    CHECK_INT(p->check_logprobs, 1);
    CHECK(p->min_mean_prob == 0.5);
    CHECK(p->min_token_prob == 0.0);
    CHECK_INT(p->samples, 1);
    CHECK(p->min_agreement == 0.5);
    CHECK(p->judge == NULL);
    CHECK_INT(p->n_models, 0);
    CHECK(p->review == NULL);
    CHECK_INT(p->review_rounds, 2);
    CHECK_INT(p->n_in, 0);
    CHECK_INT(p->n_out, 0);
    CHECK_INT(p->redact, -1);
    CHECK(p->redact_rules == NULL);
    pol_free(p);

    /* Blank text and a config with none of our keys are the defaults. */
    p = parse("  \n ", NULL, NULL);
    CHECK(p && p->hedging == 0 && p->asks_back == 1 && p->samples == 1);
    pol_free(p);
    p = parse("{\"schema\": 1, \"description\": \"x\", \"models\": null}",
              NULL, NULL);
    CHECK(p && p->n_models == 0 && p->review_rounds == 2);
    pol_free(p);
    pol_free(NULL);
}

TEST(test_uncertainty_keys)
{
    sk_policy *p = parse(
        "{\"uncertainty\": {\"protocol\": true, \"hedging\": false,"
        " \"logprobs\": {\"request\": true, \"check\": false,"
        " \"min_mean\": 0.7, \"min_token\": \"0.05\"},"
        " \"samples\": 5, \"agreement\": 0.8, \"judge\": \"Judge.Same\"}}",
        NULL, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_INT(p->protocol, 1);
    CHECK_INT(p->hedging, 0);
    CHECK_INT(p->want_logprobs, 1);
    CHECK_INT(p->check_logprobs, 0);
    CHECK(p->min_mean_prob == 0.7);
    CHECK(p->min_token_prob == 0.05);
    CHECK_INT(p->samples, 5);
    CHECK(p->min_agreement == 0.8);
    CHECK_STR(p->judge, "Judge.Same");

    /* "uncertainty": true restores this section's defaults. */
    sk_policy *q = parse("{\"uncertainty\": true}", p, NULL);
    CHECK(q && q->protocol == 0 && q->hedging == 0 && !q->hedge_re &&
          q->asks_back == 1 && q->samples == 1 && q->judge == NULL && q->min_mean_prob == 0.5);
    pol_free(q);

    /* The shorthand false turns every signal off. */
    q = parse("{\"uncertainty\": false}", p, NULL);
    CHECK(q && q->protocol == 0 && q->hedging == 0 &&
          q->want_logprobs == 0 && q->check_logprobs == 0 &&
          q->samples == 1 && q->judge == NULL);
    pol_free(q);

    /* logprobs shorthands, judge false. */
    q = parse("{\"uncertainty\": {\"logprobs\": false, \"judge\": false}}",
              p, NULL);
    CHECK(q && q->want_logprobs == 0 && q->check_logprobs == 0 &&
          q->judge == NULL && q->samples == 5);
    pol_free(q);
    q = parse("{\"uncertainty\": {\"logprobs\": true}}", NULL, NULL);
    CHECK(q && q->want_logprobs == 1 && q->check_logprobs == 1);
    pol_free(q);
    pol_free(p);

    /* Keys are case-insensitive, as everywhere in SK configs. */
    p = parse("{\"Uncertainty\": {\"Samples\": 3}}", NULL, NULL);
    CHECK(p && p->samples == 3);
    pol_free(p);
}

TEST(test_hedging_lists)
{
    sk_policy *p = parse("{\"uncertainty\": {\"hedging\": "
                         "[\"\\\\bmaybe\\\\b\", \"perhaps\"]}}",
                         NULL, NULL);
    CHECK(p && p->hedging == 1 && p->hedge_re);
    if (!p)
        return;
    check_text(p, "Maybe it is Paris.", 1, "hedging: \"Maybe\"", NULL);
    check_text(p, "It is perhaps Lyon, or Nice?", 1, "hedging: \"perhaps\"",
               "It is perhaps Lyon, or Nice?");
    /* A reply that asks back says so first, whatever the phrases. */
    check_text(p, "Perhaps. Which city do you mean?", 1,
               "asks back: the reply asks instead of answering",
               "Which city do you mean?");
    /* The default phrases are gone. */
    check_text(p, "I'm not sure.", 0, NULL, NULL);

    /* true over a custom list keeps the list; false turns it off. */
    sk_policy *q = parse("{\"uncertainty\": {\"hedging\": true}}", p, NULL);
    check_text(q, "maybe", 1, "hedging: \"maybe\"", NULL);
    pol_free(q);
    q = parse("{\"uncertainty\": {\"hedging\": false}}", p, NULL);
    check_text(q, "maybe", 0, NULL, NULL);
    /* ... and true again brings the phrases back. */
    sk_policy *r = parse("{\"uncertainty\": {\"hedging\": true}}", q, NULL);
    check_text(r, "maybe", 1, "hedging: \"maybe\"", NULL);
    pol_free(r);
    pol_free(q);

    /* An empty list turns hedging off. */
    q = parse("{\"uncertainty\": {\"hedging\": []}}", NULL, NULL);
    CHECK(q && q->hedging == 0 && q->hedge_re == NULL);
    check_text(q, "I'm not sure.", 0, NULL, NULL);
    r = parse("{\"uncertainty\": {\"hedging\": true}}", q, NULL);
    check_text(r, "I'm not sure.", 1, NULL, NULL);
    pol_free(r);
    pol_free(q);
    pol_free(p);

    /* A pattern with an open \Q does not swallow the joining syntax. */
    p = parse("{\"uncertainty\": {\"hedging\": [\"\\\\Qa+b\", \"c?d\"]}}",
              NULL, NULL);
    check_text(p, "x a+b y", 1, "hedging: \"a+b\"", NULL);
    check_text(p, "ab", 0, NULL, NULL);
    check_text(p, "D", 1, "hedging: \"D\"", NULL);
    pol_free(p);
}

TEST(test_models_review)
{
    sk_policy *p = parse("{\"models\": [\"openai:small@http://127.0.0.1:8080"
                         "/v1\", \"openai:gpt-4o\"],"
                         " \"review\": \"Review.Check\"}",
                         NULL, NULL);
    CHECK(p && p->n_models == 2);
    if (!p)
        return;
    CHECK_STR(p->models[0], "openai:small@http://127.0.0.1:8080/v1");
    CHECK_STR(p->models[1], "openai:gpt-4o");
    CHECK_STR(p->review, "Review.Check");
    CHECK_INT(p->review_rounds, 2);

    sk_policy *q = parse("{\"models\": \"openai:gpt-4o-mini\","
                         " \"review\": {\"rounds\": 0}}",
                         p, NULL);
    CHECK(q && q->n_models == 1);
    if (q) {
        CHECK_STR(q->models[0], "openai:gpt-4o-mini");
        CHECK_STR(q->review, "Review.Check"); /* kept from the base */
        CHECK_INT(q->review_rounds, 0);
    }
    pol_free(q);

    q = parse("{\"models\": [], \"review\": false}", p, NULL);
    CHECK(q && q->n_models == 0 && q->models == NULL && q->review == NULL);
    pol_free(q);

    q = parse("{\"review\": {\"function\": \"R.Strict\", \"rounds\": 10}}", p,
              NULL);
    CHECK(q && q->review && strcmp(q->review, "R.Strict") == 0 &&
          q->review_rounds == 10);
    pol_free(q);
    pol_free(p);
}

TEST(test_filters)
{
    const char *doc =
        "{\"filters\": {"
        " \"input\": [{\"name\": \"no-ssn\","
        "   \"pattern\": \"\\\\b\\\\d{3}-\\\\d{2}-\\\\d{4}\\\\b\"},"
        "  {\"name\": \"policy\", \"function\": \"Filter.Content\","
        "   \"policy\": \"No medical advice.\"}],"
        " \"output\": [{\"pattern\": \"(?i)secret\"}]}}";
    sk_policy *p = parse(doc, NULL, NULL);
    CHECK(p && p->n_in == 2 && p->n_out == 1);
    if (!p || p->n_in != 2 || p->n_out != 1) {
        pol_free(p);
        return;
    }
    CHECK_STR(p->in_filters[0].name, "no-ssn");
    CHECK(p->in_filters[0].re != NULL && p->in_filters[0].function == NULL);
    CHECK_STR(p->in_filters[1].function, "Filter.Content");
    CHECK_STR(p->in_filters[1].policy, "No medical advice.");
    CHECK(p->in_filters[1].re == NULL);
    CHECK_STR(p->out_filters[0].name, "output[0]");

    char *m = NULL;
    CHECK_INT(pol_filter_match(&p->in_filters[0], "my ssn is 123-45-6789.",
                               &m),
              1);
    CHECK_STR(m, "123-45-6789");
    free(m);
    CHECK_INT(pol_filter_match(&p->in_filters[0], "call 1234-56-7890", &m),
              0);
    CHECK(m == NULL);
    CHECK_INT(pol_filter_match(&p->out_filters[0], "A SECRET plan", NULL), 1);
    /* Model-based rules never match here; invalid UTF-8 is just bytes. */
    CHECK_INT(pol_filter_match(&p->in_filters[1], "anything", NULL), 0);
    CHECK_INT(pol_filter_match(&p->out_filters[0], "\xff\xfe secret", NULL),
              1);

    /* One direction replaced, the other kept; false clears both. */
    sk_policy *q = parse("{\"filters\": {\"output\": []}}", p, NULL);
    CHECK(q && q->n_in == 2 && q->n_out == 0);
    if (q)
        CHECK_INT(pol_filter_match(&q->in_filters[0], "123-45-6789", NULL),
                  1);
    pol_free(q);
    q = parse("{\"filters\": false}", p, NULL);
    CHECK(q && q->n_in == 0 && q->n_out == 0);
    pol_free(q);
    pol_free(p);

    /* A catastrophic pattern ends in an error, not a hang. */
    p = parse("{\"filters\": {\"input\": [{\"pattern\": \"(a+)+$\"}]}}", NULL,
              NULL);
    if (p && p->n_in == 1) {
        char big[4096];
        memset(big, 'a', sizeof big - 2);
        big[sizeof big - 2] = 'b';
        big[sizeof big - 1] = '\0';
        CHECK_INT(pol_filter_match(&p->in_filters[0], big, NULL), -1);
    } else {
        CHECK(0);
    }
    pol_free(p);
}

TEST(test_redact)
{
    sk_policy *p = parse("{\"redact\": true}", NULL, NULL);
    CHECK(p && p->redact == 1);
    pol_free(p);
    p = parse("{\"redact\": false}", NULL, NULL);
    CHECK(p && p->redact == 0);
    sk_policy *q = parse("{\"redact\": \"auto\"}", p, NULL);
    CHECK(q && q->redact == -1);
    pol_free(q);
    pol_free(p);

    p = parse("{\"redact\": {\"enabled\": true, \"rules\":"
              " [{\"name\": \"EMPLOYEE_ID\", \"pattern\": \"E\\\\d{6}\"}]}}",
              NULL, NULL);
    CHECK(p && p->redact == 1 && p->redact_rules != NULL);
    /* A copy rebuilds the rules; an override without rules keeps them. */
    q = parse("{\"redact\": {\"enabled\": false}}", p, NULL);
    CHECK(q && q->redact == 0 && q->redact_rules != NULL &&
          q->redact_rules != p->redact_rules);
    pol_free(q);
    q = parse("{\"redact\": {\"rules\": []}}", p, NULL);
    CHECK(q && q->redact == 1 && q->redact_rules == NULL);
    pol_free(q);
    pol_free(p);
}

TEST(test_overlay)
{
    sk_policy *base = parse(
        "{\"uncertainty\": {\"samples\": 3, \"judge\": \"J.Same\"},"
        " \"models\": [\"openai:a\", \"openai:b\"], \"review\": \"R.Check\","
        " \"filters\": {\"input\": [{\"pattern\": \"x+\"}]}, \"redact\": true}",
        NULL, NULL);
    CHECK(base != NULL);
    if (!base)
        return;
    sk_policy *o = parse("{\"uncertainty\": {\"agreement\": 0.9,"
                         " \"hedging\": true},"
                         " \"models\": [\"openai:c\"]}",
                         base, NULL);
    CHECK(o != NULL);
    if (!o) {
        pol_free(base);
        return;
    }
    /* Replaced in the overlay ... */
    CHECK(o->min_agreement == 0.9);
    CHECK(o->n_models == 1 && strcmp(o->models[0], "openai:c") == 0);
    /* ... kept from the base ... */
    CHECK_INT(o->samples, 3);
    CHECK_STR(o->judge, "J.Same");
    CHECK_STR(o->review, "R.Check");
    CHECK_INT(o->redact, 1);
    CHECK_INT(o->n_in, 1);
    /* ... and the base untouched. */
    CHECK(base->min_agreement == 0.5);
    CHECK_INT(base->n_models, 2);
    CHECK_STR(base->models[1], "openai:b");
    /* Deep copies: the overlay outlives its base. */
    CHECK(o->judge != base->judge && o->in_filters != base->in_filters &&
          o->in_filters[0].re != base->in_filters[0].re);
    pol_free(base);
    CHECK_INT(pol_filter_match(&o->in_filters[0], "axxb", NULL), 1);
    check_text(o, "I am not sure.", 1, "hedging: \"I am not sure\"", NULL);
    /* A copy with nothing to apply equals its base. */
    sk_policy *c = parse("", o, NULL);
    CHECK(c && c->samples == 3 && c->n_models == 1 && c->n_in == 1 &&
          c->hedge_re && c->hedge_re != o->hedge_re);
    pol_free(c);
    pol_free(o);
}

TEST(test_errors)
{
    check_error("{\"uncertainty\": {\"samples\": 0}}",
                "f.json: uncertainty.samples must be a whole number from 1 "
                "to 16");
    check_error("{\"uncertainty\": {\"samples\": 17}}",
                "f.json: uncertainty.samples must be a whole number from 1 "
                "to 16");
    check_error("{\"uncertainty\": {\"samples\": 2.5}}",
                "f.json: uncertainty.samples must be a whole number from 1 "
                "to 16");
    check_error("{\"uncertainty\": {\"agreement\": 1.5}}",
                "f.json: uncertainty.agreement must be a number from 0 to 1");
    check_error("{\"uncertainty\": {\"logprobs\": {\"min_mean\": -0.1}}}",
                "f.json: uncertainty.logprobs.min_mean must be a number from "
                "0 to 1");
    check_error("{\"uncertainty\": {\"logprobs\": {\"min_token\": \"x\"}}}",
                "f.json: uncertainty.logprobs.min_token must be a number from "
                "0 to 1");
    check_error("{\"uncertainty\": {\"logprobs\": {\"check\": 1}}}",
                "f.json: uncertainty.logprobs.check must be true or false");
    check_error("{\"uncertainty\": {\"logprobs\": 3}}",
                "f.json: uncertainty.logprobs must be true, false or an "
                "object");
    check_error("{\"uncertainty\": {\"protocol\": \"yes\"}}",
                "f.json: uncertainty.protocol must be true or false");
    check_error("{\"uncertainty\": 1}",
                "f.json: uncertainty must be true, false or an object");
    check_error("{\"uncertainty\": {\"hedging\": \"maybe\"}}",
                "f.json: uncertainty.hedging must be true, false or an array "
                "of patterns");
    check_error("{\"uncertainty\": {\"hedging\": [\"ok\", 3]}}",
                "f.json: uncertainty.hedging[1] must be a non-empty string");
    check_error("{\"uncertainty\": {\"hedging\": [\"ok\", \"(open\"]}}",
                "f.json: uncertainty.hedging[1]: missing closing parenthesis "
                "at offset 5");
    check_error("{\"uncertainty\": {\"judge\": \"\"}}",
                "f.json: uncertainty.judge must be a function name "
                "(\"Skill.Function\") or false");
    check_error("{\"models\": {\"a\": 1}}",
                "f.json: models must be an array of model specs");
    check_error("{\"models\": [\"openai:a\", \"\"]}",
                "f.json: models[1] must be a model spec such as "
                "\"openai:gpt-4o\"");
    check_error("{\"review\": true}",
                "f.json: review must be a function name, an object or false");
    check_error("{\"review\": {\"rounds\": 11, \"function\": \"R.C\"}}",
                "f.json: review.rounds must be a whole number from 0 to 10");
    check_error("{\"review\": {\"rounds\": 1}}",
                "f.json: review.function is required");
    check_error("{\"filters\": []}",
                "f.json: filters must be an object with \"input\" and/or "
                "\"output\" lists, or false");
    check_error("{\"filters\": {\"input\": {}}}",
                "f.json: filters.input must be an array");
    check_error("{\"filters\": {\"output\": [\"x\"]}}",
                "f.json: filters.output[0] must be an object");
    check_error("{\"filters\": {\"input\": [{\"name\": \"n\"}]}}",
                "f.json: filters.input[0] needs either a \"pattern\" or a "
                "\"function\"");
    check_error("{\"filters\": {\"input\": [{\"pattern\": \"a\","
                " \"function\": \"F.G\"}]}}",
                "f.json: filters.input[0] needs either a \"pattern\" or a "
                "\"function\"");
    check_error("{\"filters\": {\"input\": [{\"pattern\": \"ok\"},"
                " {\"pattern\": \"a[\"}]}}",
                "f.json: filters.input[1].pattern: missing terminating ] for "
                "character class at offset 2");
    check_error("{\"filters\": {\"input\": [{\"pattern\": \"\"}]}}",
                "f.json: filters.input[0].pattern must be a non-empty string");
    check_error("{\"filters\": {\"input\": [{\"function\": 7}]}}",
                "f.json: filters.input[0].function must be a function name "
                "(\"Skill.Function\")");
    check_error("{\"filters\": {\"input\": [{\"function\": \"F.G\","
                " \"policy\": 1}]}}",
                "f.json: filters.input[0].policy must be a string");
    check_error("{\"filters\": {\"input\": [{\"name\": 1, \"pattern\": "
                "\"a\"}]}}",
                "f.json: filters.input[0].name must be a non-empty string");
    check_error("{\"redact\": \"sometimes\"}",
                "f.json: redact must be true, false or \"auto\"");
    check_error("{\"redact\": {\"enabled\": 1}}",
                "f.json: redact.enabled must be true, false or \"auto\"");
    check_error("{\"redact\": {\"rules\": [{\"name\": \"X\"}]}}",
                "f.json: redact.rules[0] must be an object with string "
                "\"name\" and \"pattern\"");
    check_error("[1, 2]", "f.json: a policy must be a JSON object");
    check_error("{\"models\": [\n  \"a\"\n  \"b\"]}",
                "f.json: 3:3: invalid JSON");

    /* redact.c's own verdict on a rule is passed on with its index. */
    char *err;
    CHECK_INT(parse_err("{\"redact\": {\"rules\": [{\"name\": \"A\","
                        " \"pattern\": \"a\"}, {\"name\": \"B\","
                        " \"pattern\": \"(\"}]}}",
                        &err),
              SK_CONFIG);
    CHECK_CONTAINS(err, "f.json: redact.rules[1]: ");
    free(err);

    /* Lists have a ceiling. */
    sk_buf b = {0};
    buf_adds(&b, "{\"models\": [");
    for (int i = 0; i < 65; i++)
        buf_printf(&b, "%s\"openai:m%d\"", i ? "," : "", i);
    buf_adds(&b, "]}");
    check_error(b.p, "f.json: models has more than 64 entries");
    buf_free(&b);

    /* So does the document. */
    size_t n = ((size_t)1 << 20) + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    sk_policy *p = NULL;
    err = NULL;
    CHECK_INT(pol_parse(big, n, "f.json", NULL, &p, &err), SK_TOO_LARGE);
    CHECK(p == NULL);
    CHECK_CONTAINS(err, "f.json: the policy is larger than");
    free(err);
    free(big);

    /* A NULL origin still gives a readable message, and errmsg may be
     * NULL. */
    CHECK_INT(pol_parse("[]", 2, NULL, NULL, &p, &err), SK_CONFIG);
    CHECK_STR(err, "policy: a policy must be a JSON object");
    free(err);
    CHECK_INT(pol_parse("[]", 2, NULL, NULL, &p, NULL), SK_CONFIG);
}

TEST(test_permissive)
{
    const char *doc = "{\n"
                      "  // the cascade, cheapest first\n"
                      "  \"models\": [\"openai:a\", \"openai:b\",],\n"
                      "  /* a block\n comment */\n"
                      "  \"review\": \"R.C\", \"x\": \"// not a comment,]\",\n"
                      "}\n";
    char *err = NULL;
    sk_policy *p = parse(doc, NULL, &err);
    CHECK(p && p->n_models == 2 && p->review);
    CHECK(err == NULL);
    pol_free(p);
    free(err);
    check_error("{\"review\": \"R.C\" /* open", "f.json: 1:18: invalid JSON");

    /* an older Semantic Kernel config.json's description of its result,
     * "output": {"parameters": [...]}, is not a shape and loads */
    p = parse("{\"output\": {\"parameters\": [{\"name\": \"cli\", \"defaultValue\": \"\"}]}}",
              NULL, &err);
    CHECK(p && p->shape == NULL);
    CHECK(err == NULL);
    pol_free(p);
    free(err);
    char *e2 = NULL;
    CHECK_INT(parse_err("{\"output\": {\"parameters\": [], \"choice\": [\"a\"]}}", &e2),
              SK_CONFIG);
    CHECK_CONTAINS(e2, "parameters");
    free(e2);
}

TEST(test_hedging_default)
{
    /* Off by default: an ordinary answer with a hedge word is an answer. */
    sk_policy *p = parse(NULL, NULL, NULL);
    check_text(p, "It depends on the weather.", 0, NULL, NULL);
    check_text(p, "I am not sure, but I think his arms were too short.", 0,
               NULL, NULL);
    pol_free(p);
    /* The built-in phrase list, opted in. */
    p = parse("{\"uncertainty\": {\"hedging\": true}}", NULL, NULL);
    if (!p) {
        CHECK(0);
        return;
    }
    check_text(p, "It depends on the weather.", 1,
               "hedging: \"It depends on\"", NULL);
    /* "depends" alone is an answer with a condition, not a hedge. */
    check_text(p, "This depends entirely on your budget.", 0, NULL, NULL);
    check_text(p, "The capital of France is Paris.", 0, NULL, NULL);
    check_text(p, "This is unambiguous: 42.", 0, NULL, NULL);
    /* A reply that asks back is named so, and the user sees its
     * questions. */
    check_text(p, "I’m not sure what you want. Do you need the total? Or "
                  "the average?",
               1, "asks back: the reply asks instead of answering",
               "Do you need the total? Or the average?");
    check_text(p, "I’m not sure it rains.", 1, "hedging: \"I’m not sure\"",
               NULL);
    check_text(p, "I don’t have enough information to answer.", 1,
               "hedging: \"I don’t have enough information\"", NULL);
    check_text(p, "The word is AMBIGUOUS here.", 1, "hedging: \"AMBIGUOUS\"",
               NULL);
    check_text(p, "There are several\ninterpretations of x.", 1,
               "hedging: \"There are several\ninterpretations\"", NULL);
    check_text(p, "Did you mean 3.5 or 4?", 1,
               "asks back: the reply asks instead of answering",
               "Did you mean 3.5 or 4?");
    check_text(p, "One possible reading is literal.", 1, NULL, NULL);
    check_text(p, "Without more context I would guess 7.", 1, NULL, NULL);
    /* Protocol off: the marker alone is not a signal. */
    check_text(p, "UNSURE: which year?", 0, NULL, NULL);
    /* A question without a hedge is not uncertainty. */
    check_text(p, "Paris. Anything else?", 0, NULL, NULL);
    check_text(p, "", 0, NULL, NULL);
    pol_free(p);
}

TEST(test_protocol)
{
    sk_policy *p = parse("{\"uncertainty\": {\"protocol\": true,"
                         " \"hedging\": true}}",
                         NULL, NULL);
    if (!p) {
        CHECK(0);
        return;
    }
    CHECK(strstr(unc_protocol_instruction(), "UNSURE:") != NULL);
    check_text(p, "UNSURE: Which year do you mean?", 1,
               "protocol: the model replied UNSURE", "Which year do you mean?");
    check_text(p, "  **UNSURE:** In which currency?  ", 1, NULL,
               "In which currency?");
    check_text(p, "Let me think.\n> **Unsure**: metric or imperial?\r\n", 1,
               NULL, "metric or imperial?");
    check_text(p, "unsure:", 1, "protocol: the model replied UNSURE", NULL);
    /* Mid-line, or without the colon, it is not the marker. */
    check_text(p, "I am UNSURE: maybe", 0, NULL, NULL);
    check_text(p, "UNSURE about this one", 0, NULL, NULL);
    /* With protocol on, hedging still works when there is no marker. */
    check_text(p, "It is unclear.", 1, "hedging: \"It is unclear\"", NULL);
    pol_free(p);
}

TEST(test_logprobs)
{
    sk_policy *p = parse(NULL, NULL, NULL);
    if (!p) {
        CHECK(0);
        return;
    }
    sk_logprob lp[2] = {{"Par", 0.0}, {"is", -INFINITY}};
    unc_verdict v = {0};
    /* Mean exactly at the threshold (0.5) is not uncertain. */
    CHECK_INT(unc_check_logprobs(p, lp, 2, 0, &v), SK_OK);
    CHECK_INT(v.uncertain, 0);
    CHECK(v.confidence == 0.5);
    CHECK(v.reason == NULL);
    unc_verdict_clear(&v);

    p->min_mean_prob = 0.51;
    CHECK_INT(unc_check_logprobs(p, lp, 2, 0, &v), SK_OK);
    CHECK_INT(v.uncertain, 1);
    CHECK_STR(v.reason, "logprobs: mean token probability 0.50 < 0.51");
    unc_verdict_clear(&v);

    /* The per-token floor, off at 0, names the weakest token. */
    p->min_mean_prob = 0.5;
    p->min_token_prob = 0.05;
    CHECK_INT(unc_check_logprobs(p, lp, 2, 0, &v), SK_OK);
    CHECK_INT(v.uncertain, 1);
    CHECK_STR(v.reason, "logprobs: token \"is\" probability 0.00 < 0.05");
    unc_verdict_clear(&v);

    sk_logprob sure[3] = {{"a", 0.0}, {"b", 0.0}, {"c", 0.0}};
    p->min_mean_prob = 1.0;
    p->min_token_prob = 1.0;
    CHECK_INT(unc_check_logprobs(p, sure, 3, 0, &v), SK_OK);
    CHECK_INT(v.uncertain, 0);
    CHECK(v.confidence == 1.0);
    unc_verdict_clear(&v);

    /* Nothing to judge, or judging off: no confidence. */
    CHECK_INT(unc_check_logprobs(p, sure, 0, 0, &v), SK_OK);
    CHECK(v.uncertain == 0 && v.confidence == -1);
    p->check_logprobs = 0;
    CHECK_INT(unc_check_logprobs(p, lp, 2, 0, &v), SK_OK);
    CHECK(v.uncertain == 0 && v.confidence == -1);
    unc_verdict_clear(&v);
    pol_free(p);
}

TEST(test_agreement)
{
    size_t maj = 99;
    char *a[] = {"Paris.", "  paris ", "\"Paris!\"", "Lyon"};
    CHECK(unc_agreement(a, 4, &maj) == 0.75);
    CHECK_INT(maj, 0);

    char *b[] = {"Lyon", "The  answer\nis 4", "the answer is 4.", "lyon"};
    CHECK(unc_agreement(b, 4, &maj) == 0.5);
    CHECK_INT(maj, 0); /* a tie goes to the earliest group */

    char *c[] = {"a", "b", "c"};
    CHECK(fabs(unc_agreement(c, 3, &maj) - 1.0 / 3) < 1e-12);
    CHECK_INT(maj, 0);

    char *d[] = {"x", "y", "y"};
    CHECK(fabs(unc_agreement(d, 3, &maj) - 2.0 / 3) < 1e-12);
    CHECK_INT(maj, 1);

    /* Inner punctuation still counts; a NULL answer is empty. */
    char *e[] = {"3.5", "35", NULL, ""};
    CHECK(unc_agreement(e, 4, &maj) == 0.5);
    CHECK_INT(maj, 2);

    CHECK(unc_agreement(a, 0, &maj) == 0);
    CHECK(unc_agreement(a, 1, NULL) == 1.0);
}

TEST(test_rev_flt)
{
    char *c = (char *)1;
    CHECK_INT(rev_parse("PASS", &c), 1);
    CHECK(c == NULL);
    CHECK_INT(rev_parse("  **pass**. Looks right.", &c), 1);
    CHECK(c == NULL);
    CHECK_INT(rev_parse("FAIL: the total is wrong.\n", &c), 0);
    CHECK_STR(c, "the total is wrong.");
    free(c);
    CHECK_INT(rev_parse("## Fail - missing units", &c), 0);
    CHECK_STR(c, "missing units");
    free(c);
    CHECK_INT(rev_parse("> **FAIL**\n\n1. Off by one.", &c), 0);
    CHECK_STR(c, "1. Off by one.");
    free(c);
    CHECK_INT(rev_parse("FAIL", &c), 0);
    CHECK_STR(c, "the reviewer gave no reasons");
    free(c);
    CHECK_INT(rev_parse("PASSED", &c), 0);
    CHECK_STR(c, "the reviewer's reply was neither PASS nor FAIL: PASSED");
    free(c);
    CHECK_INT(rev_parse("Looks good to me", &c), 0);
    CHECK_STR(c,
              "the reviewer's reply was neither PASS nor FAIL: Looks good to "
              "me");
    free(c);
    char lng[400];
    memset(lng, 'z', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    CHECK_INT(rev_parse(lng, &c), 0);
    CHECK(c && strlen(c) == strlen("the reviewer's reply was neither PASS "
                                   "nor FAIL: ") + 200 + 3);
    free(c);

    CHECK_INT(flt_parse("ALLOW", &c), 1);
    CHECK(c == NULL);
    CHECK_INT(flt_parse("allow, nothing wrong", &c), 1);
    CHECK_INT(flt_parse("BLOCK: gives a dosage", &c), 0);
    CHECK_STR(c, "gives a dosage");
    free(c);
    CHECK_INT(flt_parse("block", &c), 0);
    CHECK_STR(c, "the filter gave no reason");
    free(c);
    CHECK_INT(flt_parse("I think this is fine", &c), 0);
    CHECK_STR(c, "blocked because the filter's reply was neither ALLOW nor "
                 "BLOCK: I think this is fine");
    free(c);
    CHECK_INT(flt_parse(NULL, &c), 0);
    CHECK(c != NULL);
    free(c);
}

/* Every allocation of a full parse fails in turn: each ends in SK_OK or
 * SK_NOMEM, leaks nothing (ASan), and the last run succeeds. */
TEST(test_alloc_failures)
{
    const char *doc =
        "{ // all keys\n"
        " \"uncertainty\": {\"protocol\": true, \"hedging\": [\"maybe\","
        " \"perhaps\"], \"logprobs\": {\"request\": true}, \"samples\": 3,"
        " \"judge\": \"J.S\"},\n"
        " \"models\": [\"openai:a\", \"openai:b\"],\n"
        " \"review\": {\"function\": \"R.C\", \"rounds\": 1},\n"
        " \"filters\": {\"input\": [{\"name\": \"n\", \"pattern\": \"\\\\d+\"},"
        " {\"function\": \"F.C\", \"policy\": \"p\"}], \"output\": ["
        "{\"pattern\": \"x\"}]},\n"
        " \"redact\": {\"enabled\": true, \"rules\": [{\"name\": \"EMP\","
        " \"pattern\": \"E\\\\d+\"}]},\n"
        "}";
    sk_policy *base = parse(doc, NULL, NULL);
    CHECK(base != NULL);
    int ok = 0, nomem = 0, other = 0;
    for (long n = 1; n < 5000; n++) {
        sk_policy *p = NULL, *q = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = pol_parse(doc, strlen(doc), "f.json", NULL, &p, &err);
        sk_status rc2 = SK_NOMEM;
        if (rc == SK_OK)
            rc2 = pol_parse("{\"models\": []}", 14, "o", base, &q, NULL);
        sk_alloc_fail_at(0);
        if (rc == SK_NOMEM && p == NULL && err == NULL)
            nomem++;
        else if (rc != SK_OK)
            other++;
        if (rc == SK_OK && rc2 != SK_OK && rc2 != SK_NOMEM)
            other++;
        pol_free(p);
        pol_free(q);
        free(err);
        if (rc == SK_OK && rc2 == SK_OK) {
            ok = 1;
            break;
        }
    }
    CHECK(ok);
    CHECK(nomem > 10);
    CHECK_INT(other, 0);

    /* The detectors report SK_NOMEM too, leaving a clear verdict. */
    int seen_nomem = 0, done = 0;
    for (long n = 1; n < 100 && !done; n++) {
        unc_verdict v = {0};
        sk_alloc_fail_at(n);
        sk_status rc = unc_check_text(base, "maybe. Which one?", NULL, &v);
        sk_alloc_fail_at(0);
        if (rc == SK_NOMEM) {
            seen_nomem = 1;
            CHECK(v.reason == NULL && v.question == NULL);
        } else {
            done = rc == SK_OK && v.uncertain &&
                   strcmp(v.question, "Which one?") == 0;
        }
        unc_verdict_clear(&v);
    }
    CHECK(seen_nomem && done);
    pol_free(base);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_uncertainty_keys);
    RUN(test_hedging_lists);
    RUN(test_models_review);
    RUN(test_filters);
    RUN(test_redact);
    RUN(test_overlay);
    RUN(test_errors);
    RUN(test_permissive);
    RUN(test_hedging_default);
    RUN(test_protocol);
    RUN(test_logprobs);
    RUN(test_agreement);
    RUN(test_rev_flt);
    RUN(test_alloc_failures);
    return tu_finish();
}
