/*
 * formats.h -- Semantic Kernel's formats, as pure functions over text:
 * prompt templates (template.c), config.json (config.c) and chat markup
 * (chat.c).  Above base; knows no kernel.
 */
#ifndef SKEIN_FORMATS_H
#define SKEIN_FORMATS_H

#include "base/base.h"

/* A tool call a model made: the server's id for it (one is made up when
 * the server gives none), the tool's name as the model wrote it
 * ("Skill-Fn"), and its arguments as the JSON text the model wrote.
 * index is the server's position for it while a stream assembles it. */
typedef struct sk_tool_call {
    char *id;
    char *name;
    char *arguments;
    int index;
} sk_tool_call;

/* One chat message.  Every string owned; msg_clear frees them.  Only a
 * conversation with tool calls uses the fields after content. */
typedef struct sk_msg {
    char *role;    /* "system", "user", "assistant", "tool", "developer" */
    char *content;
    sk_tool_call *calls;  /* assistant: the tool calls it made */
    size_t n_calls;
    char *call_id;        /* tool: the id of the call this answers */
    char *tool_name;      /* tool: the tool's name as the model wrote it */
    int is_error;         /* tool: the result is an error */
} sk_msg;

/* Frees what m holds and zeroes it; NULL does nothing. */
SK_HIDDEN void msg_clear(sk_msg *m);
/* Frees n tool calls and the array. */
SK_HIDDEN void tool_calls_free(sk_tool_call *c, size_t n);
/* Deep copies of n tool calls into *out (NULL when n is 0).  SK_NOMEM. */
SK_HIDDEN sk_status tool_calls_copy(const sk_tool_call *c, size_t n,
                                    sk_tool_call **out);

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
    int indent;     /* columns before each line after the first in its
                       file (a YAML block), for positions */
};

/* Parses text.  On a syntax error returns SK_TEMPLATE and sets *errmsg to
 * "origin:line:col: message" (caller frees); SK_NOMEM likewise with
 * *errmsg NULL.  Templates longer than 16 MiB are SK_TOO_LARGE. */
SK_HIDDEN sk_status tpl_parse(const char *text, size_t len, const char *origin,
                              sk_template **out, char **errmsg);
/* Where a template sits inside a larger file (a YAML prompt's block):
 * its first byte is at line:col, and each later line starts after
 * `indent` columns of the file.  Positions in errors are the file's. */
typedef struct tpl_pos {
    int line, col, indent;
} tpl_pos;
/* tpl_parse for a template at `at` in its file (NULL: at 1:1). */
SK_HIDDEN sk_status tpl_parse_at(const char *text, size_t len,
                                 const char *origin, const tpl_pos *at,
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

/* ---- chat markup (runtime/formats/chat.c) -------------------------------------- */
struct sk_msg;
/* Appends s encoded for the markup: < > & " ' as entities. */
SK_HIDDEN sk_status chat_encode(sk_buf *b, const char *s);
/* 1 when s holds a <message> tag with a role attribute: chat markup.  A
 * role-less <message> (SK's older XML-style prompts) is text. */
SK_HIDDEN int chat_marked(const char *s);
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

/* Semantic Kernel's function_choice_behavior: whether the model is
 * offered the kernel's functions as tools, and whether its tool calls
 * are run for it. */
typedef enum cfg_choice {
    CFG_CHOICE_UNSET = 0, /* no function calling */
    CFG_CHOICE_AUTO,      /* the model may call the functions */
    CFG_CHOICE_REQUIRED,  /* the model must call one */
    CFG_CHOICE_NONE       /* the functions are shown, not to be called */
} cfg_choice;

typedef struct cfg_tools {
    cfg_choice choice;
    int listed;           /* "functions" was given: only those (none when
                             empty); else every function, then filters */
    char **functions;     /* "Skill.Fn" or a bare "Fn" ('-' read as '.') */
    size_t n_functions;
    /* SK Python's filters */
    char **incl_plugins, **excl_plugins, **incl_functions, **excl_functions;
    size_t n_incl_plugins, n_excl_plugins, n_incl_functions, n_excl_functions;
    int auto_invoke;      /* run the model's tool calls (default 1) */
    int max_rounds;       /* maximum_auto_invoke_attempts; -1: 5 for auto,
                             1 for required */
    int parallel_calls;   /* options.allow_parallel_calls; -1 unset */
    int concurrent;       /* options.allow_concurrent_invocation (default
                             1: one reply's calls run side by side) */
    int strict;           /* options.allow_strict_schema_adherence */
} cfg_tools;

/* One execution-settings entry.  Numbers are NAN / -1 when unset. */
typedef struct cfg_settings {
    char *service_id;   /* "default" for the classic schema's completion */
    char *model_id;     /* NULL when unset */
    int max_tokens;     /* -1 unset */
    double temperature, top_p, presence_penalty, frequency_penalty;
    char **stop;
    size_t n_stop;
    cfg_tools tools;    /* function_choice_behavior */
} cfg_settings;

typedef struct cfg_function {
    int schema;          /* the "schema" number, or 0 */
    char *type;          /* "completion" when unset */
    char *name;          /* 1.x schema "name", or NULL */
    char *template_format; /* "semantic-kernel" (any case) or NULL: the
                            only format skein runs; the others are
                            refused by cfg_parse */
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
/* Where the values of a config made from another file (a YAML prompt)
 * are in that file: each entry gives the line and column of the value
 * written at byte offset `off` of the config text, sorted by offset.  An
 * error at an offset is reported at the last entry at or before it. */
typedef struct cfg_srcpos {
    size_t off;
    int line, col;
} cfg_srcpos;
typedef struct cfg_srcmap {
    const cfg_srcpos *pos;
    size_t n;
} cfg_srcmap;
/* cfg_parse for config text made from another file: errors read
 * "origin:line:col" in that file, through map (NULL: the text's own). */
SK_HIDDEN sk_status cfg_parse_mapped(const char *json, size_t len,
                                     const char *origin, const cfg_srcmap *map,
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
/* j printed unformatted into a string of our own allocator (callers free
 * it like every other string here), and j deleted; NULL when j is NULL or
 * memory ran out. */
SK_HIDDEN char *cfg_json_take(struct cJSON *j);
/* The settings for service id, else "default", else the first; or NULL. */
SK_HIDDEN const cfg_settings *cfg_settings_for(const cfg_function *c,
                                               const char *service_id);

/* ---- YAML prompt functions (runtime/formats/yaml.c) ---------------------
 * Semantic Kernel's YAML prompt format: a mapping with name, description,
 * template, template_format, input_variables, output_variable,
 * execution_settings and allow_dangerously_set_content.  Everything but
 * the template is written out as config.json text, with the position in
 * the YAML of each value written, for cfg_parse_mapped: one reader of
 * settings for both formats, with errors at the YAML's lines. */
typedef struct yml_prompt {
    char *name;           /* "name" when it is a scalar, or NULL */
    int name_line, name_col;
    char *tpl;            /* the template, NUL-terminated */
    size_t tpl_len;
    tpl_pos tpl_at;       /* where it is in the file */
    char *config;         /* every other key as config.json text */
    size_t config_len;
    cfg_srcpos *pos;      /* config offsets -> positions in the file */
    size_t n_pos;
} yml_prompt;
/* Parses a YAML prompt function.  On error returns SK_CONFIG (or
 * SK_TOO_LARGE) and sets *errmsg to "origin:line:col: message" (caller
 * frees; NULL for SK_NOMEM).  *out: caller frees with yml_prompt_free. */
SK_HIDDEN sk_status yml_prompt_parse(const char *text, size_t len,
                                     const char *origin, yml_prompt **out,
                                     char **errmsg);
SK_HIDDEN void yml_prompt_free(yml_prompt *y);

#endif /* SKEIN_FORMATS_H */
