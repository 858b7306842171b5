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

#include "kernel_priv.h"

typedef struct inv inv;

typedef struct child_ctx {
    inv *parent;
    size_t index;
} child_ctx;

struct inv {
    sk_kernel *k;
    sk_function *f;            /* retained; NULL for a bare render */
    const sk_template *tpl;    /* f->tpl, or the caller's for a render */
    const char *name;          /* for errors and traces */
    const char *skill;         /* for bare function names in blocks */
    sk_vars *vars;             /* owned */
    int depth;
    int render_only;           /* stop after rendering: the prompt is the result */
    char *model_override;
    sk_stream_fn stream;
    void *stream_ud;
    inv_done_fn done;
    void *ud;

    /* function blocks */
    char **outputs;
    sk_err **errs;
    child_ctx *children;
    size_t n_calls, pending;

    /* model call */
    char *prompt;
    char *spec;                /* the model spec used */
    const cfg_settings *settings;
    sk_connector *conn;
    void *handle;
    sk_msg *msgs;
    size_t n_msgs;
    long long t0;
    inv *next_wait;
};

struct inv_queue {
    inv *head, *tail;
};

static void inv_free(inv *v)
{
    if (!v)
        return;
    if (v->f)
        fn_release(v->k, v->f);
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
    free(v->prompt);
    free(v->spec);
    for (size_t i = 0; i < v->n_msgs; i++) {
        free(v->msgs[i].role);
        free(v->msgs[i].content);
    }
    free(v->msgs);
    free(v);
}

/* Ends the invoke: hands text or err to the caller and frees v. */
static void finish(inv *v, sk_status st, char *text, sk_err *err)
{
    if (st != SK_OK) {
        if (!err)
            err = err_new(st, "%s", sk_strerror(st));
        if (err) {
            err->code = st;
            if (v->f)
                err_push(err, v->f->full_name);
        }
        free(text);
        text = NULL;
    }
    inv_done_fn done = v->done;
    void *ud = v->ud;
    inv_free(v);
    done(ud, st, text, err);
}

static void finish_err(inv *v, sk_err *err)
{
    finish(v, err ? err->code : SK_NOMEM, NULL, err);
}

/* ---- native functions -------------------------------------------------- */

static void run_native_c(inv *v)
{
    sk_kernel *k = v->k;
    char *out = NULL;
    kern_ok(k);
    /* Invokes the native function makes count as nested in this one. */
    int saved = k->native_depth;
    k->native_depth = v->depth + 1;
    sk_status st = v->f->cfn(k, v->vars, &out, v->f->cud);
    k->native_depth = saved;
    if (st == SK_OK) {
        if (!out)
            out = sk_strdup("");
        if (!out)
            finish_err(v, NULL);
        else
            finish(v, SK_OK, out, NULL);
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
    finish(v, st, NULL, e);
}

static void run_native_lua(inv *v)
{
    char *out = NULL;
    sk_err *err = NULL;
    int saved = v->k->native_depth;
    v->k->native_depth = v->depth + 1;
    sk_status st = klua_call(v->k, v->f, v->vars, v->depth, &out, &err);
    v->k->native_depth = saved;
    if (st == SK_OK)
        finish(v, SK_OK, out, NULL);
    else
        finish(v, st, NULL, err);
}

/* ---- the model call ---------------------------------------------------- */

/* Splits a rendered prompt into chat messages.  Semantic Kernel's chat
 * prompts mark messages with <message role="...">...</message>; a prompt
 * without them (or with other text between them) is one user message. */
static sk_status split_messages(inv *v)
{
    const char *p = v->prompt;
    sk_msg msgs[64];
    size_t n = 0;
    int ok = strstr(p, "<message role=") != NULL;
    while (ok && *p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (strncmp(p, "<message role=\"", 15) != 0 || n == 64) {
            ok = 0;
            break;
        }
        const char *role = p + 15;
        const char *rend = strchr(role, '"');
        if (!rend || rend[1] != '>') {
            ok = 0;
            break;
        }
        const char *body = rend + 2;
        const char *bend = strstr(body, "</message>");
        if (!bend) {
            ok = 0;
            break;
        }
        msgs[n].role = sk_strndup(role, (size_t)(rend - role));
        /* keep the content as written, minus surrounding blank lines */
        const char *b0 = body, *b1 = bend;
        while (b0 < b1 && (*b0 == '\n' || *b0 == '\r'))
            b0++;
        while (b1 > b0 && isspace((unsigned char)b1[-1]))
            b1--;
        msgs[n].content = sk_strndup(b0, (size_t)(b1 - b0));
        n++;
        if (!msgs[n - 1].role || !msgs[n - 1].content) {
            ok = -1;
            break;
        }
        p = bend + 10;
    }
    if (ok == 1 && n > 0) {
        v->msgs = sk_calloc(n, sizeof *v->msgs);
        if (v->msgs) {
            memcpy(v->msgs, msgs, n * sizeof *msgs);
            v->n_msgs = n;
            return SK_OK;
        }
        ok = -1;
    }
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].role);
        free(msgs[i].content);
    }
    if (ok == -1)
        return SK_NOMEM;
    v->msgs = sk_calloc(1, sizeof *v->msgs);
    if (!v->msgs)
        return SK_NOMEM;
    v->msgs[0].role = sk_strdup("user");
    v->msgs[0].content = sk_strdup(v->prompt);
    v->n_msgs = 1;
    if (!v->msgs[0].role || !v->msgs[0].content)
        return SK_NOMEM;
    return SK_OK;
}

static void on_delta(void *ud, const char *text, size_t len)
{
    inv *v = ud;
    if (v->stream && len)
        v->stream(v->stream_ud, text, len);
}

static void start_model(inv *v);

static void start_next_waiting(sk_kernel *k)
{
    inv_queue *q = k->waiting;
    while (q && q->head && k->model_inflight < k->max_inflight) {
        inv *v = q->head;
        q->head = v->next_wait;
        if (!q->head)
            q->tail = NULL;
        v->next_wait = NULL;
        start_model(v);
    }
}

static void model_done(void *ud, sk_status st, model_resp *resp, sk_err *err)
{
    inv *v = ud;
    sk_kernel *k = v->k;
    k->model_inflight--;
    k->usage.calls++;
    if (resp) {
        if (resp->prompt_tokens > 0)
            k->usage.prompt_tokens += resp->prompt_tokens;
        if (resp->completion_tokens > 0)
            k->usage.completion_tokens += resp->completion_tokens;
        if (resp->attempts > 1)
            k->usage.retries += resp->attempts - 1;
    }
    if (st != SK_OK)
        k->usage.failures++;
    trace_rec rec = {
        .function = v->name,
        .model = v->spec,
        .prompt = v->prompt,
        .reply = resp ? resp->text : NULL,
        .resp = resp,
        .start_ms = v->t0,
        .end_ms = loop_now_ms(),
        .attempts = resp ? resp->attempts : 0,
        .err = err,
    };
    trace_model_call(k, &rec);
    start_next_waiting(k);
    if (st != SK_OK || !resp) {
        resp_free(resp);
        finish(v, st == SK_OK ? SK_PROTOCOL : st, NULL, err);
        return;
    }
    char *text = resp->text ? resp->text : sk_strdup("");
    resp->text = NULL;
    resp_free(resp);
    err_free(err);
    if (!text)
        finish_err(v, NULL);
    else
        finish(v, SK_OK, text, NULL);
}

static void start_model(inv *v)
{
    sk_kernel *k = v->k;
    const cfg_settings *s = v->settings;
    model_req req = {
        .function = v->name,
        .model = s && s->model_id ? s->model_id : v->conn->model,
        .msgs = v->msgs,
        .n_msgs = v->n_msgs,
        .prompt = v->prompt,
        .max_tokens = s ? s->max_tokens : -1,
        .temperature = s ? s->temperature : NAN,
        .top_p = s ? s->top_p : NAN,
        .presence_penalty = s ? s->presence_penalty : NAN,
        .frequency_penalty = s ? s->frequency_penalty : NAN,
        .stop = s ? s->stop : NULL,
        .n_stop = s ? s->n_stop : 0,
        .stream = v->stream != NULL,
    };
    sk_err *err = NULL;
    v->t0 = loop_now_ms();
    sk_status st = v->conn->vt->start(v->conn->self, k, &req, on_delta,
                                      model_done, v, &v->handle, &err);
    if (st != SK_OK) {
        k->usage.failures++;
        if (!err)
            err = err_new(st, "%s: could not start the model call: %s",
                          v->name, sk_strerror(st));
        finish(v, st, NULL, err);
        start_next_waiting(k);
        return;
    }
    k->model_inflight++;
}

/* Picks the model: the call's override, the function's "model", a
 * configured service the function asks for, the kernel default. */
static const char *choose_model(inv *v, const char **service)
{
    sk_kernel *k = v->k;
    *service = NULL;
    if (v->model_override)
        return v->model_override;
    const cfg_function *c = v->f ? v->f->cfg : NULL;
    if (c && c->model)
        return c->model;
    for (size_t i = 0; c && i < c->n_default_services; i++) {
        const char *spec = kern_service(k, c->default_services[i]);
        if (spec) {
            *service = c->default_services[i];
            return spec;
        }
    }
    for (size_t i = 0; c && i < c->n_settings; i++) {
        const char *spec = kern_service(k, c->settings[i].service_id);
        if (spec) {
            *service = c->settings[i].service_id;
            return spec;
        }
    }
    return k->model_spec;
}

static void call_model(inv *v)
{
    sk_kernel *k = v->k;
    const char *service = NULL;
    const char *spec = choose_model(v, &service);
    if (!spec) {
        finish_err(v, err_new(SK_CONFIG,
                              "no model configured for %s: set SKEIN_MODEL "
                              "(e.g. openai:gpt-4o-mini or "
                              "scripted:rules.json), OPENAI_API_KEY or "
                              "OPENAI_BASE_URL, or pass --model",
                              v->name));
        return;
    }
    if (!(v->spec = sk_strdup(spec))) {
        finish_err(v, NULL);
        return;
    }
    sk_err *err = NULL;
    v->conn = kern_connector(k, spec, &err);
    if (!v->conn) {
        finish_err(v, err);
        return;
    }
    v->settings = v->f ? cfg_settings_for(v->f->cfg, service) : NULL;
    if (split_messages(v) != SK_OK) {
        finish_err(v, NULL);
        return;
    }
    if (k->model_inflight >= k->max_inflight) {
        if (!k->waiting && !(k->waiting = sk_calloc(1, sizeof *k->waiting))) {
            finish_err(v, NULL);
            return;
        }
        if (k->waiting->tail)
            k->waiting->tail->next_wait = v;
        else
            k->waiting->head = v;
        k->waiting->tail = v;
        return;
    }
    start_model(v);
}

/* ---- rendering --------------------------------------------------------- */

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
    sk_status st = tpl_assemble(v->tpl, v->vars, v->outputs, &b);
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
    if (v->render_only) {
        char *text = v->prompt;
        v->prompt = NULL;
        finish(v, SK_OK, text, NULL);
        return;
    }
    call_model(v);
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
        sk_function *callee = reg_find_short(v->k, b->text, v->skill);
        if (!callee) {
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
        sk_status st = inv_start(v->k, callee, cv, v->depth + 1, NULL,
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
    case FN_NATIVE_LUA: run_native_lua(v); break;
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
    inv *v = inv_alloc(k, vars, depth, opts, done, ud);
    if (!v)
        return SK_NOMEM;
    fn_retain(f);
    v->f = f;
    v->tpl = f->tpl;
    v->name = f->full_name;
    v->skill = f->skill;
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
    /* Queued model calls have not started: fail them so their callers'
     * continuations run and free what they hold. */
    while (k->waiting && k->waiting->head) {
        inv *v = k->waiting->head;
        k->waiting->head = v->next_wait;
        finish_err(v, err_new(SK_CANCELLED, "the kernel is shutting down"));
    }
    while (k->tasks_head || k->timers || k->n_xfers || k->model_inflight > 0) {
        if (!loop_pump(k, 1000) && k->model_inflight <= 0)
            break;
    }
    free(k->waiting);
    k->waiting = NULL;
}

/* ---- public calls ------------------------------------------------------ */

struct sk_call {
    sk_kernel *k;
    int done;
    int orphan; /* freed by the caller before it finished */
    sk_status st;
    char *text;
    sk_err *err;
};

static void call_done(void *ud, sk_status st, char *text, sk_err *err)
{
    sk_call *c = ud;
    c->k->calls_inflight--;
    if (c->orphan) {
        free(text);
        err_free(err);
        free(c);
        return;
    }
    c->done = 1;
    c->st = st;
    c->text = text;
    c->err = err;
}

/* Levenshtein distance, capped: for "did you mean" suggestions. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) !=
                          tolower((unsigned char)b[j - 1]);
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

sk_status inv_not_found(sk_kernel *k, const char *name)
{
    const char *best = NULL;
    size_t best_d = 99;
    for (size_t i = 0; i < k->n_fns; i++) {
        size_t d = edit_distance(name, k->fns[i]->full_name);
        size_t d2 = edit_distance(name, k->fns[i]->name);
        if (d2 < d)
            d = d2;
        if (d < best_d) {
            best_d = d;
            best = k->fns[i]->full_name;
        }
    }
    size_t limit = strlen(name) / 3 + 1;
    if (best && best_d <= limit)
        return kern_failf(k, SK_NOT_FOUND,
                          "unknown function \"%s\" (did you mean %s?)", name,
                          best);
    return kern_failf(k, SK_NOT_FOUND,
                      "unknown function \"%s\" (`skein skills` lists them)",
                      name);
}

sk_status sk_invoke_async(sk_kernel *k, const char *name, const sk_vars *vars,
                          const sk_invoke_opts *opts, sk_call **out)
{
    if (!k || !name || !out)
        return SK_USAGE;
    *out = NULL;
    sk_function *f = reg_find_short(k, name, NULL);
    if (!f)
        return inv_not_found(k, name);
    sk_call *c = sk_calloc(1, sizeof *c);
    if (!c)
        return kern_fail(k, NULL);
    c->k = k;
    inv_opts io = {0};
    if (opts) {
        io.model = opts->model;
        io.stream = opts->stream;
        io.stream_ud = opts->stream_ud;
    }
    sk_err *err = NULL;
    sk_status st = inv_start(k, f, vars, k->native_depth, &io, call_done, c, &err);
    if (st != SK_OK) {
        free(c);
        return err ? kern_fail(k, err) : kern_failf(k, st, "%s", sk_strerror(st));
    }
    k->calls_inflight++;
    kern_ok(k);
    *out = c;
    return SK_OK;
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
    do {
        long left = 1000;
        if (timeout_ms >= 0) {
            long long rem = until - loop_now_ms();
            left = rem < 0 ? 0 : (long)rem;
        }
        if (!loop_pump(k, (int)left))
            break;
    } while (k->calls_inflight > 0 &&
             (timeout_ms < 0 || loop_now_ms() < until));
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
        sk_status st = tpl_assemble(t, vars, NULL, &b);
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
