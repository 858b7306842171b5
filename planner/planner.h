/*
 * planner.h -- plans: the format and its checks (plan.c), the manual and
 * the planner (planner.c), running a plan as a DAG (exec.c), the agent
 * (agent.c).  Above core.
 */
#ifndef SKEIN_PLANNER_H
#define SKEIN_PLANNER_H

#include "core/core.h"

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

#endif /* SKEIN_PLANNER_H */
