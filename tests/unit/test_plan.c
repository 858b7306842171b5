/* test_plan.c -- the plan format: calls, values, plan text, lenient
 * extraction from model replies, validation against a kernel, the
 * canonical text, Graphviz output and argument expansion. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

static sk_plan *parse_ok(const char *text, int lenient)
{
    sk_plan *p = NULL;
    char *err = NULL;
    sk_status rc = plan_parse(text, strlen(text), "p.txt", lenient, &p, &err);
    CHECK_INT(rc, SK_OK);
    if (rc != SK_OK)
        fprintf(stderr, "  unexpected problems:\n%s\n", err ? err : "(none)");
    CHECK(err == NULL);
    free(err);
    return p;
}

/* The problems of text that must not parse (caller frees). */
static char *parse_err(const char *text, int lenient)
{
    sk_plan *p = (sk_plan *)1;
    char *err = NULL;
    sk_status rc = plan_parse(text, strlen(text), "p.txt", lenient, &p, &err);
    CHECK_INT(rc, SK_PLAN);
    CHECK(p == NULL);
    if (rc == SK_OK)
        plan_free(p);
    return err;
}

static int call_ok(const char *s, plan_call *c)
{
    char *err = NULL;
    int col = -1;
    sk_status rc = plan_parse_call(s, strlen(s), c, &err, &col);
    CHECK_INT(rc, SK_OK);
    if (rc != SK_OK)
        fprintf(stderr, "  %s: col %d: %s\n", s, col, err ? err : "");
    free(err);
    return rc == SK_OK;
}

/* The error message of a bad call; its column in *col.  Caller frees. */
static char *call_err(const char *s, int *col)
{
    plan_call c;
    char *err = NULL;
    sk_status rc = plan_parse_call(s, strlen(s), &c, &err, col);
    CHECK_INT(rc, SK_PLAN);
    if (rc == SK_OK)
        plan_call_free(&c);
    return err;
}

static sk_status native(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)args;
    (void)ud;
    *out = strdup("ok");
    return SK_OK;
}

/* A kernel with:
 *   Writer.Summarize(input)            Writer.Translate(input, language*)
 *   Math.Add(a*, b*, c="0")            Util.Echo()   (no parameters)
 *   Sem.Greet (semantic: {{$name}})    A.Same / B.Same (ambiguous "Same")
 * (* required, no default) */
static sk_kernel *make_kernel(void)
{
    sk_kernel *k = NULL;
    if (sk_kernel_new(&k) != SK_OK)
        return NULL;
    sk_param_info sum[] = {{"input", "text", NULL, 0}};
    sk_param_info tr[] = {{"input", "text", NULL, 0},
                          {"language", "target", NULL, 1}};
    sk_param_info add[] = {{"a", NULL, NULL, 1},
                           {"b", NULL, NULL, 1},
                           {"c", NULL, "0", 1}};
    int ok = sk_kernel_add_native(k, "Writer", "Summarize", "", sum, 1, native, NULL) == SK_OK &&
             sk_kernel_add_native(k, "Writer", "Translate", "", tr, 2, native, NULL) == SK_OK &&
             sk_kernel_add_native(k, "Math", "Add", "", add, 3, native, NULL) == SK_OK &&
             sk_kernel_add_native(k, "Util", "Echo", "", NULL, 0, native, NULL) == SK_OK &&
             sk_kernel_add_native(k, "A", "Same", "", NULL, 0, native, NULL) == SK_OK &&
             sk_kernel_add_native(k, "B", "Same", "", NULL, 0, native, NULL) == SK_OK &&
             sk_kernel_add_semantic(k, "Sem", "Greet", "Hello {{$name}}", NULL) == SK_OK;
    CHECK(ok);
    return k;
}

/* The problems validation finds in text (NULL when clean). */
static char *validate_text(sk_kernel *k, const char *text, const sk_vars *vars)
{
    sk_plan *p = parse_ok(text, 0);
    if (!p)
        return NULL;
    /* a plan is the model's: it runs under a grant, here every function */
    sk_err *gerr = NULL;
    CHECK(grant_new(k, "this plan", NULL, 0, &p->grant, &gerr) == SK_OK);
    err_free(gerr);
    char *problems = NULL;
    sk_status rc = plan_validate(k, p, vars, &problems);
    CHECK(rc == SK_OK ? problems == NULL : (rc == SK_PLAN && problems != NULL));
    plan_free(p);
    return problems;
}

static size_t count_lines(const char *s)
{
    size_t n = s && *s ? 1 : 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Two plans are equal when their steps, arguments, comments, goal and
 * no-plan reason are. */
static int plans_equal(const sk_plan *a, const sk_plan *b)
{
    if (a->n != b->n)
        return 0;
    if (!!a->goal != !!b->goal || (a->goal && strcmp(a->goal, b->goal)))
        return 0;
    if (!!a->no_plan != !!b->no_plan || (a->no_plan && strcmp(a->no_plan, b->no_plan)))
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const plan_step *x = &a->steps[i], *y = &b->steps[i];
        if (x->number != y->number || strcmp(x->call.function, y->call.function) ||
            x->call.n_args != y->call.n_args || x->n_deps != y->n_deps)
            return 0;
        if (!!x->comment != !!y->comment || (x->comment && strcmp(x->comment, y->comment)))
            return 0;
        for (size_t d = 0; d < x->n_deps; d++)
            if (x->deps[d] != y->deps[d])
                return 0;
        for (size_t j = 0; j < x->call.n_args; j++) {
            const plan_arg *p = &x->call.args[j], *q = &y->call.args[j];
            if (p->kind != q->kind || strcmp(p->text, q->text) ||
                !!p->name != !!q->name || (p->name && strcmp(p->name, q->name)) ||
                (p->kind == PA_STEP && p->step != q->step))
                return 0;
        }
    }
    return 1;
}

/* ---- calls and values -------------------------------------------------- */

TEST(test_call_basic)
{
    plan_call c;
    if (call_ok("  Writer.Summarize ( $1 , style = \"short\" )  ", &c)) {
        CHECK_STR(c.function, "Writer.Summarize");
        CHECK_INT(c.fn_col, 3);
        CHECK_INT(c.n_args, 2);
        CHECK(c.args[0].name == NULL);
        CHECK_INT(c.args[0].kind, PA_STEP);
        CHECK_INT(c.args[0].step, 1);
        CHECK_INT(c.args[0].col, 22);
        CHECK_STR(c.args[1].name, "style");
        CHECK_INT(c.args[1].kind, PA_TEXT);
        CHECK_STR(c.args[1].text, "short");
        plan_call_free(&c);
    }
    if (call_ok("Echo()", &c)) {
        CHECK_STR(c.function, "Echo");
        CHECK_INT(c.n_args, 0);
        plan_call_free(&c);
    }
    if (call_ok("F( )", &c)) {
        CHECK_INT(c.n_args, 0);
        plan_call_free(&c);
    }
}

TEST(test_value_kinds)
{
    plan_call c;
    if (call_ok("F(a=$12, b=$name, c=${other_1}, d=-3.25, e=true, f=false, "
                "g=null, h=42, i='single')", &c)) {
        CHECK_INT(c.n_args, 9);
        CHECK_INT(c.args[0].kind, PA_STEP);
        CHECK_INT(c.args[0].step, 12);
        CHECK_INT(c.args[1].kind, PA_VAR);
        CHECK_STR(c.args[1].text, "name");
        CHECK_INT(c.args[2].kind, PA_VAR);
        CHECK_STR(c.args[2].text, "other_1");
        CHECK_INT(c.args[3].kind, PA_TEXT);
        CHECK_STR(c.args[3].text, "-3.25");
        CHECK_STR(c.args[4].text, "true");
        CHECK_STR(c.args[5].text, "false");
        CHECK_STR(c.args[6].text, "null");
        CHECK_STR(c.args[7].text, "42");
        CHECK_INT(c.args[8].kind, PA_TEXT);
        CHECK_STR(c.args[8].text, "single");
        plan_call_free(&c);
    }
}

TEST(test_escapes)
{
    plan_call c;
    if (call_ok("F(\"q\\\" b\\\\ s\\/ n\\n t\\t r\\r\")", &c)) {
        CHECK_STR(c.args[0].text, "q\" b\\ s/ n\n t\t r\r");
        plan_call_free(&c);
    }
    /* \u: BMP, two-byte, and a surrogate pair (U+1F600) */
    if (call_ok("F(\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\")", &c)) {
        CHECK_STR(c.args[0].text, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
        plan_call_free(&c);
    }
    /* single quotes: \' and \\; other backslashes stay */
    if (call_ok("F('it\\'s a \\\\ and \\n \"q\"')", &c)) {
        CHECK_STR(c.args[0].text, "it's a \\ and \\n \"q\"");
        plan_call_free(&c);
    }
    int col = 0;
    char *e = call_err("F(\"\\ud83d x\")", &col);
    CHECK_CONTAINS(e, "surrogate");
    CHECK_INT(col, 4);
    free(e);
    e = call_err("F(\"\\ude00\")", &col);
    CHECK_CONTAINS(e, "lone low surrogate");
    free(e);
    e = call_err("F(\"\\u12g4\")", &col);
    CHECK_CONTAINS(e, "four hex digits");
    CHECK_INT(col, 4);
    free(e);
    e = call_err("F(\"a\\qb\")", &col);
    CHECK_CONTAINS(e, "bad escape");
    CHECK_INT(col, 5);
    free(e);
    e = call_err("F(\"\\u0000\")", &col);
    CHECK_CONTAINS(e, "\\u0000");
    free(e);
}

TEST(test_templates)
{
    plan_call c;
    if (call_ok("F(\"Use $1 and $name and ${x} for $$5, $ alone, $07\")", &c)) {
        CHECK_INT(c.args[0].kind, PA_TEMPLATE);
        CHECK_STR(c.args[0].text, "Use $1 and ${name} and ${x} for $$5, $$ alone, $7");
        plan_call_free(&c);
    }
    /* $$ and a lone $ without references: a plain literal */
    if (call_ok("F('costs $$5 or $ 6')", &c)) {
        CHECK_INT(c.args[0].kind, PA_TEXT);
        CHECK_STR(c.args[0].text, "costs $5 or $ 6");
        plan_call_free(&c);
    }
    if (call_ok("F('$2: ${input}')", &c)) {
        CHECK_INT(c.args[0].kind, PA_TEMPLATE);
        CHECK_STR(c.args[0].text, "$2: ${input}");
        plan_call_free(&c);
    }
    int col = 0;
    char *e = call_err("F(\"a ${ b\")", &col);
    CHECK_CONTAINS(e, "'${'");
    CHECK_INT(col, 6);
    free(e);
}

TEST(test_call_errors)
{
    int col = 0;
    char *e = call_err("Writer.Summarize", &col);
    CHECK_STR(e, "expected '(' after the function name");
    CHECK_INT(col, 17);
    free(e);
    e = call_err("Writer.Summarize(input=$1", &col);
    CHECK_CONTAINS(e, "missing ')'");
    CHECK_INT(col, 26);
    free(e);
    e = call_err("F(\"abc)", &col);
    CHECK_STR(e, "unterminated string");
    CHECK_INT(col, 3);
    free(e);
    e = call_err("F('abc)", &col);
    CHECK_STR(e, "unterminated string");
    free(e);
    e = call_err("F($1, $2)", &col);
    CHECK_CONTAINS(e, "positional argument must be the first");
    CHECK_INT(col, 7);
    free(e);
    e = call_err("F(a=1, $2)", &col);
    CHECK_CONTAINS(e, "positional");
    CHECK_INT(col, 8);
    free(e);
    e = call_err("F(a=hello)", &col);
    CHECK_CONTAINS(e, "unquoted text");
    CHECK_INT(col, 5);
    free(e);
    e = call_err("F(a=@)", &col);
    CHECK_CONTAINS(e, "expected a value");
    CHECK_INT(col, 5);
    free(e);
    e = call_err("F(a=$)", &col);
    CHECK_CONTAINS(e, "after '$'");
    CHECK_INT(col, 5);
    free(e);
    e = call_err("F(a=1.)", &col);
    CHECK_CONTAINS(e, "expected a value");
    free(e);
    e = call_err("F(a=1 b=2)", &col);
    CHECK_CONTAINS(e, "expected ',' or ')'");
    CHECK_INT(col, 7);
    free(e);
    e = call_err("F(a=1) extra", &col);
    CHECK_CONTAINS(e, "unexpected text after the call");
    CHECK_INT(col, 8);
    free(e);
    e = call_err("(a=1)", &col);
    CHECK_CONTAINS(e, "function name");
    CHECK_INT(col, 1);
    free(e);
    e = call_err("F(a=1, a=2)", &col);
    CHECK_CONTAINS(e, "given twice");
    free(e);
    e = call_err("F(a=1, )", &col);
    CHECK_STR(e, "expected an argument after ','");
    CHECK_INT(col, 8);
    free(e);
    e = call_err("F(a=$9999999)", &col);
    CHECK_CONTAINS(e, "too large");
    free(e);
    e = call_err("F(\"a\tb\x01\")", &col);
    CHECK_CONTAINS(e, "control character");
    CHECK_INT(col, 7);
    free(e);
}

/* ---- plan text --------------------------------------------------------- */

TEST(test_plan_basic)
{
    const char *text =
        "# goal: Summarize the report in French\n"
        "\n"
        "# a comment line\n"
        "1. Writer.Summarize($input)   # first\n"
        "  2) Writer.Translate(input=$1, language=\"French\")\r\n"
        "3. Util.Echo(\"$1 then $2\")\n";
    sk_plan *p = parse_ok(text, 0);
    if (!p)
        return;
    CHECK_STR(p->origin, "p.txt");
    CHECK_STR(p->goal, "Summarize the report in French");
    CHECK(p->no_plan == NULL);
    CHECK_INT(p->n, 3);
    CHECK_INT(p->steps[0].number, 1);
    CHECK_INT(p->steps[0].line, 4);
    CHECK_STR(p->steps[0].src, "Writer.Summarize($input)");
    CHECK_STR(p->steps[0].comment, "first");
    CHECK_INT(p->steps[0].n_deps, 0);
    CHECK_INT(p->steps[0].state, PS_PENDING);
    CHECK_INT(p->steps[1].number, 2);
    CHECK_INT(p->steps[1].line, 5);
    CHECK(p->steps[1].comment == NULL);
    CHECK_INT(p->steps[1].call.fn_col, 6);
    CHECK_INT(p->steps[1].n_deps, 1);
    CHECK_INT(p->steps[1].deps[0], 1);
    CHECK_STR(p->steps[1].call.args[1].text, "French");
    CHECK_INT(p->steps[2].n_deps, 2);
    CHECK(p->steps[2].n_deps == 2 && p->steps[2].deps[0] == 1 && p->steps[2].deps[1] == 2);
    CHECK(plan_find(p, 2) == &p->steps[1]);
    CHECK(plan_find(p, 9) == NULL);
    plan_free(p);

    /* deps: distinct and sorted, from plain and template arguments */
    p = parse_ok("5. F(a=$3, b=\"$1 $3 $$4\", c=$1, d=$input)\n", 0);
    if (p) {
        CHECK_INT(p->steps[0].n_deps, 2);
        CHECK(p->steps[0].deps[0] == 1 && p->steps[0].deps[1] == 3);
        plan_free(p);
    }
    /* goal is case-insensitive */
    p = parse_ok("#GOAL :  x y \n1. F()\n", 0);
    if (p) {
        CHECK_STR(p->goal, "x y");
        plan_free(p);
    }
}

TEST(test_plan_errors)
{
    /* every problem is collected, each with its line and column */
    const char *text =
        "1. Writer.Summarize($input)\n"
        "Then translate it.\n"
        "2. Writer.Translate\n"
        "3. F(a=\"x)\n"
        "4. F($1, $2)\n"
        "5. F(x=1) trailing\n";
    char *e = parse_err(text, 0);
    CHECK_CONTAINS(e, "p.txt:2:1: line is not a step: expected 'N. Skill.Fn(...)'");
    CHECK_CONTAINS(e, "p.txt:3:20: expected '(' after the function name");
    CHECK_CONTAINS(e, "p.txt:4:8: unterminated string");
    CHECK_CONTAINS(e, "p.txt:5:10: a positional argument");
    CHECK_CONTAINS(e, "p.txt:6:11: unexpected text after the call");
    CHECK_INT(count_lines(e), 5);
    free(e);

    /* a NUL byte is never part of a plan */
    sk_plan *q = NULL;
    e = NULL;
    CHECK_INT(plan_parse("1. F()\n2. G(\"a\0b\")\n", 19, "p.txt", 0, &q, &e), SK_PLAN);
    CHECK_STR(e, "p.txt:2:8: NUL byte in the text");
    CHECK(q == NULL);
    free(e);

    /* errmsg may be NULL */
    sk_plan *p = NULL;
    CHECK_INT(plan_parse("x", 1, "o", 0, &p, NULL), SK_PLAN);
    CHECK(p == NULL);
}

TEST(test_no_plan)
{
    sk_plan *p = parse_ok("NO PLAN: there is no function for email\n", 0);
    if (p) {
        CHECK_STR(p->no_plan, "there is no function for email");
        CHECK_INT(p->n, 0);
        plan_free(p);
    }
    p = parse_ok("  **No plan:** nothing fits\n", 0);
    if (p) {
        CHECK_STR(p->no_plan, "nothing fits");
        plan_free(p);
    }
    p = parse_ok("I looked at the functions.\n**NO PLAN**: none send mail\n", 1);
    if (p) {
        CHECK_STR(p->no_plan, "none send mail");
        plan_free(p);
    }
    char *e = parse_err("1. F()\nNO PLAN: but also\n", 0);
    CHECK_CONTAINS(e, "p.txt:2:1: a plan cannot have both steps and NO PLAN");
    free(e);
}

TEST(test_lenient)
{
    /* a fence: only the first fenced block counts */
    const char *reply =
        "Here is the plan:\n"
        "```text\n"
        "# goal: g\n"
        "1. Writer.Summarize($input)\n"
        "2. Writer.Translate(input=$1, language=\"French\")\n"
        "```\n"
        "1. This list after the fence is ignored\n"
        "```\n3. Other()\n```\n";
    sk_plan *p = parse_ok(reply, 1);
    if (p) {
        CHECK_INT(p->n, 2);
        CHECK_INT(p->steps[0].line, 4);
        CHECK_STR(p->goal, "g");
        plan_free(p);
    }
    /* strict mode rejects the same text */
    char *e = parse_err(reply, 0);
    CHECK_CONTAINS(e, "p.txt:1:1: line is not a step");
    free(e);

    /* prose before and after, markdown bullets, bold and backticks */
    reply = "Sure! I will:\n"
            "1. First summarize, then translate.\n"
            "\n"
            "- 1. `Writer.Summarize($input)`\n"
            "* **2.** **Writer.Translate(input=$1, language='French')**  # tr\n"
            "3. ``Util.Echo($2)``\n"
            "That should do it.\n"
            "4. Enjoy your translation!\n";
    p = parse_ok(reply, 1);
    if (p) {
        CHECK_INT(p->n, 3);
        CHECK_STR(p->steps[0].call.function, "Writer.Summarize");
        CHECK_INT(p->steps[0].call.fn_col, 7);
        CHECK_STR(p->steps[0].src, "Writer.Summarize($input)");
        CHECK_STR(p->steps[1].call.args[1].text, "French");
        CHECK_STR(p->steps[1].comment, "tr");
        CHECK_INT(p->steps[2].number, 3);
        plan_free(p);
    }
    /* prose between steps is still an error */
    e = parse_err("1. F()\nand then\n2. G($1)\n", 1);
    CHECK_STR(e, "p.txt:2:1: line is not a step: expected 'N. Skill.Fn(...)'");
    free(e);
    /* a broken step inside a fence is reported with its real line */
    e = parse_err("Plan:\n```\n1. F(a=)\n```\n", 1);
    CHECK_STR(e, "p.txt:3:8: expected a value ($N, $name, a quoted string or a number)");
    free(e);
    /* prose only: an empty plan (validation says so) */
    p = parse_ok("I cannot help with that.\n", 1);
    if (p) {
        CHECK_INT(p->n, 0);
        plan_free(p);
    }
}

TEST(test_ceilings)
{
    sk_plan *p = NULL;
    char *e = NULL;
    size_t big = ((size_t)1 << 20) + 1;
    char *t = malloc(big + 1);
    memset(t, '\n', big);
    t[big] = '\0';
    CHECK_INT(plan_parse(t, big, "p.txt", 0, &p, &e), SK_TOO_LARGE);
    CHECK(p == NULL);
    CHECK_CONTAINS(e, "larger than 1 MiB");
    free(e);
    free(t);

    /* a line past 64 KiB */
    size_t ll = ((size_t)64 << 10) + 10;
    t = malloc(ll + 32);
    strcpy(t, "1. F(\"");
    memset(t + 6, 'a', ll);
    strcpy(t + 6 + ll, "\")\n");
    e = parse_err(t, 0);
    CHECK_CONTAINS(e, "p.txt:1:1: line longer than 64 KiB");
    free(e);
    free(t);

    /* 500 steps are fine, 501 are not */
    sk_buf b;
    buf_init(&b, 0);
    for (int i = 1; i <= 501; i++)
        buf_printf(&b, "%d. F()\n", i);
    e = parse_err(b.p, 0);
    CHECK_STR(e, "p.txt:501:1: too many steps (at most 500)");
    free(e);
    b.len -= strlen("501. F()\n");
    b.p[b.len] = '\0';
    p = parse_ok(b.p, 0);
    if (p)
        CHECK_INT(p->n, 500);
    plan_free(p);

    /* 64 arguments are fine, 65 are not */
    buf_reset(&b);
    buf_adds(&b, "F(");
    for (int i = 0; i < 65; i++)
        buf_printf(&b, "%sa%d=1", i ? ", " : "", i);
    buf_adds(&b, ")");
    int col = 0;
    e = call_err(b.p, &col);
    CHECK_CONTAINS(e, "too many arguments");
    free(e);
    char *cut = strstr(b.p, ", a64=1");
    strcpy(cut, ")");
    plan_call c;
    if (call_ok(b.p, &c)) {
        CHECK_INT(c.n_args, 64);
        plan_call_free(&c);
    }
    buf_free(&b);

    /* the problem list itself is bounded */
    buf_init(&b, 0);
    for (int i = 0; i < 300; i++)
        buf_adds(&b, "prose\n");
    e = parse_err(b.p, 0);
    CHECK_INT(count_lines(e), 101);
    CHECK_CONTAINS(e, "more than 100 problems");
    free(e);
    buf_free(&b);
}

/* ---- validation -------------------------------------------------------- */

TEST(test_validate_clean)
{
    sk_kernel *k = make_kernel();
    if (!k)
        return;
    char *pr = validate_text(k,
        "1. Writer.Summarize($input)\n"
        "2. Translate(input=$1, language=\"French\")\n"
        "3. Math.Add($1, b=$2)\n"
        "4. Util.Echo(anything=\"goes\", input=$3)\n"
        "5. Sem.Greet(name=$goal)\n", NULL);
    CHECK(pr == NULL);
    free(pr);
    /* the positional argument covers the first required parameter */
    pr = validate_text(k, "1. Math.Add(1, b=2)\n", NULL);
    CHECK(pr == NULL);
    free(pr);
    sk_kernel_free(k);
}

TEST(test_validate_problems)
{
    sk_kernel *k = make_kernel();
    if (!k)
        return;
    char *pr = validate_text(k, "1. Writer.Sumarize($input)\n", NULL);
    CHECK_STR(pr, "p.txt:1:4: unknown function Writer.Sumarize (did you mean Writer.Summarize?)");
    free(pr);
    pr = validate_text(k, "1. Mail.SendEverythingNow()\n", NULL);
    CHECK_STR(pr, "p.txt:1:4: unknown function Mail.SendEverythingNow");
    free(pr);
    pr = validate_text(k, "1. Same()\n", NULL);
    CHECK_CONTAINS(pr, "ambiguous");
    free(pr);

    /* a named argument that is not a parameter; input always allowed */
    pr = validate_text(k, "1. Writer.Summarize(input=$input, style=\"x\")\n", NULL);
    CHECK_STR(pr, "p.txt:1:41: Writer.Summarize has no parameter 'style'");
    free(pr);
    pr = validate_text(k, "1. Math.Add(a=1, b=2, input=\"x\")\n", NULL);
    CHECK(pr == NULL);
    free(pr);

    /* required parameters */
    pr = validate_text(k, "1. Writer.Translate(input=$input)\n", NULL);
    CHECK_STR(pr, "p.txt:1:4: Writer.Translate: required parameter 'language' is missing");
    free(pr);
    pr = validate_text(k, "1. Math.Add(b=2)\n", NULL);
    CHECK_STR(pr, "p.txt:1:4: Math.Add: required parameter 'a' is missing");
    free(pr);
    pr = validate_text(k, "1. Math.Add()\n", NULL);
    CHECK_INT(count_lines(pr), 2); /* a and b; c has a default */
    free(pr);

    /* steps: duplicates, missing references, self references */
    pr = validate_text(k, "1. Util.Echo()\n1. Util.Echo()\n", NULL);
    CHECK_STR(pr, "p.txt:2:1: step 1 is numbered twice (first at line 1)");
    free(pr);
    pr = validate_text(k, "1. Util.Echo()\n2. Util.Echo(x=\"see $7\")\n", NULL);
    CHECK_STR(pr, "p.txt:2:16: step 2 refers to step 7, which does not exist");
    free(pr);
    pr = validate_text(k, "1. Util.Echo($1)\n", NULL);
    CHECK_STR(pr, "p.txt:1:14: step 1 refers to itself");
    free(pr);

    /* the plan's own state */
    pr = validate_text(k, "NO PLAN: nothing sends mail\n", NULL);
    CHECK_STR(pr, "p.txt: the planner found no plan: nothing sends mail");
    free(pr);
    pr = validate_text(k, "# only a comment\n", NULL);
    CHECK_STR(pr, "p.txt: the plan has no steps");
    free(pr);

    /* several problems at once, in order */
    pr = validate_text(k, "1. Nope()\n2. Writer.Translate($9)\n", NULL);
    CHECK_INT(count_lines(pr), 3);
    CHECK_CONTAINS(pr, "p.txt:1:4: unknown function Nope");
    CHECK_CONTAINS(pr, "p.txt:2:21: step 2 refers to step 9");
    CHECK_CONTAINS(pr, "p.txt:2:4: Writer.Translate: required parameter 'language'");
    free(pr);

    /* SK_USAGE without a kernel or plan; problems may be NULL */
    char *dummy = (char *)1;
    CHECK_INT(plan_validate(NULL, NULL, NULL, &dummy), SK_USAGE);
    CHECK(dummy == NULL);
    sk_plan *p = parse_ok("1. Nope()\n", 0);
    if (p) {
        CHECK_INT(plan_validate(k, p, NULL, NULL), SK_PLAN);
        plan_free(p);
    }
    sk_kernel_free(k);
}

TEST(test_validate_vars)
{
    sk_kernel *k = make_kernel();
    sk_vars *v = NULL;
    if (!k || sk_vars_new(&v) != SK_OK)
        return;
    sk_vars_set(v, "city", "Paris");
    const char *text = "1. Util.Echo(a=$city, b=$input, c=$goal, d=$missing, "
                       "e=\"${Other} in $city\")\n";
    char *pr = validate_text(k, text, v);
    CHECK_INT(count_lines(pr), 2);
    CHECK_CONTAINS(pr, "p.txt:1:44: variable $missing is not set");
    CHECK_CONTAINS(pr, "p.txt:1:56: variable $Other is not set");
    free(pr);
    /* without vars, variables are not checked */
    pr = validate_text(k, text, NULL);
    CHECK(pr == NULL);
    free(pr);
    sk_vars_set(v, "missing", "");
    sk_vars_set(v, "other", "o"); /* names are case-insensitive */
    pr = validate_text(k, text, v);
    CHECK(pr == NULL);
    free(pr);
    sk_vars_free(v);
    sk_kernel_free(k);
}

TEST(test_cycles)
{
    sk_kernel *k = make_kernel();
    if (!k)
        return;
    char *pr = validate_text(k, "1. Util.Echo($2)\n2. Util.Echo($1)\n", NULL);
    CHECK_STR(pr, "p.txt:1:1: cycle: 1 -> 2 -> 1");
    free(pr);
    pr = validate_text(k,
        "1. Util.Echo()\n"
        "2. Util.Echo($4)\n"
        "3. Util.Echo($2, x=$1)\n"
        "4. Util.Echo(\"$3\")\n", NULL);
    CHECK_STR(pr, "p.txt:2:1: cycle: 2 -> 4 -> 3 -> 2");
    free(pr);
    /* a self reference is reported once, not also as a cycle */
    pr = validate_text(k, "1. Util.Echo()\n2. Util.Echo(x=$2, y=$1)\n", NULL);
    CHECK_STR(pr, "p.txt:2:16: step 2 refers to itself");
    free(pr);
    /* two separate cycles */
    pr = validate_text(k,
        "1. Util.Echo($2)\n2. Util.Echo($1)\n"
        "3. Util.Echo($4)\n4. Util.Echo($3)\n", NULL);
    CHECK_INT(count_lines(pr), 2);
    CHECK_CONTAINS(pr, "p.txt:1:1: cycle: 1 -> 2 -> 1");
    CHECK_CONTAINS(pr, "p.txt:3:1: cycle: 3 -> 4 -> 3");
    free(pr);
    /* a diamond is not a cycle */
    pr = validate_text(k,
        "1. Util.Echo()\n2. Util.Echo($1)\n3. Util.Echo($1)\n"
        "4. Util.Echo(\"$2 $3\")\n", NULL);
    CHECK(pr == NULL);
    free(pr);
    sk_kernel_free(k);
}

/* ---- output ------------------------------------------------------------ */

TEST(test_round_trip)
{
    const char *text =
        "# goal: Translate \"it\" for $5\n"
        "1. Writer.Summarize($input, style='terse')  # keep it short\n"
        "2) Writer.Translate(input=$1, language=\"Fr\\u00e9nch\\n\\t\\\\\", n=3, f=-1.5, b=true)\n"
        "3. Util.Echo(\"$1 and ${city}, $$ and a $ sign, \\\"q\\\"\", x=\"cost $$4\", y=$city)\n"
        "10. Echo(t=\"12\", u=\"\", v=\"\\u0001\")\n";
    sk_plan *a = parse_ok(text, 0);
    if (!a)
        return;
    char *t1 = plan_text(a);
    CHECK_STR(t1,
        "# goal: Translate \"it\" for $5\n"
        "1. Writer.Summarize($input, style=\"terse\")  # keep it short\n"
        "2. Writer.Translate(input=$1, language=\"Fr\xc3\xa9nch\\n\\t\\\\\", n=3, f=-1.5, b=true)\n"
        "3. Util.Echo(\"$1 and ${city}, $$ and a $$ sign, \\\"q\\\"\", x=\"cost $$4\", y=$city)\n"
        "10. Echo(t=12, u=\"\", v=\"\\u0001\")\n");
    sk_plan *b = t1 ? parse_ok(t1, 0) : NULL;
    CHECK(b && plans_equal(a, b));
    char *t2 = b ? plan_text(b) : NULL;
    CHECK_STR(t2, t1);
    free(t1);
    free(t2);
    plan_free(a);
    plan_free(b);

    /* NO PLAN prints back too */
    a = parse_ok("NO PLAN: because\n", 0);
    t1 = a ? plan_text(a) : NULL;
    CHECK_STR(t1, "NO PLAN: because\n");
    free(t1);
    plan_free(a);
    CHECK(plan_text(NULL) == NULL);
}

TEST(test_dot)
{
    sk_plan *p = parse_ok(
        "1. Writer.Summarize($input)\n"
        "2. Writer.Translate(input=$1, language=\"${lang} \\\"x\\\"\")\n"
        "7. Util.Echo(\"$1/$2\", extra=$input)\n", 0);
    if (!p)
        return;
    char *d = plan_dot(p);
    CHECK_STR(d,
        "digraph plan {\n"
        "  rankdir=LR;\n"
        "  node [shape=box];\n"
        "  s1 [label=\"1. Writer.Summarize\"];\n"
        "  s2 [label=\"2. Writer.Translate\"];\n"
        "  s7 [label=\"7. Util.Echo\"];\n"
        "  v_input [label=\"$input\", shape=ellipse];\n"
        "  v_lang [label=\"$lang\", shape=ellipse];\n"
        "  v_input -> s1;\n"
        "  s1 -> s2;\n"
        "  v_lang -> s2;\n"
        "  s1 -> s7;\n"
        "  s2 -> s7;\n"
        "  v_input -> s7;\n"
        "}\n");
    free(d);
    plan_free(p);
    CHECK(plan_dot(NULL) == NULL);
}

TEST(test_arg_value)
{
    sk_plan *p = parse_ok(
        "1. A()\n"
        "2. B()\n"
        "3. C(a=$1, b=$city, c=\"[$1|$2|${city}|$$|$9|$nope] $$1\", d='lit', e=$2)\n", 0);
    sk_vars *v = NULL;
    if (!p || sk_vars_new(&v) != SK_OK)
        return;
    sk_vars_set(v, "City", "Paris $2");
    p->steps[0].output = strdup("one $city");
    const plan_arg *a = p->steps[2].call.args;
    char *s = plan_arg_value(p, &a[0], v);
    CHECK_STR(s, "one $city");
    free(s);
    s = plan_arg_value(p, &a[1], v);
    CHECK_STR(s, "Paris $2");
    free(s);
    /* outputs and values are inserted as they are, never expanded again */
    s = plan_arg_value(p, &a[2], v);
    CHECK_STR(s, "[one $city||Paris $2|$||] $1");
    free(s);
    s = plan_arg_value(p, &a[3], v);
    CHECK_STR(s, "lit");
    free(s);
    s = plan_arg_value(p, &a[4], v); /* not run yet: empty */
    CHECK_STR(s, "");
    free(s);
    s = plan_arg_value(p, &a[1], NULL);
    CHECK_STR(s, "");
    free(s);
    sk_vars_free(v);
    plan_free(p);
}

/* ---- allocation failures ----------------------------------------------- */

TEST(test_alloc_failures)
{
    sk_kernel *k = make_kernel();
    if (!k)
        return;
    const char *text =
        "# goal: g\n"
        "1. Writer.Summarize($input)  # c\n"
        "2. Writer.Translate(input=\"$1 ${x} \\u00e9\", language='fr')\n"
        "3. Nope($2)\n"
        "4. Util.Echo($4)\n";
    int done = 0, nomem = 0, other = 0;
    for (long n = 1; n < 5000 && !done; n++) {
        sk_plan *p = NULL;
        char *err = NULL, *pr = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = plan_parse(text, strlen(text), "p.txt", 1, &p, &err);
        sk_status rc2 = SK_NOMEM;
        if (rc == SK_OK)
            rc2 = plan_validate(k, p, NULL, &pr);
        char *t = rc2 == SK_PLAN ? plan_text(p) : NULL;
        char *d = t ? plan_dot(p) : NULL;
        sk_alloc_fail_at(0);
        if (rc == SK_NOMEM || rc2 == SK_NOMEM)
            nomem++;
        if (rc == SK_NOMEM && (p || err))
            other++;
        if (rc != SK_OK && rc != SK_NOMEM)
            other++;
        if (rc == SK_OK && rc2 != SK_PLAN && rc2 != SK_NOMEM)
            other++;
        if (rc2 == SK_NOMEM && pr)
            other++;
        if (rc2 == SK_PLAN && t && d) {
            done = 1;
            CHECK_CONTAINS(pr, "unknown function Nope");
            CHECK_CONTAINS(pr, "step 4 refers to itself");
        }
        free(t);
        free(d);
        free(pr);
        free(err);
        plan_free(p);
    }
    CHECK(done);
    CHECK(nomem > 20);
    CHECK_INT(other, 0);

    /* parse errors under allocation failure: SK_NOMEM or the full list */
    const char *bad = "1. F(\nprose\n2. G)\n";
    int seen_nomem = 0;
    done = 0;
    for (long n = 1; n < 1000 && !done; n++) {
        sk_plan *p = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = plan_parse(bad, strlen(bad), "b", 0, &p, &err);
        sk_alloc_fail_at(0);
        CHECK(p == NULL);
        if (rc == SK_NOMEM) {
            seen_nomem = 1;
            CHECK(err == NULL);
        } else {
            CHECK_INT(rc, SK_PLAN);
            CHECK_INT(count_lines(err), 3);
            done = 1;
        }
        free(err);
    }
    CHECK(seen_nomem && done);
    sk_kernel_free(k);
}

int main(void)
{
    RUN(test_call_basic);
    RUN(test_value_kinds);
    RUN(test_escapes);
    RUN(test_templates);
    RUN(test_call_errors);
    RUN(test_plan_basic);
    RUN(test_plan_errors);
    RUN(test_no_plan);
    RUN(test_lenient);
    RUN(test_ceilings);
    RUN(test_validate_clean);
    RUN(test_validate_problems);
    RUN(test_validate_vars);
    RUN(test_cycles);
    RUN(test_round_trip);
    RUN(test_dot);
    RUN(test_arg_value);
    RUN(test_alloc_failures);
    return tu_finish();
}
