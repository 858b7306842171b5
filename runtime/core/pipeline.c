/*
 * pipeline.c -- what happens to a rendered prompt.  The stages of the one
 * invoke path, in order (invoke.c runs 1 and 2, this file the rest):
 *
 *    1. lookup          the function, held to the call's grant (trust.c)
 *    2. render          the template; inserted values encoded for chat
 *                       markup; function blocks are invokes of their own
 *    3. messages        the chat markup parsed strictly; the user's
 *                       clarification and a reviewer's critique appended
 *    4. input filters   content rules over what the model will read
 *    5. redaction       PII out of what leaves the machine (per model)
 *    6. cache lookup    a hit is the whole recorded reply: text, finish
 *                       reason, model, logprobs; it goes on through 8-12
 *    7. model           the cascade's current model, n samples at once,
 *                       limits, retries; cache store of complete replies;
 *                       an error that remains falls back to the next model
 *                       of the chain (fallbacks).  A dry run stops here:
 *                       the connector describes the request it would send
 *                       (dry_run_stop), built as the real one is
 *    8. truncation      a cut reply raises `truncated`, or is continued
 *    8b. tool calls     a reply with tool calls (function_choice_behavior)
 *                       runs them and asks the model again (tools.c); a
 *                       reply without them goes on as the answer
 *    9. uncertainty     self-consistency, marker, hedging, logprobs:
 *                       escalate to the next model, or raise `uncertain`
 *   10. shape           the answer's required form, asked again if wrong
 *   11. output filters
 *   12. review          revise (back to 2 with the critique), or reject
 *   13. release         the text reaches the caller
 *
 * Invariants, each tested with the two stages it protects
 * (tests/integration/test_stages.c):
 *   - a cache hit never changes a call's outcome: the hit carries what
 *     stages 8-12 read, and they run on it as on a fresh reply; the key
 *     covers everything that shapes the request, the endpoint included;
 *   - a cut reply is never taken for a whole one, and never cached (unless
 *     the function continues cut replies, where it is a part);
 *   - nothing reaches the caller that a later stage may replace or reject:
 *     text streams only when stages 9-12 cannot act;
 *   - a clarification always reaches the re-run.
 *
 * Each stage either finishes synchronously and calls the next, or starts
 * asynchronous work (model requests, nested invokes of filter, judge and
 * review functions) whose completion calls the next.  The policy in force
 * (v->pol) decides which stages do anything.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "invoke_priv.h"

struct mreq {
    inv *v;
    size_t i;
    void *handle;
    model_resp *resp;
    mreq *next_wait;
    long long t0;
    char *cache_key;  /* the response cache's key, when cacheable */
    char *journal_key; /* the exact request, when the run keeps a journal */
    long journal_occ;  /* which of the run's identical requests this is */
    long est_tokens;  /* counted against the endpoint's limits */
    int admitted;     /* lim_admit let it start */
};

struct inv_queue {
    mreq *head, *tail;
};

static void start_attempt(inv *v);
static void run_review(inv *v);
static void finish_answered(inv *v, char *out);

/* ---- tracing ----------------------------------------------------------- */

void pipe_trace(inv *v, const char *type, ...)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = buf_adds(&b, "\"type\":");
    if (rc == SK_OK) rc = buf_add_json_str(&b, type, strlen(type));
    if (rc == SK_OK) rc = buf_adds(&b, ",\"function\":");
    if (rc == SK_OK) rc = buf_add_json_str(&b, v->name, strlen(v->name));
    va_list ap;
    va_start(ap, type);
    const char *key;
    while (rc == SK_OK && (key = va_arg(ap, const char *))) {
        const char *val = va_arg(ap, const char *);
        if (!val)
            continue;
        rc = buf_printf(&b, ",\"%s\":", key);
        if (rc == SK_OK) rc = buf_add_json_str(&b, val, strlen(val));
    }
    va_end(ap);
    if (rc == SK_OK) rc = buf_printf(&b, ",\"call\":\"%s\"", v->call_id);
    if (rc == SK_OK)
        trace_event(v->k, b.p);
    buf_free(&b);
}

/* ---- cleanup ----------------------------------------------------------- */

static void free_msgs(sk_msg *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++)
        msg_clear(&m[i]);
    free(m);
}

/* Frees what one model attempt holds. */
static void attempt_free(inv *v)
{
    for (size_t i = 0; v->reqs && i < v->n_samples; i++) {
        resp_free(v->reqs[i].resp);
        free(v->reqs[i].cache_key);
        free(v->reqs[i].journal_key);
    }
    free(v->reqs);
    v->reqs = NULL;
    for (size_t i = 0; v->texts && i < v->n_samples; i++)
        free(v->texts[i]);
    free(v->texts);
    v->texts = NULL;
    v->n_samples = v->pending_samples = 0;
    err_free(v->sample_err);
    v->sample_err = NULL;
    free_msgs(v->send, v->n_send);
    v->send = NULL;
    v->n_send = 0;
    rd_map_free(v->rmap);
    v->rmap = NULL;
    buf_free(&v->held);
    buf_free(&v->partial);
    v->continued = 0;
    unc_verdict_clear(&v->tv);
    inv_out_clear(&v->sub_out);
    v->asked = 0;
    free(v->spec);
    v->spec = NULL;
    tools_free(v->tl);
    v->tl = NULL;
    v->tool_rounds = 0;
    v->tool_sampling = 0;
    v->hold = 0;
}

void pipe_free(inv *v)
{
    attempt_free(v);
    buf_free(&v->fell);
    buf_free(&v->dry_skipped);
    pol_free(v->own_policy);
    v->own_policy = NULL;
    free(v->prompt);
    v->prompt = NULL;
    free(v->plain);
    v->plain = NULL;
    free(v->starts);
    v->starts = NULL;
    free_msgs(v->msgs, v->n_msgs);
    v->msgs = NULL;
    v->n_msgs = 0;
    free(v->reply);
    v->reply = NULL;
    free(v->shape_feedback);
    v->shape_feedback = NULL;
    for (size_t i = 0; i < v->n_critiques; i++)
        free(v->critiques[i]);
    free(v->critiques);
    v->critiques = NULL;
    v->n_critiques = 0;
}

static void fail(inv *v, sk_err *err)
{
    inv_finish(v, err ? err->code : SK_NOMEM, NULL, err);
}

void pipe_fail(inv *v, sk_err *err) { fail(v, err); }

/* ---- chat messages ----------------------------------------------------- */

/* The rendered prompt as chat messages.  A chat prompt is parsed
 * strictly (chat.c): malformed markup is an error at its line and column
 * in the template, never a fall back to one user message holding the
 * tags.  A plain prompt is one user message, as written.  v->plain gets
 * the text the model reads. */
static sk_status split_messages(inv *v, sk_err **err)
{
    *err = NULL;
    if (v->chat) {
        size_t off = 0;
        char *msg = NULL;
        sk_status rc = chat_parse(v->prompt, &v->msgs, &v->n_msgs, &off, &msg);
        if (rc == SK_TEMPLATE) {
            int line = 1, col = 1;
            const tpl_block *b = NULL;
            if (v->starts)
                tpl_locate(v->tpl, v->prompt, v->starts, off, &line, &col, &b);
            *err = err_new(SK_TEMPLATE, "%s:%d:%d: %s%s%s%s",
                           v->tpl->origin ? v->tpl->origin : v->name, line, col,
                           msg ? msg : "malformed chat markup",
                           b && b->kind != TB_TEXT ? " (in the text " : "",
                           b && b->kind != TB_TEXT ? b->src : "",
                           b && b->kind != TB_TEXT ? " inserted, which its prompt "
                                                     "trusts as markup)" : "");
            free(msg);
            return *err ? SK_TEMPLATE : SK_NOMEM;
        }
        free(msg);
        if (rc != SK_OK)
            return rc;
    } else {
        if (!(v->msgs = sk_calloc(1, sizeof *v->msgs)))
            return SK_NOMEM;
        v->n_msgs = 1;
        v->msgs[0].role = sk_strdup("user");
        v->msgs[0].content = sk_strdup(v->prompt);
        if (!v->msgs[0].role || !v->msgs[0].content)
            return SK_NOMEM;
    }
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_add(&b, "", 0);
    for (size_t i = 0; rc == SK_OK && i < v->n_msgs; i++)
        rc = buf_printf(&b, "%s%s", i ? "\n\n" : "", v->msgs[i].content);
    free(v->plain);
    v->plain = rc == SK_OK ? buf_steal(&b) : NULL;
    buf_free(&b);
    return v->plain ? SK_OK : SK_NOMEM;
}

/* Appends text to the last message (a note the pipeline adds: after the
 * markup is parsed, so what it quotes stays text). */
static sk_status append_last(inv *v, const char *text)
{
    sk_msg *m = &v->msgs[v->n_msgs - 1];
    char *c = sk_asprintf("%s%s", m->content, text);
    if (!c)
        return SK_NOMEM;
    free(m->content);
    m->content = c;
    char *p = sk_asprintf("%s%s", v->plain, text);
    if (!p)
        return SK_NOMEM;
    free(v->plain);
    v->plain = p;
    return SK_OK;
}

/* ---- filters ----------------------------------------------------------- */

static sk_err *filtered(inv *v, const pol_filter *f, const char *dir,
                        const char *why)
{
    kern_usage(v->k)->filtered++;
    pipe_trace(v, "filtered", "rule", f->name, "direction", dir, "reason", why,
               (char *)NULL);
    sk_err *e = err_new(SK_FILTERED, "%s filter \"%s\" blocked the %s: %s",
                        dir, f->name, strcmp(dir, "input") == 0 ? "prompt" : "reply",
                        why);
    if (e) {
        sk_buf b;
        buf_init(&b, 0);
        if (buf_adds(&b, "{\"rule\":") == SK_OK &&
            buf_add_json_str(&b, f->name, strlen(f->name)) == SK_OK &&
            buf_printf(&b, ",\"direction\":\"%s\"}", dir) == SK_OK)
            e->detail_json = buf_steal(&b);
        buf_free(&b);
    }
    return e;
}

static void run_filters(inv *v);

/* A model-based filter replied. */
static void filter_replied(inv *v, sk_status st, char *text, sk_err *err)
{
    int output = v->reply != NULL;
    const pol_filter *list = output ? v->pol->out_filters : v->pol->in_filters;
    const pol_filter *f = &list[v->filter_idx];
    if (st != SK_OK) {
        free(text);
        fail(v, err);
        return;
    }
    char *reason = NULL;
    int allow = flt_parse(text, &reason);
    free(text);
    if (!allow) {
        sk_err *e = filtered(v, f, output ? "output" : "input",
                             reason ? reason : "blocked");
        free(reason);
        fail(v, e);
        return;
    }
    free(reason);
    v->filter_idx++;
    run_filters(v);
}

/* Runs the input filters over the prompt (v->reply NULL) or the output
 * filters over the reply, one after another; then the next stage. */
static void run_filters(inv *v)
{
    int output = v->reply != NULL;
    const pol_filter *list = output ? v->pol->out_filters : v->pol->in_filters;
    size_t n = output ? v->pol->n_out : v->pol->n_in;
    const char *text = output ? v->reply : v->plain;
    const char *dir = output ? "output" : "input";
    while (v->filter_idx < n) {
        const pol_filter *f = &list[v->filter_idx];
        if (f->re) {
            char *m = NULL;
            int hit = pol_filter_match(f, text, &m);
            if (hit == -2) {
                fail(v, NULL); /* out of memory: say so, not "filtered" */
                return;
            }
            if (hit != 0) {
                char *why = hit > 0 ? sk_asprintf("matched \"%.80s\"", m ? m : "")
                                    : sk_strdup("the pattern could not be matched");
                free(m);
                sk_err *e = filtered(v, f, dir, why ? why : "matched");
                free(why);
                fail(v, e);
                return;
            }
            v->filter_idx++;
            continue;
        }
        if (v->dry_run && !output) {
            /* a rule that asks a model: a dry run makes no model call */
            if (buf_printf(&v->dry_skipped, "%s%s (%s)", v->dry_skipped.len ? ", " : "",
                           f->name, f->function) != SK_OK) {
                fail(v, NULL);
                return;
            }
            v->filter_idx++;
            continue;
        }
        sk_vars *fv = NULL;
        if (sk_vars_new(&fv) != SK_OK || sk_vars_set(fv, "input", text) != SK_OK ||
            sk_vars_set(fv, "policy", f->policy ? f->policy : "") != SK_OK) {
            sk_vars_free(fv);
            fail(v, NULL);
            return;
        }
        inv_sub(v, f->function, fv, filter_replied);
        return;
    }
    v->filter_idx = 0;
    if (output)
        run_review(v);
    else
        start_attempt(v);
}

/* ---- the model stage --------------------------------------------------- */

/* The model spec of step idx of f's cascade under pol, and the service
 * id that named it (or NULL). */
static const char *model_for(sk_kernel *k, const sk_function *f, const sk_policy *pol,
                             size_t idx, const char **service)
{
    *service = NULL;
    if (pol && pol->n_models)
        return pol->models[idx < pol->n_models ? idx : pol->n_models - 1];
    const cfg_function *c = f ? f->cfg : NULL;
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

static size_t cascade_len(const inv *v);

/* The models a call may fall back to after an error: the cascade's steps
 * after the current one, then the policy's fallbacks. */
static size_t chain_len(const inv *v)
{
    return cascade_len(v) + (v->pol->fallback ? v->pol->n_fallbacks : 0);
}

static const char *choose_model(inv *v, const char **service)
{
    *service = NULL;
    size_t n = cascade_len(v);
    if (v->model_idx >= n)
        return v->pol->fallbacks[v->model_idx - n];
    if (v->model_override)
        return v->model_override;
    return model_for(v->k, v->f, v->pol, v->model_idx, service);
}

char *pipe_model_id(sk_kernel *k, const char *name)
{
    sk_function *f = reg_find(k, name);
    sk_err *e = NULL;
    const sk_policy *pol = f && f->kind == FN_SEMANTIC ? kern_policy(k, f, &e) : NULL;
    err_free(e);
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = SK_OK;
    size_t n = pol && pol->n_models ? pol->n_models : 1;
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        const char *service = NULL;
        const char *spec = kern_resolve_model(k, model_for(k, f, pol, i, &service));
        rc = buf_printf(&b, "%s%s", i ? " > " : "", spec ? spec : "(none)");
    }
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static size_t cascade_len(const inv *v)
{
    return v->model_override || v->pol->n_models == 0 ? 1 : v->pol->n_models;
}

/* Streamed text, restored from placeholders.  With redaction, text from
 * an unclosed '[' on is held back until it can be restored whole. */
static void on_delta(void *ud, const char *text, size_t len)
{
    mreq *q = ud;
    inv *v = q->v;
    if (!v->streaming || q->i != 0 || !len)
        return;
    if (v->hold) { /* the reply may yet turn out to be tool calls */
        buf_add(&v->held, text, len);
        return;
    }
    v->streamed = 1;
    if (!v->rmap) {
        v->stream(v->stream_ud, text, len);
        return;
    }
    if (buf_add(&v->held, text, len) != SK_OK)
        return;
    size_t cut = v->held.len;
    char *open = strrchr(v->held.p, '[');
    if (open && !strchr(open, ']') && v->held.p + v->held.len - open < 64)
        cut = (size_t)(open - v->held.p);
    if (!cut)
        return;
    char save = v->held.p[cut];
    v->held.p[cut] = '\0';
    char *out = NULL;
    if (rd_restore(v->rmap, v->held.p, &out) == SK_OK) {
        v->stream(v->stream_ud, out, strlen(out));
        free(out);
    }
    v->held.p[cut] = save;
    memmove(v->held.p, v->held.p + cut, v->held.len - cut + 1);
    v->held.len -= cut;
}

static void start_request(mreq *q);
static void after_samples(inv *v);
static void judged(inv *v, sk_status st, char *text, sk_err *err);
static int answer_is_label(const inv *v);
static void self_check(inv *v);
static void self_checked(inv *v, sk_status st, char *text, sk_err *err);
static void decide(inv *v);

/* ---- the response cache, limits and recording --------------------------- */

/* Deterministic calls are cached: the policy says so, or (auto) the
 * function runs at temperature 0.  Samples want variety: never cached. */
static int cacheable(const inv *v)
{
    if (v->n_samples > 1 || v->pol->cache == 0 || v->no_cache)
        return 0;
    if (v->pol->cache == 1)
        return 1;
    return v->settings && !isnan(v->settings->temperature) &&
           v->settings->temperature == 0.0;
}

/* Two 64-bit FNV-1a hashes with different seeds, over everything that
 * decides a reply: 128 bits, so distinct requests do not collide. */
typedef struct hash2 {
    uint64_t a, b;
} hash2;

static void h_add(hash2 *h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ (unsigned char)s[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    }
    /* a separator, so ("ab","c") and ("a","bc") differ */
    h->a = (h->a ^ 0x1f) * 0x100000001b3ULL;
    h->b = (h->b ^ 0x1e) * 0x100000001b3ULL;
}

static void h_str(hash2 *h, const char *s) { h_add(h, s ? s : "\x01", s ? strlen(s) : 1); }

static char *cache_key(const inv *v, const model_req *r)
{
    hash2 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    char num[128];
    h_str(&h, v->spec);
    h_str(&h, v->conn->endpoint); /* two servers behind one model name */
    h_str(&h, r->model);
    snprintf(num, sizeof num, "%d|%.17g|%.17g|%.17g|%.17g|%d|%d", r->max_tokens,
             r->temperature, r->top_p, r->presence_penalty, r->frequency_penalty,
             r->logprobs, r->top_logprobs);
    h_str(&h, num);
    for (size_t i = 0; i < r->n_stop; i++)
        h_str(&h, r->stop[i]);
    h_str(&h, r->json_schema);
    h_str(&h, r->regex);
    for (size_t i = 0; i < r->n_choices; i++)
        h_str(&h, r->choices[i]);
    for (size_t i = 0; i < r->n_msgs; i++) {
        h_str(&h, r->msgs[i].role);
        h_str(&h, r->msgs[i].content);
        for (size_t c = 0; c < r->msgs[i].n_calls; c++) {
            h_str(&h, r->msgs[i].calls[c].id);
            h_str(&h, r->msgs[i].calls[c].name);
            h_str(&h, r->msgs[i].calls[c].arguments);
        }
        if (r->msgs[i].call_id) {
            h_str(&h, r->msgs[i].call_id);
            h_str(&h, r->msgs[i].is_error ? "error" : "result");
        }
    }
    /* the tools offered, and how the model may use them */
    if (r->n_tools) {
        snprintf(num, sizeof num, "tools|%d|%d", (int)r->tool_choice,
                 r->parallel_tool_calls);
        h_str(&h, num);
        for (size_t i = 0; i < r->n_tools; i++) {
            h_str(&h, r->tools[i].name);
            h_str(&h, r->tools[i].description);
            h_str(&h, r->tools[i].parameters);
            h_str(&h, r->tools[i].strict ? "strict" : "");
        }
    }
    return sk_asprintf("resp2:%016llx%016llx", (unsigned long long)h.a,
                       (unsigned long long)h.b);
}

static void sample_done(mreq *q, sk_status st, model_resp *resp, sk_err *err);

/* A reply cut by the token limit, whatever the server calls it: OpenAI's
 * "length", Anthropic's "max_tokens", Ollama's done_reason "length". */
static int truncated(const model_resp *r)
{
    const char *f = r ? r->finish_reason : NULL;
    return f && (strcmp(f, "length") == 0 || strcmp(f, "max_tokens") == 0 ||
                 strcmp(f, "model_length") == 0);
}

/* "tool_calls": [{"id", "name", "arguments"}] of r into j.  0 on memory. */
static int add_calls_json(cJSON *j, const model_resp *r)
{
    cJSON *arr = cJSON_AddArrayToObject(j, "tool_calls");
    for (size_t i = 0; arr && i < r->n_calls; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c || !cJSON_AddItemToArray(arr, c) ||
            !cJSON_AddStringToObject(c, "id", r->calls[i].id ? r->calls[i].id : "") ||
            !cJSON_AddStringToObject(c, "name", r->calls[i].name ? r->calls[i].name : "") ||
            !cJSON_AddStringToObject(c, "arguments",
                                     r->calls[i].arguments ? r->calls[i].arguments : ""))
            return 0;
    }
    return arr != NULL;
}

/* The cache holds the whole reply the checks read: its text, the finish
 * reason, the model that answered, the logprobs.  A hit goes through the
 * same checks as the reply did, so it ends the same way: what was
 * uncertain, escalated, filtered or rejected stays so.  Caller frees. */
static char *resp_to_cache(const model_resp *r)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "text", r->text ? r->text : "");
    if (r->finish_reason)
        cJSON_AddStringToObject(j, "finish_reason", r->finish_reason);
    if (r->model)
        cJSON_AddStringToObject(j, "model", r->model);
    if (r->n_logprobs) {
        cJSON *lp = cJSON_AddArrayToObject(j, "logprobs");
        for (size_t i = 0; lp && i < r->n_logprobs; i++) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(r->logprobs[i].token));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(r->logprobs[i].logprob));
            cJSON_AddItemToArray(lp, pair);
        }
    }
    if (r->n_calls && !add_calls_json(j, r)) {
        cJSON_Delete(j);
        return NULL;
    }
    return cfg_json_take(j);
}

/* A cached reply back as a response, or NULL (unreadable, or memory). */
static model_resp *resp_from_cache(const char *value)
{
    cJSON *j = cJSON_Parse(value);
    const cJSON *text = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
    model_resp *r = cJSON_IsString(text) ? sk_calloc(1, sizeof *r) : NULL;
    if (!r) {
        cJSON_Delete(j);
        return NULL;
    }
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "finish_reason");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "logprobs");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(j, "tool_calls");
    int ok = (r->text = sk_strdup(text->valuestring)) != NULL;
    size_t nc = cJSON_IsArray(calls) ? (size_t)cJSON_GetArraySize(calls) : 0;
    if (ok && nc && nc <= TOOL_CALLS_MAX) {
        ok = (r->calls = sk_calloc(nc, sizeof *r->calls)) != NULL;
        const cJSON *c;
        cJSON_ArrayForEach(c, calls) {
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
            const char *args =
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "arguments"));
            if (!ok)
                break;
            sk_tool_call *x = &r->calls[r->n_calls++];
            x->index = (int)r->n_calls - 1;
            ok = (x->id = sk_strdup(id ? id : "")) && (x->name = sk_strdup(name ? name : "")) &&
                 (x->arguments = sk_strdup(args ? args : ""));
        }
    }
    if (ok && cJSON_IsString(fr))
        ok = (r->finish_reason = sk_strdup(fr->valuestring)) != NULL;
    if (ok && cJSON_IsString(model))
        ok = (r->model = sk_strdup(model->valuestring)) != NULL;
    size_t n = cJSON_IsArray(lp) ? (size_t)cJSON_GetArraySize(lp) : 0;
    if (ok && n) {
        ok = (r->logprobs = sk_calloc(n, sizeof *r->logprobs)) != NULL;
        const cJSON *pair;
        cJSON_ArrayForEach(pair, lp) {
            if (!ok)
                break;
            const cJSON *t = cJSON_GetArrayItem(pair, 0), *l = cJSON_GetArrayItem(pair, 1);
            if (!cJSON_IsString(t) || !cJSON_IsNumber(l))
                continue;
            sk_logprob *x = &r->logprobs[r->n_logprobs];
            if (!(x->token = sk_strdup(t->valuestring)))
                ok = 0;
            else {
                x->logprob = l->valuedouble;
                r->n_logprobs++;
            }
        }
    }
    cJSON_Delete(j);
    if (!ok) {
        resp_free(r);
        return NULL;
    }
    r->prompt_tokens = r->completion_tokens = 0;
    r->attempts = 0;
    return r;
}

/* The system message sent, when the request has one besides its prompt. */
static const char *sent_system(const inv *v)
{
    return v->n_send > 1 && strcmp(v->send[0].role, "system") == 0 ? v->send[0].content
                                                                    : NULL;
}

/* The messages sent besides a leading system message: more than one is
 * a chat with earlier turns (the trace shows only the last). */
static int sent_turns(const inv *v)
{
    size_t n = v->n_send;
    if (n && strcmp(v->send[0].role, "system") == 0)
        n--;
    return (int)n;
}

/* A reply from the response cache or the run's journal: no request, no
 * tokens, counted as a hit of its source. */
static void answer_from_store(mreq *q, model_resp *r, int journaled)
{
    inv *v = q->v;
    sk_kernel *k = v->k;
    const char *text = r->text;
    if (journaled) {
        kern_usage(k)->journal_hits++;
    } else {
        kern_usage(k)->cache_hits++;
        sk_model_usage *mu = kern_model_usage(k, v->spec);
        if (mu)
            mu->cache_hits++;
        /* the journal holds what this run saw, from wherever it came */
        if (q->journal_key) {
            char *value = resp_to_cache(r);
            kern_journal_put(k, q->journal_key, q->journal_occ, value);
            free(value);
        }
    }
    long long now = loop_now_ms();
    trace_rec rec = {
        .call = v->call_id,
        .turns = sent_turns(v),
        .function = v->name,
        .model = v->spec,
        .prompt = v->n_send ? v->send[v->n_send - 1].content : v->prompt,
        .reply = text,
        .resp = r,
        .start_ms = now,
        .end_ms = now,
        .cache = journaled ? "journal" : "hit",
        .system = sent_system(v),
    };
    trace_model_call(k, &rec);
    kern_history_put(k, &rec);
    if (v->streaming && q->i == 0)
        on_delta(q, text, strlen(text));
    sample_done(q, SK_OK, r, NULL);
}

static void start_request(mreq *q);

static void retry_request(void *ud) { start_request(ud); }

/* ---- falling back on errors -------------------------------------------- */

/* Whether an error is the server's or the way's, not the caller's: what
 * remains of it after retries is worth another model.  A 4xx other than
 * 408 and 429 says the request itself is wrong (a bad key, an unknown
 * model, a malformed body), which another model would only hide. */
static int fallback_worthy(const sk_err *e)
{
    switch (e->code) {
    case SK_NETWORK:
    case SK_TIMEOUT:
    case SK_PROTOCOL:
        return 1;
    case SK_MODEL:
        return e->http_status == 0 || e->http_status == 408 ||
               e->http_status == 429 || e->http_status >= 500;
    default:
        return 0;
    }
}

/* Whether an error now would move the call to another model. */
static int can_fall_back(const inv *v)
{
    return v->pol->fallback && v->model_idx + 1 < chain_len(v) && !v->streamed;
}

/* An error the run's journal recorded because the call fell back after
 * it: {"error": {"code": N, "message": "...", "http_status": N}}. */
static char *err_to_store(const sk_err *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *o = j ? cJSON_AddObjectToObject(j, "error") : NULL;
    if (!o) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "code", e->code);
    cJSON_AddStringToObject(o, "message", e->message ? e->message : "");
    if (e->http_status)
        cJSON_AddNumberToObject(o, "http_status", e->http_status);
    return cfg_json_take(j);
}

/* The error of a journal record, or NULL (an answer, or unreadable). */
static sk_err *err_from_store(const char *value)
{
    cJSON *j = cJSON_Parse(value);
    const cJSON *o = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(o, "http_status");
    sk_err *e = NULL;
    if (cJSON_IsNumber(code) && code->valuedouble > 0 &&
        code->valuedouble <= SK_STATUS_MAX && cJSON_IsString(msg)) {
        e = err_new((sk_status)code->valuedouble, "%s", msg->valuestring);
        if (e && cJSON_IsNumber(http))
            e->http_status = (int)http->valuedouble;
    }
    cJSON_Delete(j);
    return e;
}

/* This run fell back after this request's error before: the re-run does
 * the same without asking the model again. */
static void error_from_journal(mreq *q, sk_err *e)
{
    inv *v = q->v;
    kern_usage(v->k)->journal_hits++;
    long long now = loop_now_ms();
    trace_rec rec = {
        .call = v->call_id,
        .turns = sent_turns(v),
        .function = v->name,
        .model = v->spec,
        .prompt = v->n_send ? v->send[v->n_send - 1].content : v->prompt,
        .start_ms = now,
        .end_ms = now,
        .err = e,
        .cache = "journal",
    };
    trace_model_call(v->k, &rec);
    sample_done(q, e->code, NULL, e);
}

/* After an error that remains after retries: move the call to the next
 * model of its chain, when its policy falls back and the error is not
 * the caller's.  Takes e when it returns 1. */
static int fall_back(inv *v, sk_err *e)
{
    if (!can_fall_back(v) || !fallback_worthy(e))
        return 0;
    sk_kernel *k = v->k;
    /* the journal remembers that this request failed, so that a re-run
     * falls back without asking again and ends as this run did */
    char *rec = NULL;
    for (size_t i = 0; i < v->n_samples; i++) {
        mreq *q = &v->reqs[i];
        if (!q->journal_key || q->resp)
            continue;
        if (!rec && !(rec = err_to_store(e)))
            break;
        kern_journal_put(k, q->journal_key, q->journal_occ, rec);
    }
    free(rec);
    const char *service = NULL;
    v->model_idx++;
    const char *next = choose_model(v, &service);
    v->model_idx--;
    kern_usage(k)->fallbacks++;
    char status[16] = "";
    if (e->http_status)
        snprintf(status, sizeof status, "%d", e->http_status);
    pipe_trace(v, "fallback", "from", v->spec, "to", next, "error",
               sk_status_kind(e->code), "http_status", status[0] ? status : NULL,
               "message", e->message, (char *)NULL);
    if (buf_printf(&v->fell, "%s%s (%s)", v->fell.len ? ", " : "", v->spec,
                   sk_status_kind(e->code)) != SK_OK) {
        err_free(e);
        fail(v, NULL);
        return 1;
    }
    err_free(e);
    attempt_free(v);
    v->model_idx++;
    start_attempt(v);
    return 1;
}

/* The last model's error, saying which models were tried before it. */
static sk_err *after_fallbacks(inv *v, sk_err *e)
{
    if (!e || !v->fell.len)
        return e;
    char *m = sk_asprintf("%s (after falling back from %s)", e->message, v->fell.p);
    if (m) {
        free(e->message);
        e->message = m;
    }
    return e;
}

/* A request's tokens for rate limiting: the prompt at about four bytes a
 * token, plus what the reply may use. */
static long estimate_tokens(const model_req *r)
{
    size_t bytes = 0;
    for (size_t i = 0; i < r->n_msgs; i++)
        bytes += strlen(r->msgs[i].content);
    return (long)(bytes / 4) + (r->max_tokens > 0 ? r->max_tokens : 256);
}

/* Appends the exchange to the SKEIN_RECORD cassette: one JSON line that
 * the scripted model can replay ("scripted:cassette.jsonl"). */
static void record_exchange(inv *v, const model_resp *resp, const sk_err *err)
{
    FILE *f = kern_record_file(v->k);
    if (!f)
        return;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return;
    cJSON_AddStringToObject(j, "function", v->name);
    cJSON_AddStringToObject(j, "model", v->spec ? v->spec : "");
    cJSON_AddStringToObject(j, "prompt", v->n_send ? v->send[v->n_send - 1].content : "");
    cJSON *msgs = cJSON_AddArrayToObject(j, "messages");
    for (size_t i = 0; msgs && i < v->n_send; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", v->send[i].role);
        cJSON_AddStringToObject(m, "content", v->send[i].content);
        if (v->send[i].call_id)
            cJSON_AddStringToObject(m, "tool_call_id", v->send[i].call_id);
        if (v->send[i].n_calls) {
            model_resp calls = {.calls = v->send[i].calls, .n_calls = v->send[i].n_calls};
            add_calls_json(m, &calls);
        }
        cJSON_AddItemToArray(msgs, m);
    }
    if (resp) {
        cJSON_AddStringToObject(j, "reply", resp->text ? resp->text : "");
        if (resp->n_calls)
            add_calls_json(j, resp);
        if (resp->finish_reason)
            cJSON_AddStringToObject(j, "finish_reason", resp->finish_reason);
        if (resp->n_logprobs) {
            cJSON *lp = cJSON_AddArrayToObject(j, "logprobs");
            for (size_t i = 0; lp && i < resp->n_logprobs; i++) {
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateString(resp->logprobs[i].token));
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(resp->logprobs[i].logprob));
                cJSON_AddItemToArray(lp, pair);
            }
        }
        cJSON *u = cJSON_AddObjectToObject(j, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)resp->prompt_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)resp->completion_tokens);
    } else if (err) {
        cJSON *e = cJSON_AddObjectToObject(j, "error");
        cJSON_AddStringToObject(e, "kind", sk_status_kind(err->code));
        cJSON_AddStringToObject(e, "message", err->message ? err->message : "");
        if (err->http_status)
            cJSON_AddNumberToObject(e, "http_status", err->http_status);
    }
    cJSON_AddStringToObject(j, "call", v->call_id);
    char *line = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (line) {
        fprintf(f, "%s\n", line);
        fflush(f);
        cJSON_free(line);
    }
}

static void start_next_waiting(sk_kernel *k)
{
    inv_queue *q = k->waiting;
    while (q && q->head && k->model_inflight < k->max_inflight) {
        mreq *r = q->head;
        q->head = r->next_wait;
        if (!q->head)
            q->tail = NULL;
        r->next_wait = NULL;
        start_request(r);
    }
}

static void sample_done(mreq *q, sk_status st, model_resp *resp, sk_err *err)
{
    inv *v = q->v;
    if (st == SK_OK && resp) {
        q->resp = resp;
        err_free(err);
    } else {
        resp_free(resp);
        if (!v->sample_err)
            v->sample_err = err ? err : err_new(st, "%s", sk_strerror(st));
        else
            err_free(err);
    }
    if (--v->pending_samples == 0)
        after_samples(v);
}

static void model_done(void *ud, sk_status st, model_resp *resp, sk_err *err)
{
    mreq *q = ud;
    inv *v = q->v;
    sk_kernel *k = v->k;
    sk_usage *u = kern_usage(k);
    k->model_inflight--;
    u->calls++;
    if (resp) {
        if (resp->prompt_tokens > 0)
            u->prompt_tokens += resp->prompt_tokens;
        if (resp->completion_tokens > 0)
            u->completion_tokens += resp->completion_tokens;
        if (resp->attempts > 1)
            u->retries += resp->attempts - 1;
    }
    if (st != SK_OK)
        u->failures++;
    long long now = loop_now_ms();
    sk_model_usage *mu = kern_model_usage(k, v->spec);
    if (mu) {
        mu->calls++;
        mu->busy_ms += now - q->t0;
        if (resp && resp->prompt_tokens > 0)
            mu->prompt_tokens += resp->prompt_tokens;
        if (resp && resp->completion_tokens > 0)
            mu->completion_tokens += resp->completion_tokens;
        if (st != SK_OK)
            mu->failures++;
    }
    if (q->admitted) {
        long actual = resp && resp->prompt_tokens >= 0 && resp->completion_tokens >= 0
                          ? resp->prompt_tokens + resp->completion_tokens
                          : -1;
        lim_done(k, v->spec, q->est_tokens, actual);
        q->admitted = 0;
    }
    /* The cache keeps a whole reply (a cut one only where the function
     * continues cut replies: elsewhere it is an error, and errors are not
     * kept).  The journal keeps every answer the run received, cut ones
     * too: the re-run must see what this run saw, and end the same way. */
    if (q->cache_key)
        u->cache_misses++;
    int keep = st == SK_OK && resp && resp->text;
    int cache_it = keep && q->cache_key && (!truncated(resp) || v->pol->continuations > 0);
    if (cache_it || (keep && q->journal_key)) {
        char *value = resp_to_cache(resp);
        if (value && cache_it)
            kern_cache_put(k, q->cache_key, value);
        if (q->journal_key)
            kern_journal_put(k, q->journal_key, q->journal_occ, value);
        free(value);
    }
    record_exchange(v, resp, err);
    /* the trace shows the prompt as sent: redacted, with any instruction */
    trace_rec rec = {
        .call = v->call_id,
        .turns = sent_turns(v),
        .function = v->name,
        .model = v->spec,
        .prompt = v->n_send ? v->send[v->n_send - 1].content : v->prompt,
        .reply = resp ? resp->text : NULL,
        .resp = resp,
        .start_ms = q->t0,
        .end_ms = loop_now_ms(),
        .attempts = resp ? resp->attempts : 0,
        .err = err,
        .cache = q->cache_key ? "miss" : NULL,
        .system = sent_system(v),
    };
    trace_model_call(k, &rec);
    kern_history_put(k, &rec);
    start_next_waiting(k);
    if (st == SK_OK && !resp)
        st = SK_PROTOCOL;
    sample_done(q, st, resp, err);
}

/* The request for sample q of this attempt, as the connector is given
 * it: the model stage sends it, a dry run shows it.  Borrows from v. */
static void request_for(const mreq *q, model_req *out)
{
    const inv *v = q->v;
    const cfg_settings *s = v->settings;
    model_req req = {
        .function = v->name,
        /* a cascade and fallbacks name their models in full; model_id
         * would override */
        .model = s && s->model_id && cascade_len(v) == 1 && !v->model_override &&
                         v->model_idx == 0
                     ? s->model_id
                     : v->conn->model,
        .msgs = v->send,
        .n_msgs = v->n_send,
        .prompt = v->n_send ? v->send[v->n_send - 1].content : v->prompt,
        .max_tokens = s ? s->max_tokens : -1,
        /* samples want variety: a temperature of their own */
        .temperature = v->n_samples > 1 ? v->pol->sample_temperature
                       : s ? s->temperature : NAN,
        .top_p = s ? s->top_p : NAN,
        .presence_penalty = s ? s->presence_penalty : NAN,
        .frequency_penalty = s ? s->frequency_penalty : NAN,
        .stop = s ? s->stop : NULL,
        .n_stop = s ? s->n_stop : 0,
        .logprobs = v->pol->want_logprobs || v->pol->cal_signal == SIG_LOGPROB,
        .stream = v->streaming && q->i == 0,
    };
    if (v->pol->shape)
        shape_request(v->pol->shape, &req.json_schema, &req.choices, &req.n_choices,
                      &req.regex);
    tools_request(v, &req, q->i);
    *out = req;
}

static void start_request(mreq *q)
{
    inv *v = q->v;
    sk_kernel *k = v->k;
    model_req req;
    request_for(q, &req);
    if (q->i == 0) /* a reply that may be tool calls streams once it is not */
        v->hold = req.n_tools && req.tool_choice != CFG_CHOICE_NONE;
    /* the run's journal: this exact request's answer, if it was had */
    if (!q->journal_key && kern_journal_on(k)) {
        q->journal_key = cache_key(v, &req);
        q->journal_occ = q->journal_key ? kern_journal_next(k, q->journal_key) : -1;
    }
    if (q->journal_key) {
        char *hit = NULL;
        kern_journal_get(k, q->journal_key, q->journal_occ, &hit);
        sk_err *fell = hit && can_fall_back(v) ? err_from_store(hit) : NULL;
        model_resp *got = hit && !fell ? resp_from_cache(hit) : NULL;
        free(hit);
        if (fell) {
            error_from_journal(q, fell);
            return;
        }
        if (got) {
            answer_from_store(q, got, 1);
            return;
        }
    }
    /* the response cache, for deterministic calls: the same key */
    if (!q->cache_key && cacheable(v))
        q->cache_key = q->journal_key ? sk_strdup(q->journal_key) : cache_key(v, &req);
    if (q->cache_key) {
        char *hit = NULL;
        kern_cache_get(k, q->cache_key, &hit);
        model_resp *cached = hit ? resp_from_cache(hit) : NULL;
        free(hit);
        if (cached) {
            answer_from_store(q, cached, 0);
            return;
        }
    }
    /* the endpoint's rate limits: wait on a timer, never drop */
    if (!q->admitted) {
        q->est_tokens = estimate_tokens(&req);
        long wait = lim_admit(k, v->spec, q->est_tokens);
        if (wait > 0) {
            if (loop_after(k, wait, retry_request, q, NULL) != SK_OK)
                sample_done(q, SK_NOMEM, NULL, NULL);
            return;
        }
        q->admitted = 1;
    }
    sk_err *err = NULL;
    q->t0 = loop_now_ms();
    sk_status st = v->conn->vt->start(v->conn->self, k, &req, on_delta,
                                      model_done, q, &q->handle, &err);
    if (st != SK_OK) {
        kern_usage(k)->failures++;
        if (q->admitted) {
            lim_done(k, v->spec, q->est_tokens, -1);
            q->admitted = 0;
        }
        if (!err)
            err = err_new(st, "%s: could not start the model call: %s",
                          v->name, sk_strerror(st));
        sample_done(q, st, NULL, err);
        return;
    }
    k->model_inflight++;
}

static void enqueue_request(mreq *q)
{
    sk_kernel *k = q->v->k;
    if (k->model_inflight < k->max_inflight) {
        start_request(q);
        return;
    }
    inv_queue *w = k->waiting;
    if (w->tail)
        w->tail->next_wait = q;
    else
        w->head = q;
    w->tail = q;
}

static sk_status redact_text(inv *v, const char *in, char **out);

sk_status pipe_redact(inv *v, const char *in, char **out)
{
    if (!v->rmap) {
        *out = sk_strdup(in);
        return *out ? SK_OK : SK_NOMEM;
    }
    return redact_text(v, in, out);
}

char *pipe_restore(inv *v, const char *text)
{
    char *out = NULL;
    if (!v->rmap)
        return sk_strdup(text);
    return rd_restore(v->rmap, text, &out) == SK_OK ? out : NULL;
}

/* Redacts one message text: custom rules first, then the built-in ones. */
static sk_status redact_text(inv *v, const char *in, char **out)
{
    rd_rules *defaults = kern_redact_rules(v->k);
    if (!defaults)
        return SK_NOMEM;
    char *tmp = NULL;
    const char *src = in;
    if (v->pol->redact_rules) {
        sk_status rc = rd_redact(v->pol->redact_rules, v->rmap, in, &tmp);
        if (rc != SK_OK)
            return rc;
        src = tmp;
    }
    sk_status rc = rd_redact(defaults, v->rmap, src, out);
    free(tmp);
    return rc;
}

/* Builds the messages to send for this attempt: the protocol instruction
 * on the last message, then redaction when it applies to this model. */
static sk_status build_send(inv *v)
{
    v->send = sk_calloc(v->n_msgs, sizeof *v->send);
    if (!v->send)
        return SK_NOMEM;
    v->n_send = v->n_msgs;
    int redact = v->pol->redact == 1 || (v->pol->redact == -1 && !rd_is_local(v->spec));
    if (redact && !(v->rmap = rd_map_new()))
        return SK_NOMEM;
    for (size_t i = 0; i < v->n_msgs; i++) {
        if (!(v->send[i].role = sk_strdup(v->msgs[i].role)))
            return SK_NOMEM;
        const char *content = v->msgs[i].content;
        char *with = NULL;
        if ((v->pol->protocol || v->pol->verbalized) && i == v->n_msgs - 1) {
            if (!(with = sk_asprintf("%s%s%s", content,
                                     v->pol->protocol ? unc_protocol_instruction() : "",
                                     v->pol->verbalized ? unc_verbal_instruction()
                                                        : "")))
                return SK_NOMEM;
            content = with;
        }
        if (v->shape_feedback && i == v->n_msgs - 1) {
            char *fb = sk_asprintf("%s%s", content, v->shape_feedback);
            free(with);
            if (!(with = fb))
                return SK_NOMEM;
            content = with;
        }
        if (v->rmap) {
            sk_status rc = redact_text(v, content, &v->send[i].content);
            free(with);
            if (rc != SK_OK)
                return rc;
        } else {
            v->send[i].content = with ? with : sk_strdup(content);
            if (!v->send[i].content)
                return SK_NOMEM;
        }
    }
    if (v->rmap && rd_map_count(v->rmap)) {
        v->redacted = 1;
        kern_usage(v->k)->redacted += (long)rd_map_count(v->rmap);
        char n[32];
        snprintf(n, sizeof n, "%zu", rd_map_count(v->rmap));
        pipe_trace(v, "redacted", "model", v->spec, "values", n, (char *)NULL);
    }
    return SK_OK;
}

/* Whether a stage after the model could still replace the reply, or
 * reject it for what it says (so that it must not stream): samples, a
 * cascade, the uncertainty checks, the shape, output filters, review.
 * The truncation check is not among them: a streamed reply that turns
 * out cut ends with the `truncated` error after the text the model did
 * write, and a continued one streams on. */
static int later_stages_may_change(const inv *v, size_t n)
{
    const sk_policy *p = v->pol;
    return n > 1 || cascade_len(v) > 1 || p->protocol || p->hedging ||
           p->asks_back || p->verbalized || p->self_check || p->cal_signal ||
           p->check_logprobs || p->shape || p->n_out || p->review;
}

/* ---- the dry run: stop before the model --------------------------------- */

#define DRY_MARK "[dry run: the answer of "

/* Adds the request's settings as they are sent (unset ones left out). */
static void add_settings(cJSON *o, const model_req *r)
{
    cJSON *s = cJSON_AddObjectToObject(o, "settings");
    if (!s)
        return;
    cJSON_AddStringToObject(s, "model", r->model ? r->model : "");
    if (r->max_tokens >= 0)
        cJSON_AddNumberToObject(s, "max_tokens", r->max_tokens);
    const struct { const char *name; double v; } d[] = {
        {"temperature", r->temperature}, {"top_p", r->top_p},
        {"presence_penalty", r->presence_penalty},
        {"frequency_penalty", r->frequency_penalty}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        if (isfinite(d[i].v))
            cJSON_AddNumberToObject(s, d[i].name, d[i].v);
    if (r->n_stop) {
        cJSON *a = cJSON_AddArrayToObject(s, "stop");
        for (size_t i = 0; a && i < r->n_stop; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(r->stop[i] ? r->stop[i] : ""));
    }
    if (r->logprobs)
        cJSON_AddTrueToObject(s, "logprobs");
    if (r->json_schema)
        cJSON_AddItemToObject(s, "json_schema", cJSON_CreateRaw(r->json_schema));
    if (r->n_choices) {
        cJSON *a = cJSON_AddArrayToObject(s, "choices");
        for (size_t i = 0; a && i < r->n_choices; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(r->choices[i] ? r->choices[i] : ""));
    }
    if (r->regex)
        cJSON_AddStringToObject(s, "regex", r->regex);
}

/* Adds spec, masked, to array a. */
static void add_masked(cJSON *a, const char *spec)
{
    char *m = url_mask(spec);
    cJSON_AddItemToArray(a, cJSON_CreateString(m ? m : "(out of memory)"));
    free(m);
}

/* The report of a dry run: this attempt's first request as it would be
 * sent.  NULL with *err (the connector could not describe it), or NULL
 * alone when memory ran out. */
static char *dry_run_report(inv *v, const model_req *req, sk_err **err)
{
    *err = NULL;
    char *wire = NULL;
    if (v->conn->vt->describe &&
        v->conn->vt->describe(v->conn->self, v->k, req, &wire, err) != SK_OK)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *request = wire ? cJSON_Parse(wire) : cJSON_CreateNull();
    free(wire);
    if (!o || !request) {
        cJSON_Delete(o);
        cJSON_Delete(request);
        return NULL;
    }
    /* the body exactly as it would be sent, not as cJSON would print it */
    cJSON *body = cJSON_GetObjectItemCaseSensitive(request, "body");
    if (cJSON_IsString(body))
        cJSON_ReplaceItemInObjectCaseSensitive(request, "body",
                                               cJSON_CreateRaw(body->valuestring));
    cJSON_AddStringToObject(o, "function", v->name);
    char *model = url_mask(v->spec);
    cJSON_AddStringToObject(o, "model", model ? model : "");
    free(model);
    size_t n = chain_len(v);
    if (n > 1) {
        /* the cascade's steps and the fallbacks, this one first */
        cJSON *chain = cJSON_AddArrayToObject(o, "models");
        size_t here = v->model_idx;
        for (size_t i = here; chain && i < n; i++) {
            const char *service = NULL;
            v->model_idx = i;
            add_masked(chain, choose_model(v, &service));
        }
        v->model_idx = here;
    }
    cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
    for (size_t i = 0; msgs && i < req->n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", req->msgs[i].role);
        cJSON_AddStringToObject(m, "content", req->msgs[i].content);
        cJSON_AddItemToArray(msgs, m);
    }
    add_settings(o, req);
    cJSON_AddBoolToObject(o, "stream", req->stream);
    cJSON_AddNumberToObject(o, "samples", (double)v->n_samples);
    cJSON_AddNumberToObject(o, "redacted", v->rmap ? (double)rd_map_count(v->rmap) : 0);
    /* would the response cache answer it?  (a look, nothing stored) */
    const char *cache = "off";
    if (cacheable(v) && !kern_cache_off(v->k)) {
        char *key = cache_key(v, req), *hit = NULL;
        if (key)
            kern_cache_get(v->k, key, &hit);
        cache = hit ? "hit" : "miss";
        free(hit);
        free(key);
    }
    cJSON_AddStringToObject(o, "cache", cache);
    cJSON *notes = cJSON_AddArrayToObject(o, "notes");
    char *note = NULL;
    if (v->n_samples > 1 &&
        (note = sk_asprintf("%zu requests like this one go out at once (samples), "
                            "each at temperature %g", v->n_samples,
                            v->pol->sample_temperature)))
        cJSON_AddItemToArray(notes, cJSON_CreateString(note));
    free(note);
    note = NULL;
    if (v->dry_skipped.len &&
        (note = sk_asprintf("not run, since they ask a model: input filter %s",
                            v->dry_skipped.p)))
        cJSON_AddItemToArray(notes, cJSON_CreateString(note));
    free(note);
    for (size_t i = 0; i < req->n_msgs; i++)
        if (strstr(req->msgs[i].content, DRY_MARK)) {
            cJSON_AddItemToArray(notes, cJSON_CreateString(
                "the prompt inserts the answers of other semantic functions, "
                "which a dry run does not fetch: " DRY_MARK "...] marks where"));
            break;
        }
    if (!v->conn->vt->describe)
        cJSON_AddItemToArray(notes, cJSON_CreateString(
            "an in-process model: no request leaves the machine"));
    cJSON_AddItemToObject(o, "request", request);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    char *copy = text ? sk_strdup(text) : NULL;
    cJSON_free(text);
    return copy;
}

/* The dry-run stage: everything up to the model has run; nothing goes
 * out.  At the top the request is the result; inside a dry run (a
 * function block, a native's call) a mark stands where the answer would
 * go. */
static void dry_run_stop(inv *v)
{
    model_req req;
    request_for(&v->reqs[0], &req);
    char *out;
    sk_err *err = NULL;
    if (v->dry_run == 2)
        out = sk_asprintf(DRY_MARK "%s]", v->name);
    else
        out = dry_run_report(v, &req, &err);
    if (!out) {
        fail(v, err);
        return;
    }
    char *model = url_mask(v->spec);
    pipe_trace(v, "dry_run", "model", model, (char *)NULL);
    free(model);
    inv_finish(v, SK_OK, out, NULL);
}

/* One attempt on the current model of the cascade: every sample at once. */
static void start_attempt(inv *v)
{
    sk_kernel *k = v->k;
    const char *service = NULL;
    const char *spec = kern_resolve_model(k, choose_model(v, &service));
    if (!spec) {
        fail(v, err_new(SK_CONFIG,
                        "no model configured for %s: set SKEIN_MODEL (e.g. "
                        "openai:gpt-4o-mini or scripted:rules.json), "
                        "OPENAI_API_KEY or OPENAI_BASE_URL, or pass --model",
                        v->name));
        return;
    }
    if (!(v->spec = sk_strdup(spec))) {
        fail(v, NULL);
        return;
    }
    sk_err *err = NULL;
    v->conn = kern_connector(k, spec, &err);
    if (!v->conn) {
        fail(v, after_fallbacks(v, err));
        return;
    }
    v->settings = v->f ? cfg_settings_for(v->f->cfg, service) : NULL;
    if (!k->waiting && !(k->waiting = sk_calloc(1, sizeof *k->waiting))) {
        fail(v, NULL);
        return;
    }
    if (build_send(v) != SK_OK) {
        fail(v, NULL);
        return;
    }
    if (tools_prepare(v, &err) != SK_OK) {
        fail(v, err);
        return;
    }
    size_t n = (size_t)(v->pol->samples > 0 ? v->pol->samples : 1);
    /* streamed text cannot be taken back: stream only when no later stage
     * can replace or reject the reply */
    v->streaming = v->stream && !later_stages_may_change(v, n);
    v->reqs = sk_calloc(n, sizeof *v->reqs);
    if (!v->reqs) {
        fail(v, NULL);
        return;
    }
    v->n_samples = n;
    for (int i = 0; i < SIG_COUNT; i++)
        v->sc[i] = -1;
    for (size_t i = 0; i < n; i++) {
        v->reqs[i].v = v;
        v->reqs[i].i = i;
    }
    if (v->dry_run) {
        dry_run_stop(v);
        return;
    }
    /* with tool calls to run, the answer's other samples wait for the
     * conversation the rounds make (tools.c) */
    pipe_start_samples(v, 0);
}

void pipe_start_samples(inv *v, size_t from)
{
    size_t to = from == 0 && tools_loop(v) ? 1 : v->n_samples;
    /* a request that fails to start completes at once; hold one count so
     * the stage cannot end before every request is out */
    v->pending_samples = to - from + 1;
    for (size_t i = from; i < to; i++)
        enqueue_request(&v->reqs[i]);
    if (--v->pending_samples == 0)
        after_samples(v);
}

model_resp *pipe_reply(const inv *v, size_t i)
{
    return v->reqs && i < v->n_samples ? v->reqs[i].resp : NULL;
}

void pipe_request_again(inv *v)
{
    resp_free(v->reqs[0].resp);
    free(v->reqs[0].cache_key);
    free(v->reqs[0].journal_key);
    memset(&v->reqs[0], 0, sizeof v->reqs[0]);
    v->reqs[0].v = v;
    v->pending_samples = 1;
    enqueue_request(&v->reqs[0]);
}

/* The text of sample i (after what earlier continuations brought), with
 * redacted values put back.  Caller frees. */
static char *restored(inv *v, size_t i)
{
    const char *t = v->reqs[i].resp->text ? v->reqs[i].resp->text : "";
    char *joined = NULL;
    if (i == 0 && v->partial.len) {
        if (!(joined = sk_asprintf("%s%s", v->partial.p, t)))
            return NULL;
        t = joined;
    }
    char *out = NULL;
    if (!v->rmap)
        out = sk_strdup(t);
    else if (rd_restore(v->rmap, t, &out) != SK_OK)
        out = NULL;
    free(joined);
    return out;
}

/* A reply cut by the token limit: ask for the rest (when the function
 * continues cut replies), or raise `truncated`.  Returns 1 when it took
 * over the invoke. */
static int handle_truncation(inv *v)
{
    if (v->pol->continuations < 0)
        return 0; /* "accept": the limit is the function's budget */
    size_t cut = v->n_samples;
    for (size_t i = 0; i < v->n_samples; i++)
        if (truncated(v->reqs[i].resp)) {
            cut = i;
            break;
        }
    if (cut == v->n_samples)
        return 0;
    const model_resp *r = v->reqs[cut].resp;
    const char *chunk = r->text ? r->text : "";
    if (v->n_samples == 1 && v->continued < v->pol->continuations && !r->n_calls) {
        /* the reply so far as the assistant's, and a request to go on */
        sk_msg *m = sk_realloc(v->send, (v->n_send + 2) * sizeof *m);
        if (!m) {
            fail(v, NULL);
            return 1;
        }
        v->send = m;
        memset(&m[v->n_send], 0, 2 * sizeof *m);
        m[v->n_send].role = sk_strdup("assistant");
        m[v->n_send].content = sk_strdup(chunk);
        m[v->n_send + 1].role = sk_strdup("user");
        m[v->n_send + 1].content = sk_strdup("Continue exactly where you stopped. Do "
                                             "not repeat anything already written.");
        v->n_send += 2;
        if (!m[v->n_send - 2].role || !m[v->n_send - 2].content ||
            !m[v->n_send - 1].role || !m[v->n_send - 1].content ||
            buf_adds(&v->partial, chunk) != SK_OK) {
            fail(v, NULL);
            return 1;
        }
        v->continued++;
        char n[16];
        snprintf(n, sizeof n, "%d", v->continued);
        pipe_trace(v, "continue", "model", v->spec, "round", n, (char *)NULL);
        resp_free(v->reqs[0].resp);
        free(v->reqs[0].cache_key);
        free(v->reqs[0].journal_key);
        memset(&v->reqs[0], 0, sizeof v->reqs[0]);
        v->reqs[0].v = v;
        v->pending_samples = 1;
        enqueue_request(&v->reqs[0]);
        return 1;
    }
    int max_tokens = v->settings ? v->settings->max_tokens : -1;
    char limit[48] = "";
    if (max_tokens > 0)
        snprintf(limit, sizeof limit, " (max_tokens %d)", max_tokens);
    pipe_trace(v, "truncated", "model", v->spec, "finish_reason", r->finish_reason,
               (char *)NULL);
    sk_err *e = err_new(SK_TRUNCATED, "%s: the reply was cut by the token limit%s%s; "
                        "raise max_tokens, or let the function continue cut replies "
                        "(\"truncated\": {\"continue\": 2})",
                        v->name, limit,
                        v->continued ? " even after continuing" : "");
    if (e) {
        char *text = restored(v, cut);
        sk_buf b;
        buf_init(&b, 0);
        if (text && buf_adds(&b, "{\"output\":") == SK_OK &&
            buf_add_json_str(&b, text, strlen(text)) == SK_OK &&
            buf_adds(&b, ",\"finish_reason\":") == SK_OK &&
            buf_add_json_str(&b, r->finish_reason, strlen(r->finish_reason)) == SK_OK &&
            buf_addc(&b, '}') == SK_OK)
            e->detail_json = buf_steal(&b);
        buf_free(&b);
        free(text);
    }
    fail(v, e);
    return 1;
}

/* The reply is uncertain: escalate to the next model, or raise. */
static void uncertain(inv *v, unc_verdict *vd)
{
    sk_usage *u = kern_usage(v->k);
    u->uncertain++;
    char conf[32] = "";
    if (vd->confidence >= 0)
        snprintf(conf, sizeof conf, "%.3f", vd->confidence);
    pipe_trace(v, "uncertain", "model", v->spec, "reason", vd->reason,
               "question", vd->question, "confidence", conf[0] ? conf : NULL,
               (char *)NULL);
    if (v->model_idx + 1 < cascade_len(v)) {
        u->escalations++;
        pipe_trace(v, "escalate", "from", v->spec, "to",
                   v->pol->models[v->model_idx + 1], "reason", vd->reason,
                   (char *)NULL);
        unc_verdict_clear(vd);
        attempt_free(v);
        v->model_idx++;
        start_attempt(v);
        return;
    }
    size_t n = v->n_samples;
    sk_err *e = err_new(SK_UNCERTAIN, "%s is uncertain: %s%s%s", v->name,
                        vd->reason ? vd->reason : "unclear intent",
                        vd->question ? "; it asks: " : "",
                        vd->question ? vd->question : "");
    if (e) /* with several samples, their answers are the candidates */
        e->detail_json = unc_detail_json(vd->reason, vd->question, vd->confidence,
                                         n > 1 ? v->texts : NULL, n > 1 ? n : 0,
                                         v->texts[v->pick]);
    unc_verdict_clear(vd);
    fail(v, e);
}

/* The checks passed: the picked sample is the reply, once it has the
 * required shape.  An answer of the wrong shape is asked for again with
 * the problem, up to the shape's retries. */
static void accept_reply(inv *v)
{
    free(v->reply);
    v->reply = v->texts[v->pick];
    v->texts[v->pick] = NULL;
    const model_resp *r = v->reqs[v->pick].resp;
    if (v->out && r->n_logprobs && !v->out->lp &&
        (v->out->lp = sk_calloc(r->n_logprobs, sizeof *v->out->lp))) {
        for (size_t i = 0; i < r->n_logprobs; i++) {
            v->out->lp[i].logprob = r->logprobs[i].logprob;
            v->out->lp[i].token = sk_strdup(r->logprobs[i].token ? r->logprobs[i].token : "");
        }
        v->out->n_lp = r->n_logprobs;
    }
    if (v->pol->shape) {
        char *problem = NULL, *clean = NULL;
        int fit = shape_check(v->pol->shape, v->reply, &problem, &clean);
        if (fit < 0) {
            free(problem);
            free(clean);
            fail(v, NULL);
            return;
        }
        if (!fit) {
            char round[16];
            snprintf(round, sizeof round, "%d", v->shape_round + 1);
            pipe_trace(v, "output_retry", "problem", problem, "round", round, (char *)NULL);
            if (v->shape_round < shape_retries(v->pol->shape)) {
                v->shape_round++;
                free(v->shape_feedback);
                v->shape_feedback = sk_asprintf(
                    "\n\nYour previous answer was:\n%s\nIt does not have the required "
                    "form: %s\nAnswer again, in exactly the required form.",
                    v->reply, problem ? problem : "wrong form");
                free(problem);
                free(clean);
                if (!v->shape_feedback) {
                    fail(v, NULL);
                    return;
                }
                attempt_free(v);
                start_attempt(v);
                return;
            }
            sk_err *e = err_new(SK_DATA, "%s: the answer does not have the required "
                                         "form after %d %s: %s",
                                v->name, v->shape_round + 1,
                                v->shape_round ? "tries" : "try",
                                problem ? problem : "wrong form");
            if (e) {
                sk_buf b;
                buf_init(&b, 0);
                if (buf_adds(&b, "{\"output\":") == SK_OK &&
                    buf_add_json_str(&b, v->reply, strlen(v->reply)) == SK_OK &&
                    buf_addc(&b, '}') == SK_OK)
                    e->detail_json = buf_steal(&b);
                buf_free(&b);
            }
            free(problem);
            free(clean);
            fail(v, e);
            return;
        }
        free(problem);
        if (clean) {
            free(v->reply);
            v->reply = clean;
        }
    }
    v->filter_idx = 0;
    run_filters(v);
}

static void after_samples(inv *v)
{
    if (v->sample_err) {
        sk_err *e = v->sample_err;
        v->sample_err = NULL;
        if (tools_after_error(v, &e)) { /* the server refused the tools */
            attempt_free(v);
            start_attempt(v);
            return;
        }
        if (fall_back(v, e))
            return;
        fail(v, after_fallbacks(v, e));
        return;
    }
    if (v->streaming && v->held.len) {
        /* what was held back: the rest of a placeholder, or a reply that
         * might have been tool calls (and was not) */
        char *out = tools_has_calls(v) ? NULL : pipe_restore(v, v->held.p);
        if (out) {
            v->streamed = 1;
            v->stream(v->stream_ud, out, strlen(out));
            free(out);
        }
        buf_reset(&v->held);
    }
    /* first the finish reason: a cut reply is never taken for a whole one */
    if (handle_truncation(v))
        return;
    /* then the tool calls the reply makes: a round of them, and the model
     * is asked again (tools.c) */
    if (tools_after_reply(v))
        return;
    size_t n = v->n_samples;
    if (!(v->texts = sk_calloc(n, sizeof *v->texts))) {
        fail(v, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(v->texts[i] = restored(v, i))) {
            fail(v, NULL);
            return;
        }
    }
    /* a stated confidence is read and taken off every sample */
    double *said = NULL;
    if (v->pol->verbalized || v->pol->cal_signal == SIG_VERBAL) {
        if (!(said = sk_calloc(n, sizeof *said))) {
            fail(v, NULL);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            char *rest = NULL;
            said[i] = 0; /* asked to say, and did not: no confidence */
            int found = unc_verbal_parse(v->texts[i], &said[i], &rest);
            if (found < 0) {
                free(said);
                fail(v, NULL);
                return;
            }
            if (found) {
                free(v->texts[i]);
                v->texts[i] = rest;
            }
        }
    }
    v->pick = 0;
    if (n > 1) {
        double ent = 1;
        v->sc[SIG_AGREEMENT] = unc_clusters(v->texts, n, &v->pick, &ent);
        v->sc[SIG_ENTROPY] = ent;
    }
    if (said)
        v->sc[SIG_VERBAL] = said[v->pick];
    free(said);
    sk_status rc = unc_check_text(v->pol, v->texts[v->pick], v->plain, &v->tv);
    if (rc != SK_OK) {
        fail(v, NULL);
        return;
    }
    v->asked = v->tv.uncertain;
    const model_resp *r = v->reqs[v->pick].resp;
    v->sc[SIG_LOGPROB] = unc_logprob_score(r->logprobs, r->n_logprobs,
                                           answer_is_label(v));
    if (n > 1 && v->pol->judge) {
        /* a judge decides whether the samples agree in substance */
        sk_buf b;
        buf_init(&b, 0);
        rc = SK_OK;
        for (size_t i = 0; rc == SK_OK && i < n; i++)
            rc = buf_printf(&b, "Answer %zu:\n%s\n\n", i + 1, v->texts[i]);
        sk_vars *jv = NULL;
        if (rc != SK_OK || sk_vars_new(&jv) != SK_OK ||
            sk_vars_set(jv, "input", b.p ? b.p : "") != SK_OK ||
            sk_vars_set(jv, "task", v->plain) != SK_OK) {
            buf_free(&b);
            sk_vars_free(jv);
            fail(v, NULL);
            return;
        }
        buf_free(&b);
        inv_sub(v, v->pol->judge, jv, judged);
        return;
    }
    self_check(v);
}

static void judged(inv *v, sk_status st, char *text, sk_err *err)
{
    if (st != SK_OK) {
        free(text);
        fail(v, err);
        return;
    }
    char *why = NULL;
    int agree = rev_parse(text, &why);
    free(text);
    free(why);
    /* the judge's verdict is the agreement: all or none */
    v->sc[SIG_AGREEMENT] = agree ? 1 : 0;
    v->sc[SIG_ENTROPY] = agree ? 1 : 0;
    self_check(v);
}

/* Whether the answer is a label: the function's shape is a choice. */
static int answer_is_label(const inv *v)
{
    char *const *choices = NULL;
    size_t n = 0;
    const char *schema = NULL, *regex = NULL;
    if (!v->pol->shape)
        return 0;
    shape_request(v->pol->shape, &schema, &choices, &n, &regex);
    return n > 0;
}

/* The P(True) self-check: a fresh-context judge reads the request and the
 * answer, and its verdict token's probability is the score. */
static void self_check(inv *v)
{
    const char *fn = v->pol->self_check;
    if (!fn && v->pol->cal_signal == SIG_SELF_CHECK)
        fn = UNC_SELF_CHECK_FN;
    if (!fn) {
        decide(v);
        return;
    }
    sk_vars *jv = NULL;
    if (sk_vars_new(&jv) != SK_OK || sk_vars_set(jv, "input", v->texts[v->pick]) != SK_OK ||
        sk_vars_set(jv, "task", v->plain) != SK_OK) {
        sk_vars_free(jv);
        fail(v, NULL);
        return;
    }
    inv_sub(v, fn, jv, self_checked);
}

static void self_checked(inv *v, sk_status st, char *text, sk_err *err)
{
    if (st != SK_OK) {
        free(text);
        fail(v, err);
        return;
    }
    double p = unc_self_check_score(text, v->sub_out.lp, v->sub_out.n_lp);
    /* a judge that gives no verdict has not vouched for the answer */
    v->sc[SIG_SELF_CHECK] = p < 0 ? 0 : p;
    free(text);
    decide(v);
}

/* The record of this attempt's checks, for sk_call_signals. */
static void write_signals(inv *v, const char *raised)
{
    if (!v->out)
        return;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    cJSON_AddStringToObject(o, "model", v->spec ? v->spec : "");
    cJSON_AddStringToObject(o, "answer", v->texts[v->pick] ? v->texts[v->pick] : "");
    if (raised)
        cJSON_AddStringToObject(o, "raised", raised);
    else
        cJSON_AddNullToObject(o, "raised");
    cJSON *sg = cJSON_AddObjectToObject(o, "signals");
    if (sg) {
        const sk_policy *p = v->pol;
        if (p->asks_back || p->protocol || p->hedging)
            cJSON_AddBoolToObject(sg, "asks_back", v->asked);
        for (int i = 1; i < SIG_COUNT; i++)
            if (v->sc[i] >= 0)
                cJSON_AddNumberToObject(sg, unc_signal_name((unc_signal)i),
                                        round(v->sc[i] * 1e6) / 1e6);
    }
    if (v->n_samples > 1) {
        cJSON *c = cJSON_AddArrayToObject(o, "samples");
        for (size_t i = 0; c && i < v->n_samples; i++)
            cJSON_AddItemToArray(c, cJSON_CreateString(v->texts[i] ? v->texts[i] : ""));
    }
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(v->out->signals);
    v->out->signals = js ? sk_strdup(js) : NULL;
    cJSON_free(js);
}

/* Which signal raises, in a fixed order: the text checks, agreement,
 * logprobs, the stated confidence, the self-check, and a calibrated
 * threshold (which replaces its signal's default one).  The verdict goes
 * to *vd; 0 when none raises. */
static sk_status first_raise(inv *v, unc_verdict *vd, const char **which)
{
    const sk_policy *p = v->pol;
    unc_signal cal = p->cal_signal;
    *which = NULL;
    if (v->tv.uncertain) {
        *vd = v->tv;
        memset(&v->tv, 0, sizeof v->tv);
        *which = strncmp(vd->reason ? vd->reason : "", "protocol", 8) == 0 ? "protocol"
                 : strncmp(vd->reason ? vd->reason : "", "hedging", 7) == 0 ? "hedging"
                                                                            : "asks_back";
        return SK_OK;
    }
    double a = v->sc[SIG_AGREEMENT], en = v->sc[SIG_ENTROPY];
    if (a >= 0 && cal != SIG_AGREEMENT && a < p->min_agreement) {
        vd->confidence = a;
        vd->reason = p->judge
                         ? sk_asprintf("self-consistency: the judge %s found the %zu "
                                       "samples disagree",
                                       p->judge, v->n_samples)
                         : sk_asprintf("self-consistency: %.0f%% of %zu samples agree "
                                       "(below %.0f%%)",
                                       a * 100, v->n_samples, p->min_agreement * 100);
        *which = "agreement";
    } else if (en >= 0 && cal != SIG_ENTROPY && p->min_entropy_score > 0 &&
               en < p->min_entropy_score) {
        vd->confidence = en;
        vd->reason = sk_asprintf("semantic entropy: score %.2f over %zu samples "
                                 "(below %.2f)",
                                 en, v->n_samples, p->min_entropy_score);
        *which = "entropy";
    } else if (cal != SIG_LOGPROB) {
        const model_resp *r = v->reqs[v->pick].resp;
        sk_status rc = unc_check_logprobs(p, r->logprobs, r->n_logprobs,
                                          answer_is_label(v), vd);
        if (rc != SK_OK)
            return rc;
        if (vd->uncertain)
            *which = "logprob";
        else
            unc_verdict_clear(vd);
    }
    if (!*which && v->sc[SIG_VERBAL] >= 0 && cal != SIG_VERBAL &&
        v->sc[SIG_VERBAL] < p->min_verbal) {
        vd->confidence = v->sc[SIG_VERBAL];
        vd->reason = sk_asprintf("verbalized: the model states %.0f%% confidence "
                                 "(below %.0f%%)",
                                 v->sc[SIG_VERBAL] * 100, p->min_verbal * 100);
        *which = "verbalized";
    }
    if (!*which && v->sc[SIG_SELF_CHECK] >= 0 && cal != SIG_SELF_CHECK &&
        v->sc[SIG_SELF_CHECK] < p->min_self_check) {
        vd->confidence = v->sc[SIG_SELF_CHECK];
        vd->reason = sk_asprintf("self-check: P(True) %.2f (below %.2f)",
                                 v->sc[SIG_SELF_CHECK], p->min_self_check);
        *which = "self_check";
    }
    if (!*which && cal) {
        double sc = v->sc[cal];
        if (sc < p->cal_threshold) {
            vd->confidence = sc;
            if (sc < 0)
                vd->reason = sk_asprintf("calibrated: no %s score to judge (the "
                                         "server gave none)",
                                         unc_signal_name(cal));
            else
                vd->reason = sk_asprintf("calibrated: %s %.3f < %.3f (alpha %.2f)",
                                         unc_signal_name(cal), sc, p->cal_threshold,
                                         p->cal_alpha);
            *which = unc_signal_name(cal);
        }
    }
    if (*which) {
        vd->uncertain = 1;
        if (!vd->reason)
            return SK_NOMEM;
    }
    return SK_OK;
}

/* Stage 9's decision, once every enabled signal has a score. */
static void decide(inv *v)
{
    unc_verdict vd = {0, NULL, NULL, -1};
    const char *which = NULL;
    if (first_raise(v, &vd, &which) != SK_OK) {
        unc_verdict_clear(&vd);
        fail(v, NULL);
        return;
    }
    write_signals(v, which);
    if (vd.uncertain && v->pol->raise) {
        uncertain(v, &vd);
        return;
    }
    unc_verdict_clear(&vd);
    accept_reply(v);
}

/* ---- review ------------------------------------------------------------ */

static void reviewed(inv *v, sk_status st, char *text, sk_err *err)
{
    sk_usage *u = kern_usage(v->k);
    if (st != SK_OK) {
        free(text);
        fail(v, err);
        return;
    }
    u->reviews++;
    char *critique = NULL;
    int pass = rev_parse(text, &critique);
    free(text);
    char round[16];
    snprintf(round, sizeof round, "%d", v->round);
    pipe_trace(v, "review", "reviewer", v->pol->review, "verdict",
               pass ? "pass" : "fail", "round", round, "critique", critique,
               (char *)NULL);
    if (pass) {
        free(critique);
        char *out = v->reply;
        v->reply = NULL;
        finish_answered(v, out);
        return;
    }
    char **c = sk_realloc(v->critiques, (v->n_critiques + 1) * sizeof *c);
    if (!c) {
        free(critique);
        fail(v, NULL);
        return;
    }
    v->critiques = c;
    v->critiques[v->n_critiques++] = critique;
    if (v->round < v->pol->review_rounds) {
        u->revisions++;
        v->round++;
        /* the function runs again with the critique in its variables; the
         * prompt gains a revision note in pipe_start */
        if (sk_vars_set(v->vars, "critique", critique) != SK_OK ||
            sk_vars_set(v->vars, "previous_output", v->reply) != SK_OK) {
            fail(v, NULL);
            return;
        }
        attempt_free(v);
        free(v->prompt);
        v->prompt = NULL;
        free_msgs(v->msgs, v->n_msgs);
        v->msgs = NULL;
        v->n_msgs = 0;
        v->model_idx = 0;
        inv_rerun(v);
        return;
    }
    u->rejected++;
    sk_err *e = err_new(SK_REJECTED, "%s was rejected by %s after %d "
                                     "revision%s: %s",
                        v->name, v->pol->review, v->round,
                        v->round == 1 ? "" : "s", critique);
    if (e) {
        sk_buf b;
        buf_init(&b, 0);
        sk_status rc = buf_adds(&b, "{\"critique\":");
        if (rc == SK_OK) rc = buf_add_json_str(&b, critique, strlen(critique));
        if (rc == SK_OK) rc = buf_adds(&b, ",\"critiques\":[");
        for (size_t i = 0; rc == SK_OK && i < v->n_critiques; i++) {
            if (i) rc = buf_addc(&b, ',');
            if (rc == SK_OK)
                rc = buf_add_json_str(&b, v->critiques[i], strlen(v->critiques[i]));
        }
        if (rc == SK_OK) rc = buf_adds(&b, "],\"output\":");
        if (rc == SK_OK) rc = buf_add_json_str(&b, v->reply, strlen(v->reply));
        if (rc == SK_OK) rc = buf_addc(&b, '}');
        if (rc == SK_OK)
            e->detail_json = buf_steal(&b);
        buf_free(&b);
    }
    fail(v, e);
}

/* The call ends with this model's answer: count it for the model. */
static void finish_answered(inv *v, char *out)
{
    sk_model_usage *mu = kern_model_usage(v->k, v->spec);
    if (mu)
        mu->answered++;
    inv_finish(v, SK_OK, out, NULL);
}

static void run_review(inv *v)
{
    if (!v->pol->review) {
        char *out = v->reply;
        v->reply = NULL;
        finish_answered(v, out);
        return;
    }
    sk_vars *rv = NULL;
    const char *input = sk_vars_get(v->vars, "input");
    if (sk_vars_new(&rv) != SK_OK || sk_vars_set(rv, "task", v->plain) != SK_OK ||
        sk_vars_set(rv, "input", input ? input : "") != SK_OK ||
        sk_vars_set(rv, "output", v->reply) != SK_OK) {
        sk_vars_free(rv);
        fail(v, NULL);
        return;
    }
    inv_sub(v, v->pol->review, rv, reviewed);
}

/* ---- entry ------------------------------------------------------------- */

/* A revision's prompt carries the rejected answer and the critique, unless
 * the template already uses {{$critique}}. */
static int template_uses(const sk_template *t, const char *name);

static sk_status add_revision_note(inv *v)
{
    if (template_uses(v->tpl, "critique"))
        return SK_OK;
    const char *prev = sk_vars_get(v->vars, "previous_output");
    const char *crit = sk_vars_get(v->vars, "critique");
    char *note = sk_asprintf("\n\nAn earlier answer to this was:\n\"\"\"\n%s\n\"\"\"\n"
                             "A reviewer rejected it for these reasons:\n%s\n\n"
                             "Write a corrected answer that fixes them. Reply with "
                             "the answer only.",
                             prev ? prev : "", crit ? crit : "");
    if (!note)
        return SK_NOMEM;
    sk_status rc = append_last(v, note);
    free(note);
    return rc;
}

static int template_uses(const sk_template *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->blocks[i].kind == TB_VAR && strcasecmp(t->blocks[i].text, name) == 0)
            return 1;
    return 0;
}

/* A clarification the user gave always reaches the model: in the
 * template's {{$clarification}} when it places it, else appended here. */
static sk_status add_clarification(inv *v)
{
    const char *clar = sk_vars_get(v->vars, "clarification");
    if (!clar || !*clar || template_uses(v->tpl, "clarification"))
        return SK_OK;
    char *note = sk_asprintf("\n\nAsked to clarify the request, the user answered:\n%s",
                             clar);
    if (!note)
        return SK_NOMEM;
    sk_status rc = append_last(v, note);
    free(note);
    return rc;
}

void pipe_start(inv *v)
{
    sk_err *err = NULL;
    sk_status rc = split_messages(v, &err);
    if (rc != SK_OK) {
        fail(v, err);
        return;
    }
    if (add_clarification(v) != SK_OK ||
        (v->round > 0 && add_revision_note(v) != SK_OK)) {
        fail(v, NULL);
        return;
    }
    v->filter_idx = 0;
    free(v->reply);
    v->reply = NULL;
    run_filters(v);
}

void pipe_shutdown(sk_kernel *k)
{
    /* Requests held back by max_inflight have not started: fail them so
     * their invokes' continuations run and free what they hold. */
    while (k->waiting && k->waiting->head) {
        mreq *q = k->waiting->head;
        k->waiting->head = q->next_wait;
        if (!k->waiting->head)
            k->waiting->tail = NULL;
        sample_done(q, SK_CANCELLED,
                    NULL, err_new(SK_CANCELLED, "the kernel is shutting down"));
    }
    free(k->waiting);
    k->waiting = NULL;
}
