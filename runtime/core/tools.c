/*
 * tools.c -- native tool calling on the invoke path: Semantic Kernel's
 * function_choice_behavior.
 *
 * When a semantic function's settings carry a behaviour, the model stage
 * (pipeline.c) offers the model the functions it names, as tools in the
 * connector's wire format, and runs the calls the model makes:
 *
 *   request (tools, tool_choice) -> reply with tool calls
 *     -> each call checked: a tool that was offered, arguments that are a
 *        JSON object naming its parameters; anything else is told to the
 *        model as the call's result ("Error: ..."), never run
 *     -> the calls run as invokes of their own, side by side on the loop,
 *        under a grant of exactly the functions offered: the model chose
 *        them, so they are model-originated calls (trust.c) and their
 *        natives run sandboxed, as a plan's steps do
 *     -> the reply and one tool message per call (redacted as the prompt
 *        is) join the conversation -> the next request
 *   ... until a reply has no tool calls: that reply is the answer, and
 *   goes on through the checks after the model stage.
 *
 * The loop is bounded: maximum_auto_invoke_attempts rounds (5 for auto, 1
 * for required, as SK Python has it), then one request with tool_choice
 * "none"; a model that still calls tools then fails the call with
 * SK_LIMIT.  Each request is an ordinary model request (cache, journal,
 * limits, retries, usage and trace all apply to it), so a cached or
 * journaled reply with tool calls replays the same rounds.
 *
 * What is offered: the behaviour's functions (every loaded function but
 * the planner's and the agent's own when it names none), through its
 * filters, narrowed by what the caller allows the call's tools
 * (inv_opts.tools: --functions) and by the grant the call runs under when
 * a model chose it; both pass down to the calls it makes (invoke.c).  A planted instruction cannot widen it:
 * the set is fixed before the model sees anything.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "invoke_priv.h"

#define TOOL_RESULT_MAX ((size_t)128 << 10) /* a tool's output sent back */
#define TOOL_LIST_MAX 20                    /* tool names in an error */
#define TRACE_TEXT_MAX 2000                 /* a result in the trace */

struct tool_set {
    sk_kernel *k;
    cfg_choice choice;
    int auto_invoke;
    int max_rounds;
    int parallel;              /* allow_parallel_calls, -1 unset */
    int concurrent;            /* one reply's calls side by side */
    int strict;                /* allow_strict_schema_adherence */
    size_t n;
    tool_def *defs;            /* strings below */
    char **wire;               /* "Skill-Fn" */
    char **full;               /* "Skill.Fn" */
    char **schemas;
    sk_function **fns;         /* retained */
    sk_grant *grant;           /* exactly the functions offered */
    char *list;                /* "Skill-Fn, ..." for errors, owned */
};

/* One call of a round. */
typedef struct tcall {
    struct tool_round *round;
    size_t i;
    char *full;                /* the function, when the call may run */
    sk_vars *vars;             /* its arguments */
    char *args;                /* the arguments restored, for hooks and traces */
    char *result;              /* its output, or what was wrong */
    int is_error;
    int done;
} tcall;

typedef struct tool_round {
    inv *v;
    size_t n, pending, next;
    tcall *c;
    sk_err *fatal;             /* an error no model can fix: it ends the call */
} tool_round;

/* ======================================================================
 * Per-model switches: the config file's "tools" ({SPEC or KIND: false})
 * ====================================================================== */

struct kern_tools_flags {
    char **endpoint;
    int *on;
    size_t n;
};

sk_status kern_set_native_tools(sk_kernel *k, const char *endpoint, int on)
{
    struct kern_tools_flags *t = k->tools_flags;
    if (!t && !(t = k->tools_flags = sk_calloc(1, sizeof *t)))
        return SK_NOMEM;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->endpoint[i], endpoint) == 0) {
            t->on[i] = on;
            return SK_OK;
        }
    char **e = sk_realloc(t->endpoint, (t->n + 1) * sizeof *e);
    if (!e)
        return SK_NOMEM;
    t->endpoint = e;
    int *o = sk_realloc(t->on, (t->n + 1) * sizeof *o);
    if (!o)
        return SK_NOMEM;
    t->on = o;
    if (!(t->endpoint[t->n] = sk_strdup(endpoint)))
        return SK_NOMEM;
    t->on[t->n++] = on;
    return SK_OK;
}

void kern_tools_free(sk_kernel *k)
{
    struct kern_tools_flags *t = k->tools_flags;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->endpoint[i]);
    free(t->endpoint);
    free(t->on);
    free(t);
    k->tools_flags = NULL;
}

int kern_native_tools(const sk_kernel *k, const sk_connector *c)
{
    if (!c || !c->vt->tools || c->no_tools)
        return 0;
    const struct kern_tools_flags *t = k->tools_flags;
    const char *colon = strchr(c->spec, ':');
    size_t kind = colon ? (size_t)(colon - c->spec) : strlen(c->spec);
    int found = -1;
    for (size_t i = 0; t && i < t->n; i++) {
        if (strcmp(t->endpoint[i], c->spec) == 0)
            return t->on[i];
        if (strlen(t->endpoint[i]) == kind && strncmp(t->endpoint[i], c->spec, kind) == 0)
            found = t->on[i];
    }
    return found != 0;
}

int tools_refused(const sk_err *e)
{
    if (!e || e->code != SK_MODEL)
        return 0;
    int s = e->http_status;
    if (s != 400 && s != 404 && s != 422 && s != 500 && s != 501)
        return 0;
    for (const char *p = e->message ? e->message : ""; *p; p++)
        if (strncasecmp(p, "tool", 4) == 0 || strncasecmp(p, "function call", 13) == 0)
            return 1;
    return 0;
}

int tools_native_for(sk_kernel *k, const char *name)
{
    char *id = pipe_model_id(k, name);
    if (!id)
        return 0;
    char *cut = strstr(id, " > ");
    if (cut)
        *cut = '\0';
    sk_err *err = NULL;
    sk_connector *c = strcmp(id, "(none)") == 0 ? NULL : kern_connector(k, id, &err);
    err_free(err);
    free(id);
    return kern_native_tools(k, c);
}

/* ======================================================================
 * The tools a call offers
 * ====================================================================== */

void tools_free(tool_set *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->wire[i]);
        free(t->full[i]);
        free(t->schemas[i]);
        if (t->fns[i])
            fn_release(t->k, t->fns[i]);
    }
    free(t->wire);
    free(t->full);
    free(t->schemas);
    free(t->fns);
    free(t->defs);
    grant_release(t->grant);
    free(t->list);
    free(t);
}

static int in_list(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* The JSON schema of f's parameters, as tool definitions carry it: each
 * a string with its description and default; the required ones listed.
 * Strict (OpenAI's structured arguments) lists every one as required,
 * the optional ones nullable, and no others.  A function with no
 * declared parameters takes "input".  Caller frees. */
static char *param_schema(const sk_function *f, int strict)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *props = o ? cJSON_AddObjectToObject(o, "properties") : NULL;
    cJSON *req = o ? cJSON_CreateArray() : NULL;
    int ok = o && props && req && cJSON_AddStringToObject(o, "type", "object");
    size_t n = f->n_params;
    for (size_t i = 0; ok && i < (n ? n : 1); i++) {
        const char *name = n ? f->params[i].name : "input";
        const sk_param_info *p = n ? &f->params[i] : NULL;
        cJSON *pr = cJSON_AddObjectToObject(props, name);
        ok = pr != NULL;
        if (ok && strict && !(p && p->required)) {
            cJSON *types = cJSON_AddArrayToObject(pr, "type");
            ok = types && cJSON_AddItemToArray(types, cJSON_CreateString("string")) &&
                 cJSON_AddItemToArray(types, cJSON_CreateString("null"));
        } else if (ok) {
            ok = cJSON_AddStringToObject(pr, "type", "string") != NULL;
        }
        if (ok && p && p->description && *p->description)
            ok = cJSON_AddStringToObject(pr, "description", p->description) != NULL;
        if (ok && p && p->default_value && !strict)
            ok = cJSON_AddStringToObject(pr, "default", p->default_value) != NULL;
        if (ok && (strict || (p && p->required)))
            ok = cJSON_AddItemToArray(req, cJSON_CreateString(name));
    }
    if (ok && cJSON_GetArraySize(req) > 0) {
        ok = cJSON_AddItemToObject(o, "required", req);
        req = NULL;
    }
    if (ok && strict)
        ok = cJSON_AddFalseToObject(o, "additionalProperties") != NULL;
    cJSON_Delete(req);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return cfg_json_take(o);
}

/* Whether the behaviour's filters (SK Python's) keep f. */
static int filters_keep(const cfg_tools *b, const sk_function *f)
{
    if (b->n_incl_plugins && !in_list(b->incl_plugins, b->n_incl_plugins, f->skill))
        return 0;
    if (in_list(b->excl_plugins, b->n_excl_plugins, f->skill))
        return 0;
    if (b->n_incl_functions &&
        !in_list(b->incl_functions, b->n_incl_functions, f->full_name))
        return 0;
    return !in_list(b->excl_functions, b->n_excl_functions, f->full_name);
}

/* Adds f to the set once, if the caller's limits allow it. */
static sk_status offer(inv *v, tool_set *t, sk_function *f, const sk_grant *all)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->fns[i] == f)
            return SK_OK;
    if (!grant_allows(all, f) || !grant_allows(v->tool_allow, f))
        return SK_OK;
    if (t->n == TOOLS_MAX)
        return SK_TOO_LARGE;
    size_t i = t->n;
    if (!(t->wire[i] = sk_asprintf("%s-%s", f->skill, f->name)) ||
        !(t->full[i] = sk_strdup(f->full_name)) ||
        !(t->schemas[i] = param_schema(f, t->strict)))
        return SK_NOMEM;
    fn_retain(f);
    t->fns[i] = f;
    t->n++;
    return SK_OK;
}

static sk_err *prep_err(inv *v, sk_status code, const char *fmt, ...) SK_PRINTF(3, 4);
static sk_err *prep_err(inv *v, sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = sk_vasprintf(fmt, ap);
    va_end(ap);
    sk_err *e = m ? err_new(code, "%s: function_choice_behavior: %s", v->name, m) : NULL;
    free(m);
    return e;
}

sk_status tools_prepare(inv *v, sk_err **err)
{
    *err = NULL;
    v->tl = NULL;
    const cfg_tools *b = v->settings ? &v->settings->tools : NULL;
    if (!b || b->choice == CFG_CHOICE_UNSET)
        return SK_OK;
    sk_kernel *k = v->k;
    if (v->tools_off || !kern_native_tools(k, v->conn)) {
        /* this server cannot take tools (or the user said so): auto and
         * none answer without them; required cannot be met */
        if (b->choice == CFG_CHOICE_REQUIRED) {
            *err = prep_err(v, SK_CONFIG, "required needs a tool call, and %s does not "
                                          "take tools%s",
                            v->spec, v->conn->vt->tools ? " (turned off for it)" : "");
            return *err ? SK_CONFIG : SK_NOMEM;
        }
        pipe_trace(v, "tools_unavailable", "model", v->spec, (char *)NULL);
        return SK_OK;
    }
    tool_set *t = sk_calloc(1, sizeof *t);
    if (!t)
        return SK_NOMEM;
    t->k = k;
    t->choice = b->choice;
    t->auto_invoke = b->auto_invoke && b->choice != CFG_CHOICE_NONE;
    t->max_rounds = b->max_rounds >= 0 ? b->max_rounds
                    : b->choice == CFG_CHOICE_REQUIRED ? 1 : 5;
    if (v->hook && v->hook->max_rounds > 0)
        t->max_rounds = v->hook->max_rounds;
    t->parallel = b->parallel_calls;
    t->concurrent = b->concurrent;
    t->strict = b->strict;
    size_t cap = TOOLS_MAX;
    t->wire = sk_calloc(cap, sizeof *t->wire);
    t->full = sk_calloc(cap, sizeof *t->full);
    t->schemas = sk_calloc(cap, sizeof *t->schemas);
    t->fns = sk_calloc(cap, sizeof *t->fns);
    t->defs = sk_calloc(cap, sizeof *t->defs);
    sk_status rc = t->wire && t->full && t->schemas && t->fns && t->defs ? SK_OK : SK_NOMEM;
    sk_grant *all = NULL;
    if (rc == SK_OK && !b->listed) {
        sk_err *gerr = NULL;
        rc = grant_new(k, "the model's tool calls", NULL, 0, &all, &gerr);
        err_free(gerr);
    }
    if (rc == SK_OK && b->listed) {
        for (size_t i = 0; rc == SK_OK && i < b->n_functions; i++) {
            sk_function *f = reg_find_short(k, b->functions[i], v->skill);
            if (!f) {
                *err = prep_err(v, SK_NOT_FOUND, "%s is not loaded", b->functions[i]);
                rc = *err ? SK_NOT_FOUND : SK_NOMEM;
            } else if (filters_keep(b, f)) {
                rc = offer(v, t, f, NULL);
            }
        }
    } else {
        for (size_t i = 0; rc == SK_OK && i < k->n_fns; i++)
            if (filters_keep(b, k->fns[i]))
                rc = offer(v, t, k->fns[i], all);
    }
    grant_release(all);
    if (rc == SK_TOO_LARGE) {
        *err = prep_err(v, SK_CONFIG, "more than %d functions would be offered as tools; "
                                      "name the ones it needs in \"functions\"",
                        TOOLS_MAX);
        rc = *err ? SK_CONFIG : SK_NOMEM;
    }
    if (rc == SK_OK) {
        for (size_t i = 0; i < t->n; i++) {
            t->defs[i].name = t->wire[i];
            t->defs[i].description = t->fns[i]->description;
            t->defs[i].parameters = t->schemas[i];
            t->defs[i].strict = t->strict;
        }
        sk_err *gerr = NULL;
        rc = grant_new(k, "the model's tool calls", (const char *const *)t->full, t->n,
                       &t->grant, &gerr);
        if (rc != SK_OK) {
            *err = gerr;
            gerr = NULL;
        }
        err_free(gerr);
    }
    if (rc == SK_OK) {
        sk_buf l;
        buf_init(&l, 0);
        rc = buf_add(&l, "", 0);
        for (size_t i = 0; rc == SK_OK && i < t->n; i++) {
            if (i == TOOL_LIST_MAX) {
                rc = buf_printf(&l, ", ... (%zu more)", t->n - i);
                break;
            }
            rc = buf_printf(&l, "%s%s", i ? ", " : "", t->wire[i]);
        }
        if (rc == SK_OK && !t->n)
            rc = buf_adds(&l, "(none)");
        t->list = rc == SK_OK ? buf_steal(&l) : NULL;
        buf_free(&l);
        if (rc == SK_OK && !t->list)
            rc = SK_NOMEM;
    }
    if (rc != SK_OK) {
        tools_free(t);
        return rc;
    }
    if (b->choice == CFG_CHOICE_REQUIRED && t->n == 0) {
        tools_free(t);
        *err = prep_err(v, SK_CONFIG, "required needs a tool call, and no function is "
                                      "left to offer");
        return *err ? SK_CONFIG : SK_NOMEM;
    }
    v->tl = t;
    return SK_OK;
}

int tools_loop(const inv *v)
{
    return v->tl && v->tl->n && v->tl->auto_invoke;
}

void tools_request(const inv *v, model_req *req, size_t sample)
{
    const tool_set *t = v->tl;
    if (!t || !t->n)
        return;
    req->tools = t->defs;
    req->n_tools = t->n;
    req->parallel_tool_calls = t->parallel;
    /* SK's rounds: the behaviour's choice while rounds are left, then a
     * last request that may not call (and the samples of an answer) */
    if (t->choice == CFG_CHOICE_NONE || sample > 0 ||
        (t->auto_invoke && v->tool_rounds >= t->max_rounds))
        req->tool_choice = CFG_CHOICE_NONE;
    else
        req->tool_choice = t->choice;
}

/* ======================================================================
 * A round of calls
 * ====================================================================== */

/* The arguments' string values with redacted placeholders put back, in
 * place.  SK_NOMEM. */
static sk_status restore_tree(const inv *v, cJSON *j)
{
    if (!v->rmap || !j)
        return SK_OK;
    if (cJSON_IsString(j)) {
        char *out = NULL;
        if (rd_restore(v->rmap, j->valuestring, &out) != SK_OK)
            return SK_NOMEM;
        char *copy = cJSON_malloc(strlen(out) + 1);
        if (!copy) {
            free(out);
            return SK_NOMEM;
        }
        strcpy(copy, out);
        free(out);
        cJSON_free(j->valuestring);
        j->valuestring = copy;
        return SK_OK;
    }
    for (cJSON *c = j->child; c; c = c->next)
        if (restore_tree(v, c) != SK_OK)
            return SK_NOMEM;
    return SK_OK;
}

static int has_param(const sk_function *f, const char *name, const char **canon)
{
    *canon = name;
    if (f->n_params == 0)
        return strcasecmp(name, "input") == 0;
    for (size_t i = 0; i < f->n_params; i++)
        if (strcasecmp(f->params[i].name, name) == 0) {
            *canon = f->params[i].name;
            return 1;
        }
    return 0;
}

/* Checks call c and makes its variables, or says what was wrong as its
 * result for the model.  SK_NOMEM only. */
static sk_status prepare_call(inv *v, const sk_tool_call *call, tcall *c)
{
    const tool_set *t = v->tl;
    size_t fi = t->n;
    for (size_t i = 0; call->name && i < t->n; i++)
        if (strcmp(call->name, t->wire[i]) == 0)
            fi = i;
    if (fi == t->n) {
        c->is_error = 1;
        c->result = sk_asprintf("Error: there is no tool named \"%.200s\" here; the "
                                "tools are: %s",
                                call->name ? call->name : "", t->list);
        return c->result ? SK_OK : SK_NOMEM;
    }
    const sk_function *f = t->fns[fi];
    const char *text = call->arguments && *call->arguments ? call->arguments : "{}";
    cJSON *args = cJSON_Parse(text);
    if (!cJSON_IsObject(args)) {
        cJSON_Delete(args);
        c->is_error = 1;
        c->result = sk_asprintf("Error: the arguments of %s must be a JSON object of "
                                "its parameters, and were: %.200s",
                                t->wire[fi], text);
        return c->result ? SK_OK : SK_NOMEM;
    }
    if (restore_tree(v, args) != SK_OK || sk_vars_new(&c->vars) != SK_OK) {
        cJSON_Delete(args);
        return SK_NOMEM;
    }
    for (const cJSON *a = args->child; a; a = a->next) {
        const char *name = NULL;
        if (!has_param(f, a->string, &name)) {
            char *ps = NULL;
            sk_buf pb;
            buf_init(&pb, 0);
            sk_status rc = buf_add(&pb, "", 0);
            for (size_t i = 0; rc == SK_OK && i < (f->n_params ? f->n_params : 1); i++)
                rc = buf_printf(&pb, "%s%s", i ? ", " : "",
                                f->n_params ? f->params[i].name : "input");
            ps = rc == SK_OK ? buf_steal(&pb) : NULL;
            buf_free(&pb);
            c->is_error = 1;
            c->result = ps ? sk_asprintf("Error: %s has no parameter \"%.100s\"; its "
                                         "parameters are: %s",
                                         t->wire[fi], a->string, ps)
                           : NULL;
            free(ps);
            cJSON_Delete(args);
            sk_vars_free(c->vars);
            c->vars = NULL;
            return c->result ? SK_OK : SK_NOMEM;
        }
        if (cJSON_IsNull(a))
            continue; /* strict mode's "not given" */
        char *val = cJSON_IsString(a) ? sk_strdup(a->valuestring) : NULL;
        if (!cJSON_IsString(a)) {
            char *p = cJSON_PrintUnformatted(a);
            val = p ? sk_strdup(p) : NULL;
            cJSON_free(p);
        }
        sk_status rc = val ? sk_vars_set(c->vars, name, val) : SK_NOMEM;
        free(val);
        if (rc != SK_OK) {
            cJSON_Delete(args);
            return SK_NOMEM;
        }
    }
    for (size_t i = 0; i < f->n_params; i++) {
        const sk_param_info *p = &f->params[i];
        if (p->required && !p->default_value && !sk_vars_get(c->vars, p->name)) {
            c->is_error = 1;
            c->result = sk_asprintf("Error: %s needs the parameter \"%s\"", t->wire[fi],
                                    p->name);
            cJSON_Delete(args);
            sk_vars_free(c->vars);
            c->vars = NULL;
            return c->result ? SK_OK : SK_NOMEM;
        }
    }
    char *printed = cJSON_PrintUnformatted(args);
    cJSON_Delete(args);
    c->args = printed ? sk_strdup(printed) : NULL;
    cJSON_free(printed);
    if (!c->args || !(c->full = sk_strdup(t->full[fi])))
        return SK_NOMEM;
    return SK_OK;
}

static void round_done(tool_round *r);
static void start_call(tool_round *r, tcall *c);

/* A copy of s cut to max bytes (never inside a UTF-8 sequence), noting
 * how much was left out.  Caller frees. */
static char *clip(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return sk_strdup(s);
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return sk_asprintf("%.*s\n[truncated: %zu more bytes]", (int)n, s, len - n);
}

static void call_done(void *ud, sk_status st, char *text, sk_err *err)
{
    tcall *c = ud;
    tool_round *r = c->round;
    c->done = 1;
    if (st == SK_OK) {
        c->result = clip(text ? text : "", TOOL_RESULT_MAX);
        free(text);
        if (!c->result && !r->fatal)
            r->fatal = err_new(SK_NOMEM, "out of memory");
        err_free(err);
    } else {
        free(text);
        /* what the model cannot fix ends the call: a question for the
         * user, memory, cancellation */
        if (st == SK_UNCERTAIN || st == SK_NOMEM || st == SK_CANCELLED) {
            if (!r->fatal)
                r->fatal = err ? err : err_new(st, "%s", sk_strerror(st));
            else
                err_free(err);
        } else {
            c->is_error = 1;
            c->result = sk_asprintf("Error: %s", err && err->message ? err->message
                                                                     : sk_strerror(st));
            err_free(err);
        }
    }
    /* in order, one at a time, when the behaviour says so */
    if (!r->v->tl->concurrent) {
        while (r->next < r->n && !r->c[r->next].full)
            r->next++;
        if (r->next < r->n) {
            start_call(r, &r->c[r->next++]);
            return;
        }
    }
    if (--r->pending == 0)
        round_done(r);
}

static void start_call(tool_round *r, tcall *c)
{
    inv *v = r->v;
    sk_err *err = NULL;
    /* the model chose this call: it runs under the grant of exactly the
     * functions offered, and everything it reaches runs untrusted */
    inv_opts io = {.grant = v->tl->grant, .untrusted = 1, .tools = v->tool_allow};
    sk_status st = inv_start_name(v->k, c->full, NULL, c->vars, v->depth + 1, &io,
                                  call_done, c, &err);
    if (st != SK_OK)
        call_done(c, st, NULL, err ? err : err_new(st, "%s", sk_strerror(st)));
}

static void round_free(tool_round *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->c[i].full);
        sk_vars_free(r->c[i].vars);
        free(r->c[i].args);
        free(r->c[i].result);
    }
    free(r->c);
    err_free(r->fatal);
    free(r);
}

/* Records the round in the trace: one tool_call line per call. */
static void trace_round(inv *v, const model_resp *resp, tool_round *r)
{
    char round[16];
    snprintf(round, sizeof round, "%d", v->tool_rounds + 1);
    for (size_t i = 0; i < r->n; i++) {
        const sk_tool_call *call = &resp->calls[i];
        char *res = clip(r->c[i].result ? r->c[i].result : "", TRACE_TEXT_MAX);
        pipe_trace(v, "tool_call", "round", round, "id", call->id, "tool", call->name,
                   "call", r->c[i].full, "arguments", call->arguments,
                   r->c[i].is_error ? "error" : "result", res, (char *)NULL);
        free(res);
    }
}

/* A tool result as the model is sent it: input filters (the pattern
 * ones: a result is data entering the prompt), then redaction. */
static sk_status result_for_model(inv *v, tcall *c, char **out, sk_err **err)
{
    *out = NULL;
    *err = NULL;
    const char *text = c->result ? c->result : "";
    for (size_t i = 0; i < v->pol->n_in; i++) {
        const pol_filter *f = &v->pol->in_filters[i];
        if (!f->re)
            continue;
        char *m = NULL;
        int hit = pol_filter_match(f, text, &m);
        if (hit == -2)
            return SK_NOMEM;
        if (hit != 0) {
            kern_usage(v->k)->filtered++;
            pipe_trace(v, "filtered", "rule", f->name, "direction", "input", "reason",
                       "in a tool's result", (char *)NULL);
            *err = err_new(SK_FILTERED, "input filter \"%s\" blocked the result of %s "
                                        "before it reached the model%s%.80s%s",
                           f->name, c->full ? c->full : "a tool call",
                           m ? ": matched \"" : "", m ? m : "", m ? "\"" : "");
            free(m);
            if (*err) {
                sk_buf b;
                buf_init(&b, 0);
                if (buf_adds(&b, "{\"rule\":") == SK_OK &&
                    buf_add_json_str(&b, f->name, strlen(f->name)) == SK_OK &&
                    buf_adds(&b, ",\"direction\":\"input\"}") == SK_OK)
                    (*err)->detail_json = buf_steal(&b);
                buf_free(&b);
            }
            return *err ? SK_FILTERED : SK_NOMEM;
        }
        free(m);
    }
    if (v->rmap)
        return pipe_redact(v, text, out);
    *out = sk_strdup(text);
    return *out ? SK_OK : SK_NOMEM;
}

/* Every call of the round has its result: the reply and the results join
 * the conversation, and the model is asked again. */
static void round_done(tool_round *r)
{
    inv *v = r->v;
    v->tround = NULL;
    model_resp *resp = pipe_reply(v, 0);
    if (r->fatal) {
        sk_err *e = r->fatal;
        r->fatal = NULL;
        round_free(r);
        pipe_fail(v, e);
        return;
    }
    trace_round(v, resp, r);
    sk_msg *m = sk_realloc(v->send, (v->n_send + 1 + r->n) * sizeof *m);
    if (!m) {
        round_free(r);
        pipe_fail(v, NULL);
        return;
    }
    v->send = m;
    memset(&m[v->n_send], 0, (1 + r->n) * sizeof *m);
    sk_msg *a = &m[v->n_send++];
    sk_status rc = SK_OK;
    if (!(a->role = sk_strdup("assistant")) || !(a->content = sk_strdup(resp->text ? resp->text : "")) ||
        tool_calls_copy(resp->calls, resp->n_calls, &a->calls) != SK_OK)
        rc = SK_NOMEM;
    else
        a->n_calls = resp->n_calls;
    sk_err *ferr = NULL;
    for (size_t i = 0; rc == SK_OK && i < r->n; i++) {
        sk_msg *t = &m[v->n_send++];
        t->is_error = r->c[i].is_error;
        if (!(t->role = sk_strdup("tool")) || !(t->call_id = sk_strdup(resp->calls[i].id)) ||
            !(t->tool_name = sk_strdup(resp->calls[i].name)))
            rc = SK_NOMEM;
        if (rc == SK_OK)
            rc = result_for_model(v, &r->c[i], &t->content, &ferr);
    }
    if (rc != SK_OK) {
        round_free(r);
        pipe_fail(v, rc == SK_NOMEM ? NULL : ferr);
        return;
    }
    v->tool_rounds++;
    if (v->hook && v->hook->after) {
        tool_report *rep = sk_calloc(r->n ? r->n : 1, sizeof *rep);
        char *said = pipe_restore(v, resp->text ? resp->text : "");
        if (!rep || !said) {
            free(rep);
            free(said);
            round_free(r);
            pipe_fail(v, NULL);
            return;
        }
        for (size_t i = 0; i < r->n; i++) {
            rep[i].function = r->c[i].full ? r->c[i].full : resp->calls[i].name;
            rep[i].arguments = r->c[i].args ? r->c[i].args : resp->calls[i].arguments;
            rep[i].result = r->c[i].result ? r->c[i].result : "";
            rep[i].is_error = r->c[i].is_error;
        }
        v->hook->after(v->hook->ud, v->tool_rounds, said, rep, r->n);
        free(rep);
        free(said);
    }
    round_free(r);
    if (v->hook && v->hook->before) {
        sk_err *stop = v->hook->before(v->hook->ud, v->tool_rounds);
        if (stop) {
            pipe_fail(v, stop);
            return;
        }
    }
    pipe_request_again(v);
}

/* The calls of a reply as the result, when they are not run for the
 * model (auto_invoke off, or a model that called under "none"):
 * {"content": TEXT, "tool_calls": [{"id", "function", "arguments"}]}.
 * Caller frees. */
static char *calls_as_text(const inv *v, const model_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_CreateArray() : NULL;
    int ok = o && arr && cJSON_AddStringToObject(o, "content", resp->text ? resp->text : "");
    if (ok)
        ok = cJSON_AddItemToObject(o, "tool_calls", arr);
    else
        cJSON_Delete(arr);
    for (size_t i = 0; ok && i < resp->n_calls; i++) {
        const sk_tool_call *c = &resp->calls[i];
        const char *fn = c->name;
        for (size_t j = 0; j < v->tl->n; j++)
            if (c->name && strcmp(c->name, v->tl->wire[j]) == 0)
                fn = v->tl->full[j];
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(arr, e) && cJSON_AddStringToObject(e, "id", c->id) &&
             cJSON_AddStringToObject(e, "function", fn ? fn : "");
        cJSON *args = ok ? cJSON_Parse(c->arguments && *c->arguments ? c->arguments : "{}")
                         : NULL;
        if (ok)
            ok = args ? cJSON_AddItemToObject(e, "arguments", args)
                      : cJSON_AddStringToObject(e, "arguments", c->arguments) != NULL;
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return cfg_json_take(o);
}

int tools_has_calls(const inv *v)
{
    const model_resp *r = pipe_reply(v, 0);
    return v->tl && !v->tool_sampling && r && r->n_calls > 0;
}

int tools_after_reply(inv *v)
{
    if (!v->tl || v->tool_sampling)
        return 0;
    model_resp *resp = pipe_reply(v, 0);
    if (!resp->n_calls) {
        /* the answer: its other samples now, with the conversation the
         * tool rounds made (and no more calls) */
        if (tools_loop(v) && v->n_samples > 1) {
            v->tool_sampling = 1;
            pipe_start_samples(v, 1);
            return 1;
        }
        return 0;
    }
    /* a call without an id still needs one to pair with its result */
    for (size_t i = 0; i < resp->n_calls; i++) {
        if (resp->calls[i].id && *resp->calls[i].id)
            continue;
        char *id = sk_asprintf("call_%d_%zu", v->tool_rounds + 1, i + 1);
        if (!id) {
            pipe_fail(v, NULL);
            return 1;
        }
        free(resp->calls[i].id);
        resp->calls[i].id = id;
    }
    if (!tools_loop(v)) {
        char *text = calls_as_text(v, resp);
        if (!text) {
            pipe_fail(v, NULL);
            return 1;
        }
        free(resp->text);
        resp->text = text;
        return 0;
    }
    if (v->tool_rounds >= v->tl->max_rounds) {
        char n[16];
        snprintf(n, sizeof n, "%d", v->tool_rounds);
        pipe_trace(v, "tool_limit", "model", v->spec, "rounds", n, (char *)NULL);
        pipe_fail(v, err_new(SK_LIMIT, "%s: the model still called tools after %d "
                                       "round%s of tool calls (maximum_auto_invoke_attempts)",
                             v->name, v->tool_rounds, v->tool_rounds == 1 ? "" : "s"));
        return 1;
    }
    tool_round *r = sk_calloc(1, sizeof *r);
    if (!r || !(r->c = sk_calloc(resp->n_calls, sizeof *r->c))) {
        free(r);
        pipe_fail(v, NULL);
        return 1;
    }
    r->v = v;
    r->n = resp->n_calls;
    size_t runnable = 0;
    for (size_t i = 0; i < r->n; i++) {
        r->c[i].round = r;
        r->c[i].i = i;
        if (prepare_call(v, &resp->calls[i], &r->c[i]) != SK_OK) {
            round_free(r);
            pipe_fail(v, NULL);
            return 1;
        }
        runnable += r->c[i].full != NULL;
    }
    v->tround = r;
    if (!runnable) {
        round_done(r);
        return 1;
    }
    /* held: every call's start, so the round cannot end before the last
     * one is out */
    r->pending = (v->tl->concurrent ? runnable : 1) + 1;
    if (v->tl->concurrent) {
        for (size_t i = 0; i < r->n; i++)
            if (r->c[i].full)
                start_call(r, &r->c[i]);
    } else {
        while (r->next < r->n && !r->c[r->next].full)
            r->next++;
        start_call(r, &r->c[r->next++]);
    }
    if (--r->pending == 0)
        round_done(r);
    return 1;
}

int tools_after_error(inv *v, sk_err **err)
{
    tool_set *t = v->tl;
    if (!t || !t->n || v->tool_rounds || !tools_refused(*err))
        return 0;
    /* its server refused the tools: not offered to it again in this run,
     * nor (whatever else happens) in this call */
    v->conn->no_tools = 1;
    v->tools_off = 1;
    pipe_trace(v, "tools_refused", "model", v->spec, "reason", (*err)->message,
               (char *)NULL);
    if (v->hook || t->choice == CFG_CHOICE_REQUIRED) {
        /* the caller decides (the agent has a protocol of its own), or
         * nothing else would do: the error, with what it means */
        char *m = sk_asprintf("%s (the server refused the tools it was offered; "
                              "\"tools\": {\"%s\": false} in the config file runs "
                              "auto functions without them)",
                              (*err)->message, v->spec);
        if (m) {
            free((*err)->message);
            (*err)->message = m;
        }
        return 0;
    }
    kern_notice(v->k, "%s: the server refused tools; %s runs without them in this run",
                v->spec, v->name);
    err_free(*err);
    *err = NULL;
    return 1;
}
