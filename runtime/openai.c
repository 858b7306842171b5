/*
 * openai.c -- the OpenAI chat completions wire format and connector.
 *
 * Two halves.  The oai_* functions are pure: they build request bodies
 * and read reply bodies, streamed chunks and error bodies, and never touch
 * the network (they are what the fuzz targets exercise).  The connector
 * below them runs requests on the kernel's event loop: one CURL easy
 * handle per request in flight, taken from a small per-connector free
 * list so that the multi handle's connection pool is reused; retries are
 * timers on the loop, never sleeps.
 *
 * Works with anything that speaks the same protocol (OpenAI, vLLM,
 * llama.cpp's server, Ollama's /v1, LiteLLM...): "openai:MODEL@BASEURL".
 */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_BASE_URL "https://api.openai.com/v1"
#define FREE_EASY_MAX 16

/* ======================================================================
 * Wire format
 * ====================================================================== */

/* Appends a JSON number that reads back as exactly d. */
static sk_status add_number(sk_buf *b, double d)
{
    char s[64];
    snprintf(s, sizeof s, "%.15g", d);
    if (strtod(s, NULL) != d)
        snprintf(s, sizeof s, "%.17g", d);
    return buf_adds(b, s);
}

static sk_status add_key(sk_buf *b, const char *key)
{
    sk_status rc = buf_addc(b, ',');
    if (rc == SK_OK)
        rc = buf_add_json_str(b, key, strlen(key));
    if (rc == SK_OK)
        rc = buf_addc(b, ':');
    return rc;
}

/* Adds "key":value for a setting that is set (finite; NAN means unset). */
static sk_status add_opt_double(sk_buf *b, const char *key, double v)
{
    if (!isfinite(v))
        return SK_OK;
    sk_status rc = add_key(b, key);
    return rc == SK_OK ? add_number(b, v) : rc;
}

static sk_status add_str(sk_buf *b, const char *s)
{
    s = s ? s : "";
    return buf_add_json_str(b, s, strlen(s));
}

/* Servers that speak this protocol differ in how they constrain output:
 * OpenAI takes a response_format, llama.cpp's server a GBNF grammar or a
 * json_schema, vLLM its guided_* fields.  The connector's flavor picks. */
typedef enum oai_flavor { OAI_PLAIN, OAI_LLAMACPP, OAI_VLLM } oai_flavor;

/* "llamacpp" / "vllm" / NULL or "" (plain); -1 for anything else. */
static int flavor_of(const char *name)
{
    if (!name || !*name)
        return OAI_PLAIN;
    if (strcmp(name, "llamacpp") == 0)
        return OAI_LLAMACPP;
    if (strcmp(name, "vllm") == 0)
        return OAI_VLLM;
    return -1;
}

/* Appends s as a GBNF string literal, quotes included.  llama.cpp's
 * grammar parser reads UTF-8 as is and knows \\ \" \n \r \t \xHH. */
static sk_status add_gbnf_literal(sk_buf *b, const char *s)
{
    sk_status rc = buf_addc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; rc == SK_OK && *p; p++) {
        if (*p == '"' || *p == '\\') {
            rc = buf_addc(b, '\\');
            if (rc == SK_OK)
                rc = buf_addc(b, (char)*p);
        } else if (*p == '\n') {
            rc = buf_adds(b, "\\n");
        } else if (*p == '\r') {
            rc = buf_adds(b, "\\r");
        } else if (*p == '\t') {
            rc = buf_adds(b, "\\t");
        } else if (*p < 0x20 || *p == 0x7f) {
            rc = buf_printf(b, "\\x%02X", *p);
        } else {
            rc = buf_addc(b, (char)*p);
        }
    }
    return rc == SK_OK ? buf_addc(b, '"') : rc;
}

/* A GBNF grammar admitting exactly one of the choices:
 * root ::= "yes" | "no".  Caller frees; NULL when memory ran out. */
static char *choice_grammar(char *const *choices, size_t n)
{
    sk_buf g;
    buf_init(&g, 0);
    sk_status rc = buf_adds(&g, "root ::= ");
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        if (i)
            rc = buf_adds(&g, " | ");
        if (rc == SK_OK)
            rc = add_gbnf_literal(&g, choices[i] ? choices[i] : "");
    }
    if (rc != SK_OK) {
        buf_free(&g);
        return NULL;
    }
    return buf_steal(&g);
}

/* Appends ,"key": and a JSON text as is (a schema from shape.c, already
 * checked to be JSON). */
static sk_status add_raw(sk_buf *b, const char *key, const char *json)
{
    sk_status rc = add_key(b, key);
    return rc == SK_OK ? buf_adds(b, json) : rc;
}

/* The constrained-output fields for the flavor.  A server is asked for
 * one constraint only (llama.cpp rejects a json_schema with a grammar,
 * vLLM more than one guided_* field): a schema first, then choices, a
 * grammar or a pattern.  What a server cannot do is left out; the reply
 * is validated either way. */
static sk_status add_constraints(sk_buf *b, const model_req *req, oai_flavor fl)
{
    sk_status rc = SK_OK;
    const char *schema = req->json_schema && *req->json_schema ? req->json_schema
                                                               : NULL;
    int choices = req->choices && req->n_choices > 0;
    if (fl == OAI_VLLM) {
        if (schema)
            return add_raw(b, "guided_json", schema);
        if (choices) {
            rc = add_key(b, "guided_choice");
            if (rc == SK_OK)
                rc = buf_addc(b, '[');
            for (size_t i = 0; rc == SK_OK && i < req->n_choices; i++) {
                if (i)
                    rc = buf_addc(b, ',');
                if (rc == SK_OK)
                    rc = add_str(b, req->choices[i]);
            }
            return rc == SK_OK ? buf_addc(b, ']') : rc;
        }
        if (req->regex && *req->regex) {
            rc = add_key(b, "guided_regex");
            return rc == SK_OK ? add_str(b, req->regex) : rc;
        }
        return SK_OK;
    }
    if (schema) {
        /* llama.cpp reads its own top-level json_schema, and also the
         * OpenAI form, which it prefers when both are present. */
        if (fl == OAI_LLAMACPP)
            rc = add_raw(b, "json_schema", schema);
        if (rc == SK_OK)
            rc = buf_adds(b, ",\"response_format\":{\"type\":\"json_schema\","
                             "\"json_schema\":{\"name\":\"output\",\"schema\":");
        if (rc == SK_OK)
            rc = buf_adds(b, schema);
        if (rc == SK_OK)
            rc = buf_adds(b, ",\"strict\":true}}");
        return rc;
    }
    if (fl != OAI_LLAMACPP)
        return SK_OK;
    if (req->grammar && *req->grammar) {
        rc = add_key(b, "grammar");
        return rc == SK_OK ? add_str(b, req->grammar) : rc;
    }
    if (choices) {
        char *g = choice_grammar(req->choices, req->n_choices);
        if (!g)
            return SK_NOMEM;
        rc = add_key(b, "grammar");
        if (rc == SK_OK)
            rc = add_str(b, g);
        free(g);
    }
    return rc;
}

/* Built by hand on an sk_buf rather than with cJSON so that every
 * allocation goes through sk_malloc (and allocation failures can be
 * tested) and no intermediate tree is built for a large prompt. */
static char *request_body(const model_req *req, const char *model,
                          oai_flavor fl)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "{\"model\":");
    if (rc == SK_OK)
        rc = add_str(&b, model ? model : req->model);
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"messages\":[");
    for (size_t i = 0; rc == SK_OK && i < req->n_msgs; i++) {
        if (i)
            rc = buf_addc(&b, ',');
        if (rc == SK_OK)
            rc = buf_adds(&b, "{\"role\":");
        if (rc == SK_OK)
            rc = add_str(&b, req->msgs[i].role ? req->msgs[i].role : "user");
        if (rc == SK_OK)
            rc = buf_adds(&b, ",\"content\":");
        if (rc == SK_OK)
            rc = add_str(&b, req->msgs[i].content);
        if (rc == SK_OK)
            rc = buf_addc(&b, '}');
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, ']');
    if (rc == SK_OK && req->max_tokens >= 0) {
        rc = add_key(&b, "max_tokens");
        if (rc == SK_OK)
            rc = buf_printf(&b, "%d", req->max_tokens);
    }
    if (rc == SK_OK)
        rc = add_opt_double(&b, "temperature", req->temperature);
    if (rc == SK_OK)
        rc = add_opt_double(&b, "top_p", req->top_p);
    if (rc == SK_OK)
        rc = add_opt_double(&b, "presence_penalty", req->presence_penalty);
    if (rc == SK_OK)
        rc = add_opt_double(&b, "frequency_penalty", req->frequency_penalty);
    if (rc == SK_OK && req->n_stop > 0) {
        rc = add_key(&b, "stop");
        if (rc == SK_OK)
            rc = buf_addc(&b, '[');
        for (size_t i = 0; rc == SK_OK && i < req->n_stop; i++) {
            if (i)
                rc = buf_addc(&b, ',');
            if (rc == SK_OK)
                rc = add_str(&b, req->stop[i]);
        }
        if (rc == SK_OK)
            rc = buf_addc(&b, ']');
    }
    if (rc == SK_OK && req->logprobs) {
        rc = buf_adds(&b, ",\"logprobs\":true");
        if (rc == SK_OK && req->top_logprobs > 0)
            rc = buf_printf(&b, ",\"top_logprobs\":%d", req->top_logprobs);
        /* llama.cpp's own name for it, which older servers need */
        if (rc == SK_OK && fl == OAI_LLAMACPP)
            rc = buf_printf(&b, ",\"n_probs\":%d",
                            req->top_logprobs > 0 ? req->top_logprobs : 1);
    }
    if (rc == SK_OK)
        rc = add_constraints(&b, req, fl);
    if (rc == SK_OK && req->stream)
        rc = buf_adds(&b, ",\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true}");
    if (rc == SK_OK)
        rc = buf_addc(&b, '}');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

char *oai_request_json(const model_req *req, const char *model)
{
    return request_body(req, model, OAI_PLAIN);
}

/* The body for a server flavor ("llamacpp", "vllm"; NULL for plain).
 * Caller frees; NULL when memory ran out or the flavor is unknown. */
SK_HIDDEN char *oai_request_json_flavor(const model_req *req, const char *model,
                                        const char *flavor);
char *oai_request_json_flavor(const model_req *req, const char *model,
                              const char *flavor)
{
    int fl = flavor_of(flavor);
    return fl < 0 ? NULL : request_body(req, model, (oai_flavor)fl);
}

/* One per flavor, so that a connector can hold its body builder as a
 * plain function pointer. */
static char *request_json_llamacpp(const model_req *req, const char *model)
{
    return request_body(req, model, OAI_LLAMACPP);
}

static char *request_json_vllm(const model_req *req, const char *model)
{
    return request_body(req, model, OAI_VLLM);
}

/* A model_resp with every field unknown.  Caller frees with resp_free. */
static model_resp *resp_new(void)
{
    model_resp *r = sk_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->prompt_tokens = r->completion_tokens = -1;
    r->attempts = 1;
    return r;
}

/* Sets *errmsg (caller frees; left NULL when memory ran out) and returns
 * code. */
static sk_status fail(char **errmsg, sk_status code, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_status fail(char **errmsg, sk_status code, const char *fmt, ...)
{
    if (errmsg) {
        va_list ap;
        va_start(ap, fmt);
        *errmsg = sk_vasprintf(fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Replaces *slot with a copy of s (a JSON string item).  SK_NOMEM. */
static sk_status set_str(char **slot, const cJSON *s)
{
    char *copy = sk_strdup(s->valuestring);
    if (!copy)
        return SK_NOMEM;
    free(*slot);
    *slot = copy;
    return SK_OK;
}

static sk_status read_usage(const cJSON *usage, model_resp *r, char **errmsg)
{
    if (!usage || cJSON_IsNull(usage))
        return SK_OK;
    if (!cJSON_IsObject(usage))
        return fail(errmsg, SK_PROTOCOL, "reply \"usage\" is not an object");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    if (cJSON_IsNumber(pt) && pt->valuedouble >= 0 && pt->valuedouble < 1e15)
        r->prompt_tokens = (long)pt->valuedouble;
    if (cJSON_IsNumber(ct) && ct->valuedouble >= 0 && ct->valuedouble < 1e15)
        r->completion_tokens = (long)ct->valuedouble;
    return SK_OK;
}

/* Appends choice.logprobs.content[] entries to r->logprobs.  A null or
 * absent "logprobs" is fine (the server was not asked, or had none). */
static sk_status read_logprobs(const cJSON *choice, model_resp *r,
                               char **errmsg)
{
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(choice, "logprobs");
    if (!lp || cJSON_IsNull(lp))
        return SK_OK;
    if (!cJSON_IsObject(lp))
        return fail(errmsg, SK_PROTOCOL, "reply \"logprobs\" is not an object");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(lp, "content");
    if (!content || cJSON_IsNull(content))
        return SK_OK;
    if (!cJSON_IsArray(content))
        return fail(errmsg, SK_PROTOCOL,
                    "reply \"logprobs.content\" is not an array");
    size_t n = (size_t)cJSON_GetArraySize(content);
    if (n == 0)
        return SK_OK;
    sk_logprob *grown =
        sk_realloc(r->logprobs, (r->n_logprobs + n) * sizeof *grown);
    if (!grown)
        return SK_NOMEM;
    r->logprobs = grown;
    const cJSON *item;
    cJSON_ArrayForEach(item, content)
    {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(item, "token");
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(item, "logprob");
        if (!cJSON_IsString(tok) || !cJSON_IsNumber(val))
            return fail(errmsg, SK_PROTOCOL,
                        "reply logprobs entry lacks \"token\" or \"logprob\"");
        char *t = sk_strdup(tok->valuestring);
        if (!t)
            return SK_NOMEM;
        r->logprobs[r->n_logprobs].token = t;
        r->logprobs[r->n_logprobs].logprob = val->valuedouble;
        r->n_logprobs++;
    }
    return SK_OK;
}

/* The error object's message when a 200 body is an error after all (some
 * proxies do that), else NULL.  Borrowed from the tree. */
static const char *embedded_error(const cJSON *root)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(e))
        return e->valuestring;
    if (cJSON_IsObject(e)) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        return cJSON_IsString(m) ? m->valuestring : "unknown error";
    }
    return NULL;
}

static void free_resp_fields(model_resp *r)
{
    free(r->text);
    free(r->finish_reason);
    free(r->model);
    for (size_t i = 0; i < r->n_logprobs; i++)
        free(r->logprobs[i].token);
    free(r->logprobs);
}

static void free_resp(model_resp *r)
{
    if (!r)
        return;
    free_resp_fields(r);
    free(r);
}

sk_status oai_parse_reply(const char *body, size_t len, model_resp **out,
                          char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "reply is not valid JSON");
    sk_status rc = SK_OK;
    model_resp *r = NULL;
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply is not a JSON object");
        goto done;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (!choices) {
        const char *e = embedded_error(root);
        if (e)
            rc = fail(errmsg, SK_MODEL, "%s", e);
        else
            rc = fail(errmsg, SK_PROTOCOL, "reply has no \"choices\"");
        goto done;
    }
    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        rc = fail(errmsg, SK_PROTOCOL,
                  "reply \"choices\" is not a non-empty array");
        goto done;
    }
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(choice, "message");
    if (!cJSON_IsObject(msg)) {
        rc = fail(errmsg, SK_PROTOCOL,
                  "reply choices[0] has no \"message\" object");
        goto done;
    }
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    if (!cJSON_IsString(content)) {
        if (cJSON_IsString(finish) &&
            strcmp(finish->valuestring, "content_filter") == 0)
            rc = fail(errmsg, SK_FILTERED,
                      "the server's content filter withheld the reply");
        else
            rc = fail(errmsg, SK_PROTOCOL,
                      "reply choices[0].message.content is not a string");
        goto done;
    }
    if (!(r = resp_new())) {
        rc = SK_NOMEM;
        goto done;
    }
    if ((rc = set_str(&r->text, content)) != SK_OK)
        goto done;
    if (cJSON_IsString(finish) && (rc = set_str(&r->finish_reason, finish)) != SK_OK)
        goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(model) && (rc = set_str(&r->model, model)) != SK_OK)
        goto done;
    if ((rc = read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), r,
                         errmsg)) != SK_OK)
        goto done;
    rc = read_logprobs(choice, r, errmsg);
done:
    cJSON_Delete(root);
    if (rc != SK_OK) {
        free_resp(r);
        return rc;
    }
    *out = r;
    return SK_OK;
}

/* The stream's "data: [DONE]" sentinel is not a chunk: the caller
 * recognises it (it ends the stream) and never passes it here, where it
 * would be invalid JSON. */
sk_status oai_apply_chunk(const char *data, size_t len, model_resp *resp,
                          sk_buf *text, const char **delta, size_t *delta_len,
                          char **errmsg)
{
    *delta = NULL;
    *delta_len = 0;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "stream chunk is not valid JSON");
    sk_status rc = SK_OK;
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "stream chunk is not a JSON object");
        goto done;
    }
    const char *e = embedded_error(root);
    if (e) {
        rc = fail(errmsg, SK_MODEL, "%s", e);
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(model) && !resp->model &&
        (rc = set_str(&resp->model, model)) != SK_OK)
        goto done;
    if ((rc = read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), resp,
                         errmsg)) != SK_OK)
        goto done;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (!choices || cJSON_IsNull(choices))
        goto done; /* e.g. a usage-only chunk from a lenient server */
    if (!cJSON_IsArray(choices)) {
        rc = fail(errmsg, SK_PROTOCOL, "stream chunk \"choices\" is not an array");
        goto done;
    }
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    if (!choice)
        goto done; /* the final usage chunk has "choices": [] */
    if (!cJSON_IsObject(choice)) {
        rc = fail(errmsg, SK_PROTOCOL, "stream chunk choice is not an object");
        goto done;
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    if (d && !cJSON_IsNull(d)) {
        if (!cJSON_IsObject(d)) {
            rc = fail(errmsg, SK_PROTOCOL, "stream chunk \"delta\" is not an object");
            goto done;
        }
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        if (cJSON_IsString(c)) {
            size_t n = strlen(c->valuestring), before = text->len;
            if (n) {
                if ((rc = buf_add(text, c->valuestring, n)) != SK_OK) {
                    if (rc == SK_TOO_LARGE)
                        fail(errmsg, rc, "streamed reply too large");
                    goto done;
                }
                *delta = text->p + before;
                *delta_len = n;
            }
        } else if (c && !cJSON_IsNull(c)) {
            rc = fail(errmsg, SK_PROTOCOL,
                      "stream chunk delta.content is not a string");
            goto done;
        }
    }
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    if (cJSON_IsString(finish) && (rc = set_str(&resp->finish_reason, finish)) != SK_OK)
        goto done;
    rc = read_logprobs(choice, resp, errmsg);
done:
    cJSON_Delete(root);
    return rc;
}

char *oai_error_message(const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return NULL;
    const char *msg = NULL;
    if (cJSON_IsObject(root)) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "detail");
        if (cJSON_IsObject(e)) {
            const cJSON *em = cJSON_GetObjectItemCaseSensitive(e, "message");
            if (cJSON_IsString(em))
                msg = em->valuestring;
        } else if (cJSON_IsString(e)) {
            msg = e->valuestring;
        }
        if (!msg && cJSON_IsString(m))
            msg = m->valuestring;
        if (!msg && cJSON_IsString(d))
            msg = d->valuestring;
        if (!msg && cJSON_IsArray(d)) {
            /* FastAPI validation errors: [{"loc":..., "msg": "..."}] */
            const cJSON *first = cJSON_GetArrayItem(d, 0);
            const cJSON *dm = cJSON_GetObjectItemCaseSensitive(first, "msg");
            if (cJSON_IsString(dm))
                msg = dm->valuestring;
        }
    }
    char *copy = msg ? sk_strdup(msg) : NULL;
    cJSON_Delete(root);
    return copy;
}

/* ======================================================================
 * Connector
 * ====================================================================== */

typedef struct oai_conn {
    char *url;      /* {base}/chat/completions */
    char *key;      /* API key, or NULL */
    char *model;    /* from the spec; a request may name another */
    /* the body builder for the server's flavor */
    char *(*request_json)(const model_req *req, const char *model);
    struct curl_slist *headers;
    void *free_easy[FREE_EASY_MAX];
    size_t n_free;
    int refs;       /* the connector itself + requests in flight */
    uint64_t rng;   /* backoff jitter; per connector, no global state */
} oai_conn;

typedef struct oai_call {
    oai_conn *conn;
    sk_kernel *k;
    char *body;           /* request JSON, alive while curl sends it */
    size_t body_len;
    model_delta_fn on_delta;
    model_done_fn done;
    void *ud;
    int stream;
    void *easy;
    int in_loop;          /* easy handle is on the loop */
    int in_write;         /* inside the write callback */
    int cancelled;        /* cancelled from inside the write callback */
    loop_timer *timer;    /* pending retry, or NULL */
    int attempts;
    /* per attempt */
    long status;          /* HTTP status, once headers are in */
    int sse_mode;         /* 2xx text/event-stream reply */
    sk_buf rx;            /* raw body (non-streamed or error replies) */
    size_t rx_total;      /* all body bytes of this attempt */
    int too_large;
    sse_parser sse;
    model_resp *resp;     /* streamed reply being built */
    sk_buf text;          /* streamed text */
    int delivered;        /* deltas reached on_delta: never retry */
    int saw_done;         /* [DONE] seen */
    sk_err *stream_err;   /* an error found inside the stream */
    char errbuf[CURL_ERROR_SIZE];
} oai_call;

static void conn_unref(oai_conn *c)
{
    if (!c || --c->refs > 0)
        return;
    for (size_t i = 0; i < c->n_free; i++)
        curl_easy_cleanup(c->free_easy[i]);
    curl_slist_free_all(c->headers);
    if (c->key) {
        /* do not leave the key lying in freed memory */
        memset(c->key, 0, strlen(c->key));
        free(c->key);
    }
    free(c->url);
    free(c->model);
    free(c);
}

/* An error whose message went through http_scrub_key.  NULL only when memory
 * ran out. */
static sk_err *conn_err(const oai_conn *c, sk_status code, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_err *conn_err(const oai_conn *c, sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err *e = err_newv(code, fmt, ap);
    va_end(ap);
    if (e)
        e->message = http_scrub_key(e->message, c->key);
    return e;
}

static void reset_attempt(oai_call *call)
{
    call->status = 0;
    call->sse_mode = 0;
    buf_reset(&call->rx);
    call->rx_total = 0;
    call->too_large = 0;
    sse_free(&call->sse);
    sse_init(&call->sse, 0);
    free_resp(call->resp);
    call->resp = NULL;
    buf_reset(&call->text);
    call->saw_done = 0;
    err_free(call->stream_err);
    call->stream_err = NULL;
    call->errbuf[0] = '\0';
}

/* Returns the easy handle to the connector's free list (or frees it). */
static void release_easy(oai_call *call)
{
    if (!call->easy)
        return;
    oai_conn *c = call->conn;
    if (c->n_free < FREE_EASY_MAX)
        c->free_easy[c->n_free++] = call->easy;
    else
        curl_easy_cleanup(call->easy);
    call->easy = NULL;
}

static void call_free(oai_call *call)
{
    if (!call)
        return;
    release_easy(call);
    free(call->body);
    buf_free(&call->rx);
    sse_free(&call->sse);
    free_resp(call->resp);
    buf_free(&call->text);
    err_free(call->stream_err);
    oai_conn *c = call->conn;
    free(call);
    conn_unref(c);
}

/* Ends the request: done takes resp or err.  call is freed first so that
 * done may start another request on the same connector. */
static void finish(oai_call *call, sk_status st, model_resp *resp, sk_err *err)
{
    model_done_fn done = call->done;
    void *ud = call->ud;
    if (resp) {
        resp->attempts = call->attempts;
        resp->http_status = (int)call->status;
    }
    int attempts = call->attempts;
    call_free(call);
    if (st != SK_OK && !err)
        err = err_new(st, "%s", sk_strerror(st));
    /* how hard we tried shows in sk_error_json and in Lua error tables */
    if (err && !err->detail_json && attempts > 0)
        err->detail_json = sk_asprintf("{\"attempts\":%d}", attempts);
    done(ud, st, st == SK_OK ? resp : NULL, st == SK_OK ? NULL : err);
}

/* ---- streaming --------------------------------------------------------- */

static int on_sse_event(void *ud, const char *event, const char *data,
                        size_t len)
{
    oai_call *call = ud;
    oai_conn *c = call->conn;
    if (call->saw_done)
        return 0; /* nothing counts after [DONE] */
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        call->saw_done = 1;
        return 0;
    }
    if (strcmp(event, "error") == 0) {
        char *m = oai_error_message(data, len);
        call->stream_err = conn_err(c, SK_MODEL, "error in stream from %s: %s",
                                    c->url, m ? m : "(no message)");
        free(m);
        return 1;
    }
    const char *delta;
    size_t dlen;
    char *msg = NULL;
    sk_status rc = oai_apply_chunk(data, len, call->resp, &call->text, &delta,
                                   &dlen, &msg);
    if (rc != SK_OK) {
        if (rc == SK_NOMEM)
            call->stream_err = err_new(SK_NOMEM, "out of memory");
        else if (rc == SK_MODEL)
            call->stream_err = conn_err(c, rc, "error in stream from %s: %s",
                                        c->url, msg ? msg : "(no message)");
        else
            call->stream_err = conn_err(c, rc, "bad stream from %s: %s", c->url,
                                        msg ? msg : sk_strerror(rc));
        free(msg);
        return 1;
    }
    if (dlen && call->on_delta) {
        call->delivered = 1;
        call->on_delta(call->ud, delta, dlen);
        if (call->cancelled)
            return 1;
    }
    return 0;
}

/* Decides, once the first body bytes arrive, whether this attempt is a
 * stream: a 2xx answer with Content-Type text/event-stream to a streaming
 * request.  A server that ignores "stream" and sends one JSON body is read
 * as a plain reply. */
static void classify(oai_call *call)
{
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    char *ct = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
    call->sse_mode = call->stream && call->status >= 200 &&
                     call->status < 300 && ct &&
                     strncasecmp(ct, "text/event-stream", 17) == 0;
    if (call->sse_mode && !call->resp)
        call->resp = resp_new();
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    oai_call *call = ud;
    size_t n = size * nmemb;
    if (call->cancelled)
        return 0;
    if (!call->status)
        classify(call);
    size_t max = kern_net_settings(call->k)->max_response_bytes;
    if (max && (n > max || call->rx_total > max - n)) {
        call->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    call->rx_total += n;
    if (!call->sse_mode) {
        sk_status rc = buf_add(&call->rx, ptr, n);
        if (rc == SK_TOO_LARGE)
            call->too_large = 1;
        return rc == SK_OK ? n : 0;
    }
    if (!call->resp) {
        call->stream_err = err_new(SK_NOMEM, "out of memory");
        return 0;
    }
    call->in_write = 1;
    sk_status rc = sse_feed(&call->sse, ptr, n, on_sse_event, call);
    call->in_write = 0;
    if (rc == SK_OK)
        return n;
    if (!call->stream_err && rc == SK_TOO_LARGE)
        call->too_large = 1;
    else if (!call->stream_err && rc == SK_NOMEM)
        call->stream_err = err_new(SK_NOMEM, "out of memory");
    return 0;
}

/* ---- attempts and retries ---------------------------------------------- */

static void attempt(void *ud);

/* Schedules the next attempt if the retry budget allows.  Returns 1 when a
 * retry is scheduled (the call lives on), 0 when the caller must fail. */
static int maybe_retry(oai_call *call)
{
    const kern_net *net = kern_net_settings(call->k);
    if (call->delivered || call->attempts > net->retries)
        return 0;
    long ms = http_retry_delay_ms(call->easy, call->status, call->attempts,
                                  net->retry_base_ms, &call->conn->rng);
    if (loop_after(call->k, ms, attempt, call, &call->timer) != SK_OK)
        return 0;
    return 1;
}

/* The error for a finished transfer that did not give a usable reply. */
static sk_err *transfer_error(oai_call *call, int code)
{
    oai_conn *c = call->conn;
    const kern_net *net = kern_net_settings(call->k);
    if (call->too_large)
        return conn_err(c, SK_TOO_LARGE, "reply from %s is larger than %zu bytes",
                        c->url, net->max_response_bytes);
    if (call->stream_err) {
        sk_err *e = call->stream_err;
        call->stream_err = NULL;
        return e;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
        double connect_s = 0;
        curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME, &connect_s);
        if (connect_s <= 0 && net->connect_timeout_ms > 0 &&
            net->connect_timeout_ms < net->timeout_ms)
            return conn_err(c, SK_TIMEOUT, "could not connect to %s within %ld ms",
                            c->url, net->connect_timeout_ms);
        return conn_err(c, SK_TIMEOUT, "no reply from %s within %ld ms", c->url,
                        net->timeout_ms);
    }
    if (call->sse_mode)
        return conn_err(c, SK_PROTOCOL, "stream ended mid-reply from %s (%s)",
                        c->url, call->errbuf[0] ? call->errbuf
                                                : curl_easy_strerror(code));
    return conn_err(c, SK_NETWORK, "%s: %s", c->url,
                    call->errbuf[0] ? call->errbuf
                                    : curl_easy_strerror((CURLcode)code));
}

static sk_err *http_error(oai_call *call)
{
    oai_conn *c = call->conn;
    char *m = call->rx.p ? oai_error_message(call->rx.p, call->rx.len) : NULL;
    if (!m && call->rx.len)
        m = http_body_excerpt(call->rx.p, call->rx.len);
    sk_err *e = conn_err(c, SK_MODEL, "HTTP %ld from %s: %s", call->status,
                         c->url, m && *m ? m : "(no message)");
    free(m);
    if (e)
        e->http_status = (int)call->status;
    return e;
}

/* Turns a finished 2xx attempt into a reply, or an error. */
static void finish_ok(oai_call *call)
{
    oai_conn *c = call->conn;
    if (call->sse_mode) {
        if (call->stream_err) {
            sk_err *e = call->stream_err;
            call->stream_err = NULL;
            finish(call, e ? e->code : SK_NOMEM, NULL, e);
            return;
        }
        if (!call->saw_done && !call->resp->finish_reason) {
            finish(call, SK_PROTOCOL, NULL,
                   conn_err(c, SK_PROTOCOL, "stream ended mid-reply from %s",
                            c->url));
            return;
        }
        model_resp *r = call->resp;
        call->resp = NULL;
        r->text = buf_steal(&call->text);
        if (!r->text) {
            free_resp(r);
            finish(call, SK_NOMEM, NULL, NULL);
            return;
        }
        finish(call, SK_OK, r, NULL);
        return;
    }
    model_resp *r = NULL;
    char *msg = NULL;
    sk_status rc = call->rx.p ? oai_parse_reply(call->rx.p, call->rx.len, &r, &msg)
                              : oai_parse_reply("", 0, &r, &msg);
    if (rc == SK_OK) {
        if (call->stream && call->on_delta && r->text[0]) {
            /* a server that ignored "stream": deliver it all at once */
            call->in_write = 1;
            call->on_delta(call->ud, r->text, strlen(r->text));
            call->in_write = 0;
            if (call->cancelled) {
                free_resp(r);
                call_free(call);
                return;
            }
        }
        finish(call, SK_OK, r, NULL);
        return;
    }
    sk_err *e;
    if (rc == SK_NOMEM) {
        e = NULL;
    } else {
        char *ct = NULL;
        curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (ct && rc == SK_PROTOCOL && strncasecmp(ct, "application/json", 16) != 0)
            e = conn_err(c, rc, "bad reply from %s: %s (Content-Type %s)", c->url,
                         msg ? msg : sk_strerror(rc), ct);
        else
            e = conn_err(c, rc, "bad reply from %s: %s", c->url,
                         msg ? msg : sk_strerror(rc));
    }
    free(msg);
    finish(call, rc, NULL, e);
}

static void on_done(void *ud, int code)
{
    oai_call *call = ud;
    call->in_loop = 0;
    if (call->cancelled) {
        call_free(call);
        return;
    }
    if (!call->status)
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    if (code == CURLE_OK && call->status >= 200 && call->status < 300) {
        finish_ok(call);
        return;
    }
    if (code == CURLE_OK) {
        if (http_retryable_status(call->status) && maybe_retry(call))
            return;
        finish(call, SK_MODEL, NULL, http_error(call));
        return;
    }
    if (!call->too_large && !call->stream_err && http_transport_error(code) &&
        maybe_retry(call))
        return;
    sk_err *e = transfer_error(call, code);
    finish(call, e ? e->code : SK_NOMEM, NULL, e);
}

static sk_status setup_easy(oai_call *call)
{
    oai_conn *c = call->conn;
    const kern_net *net = kern_net_settings(call->k);
    CURL *h = call->easy;
    curl_easy_reset(h);
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) \
    rc = curl_easy_setopt(h, opt, val)
    SET(CURLOPT_URL, c->url);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_POSTFIELDS, call->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_PRIVATE, call);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, net->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, net->timeout_ms);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#undef SET
    return rc == CURLE_OK ? SK_OK : SK_NOMEM;
}

/* One attempt: runs from start (first) or from a retry timer.  On failure
 * to even queue the transfer, finishes the call. */
static void attempt(void *ud)
{
    oai_call *call = ud;
    call->timer = NULL;
    call->attempts++;
    reset_attempt(call);
    sk_status rc = setup_easy(call);
    if (rc == SK_OK)
        rc = loop_add_easy(call->k, call->easy, on_done, call);
    if (rc != SK_OK) {
        finish(call, rc, NULL,
               err_new(rc, "could not start a request to %s", call->conn->url));
        return;
    }
    call->in_loop = 1;
}

static sk_status oai_start(void *self, sk_kernel *k, const model_req *req,
                           model_delta_fn on_delta, model_done_fn done,
                           void *ud, void **handle, sk_err **err)
{
    oai_conn *c = self;
    *err = NULL;
    if (handle)
        *handle = NULL;
    oai_call *call = sk_calloc(1, sizeof *call);
    if (!call)
        return SK_NOMEM;
    call->conn = c;
    c->refs++;
    call->k = k;
    call->on_delta = on_delta;
    call->done = done;
    call->ud = ud;
    call->stream = req->stream;
    buf_init(&call->rx, 0);
    buf_init(&call->text, 0);
    sse_init(&call->sse, 0);
    /* The body ceiling comes from the kernel and is enforced in on_write
     * against all the bytes of an attempt; the rx buffer's own ceiling
     * only backs it up. */
    call->rx.max = kern_net_settings(k)->max_response_bytes;
    call->text.max = call->rx.max;
    call->body = c->request_json(req, req->model && *req->model ? req->model
                                                                : c->model);
    if (!call->body) {
        call_free(call);
        return SK_NOMEM;
    }
    call->body_len = strlen(call->body);
    if (c->n_free)
        call->easy = c->free_easy[--c->n_free];
    else if (!(call->easy = curl_easy_init())) {
        call_free(call);
        *err = err_new(SK_NOMEM, "could not create an HTTP handle");
        return SK_NOMEM;
    }
    call->attempts = 1;
    reset_attempt(call);
    sk_status rc = setup_easy(call);
    if (rc == SK_OK)
        rc = loop_add_easy(k, call->easy, on_done, call);
    if (rc != SK_OK) {
        call_free(call);
        *err = err_new(rc, "could not start a request to %s", c->url);
        return rc;
    }
    call->in_loop = 1;
    if (handle)
        *handle = call;
    return SK_OK;
}

static void oai_cancel(void *self, sk_kernel *k, void *handle)
{
    (void)self;
    oai_call *call = handle;
    if (!call)
        return;
    if (call->in_write) {
        /* curl forbids removing a handle from inside its own callback:
         * on_write aborts the transfer and on_done frees the call. */
        call->cancelled = 1;
        call->done = NULL;
        return;
    }
    if (call->timer) {
        loop_cancel(k, call->timer);
        call->timer = NULL;
    }
    if (call->in_loop) {
        loop_remove_easy(k, call->easy);
        call->in_loop = 0;
    }
    call_free(call);
}

static void oai_destroy(void *self) { conn_unref(self); }

static const conn_vt openai_vt = {
    .name = "openai",
    .start = oai_start,
    .cancel = oai_cancel,
    .destroy = oai_destroy,
};

sk_connector *conn_openai_open(sk_kernel *k, const char *rest, sk_err **err)
{
    (void)k;
    *err = NULL;
    if (!rest || !*rest || *rest == '@') {
        *err = err_new(SK_USAGE, "openai model spec needs a model name "
                                 "(openai:MODEL or openai:MODEL@URL)");
        return NULL;
    }
    const char *at = http_find_base(rest);
    if (!at && strchr(rest, '@')) {
        *err = err_new(SK_USAGE, "openai model spec \"%s\": the base URL must "
                                 "start with http:// or https://", rest);
        return NULL;
    }
    const char *base = at ? at + 1 : getenv("OPENAI_BASE_URL");
    if (!base || !*base)
        base = DEFAULT_BASE_URL;
    size_t base_len = strlen(base);
    while (base_len && base[base_len - 1] == '/')
        base_len--;
    const char *key = getenv("OPENAI_API_KEY");

    sk_connector *conn = sk_calloc(1, sizeof *conn);
    oai_conn *c = sk_calloc(1, sizeof *c);
    if (!conn || !c)
        goto nomem;
    c->refs = 1;
    c->request_json = oai_request_json;
    c->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
             (uint64_t)(uintptr_t)c;
    if (!c->rng)
        c->rng = 0x9e3779b97f4a7c15ULL;
    if (!(c->url = sk_asprintf("%.*s/chat/completions", (int)base_len, base)))
        goto nomem;
    if (key && *key && !(c->key = sk_strdup(key)))
        goto nomem;
    struct curl_slist *h;
    /* "Expect:" stops curl waiting for 100-continue on large prompts. */
    const char *fixed[] = {"Content-Type: application/json",
                           "Accept: application/json, text/event-stream",
                           "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (!(h = curl_slist_append(c->headers, fixed[i])))
            goto nomem;
        c->headers = h;
    }
    if (c->key) {
        char *auth = sk_asprintf("Authorization: Bearer %s", c->key);
        if (!auth)
            goto nomem;
        h = curl_slist_append(c->headers, auth);
        memset(auth, 0, strlen(auth));
        free(auth);
        if (!h)
            goto nomem;
        c->headers = h;
    }
    size_t model_len = at ? (size_t)(at - rest) : strlen(rest);
    if (!(conn->model = sk_strndup(rest, model_len)) ||
        !(c->model = sk_strdup(conn->model)))
        goto nomem;
    if (!(conn->spec = sk_asprintf("openai:%s", rest)))
        goto nomem;
    conn->vt = &openai_vt;
    conn->self = c;
    return conn;
nomem:
    if (conn) {
        free(conn->model);
        free(conn->spec);
        free(conn);
    }
    conn_unref(c);
    *err = err_new(SK_NOMEM, "out of memory");
    return NULL;
}

/* The connector is the plain one with the flavor's body builder; its
 * spec keeps the flavor so that traces and the kernel's connector cache
 * tell them apart. */
sk_connector *conn_openai_open_flavor(sk_kernel *k, const char *rest,
                                      const char *flavor, sk_err **err)
{
    *err = NULL;
    int fl = flavor_of(flavor);
    if (fl < 0) {
        *err = err_new(SK_NOT_FOUND, "unknown server flavor \"%s\" (known: "
                                     "llamacpp, vllm)", flavor);
        return NULL;
    }
    sk_connector *conn = conn_openai_open(k, rest, err);
    if (!conn || fl == OAI_PLAIN)
        return conn;
    char *spec = sk_asprintf("openai+%s:%s", flavor, rest);
    if (!spec) {
        conn_close(conn);
        *err = err_new(SK_NOMEM, "out of memory");
        return NULL;
    }
    free(conn->spec);
    conn->spec = spec;
    oai_conn *c = conn->self;
    c->request_json = fl == OAI_LLAMACPP ? request_json_llamacpp
                                         : request_json_vllm;
    return conn;
}
