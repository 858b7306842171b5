/*
 * ollama.c -- Ollama's native chat API: "ollama:MODEL[@URL]".
 *
 * POST {base}/api/chat.  Sampling settings go in "options" (max_tokens is
 * "num_predict"); a JSON schema goes in "format", which Ollama enforces
 * while decoding.  Streams are NDJSON: one object per line carrying a
 * message.content delta, the last with "done": true, the finish reason and
 * the token counts.  Ollama streams unless told otherwise, so "stream" is
 * always sent.  The transfer machinery is http.c's.
 *
 * The base URL comes from the spec, else OLLAMA_HOST (a URL, or host:port
 * as Ollama's own CLI accepts it), else http://127.0.0.1:11434.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT "11434"

/* ---- wire format -------------------------------------------------------- */

static sk_status add_str(sk_buf *b, const char *s)
{
    s = s ? s : "";
    return buf_add_json_str(b, s, strlen(s));
}

/* Adds "key":v to the options object when v is set (NAN: unset). */
static sk_status add_option(sk_buf *b, int *n, const char *key, double v)
{
    if (!isfinite(v))
        return SK_OK;
    sk_status rc = http_json_key(b, (*n)++ > 0, key);
    return rc == SK_OK ? http_json_number(b, v) : rc;
}

/* The schema as compact JSON text (caller frees), or NULL when it is not
 * JSON: then the server is only asked for JSON ("format": "json"). */
static char *compact_schema(const char *schema)
{
    cJSON *s = cJSON_Parse(schema);
    if (!s)
        return NULL;
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    char *copy = text ? sk_strdup(text) : NULL;
    cJSON_free(text);
    return copy;
}

/* One message: an assistant's tool_calls (arguments as objects), a tool
 * result's tool_name. */
static sk_status add_message(sk_buf *b, const sk_msg *m)
{
    sk_status rc = buf_adds(b, "{\"role\":");
    if (rc == SK_OK)
        rc = add_str(b, m->role ? m->role : "user");
    if (rc == SK_OK)
        rc = buf_adds(b, ",\"content\":");
    if (rc == SK_OK)
        rc = add_str(b, m->content);
    if (rc == SK_OK && m->n_calls) {
        rc = buf_adds(b, ",\"tool_calls\":[");
        for (size_t i = 0; rc == SK_OK && i < m->n_calls; i++) {
            rc = buf_adds(b, i ? ",{\"function\":{\"name\":" : "{\"function\":{\"name\":");
            if (rc == SK_OK)
                rc = add_str(b, m->calls[i].name);
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"arguments\":");
            if (rc == SK_OK)
                rc = http_json_args(b, m->calls[i].arguments);
            if (rc == SK_OK)
                rc = buf_adds(b, "}}");
        }
        if (rc == SK_OK)
            rc = buf_addc(b, ']');
    }
    if (rc == SK_OK && m->tool_name) {
        rc = buf_adds(b, ",\"tool_name\":");
        if (rc == SK_OK)
            rc = add_str(b, m->tool_name);
    }
    return rc == SK_OK ? buf_addc(b, '}') : rc;
}

/* "tools", when they are offered and the model may call them: Ollama has
 * no tool_choice, so "none" sends none (a required call cannot be
 * forced). */
static sk_status add_tools(sk_buf *b, const model_req *req)
{
    if (!req->n_tools || req->tool_choice == CFG_CHOICE_NONE)
        return SK_OK;
    return http_json_tools(b, req, "{\"type\":\"object\"}", 0);
}

/* Built on an sk_buf (as openai.c does) so allocations can be failed in
 * tests.  Caller frees. */
static char *request_json(const model_req *req, const char *model)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "{\"model\":");
    if (rc == SK_OK)
        rc = add_str(&b, model);
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"messages\":[");
    for (size_t i = 0; rc == SK_OK && i < req->n_msgs; i++) {
        if (i)
            rc = buf_addc(&b, ',');
        if (rc == SK_OK)
            rc = add_message(&b, &req->msgs[i]);
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, req->stream ? "],\"stream\":true" : "],\"stream\":false");
    if (rc == SK_OK)
        rc = add_tools(&b, req);
    int has_options = req->max_tokens >= 0 || req->n_stop > 0 ||
                      isfinite(req->temperature) || isfinite(req->top_p) ||
                      isfinite(req->presence_penalty) ||
                      isfinite(req->frequency_penalty);
    if (rc == SK_OK && has_options) {
        int n = 0;
        rc = buf_adds(&b, ",\"options\":{");
        if (rc == SK_OK)
            rc = add_option(&b, &n, "temperature", req->temperature);
        if (rc == SK_OK)
            rc = add_option(&b, &n, "top_p", req->top_p);
        if (rc == SK_OK && req->max_tokens >= 0) {
            rc = http_json_key(&b, n++ > 0, "num_predict");
            if (rc == SK_OK)
                rc = buf_printf(&b, "%d", req->max_tokens);
        }
        if (rc == SK_OK)
            rc = add_option(&b, &n, "presence_penalty", req->presence_penalty);
        if (rc == SK_OK)
            rc = add_option(&b, &n, "frequency_penalty", req->frequency_penalty);
        if (rc == SK_OK && req->n_stop > 0) {
            rc = http_json_key(&b, n++ > 0, "stop");
            if (rc == SK_OK)
                rc = http_json_strs(&b, req->stop, req->n_stop);
        }
        if (rc == SK_OK)
            rc = buf_addc(&b, '}');
    }
    if (rc == SK_OK && req->json_schema) {
        char *schema = compact_schema(req->json_schema);
        rc = buf_adds(&b, ",\"format\":");
        if (rc == SK_OK)
            rc = buf_adds(&b, schema ? schema : "\"json\"");
        free(schema);
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, '}');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Sets *errmsg (caller frees) and returns code. */
static sk_status fail(char **errmsg, sk_status code, const char *msg)
{
    if (errmsg)
        *errmsg = sk_strdup(msg);
    return code;
}

static sk_status set_str(char **slot, const cJSON *s)
{
    char *copy = sk_strdup(s->valuestring);
    if (!copy)
        return SK_NOMEM;
    free(*slot);
    *slot = copy;
    return SK_OK;
}

static void read_count(const cJSON *root, const char *name, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e15)
        *out = (long)v->valuedouble;
}

/* The fields every object carries (model) and the final one's (done
 * reason, token counts).  *done gets the "done" flag. */
static sk_status read_tail(const cJSON *root, model_resp *r, int *done)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(model) && !r->model && set_str(&r->model, model) != SK_OK)
        return SK_NOMEM;
    *done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "done"));
    if (!*done)
        return SK_OK;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(root, "done_reason");
    if (cJSON_IsString(reason) && set_str(&r->finish_reason, reason) != SK_OK)
        return SK_NOMEM;
    read_count(root, "prompt_eval_count", &r->prompt_tokens);
    read_count(root, "eval_count", &r->completion_tokens);
    return SK_OK;
}

/* The object's "error" message, or NULL.  Borrowed from the tree. */
static const char *error_in(const cJSON *root)
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

/* Appends message.tool_calls of one object to r (each comes whole, with
 * its arguments as an object). */
static sk_status read_tool_calls(const cJSON *root, model_resp *r, char **errmsg)
{
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
    const cJSON *calls = cJSON_IsObject(msg) ? cJSON_GetObjectItemCaseSensitive(msg, "tool_calls")
                                             : NULL;
    if (!calls || cJSON_IsNull(calls))
        return SK_OK;
    if (!cJSON_IsArray(calls))
        return fail(errmsg, SK_PROTOCOL, "reply \"tool_calls\" is not an array");
    const cJSON *item;
    cJSON_ArrayForEach(item, calls)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(item, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        if (!cJSON_IsObject(fn) || !cJSON_IsString(name))
            return fail(errmsg, SK_PROTOCOL, "a tool call has no \"function.name\"");
        int too_many = 0;
        sk_tool_call *c = http_call_at(r, (int)r->n_calls, &too_many);
        if (!c)
            return too_many ? fail(errmsg, SK_PROTOCOL, "too many tool calls in one reply")
                            : SK_NOMEM;
        if ((cJSON_IsString(id) && set_str(&c->id, id) != SK_OK) ||
            set_str(&c->name, name) != SK_OK ||
            !(c->arguments = http_args_text(cJSON_GetObjectItemCaseSensitive(fn, "arguments"))))
            return SK_NOMEM;
    }
    return SK_OK;
}

/* The message.content of one object: NULL when absent, *bad when present
 * but not a string. */
static const char *content_of(const cJSON *root, int *bad)
{
    *bad = 0;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (!msg || cJSON_IsNull(msg))
        return NULL;
    const cJSON *c = cJSON_IsObject(msg) ? cJSON_GetObjectItemCaseSensitive(msg, "content")
                                         : NULL;
    if (cJSON_IsString(c))
        return c->valuestring;
    *bad = !cJSON_IsObject(msg) || (c && !cJSON_IsNull(c));
    return NULL;
}

static sk_status parse_reply(const char *body, size_t len, model_resp **out,
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
    int bad, done;
    const char *text;
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply is not a JSON object");
    } else if (error_in(root)) {
        rc = fail(errmsg, SK_MODEL, error_in(root));
    } else if (!(text = content_of(root, &bad))) {
        rc = fail(errmsg, SK_PROTOCOL, "reply has no \"message.content\" string");
    } else if (!(r = http_resp_new()) || !(r->text = sk_strdup(text))) {
        rc = SK_NOMEM;
    } else {
        rc = read_tail(root, r, &done);
        if (rc == SK_OK)
            rc = read_tool_calls(root, r, errmsg);
    }
    cJSON_Delete(root);
    if (rc != SK_OK) {
        resp_free(r);
        return rc;
    }
    *out = r;
    return SK_OK;
}

static sk_status apply_event(const char *event, const char *data, size_t len,
                             model_resp *resp, sk_buf *text, const char **delta,
                             size_t *delta_len, int *end, char **errmsg)
{
    (void)event;
    *delta = NULL;
    *delta_len = 0;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "stream line is not valid JSON");
    sk_status rc = SK_OK;
    int bad;
    const char *c;
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "stream line is not a JSON object");
    } else if (error_in(root)) {
        rc = fail(errmsg, SK_MODEL, error_in(root));
    } else if ((c = content_of(root, &bad)) && *c) {
        size_t n = strlen(c), before = text->len;
        rc = buf_add(text, c, n);
        if (rc == SK_TOO_LARGE)
            fail(errmsg, rc, "streamed reply too large");
        if (rc == SK_OK) {
            *delta = text->p + before;
            *delta_len = n;
        }
    } else if (bad) {
        rc = fail(errmsg, SK_PROTOCOL, "stream line message.content is not a string");
    }
    if (rc == SK_OK)
        rc = read_tail(root, resp, end);
    if (rc == SK_OK)
        rc = read_tool_calls(root, resp, errmsg);
    cJSON_Delete(root);
    return rc;
}

static char *error_message(const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *m = cJSON_IsObject(root) ? error_in(root) : NULL;
    char *copy = m ? sk_strdup(m) : NULL;
    cJSON_Delete(root);
    return copy;
}

const http_proto http_proto_ollama = {
    .ndjson = 1,
    .request_json = request_json,
    .parse_reply = parse_reply,
    .apply_event = apply_event,
    .error_message = error_message,
    .retryable = http_retryable_status,
};

static const conn_vt ollama_vt = {
    .name = "ollama",
    .start = http_start,
    .cancel = http_cancel,
    .destroy = http_destroy,
    .describe = http_describe,
    .tools = 1,
};

/* ---- the connector ------------------------------------------------------ */

/* OLLAMA_HOST as a base URL: a scheme-less "host", "host:port" or ":port"
 * gets http:// and the default host and port.  Caller frees. */
static char *host_base(const char *host)
{
    if (!host || !*host)
        return sk_asprintf("http://%s:%s", DEFAULT_HOST, DEFAULT_PORT);
    if (strncmp(host, "http://", 7) == 0 || strncmp(host, "https://", 8) == 0)
        return sk_strdup(host);
    const char *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    const char *path = slash ? slash : "";
    const char *colon = memchr(host, ':', hlen);
    if (host[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(host, ']', hlen);
        colon = close && close + 1 < host + hlen && close[1] == ':' ? close + 1 : NULL;
    }
    if (!colon)
        return sk_asprintf("http://%.*s:%s%s", (int)hlen, host, DEFAULT_PORT, path);
    if (colon == host)
        return sk_asprintf("http://%s%.*s%s", DEFAULT_HOST, (int)hlen, host, path);
    return sk_asprintf("http://%.*s%s", (int)hlen, host, path);
}

static sk_connector *conn_ollama_open(sk_kernel *k, const char *rest, sk_err **err)
{
    (void)k;
    *err = NULL;
    if (!rest || !*rest || *rest == '@') {
        *err = err_new(SK_USAGE, "ollama model spec needs a model name "
                                 "(ollama:MODEL or ollama:MODEL@URL)");
        return NULL;
    }
    if (strncmp(rest, "http://", 7) == 0 || strncmp(rest, "https://", 8) == 0) {
        *err = err_new(SK_USAGE, "model spec \"ollama:%s\" has no model name, so "
                                 "the URL would be sent as one: write "
                                 "ollama:MODEL@%s", rest, rest);
        return NULL;
    }
    const char *at = http_find_base(rest);
    if (!at && strchr(rest, '@')) {
        *err = err_new(SK_USAGE, "ollama model spec \"%s\": the base URL must "
                                 "start with http:// or https://", rest);
        return NULL;
    }
    char *base = at ? sk_strdup(at + 1) : host_base(getenv("OLLAMA_HOST"));
    char *url = NULL;
    void *self = NULL;
    sk_connector *conn = NULL;
    if (!base)
        goto nomem;
    size_t base_len = strlen(base);
    while (base_len && base[base_len - 1] == '/')
        base_len--;
    size_t model_len = at ? (size_t)(at - rest) : strlen(rest);
    if (!(url = sk_asprintf("%.*s/api/chat", (int)base_len, base)) ||
        !(conn = sk_calloc(1, sizeof *conn)) ||
        !(conn->model = sk_strndup(rest, model_len)) ||
        !(conn->spec = sk_asprintf("ollama:%s", rest)))
        goto nomem;
    const char *accept[] = {"Accept: application/json, application/x-ndjson"};
    if (!(self = http_conn_new(&http_proto_ollama, url, conn->model, NULL, accept, 1)))
        goto nomem;
    free(base);
    conn->endpoint = url;
    conn->vt = &ollama_vt;
    conn->self = self;
    return conn;
nomem:
    free(base);
    free(url);
    if (conn) {
        free(conn->model);
        free(conn->spec);
        free(conn);
    }
    *err = err_new(SK_NOMEM, "out of memory");
    return NULL;
}

static sk_connector *open_ollama(sk_kernel *k, const char *kind, const char *rest,
                                sk_err **err)
{
    (void)kind;
    *err = NULL;
    return conn_ollama_open(k, rest, err);
}

const conn_kind conn_kind_ollama = {"ollama", open_ollama, NULL};
