/*
 * limits.c -- per-endpoint rate limits (requests and tokens per minute,
 * requests in flight) and per-model usage accounting.
 *
 * Limits are looked up by the model spec ("openai:gpt-4o@http://..."),
 * then by its kind ("openai").  A request that would pass a limit waits
 * on a timer; nothing blocks.  Windows are sliding minutes, kept as a
 * ring of (time, tokens) per endpoint.
 */
#include <stdlib.h>
#include <string.h>

#include "kernel_priv.h"

#define WINDOW_MS 60000
#define RING 4096 /* requests remembered per endpoint (rpm above this: no cap) */

typedef struct lim {
    char *key;            /* a spec or a kind */
    long rpm, tpm;        /* 0: no limit */
    int inflight_max;     /* 0: no limit */
    int inflight;
    long long *when;      /* ring of request times */
    long *tokens;         /* ring of their token counts */
    size_t head, n;
} lim;

struct kern_limits {
    lim *v;
    size_t n;
    sk_model_usage *usage; /* per model spec */
    char **usage_specs;
    size_t n_usage;
};

static struct kern_limits *limits(sk_kernel *k)
{
    if (!k->limits)
        k->limits = sk_calloc(1, sizeof *k->limits);
    return k->limits;
}

void lim_free(sk_kernel *k)
{
    struct kern_limits *L = k->limits;
    if (!L)
        return;
    for (size_t i = 0; i < L->n; i++) {
        free(L->v[i].key);
        free(L->v[i].when);
        free(L->v[i].tokens);
    }
    free(L->v);
    for (size_t i = 0; i < L->n_usage; i++)
        free(L->usage_specs[i]);
    free(L->usage);
    free(L->usage_specs);
    free(L);
    k->limits = NULL;
}

sk_status sk_kernel_set_limits(sk_kernel *k, const char *endpoint, long rpm,
                               long tpm, int max_inflight)
{
    if (!k || !endpoint || !*endpoint || rpm < 0 || tpm < 0 || max_inflight < 0)
        return SK_USAGE;
    struct kern_limits *L = limits(k);
    if (!L)
        return kern_fail(k, NULL);
    lim *l = NULL;
    for (size_t i = 0; i < L->n; i++)
        if (strcmp(L->v[i].key, endpoint) == 0)
            l = &L->v[i];
    if (!l) {
        lim *v = sk_realloc(L->v, (L->n + 1) * sizeof *v);
        if (!v)
            return kern_fail(k, NULL);
        L->v = v;
        l = &L->v[L->n];
        memset(l, 0, sizeof *l);
        l->key = sk_strdup(endpoint);
        l->when = sk_calloc(RING, sizeof *l->when);
        l->tokens = sk_calloc(RING, sizeof *l->tokens);
        if (!l->key || !l->when || !l->tokens) {
            free(l->key);
            free(l->when);
            free(l->tokens);
            return kern_fail(k, NULL);
        }
        L->n++;
    }
    l->rpm = rpm;
    l->tpm = tpm;
    l->inflight_max = max_inflight;
    kern_ok(k);
    return SK_OK;
}

static lim *find(sk_kernel *k, const char *spec)
{
    struct kern_limits *L = k->limits;
    if (!L || !spec)
        return NULL;
    for (size_t i = 0; i < L->n; i++)
        if (strcmp(L->v[i].key, spec) == 0)
            return &L->v[i];
    const char *colon = strchr(spec, ':');
    size_t kind = colon ? (size_t)(colon - spec) : strlen(spec);
    for (size_t i = 0; i < L->n; i++)
        if (strlen(L->v[i].key) == kind && strncmp(L->v[i].key, spec, kind) == 0)
            return &L->v[i];
    return NULL;
}

/* Drops requests older than the window. */
static void expire(lim *l, long long now)
{
    while (l->n) {
        size_t oldest = (l->head + RING - l->n) % RING;
        if (now - l->when[oldest] < WINDOW_MS)
            break;
        l->n--;
    }
}

long lim_admit(sk_kernel *k, const char *spec, long tokens)
{
    lim *l = find(k, spec);
    if (!l)
        return 0;
    long long now = loop_now_ms();
    expire(l, now);
    if (l->inflight_max && l->inflight >= l->inflight_max)
        return 20; /* look again soon: one will finish */
    long long wait = 0;
    if (l->rpm && (long)l->n >= l->rpm && l->n) {
        /* the oldest of the last rpm requests must leave the window */
        size_t idx = (l->head + RING - (size_t)l->rpm) % RING;
        wait = l->when[idx] + WINDOW_MS - now;
    }
    if (l->tpm) {
        long used = 0;
        for (size_t i = 0; i < l->n; i++)
            used += l->tokens[(l->head + RING - l->n + i) % RING];
        /* a request bigger than the whole budget still runs, alone */
        if (used && used + tokens > l->tpm) {
            long freed = 0;
            for (size_t i = 0; i < l->n; i++) {
                size_t idx = (l->head + RING - l->n + i) % RING;
                freed += l->tokens[idx];
                if (used - freed + tokens <= l->tpm) {
                    long long w = l->when[idx] + WINDOW_MS - now;
                    if (w > wait)
                        wait = w;
                    break;
                }
            }
        }
    }
    if (wait > 0)
        return (long)wait;
    l->when[l->head] = now;
    l->tokens[l->head] = tokens;
    l->head = (l->head + 1) % RING;
    if (l->n < RING)
        l->n++;
    l->inflight++;
    return 0;
}

void lim_done(sk_kernel *k, const char *spec, long estimated, long actual)
{
    lim *l = find(k, spec);
    if (!l)
        return;
    if (l->inflight > 0)
        l->inflight--;
    /* correct the newest matching estimate with what the server counted */
    if (actual >= 0 && l->n) {
        for (size_t i = 0; i < l->n; i++) {
            size_t idx = (l->head + RING - 1 - i) % RING;
            if (l->tokens[idx] == estimated) {
                l->tokens[idx] = actual;
                break;
            }
        }
    }
}

/* ---- per-model usage --------------------------------------------------- */

sk_model_usage *kern_model_usage(sk_kernel *k, const char *spec)
{
    struct kern_limits *L = limits(k);
    if (!L || !spec)
        return NULL;
    for (size_t i = 0; i < L->n_usage; i++)
        if (strcmp(L->usage_specs[i], spec) == 0)
            return &L->usage[i];
    sk_model_usage *u = sk_realloc(L->usage, (L->n_usage + 1) * sizeof *u);
    if (!u)
        return NULL;
    L->usage = u;
    char **s = sk_realloc(L->usage_specs, (L->n_usage + 1) * sizeof *s);
    if (!s)
        return NULL;
    L->usage_specs = s;
    char *copy = sk_strdup(spec);
    if (!copy)
        return NULL;
    L->usage_specs[L->n_usage] = copy;
    memset(&L->usage[L->n_usage], 0, sizeof *L->usage);
    L->usage[L->n_usage].model = copy;
    return &L->usage[L->n_usage++];
}

size_t sk_kernel_model_usage_count(const sk_kernel *k)
{
    return k && k->limits ? k->limits->n_usage : 0;
}

sk_status sk_kernel_model_usage_at(const sk_kernel *k, size_t i, sk_model_usage *out)
{
    if (!k || !out || !k->limits || i >= k->limits->n_usage)
        return SK_USAGE;
    *out = k->limits->usage[i];
    return SK_OK;
}
