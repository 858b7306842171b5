/*
 * planner.c -- from a goal to a validated plan: the function manual (with
 * a lexical relevance ranking when there are many functions), the
 * planner prompt (the built-in Planner.Create), and the repair loop that
 * sends a plan's problems back to the model.  Also the public plan API
 * around planner/plan.c's parser and validator.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "planner/planner.h"

#define DEFAULT_MAX_FUNCTIONS 24
#define DEFAULT_REPAIRS 2

/* ---- the manual -------------------------------------------------------- */

/* Words that say nothing about which function fits. */
static const char *const STOP[] = {
    "the", "and", "for", "with", "that", "this", "from", "into", "then",
    "what", "which", "when", "give", "make", "text", "some", "about", "all",
    "are", "its", "use", "using", "your", "you", "our", "will", "each", NULL,
};

static int stop_word(const char *w, size_t n)
{
    for (int i = 0; STOP[i]; i++)
        if (strlen(STOP[i]) == n && strncasecmp(STOP[i], w, n) == 0)
            return 1;
    return 0;
}

/* Words are compared by their first five letters, lower-cased, a crude
 * stem that lets "summary" find "Summarize" and "translation" find
 * "Translate". */
#define STEM 5

typedef struct stems {
    char (*w)[STEM + 1];
    size_t n, cap;
} stems;

static void stems_add(stems *s, const char *w, size_t n)
{
    if (n < 3 || stop_word(w, n))
        return;
    char stem[STEM + 1];
    size_t m = n < STEM ? n : STEM;
    for (size_t i = 0; i < m; i++)
        stem[i] = (char)tolower((unsigned char)w[i]);
    stem[m] = '\0';
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->w[i], stem) == 0)
            return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        void *p = sk_realloc(s->w, cap * sizeof *s->w);
        if (!p)
            return; /* a shorter word list only makes the ranking cruder */
        s->w = p;
        s->cap = cap;
    }
    memcpy(s->w[s->n++], stem, m + 1);
}

/* Splits text into words at non-alphanumerics and at camelCase humps. */
static void stems_of(stems *s, const char *t)
{
    if (!t)
        return;
    const char *w = NULL;
    for (const char *p = t;; p++) {
        int alnum = isalnum((unsigned char)*p);
        int hump = w && p > w && isupper((unsigned char)*p) &&
                   islower((unsigned char)p[-1]);
        if (w && (!alnum || hump)) {
            stems_add(s, w, (size_t)(p - w));
            w = NULL;
        }
        if (alnum && !w)
            w = p;
        if (!*p)
            break;
    }
}

static int stems_has(const stems *s, const char *stem)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->w[i], stem) == 0)
            return 1;
    return 0;
}

/* Functions that plans never call: the planner's and agent's own. */
static int internal_skill(const sk_function_info *fi)
{
    return strcasecmp(fi->skill, "Planner") == 0 || strcasecmp(fi->skill, "Agent") == 0;
}

typedef struct cand {
    size_t index;
    int score;
} cand;

static int by_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return y->score - x->score;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int by_index(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int listed(const char *name, const char *const *only, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (only[i] && strcasecmp(only[i], name) == 0)
            return 1;
    return 0;
}

char *plan_manual(sk_kernel *k, const char *goal, const char *const *only,
                  size_t n_only, size_t max)
{
    size_t total = sk_kernel_function_count(k);
    cand *c = sk_calloc(total ? total : 1, sizeof *c);
    if (!c)
        return NULL;
    stems g = {0};
    stems_of(&g, goal);
    size_t n = 0;
    for (size_t i = 0; i < total; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(k, i, &fi) != SK_OK || internal_skill(&fi))
            continue;
        if (only && !listed(fi.full_name, only, n_only))
            continue;
        /* a goal word in the name counts three times one in the text */
        stems name = {0}, text = {0};
        stems_of(&name, fi.full_name);
        stems_of(&text, fi.description);
        for (size_t p = 0; p < fi.n_params; p++) {
            stems_of(&text, fi.params[p].name);
            stems_of(&text, fi.params[p].description);
        }
        int score = 0;
        for (size_t w = 0; w < g.n; w++)
            score += 3 * stems_has(&name, g.w[w]) + stems_has(&text, g.w[w]);
        free(name.w);
        free(text.w);
        c[n].index = i;
        c[n].score = score;
        n++;
    }
    free(g.w);
    if (max && n > max) {
        qsort(c, n, sizeof *c, by_score);
        n = max;
        qsort(c, n, sizeof *c, by_index); /* name order: a stable prompt */
    }
    sk_buf b;
    buf_init(&b, (size_t)4 << 20);
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        sk_function_info fi;
        sk_kernel_function_at(k, c[i].index, &fi);
        rc = buf_printf(&b, "- %s: %s\n", fi.full_name,
                        fi.description && *fi.description ? fi.description
                                                          : "(no description)");
        for (size_t p = 0; rc == SK_OK && p < fi.n_params; p++) {
            const sk_param_info *pi = &fi.params[p];
            rc = buf_printf(&b, "    %s: %s", pi->name,
                            pi->description && *pi->description ? pi->description
                                                                : "(no description)");
            if (rc == SK_OK && pi->required && !(pi->default_value && *pi->default_value))
                rc = buf_adds(&b, " (required)");
            else if (rc == SK_OK && pi->default_value && *pi->default_value)
                rc = buf_printf(&b, " (default \"%s\")", pi->default_value);
            if (rc == SK_OK)
                rc = buf_addc(&b, '\n');
        }
    }
    free(c);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- creating a plan --------------------------------------------------- */

static void trace_repair(sk_kernel *k, int attempt, const char *problems)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    if (buf_printf(&b, "\"type\":\"plan_repair\",\"attempt\":%d,\"problems\":", attempt) == SK_OK &&
        buf_add_json_str(&b, problems, strlen(problems)) == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

sk_status sk_plan_create(sk_kernel *k, const char *goal,
                         const sk_plan_opts *opts, sk_plan **out)
{
    if (!k || !goal || !out)
        return SK_USAGE;
    *out = NULL;
    size_t max = opts && opts->max_functions ? opts->max_functions : DEFAULT_MAX_FUNCTIONS;
    int repairs = opts && opts->repairs >= 0 ? opts->repairs : DEFAULT_REPAIRS;
    /* what the user allows: the manual lists it, and the plan is held to
     * it when it is checked and when it runs */
    sk_grant *grant = NULL;
    sk_err *gerr = NULL;
    sk_status rc = grant_new(k, "this plan", opts && opts->only ? opts->only : NULL,
                             opts ? opts->n_only : 0, &grant, &gerr);
    if (rc != SK_OK)
        return gerr ? kern_fail(k, gerr) : kern_fail(k, NULL);
    char *manual = plan_manual(k, goal, opts ? opts->only : NULL,
                               opts ? opts->n_only : 0, max);
    if (!manual) {
        grant_release(grant);
        return kern_fail(k, NULL);
    }
    if (!*manual) {
        free(manual);
        grant_release(grant);
        return kern_failf(k, SK_PLAN, "no functions to plan with%s",
                          opts && opts->only ? " (none of the listed ones exist)" : "");
    }
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK || sk_vars_set(v, "goal", goal) != SK_OK ||
        sk_vars_set(v, "manual", manual) != SK_OK || sk_vars_set(v, "repair", "") != SK_OK) {
        sk_vars_free(v);
        free(manual);
        grant_release(grant);
        return kern_fail(k, NULL);
    }
    free(manual);
    char *problems = NULL;
    rc = SK_PLAN;
    for (int attempt = 0; attempt <= repairs; attempt++) {
        char *reply = NULL;
        rc = sk_invoke(k, "Planner.Create", v, NULL, &reply);
        if (rc != SK_OK)
            break; /* the model's own error (network, uncertain, ...) */
        char origin[48];
        snprintf(origin, sizeof origin, "plan (attempt %d)", attempt + 1);
        sk_plan *p = NULL;
        free(problems);
        problems = NULL;
        rc = plan_parse(reply, strlen(reply), origin, 1, &p, &problems);
        if (rc == SK_OK && p->no_plan) {
            rc = kern_failf(k, SK_PLAN, "the planner found no plan for \"%s\": %s",
                            goal, p->no_plan);
            plan_free(p);
            free(reply);
            sk_vars_free(v);
            grant_release(grant);
            return rc;
        }
        if (rc == SK_OK) {
            p->grant = grant_retain(grant);
            rc = plan_validate(k, p, NULL, &problems);
        }
        if (rc == SK_OK) {
            if (!p->goal && !(p->goal = sk_strdup(goal))) {
                plan_free(p);
                free(reply);
                rc = kern_fail(k, NULL);
                break;
            }
            free(reply);
            sk_vars_free(v);
            grant_release(grant);
            kern_ok(k);
            *out = p;
            return SK_OK;
        }
        plan_free(p);
        if (rc == SK_NOMEM) {
            free(reply);
            rc = kern_fail(k, NULL);
            break;
        }
        if (!problems)
            problems = sk_strdup(sk_strerror(rc));
        trace_repair(k, attempt + 1, problems ? problems : "");
        /* the rejected plan and its problems go back for a correction */
        char *repair = sk_asprintf("\nYour previous plan was:\n%s\nIt was rejected "
                                   "for these problems:\n%s\nWrite the whole plan "
                                   "again, correcting them.\n",
                                   reply, problems ? problems : "");
        free(reply);
        if (!repair || sk_vars_set(v, "repair", repair) != SK_OK) {
            free(repair);
            rc = kern_fail(k, NULL);
            break;
        }
        free(repair);
        rc = SK_PLAN;
    }
    sk_vars_free(v);
    grant_release(grant);
    if (rc == SK_PLAN)
        rc = kern_failf(k, SK_PLAN, "no valid plan for \"%s\" after %d attempt%s:\n%s",
                        goal, repairs + 1, repairs ? "s" : "",
                        problems ? problems : "");
    free(problems);
    return rc;
}

/* ---- the public plan API ----------------------------------------------- */

sk_status sk_plan_parse(sk_kernel *k, const char *text, const char *origin,
                        sk_plan **out)
{
    if (!k || !text || !out)
        return SK_USAGE;
    *out = NULL;
    char *problems = NULL;
    sk_plan *p = NULL;
    sk_status rc = plan_parse(text, strlen(text), origin ? origin : "plan", 0,
                              &p, &problems);
    if (rc == SK_OK) {
        /* a plan file is model output a person may have edited: its steps
         * run as the model's calls, over every function unless
         * sk_plan_allow narrows it */
        sk_err *gerr = NULL;
        rc = grant_new(k, "this plan", NULL, 0, &p->grant, &gerr);
        err_free(gerr);
    }
    if (rc == SK_OK)
        rc = plan_validate(k, p, NULL, &problems);
    if (rc != SK_OK) {
        plan_free(p);
        rc = problems ? kern_failf(k, rc, "%s", problems)
                      : (rc == SK_NOMEM ? kern_fail(k, NULL)
                                        : kern_failf(k, rc, "%s", sk_strerror(rc)));
        free(problems);
        return rc;
    }
    kern_ok(k);
    *out = p;
    return SK_OK;
}

sk_status sk_plan_allow(sk_kernel *k, sk_plan *p, const char *const *names,
                        size_t n)
{
    if (!k || !p || (n && !names))
        return SK_USAGE;
    sk_grant *g = NULL;
    sk_err *err = NULL;
    sk_status rc = grant_new(k, "this plan", names, n, &g, &err);
    if (rc != SK_OK)
        return err ? kern_fail(k, err) : kern_fail(k, NULL);
    grant_release(p->grant);
    p->grant = g;
    char *problems = NULL;
    rc = plan_validate(k, p, NULL, &problems);
    if (rc != SK_OK) {
        rc = problems ? kern_failf(k, rc, "%s", problems)
                      : (rc == SK_NOMEM ? kern_fail(k, NULL)
                                        : kern_failf(k, rc, "%s", sk_strerror(rc)));
        free(problems);
        return rc;
    }
    kern_ok(k);
    return SK_OK;
}

void sk_plan_free(sk_plan *p) { plan_free(p); }
char *sk_plan_text(const sk_plan *p) { return p ? plan_text(p) : NULL; }
char *sk_plan_dot(const sk_plan *p) { return p ? plan_dot(p) : NULL; }
size_t sk_plan_step_count(const sk_plan *p) { return p ? p->n : 0; }

static const char *state_name(plan_state s)
{
    switch (s) {
    case PS_PENDING: return "pending";
    case PS_RUNNING: return "running";
    case PS_DONE: return "done";
    case PS_FAILED: return "failed";
    case PS_SKIPPED: return "skipped";
    }
    return "pending";
}

sk_status sk_plan_step(const sk_plan *p, size_t i, sk_plan_step_info *info)
{
    if (!p || !info || i >= p->n)
        return SK_USAGE;
    const plan_step *s = &p->steps[i];
    info->number = s->number;
    info->line = s->line;
    info->function = s->call.function;
    info->text = s->src;
    info->deps = s->deps;
    info->n_deps = s->n_deps;
    info->state = state_name(s->state);
    info->output = s->state == PS_DONE ? s->output : NULL;
    info->start_ms = s->start_ms;
    info->end_ms = s->end_ms;
    return SK_OK;
}
