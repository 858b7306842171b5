/*
 * eval.h -- what main.c and eval.c share: the exit codes and the options
 * of `skein eval` and `skein calibrate`.
 */
#ifndef SKEIN_CLI_EVAL_H
#define SKEIN_CLI_EVAL_H

#include "skein.h"

/* Exit codes; `skein --help` documents them. */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,
    EXIT_USAGE = 2,
    EXIT_TEMPLATE = 3,
    EXIT_MODEL = 4,
    EXIT_SCRIPT = 5,
    EXIT_NOT_FOUND = 6,
    EXIT_UNCERTAIN = 7,
    EXIT_REJECTED = 8,
    EXIT_PLAN = 9,
    EXIT_LIMIT = 10,
    EXIT_DATA = 11,
    EXIT_TRUNCATED = 12
};

typedef struct eval_opts {
    const char *function; /* "Skill.Fn" */
    const char *data;     /* JSON lines, "-" for stdin */
    const char *check;    /* a function that judges an answer, or NULL */
    const char *policy;   /* --policy overlay for eval, or NULL */
    const char *plot;     /* eval --plot FILE.svg */
    const char *signal;   /* calibrate --signal (default logprob) */
    double alpha, delta;  /* calibrate; 0: 0.1 each */
    double test;          /* calibrate --test FRACTION held out */
    long seed;            /* calibrate --seed for the split */
    long concurrency;     /* examples in flight; 0: 8 */
    int json, quiet, dry_run;
} eval_opts;

int cli_eval(sk_kernel *k, const eval_opts *e);
int cli_calibrate(sk_kernel *k, const eval_opts *e);

#endif
