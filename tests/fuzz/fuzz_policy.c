/* fuzz_policy.c -- libFuzzer target for pol_parse and the text detectors.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support \
 *     $(pkg-config --cflags libcjson libpcre2-8) \
 *     tests/fuzz/fuzz_policy.c runtime/policy/policy.c runtime/policy/redact.c \
 *     runtime/base/util.c $(pkg-config --libs libcjson libpcre2-8) -lm \
 *     -o fuzz_policy
 *   ./fuzz_policy -max_total_time=60 tests/fuzz/corpus/policy
 *
 * Any input must end in SK_OK or an error with an "origin: " message and
 * no policy; a policy must hold its bounds, survive being copied as the
 * base of another parse, and its detectors must accept the input itself
 * as a reply. */
#include <stdlib.h>
#include <string.h>

#include "all.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void check_bounds(const sk_policy *p)
{
    if (p->samples < 1 || p->samples > 16 || p->min_agreement < 0 ||
        p->min_agreement > 1 || p->min_mean_prob < 0 ||
        p->min_mean_prob > 1 || p->min_token_prob < 0 ||
        p->min_token_prob > 1 || p->review_rounds < 0 ||
        p->review_rounds > 10 || p->redact < -1 || p->redact > 1 ||
        p->n_models > 64 || p->n_in > 64 || p->n_out > 64 ||
        (p->n_models && !p->models) || (p->hedging && !p->hedge_re))
        abort();
    for (size_t i = 0; i < p->n_models; i++)
        if (!p->models[i] || !p->models[i][0])
            abort();
    for (size_t i = 0; i < p->n_in + p->n_out; i++) {
        const pol_filter *f =
            i < p->n_in ? &p->in_filters[i] : &p->out_filters[i - p->n_in];
        if (!f->name || (!f->re) == (!f->function))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    sk_policy *p = NULL;
    char *err = NULL;
    sk_status rc = pol_parse((const char *)data, size, "f.json", NULL, &p,
                             &err);
    if (rc == SK_OK) {
        if (!p || err)
            abort();
        check_bounds(p);
        sk_policy *copy = NULL;
        if (pol_parse(NULL, 0, "f.json", p, &copy, NULL) != SK_OK)
            abort();
        check_bounds(copy);
        if (copy->n_models != p->n_models || copy->n_in != p->n_in ||
            copy->samples != p->samples)
            abort();
        char *text = malloc(size + 1);
        if (!text)
            return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        unc_verdict v = {0};
        copy->protocol = 1;
        if (unc_check_text(copy, text, NULL, &v) != SK_OK ||
            (v.uncertain && !v.reason))
            abort();
        unc_verdict_clear(&v);
        for (size_t i = 0; i < copy->n_in; i++) {
            char *m = NULL;
            if (pol_filter_match(&copy->in_filters[i], text, &m) == 1 && !m)
                abort();
            free(m);
        }
        char *c = NULL;
        if (rev_parse(text, &c) == 0 && !c)
            abort();
        free(c);
        if (flt_parse(text, &c) == 0 && !c)
            abort();
        free(c);
        free(text);
        pol_free(copy);
    } else if (rc == SK_CONFIG || rc == SK_TOO_LARGE) {
        if (p || !err || strncmp(err, "f.json: ", 8) != 0)
            abort();
    } else {
        abort();
    }
    pol_free(p);
    free(err);
    return 0;
}
