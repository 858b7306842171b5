/*
 * invoke.c -- the one path every call takes:
 *
 *   inv_start -> (deferred) run
 *     native C / Lua: run to completion, text or error
 *     semantic: start every function block of the template as a nested
 *               invoke (they run concurrently), join the outputs into the
 *               prompt, send it to the model, the reply is the result
 *   -> done(text | error)
 *
 * An invoke is a small state machine driven by the kernel's loop, so any
 * number can be in flight on one thread.  Errors travel up as sk_err
 * values; each invoke they leave adds its function name to the chain.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "invoke_priv.h"

static void inv_free(inv *v)
{
    if (!v)
        return;
    if (v->f)
        fn_release(v->k, v->f);
    grant_release(v->tool_allow);
    sk_vars_free(v->vars);
    free(v->model_override);
    for (size_t i = 0; i < v->n_calls; i++) {
        if (v->outputs)
            free(v->outputs[i]);
        if (v->errs)
            err_free(v->errs[i]);
    }
    free(v->outputs);
    free(v->errs);
    free(v->children);
    pipe_free(v);
    free(v);
}

void inv_finish(inv *v, sk_status st, char *text, sk_err *err)
{
    if (st != SK_OK) {
        if (!err)
            err = err_new(st, "%s", sk_strerror(st));
        if (err) {
            err->code = st;
            /* the pipeline traces what it detects; a native function's
             * own uncertainty is traced here, where it starts */
            if (st == SK_UNCERTAIN && err->n_chain == 0 && v->f && !v->pol)
                pipe_trace(v, "uncertain", "reason", err->message, "source",
                           "native", (char *)NULL);
            if (v->f)
                err_push(err, v->f->full_name);
        }
        free(text);
        text = NULL;
    }
    if (v->f && v->f->kind == FN_SEMANTIC && !v->render_only && !v->dry_run)
        trace_call_end(v->k, v->call_id, v->name, st, text, v->redacted);
    inv_done_fn done = v->done;
    void *ud = v->ud;
    inv_free(v);
    done(ud, st, text, err);
}

static void finish_err(inv *v, sk_err *err)
{
    inv_finish(v, err ? err->code : SK_NOMEM, NULL, err);
}

/* ---- native functions -------------------------------------------------- */

/* What the calls a native makes inherit from it (KERN_CTX_*). */
static int native_ctx(const inv *v)
{
    return (v->untrusted ? KERN_CTX_UNTRUSTED : 0) | (v->dry_run ? KERN_CTX_DRY_RUN : 0);
}

static void run_native_c(inv *v)
{
    sk_kernel *k = v->k;
    char *out = NULL;
    kern_ok(k);
    /* Invokes the native function makes count as nested in this one. */
    int saved, saved_ctx;
    kern_native_get(k, &saved, &saved_ctx);
    kern_native_set(k, v->depth + 1, native_ctx(v));
    sk_status st = v->f->cfn(k, v->vars, &out, v->f->cud);
    kern_native_set(k, saved, saved_ctx);
    if (st == SK_OK) {
        if (!out)
            out = sk_strdup("");
        if (!out)
            finish_err(v, NULL);
        else
            inv_finish(v, SK_OK, out, NULL);
        return;
    }
    free(out);
    sk_err *e = k->err;
    k->err = NULL;
    k->errcode = SK_OK;
    if (!e)
        e = err_new(st, "%s failed: %s", v->f->full_name, sk_strerror(st));
    if (e)
        e->code = st;
    inv_finish(v, st, NULL, e);
}

static void native_ops_done(void *ud, sk_status st, char *text, sk_err *err)
{
    inv_finish(ud, st, text, err);
}

/* A native of a kind a layer above brought (Lua: a coroutine of its own,
 * which may wait on calls without holding up the loop), run through its
 * operations; it ends through native_ops_done. */
static void run_native_ops(inv *v)
{
    sk_err *err = NULL;
    sk_status st = v->f->ops->start(v->k, v->f, v->vars, v->depth, native_ctx(v),
                                    native_ops_done, v, &err);
    if (st != SK_OK)
        inv_finish(v, st, NULL, err);
}

/* ---- rendering --------------------------------------------------------- */

/* How template t (of function f, or a bare one) takes inserted values.
 * A chat prompt -- markup in its own text, or a prompt or variable that
 * Semantic Kernel's allow_dangerously_set_content trusts to bring markup --
 * encodes every value and function output it inserts unless it is
 * trusted, and is parsed as chat.  A plain prompt is sent as one user
 * message, as written, and never parsed, so nothing needs encoding.  The
 * kernel option allow_dangerously_set_content trusts everything (*chat
 * -1: decided from the rendered text). */
static void render_safety(const sk_kernel *k, const sk_function *f,
                          const sk_template *t, tpl_safety *sf, int *chat)
{
    memset(sf, 0, sizeof *sf);
    if (kern_allow_unsafe(k)) {
        *chat = -1;
        return;
    }
    const cfg_function *c = f ? f->cfg : NULL;
    int trusted = c && c->allow_unsafe;
    for (size_t i = 0; c && i < c->n_params; i++)
        trusted |= c->params[i].allow_unsafe;
    *chat = t->chat || trusted;
    sf->encode = *chat;
    sf->raw_outputs = c && c->allow_unsafe;
    sf->cfg = c;
}

static void render_done(inv *v)
{
    for (size_t i = 0; i < v->n_calls; i++) {
        if (!v->errs[i] && !v->outputs[i]) { /* its error could not be made */
            finish_err(v, NULL);
            return;
        }
        if (v->errs[i]) {
            sk_err *e = v->errs[i];
            v->errs[i] = NULL;
            finish_err(v, e);
            return;
        }
    }
    sk_buf b;
    buf_init(&b, (size_t)16 << 20);
    tpl_safety sf;
    render_safety(v->k, v->f, v->tpl, &sf, &v->chat);
    free(v->starts);
    if (!(v->starts = sk_calloc(v->tpl->n ? v->tpl->n : 1, sizeof *v->starts))) {
        finish_err(v, NULL);
        return;
    }
    sf.starts = v->starts;
    sk_status st = tpl_assemble(v->tpl, v->vars, v->outputs, &sf, &b);
    if (st != SK_OK) {
        buf_free(&b);
        finish_err(v, st == SK_NOMEM
                          ? NULL
                          : err_new(st, "%s: rendered prompt is too large "
                                        "(over 16 MiB)",
                                    v->name));
        return;
    }
    v->prompt = buf_steal(&b);
    if (!v->prompt) {
        finish_err(v, NULL);
        return;
    }
    if (v->chat < 0) /* everything trusted: chat when it reads as chat */
        v->chat = chat_marked(v->prompt);
    if (v->render_only) {
        char *text = v->prompt;
        v->prompt = NULL;
        inv_finish(v, SK_OK, text, NULL);
        return;
    }
    pipe_start(v);
}

static void child_done(void *ud, sk_status st, char *text, sk_err *err)
{
    child_ctx *c = ud;
    inv *v = c->parent;
    if (st == SK_OK)
        v->outputs[c->index] = text;
    else
        v->errs[c->index] = err ? err : err_new(st, "%s", sk_strerror(st));
    if (--v->pending == 0)
        render_done(v);
}

/* The variables a function block passes: the caller's, plus its
 * arguments.  The positional argument sets the callee's first parameter
 * ("input" when it declares none), as in Semantic Kernel 1.x. */
static sk_vars *block_vars(inv *v, const tpl_block *b, const sk_function *callee)
{
    sk_vars *cv = vars_clone(v->vars);
    if (!cv)
        return NULL;
    for (size_t a = 0; a < b->n_args; a++) {
        const tpl_arg *arg = &b->args[a];
        const char *value = arg->value;
        if (arg->is_var) {
            value = sk_vars_get(v->vars, arg->value);
            if (!value)
                value = "";
        }
        const char *name = arg->name;
        if (!name)
            name = callee->n_params ? callee->params[0].name : "input";
        if (sk_vars_set(cv, name, value) != SK_OK) {
            sk_vars_free(cv);
            return NULL;
        }
    }
    return cv;
}

static void run_semantic(inv *v)
{
    size_t n = v->tpl->n_calls;
    if (n == 0) {
        render_done(v);
        return;
    }
    v->outputs = sk_calloc(n, sizeof *v->outputs);
    v->errs = sk_calloc(n, sizeof *v->errs);
    v->children = sk_calloc(n, sizeof *v->children);
    if (!v->outputs || !v->errs || !v->children) {
        finish_err(v, NULL);
        return;
    }
    v->n_calls = n;
    v->pending = n + 1; /* +1 held until every child has started */
    size_t i = 0;
    for (size_t bi = 0; bi < v->tpl->n && i < n; bi++) {
        const tpl_block *b = &v->tpl->blocks[bi];
        if (b->kind != TB_CALL)
            continue;
        /* the template's author named it: a user call, whoever runs the
         * template (but it runs untrusted when the template does) */
        sk_err *lerr = NULL;
        sk_function *callee = inv_lookup(v->k, b->text, v->skill, NULL, &lerr);
        if (!callee) {
            err_free(lerr);
            v->errs[i] = err_new(SK_NOT_FOUND,
                                 "%s:%d:%d: unknown function %s",
                                 v->tpl->origin ? v->tpl->origin : v->name,
                                 b->line, b->col, b->text);
            v->pending--;
            i++;
            continue;
        }
        sk_vars *cv = block_vars(v, b, callee);
        if (!cv) {
            v->errs[i] = err_new(SK_NOMEM, "out of memory");
            v->pending--;
            i++;
            continue;
        }
        v->children[i].parent = v;
        v->children[i].index = i;
        sk_err *err = NULL;
        inv_opts co = {.untrusted = v->untrusted, .dry_run = v->dry_run ? 2 : 0,
                       .tools = v->tool_allow};
        sk_status st = inv_start(v->k, callee, cv, v->depth + 1, &co,
                                 child_done, &v->children[i], &err);
        sk_vars_free(cv);
        if (st != SK_OK) {
            v->errs[i] = err ? err : err_new(st, "%s", sk_strerror(st));
            v->pending--;
        }
        i++;
    }
    if (--v->pending == 0)
        render_done(v);
}

static void inv_run(void *ud)
{
    inv *v = ud;
    if (!v->f) {
        run_semantic(v);
        return;
    }
    switch (v->f->kind) {
    case FN_NATIVE_C: run_native_c(v); break;
    case FN_NATIVE_OPS: run_native_ops(v); break;
    case FN_SEMANTIC: run_semantic(v); break;
    }
}

static inv *inv_alloc(sk_kernel *k, const sk_vars *vars, int depth,
                      const inv_opts *opts, inv_done_fn done, void *ud)
{
    inv *v = sk_calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->k = k;
    kern_new_call_id(k, v->call_id, sizeof v->call_id);
    v->depth = depth;
    v->done = done;
    v->ud = ud;
    v->vars = vars_clone(vars);
    if (!v->vars) {
        free(v);
        return NULL;
    }
    if (opts) {
        v->stream = opts->stream;
        v->stream_ud = opts->stream_ud;
        v->no_cache = opts->no_cache;
        v->untrusted = opts->untrusted || opts->grant;
        v->dry_run = opts->dry_run;
        v->out = opts->out;
        v->hook = opts->tool_hook;
        /* a model's tool calls reach no further than the caller allows,
         * nor than the grant of a call a model chose */
        if (opts->tools || opts->grant) {
            v->tool_allow = grant_intersect(opts->tools, opts->grant);
            if (!v->tool_allow) {
                inv_free(v);
                return NULL;
            }
        }
        if (opts->model && !(v->model_override = sk_strdup(opts->model))) {
            inv_free(v);
            return NULL;
        }
    }
    return v;
}

sk_status inv_start(sk_kernel *k, sk_function *f, const sk_vars *vars,
                    int depth, const inv_opts *opts, inv_done_fn done,
                    void *ud, sk_err **err)
{
    *err = NULL;
    if (depth > k->max_depth) {
        *err = err_new(SK_RECURSION,
                       "function calls nested more than %d deep (at %s); "
                       "is a function calling itself?",
                       k->max_depth, f->full_name);
        if (*err)
            err_push(*err, f->full_name);
        return SK_RECURSION;
    }
    if (opts && opts->dry_run == 1 && f->kind != FN_SEMANTIC) {
        *err = err_new(SK_USAGE, "%s is a native function: it sends no model "
                                 "request of its own, so a dry run has none to show",
                       f->full_name);
        return *err ? SK_USAGE : SK_NOMEM;
    }
    inv *v = inv_alloc(k, vars, depth, opts, done, ud);
    if (!v)
        return SK_NOMEM;
    if (k->native_untrusted)
        v->untrusted = 1; /* made by a native that runs for a model */
    if (k->native_dry && !v->dry_run)
        v->dry_run = 2; /* made by a native inside a dry run */
    fn_retain(f);
    v->f = f;
    v->tpl = f->tpl;
    v->name = f->full_name;
    v->skill = f->skill;
    if (f->kind == FN_SEMANTIC) {
        const sk_policy *fp = kern_policy(k, f, err);
        if (!fp) {
            inv_free(v);
            return (*err)->code;
        }
        v->pol = fp;
        if (opts && opts->policy) {
            char *msg = NULL;
            sk_status rc = pol_parse(opts->policy, strlen(opts->policy),
                                     "call policy", fp, &v->own_policy, &msg);
            if (rc != SK_OK) {
                *err = msg ? err_new(rc, "%s", msg) : err_new(rc, "%s", sk_strerror(rc));
                free(msg);
                inv_free(v);
                return rc;
            }
            v->pol = v->own_policy;
        }
    }
    /* Parameters with defaults fill in what the caller left unset. */
    for (size_t i = 0; i < f->n_params; i++) {
        const sk_param_info *p = &f->params[i];
        if (p->default_value && !sk_vars_get(v->vars, p->name) &&
            sk_vars_set(v->vars, p->name, p->default_value) != SK_OK) {
            inv_free(v);
            return SK_NOMEM;
        }
    }
    if (loop_defer(k, inv_run, v) != SK_OK) {
        inv_free(v);
        return SK_NOMEM;
    }
    return SK_OK;
}

void inv_shutdown(sk_kernel *k)
{
    /* Let everything in flight finish (requests held back by max_inflight
     * start as others end); then free what is left of the queue. */
    while (k->tasks_head || k->timers || k->n_xfers || k->model_inflight > 0) {
        if (!loop_pump(k, 1000) && k->model_inflight <= 0)
            break;
    }
    pipe_shutdown(k);
}

void inv_rerun(inv *v)
{
    for (size_t i = 0; i < v->n_calls; i++) {
        free(v->outputs[i]);
        v->outputs[i] = NULL;
        err_free(v->errs[i]);
        v->errs[i] = NULL;
    }
    free(v->outputs);
    free(v->errs);
    free(v->children);
    v->outputs = NULL;
    v->errs = NULL;
    v->children = NULL;
    v->n_calls = 0;
    run_semantic(v);
}

static void sub_done(void *ud, sk_status st, char *text, sk_err *err)
{
    inv *v = ud;
    sub_fn next = v->sub_next;
    v->sub_next = NULL;
    next(v, st, text, err);
}

void inv_sub(inv *v, const char *name, sk_vars *vars, sub_fn next)
{
    sk_err *err = NULL;
    sk_function *f = inv_lookup(v->k, name, v->skill, NULL, &err);
    if (!f) {
        err_free(err);
        sk_vars_free(vars);
        next(v, SK_NOT_FOUND, NULL,
             err_new(SK_NOT_FOUND, "%s: unknown function %s (named in its "
                                   "policy)",
                     v->name, name));
        return;
    }
    v->sub_next = next;
    inv_out_clear(&v->sub_out);
    inv_opts so = {.untrusted = v->untrusted, .out = &v->sub_out,
                   .dry_run = v->dry_run ? 2 : 0, .tools = v->tool_allow};
    sk_status st = inv_start(v->k, f, vars, v->depth + 1, &so, sub_done, v, &err);
    sk_vars_free(vars);
    if (st != SK_OK) {
        v->sub_next = NULL;
        next(v, st, NULL, err ? err : err_new(st, "%s", sk_strerror(st)));
    }
}

/* ---- public calls ------------------------------------------------------ */

struct sk_call {
    sk_kernel *k;
    int done;
    int orphan; /* freed by the caller before it finished */
    sk_status st;
    char *text;
    sk_err *err;
    inv_out out;
};

void inv_out_clear(inv_out *o)
{
    if (!o)
        return;
    free(o->signals);
    for (size_t i = 0; i < o->n_lp; i++)
        free(o->lp[i].token);
    free(o->lp);
    o->signals = NULL;
    o->lp = NULL;
    o->n_lp = 0;
}

const char *sk_call_signals(const sk_call *c)
{
    return c && c->done ? c->out.signals : NULL;
}

static void call_done(void *ud, sk_status st, char *text, sk_err *err)
{
    sk_call *c = ud;
    c->k->calls_inflight--;
    if (c->orphan) {
        free(text);
        err_free(err);
        inv_out_clear(&c->out);
        free(c);
        return;
    }
    c->done = 1;
    c->k->calls_finished++;
    c->st = st;
    c->text = text;
    c->err = err;
}

sk_err *inv_not_found_err(sk_kernel *k, const char *name, const sk_grant *grant)
{
    const char *best = NULL;
    size_t best_d = 99;
    for (size_t i = 0; i < k->n_fns; i++) {
        if (!grant_allows(grant, k->fns[i]))
            continue; /* never point a model at what it may not call */
        size_t d = sk_edit_distance(name, k->fns[i]->full_name);
        size_t d2 = sk_edit_distance(name, k->fns[i]->name);
        if (d2 < d)
            d = d2;
        if (d < best_d) {
            best_d = d;
            best = k->fns[i]->full_name;
        }
    }
    /* the user's own call to a function that was skipped: why, with the
     * class of the problem (a config error is exit code 3, not 6) */
    sk_status code = SK_NOT_FOUND;
    const char *why = grant ? NULL : skills_problem_for(k, name, &code);
    if (why)
        return err_new(code, "%s did not load: %s", name, why);
    size_t limit = strlen(name) / 3 + 1;
    if (best && best_d <= limit)
        return err_new(SK_NOT_FOUND, "unknown function \"%s\" (did you mean %s?)",
                       name, best);
    return err_new(SK_NOT_FOUND, "unknown function \"%s\" (`skein skills` lists them)",
                   name);
}

sk_status inv_not_found(sk_kernel *k, const char *name)
{
    sk_err *e = inv_not_found_err(k, name, NULL);
    return e ? kern_fail(k, e) : kern_fail(k, NULL);
}

/* The trust boundary's one check: every call's function is found here,
 * and a name a model chose must be one the user allowed (trust.c). */
sk_function *inv_lookup(sk_kernel *k, const char *name, const char *prefer_skill,
                        const sk_grant *grant, sk_err **err)
{
    *err = NULL;
    sk_function *f = reg_resolve(k, name, prefer_skill, grant);
    if (!f) {
        *err = inv_not_found_err(k, name, grant);
        return NULL;
    }
    if (!grant_allows(grant, f)) {
        *err = grant_denied(grant, f);
        return NULL;
    }
    return f;
}

sk_status inv_start_name(sk_kernel *k, const char *name, const char *prefer_skill,
                         const sk_vars *vars, int depth, const inv_opts *opts,
                         inv_done_fn done, void *ud, sk_err **err)
{
    sk_function *f = inv_lookup(k, name, prefer_skill, opts ? opts->grant : NULL, err);
    if (!f)
        return *err ? (*err)->code : SK_NOMEM;
    return inv_start(k, f, vars, depth, opts, done, ud, err);
}

/* Starts a top-level call; on failure the kernel's error says why. */
static sk_status call_start(sk_kernel *k, const char *name, const sk_vars *vars,
                            const inv_opts *io, sk_call **out)
{
    *out = NULL;
    sk_call *c = sk_calloc(1, sizeof *c);
    if (!c)
        return kern_fail(k, NULL);
    c->k = k;
    sk_err *err = NULL;
    inv_opts with = *io;
    with.out = &c->out;
    sk_status st = inv_start_name(k, name, NULL, vars, k->native_depth, &with,
                                  call_done, c, &err);
    if (st != SK_OK) {
        free(c);
        return err ? kern_fail(k, err) : kern_failf(k, st, "%s", sk_strerror(st));
    }
    k->calls_inflight++;
    kern_ok(k);
    *out = c;
    return SK_OK;
}

sk_status sk_invoke_async(sk_kernel *k, const char *name, const sk_vars *vars,
                          const sk_invoke_opts *opts, sk_call **out)
{
    if (!k || !name || !out)
        return SK_USAGE;
    *out = NULL;
    inv_opts io = {0};
    sk_grant *tools = NULL;
    if (opts) {
        io.model = opts->model;
        io.stream = opts->stream;
        io.stream_ud = opts->stream_ud;
        io.policy = opts->policy;
        io.dry_run = opts->dry_run ? 1 : 0;
        if (opts->n_functions && !opts->functions)
            return kern_failf(k, SK_USAGE, "sk_invoke: n_functions without functions");
        if (opts->functions) {
            /* the user's list for this call's tool calls */
            sk_err *err = NULL;
            sk_status st = grant_new(k, "the model's tool calls", opts->functions,
                                     opts->n_functions, &tools, &err);
            if (st != SK_OK)
                return err ? kern_fail(k, err) : kern_fail(k, NULL);
            io.tools = tools;
        }
    }
    sk_status st = call_start(k, name, vars, &io, out);
    grant_release(tools); /* the invoke holds its own reference */
    return st;
}

sk_status sk_call_wait(sk_call *c)
{
    if (!c)
        return SK_USAGE;
    loop_run_until(c->k, &c->done);
    if (!c->done) {
        /* Nothing pending and still not done: a lost continuation. */
        c->done = 1;
        c->st = SK_CANCELLED;
        c->err = err_new(SK_CANCELLED, "the call was lost by the event loop");
    }
    return c->st;
}

size_t sk_kernel_run(sk_kernel *k, int timeout_ms)
{
    if (!k)
        return 0;
    long long until = timeout_ms >= 0 ? loop_now_ms() + timeout_ms : 0;
    long finished = k->calls_finished;
    do {
        long left = 1000;
        if (timeout_ms >= 0) {
            long long rem = until - loop_now_ms();
            left = rem < 0 ? 0 : (long)rem;
        }
        if (!loop_pump(k, (int)left))
            break;
    } while (k->calls_inflight > 0 &&
             (timeout_ms < 0 ||
              (loop_now_ms() < until && k->calls_finished == finished)));
    return (size_t)(k->calls_inflight > 0 ? k->calls_inflight : 0);
}

int sk_call_done(const sk_call *c) { return c ? c->done : 0; }
sk_status sk_call_status(const sk_call *c)
{
    return c ? (c->done ? c->st : SK_OK) : SK_USAGE;
}
const char *sk_call_result(const sk_call *c)
{
    return c && c->done && c->st == SK_OK ? c->text : NULL;
}
const char *sk_call_errmsg(const sk_call *c)
{
    if (!c || !c->done || c->st == SK_OK)
        return NULL;
    return c->err && c->err->message ? c->err->message : sk_strerror(c->st);
}

sk_status sk_call_error_json(const sk_call *c, char **out)
{
    if (!c || !out)
        return SK_USAGE;
    sk_err tmp = {0};
    const sk_err *e = c->err;
    if (!e) {
        tmp.code = c->done ? c->st : SK_OK;
        tmp.message = (char *)sk_strerror(tmp.code);
        e = &tmp;
    }
    *out = err_json(e);
    return *out ? SK_OK : SK_NOMEM;
}

void sk_call_free(sk_call *c)
{
    if (!c)
        return;
    if (!c->done) {
        c->orphan = 1; /* call_done frees it when the work ends */
        return;
    }
    free(c->text);
    err_free(c->err);
    inv_out_clear(&c->out);
    free(c);
}

/* Runs a call to completion and moves its outcome into the kernel. */
static sk_status finish_sync(sk_kernel *k, sk_call *c, char **out)
{
    sk_status st = sk_call_wait(c);
    if (st == SK_OK) {
        *out = c->text;
        c->text = NULL;
        kern_ok(k);
    } else {
        kern_fail(k, c->err ? c->err : err_new(st, "%s", sk_strerror(st)));
        c->err = NULL;
    }
    sk_call_free(c);
    return st;
}

typedef struct ticker {
    sk_kernel *k;
    const sk_call *c;
    void (*fn)(void *ud, long long elapsed_ms);
    void *ud;
    long long t0;
    loop_timer *timer;
} ticker;

#define TICK_MS 100

static void tick(void *ud)
{
    ticker *t = ud;
    t->timer = NULL;
    if (t->c->done)
        return;
    t->fn(t->ud, loop_now_ms() - t->t0);
    loop_after(t->k, TICK_MS, tick, t, &t->timer);
}

sk_status sk_invoke(sk_kernel *k, const char *name, const sk_vars *vars,
                    const sk_invoke_opts *opts, char **out)
{
    if (!k || !name || !out)
        return SK_USAGE;
    *out = NULL;
    sk_call *c;
    sk_status st = sk_invoke_async(k, name, vars, opts, &c);
    if (st != SK_OK)
        return st;
    ticker t = {k, c, opts ? opts->tick : NULL, opts ? opts->tick_ud : NULL,
                loop_now_ms(), NULL};
    if (t.fn)
        loop_after(k, TICK_MS, tick, &t, &t.timer);
    st = finish_sync(k, c, out);
    if (t.timer)
        loop_cancel(k, t.timer);
    return st;
}

sk_status inv_invoke(sk_kernel *k, const char *name, const sk_vars *vars,
                     const inv_opts *opts, char **out)
{
    *out = NULL;
    sk_call *c;
    sk_status st = call_start(k, name, vars, opts, &c);
    if (st != SK_OK)
        return st;
    return finish_sync(k, c, out);
}

sk_status sk_render(sk_kernel *k, const sk_template *t, const sk_vars *vars,
                    int flags, char **out)
{
    if (!k || !t || !out)
        return SK_USAGE;
    *out = NULL;
    if (flags & SK_RENDER_NO_CALLS) {
        sk_buf b;
        buf_init(&b, (size_t)16 << 20);
        tpl_safety sf;
        int chat;
        render_safety(k, NULL, t, &sf, &chat);
        sk_status st = tpl_assemble(t, vars, NULL, &sf, &b);
        if (st != SK_OK) {
            buf_free(&b);
            return kern_failf(k, st, "%s", sk_strerror(st));
        }
        *out = buf_steal(&b);
        if (!*out)
            return kern_fail(k, NULL);
        kern_ok(k);
        return SK_OK;
    }
    sk_call *c = sk_calloc(1, sizeof *c);
    if (!c)
        return kern_fail(k, NULL);
    c->k = k;
    inv *v = inv_alloc(k, vars, k->native_depth, NULL, call_done, c);
    if (!v) {
        free(c);
        return kern_fail(k, NULL);
    }
    v->tpl = t;
    v->name = t->origin ? t->origin : "template";
    v->render_only = 1;
    if (loop_defer(k, inv_run, v) != SK_OK) {
        inv_free(v);
        free(c);
        return kern_fail(k, NULL);
    }
    k->calls_inflight++;
    return finish_sync(k, c, out);
}

sk_status sk_render_function(sk_kernel *k, const char *name,
                             const sk_vars *vars, int flags, char **out)
{
    if (!k || !name || !out)
        return SK_USAGE;
    *out = NULL;
    sk_err *err = NULL;
    sk_function *f = inv_lookup(k, name, NULL, NULL, &err);
    if (!f)
        return kern_fail(k, err);
    if (f->kind != FN_SEMANTIC)
        return kern_failf(k, SK_USAGE, "%s is a native function: it has no "
                                       "prompt to render", f->full_name);
    sk_call *c = sk_calloc(1, sizeof *c);
    if (!c)
        return kern_fail(k, NULL);
    c->k = k;
    inv *v = inv_alloc(k, vars, k->native_depth, NULL, call_done, c);
    if (!v) {
        free(c);
        return kern_fail(k, NULL);
    }
    fn_retain(f);
    v->f = f;
    v->tpl = f->tpl;
    v->name = f->full_name;
    v->skill = f->skill;
    v->render_only = 1;
    /* the function's defaults fill what the caller left unset, as on
     * the invoke path */
    for (size_t i = 0; i < f->n_params; i++) {
        const sk_param_info *p = &f->params[i];
        if (p->default_value && !sk_vars_get(v->vars, p->name) &&
            sk_vars_set(v->vars, p->name, p->default_value) != SK_OK) {
            inv_free(v);
            free(c);
            return kern_fail(k, NULL);
        }
    }
    if (flags & SK_RENDER_NO_CALLS) {
        sk_buf b;
        buf_init(&b, (size_t)16 << 20);
        tpl_safety sf;
        int chat;
        render_safety(k, f, f->tpl, &sf, &chat);
        sk_status st = tpl_assemble(f->tpl, v->vars, NULL, &sf, &b);
        inv_free(v);
        free(c);
        if (st != SK_OK) {
            buf_free(&b);
            return kern_failf(k, st, "%s", sk_strerror(st));
        }
        if (!(*out = buf_steal(&b)))
            return kern_fail(k, NULL);
        kern_ok(k);
        return SK_OK;
    }
    if (loop_defer(k, inv_run, v) != SK_OK) {
        inv_free(v);
        free(c);
        return kern_fail(k, NULL);
    }
    k->calls_inflight++;
    return finish_sync(k, c, out);
}

sk_status sk_review(sk_kernel *k, const char *text, const char *task,
                    const char *input, const char *reviewer, int *passed,
                    char **critique)
{
    if (!k || !text || !passed || !critique)
        return SK_USAGE;
    *passed = 0;
    *critique = NULL;
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK || sk_vars_set(v, "output", text) != SK_OK ||
        sk_vars_set(v, "task", task ? task : "(not stated)") != SK_OK ||
        sk_vars_set(v, "input", input ? input : "") != SK_OK) {
        sk_vars_free(v);
        return kern_fail(k, NULL);
    }
    char *reply = NULL;
    sk_status st = sk_invoke(k, reviewer ? reviewer : "Review.Check", v, NULL, &reply);
    sk_vars_free(v);
    if (st != SK_OK)
        return st;
    kern_usage(k)->reviews++;
    char *why = NULL;
    *passed = rev_parse(reply, &why);
    free(reply);
    if (*passed) {
        free(why);
    } else {
        *critique = why;
    }
    kern_ok(k);
    return SK_OK;
}
