/* fuzz_plan.c -- libFuzzer target for the plan format.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support tests/fuzz/fuzz_plan.c \
 *     planner/plan.c build/libskein.a $(pkg-config --libs libcurl \
 *     libcjson libpcre2-8 lua5.4 sqlite3) -lm -o fuzz_plan
 *   ./fuzz_plan tests/fuzz/corpus/plan
 *
 * plan.c itself needs only util.c and the kernel's function listing,
 * which validation (not exercised here) uses; linking the library is the
 * simplest way to satisfy them.
 *
 * Besides memory errors it checks the round trip: a plan that parses
 * (strictly or leniently) prints as canonical text that parses strictly
 * to an equal plan and prints the same again; errors carry a position;
 * a call that parses alone parses again from its own canonical form. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int plans_equal(const sk_plan *a, const sk_plan *b)
{
    if (a->n != b->n || !same_str(a->goal, b->goal) ||
        !same_str(a->no_plan, b->no_plan))
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const plan_step *x = &a->steps[i], *y = &b->steps[i];
        if (x->number != y->number || strcmp(x->call.function, y->call.function) ||
            x->call.n_args != y->call.n_args || x->n_deps != y->n_deps ||
            !same_str(x->comment, y->comment))
            return 0;
        if (x->n_deps && memcmp(x->deps, y->deps, x->n_deps * sizeof *x->deps))
            return 0;
        for (size_t j = 0; j < x->call.n_args; j++) {
            const plan_arg *p = &x->call.args[j], *q = &y->call.args[j];
            if (p->kind != q->kind || strcmp(p->text, q->text) ||
                !same_str(p->name, q->name) || p->step != q->step)
                return 0;
        }
    }
    return 1;
}

/* 1 when every line of s is within the parser's line ceiling: escaping
 * can lengthen a line, and such a text legitimately fails to parse. */
static int lines_fit(const char *s)
{
    size_t run = 0;
    for (; *s; s++) {
        run = *s == '\n' ? 0 : run + 1;
        if (run > ((size_t)64 << 10))
            return 0;
    }
    return 1;
}

static void round_trip(const sk_plan *p)
{
    char *t = plan_text(p);
    check(t != NULL, "plan_text");
    if (!lines_fit(t)) {
        free(t);
        return;
    }
    sk_plan *q = NULL;
    char *err = NULL;
    sk_status rc = plan_parse(t, strlen(t), "rt", 0, &q, &err);
    if (rc != SK_OK)
        fprintf(stderr, "canonical text:\n%s\nproblems:\n%s\n", t, err ? err : "");
    check(rc == SK_OK, "canonical text parses");
    check(plans_equal(p, q), "canonical text parses to an equal plan");
    char *t2 = plan_text(q);
    check(t2 && strcmp(t, t2) == 0, "canonical text is stable");
    char *dot = plan_dot(q);
    check(dot && strncmp(dot, "digraph plan {", 14) == 0, "plan_dot");

    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK)
        abort();
    sk_vars_set(v, "input", "IN $1 ${input}");
    for (size_t i = 0; i < q->n; i++)
        q->steps[i].output = strdup("out $2");
    for (size_t i = 0; i < q->n; i++)
        for (size_t j = 0; j < q->steps[i].call.n_args; j++) {
            char *val = plan_arg_value(q, &q->steps[i].call.args[j], v);
            check(val != NULL, "plan_arg_value");
            free(val);
        }
    sk_vars_free(v);
    free(dot);
    free(t2);
    free(t);
    free(err);
    plan_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    for (int lenient = 0; lenient < 2; lenient++) {
        sk_plan *p = NULL;
        char *err = NULL;
        sk_status rc = plan_parse(text, size, "fuzz", lenient, &p, &err);
        if (rc != SK_OK) {
            check(p == NULL, "no plan on failure");
            check(rc != SK_PLAN || (err && strncmp(err, "fuzz:", 5) == 0),
                  "problems carry the origin");
            free(err);
            continue;
        }
        check(err == NULL, "no message on success");
        for (size_t i = 0; i < p->n; i++) {
            const plan_step *s = &p->steps[i];
            check(s->src && s->call.function && s->line > 0, "step fields");
            for (size_t d = 1; d < s->n_deps; d++)
                check(s->deps[d - 1] < s->deps[d], "deps sorted and distinct");
        }
        if (!(p->no_plan && p->n))
            round_trip(p);
        plan_free(p);
    }

    /* the whole input as one call */
    plan_call c;
    char *err = NULL;
    int col = 0;
    sk_status rc = plan_parse_call(text, size, &c, &err, &col);
    if (rc == SK_OK) {
        plan_call_free(&c);
    } else {
        check(rc != SK_PLAN || (err && col >= 1 && (size_t)col <= size + 1),
              "call errors carry a column");
        free(err);
    }
    return 0;
}
