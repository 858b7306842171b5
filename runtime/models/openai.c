/*
 * openai.c -- the OpenAI chat completions wire format and connector.
 *
 * The oai_* functions are pure: they build request bodies and read reply
 * bodies, streamed chunks and error bodies, and never touch the network
 * (they are what the fuzz targets exercise).  The connector is that wire
 * format as an http_proto, one per server flavor; http.c runs the
 * requests.
 *
 * Works with anything that speaks the same protocol (OpenAI, vLLM,
 * llama.cpp's server, Ollama's /v1, LiteLLM...): "openai:MODEL@BASEURL".
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"

#define DEFAULT_BASE_URL "https://api.openai.com/v1"

/* ======================================================================
 * Wire format
 * ====================================================================== */

/* Adds "key":value for a setting that is set (finite; NAN means unset). */
static sk_status add_opt_double(sk_buf *b, const char *key, double v)
{
    if (!isfinite(v))
        return SK_OK;
    sk_status rc = http_json_key(b, 1, key);
    return rc == SK_OK ? http_json_number(b, v) : rc;
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
    sk_status rc = http_json_key(b, 1, key);
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
            rc = http_json_key(b, 1, "guided_choice");
            return rc == SK_OK ? http_json_strs(b, req->choices, req->n_choices)
                               : rc;
        }
        if (req->regex && *req->regex) {
            rc = http_json_key(b, 1, "guided_regex");
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
        rc = http_json_key(b, 1, "grammar");
        return rc == SK_OK ? add_str(b, req->grammar) : rc;
    }
    if (choices) {
        char *g = choice_grammar(req->choices, req->n_choices);
        if (!g)
            return SK_NOMEM;
        rc = http_json_key(b, 1, "grammar");
        if (rc == SK_OK)
            rc = add_str(b, g);
        free(g);
    }
    return rc;
}

/* One message: an assistant's tool calls, a tool result's call id. */
static sk_status add_message(sk_buf *b, const sk_msg *m)
{
    sk_status rc = buf_adds(b, "{\"role\":");
    if (rc == SK_OK)
        rc = add_str(b, m->role ? m->role : "user");
    if (rc == SK_OK)
        rc = buf_adds(b, ",\"content\":");
    if (rc == SK_OK)
        rc = m->n_calls && !(m->content && *m->content) ? buf_adds(b, "null")
                                                         : add_str(b, m->content);
    if (rc == SK_OK && m->n_calls) {
        rc = buf_adds(b, ",\"tool_calls\":[");
        for (size_t i = 0; rc == SK_OK && i < m->n_calls; i++) {
            const sk_tool_call *c = &m->calls[i];
            rc = buf_adds(b, i ? ",{\"id\":" : "{\"id\":");
            if (rc == SK_OK)
                rc = add_str(b, c->id);
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"type\":\"function\",\"function\":{\"name\":");
            if (rc == SK_OK)
                rc = add_str(b, c->name);
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"arguments\":");
            if (rc == SK_OK)
                rc = add_str(b, c->arguments && *c->arguments ? c->arguments : "{}");
            if (rc == SK_OK)
                rc = buf_adds(b, "}}");
        }
        if (rc == SK_OK)
            rc = buf_addc(b, ']');
    }
    if (rc == SK_OK && m->call_id) {
        rc = buf_adds(b, ",\"tool_call_id\":");
        if (rc == SK_OK)
            rc = add_str(b, m->call_id);
    }
    return rc == SK_OK ? buf_addc(b, '}') : rc;
}

/* "tools", "tool_choice" and "parallel_tool_calls", when tools are
 * offered. */
static sk_status add_tools(sk_buf *b, const model_req *req)
{
    if (!req->n_tools)
        return SK_OK;
    sk_status rc = http_json_tools(b, req, "{}", 1);
    const char *choice = req->tool_choice == CFG_CHOICE_REQUIRED ? "required"
                         : req->tool_choice == CFG_CHOICE_NONE   ? "none"
                                                                 : "auto";
    if (rc == SK_OK)
        rc = buf_printf(b, ",\"tool_choice\":\"%s\"", choice);
    if (rc == SK_OK && req->parallel_tool_calls >= 0)
        rc = buf_printf(b, ",\"parallel_tool_calls\":%s",
                        req->parallel_tool_calls ? "true" : "false");
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
            rc = add_message(&b, &req->msgs[i]);
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, ']');
    if (rc == SK_OK)
        rc = add_tools(&b, req);
    if (rc == SK_OK && req->max_tokens >= 0) {
        rc = http_json_key(&b, 1, "max_tokens");
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
        rc = http_json_key(&b, 1, "stop");
        if (rc == SK_OK)
            rc = http_json_strs(&b, req->stop, req->n_stop);
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
char *oai_request_json_flavor(const model_req *req, const char *model,
                              const char *flavor)
{
    int fl = flavor_of(flavor);
    return fl < 0 ? NULL : request_body(req, model, (oai_flavor)fl);
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

/* Reads message.tool_calls (or, streaming, delta.tool_calls: pieces to
 * join by "index") into r->calls.  Absent or null is no calls. */
static sk_status read_tool_calls(const cJSON *calls, model_resp *r, int stream,
                                 char **errmsg)
{
    if (!calls || cJSON_IsNull(calls))
        return SK_OK;
    if (!cJSON_IsArray(calls))
        return fail(errmsg, SK_PROTOCOL, "reply \"tool_calls\" is not an array");
    int pos = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, calls)
    {
        if (!cJSON_IsObject(item))
            return fail(errmsg, SK_PROTOCOL, "a tool call is not an object");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(item, "function");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(item, "index");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if ((fn && !cJSON_IsObject(fn)) || (!stream && !cJSON_IsObject(fn)))
            return fail(errmsg, SK_PROTOCOL, "a tool call has no \"function\" object");
        if ((name && !cJSON_IsString(name) && !cJSON_IsNull(name)) ||
            (!stream && !cJSON_IsString(name)))
            return fail(errmsg, SK_PROTOCOL, "a tool call's function has no \"name\"");
        int index = pos++;
        if (stream && cJSON_IsNumber(ix)) {
            if (ix->valuedouble < 0 || ix->valuedouble > 1e6)
                return fail(errmsg, SK_PROTOCOL, "a tool call's \"index\" is out of range");
            index = (int)ix->valuedouble;
        }
        int too_many = 0;
        sk_tool_call *c = http_call_at(r, index, &too_many);
        if (!c)
            return too_many ? fail(errmsg, SK_PROTOCOL, "more than %d tool calls in "
                                                        "one reply", TOOL_CALLS_MAX)
                            : SK_NOMEM;
        if (cJSON_IsString(id) && *id->valuestring && set_str(&c->id, id) != SK_OK)
            return SK_NOMEM;
        /* a name comes whole, once; a server that repeats it is read once */
        if (cJSON_IsString(name) && *name->valuestring &&
            !(c->name && strcmp(c->name, name->valuestring) == 0) &&
            http_str_append(&c->name, name->valuestring) != SK_OK)
            return SK_NOMEM;
        if (args && !cJSON_IsNull(args)) {
            char *a = http_args_text(args);
            sk_status rc = a ? http_str_append(&c->arguments, a) : SK_NOMEM;
            free(a);
            if (rc != SK_OK)
                return rc;
        }
        if ((!c->name && http_str_append(&c->name, "") != SK_OK) ||
            (!c->arguments && http_str_append(&c->arguments, "") != SK_OK))
            return SK_NOMEM;
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
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    int has_calls = cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0;
    if (!cJSON_IsString(content) && !(has_calls && (!content || cJSON_IsNull(content)))) {
        if (cJSON_IsString(finish) &&
            strcmp(finish->valuestring, "content_filter") == 0)
            rc = fail(errmsg, SK_FILTERED,
                      "the server's content filter withheld the reply");
        else
            rc = fail(errmsg, SK_PROTOCOL,
                      "reply choices[0].message.content is not a string");
        goto done;
    }
    if (!(r = http_resp_new())) {
        rc = SK_NOMEM;
        goto done;
    }
    if (!cJSON_IsString(content))
        r->text = sk_strdup("");
    else
        rc = set_str(&r->text, content);
    if (rc != SK_OK || !r->text) {
        rc = SK_NOMEM;
        goto done;
    }
    if (cJSON_IsString(finish) && (rc = set_str(&r->finish_reason, finish)) != SK_OK)
        goto done;
    if ((rc = read_tool_calls(calls, r, 0, errmsg)) != SK_OK)
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
        resp_free(r);
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
        rc = read_tool_calls(cJSON_GetObjectItemCaseSensitive(d, "tool_calls"), resp, 1,
                             errmsg);
        if (rc != SK_OK)
            goto done;
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

/* One stream event.  "data: [DONE]" is the end marker; an "error" event
 * carries an error body.  A chunk with a finish_reason makes the reply
 * whole (some servers never send [DONE]) but later chunks still count:
 * the usage chunk comes after it. */
static sk_status apply_event(const char *event, const char *data, size_t len,
                             model_resp *resp, sk_buf *text, const char **delta,
                             size_t *delta_len, int *end, char **errmsg)
{
    *delta = NULL;
    *delta_len = 0;
    if (errmsg)
        *errmsg = NULL;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        *end = 1;
        return SK_OK;
    }
    if (strcmp(event, "error") == 0) {
        if (errmsg)
            *errmsg = oai_error_message(data, len);
        return SK_MODEL;
    }
    sk_status rc = oai_apply_chunk(data, len, resp, text, delta, delta_len, errmsg);
    if (rc == SK_OK && resp->finish_reason && !*end)
        *end = -1;
    return rc;
}

/* One per flavor, so that a connector holds its body builder as a plain
 * function pointer; indexed by oai_flavor. */
static char *request_json_llamacpp(const model_req *req, const char *model)
{
    return request_body(req, model, OAI_LLAMACPP);
}

static char *request_json_vllm(const model_req *req, const char *model)
{
    return request_body(req, model, OAI_VLLM);
}

/* llama.cpp's server: the request pinned to one slot, whose KV cache
 * keeps the prompt for the next request that shares its prefix
 * (cache_prompt is the default on current servers, not on older ones).
 * The fields go last, after the prompt, so that the body's head (what
 * the router compares) is the prompt's.  Caller frees. */
static char *with_slot_llamacpp(const char *body, int slot)
{
    char tail[64];
    int t = snprintf(tail, sizeof tail, ",\"id_slot\":%d,\"cache_prompt\":true}", slot);
    size_t n = strlen(body);
    if (n == 0 || body[n - 1] != '}' || t < 0 || (size_t)t >= sizeof tail)
        return NULL;
    char *out = sk_malloc(n - 1 + (size_t)t + 1);
    if (!out)
        return NULL;
    memcpy(out, body, n - 1);
    memcpy(out + n - 1, tail, (size_t)t + 1);
    return out;
}

/* A 404 from a URL with no version in its path: most OpenAI-compatible
 * servers answer under /v1, and the base URL is where it was left out. */
static char *error_hint(const char *url, long status)
{
    if (status != 404 || http_url_has_v1(url))
        return NULL;
    const char *tail = strstr(url, "/chat/completions");
    return sk_asprintf(" (the base URL has no /v1, under which OpenAI-compatible "
                       "servers answer: try openai:MODEL@%.*s/v1)",
                       tail ? (int)(tail - url) : (int)strlen(url), url);
}

#define OAI_PROTO(body, slot)               \
    {                                       \
        .ndjson = 0,                        \
        .with_slot = slot,                  \
        .request_json = body,               \
        .parse_reply = oai_parse_reply,     \
        .apply_event = apply_event,         \
        .error_message = oai_error_message, \
        .retryable = http_retryable_status, \
        .hint = error_hint,                 \
    }

static const http_proto oai_protos[] = {
    [OAI_PLAIN] = OAI_PROTO(oai_request_json, NULL),
    [OAI_LLAMACPP] = OAI_PROTO(request_json_llamacpp, with_slot_llamacpp),
    [OAI_VLLM] = OAI_PROTO(request_json_vllm, NULL),
};

static const conn_vt openai_vt = {
    .name = "openai",
    .start = http_start,
    .cancel = http_cancel,
    .destroy = http_destroy,
    .describe = http_describe,
    .tools = 1,
};

/* Frees a header line that may hold the key, wiping it first. */
static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

/* A spec whose model name was left out: "openai:http://host/v1" would
 * otherwise send the URL as the model name to the default server. */
static int url_as_model(const char *rest)
{
    return strncmp(rest, "http://", 7) == 0 || strncmp(rest, "https://", 8) == 0;
}

/* The connector for rest ("MODEL[@URL]") speaking fl's dialect, under the
 * kind name kind ("openai", "openai+llamacpp", "azure").  Its spec keeps
 * the kind so that traces and the kernel's connector cache tell them
 * apart.  Azure OpenAI (the azure kind, an Azure host or an api-version
 * in the URL) takes its key from AZURE_OPENAI_API_KEY in an api-key
 * header, and a bare resource URL is completed to the deployment named by
 * MODEL. */
static sk_connector *open_flavor(const char *rest, oai_flavor fl, const char *kind,
                                 int azure_kind, sk_err **err)
{
    *err = NULL;
    if (!rest || !*rest || *rest == '@') {
        *err = err_new(SK_USAGE, "%s model spec needs a model name "
                                 "(%s:MODEL or %s:MODEL@URL)", kind, kind, kind);
        return NULL;
    }
    if (url_as_model(rest)) {
        *err = err_new(SK_USAGE, "model spec \"%s:%s\" has no model name, so the URL "
                                 "would be sent as one: write %s:MODEL@%s",
                       kind, rest, kind, rest);
        return NULL;
    }
    const char *at = http_find_base(rest);
    if (!at && strchr(rest, '@')) {
        *err = err_new(SK_USAGE, "%s model spec \"%s\": the base URL must "
                                 "start with http:// or https://", kind, rest);
        return NULL;
    }
    const char *base = at ? at + 1
                          : getenv(azure_kind ? "AZURE_OPENAI_ENDPOINT" : "OPENAI_BASE_URL");
    if (azure_kind && (!base || !*base)) {
        *err = err_new(SK_CONFIG, "azure:%s needs the resource's URL: set "
                                  "AZURE_OPENAI_ENDPOINT (https://RESOURCE.openai."
                                  "azure.com) or write azure:DEPLOYMENT@URL", rest);
        return NULL;
    }
    if (!base || !*base)
        base = DEFAULT_BASE_URL;
    int azure = azure_kind || http_url_is_azure(base);
    const char *key_env = azure ? "AZURE_OPENAI_API_KEY" : "OPENAI_API_KEY";
    const char *key = getenv(key_env);
    if (key && !*key)
        key = NULL;
    char *url = NULL, *auth = NULL;
    sk_connector *conn = NULL;
    size_t model_len = at ? (size_t)(at - rest) : strlen(rest);
    if (!(url = oai_chat_url(base, rest, model_len, azure)) ||
        (key && !(auth = azure ? sk_asprintf("api-key: %s", key)
                               : sk_asprintf("Authorization: Bearer %s", key))) ||
        !(conn = sk_calloc(1, sizeof *conn)) ||
        !(conn->model = sk_strndup(rest, model_len)))
        goto nomem;
    conn->spec = sk_asprintf("%s:%s", kind, rest);
    if (!conn->spec)
        goto nomem;
    const char *headers[] = {"Accept: application/json, text/event-stream", auth};
    conn->self = http_conn_new(&oai_protos[fl], url, conn->model, key, headers,
                               auth ? 2 : 1);
    if (!conn->self)
        goto nomem;
    http_conn_set_auth(conn->self, key_env, http_host_needs_key(url));
    conn->endpoint = url;
    free_secret(auth);
    conn->vt = &openai_vt;
    return conn;
nomem:
    free(url);
    free_secret(auth);
    if (conn) {
        free(conn->model);
        free(conn->spec);
        free(conn);
    }
    *err = err_new(SK_NOMEM, "out of memory");
    return NULL;
}

static sk_connector *open_plain(sk_kernel *k, const char *kind, const char *rest,
                                sk_err **err)
{
    (void)k;
    (void)kind;
    *err = NULL;
    return open_flavor(rest, OAI_PLAIN, "openai", 0, err);
}

/* "openai+FLAVOR:...": the server's extras, "llamacpp" (grammar, n_probs)
 * or "vllm" (guided_json, guided_regex, guided_choice). */
static sk_connector *open_flavored(sk_kernel *k, const char *kind, const char *rest,
                                   sk_err **err)
{
    (void)k;
    *err = NULL;
    const char *flavor = kind + strlen("openai+");
    int fl = flavor_of(flavor);
    if (fl < 0 || fl == OAI_PLAIN) {
        *err = err_new(SK_NOT_FOUND, "unknown server flavor \"%s\" (known: "
                                     "openai+llamacpp, openai+vllm)", flavor);
        return NULL;
    }
    return open_flavor(rest, (oai_flavor)fl, kind, 0, err);
}

/* "azure:DEPLOYMENT[@URL]": Azure OpenAI, the resource from the URL or
 * AZURE_OPENAI_ENDPOINT. */
static sk_connector *open_azure(sk_kernel *k, const char *kind, const char *rest,
                                sk_err **err)
{
    (void)k;
    (void)kind;
    return open_flavor(rest, OAI_PLAIN, "azure", 1, err);
}

const conn_kind conn_kind_openai = {"openai", open_plain, NULL};
const conn_kind conn_kind_openai_flavor = {"openai+", open_flavored, NULL};
const conn_kind conn_kind_azure = {"azure", open_azure, NULL};
