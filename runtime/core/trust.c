/*
 * trust.c -- grants: what a call that a model chose may reach.
 *
 * Every call carries who asked for it.  The user asks through the command
 * line, their own Lua, C and templates; those calls carry no grant.  The
 * model asks through plan steps, agent actions and SQL it wrote; whoever
 * runs that output makes a grant from what the user allowed for the run
 * (--functions, { functions = ... }) and passes it with the call.  The one
 * lookup every call goes through (inv_lookup in invoke.c) checks the name
 * against the grant, so no feature checks it on its own.
 *
 * A grant is shared by reference: a plan holds one for all its steps, a
 * DataFrame made from generated SQL holds the one its SQL was written
 * under, for as long as the view exists.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

struct sk_grant {
    int refs;
    int all;        /* every function but the planner's and agent's own */
    char **names;   /* canonical full names */
    size_t n;
    char *source;   /* who runs the model's output: "this plan" */
};

static sk_grant NONE;

void grant_release(sk_grant *g)
{
    if (!g || g == &NONE || --g->refs > 0)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->names[i]);
    free(g->names);
    free(g->source);
    free(g);
}

sk_grant *grant_retain(sk_grant *g)
{
    if (g && g != &NONE)
        g->refs++;
    return g;
}

static sk_grant *grant_alloc(const char *source)
{
    sk_grant *g = sk_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->refs = 1;
    if (!(g->source = sk_strdup(source ? source : "the model's output"))) {
        free(g);
        return NULL;
    }
    return g;
}

static int has_name(const sk_grant *g, const char *full)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcasecmp(g->names[i], full) == 0)
            return 1;
    return 0;
}

sk_status grant_new(sk_kernel *k, const char *source, const char *const *names,
                    size_t n, sk_grant **out, sk_err **err)
{
    *out = NULL;
    *err = NULL;
    sk_grant *g = grant_alloc(source);
    if (!g)
        return SK_NOMEM;
    if (!names) {
        g->all = 1;
        *out = g;
        return SK_OK;
    }
    g->names = sk_calloc(n ? n : 1, sizeof *g->names);
    if (!g->names) {
        grant_release(g);
        return SK_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *want = names[i];
        if (!want || !*want)
            continue;
        /* in SQL, ai(instruction, text) is DataFrame.Map on one value */
        if (strcasecmp(want, "ai") == 0)
            want = "DataFrame.Map";
        const sk_function *f = reg_find_short(k, want, NULL);
        if (!f) {
            *err = inv_not_found_err(k, want, NULL);
            grant_release(g);
            return *err ? (*err)->code : SK_NOMEM;
        }
        if (has_name(g, f->full_name))
            continue;
        if (!(g->names[g->n] = sk_strdup(f->full_name))) {
            grant_release(g);
            return SK_NOMEM;
        }
        g->n++;
    }
    *out = g;
    return SK_OK;
}

/* The planner's and the agent's own prompts: never part of "all". */
static int internal_fn(const sk_function *f)
{
    return strcasecmp(f->skill, "Planner") == 0 || strcasecmp(f->skill, "Agent") == 0;
}

int grant_allows(const sk_grant *g, const sk_function *f)
{
    if (!g)
        return 1;
    if (g->all)
        return !internal_fn(f);
    return has_name(g, f->full_name);
}

int grant_allows_all(const sk_grant *g) { return g && g->all; }
size_t grant_count(const sk_grant *g) { return g ? g->n : 0; }
const char *grant_name_at(const sk_grant *g, size_t i)
{
    return g && i < g->n ? g->names[i] : NULL;
}
const char *grant_source(const sk_grant *g) { return g ? g->source : "the user"; }

char *grant_describe(const sk_grant *g)
{
    if (!g)
        return sk_strdup("any function");
    if (g->all)
        return sk_strdup("any loaded function");
    if (g->n == 0)
        return sk_strdup("no function");
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && i < g->n; i++) {
        if (i == 20) {
            rc = buf_printf(&b, ", ... (%zu more)", g->n - i);
            break;
        }
        rc = buf_printf(&b, "%s%s", i ? ", " : "", g->names[i]);
    }
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

sk_err *grant_denied(const sk_grant *g, const sk_function *f)
{
    char *allowed = grant_describe(g);
    sk_err *e = err_new(SK_DENIED, "%s is not allowed here: %s may call %s%s",
                        f->full_name, grant_source(g),
                        g && !g->all && g->n ? "only " : "",
                        allowed ? allowed : "what the user allowed");
    free(allowed);
    if (e) {
        sk_buf b;
        buf_init(&b, 0);
        if (buf_adds(&b, "{\"denied\":") == SK_OK &&
            buf_add_json_str(&b, f->full_name, strlen(f->full_name)) == SK_OK &&
            buf_addc(&b, '}') == SK_OK)
            e->detail_json = buf_steal(&b);
        buf_free(&b);
    }
    return e;
}

/* Immortal and never written: retain and release pass it by. */
static sk_grant NONE = {1, 0, NULL, 0, (char *)"generated SQL"};

sk_grant *grant_none(void) { return &NONE; }

sk_grant *grant_intersect(const sk_grant *a, const sk_grant *b)
{
    if (!a || !b) {
        const sk_grant *one = a ? a : b;
        return one ? grant_retain((sk_grant *)one) : NULL;
    }
    if (a == b || b->all)
        return grant_retain((sk_grant *)a);
    if (a->all)
        return grant_retain((sk_grant *)b);
    sk_grant *g = grant_alloc(a->source);
    if (!g)
        return NULL;
    g->names = sk_calloc(a->n ? a->n : 1, sizeof *g->names);
    if (!g->names) {
        grant_release(g);
        return NULL;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (!has_name(b, a->names[i]))
            continue;
        if (!(g->names[g->n] = sk_strdup(a->names[i]))) {
            grant_release(g);
            return NULL;
        }
        g->n++;
    }
    return g;
}
