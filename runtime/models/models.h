/*
 * models.h -- the model connectors: the HTTP engine they share (http.c),
 * the SSE parser (sse.c), the OpenAI wire format, and the kinds this
 * library has (models.c registers them with a kernel).  Above core.
 */
#ifndef SKEIN_MODELS_H
#define SKEIN_MODELS_H

#include "core/core.h"

/* The connector kinds (runtime/models/openai.c, ollama.c, anthropic.c,
 * scripted.c), and the call that registers them all with a kernel
 * (runtime/models/models.c). */
SK_HIDDEN extern const conn_kind conn_kind_openai;
SK_HIDDEN extern const conn_kind conn_kind_openai_flavor; /* "openai+llamacpp", "openai+vllm" */
SK_HIDDEN extern const conn_kind conn_kind_azure;  /* Azure OpenAI (openai.c) */
SK_HIDDEN extern const conn_kind conn_kind_ollama;
SK_HIDDEN extern const conn_kind conn_kind_anthropic;
SK_HIDDEN extern const conn_kind conn_kind_scripted;
/* Embeddings endpoints (runtime/models/embed.c): kinds with only
 * open_embed, beside the chat kinds of the same names. */
SK_HIDDEN extern const conn_kind conn_kind_openai_embed;
SK_HIDDEN extern const conn_kind conn_kind_openai_flavor_embed;
SK_HIDDEN extern const conn_kind conn_kind_ollama_embed;
/* An embeddings reply body, OpenAI's or (ollama non-zero) Ollama's, as a
 * model_resp whose text is the vectors as one JSON array of arrays.
 * SK_PROTOCOL, SK_MODEL (an error object), SK_NOMEM; *errmsg (caller
 * frees) says why.  Pure: the fuzz target calls it. */
SK_HIDDEN sk_status embed_parse_reply(int ollama, const char *body, size_t len,
                                      model_resp **out, char **errmsg);
SK_HIDDEN sk_status models_register(sk_kernel *k);

/* ---- SSE (text/event-stream) -------------------------------------------
 * An incremental parser: feed it bytes as they arrive, it calls on_event
 * for each complete event (on a blank line). */
typedef int (*sse_event_fn)(void *ud, const char *event, const char *data,
                            size_t len); /* non-zero aborts the feed */

typedef struct sse_parser {
    sk_buf line;     /* the current incomplete line */
    sk_buf data;     /* data lines of the current event, joined by \n */
    sk_buf event;    /* the event type, "" for the default "message" */
    int has_data;
    int skip_lf;     /* last byte was \r: swallow a following \n */
} sse_parser;

/* max_line caps one line and one event's data (0: 1 MiB). */
SK_HIDDEN void sse_init(sse_parser *p, size_t max_line);
/* SK_OK, SK_TOO_LARGE past the ceiling, SK_CANCELLED if on_event aborted,
 * SK_NOMEM. */
SK_HIDDEN sk_status sse_feed(sse_parser *p, const char *bytes, size_t n,
                             sse_event_fn on_event, void *ud);
/* 1 if the stream stopped inside an event (bytes since the last blank
 * line), which means the stream was cut. */
SK_HIDDEN int sse_pending(const sse_parser *p);
SK_HIDDEN void sse_free(sse_parser *p);

/* ---- HTTP connectors (runtime/models/http.c) ------------------------------------
 * The machinery HTTP model connectors share.  A connector supplies its
 * wire format as an http_proto; http.c runs the requests on the loop
 * (curl handles, reply ceiling, SSE or NDJSON framing, retries with
 * Retry-After and jittered backoff, error mapping, key scrubbing). */
typedef struct http_proto {
    int ndjson;  /* streams are NDJSON lines (else SSE events) */
    /* The request body for req.  Caller frees; NULL when memory ran out. */
    char *(*request_json)(const model_req *req, const char *model);
    /* A non-streamed reply.  SK_PROTOCOL (unreadable), SK_MODEL (an error
     * object in a 2xx body), SK_NOMEM; *errmsg (caller frees) says why. */
    sk_status (*parse_reply)(const char *body, size_t len, model_resp **out,
                             char **errmsg);
    /* One stream event: its SSE type and data, or ("", one line) for
     * NDJSON.  Appends new text to text and points *delta into it; sets
     * *end > 0 on the stream's end marker (nothing after it counts), or
     * < 0 when the reply is whole without one (later events still count,
     * as usage after a finish_reason).  Errors as parse_reply. */
    sk_status (*apply_event)(const char *event, const char *data, size_t len,
                             model_resp *resp, sk_buf *text,
                             const char **delta, size_t *delta_len, int *end,
                             char **errmsg);
    /* The server's message in an error body, or NULL.  Caller frees. */
    char *(*error_message)(const char *body, size_t len);
    int (*retryable)(long http_status); /* retry this status? */
    /* A hint for an HTTP error from url (shown form), appended to the
     * message, or NULL (the member may be NULL).  Caller frees. */
    char *(*hint)(const char *url, long http_status);
    /* A server with slots (llama.cpp): the body with the request pinned
     * to slot (0-based) and its prompt cache kept, or NULL when memory
     * ran out (caller frees).  NULL member: the server has none, and
     * nothing about slots is ever sent to it. */
    char *(*with_slot)(const char *body, int slot);
} http_proto;

/* A connector's state (its conn_vt self) for proto, POSTing to url.  key
 * is scrubbed from every error; headers are extra "Name: value" lines
 * (Content-Type: application/json is always sent).  All borrowed and
 * copied.  NULL when memory ran out. */
SK_HIDDEN void *http_conn_new(const http_proto *proto, const char *url,
                              const char *model, const char *key,
                              const char *const *headers, size_t n_headers);
/* Says where the connector's key comes from (an environment variable,
 * named in errors and hints) and whether its server refuses requests
 * without one: then a request with no key fails before it goes out, with
 * SK_CONFIG naming key_env.  key_env is borrowed: static. */
SK_HIDDEN void http_conn_set_auth(void *self, const char *key_env, int required);
/* conn_vt entries for a connector made with http_conn_new. */
SK_HIDDEN sk_status http_start(void *self, sk_kernel *k, const model_req *req,
                               model_delta_fn on_delta, model_done_fn done,
                               void *ud, void **handle, sk_err **err);
SK_HIDDEN void http_cancel(void *self, sk_kernel *k, void *handle);
SK_HIDDEN sk_status http_describe(void *self, sk_kernel *k, const model_req *req,
                                  char **out, sk_err **err);
SK_HIDDEN void http_destroy(void *self);
/* Helpers for connectors that run their own transfers. */
/* Replaces key in s (owned; may be reallocated) with "[redacted]" and
 * returns the result (on allocation failure, s with the key starred). */
SK_HIDDEN char *http_scrub_key(char *s, const char *key);
/* A short printable excerpt of a non-JSON body.  Caller frees. */
SK_HIDDEN char *http_body_excerpt(const char *p, size_t n);
SK_HIDDEN int http_transport_error(int curl_code); /* worth a retry? */
SK_HIDDEN int http_retryable_status(long status);  /* 429, 500, 502-504 */
SK_HIDDEN uint64_t http_rand(uint64_t *state);     /* xorshift64* */
/* The wait before the next attempt: Retry-After from easy's reply when
 * there is one (capped at 60 s), else uniform in [0, base_ms * 2^(n-1)]
 * (capped at 30 s) with attempts = n so far. */
SK_HIDDEN long http_retry_delay_ms(void *easy, long status, int attempts,
                                   long base_ms, uint64_t *rng);
/* A model_resp with every field unknown.  Caller frees with resp_free. */
SK_HIDDEN model_resp *http_resp_new(void);
/* ---- slot routing (runtime/models/slots.c) --------------------------------
 * Which of a server's n slots a request body goes to, so that requests
 * sharing a prefix share a slot's prompt cache (see slots.c).  One router
 * per connector. */
typedef struct slot_router slot_router;
/* NULL when memory ran out.  Free with slot_router_free (NULL is fine). */
SK_HIDDEN slot_router *slot_router_new(void);
SK_HIDDEN void slot_router_free(slot_router *r);
/* The slot (0..n-1) for body, counted in flight until slot_done(r, slot,
 * *gen); -1 when memory ran out (send it unrouted).  body is borrowed;
 * its first bytes are remembered for the slot. */
SK_HIDDEN int slot_route(slot_router *r, int n, const char *body, size_t len,
                         unsigned *gen);
/* The slot slot_route would choose, changing nothing (dry runs). */
SK_HIDDEN int slot_pick(const slot_router *r, int n, const char *body, size_t len);
SK_HIDDEN void slot_done(slot_router *r, int slot, unsigned gen);

/* ---- endpoints (runtime/models/endpoint.c) -------------------------------
 * Pure functions over the URLs connectors are given. */
/* 1 for hosted APIs that refuse a request without a key (api.openai.com,
 * api.anthropic.com, Azure OpenAI hosts, ...). */
SK_HIDDEN int http_host_needs_key(const char *url);
/* 1 for an Azure OpenAI URL: an Azure resource host, or an api-version
 * query. */
SK_HIDDEN int http_url_is_azure(const char *url);
/* 1 when the URL's path has a version segment (/v1, ...) or is an Azure
 * deployment URL; 0 is worth a hint when the server says 404. */
SK_HIDDEN int http_url_has_v1(const char *url);
/* Where chat completions go for a base URL as a user writes it: BASE +
 * /chat/completions (unless BASE ends so), its query kept after the path.
 * azure: a bare resource URL gets /openai/deployments/MODEL, and a
 * deployment URL without an api-version gets the current one.  Caller
 * frees; NULL when memory ran out. */
SK_HIDDEN char *oai_chat_url(const char *base, const char *model, size_t model_len,
                             int azure);

/* In "MODEL@URL", the '@' before "http://" or "https://", or NULL (so a
 * base URL with user info still works).  Borrowed from rest. */
SK_HIDDEN const char *http_find_base(const char *rest);
/* JSON body pieces: a number that reads back as exactly d; "key": (after
 * a comma when comma is non-zero); an array of strings (NULL as ""). */
SK_HIDDEN sk_status http_json_number(sk_buf *b, double d);
SK_HIDDEN sk_status http_json_key(sk_buf *b, int comma, const char *key);
SK_HIDDEN sk_status http_json_strs(sk_buf *b, char *const *v, size_t n);
/* Tool calls, as every wire format reads them.  The call the server
 * numbers index in r, appended (empty) when new: NULL with *too_many set
 * past TOOL_CALLS_MAX, NULL alone when memory ran out. */
SK_HIDDEN sk_tool_call *http_call_at(model_resp *r, int index, int *too_many);
/* Appends s to the string *slot (NULL reads as "").  SK_NOMEM. */
SK_HIDDEN sk_status http_str_append(char **slot, const char *s);
/* Arguments text for a tool call: a JSON string's text, else the value
 * printed (some servers send an object).  Caller frees; NULL on memory. */
SK_HIDDEN char *http_args_text(const struct cJSON *v);
/* Appends arguments (JSON text) as an object: {} when they are not one. */
SK_HIDDEN sk_status http_json_args(sk_buf *b, const char *arguments);
/* ,"tools":[...] in OpenAI's function format (Ollama takes it too): each
 * tool's name, description and parameters (no_params when it has none),
 * and "strict" where the tool asks for it and the format has it. */
SK_HIDDEN sk_status http_json_tools(sk_buf *b, const model_req *req, const char *no_params,
                                    int with_strict);

/* The Anthropic and Ollama wire formats, as their connectors use them
 * (their functions are pure: the tool-call fuzz target reaches them). */
SK_HIDDEN extern const http_proto http_proto_anthropic;
SK_HIDDEN extern const http_proto http_proto_ollama;

/* ---- OpenAI wire format (pure functions, fuzzable) --------------------- */
/* Builds the chat completions request body.  Caller frees. */
SK_HIDDEN char *oai_request_json(const model_req *req, const char *model);
/* The same body for a server flavor ("llamacpp", "vllm"; NULL for plain). */
SK_HIDDEN char *oai_request_json_flavor(const model_req *req, const char *model,
                                        const char *flavor);
/* Parses a non-streamed reply body into a new model_resp. */
SK_HIDDEN sk_status oai_parse_reply(const char *body, size_t len,
                                    model_resp **out, char **errmsg);
/* Applies one streamed chunk (the data of one SSE event) to resp,
 * appending delta text to *delta (borrowed into resp->text's tail; may be
 * NULL when the chunk carried no text). */
SK_HIDDEN sk_status oai_apply_chunk(const char *data, size_t len,
                                    model_resp *resp, sk_buf *text,
                                    const char **delta, size_t *delta_len,
                                    char **errmsg);
/* The "message" of an error body ({"error":{"message":...}} and common
 * variants), or NULL.  Caller frees. */
SK_HIDDEN char *oai_error_message(const char *body, size_t len);

#endif /* SKEIN_MODELS_H */
