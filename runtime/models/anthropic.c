/*
 * anthropic.c -- Anthropic's Messages API: "anthropic:MODEL[@URL]".
 *
 * POST {base}/v1/messages with the key in x-api-key (ANTHROPIC_API_KEY)
 * and the API version pinned in anthropic-version.  Differences from the
 * OpenAI shape that matter here: the system prompt travels apart from the
 * messages, the conversation holds only user and assistant turns that
 * alternate (consecutive turns of one role are merged), max_tokens is
 * required, and a reply is a list of content blocks.  Streams are SSE with
 * typed events (message_start, content_block_delta, message_delta,
 * message_stop, ping, error).  The transfer machinery is http.c's; 529
 * (overloaded) is retried as well as the usual statuses.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"

#define DEFAULT_BASE_URL "https://api.anthropic.com"
#define API_VERSION "2023-06-01"
#define DEFAULT_MAX_TOKENS 1024

/* ---- wire format -------------------------------------------------------- */

static int is_system(const sk_msg *m)
{
    return m->role && strcmp(m->role, "system") == 0;
}

static const char *turn_role(const sk_msg *m)
{
    return m->role && strcmp(m->role, "assistant") == 0 ? "assistant" : "user";
}

/* Appends the contents of the messages that pass keep, joined by blank
 * lines, as one JSON string. */
static sk_status add_joined(sk_buf *b, const sk_msg *msgs, size_t from, size_t to,
                            int system, const char *role)
{
    sk_buf s;
    buf_init(&s, 0);
    sk_status rc = SK_OK;
    int n = 0;
    for (size_t i = from; rc == SK_OK && i < to; i++) {
        if (is_system(&msgs[i]) != system ||
            (!system && strcmp(turn_role(&msgs[i]), role) != 0))
            continue;
        if (n++)
            rc = buf_adds(&s, "\n\n");
        if (rc == SK_OK)
            rc = buf_adds(&s, msgs[i].content ? msgs[i].content : "");
    }
    if (rc == SK_OK)
        rc = buf_add_json_str(b, s.p ? s.p : "", s.len);
    buf_free(&s);
    return rc;
}

static int is_tool_result(const sk_msg *m)
{
    return m->call_id != NULL;
}

/* A run of one role as content blocks, when it holds tool calls or tool
 * results: an assistant's text then its tool_use blocks; a user turn's
 * tool_result blocks first (as the API wants them), then its text. */
static sk_status add_blocks(sk_buf *b, const sk_msg *msgs, size_t from, size_t to)
{
    sk_buf text;
    buf_init(&text, 0);
    sk_status rc = buf_addc(b, '[');
    int n = 0;
    for (size_t i = from; rc == SK_OK && i < to; i++) {
        const sk_msg *m = &msgs[i];
        if (is_system(m))
            continue;
        if (is_tool_result(m)) {
            rc = buf_adds(b, n++ ? ",{\"type\":\"tool_result\",\"tool_use_id\":"
                                 : "{\"type\":\"tool_result\",\"tool_use_id\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, m->call_id, strlen(m->call_id));
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"content\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, m->content ? m->content : "",
                                      m->content ? strlen(m->content) : 0);
            if (rc == SK_OK && m->is_error)
                rc = buf_adds(b, ",\"is_error\":true");
            if (rc == SK_OK)
                rc = buf_addc(b, '}');
        } else if (m->content && *m->content) {
            if (text.len)
                rc = buf_adds(&text, "\n\n");
            if (rc == SK_OK)
                rc = buf_adds(&text, m->content);
        }
    }
    if (rc == SK_OK && text.len) {
        rc = buf_adds(b, n++ ? ",{\"type\":\"text\",\"text\":" : "{\"type\":\"text\",\"text\":");
        if (rc == SK_OK)
            rc = buf_add_json_str(b, text.p, text.len);
        if (rc == SK_OK)
            rc = buf_addc(b, '}');
    }
    for (size_t i = from; rc == SK_OK && i < to; i++) {
        for (size_t c = 0; rc == SK_OK && c < msgs[i].n_calls; c++) {
            const sk_tool_call *tc = &msgs[i].calls[c];
            rc = buf_adds(b, n++ ? ",{\"type\":\"tool_use\",\"id\":"
                                 : "{\"type\":\"tool_use\",\"id\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, tc->id ? tc->id : "", tc->id ? strlen(tc->id) : 0);
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"name\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, tc->name ? tc->name : "",
                                      tc->name ? strlen(tc->name) : 0);
            if (rc == SK_OK)
                rc = buf_adds(b, ",\"input\":");
            if (rc == SK_OK)
                rc = http_json_args(b, tc->arguments);
            if (rc == SK_OK)
                rc = buf_addc(b, '}');
        }
    }
    if (rc == SK_OK && n == 0) /* an empty turn still needs its text */
        rc = buf_adds(b, "{\"type\":\"text\",\"text\":\"\"}");
    buf_free(&text);
    return rc == SK_OK ? buf_addc(b, ']') : rc;
}

/* "tools" ({name, description, input_schema}) and "tool_choice" ("auto",
 * "any" for required, "none"), when tools are offered. */
static sk_status add_tools(sk_buf *b, const model_req *req)
{
    if (!req->n_tools)
        return SK_OK;
    sk_status rc = buf_adds(b, ",\"tools\":[");
    for (size_t i = 0; rc == SK_OK && i < req->n_tools; i++) {
        const tool_def *t = &req->tools[i];
        rc = buf_adds(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == SK_OK)
            rc = buf_add_json_str(b, t->name, strlen(t->name));
        if (rc == SK_OK && t->description && *t->description) {
            rc = buf_adds(b, ",\"description\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, t->description, strlen(t->description));
        }
        if (rc == SK_OK)
            rc = buf_adds(b, ",\"input_schema\":");
        if (rc == SK_OK)
            rc = buf_adds(b, t->parameters ? t->parameters : "{\"type\":\"object\"}");
        if (rc == SK_OK)
            rc = buf_addc(b, '}');
    }
    const char *choice = req->tool_choice == CFG_CHOICE_REQUIRED ? "any"
                         : req->tool_choice == CFG_CHOICE_NONE   ? "none"
                                                                 : "auto";
    if (rc == SK_OK)
        rc = buf_printf(b, "],\"tool_choice\":{\"type\":\"%s\"", choice);
    if (rc == SK_OK && req->parallel_tool_calls == 0 && req->tool_choice != CFG_CHOICE_NONE)
        rc = buf_adds(b, ",\"disable_parallel_tool_use\":true");
    return rc == SK_OK ? buf_addc(b, '}') : rc;
}

/* Built on an sk_buf (as openai.c does) so allocations can be failed in
 * tests.  Caller frees. */
static char *request_json(const model_req *req, const char *model)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "{\"model\":");
    if (rc == SK_OK)
        rc = buf_add_json_str(&b, model ? model : "", model ? strlen(model) : 0);
    if (rc == SK_OK)
        rc = buf_printf(&b, ",\"max_tokens\":%d",
                        req->max_tokens > 0 ? req->max_tokens : DEFAULT_MAX_TOKENS);
    size_t n_system = 0, n_turns = 0;
    for (size_t i = 0; i < req->n_msgs; i++)
        is_system(&req->msgs[i]) ? n_system++ : n_turns++;
    /* the API needs one turn at least: a lone system prompt becomes it */
    if (rc == SK_OK && n_system && n_turns) {
        rc = buf_adds(&b, ",\"system\":");
        if (rc == SK_OK)
            rc = add_joined(&b, req->msgs, 0, req->n_msgs, 1, NULL);
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"messages\":[");
    if (rc == SK_OK && !n_turns) {
        rc = buf_adds(&b, "{\"role\":\"user\",\"content\":");
        if (rc == SK_OK)
            rc = add_joined(&b, req->msgs, 0, req->n_msgs, 1, NULL);
        if (rc == SK_OK)
            rc = buf_addc(&b, '}');
    }
    int first = 1;
    for (size_t i = 0; rc == SK_OK && i < req->n_msgs;) {
        if (is_system(&req->msgs[i])) {
            i++;
            continue;
        }
        /* a run of one role, system messages inside it skipped */
        const char *role = turn_role(&req->msgs[i]);
        size_t j = i + 1;
        while (j < req->n_msgs &&
               (is_system(&req->msgs[j]) || strcmp(turn_role(&req->msgs[j]), role) == 0))
            j++;
        int blocks = 0;
        for (size_t x = i; x < j; x++)
            blocks |= req->msgs[x].n_calls > 0 || is_tool_result(&req->msgs[x]);
        rc = buf_printf(&b, "%s{\"role\":\"%s\",\"content\":", first ? "" : ",", role);
        if (rc == SK_OK)
            rc = blocks ? add_blocks(&b, req->msgs, i, j)
                        : add_joined(&b, req->msgs, i, j, 0, role);
        if (rc == SK_OK)
            rc = buf_addc(&b, '}');
        first = 0;
        i = j;
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, ']');
    if (rc == SK_OK)
        rc = add_tools(&b, req);
    if (rc == SK_OK && isfinite(req->temperature)) {
        rc = http_json_key(&b, 1, "temperature");
        if (rc == SK_OK)
            rc = http_json_number(&b, req->temperature);
    }
    if (rc == SK_OK && isfinite(req->top_p)) {
        rc = http_json_key(&b, 1, "top_p");
        if (rc == SK_OK)
            rc = http_json_number(&b, req->top_p);
    }
    if (rc == SK_OK && req->n_stop > 0) {
        rc = http_json_key(&b, 1, "stop_sequences");
        if (rc == SK_OK)
            rc = http_json_strs(&b, req->stop, req->n_stop);
    }
    if (rc == SK_OK && req->stream)
        rc = buf_adds(&b, ",\"stream\":true");
    if (rc == SK_OK)
        rc = buf_addc(&b, '}');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Sets *errmsg (caller frees) and returns code. */
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

static sk_status set_str(char **slot, const cJSON *s)
{
    char *copy = sk_strdup(s->valuestring);
    if (!copy)
        return SK_NOMEM;
    free(*slot);
    *slot = copy;
    return SK_OK;
}

static void read_usage(const cJSON *usage, model_resp *r)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens");
    if (cJSON_IsNumber(in) && in->valuedouble >= 0 && in->valuedouble < 1e15)
        r->prompt_tokens = (long)in->valuedouble;
    if (cJSON_IsNumber(out) && out->valuedouble >= 0 && out->valuedouble < 1e15)
        r->completion_tokens = (long)out->valuedouble;
}

/* "message (type)" for an error object {"type":..., "message":...}, or
 * NULL when root holds none.  Caller frees. */
static char *error_text(const cJSON *root)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(e))
        return sk_strdup(e->valuestring);
    if (!cJSON_IsObject(e))
        return NULL;
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type"));
    if (m && t)
        return sk_asprintf("%s (%s)", m, t);
    return sk_strdup(m ? m : t ? t : "unknown error");
}

static sk_status model_error(const cJSON *root, char **errmsg)
{
    char *m = error_text(root);
    if (!m)
        return SK_NOMEM;
    if (errmsg)
        *errmsg = m;
    else
        free(m);
    return SK_MODEL;
}

/* A tool_use block (borrowed) into r's call numbered index: its id, name
 * and input (the object, printed; streamed, the input comes later as
 * input_json_delta pieces, so whole is 0). */
static sk_status read_tool_use(const cJSON *block, model_resp *r, int index, int whole,
                               char **errmsg)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(block, "id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(block, "name");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(block, "input");
    if (!cJSON_IsString(name))
        return fail(errmsg, SK_PROTOCOL, "a tool_use block has no \"name\"");
    int too_many = 0;
    sk_tool_call *c = http_call_at(r, index, &too_many);
    if (!c)
        return too_many ? fail(errmsg, SK_PROTOCOL, "more than %d tool calls in one reply",
                               TOOL_CALLS_MAX)
                        : SK_NOMEM;
    if ((cJSON_IsString(id) && set_str(&c->id, id) != SK_OK) ||
        set_str(&c->name, name) != SK_OK)
        return SK_NOMEM;
    char *args = whole && input ? http_args_text(input) : sk_strdup("");
    if (!args)
        return SK_NOMEM;
    free(c->arguments);
    c->arguments = args;
    return SK_OK;
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
    sk_buf text;
    buf_init(&text, 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply is not a JSON object");
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "error")) {
        rc = model_error(root, errmsg);
        goto done;
    }
    if (!cJSON_IsArray(content)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply \"content\" is not an array");
        goto done;
    }
    const cJSON *block;
    cJSON_ArrayForEach(block, content)
    {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(block, "type"));
        if (type && strcmp(type, "tool_use") == 0) {
            if (!r && !(r = http_resp_new())) {
                rc = SK_NOMEM;
                goto done;
            }
            if ((rc = read_tool_use(block, r, (int)r->n_calls, 1, errmsg)) != SK_OK)
                goto done;
            continue;
        }
        if (!type || strcmp(type, "text") != 0)
            continue; /* thinking and the like: not part of the answer */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(block, "text");
        if (!cJSON_IsString(t)) {
            rc = fail(errmsg, SK_PROTOCOL, "reply text block has no \"text\" string");
            goto done;
        }
        if ((rc = buf_adds(&text, t->valuestring)) != SK_OK)
            goto done;
    }
    if ((!r && !(r = http_resp_new())) || !(r->text = buf_steal(&text))) {
        rc = SK_NOMEM;
        goto done;
    }
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop_reason");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if ((cJSON_IsString(stop) && set_str(&r->finish_reason, stop) != SK_OK) ||
        (cJSON_IsString(model) && set_str(&r->model, model) != SK_OK)) {
        rc = SK_NOMEM;
        goto done;
    }
    read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), r);
done:
    buf_free(&text);
    cJSON_Delete(root);
    if (rc != SK_OK) {
        resp_free(r);
        return rc;
    }
    *out = r;
    return SK_OK;
}

/* Appends a text piece and points *delta at it. */
static sk_status add_text(sk_buf *text, const char *s, const char **delta,
                          size_t *delta_len, char **errmsg)
{
    size_t n = strlen(s), before = text->len;
    if (!n)
        return SK_OK;
    sk_status rc = buf_add(text, s, n);
    if (rc == SK_TOO_LARGE)
        return fail(errmsg, rc, "streamed reply too large");
    if (rc == SK_OK) {
        *delta = text->p + before;
        *delta_len = n;
    }
    return rc;
}

static sk_status apply_event(const char *event, const char *data, size_t len,
                             model_resp *resp, sk_buf *text, const char **delta,
                             size_t *delta_len, int *end, char **errmsg)
{
    *delta = NULL;
    *delta_len = 0;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "stream event is not valid JSON");
    sk_status rc = SK_OK;
    if (!cJSON_IsObject(root)) {
        rc = fail(errmsg, SK_PROTOCOL, "stream event is not a JSON object");
        goto done;
    }
    /* the SSE event type, else the data's own "type" */
    const char *type = event && *event ? event
                       : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "type"));
    if (!type)
        type = "";
    if (strcmp(type, "error") == 0) {
        rc = model_error(root, errmsg);
    } else if (strcmp(type, "message_start") == 0) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(m, "model");
        if (cJSON_IsString(model) && !resp->model && set_str(&resp->model, model) != SK_OK)
            rc = SK_NOMEM;
        else
            read_usage(cJSON_GetObjectItemCaseSensitive(m, "usage"), resp);
    } else if (strcmp(type, "content_block_start") == 0) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "content_block");
        const char *bt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "type"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "text"));
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(root, "index");
        if (bt && strcmp(bt, "text") == 0 && t)
            rc = add_text(text, t, delta, delta_len, errmsg);
        else if (bt && strcmp(bt, "tool_use") == 0)
            rc = cJSON_IsNumber(ix) && ix->valuedouble >= 0 && ix->valuedouble < 1e6
                     ? read_tool_use(b, resp, (int)ix->valuedouble, 0, errmsg)
                     : fail(errmsg, SK_PROTOCOL, "a tool_use block without an \"index\"");
    } else if (strcmp(type, "content_block_delta") == 0) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "delta");
        const char *dt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "type"));
        if (!cJSON_IsObject(d) || !dt) {
            rc = fail(errmsg, SK_PROTOCOL, "content_block_delta without a typed \"delta\"");
        } else if (strcmp(dt, "text_delta") == 0) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "text");
            if (!cJSON_IsString(t))
                rc = fail(errmsg, SK_PROTOCOL, "text_delta without a \"text\" string");
            else
                rc = add_text(text, t->valuestring, delta, delta_len, errmsg);
        } else if (strcmp(dt, "input_json_delta") == 0) {
            const cJSON *pj = cJSON_GetObjectItemCaseSensitive(d, "partial_json");
            const cJSON *ix = cJSON_GetObjectItemCaseSensitive(root, "index");
            sk_tool_call *c = NULL;
            for (size_t i = 0; cJSON_IsNumber(ix) && i < resp->n_calls; i++)
                if ((double)resp->calls[i].index == ix->valuedouble)
                    c = &resp->calls[i];
            if (!cJSON_IsString(pj) || !c)
                rc = fail(errmsg, SK_PROTOCOL, "input_json_delta without its tool_use "
                                               "block or a \"partial_json\" string");
            else
                rc = http_str_append(&c->arguments, pj->valuestring);
        }
    } else if (strcmp(type, "message_delta") == 0) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "delta");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(d, "stop_reason");
        if (cJSON_IsString(stop) && set_str(&resp->finish_reason, stop) != SK_OK)
            rc = SK_NOMEM;
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
        const cJSON *out = cJSON_GetObjectItemCaseSensitive(u, "output_tokens");
        if (cJSON_IsNumber(out) && out->valuedouble >= 0 && out->valuedouble < 1e15)
            resp->completion_tokens = (long)out->valuedouble;
    } else if (strcmp(type, "message_stop") == 0) {
        *end = 1;
    }
    /* ping, content_block_stop and event types added later: nothing to do */
done:
    cJSON_Delete(root);
    return rc;
}

static char *error_message(const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    char *m = cJSON_IsObject(root) ? error_text(root) : NULL;
    cJSON_Delete(root);
    return m;
}

static int retryable(long status)
{
    return status == 529 || http_retryable_status(status);
}

const http_proto http_proto_anthropic = {
    .ndjson = 0,
    .request_json = request_json,
    .parse_reply = parse_reply,
    .apply_event = apply_event,
    .error_message = error_message,
    .retryable = retryable,
};

static const conn_vt anthropic_vt = {
    .name = "anthropic",
    .start = http_start,
    .cancel = http_cancel,
    .destroy = http_destroy,
    .describe = http_describe,
    .tools = 1,
};

/* ---- the connector ------------------------------------------------------ */

/* Frees a header line that may hold the key, wiping it first. */
static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static sk_connector *conn_anthropic_open(sk_kernel *k, const char *rest, sk_err **err)
{
    (void)k;
    *err = NULL;
    if (!rest || !*rest || *rest == '@') {
        *err = err_new(SK_USAGE, "anthropic model spec needs a model name "
                                 "(anthropic:MODEL or anthropic:MODEL@URL)");
        return NULL;
    }
    if (strncmp(rest, "http://", 7) == 0 || strncmp(rest, "https://", 8) == 0) {
        *err = err_new(SK_USAGE, "model spec \"anthropic:%s\" has no model name, so "
                                 "the URL would be sent as one: write "
                                 "anthropic:MODEL@%s", rest, rest);
        return NULL;
    }
    const char *at = http_find_base(rest);
    if (!at && strchr(rest, '@')) {
        *err = err_new(SK_USAGE, "anthropic model spec \"%s\": the base URL must "
                                 "start with http:// or https://", rest);
        return NULL;
    }
    const char *base = at ? at + 1 : getenv("ANTHROPIC_BASE_URL");
    if (!base || !*base)
        base = DEFAULT_BASE_URL;
    size_t base_len = strlen(base);
    while (base_len && base[base_len - 1] == '/')
        base_len--;
    const char *key = getenv("ANTHROPIC_API_KEY");
    if (key && !*key)
        key = NULL;
    char *url = NULL, *key_header = NULL;
    sk_connector *conn = NULL;
    void *self = NULL;
    size_t model_len = at ? (size_t)(at - rest) : strlen(rest);
    if (!(url = sk_asprintf("%.*s/v1/messages", (int)base_len, base)) ||
        (key && !(key_header = sk_asprintf("x-api-key: %s", key))) ||
        !(conn = sk_calloc(1, sizeof *conn)) ||
        !(conn->model = sk_strndup(rest, model_len)) ||
        !(conn->spec = sk_asprintf("anthropic:%s", rest)))
        goto nomem;
    const char *headers[] = {"Accept: application/json, text/event-stream",
                             "anthropic-version: " API_VERSION, key_header};
    self = http_conn_new(&http_proto_anthropic, url, conn->model, key, headers,
                         key_header ? 3 : 2);
    if (!self)
        goto nomem;
    http_conn_set_auth(self, "ANTHROPIC_API_KEY", http_host_needs_key(url));
    conn->endpoint = url;
    free_secret(key_header);
    conn->vt = &anthropic_vt;
    conn->self = self;
    return conn;
nomem:
    free(url);
    free_secret(key_header);
    if (conn) {
        free(conn->model);
        free(conn->spec);
        free(conn);
    }
    *err = err_new(SK_NOMEM, "out of memory");
    return NULL;
}

static sk_connector *open_anthropic(sk_kernel *k, const char *kind, const char *rest,
                                sk_err **err)
{
    (void)kind;
    *err = NULL;
    return conn_anthropic_open(k, rest, err);
}

const conn_kind conn_kind_anthropic = {"anthropic", open_anthropic, NULL};
