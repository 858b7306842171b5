/*
 * embed.c -- embeddings connectors: the model connectors' embeddings
 * endpoints, for the text memory.  They register in the same table of
 * connector kinds as the chat connectors (models.c), as kinds that open
 * only an embeddings connector:
 *
 *   openai:MODEL[@URL], openai+FLAVOR:MODEL[@URL]   POST {base}/embeddings
 *       {"model", "input": [texts], "encoding_format": "float"} ->
 *       {"data": [{"index", "embedding": [...]}], "usage"}
 *   ollama:MODEL[@URL]                              POST {base}/api/embed
 *       {"model", "input": [texts]} -> {"embeddings": [[...]]}
 *
 * A spec is read exactly as the chat connector of its kind reads it (base
 * URL, OPENAI_BASE_URL, OLLAMA_HOST, the key): the chat connector is
 * opened to learn where its server is, and the embeddings endpoint is
 * beside it.  Requests run on http.c, with its retries, timeouts, reply
 * ceiling and key scrubbing.  The texts to embed are the contents of the
 * request's messages; the reply's text is a JSON array holding one array
 * of numbers per text, in order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/models.h"

#define MAX_DIMS 65536 /* numbers in one vector */

static sk_status fail(char **errmsg, sk_status code, const char *msg)
{
    if (errmsg)
        *errmsg = sk_strdup(msg);
    return code;
}

/* {"model": model, "input": [texts] [, "encoding_format": "float"]} */
static char *body_json(const model_req *req, const char *model, int openai)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "{\"model\":");
    if (rc == SK_OK)
        rc = buf_add_json_str(&b, model, strlen(model));
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"input\":[");
    for (size_t i = 0; rc == SK_OK && i < req->n_msgs; i++) {
        const char *t = req->msgs[i].content ? req->msgs[i].content : "";
        if (i)
            rc = buf_addc(&b, ',');
        if (rc == SK_OK)
            rc = buf_add_json_str(&b, t, strlen(t));
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, openai ? "],\"encoding_format\":\"float\"}" : "]}");
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static char *openai_body(const model_req *req, const char *model)
{
    return body_json(req, model, 1);
}

static char *ollama_body(const model_req *req, const char *model)
{
    return body_json(req, model, 0);
}

/* Appends one vector (a JSON array of numbers) to out, checking it. */
static sk_status add_vector(cJSON *out, const cJSON *v, size_t *dims, char **errmsg)
{
    if (!cJSON_IsArray(v))
        return fail(errmsg, SK_PROTOCOL, "an embedding is not an array of numbers");
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n == 0 || n > MAX_DIMS)
        return fail(errmsg, SK_PROTOCOL, n ? "an embedding has too many numbers"
                                           : "an embedding is empty");
    if (*dims && n != *dims)
        return fail(errmsg, SK_PROTOCOL, "embeddings of different lengths in one reply");
    *dims = n;
    cJSON *copy = cJSON_CreateArray();
    if (!copy)
        return SK_NOMEM;
    const cJSON *x;
    cJSON_ArrayForEach(x, v)
    {
        cJSON *num = cJSON_IsNumber(x) && isfinite(x->valuedouble)
                         ? cJSON_CreateNumber(x->valuedouble)
                         : NULL;
        if (!num) {
            cJSON_Delete(copy);
            return cJSON_IsNumber(x) || !x ? fail(errmsg, SK_PROTOCOL, "an embedding holds a number out of range")
                                           : fail(errmsg, SK_PROTOCOL, "an embedding holds something not a number");
        }
        cJSON_AddItemToArray(copy, num);
    }
    cJSON_AddItemToArray(out, copy);
    return SK_OK;
}

/* The model_resp whose text is vectors, printed. */
static sk_status finish_resp(cJSON *vectors, long tokens, model_resp **out)
{
    model_resp *r = http_resp_new();
    char *text = cJSON_PrintUnformatted(vectors);
    if (!r || !text) {
        resp_free(r);
        cJSON_free(text);
        return SK_NOMEM;
    }
    r->text = sk_strdup(text);
    cJSON_free(text);
    if (!r->text) {
        resp_free(r);
        return SK_NOMEM;
    }
    r->prompt_tokens = tokens;
    r->completion_tokens = 0;
    *out = r;
    return SK_OK;
}

/* A server's token count, or -1 when it gives none or one no count can
 * be (negative, fractional nonsense is truncated, past 2^53 refused), so
 * that a hostile reply never overflows the conversion. */
static long token_count(const cJSON *n)
{
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > 9007199254740992.0)
        return -1;
    return (long)n->valuedouble;
}

/* {"data": [{"index": i, "embedding": [...]}, ...], "usage": {...}}; the
 * vectors put in the order of their index. */
static sk_status openai_parse(const char *body, size_t len, model_resp **out,
                              char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "reply is not valid JSON");
    sk_status rc = SK_OK;
    cJSON *vectors = cJSON_CreateArray();
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!vectors) {
        rc = SK_NOMEM;
    } else if (err && !cJSON_IsNull(err)) {
        char *m = oai_error_message(body, len);
        rc = fail(errmsg, SK_MODEL, m ? m : "the server answered with an error");
        free(m);
    } else if (!cJSON_IsArray(data)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply has no \"data\" array");
    } else {
        int n = cJSON_GetArraySize(data);
        size_t dims = 0;
        for (int want = 0; rc == SK_OK && want < n; want++) {
            /* by index when the server gives one, else in order */
            const cJSON *item = NULL, *it;
            cJSON_ArrayForEach(it, data)
            {
                const cJSON *ix = cJSON_GetObjectItemCaseSensitive(it, "index");
                if (cJSON_IsNumber(ix) && ix->valuedouble == (double)want)
                    item = it;
            }
            if (!item)
                item = cJSON_GetArrayItem(data, want);
            rc = add_vector(vectors, cJSON_GetObjectItemCaseSensitive(item, "embedding"),
                            &dims, errmsg);
        }
    }
    long tokens = -1;
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    tokens = token_count(pt);
    if (rc == SK_OK)
        rc = finish_resp(vectors, tokens, out);
    cJSON_Delete(vectors);
    cJSON_Delete(root);
    return rc;
}

/* {"embeddings": [[...], ...], "prompt_eval_count": n} */
static sk_status ollama_parse(const char *body, size_t len, model_resp **out,
                              char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return fail(errmsg, SK_PROTOCOL, "reply is not valid JSON");
    sk_status rc = SK_OK;
    cJSON *vectors = cJSON_CreateArray();
    const cJSON *embs = cJSON_GetObjectItemCaseSensitive(root, "embeddings");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!vectors) {
        rc = SK_NOMEM;
    } else if (cJSON_IsString(err)) {
        rc = fail(errmsg, SK_MODEL, err->valuestring);
    } else if (!cJSON_IsArray(embs)) {
        rc = fail(errmsg, SK_PROTOCOL, "reply has no \"embeddings\" array");
    } else {
        size_t dims = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, embs)
        {
            if (rc == SK_OK)
                rc = add_vector(vectors, v, &dims, errmsg);
        }
    }
    long tokens = -1;
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(root, "prompt_eval_count");
    tokens = token_count(pc);
    if (rc == SK_OK)
        rc = finish_resp(vectors, tokens, out);
    cJSON_Delete(vectors);
    cJSON_Delete(root);
    return rc;
}

sk_status embed_parse_reply(int ollama, const char *body, size_t len,
                            model_resp **out, char **errmsg)
{
    return ollama ? ollama_parse(body, len, out, errmsg)
                  : openai_parse(body, len, out, errmsg);
}

/* Embeddings are never streamed; a stream in reply is the server's
 * mistake. */
static sk_status no_stream(const char *event, const char *data, size_t len,
                           model_resp *resp, sk_buf *text, const char **delta,
                           size_t *delta_len, int *end, char **errmsg)
{
    (void)event, (void)data, (void)len, (void)resp, (void)text;
    *delta = NULL;
    *delta_len = 0;
    *end = 1;
    return fail(errmsg, SK_PROTOCOL, "an embeddings reply came as a stream");
}

static const http_proto openai_embed_proto = {
    .ndjson = 0,
    .request_json = openai_body,
    .parse_reply = openai_parse,
    .apply_event = no_stream,
    .error_message = oai_error_message,
    .retryable = http_retryable_status,
};

static const http_proto ollama_embed_proto = {
    .ndjson = 1,
    .request_json = ollama_body,
    .parse_reply = ollama_parse,
    .apply_event = no_stream,
    .error_message = oai_error_message,
    .retryable = http_retryable_status,
};

static const conn_vt openai_embed_vt = {
    .name = "openai-embeddings",
    .start = http_start,
    .cancel = http_cancel,
    .destroy = http_destroy,
};

static const conn_vt ollama_embed_vt = {
    .name = "ollama-embeddings",
    .start = http_start,
    .cancel = http_cancel,
    .destroy = http_destroy,
};

/* Opens the chat connector of chat_kind for rest, for where its server
 * is, and makes the embeddings connector at that URL with its chat
 * suffix (chat_path) replaced by embed_path. */
static sk_connector *open_beside(sk_kernel *k, const conn_kind *chat_kind,
                                 const char *kind, const char *rest,
                                 const char *chat_path, const char *embed_path,
                                 const http_proto *proto, const conn_vt *vt,
                                 const char *key, sk_err **err)
{
    *err = NULL;
    sk_connector *chat = chat_kind->open(k, kind, rest, err);
    if (!chat)
        return NULL;
    size_t n = strlen(chat->endpoint), cl = strlen(chat_path);
    sk_connector *c = NULL;
    char *url = NULL, *auth = NULL;
    if (n < cl || strcmp(chat->endpoint + n - cl, chat_path) != 0) {
        *err = err_new(SK_USAGE, "%s: no embeddings endpoint beside %s", rest,
                       chat->endpoint);
        conn_close(chat);
        return NULL;
    }
    if (!(url = sk_asprintf("%.*s%s", (int)(n - cl), chat->endpoint, embed_path)) ||
        (key && !(auth = sk_asprintf("Authorization: Bearer %s", key))) ||
        !(c = sk_calloc(1, sizeof *c)) || !(c->model = sk_strdup(chat->model)) ||
        !(c->spec = sk_strdup(chat->spec)))
        goto nomem;
    const char *headers[] = {"Accept: application/json", auth};
    if (!(c->self = http_conn_new(proto, url, c->model, key, headers, auth ? 2 : 1)))
        goto nomem;
    c->vt = vt;
    c->endpoint = url;
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    conn_close(chat);
    return c;
nomem:
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    free(url);
    if (c) {
        free(c->model);
        free(c->spec);
        free(c);
    }
    conn_close(chat);
    *err = err_new(SK_NOMEM, "out of memory");
    return NULL;
}

static const char *openai_key(void)
{
    const char *key = getenv("OPENAI_API_KEY");
    return key && *key ? key : NULL;
}

static sk_connector *open_openai(sk_kernel *k, const char *kind, const char *rest,
                                 sk_err **err)
{
    const conn_kind *chat = strcmp(kind, "openai") == 0 ? &conn_kind_openai
                                                        : &conn_kind_openai_flavor;
    return open_beside(k, chat, kind, rest, "/chat/completions", "/embeddings",
                       &openai_embed_proto, &openai_embed_vt, openai_key(), err);
}

static sk_connector *open_ollama(sk_kernel *k, const char *kind, const char *rest,
                                 sk_err **err)
{
    return open_beside(k, &conn_kind_ollama, kind, rest, "/api/chat", "/api/embed",
                       &ollama_embed_proto, &ollama_embed_vt, NULL, err);
}

const conn_kind conn_kind_openai_embed = {"openai", NULL, open_openai};
const conn_kind conn_kind_openai_flavor_embed = {"openai+", NULL, open_openai};
const conn_kind conn_kind_ollama_embed = {"ollama", NULL, open_ollama};
