/*
 * shape.c -- output shapes: a function's answer must be JSON matching a
 * schema, one of a list of choices, or a match for a pattern.
 *
 * The schema support is a deliberate subset of JSON Schema: the keywords
 * that constrained-decoding servers understand and that a model can be
 * told about in one sentence.  Unknown keywords are ignored, so a schema
 * written for a fuller validator still loads.  Problems are phrased to be
 * fed back to the model on a retry: they name the JSON path and say what
 * was expected and what came.
 *
 * Schemas are checked once, at load (shape_parse), so that a mistake in a
 * config file is reported there with its path, not discovered as a
 * confusing validation failure on the first reply.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "policy/policy.h"

#define SHAPE_MAX_BYTES ((size_t)1 << 20) /* the "output" document */
#define SHAPE_MAX_DEPTH 64       /* JSON nesting, schema or reply */
#define SHAPE_MAX_RETRIES 10
#define SHAPE_DEFAULT_RETRIES 2
#define SHAPE_MAX_CHOICES 256
#define SHAPE_MAX_CHOICE_LEN 1024
#define SHAPE_MAX_PROBLEMS 5     /* problems listed in one report */
#define SHAPE_PROBLEM_MAX 4096   /* bytes of one report */
#define SHAPE_QUOTE_MAX 60       /* bytes of a value quoted in a problem */
#define SHAPE_STEP_LIMIT 1000000L /* schema/value visits per check */
#define SHAPE_MATCH_LIMIT 1000000 /* PCRE2 backtracking steps per match */
#define SHAPE_HEAP_LIMIT 8192     /* KiB of PCRE2 backtracking memory */
#define SHAPE_MAX_CANDIDATES 32   /* bracket positions tried in a reply */

typedef enum shape_kind { SHAPE_JSON, SHAPE_CHOICE, SHAPE_REGEX } shape_kind;

struct sk_shape {
    shape_kind kind;
    int retries;
    char *schema;      /* SHAPE_JSON: the schema, compact JSON text */
    char **choices;    /* SHAPE_CHOICE: as listed */
    size_t n_choices;
    char *regex;       /* SHAPE_REGEX: the pattern */
    pcre2_code *re;    /* compiled regex */
};

/* ======================================================================
 * Small helpers
 * ====================================================================== */

static void *re_malloc(PCRE2_SIZE n, void *ud)
{
    (void)ud;
    return sk_malloc(n);
}

static void re_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

/* Compiles pat (UTF).  SK_OK with *out (caller frees with
 * pcre2_code_free); SK_NOMEM; or SK_CONFIG with *msg (caller frees)
 * naming the problem and its offset. */
static sk_status re_compile(const char *pat, pcre2_code **out, char **msg)
{
    *out = NULL;
    *msg = NULL;
    pcre2_general_context *g = pcre2_general_context_create(re_malloc, re_free,
                                                            NULL);
    pcre2_compile_context *cc = g ? pcre2_compile_context_create(g) : NULL;
    if (!cc) {
        pcre2_general_context_free(g);
        return SK_NOMEM;
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                         &err, &off, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(g);
    if (*out)
        return SK_OK;
    if (err == PCRE2_ERROR_HEAP_FAILED)
        return SK_NOMEM;
    PCRE2_UCHAR text[256];
    if (pcre2_get_error_message(err, text, sizeof text) < 0)
        snprintf((char *)text, sizeof text, "error %d", err);
    *msg = sk_asprintf("%s at offset %zu", (const char *)text, (size_t)off);
    return *msg ? SK_CONFIG : SK_NOMEM;
}

/* 1 if re matches somewhere in s[0..len), 0 if not, or a negative PCRE2
 * error (PCRE2_ERROR_NOMEMORY, or a limit error on a runaway pattern). */
static int re_search(const pcre2_code *re, const char *s, size_t len)
{
    int rc = PCRE2_ERROR_NOMEMORY;
    pcre2_general_context *g = pcre2_general_context_create(re_malloc, re_free,
                                                            NULL);
    pcre2_match_context *mc = g ? pcre2_match_context_create(g) : NULL;
    pcre2_match_data *md = mc ? pcre2_match_data_create_from_pattern(re, g)
                              : NULL;
    if (md) {
        pcre2_set_match_limit(mc, SHAPE_MATCH_LIMIT);
        pcre2_set_heap_limit(mc, SHAPE_HEAP_LIMIT);
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, mc);
        if (rc >= 0)
            rc = 1;
        else if (rc == PCRE2_ERROR_NOMATCH)
            rc = 0;
    }
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_general_context_free(g);
    return rc;
}

/* Characters in a UTF-8 string: bytes that do not continue a sequence. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

/* The deepest bracket nesting in JSON text s[0..len), strings skipped. */
static int json_depth(const char *s, size_t len)
{
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

/* Appends s[0..n), quoted as JSON and cut at about max bytes (on a
 * character boundary) with "..." after the quote when cut, so a problem
 * never repeats a long reply back. */
static sk_status add_quoted_n(sk_buf *b, const char *s, size_t n, size_t max)
{
    size_t cut = n;
    if (cut > max) {
        cut = max;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
    }
    sk_status rc = buf_add_json_str(b, s, cut);
    if (rc == SK_OK && cut < n)
        rc = buf_adds(b, "...");
    return rc;
}

static sk_status add_quoted(sk_buf *b, const char *s)
{
    return add_quoted_n(b, s, strlen(s), SHAPE_QUOTE_MAX);
}

/* The same as a new string.  Caller frees; NULL when memory ran out. */
static char *quote_text(const char *s, size_t n, size_t max)
{
    sk_buf b;
    buf_init(&b, 0);
    if (add_quoted_n(&b, s, n, max) != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static sk_status add_number(sk_buf *b, double d)
{
    char s[64];
    snprintf(s, sizeof s, "%.15g", d);
    if (strtod(s, NULL) != d)
        snprintf(s, sizeof s, "%.17g", d);
    return buf_adds(b, s);
}

/* A JSON value in a few words: strings and scalars as written, containers
 * by kind, so a problem never repeats a large reply back. */
static sk_status add_value(sk_buf *b, const cJSON *v)
{
    if (cJSON_IsString(v))
        return add_quoted(b, v->valuestring);
    if (cJSON_IsNumber(v))
        return add_number(b, v->valuedouble);
    if (cJSON_IsTrue(v))
        return buf_adds(b, "true");
    if (cJSON_IsFalse(v))
        return buf_adds(b, "false");
    if (cJSON_IsNull(v))
        return buf_adds(b, "null");
    if (cJSON_IsArray(v))
        return buf_adds(b, "an array");
    return buf_adds(b, "an object");
}

static const char *const type_names[] = {"string", "number", "integer",
                                         "boolean", "null", "object", "array"};
static const char *const type_words[] = {"a string", "a number",
                                         "an integer", "a boolean", "null",
                                         "an object", "an array"};
#define N_TYPES (sizeof type_names / sizeof *type_names)

static int type_index(const char *name)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(name, type_names[i]) == 0)
            return (int)i;
    return -1;
}

static int is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
           floor(v->valuedouble) == v->valuedouble;
}

static int has_type(const cJSON *v, int t)
{
    switch (t) {
    case 0: return cJSON_IsString(v);
    case 1: return cJSON_IsNumber(v);
    case 2: return is_integer(v);
    case 3: return cJSON_IsBool(v);
    case 4: return cJSON_IsNull(v);
    case 5: return cJSON_IsObject(v);
    case 6: return cJSON_IsArray(v);
    }
    return 0;
}

/* A key as a path segment: .name for identifier-like keys, else ["k"]. */
static sk_status add_key_segment(sk_buf *b, const char *key)
{
    int plain = *key && !isdigit((unsigned char)*key);
    for (const char *p = key; plain && *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            plain = 0;
    if (plain) {
        sk_status rc = buf_addc(b, '.');
        return rc == SK_OK ? buf_adds(b, key) : rc;
    }
    sk_status rc = buf_addc(b, '[');
    if (rc == SK_OK)
        rc = buf_add_json_str(b, key, strlen(key));
    return rc == SK_OK ? buf_addc(b, ']') : rc;
}

/* ======================================================================
 * Schema checking (at load)
 * ====================================================================== */

typedef struct schk {
    sk_buf path;   /* "json_schema.properties.age" */
    char *msg;     /* the first problem, owned */
    int nomem;
} schk;

/* Records "path: message" as the problem.  Returns 0 for the caller to
 * pass up. */
static int sbad(schk *c, const char *fmt, ...) SK_PRINTF(2, 3);
static int sbad(schk *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (!m) {
        c->nomem = 1;
        return 0;
    }
    c->msg = sk_asprintf("%s: %s", c->path.p ? c->path.p : "", m);
    free(m);
    if (!c->msg)
        c->nomem = 1;
    return 0;
}

static int check_schema(schk *c, const cJSON *s, int depth);

static int push_key(schk *c, const char *key, size_t *mark)
{
    *mark = c->path.len;
    if (add_key_segment(&c->path, key) != SK_OK) {
        c->nomem = 1;
        return 0;
    }
    return 1;
}

static int push_index(schk *c, int i, size_t *mark)
{
    *mark = c->path.len;
    if (buf_printf(&c->path, "[%d]", i) != SK_OK) {
        c->nomem = 1;
        return 0;
    }
    return 1;
}

static void pop(sk_buf *b, size_t mark)
{
    b->len = mark;
    if (b->p)
        b->p[mark] = '\0';
}

static int check_sub(schk *c, const cJSON *s, const char *key, int depth)
{
    size_t mark;
    if (!push_key(c, key, &mark))
        return 0;
    int ok = check_schema(c, s, depth + 1);
    if (ok)
        pop(&c->path, mark);
    return ok;
}

static int check_count(schk *c, const cJSON *v, const char *key)
{
    if (!v)
        return 1;
    if (!is_integer(v) || v->valuedouble < 0 || v->valuedouble > 1e15) {
        size_t mark;
        if (push_key(c, key, &mark))
            sbad(c, "expected a non-negative integer");
        return 0;
    }
    return 1;
}

static int check_number(schk *c, const cJSON *v, const char *key)
{
    if (!v || (cJSON_IsNumber(v) && isfinite(v->valuedouble)))
        return 1;
    size_t mark;
    if (push_key(c, key, &mark))
        sbad(c, "expected a number");
    return 0;
}

/* Checks that s is a schema this validator understands.  On a problem
 * returns 0 with c->msg set (or c->nomem), the path left pointing at it. */
static int check_schema(schk *c, const cJSON *s, int depth)
{
    if (depth > SHAPE_MAX_DEPTH)
        return sbad(c, "schemas nest deeper than %d levels", SHAPE_MAX_DEPTH);
    if (cJSON_IsBool(s))
        return 1;
    if (!cJSON_IsObject(s))
        return sbad(c, "expected a schema (an object or a boolean)");
    size_t mark;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (t) {
        if (!push_key(c, "type", &mark))
            return 0;
        if (cJSON_IsString(t)) {
            if (type_index(t->valuestring) < 0)
                return sbad(c, "unknown type \"%s\" (known: string, number, "
                               "integer, boolean, null, object, array)",
                            t->valuestring);
        } else if (cJSON_IsArray(t) && cJSON_GetArraySize(t) > 0) {
            const cJSON *e;
            cJSON_ArrayForEach(e, t)
                if (!cJSON_IsString(e) || type_index(e->valuestring) < 0)
                    return sbad(c, "expected type names (string, number, "
                                   "integer, boolean, null, object, array)");
        } else {
            return sbad(c, "expected a type name or an array of them");
        }
        pop(&c->path, mark);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (v && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)) {
        if (push_key(c, "enum", &mark))
            sbad(c, "expected a non-empty array of values");
        return 0;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "required"))) {
        if (!push_key(c, "required", &mark))
            return 0;
        if (!cJSON_IsArray(v))
            return sbad(c, "expected an array of property names");
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
            if (!cJSON_IsString(e))
                return sbad(c, "expected an array of property names");
        pop(&c->path, mark);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "properties"))) {
        if (!push_key(c, "properties", &mark))
            return 0;
        if (!cJSON_IsObject(v))
            return sbad(c, "expected an object mapping names to schemas");
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
            if (!check_sub(c, e, e->string, depth))
                return 0;
        pop(&c->path, mark);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties")) &&
        !check_sub(c, v, "additionalProperties", depth))
        return 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "items")) &&
        !check_sub(c, v, "items", depth))
        return 0;
    static const char *const counts[] = {"minItems", "maxItems", "minLength",
                                         "maxLength"};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        if (!check_count(c, cJSON_GetObjectItemCaseSensitive(s, counts[i]),
                         counts[i]))
            return 0;
    static const char *const nums[] = {"minimum", "maximum",
                                       "exclusiveMinimum", "exclusiveMaximum"};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        if (!check_number(c, cJSON_GetObjectItemCaseSensitive(s, nums[i]),
                          nums[i]))
            return 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "pattern"))) {
        if (!push_key(c, "pattern", &mark))
            return 0;
        if (!cJSON_IsString(v))
            return sbad(c, "expected a regular expression (a string)");
        pcre2_code *re;
        char *m;
        sk_status rc = re_compile(v->valuestring, &re, &m);
        if (rc == SK_NOMEM) {
            c->nomem = 1;
            return 0;
        }
        if (rc != SK_OK) {
            sbad(c, "invalid regular expression: %s", m);
            free(m);
            return 0;
        }
        pcre2_code_free(re);
        pop(&c->path, mark);
    }
    static const char *const combos[] = {"anyOf", "oneOf", "allOf"};
    for (size_t i = 0; i < sizeof combos / sizeof *combos; i++) {
        if (!(v = cJSON_GetObjectItemCaseSensitive(s, combos[i])))
            continue;
        if (!push_key(c, combos[i], &mark))
            return 0;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return sbad(c, "expected a non-empty array of schemas");
        int j = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            size_t m2;
            if (!push_index(c, j++, &m2) || !check_schema(c, e, depth + 1))
                return 0;
            pop(&c->path, m2);
        }
        pop(&c->path, mark);
    }
    return 1;
}

/* ======================================================================
 * Validation
 * ====================================================================== */

typedef struct vctx {
    sk_buf path;       /* "$.items[2].name" */
    sk_buf out;        /* problems, joined by "; " */
    int n_problems;
    int limit;         /* problems to record before stopping */
    long steps;
    int nomem;
} vctx;

/* Records "path: message" as a problem.  Returns 0 (the value fails). */
static int vbad(vctx *c, const char *fmt, ...) SK_PRINTF(2, 3);
static int vbad(vctx *c, const char *fmt, ...)
{
    if (c->n_problems++ >= c->limit)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    char *m = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (!m) {
        c->nomem = 1;
        return 0;
    }
    sk_status rc = SK_OK;
    if (c->out.len)
        rc = buf_adds(&c->out, "; ");
    if (rc == SK_OK)
        rc = buf_printf(&c->out, "%s: %s", c->path.p ? c->path.p : "$", m);
    if (rc == SK_NOMEM)
        c->nomem = 1;
    free(m); /* SK_TOO_LARGE: the report is long enough already */
    return 0;
}

/* Like vbad, with the offending value described after the message. */
static int vbad_got(vctx *c, const cJSON *v, const char *expected)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, expected);
    if (rc == SK_OK)
        rc = buf_adds(&b, ", got ");
    if (rc == SK_OK)
        rc = add_value(&b, v);
    if (rc != SK_OK) {
        buf_free(&b);
        c->nomem = 1;
        return 0;
    }
    vbad(c, "%s", b.p);
    buf_free(&b);
    return 0;
}

static int validate(vctx *c, const cJSON *v, const cJSON *s);

/* 1 if v passes s, checked quietly in a scratch context; its first
 * problem goes to *first (caller frees) when first is non-NULL.  -1 when
 * memory ran out. */
static int try_branch(vctx *c, const cJSON *v, const cJSON *s, char **first)
{
    vctx sub;
    memset(&sub, 0, sizeof sub);
    buf_init(&sub.path, 0);
    buf_init(&sub.out, SHAPE_PROBLEM_MAX);
    sub.limit = 1;
    sub.steps = c->steps;
    int ok = buf_adds(&sub.path, c->path.p ? c->path.p : "$") == SK_OK
                 ? validate(&sub, v, s)
                 : (sub.nomem = 1, 0);
    c->steps = sub.steps;
    if (first && !ok && !sub.nomem && sub.out.p && !(*first = buf_steal(&sub.out)))
        sub.nomem = 1;
    buf_free(&sub.path);
    buf_free(&sub.out);
    if (sub.nomem) {
        c->nomem = 1;
        return -1;
    }
    return ok;
}

/* The expected type(s) in words: "an integer", "a string or null". */
static char *type_phrase(const cJSON *t)
{
    if (cJSON_IsString(t))
        return sk_strdup(type_words[type_index(t->valuestring)]);
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = SK_OK;
    int n = cJSON_GetArraySize(t), i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, t) {
        if (i > 0)
            rc = buf_adds(&b, i == n - 1 ? " or " : ", ");
        if (rc == SK_OK)
            rc = buf_adds(&b, type_words[type_index(e->valuestring)]);
        i++;
    }
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static int check_type(vctx *c, const cJSON *v, const cJSON *t)
{
    if (cJSON_IsString(t)) {
        if (has_type(v, type_index(t->valuestring)))
            return 1;
    } else {
        const cJSON *e;
        cJSON_ArrayForEach(e, t)
            if (has_type(v, type_index(e->valuestring)))
                return 1;
    }
    char *want = type_phrase(t);
    if (!want) {
        c->nomem = 1;
        return 0;
    }
    char *exp = sk_asprintf("expected %s", want);
    free(want);
    if (!exp) {
        c->nomem = 1;
        return 0;
    }
    vbad_got(c, v, exp);
    free(exp);
    return 0;
}

static int check_enum(vctx *c, const cJSON *v, const cJSON *en)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, en)
        if (cJSON_Compare(v, e, 1))
            return 1;
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "expected one of ");
    int i = 0;
    cJSON_ArrayForEach(e, en) {
        if (rc != SK_OK)
            break;
        if (i == 10) {
            rc = buf_adds(&b, ", ...");
            break;
        }
        if (i++)
            rc = buf_adds(&b, ", ");
        if (rc == SK_OK)
            rc = add_value(&b, e);
    }
    if (rc != SK_OK) {
        buf_free(&b);
        c->nomem = 1;
        return 0;
    }
    vbad_got(c, v, b.p);
    buf_free(&b);
    return 0;
}

static int check_object(vctx *c, const cJSON *v, const cJSON *s)
{
    int ok = 1;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *e;
    cJSON_ArrayForEach(e, req) {
        if (!cJSON_GetObjectItemCaseSensitive(v, e->valuestring)) {
            sk_buf q;
            buf_init(&q, 0);
            if (add_quoted(&q, e->valuestring) != SK_OK) {
                c->nomem = 1;
                return 0;
            }
            ok = vbad(c, "missing required property %s", q.p);
            buf_free(&q);
            if (c->nomem)
                return 0;
        }
    }
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    cJSON_ArrayForEach(e, v) {
        const cJSON *sub = props ? cJSON_GetObjectItemCaseSensitive(props, e->string)
                                 : NULL;
        size_t mark = c->path.len;
        if (add_key_segment(&c->path, e->string) != SK_OK) {
            c->nomem = 1;
            return 0;
        }
        if (sub) {
            ok &= validate(c, e, sub);
        } else if (cJSON_IsFalse(extra)) {
            pop(&c->path, mark);
            sk_buf q;
            buf_init(&q, 0);
            sk_status rc = add_quoted(&q, e->string);
            if (rc == SK_OK && props && props->child) {
                rc = buf_adds(&q, " (allowed: ");
                for (const cJSON *p = props->child; rc == SK_OK && p; p = p->next)
                    rc = buf_printf(&q, "%s%s", p == props->child ? "" : ", ",
                                    p->string);
                if (rc == SK_OK)
                    rc = buf_addc(&q, ')');
            }
            if (rc == SK_NOMEM) {
                buf_free(&q);
                c->nomem = 1;
                return 0;
            }
            ok = vbad(c, "unexpected property %s", q.p ? q.p : "");
            buf_free(&q);
        } else if (cJSON_IsObject(extra)) {
            ok &= validate(c, e, extra);
        }
        pop(&c->path, mark);
        if (c->nomem)
            return 0;
    }
    return ok;
}

static int check_array(vctx *c, const cJSON *v, const cJSON *s)
{
    int ok = 1;
    int n = cJSON_GetArraySize(v);
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s, "minItems");
    if (lim && n < lim->valuedouble)
        ok = vbad(c, "expected at least %.0f item%s, got %d", lim->valuedouble,
                  lim->valuedouble == 1 ? "" : "s", n);
    lim = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
    if (lim && n > lim->valuedouble)
        ok = vbad(c, "expected at most %.0f item%s, got %d", lim->valuedouble,
                  lim->valuedouble == 1 ? "" : "s", n);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    if (!items)
        return ok;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        size_t mark = c->path.len;
        if (buf_printf(&c->path, "[%d]", i++) != SK_OK) {
            c->nomem = 1;
            return 0;
        }
        ok &= validate(c, e, items);
        pop(&c->path, mark);
        /* a quiet check only needs to know that something failed */
        if (c->nomem || (c->limit == 1 && c->n_problems))
            return 0;
    }
    return ok;
}

static int check_string(vctx *c, const cJSON *v, const cJSON *s)
{
    int ok = 1;
    size_t n = utf8_len(v->valuestring);
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s, "minLength");
    if (lim && (double)n < lim->valuedouble)
        ok = vbad(c, "expected at least %.0f character%s, got %zu",
                  lim->valuedouble, lim->valuedouble == 1 ? "" : "s", n);
    lim = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
    if (lim && (double)n > lim->valuedouble)
        ok = vbad(c, "expected at most %.0f character%s, got %zu",
                  lim->valuedouble, lim->valuedouble == 1 ? "" : "s", n);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    if (pat) {
        pcre2_code *re;
        char *m;
        sk_status rc = re_compile(pat->valuestring, &re, &m);
        if (rc != SK_OK) {
            free(m);
            if (rc == SK_NOMEM)
                c->nomem = 1;
            else
                ok = vbad(c, "the schema's pattern does not compile");
            return 0;
        }
        int r = re_search(re, v->valuestring, strlen(v->valuestring));
        pcre2_code_free(re);
        if (r == PCRE2_ERROR_NOMEMORY) {
            c->nomem = 1;
            return 0;
        }
        if (r != 1) {
            char *exp = sk_asprintf("expected a string matching /%s/%s",
                                    pat->valuestring,
                                    r < 0 ? " (the match ran past its limit)"
                                          : "");
            if (!exp) {
                c->nomem = 1;
                return 0;
            }
            ok = vbad_got(c, v, exp);
            free(exp);
        }
    }
    return ok;
}

static int check_number_range(vctx *c, const cJSON *v, const cJSON *s)
{
    static const struct {
        const char *key;
        const char *op;
        int sign; /* which side fails: -1 below, +1 above */
        int strict;
    } rules[] = {{"minimum", ">=", -1, 0},
                 {"maximum", "<=", 1, 0},
                 {"exclusiveMinimum", ">", -1, 1},
                 {"exclusiveMaximum", "<", 1, 1}};
    int ok = 1;
    double d = v->valuedouble;
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        const cJSON *lim = cJSON_GetObjectItemCaseSensitive(s, rules[i].key);
        if (!lim)
            continue;
        double l = lim->valuedouble;
        int fails = rules[i].sign < 0 ? (rules[i].strict ? d <= l : d < l)
                                      : (rules[i].strict ? d >= l : d > l);
        if (!fails)
            continue;
        sk_buf b;
        buf_init(&b, 0);
        sk_status rc = buf_printf(&b, "expected a number %s ", rules[i].op);
        if (rc == SK_OK)
            rc = add_number(&b, l);
        if (rc != SK_OK) {
            buf_free(&b);
            c->nomem = 1;
            return 0;
        }
        ok = vbad_got(c, v, b.p);
        buf_free(&b);
        if (c->nomem)
            return 0;
    }
    return ok;
}

static int check_combos(vctx *c, const cJSON *v, const cJSON *s)
{
    int ok = 1;
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *e;
    cJSON_ArrayForEach(e, all)
        if (!validate(c, v, e)) {
            ok = 0;
            if (c->nomem)
                return 0;
        }
    static const char *const keys[] = {"anyOf", "oneOf"};
    for (int k = 0; k < 2; k++) {
        const cJSON *alts = cJSON_GetObjectItemCaseSensitive(s, keys[k]);
        if (!alts)
            continue;
        int n = cJSON_GetArraySize(alts), matched = 0;
        char *first = NULL;
        cJSON_ArrayForEach(e, alts) {
            int r = try_branch(c, v, e, first ? NULL : &first);
            if (r < 0) {
                free(first);
                return 0;
            }
            matched += r;
            if (k == 0 && matched)
                break;
        }
        if (matched == 0)
            ok = vbad(c, "matches none of the %d alternatives%s%s%s", n,
                      first ? " (the first: " : "", first ? first : "",
                      first ? ")" : "");
        else if (k == 1 && matched > 1)
            ok = vbad(c, "matches %d of the alternatives, expected exactly one",
                      matched);
        free(first);
        if (c->nomem)
            return 0;
    }
    return ok;
}

/* 1 if v matches schema s.  Otherwise 0, with problems recorded in c
 * (c->nomem when memory ran out). */
static int validate(vctx *c, const cJSON *v, const cJSON *s)
{
    if (c->nomem)
        return 0;
    if (++c->steps > SHAPE_STEP_LIMIT)
        return vbad(c, "the schema is too complex to check this value");
    if (cJSON_IsTrue(s))
        return 1;
    if (cJSON_IsFalse(s))
        return vbad(c, "no value is allowed here");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (t && !check_type(c, v, t))
        return 0; /* the rest would only restate the type mismatch */
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (k && !cJSON_Compare(v, k, 1)) {
        sk_buf b;
        buf_init(&b, 0);
        sk_status rc = buf_adds(&b, "expected ");
        if (rc == SK_OK)
            rc = add_value(&b, k);
        if (rc != SK_OK) {
            buf_free(&b);
            c->nomem = 1;
            return 0;
        }
        vbad_got(c, v, b.p);
        buf_free(&b);
        return 0;
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (en && !check_enum(c, v, en))
        return 0;
    int ok = 1;
    if (cJSON_IsObject(v))
        ok &= check_object(c, v, s);
    else if (cJSON_IsArray(v))
        ok &= check_array(c, v, s);
    else if (cJSON_IsString(v))
        ok &= check_string(c, v, s);
    else if (cJSON_IsNumber(v))
        ok &= check_number_range(c, v, s);
    if (c->nomem)
        return 0;
    ok &= check_combos(c, v, s);
    return c->nomem ? 0 : ok;
}

/* 1 when JSON text stops inside a string or an open bracket: a reply cut
 * short, which deserves a plainer word than the parser's position. */
static int unfinished(const char *s, size_t len)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return in_str || depth > 0;
}

/* Parses JSON text s[0..len) with a depth limit.  NULL with *why (caller
 * frees) when it is not one JSON value; *why stays NULL on allocation
 * failure. */
static cJSON *parse_json(const char *s, size_t len, const char *what, char **why)
{
    *why = NULL;
    if (json_depth(s, len) > SHAPE_MAX_DEPTH) {
        *why = sk_asprintf("%s nests deeper than %d levels", what,
                           SHAPE_MAX_DEPTH);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (j) {
        while (end < s + len && isspace((unsigned char)*end))
            end++;
        if (end == s + len)
            return j;
        cJSON_Delete(j);
        *why = sk_asprintf("%s is not valid JSON: unexpected text after the "
                           "value at offset %zu", what, (size_t)(end - s));
        return NULL;
    }
    size_t off = end && end >= s && end <= s + len ? (size_t)(end - s) : len;
    if (off >= len || unfinished(s, len)) {
        *why = sk_asprintf("%s is not valid JSON: it ends too soon", what);
        return NULL;
    }
    char *near = quote_text(s + off, len - off, 20);
    *why = near ? sk_asprintf("%s is not valid JSON near %s", what, near) : NULL;
    free(near);
    return NULL;
}

/* Validates parsed v against parsed schema s.  The shape_check contract:
 * 1, or 0 with *problem, or -1. */
static int validate_tree(const cJSON *s, const cJSON *v, char **problem)
{
    vctx c;
    memset(&c, 0, sizeof c);
    buf_init(&c.path, 0);
    buf_init(&c.out, SHAPE_PROBLEM_MAX);
    c.limit = SHAPE_MAX_PROBLEMS;
    int ok = buf_addc(&c.path, '$') == SK_OK ? validate(&c, v, s) : (c.nomem = 1, 0);
    if (!ok && !c.nomem && c.n_problems > c.limit)
        (void)buf_printf(&c.out, " (and %d more)", c.n_problems - c.limit);
    int rc = c.nomem ? -1 : ok;
    if (rc == 0 && problem && !(*problem = buf_steal(&c.out)))
        rc = -1;
    buf_free(&c.path);
    buf_free(&c.out);
    return rc;
}

/* Checks schema text, for shape_validate_json: the parsed schema, or NULL
 * with *why (caller frees; NULL on allocation failure). */
static cJSON *load_schema(const char *text, char **why)
{
    *why = NULL;
    size_t len = strlen(text);
    if (len > SHAPE_MAX_BYTES) {
        *why = sk_asprintf("invalid schema: over the %zu-byte limit",
                           SHAPE_MAX_BYTES);
        return NULL;
    }
    char *m;
    cJSON *s = parse_json(text, len, "the schema", &m);
    if (!s) {
        *why = m ? sk_asprintf("invalid schema: %s", m) : NULL;
        free(m);
        return NULL;
    }
    schk c;
    memset(&c, 0, sizeof c);
    buf_init(&c.path, 0);
    if (buf_adds(&c.path, "schema") != SK_OK || !check_schema(&c, s, 0)) {
        if (c.msg)
            *why = sk_asprintf("invalid schema: %s", c.msg);
        free(c.msg);
        buf_free(&c.path);
        cJSON_Delete(s);
        return NULL;
    }
    buf_free(&c.path);
    return s;
}

int shape_validate_json(const char *schema_json, const char *json,
                        char **problem)
{
    if (problem)
        *problem = NULL;
    char *why;
    cJSON *s = load_schema(schema_json ? schema_json : "", &why);
    if (!s) {
        if (!why)
            return -1;
        if (problem)
            *problem = why;
        else
            free(why);
        return 0;
    }
    json = json ? json : "";
    cJSON *v = parse_json(json, strlen(json), "the value", &why);
    int rc;
    if (!v) {
        rc = why ? 0 : -1;
        if (problem)
            *problem = why;
        else
            free(why);
    } else {
        rc = validate_tree(s, v, problem);
    }
    cJSON_Delete(v);
    cJSON_Delete(s);
    return rc;
}

/* ======================================================================
 * Finding the JSON in a reply
 * ====================================================================== */

/* The end (one past) of the bracketed value starting at s[0] ('{' or
 * '['), respecting strings; 0 when the brackets never balance. */
static size_t match_bracket(const char *s, size_t len)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return i + 1;
        }
    }
    return 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* Tries s[0..len) as the whole answer.  1 with *out (caller deletes) and
 * the span; 0 if it does not parse; -1 on allocation failure.  *why gets
 * the first reason seen (caller frees). */
static int try_json(const char *s, size_t len, cJSON **out, const char **at,
                    size_t *at_len, char **why)
{
    trim(&s, &len);
    if (!len)
        return 0;
    char *m;
    cJSON *j = parse_json(s, len, "the reply", &m);
    if (!j) {
        if (!m)
            return -1;
        if (!*why)
            *why = m;
        else
            free(m);
        return 0;
    }
    *out = j;
    *at = s;
    *at_len = len;
    return 1;
}

/* Finds the JSON value in a model's reply: the whole reply, else the
 * first ```fence``` whose content parses, else the first bracketed span
 * that parses.  Returns 1 with *out and the span, 0 with *problem, -1. */
static int extract_json(const char *reply, cJSON **out, const char **at,
                        size_t *at_len, char **problem)
{
    size_t len = strlen(reply);
    char *why_whole = NULL, *why = NULL;
    int r = try_json(reply, len, out, at, at_len, &why_whole);
    for (const char *f = strstr(reply, "```"); r == 0 && f;) {
        const char *body = f + 3;
        while (*body && *body != '\n' && *body != '`') /* language tag */
            body++;
        const char *close = strstr(body, "```");
        if (!close)
            break;
        r = try_json(body, (size_t)(close - body), out, at, at_len, &why);
        f = strstr(close + 3, "```");
    }
    int tries = 0;
    for (size_t i = 0; r == 0 && i < len && tries < SHAPE_MAX_CANDIDATES; i++) {
        if (reply[i] != '{' && reply[i] != '[')
            continue;
        tries++;
        size_t end = match_bracket(reply + i, len - i);
        r = try_json(reply + i, end ? end : len - i, out, at, at_len, &why);
    }
    /* The whole reply's parse error helps only when the reply looks like
     * JSON; for prose, "no JSON" is the useful thing to say. */
    const char *first = reply;
    while (isspace((unsigned char)*first))
        first++;
    if (!why && *first && strchr("{[\"-0123456789", *first)) {
        why = why_whole;
        why_whole = NULL;
    }
    free(why_whole);
    if (r == 0) {
        if (!why)
            why = sk_strdup("expected a JSON value, but the reply contains none");
        if (!why)
            r = -1;
        *problem = why;
        return r;
    }
    free(why);
    return r;
}

/* ======================================================================
 * Shapes
 * ====================================================================== */

void shape_free(sk_shape *s)
{
    if (!s)
        return;
    free(s->schema);
    for (size_t i = 0; i < s->n_choices; i++)
        free(s->choices[i]);
    free(s->choices);
    free(s->regex);
    pcre2_code_free(s->re);
    free(s);
}

sk_shape *shape_clone(const sk_shape *s)
{
    if (!s)
        return NULL;
    sk_shape *c = sk_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = s->kind;
    c->retries = s->retries;
    if (s->schema && !(c->schema = sk_strdup(s->schema)))
        goto fail;
    if (s->regex && !(c->regex = sk_strdup(s->regex)))
        goto fail;
    if (s->re && !(c->re = pcre2_code_copy(s->re)))
        goto fail;
    if (s->n_choices) {
        if (!(c->choices = sk_calloc(s->n_choices, sizeof *c->choices)))
            goto fail;
        for (; c->n_choices < s->n_choices; c->n_choices++)
            if (!(c->choices[c->n_choices] = sk_strdup(s->choices[c->n_choices])))
                goto fail;
    }
    return c;
fail:
    shape_free(c);
    return NULL;
}

int shape_retries(const sk_shape *s)
{
    return s ? s->retries : 0;
}

void shape_request(const sk_shape *s, const char **json_schema,
                   char *const **choices, size_t *n_choices, const char **regex)
{
    if (json_schema)
        *json_schema = s && s->kind == SHAPE_JSON ? s->schema : NULL;
    if (choices)
        *choices = s && s->kind == SHAPE_CHOICE ? s->choices : NULL;
    if (n_choices)
        *n_choices = s && s->kind == SHAPE_CHOICE ? s->n_choices : 0;
    if (regex)
        *regex = s && s->kind == SHAPE_REGEX ? s->regex : NULL;
}

/* Sets *errmsg to "origin: output[.key]: message".  Returns SK_CONFIG, or
 * SK_NOMEM when the message could not be made. */
static sk_status perr(char **errmsg, const char *origin, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_status perr(char **errmsg, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (m && origin && *origin)
        *errmsg = sk_asprintf("%s: %s", origin, m);
    else
        *errmsg = m ? sk_strdup(m) : NULL;
    free(m);
    return *errmsg ? SK_CONFIG : SK_NOMEM;
}

static sk_status parse_json_schema(sk_shape *sh, const cJSON *v,
                                   const char *origin, char **errmsg)
{
    schk c;
    memset(&c, 0, sizeof c);
    buf_init(&c.path, 0);
    if (buf_adds(&c.path, "output.json_schema") != SK_OK ||
        !check_schema(&c, v, 0)) {
        sk_status rc = c.msg ? perr(errmsg, origin, "%s", c.msg) : SK_NOMEM;
        free(c.msg);
        buf_free(&c.path);
        return rc;
    }
    buf_free(&c.path);
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        return SK_NOMEM;
    sh->schema = sk_strdup(text);
    cJSON_free(text);
    return sh->schema ? SK_OK : SK_NOMEM;
}

static sk_status parse_choices(sk_shape *sh, const cJSON *v, const char *origin,
                               char **errmsg)
{
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n == 0)
        return perr(errmsg, origin, "output.choice: expected a non-empty "
                                    "array of strings");
    if (n > SHAPE_MAX_CHOICES)
        return perr(errmsg, origin, "output.choice: more than %d choices",
                    SHAPE_MAX_CHOICES);
    if (!(sh->choices = sk_calloc((size_t)n, sizeof *sh->choices)))
        return SK_NOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        size_t i = sh->n_choices;
        if (!cJSON_IsString(e) || !*e->valuestring)
            return perr(errmsg, origin, "output.choice[%zu]: expected a "
                                        "non-empty string", i);
        const char *p = e->valuestring;
        size_t len = strlen(p);
        trim(&p, &len);
        if (!len || len > SHAPE_MAX_CHOICE_LEN)
            return perr(errmsg, origin, "output.choice[%zu]: expected text of "
                                        "1 to %d bytes", i, SHAPE_MAX_CHOICE_LEN);
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(sh->choices[j], e->valuestring) == 0)
                return perr(errmsg, origin, "output.choice[%zu]: \"%s\" is "
                                            "listed twice", i, e->valuestring);
        if (!(sh->choices[i] = sk_strdup(e->valuestring)))
            return SK_NOMEM;
        sh->n_choices++;
    }
    return SK_OK;
}

sk_status shape_parse(const char *json, size_t len, const char *origin,
                      sk_shape **out, char **errmsg)
{
    *out = NULL;
    *errmsg = NULL;
    if (len > SHAPE_MAX_BYTES)
        return perr(errmsg, origin, "output: over the %zu-byte limit",
                    SHAPE_MAX_BYTES);
    char *why;
    cJSON *root = parse_json(json, len, "output", &why);
    if (!root) {
        if (!why)
            return SK_NOMEM;
        sk_status rc = perr(errmsg, origin, "%s", why);
        free(why);
        return rc;
    }
    sk_status rc = SK_OK;
    sk_shape *sh = sk_calloc(1, sizeof *sh);
    if (!sh) {
        rc = SK_NOMEM;
        goto done;
    }
    sh->retries = SHAPE_DEFAULT_RETRIES;
    if (!cJSON_IsObject(root)) {
        rc = perr(errmsg, origin, "output: expected an object with "
                                  "\"json_schema\", \"choice\" or \"regex\"");
        goto done;
    }
    int kinds = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *k = e->string;
        if (strcmp(k, "json_schema") == 0) {
            kinds++;
            sh->kind = SHAPE_JSON;
            rc = parse_json_schema(sh, e, origin, errmsg);
        } else if (strcmp(k, "choice") == 0) {
            kinds++;
            sh->kind = SHAPE_CHOICE;
            rc = parse_choices(sh, e, origin, errmsg);
        } else if (strcmp(k, "regex") == 0) {
            kinds++;
            sh->kind = SHAPE_REGEX;
            if (!cJSON_IsString(e) || !*e->valuestring) {
                rc = perr(errmsg, origin, "output.regex: expected a regular "
                                          "expression (a non-empty string)");
            } else if (!(sh->regex = sk_strdup(e->valuestring))) {
                rc = SK_NOMEM;
            } else {
                char *m;
                rc = re_compile(sh->regex, &sh->re, &m);
                if (rc == SK_CONFIG) {
                    rc = perr(errmsg, origin, "output.regex: invalid regular "
                                              "expression: %s", m);
                    free(m);
                }
            }
        } else if (strcmp(k, "retries") == 0) {
            if (!is_integer(e) || e->valuedouble < 0 ||
                e->valuedouble > SHAPE_MAX_RETRIES)
                rc = perr(errmsg, origin, "output.retries: expected an integer "
                                          "from 0 to %d", SHAPE_MAX_RETRIES);
            else
                sh->retries = (int)e->valuedouble;
        } else {
            rc = perr(errmsg, origin, "output: unknown key \"%s\" (known: "
                                      "json_schema, choice, regex, retries)", k);
        }
        if (rc != SK_OK)
            goto done;
        if (kinds > 1) {
            rc = perr(errmsg, origin, "output: give only one of "
                                      "\"json_schema\", \"choice\" and \"regex\"");
            goto done;
        }
    }
    if (kinds == 0)
        rc = perr(errmsg, origin, "output: expected one of \"json_schema\", "
                                  "\"choice\" or \"regex\"");
done:
    cJSON_Delete(root);
    if (rc != SK_OK) {
        shape_free(sh);
        if (rc == SK_NOMEM) {
            free(*errmsg);
            *errmsg = NULL;
        }
        return rc;
    }
    *out = sh;
    return SK_OK;
}

/* ======================================================================
 * Checking a reply
 * ====================================================================== */

static int is_wrap(char c)
{
    return c == '"' || c == '\'' || c == '`' || c == '*' || c == '_';
}

static int is_trailing_punct(char c)
{
    return c == '.' || c == '!' || c == ',' || c == ';' || c == ':' || c == '?';
}

/* Trims whitespace, wrapping quotes or emphasis and trailing punctuation,
 * repeatedly, so that "**Yes.**" and "'no'." both reduce to the word. */
static void normalise_choice(const char **s, size_t *len)
{
    size_t before;
    do {
        before = *len;
        trim(s, len);
        while (*len && is_trailing_punct((*s)[*len - 1]))
            (*len)--;
        while (*len >= 2 && is_wrap(**s) && (*s)[*len - 1] == **s) {
            (*s)++;
            *len -= 2;
        }
    } while (*len != before);
}

static int check_choice(const sk_shape *s, const char *reply, char **problem,
                        char **clean)
{
    const char *p = reply;
    size_t len = strlen(reply);
    normalise_choice(&p, &len);
    for (size_t i = 0; i < s->n_choices; i++) {
        const char *c = s->choices[i];
        size_t clen = strlen(c);
        normalise_choice(&c, &clen);
        if (clen == len && strncasecmp(c, p, len) == 0) {
            if (clean && !(*clean = sk_strdup(s->choices[i])))
                return -1;
            return 1;
        }
    }
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "expected exactly one of: ");
    for (size_t i = 0; rc == SK_OK && i < s->n_choices; i++) {
        if (i)
            rc = buf_adds(&b, ", ");
        if (rc == SK_OK)
            rc = buf_adds(&b, s->choices[i]);
    }
    char *q = rc == SK_OK ? quote_text(p, len, SHAPE_QUOTE_MAX) : NULL;
    if (q)
        rc = buf_printf(&b, "; got %s", q);
    free(q);
    if (!q || rc != SK_OK || !(*problem = buf_steal(&b))) {
        buf_free(&b);
        return -1;
    }
    return 0;
}

static int check_regex(const sk_shape *s, const char *reply, char **problem,
                       char **clean)
{
    const char *p = reply;
    size_t len = strlen(reply);
    trim(&p, &len);
    int r = re_search(s->re, p, len);
    if (r == PCRE2_ERROR_NOMEMORY)
        return -1;
    if (r == 1) {
        if (clean && !(*clean = sk_strndup(p, len)))
            return -1;
        return 1;
    }
    char *q = quote_text(p, len, SHAPE_QUOTE_MAX);
    if (!q)
        return -1;
    *problem = sk_asprintf("expected a reply matching /%s/%s, got %s", s->regex,
                           r < 0 ? " (the match ran past its limit)" : "", q);
    free(q);
    return *problem ? 0 : -1;
}

static int check_json(const sk_shape *s, const char *reply, char **problem,
                      char **clean)
{
    char *why;
    cJSON *schema = parse_json(s->schema, strlen(s->schema), "the schema", &why);
    if (!schema) {
        free(why); /* checked at load: only memory can fail here */
        return -1;
    }
    cJSON *v = NULL;
    const char *at = NULL;
    size_t at_len = 0;
    int rc = extract_json(reply, &v, &at, &at_len, problem);
    if (rc == 1)
        rc = validate_tree(schema, v, problem);
    if (rc == 1 && clean && !(*clean = sk_strndup(at, at_len)))
        rc = -1;
    cJSON_Delete(v);
    cJSON_Delete(schema);
    return rc;
}

int shape_check(const sk_shape *s, const char *reply, char **problem,
                char **clean)
{
    char *scratch = NULL;
    if (!problem)
        problem = &scratch;
    *problem = NULL;
    if (clean)
        *clean = NULL;
    reply = reply ? reply : "";
    int rc;
    if (!s) {
        rc = clean && !(*clean = sk_strdup(reply)) ? -1 : 1;
    } else if (s->kind == SHAPE_CHOICE) {
        rc = check_choice(s, reply, problem, clean);
    } else if (s->kind == SHAPE_REGEX) {
        rc = check_regex(s, reply, problem, clean);
    } else {
        rc = check_json(s, reply, problem, clean);
    }
    if (rc != 0) {
        free(*problem);
        *problem = NULL;
    }
    if (rc != 1 && clean) {
        free(*clean);
        *clean = NULL;
    }
    free(scratch);
    return rc;
}
