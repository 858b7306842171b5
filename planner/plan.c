/*
 * plan.c -- the plan format: parsing, validation against a kernel, the
 * canonical text form, Graphviz output and argument expansion.
 *
 * Grammar.  A plan is text, one item per line:
 *
 *     # goal: summarize the report in French
 *     1. Writer.Summarize($input)              # a comment
 *     2. Writer.Translate(input=$1, language="French")
 *
 *   step     := WS* NUMBER ("." | ")") WS* call WS* ("#" comment)?
 *   call     := name WS* "(" WS* (arg (WS* "," WS* arg)*)? WS* ")"
 *   name     := ident ("." ident)?          (Skill.Fn, or a bare Fn)
 *   ident    := [A-Za-z_][A-Za-z0-9_]*
 *   arg      := ident WS* "=" WS* value     (named)
 *             | value                       (positional: at most one,
 *                                            and only as the first arg)
 *   value    := "$" DIGITS                  step DIGITS's output
 *             | "$" ident | "${" ident "}"  a variable
 *             | '"' ... '"'                 JSON escapes: \" \\ \/ \b \f
 *                                           \n \r \t \uXXXX (surrogate
 *                                           pairs become one UTF-8 char)
 *             | "'" ... "'"                 escapes \' and \\ only
 *             | -?DIGITS("."DIGITS)? | true | false | null
 *
 * Inside either kind of string, $N, $name and ${name} are references
 * (the value is then a template) and $$ is a dollar; a $ followed by
 * anything else is a literal dollar.  Raw control characters other than
 * tab are not allowed in strings.
 *
 * Blank lines and lines starting with "#" are ignored, except "# goal:
 * TEXT" (any case), which records the goal.  A line "NO PLAN: reason"
 * (any case, optionally after "**") says no plan is possible; a plan
 * cannot have both steps and NO PLAN.  Any other line is an error.
 *
 * Lenient mode, for model replies: when the text has a ``` fence, only
 * the lines of the first fenced block count; prose lines before the
 * first step and after the last are ignored (prose between steps is
 * still an error); a step line may be a markdown list item ("- ", "* ")
 * and its number and call may be wrapped in ** or backticks.  A numbered
 * line counts as a step there only when it looks like a call (a name,
 * then "("); strictly, every numbered line is parsed as a step.
 *
 * A NUL byte anywhere in a line that counts is an error.
 *
 * Ceilings: 1 MiB of text (SK_TOO_LARGE), 64 KiB per line, 500 steps,
 * 64 arguments per call, step numbers up to 999999 (SK_PLAN).  Every
 * problem is reported, one per line, as "origin:line:col: message".
 *
 * Columns: plan_parse_call counts them within the string it is given;
 * steps parsed by plan_parse count them within their line.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "planner/planner.h"

#define PLAN_MAX_TEXT ((size_t)1 << 20)
#define PLAN_MAX_LINE ((size_t)64 << 10)
#define PLAN_MAX_STEPS 500
#define PLAN_MAX_ARGS 64
#define PLAN_MAX_NUMBER 999999
#define PLAN_MAX_PROBLEMS 100

static int is_ident_start(int c) { return isalpha(c) || c == '_'; }
static int is_ident(int c) { return isalnum(c) || c == '_'; }
static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\r'; }

/* ---- calls ------------------------------------------------------------- */

/* A cursor over one call.  msg is set (owned) on the first error; nomem
 * records an allocation failure so the caller can tell the two apart. */
typedef struct cur {
    const char *s;
    size_t len, i;
    char *msg;
    size_t err_at;
    int nomem;
} cur;

static int peek(const cur *c) { return c->i < c->len ? (unsigned char)c->s[c->i] : -1; }

static int peek_at(const cur *c, size_t k)
{
    return c->i + k < c->len ? (unsigned char)c->s[c->i + k] : -1;
}

static void skip_ws(cur *c)
{
    while (c->i < c->len && is_ws((unsigned char)c->s[c->i]))
        c->i++;
}

/* Records the first error at offset at; later ones are dropped, since the
 * rest of a broken call cannot be read reliably. */
static void fail_at(cur *c, size_t at, const char *fmt, ...) SK_PRINTF(3, 4);
static void fail_at(cur *c, size_t at, const char *fmt, ...)
{
    if (c->msg || c->nomem)
        return;
    va_list ap;
    va_start(ap, fmt);
    c->msg = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (!c->msg)
        c->nomem = 1;
    c->err_at = at;
}

static int failed(const cur *c) { return c->msg != NULL || c->nomem; }

static void set_nomem(cur *c) { c->nomem = 1; }

/* Reads an identifier at the cursor; returns its length (0: none). */
static size_t read_ident(cur *c)
{
    size_t start = c->i;
    if (!is_ident_start(peek(c)))
        return 0;
    while (is_ident(peek(c)))
        c->i++;
    return c->i - start;
}

/* Appends a code point as UTF-8. */
static sk_status add_utf8(sk_buf *b, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_add(b, u, n);
}

/* Four hex digits at s[at..]; -1 if they are not. */
static long hex4(const cur *c, size_t at)
{
    if (at + 4 > c->len)
        return -1;
    long v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = (unsigned char)c->s[at + k];
        int d = isdigit(h) ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Reads a step number (digits) into *n; 0 when it is too large. */
static int read_number(cur *c, int *n)
{
    size_t start = c->i;
    long v = 0;
    while (isdigit(peek(c))) {
        if (v <= PLAN_MAX_NUMBER)
            v = v * 10 + (peek(c) - '0');
        c->i++;
    }
    if (v > PLAN_MAX_NUMBER) {
        fail_at(c, start, "step number too large (at most %d)", PLAN_MAX_NUMBER);
        return 0;
    }
    *n = (int)v;
    return 1;
}

/* Reads a reference after a '$' (the cursor is past it) into the
 * template's normal form in b: "$N" for a step, "${name}" for a variable.
 * Returns 1 when it was one, 0 when the '$' is a literal dollar, -1 on an
 * error. */
static int read_ref(cur *c, sk_buf *b, size_t dollar)
{
    int ch = peek(c);
    sk_status rc = SK_OK;
    if (isdigit(ch)) {
        int n;
        if (!read_number(c, &n))
            return -1;
        rc = buf_printf(b, "$%d", n);
    } else if (is_ident_start(ch)) {
        size_t start = c->i;
        size_t n = read_ident(c);
        rc = buf_adds(b, "${");
        if (rc == SK_OK)
            rc = buf_add(b, c->s + start, n);
        if (rc == SK_OK)
            rc = buf_addc(b, '}');
    } else if (ch == '{') {
        c->i++;
        size_t start = c->i;
        size_t n = read_ident(c);
        if (n == 0 || peek(c) != '}') {
            fail_at(c, dollar, "expected a variable name and '}' after '${'");
            return -1;
        }
        c->i++;
        rc = buf_adds(b, "${");
        if (rc == SK_OK)
            rc = buf_add(b, c->s + start, n);
        if (rc == SK_OK)
            rc = buf_addc(b, '}');
    } else {
        return 0;
    }
    if (rc != SK_OK) {
        set_nomem(c);
        return -1;
    }
    return 1;
}

/* Turns a normal-form text without references into the literal it
 * stands for: every "$$" becomes "$".  In place. */
static void collapse_dollars(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        *w++ = *r;
        if (r[0] == '$' && r[1] == '$')
            r++;
    }
    *w = '\0';
}

/* Reads a quoted string at the cursor into a (kind and text). */
static void read_string(cur *c, plan_arg *a)
{
    size_t open = c->i;
    int q = peek(c);
    int has_ref = 0;
    sk_buf b;
    buf_init(&b, PLAN_MAX_LINE * 2);
    c->i++;
    for (;;) {
        int ch = peek(c);
        sk_status rc = SK_OK;
        if (ch < 0) {
            fail_at(c, open, "unterminated string");
            break;
        }
        if (ch == q) {
            c->i++;
            break;
        }
        if (ch < 0x20 && ch != '\t') {
            fail_at(c, c->i, "control character in a string");
            break;
        }
        if (ch == '$') {
            size_t dollar = c->i++;
            if (peek(c) == '$') {
                c->i++;
                rc = buf_adds(&b, "$$");
            } else {
                int r = read_ref(c, &b, dollar);
                if (r < 0)
                    break;
                if (r > 0)
                    has_ref = 1;
                else
                    rc = buf_adds(&b, "$$");
            }
        } else if (ch == '\\') {
            size_t esc = c->i++;
            int e = peek(c);
            if (q == '\'') {
                if (e == '\'' || e == '\\') {
                    c->i++;
                    rc = buf_addc(&b, (char)e);
                } else {
                    rc = buf_addc(&b, '\\'); /* a lone backslash is itself */
                }
            } else {
                const char *simple = strchr("\"\\/bfnrt", e > 0 ? e : 'x');
                static const char out[] = "\"\\/\b\f\n\r\t";
                if (e > 0 && simple) {
                    c->i++;
                    rc = buf_addc(&b, out[simple - "\"\\/bfnrt"]);
                } else if (e == 'u') {
                    long cp = hex4(c, c->i + 1);
                    if (cp < 0) {
                        fail_at(c, esc, "bad \\u escape: expected four hex digits");
                        break;
                    }
                    c->i += 5;
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        long lo = (peek(c) == '\\' && peek_at(c, 1) == 'u')
                                      ? hex4(c, c->i + 2) : -1;
                        if (lo < 0xDC00 || lo > 0xDFFF) {
                            fail_at(c, esc, "bad \\u escape: a high surrogate "
                                            "must be followed by a low one");
                            break;
                        }
                        c->i += 6;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        fail_at(c, esc, "bad \\u escape: a lone low surrogate");
                        break;
                    } else if (cp == 0) {
                        fail_at(c, esc, "\\u0000 is not allowed in a string");
                        break;
                    }
                    rc = add_utf8(&b, (unsigned long)cp);
                } else {
                    fail_at(c, esc, "bad escape in a string");
                    break;
                }
            }
        } else {
            c->i++;
            rc = buf_addc(&b, (char)ch);
        }
        if (rc == SK_TOO_LARGE) {
            fail_at(c, open, "string too long");
            break;
        }
        if (rc != SK_OK) {
            set_nomem(c);
            break;
        }
    }
    if (failed(c)) {
        buf_free(&b);
        return;
    }
    a->text = buf_steal(&b);
    if (!a->text) {
        set_nomem(c);
        return;
    }
    a->kind = has_ref ? PA_TEMPLATE : PA_TEXT;
    if (!has_ref)
        collapse_dollars(a->text);
}

/* 1 when s (n bytes) is a bare literal: a number or true/false/null. */
static int is_bare_literal(const char *s, size_t n)
{
    if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
        (n == 4 && !memcmp(s, "null", 4)))
        return 1;
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t d = i;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    if (i == d)
        return 0;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
        if (i == f)
            return 0;
    }
    return i == n;
}

/* Reads one value at the cursor into a. */
static void read_value(cur *c, plan_arg *a, size_t base_col)
{
    int ch = peek(c);
    a->col = (int)(base_col + c->i);
    if (ch == '$') {
        size_t dollar = c->i++;
        int n2 = peek(c);
        if (isdigit(n2)) {
            if (!read_number(c, &a->step))
                return;
            a->kind = PA_STEP;
            a->text = sk_asprintf("%d", a->step);
        } else if (is_ident_start(n2) || n2 == '{') {
            int braced = n2 == '{';
            if (braced)
                c->i++;
            size_t start = c->i;
            size_t n = read_ident(c);
            if (braced && (n == 0 || peek(c) != '}')) {
                fail_at(c, dollar, "expected a variable name and '}' after '${'");
                return;
            }
            if (braced)
                c->i++;
            a->kind = PA_VAR;
            a->text = sk_strndup(c->s + start, n);
        } else {
            fail_at(c, dollar, "expected a step number or a variable name after '$'");
            return;
        }
        if (!a->text)
            set_nomem(c);
        return;
    }
    if (ch == '"' || ch == '\'') {
        read_string(c, a);
        return;
    }
    size_t start = c->i;
    if (ch == '-' || isdigit(ch)) {
        if (ch == '-')
            c->i++;
        while (isdigit(peek(c)))
            c->i++;
        if (peek(c) == '.' && isdigit(peek_at(c, 1))) {
            c->i++;
            while (isdigit(peek(c)))
                c->i++;
        }
    } else {
        while (is_ident(peek(c)))
            c->i++;
    }
    size_t n = c->i - start;
    if (n == 0 || !is_bare_literal(c->s + start, n) ||
        is_ident(peek(c)) || peek(c) == '.') {
        c->i = start;
        if (is_ident_start(ch))
            fail_at(c, start, "unquoted text: write strings in double quotes");
        else
            fail_at(c, start, "expected a value ($N, $name, a quoted string "
                              "or a number)");
        return;
    }
    a->kind = PA_TEXT;
    a->text = sk_strndup(c->s + start, n);
    if (!a->text)
        set_nomem(c);
}

static void free_args(plan_arg *args, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(args[i].name);
        free(args[i].text);
    }
    free(args);
}

void plan_call_free(plan_call *c)
{
    if (!c)
        return;
    free(c->function);
    free_args(c->args, c->n_args);
    memset(c, 0, sizeof *c);
}

/* Reads a call at the cursor.  Stops after its ')' (the caller decides
 * what may follow).  base_col is added to every column, so that steps
 * report columns within their line. */
static void read_call(cur *c, plan_call *out, size_t base_col)
{
    memset(out, 0, sizeof *out);
    skip_ws(c);
    size_t start = c->i;
    size_t n = read_ident(c);
    if (n && peek(c) == '.' && is_ident_start(peek_at(c, 1))) {
        c->i++;
        n = read_ident(c);
    }
    if (n == 0) {
        fail_at(c, start, "expected a function name (Skill.Fn)");
        return;
    }
    out->fn_col = (int)(base_col + start);
    out->function = sk_strndup(c->s + start, c->i - start);
    if (!out->function) {
        set_nomem(c);
        return;
    }
    skip_ws(c);
    if (peek(c) != '(') {
        fail_at(c, c->i, "expected '(' after the function name");
        return;
    }
    c->i++;
    skip_ws(c);
    if (peek(c) == ')') {
        c->i++;
        return;
    }
    size_t cap = 0;
    for (;;) {
        skip_ws(c);
        if (out->n_args == PLAN_MAX_ARGS) {
            fail_at(c, c->i, "too many arguments (at most %d)", PLAN_MAX_ARGS);
            return;
        }
        if (out->n_args == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            plan_arg *na = sk_realloc(out->args, ncap * sizeof *na);
            if (!na) {
                set_nomem(c);
                return;
            }
            out->args = na;
            cap = ncap;
        }
        plan_arg *a = &out->args[out->n_args];
        memset(a, 0, sizeof *a);
        out->n_args++;
        /* a name is an identifier followed by '=' */
        size_t arg_start = c->i;
        size_t nl = read_ident(c);
        if (nl) {
            skip_ws(c);
            if (peek(c) == '=') {
                a->name = sk_strndup(c->s + arg_start, nl);
                if (!a->name) {
                    set_nomem(c);
                    return;
                }
                for (size_t k = 0; k + 1 < out->n_args; k++) {
                    if (out->args[k].name && !strcasecmp(out->args[k].name, a->name)) {
                        fail_at(c, arg_start, "argument '%s' given twice", a->name);
                        return;
                    }
                }
                c->i++;
                skip_ws(c);
            } else {
                c->i = arg_start;
            }
        }
        if (!a->name && out->n_args > 1) {
            fail_at(c, c->i, "a positional argument must be the first and "
                             "only one: name the others (name=value)");
            return;
        }
        read_value(c, a, base_col);
        if (failed(c))
            return;
        skip_ws(c);
        int ch = peek(c);
        if (ch == ')') {
            c->i++;
            return;
        }
        if (ch == ',') {
            c->i++;
            skip_ws(c);
            if (peek(c) == ')') {
                fail_at(c, c->i, "expected an argument after ','");
                return;
            }
            continue;
        }
        if (ch < 0)
            fail_at(c, c->i, "missing ')' at the end of the call");
        else
            fail_at(c, c->i, "expected ',' or ')' after an argument");
        return;
    }
}

sk_status plan_parse_call(const char *s, size_t len, plan_call *out,
                          char **errmsg, int *errcol)
{
    if (errmsg)
        *errmsg = NULL;
    if (errcol)
        *errcol = 0;
    if (!s || !out)
        return SK_USAGE;
    cur c = {s, len, 0, NULL, 0, 0};
    read_call(&c, out, 1);
    if (!failed(&c)) {
        skip_ws(&c);
        if (c.i < c.len)
            fail_at(&c, c.i, "unexpected text after the call");
    }
    if (!failed(&c))
        return SK_OK;
    plan_call_free(out);
    if (c.nomem) {
        free(c.msg);
        return SK_NOMEM;
    }
    if (errcol)
        *errcol = (int)c.err_at + 1;
    if (errmsg)
        *errmsg = c.msg;
    else
        free(c.msg);
    return SK_PLAN;
}

/* ---- plans ------------------------------------------------------------- */

static void step_clear(plan_step *s)
{
    free(s->src);
    plan_call_free(&s->call);
    free(s->comment);
    free(s->deps);
    free(s->output);
}

void plan_free(sk_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        step_clear(&p->steps[i]);
    free(p->steps);
    free(p->origin);
    free(p->goal);
    free(p->no_plan);
    grant_release(p->grant);
    free(p);
}

plan_step *plan_find(const sk_plan *p, int n)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->steps[i].number == n)
            return &p->steps[i];
    return NULL;
}

/* Calls fn for every reference in a template's normal form: a step number
 * (name NULL) or a variable name (len bytes, not NUL-terminated). */
typedef int (*ref_fn)(void *ud, int step, const char *name, size_t len);

static int each_ref(const char *t, ref_fn fn, void *ud)
{
    for (const char *s = t; *s; s++) {
        if (*s != '$')
            continue;
        if (s[1] == '$') {
            s++;
        } else if (isdigit((unsigned char)s[1])) {
            int n = 0;
            s++;
            while (isdigit((unsigned char)*s)) {
                if (n <= PLAN_MAX_NUMBER)
                    n = n * 10 + (*s - '0');
                s++;
            }
            s--;
            if (fn(ud, n, NULL, 0))
                return 1;
        } else if (s[1] == '{') {
            const char *e = strchr(s + 2, '}');
            if (!e)
                break;
            if (fn(ud, 0, s + 2, (size_t)(e - (s + 2))))
                return 1;
            s = e;
        }
    }
    return 0;
}

/* Calls fn for every reference an argument makes. */
static int arg_refs(const plan_arg *a, ref_fn fn, void *ud)
{
    if (a->kind == PA_STEP)
        return fn(ud, a->step, NULL, 0);
    if (a->kind == PA_VAR)
        return fn(ud, 0, a->text, strlen(a->text));
    if (a->kind == PA_TEMPLATE)
        return each_ref(a->text, fn, ud);
    return 0;
}

typedef struct dep_set {
    int *v;
    size_t n, cap;
    int nomem;
} dep_set;

static int add_dep(void *ud, int step, const char *name, size_t len)
{
    (void)len;
    dep_set *d = ud;
    if (name)
        return 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i] == step)
            return 0;
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 4;
        int *nv = sk_realloc(d->v, ncap * sizeof *nv);
        if (!nv) {
            d->nomem = 1;
            return 1;
        }
        d->v = nv;
        d->cap = ncap;
    }
    d->v[d->n++] = step;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static sk_status compute_deps(plan_step *s)
{
    dep_set d = {0};
    for (size_t i = 0; i < s->call.n_args && !d.nomem; i++)
        arg_refs(&s->call.args[i], add_dep, &d);
    if (d.nomem) {
        free(d.v);
        return SK_NOMEM;
    }
    if (d.n)
        qsort(d.v, d.n, sizeof *d.v, cmp_int);
    s->deps = d.v;
    s->n_deps = d.n;
    return SK_OK;
}

/* The problem list: "origin:line:col: message" lines, at most
 * PLAN_MAX_PROBLEMS of them. */
typedef struct problems {
    sk_buf b;
    const char *origin;
    size_t n;
    int nomem;
} problems;

static void problem(problems *pr, int line, int col, const char *fmt, ...)
    SK_PRINTF(4, 5);
static void problem(problems *pr, int line, int col, const char *fmt, ...)
{
    if (pr->nomem || pr->n > PLAN_MAX_PROBLEMS)
        return;
    sk_status rc = SK_OK;
    if (pr->b.len)
        rc = buf_addc(&pr->b, '\n');
    if (rc == SK_OK && pr->n == PLAN_MAX_PROBLEMS) {
        pr->n++;
        rc = buf_printf(&pr->b, "%s: more than %d problems; stopping here",
                        pr->origin, PLAN_MAX_PROBLEMS);
        if (rc != SK_OK)
            pr->nomem = 1;
        return;
    }
    pr->n++;
    if (rc == SK_OK)
        rc = line > 0 ? buf_printf(&pr->b, "%s:%d:%d: ", pr->origin, line, col)
                      : buf_printf(&pr->b, "%s: ", pr->origin);
    if (rc == SK_OK) {
        va_list ap;
        va_start(ap, fmt);
        char *m = sk_vasprintf(fmt, ap);
        va_end(ap);
        rc = m ? buf_adds(&pr->b, m) : SK_NOMEM;
        free(m);
    }
    if (rc != SK_OK)
        pr->nomem = 1;
}

/* One line of the text. */
typedef struct line_t {
    const char *s;
    size_t len;
    int no;
} line_t;

typedef enum line_kind { L_BLANK, L_COMMENT, L_GOAL, L_NOPLAN, L_STEP, L_OTHER } line_kind;

static int starts_ci(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && strncasecmp(s, word, n) == 0;
}

/* Skips markdown that may wrap a step in lenient mode: a list bullet,
 * bold or code markers.  Returns the new offset. */
static size_t skip_marks(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == '*' || s[i] == '`'))
        i++;
    return i;
}

/* Where a step's number starts, when the line is numbered ("  1." /
 * "- **2)**"), with *num_end just past the '.' or ')'; else SIZE_MAX. */
static size_t step_prefix(const line_t *l, int lenient, size_t *num_end)
{
    const char *s = l->s;
    size_t i = 0, len = l->len;
    while (i < len && is_ws((unsigned char)s[i]))
        i++;
    if (lenient) {
        if (i + 1 < len && (s[i] == '-' || s[i] == '*' || s[i] == '+') &&
            is_ws((unsigned char)s[i + 1])) {
            i++;
            while (i < len && is_ws((unsigned char)s[i]))
                i++;
        }
        i = skip_marks(s, len, i);
    }
    size_t num = i;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i == num || i >= len || (s[i] != '.' && s[i] != ')'))
        return (size_t)-1;
    *num_end = i + 1;
    return num;
}

/* In lenient mode, does the text after a step number look like a call
 * (a name, then '(')? */
static int looks_like_call(const line_t *l, size_t i)
{
    cur c = {l->s, l->len, i, NULL, 0, 0};
    c.i = skip_marks(l->s, l->len, c.i);
    skip_ws(&c);
    c.i = skip_marks(l->s, l->len, c.i);
    if (!read_ident(&c))
        return 0;
    if (peek(&c) == '.' && is_ident_start(peek_at(&c, 1))) {
        c.i++;
        read_ident(&c);
    }
    skip_ws(&c);
    return peek(&c) == '(';
}

static line_kind classify(const line_t *l, int lenient)
{
    size_t i = 0, num_end;
    while (i < l->len && is_ws((unsigned char)l->s[i]))
        i++;
    if (i == l->len)
        return L_BLANK;
    const char *s = l->s + i;
    size_t n = l->len - i;
    if (s[0] == '#') {
        size_t j = 1;
        while (j < n && is_ws((unsigned char)s[j]))
            j++;
        if (starts_ci(s + j, n - j, "goal")) {
            j += 4;
            while (j < n && is_ws((unsigned char)s[j]))
                j++;
            if (j < n && s[j] == ':')
                return L_GOAL;
        }
        return L_COMMENT;
    }
    if (n >= 2 && s[0] == '*' && s[1] == '*') {
        s += 2;
        n -= 2;
    }
    if (starts_ci(s, n, "no plan")) {
        size_t j = 7;
        while (j < n && (s[j] == '*' || is_ws((unsigned char)s[j])))
            j++;
        if (j < n && s[j] == ':')
            return L_NOPLAN;
    }
    if (step_prefix(l, lenient, &num_end) != (size_t)-1 &&
        (!lenient || looks_like_call(l, num_end)))
        return L_STEP;
    return L_OTHER;
}

/* The text after the first ':' of l, trimmed of blanks and '*'. */
static char *after_colon(const line_t *l)
{
    const char *c = memchr(l->s, ':', l->len);
    const char *e = l->s + l->len;
    c++;
    while (c < e && (is_ws((unsigned char)*c) || *c == '*'))
        c++;
    while (e > c && (is_ws((unsigned char)e[-1]) || e[-1] == '*'))
        e--;
    return sk_strndup(c, (size_t)(e - c));
}

/* Parses one step line into s (zeroed first).  Problems go to pr. */
static sk_status parse_step(const line_t *l, int lenient, plan_step *s,
                            problems *pr)
{
    size_t num_end;
    size_t num = step_prefix(l, lenient, &num_end);
    memset(s, 0, sizeof *s);
    s->line = l->no;
    cur c = {l->s, l->len, num, NULL, 0, 0};
    if (!read_number(&c, &s->number)) {
        problem(pr, l->no, (int)c.err_at + 1, "%s", c.msg);
        free(c.msg);
        return SK_PLAN;
    }
    c.i = num_end;
    if (lenient)
        c.i = skip_marks(l->s, l->len, c.i);
    skip_ws(&c);
    if (lenient)
        c.i = skip_marks(l->s, l->len, c.i);
    skip_ws(&c);
    size_t call_start = c.i;
    read_call(&c, &s->call, 1);
    if (!failed(&c)) {
        size_t call_end = c.i;
        if (lenient)
            c.i = skip_marks(l->s, l->len, c.i);
        skip_ws(&c);
        if (c.i < c.len && c.s[c.i] == '#') {
            const char *b = c.s + c.i + 1, *e = c.s + c.len;
            while (b < e && is_ws((unsigned char)*b))
                b++;
            while (e > b && is_ws((unsigned char)e[-1]))
                e--;
            if (e > b && !(s->comment = sk_strndup(b, (size_t)(e - b))))
                set_nomem(&c);
        } else if (c.i < c.len) {
            fail_at(&c, c.i, "unexpected text after the call (a comment "
                             "starts with '#')");
        }
        if (!failed(&c) &&
            !(s->src = sk_strndup(l->s + call_start, call_end - call_start)))
            set_nomem(&c);
    }
    if (!failed(&c) && compute_deps(s) != SK_OK)
        set_nomem(&c);
    if (!failed(&c))
        return SK_OK;
    if (c.nomem) {
        free(c.msg);
        return SK_NOMEM;
    }
    problem(pr, l->no, (int)c.err_at + 1, "%s", c.msg);
    free(c.msg);
    return SK_PLAN;
}

/* Splits text into lines (a trailing CR dropped); caller frees *out. */
static sk_status split_lines(const char *text, size_t len, line_t **out,
                             size_t *n_out)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    line_t *ls = sk_calloc(n, sizeof *ls);
    if (!ls)
        return SK_NOMEM;
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            size_t e = i;
            if (e > start && text[e - 1] == '\r')
                e--;
            ls[k].s = text + start;
            ls[k].len = e - start;
            ls[k].no = (int)k + 1;
            k++;
            start = i + 1;
        }
    }
    *out = ls;
    *n_out = k;
    return SK_OK;
}

static int is_fence(const line_t *l)
{
    size_t i = 0;
    while (i < l->len && is_ws((unsigned char)l->s[i]))
        i++;
    return l->len - i >= 3 && !memcmp(l->s + i, "```", 3);
}

sk_status plan_parse(const char *text, size_t len, const char *origin,
                     int lenient, sk_plan **out, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (out)
        *out = NULL;
    if (!text || !out)
        return SK_USAGE;
    if (!origin)
        origin = "plan";
    if (len > PLAN_MAX_TEXT) {
        if (errmsg && !(*errmsg = sk_asprintf("%s: the plan is larger than 1 MiB",
                                              origin)))
            return SK_NOMEM;
        return SK_TOO_LARGE;
    }
    line_t *ls = NULL;
    size_t n_lines = 0;
    if (split_lines(text, len, &ls, &n_lines) != SK_OK)
        return SK_NOMEM;
    sk_plan *p = sk_calloc(1, sizeof *p);
    line_kind *kinds = sk_calloc(n_lines, sizeof *kinds);
    problems pr = {{0}, origin, 0, 0};
    buf_init(&pr.b, 0);
    sk_status rc = SK_OK;
    if (!p || !kinds || !(p->origin = sk_strdup(origin))) {
        rc = SK_NOMEM;
        goto done;
    }

    size_t first = 0, last = n_lines; /* the lines that count */
    if (lenient) {
        size_t open = n_lines;
        for (size_t i = 0; i < n_lines && open == n_lines; i++)
            if (is_fence(&ls[i]))
                open = i;
        if (open < n_lines) {
            first = open + 1;
            last = n_lines;
            for (size_t i = first; i < n_lines; i++)
                if (is_fence(&ls[i])) {
                    last = i;
                    break;
                }
        }
    }
    size_t first_step = last, last_step = last;
    for (size_t i = first; i < last; i++) {
        kinds[i] = ls[i].len > PLAN_MAX_LINE ? L_OTHER : classify(&ls[i], lenient);
        if (kinds[i] == L_STEP) {
            if (first_step == last)
                first_step = i;
            last_step = i;
        }
    }

    size_t cap = 0;
    int no_plan_line = 0;
    for (size_t i = first; i < last && !pr.nomem; i++) {
        const line_t *l = &ls[i];
        if (l->len > PLAN_MAX_LINE) {
            problem(&pr, l->no, 1, "line longer than 64 KiB");
            continue;
        }
        const char *nul = memchr(l->s, '\0', l->len);
        if (nul) {
            problem(&pr, l->no, (int)(nul - l->s) + 1, "NUL byte in the text");
            continue;
        }
        switch (kinds[i]) {
        case L_BLANK:
        case L_COMMENT:
            break;
        case L_GOAL:
            if (!p->goal && !(p->goal = after_colon(l)))
                pr.nomem = 1;
            break;
        case L_NOPLAN:
            if (!p->no_plan) {
                no_plan_line = l->no;
                p->no_plan = after_colon(l);
                if (!p->no_plan)
                    pr.nomem = 1;
                else if (!*p->no_plan) {
                    free(p->no_plan);
                    if (!(p->no_plan = sk_strdup("no reason given")))
                        pr.nomem = 1;
                }
            }
            break;
        case L_OTHER:
            if (lenient && (first_step == last || i < first_step || i > last_step))
                break;
            problem(&pr, l->no, 1, "line is not a step: expected "
                                   "'N. Skill.Fn(...)'");
            break;
        case L_STEP: {
            if (p->n == PLAN_MAX_STEPS) {
                problem(&pr, l->no, 1, "too many steps (at most %d)",
                        PLAN_MAX_STEPS);
                i = last; /* stop: the rest would only repeat this */
                break;
            }
            if (p->n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                plan_step *ns = sk_realloc(p->steps, ncap * sizeof *ns);
                if (!ns) {
                    pr.nomem = 1;
                    break;
                }
                p->steps = ns;
                cap = ncap;
            }
            plan_step *s = &p->steps[p->n];
            sk_status src = parse_step(l, lenient, s, &pr);
            if (src == SK_OK)
                p->n++;
            else
                step_clear(s);
            if (src == SK_NOMEM)
                pr.nomem = 1;
            break;
        }
        }
    }
    if (p->no_plan && p->n && !pr.nomem)
        problem(&pr, no_plan_line, 1, "a plan cannot have both steps and "
                                      "NO PLAN");
    if (pr.nomem)
        rc = SK_NOMEM;
    else if (pr.n)
        rc = SK_PLAN;

done:
    free(ls);
    free(kinds);
    if (rc == SK_OK) {
        buf_free(&pr.b);
        *out = p;
        return SK_OK;
    }
    plan_free(p);
    if (rc == SK_PLAN && errmsg) {
        *errmsg = buf_steal(&pr.b);
        if (!*errmsg)
            rc = SK_NOMEM;
    }
    buf_free(&pr.b);
    return rc;
}

/* ---- validation -------------------------------------------------------- */


/* The registered function closest to name, or NULL.  Borrowed. */
static const char *closest_function(const sk_kernel *k, const char *name,
                                    const sk_grant *g)
{
    const char *best = NULL;
    size_t best_d = 99, count = sk_kernel_function_count(k);
    for (size_t i = 0; i < count; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(k, i, &fi) != SK_OK)
            break;
        const sk_function *f = reg_find(k, fi.full_name);
        if (f && !grant_allows(g, f))
            continue; /* suggest only what the plan may call */
        size_t d = sk_edit_distance(name, fi.full_name);
        size_t d2 = sk_edit_distance(name, fi.name);
        if (d2 < d)
            d = d2;
        if (d < best_d) {
            best_d = d;
            best = fi.full_name;
        }
    }
    return best && best_d <= strlen(name) / 3 + 1 ? best : NULL;
}

/* How many skills have a function called name (a bare "Fn"). */
static size_t count_named(const sk_kernel *k, const char *name)
{
    size_t hits = 0, count = sk_kernel_function_count(k);
    for (size_t i = 0; i < count; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(k, i, &fi) == SK_OK &&
            !strcasecmp(fi.name, name))
            hits++;
    }
    return hits;
}

typedef struct ref_ctx {
    const sk_plan *p;
    const plan_step *s;
    const plan_arg *a;
    const sk_vars *vars;
    problems *pr;
} ref_ctx;

static int check_ref(void *ud, int step, const char *name, size_t len)
{
    ref_ctx *r = ud;
    if (name) {
        if (!r->vars)
            return 0;
        char *v = sk_strndup(name, len);
        if (!v) {
            r->pr->nomem = 1;
            return 1;
        }
        if (strcasecmp(v, "goal") && strcasecmp(v, "input") &&
            !sk_vars_get(r->vars, v))
            problem(r->pr, r->s->line, r->a->col, "variable $%s is not set", v);
        free(v);
        return 0;
    }
    if (step == r->s->number)
        problem(r->pr, r->s->line, r->a->col, "step %d refers to itself", step);
    else if (!plan_find(r->p, step))
        problem(r->pr, r->s->line, r->a->col,
                "step %d refers to step %d, which does not exist",
                r->s->number, step);
    return 0;
}

static void check_call(sk_kernel *k, const sk_plan *p, const plan_step *s,
                       const sk_vars *vars, problems *pr)
{
    const plan_call *c = &s->call;
    sk_err *lerr = NULL;
    const sk_function *f = inv_lookup(k, c->function, NULL, p->grant, &lerr);
    if (!f && lerr && lerr->code == SK_DENIED) {
        /* it exists, but the user did not allow it for this plan */
        problem(pr, s->line, c->fn_col, "%s", lerr->message);
    } else if (!f && !lerr) {
        pr->nomem = 1;
    } else if (!f) {
        size_t same = strchr(c->function, '.') ? 0 : count_named(k, c->function);
        const char *near = same ? NULL : closest_function(k, c->function, p->grant);
        if (same > 1)
            problem(pr, s->line, c->fn_col, "function name %s is ambiguous: "
                    "write it as Skill.%s", c->function, c->function);
        else if (near)
            problem(pr, s->line, c->fn_col, "unknown function %s (did you "
                    "mean %s?)", c->function, near);
        else
            problem(pr, s->line, c->fn_col, "unknown function %s", c->function);
    }
    err_free(lerr);
    int positional = 0;
    for (size_t i = 0; i < c->n_args; i++) {
        const plan_arg *a = &c->args[i];
        if (!a->name) {
            if (i > 0)
                problem(pr, s->line, a->col, "a positional argument must be "
                        "the first and only one");
            positional = 1;
        } else if (f && f->n_params && strcasecmp(a->name, "input")) {
            int known = 0;
            for (size_t j = 0; j < f->n_params && !known; j++)
                known = !strcasecmp(f->params[j].name, a->name);
            if (!known)
                problem(pr, s->line, a->col, "%s has no parameter '%s'",
                        f->full_name, a->name);
        }
        ref_ctx r = {p, s, a, vars, pr};
        arg_refs(a, check_ref, &r);
    }
    for (size_t j = 0; f && j < f->n_params; j++) {
        const sk_param_info *pi = &f->params[j];
        if (!pi->required || pi->default_value || (j == 0 && positional))
            continue;
        int given = 0;
        for (size_t i = 0; i < c->n_args && !given; i++)
            given = c->args[i].name && !strcasecmp(c->args[i].name, pi->name);
        if (!given)
            problem(pr, s->line, c->fn_col, "%s: required parameter '%s' is "
                    "missing", f->full_name, pi->name);
    }
}

/* Depth-first search for cycles over "uses" edges.  color: 0 new, 1 on
 * the stack, 2 done.  Each back edge is one cycle, reported from the
 * step that comes first in the text. */
typedef struct dfs {
    const sk_plan *p;
    int *color;
    size_t *stack;
    size_t depth;
    problems *pr;
} dfs;

static long step_index(const sk_plan *p, int number)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->steps[i].number == number)
            return (long)i;
    return -1;
}

static void report_cycle(dfs *d, size_t from)
{
    /* the cycle is stack[from..depth-1] and back to stack[from] */
    size_t len = d->depth - from, best = from;
    for (size_t i = from; i < d->depth; i++)
        if (d->stack[i] < d->stack[best])
            best = i;
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = SK_OK;
    for (size_t k = 0; k <= len && rc == SK_OK; k++) {
        size_t at = from + (best - from + k) % len;
        rc = buf_printf(&b, k ? " -> %d" : "%d", d->p->steps[d->stack[at]].number);
    }
    if (rc != SK_OK) {
        d->pr->nomem = 1;
        buf_free(&b);
        return;
    }
    problem(d->pr, d->p->steps[d->stack[best]].line, 1, "cycle: %s", b.p);
    buf_free(&b);
}

static void visit(dfs *d, size_t v)
{
    d->color[v] = 1;
    d->stack[d->depth++] = v;
    const plan_step *s = &d->p->steps[v];
    for (size_t e = 0; e < s->n_deps; e++) {
        if (s->deps[e] == s->number)
            continue; /* reported as "refers to itself" */
        long w = step_index(d->p, s->deps[e]);
        if (w < 0)
            continue;
        if (d->color[w] == 1) {
            size_t from = 0;
            while (d->stack[from] != (size_t)w)
                from++;
            report_cycle(d, from);
        } else if (d->color[w] == 0) {
            visit(d, (size_t)w);
        }
    }
    d->depth--;
    d->color[v] = 2;
}

sk_status plan_validate(sk_kernel *k, const sk_plan *p, const sk_vars *vars,
                        char **problems_out)
{
    if (problems_out)
        *problems_out = NULL;
    if (!k || !p)
        return SK_USAGE;
    problems pr = {{0}, p->origin ? p->origin : "plan", 0, 0};
    buf_init(&pr.b, 0);
    if (p->no_plan)
        problem(&pr, 0, 0, "the planner found no plan: %s", p->no_plan);
    else if (p->n == 0)
        problem(&pr, 0, 0, "the plan has no steps");
    for (size_t i = 0; i < p->n && !pr.nomem; i++) {
        const plan_step *s = &p->steps[i];
        long first = step_index(p, s->number);
        if (first >= 0 && (size_t)first < i)
            problem(&pr, s->line, 1, "step %d is numbered twice (first at "
                    "line %d)", s->number, p->steps[first].line);
        check_call(k, p, s, vars, &pr);
    }
    if (p->n && !pr.nomem) {
        dfs d = {p, sk_calloc(p->n, sizeof(int)), sk_calloc(p->n, sizeof(size_t)),
                 0, &pr};
        if (!d.color || !d.stack)
            pr.nomem = 1;
        for (size_t i = 0; i < p->n && !pr.nomem; i++)
            if (d.color[i] == 0)
                visit(&d, i);
        free(d.color);
        free(d.stack);
    }
    if (pr.nomem) {
        buf_free(&pr.b);
        return SK_NOMEM;
    }
    if (!pr.n) {
        buf_free(&pr.b);
        return SK_OK;
    }
    if (problems_out && !(*problems_out = buf_steal(&pr.b))) {
        buf_free(&pr.b);
        return SK_NOMEM;
    }
    buf_free(&pr.b);
    return SK_PLAN;
}

/* ---- output ------------------------------------------------------------ */

/* Appends a value in the form that parses back to it. */
static sk_status add_value(sk_buf *b, const plan_arg *a)
{
    switch (a->kind) {
    case PA_STEP:
        return buf_printf(b, "$%d", a->step);
    case PA_VAR:
        return buf_printf(b, "$%s", a->text);
    case PA_TEMPLATE:
        return buf_add_json_str(b, a->text, strlen(a->text));
    case PA_TEXT:
        break;
    }
    size_t n = strlen(a->text);
    if (is_bare_literal(a->text, n))
        return buf_add(b, a->text, n);
    /* a literal dollar is written "$$" so it is not read as a reference */
    sk_buf t;
    buf_init(&t, 0);
    sk_status rc = SK_OK;
    for (size_t i = 0; i < n && rc == SK_OK; i++)
        rc = a->text[i] == '$' ? buf_adds(&t, "$$") : buf_addc(&t, a->text[i]);
    if (rc == SK_OK)
        rc = buf_add_json_str(b, t.p ? t.p : "", t.len);
    buf_free(&t);
    return rc;
}

static sk_status add_call(sk_buf *b, const plan_call *c)
{
    sk_status rc = buf_adds(b, c->function);
    if (rc == SK_OK)
        rc = buf_addc(b, '(');
    for (size_t i = 0; i < c->n_args && rc == SK_OK; i++) {
        if (i)
            rc = buf_adds(b, ", ");
        if (rc == SK_OK && c->args[i].name)
            rc = buf_printf(b, "%s=", c->args[i].name);
        if (rc == SK_OK)
            rc = add_value(b, &c->args[i]);
    }
    if (rc == SK_OK)
        rc = buf_addc(b, ')');
    return rc;
}

char *plan_text(const sk_plan *p)
{
    if (!p)
        return NULL;
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = SK_OK;
    if (p->goal)
        rc = buf_printf(&b, "# goal: %s\n", p->goal);
    if (rc == SK_OK && p->no_plan)
        rc = buf_printf(&b, "NO PLAN: %s\n", p->no_plan);
    for (size_t i = 0; i < p->n && rc == SK_OK; i++) {
        const plan_step *s = &p->steps[i];
        rc = buf_printf(&b, "%d. ", s->number);
        if (rc == SK_OK)
            rc = add_call(&b, &s->call);
        if (rc == SK_OK && s->comment)
            rc = buf_printf(&b, "  # %s", s->comment);
        if (rc == SK_OK)
            rc = buf_addc(&b, '\n');
    }
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Appends s as a DOT string literal, quotes included. */
static sk_status add_dot_str(sk_buf *b, const char *s)
{
    sk_status rc = buf_addc(b, '"');
    for (; *s && rc == SK_OK; s++) {
        if (*s == '"' || *s == '\\')
            rc = buf_addc(b, '\\');
        if (rc == SK_OK)
            rc = *s == '\n' ? buf_adds(b, "\\n") : buf_addc(b, *s);
    }
    if (rc == SK_OK)
        rc = buf_addc(b, '"');
    return rc;
}

/* The variables the plan reads, each once, in order of first use. */
typedef struct var_list {
    char **v;
    size_t n, cap;
    int nomem;
} var_list;

static int add_var(void *ud, int step, const char *name, size_t len)
{
    (void)step;
    var_list *l = ud;
    if (!name)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && !strncasecmp(l->v[i], name, len))
            return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        char **nv = sk_realloc(l->v, ncap * sizeof *nv);
        if (!nv) {
            l->nomem = 1;
            return 1;
        }
        l->v = nv;
        l->cap = ncap;
    }
    if (!(l->v[l->n] = sk_strndup(name, len))) {
        l->nomem = 1;
        return 1;
    }
    l->n++;
    return 0;
}

typedef struct var_use {
    const char *name;
    int used;
} var_use;

static int find_var(void *ud, int step, const char *name, size_t len)
{
    (void)step;
    var_use *u = ud;
    if (name && strlen(u->name) == len && !strncasecmp(u->name, name, len)) {
        u->used = 1;
        return 1;
    }
    return 0;
}

char *plan_dot(const sk_plan *p)
{
    if (!p)
        return NULL;
    sk_buf b;
    buf_init(&b, 0);
    var_list vl = {0};
    sk_status rc = buf_adds(&b, "digraph plan {\n  rankdir=LR;\n  node [shape=box];\n");
    for (size_t i = 0; i < p->n && rc == SK_OK; i++) {
        const plan_step *s = &p->steps[i];
        char *label = sk_asprintf("%d. %s", s->number, s->call.function);
        rc = label ? buf_printf(&b, "  s%d [label=", s->number) : SK_NOMEM;
        if (rc == SK_OK)
            rc = add_dot_str(&b, label);
        if (rc == SK_OK)
            rc = buf_adds(&b, "];\n");
        free(label);
        for (size_t a = 0; a < s->call.n_args && !vl.nomem; a++)
            arg_refs(&s->call.args[a], add_var, &vl);
        if (vl.nomem)
            rc = SK_NOMEM;
    }
    /* node ids: s<number> for steps, v_<name> for variables (names are
     * identifiers, so they are valid DOT ids as they are) */
    for (size_t v = 0; v < vl.n && rc == SK_OK; v++) {
        char *label = sk_asprintf("$%s", vl.v[v]);
        rc = label ? buf_printf(&b, "  v_%s [label=", vl.v[v]) : SK_NOMEM;
        if (rc == SK_OK)
            rc = add_dot_str(&b, label);
        if (rc == SK_OK)
            rc = buf_adds(&b, ", shape=ellipse];\n");
        free(label);
    }
    for (size_t i = 0; i < p->n && rc == SK_OK; i++) {
        const plan_step *s = &p->steps[i];
        for (size_t e = 0; e < s->n_deps && rc == SK_OK; e++)
            if (step_index(p, s->deps[e]) >= 0)
                rc = buf_printf(&b, "  s%d -> s%d;\n", s->deps[e], s->number);
        for (size_t v = 0; v < vl.n && rc == SK_OK; v++) {
            var_use u = {vl.v[v], 0};
            for (size_t a = 0; a < s->call.n_args && !u.used; a++)
                arg_refs(&s->call.args[a], find_var, &u);
            if (u.used)
                rc = buf_printf(&b, "  v_%s -> s%d;\n", vl.v[v], s->number);
        }
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, "}\n");
    for (size_t v = 0; v < vl.n; v++)
        free(vl.v[v]);
    free(vl.v);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- values ------------------------------------------------------------ */

static const char *step_output(const sk_plan *p, int n)
{
    const plan_step *s = plan_find(p, n);
    return s && s->output ? s->output : "";
}

char *plan_arg_value(const sk_plan *p, const plan_arg *a, const sk_vars *vars)
{
    if (!a)
        return NULL;
    const char *v;
    switch (a->kind) {
    case PA_TEXT:
        return sk_strdup(a->text);
    case PA_STEP:
        return sk_strdup(step_output(p, a->step));
    case PA_VAR:
        v = vars ? sk_vars_get(vars, a->text) : NULL;
        return sk_strdup(v ? v : "");
    case PA_TEMPLATE:
        break;
    }
    /* one pass: outputs and values are inserted, never expanded again */
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = SK_OK;
    for (const char *s = a->text; *s && rc == SK_OK; s++) {
        if (*s != '$') {
            const char *e = strchr(s, '$');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            rc = buf_add(&b, s, n);
            s += n - 1;
        } else if (s[1] == '$') {
            rc = buf_addc(&b, '$');
            s++;
        } else if (isdigit((unsigned char)s[1])) {
            int n = 0;
            s++;
            while (isdigit((unsigned char)*s)) {
                if (n <= PLAN_MAX_NUMBER)
                    n = n * 10 + (*s - '0');
                s++;
            }
            s--;
            rc = buf_adds(&b, step_output(p, n));
        } else if (s[1] == '{' && strchr(s + 2, '}')) {
            const char *e = strchr(s + 2, '}');
            char *name = sk_strndup(s + 2, (size_t)(e - (s + 2)));
            if (!name) {
                rc = SK_NOMEM;
                break;
            }
            v = vars ? sk_vars_get(vars, name) : NULL;
            free(name);
            rc = buf_adds(&b, v ? v : "");
            s = e;
        } else {
            rc = buf_addc(&b, '$');
        }
    }
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}
