/*
 * skein.h -- the whole public API of libskein.
 *
 * skein runs programs whose steps are prompts.  A *function* takes named
 * text variables and returns text; a *semantic* function renders a prompt
 * template and calls a model, a *native* function is C or Lua.  Functions
 * are grouped into *skills* and looked up as "Skill.Function".
 *
 * Conventions (see STYLE.md):
 *  - every fallible call returns sk_status (SK_OK is 0); the detail is in
 *    sk_errmsg(kernel), owned by the kernel until its next fallible call;
 *  - sk_x_new / sk_x_free pair up, free(NULL) does nothing, a failed new
 *    leaves *out NULL;
 *  - strings returned through `char **out` are owned by the caller, who
 *    frees them with sk_free();
 *  - nothing is process-global: two kernels never see each other.
 *
 * One kernel is used from one thread.  Concurrency comes from the kernel's
 * event loop: many invokes are in flight at once and complete as their
 * model replies arrive (sk_invoke_async, sk_call_wait).
 */
#ifndef SKEIN_H
#define SKEIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SKEIN_VERSION "0.1.0"
#define SKEIN_VERSION_NUM 0x000100

#if defined(__GNUC__)
#define SK_API __attribute__((visibility("default")))
#else
#define SK_API
#endif

/* Status codes.  Never renumbered; new codes are appended. */
typedef enum sk_status {
    SK_OK = 0,
    SK_NOMEM = 1,        /* an allocation failed */
    SK_USAGE = 2,        /* bad argument from the caller */
    SK_IO = 3,           /* a file could not be read or written */
    SK_TEMPLATE = 4,     /* template syntax error */
    SK_CONFIG = 5,       /* malformed config.json or settings */
    SK_NOT_FOUND = 6,    /* unknown function, skill or model */
    SK_MODEL = 7,        /* the model server answered with an error */
    SK_TIMEOUT = 8,      /* a network call ran past its timeout */
    SK_SCRIPT = 9,       /* a Lua script or native function failed */
    SK_TOO_LARGE = 10,   /* a ceiling was hit (body, line, depth, size) */
    SK_PROTOCOL = 11,    /* a reply of the wrong shape (invalid JSON, ...) */
    SK_NETWORK = 12,     /* connection refused, reset, DNS failure */
    SK_UNCERTAIN = 13,   /* the model was unsure of the intent */
    SK_REJECTED = 14,    /* a review pass rejected the output */
    SK_FILTERED = 15,    /* a content filter blocked the text */
    SK_CANCELLED = 16,   /* the call was cancelled */
    SK_RECURSION = 17,   /* functions nested past the depth limit */
    SK_PLAN = 18,        /* no valid plan: malformed, invalid after repair,
                            or the model found none possible */
    SK_LIMIT = 19,       /* an agent ran out of steps, tokens or time,
                            or a model called tools past its rounds */
    SK_QUERY = 20,       /* a query failed, or was refused as unsafe */
    SK_DATA = 21,        /* malformed input data (CSV, JSON lines) */
    SK_DENIED = 22,      /* a call a model chose reached past what the user
                            allowed for the run (the trust boundary) */
    SK_TRUNCATED = 23    /* the reply was cut by the token limit */
} sk_status;

#define SK_STATUS_MAX SK_TRUNCATED /* the highest code, for loops over them */

typedef struct sk_kernel sk_kernel;
typedef struct sk_vars sk_vars;
typedef struct sk_template sk_template;
typedef struct sk_call sk_call;
typedef struct sk_plan sk_plan;

/* ---- library ----------------------------------------------------------- */

/* "0.1.0".  Static string. */
SK_API const char *sk_version(void);

/* A fixed English description of a status code.  Static string. */
SK_API const char *sk_strerror(sk_status code);

/* A short machine name for a status ("model", "uncertain", ...), the
 * `kind` field of errors in Lua and in the CLI's JSON.  Static string. */
SK_API const char *sk_status_kind(sk_status code);

/* Frees a string returned by any sk_ function through `char **out`. */
SK_API void sk_free(void *p);

/* ---- variables --------------------------------------------------------- */

/* A set of named text variables.  Names compare case-insensitively, as in
 * Semantic Kernel; `input` is the main one. */
SK_API sk_status sk_vars_new(sk_vars **out);
SK_API void sk_vars_free(sk_vars *v);
/* Copies name and value.  A NULL value removes the variable. */
SK_API sk_status sk_vars_set(sk_vars *v, const char *name, const char *value);
/* Borrowed pointer valid until the variable is next set, or NULL. */
SK_API const char *sk_vars_get(const sk_vars *v, const char *name);
SK_API size_t sk_vars_count(const sk_vars *v);
/* Name and value of the i-th variable (borrowed); SK_USAGE past the end. */
SK_API sk_status sk_vars_at(const sk_vars *v, size_t i, const char **name,
                            const char **value);

/* ---- kernel ------------------------------------------------------------ */

/* A kernel holds the functions, the models, the event loop and the trace.
 * The default model comes from SKEIN_MODEL, then the config file, then
 * OPENAI_API_KEY / OPENAI_BASE_URL; none configured is not an error until a
 * semantic function is invoked. */
SK_API sk_status sk_kernel_new(sk_kernel **out);
SK_API void sk_kernel_free(sk_kernel *k);

/* The message of the kernel's last failure.  Owned by the kernel, valid
 * until its next fallible call.  Never contains an API key. */
SK_API const char *sk_errmsg(const sk_kernel *k);
/* The status of the kernel's last failure (SK_OK after a success). */
SK_API sk_status sk_errcode(const sk_kernel *k);
/* Describes the last failure as a JSON object (kind, message, function,
 * chain, http_status when known).  Caller frees with sk_free. */
SK_API sk_status sk_error_json(const sk_kernel *k, char **out);

/* Sets the default model: "openai:MODEL", "openai:MODEL@http://host/v1",
 * "scripted:FILE.json", or the name of one (sk_kernel_set_alias).  An
 * unknown name is SK_USAGE, with the known ones in sk_errmsg.  Borrows
 * spec. */
SK_API sk_status sk_kernel_set_model(sk_kernel *k, const char *spec);
/* Names a model for a service id, so that a function whose config.json
 * asks for that service (default_services, execution_settings keys) runs
 * on it.  Borrows both strings. */
SK_API sk_status sk_kernel_set_service(sk_kernel *k, const char *id,
                                       const char *spec);
/* Names a model: "fast" for "openai:gpt-4o-mini", as the config file's
 * "aliases" do.  Wherever a model is taken (sk_kernel_set_model, the
 * CLI's --model, SKEIN_MODEL, "model" in the config file or in a
 * function's config.json, a policy's "models"), a name without ':' is an
 * alias or a service id, and stands for its spec.  A name may not hold
 * ':'.  Borrows both strings. */
SK_API sk_status sk_kernel_set_alias(sk_kernel *k, const char *name,
                                     const char *spec);
/* The default model spec (an alias resolved), or NULL when none is
 * configured.  Borrowed. */
SK_API const char *sk_kernel_model(const sk_kernel *k);

/* The names the kernel knows for models, aliases and service ids, in the
 * order they were set.  Strings borrowed from the kernel until the name
 * is set again or the kernel freed. */
typedef struct sk_model_name {
    const char *name;
    const char *spec;  /* KIND:MODEL */
    int alias;         /* 1: an alias (sk_kernel_set_alias, "aliases"),
                          0: a service id (sk_kernel_set_service,
                          "services") */
} sk_model_name;
SK_API size_t sk_kernel_model_name_count(const sk_kernel *k);
/* SK_USAGE past the end. */
SK_API sk_status sk_kernel_model_name_at(const sk_kernel *k, size_t i,
                                         sk_model_name *out);
/* The connector kinds the kernel can open, by the prefix of the spec they
 * answer to: "openai", "ollama", ...; a name ending in '+' is a family
 * whose flavor follows ("openai+" for "openai+llamacpp:...").  Static
 * strings; NULL past the end. */
SK_API size_t sk_kernel_connector_kind_count(const sk_kernel *k);
SK_API const char *sk_kernel_connector_kind_at(const sk_kernel *k, size_t i);

/* Kernel options, by name, as text:
 *   "timeout_ms"          total time per model request (default 120000;
 *                         SKEIN_TIMEOUT sets it in seconds)
 *   "idle_timeout_ms"     the longest a reply may go silent once it has
 *                         begun, or a streamed one from the start (default
 *                         30000; 0: no limit; SKEIN_IDLE_TIMEOUT in seconds)
 *   "connect_timeout_ms"  (default 10000)
 *   "retries"             retries on 429/5xx/transport errors (default 3)
 *   "retry_base_ms"       first backoff (default 500)
 *   "max_response_bytes"  ceiling on a reply body (default 8 MiB)
 *   "max_depth"           nesting limit for function calls (default 32)
 *   "max_inflight"        model calls in flight at once (default 256)
 *   "quiet"               "1" silences notices on stderr
 *   "db"                  the session database file for DataFrames
 *                         (default: in memory); set before first use
 *   "allow_os"            "1" lets functions run for a model reach the
 *                         operating system from Lua (os.execute, io.open...)
 *   "sql_timeout_ms"      time one statement holding generated SQL may
 *                         run (default 30000; 0 no limit)
 *   "sql_max_rows"        rows it may return (default 1000000; 0 no limit)
 *   "sql_max_bytes"       bytes of result it may return (default 64 MiB)
 *   "cache"               "0" reads and writes no cache for this kernel
 *                         (the CLI's --no-cache); default "1"
 *   "sql_concurrency"     ai()/skein() calls of one statement in flight
 *                         at once (default 16)
 *   "slots"               a llama.cpp server's slot count (0 to 1024;
 *                         default 0, off): each openai+llamacpp request
 *                         carries id_slot and cache_prompt, sent to the
 *                         slot whose last prompt shares its prefix, else
 *                         the least loaded (README: llama.cpp's slots)
 *   "allow_dangerously_set_content"  "1" inserts every value into chat
 *                         markup as written (Semantic Kernel's factory-wide
 *                         switch); by default values are encoded
 *   "journal"             a SQLite file that records every model exchange
 *                         as it completes, by exact request and occurrence;
 *                         a later kernel with the same journal is served
 *                         from it (the CLI's --journal).  Once per kernel;
 *                         SK_IO when the file cannot be a journal
 *   "history"             the call history (see sk_kernel_history): "off"
 *                         (the default) or ""; "auto", the user's history
 *                         ($SKEIN_HISTORY, else $XDG_DATA_HOME/skein/
 *                         history.db, else ~/.local/share/skein/history.db)
 *                         unless SKEIN_HISTORY=off or sk_kernel_history_switch
 *                         turned it off (what the CLI sets); "always", the
 *                         user's history even then (the CLI's --log); or a
 *                         file.  Opened at the first call it records
 *   "history_max_bytes"   the history file's bound: past it the oldest
 *                         calls go (default 512 MiB; at least 65536)
 *   "conversation"        the conversation the calls that follow belong to,
 *                         in the history (1 to 64 letters, digits, '-',
 *                         '_'); "" starts a new one.  A kernel starts one
 *                         of its own, sortable by time (sk_kernel_conversation)
 *   "now"                 fixes the clock the time functions read: Unix
 *                         seconds or ISO 8601 with a zone; "" the system
 *                         clock (SKEIN_NOW)
 *   "memory"              the text memory's SQLite file; "off" keeps it in
 *                         this process only; "" the default (SKEIN_MEMORY,
 *                         else the user's data folder)
 *   "embeddings"          the embeddings model the memory ranks by, e.g.
 *                         "openai:text-embedding-3-small"; "" none (BM25)
 * Borrows both strings. */
SK_API sk_status sk_kernel_set_option(sk_kernel *k, const char *name,
                                      const char *value);

/* Appends one JSON line per model call to `path` (NULL turns tracing off).
 * SKEIN_TRACE sets this at sk_kernel_new. */
SK_API sk_status sk_kernel_set_trace(sk_kernel *k, const char *path);

/* ---- skills ------------------------------------------------------------ */

/* Loads every skill found in `dir`: each subfolder is a skill, holding
 * Semantic Kernel function folders (<Fn>/skprompt.txt + config.json),
 * Semantic Kernel YAML prompt functions (*.yaml, *.yml, named by their
 * `name`, else by the file) and/or a native Lua skill.lua.  Later loads
 * override earlier ones by name.
 *
 * One bad plugin fails only itself: a function or skill whose files are
 * malformed is skipped, with a notice on stderr (unless quiet) and an
 * entry in the kernel's list of skill problems (sk_kernel_skill_problem),
 * and everything else loads.  So this returns SK_OK unless `dir` itself
 * cannot be read (SK_IO) or memory runs out (SK_NOMEM). */
SK_API sk_status sk_kernel_load_skills(sk_kernel *k, const char *dir);
/* Loads one skill folder; the skill is named after the folder.  Its bad
 * functions are skipped and listed as problems as above, and SK_OK is
 * returned when anything loaded.  When nothing did, the status and
 * message are the first problem's, or SK_NOT_FOUND when the folder holds
 * no function at all. */
SK_API sk_status sk_kernel_load_skill(sk_kernel *k, const char *skill_dir);
/* Loads the search path: the built-in skills, ./skills, then each entry of
 * SKEIN_SKILLS_PATH (colon-separated).  Missing folders are skipped; one
 * that cannot be read is a skill problem, not a failure. */
SK_API sk_status sk_kernel_load_default_skills(sk_kernel *k);

/* Something that failed to load and was skipped.  Strings are borrowed
 * from the kernel, valid until sk_kernel_clear_skill_problems or
 * sk_kernel_free. */
typedef struct sk_skill_problem {
    const char *path;    /* the file (or folder) at fault */
    int line, col;       /* 1-based position in it; 0 when not known (a
                            Lua error gives a line and no column) */
    sk_status code;      /* SK_CONFIG, SK_TEMPLATE, SK_SCRIPT, SK_IO, ... */
    const char *message; /* "path:line:col: what is wrong", as noticed */
    const char *what;    /* what was skipped: "Skill.Fn", or "Skill" when
                            a whole skill was (its skill.lua, its folder) */
} sk_skill_problem;
/* How many problems the kernel's skill loads have met, in the order met
 * (at most the first 1000 are kept; later ones are still noticed). */
SK_API size_t sk_kernel_skill_problem_count(const sk_kernel *k);
/* The i-th problem; SK_USAGE past the end. */
SK_API sk_status sk_kernel_skill_problem(const sk_kernel *k, size_t i,
                                         sk_skill_problem *out);
/* Forgets the problems met so far. */
SK_API void sk_kernel_clear_skill_problems(sk_kernel *k);

/* Adds a semantic function from template text.  config_json may be NULL.
 * Borrows every argument. */
SK_API sk_status sk_kernel_add_semantic(sk_kernel *k, const char *skill,
                                        const char *name,
                                        const char *template_text,
                                        const char *config_json);

/* A native C function: reads args (borrowed), sets *out to a string
 * allocated with malloc (the kernel frees it), returns SK_OK; or returns a
 * status after sk_set_error(). */
typedef sk_status (*sk_native_fn)(sk_kernel *k, const sk_vars *args,
                                  char **out, void *ud);

/* Parameter description of a function, for manuals and planners. */
typedef struct sk_param_info {
    const char *name;
    const char *description;   /* may be NULL */
    const char *default_value; /* NULL when there is none */
    int required;
} sk_param_info;

/* Adds a native C function.  params may be NULL (n_params 0).  Borrows the
 * strings; ud is passed back to fn and never freed by the kernel. */
SK_API sk_status sk_kernel_add_native(sk_kernel *k, const char *skill,
                                      const char *name,
                                      const char *description,
                                      const sk_param_info *params,
                                      size_t n_params, sk_native_fn fn,
                                      void *ud);

/* Sets the kernel's error from a native function. */
SK_API void sk_set_error(sk_kernel *k, sk_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Information about a registered function.  All pointers borrowed from the
 * kernel, valid until the function is replaced or the kernel freed. */
typedef struct sk_function_info {
    const char *skill;
    const char *name;
    const char *full_name;   /* "Skill.Name" */
    const char *description; /* may be "" */
    const char *kind;        /* "semantic", "native" */
    const char *path;        /* the folder it came from (a YAML prompt:
                                the .yaml file), or NULL */
    const sk_param_info *params;
    size_t n_params;
} sk_function_info;

SK_API size_t sk_kernel_function_count(const sk_kernel *k);
/* Functions sorted by full name; SK_USAGE past the end. */
SK_API sk_status sk_kernel_function_at(const sk_kernel *k, size_t i,
                                       sk_function_info *info);
SK_API sk_status sk_kernel_function_find(const sk_kernel *k,
                                         const char *full_name,
                                         sk_function_info *info);

/* ---- templates --------------------------------------------------------- */

/* Parses template text once.  `origin` names it in errors ("file.txt");
 * syntax errors read "origin:line:col: message".  Caller frees with
 * sk_template_free. */
SK_API sk_status sk_template_parse(sk_kernel *k, const char *text, size_t len,
                                   const char *origin, sk_template **out);
SK_API void sk_template_free(sk_template *t);

#define SK_RENDER_NO_CALLS 1 /* leave function blocks as written */

/* Renders a parsed template with vars, running its function blocks through
 * the kernel (a nested invoke each).  Caller frees *out with sk_free. */
SK_API sk_status sk_render(sk_kernel *k, const sk_template *t,
                           const sk_vars *vars, int flags, char **out);

/* Renders the prompt of semantic function `name` as sk_invoke renders it
 * before sending: the function's parameter defaults (config.json or YAML
 * input variables) fill what vars (borrowed; may be NULL) leaves unset,
 * its function blocks run (SK_RENDER_NO_CALLS leaves them as written),
 * and a chat prompt's inserted values are encoded as the call encodes
 * them.  No model is called for the function itself.  SK_NOT_FOUND for
 * an unknown function, SK_USAGE for a native one.  Caller frees *out
 * with sk_free. */
SK_API sk_status sk_render_function(sk_kernel *k, const char *name,
                                    const sk_vars *vars, int flags,
                                    char **out);

/* ---- invoking ---------------------------------------------------------- */

/* Receives streamed text as the model produces it.  `text` is not
 * NUL-terminated.  Borrowed for the call only. */
typedef void (*sk_stream_fn)(void *ud, const char *text, size_t len);

typedef struct sk_invoke_opts {
    const char *model;     /* overrides the function's model, or NULL */
    sk_stream_fn stream;   /* streams the top-level model reply, or NULL */
    void *stream_ud;
    const char *policy;    /* JSON overlaying the function's policy for
                              this call ("uncertainty", "models",
                              "fallbacks", "review", "filters", "redact"),
                              or NULL */
    /* sk_invoke only: called about every 100 ms while the call runs, with
     * the time since it started, so a terminal can show that it is busy
     * (a reply that a check may still replace does not stream) */
    void (*tick)(void *ud, long long elapsed_ms);
    void *tick_ud;
    /* Non-zero: a dry run.  The call goes through every stage up to the
     * model (rendering, chat parsing, input filters, redaction, the
     * cache lookup) and stops there: no model request goes out, and the
     * result is the request as it would be sent, a JSON object:
     *   {"function", "model", "models": the chain (a cascade, fallbacks),
     *    "messages": [{"role", "content"}] as sent, "settings": {...},
     *    "stream", "samples", "redacted": values replaced, "cache": "hit" |
     *    "miss" | "off", "notes": [...], "request": {"method", "url",
     *    "headers": [...], "key", "problem", "body": the body as sent}}
     * with every API key and URL secret masked ("request" is null for an
     * in-process model).  Semantic functions the prompt calls are not run
     * either: "[dry run: the answer of Skill.Fn]" marks where their
     * answers would go.  SK_USAGE for a native function. */
    int dry_run;
    /* The functions the model's tool calls may reach in this call (a
     * function whose settings carry Semantic Kernel's
     * function_choice_behavior offers the model tools): n_functions names
     * ("Skill.Fn"), each loaded, or NULL for what the behaviour offers.
     * It narrows the behaviour's own list, never widens it, and holds for
     * every call made within this one. */
    const char *const *functions;
    size_t n_functions;
} sk_invoke_opts;

/* Invokes "Skill.Fn" with vars (borrowed; may be NULL) and waits, running
 * the event loop.  Caller frees *out with sk_free. */
SK_API sk_status sk_invoke(sk_kernel *k, const char *name,
                           const sk_vars *vars, const sk_invoke_opts *opts,
                           char **out);

/* Starts an invoke and returns at once; the call progresses whenever the
 * kernel's loop runs (sk_call_wait, sk_kernel_run, sk_invoke).  Caller
 * frees the call with sk_call_free (which cancels it if unfinished). */
SK_API sk_status sk_invoke_async(sk_kernel *k, const char *name,
                                 const sk_vars *vars,
                                 const sk_invoke_opts *opts, sk_call **out);
/* Runs the loop until the call finishes; returns its status. */
SK_API sk_status sk_call_wait(sk_call *c);
/* Runs the loop until one of the calls in flight finishes, for at most
 * timeout_ms (0: only what is ready; -1: until every call in flight has
 * finished).  Returns the number of calls still in flight.  A caller
 * keeping N calls in flight starts the next one as soon as this returns,
 * so a finished call never waits out the rest of the timeout. */
SK_API size_t sk_kernel_run(sk_kernel *k, int timeout_ms);
SK_API int sk_call_done(const sk_call *c);
SK_API sk_status sk_call_status(const sk_call *c);
/* The result text (borrowed from the call), or NULL unless it succeeded. */
SK_API const char *sk_call_result(const sk_call *c);
/* The error message (borrowed from the call), or NULL. */
SK_API const char *sk_call_errmsg(const sk_call *c);
/* The error as a JSON object, as sk_error_json.  Caller frees. */
SK_API sk_status sk_call_error_json(const sk_call *c, char **out);
/* What the uncertainty checks measured on a finished semantic call, as a
 * JSON object (borrowed from the call), or NULL (a native function, or a
 * call that failed before its reply was checked):
 *   {"model": "...", "answer": "...", "raised": "asks_back" | null,
 *    "signals": {"asks_back": false, "logprob": 0.93, "agreement": 1, ...}}
 * Every signal the function's policy enables is scored, whether or not
 * an earlier one raised: `skein eval` and `skein calibrate` read this. */
SK_API const char *sk_call_signals(const sk_call *c);

/* Fits the threshold on a signal's scores (in [0,1]; a negative score is
 * "none") from labelled outcomes, so that, with probability 1 - delta
 * over the examples, an answer scoring at or above it is wrong with
 * probability at most alpha (exact binomial tests down a fixed grid of
 * thresholds, highest first, stopping at the first that fails: Learn
 * then Test's fixed-sequence testing).  SK_OK with *threshold; SK_DATA
 * when none can be certified, with *why (static): too few examples (see
 * *min_n, the least that could work), or too many errors. */
SK_API sk_status sk_calibrate(const double *score, const int *correct, size_t n,
                              double alpha, double delta, double *threshold,
                              size_t *min_n, const char **why);
SK_API void sk_call_free(sk_call *c);

/* Token usage summed over every model call the kernel has made. */
typedef struct sk_usage {
    long calls;             /* model requests */
    long prompt_tokens;
    long completion_tokens;
    long retries;
    long failures;
    long uncertain;         /* replies judged uncertain */
    long escalations;       /* times a cascade moved to the next model */
    long reviews;           /* review passes run */
    long revisions;         /* outputs revised after a failed review */
    long rejected;          /* functions that still failed review */
    long filtered;          /* texts blocked by a content filter */
    long redacted;          /* values replaced before leaving the machine */
    long cache_hits;        /* model calls answered by the response cache */
    long cache_misses;      /* cacheable calls that went to the model */
    long long wall_ms;      /* since the kernel was made */
    long journal_hits;      /* model calls answered by the run's journal */
    long fallbacks;         /* times a call moved to the next model after
                               an error (policy "fallbacks") */
} sk_usage;
SK_API void sk_kernel_usage(const sk_kernel *k, sk_usage *out);

/* Usage per model spec.  The strings are borrowed from the kernel. */
typedef struct sk_model_usage {
    const char *model;
    long calls;             /* requests sent (retries not counted) */
    long cache_hits;
    long prompt_tokens;
    long completion_tokens;
    long failures;
    long long busy_ms;      /* summed request latency */
    long answered;          /* calls whose final answer this model gave
                             * (in a cascade: not escalated past it) */
} sk_model_usage;
SK_API size_t sk_kernel_model_usage_count(const sk_kernel *k);
SK_API sk_status sk_kernel_model_usage_at(const sk_kernel *k, size_t i,
                                          sk_model_usage *out);

/* Rate limits for an endpoint: a model spec, or a kind ("openai") for
 * every spec of that kind.  rpm: requests per minute, tpm: tokens per
 * minute (prompt estimate plus max_tokens, corrected by the reply's
 * usage), max_inflight: requests at once; 0 means no limit.  A request
 * past a limit waits; it is never dropped. */
SK_API sk_status sk_kernel_set_limits(sk_kernel *k, const char *endpoint,
                                      long rpm, long tpm, int max_inflight);

/* The response cache (shared by the kernels of one user, in SQLite):
 * *path where it is (borrowed from the kernel; NULL when it is off:
 * SKEIN_CACHE=off, or no place for it), how many entries it holds and
 * their size in bytes. */
SK_API sk_status sk_kernel_cache_info(sk_kernel *k, const char **path,
                                      long long *entries, long long *bytes);
/* Removes every entry from the response cache. */
SK_API sk_status sk_kernel_cache_clear(sk_kernel *k);

/* ---- the call history --------------------------------------------------- */

/* With the option "history" on, every model call the kernel makes (a
 * cache or journal hit included, a failure too) is kept in a SQLite file,
 * searchable with FTS5: the prompt and system prompt as sent (values that
 * redaction replaced stay placeholders), the reply as received, the
 * model, tokens, when and how long, the function and the conversation.
 * Secrets are scrubbed from every field first: the values of environment
 * variables named like keys (*_API_KEY, *TOKEN*, *SECRET*, *PASSWORD*),
 * secret values of the config file, credentials in model URLs, an
 * Authorization line, and API keys, tokens and passwords the redaction
 * rules recognise.  A history never fails a call: when it cannot be
 * written, a notice says so once. */

typedef struct sk_history_entry {
    long long id;               /* increasing with time */
    const char *conversation;
    const char *time;           /* ISO 8601 UTC, when the call started */
    const char *function;       /* "Skill.Fn", or NULL */
    const char *model;          /* the spec, credentials scrubbed */
    const char *system;         /* the system message, or NULL */
    const char *prompt;         /* the last message sent */
    const char *reply;          /* NULL when the call failed */
    const char *error;          /* the error's message, or NULL */
    const char *source;         /* "model", "cache", "journal" */
    long prompt_tokens, completion_tokens; /* -1 when not known */
    long long duration_ms;
} sk_history_entry;

typedef struct sk_history_query {
    const char *search;       /* words that must all appear in the prompt,
                                 system prompt or reply (each taken as a
                                 word, never as query syntax); the best
                                 matches come first.  NULL: every call */
    const char *conversation; /* only this conversation, or NULL */
    const char *function;     /* only calls of this function, or NULL */
    const char *model;        /* only calls to this model spec, or NULL */
    long limit;               /* the newest (or best) this many; 0: all */
    int oldest_first;         /* those, oldest first (not with search) */
} sk_history_query;

/* Receives one entry, borrowed for the call; non-zero stops the query. */
typedef int (*sk_history_fn)(void *ud, const sk_history_entry *e);

/* Reads the kernel's history (q may be NULL: every call, newest first).
 * A history not written yet has no entries.  SK_USAGE when the option
 * history is off or the search has no word; SK_IO when the file is not a
 * history. */
SK_API sk_status sk_kernel_history(sk_kernel *k, const sk_history_query *q,
                                   sk_history_fn fn, void *ud);

typedef struct sk_history_info {
    const char *path;         /* the file (also when it records nothing),
                                 or NULL when it has no place */
    const char *off;          /* why the user's history records nothing
                                 ("SKEIN_HISTORY=off", "switched off
                                 (skein logs off)", ...), or NULL */
    long long calls, conversations, bytes; /* 0 before the first call */
} sk_history_info;
/* Where the history is and what it holds.  Strings borrowed from the
 * kernel until its next call. */
SK_API sk_status sk_kernel_history_info(sk_kernel *k, sk_history_info *out);
/* Switches the user's history off (on 0) or back on, for every kernel
 * from now on, as `llm logs off` does: a file beside it
 * (history.db.off) says it is off.  SKEIN_HISTORY=off still wins. */
SK_API sk_status sk_kernel_history_switch(sk_kernel *k, int on);
/* The conversation the kernel's next calls belong to (option
 * "conversation", else one the kernel made).  Borrowed. */
SK_API const char *sk_kernel_conversation(sk_kernel *k);

/* ---- uncertainty, review, filters -------------------------------------- */

/* A string field of the last error's detail: for SK_UNCERTAIN "reason",
 * "question", "output"; for SK_REJECTED "critique"; for SK_FILTERED
 * "rule".  Borrowed from the kernel until its next fallible call; NULL
 * when absent. */
SK_API const char *sk_error_get(sk_kernel *k, const char *field);

/* Raises uncertainty from a native function: sets the kernel error to
 * SK_UNCERTAIN with a reason, a clarifying question (may be NULL) and a
 * confidence in [0,1] (negative: unknown), and returns SK_UNCERTAIN. */
SK_API sk_status sk_raise_uncertain(sk_kernel *k, const char *reason,
                                    const char *question, double confidence);

/* Reviews text in a fresh context with `reviewer` (NULL: Review.Check),
 * told the task (may be NULL) and the input it answered (may be NULL).
 * *passed is 1 or 0; on a fail *critique holds the reasons (caller frees
 * with sk_free; NULL on a pass). */
SK_API sk_status sk_review(sk_kernel *k, const char *text, const char *task,
                           const char *input, const char *reviewer,
                           int *passed, char **critique);

/* Sets the kernel-wide policy, the base every function's own policy
 * overlays (same JSON shape as in config.json; NULL resets it). */
SK_API sk_status sk_kernel_set_policy(sk_kernel *k, const char *json);

/* Appends an event to the trace: a JSON object's members, e.g.
 * "\"type\":\"clarified\",\"function\":\"W.F\"".  Does nothing
 * without a trace. */
SK_API void sk_trace_event(sk_kernel *k, const char *json_members);

/* ---- plans ------------------------------------------------------------- */

/* A plan is text a person can read and edit: numbered calls whose
 * arguments refer to earlier steps ($N) or variables ($name):
 *
 *   # goal: summarize the report in French
 *   1. Writer.Summarize(input=$input)
 *   2. Writer.Translate(input=$1, language="French")
 *
 * The README documents the grammar.  A plan's result is the output of its
 * last step. */

typedef struct sk_plan_opts {
    size_t max_functions; /* functions in the planner's manual (0: 24) */
    int repairs;          /* corrected plans to ask for (-1: default 2) */
    const char *const *only; /* the functions it may use (the manual lists
                                only these, and the plan is held to them
                                when checked and run), or NULL: all */
    size_t n_only;
} sk_plan_opts;

/* Asks the model (through Planner.Create) for a plan for goal, validates
 * it, and asks for corrections up to opts->repairs times.  SK_PLAN when
 * no valid plan came back (sk_errmsg lists the problems with their
 * lines) or the model said none is possible.  Caller frees with
 * sk_plan_free. */
SK_API sk_status sk_plan_create(sk_kernel *k, const char *goal,
                                const sk_plan_opts *opts, sk_plan **out);
/* Parses and validates plan text (a file a person wrote or edited).
 * origin names it in errors ("plan.txt:3:5: unknown function X"). */
SK_API sk_status sk_plan_parse(sk_kernel *k, const char *text,
                               const char *origin, sk_plan **out);
/* Limits the functions the plan's steps may call to names (n of them;
 * NULL names: every function but the planner's and agent's own, the
 * default).  A plan is model output: its steps are held to this when it
 * is checked and when it runs, and a step outside it is a problem named
 * with its line (SK_PLAN), as an unknown function is.  Borrows names. */
SK_API sk_status sk_plan_allow(sk_kernel *k, sk_plan *p,
                               const char *const *names, size_t n);
SK_API void sk_plan_free(sk_plan *p);
/* The plan as text, or as a Graphviz digraph.  Caller frees. */
SK_API char *sk_plan_text(const sk_plan *p);
SK_API char *sk_plan_dot(const sk_plan *p);

typedef struct sk_plan_step_info {
    int number;           /* the step's number */
    int line;             /* its line in the plan text */
    const char *function; /* "Skill.Fn" */
    const char *text;     /* the call as written */
    const int *deps;      /* step numbers it uses */
    size_t n_deps;
    const char *state;    /* "pending", "running", "done", "failed",
                             "skipped" */
    const char *output;   /* when done, else NULL */
    long long start_ms, end_ms; /* loop clock, 0 when not run */
} sk_plan_step_info;
SK_API size_t sk_plan_step_count(const sk_plan *p);
SK_API sk_status sk_plan_step(const sk_plan *p, size_t i,
                              sk_plan_step_info *info);

/* Runs the plan with vars (borrowed; may be NULL): steps whose inputs are
 * ready run concurrently, at most max_parallel at once (0: 8).  Steps
 * already done are not run again, so after a failure or an uncertain step
 * a second run resumes where the first stopped (give it the clarification
 * in vars).  The error of a failed step names its number and line; the
 * steps that depend on it are skipped.  *out is the last step's output;
 * caller frees with sk_free. */
SK_API sk_status sk_plan_run(sk_kernel *k, sk_plan *p, const sk_vars *vars,
                             int max_parallel, char **out);

/* ---- agents ------------------------------------------------------------ */

typedef struct sk_agent_opts {
    const char *goal;
    const char *const *functions; /* the tools it may use, or NULL: all */
    size_t n_functions;
    int max_steps;        /* 0: 10 */
    long max_tokens;      /* model tokens across the run, 0: no limit */
    long max_ms;          /* wall time, 0: no limit */
    sk_stream_fn on_step; /* each step's transcript text, or NULL */
    void *on_step_ud;
} sk_agent_opts;

/* A step-by-step agent: the model thinks, calls one function, sees its
 * output, and so on until it gives a final answer.  SK_LIMIT when it runs
 * out of steps, tokens or time.  *answer: caller frees with sk_free. */
SK_API sk_status sk_agent_run(sk_kernel *k, const sk_agent_opts *opts,
                              char **answer);

/* ---- text memory -------------------------------------------------------
 * Semantic Kernel's text memory (TextMemoryPlugin's recall and save): texts
 * saved under a key in a collection (NULL: "generic"), found again by a
 * question.  Without an embeddings model (option "embeddings") a recall
 * ranks by BM25 over an FTS5 index; with one, by cosine similarity.  The
 * memory is a SQLite file (option "memory").  Every call runs the kernel's
 * loop until it is done, as sk_invoke does.  Strings are borrowed. */

/* Saves text under key, replacing what the key held.  With an embeddings
 * model the text is embedded first, and nothing is saved if that fails.
 * SK_TOO_LARGE past 1 MiB of text, SK_USAGE for an empty key. */
SK_API sk_status sk_memory_save(sk_kernel *k, const char *collection,
                                const char *key, const char *text);
/* Up to limit (1..100) memories of the collection most relevant to query,
 * none below min_relevance (0..1), best first, as JSON in *json (caller
 * frees with sk_free): [{"collection", "key", "text", "relevance"}, ...]. */
SK_API sk_status sk_memory_recall(sk_kernel *k, const char *collection,
                                  const char *query, int limit,
                                  double min_relevance, char **json);
/* The text saved under key in *text (caller frees with sk_free);
 * SK_NOT_FOUND when there is none. */
SK_API sk_status sk_memory_get(sk_kernel *k, const char *collection,
                               const char *key, char **text);
/* Forgets the memory under key (nothing to forget is not an error). */
SK_API sk_status sk_memory_remove(sk_kernel *k, const char *collection,
                                  const char *key);

/* ---- Lua --------------------------------------------------------------- */

struct lua_State;

/* Makes the `skein` module available in L, bound to k: registers it in
 * package.preload and package.loaded, and runs Lua skills in L.  The
 * kernel must outlive L's use of it.  Returns SK_USAGE if k is already
 * bound to another state. */
SK_API sk_status sk_lua_open(sk_kernel *k, struct lua_State *L);

/* The loadable-module entry point: require("skein") from a stock lua5.4
 * creates a kernel owned by the Lua state. */
SK_API int luaopen_skein(struct lua_State *L);

#ifdef __cplusplus
}
#endif
#endif /* SKEIN_H */
