/*
 * cli.h -- what the files of the `skein` command share beyond the exit
 * codes (eval.h): how a failure is reported (errors.c), the standard
 * streams (errors.c), and the commands that live in files of their own
 * (prompt.c, logs.c, models.c, manual.c, distill.c), each with the
 * options main.c parsed for it.  The command line uses only skein.h of
 * the library.
 */
#ifndef SKEIN_CLI_H
#define SKEIN_CLI_H

#include <stdio.h>

#include "eval.h"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* ---- errors (errors.c) ------------------------------------------------
 * A failure is printed once, in one format: "skein: message" (and a
 * "hint: ..." line) when stderr is a terminal; otherwise, or after
 * cli_errors_json(1) (--json-errors), one JSON object on one line whose
 * "code" is the exit code the command ends with.  Each function returns
 * that exit code. */
void cli_errors_json(int on);
int cli_errors_are_json(void);
/* The exit code for a library status (README "Exit codes"). */
int cli_exit_code(sk_status st);
/* A failure of kind `kind` ("io", "usage", ...) ending the command with
 * exit_code.  hint may be NULL. */
int cli_fail(const char *kind, int exit_code, const char *hint, const char *fmt, ...)
    CLI_PRINTF(4, 5);
/* The same for a library status: its kind and exit code. */
int cli_error(sk_status st, const char *hint, const char *fmt, ...) CLI_PRINTF(3, 4);
/* A usage error (exit 2); the text form adds "Try 'skein --help'.". */
int cli_usage(const char *fmt, ...) CLI_PRINTF(1, 2);
/* The kernel's last error (st): its message, or its JSON with every field
 * the library gives (function, chain, question, ...). */
int cli_report(sk_kernel *k, sk_status st, const char *hint);
/* An error already described as JSON by the library (sk_error_json,
 * sk_call_error_json, or an object built by the caller): printed as its
 * "message" on a terminal, else as JSON with code set to exit_code.
 * Borrows json; text (may be NULL: the message) is the terminal form. */
int cli_report_json(const char *json, int exit_code, const char *text, const char *hint);
/* Rewrites the "code" of an error object given as JSON to exit_code.
 * Caller frees with free(); NULL when json is not an object. */
char *cli_error_with_exit_code(const char *json, int exit_code);

/* ---- the standard streams (errors.c) ----------------------------------
 * cli_stdio_init, first thing in main: a closed 0, 1 or 2 is opened on
 * /dev/null so that no file the process opens later (curl's socketpair, a
 * database) takes its number; a closed stdout is opened read-only, so
 * that writing the output fails and the command says so.
 * cli_stdout_done, last: flushes stdout; a write that failed (a full
 * disk, a closed stdout) is reported once and turns a success into exit
 * 3.  It also runs at exit, for the paths that call exit() themselves
 * (os.exit in a script). */
void cli_stdio_init(void);
int cli_stdout_done(int rc);

/* ---- shared helpers (errors.c) ---------------------------------------- */
#define CLI_INPUT_CEILING ((size_t)64 << 20) /* stdin, templates, plans */
/* Reads all of f up to CLI_INPUT_CEILING.  Caller frees.  NULL with errno
 * set on failure (EFBIG past the ceiling). */
char *cli_read_all(FILE *f, size_t *len);
/* s as a JSON string literal on f. */
void cli_json_str(FILE *f, const char *s);

/* ---- commands in files of their own ----------------------------------- */

/* `skein prompt` and `skein chat` (prompt.c). */
typedef struct prompt_opts {
    const char *text;         /* the prompt argument, or NULL */
    const char *system;       /* -s */
    const char *model;        /* -m as given (set on the kernel already), or NULL */
    int cont;                 /* -c: continue the last conversation */
    const char *conversation; /* --cid ID */
    int stream;               /* -1: when stdout is a terminal */
    int quiet;
    const char *policy;       /* --policy JSON for each call */
} prompt_opts;
int cli_prompt(sk_kernel *k, const prompt_opts *p);
int cli_chat(sk_kernel *k, const prompt_opts *p);

/* `skein logs` (logs.c). */
typedef struct logs_opts {
    const char *action;       /* NULL or "list", "path", "status", "on", "off" */
    long count;               /* -n; -1: the default (3, a conversation whole) */
    const char *search;       /* -q WORDS */
    int last_conversation;    /* -c */
    const char *conversation; /* --cid ID */
    const char *model;        /* -m, resolved to its spec */
    const char *function;     /* --function NAME */
    int json;
    int truncate;             /* -t */
} logs_opts;
int cli_logs(sk_kernel *k, const logs_opts *o);
/* The conversation of the newest call in the history (of function, when
 * given): *out, caller frees, or NULL when there is none.  Returns -1, or
 * an exit code after reporting the error. */
int cli_last_conversation(sk_kernel *k, const char *function, char **out);

/* `skein models` (models.c): the default model, the names for models, the
 * connector kinds; as JSON with json. */
int cli_models(sk_kernel *k, int json);
/* spec with URL credentials masked ("user:***@", "?api-key=***").
 * Caller frees; NULL when memory ran out. */
char *cli_mask_spec(const char *spec);

/* `skein distill` (distill.c): the accepted answers of one function, from
 * traces and cassettes, as training data and held-out splits in out. */
typedef struct distill_opts {
    const char *function;     /* "Skill.Fn" */
    const char *const *from;  /* --from FILE, n_from of them */
    size_t n_from;
    const char *out;          /* --out DIR, made when missing */
    double calibration, test; /* shares held out, each in [0, 1), sum < 1 */
    long seed;
    int json;                 /* the counts as JSON on stdout too */
} distill_opts;
int cli_distill(const distill_opts *o);

/* `skein help --man` and `skein completion bash|zsh` (manual.c), made
 * from the tables main.c keeps: the commands (usage gives each one's help
 * text), the summary (`skein --help`), the options and those of them that
 * take a value.  Each prints to stdout and returns the exit code. */
typedef const char *(*cli_usage_fn)(const char *command);
int cli_manual(const char *const *commands, cli_usage_fn usage, const char *summary);
int cli_completion(const char *shell, const char *const *commands,
                   const char *const *options, const char *const *value_options,
                   const char *summary);

#endif
