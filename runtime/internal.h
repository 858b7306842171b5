/*
 * internal.h -- interfaces shared between libskein's files.  Not installed.
 *
 * Module prefixes: buf_ (growing buffers), vars_ (variable sets), err_
 * (structured errors), tpl_ (templates), cfg_ (config.json), reg_ (function
 * registry), loop_ (event loop), conn_ (model connectors), http_ (what
 * HTTP connectors share), sse_ (SSE parser), oai_ (OpenAI wire format),
 * inv_ (the invoke path), klua_ (the Lua side), trace_ (traces).
 * Everything here has hidden visibility.
 */
#ifndef SKEIN_INTERNAL_H
#define SKEIN_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "skein.h"

#if defined(__GNUC__)
#define SK_HIDDEN __attribute__((visibility("hidden")))
#define SK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SK_HIDDEN
#define SK_PRINTF(a, b)
#endif

/* ---- allocation --------------------------------------------------------
 * Every allocation in the library goes through these, so that tests can
 * fail the Nth one.  They never abort; callers check for NULL. */
SK_HIDDEN void *sk_malloc(size_t n);
SK_HIDDEN void *sk_calloc(size_t n, size_t size);
SK_HIDDEN void *sk_realloc(void *p, size_t n);
SK_HIDDEN char *sk_strdup(const char *s);             /* NULL -> NULL */
SK_HIDDEN char *sk_strndup(const char *s, size_t n);
SK_HIDDEN char *sk_asprintf(const char *fmt, ...) SK_PRINTF(1, 2);
SK_HIDDEN char *sk_vasprintf(const char *fmt, va_list ap);
/* Reads a whole file, NUL-terminated; *len gets its length.  Caller frees.
 * SK_IO (with errno intact) or SK_TOO_LARGE past max bytes. */
SK_HIDDEN sk_status sk_read_file(const char *path, size_t max, char **out,
                                 size_t *len);

/* Case-insensitive Levenshtein distance, for "did you mean" hints; names
 * over 64 bytes are never close (99). */
SK_HIDDEN size_t sk_edit_distance(const char *a, const char *b);

/* The 1-based line and column (in bytes) of offset off in text. */
SK_HIDDEN void sk_line_col(const char *text, size_t off, int *line, int *col);

/* Test builds: the Nth allocation from now fails (0 disables). */
SK_HIDDEN void sk_alloc_fail_at(long n);

/* ---- growing buffers ---------------------------------------------------
 * A byte buffer with a ceiling.  p is always NUL-terminated when non-NULL.
 * Zero-initialise, or buf_init with a ceiling (0 means 64 MiB). */
typedef struct sk_buf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
} sk_buf;

SK_HIDDEN void buf_init(sk_buf *b, size_t max);
/* SK_NOMEM, or SK_TOO_LARGE when len would pass max (nothing appended). */
SK_HIDDEN sk_status buf_add(sk_buf *b, const char *s, size_t n);
SK_HIDDEN sk_status buf_adds(sk_buf *b, const char *s);
SK_HIDDEN sk_status buf_addc(sk_buf *b, char c);
SK_HIDDEN sk_status buf_printf(sk_buf *b, const char *fmt, ...) SK_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. */
SK_HIDDEN sk_status buf_add_json_str(sk_buf *b, const char *s, size_t n);
/* Hands the bytes to the caller (an empty string when nothing was added;
 * NULL on allocation failure) and resets the buffer. */
SK_HIDDEN char *buf_steal(sk_buf *b);
SK_HIDDEN void buf_reset(sk_buf *b); /* len = 0, keeps memory */
SK_HIDDEN void buf_free(sk_buf *b);

/* ---- variables --------------------------------------------------------- */
struct sk_vars {
    size_t n, cap;
    char **names;
    char **values;
};
/* A deep copy; NULL src gives an empty set.  NULL on allocation failure. */
SK_HIDDEN sk_vars *vars_clone(const sk_vars *src);

/* ---- structured errors -------------------------------------------------
 * An error travels up the invoke path as a value.  Each invoke it passes
 * through appends its function name to the chain. */
typedef struct sk_err {
    sk_status code;
    char *message;       /* owned; never holds an API key */
    char *function;      /* the function where it was raised, or NULL */
    char **chain;        /* function names, innermost first */
    size_t n_chain;
    int http_status;     /* 0 when not an HTTP error */
    char *detail_json;   /* extra fields as a JSON object text, or NULL */
} sk_err;

/* A new error with a formatted message.  NULL only when memory ran out. */
SK_HIDDEN sk_err *err_new(sk_status code, const char *fmt, ...) SK_PRINTF(2, 3);
SK_HIDDEN sk_err *err_newv(sk_status code, const char *fmt, va_list ap);
SK_HIDDEN void err_free(sk_err *e);
SK_HIDDEN sk_err *err_clone(const sk_err *e);
/* Appends a function name to the chain (and sets e->function if unset). */
SK_HIDDEN void err_push(sk_err *e, const char *function);
/* The error as a JSON object text.  Caller frees. */
SK_HIDDEN char *err_json(const sk_err *e);
/* Stores e as the kernel's last error (takes ownership; NULL e records
 * SK_NOMEM) and returns its code. */
SK_HIDDEN sk_status kern_fail(sk_kernel *k, sk_err *e);
SK_HIDDEN sk_status kern_failf(sk_kernel *k, sk_status code, const char *fmt,
                               ...) SK_PRINTF(3, 4);
SK_HIDDEN void kern_ok(sk_kernel *k);

/* ---- templates ---------------------------------------------------------
 * Semantic Kernel's prompt template language.  A template is parsed once
 * into blocks; rendering joins text, variable values and the outputs of
 * the function blocks, which the invoke path computes first. */
typedef enum tpl_kind {
    TB_TEXT, /* literal text (including malformed blocks kept as text) */
    TB_VAR,  /* {{$name}} */
    TB_VAL,  /* {{'literal'}} or {{"literal"}} */
    TB_CALL  /* {{Skill.Fn ...}} */
} tpl_kind;

typedef struct tpl_arg {
    char *name;  /* NULL for the positional (first) argument */
    int is_var;  /* 1: value names a variable; 0: value is a literal */
    char *value; /* variable name without '$', or the unescaped literal */
} tpl_arg;

typedef struct tpl_block {
    tpl_kind kind;
    char *text;   /* TB_TEXT: the text; TB_VAR: the name; TB_VAL: the value;
                     TB_CALL: the function name as written ("Skill.Fn") */
    char *src;    /* the block as written, braces included ("" for text) */
    tpl_arg *args; /* TB_CALL only */
    size_t n_args;
    int line, col; /* 1-based position of the block's first '{' */
} tpl_block;

struct sk_template {
    tpl_block *blocks;
    size_t n;
    size_t n_calls; /* how many TB_CALL blocks */
    char *origin;
    int chat;       /* its own text holds <message> markup */
};

/* Parses text.  On a syntax error returns SK_TEMPLATE and sets *errmsg to
 * "origin:line:col: message" (caller frees); SK_NOMEM likewise with
 * *errmsg NULL.  Templates longer than 16 MiB are SK_TOO_LARGE. */
SK_HIDDEN sk_status tpl_parse(const char *text, size_t len, const char *origin,
                              sk_template **out, char **errmsg);
SK_HIDDEN void tpl_free(sk_template *t);
/* The i-th TB_CALL block, in order of appearance. */
SK_HIDDEN const tpl_block *tpl_call_at(const sk_template *t, size_t i);
/* How a chat prompt takes what it inserts: values and function outputs
 * are encoded for the markup (chat_encode) so that data can never open,
 * close or forge a message, except where Semantic Kernel's
 * allow_dangerously_set_content says they are trusted. */
typedef struct tpl_safety {
    int encode;                /* encode what is inserted */
    int raw_outputs;           /* function outputs as written (the prompt's
                                  allow_dangerously_set_content) */
    const struct cfg_function *cfg; /* per-variable flags, or NULL */
    size_t *starts;            /* when non-NULL, gets each block's offset in
                                  the output (t->n entries), for errors */
} tpl_safety;
/* Joins the template into out.  outputs[i] is the text of the i-th call
 * block; outputs NULL (or an entry NULL) leaves the block as written.
 * Unknown variables render empty.  Outputs are never re-rendered.
 * safety NULL inserts everything as written. */
SK_HIDDEN sk_status tpl_assemble(const sk_template *t, const sk_vars *vars,
                                 char *const *outputs, const tpl_safety *safety,
                                 sk_buf *out);
/* The line and column in t's file of offset off of its output, given the
 * starts tpl_assemble recorded; *block gets the block (its kind says
 * whether the offset fell inside inserted text). */
SK_HIDDEN void tpl_locate(const sk_template *t, const char *out, const size_t *starts,
                          size_t off, int *line, int *col, const tpl_block **block);

/* ---- chat markup (runtime/chat.c) -------------------------------------- */
struct sk_msg;
/* Appends s encoded for the markup: < > & " ' as entities. */
SK_HIDDEN sk_status chat_encode(sk_buf *b, const char *s);
/* Decodes XML entities and CDATA sections.  Caller frees. */
SK_HIDDEN char *chat_decode(const char *s, size_t n);
/* Parses a rendered chat prompt into messages (caller frees each role and
 * content, and the array).  SK_TEMPLATE on malformed markup, with the
 * offset in *err_off and the message in *errmsg (caller frees). */
SK_HIDDEN sk_status chat_parse(const char *text, struct sk_msg **out, size_t *n,
                               size_t *err_off, char **errmsg);

/* ---- config.json ------------------------------------------------------- */
typedef struct cfg_param {
    char *name;
    char *description;
    char *default_value; /* NULL when none */
    int required;
    int allow_unsafe;    /* allow_dangerously_set_content: its value goes
                            into chat markup as written */
} cfg_param;

/* One execution-settings entry.  Numbers are NAN / -1 when unset. */
typedef struct cfg_settings {
    char *service_id;   /* "default" for the classic schema's completion */
    char *model_id;     /* NULL when unset */
    int max_tokens;     /* -1 unset */
    double temperature, top_p, presence_penalty, frequency_penalty;
    char **stop;
    size_t n_stop;
} cfg_settings;

typedef struct cfg_function {
    int schema;          /* the "schema" number, or 0 */
    char *type;          /* "completion" when unset */
    char *name;          /* 1.x schema "name", or NULL */
    char *description;   /* "" when unset */
    cfg_param *params;
    size_t n_params;
    cfg_settings *settings; /* in file order */
    size_t n_settings;
    char **default_services;
    size_t n_default_services;
    char *model;         /* skein's "model" key: a model spec, or NULL */
    int allow_unsafe;    /* allow_dangerously_set_content: function outputs
                            go into chat markup as written */
    char *raw;           /* the whole document, unknown keys included */
} cfg_function;

/* Parses config.json text (either schema).  On error returns SK_CONFIG and
 * sets *errmsg to "origin:line:col: message" (caller frees). */
SK_HIDDEN sk_status cfg_parse(const char *json, size_t len, const char *origin,
                              cfg_function **out, char **errmsg);
SK_HIDDEN void cfg_free(cfg_function *c);
/* Blanks comments and trailing commas outside strings in t, in place and
 * keeping offsets, as Semantic Kernel's reader tolerates them.  SK_CONFIG
 * for an unterminated comment, SK_TOO_LARGE past max_depth nesting, with
 * the offset in *err_off. */
SK_HIDDEN sk_status cfg_relax(char *t, size_t len, int max_depth, size_t *err_off);
struct cJSON;
/* A JSON number, or a string holding exactly one ("0.5").  1 on success. */
SK_HIDDEN int cfg_number(const struct cJSON *v, double *out);
/* The settings for service id, else "default", else the first; or NULL. */
SK_HIDDEN const cfg_settings *cfg_settings_for(const cfg_function *c,
                                               const char *service_id);

/* ---- function registry ------------------------------------------------- */
/* Semantic functions and C natives are the core's own kinds.  Any other
 * kind (Lua natives) brings its operations: the layer that adds such
 * functions sets f->ops, and the core runs and releases them through it
 * without knowing the kind. */
typedef enum fn_kind { FN_SEMANTIC, FN_NATIVE_C, FN_NATIVE_OPS } fn_kind;
typedef struct sk_function sk_function;
typedef void (*fn_done_fn)(void *ud, sk_status st, char *text, sk_err *err);
typedef struct fn_ops {
    /* Runs f with vars (borrowed).  done(ud, st, text, err) runs when it
     * ends, perhaps before start returns, and takes text and err.
     * untrusted: it runs for a model.  On failure to start, *err and done
     * never runs. */
    sk_status (*start)(sk_kernel *k, sk_function *f, const sk_vars *vars,
                       int depth, int untrusted, fn_done_fn done, void *ud,
                       sk_err **err);
    /* Frees what the kind keeps for f (its handle, f->ref). */
    void (*release)(sk_kernel *k, sk_function *f);
} fn_ops;

struct sk_function {
    fn_kind kind;
    char *skill, *name, *full_name;
    char *description;
    char *path;              /* folder it came from, or NULL */
    sk_param_info *params;   /* strings owned by the function */
    size_t n_params;
    /* FN_SEMANTIC */
    sk_template *tpl;
    cfg_function *cfg;       /* never NULL for semantic functions */
    /* FN_NATIVE_C */
    sk_native_fn cfn;
    void *cud;
    /* FN_NATIVE_OPS: the kind's operations and its handle for f */
    const fn_ops *ops;
    int ref;
    int refcount;            /* held by the registry and by running calls */
    /* FN_SEMANTIC: its policy over the kernel's, parsed again when the
     * kernel's policy changes (policy_gen) */
    struct sk_policy *policy;
    unsigned policy_gen;
};

/* Creates an empty function "skill.name".  NULL on allocation failure. */
SK_HIDDEN sk_function *fn_new(fn_kind kind, const char *skill,
                              const char *name);
/* Copies params (from config parameters) into f.  SK_NOMEM on failure. */
SK_HIDDEN sk_status fn_set_params(sk_function *f, const cfg_param *p, size_t n);
SK_HIDDEN void fn_retain(sk_function *f);
SK_HIDDEN void fn_release(sk_kernel *k, sk_function *f);
/* Adds f, replacing a function of the same full name.  Takes ownership of
 * f in every case (releases it on failure). */
SK_HIDDEN sk_status reg_add(sk_kernel *k, sk_function *f);
/* Case-insensitive lookup of "Skill.Fn"; borrowed, or NULL. */
SK_HIDDEN sk_function *reg_find(const sk_kernel *k, const char *full_name);
/* Looks up "Skill.Fn", or a bare "Fn": first in prefer_skill (may be
 * NULL), then any skill if exactly one has it.  Borrowed, or NULL. */
SK_HIDDEN sk_function *reg_find_short(const sk_kernel *k, const char *name,
                                      const char *prefer_skill);
/* Model requests in flight right now (tests observe overlap with it). */
SK_HIDDEN long kern_model_inflight(const sk_kernel *k);
/* The model spec configured for a service id, or NULL.  Borrowed. */
SK_HIDDEN const char *kern_service(const sk_kernel *k, const char *id);

/* Builds a semantic function from template and config text (config may be
 * NULL).  tpl_origin / cfg_origin name the files in errors.  On failure
 * sets the kernel error and returns its code. */
SK_HIDDEN sk_status reg_add_semantic(sk_kernel *k, const char *skill,
                                     const char *name, const char *tpl_text,
                                     size_t tpl_len, const char *tpl_origin,
                                     const char *cfg_text, size_t cfg_len,
                                     const char *cfg_origin, const char *path);

/* ---- the trust boundary (runtime/trust.c) --------------------------------
 * A grant is what the user allowed for one run of model output: a list of
 * functions, or all of them but the planner's and agent's own.  Shared by
 * reference; grant_release(NULL) does nothing. */
typedef struct sk_grant sk_grant;
/* names NULL: every function; otherwise each is resolved ("Fn" or
 * "Skill.Fn"; "ai" means DataFrame.Map), and an unknown one is SK_NOT_FOUND
 * with a suggestion in *err.  source says who runs the output ("this
 * plan"), for messages. */
SK_HIDDEN sk_status grant_new(sk_kernel *k, const char *source,
                              const char *const *names, size_t n,
                              sk_grant **out, sk_err **err);
SK_HIDDEN sk_grant *grant_retain(sk_grant *g);
SK_HIDDEN void grant_release(sk_grant *g);
/* 1 when g (NULL: the user, who may call anything) allows f. */
SK_HIDDEN int grant_allows(const sk_grant *g, const sk_function *f);
SK_HIDDEN int grant_allows_all(const sk_grant *g);
SK_HIDDEN size_t grant_count(const sk_grant *g);
SK_HIDDEN const char *grant_name_at(const sk_grant *g, size_t i);
SK_HIDDEN const char *grant_source(const sk_grant *g);
/* "A, B" / "no function" / "any loaded function".  Caller frees. */
SK_HIDDEN char *grant_describe(const sk_grant *g);
/* The SK_DENIED error for f under g. */
SK_HIDDEN sk_err *grant_denied(const sk_grant *g, const sk_function *f);
/* What both a and b allow (NULL a or b: the user's, anything), a new
 * grant; NULL when memory ran out. */
SK_HIDDEN sk_grant *grant_intersect(const sk_grant *a, const sk_grant *b);
/* The grant of model output that may call no function.  Static: retain
 * and release do nothing to it. */
SK_HIDDEN sk_grant *grant_none(void);

/* ---- event loop --------------------------------------------------------
 * One libcurl multi handle per kernel drives every transfer.  Callbacks
 * registered here never run from inside the call that registers them:
 * they run from loop_pump, so callers may register from any state. */
typedef void (*loop_fn)(void *ud);
typedef void (*loop_xfer_fn)(void *ud, int curl_code /* CURLcode */);

typedef struct loop_timer loop_timer;

/* Runs fn(ud) on the next pump. */
SK_HIDDEN sk_status loop_defer(sk_kernel *k, loop_fn fn, void *ud);
/* Runs fn(ud) after ms milliseconds; *out (may be NULL) lets it be
 * cancelled.  The handle is invalid once fn has run. */
SK_HIDDEN sk_status loop_after(sk_kernel *k, long ms, loop_fn fn, void *ud,
                               loop_timer **out);
SK_HIDDEN void loop_cancel(sk_kernel *k, loop_timer *t);
/* Adds a prepared CURL easy handle; done(ud, code) runs when it ends.
 * The caller keeps ownership of the easy handle and must not free it
 * before done runs, except through loop_remove_easy. */
SK_HIDDEN sk_status loop_add_easy(sk_kernel *k, void *easy, loop_xfer_fn done,
                                  void *ud);
SK_HIDDEN void loop_remove_easy(sk_kernel *k, void *easy);
/* One round: runs deferred work and due timers, drives transfers, waits
 * up to timeout_ms for activity.  Returns 1 if anything is pending. */
SK_HIDDEN int loop_pump(sk_kernel *k, int timeout_ms);
/* Pumps until *flag becomes non-zero or nothing is pending. */
SK_HIDDEN void loop_run_until(sk_kernel *k, const int *flag);
SK_HIDDEN long long loop_now_ms(void); /* monotonic clock */

/* ---- model connectors --------------------------------------------------
 * A connector turns a request into a reply, asynchronously on the loop. */
typedef struct sk_msg {
    char *role;    /* "system", "user", "assistant", "tool", "developer" */
    char *content;
} sk_msg;

typedef struct model_req {
    const char *function;   /* the calling function, for traces/errors */
    const char *model;      /* the model name sent to the server */
    const sk_msg *msgs;
    size_t n_msgs;
    const char *prompt;     /* the rendered prompt (traces, scripted) */
    int max_tokens;         /* -1 unset */
    double temperature, top_p, presence_penalty, frequency_penalty; /* NAN */
    char *const *stop;
    size_t n_stop;
    int logprobs;           /* ask for per-token logprobs */
    int top_logprobs;       /* 0 unset */
    int stream;             /* deliver deltas through on_delta */
    /* constrained output, when the function asks for a shape (shape.c);
     * a connector uses what its server supports and ignores the rest */
    const char *json_schema; /* a JSON schema (text), or NULL */
    char *const *choices;    /* the allowed answers, or NULL */
    size_t n_choices;
    const char *regex;       /* a PCRE2 pattern the answer must match */
    const char *grammar;     /* a GBNF grammar (llama.cpp), or NULL */
} model_req;

typedef struct sk_logprob {
    char *token;
    double logprob;
} sk_logprob;

typedef struct model_resp {
    char *text;
    char *finish_reason;    /* may be NULL */
    char *model;            /* as reported by the server, may be NULL */
    long prompt_tokens, completion_tokens; /* -1 unknown */
    sk_logprob *logprobs;
    size_t n_logprobs;
    int attempts;           /* 1 + retries */
    int http_status;
} model_resp;

SK_HIDDEN void resp_free(model_resp *r); /* frees r and its fields */

/* Streamed text.  Borrowed for the call. */
typedef void (*model_delta_fn)(void *ud, const char *text, size_t len);
/* The end of a request: exactly one of resp (on SK_OK) and err is non-NULL;
 * the callee takes ownership of both. */
typedef void (*model_done_fn)(void *ud, sk_status st, model_resp *resp,
                              sk_err *err);

typedef struct conn_vt {
    const char *name;
    /* Starts a request.  req and everything it points to are borrowed
     * only until start returns (copy what you need).  done runs later,
     * from the loop, exactly once, unless start fails (then it never runs
     * and the error is returned through *err).  *handle (may be NULL) can
     * be given to cancel. */
    sk_status (*start)(void *self, sk_kernel *k, const model_req *req,
                       model_delta_fn on_delta, model_done_fn done, void *ud,
                       void **handle, sk_err **err);
    /* Cancels a started request; its done never runs. */
    void (*cancel)(void *self, sk_kernel *k, void *handle);
    void (*destroy)(void *self);
} conn_vt;

typedef struct sk_connector {
    const conn_vt *vt;
    void *self;
    char *spec;         /* the spec it was made from, e.g. "openai:gpt-4o" */
    char *model;        /* the model name to send */
    char *endpoint;     /* where requests go (a URL, a file): two servers
                           behind one model name are two endpoints */
} sk_connector;

/* A kind of connector, as the layer that has it registers it: the spec
 * prefix it answers to ("ollama", or "openai+" for a family whose flavor
 * follows), and how to open one (kind: the whole prefix, rest: the spec
 * after ':').  The kernel finds connectors only through these, as curl
 * finds protocols through its handler table. */
typedef struct conn_kind {
    const char *name;
    sk_connector *(*open)(sk_kernel *k, const char *kind, const char *rest,
                          sk_err **err);
} conn_kind;
/* Adds a kind (borrowed: static).  SK_NOMEM. */
SK_HIDDEN sk_status kern_add_conn_kind(sk_kernel *k, const conn_kind *kind);
/* Makes a connector from a spec ("openai:...", "scripted:FILE").  On
 * failure returns NULL and *err says why. */
SK_HIDDEN sk_connector *conn_open(sk_kernel *k, const char *spec,
                                  sk_err **err);
SK_HIDDEN void conn_close(sk_connector *c);
/* The kernel's connector for spec, opened once and cached by spec. */
SK_HIDDEN sk_connector *kern_connector(sk_kernel *k, const char *spec,
                                       sk_err **err);

/* The connector kinds (runtime/openai.c, ollama.c, anthropic.c,
 * scripted.c), and the call that registers them all with a kernel
 * (runtime/models.c). */
SK_HIDDEN extern const conn_kind conn_kind_openai;
SK_HIDDEN extern const conn_kind conn_kind_openai_flavor; /* "openai+llamacpp", "openai+vllm" */
SK_HIDDEN extern const conn_kind conn_kind_ollama;
SK_HIDDEN extern const conn_kind conn_kind_anthropic;
SK_HIDDEN extern const conn_kind conn_kind_scripted;
SK_HIDDEN sk_status models_register(sk_kernel *k);

/* Kernel settings read by connectors. */
typedef struct kern_net {
    long timeout_ms;
    long connect_timeout_ms;
    int retries;
    long retry_base_ms;
    size_t max_response_bytes;
} kern_net;
SK_HIDDEN const kern_net *kern_net_settings(const sk_kernel *k);
SK_HIDDEN int kern_quiet(const sk_kernel *k);

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

/* ---- HTTP connectors (runtime/http.c) ------------------------------------
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
} http_proto;

/* A connector's state (its conn_vt self) for proto, POSTing to url.  key
 * is scrubbed from every error; headers are extra "Name: value" lines
 * (Content-Type: application/json is always sent).  All borrowed and
 * copied.  NULL when memory ran out. */
SK_HIDDEN void *http_conn_new(const http_proto *proto, const char *url,
                              const char *model, const char *key,
                              const char *const *headers, size_t n_headers);
/* conn_vt entries for a connector made with http_conn_new. */
SK_HIDDEN sk_status http_start(void *self, sk_kernel *k, const model_req *req,
                               model_delta_fn on_delta, model_done_fn done,
                               void *ud, void **handle, sk_err **err);
SK_HIDDEN void http_cancel(void *self, sk_kernel *k, void *handle);
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
/* In "MODEL@URL", the '@' before "http://" or "https://", or NULL (so a
 * base URL with user info still works).  Borrowed from rest. */
SK_HIDDEN const char *http_find_base(const char *rest);
/* JSON body pieces: a number that reads back as exactly d; "key": (after
 * a comma when comma is non-zero); an array of strings (NULL as ""). */
SK_HIDDEN sk_status http_json_number(sk_buf *b, double d);
SK_HIDDEN sk_status http_json_key(sk_buf *b, int comma, const char *key);
SK_HIDDEN sk_status http_json_strs(sk_buf *b, char *const *v, size_t n);

/* ---- OpenAI wire format (pure functions, fuzzable) --------------------- */
/* Builds the chat completions request body.  Caller frees. */
SK_HIDDEN char *oai_request_json(const model_req *req, const char *model);
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

/* ---- policies: uncertainty, cascade, review, filters, redaction --------
 * A function's policy comes from skein's own keys in its config.json
 * ("uncertainty", "models", "review", "filters", "redact"), optionally
 * overlaid per call by a JSON object of the same shape.  policy.c. */
typedef struct pol_filter {
    char *name;        /* the rule's name, reported in SK_FILTERED errors */
    void *re;          /* pcre2_code*: a deterministic rule, or NULL */
    char *function;    /* a model-based rule: a function (Filter.Content) */
    char *policy;      /* passed to that function as {{$policy}} */
} pol_filter;

typedef struct sk_policy {
    /* uncertainty signals */
    int protocol;          /* append the UNSURE instruction, detect the
                              marker line; default 0 */
    int hedging;           /* match hedging phrases; default 1 */
    void *hedge_re;        /* pcre2_code*: the phrases as one pattern */
    int want_logprobs;     /* ask the server for logprobs; default 0 */
    int check_logprobs;    /* judge logprobs when the reply has them;
                              default 1 */
    double min_mean_prob;  /* uncertain below this mean token probability;
                              default 0.5 */
    double min_token_prob; /* uncertain if any token is below; default 0
                              (off) */
    int samples;           /* self-consistency: answers to sample; 1 off */
    double min_agreement;  /* share of samples that must agree; 0.5 */
    char *judge;           /* a function comparing answers, or NULL for
                              normalised exact match */
    /* escalation cascade: model specs, cheapest first (n 0: none) */
    char **models;
    size_t n_models;
    /* self-review */
    char *review;          /* the review function, or NULL */
    int review_rounds;     /* revisions before raising; default 2 */
    /* content filters */
    pol_filter *in_filters;
    size_t n_in;
    pol_filter *out_filters;
    size_t n_out;
    /* PII redaction: -1 auto (on for non-loopback endpoints), 0, 1 */
    int redact;
    struct rd_rules *redact_rules; /* extra rules, or NULL */
    /* the response cache: -1 auto (deterministic calls: temperature 0),
     * 0 off, 1 on */
    int cache;
    /* the required shape of the answer ("output"), or NULL */
    struct sk_shape *shape;
    /* a reply cut by the token limit: 0 raise `truncated` (default), N ask
     * the model to continue up to N times, -1 accept it ("truncated") */
    int continuations;
} sk_policy;

/* Parses the policy keys of a config.json document or a per-call
 * override object.  base (may be NULL for the defaults) is copied first,
 * then what json sets replaces it.  Unknown keys are ignored.  Errors are
 * SK_CONFIG with *errmsg "origin: message" (caller frees). */
SK_HIDDEN sk_status pol_parse(const char *json, size_t len, const char *origin,
                              const sk_policy *base, sk_policy **out,
                              char **errmsg);
SK_HIDDEN void pol_free(sk_policy *p);

/* A detector's finding. */
typedef struct unc_verdict {
    int uncertain;
    char *reason;      /* e.g. "hedging: \"I'm not sure\"" (caller frees) */
    char *question;    /* the clarifying question, or NULL */
    double confidence; /* in [0,1], or -1 when unknown */
} unc_verdict;
SK_HIDDEN void unc_verdict_clear(unc_verdict *v);

/* The instruction appended to a prompt when p->protocol is on.  Static. */
SK_HIDDEN const char *unc_protocol_instruction(void);
/* The explicit marker and hedging phrases in a reply. */
SK_HIDDEN sk_status unc_check_text(const sk_policy *p, const char *reply,
                                   unc_verdict *v);
/* Confidence from per-token logprobs: mean and minimum probability. */
SK_HIDDEN sk_status unc_check_logprobs(const sk_policy *p,
                                       const sk_logprob *lp, size_t n,
                                       unc_verdict *v);
/* Agreement of n answers by normalised exact match (case, whitespace and
 * trailing punctuation folded): the share of answers equal to the most
 * common one, whose index goes to *majority. */
SK_HIDDEN double unc_agreement(char *const *answers, size_t n,
                               size_t *majority);

/* The detail object of an uncertainty error (kernel.c).  Caller frees. */
SK_HIDDEN char *unc_detail_json(const char *reason, const char *question,
                                double confidence, char *const *candidates,
                                size_t n, const char *output);

/* A review function's reply: 1 for PASS; 0 for FAIL with *critique set
 * (caller frees); a reply that is neither is a FAIL whose critique says
 * so. */
SK_HIDDEN int rev_parse(const char *reply, char **critique);
/* A model-based filter's reply: 1 for ALLOW; 0 for BLOCK with *reason. */
SK_HIDDEN int flt_parse(const char *reply, char **reason);
/* A deterministic filter rule: 1 if it matches text (the match goes to
 * *matched when non-NULL, caller frees), 0 if not, -1 on a match error
 * (a runaway pattern), -2 when memory ran out. */
SK_HIDDEN int pol_filter_match(const pol_filter *f, const char *text,
                               char **matched);

/* ---- PII redaction (redact.c) ------------------------------------------
 * Replaces personal data and secrets with stable placeholders before text
 * leaves the machine, and puts the originals back into the reply. */
typedef struct rd_rules rd_rules;
typedef struct rd_map rd_map;

/* The built-in rules: EMAIL, PHONE, CARD (Luhn-checked), IBAN (mod-97
 * checked), IP (v4 and v6), SECRET (API keys and tokens). */
SK_HIDDEN sk_status rd_rules_default(rd_rules **out);
/* An empty rule set (custom rules only).  NULL on allocation failure. */
SK_HIDDEN rd_rules *rd_rules_new(void);
/* Adds a rule; placeholders read "[NAME_n]".  SK_CONFIG with *errmsg on
 * a bad pattern or name. */
SK_HIDDEN sk_status rd_rules_add(rd_rules *r, const char *name,
                                 const char *pattern, char **errmsg);
SK_HIDDEN void rd_rules_free(rd_rules *r);
SK_HIDDEN rd_map *rd_map_new(void);
SK_HIDDEN void rd_map_free(rd_map *m);
SK_HIDDEN size_t rd_map_count(const rd_map *m);
/* Redacts text into *out (caller frees); the same value always gets the
 * same placeholder within one map. */
SK_HIDDEN sk_status rd_redact(const rd_rules *r, rd_map *m, const char *text,
                              char **out);
/* Puts the originals back for every placeholder of m found in text. */
SK_HIDDEN sk_status rd_restore(const rd_map *m, const char *text, char **out);
/* 1 when a model spec or URL points at this machine (127.0.0.0/8, ::1,
 * localhost) or is in-process (scripted:). */
SK_HIDDEN int rd_is_local(const char *spec);

/* ---- plans (planner/plan.c) --------------------------------------------
 * The plan format: one step per line,
 *     N. Skill.Fn(arg, name=arg, ...)   # optional comment
 * where arg is $N (step N's output), $name or ${name} (a variable), a
 * "double-quoted string" (JSON escapes; $N, $name and ${name} inside are
 * interpolated, "$$" is a dollar), or a bare number.  Blank lines and
 * "# ..." comments are ignored; "# goal: TEXT" records the goal; a line
 * "NO PLAN: reason" says no plan is possible. */
typedef enum plan_arg_kind {
    PA_TEXT,     /* a literal */
    PA_STEP,     /* $N */
    PA_VAR,      /* $name */
    PA_TEMPLATE  /* a string with references; text keeps $N/${name}/$$ */
} plan_arg_kind;

typedef struct plan_arg {
    char *name;          /* NULL: positional (the first parameter) */
    plan_arg_kind kind;
    char *text;          /* literal / variable name / template text */
    int step;            /* PA_STEP */
    int col;             /* 1-based column of the value */
} plan_arg;

typedef struct plan_call {
    char *function;      /* as written */
    int fn_col;
    plan_arg *args;
    size_t n_args;
} plan_call;

typedef enum plan_state {
    PS_PENDING, PS_RUNNING, PS_DONE, PS_FAILED, PS_SKIPPED
} plan_state;

typedef struct plan_step {
    int number;
    int line;
    char *src;           /* the call as written (without the number) */
    plan_call call;
    char *comment;       /* a trailing comment, or NULL */
    int *deps;           /* distinct step numbers it refers to, sorted */
    size_t n_deps;
    /* run state (planner/exec.c) */
    plan_state state;
    char *output;
    long long start_ms, end_ms;
} plan_step;

struct sk_plan {
    char *origin;
    char *goal;          /* from "# goal:", or NULL */
    char *no_plan;       /* the reason after "NO PLAN:", or NULL */
    plan_step *steps;    /* in text order */
    size_t n;
    struct sk_grant *grant; /* what its steps may call (NULL: anything;
                               checked when it is validated and run) */
};

/* Parses one call, "Skill.Fn(a=$1, \"x\")", from s (len bytes, no
 * newline).  On error returns SK_PLAN with *errmsg (caller frees) and the
 * 1-based column within s in *errcol. */
SK_HIDDEN sk_status plan_parse_call(const char *s, size_t len, plan_call *out,
                                    char **errmsg, int *errcol);
SK_HIDDEN void plan_call_free(plan_call *c);
/* Parses plan text.  lenient (for model replies): take the text inside a
 * ``` fence if there is one, and ignore prose lines before the first step
 * and after the last.  Errors: SK_PLAN with every problem as
 * "origin:line:col: message", one per line, in *errmsg (caller frees). */
SK_HIDDEN sk_status plan_parse(const char *text, size_t len, const char *origin,
                               int lenient, sk_plan **out, char **errmsg);
/* Checks p against the kernel: known functions (no other is ever run),
 * arguments that name parameters, required parameters present, a single
 * positional argument first, references to existing steps, distinct step
 * numbers, no cycles (the cycle is named).  vars non-NULL: $name must be
 * set in it ($goal and $input are always allowed).  Problems as in
 * plan_parse; SK_OK when there are none. */
SK_HIDDEN sk_status plan_validate(sk_kernel *k, const sk_plan *p,
                                  const sk_vars *vars, char **problems);
/* The plan in canonical form (parses back to the same plan).  Caller
 * frees. */
SK_HIDDEN char *plan_text(const sk_plan *p);
/* A Graphviz digraph: a node per step (number, function), an edge per
 * dependency, variables as input nodes.  Caller frees. */
SK_HIDDEN char *plan_dot(const sk_plan *p);
SK_HIDDEN void plan_free(sk_plan *p);
/* The step numbered n, or NULL. */
SK_HIDDEN plan_step *plan_find(const sk_plan *p, int n);
/* Expands an argument's value: step outputs come from the plan's steps
 * (their output field), variables from vars (unset: empty).  Caller
 * frees. */
SK_HIDDEN char *plan_arg_value(const sk_plan *p, const plan_arg *a,
                               const sk_vars *vars);

/* The function manual for planners and agents (planner/planner.c): one
 * entry per function (name, description, parameters), at most max, the
 * most relevant to goal by a lexical score when there are more, listed
 * in name order so the prompt prefix stays stable.  only (n_only) limits
 * it to those names when non-NULL.  Caller frees. */
SK_HIDDEN char *plan_manual(sk_kernel *k, const char *goal,
                            const char *const *only, size_t n_only,
                            size_t max);

/* ---- DataFrames (runtime/df.c, runtime/csv.c) ---------------------------
 * A DataFrame is a table or a view in the kernel's session database, an
 * SQLite database in memory by default (a file with the "db" option).
 * All SQL goes through the engine seam below, so another engine can
 * replace SQLite without touching the transform logic. */
typedef struct df_col {
    char *name;
    char *type;          /* declared type: "INTEGER", "REAL", "TEXT", "" */
} df_col;

/* One result row: n values as text (NULL for SQL NULL), borrowed for the
 * call.  Return non-zero to stop. */
typedef int (*df_row_fn)(void *ud, size_t n, const char *const *names,
                         const char *const *values);

/* Who wrote a statement.  model NULL: the user (or the runtime), whose
 * SQL runs as written.  Otherwise a model wrote it under that grant (at
 * least grant_none()): the read-only policy applies, and its ai() and
 * skein() calls reach only what the grant allows.  Any statement that
 * reads a view made from generated SQL counts as the model's too, under
 * the grants met, and every such statement is bounded by the sql_timeout_ms,
 * sql_max_rows and sql_max_bytes options (SK_QUERY naming the limit). */
typedef struct df_engine df_engine;
typedef struct df_engine_vt {
    const char *dialect;  /* named in prompts: "SQLite" */
    /* Runs statements from the runtime itself (trusted). */
    sk_status (*exec)(df_engine *e, const char *sql, char **errmsg);
    /* Prepares sql without running it.  Errors in *errmsg. */
    sk_status (*check)(df_engine *e, const char *sql, const struct sk_grant *model,
                       char **errmsg);
    /* Runs a query, calling row for each row (at most max_rows; 0: no
     * limit; past it SK_TOO_LARGE). */
    sk_status (*query)(df_engine *e, const char *sql, const struct sk_grant *model,
                       long max_rows, df_row_fn row, void *ud, char **errmsg);
    /* The columns of a table or view.  Caller frees with df_cols_free. */
    sk_status (*columns)(df_engine *e, const char *relation, df_col **cols,
                         size_t *n, char **errmsg);
    void (*close)(df_engine *e);
} df_engine_vt;
struct df_engine {
    const df_engine_vt *vt;
};
SK_HIDDEN void df_cols_free(df_col *cols, size_t n);

/* Rows handed out one at a time, typed (df:rows()).  The user's SQL; the
 * limits of generated SQL still apply to the statement when it reads
 * generated views.  SQLite engine only. */
typedef enum df_type { DF_NULL, DF_INT, DF_REAL, DF_TEXT } df_type;
typedef struct df_value {
    df_type type;
    long long i;
    double r;
    const char *s;   /* DF_TEXT: borrowed until the next row */
    size_t len;
} df_value;
typedef struct df_cursor df_cursor;
SK_HIDDEN sk_status df_cursor_open(df_engine *e, const char *sql, df_cursor **out,
                                   char **errmsg);
/* *row 1: a row is ready (df_cursor_row); 0: the end.  Errors as query. */
SK_HIDDEN sk_status df_cursor_next(df_cursor *c, int *row, char **errmsg);
/* The current row: n columns, names and values borrowed until the next. */
SK_HIDDEN size_t df_cursor_row(const df_cursor *c, const char *const **names,
                               const df_value **values);
SK_HIDDEN void df_cursor_close(df_cursor *c);
/* The grant of the statement stepping now, for the SQL functions: NULL
 * with *model 0 when the user wrote it. */
SK_HIDDEN const struct sk_grant *df_statement_grant(df_engine *e, int *model);
/* The calls a statement's ai()/skein() make, made side by side before it
 * runs for real (rowops.c; df.c runs the passes). */
typedef struct df_memo df_memo;
SK_HIDDEN df_memo *df_memo_new(void);
SK_HIDDEN void df_memo_free(df_memo *m);
/* Calls noted and not yet made. */
SK_HIDDEN size_t df_memo_pending(const df_memo *m);
/* Makes the noted calls, at most concurrency at once, under grant. */
SK_HIDDEN sk_status df_memo_fill(sk_kernel *k, df_memo *m,
                                 const struct sk_grant *grant, int concurrency);
/* The memo of the statement stepping now (NULL: none), and whether this
 * is its collecting pass. */
SK_HIDDEN df_memo *df_statement_memo(df_engine *e, int *collecting);

/* The kernel's session engine, opened on first use (SQLite; the "db"
 * kernel option names a file, default in memory).  SQLite handle for
 * code that must register functions: df_sqlite(e) (NULL for other
 * engines). */
SK_HIDDEN df_engine *kern_engine(sk_kernel *k, sk_err **err);
struct sqlite3;
SK_HIDDEN struct sqlite3 *df_sqlite(df_engine *e);
/* A fresh relation name ("df_1", "df_2", ...), unique in the engine. */
SK_HIDDEN char *df_new_name(sk_kernel *k);
/* Quotes an identifier for SQL ("a""b").  Caller frees. */
SK_HIDDEN char *df_quote_ident(const char *name);

/* A DataFrame: a relation in the session engine. */
typedef struct sk_df {
    sk_kernel *k;
    char *name;          /* the table or view */
    char *sql;           /* the query that defines a view, or NULL */
    char *instruction;   /* the English it came from, or NULL */
} sk_df;
SK_HIDDEN sk_df *df_wrap(sk_kernel *k, const char *name, const char *sql,
                         const char *instruction);
SK_HIDDEN void df_free(sk_df *df);
/* SQL a model wrote, as df_from_query records it. */
typedef struct df_model_sql {
    const struct sk_grant *grant; /* what its ai()/skein() may call */
    const char *cache_key;   /* the instruction-cache entry for it, written
                                once a read of the view has run to its end
                                within the limits, removed when one fails;
                                or NULL */
    const char *cache_value;
    int cached;              /* the entry is in the cache already */
} df_model_sql;
/* Creates a view over sql and wraps it.  model NULL: the user's query;
 * otherwise a model wrote it (see df_engine_vt). */
SK_HIDDEN sk_status df_from_query(sk_kernel *k, const char *sql,
                                  const char *instruction,
                                  const df_model_sql *model, sk_df **out,
                                  sk_err **err);
/* Replaces each {df} in sql with df's quoted name.  Caller frees. */
SK_HIDDEN char *df_subst(const sk_df *df, const char *sql);
SK_HIDDEN sk_status df_count(const sk_df *df, long long *n, sk_err **err);
/* The first n rows as a compact text table for prompts ("col | col").
 * Caller frees. */
SK_HIDDEN char *df_sample_text(const sk_df *df, size_t n);
/* The schema as "name TYPE, ..." for prompts.  Caller frees. */
SK_HIDDEN char *df_schema_text(const sk_df *df);

/* CSV (runtime/csv.c).  delimiter 0: guess from the header line (, ; tab
 * |); header -1: guess, 1 yes, 0 no (columns c1, c2, ...).  Types are
 * inferred from the data (INTEGER, REAL, TEXT); the import streams in one
 * transaction.  Errors: SK_DATA "path:line: message" (ragged row,
 * unterminated quote, invalid UTF-8, field over 16 MiB). */
typedef struct df_csv_opts {
    char delimiter;
    int header;
    const char *table;   /* the table to create, or NULL for a new name */
} df_csv_opts;
SK_HIDDEN sk_status df_read_csv(sk_kernel *k, const char *path,
                                const df_csv_opts *o, sk_df **out, sk_err **err);
SK_HIDDEN sk_status df_write_csv(const sk_df *df, const char *path, sk_err **err);

/* English to SQL (runtime/nl2sql.c). */
typedef struct df_ai_opts {
    int samples;         /* sample rows in the prompt (-1: 5; 0: none) */
    int repairs;         /* corrections to ask for (-1: 3) */
    int no_cache;
    /* the functions the generated SQL may call through skein() ("ai" for
     * ai()); NULL: none.  They run untrusted. */
    const char *const *functions;
    size_t n_functions;
} df_ai_opts;
SK_HIDDEN sk_status df_ai_transform(sk_df *df, const char *instruction,
                                    const df_ai_opts *o, sk_df **out, sk_err **err);
/* What df's SQL does, in plain words (the model reads the SQL).  Caller
 * frees *out. */
SK_HIDDEN sk_status df_ai_explain(sk_df *df, char **out, sk_err **err);
/* The model writes a SQL check of expectation over df (read-only, with
 * repair); the engine runs it.  ok is 1 or 0; evidence is the check's
 * result rows as text, sql the check (both caller frees). */
typedef struct df_verdict {
    int ok;
    char *evidence;
    char *sql;
} df_verdict;
SK_HIDDEN sk_status df_ai_verify(sk_df *df, const char *expectation,
                                 const df_ai_opts *o, df_verdict *v, sk_err **err);

/* Semantic operators over rows (runtime/rowops.c). */
typedef enum df_op { DF_MAP, DF_FILTER, DF_CLASSIFY, DF_EXTRACT } df_op;
typedef struct df_rowop_opts {
    const char *as;          /* DF_MAP: the new column's name ("result") */
    const char *column;      /* DF_CLASSIFY / DF_EXTRACT: the input column */
    const char *const *labels;  /* DF_CLASSIFY */
    size_t n_labels;
    const char *const *fields;  /* DF_EXTRACT: new columns */
    size_t n_fields;
    int concurrency;         /* model calls in flight (0: 16) */
    int batch;               /* rows per prompt (0 or 1: one row each) */
    int no_cache;
    int raise_uncertain;     /* raise on a row's uncertainty instead of
                                recording it */
    int progress;            /* -1: when stderr is a terminal */
    const char *model;       /* per-call model override, or NULL */
} df_rowop_opts;
typedef struct df_rowop_summary {
    long rows, done, failed, uncertain, cached, model_calls;
    long batch_fallbacks;    /* batches asked again one row at a time */
} df_rowop_summary;
/* Applies instruction (with {column} references) to every row.  The
 * result is a new DataFrame with the input's columns plus the new ones
 * and an "_error" column (NULL when the row succeeded); DF_FILTER keeps
 * the rows the model says yes to (and the failed ones, with _error). */
SK_HIDDEN sk_status df_rowop(sk_df *df, df_op op, const char *instruction,
                             const df_rowop_opts *o, sk_df **out,
                             df_rowop_summary *sum, sk_err **err);
/* Registers ai(instruction, text) and skein(function, text) on the
 * session database. */
SK_HIDDEN sk_status df_register_sql_functions(sk_kernel *k, sk_err **err);

/* The response cache (runtime/cache.c): SQLite at $SKEIN_CACHE, else
 * $XDG_CACHE_HOME/skein/cache.db, else ~/.cache/skein/cache.db; WAL. */
SK_HIDDEN sk_status kern_cache_get(sk_kernel *k, const char *key, char **value);
SK_HIDDEN sk_status kern_cache_put(sk_kernel *k, const char *key, const char *value);
SK_HIDDEN void kern_cache_del(sk_kernel *k, const char *key);
/* Option cache = 0 (--no-cache): no cache is read or written. */
SK_HIDDEN int kern_cache_off(const sk_kernel *k);

/* The bounds on every statement that holds generated SQL (options
 * sql_timeout_ms, sql_max_rows, sql_max_bytes; 0: none). */
typedef struct kern_sql {
    long timeout_ms;
    long max_rows;
    long long max_bytes;
    int concurrency;    /* sql_concurrency: ai()/skein() calls in flight */
} kern_sql;
SK_HIDDEN const kern_sql *kern_sql_limits(const sk_kernel *k);

/* The "db" option (NULL: in memory), for the engine that opens it; from
 * then on the option cannot change. */
SK_HIDDEN const char *kern_db_path(sk_kernel *k);
SK_HIDDEN long kern_next_id(sk_kernel *k); /* 1, 2, 3, ... per kernel */

/* ---- what the layers above keep in a kernel ----------------------------
 * The kernel knows no subsystem by name.  A layer keeps its state in a
 * slot found by the address of a static of its own, and registers what
 * must run when the kernel is freed (after every call in flight ended;
 * lower order first: the Lua side 10, DataFrames 20).  A layer that loads
 * native skills registers the file it loads from a skill folder. */
SK_HIDDEN void **kern_slot(sk_kernel *k, const void *key); /* NULL: memory */
SK_HIDDEN sk_status kern_on_free(sk_kernel *k, int order, void (*fn)(sk_kernel *k));
typedef sk_status (*skill_loader_fn)(sk_kernel *k, const char *skill, const char *path);
SK_HIDDEN sk_status kern_add_skill_loader(sk_kernel *k, const char *file,
                                          skill_loader_fn fn);
/* The i-th registered skill loader: 1 and *file, *fn; 0 past the end. */
SK_HIDDEN size_t kern_skill_loaders(const sk_kernel *k, const char **file,
                                    skill_loader_fn *fn, size_t i);
/* The response cache's slot and shutdown (runtime/cache.c): the kernel's
 * own. */
SK_HIDDEN void **kern_cache_slot(sk_kernel *k);
SK_HIDDEN void cache_shutdown(sk_kernel *k);
/* A kernel with the core alone: no connector kinds, no Lua (init.c's
 * sk_kernel_new adds the rest).  As sk_kernel_new otherwise. */
SK_HIDDEN sk_status kern_new(sk_kernel **out);

/* ---- output shapes (runtime/shape.c) ------------------------------------
 * A function can require the shape of its answer, with skein's "output"
 * key in config.json:
 *   "output": {"json_schema": {...}}            a JSON value matching it
 *   "output": {"choice": ["yes", "no"]}          exactly one of these
 *   "output": {"regex": "^\\d{4}-\\d{2}-\\d{2}$"} a match for the pattern
 * with optional "retries" (default 2).  Where the server can constrain
 * decoding, the connector asks it to; the answer is validated either way,
 * and a failing answer is retried with the problem fed back. */
typedef struct sk_shape sk_shape;
/* Parses the value of "output" (JSON text).  SK_CONFIG with *errmsg
 * "origin: output.json_schema: ..." (caller frees). */
SK_HIDDEN sk_status shape_parse(const char *json, size_t len, const char *origin,
                                sk_shape **out, char **errmsg);
SK_HIDDEN sk_shape *shape_clone(const sk_shape *s);
SK_HIDDEN void shape_free(sk_shape *s);
/* 1 when reply fits.  Otherwise 0 and *problem (caller frees) says what
 * is wrong, in words fit to send back to the model ("$.age: expected an
 * integer, got \"ten\"").  -1 on allocation failure.  For JSON schemas the
 * JSON may be wrapped in a code fence or prose: *clean (caller frees)
 * gets the bare JSON text (or the trimmed choice) when non-NULL. */
SK_HIDDEN int shape_check(const sk_shape *s, const char *reply, char **problem,
                          char **clean);
SK_HIDDEN int shape_retries(const sk_shape *s);
/* The model_req fields for this shape: json_schema text (borrowed from
 * s, or NULL), choices (borrowed), regex (borrowed). */
SK_HIDDEN void shape_request(const sk_shape *s, const char **json_schema,
                             char *const **choices, size_t *n_choices,
                             const char **regex);
/* A JSON schema validator on its own (type, enum, const, required,
 * properties, additionalProperties, items, minItems/maxItems,
 * minLength/maxLength, pattern, minimum/maximum, exclusive forms,
 * anyOf/oneOf/allOf basics).  Same contract as shape_check. */
SK_HIDDEN int shape_validate_json(const char *schema_json, const char *json,
                                  char **problem);

/* ---- invoke path ------------------------------------------------------- */
/* The end of an invoke: on SK_OK text is the result (callee takes it),
 * otherwise err (callee takes it). */
typedef void (*inv_done_fn)(void *ud, sk_status st, char *text, sk_err *err);

typedef struct inv_opts {
    const char *model;       /* borrowed; copied by inv_start */
    sk_stream_fn stream;
    void *stream_ud;
    const char *policy;      /* per-call policy JSON; borrowed, parsed by
                                inv_start */
    int no_cache;            /* skip the response cache: the caller keeps
                                a cache of its own (rowops, nl2sql) */
    int untrusted;           /* runs for a model (inside a plan step, an
                                agent action, generated SQL): Lua natives
                                get no os/io escape unless allow_os */
    const struct sk_grant *grant; /* the function's name came from a
                                model's output under this grant (checked
                                by inv_lookup); implies untrusted.  NULL:
                                the user (or the user's code) named it */
} inv_opts;

/* The one function lookup every call goes through: name ("Skill.Fn", or
 * a bare "Fn" preferring prefer_skill), checked against grant when a
 * model chose the name.  Borrowed, or NULL with *err: SK_NOT_FOUND (with
 * the closest name the caller may use) or SK_DENIED. */
SK_HIDDEN sk_function *inv_lookup(sk_kernel *k, const char *name,
                                  const char *prefer_skill,
                                  const sk_grant *grant, sk_err **err);
/* The error for an unknown function name, suggesting the closest one
 * (among those grant allows).  NULL only when memory ran out. */
SK_HIDDEN sk_err *inv_not_found_err(sk_kernel *k, const char *name,
                                    const sk_grant *grant);
/* Sets the kernel error for an unknown function name and returns
 * SK_NOT_FOUND. */
SK_HIDDEN sk_status inv_not_found(sk_kernel *k, const char *name);

/* Starts invoking f with vars (copied).  depth is the nesting level of
 * this call (0 at the top).  done runs from the loop, never from inside
 * inv_start.  Returns SK_OK or an error status with *err set (done will
 * not run). */
SK_HIDDEN sk_status inv_start(sk_kernel *k, sk_function *f,
                              const sk_vars *vars, int depth,
                              const inv_opts *opts, inv_done_fn done, void *ud,
                              sk_err **err);
/* inv_lookup, then inv_start. */
SK_HIDDEN sk_status inv_start_name(sk_kernel *k, const char *name,
                                   const char *prefer_skill,
                                   const sk_vars *vars, int depth,
                                   const inv_opts *opts, inv_done_fn done,
                                   void *ud, sk_err **err);
/* Names the model(s) function name runs on when nothing overrides them
 * ("spec", or a cascade "a > b"), for keys of caches that hold what a
 * model wrote.  Caller frees; NULL when memory ran out. */
SK_HIDDEN char *pipe_model_id(sk_kernel *k, const char *name);
/* sk_invoke with the internal options: runs the loop until the call
 * ends; the outcome goes to *out or to the kernel's error. */
SK_HIDDEN sk_status inv_invoke(sk_kernel *k, const char *name,
                               const sk_vars *vars, const inv_opts *opts,
                               char **out);

/* ---- Lua side ---------------------------------------------------------- */
struct lua_State;
/* The kernel's Lua state, created on first use when none is bound. */
SK_HIDDEN struct lua_State *klua_state(sk_kernel *k);
/* Makes Lua a part of kernel k: skill folders' skill.lua load as native
 * skills, run as coroutines of their own (when one calls skein.invoke it
 * yields to the loop, so natives run side by side). */
SK_HIDDEN sk_status klua_register(sk_kernel *k);
/* The native call running now: its nesting depth and whether it runs for
 * a model.  Lua's coroutines set them for each stretch they run. */
SK_HIDDEN void kern_native_get(const sk_kernel *k, int *depth, int *untrusted);
SK_HIDDEN void kern_native_set(sk_kernel *k, int depth, int untrusted);
/* Whether the native call running now was chosen by a model (so the Lua
 * side withholds os.execute and io.popen), and whether the user allowed
 * them anyway (option allow_os). */
SK_HIDDEN int kern_untrusted(const sk_kernel *k);
SK_HIDDEN int kern_allow_os(const sk_kernel *k);
/* Option allow_dangerously_set_content: every inserted value trusted. */
SK_HIDDEN int kern_allow_unsafe(const sk_kernel *k);
/* For runtime/lua_df.c, from a function whose upvalue 1 is the binding:
 * the kernel (raising if it is closed or if called from a stream
 * function), with L marked as the running thread until klua_leave. */
SK_HIDDEN sk_kernel *klua_enter(struct lua_State *L, struct lua_State **prev);
SK_HIDDEN void klua_leave(struct lua_State *L, struct lua_State *prev);
/* Pushes e as a skein error table (e borrowed). */
SK_HIDDEN void klua_push_err(struct lua_State *L, const sk_err *e);
/* lua_df.c: with [binding, module] on top of L, adds module.df and the
 * skein.DataFrame metatable, their functions closing over the binding. */
SK_HIDDEN void klua_open_df(struct lua_State *L);

/* ---- traces ------------------------------------------------------------ */
typedef struct trace_rec {
    const char *function;
    const char *model;       /* spec */
    const char *prompt;
    const char *reply;       /* NULL on error */
    const model_resp *resp;  /* NULL on error */
    long long start_ms, end_ms;
    int attempts;
    const sk_err *err;
    const char *cache;       /* "hit", "miss", or NULL when not cacheable */
} trace_rec;
SK_HIDDEN void trace_model_call(sk_kernel *k, const trace_rec *r);
/* Appends {"time":..., <members>} to the trace. */
SK_HIDDEN void trace_event(sk_kernel *k, const char *members);
/* The function's policy, parsed over the kernel's when stale.  Borrowed
 * from f.  On a bad policy returns NULL with *err set. */
SK_HIDDEN const struct sk_policy *kern_policy(sk_kernel *k, sk_function *f,
                                             sk_err **err);
/* The kernel-wide policy (defaults when none was set).  Borrowed. */
SK_HIDDEN const struct sk_policy *kern_base_policy(sk_kernel *k);
/* The built-in redaction rules, compiled once per kernel.  Borrowed;
 * NULL on allocation failure. */
SK_HIDDEN rd_rules *kern_redact_rules(sk_kernel *k);
/* Rate limits (limits.c): 0 when a request of `tokens` may start now
 * (it is then counted), else the milliseconds to wait first. */
SK_HIDDEN long lim_admit(sk_kernel *k, const char *spec, long tokens);
/* A request admitted by lim_admit ended; actual tokens (-1 unknown)
 * replace the estimate. */
SK_HIDDEN void lim_done(sk_kernel *k, const char *spec, long estimated, long actual);
SK_HIDDEN void lim_free(sk_kernel *k);
/* The usage record of a model spec, made on first use; NULL on
 * allocation failure. */
SK_HIDDEN sk_model_usage *kern_model_usage(sk_kernel *k, const char *spec);
/* The file every model exchange is recorded to (SKEIN_RECORD), or NULL. */
SK_HIDDEN FILE *kern_record_file(sk_kernel *k);
/* The kernel's usage counters, for the invoke path to update. */
SK_HIDDEN sk_usage *kern_usage(sk_kernel *k);

/* Writes a notice on stderr unless the kernel is quiet. */
SK_HIDDEN void kern_notice(const sk_kernel *k, const char *fmt, ...) SK_PRINTF(2, 3);

#endif /* SKEIN_INTERNAL_H */
