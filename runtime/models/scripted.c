/*
 * scripted.c -- "scripted:FILE.json", a deterministic in-process model for
 * tests and the offline demo.  It is not a language model: it answers
 * from a list of rules, each a PCRE2 pattern over the rendered prompt, and
 * says so on stderr when it is first used (unless quiet).
 *
 *   { "rules": [
 *       { "match": "PCRE2 pattern",      -- searched in the rendered prompt
 *         "reply": "text",               -- or "replies": ["1st", "2nd", ...]
 *                                        --   (one per match; the last repeats)
 *         "delay_ms": 0,                 -- answer after this long (a timer,
 *                                        --   so calls overlap)
 *         "logprobs": [["tok", -0.1], ...],
 *         "finish_reason": "stop",
 *         "error": { "kind": "model", "message": "...", "http_status": 500 }
 *       } ],
 *     "default": "reply when no rule matches (optional)",
 *     "delay_ms": 0 }
 *
 * A file ending in ".jsonl" is a cassette recorded with SKEIN_RECORD
 * instead: each recorded prompt gets its recorded replies, in order.
 *
 * A reply of "{{echo}}" echoes the prompt; "{{echo}}" inside a longer
 * reply is replaced by it.  No rule and no default is an SK_MODEL error
 * quoting the start of the prompt.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <pcre2.h>

#include "models/models.h"

typedef struct rule {
    pcre2_code *re;
    char **replies;
    size_t n_replies;
    size_t uses;
    long delay_ms;
    sk_logprob *lp;
    size_t n_lp;
    char *finish_reason;
    sk_status err_code;
    char *err_message;
    int err_http;
} rule;

typedef struct scripted {
    char *path;
    rule *rules;
    size_t n_rules;
    char *default_reply;
    long default_delay;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    sk_kernel *k;
    int announced;
    unsigned long long digest; /* FNV-1a of the file's bytes */
} scripted;

typedef struct sreq {
    scripted *s;
    sk_kernel *k;
    model_resp *resp;
    sk_err *err;
    model_delta_fn on_delta;
    model_done_fn done;
    void *ud;
    loop_timer *timer;
} sreq;

static void rules_free(scripted *s)
{
    for (size_t i = 0; i < s->n_rules; i++) {
        rule *r = &s->rules[i];
        pcre2_code_free(r->re);
        for (size_t j = 0; j < r->n_replies; j++)
            free(r->replies[j]);
        free(r->replies);
        for (size_t j = 0; j < r->n_lp; j++)
            free(r->lp[j].token);
        free(r->lp);
        free(r->finish_reason);
        free(r->err_message);
    }
    free(s->rules);
}

static void scripted_destroy(void *self)
{
    scripted *s = self;
    if (!s)
        return;
    rules_free(s);
    free(s->default_reply);
    free(s->path);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    free(s);
}

static sk_status kind_status(const char *kind)
{
    static const sk_status all[] = {
        SK_MODEL, SK_TIMEOUT, SK_NETWORK, SK_PROTOCOL, SK_TOO_LARGE,
        SK_UNCERTAIN, SK_REJECTED, SK_FILTERED, SK_SCRIPT, SK_CONFIG,
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(kind, sk_status_kind(all[i])) == 0)
            return all[i];
    return SK_OK;
}

/* Sets *msg to a formatted message; SK_CONFIG, or SK_NOMEM when even the
 * message cannot be made. */
static sk_status bad(char **msg, const char *fmt, ...) SK_PRINTF(2, 3);
static sk_status bad(char **msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    *msg = sk_vasprintf(fmt, ap);
    va_end(ap);
    return *msg ? SK_CONFIG : SK_NOMEM;
}

/* Parses one rule: SK_OK; SK_CONFIG with *msg (caller frees); SK_NOMEM. */
static sk_status parse_rule(scripted *s, rule *r, const cJSON *j, size_t idx,
                            char **why)
{
    if (!cJSON_IsObject(j))
        return bad(why, "rule %zu: expected an object", idx + 1);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "match");
    const char *pat = cJSON_IsString(m) ? m->valuestring : "";
    if (m && !cJSON_IsString(m))
        return bad(why, "rule %zu: \"match\" must be a string", idx + 1);
    int ec;
    PCRE2_SIZE eo;
    r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
    if (!r->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return bad(why, "rule %zu: bad pattern at offset %zu: %s", idx + 1,
                           (size_t)eo, (char *)msg);
    }
    const cJSON *reply = cJSON_GetObjectItemCaseSensitive(j, "reply");
    const cJSON *replies = cJSON_GetObjectItemCaseSensitive(j, "replies");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    size_t n = cJSON_IsArray(replies) ? (size_t)cJSON_GetArraySize(replies)
                                      : (cJSON_IsString(reply) ? 1 : 0);
    if (n == 0 && !cJSON_IsObject(err))
        return bad(why, "rule %zu: needs \"reply\", \"replies\" or \"error\"",
                           idx + 1);
    if (n) {
        r->replies = sk_calloc(n, sizeof *r->replies);
        if (!r->replies)
            return SK_NOMEM;
        if (cJSON_IsArray(replies)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, replies)
            {
                if (!cJSON_IsString(it))
                    return bad(why, "rule %zu: \"replies\" must hold strings",
                                       idx + 1);
                if (!(r->replies[r->n_replies++] = sk_strdup(it->valuestring)))
                    return SK_NOMEM;
            }
        } else {
            if (!(r->replies[0] = sk_strdup(reply->valuestring)))
                return SK_NOMEM;
            r->n_replies = 1;
        }
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "delay_ms");
    r->delay_ms = cJSON_IsNumber(d) ? (long)d->valuedouble : s->default_delay;
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(j, "finish_reason");
    if (cJSON_IsString(fr) && !(r->finish_reason = sk_strdup(fr->valuestring)))
        return SK_NOMEM;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "logprobs");
    if (cJSON_IsArray(lp)) {
        size_t nl = (size_t)cJSON_GetArraySize(lp);
        r->lp = sk_calloc(nl, sizeof *r->lp);
        if (!r->lp)
            return SK_NOMEM;
        const cJSON *it;
        cJSON_ArrayForEach(it, lp)
        {
            const cJSON *tok = cJSON_GetArrayItem(it, 0);
            const cJSON *val = cJSON_GetArrayItem(it, 1);
            if (!cJSON_IsString(tok) || !cJSON_IsNumber(val))
                return bad(why, "rule %zu: logprobs are [\"token\", number] "
                                   "pairs",
                                   idx + 1);
            if (!(r->lp[r->n_lp].token = sk_strdup(tok->valuestring)))
                return SK_NOMEM;
            r->lp[r->n_lp++].logprob = val->valuedouble;
        }
    }
    if (cJSON_IsObject(err)) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(err, "kind");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        const cJSON *http = cJSON_GetObjectItemCaseSensitive(err, "http_status");
        r->err_code = kind_status(cJSON_IsString(kind) ? kind->valuestring : "model");
        if (r->err_code == SK_OK)
            return bad(why, "rule %zu: unknown error kind \"%s\"", idx + 1,
                               kind->valuestring);
        r->err_message = sk_strdup(cJSON_IsString(msg) ? msg->valuestring
                                                       : "scripted error");
        if (!r->err_message)
            return SK_NOMEM;
        r->err_http = cJSON_IsNumber(http) ? (int)http->valuedouble : 0;
    }
    return SK_OK;
}


static sk_status scripted_start(void *self, sk_kernel *k, const model_req *req,
                                model_delta_fn on_delta, model_done_fn done,
                                void *ud, void **handle, sk_err **err);
static void scripted_cancel(void *self, sk_kernel *k, void *handle);

static const conn_vt scripted_vt = {
    "scripted", scripted_start, scripted_cancel, scripted_destroy,
    NULL, /* in process: a dry run has no request to show */
    0,    /* no tool calls */
};

/* A PCRE2 pattern matching exactly s: \A\Q...\E\z, with any "\E" inside
 * s spliced so it stays literal.  Caller frees. */
static char *literal_pattern(const char *s)
{
    sk_buf b;
    buf_init(&b, (size_t)16 << 20);
    sk_status rc = buf_adds(&b, "\\A\\Q");
    for (const char *p = s; rc == SK_OK && *p; p++) {
        if (p[0] == '\\' && p[1] == 'E') {
            rc = buf_adds(&b, "\\E\\\\E\\Q");
            p++;
        } else {
            rc = buf_addc(&b, *p);
        }
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, "\\E\\z");
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Turns a cassette recorded with SKEIN_RECORD (one JSON exchange a line:
 * prompt, reply or error, logprobs) into the rules this model runs: one
 * rule per distinct prompt, its replies in recorded order.  The prompt is
 * matched exactly, so a replayed run must send what the recorded one
 * sent. */
static cJSON *cassette_rules(const char *text, size_t len, const char *path,
                             sk_err **err)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *rules = doc ? cJSON_AddArrayToObject(doc, "rules") : NULL;
    if (!rules) {
        cJSON_Delete(doc);
        return NULL;
    }
    int line = 0;
    for (size_t off = 0; off < len;) {
        const char *start = text + off;
        const char *nl = memchr(start, '\n', len - off);
        size_t n = nl ? (size_t)(nl - start) : len - off;
        off += n + 1;
        line++;
        if (!n)
            continue;
        cJSON *ex = cJSON_ParseWithLength(start, n);
        /* how a call ended (skein distill reads it), not an exchange */
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(ex, "type");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "call_end") == 0) {
            cJSON_Delete(ex);
            continue;
        }
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(ex, "prompt");
        const cJSON *reply = cJSON_GetObjectItemCaseSensitive(ex, "reply");
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(ex, "error");
        if (!cJSON_IsString(prompt) || (!cJSON_IsString(reply) && !cJSON_IsObject(error))) {
            *err = err_new(SK_CONFIG, "%s:%d: not a recorded exchange (need \"prompt\" "
                                      "and \"reply\" or \"error\")", path, line);
            cJSON_Delete(ex);
            cJSON_Delete(doc);
            return NULL;
        }
        char *pat = literal_pattern(prompt->valuestring);
        if (!pat) {
            cJSON_Delete(ex);
            cJSON_Delete(doc);
            return NULL;
        }
        /* the ex_rule for this prompt, if an earlier line made one */
        cJSON *ex_rule = NULL, *it;
        cJSON_ArrayForEach(it, rules)
        {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "match");
            if (cJSON_IsString(m) && strcmp(m->valuestring, pat) == 0)
                ex_rule = it;
        }
        if (!ex_rule) {
            ex_rule = cJSON_CreateObject();
            cJSON_AddItemToArray(rules, ex_rule);
            cJSON_AddStringToObject(ex_rule, "match", pat);
            if (cJSON_IsObject(error))
                cJSON_AddItemToObject(ex_rule, "error", cJSON_Duplicate(error, 1));
            else
                cJSON_AddArrayToObject(ex_rule, "replies");
            const cJSON *lp = cJSON_GetObjectItemCaseSensitive(ex, "logprobs");
            if (cJSON_IsArray(lp))
                cJSON_AddItemToObject(ex_rule, "logprobs", cJSON_Duplicate(lp, 1));
        }
        cJSON *replies = cJSON_GetObjectItemCaseSensitive(ex_rule, "replies");
        if (cJSON_IsArray(replies) && cJSON_IsString(reply))
            cJSON_AddItemToArray(replies, cJSON_CreateString(reply->valuestring));
        free(pat);
        cJSON_Delete(ex);
    }
    return doc;
}

static sk_connector *conn_scripted_open(sk_kernel *k, const char *rest, sk_err **err)
{
    *err = NULL;
    char *text = NULL;
    size_t len = 0;
    sk_status rc = sk_read_file(rest, 4 << 20, &text, &len);
    if (rc != SK_OK) {
        *err = err_new(rc == SK_IO ? SK_CONFIG : rc,
                       "scripted model %s: %s", rest,
                       rc == SK_IO ? strerror(errno) : sk_strerror(rc));
        return NULL;
    }
    const char *end = NULL;
    size_t rl = strlen(rest);
    int cassette = rl > 6 && strcmp(rest + rl - 6, ".jsonl") == 0;
    cJSON *doc = cassette ? cassette_rules(text, len, rest, err)
                          : cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (cassette && !doc) {
        free(text);
        return NULL;
    }
    if (!doc || !cJSON_IsObject(doc)) {
        int line, col;
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        sk_line_col(text, off < len ? off : len, &line, &col);
        *err = err_new(SK_CONFIG, "%s:%d:%d: %s", rest, line, col,
                       doc ? "expected a JSON object with \"rules\""
                           : "invalid JSON");
        cJSON_Delete(doc);
        free(text);
        return NULL;
    }
    unsigned long long digest = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        digest = (digest ^ (unsigned char)text[i]) * 0x100000001b3ULL;
    free(text);
    scripted *s = sk_calloc(1, sizeof *s);
    sk_connector *c = sk_calloc(1, sizeof *c);
    char *msg = NULL;
    if (!s || !c || !(s->path = sk_strdup(rest)))
        goto nomem;
    s->digest = digest;
    s->k = k;
    s->mctx = pcre2_match_context_create(NULL);
    s->md = pcre2_match_data_create(1, NULL);
    if (!s->mctx || !s->md)
        goto nomem;
    pcre2_set_match_limit(s->mctx, 1000000);
    const cJSON *dd = cJSON_GetObjectItemCaseSensitive(doc, "delay_ms");
    s->default_delay = cJSON_IsNumber(dd) ? (long)dd->valuedouble : 0;
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(doc, "default");
    if (cJSON_IsString(def) && !(s->default_reply = sk_strdup(def->valuestring)))
        goto nomem;
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(doc, "rules");
    if (rules && !cJSON_IsArray(rules)) {
        msg = sk_asprintf("\"rules\" must be an array");
        goto bad;
    }
    size_t n = rules ? (size_t)cJSON_GetArraySize(rules) : 0;
    if (n) {
        s->rules = sk_calloc(n, sizeof *s->rules);
        if (!s->rules)
            goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        s->n_rules = i + 1;
        sk_status prc = parse_rule(s, &s->rules[i], cJSON_GetArrayItem(rules, (int)i),
                                   i, &msg);
        if (prc == SK_NOMEM)
            goto nomem;
        if (prc != SK_OK)
            goto bad;
    }
    if (!s->n_rules && !s->default_reply) {
        msg = sk_asprintf("no \"rules\" and no \"default\" reply");
        goto bad;
    }
    cJSON_Delete(doc);
    c->vt = &scripted_vt;
    c->self = s;
    c->model = sk_strdup("scripted");
    /* The endpoint names the rules themselves, so two files of one name
     * (or one file, edited) never share cached answers. */
    c->endpoint = sk_asprintf("%s#%016llx", rest, (unsigned long long)s->digest);
    if (!c->model || !c->endpoint) {
        conn_close(c);
        return NULL;
    }
    return c;
bad:
    *err = msg ? err_new(SK_CONFIG, "scripted model %s: %s", rest, msg) : NULL;
    free(msg);
nomem:
    cJSON_Delete(doc);
    scripted_destroy(s);
    free(c);
    return NULL;
}

static long count_words(const char *s)
{
    long n = 0;
    int in = 0;
    for (; *s; s++) {
        int sp = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

/* Replaces every "{{echo}}" in reply with the prompt.  Caller frees. */
static char *expand_reply(const char *reply, const char *prompt)
{
    sk_buf b;
    buf_init(&b, (size_t)64 << 20);
    const char *p = reply;
    const char *hit;
    sk_status rc = SK_OK;
    while (rc == SK_OK && (hit = strstr(p, "{{echo}}"))) {
        rc = buf_add(&b, p, (size_t)(hit - p));
        if (rc == SK_OK)
            rc = buf_adds(&b, prompt);
        p = hit + 8;
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, p);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static void sreq_fire(void *ud)
{
    sreq *q = ud;
    if (q->resp && q->on_delta && q->resp->text) {
        /* Stream word by word, as a server would in chunks. */
        const char *t = q->resp->text;
        size_t n = strlen(t), i = 0;
        while (i < n) {
            size_t j = i;
            while (j < n && t[j] == ' ')
                j++;
            while (j < n && t[j] != ' ')
                j++;
            q->on_delta(q->ud, t + i, j - i);
            i = j;
        }
    }
    model_done_fn done = q->done;
    void *dud = q->ud;
    model_resp *resp = q->resp;
    sk_err *e = q->err;
    free(q);
    done(dud, resp ? SK_OK : (e ? e->code : SK_NOMEM), resp, e);
}

static sk_status scripted_start(void *self, sk_kernel *k, const model_req *req,
                                model_delta_fn on_delta, model_done_fn done,
                                void *ud, void **handle, sk_err **err)
{
    scripted *s = self;
    *err = NULL;
    if (handle)
        *handle = NULL;
    if (!s->announced) {
        s->announced = 1;
        kern_notice(k, "using the scripted model %s (canned replies for tests "
                       "and demos, not a language model)",
                    s->path);
    }
    const char *prompt = req->prompt ? req->prompt : "";
    if (!req->prompt && req->n_msgs)
        prompt = req->msgs[req->n_msgs - 1].content;
    rule *hit = NULL;
    for (size_t i = 0; i < s->n_rules && !hit; i++) {
        int rc = pcre2_match(s->rules[i].re, (PCRE2_SPTR)prompt, strlen(prompt),
                             0, 0, s->md, s->mctx);
        if (rc >= 0)
            hit = &s->rules[i];
        else if (rc != PCRE2_ERROR_NOMATCH) {
            *err = err_new(SK_SCRIPT, "scripted model %s: rule %zu: match "
                                      "failed (code %d)",
                           s->path, i + 1, rc);
            return SK_SCRIPT;
        }
    }
    sreq *q = sk_calloc(1, sizeof *q);
    if (!q)
        return SK_NOMEM;
    q->s = s;
    q->k = k;
    q->on_delta = on_delta;
    q->done = done;
    q->ud = ud;
    long delay = hit ? hit->delay_ms : s->default_delay;
    if (hit && hit->err_code != SK_OK) {
        q->err = err_new(hit->err_code, "%s", hit->err_message);
        if (!q->err) {
            free(q);
            return SK_NOMEM;
        }
        q->err->http_status = hit->err_http;
        hit->uses++;
    } else if (!hit && !s->default_reply) {
        q->err = err_new(SK_MODEL,
                         "scripted model %s: no rule matches the prompt "
                         "\"%.120s%s\"",
                         s->path, prompt, strlen(prompt) > 120 ? "..." : "");
        if (!q->err) {
            free(q);
            return SK_NOMEM;
        }
    } else {
        const char *reply = s->default_reply;
        if (hit) {
            size_t i = hit->uses < hit->n_replies ? hit->uses : hit->n_replies - 1;
            reply = hit->replies[i];
            hit->uses++;
        }
        q->resp = sk_calloc(1, sizeof *q->resp);
        if (!q->resp || !(q->resp->text = expand_reply(reply, prompt))) {
            resp_free(q->resp);
            free(q);
            return SK_NOMEM;
        }
        const char *fr = hit && hit->finish_reason ? hit->finish_reason : "stop";
        q->resp->finish_reason = sk_strdup(fr);
        q->resp->model = sk_strdup("scripted");
        q->resp->prompt_tokens = count_words(prompt);
        q->resp->completion_tokens = count_words(q->resp->text);
        q->resp->attempts = 1;
        q->resp->http_status = 200;
        if (hit && hit->n_lp) {
            q->resp->logprobs = sk_calloc(hit->n_lp, sizeof *q->resp->logprobs);
            for (size_t i = 0; q->resp->logprobs && i < hit->n_lp; i++) {
                q->resp->logprobs[i].token = sk_strdup(hit->lp[i].token);
                q->resp->logprobs[i].logprob = hit->lp[i].logprob;
                q->resp->n_logprobs++;
            }
        }
    }
    if (loop_after(k, delay, sreq_fire, q, &q->timer) != SK_OK) {
        resp_free(q->resp);
        err_free(q->err);
        free(q);
        return SK_NOMEM;
    }
    if (handle)
        *handle = q;
    return SK_OK;
}

static void scripted_cancel(void *self, sk_kernel *k, void *handle)
{
    sreq *q = handle;
    if (!q)
        return;
    loop_cancel(k, q->timer);
    resp_free(q->resp);
    err_free(q->err);
    free(q);
}

static sk_connector *open_scripted(sk_kernel *k, const char *kind, const char *rest,
                                sk_err **err)
{
    (void)kind;
    *err = NULL;
    return conn_scripted_open(k, rest, err);
}

const conn_kind conn_kind_scripted = {"scripted", open_scripted, NULL};
