/*
 * policy.c -- a function's policy (uncertainty signals, model cascade,
 * self-review, content filters, redaction) and the pure detectors the
 * invoke path runs on replies: the UNSURE marker, hedging phrases, token
 * logprobs, agreement between samples, and the PASS/FAIL and ALLOW/BLOCK
 * replies of review and filter functions.
 *
 * A policy is read from skein's own keys in a config.json and may be
 * overlaid per call by an object of the same shape, so pol_parse always
 * starts from a copy of a base and applies only the keys present.  Every
 * sk_policy handed out is the first member of a private pol_priv, which
 * also keeps the sources of the custom redaction rules: an rd_rules set
 * cannot be copied, so a copy rebuilds it.  Compiled patterns are copied
 * with pcre2_code_copy.
 *
 * PCRE2 allocates through sk_malloc (a general context per compile or
 * match), so allocation-failure tests reach it too, and every match runs
 * under match and heap limits: a hostile reply or pattern costs bounded
 * time and memory.
 *
 * Ownership: the static helpers borrow their text and cJSON arguments;
 * what they allocate goes straight into the policy being built, so
 * pol_free releases it whether or not the parse ends well.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <pcre2.h>

#include "policy/policy.h"

#define POL_MAX_BYTES ((size_t)1 << 20) /* a policy document */
#define POL_MAX_LIST 64        /* models, filters, hedge patterns, rules */
#define POL_MAX_SAMPLES 16
#define POL_MAX_ROUNDS 10
#define POL_MATCH_LIMIT 1000000 /* PCRE2 backtracking steps per match */
#define POL_HEAP_LIMIT 8192     /* KiB of PCRE2 backtracking memory */
#define POL_QUOTE_MAX 200       /* bytes of a bad reply quoted in errors */

/* A custom redaction rule as written, kept so a copy can rebuild it. */
typedef struct rd_src {
    char *name;
    char *pattern;
} rd_src;

typedef struct pol_priv {
    sk_policy pub; /* first: pol_parse returns &pub, pol_free casts back */
    rd_src *rd;    /* sources of pub.redact_rules, in order */
    size_t n_rd;
} pol_priv;

/* ---- PCRE2 through sk_malloc ------------------------------------------- */

static void *re_malloc(PCRE2_SIZE n, void *ud)
{
    (void)ud;
    return sk_malloc(n);
}

static void re_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

/* Compiles pat.  SK_OK with *out set (caller frees with pcre2_code_free);
 * SK_NOMEM; or SK_CONFIG with *code and *offset describing the syntax
 * error. */
static sk_status re_compile(const char *pat, size_t len, uint32_t opts,
                            pcre2_code **out, int *code, size_t *offset)
{
    *out = NULL;
    pcre2_general_context *g = pcre2_general_context_create(re_malloc,
                                                            re_free, NULL);
    if (!g)
        return SK_NOMEM;
    pcre2_compile_context *cc = pcre2_compile_context_create(g);
    if (!cc) {
        pcre2_general_context_free(g);
        return SK_NOMEM;
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    *out = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &off, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(g);
    if (*out)
        return SK_OK;
    if (err == PCRE2_ERROR_HEAP_FAILED)
        return SK_NOMEM;
    *code = err;
    *offset = (size_t)off;
    return SK_CONFIG;
}

/* Finds the first match of re in s[0..len).  1 with the match's bounds,
 * 0 for none, or a negative PCRE2 error (PCRE2_ERROR_NOMEMORY when an
 * allocation failed, a limit error on a runaway pattern). */
static int re_find(const pcre2_code *re, const char *s, size_t len,
                   size_t *so, size_t *eo)
{
    int rc = PCRE2_ERROR_NOMEMORY;
    pcre2_general_context *g = pcre2_general_context_create(re_malloc,
                                                            re_free, NULL);
    pcre2_match_context *mc = g ? pcre2_match_context_create(g) : NULL;
    pcre2_match_data *md =
        mc ? pcre2_match_data_create_from_pattern(re, g) : NULL;
    if (md) {
        pcre2_set_match_limit(mc, POL_MATCH_LIMIT);
        pcre2_set_heap_limit(mc, POL_HEAP_LIMIT);
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, mc);
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            *so = (size_t)ov[0];
            *eo = (size_t)ov[1] >= ov[0] ? (size_t)ov[1] : (size_t)ov[0];
            rc = 1;
        } else if (rc == PCRE2_ERROR_NOMATCH) {
            rc = 0;
        }
    }
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_general_context_free(g);
    return rc;
}

/* ---- the default hedging phrases ---------------------------------------
 * Written plainly; an apostrophe also matches the typographic one (U+2019,
 * which models emit as often as ASCII) and a space any run of whitespace,
 * since replies wrap lines.  The list is one word-bounded, case-insensitive
 * alternation.  "It depends on" is listed but not "depends": "this depends
 * entirely on your budget" is an answer, not a hedge. */
static const char *const hedge_phrases[] = {
    "I'm not sure",
    "I am not sure",
    "I'm not certain",
    "not entirely clear",
    "it depends on",
    "it's unclear",
    "it is unclear",
    "could you clarify",
    "can you clarify",
    "could you specify",
    "please clarify",
    "do you mean",
    "did you mean",
    "one possible (?:way|interpretation|reading)",
    "there are (?:several|multiple) (?:ways|interpretations)",
    "ambiguous",
    "without more (?:context|information)",
    "I don't have enough information",
};

#define HEDGE_OPTS (PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF)
#define FILTER_OPTS (PCRE2_UTF | PCRE2_MATCH_INVALID_UTF)

static sk_status default_hedge_re(pcre2_code **out)
{
    sk_buf b;
    buf_init(&b, 4096);
    sk_status rc = buf_adds(&b, "\\b(?:");
    size_t n = sizeof hedge_phrases / sizeof hedge_phrases[0];
    for (size_t i = 0; i < n && rc == SK_OK; i++) {
        if (i)
            rc = buf_addc(&b, '|');
        for (const char *c = hedge_phrases[i]; *c && rc == SK_OK; c++) {
            if (*c == '\'')
                rc = buf_adds(&b, "(?:'|\xE2\x80\x99)");
            else if (*c == ' ')
                rc = buf_adds(&b, "\\s+");
            else
                rc = buf_addc(&b, *c);
        }
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, ")\\b");
    if (rc != SK_OK) {
        buf_free(&b);
        return SK_NOMEM;
    }
    int code;
    size_t off;
    rc = re_compile(b.p, b.len, HEDGE_OPTS, out, &code, &off);
    buf_free(&b);
    /* The built-in pattern is known to compile; only memory can fail. */
    return rc == SK_OK ? SK_OK : SK_NOMEM;
}

/* ---- life cycle -------------------------------------------------------- */

static void filters_free(pol_filter *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        pcre2_code_free(f[i].re);
        free(f[i].function);
        free(f[i].policy);
    }
    free(f);
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void rd_src_free(rd_src *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].name);
        free(r[i].pattern);
    }
    free(r);
}

/* Frees p and everything it owns.  p must come from pol_parse; NULL is
 * harmless. */
void pol_free(sk_policy *p)
{
    if (!p)
        return;
    pol_priv *pp = (pol_priv *)p;
    pcre2_code_free(p->hedge_re);
    free(p->judge);
    free(p->self_check);
    strv_free(p->models, p->n_models);
    strv_free(p->fallbacks, p->n_fallbacks);
    free(p->review);
    filters_free(p->in_filters, p->n_in);
    filters_free(p->out_filters, p->n_out);
    rd_rules_free(p->redact_rules);
    shape_free(p->shape);
    rd_src_free(pp->rd, pp->n_rd);
    free(pp);
}

static void uncertainty_defaults(sk_policy *p)
{
    p->raise = 1;
    p->protocol = 0;
    p->asks_back = 1;
    p->hedging = 0;
    pcre2_code_free(p->hedge_re);
    p->hedge_re = NULL;
    p->want_logprobs = 0;
    p->check_logprobs = 1;
    p->min_mean_prob = 0.5;
    p->min_token_prob = 0.0;
    p->samples = 1;
    p->sample_temperature = 0.7;
    p->min_agreement = 0.5;
    p->min_entropy_score = 0;
    free(p->judge);
    p->judge = NULL;
    free(p->self_check);
    p->self_check = NULL;
    p->min_self_check = 0.5;
    p->verbalized = 0;
    p->min_verbal = 0.5;
    p->cal_signal = SIG_NONE;
    p->cal_threshold = p->cal_alpha = 0;
}

/* A new policy holding the defaults.  Caller frees with pol_free. */
static pol_priv *policy_defaults(void)
{
    pol_priv *pp = sk_calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    sk_policy *p = &pp->pub;
    uncertainty_defaults(p);
    p->review_rounds = 2;
    p->redact = -1;
    p->cache = -1;
    return pp;
}

/* Builds an rd_rules set from sources.  NULL rules for n == 0.  SK_CONFIG
 * (with *errmsg from redact.c, caller frees) only if a rule that was once
 * accepted is now refused. */
static sk_status rd_build(const rd_src *src, size_t n, rd_rules **out,
                          char **errmsg)
{
    *out = NULL;
    if (n == 0)
        return SK_OK;
    rd_rules *r = rd_rules_new();
    if (!r)
        return SK_NOMEM;
    for (size_t i = 0; i < n; i++) {
        sk_status rc = rd_rules_add(r, src[i].name, src[i].pattern, errmsg);
        if (rc != SK_OK) {
            rd_rules_free(r);
            return rc;
        }
    }
    *out = r;
    return SK_OK;
}

static sk_status filters_copy(const pol_filter *src, size_t n,
                              pol_filter **out)
{
    *out = NULL;
    if (n == 0)
        return SK_OK;
    pol_filter *f = sk_calloc(n, sizeof *f);
    if (!f)
        return SK_NOMEM;
    for (size_t i = 0; i < n; i++) {
        f[i].name = sk_strdup(src[i].name);
        f[i].function = sk_strdup(src[i].function);
        f[i].policy = sk_strdup(src[i].policy);
        if (src[i].re)
            f[i].re = pcre2_code_copy(src[i].re);
        if ((src[i].name && !f[i].name) ||
            (src[i].function && !f[i].function) ||
            (src[i].policy && !f[i].policy) || (src[i].re && !f[i].re)) {
            filters_free(f, i + 1);
            return SK_NOMEM;
        }
    }
    *out = f;
    return SK_OK;
}

/* A deep copy of base.  Caller frees with pol_free.  NULL when memory ran
 * out (*errmsg may then hold redact.c's reason, caller frees). */
static pol_priv *policy_copy(const pol_priv *base, char **errmsg)
{
    pol_priv *pp = sk_calloc(1, sizeof *pp);
    if (!pp)
        return NULL;
    sk_policy *p = &pp->pub;
    const sk_policy *b = &base->pub;
    *p = *b;
    /* Drop every borrowed pointer before anything can fail, so pol_free
     * on a half-built copy frees only what the copy owns. */
    p->hedge_re = NULL;
    p->judge = p->review = p->self_check = NULL;
    p->models = NULL;
    p->n_models = 0;
    p->fallbacks = NULL;
    p->n_fallbacks = 0;
    p->in_filters = p->out_filters = NULL;
    p->n_in = p->n_out = 0;
    p->redact_rules = NULL;
    p->shape = NULL;

    if (b->hedge_re && !(p->hedge_re = pcre2_code_copy(b->hedge_re)))
        goto fail;
    if (b->shape && !(p->shape = shape_clone(b->shape)))
        goto fail;
    if (b->judge && !(p->judge = sk_strdup(b->judge)))
        goto fail;
    if (b->self_check && !(p->self_check = sk_strdup(b->self_check)))
        goto fail;
    if (b->review && !(p->review = sk_strdup(b->review)))
        goto fail;
    if (b->n_models) {
        if (!(p->models = sk_calloc(b->n_models, sizeof *p->models)))
            goto fail;
        for (; p->n_models < b->n_models; p->n_models++)
            if (!(p->models[p->n_models] = sk_strdup(b->models[p->n_models])))
                goto fail;
    }
    if (b->n_fallbacks) {
        if (!(p->fallbacks = sk_calloc(b->n_fallbacks, sizeof *p->fallbacks)))
            goto fail;
        for (; p->n_fallbacks < b->n_fallbacks; p->n_fallbacks++)
            if (!(p->fallbacks[p->n_fallbacks] = sk_strdup(b->fallbacks[p->n_fallbacks])))
                goto fail;
    }
    if (filters_copy(b->in_filters, b->n_in, &p->in_filters) != SK_OK)
        goto fail;
    p->n_in = b->n_in;
    if (filters_copy(b->out_filters, b->n_out, &p->out_filters) != SK_OK)
        goto fail;
    p->n_out = b->n_out;
    if (base->n_rd) {
        if (!(pp->rd = sk_calloc(base->n_rd, sizeof *pp->rd)))
            goto fail;
        for (; pp->n_rd < base->n_rd; pp->n_rd++) {
            rd_src *d = &pp->rd[pp->n_rd];
            d->name = sk_strdup(base->rd[pp->n_rd].name);
            d->pattern = sk_strdup(base->rd[pp->n_rd].pattern);
            if (!d->name || !d->pattern) {
                pp->n_rd++;
                goto fail;
            }
        }
        if (rd_build(pp->rd, pp->n_rd, &p->redact_rules, errmsg) != SK_OK)
            goto fail;
    }
    return pp;
fail:
    pol_free(p);
    return NULL;
}

/* ---- parsing helpers --------------------------------------------------- */

typedef struct px {
    const char *origin;
    char **errmsg;
} px;

/* Sets *errmsg to "origin: message" and returns SK_CONFIG, or SK_NOMEM
 * (with *errmsg NULL) when the message cannot be built. */
static sk_status fail(px *x, const char *fmt, ...) SK_PRINTF(2, 3);
static sk_status fail(px *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (!msg)
        return SK_NOMEM;
    free(*x->errmsg);
    *x->errmsg = sk_asprintf("%s: %s", x->origin, msg);
    free(msg);
    return *x->errmsg ? SK_CONFIG : SK_NOMEM;
}

/* The regex error for the pattern at path, with PCRE2's own words. */
static sk_status fail_re(px *x, const char *path, int code, size_t off)
{
    PCRE2_UCHAR text[256];
    if (pcre2_get_error_message(code, text, sizeof text) < 0)
        strcpy((char *)text, "invalid pattern");
    return fail(x, "%s: %s at offset %zu", path, (const char *)text, off);
}

/* A missing key and JSON null both mean "not set here: keep the base". */
static int is_unset(const cJSON *v) { return !v || cJSON_IsNull(v); }

static sk_status get_bool(px *x, const cJSON *obj, const char *key,
                          const char *path, int *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    if (!cJSON_IsBool(v))
        return fail(x, "%s must be true or false", path);
    *out = cJSON_IsTrue(v);
    return SK_OK;
}

static sk_status get_prob(px *x, const cJSON *obj, const char *key,
                          const char *path, double *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d) || d < 0.0 || d > 1.0)
        return fail(x, "%s must be a number from 0 to 1", path);
    *out = d;
    return SK_OK;
}

static sk_status get_int(px *x, const cJSON *obj, const char *key,
                         const char *path, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d) || d != floor(d) || d < lo || d > hi)
        return fail(x, "%s must be a whole number from %d to %d", path, lo,
                    hi);
    *out = (int)d;
    return SK_OK;
}

/* Replaces *dst with a copy of s (NULL clears it). */
static sk_status set_str(char **dst, const char *s)
{
    char *c = NULL;
    if (s && !(c = sk_strdup(s)))
        return SK_NOMEM;
    free(*dst);
    *dst = c;
    return SK_OK;
}

/* A function name: a non-empty string, or false to clear. */
static sk_status get_function(px *x, const cJSON *v, const char *path,
                              char **dst)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsFalse(v))
        return set_str(dst, NULL);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return fail(x, "%s must be a function name (\"Skill.Function\") or "
                       "false",
                    path);
    return set_str(dst, v->valuestring);
}

static sk_status check_list(px *x, const cJSON *v, const char *path)
{
    if (!cJSON_IsArray(v))
        return fail(x, "%s must be an array", path);
    if (cJSON_GetArraySize(v) > POL_MAX_LIST)
        return fail(x, "%s has more than %d entries", path, POL_MAX_LIST);
    return SK_OK;
}

/* ---- uncertainty ------------------------------------------------------- */

/* "hedging": true keeps the phrases in force (the defaults unless a list
 * replaced them), false turns the signal off, and a list of patterns
 * replaces the phrases; an empty list turns it off. */
static sk_status parse_hedging(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsBool(v)) {
        p->hedging = cJSON_IsTrue(v);
        if (p->hedging && !p->hedge_re)
            return default_hedge_re((pcre2_code **)&p->hedge_re);
        return SK_OK;
    }
    if (!cJSON_IsArray(v))
        return fail(x, "uncertainty.hedging must be true, false or an "
                       "array of patterns");
    sk_status rc = check_list(x, v, "uncertainty.hedging");
    if (rc != SK_OK)
        return rc;
    /* Each pattern compiles alone first, so an error names its index;
     * then they are joined.  \E closes a \Q left open by a pattern. */
    sk_buf b;
    buf_init(&b, POL_MAX_BYTES);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            rc = fail(x, "uncertainty.hedging[%d] must be a non-empty "
                         "string",
                      i);
            goto done;
        }
        pcre2_code *re;
        int code;
        size_t off;
        rc = re_compile(e->valuestring, strlen(e->valuestring), HEDGE_OPTS,
                        &re, &code, &off);
        if (rc == SK_CONFIG) {
            char path[48];
            snprintf(path, sizeof path, "uncertainty.hedging[%d]", i);
            rc = fail_re(x, path, code, off);
        }
        if (rc != SK_OK)
            goto done;
        pcre2_code_free(re);
        if ((i && (rc = buf_addc(&b, '|')) != SK_OK) ||
            (rc = buf_adds(&b, "(?:")) != SK_OK ||
            (rc = buf_adds(&b, e->valuestring)) != SK_OK ||
            (rc = buf_adds(&b, "\\E)")) != SK_OK)
            goto done;
        i++;
    }
    pcre2_code_free(p->hedge_re);
    p->hedge_re = NULL;
    p->hedging = i > 0;
    if (i > 0) {
        pcre2_code *re;
        int code;
        size_t off;
        rc = re_compile(b.p, b.len, HEDGE_OPTS, &re, &code, &off);
        if (rc == SK_CONFIG)
            rc = fail_re(x, "uncertainty.hedging (the patterns joined)", code,
                         off);
        if (rc == SK_OK)
            p->hedge_re = re;
    }
done:
    buf_free(&b);
    return rc;
}

static sk_status parse_logprobs(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsBool(v)) {
        p->want_logprobs = p->check_logprobs = cJSON_IsTrue(v);
        return SK_OK;
    }
    if (!cJSON_IsObject(v))
        return fail(x, "uncertainty.logprobs must be true, false or an "
                       "object");
    /* a threshold needs them: ask unless told not to */
    p->want_logprobs = p->check_logprobs = 1;
    sk_status rc;
    if ((rc = get_bool(x, v, "request", "uncertainty.logprobs.request",
                       &p->want_logprobs)) != SK_OK ||
        (rc = get_bool(x, v, "check", "uncertainty.logprobs.check",
                       &p->check_logprobs)) != SK_OK ||
        (rc = get_prob(x, v, "min_mean", "uncertainty.logprobs.min_mean",
                       &p->min_mean_prob)) != SK_OK ||
        (rc = get_prob(x, v, "min_token", "uncertainty.logprobs.min_token",
                       &p->min_token_prob)) != SK_OK)
        return rc;
    return SK_OK;
}

static sk_status parse_sample_temperature(px *x, sk_policy *p, const cJSON *obj)
{
    const cJSON *v = cJSON_GetObjectItem(obj, "sample_temperature");
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d) || d < 0.0 || d > 2.0)
        return fail(x, "uncertainty.sample_temperature must be a number "
                       "from 0 to 2");
    p->sample_temperature = d;
    return SK_OK;
}

/* true: the built-in judge; a name: that function; false: off. */
static sk_status parse_self_check(px *x, sk_policy *p, const cJSON *v)
{
    if (cJSON_IsTrue(v))
        return set_str(&p->self_check, UNC_SELF_CHECK_FN);
    return get_function(x, v, "uncertainty.self_check", &p->self_check);
}

/* What `skein calibrate` writes: {"signal", "threshold", "alpha", "n",
 * "date"}; false drops it.  The signal it names is turned on. */
static sk_status parse_calibrated(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsFalse(v)) {
        p->cal_signal = SIG_NONE;
        return SK_OK;
    }
    if (!cJSON_IsObject(v))
        return fail(x, "uncertainty.calibrated must be an object or false");
    const cJSON *sig = cJSON_GetObjectItem(v, "signal");
    unc_signal s = cJSON_IsString(sig) ? unc_signal_from_name(sig->valuestring)
                                       : SIG_NONE;
    if (s == SIG_NONE)
        return fail(x, "uncertainty.calibrated.signal must be one of "
                       "logprob, agreement, entropy, self_check, verbalized");
    double t = -1, a = -1;
    sk_status rc;
    if ((rc = get_prob(x, v, "threshold", "uncertainty.calibrated.threshold",
                       &t)) != SK_OK ||
        (rc = get_prob(x, v, "alpha", "uncertainty.calibrated.alpha", &a)) !=
            SK_OK)
        return rc;
    if (t < 0)
        return fail(x, "uncertainty.calibrated.threshold is missing");
    p->cal_signal = s;
    p->cal_threshold = t;
    p->cal_alpha = a < 0 ? 0 : a;
    if (s == SIG_LOGPROB)
        p->want_logprobs = p->check_logprobs = 1;
    else if (s == SIG_VERBAL)
        p->verbalized = 1;
    else if (s == SIG_SELF_CHECK && !p->self_check)
        return set_str(&p->self_check, UNC_SELF_CHECK_FN);
    else if ((s == SIG_AGREEMENT || s == SIG_ENTROPY) && p->samples < 2)
        return fail(x, "uncertainty.calibrated.signal %s needs "
                       "uncertainty.samples of 2 or more",
                    unc_signal_name(s));
    return SK_OK;
}

/* false turns every signal off; true restores the defaults of this
 * section; an object sets what it names. */
static sk_status parse_uncertainty(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsFalse(v)) {
        p->protocol = p->hedging = p->asks_back = p->verbalized = 0;
        p->want_logprobs = p->check_logprobs = 0;
        p->samples = 1;
        p->cal_signal = SIG_NONE;
        if (set_str(&p->self_check, NULL) != SK_OK)
            return SK_NOMEM;
        return set_str(&p->judge, NULL);
    }
    if (cJSON_IsTrue(v)) {
        uncertainty_defaults(p);
        return SK_OK;
    }
    if (!cJSON_IsObject(v))
        return fail(x, "uncertainty must be true, false or an object");
    sk_status rc;
    if ((rc = get_bool(x, v, "protocol", "uncertainty.protocol",
                       &p->protocol)) != SK_OK ||
        (rc = parse_hedging(x, p, cJSON_GetObjectItem(v, "hedging"))) !=
            SK_OK ||
        (rc = parse_logprobs(x, p, cJSON_GetObjectItem(v, "logprobs"))) !=
            SK_OK ||
        (rc = get_int(x, v, "samples", "uncertainty.samples", 1,
                      POL_MAX_SAMPLES, &p->samples)) != SK_OK ||
        (rc = get_prob(x, v, "agreement", "uncertainty.agreement",
                       &p->min_agreement)) != SK_OK ||
        (rc = get_function(x, cJSON_GetObjectItem(v, "judge"),
                           "uncertainty.judge", &p->judge)) != SK_OK ||
        (rc = get_bool(x, v, "raise", "uncertainty.raise", &p->raise)) !=
            SK_OK ||
        (rc = get_bool(x, v, "asks_back", "uncertainty.asks_back",
                       &p->asks_back)) != SK_OK ||
        (rc = get_prob(x, v, "entropy", "uncertainty.entropy",
                       &p->min_entropy_score)) != SK_OK ||
        (rc = get_bool(x, v, "verbalized", "uncertainty.verbalized",
                       &p->verbalized)) != SK_OK ||
        (rc = get_prob(x, v, "min_verbalized", "uncertainty.min_verbalized",
                       &p->min_verbal)) != SK_OK ||
        (rc = get_prob(x, v, "min_self_check", "uncertainty.min_self_check",
                       &p->min_self_check)) != SK_OK ||
        (rc = parse_sample_temperature(x, p, v)) != SK_OK ||
        (rc = parse_self_check(x, p, cJSON_GetObjectItem(v, "self_check"))) !=
            SK_OK ||
        (rc = parse_calibrated(x, p, cJSON_GetObjectItem(v, "calibrated"))) !=
            SK_OK)
        return rc;
    return SK_OK;
}

/* ---- models, review ---------------------------------------------------- */

/* A list replaces the cascade ([] clears it); a lone string is a cascade
 * of one. */
static sk_status parse_models(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsString(v) && v->valuestring[0]) {
        char **m = sk_calloc(1, sizeof *m);
        if (!m || !(m[0] = sk_strdup(v->valuestring))) {
            free(m);
            return SK_NOMEM;
        }
        strv_free(p->models, p->n_models);
        p->models = m;
        p->n_models = 1;
        return SK_OK;
    }
    if (!cJSON_IsArray(v))
        return fail(x, "models must be an array of model specs");
    sk_status rc = check_list(x, v, "models");
    if (rc != SK_OK)
        return rc;
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return fail(x, "models[%zu] must be a model spec such as "
                           "\"openai:gpt-4o\"",
                        i);
        i++;
    }
    char **m = n ? sk_calloc(n, sizeof *m) : NULL;
    if (n && !m)
        return SK_NOMEM;
    i = 0;
    cJSON_ArrayForEach(e, v)
    {
        if (!(m[i] = sk_strdup(e->valuestring))) {
            strv_free(m, i);
            return SK_NOMEM;
        }
        i++;
    }
    strv_free(p->models, p->n_models);
    p->models = m;
    p->n_models = n;
    return SK_OK;
}

/* "fallbacks": a list of model specs tried in turn after an error that
 * remains after retries (a lone string: a list of one), true to fall back
 * along the cascade alone, false or [] for none. */
static sk_status parse_fallbacks(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    char **m = NULL;
    size_t n = 0;
    if (cJSON_IsBool(v)) {
        p->fallback = cJSON_IsTrue(v);
    } else if (cJSON_IsString(v) && v->valuestring[0]) {
        if (!(m = sk_calloc(1, sizeof *m)) || !(m[0] = sk_strdup(v->valuestring))) {
            free(m);
            return SK_NOMEM;
        }
        n = 1;
        p->fallback = 1;
    } else if (cJSON_IsArray(v)) {
        sk_status rc = check_list(x, v, "fallbacks");
        if (rc != SK_OK)
            return rc;
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsString(e) || !e->valuestring[0] || !strchr(e->valuestring, ':'))
                return fail(x, "fallbacks[%zu] must be a model spec such as "
                               "\"openai:gpt-4o\"",
                            i);
            i++;
        }
        n = i;
        if (n && !(m = sk_calloc(n, sizeof *m)))
            return SK_NOMEM;
        i = 0;
        cJSON_ArrayForEach(e, v)
        {
            if (!(m[i] = sk_strdup(e->valuestring))) {
                strv_free(m, i);
                return SK_NOMEM;
            }
            i++;
        }
        p->fallback = n > 0;
    } else {
        return fail(x, "fallbacks must be a list of model specs, or true or false");
    }
    if (cJSON_IsBool(v) && cJSON_IsTrue(v))
        return SK_OK; /* true keeps the specs a lower layer gave */
    strv_free(p->fallbacks, p->n_fallbacks);
    p->fallbacks = m;
    p->n_fallbacks = n;
    return SK_OK;
}

static sk_status parse_review(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsString(v) || cJSON_IsFalse(v))
        return get_function(x, v, "review", &p->review);
    if (!cJSON_IsObject(v))
        return fail(x, "review must be a function name, an object or false");
    sk_status rc;
    if ((rc = get_function(x, cJSON_GetObjectItem(v, "function"),
                           "review.function", &p->review)) != SK_OK ||
        (rc = get_int(x, v, "rounds", "review.rounds", 0, POL_MAX_ROUNDS,
                      &p->review_rounds)) != SK_OK)
        return rc;
    if (!p->review && !cJSON_IsFalse(cJSON_GetObjectItem(v, "function")))
        return fail(x, "review.function is required");
    return SK_OK;
}

/* ---- filters ----------------------------------------------------------- */

/* Reads one direction's rules; the list replaces that direction's. */
static sk_status parse_filter_list(px *x, const cJSON *v, const char *dir,
                                   pol_filter **list, size_t *count)
{
    if (is_unset(v))
        return SK_OK;
    char path[64];
    snprintf(path, sizeof path, "filters.%s", dir);
    sk_status rc = check_list(x, v, path);
    if (rc != SK_OK)
        return rc;
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
    pol_filter *f = n ? sk_calloc(n, sizeof *f) : NULL;
    if (n && !f)
        return SK_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        pol_filter *r = &f[i];
        snprintf(path, sizeof path, "filters.%s[%zu]", dir, i);
        i++;
        if (!cJSON_IsObject(e)) {
            rc = fail(x, "%s must be an object", path);
            goto fail;
        }
        const cJSON *name = cJSON_GetObjectItem(e, "name");
        const cJSON *pat = cJSON_GetObjectItem(e, "pattern");
        const cJSON *fn = cJSON_GetObjectItem(e, "function");
        const cJSON *pol = cJSON_GetObjectItem(e, "policy");
        if (!is_unset(name) && (!cJSON_IsString(name) ||
                                !name->valuestring[0])) {
            rc = fail(x, "%s.name must be a non-empty string", path);
            goto fail;
        }
        if (is_unset(pat) == is_unset(fn)) {
            rc = fail(x, "%s needs either a \"pattern\" or a \"function\"",
                      path);
            goto fail;
        }
        if (!is_unset(pol) && !cJSON_IsString(pol)) {
            rc = fail(x, "%s.policy must be a string", path);
            goto fail;
        }
        if (!is_unset(pat)) {
            if (!cJSON_IsString(pat) || !pat->valuestring[0]) {
                rc = fail(x, "%s.pattern must be a non-empty string", path);
                goto fail;
            }
            int code;
            size_t off;
            pcre2_code *re;
            rc = re_compile(pat->valuestring, strlen(pat->valuestring),
                            FILTER_OPTS, &re, &code, &off);
            if (rc == SK_CONFIG) {
                char ppath[80];
                snprintf(ppath, sizeof ppath, "%s.pattern", path);
                rc = fail_re(x, ppath, code, off);
            }
            if (rc != SK_OK)
                goto fail;
            r->re = re;
        } else {
            rc = get_function(x, fn, "function", &r->function);
            if (rc == SK_OK && !r->function)
                rc = SK_CONFIG; /* false */
            if (rc == SK_CONFIG)
                rc = fail(x, "%s.function must be a function name "
                             "(\"Skill.Function\")",
                          path);
            if (rc != SK_OK)
                goto fail;
            if (!is_unset(pol) && !(r->policy = sk_strdup(pol->valuestring))) {
                rc = SK_NOMEM;
                goto fail;
            }
        }
        /* Unnamed rules are reported by their place in the list. */
        r->name = is_unset(name) ? sk_strdup(path + strlen("filters."))
                                 : sk_strdup(name->valuestring);
        if (!r->name) {
            rc = SK_NOMEM;
            goto fail;
        }
    }
    filters_free(*list, *count);
    *list = f;
    *count = n;
    return SK_OK;
fail:
    filters_free(f, n);
    return rc;
}

static sk_status parse_filters(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsFalse(v)) {
        filters_free(p->in_filters, p->n_in);
        filters_free(p->out_filters, p->n_out);
        p->in_filters = p->out_filters = NULL;
        p->n_in = p->n_out = 0;
        return SK_OK;
    }
    if (!cJSON_IsObject(v))
        return fail(x, "filters must be an object with \"input\" and/or "
                       "\"output\" lists, or false");
    sk_status rc = parse_filter_list(x, cJSON_GetObjectItem(v, "input"),
                                     "input", &p->in_filters, &p->n_in);
    if (rc == SK_OK)
        rc = parse_filter_list(x, cJSON_GetObjectItem(v, "output"), "output",
                               &p->out_filters, &p->n_out);
    return rc;
}

/* ---- the response cache and the output shape -------------------------- */

static sk_status parse_cache(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsBool(v)) {
        p->cache = cJSON_IsTrue(v);
        return SK_OK;
    }
    if (cJSON_IsString(v) && strcasecmp(v->valuestring, "auto") == 0) {
        p->cache = -1;
        return SK_OK;
    }
    return fail(x, "cache must be true, false or \"auto\"");
}

/* "truncated": "error" (the default: a reply cut by the token limit is
 * the typed error `truncated`), {"continue": N}: ask the model to go on
 * from where it stopped, up to N times, or "accept": the function means
 * its token limit as a budget and takes a cut reply as it is. */
static sk_status parse_truncated(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsString(v) && strcasecmp(v->valuestring, "error") == 0) {
        p->continuations = 0;
        return SK_OK;
    }
    if (cJSON_IsString(v) && strcasecmp(v->valuestring, "accept") == 0) {
        p->continuations = -1; /* a budget the function means: take it as it is */
        return SK_OK;
    }
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItem(v, "continue") : NULL;
    if (cJSON_IsNumber(c) && c->valuedouble >= 1 && c->valuedouble <= 20 &&
        c->valuedouble == (int)c->valuedouble) {
        p->continuations = (int)c->valuedouble;
        return SK_OK;
    }
    return fail(x, "truncated must be \"error\", \"accept\" or {\"continue\": N} with N "
                   "from 1 to 20");
}

/* "output": a shape (shape.c checks it), or false to drop the base's */
static sk_status parse_output(px *x, sk_policy *p, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsFalse(v)) {
        shape_free(p->shape);
        p->shape = NULL;
        return SK_OK;
    }
    /* Older Semantic Kernel config.json files describe their result as
     * "output": {"parameters": [...]}, beside "input"; that is not a
     * shape, and SK ignores it, so it is ignored here too. */
    if (cJSON_IsObject(v) && cJSON_GetObjectItem(v, "parameters") &&
        !cJSON_GetObjectItem(v, "json_schema") && !cJSON_GetObjectItem(v, "choice") &&
        !cJSON_GetObjectItem(v, "regex"))
        return SK_OK;
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        return SK_NOMEM;
    sk_shape *sh = NULL;
    char *msg = NULL;
    sk_status rc = shape_parse(text, strlen(text), x->origin, &sh, &msg);
    cJSON_free(text);
    if (rc != SK_OK) {
        if (msg) {
            free(*x->errmsg);
            *x->errmsg = msg;
        }
        return rc;
    }
    shape_free(p->shape);
    p->shape = sh;
    return SK_OK;
}

/* ---- redaction --------------------------------------------------------- */

static sk_status redact_mode(px *x, const cJSON *v, const char *path,
                             int *out)
{
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return SK_OK;
    }
    if (cJSON_IsString(v) && strcasecmp(v->valuestring, "auto") == 0) {
        *out = -1;
        return SK_OK;
    }
    return fail(x, "%s must be true, false or \"auto\"", path);
}

/* "rules" replaces the custom rules; they are checked by redact.c, whose
 * message is passed on with the rule's index. */
static sk_status parse_redact_rules(px *x, pol_priv *pp, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    sk_status rc = check_list(x, v, "redact.rules");
    if (rc != SK_OK)
        return rc;
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
    rd_src *src = n ? sk_calloc(n, sizeof *src) : NULL;
    if (n && !src)
        return SK_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        const cJSON *name = cJSON_GetObjectItem(e, "name");
        const cJSON *pat = cJSON_GetObjectItem(e, "pattern");
        if (!cJSON_IsObject(e) || !cJSON_IsString(name) ||
            !cJSON_IsString(pat)) {
            rc = fail(x, "redact.rules[%zu] must be an object with string "
                         "\"name\" and \"pattern\"",
                      i);
            goto fail;
        }
        src[i].name = sk_strdup(name->valuestring);
        src[i].pattern = sk_strdup(pat->valuestring);
        i++;
        if (!src[i - 1].name || !src[i - 1].pattern) {
            rc = SK_NOMEM;
            goto fail;
        }
    }
    rd_rules *r = NULL;
    if (n) {
        if (!(r = rd_rules_new())) {
            rc = SK_NOMEM;
            goto fail;
        }
        for (i = 0; i < n; i++) {
            char *why = NULL;
            rc = rd_rules_add(r, src[i].name, src[i].pattern, &why);
            if (rc == SK_CONFIG)
                rc = fail(x, "redact.rules[%zu]: %s", i,
                          why ? why : "invalid rule");
            free(why);
            if (rc != SK_OK) {
                rd_rules_free(r);
                goto fail;
            }
        }
    }
    rd_rules_free(pp->pub.redact_rules);
    rd_src_free(pp->rd, pp->n_rd);
    pp->pub.redact_rules = r;
    pp->rd = src;
    pp->n_rd = n;
    return SK_OK;
fail:
    rd_src_free(src, n);
    return rc;
}

static sk_status parse_redact(px *x, pol_priv *pp, const cJSON *v)
{
    if (is_unset(v))
        return SK_OK;
    if (!cJSON_IsObject(v))
        return redact_mode(x, v, "redact", &pp->pub.redact);
    const cJSON *en = cJSON_GetObjectItem(v, "enabled");
    sk_status rc = SK_OK;
    if (!is_unset(en))
        rc = redact_mode(x, en, "redact.enabled", &pp->pub.redact);
    if (rc == SK_OK)
        rc = parse_redact_rules(x, pp, cJSON_GetObjectItem(v, "rules"));
    return rc;
}

/* ---- the document ------------------------------------------------------ */

/* Returns the end of the string literal starting at t[i] (the quote). */
/* Parses json strictly, then (like config.c) with comments and trailing
 * commas blanked.  NULL with the error set on failure. */
static cJSON *parse_json(px *x, const char *json, size_t len, sk_status *rc)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root) {
        *rc = SK_OK;
        return root;
    }
    char *copy = sk_strndup(json, len);
    if (!copy) {
        *rc = SK_NOMEM;
        return NULL;
    }
    size_t ignored; /* an unterminated comment fails in the parser below */
    cfg_relax(copy, len, 64, &ignored);
    end = NULL;
    root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    if (root) {
        free(copy);
        *rc = SK_OK;
        return root;
    }
    /* cJSON also fails this way when it runs out of memory; we cannot
     * tell, so the syntax error is what we report. */
    size_t off = end && end >= copy && end <= copy + len
                     ? (size_t)(end - copy) : 0;
    int line, col;
    sk_line_col(copy, off, &line, &col);
    free(copy);
    *rc = fail(x, "%d:%d: invalid JSON", line, col);
    return NULL;
}

static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)s[i]))
            return 0;
    return 1;
}

/* base must come from pol_parse (or be NULL); it is only read.  On
 * success *out is a new policy (caller frees with pol_free); on failure
 * *out is NULL and *errmsg says why (SK_CONFIG, SK_TOO_LARGE; NULL for
 * SK_NOMEM; caller frees). */
sk_status pol_parse(const char *json, size_t len, const char *origin,
                    const sk_policy *base, sk_policy **out, char **errmsg)
{
    char *dummy = NULL;
    *out = NULL;
    if (!errmsg)
        errmsg = &dummy;
    *errmsg = NULL;
    px x = {origin ? origin : "policy", errmsg};
    if (!json)
        len = 0;
    if (len > POL_MAX_BYTES) {
        sk_status rc = fail(&x, "the policy is larger than %zu bytes",
                            POL_MAX_BYTES);
        free(dummy);
        return rc == SK_CONFIG ? SK_TOO_LARGE : rc;
    }

    pol_priv *pp = base ? policy_copy((const pol_priv *)base, errmsg)
                        : policy_defaults();
    if (!pp) {
        free(*errmsg);
        *errmsg = NULL;
        return SK_NOMEM;
    }
    sk_status rc = SK_OK;
    if (len && !blank(json, len)) {
        cJSON *root = parse_json(&x, json, len, &rc);
        if (root && !cJSON_IsObject(root))
            rc = fail(&x, "a policy must be a JSON object");
        sk_policy *p = &pp->pub;
        if (rc == SK_OK &&
            (rc = parse_uncertainty(&x, p,
                                    cJSON_GetObjectItem(root, "uncertainty")))
                == SK_OK &&
            (rc = parse_models(&x, p, cJSON_GetObjectItem(root, "models"))) ==
                SK_OK &&
            (rc = parse_review(&x, p, cJSON_GetObjectItem(root, "review"))) ==
                SK_OK &&
            (rc = parse_filters(&x, p, cJSON_GetObjectItem(root, "filters")))
                == SK_OK)
            rc = parse_redact(&x, pp, cJSON_GetObjectItem(root, "redact"));
        if (rc == SK_OK)
            rc = parse_cache(&x, p, cJSON_GetObjectItem(root, "cache"));
        if (rc == SK_OK)
            rc = parse_output(&x, p, cJSON_GetObjectItem(root, "output"));
        if (rc == SK_OK)
            rc = parse_truncated(&x, p, cJSON_GetObjectItem(root, "truncated"));
        if (rc == SK_OK)
            rc = parse_fallbacks(&x, p, cJSON_GetObjectItem(root, "fallbacks"));
        cJSON_Delete(root);
    }
    if (rc != SK_OK) {
        pol_free(&pp->pub);
        if (rc == SK_NOMEM) {
            free(*errmsg);
            *errmsg = NULL;
        }
        free(dummy);
        return rc;
    }
    *out = &pp->pub;
    return SK_OK;
}

/* ---- detectors --------------------------------------------------------- */

void unc_verdict_clear(unc_verdict *v)
{
    if (!v)
        return;
    free(v->reason);
    free(v->question);
    v->uncertain = 0;
    v->reason = v->question = NULL;
    v->confidence = -1;
}

const char *unc_protocol_instruction(void)
{
    return "\n\nIf the request is ambiguous, or you would need to ask a "
           "question to answer it well, reply with exactly one line "
           "`UNSURE: <the question you would ask>` and nothing else.";
}

static int is_md(char c) { return c == '*' || c == '_' || c == '`'; }

/* Trims whitespace and emphasis marks from both ends of s[*b..*e). */
static void trim_md(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && (isspace((unsigned char)s[*b]) || is_md(s[*b])))
        (*b)++;
    while (*e > *b && (isspace((unsigned char)s[*e - 1]) || is_md(s[*e - 1])))
        (*e)--;
}

/* Looks for a line "UNSURE: question", allowing indentation, quoting and
 * emphasis around the word ("> **UNSURE:** ...", "**UNSURE**: ...").
 * 1 with the question's bounds (possibly empty) if found. */
static int find_marker(const char *s, size_t *qb, size_t *qe)
{
    const char *line = s;
    while (*line) {
        const char *nl = strchr(line, '\n');
        const char *end = nl ? nl : line + strlen(line);
        const char *c = line;
        while (c < end && (*c == ' ' || *c == '\t' || *c == '>' || *c == '#' ||
                           *c == '-' || is_md(*c)))
            c++;
        if (end - c >= 7 && strncasecmp(c, "UNSURE", 6) == 0) {
            c += 6;
            while (c < end && is_md(*c))
                c++;
            if (c < end && *c == ':') {
                size_t b = (size_t)(c + 1 - s), e = (size_t)(end - s);
                trim_md(s, &b, &e);
                *qb = b;
                *qe = e;
                return 1;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

/* The last sentence of s that ends in '?': it starts after the previous
 * sentence end ('?', a line break, or '.' / '!' followed by a space, so
 * "3.5" does not split).  0 when there is none. */
static int last_question(const char *s, size_t len, size_t *qb, size_t *qe)
{
    size_t q = len;
    while (q > 0 && s[q - 1] != '?')
        q--;
    if (q == 0)
        return 0;
    size_t e = q, b = q - 1;
    while (b > 0) {
        char c = s[b - 1];
        if (c == '?' || c == '\n' ||
            ((c == '.' || c == '!') && isspace((unsigned char)s[b])))
            break;
        b--;
    }
    while (b < e && (isspace((unsigned char)s[b]) || is_md(s[b]) ||
                     s[b] == '>' || s[b] == '#' || s[b] == '-'))
        b++;
    if (e - b < 2) /* a lone "?" */
        return 0;
    *qb = b;
    *qe = e;
    return 1;
}

/* Overwrites *v (clear it first if it holds strings).  The reply is
 * borrowed; v's strings are the caller's to free with unc_verdict_clear. */
sk_status unc_check_text(const sk_policy *p, const char *reply,
                         const char *input, unc_verdict *v)
{
    v->uncertain = 0;
    v->reason = v->question = NULL;
    v->confidence = -1;
    if (!p || !reply)
        return SK_OK;
    size_t b, e;
    if (p->protocol && find_marker(reply, &b, &e)) {
        v->uncertain = 1;
        v->reason = sk_strdup("protocol: the model replied UNSURE");
        if (e > b)
            v->question = sk_strndup(reply + b, e - b);
        if (!v->reason || (e > b && !v->question)) {
            unc_verdict_clear(v);
            return SK_NOMEM;
        }
        return SK_OK;
    }
    if (p->asks_back) {
        int a = unc_asks_back(reply, input, &b, &e);
        if (a < 0)
            return SK_NOMEM;
        if (a) {
            v->uncertain = 1;
            v->reason = sk_strdup("asks back: the reply asks instead of "
                                  "answering");
            v->question = sk_strndup(reply + b, e - b);
            if (!v->reason || !v->question) {
                unc_verdict_clear(v);
                return SK_NOMEM;
            }
            return SK_OK;
        }
    }
    if (!p->hedging || !p->hedge_re)
        return SK_OK;
    size_t len = strlen(reply);
    int rc = re_find(p->hedge_re, reply, len, &b, &e);
    if (rc == PCRE2_ERROR_NOMEMORY)
        return SK_NOMEM;
    if (rc != 1) /* no hedge, or a runaway custom pattern: not a signal */
        return SK_OK;
    v->uncertain = 1;
    v->reason = sk_asprintf("hedging: \"%.*s\"", (int)(e - b), reply + b);
    size_t qb, qe;
    int has_q = last_question(reply, len, &qb, &qe);
    if (has_q)
        v->question = sk_strndup(reply + qb, qe - qb);
    if (!v->reason || (has_q && !v->question)) {
        unc_verdict_clear(v);
        return SK_NOMEM;
    }
    return SK_OK;
}

/* Length of at most max bytes of s, cut back to a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Overwrites *v; lp is borrowed.  confidence is the mean token
 * probability whenever there were logprobs to judge. */
sk_status unc_check_logprobs(const sk_policy *p, const sk_logprob *lp,
                             size_t n, int label, unc_verdict *v)
{
    v->uncertain = 0;
    v->reason = v->question = NULL;
    v->confidence = -1;
    if (!p || !p->check_logprobs || !lp || n == 0)
        return SK_OK;
    double sum = 0, min = 2;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double pr = exp(lp[i].logprob);
        if (!(pr >= 0)) /* NaN from a broken server: no confidence */
            pr = 0;
        if (pr > 1)
            pr = 1;
        sum += pr;
        if (pr < min) {
            min = pr;
            at = i;
        }
    }
    double mean = sum / (double)n;
    v->confidence = mean;
    if (label) {
        double pl = unc_logprob_score(lp, n, 1);
        v->confidence = pl;
        if (pl >= 0 && pl < p->min_mean_prob) {
            v->uncertain = 1;
            v->reason = sk_asprintf("logprobs: the label's probability %.2f "
                                    "< %.2f",
                                    pl, p->min_mean_prob);
        }
    } else if (mean < p->min_mean_prob) {
        v->uncertain = 1;
        v->reason = sk_asprintf("logprobs: mean token probability %.2f < "
                                "%.2f",
                                mean, p->min_mean_prob);
    } else if (p->min_token_prob > 0 && min < p->min_token_prob) {
        const char *tok = lp[at].token ? lp[at].token : "";
        size_t tl = utf8_cut(tok, strlen(tok), 40);
        v->uncertain = 1;
        v->reason = sk_asprintf("logprobs: token \"%.*s\" probability %.2f "
                                "< %.2f",
                                (int)tl, tok, min, p->min_token_prob);
    }
    if (v->uncertain && !v->reason) {
        v->uncertain = 0;
        return SK_NOMEM;
    }
    return SK_OK;
}

/* The normalised extent of an answer: whitespace and quotes trimmed at
 * both ends (models quote answers inconsistently) and trailing '.' and
 * '!' dropped. */
typedef struct span {
    const char *s;
    size_t b, e;
} span;

static int quote_at_end(const char *s, size_t b, size_t e, size_t *n)
{
    char c = s[e - 1];
    if (c == '"' || c == '\'' || c == '.' || c == '!' ||
        isspace((unsigned char)c)) {
        *n = 1;
        return 1;
    }
    /* U+2019 and U+201D */
    if (e - b >= 3 && (unsigned char)s[e - 3] == 0xE2 &&
        (unsigned char)s[e - 2] == 0x80 &&
        ((unsigned char)s[e - 1] == 0x99 || (unsigned char)s[e - 1] == 0x9D)) {
        *n = 3;
        return 1;
    }
    return 0;
}

static int quote_at_start(const char *s, size_t b, size_t e, size_t *n)
{
    char c = s[b];
    if (c == '"' || c == '\'' || isspace((unsigned char)c)) {
        *n = 1;
        return 1;
    }
    /* U+2018 and U+201C */
    if (e - b >= 3 && (unsigned char)s[b] == 0xE2 &&
        (unsigned char)s[b + 1] == 0x80 &&
        ((unsigned char)s[b + 2] == 0x98 || (unsigned char)s[b + 2] == 0x9C)) {
        *n = 3;
        return 1;
    }
    return 0;
}

static span normalised(const char *s)
{
    span v = {s ? s : "", 0, 0};
    v.e = strlen(v.s);
    size_t n;
    while (v.b < v.e && quote_at_start(v.s, v.b, v.e, &n))
        v.b += n;
    while (v.e > v.b && quote_at_end(v.s, v.b, v.e, &n))
        v.e -= n;
    return v;
}

/* The next character of a normalised span: lowercase ASCII, a run of
 * whitespace as one space; -1 at the end. */
static int next_char(const span *v, size_t *i)
{
    if (*i >= v->e)
        return -1;
    unsigned char c = (unsigned char)v->s[*i];
    if (isspace(c)) {
        while (*i < v->e && isspace((unsigned char)v->s[*i]))
            (*i)++;
        return ' ';
    }
    (*i)++;
    return tolower(c);
}

static int same_answer(const span *a, const span *b)
{
    size_t i = a->b, j = b->b;
    for (;;) {
        int ca = next_char(a, &i), cb = next_char(b, &j);
        if (ca != cb)
            return 0;
        if (ca < 0)
            return 1;
    }
}

/* answers are borrowed (a NULL entry counts as ""); compares without
 * allocating, so it cannot fail.  Groups are ranked by size, then by
 * their first member. */
double unc_agreement(char *const *answers, size_t n, size_t *majority)
{
    if (majority)
        *majority = 0;
    if (n == 0 || !answers)
        return 0;
    size_t best = 0, best_count = 0;
    for (size_t i = 0; i < n; i++) {
        span a = normalised(answers[i]);
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) {
            span c = normalised(answers[k]);
            seen = same_answer(&a, &c);
        }
        if (seen)
            continue;
        size_t count = 1;
        for (size_t j = i + 1; j < n; j++) {
            span b = normalised(answers[j]);
            count += (size_t)same_answer(&a, &b);
        }
        if (count > best_count) {
            best_count = count;
            best = i;
        }
    }
    if (majority)
        *majority = best;
    return (double)best_count / (double)n;
}

/* Reads a verdict word at the start of reply, after whitespace and
 * markdown.  1 for yes, 0 for no (with the rest of the reply, trimmed, in
 * [*rb, *re)), -1 for neither. */
static int verdict_word(const char *reply, const char *yes, const char *no,
                        size_t *rb, size_t *re)
{
    const char *s = reply;
    while (*s && (isspace((unsigned char)*s) || *s == '*' || *s == '#' ||
                  *s == '>' || *s == '_' || *s == '`'))
        s++;
    int which;
    size_t wl;
    if (strncasecmp(s, yes, strlen(yes)) == 0) {
        which = 1;
        wl = strlen(yes);
    } else if (strncasecmp(s, no, strlen(no)) == 0) {
        which = 0;
        wl = strlen(no);
    } else {
        return -1;
    }
    char after = s[wl];
    if (after && !isspace((unsigned char)after) && !strchr(":.-,;!", after) &&
        !is_md(after))
        return -1; /* "PASSED", "Failure": not the protocol's word */
    const char *r = s + wl;
    while (*r && (isspace((unsigned char)*r) || strchr(":.-,;!", *r) ||
                  is_md(*r)))
        r++;
    size_t b = (size_t)(r - reply), e = strlen(reply);
    trim_md(reply, &b, &e);
    *rb = b;
    *re = e;
    return which;
}

/* "<lead>: <first 200 bytes of the trimmed reply>". */
static char *quote_reply(const char *lead, const char *reply)
{
    size_t b = 0, e = strlen(reply);
    while (b < e && isspace((unsigned char)reply[b]))
        b++;
    while (e > b && isspace((unsigned char)reply[e - 1]))
        e--;
    size_t n = utf8_cut(reply + b, e - b, POL_QUOTE_MAX);
    return sk_asprintf("%s: %.*s%s", lead, (int)n, reply + b,
                       n < e - b ? "..." : "");
}

/* reply is borrowed.  *critique is NULL for PASS; otherwise the caller
 * frees it (NULL only when memory ran out). */
int rev_parse(const char *reply, char **critique)
{
    *critique = NULL;
    if (!reply)
        reply = "";
    size_t b = 0, e = 0;
    int w = verdict_word(reply, "PASS", "FAIL", &b, &e);
    if (w == 1)
        return 1;
    if (w == 0)
        *critique = e > b ? sk_strndup(reply + b, e - b)
                          : sk_strdup("the reviewer gave no reasons");
    else
        *critique = quote_reply("the reviewer's reply was neither PASS nor "
                                "FAIL",
                                reply);
    return 0;
}

/* reply is borrowed.  *reason is NULL for ALLOW; otherwise the caller
 * frees it (NULL only when memory ran out).  A reply that is neither
 * blocks: a filter that cannot be read must not let text through. */
int flt_parse(const char *reply, char **reason)
{
    *reason = NULL;
    if (!reply)
        reply = "";
    size_t b = 0, e = 0;
    int w = verdict_word(reply, "ALLOW", "BLOCK", &b, &e);
    if (w == 1)
        return 1;
    if (w == 0)
        *reason = e > b ? sk_strndup(reply + b, e - b)
                        : sk_strdup("the filter gave no reason");
    else
        *reason = quote_reply("blocked because the filter's reply was "
                              "neither ALLOW nor BLOCK",
                              reply);
    return 0;
}

/* f and text are borrowed; *matched (when non-NULL and 1 is returned) is
 * the caller's to free. */
int pol_filter_match(const pol_filter *f, const char *text, char **matched)
{
    if (matched)
        *matched = NULL;
    if (!f || !f->re || !text)
        return 0;
    size_t so = 0, eo = 0;
    int rc = re_find(f->re, text, strlen(text), &so, &eo);
    if (rc == PCRE2_ERROR_NOMEMORY)
        return -2;
    if (rc < 0)
        return -1;
    if (rc == 0)
        return 0;
    if (matched && !(*matched = sk_strndup(text + so, eo - so)))
        return -2;
    return 1;
}

char *unc_detail_json(const char *reason, const char *question,
                      double confidence, char *const *candidates, size_t n,
                      const char *output)
{
    cJSON *d = cJSON_CreateObject();
    if (!d)
        return NULL;
    if (reason)
        cJSON_AddStringToObject(d, "reason", reason);
    if (question)
        cJSON_AddStringToObject(d, "question", question);
    if (confidence >= 0)
        cJSON_AddNumberToObject(d, "confidence", confidence);
    if (n) {
        cJSON *c = cJSON_AddArrayToObject(d, "candidates");
        for (size_t i = 0; c && i < n; i++)
            cJSON_AddItemToArray(c, cJSON_CreateString(candidates[i] ? candidates[i] : ""));
    }
    if (output)
        cJSON_AddStringToObject(d, "output", output);
    return cfg_json_take(d);
}
