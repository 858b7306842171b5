/* test_signals.c -- the uncertainty signals and their calibration.
 *
 * The default detector (asks back) is measured on labelled replies in
 * tests/data/uncertainty: ordinary answers that carry hedge-like words and
 * questions, and replies that truly ask back.  asks_back.jsonl,
 * asks_back_2.jsonl and asks_back_3.jsonl were each written apart from the
 * detector and then used to tune it, so they guard against regressions;
 * asks_back_unseen.jsonl was written apart and never tuned on, so its
 * rates are the honest ones.
 * All rates are printed and held under ceilings.  The calibration's
 * guarantee is tested statistically: answers whose scores and
 * correctness come from a known distribution, many seeded trials, and the
 * true risk of each fitted threshold. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "all.h"
#include "testutil.h"

/* ceilings on the default detector's error rates: on the sets it was
 * tuned on, and on the one it never saw */
#define MAX_FALSE_POSITIVE 0.03
#define MAX_FALSE_NEGATIVE 0.05
#define MAX_FRESH_FALSE_POSITIVE 0.03
#define MAX_FRESH_FALSE_NEGATIVE 0.25

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

/* Runs the detector over one labelled set; prints and returns its rates. */
static int measure(const char *path, double *fpr, double *fnr)
{
    char *all = slurp(path);
    CHECK(all != NULL);
    if (!all)
        return 0;
    int pos = 0, neg = 0, fp = 0, fn = 0, line_no = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL);
        if (!j)
            continue;
        const cJSON *task = cJSON_GetObjectItem(j, "task");
        const cJSON *reply = cJSON_GetObjectItem(j, "reply");
        const cJSON *asks = cJSON_GetObjectItem(j, "asks");
        CHECK(cJSON_IsString(task) && cJSON_IsString(reply) && cJSON_IsBool(asks));
        if (!cJSON_IsString(task) || !cJSON_IsString(reply)) {
            cJSON_Delete(j);
            continue;
        }
        size_t qb = 0, qe = 0;
        int got = unc_asks_back(reply->valuestring, task->valuestring, &qb, &qe);
        CHECK(got >= 0);
        if (cJSON_IsTrue(asks)) {
            pos++;
            if (!got) {
                fn++;
                fprintf(stderr, "  %s:%d: missed ask: %.100s\n", path, line_no,
                        reply->valuestring);
            }
        } else {
            neg++;
            if (got) {
                fp++;
                fprintf(stderr, "  %s:%d: false alarm: %.*s\n", path, line_no,
                        (int)(qe - qb), reply->valuestring + qb);
            }
        }
        /* the question it reports is a stretch of the reply */
        if (got)
            CHECK(qe > qb && qe <= strlen(reply->valuestring));
        cJSON_Delete(j);
    }
    free(all);
    *fpr = neg ? (double)fp / neg : 1;
    *fnr = pos ? (double)fn / pos : 1;
    printf("asks back over %s: %d answers, %d asks; false positives %d "
           "(%.1f%%), false negatives %d (%.1f%%)\n",
           path, neg, pos, fp, *fpr * 100, fn, *fnr * 100);
    return neg + pos;
}

TEST(test_asks_back_labelled_sets)
{
    double fpr, fnr;
    CHECK(measure("data/uncertainty/asks_back.jsonl", &fpr, &fnr) >= 100);
    CHECK(fpr <= MAX_FALSE_POSITIVE);
    CHECK(fnr <= MAX_FALSE_NEGATIVE);
    CHECK(measure("data/uncertainty/asks_back_2.jsonl", &fpr, &fnr) >= 80);
    CHECK(fpr <= MAX_FALSE_POSITIVE);
    CHECK(fnr <= MAX_FALSE_NEGATIVE);
    CHECK(measure("data/uncertainty/asks_back_3.jsonl", &fpr, &fnr) >= 100);
    CHECK(fpr <= MAX_FALSE_POSITIVE);
    CHECK(fnr <= MAX_FALSE_NEGATIVE);
    /* the set it never saw */
    CHECK(measure("data/uncertainty/asks_back_unseen.jsonl", &fpr, &fnr) >= 120);
    CHECK(fpr <= MAX_FRESH_FALSE_POSITIVE);
    CHECK(fnr <= MAX_FRESH_FALSE_NEGATIVE);
}

TEST(test_asks_back_cases)
{
    size_t b, e;
    /* the three: a joke and a brainstorm answer, a translation asks */
    CHECK_INT(unc_asks_back("Why did the T-rex never clap? I am not sure, but I "
                            "think his arms were too short.",
                            "Tell a joke about a T-rex", &b, &e),
              0);
    CHECK_INT(unc_asks_back("It depends on what you mean by fast, but here are "
                            "ideas: 1. a bike 2. a scooter 3. a train",
                            "Brainstorm ways to get to work fast", &b, &e),
              0);
    const char *ask = "I'm not sure what you mean... could you clarify which "
                      "language you want?";
    CHECK_INT(unc_asks_back(ask, "Translate: the bank is by the river", &b, &e), 1);
    /* a question the prompt held is data */
    CHECK_INT(unc_asks_back("Could you clarify which file you mean?",
                            "Translate to English: Could you clarify which file "
                            "you mean?",
                            &b, &e),
              0);
    /* ... whatever the task: here the answer is the question it quotes */
    CHECK_INT(unc_asks_back("Could you clarify which plan you mean?",
                            "Chat log:\nAgent: Could you clarify which plan you "
                            "mean?\nCustomer: the family one\nWhat was the "
                            "agent's last line?",
                            &b, &e),
              0);
    /* a rhetorical opener is the start of an answer */
    CHECK_INT(unc_asks_back("Have you ever wondered why your sky is blue? Sunlight "
                            "scatters off the molecules of the air, and the short "
                            "blue waves scatter far more than the red ones.",
                            "Why is the sky blue?", &b, &e),
              0);
    /* an opening question about the user's own request is an ask, however
     * long the explanation after it */
    CHECK_INT(unc_asks_back("Which database are you on? The syntax for dates differs "
                            "a lot between them: PostgreSQL has date_trunc, MySQL "
                            "has DATE_FORMAT, and SQLite has strftime, so the query "
                            "changes with it.",
                            "Write SQL for sales per month", &b, &e),
              1);
    /* a lead-in that holds the task asks, even in a composed text */
    CHECK_INT(unc_asks_back("Love this idea, and I can make it punchy. Quick check "
                            "before I draft anything, is the launch on the 12th?",
                            "Write a tweet announcing our launch", &b, &e),
              1);
    /* "e.g." does not cut a question in two */
    CHECK_INT(unc_asks_back("Noted. And the dates, in what format should they be "
                            "(e.g. 2024-03-01 or 01/03/2024)?",
                            "Write a function that parses the dates", &b, &e),
              1);
    /* dialogue in quotes is a character's, not the reply's */
    CHECK_INT(unc_asks_back("\"Could you tell me the way?\" asked Tom. The old "
                            "man pointed north, and Tom walked on.",
                            "Write a two-line story", &b, &e),
              0);
    /* a reply quoted whole is still the reply */
    CHECK_INT(unc_asks_back("\"Which language do you want?\"", "Translate this", &b, &e), 1);
    /* an offer after a done task */
    CHECK_INT(unc_asks_back("Dear Sam, thank you for the parcel, it arrived "
                            "today and everyone loved it. Best, Ana. Would you "
                            "like me to make it shorter?",
                            "Write a thank-you note", &b, &e),
              0);
    /* the same offer alone is an ask */
    CHECK_INT(unc_asks_back("Do you want it formal or casual?", "Write a note", &b, &e), 1);
    CHECK_INT(unc_asks_back("Please specify the date range.", "Make the report", &b, &e), 1);
    CHECK_INT(unc_asks_back("", NULL, &b, &e), 0);
    CHECK_INT(unc_asks_back(NULL, NULL, &b, &e), 0);
    /* quoting and fences do not hang or fire: an unclosed quote, a fence */
    CHECK_INT(unc_asks_back("He said \"could you clarify", NULL, &b, &e), 1);
    CHECK_INT(unc_asks_back("```\nCould you clarify?\n```\nDone.", NULL, &b, &e), 0);
    CHECK_INT(unc_asks_back("> Could you clarify which file?\nIt is a.txt.", NULL, &b, &e), 0);
}

TEST(test_logprob_label_score)
{
    sk_logprob lp[3] = {{(char *)" ", log(0.5)}, {(char *)"pos", log(0.9)},
                        {(char *)"itive", log(0.8)}};
    /* a label: the product over its tokens, whitespace aside */
    CHECK(fabs(unc_logprob_score(lp, 3, 1) - 0.72) < 1e-9);
    /* free text: the mean */
    CHECK(fabs(unc_logprob_score(lp, 3, 0) - (0.5 + 0.9 + 0.8) / 3) < 1e-9);
    CHECK(unc_logprob_score(NULL, 0, 1) < 0);
    sk_policy *p = NULL;
    char *err = NULL;
    const char *doc = "{\"uncertainty\":{\"logprobs\":{\"min_mean\":0.75}}}";
    CHECK_INT(pol_parse(doc, strlen(doc), "f", NULL, &p, &err), SK_OK);
    CHECK(p && p->want_logprobs == 1); /* a threshold asks for them */
    unc_verdict v = {0};
    /* mean 0.73 and label 0.72 are both under 0.75; label 0.72 vs mean */
    CHECK_INT(unc_check_logprobs(p, lp, 3, 1, &v), SK_OK);
    CHECK_INT(v.uncertain, 1);
    CHECK_CONTAINS(v.reason, "label");
    unc_verdict_clear(&v);
    pol_free(p);
}

TEST(test_verbal_and_extraction)
{
    double c = -1;
    char *rest = NULL;
    CHECK_INT(unc_verbal_parse("Paris.\nCONFIDENCE: 85", &c, &rest), 1);
    CHECK(fabs(c - 0.85) < 1e-9);
    CHECK_STR(rest, "Paris.");
    free(rest);
    CHECK_INT(unc_verbal_parse("Paris.\n**Confidence:** 40%\n", &c, &rest), 1);
    CHECK(fabs(c - 0.40) < 1e-9);
    free(rest);
    CHECK_INT(unc_verbal_parse("Paris.", &c, &rest), 0);
    CHECK(rest == NULL);
    size_t b, e;
    const char *r = "Let me think. 6 times 7.\nFinal answer: 42";
    unc_extract_answer(r, &b, &e);
    CHECK_INT((long long)(e - b), 2);
    CHECK(strncmp(r + b, "42", 2) == 0);
    const char *bx = "so it is \\boxed{x+1} indeed";
    unc_extract_answer(bx, &b, &e);
    CHECK(strncmp(bx + b, "x+1", 3) == 0 && e - b == 3);
    /* samples that reason differently but answer alike agree */
    char *s[4] = {(char *)"First 6*7.\nAnswer: 42", (char *)"Sum it.\nAnswer: 42.",
                  (char *)"Hmm.\nAnswer: 41", (char *)"Answer: 42"};
    size_t pick = 9;
    double ent = -1;
    double a = unc_clusters(s, 4, &pick, &ent);
    CHECK(fabs(a - 0.75) < 1e-9);
    CHECK(pick != 2);
    /* H = -(.75 ln .75 + .25 ln .25) over ln 4 */
    double h = -(0.75 * log(0.75) + 0.25 * log(0.25));
    CHECK(fabs(ent - (1 - h / log(4))) < 1e-9);
    char *same[3] = {(char *)"yes", (char *)"Yes.", (char *)" yes"};
    CHECK(fabs(unc_clusters(same, 3, NULL, &ent) - 1) < 1e-9 && fabs(ent - 1) < 1e-9);
    char *diff[3] = {(char *)"a", (char *)"b", (char *)"c"};
    unc_clusters(diff, 3, NULL, &ent);
    CHECK(fabs(ent) < 1e-9);
}

TEST(test_self_check_score)
{
    sk_logprob yes[1] = {{(char *)"Yes", log(0.8)}};
    sk_logprob no[2] = {{(char *)" ", 0}, {(char *)"No", log(0.9)}};
    CHECK(fabs(unc_self_check_score("Yes", yes, 1) - 0.8) < 1e-9);
    CHECK(fabs(unc_self_check_score(" No, it does not.", no, 2) - 0.1) < 1e-9);
    CHECK(unc_self_check_score("**Yes**", NULL, 0) == 1);
    CHECK(unc_self_check_score("No.", NULL, 0) == 0);
    CHECK(unc_self_check_score("Perhaps", NULL, 0) < 0);
}

/* ---- calibration ------------------------------------------------------ */

static unsigned long long rng_state;
static double uniform(void)
{
    /* xorshift64*: seeded, the same on every machine */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

TEST(test_calibration_guarantee)
{
    /* A model whose answer is right with probability (1 + score) / 2:
     * a coin toss at score 0, always right at 1; scores uniform on [0,1],
     * so the true risk above threshold t is (1 - t) / 4, within alpha =
     * 0.1 for t >= 0.6.  Each trial draws a fresh calibration set and a
     * fresh test set from this distribution and fits a threshold.  The
     * promise: with probability at least 1 - delta the fitted threshold's
     * true risk is within alpha.  Counted two ways: the true risk, known
     * here exactly, and the error rate among test answers that pass,
     * which adds the test set's own sampling noise. */
    enum { NCAL = 1000, NTEST = 2000, TRIALS = 1000 };
    const double alpha = 0.1, delta = 0.1;
    static double cs[NCAL];
    static int cok[NCAL];
    rng_state = 0x5EED5EEDULL;
    int violated = 0, held_out_over = 0, fitted = 0;
    double coverage = 0, risk = 0, true_risk = 0;
    for (int s = 0; s < TRIALS; s++) {
        for (int i = 0; i < NCAL; i++) {
            cs[i] = uniform();
            cok[i] = uniform() < (1 + cs[i]) / 2;
        }
        double th = -1;
        const char *why = NULL;
        if (cal_fit(cs, cok, NCAL, alpha, delta, &th, &why) != 0)
            continue;
        fitted++;
        double tr = (1 - th) / 4;
        violated += tr > alpha + 1e-12;
        true_risk += tr;
        int acc = 0, wrong = 0;
        for (int i = 0; i < NTEST; i++) {
            double c = uniform();
            int right = uniform() < (1 + c) / 2;
            if (c >= th) {
                acc++;
                wrong += !right;
            }
        }
        double r = acc ? (double)wrong / acc : 0;
        held_out_over += r > alpha;
        coverage += (double)acc / NTEST;
        risk += r;
    }
    /* a 3-sigma allowance for the trials' own chance */
    double allowed = delta * TRIALS + 3 * sqrt(TRIALS * delta * (1 - delta));
    printf("calibration over %d trials (n=%d): fitted %d; true risk above "
           "alpha=%.2f in %d (promised at most %.0f%%, allowed %.0f); "
           "held-out error above alpha in %d; mean threshold risk %.3f, "
           "held-out risk %.3f, coverage %.2f\n",
           TRIALS, NCAL, fitted, alpha, violated, delta * 100, allowed,
           held_out_over, true_risk / fitted, risk / fitted,
           coverage / fitted);
    CHECK(fitted >= TRIALS * 9 / 10);
    CHECK(violated <= allowed);
    CHECK(held_out_over <= allowed);
    /* it is not vacuous: it accepts a fair share (the best threshold, 0.6,
     * covers 0.4) */
    CHECK(coverage / fitted > 0.25);
}

TEST(test_calibration_refuses)
{
    double s[10];
    int ok[10];
    for (int i = 0; i < 10; i++) {
        s[i] = 0.9;
        ok[i] = 1;
    }
    double th = -1;
    const char *why = NULL;
    CHECK_INT(cal_fit(s, ok, 10, 0.1, 0.1, &th, &why), -1);
    CHECK_CONTAINS(why, "too few");
    CHECK(cal_min_n(0.1, 0.1) > 10);
    CHECK(cal_min_n(0.01, 0.1) > cal_min_n(0.1, 0.1));
    /* enough examples, all wrong: nothing is certified */
    enum { M = 400 };
    static double s2[M];
    static int ok2[M];
    for (int i = 0; i < M; i++) {
        s2[i] = (double)i / M;
        ok2[i] = 0;
    }
    CHECK_INT(cal_fit(s2, ok2, M, 0.1, 0.1, &th, &why), -1);
    CHECK_CONTAINS(why, "too many wrong");
    /* all right: the lowest threshold */
    for (int i = 0; i < M; i++)
        ok2[i] = 1;
    CHECK_INT(cal_fit(s2, ok2, M, 0.1, 0.1, &th, &why), 0);
    CHECK(th <= 0.05 + 1e-12);
}

TEST(test_calibrated_policy)
{
    sk_policy *p = NULL;
    char *err = NULL;
    const char *doc = "{\"uncertainty\":{\"calibrated\":{\"signal\":\"logprob\","
                      "\"threshold\":0.8,\"alpha\":0.1,\"n\":200,\"date\":\"2026-12-04\"}}}";
    CHECK_INT(pol_parse(doc, strlen(doc), "f", NULL, &p, &err), SK_OK);
    CHECK(p && p->cal_signal == SIG_LOGPROB && p->cal_threshold == 0.8 &&
          p->want_logprobs);
    pol_free(p);
    p = NULL;
    const char *bad = "{\"uncertainty\":{\"calibrated\":{\"signal\":\"vibes\","
                      "\"threshold\":0.8}}}";
    CHECK_INT(pol_parse(bad, strlen(bad), "f.json", NULL, &p, &err), SK_CONFIG);
    CHECK_CONTAINS(err, "uncertainty.calibrated.signal");
    free(err);
    const char *nosamples = "{\"uncertainty\":{\"calibrated\":{\"signal\":"
                            "\"agreement\",\"threshold\":0.8}}}";
    CHECK_INT(pol_parse(nosamples, strlen(nosamples), "f.json", NULL, &p, &err),
              SK_CONFIG);
    CHECK_CONTAINS(err, "samples");
    free(err);
    const char *st = "{\"uncertainty\":{\"sample_temperature\":3}}";
    CHECK_INT(pol_parse(st, strlen(st), "f.json", NULL, &p, &err), SK_CONFIG);
    CHECK_CONTAINS(err, "sample_temperature");
    free(err);
}

int main(void)
{
    RUN(test_asks_back_labelled_sets);
    RUN(test_asks_back_cases);
    RUN(test_logprob_label_score);
    RUN(test_verbal_and_extraction);
    RUN(test_self_check_score);
    RUN(test_calibration_guarantee);
    RUN(test_calibration_refuses);
    RUN(test_calibrated_policy);
    return tu_finish();
}
