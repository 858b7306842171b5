/*
 * util.c -- allocation, growing buffers, variable sets and structured
 * errors: the small pieces every other file uses.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/base.h"

/* ---- allocation -------------------------------------------------------- */

/* Countdown for allocation-failure tests.  Test-only knob: it is the one
 * piece of process-wide state, and only the test suite sets it. */
static long fail_countdown;

void sk_alloc_fail_at(long n) { fail_countdown = n; }

static int should_fail(void)
{
    if (fail_countdown <= 0)
        return 0;
    return --fail_countdown == 0;
}

void *sk_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *sk_calloc(size_t n, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *sk_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *sk_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *d = sk_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sk_strdup(const char *s) { return s ? sk_strndup(s, strlen(s)) : NULL; }

char *sk_vasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = sk_malloc((size_t)n + 1);
    if (!s)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *sk_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = sk_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

sk_status sk_read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    if (len)
        *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return SK_IO;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        errno = EISDIR;
        return SK_IO;
    }
    sk_buf b;
    buf_init(&b, max);
    char chunk[16384];
    size_t n;
    sk_status rc = SK_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((rc = buf_add(&b, chunk, n)) != SK_OK)
            break;
    }
    if (rc == SK_OK && ferror(f))
        rc = SK_IO;
    int saved = errno;
    fclose(f);
    if (rc != SK_OK) {
        buf_free(&b);
        errno = saved;
        return rc;
    }
    if (len)
        *len = b.len;
    *out = buf_steal(&b);
    return *out ? SK_OK : SK_NOMEM;
}

void sk_free(void *p) { free(p); }

void sk_line_col(const char *text, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && text[i]; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Levenshtein distance, capped: for "did you mean" suggestions. */
size_t sk_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) !=
                          tolower((unsigned char)b[j - 1]);
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* ---- buffers ----------------------------------------------------------- */

#define BUF_DEFAULT_MAX ((size_t)64 << 20)

void buf_init(sk_buf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

sk_status buf_add(sk_buf *b, const char *s, size_t n)
{
    size_t max = b->max ? b->max : BUF_DEFAULT_MAX;
    if (n > max || b->len > max - n)
        return SK_TOO_LARGE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *p = sk_realloc(b->p, cap);
        if (!p)
            return SK_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return SK_OK;
}

sk_status buf_adds(sk_buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

sk_status buf_addc(sk_buf *b, char c) { return buf_add(b, &c, 1); }

sk_status buf_printf(sk_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SK_USAGE;
    if ((size_t)n < sizeof small)
        return buf_add(b, small, (size_t)n);
    char *big = sk_malloc((size_t)n + 1);
    if (!big)
        return SK_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sk_status rc = buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

sk_status buf_add_json_str(sk_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sk_status rc = buf_addc(b, '"');
    size_t run = 0; /* start of the pending run of plain bytes */
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
                u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            rc = buf_add(b, s + run, i - run);
            if (rc == SK_OK)
                rc = buf_adds(b, esc);
            run = i + 1;
        }
    }
    if (rc == SK_OK)
        rc = buf_add(b, s + run, n - run);
    if (rc == SK_OK)
        rc = buf_addc(b, '"');
    return rc;
}

char *buf_steal(sk_buf *b)
{
    char *p = b->p;
    if (!p)
        p = sk_strdup("");
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_reset(sk_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void buf_free(sk_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- variables --------------------------------------------------------- */

sk_status sk_vars_new(sk_vars **out)
{
    if (!out)
        return SK_USAGE;
    *out = sk_calloc(1, sizeof **out);
    return *out ? SK_OK : SK_NOMEM;
}

void sk_vars_free(sk_vars *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        free(v->names[i]);
        free(v->values[i]);
    }
    free(v->names);
    free(v->values);
    free(v);
}

static long vars_index(const sk_vars *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcasecmp(v->names[i], name) == 0)
            return (long)i;
    return -1;
}

sk_status sk_vars_set(sk_vars *v, const char *name, const char *value)
{
    if (!v || !name)
        return SK_USAGE;
    long i = vars_index(v, name);
    if (!value) {
        if (i >= 0) {
            free(v->names[i]);
            free(v->values[i]);
            v->n--;
            memmove(v->names + i, v->names + i + 1,
                    (v->n - (size_t)i) * sizeof(char *));
            memmove(v->values + i, v->values + i + 1,
                    (v->n - (size_t)i) * sizeof(char *));
        }
        return SK_OK;
    }
    char *copy = sk_strdup(value);
    if (!copy)
        return SK_NOMEM;
    if (i >= 0) {
        free(v->values[i]);
        v->values[i] = copy;
        return SK_OK;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        char **names = sk_realloc(v->names, cap * sizeof(char *));
        if (!names) {
            free(copy);
            return SK_NOMEM;
        }
        v->names = names;
        char **values = sk_realloc(v->values, cap * sizeof(char *));
        if (!values) {
            free(copy);
            return SK_NOMEM;
        }
        v->values = values;
        v->cap = cap;
    }
    char *ncopy = sk_strdup(name);
    if (!ncopy) {
        free(copy);
        return SK_NOMEM;
    }
    v->names[v->n] = ncopy;
    v->values[v->n] = copy;
    v->n++;
    return SK_OK;
}

const char *sk_vars_get(const sk_vars *v, const char *name)
{
    if (!v || !name)
        return NULL;
    long i = vars_index(v, name);
    return i >= 0 ? v->values[i] : NULL;
}

size_t sk_vars_count(const sk_vars *v) { return v ? v->n : 0; }

sk_status sk_vars_at(const sk_vars *v, size_t i, const char **name,
                     const char **value)
{
    if (!v || i >= v->n)
        return SK_USAGE;
    if (name)
        *name = v->names[i];
    if (value)
        *value = v->values[i];
    return SK_OK;
}

sk_vars *vars_clone(const sk_vars *src)
{
    sk_vars *v;
    if (sk_vars_new(&v) != SK_OK)
        return NULL;
    for (size_t i = 0; src && i < src->n; i++) {
        if (sk_vars_set(v, src->names[i], src->values[i]) != SK_OK) {
            sk_vars_free(v);
            return NULL;
        }
    }
    return v;
}

/* ---- errors ------------------------------------------------------------ */

sk_err *err_newv(sk_status code, const char *fmt, va_list ap)
{
    sk_err *e = sk_calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->code = code;
    e->message = sk_vasprintf(fmt, ap);
    if (!e->message) {
        free(e);
        return NULL;
    }
    return e;
}

sk_err *err_new(sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err *e = err_newv(code, fmt, ap);
    va_end(ap);
    return e;
}

void err_free(sk_err *e)
{
    if (!e)
        return;
    free(e->message);
    free(e->function);
    for (size_t i = 0; i < e->n_chain; i++)
        free(e->chain[i]);
    free(e->chain);
    free(e->detail_json);
    free(e);
}

sk_err *err_clone(const sk_err *e)
{
    if (!e)
        return NULL;
    sk_err *c = err_new(e->code, "%s", e->message ? e->message : "");
    if (!c)
        return NULL;
    c->http_status = e->http_status;
    if (e->function && !(c->function = sk_strdup(e->function)))
        goto fail;
    if (e->detail_json && !(c->detail_json = sk_strdup(e->detail_json)))
        goto fail;
    for (size_t i = 0; i < e->n_chain; i++) {
        size_t before = c->n_chain;
        err_push(c, e->chain[i]);
        if (c->n_chain == before)
            goto fail;
    }
    return c;
fail:
    err_free(c);
    return NULL;
}

void err_push(sk_err *e, const char *function)
{
    if (!e || !function)
        return;
    if (!e->function)
        e->function = sk_strdup(function);
    char **chain = sk_realloc(e->chain, (e->n_chain + 1) * sizeof(char *));
    if (!chain)
        return;
    e->chain = chain;
    char *copy = sk_strdup(function);
    if (copy)
        e->chain[e->n_chain++] = copy;
}

char *err_json(const sk_err *e)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status code = e ? e->code : SK_NOMEM;
    const char *msg = e && e->message ? e->message : sk_strerror(code);
    sk_status rc = buf_adds(&b, "{\"kind\":");
    if (rc == SK_OK) rc = buf_add_json_str(&b, sk_status_kind(code), strlen(sk_status_kind(code)));
    if (rc == SK_OK) rc = buf_printf(&b, ",\"code\":%d,\"message\":", (int)code);
    if (rc == SK_OK) rc = buf_add_json_str(&b, msg, strlen(msg));
    if (rc == SK_OK && e && e->function) {
        rc = buf_adds(&b, ",\"function\":");
        if (rc == SK_OK) rc = buf_add_json_str(&b, e->function, strlen(e->function));
    }
    if (rc == SK_OK && e && e->n_chain) {
        rc = buf_adds(&b, ",\"chain\":[");
        for (size_t i = 0; rc == SK_OK && i < e->n_chain; i++) {
            if (i) rc = buf_addc(&b, ',');
            if (rc == SK_OK) rc = buf_add_json_str(&b, e->chain[i], strlen(e->chain[i]));
        }
        if (rc == SK_OK) rc = buf_addc(&b, ']');
    }
    if (rc == SK_OK && e && e->http_status)
        rc = buf_printf(&b, ",\"http_status\":%d", e->http_status);
    if (rc == SK_OK && e && e->detail_json && e->detail_json[0] == '{' &&
        e->detail_json[1] != '}') {
        /* merge the detail object's members */
        rc = buf_addc(&b, ',');
        if (rc == SK_OK)
            rc = buf_add(&b, e->detail_json + 1, strlen(e->detail_json) - 2);
    }
    if (rc == SK_OK) rc = buf_addc(&b, '}');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- status names ------------------------------------------------------ */

/* A switch with no default, so the compiler flags a missing code. */
const char *sk_strerror(sk_status code)
{
    switch (code) {
    case SK_OK: return "no error";
    case SK_NOMEM: return "out of memory";
    case SK_USAGE: return "invalid argument";
    case SK_IO: return "file error";
    case SK_TEMPLATE: return "template syntax error";
    case SK_CONFIG: return "configuration error";
    case SK_NOT_FOUND: return "not found";
    case SK_MODEL: return "model server error";
    case SK_TIMEOUT: return "timed out";
    case SK_SCRIPT: return "script error";
    case SK_TOO_LARGE: return "size limit exceeded";
    case SK_PROTOCOL: return "malformed reply";
    case SK_NETWORK: return "network error";
    case SK_UNCERTAIN: return "the model is uncertain";
    case SK_REJECTED: return "rejected by review";
    case SK_FILTERED: return "blocked by a content filter";
    case SK_CANCELLED: return "cancelled";
    case SK_RECURSION: return "function calls nested too deeply";
    case SK_PLAN: return "no valid plan";
    case SK_LIMIT: return "a limit was reached";
    case SK_QUERY: return "query failed";
    case SK_DATA: return "malformed data";
    case SK_DENIED: return "not allowed for this run";
    case SK_TRUNCATED: return "the reply was cut by the token limit";
    }
    return "unknown error";
}

const char *sk_status_kind(sk_status code)
{
    switch (code) {
    case SK_OK: return "ok";
    case SK_NOMEM: return "nomem";
    case SK_USAGE: return "usage";
    case SK_IO: return "io";
    case SK_TEMPLATE: return "template";
    case SK_CONFIG: return "config";
    case SK_NOT_FOUND: return "not_found";
    case SK_MODEL: return "model";
    case SK_TIMEOUT: return "timeout";
    case SK_SCRIPT: return "script";
    case SK_TOO_LARGE: return "too_large";
    case SK_PROTOCOL: return "protocol";
    case SK_NETWORK: return "network";
    case SK_UNCERTAIN: return "uncertain";
    case SK_REJECTED: return "rejected";
    case SK_FILTERED: return "filtered";
    case SK_CANCELLED: return "cancelled";
    case SK_RECURSION: return "recursion";
    case SK_PLAN: return "plan";
    case SK_LIMIT: return "limit";
    case SK_QUERY: return "query";
    case SK_DATA: return "data";
    case SK_DENIED: return "denied";
    case SK_TRUNCATED: return "truncated";
    }
    return "unknown";
}

const char *sk_version(void) { return SKEIN_VERSION; }
