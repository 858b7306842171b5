/*
 * exec.c -- runs a plan as a DAG on the kernel's event loop.  Every step
 * whose inputs are done starts at once (up to a concurrency limit); each
 * is an ordinary invoke, so the whole invoke path applies to it.  A failed
 * step stops the steps that depend on it, while independent ones finish.
 * Steps already done keep their output, so running a plan again resumes
 * it: after an uncertain step is clarified, nothing finished runs twice.
 */
#include <stdlib.h>
#include <string.h>

#include "planner/planner.h"

#define DEFAULT_PARALLEL 8

typedef struct prun prun;

typedef struct pctx {
    prun *r;
    size_t i; /* index into p->steps */
} pctx;

struct prun {
    sk_kernel *k;
    sk_plan *p;
    const sk_vars *vars;
    pctx *ctx;
    int max_parallel;
    int running;
    sk_err *err;      /* the first failure, with its plan position */
    int scheduling;   /* schedule() calls on the stack: a step that fails
                         at once re-enters it */
    int done;
};

static void schedule(prun *r);

static void trace_step(sk_kernel *k, const sk_plan *p, const plan_step *s,
                       const char *event, const sk_err *err)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = buf_printf(&b, "\"type\":\"plan_step\",\"event\":\"%s\",\"step\":%d,"
                                  "\"line\":%d,\"function\":",
                              event, s->number, s->line);
    if (rc == SK_OK)
        rc = buf_add_json_str(&b, s->call.function, strlen(s->call.function));
    if (rc == SK_OK)
        rc = buf_printf(&b, ",\"start_ms\":%lld", s->start_ms);
    if (rc == SK_OK && s->end_ms)
        rc = buf_printf(&b, ",\"end_ms\":%lld", s->end_ms);
    if (rc == SK_OK && p->origin) {
        rc = buf_adds(&b, ",\"plan\":");
        if (rc == SK_OK)
            rc = buf_add_json_str(&b, p->origin, strlen(p->origin));
    }
    if (rc == SK_OK && err) {
        char *ej = err_json(err);
        if (ej) {
            rc = buf_adds(&b, ",\"error\":");
            if (rc == SK_OK)
                rc = buf_adds(&b, ej);
            free(ej);
        }
    }
    if (rc == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

/* Says where in the plan an error happened, keeping its kind and detail
 * (an uncertain step's question travels on). */
static void locate_error(prun *r, const plan_step *s, sk_err *e)
{
    char *m = sk_asprintf("%s:%d: step %d (%s): %s",
                          r->p->origin ? r->p->origin : "plan", s->line,
                          s->number, s->call.function, e->message ? e->message : "");
    if (m) {
        free(e->message);
        e->message = m;
    }
    /* add the step and line to the detail object */
    char *pos = sk_asprintf("\"plan_step\":%d,\"plan_line\":%d", s->number, s->line);
    if (!pos)
        return;
    char *d = NULL;
    if (e->detail_json && e->detail_json[0] == '{' && e->detail_json[1] != '}')
        d = sk_asprintf("{%s,%s", pos, e->detail_json + 1);
    else
        d = sk_asprintf("{%s}", pos);
    free(pos);
    if (d) {
        free(e->detail_json);
        e->detail_json = d;
    }
}

static void step_done(void *ud, sk_status st, char *text, sk_err *err)
{
    pctx *c = ud;
    prun *r = c->r;
    plan_step *s = &r->p->steps[c->i];
    r->running--;
    s->end_ms = loop_now_ms();
    if (st == SK_OK) {
        free(s->output);
        s->output = text;
        s->state = PS_DONE;
        trace_step(r->k, r->p, s, "done", NULL);
    } else {
        s->state = PS_FAILED;
        if (!err)
            err = err_new(st, "%s", sk_strerror(st));
        if (err) {
            err->code = st;
            locate_error(r, s, err);
        }
        trace_step(r->k, r->p, s, "failed", err);
        if (!r->err)
            r->err = err;
        else
            err_free(err);
    }
    schedule(r);
}

/* The variables a step runs with: the run's, then its arguments. */
static sk_vars *step_vars(prun *r, const plan_step *s, const sk_function *f)
{
    sk_vars *v = vars_clone(r->vars);
    if (!v)
        return NULL;
    for (size_t a = 0; a < s->call.n_args; a++) {
        const plan_arg *arg = &s->call.args[a];
        char *value = plan_arg_value(r->p, arg, r->vars);
        const char *name = arg->name;
        if (!name)
            name = f->n_params ? f->params[0].name : "input";
        if (!value || sk_vars_set(v, name, value) != SK_OK) {
            free(value);
            sk_vars_free(v);
            return NULL;
        }
        free(value);
    }
    return v;
}

static int deps_state(const prun *r, const plan_step *s)
{
    /* 1: all done; 0: waiting; -1: one failed or was skipped */
    int ready = 1;
    for (size_t d = 0; d < s->n_deps; d++) {
        const plan_step *dep = plan_find(r->p, s->deps[d]);
        if (!dep || dep->state == PS_FAILED || dep->state == PS_SKIPPED)
            return -1;
        if (dep->state != PS_DONE)
            ready = 0;
    }
    return ready;
}

static void start_step(prun *r, size_t i)
{
    plan_step *s = &r->p->steps[i];
    /* a plan's steps were chosen by a model, or may have been: the lookup
     * holds each to the plan's grant (validated before the run too) */
    sk_err *err = NULL;
    sk_function *f = inv_lookup(r->k, s->call.function, NULL, r->p->grant, &err);
    sk_vars *v = f ? step_vars(r, s, f) : NULL;
    s->start_ms = loop_now_ms();
    s->end_ms = 0;
    s->state = PS_RUNNING;
    r->running++;
    trace_step(r->k, r->p, s, "start", NULL);
    if (!f) {
        step_done(&r->ctx[i], err ? err->code : SK_NOMEM, NULL, err);
        return;
    }
    if (!v) {
        step_done(&r->ctx[i], SK_NOMEM, NULL, NULL);
        return;
    }
    inv_opts o = {.grant = r->p->grant, .untrusted = 1};
    sk_status st = inv_start(r->k, f, v, 0, &o, step_done, &r->ctx[i], &err);
    sk_vars_free(v);
    if (st != SK_OK)
        step_done(&r->ctx[i], st, NULL, err);
}

static void schedule(prun *r)
{
    r->scheduling++;
    int progress = 1;
    while (progress) {
        progress = 0;
        for (size_t i = 0; i < r->p->n; i++) {
            plan_step *s = &r->p->steps[i];
            if (s->state != PS_PENDING)
                continue;
            int ds = deps_state(r, s);
            if (ds < 0) {
                s->state = PS_SKIPPED;
                trace_step(r->k, r->p, s, "skipped", NULL);
                progress = 1;
            } else if (ds == 1 && r->running < r->max_parallel) {
                start_step(r, i);
                progress = 1;
            }
        }
    }
    if (--r->scheduling == 0 && r->running == 0)
        r->done = 1;
}

sk_status sk_plan_run(sk_kernel *k, sk_plan *p, const sk_vars *vars,
                      int max_parallel, char **out)
{
    if (!k || !p || !out)
        return SK_USAGE;
    *out = NULL;
    char *problems = NULL;
    sk_status rc = plan_validate(k, p, vars, &problems);
    if (rc != SK_OK) {
        rc = problems ? kern_failf(k, rc, "%s", problems)
                      : kern_failf(k, rc, "%s", sk_strerror(rc));
        free(problems);
        return rc;
    }
    prun r = {0};
    r.k = k;
    r.p = p;
    r.vars = vars;
    r.max_parallel = max_parallel > 0 ? max_parallel : DEFAULT_PARALLEL;
    r.ctx = sk_calloc(p->n ? p->n : 1, sizeof *r.ctx);
    if (!r.ctx)
        return kern_fail(k, NULL);
    /* resume: what is done stays done; everything else runs again */
    for (size_t i = 0; i < p->n; i++) {
        r.ctx[i].r = &r;
        r.ctx[i].i = i;
        if (p->steps[i].state != PS_DONE)
            p->steps[i].state = PS_PENDING;
    }
    schedule(&r);
    loop_run_until(k, &r.done);
    free(r.ctx);
    if (r.err)
        return kern_fail(k, r.err);
    if (!r.done || !p->n)
        return kern_failf(k, SK_PLAN, "the plan did not finish");
    const plan_step *last = &p->steps[p->n - 1];
    *out = sk_strdup(last->output ? last->output : "");
    if (!*out)
        return kern_fail(k, NULL);
    kern_ok(k);
    return SK_OK;
}
