/*
 * core.h -- what the core offers the layers above it: the kernel and its
 * registry, the event loop, the trust boundary, the connector interface
 * and its table of kinds, the invoke path, the response cache, traces,
 * limits, and the slots and hooks through which the layers above attach
 * themselves.  The core names none of them.
 */
#ifndef SKEIN_CORE_H
#define SKEIN_CORE_H

#include "policy/policy.h"

/* Stores e as the kernel's last error (takes ownership; NULL e records
 * SK_NOMEM) and returns its code. */
SK_HIDDEN sk_status kern_fail(sk_kernel *k, sk_err *e);
SK_HIDDEN sk_status kern_failf(sk_kernel *k, sk_status code, const char *fmt,
                               ...) SK_PRINTF(3, 4);
SK_HIDDEN void kern_ok(sk_kernel *k);

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
     * untrusted: the call's context flags (KERN_CTX_*; KERN_CTX_UNTRUSTED:
     * it runs for a model), for kern_native_set.  On failure to start,
     * *err and done never runs. */
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
    char *path;              /* folder (or YAML file) it came from, or NULL */
    char *cfg_origin;        /* FN_SEMANTIC: the file its settings came
                                from (config.json, a YAML prompt), or NULL */
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
    size_t skill_seq;        /* when its skill was first registered */
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
/* Looks up "Skill.Fn", or a bare "Fn" as Semantic Kernel does: first in
 * prefer_skill (may be NULL), then in the skill registered first that has
 * it.  Borrowed, or NULL. */
SK_HIDDEN sk_function *reg_find_short(const sk_kernel *k, const char *name,
                                      const char *prefer_skill);
/* reg_find_short for a name a model chose under grant (NULL: the user):
 * only functions the grant allows, and a bare name must be unambiguous
 * among them (NULL when it is not).  When the grant allows no function of
 * that name, the first of them, for the caller to deny.  Borrowed. */
struct sk_grant;
SK_HIDDEN sk_function *reg_resolve(const sk_kernel *k, const char *name,
                                   const char *prefer_skill,
                                   const struct sk_grant *grant);
/* Model requests in flight right now (tests observe overlap with it). */
SK_HIDDEN long kern_model_inflight(const sk_kernel *k);
/* The model spec configured for a service id, or NULL.  Borrowed. */
SK_HIDDEN const char *kern_service(const sk_kernel *k, const char *id);
/* spec itself when it reads KIND:MODEL; the spec of the alias or service
 * of that name when there is one; else spec (NULL stays NULL).  Every
 * place a model is named goes through it.  Borrowed. */
SK_HIDDEN const char *kern_resolve_model(const sk_kernel *k, const char *spec);

/* Where a semantic function comes from: its template and config text
 * (cfg may be NULL), the files that name them in errors, and for text
 * taken out of another file (a YAML prompt) where it sits there. */
typedef struct prompt_src {
    const char *skill, *name;
    const char *tpl;
    size_t tpl_len;
    const char *tpl_origin;
    const tpl_pos *tpl_at;     /* NULL: the template is its own file */
    const char *cfg;
    size_t cfg_len;
    const char *cfg_origin;
    const cfg_srcmap *cfg_map; /* NULL: the config is its own file */
    const char *path;          /* the folder or file, for sk_function_info */
    const char *taken;         /* non-NULL: the name is taken where it may
                                  not be replaced; the function is checked
                                  whole, then refused with this message */
} prompt_src;
/* Builds a semantic function and registers it (replacing one of the same
 * name).  Borrows src.  On failure sets the kernel error and returns its
 * code; the config is checked before the template. */
SK_HIDDEN sk_status reg_add_prompt(sk_kernel *k, const prompt_src *src);
/* reg_add_prompt for a template and a config that are files of their
 * own (config may be NULL). */
SK_HIDDEN sk_status reg_add_semantic(sk_kernel *k, const char *skill,
                                     const char *name, const char *tpl_text,
                                     size_t tpl_len, const char *tpl_origin,
                                     const char *cfg_text, size_t cfg_len,
                                     const char *cfg_origin, const char *path);

/* ---- the trust boundary (runtime/core/trust.c) --------------------------------
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

/* A function offered to the model as a tool.  Borrowed strings. */
typedef struct tool_def {
    const char *name;        /* on the wire: "Skill-Fn" */
    const char *description;
    const char *parameters;  /* a JSON schema object, as text */
    int strict;              /* the server holds arguments to the schema */
} tool_def;

/* The most tool calls read from one reply, and the most tools offered. */
#define TOOL_CALLS_MAX 64
#define TOOLS_MAX 128

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
    /* native tool calling: the tools offered (a connector whose vt has
     * tools sends them; none when n_tools is 0), whether the model may
     * (CFG_CHOICE_AUTO), must (REQUIRED) or must not (NONE) call them,
     * and whether it may call several at once (-1: the server's default) */
    const tool_def *tools;
    size_t n_tools;
    cfg_choice tool_choice;
    int parallel_tool_calls;
} model_req;

typedef struct model_resp {
    char *text;
    char *finish_reason;    /* may be NULL */
    char *model;            /* as reported by the server, may be NULL */
    long prompt_tokens, completion_tokens; /* -1 unknown */
    sk_logprob *logprobs;
    size_t n_logprobs;
    int attempts;           /* 1 + retries */
    int http_status;
    sk_tool_call *calls;    /* the tool calls the model made, in order */
    size_t n_calls;
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
    /* What start would send for req, sent nowhere (a dry run), built by
     * the same code as the request: a JSON object {"method", "url",
     * "headers": [...], "key": where it comes from, "problem": what would
     * stop it (or absent), "body": the body as a JSON string}, with every
     * secret masked.  Caller frees *out.  NULL for a connector that sends
     * nothing (an in-process model). */
    sk_status (*describe)(void *self, sk_kernel *k, const model_req *req,
                          char **out, sk_err **err);
    int tools;  /* it sends model_req.tools and reads tool calls back */
} conn_vt;

typedef struct sk_connector {
    const conn_vt *vt;
    void *self;
    char *spec;         /* the spec it was made from, e.g. "openai:gpt-4o" */
    char *model;        /* the model name to send */
    char *endpoint;     /* where requests go (a URL, a file): two servers
                           behind one model name are two endpoints */
    int no_tools;       /* its server refused tools in this run */
} sk_connector;

/* A kind of connector, as the layer that has it registers it: the spec
 * prefix it answers to ("ollama", or "openai+" for a family whose flavor
 * follows), and how to open one (kind: the whole prefix, rest: the spec
 * after ':').  The kernel finds connectors only through these, as curl
 * finds protocols through its handler table. */
typedef struct conn_kind {
    const char *name;
    /* NULL when the entry offers embeddings only */
    sk_connector *(*open)(sk_kernel *k, const char *kind, const char *rest,
                          sk_err **err);
    /* An embeddings connector for the spec, or NULL when the kind has no
     * embeddings endpoint.  Its start takes the texts to embed as the
     * contents of req->msgs and answers with resp->text a JSON array of
     * one array of numbers per text, in order. */
    sk_connector *(*open_embed)(sk_kernel *k, const char *kind,
                                const char *rest, sk_err **err);
} conn_kind;
/* Adds a kind (borrowed: static).  SK_NOMEM. */
SK_HIDDEN sk_status kern_add_conn_kind(sk_kernel *k, const conn_kind *kind);
/* Makes a connector from a spec ("openai:...", "scripted:FILE").  On
 * failure returns NULL and *err says why. */
SK_HIDDEN sk_connector *conn_open(sk_kernel *k, const char *spec,
                                  sk_err **err);
SK_HIDDEN void conn_close(sk_connector *c);
/* Makes an embeddings connector from a spec ("openai:text-embedding-3-
 * small", "ollama:nomic-embed-text"), through the kinds that offer one.
 * On failure returns NULL and *err says why. */
SK_HIDDEN sk_connector *conn_open_embed(sk_kernel *k, const char *spec,
                                        sk_err **err);
/* The kernel's connector for spec, opened once and cached by spec. */
SK_HIDDEN sk_connector *kern_connector(sk_kernel *k, const char *spec,
                                       sk_err **err);

/* Native tool calling (runtime/core/tools.c).  Whether requests on c may
 * carry tools: its kind sends them, its server has not refused them in
 * this run, and the config file's "tools" ({SPEC or KIND: false}) does
 * not turn them off.  kern_set_native_tools sets such a switch (SK_NOMEM);
 * tools_refused says whether an error is a server refusing the tools it
 * was sent (an HTTP 400, 404, 422, 500 or 501 that speaks of tools). */
SK_HIDDEN int kern_native_tools(const sk_kernel *k, const sk_connector *c);
SK_HIDDEN sk_status kern_set_native_tools(sk_kernel *k, const char *endpoint, int on);
SK_HIDDEN void kern_tools_free(sk_kernel *k);
SK_HIDDEN int tools_refused(const sk_err *e);
/* Whether the model function `name` runs on (the first of a cascade)
 * takes native tools, as kern_native_tools says. */
SK_HIDDEN int tools_native_for(sk_kernel *k, const char *name);

/* Kernel settings read by connectors. */
typedef struct kern_net {
    long timeout_ms;         /* the whole request, first byte to last */
    long connect_timeout_ms;
    long idle_timeout_ms;    /* the longest a reply may go silent (0: no
                                limit); see http.c for when it applies */
    int retries;
    long retry_base_ms;
    size_t max_response_bytes;
    int slots;               /* a llama.cpp server's slots to route among
                                by prefix (0: the server chooses) */
} kern_net;
SK_HIDDEN const kern_net *kern_net_settings(const sk_kernel *k);
SK_HIDDEN int kern_quiet(const sk_kernel *k);

/* ---- invoke path ------------------------------------------------------- */
/* The end of an invoke: on SK_OK text is the result (callee takes it),
 * otherwise err (callee takes it). */
typedef void (*inv_done_fn)(void *ud, sk_status st, char *text, sk_err *err);

/* What an invoke reports besides its text: the uncertainty stage's record
 * of the final attempt (JSON: model, each signal's score, what raised,
 * the answer it judged) and the accepted reply's logprobs.  Owned by
 * whoever asked for it; inv_out_clear frees the contents. */
typedef struct inv_out {
    char *signals;
    sk_logprob *lp;
    size_t n_lp;
} inv_out;
SK_HIDDEN void inv_out_clear(inv_out *o);

/* What a round of tool calls did, for whoever watches the loop (the
 * agent).  Borrowed for the call of the hook. */
typedef struct tool_report {
    const char *function;  /* "Skill.Fn", or the name the model wrote */
    const char *arguments; /* JSON, redacted values restored */
    const char *result;    /* the output, or "Error: ..." */
    int is_error;
} tool_report;

/* A caller's hold on a call's tool loop.  max_rounds (> 0) replaces the
 * behaviour's; before runs ahead of each request after the first (round
 * 1, 2, ...) and may stop the call with an error it returns (the callee
 * takes it); after runs once each round's calls have their results, with
 * the reply's text. */
typedef struct inv_tool_hook {
    int max_rounds;
    sk_err *(*before)(void *ud, int round);
    void (*after)(void *ud, int round, const char *text, const tool_report *calls,
                  size_t n);
    void *ud;
} inv_tool_hook;

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
    inv_out *out;            /* filled before done is called, or NULL */
    int dry_run;             /* 1: stop before the model and make the
                                request, as it would be sent, the result
                                (a JSON report); 2: inside a dry run (a
                                function block, a native's call): stop
                                there too, the result marking where its
                                answer would go.  Either way no model
                                request goes out */
    const struct sk_grant *tools; /* what the model's tool calls in this
                                call may reach besides the behaviour's own
                                limits (--functions), or NULL */
    const inv_tool_hook *tool_hook; /* borrowed until done, or NULL */
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

/* The response cache (runtime/core/cache.c): SQLite at $SKEIN_CACHE, else
 * $XDG_CACHE_HOME/skein/cache.db, else ~/.cache/skein/cache.db; WAL. */
SK_HIDDEN sk_status kern_cache_get(sk_kernel *k, const char *key, char **value);
SK_HIDDEN sk_status kern_cache_put(sk_kernel *k, const char *key, const char *value);
SK_HIDDEN void kern_cache_del(sk_kernel *k, const char *key);
/* Option cache = 0 (--no-cache): no cache is read or written. */
SK_HIDDEN int kern_cache_off(const sk_kernel *k);
/* mkdir -p for the folder part of path, mode 0700 for what it creates;
 * 0 on success, -1 with errno.  (cache.c) */
SK_HIDDEN int kern_make_parent_dirs(const char *path);

/* The text memory (runtime/core/memory.c; the public sk_memory_* calls):
 * the options memory (a file, "off": in this process only; "" the
 * default) and embeddings (a model spec; "" none), their setters, and
 * the embeddings model named (NULL: none; borrowed). */
SK_HIDDEN sk_status mem_set_path(sk_kernel *k, const char *value);
SK_HIDDEN sk_status mem_set_embeddings(sk_kernel *k, const char *spec);
SK_HIDDEN const char *mem_embeddings(sk_kernel *k);

/* The run's journal (runtime/core/journal.c), option journal: each model
 * exchange by its exact request and occurrence, committed as it completes.
 * journal_open is the option's setter; kern_journal_next numbers the
 * identical requests of a run (0, 1, ...; -1 with no journal). */
SK_HIDDEN sk_status journal_open(sk_kernel *k, const char *path);
SK_HIDDEN int kern_journal_on(sk_kernel *k);
SK_HIDDEN long kern_journal_next(sk_kernel *k, const char *key);
SK_HIDDEN sk_status kern_journal_get(sk_kernel *k, const char *key, long occ,
                                     char **value);
SK_HIDDEN void kern_journal_put(sk_kernel *k, const char *key, long occ,
                                const char *value);

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
/* A new call id into out (n >= 48 bytes): the kernel's random run id and
 * its count of invokes, the join key of a call's trace lines, cassette
 * lines and its call_end line. */
SK_HIDDEN void kern_new_call_id(sk_kernel *k, char *out, size_t n);

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
/* The response cache's slot and shutdown (runtime/core/cache.c): the kernel's
 * own. */
SK_HIDDEN void **kern_cache_slot(sk_kernel *k);
SK_HIDDEN void cache_shutdown(sk_kernel *k);
/* The problems met loading skills (runtime/core/skills.c): the kernel's
 * own field, freed by sk_kernel_clear_skill_problems. */
SK_HIDDEN void **kern_problems_slot(sk_kernel *k);
/* The message (borrowed) and *code of the problem that kept function
 * `name` ("Skill.Fn") or its whole skill from loading, or NULL. */
SK_HIDDEN const char *skills_problem_for(const sk_kernel *k, const char *name,
                                         sk_status *code);
/* The journal's slot and shutdown (runtime/core/journal.c), as the cache's. */
SK_HIDDEN void **kern_journal_slot(sk_kernel *k);
SK_HIDDEN void journal_shutdown(sk_kernel *k);
/* A kernel with the core alone: no connector kinds, no Lua (init.c's
 * sk_kernel_new adds the rest).  As sk_kernel_new otherwise. */
SK_HIDDEN sk_status kern_new(sk_kernel **out);

/* The native call running now: its nesting depth and its context, flags
 * that the calls it makes inherit: KERN_CTX_UNTRUSTED (it runs for a
 * model) and KERN_CTX_DRY_RUN (it runs inside a dry run, so no model call
 * it makes may go out).  A layer that runs natives (Lua's coroutines)
 * gets the context as fn_ops.start's `untrusted` and hands it back here,
 * unread, for each stretch it runs. */
#define KERN_CTX_UNTRUSTED 1
#define KERN_CTX_DRY_RUN 2
SK_HIDDEN void kern_native_get(const sk_kernel *k, int *depth, int *ctx);
SK_HIDDEN void kern_native_set(sk_kernel *k, int depth, int ctx);
/* Whether the native call running now was chosen by a model (so the Lua
 * side withholds os.execute and io.popen), and whether the user allowed
 * them anyway (option allow_os). */
SK_HIDDEN int kern_untrusted(const sk_kernel *k);
SK_HIDDEN int kern_allow_os(const sk_kernel *k);
/* The time the time functions read, Unix seconds: the option now
 * (SKEIN_NOW) when set, which fixes it, else the system clock. */
SK_HIDDEN long long kern_now(const sk_kernel *k);
/* Option allow_dangerously_set_content: every inserted value trusted. */
SK_HIDDEN int kern_allow_unsafe(const sk_kernel *k);

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
    const char *cache;       /* "hit", "miss", "journal" (served from the
                                run's journal), or NULL when not cacheable */
    const char *system;      /* the system message sent, or NULL */
    const char *call;        /* the invoke's call id, or NULL */
    int turns;               /* messages sent besides the system message */
} trace_rec;
SK_HIDDEN void trace_model_call(sk_kernel *k, const trace_rec *r);
/* Appends {"time":..., <members>} to the trace. */
SK_HIDDEN void trace_event(sk_kernel *k, const char *members);
/* The end of an invoke of a prompt function, to the trace and the
 * cassette: {"type":"call_end","call":..,"function":..,"status":KIND}
 * and, when st is SK_OK, "answer" (text, the answer released, values
 * restored); "redacted":true when the prompts sent had placeholders. */
SK_HIDDEN void trace_call_end(sk_kernel *k, const char *call, const char *function,
                              sk_status st, const char *text, int redacted);

/* The call history (runtime/core/history.c): options history,
 * history_max_bytes and conversation, and the record of one model call,
 * made beside its trace line.  kern_history_note_config learns the
 * secret values of a parsed config file, never to be stored. */
struct cJSON;
SK_HIDDEN sk_status history_set(sk_kernel *k, const char *value);
SK_HIDDEN sk_status history_set_max(sk_kernel *k, const char *value);
SK_HIDDEN sk_status history_set_conversation(sk_kernel *k, const char *id);
SK_HIDDEN void kern_history_put(sk_kernel *k, const trace_rec *r);
SK_HIDDEN void kern_history_note_config(sk_kernel *k, const struct cJSON *doc);
SK_HIDDEN void **kern_history_slot(sk_kernel *k);
SK_HIDDEN void history_shutdown(sk_kernel *k);
/* mkdir -p for the folder of path (0700); 0, or -1 with errno. */
SK_HIDDEN int kern_make_parent_dirs(const char *path);
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

#endif /* SKEIN_CORE_H */
