/*
 * rowops.c -- semantic operators over the rows of a DataFrame (map,
 * filter, classify, extract), the ai() and skein() SQL functions, and the
 * response cache they share.
 *
 * A row operation reads every row once, turns each into a prompt through
 * a built-in DataFrame.* skill, and keeps up to `concurrency` of those
 * invokes in flight on the kernel's loop.  Answers land in an array in
 * input order; the result table is written at the end in one transaction.
 * A row whose call fails keeps its place with the message in `_error`, so
 * nothing is ever dropped silently.
 *
 * The cache is a small SQLite database of its own, separate from the
 * session database so that it outlives it and can be shared by several
 * processes (WAL, a busy timeout).  It is an optimisation only: when it
 * cannot be opened the operations run without it.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "df/df.h"




#define MAX_ROWS 1000000L              /* rows one operation reads */
#define MAX_PROMPT ((size_t)4 << 20)   /* a rendered prompt or row text */
#define MAX_BATCH 100                  /* rows per batched prompt */
#define DEFAULT_CONCURRENCY 16

/* ---- the instruction's {column} references ----------------------------- */

static const char *const OP_NAME[] = {"map", "filter", "classify", "extract"};
static const char *const OP_FN[] = {"DataFrame.Map", "DataFrame.Filter",
                                    "DataFrame.Classify", "DataFrame.Extract"};
#define BATCH_FN "DataFrame.MapBatch"

/* The index of column name in cols (exact, then case-insensitive), or -1. */
static long find_col(char *const *cols, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(cols[i]) == len && memcmp(cols[i], name, len) == 0)
            return (long)i;
    for (size_t i = 0; i < n; i++)
        if (strlen(cols[i]) == len && strncasecmp(cols[i], name, len) == 0)
            return (long)i;
    return -1;
}

/* Walks the instruction: literal text goes to out as is ("{{" and "}}"
 * unescaped), a {name} reference to its row value (vals NULL: checks the
 * names only).  An unknown name is an SK_USAGE error naming it and the
 * real columns.  *refs counts the references seen.  *err on failure. */
static sk_status subst(const char *ins, char *const *cols, size_t n_cols,
                       char *const *vals, sk_buf *out, int *refs,
                       sk_err **err)
{
    *refs = 0;
    sk_status st = SK_OK;
    for (const char *p = ins; *p && st == SK_OK; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            st = out ? buf_addc(out, *p) : SK_OK;
            p++;
            continue;
        }
        const char *close = p[0] == '{' ? strpbrk(p + 1, "{}") : NULL;
        if (!close || *close != '}') {
            st = out ? buf_addc(out, *p) : SK_OK;
            continue;
        }
        const char *name = p + 1;
        size_t len = (size_t)(close - name);
        while (len && isspace((unsigned char)*name)) {
            name++;
            len--;
        }
        while (len && isspace((unsigned char)name[len - 1]))
            len--;
        long c = find_col(cols, n_cols, name, len);
        if (c < 0) {
            sk_buf list = {0};
            for (size_t i = 0; i < n_cols; i++)
                if (buf_printf(&list, "%s%s", i ? ", " : "", cols[i]) != SK_OK)
                    break;
            *err = err_new(SK_USAGE, "instruction: unknown column {%.*s} "
                           "(the columns are: %s)",
                           (int)len, name, list.p ? list.p : "none");
            buf_free(&list);
            return SK_USAGE;
        }
        (*refs)++;
        if (out)
            st = buf_adds(out, vals && vals[c] ? vals[c] : "NULL");
        p = close;
    }
    if (st != SK_OK)
        *err = err_new(st, "instruction: %s", sk_strerror(st));
    return st;
}

/* ---- parsing replies ---------------------------------------------------- */

static int is_trim(unsigned char c)
{
    return isspace(c) || strchr("\"'`*.,;:!?()[]", c) != NULL;
}

/* text without surrounding whitespace, quotes and punctuation.  Caller
 * frees; NULL on allocation failure. */
static char *trim_punct(const char *s, size_t n)
{
    while (n && is_trim((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && is_trim((unsigned char)s[n - 1]))
        n--;
    return sk_strndup(s, n);
}

static char *trim_space(const char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return sk_strndup(s, n);
}

/* A short quote of a reply for row errors.  Caller frees. */
static char *quote_reply(const char *s)
{
    size_t n = strlen(s);
    return n > 80 ? sk_asprintf("%.77s...", s) : sk_strdup(s);
}

/* 1 keep, 0 drop, -1 neither. */
static int parse_yes_no(const char *reply)
{
    char *t = trim_punct(reply, strlen(reply));
    if (!t)
        return -1;
    size_t w = 0;
    while (t[w] && !is_trim((unsigned char)t[w]))
        w++;
    t[w] = '\0';
    static const char *const yes[] = {"yes", "y", "true", "keep"};
    static const char *const no[] = {"no", "n", "false", "drop"};
    int r = -1;
    for (size_t i = 0; i < 4 && r < 0; i++) {
        if (strcasecmp(t, yes[i]) == 0)
            r = 1;
        else if (strcasecmp(t, no[i]) == 0)
            r = 0;
    }
    free(t);
    return r;
}

/* A JSON value as column text: NULL for null, strings unquoted, integral
 * numbers without a fraction, objects and arrays as compact JSON.
 * *nomem is set when an allocation failed. */
static char *json_cell(const cJSON *v, int *nomem)
{
    char *s = NULL;
    if (!v || cJSON_IsNull(v))
        return NULL;
    if (cJSON_IsString(v))
        s = sk_strdup(v->valuestring);
    else if (cJSON_IsBool(v))
        s = sk_strdup(cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9e15)
            s = sk_asprintf("%.0f", d);
        else
            s = sk_asprintf("%.17g", d);
    } else {
        char *p = cJSON_PrintUnformatted(v);
        s = p ? sk_strdup(p) : NULL;
        cJSON_free(p);
    }
    if (!s)
        *nomem = 1;
    return s;
}

/* ---- one operation ------------------------------------------------------ */

typedef struct row {
    char **vals;        /* the input row, n_cols values (NULL for NULL) */
    char *key;          /* the cache key */
    char *ins;          /* the instruction with this row's values */
    char *text;         /* the row as "col: value" lines */
    char *result;       /* MAP / CLASSIFY: the value */
    char **fields;      /* EXTRACT: n_fields values */
    char *error;        /* the row's failure, or NULL */
    int keep;           /* FILTER: answered yes */
    int done;
} row;

typedef struct job job;

/* One invoke in flight: a single row, or a batch of rows. */
typedef struct unit {
    job *j;
    size_t *idx;        /* row indexes, n of them */
    size_t n;
} unit;

struct job {
    sk_kernel *k;
    df_op op;
    const df_rowop_opts *o;
    sk_function *f;        /* the single-row skill */
    sk_function *fb;       /* DataFrame.MapBatch when batching */
    const char *model;     /* the spec in cache keys */
    char *labels;          /* CLASSIFY: "- a\n- b" */
    char *fields;          /* EXTRACT: "- a\n- b" */
    int refs;              /* the instruction references columns */
    const char *instruction;
    char **cols;           /* the input's column names */
    char **types;
    size_t n_cols;
    long err_col;          /* the input's own _error column, or -1 */
    row *rows;
    size_t n_rows, cap_rows;
    size_t next;           /* the next row to schedule */
    size_t *retry;         /* rows of failed batches, to ask one by one */
    size_t n_retry;
    int drawn;             /* width of the last progress line */
    long inflight;
    long conc;
    int batch;
    size_t finished;       /* rows with an outcome */
    int all_done;          /* the loop may stop */
    sk_err *fatal;         /* stops the operation */
    long fallbacks;
    df_rowop_summary sum;
    int progress;
    long long t0, last_draw;
};

static void row_free(row *r, size_t n_cols, size_t n_fields)
{
    for (size_t i = 0; i < n_cols; i++)
        free(r->vals[i]);
    free(r->vals);
    free(r->key);
    free(r->ins);
    free(r->text);
    free(r->result);
    if (r->fields)
        for (size_t i = 0; i < n_fields; i++)
            free(r->fields[i]);
    free(r->fields);
    free(r->error);
}

static void set_fatal(job *j, sk_err *e)
{
    if (!j->fatal)
        j->fatal = e ? e : err_new(SK_NOMEM, "%s", sk_strerror(SK_NOMEM));
    else
        err_free(e);
}

static void draw_progress(job *j, int final)
{
    if (!j->progress)
        return;
    long long now = loop_now_ms();
    if (!final && now - j->last_draw < 100)
        return;
    j->last_draw = now;
    double secs = (double)(now - j->t0) / 1000.0;
    double rate = secs > 0 ? (double)j->finished / secs : 0;
    size_t n = j->n_rows;
    int pct = n ? (int)(100.0 * (double)j->finished / (double)n) : 100;
    char eta[32] = "";
    if (rate > 0 && j->finished < n)
        snprintf(eta, sizeof eta, "  ETA %.0fs",
                 (double)(n - j->finished) / rate);
    /* Spaces, not a terminal escape, blank what a longer line left, so a
     * redirected log stays plain text. */
    int w = fprintf(stderr, "\r  %zu/%zu rows  %d%%  %.1f rows/s%s",
                    j->finished, n, pct, rate, eta);
    if (w > 0 && w < j->drawn)
        fprintf(stderr, "%*s", j->drawn - w, "");
    if (w > j->drawn)
        j->drawn = w;
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Records a row's failure message (taken). */
static void row_fail(job *j, row *r, char *msg)
{
    free(r->error);
    r->error = msg ? msg : sk_strdup(sk_strerror(SK_NOMEM));
    if (!r->error)
        set_fatal(j, NULL);
}

/* Turns a successful reply into the row's value.  Returns 1 when the
 * reply was usable (so it may be cached), 0 when it became a row error. */
static int apply_reply(job *j, row *r, const char *reply)
{
    const df_rowop_opts *o = j->o;
    switch (j->op) {
    case DF_MAP:
        r->result = trim_space(reply);
        if (!r->result)
            set_fatal(j, NULL);
        return r->result != NULL;
    case DF_FILTER: {
        int yn = parse_yes_no(reply);
        if (yn < 0) {
            char *q = quote_reply(reply);
            row_fail(j, r, sk_asprintf("answered \"%s\", not yes or no",
                                       q ? q : ""));
            free(q);
            return 0;
        }
        r->keep = yn;
        return 1;
    }
    case DF_CLASSIFY: {
        char *t = trim_punct(reply, strlen(reply));
        if (!t) {
            set_fatal(j, NULL);
            return 0;
        }
        for (size_t i = 0; i < o->n_labels; i++) {
            char *l = trim_punct(o->labels[i], strlen(o->labels[i]));
            int same = l && strcasecmp(l, t) == 0;
            free(l);
            if (same) {
                free(t);
                r->result = sk_strdup(o->labels[i]);
                if (!r->result)
                    set_fatal(j, NULL);
                return r->result != NULL;
            }
        }
        free(t);
        sk_buf b = {0};
        char *q = quote_reply(reply);
        buf_printf(&b, "answered \"%s\", not one of: ", q ? q : "");
        free(q);
        for (size_t i = 0; i < o->n_labels; i++)
            buf_printf(&b, "%s%s", i ? ", " : "", o->labels[i]);
        row_fail(j, r, buf_steal(&b));
        return 0;
    }
    case DF_EXTRACT: {
        const char *s = strchr(reply, '{');
        const char *e = strrchr(reply, '}');
        cJSON *doc = s && e > s ? cJSON_ParseWithLength(s, (size_t)(e - s + 1))
                                : NULL;
        if (!cJSON_IsObject(doc)) {
            cJSON_Delete(doc);
            char *q = quote_reply(reply);
            row_fail(j, r, sk_asprintf("the reply is not a JSON object: %s",
                                       q ? q : ""));
            free(q);
            return 0;
        }
        r->fields = sk_calloc(o->n_fields ? o->n_fields : 1, sizeof(char *));
        int nomem = !r->fields;
        for (size_t i = 0; i < o->n_fields && !nomem; i++)
            r->fields[i] = json_cell(cJSON_GetObjectItem(doc, o->fields[i]),
                                     &nomem);
        cJSON_Delete(doc);
        if (nomem)
            set_fatal(j, NULL);
        return !nomem;
    }
    }
    return 0;
}

/* The outcome of one row's model call (reply or error), from a single
 * call or from its line of a batch. */
static void row_outcome(job *j, size_t i, sk_status st, const char *reply,
                        const sk_err *err, int cached)
{
    row *r = &j->rows[i];
    if (st == SK_OK) {
        if (apply_reply(j, r, reply) && !cached && !j->o->no_cache &&
            !j->fatal)
            if (kern_cache_put(j->k, r->key, reply) != SK_OK)
                set_fatal(j, NULL);
    } else if (st == SK_UNCERTAIN) {
        const char *m = err && err->message ? err->message : sk_strerror(st);
        if (j->o->raise_uncertain) {
            sk_err *e = err ? err_clone(err) : err_new(st, "%s", m);
            if (e) {
                char *msg = sk_asprintf("row %zu: %s", i + 1, m);
                if (msg) {
                    free(e->message);
                    e->message = msg;
                }
            }
            set_fatal(j, e);
        } else {
            j->sum.uncertain++;
        }
        row_fail(j, r, sk_asprintf("uncertain: %s", m));
    } else {
        row_fail(j, r, sk_strdup(err && err->message ? err->message
                                                     : sk_strerror(st)));
    }
    r->done = 1;
    j->finished++;
    draw_progress(j, 0);
}

static void schedule(job *j);

static void unit_free(unit *u)
{
    free(u->idx);
    free(u);
}

static void finish_unit(job *j, unit *u)
{
    unit_free(u);
    j->inflight--;
    schedule(j);
}

static void single_done(void *ud, sk_status st, char *text, sk_err *err)
{
    unit *u = ud;
    job *j = u->j;
    row_outcome(j, u->idx[0], st, text, err, 0);
    free(text);
    err_free(err);
    finish_unit(j, u);
}

/* Splits a batch reply into n numbered lines: "N. value" (also "N)" and
 * "N:").  Lines without a number are ignored (a heading); a duplicate,
 * missing or out-of-range number, or a count other than n, fails the
 * parse.  lines[i] are pointers into reply (modified in place). */
static int split_numbered(char *reply, size_t n, char **lines)
{
    for (size_t i = 0; i < n; i++)
        lines[i] = NULL;
    size_t seen = 0;
    char *save = NULL;
    for (char *ln = strtok_r(reply, "\r\n", &save); ln;
         ln = strtok_r(NULL, "\r\n", &save)) {
        while (isspace((unsigned char)*ln) || *ln == '*')
            ln++;
        if (!isdigit((unsigned char)*ln))
            continue;
        char *end;
        long num = strtol(ln, &end, 10);
        if (*end != '.' && *end != ')' && *end != ':')
            continue;
        if (num < 1 || (size_t)num > n || lines[num - 1])
            return 0;
        lines[num - 1] = end + 1;
        seen++;
    }
    return seen == n;
}

static void batch_done(void *ud, sk_status st, char *text, sk_err *err)
{
    unit *u = ud;
    job *j = u->j;
    if (st == SK_OK) {
        char **lines = sk_calloc(u->n, sizeof(char *));
        if (!lines) {
            set_fatal(j, NULL);
        } else if (split_numbered(text, u->n, lines)) {
            for (size_t i = 0; i < u->n && !j->fatal; i++)
                row_outcome(j, u->idx[i], SK_OK, lines[i], NULL, 0);
        } else if (!j->fatal) {
            /* The model lost count: ask again one row at a time, which
             * costs calls but keeps every answer tied to its row. */
            j->fallbacks++;
            char *members = sk_asprintf(
                "\"type\":\"rowop_batch_fallback\",\"op\":\"%s\","
                "\"rows\":%zu,\"first_row\":%zu",
                OP_NAME[j->op], u->n, u->idx[0] + 1);
            if (members)
                trace_event(j->k, members);
            free(members);
            for (size_t i = 0; i < u->n; i++)
                j->retry[j->n_retry++] = u->idx[i];
        }
        free(lines);
    } else {
        for (size_t i = 0; i < u->n && !j->fatal; i++)
            row_outcome(j, u->idx[i], st, NULL, err, 0);
    }
    free(text);
    err_free(err);
    finish_unit(j, u);
}

/* The variables of a single-row call.  Caller frees; NULL on failure. */
static sk_vars *row_vars(job *j, const row *r)
{
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK)
        return NULL;
    int ok = sk_vars_set(v, "instruction", r->ins) == SK_OK &&
             sk_vars_set(v, "row", r->text) == SK_OK &&
             sk_vars_set(v, "input", r->text) == SK_OK;
    if (ok && j->labels)
        ok = sk_vars_set(v, "labels", j->labels) == SK_OK;
    if (ok && j->fields)
        ok = sk_vars_set(v, "fields", j->fields) == SK_OK;
    if (!ok) {
        sk_vars_free(v);
        return NULL;
    }
    return v;
}

/* Starts one row on the single-row skill.  When it cannot start, the
 * row records why. */
static void start_single(job *j, size_t i)
{
    unit *u = sk_calloc(1, sizeof *u);
    size_t *idx = sk_malloc(sizeof *idx);
    sk_vars *v = u && idx ? row_vars(j, &j->rows[i]) : NULL;
    if (!v) {
        free(u);
        free(idx);
        set_fatal(j, NULL);
        return;
    }
    u->j = j;
    u->idx = idx;
    u->idx[0] = i;
    u->n = 1;
    inv_opts io = {0};
    io.model = j->o->model;
    io.no_cache = 1; /* rows are cached here, per row */
    sk_err *err = NULL;
    sk_status st = inv_start(j->k, j->f, v, 0, &io, single_done, u, &err);
    sk_vars_free(v);
    if (st != SK_OK) {
        row_outcome(j, i, st, NULL, err, 0);
        err_free(err);
        unit_free(u);
        return;
    }
    j->inflight++;
}

/* A row on one line for a batch item: its lines joined by "; ". */
static sk_status add_flat(sk_buf *b, const char *s)
{
    sk_status st = SK_OK;
    for (; *s && st == SK_OK; s++) {
        if (*s == '\r')
            continue;
        st = *s == '\n' ? buf_adds(b, "; ") : buf_addc(b, *s);
    }
    return st;
}

static void start_batch(job *j, size_t *idx, size_t n)
{
    unit *u = sk_calloc(1, sizeof *u);
    sk_vars *v = NULL;
    sk_buf items;
    buf_init(&items, MAX_PROMPT);
    sk_status st = u && sk_vars_new(&v) == SK_OK ? SK_OK : SK_NOMEM;
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        const row *r = &j->rows[idx[i]];
        st = buf_printf(&items, "%zu. ", i + 1);
        if (st == SK_OK && j->refs) {
            st = add_flat(&items, r->ins);
            if (st == SK_OK)
                st = buf_adds(&items, " | ");
        }
        if (st == SK_OK)
            st = add_flat(&items, r->text);
        if (st == SK_OK)
            st = buf_addc(&items, '\n');
    }
    /* The batch instruction says how to answer for the op, so one batch
     * skill serves map, filter and classify. */
    char *ins = NULL;
    const char *base = !j->refs ? j->instruction
                       : j->op == DF_FILTER
                           ? "The condition is written at the start of each "
                             "item, before its row."
                           : "Carry out the task written at the start of "
                             "each item, on that item's row.";
    if (st == SK_OK) {
        if (j->op == DF_FILTER)
            ins = sk_asprintf("Answer yes or no for each item: does the row "
                              "meet this condition? %s", base);
        else if (j->op == DF_CLASSIFY)
            ins = sk_asprintf("%s\nAnswer with exactly one of these labels "
                              "per item:\n%s", base, j->labels);
        else
            ins = sk_strdup(base);
        if (!ins)
            st = SK_NOMEM;
    }
    char count[32];
    snprintf(count, sizeof count, "%zu", n);
    if (st == SK_OK && (sk_vars_set(v, "instruction", ins) != SK_OK ||
                        sk_vars_set(v, "items", items.p) != SK_OK ||
                        sk_vars_set(v, "count", count) != SK_OK))
        st = SK_NOMEM;
    free(ins);
    buf_free(&items);
    if (st != SK_OK) {
        sk_vars_free(v);
        free(u);
        if (st == SK_NOMEM)
            set_fatal(j, NULL);
        else
            for (size_t i = 0; i < n; i++) {
                sk_err *e = err_new(st, "the batch prompt is too large");
                row_outcome(j, idx[i], st, NULL, e, 0);
                err_free(e);
            }
        free(idx);
        return;
    }
    u->j = j;
    u->idx = idx;
    u->n = n;
    inv_opts io = {0};
    io.model = j->o->model;
    io.no_cache = 1; /* rows are cached here, per row */
    sk_err *err = NULL;
    st = inv_start(j->k, j->fb, v, 0, &io, batch_done, u, &err);
    sk_vars_free(v);
    if (st != SK_OK) {
        for (size_t i = 0; i < n; i++)
            row_outcome(j, idx[i], st, NULL, err, 0);
        err_free(err);
        unit_free(u);
        return;
    }
    j->inflight++;
}

/* Looks a row up in the cache; 1 when it was answered from there. */
static int from_cache(job *j, size_t i)
{
    if (j->o->no_cache)
        return 0;
    char *v = NULL;
    if (kern_cache_get(j->k, j->rows[i].key, &v) != SK_OK) {
        set_fatal(j, NULL);
        return 0;
    }
    if (!v)
        return 0;
    j->sum.cached++;
    row_outcome(j, i, SK_OK, v, NULL, 1);
    free(v);
    return 1;
}

/* Starts work until `concurrency` calls are in flight or no row is left;
 * called at the start and whenever a call ends. */
static void schedule(job *j)
{
    while (!j->fatal && j->inflight < j->conc && j->n_retry)
        start_single(j, j->retry[--j->n_retry]);
    while (!j->fatal && j->inflight < j->conc && j->next < j->n_rows) {
        if (j->batch <= 1) {
            size_t i = j->next++;
            if (!from_cache(j, i))
                start_single(j, i);
            continue;
        }
        size_t *idx = sk_malloc((size_t)j->batch * sizeof *idx);
        if (!idx) {
            set_fatal(j, NULL);
            break;
        }
        size_t n = 0;
        while (n < (size_t)j->batch && j->next < j->n_rows && !j->fatal) {
            size_t i = j->next++;
            if (!from_cache(j, i))
                idx[n++] = i;
        }
        if (n == 0 || j->fatal)
            free(idx);
        else if (n == 1) {
            start_single(j, idx[0]);
            free(idx);
        } else {
            start_batch(j, idx, n);
        }
    }
    if (j->inflight == 0 &&
        (j->fatal || (j->next >= j->n_rows && j->n_retry == 0)))
        j->all_done = 1;
}

/* Collects the input rows from the engine. */
static int collect_row(void *ud, size_t n, const char *const *names,
                       const char *const *values)
{
    (void)names;
    job *j = ud;
    if (n != j->n_cols) {
        set_fatal(j, err_new(SK_QUERY, "the table changed while it was read"));
        return 1;
    }
    if (j->n_rows == j->cap_rows) {
        size_t cap = j->cap_rows ? j->cap_rows * 2 : 64;
        row *nr = sk_realloc(j->rows, cap * sizeof *nr);
        if (!nr) {
            set_fatal(j, NULL);
            return 1;
        }
        j->rows = nr;
        j->cap_rows = cap;
    }
    row *r = &j->rows[j->n_rows];
    memset(r, 0, sizeof *r);
    r->vals = sk_calloc(n ? n : 1, sizeof(char *));
    if (!r->vals) {
        set_fatal(j, NULL);
        return 1;
    }
    j->n_rows++;
    for (size_t i = 0; i < n; i++)
        if (values[i] && !(r->vals[i] = sk_strdup(values[i]))) {
            set_fatal(j, NULL);
            return 1;
        }
    return 0;
}

/* A list for a prompt: "- a\n- b".  Caller frees. */
static char *bullet_list(const char *const *items, size_t n)
{
    sk_buf b = {0};
    for (size_t i = 0; i < n; i++)
        if (buf_printf(&b, "%s- %s", i ? "\n" : "", items[i]) != SK_OK) {
            buf_free(&b);
            return NULL;
        }
    return buf_steal(&b);
}

/* Fills a row's instruction, text and cache key. */
static sk_status prepare_row(job *j, row *r, long only_col, sk_err **err)
{
    sk_buf b;
    buf_init(&b, MAX_PROMPT);
    int refs;
    sk_status st = subst(j->instruction, j->cols, j->n_cols, r->vals, &b,
                         &refs, err);
    if (st != SK_OK) {
        buf_free(&b);
        return st;
    }
    r->ins = buf_steal(&b);
    for (size_t i = 0; i < j->n_cols && st == SK_OK && r->ins; i++) {
        if ((long)i == j->err_col || (only_col >= 0 && (long)i != only_col))
            continue;
        st = buf_printf(&b, "%s%s: %s", b.len ? "\n" : "", j->cols[i],
                        r->vals[i] ? r->vals[i] : "NULL");
    }
    if (st == SK_OK && r->ins)
        r->text = buf_steal(&b);
    buf_free(&b);
    if (st == SK_OK && (!r->ins || !r->text))
        st = SK_NOMEM;
    /* The key is the prompt the single-row skill would send, so a change
     * to the skill's wording, the instruction or the row misses. */
    sk_vars *v = st == SK_OK ? row_vars(j, r) : NULL;
    if (st == SK_OK && !v)
        st = SK_NOMEM;
    if (st == SK_OK) {
        buf_init(&b, MAX_PROMPT);
        st = buf_printf(&b, "%s\n%s\n", j->model, OP_NAME[j->op]);
        if (st == SK_OK)
            st = tpl_assemble(j->f->tpl, v, NULL, NULL, &b);
        if (st == SK_OK && !(r->key = buf_steal(&b)))
            st = SK_NOMEM;
        buf_free(&b);
    }
    sk_vars_free(v);
    if (st != SK_OK)
        *err = err_new(st, "row prompt: %s", sk_strerror(st));
    return st;
}

/* Writes the result table: the input's columns (without ones the new
 * columns replace), the new ones, then _error.  Rows in input order; a
 * FILTER keeps rows answered yes and failed ones. */
static sk_status write_result(job *j, df_engine *e, const char *name,
                              sk_err **err)
{
    sqlite3 *db = df_sqlite(e);
    if (!db) {
        *err = err_new(SK_QUERY, "row operations need the SQLite engine");
        return SK_QUERY;
    }
    const df_rowop_opts *o = j->o;
    const char *new_cols[256];
    size_t n_new = 0;
    if (j->op == DF_MAP)
        new_cols[n_new++] = o->as && *o->as ? o->as : "result";
    else if (j->op == DF_CLASSIFY)
        new_cols[n_new++] = o->as && *o->as ? o->as : "label";
    else if (j->op == DF_EXTRACT)
        for (size_t i = 0; i < o->n_fields; i++)
            new_cols[n_new++] = o->fields[i];
    /* keep[i]: the input column i is carried over. */
    int *keep = sk_calloc(j->n_cols ? j->n_cols : 1, sizeof *keep);
    sk_buf sql = {0}, ins = {0};
    sk_status st = keep ? SK_OK : SK_NOMEM;
    char *qn = df_quote_ident(name);
    if (!qn)
        st = SK_NOMEM;
    if (st == SK_OK)
        st = buf_printf(&sql, "CREATE TABLE %s (", qn);
    if (st == SK_OK)
        st = buf_printf(&ins, "INSERT INTO %s VALUES (", qn);
    size_t n_out = 0;
    for (size_t i = 0; i < j->n_cols && st == SK_OK; i++) {
        keep[i] = (long)i != j->err_col;
        for (size_t c = 0; c < n_new && keep[i]; c++)
            if (strcasecmp(new_cols[c], j->cols[i]) == 0)
                keep[i] = 0;
        if (!keep[i])
            continue;
        char *q = df_quote_ident(j->cols[i]);
        st = q ? buf_printf(&sql, "%s%s %s", n_out ? ", " : "", q,
                            j->types[i])
               : SK_NOMEM;
        free(q);
        if (st == SK_OK)
            st = buf_printf(&ins, "%s?", n_out ? ", " : "");
        n_out++;
    }
    for (size_t c = 0; c < n_new + 1 && st == SK_OK; c++) {
        char *q = df_quote_ident(c < n_new ? new_cols[c] : "_error");
        st = q ? buf_printf(&sql, "%s%s TEXT", n_out ? ", " : "", q) : SK_NOMEM;
        free(q);
        if (st == SK_OK)
            st = buf_printf(&ins, "%s?", n_out ? ", " : "");
        n_out++;
    }
    if (st == SK_OK)
        st = buf_adds(&sql, ")");
    if (st == SK_OK)
        st = buf_adds(&ins, ")");
    free(qn);
    char *msg = NULL;
    int began = 0;
    sqlite3_stmt *stmt = NULL;
    if (st == SK_OK)
        st = e->vt->exec(e, sql.p, &msg);
    if (st == SK_OK && (st = e->vt->exec(e, "BEGIN", &msg)) == SK_OK)
        began = 1;
    if (st == SK_OK && sqlite3_prepare_v2(db, ins.p, -1, &stmt, NULL) != SQLITE_OK) {
        st = SK_QUERY;
        msg = sk_strdup(sqlite3_errmsg(db));
    }
    for (size_t r = 0; r < j->n_rows && st == SK_OK; r++) {
        const row *w = &j->rows[r];
        if (j->op == DF_FILTER && !w->keep && !w->error)
            continue;
        int p = 1;
        for (size_t i = 0; i < j->n_cols; i++)
            if (keep[i])
                sqlite3_bind_text(stmt, p++, w->vals[i], -1, SQLITE_STATIC);
        if (j->op == DF_MAP || j->op == DF_CLASSIFY)
            sqlite3_bind_text(stmt, p++, w->result, -1, SQLITE_STATIC);
        else if (j->op == DF_EXTRACT)
            for (size_t f = 0; f < o->n_fields; f++)
                sqlite3_bind_text(stmt, p++, w->fields ? w->fields[f] : NULL,
                                  -1, SQLITE_STATIC);
        /* A row that failed before keeps its earlier error unless this
         * operation failed it too. */
        const char *error = w->error;
        if (!error && j->err_col >= 0)
            error = w->vals[j->err_col];
        sqlite3_bind_text(stmt, p, error, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            st = SK_QUERY;
            msg = sk_strdup(sqlite3_errmsg(db));
        }
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
    sqlite3_finalize(stmt);
    if (began) {
        char *m2 = NULL;
        sk_status c = e->vt->exec(e, st == SK_OK ? "COMMIT" : "ROLLBACK", &m2);
        if (st == SK_OK && c != SK_OK) {
            st = c;
            msg = m2;
            m2 = NULL;
        }
        free(m2);
    }
    if (st != SK_OK) {
        *err = err_new(st, "writing the result table %s: %s", name,
                       msg ? msg : sk_strerror(st));
        char *drop = sk_asprintf("DROP TABLE IF EXISTS %s", name);
        char *m3 = NULL;
        if (drop && began)
            e->vt->exec(e, drop, &m3);
        free(drop);
        free(m3);
    }
    free(msg);
    free(keep);
    buf_free(&sql);
    buf_free(&ins);
    return st;
}

static void trace_op(job *j, long long elapsed)
{
    sk_buf b = {0};
    sk_status st = buf_printf(&b, "\"type\":\"rowop\",\"op\":\"%s\","
                              "\"instruction\":", OP_NAME[j->op]);
    if (st == SK_OK)
        st = buf_add_json_str(&b, j->instruction, strlen(j->instruction));
    if (st == SK_OK)
        st = buf_printf(&b, ",\"rows\":%ld,\"failed\":%ld,\"uncertain\":%ld,"
                        "\"cached\":%ld,\"model_calls\":%ld,\"batch\":%d,"
                        "\"batch_fallbacks\":%ld,\"elapsed_ms\":%lld",
                        j->sum.rows, j->sum.failed, j->sum.uncertain,
                        j->sum.cached, j->sum.model_calls, j->batch,
                        j->fallbacks, elapsed);
    if (st == SK_OK)
        trace_event(j->k, b.p);
    buf_free(&b);
}

static const char *const DEFAULT_INSTRUCTION[] = {
    NULL, NULL, "Choose the label that fits the row best.",
    "Extract the fields from the row."};

/* Checks the options and fills the job's fixed parts. */
static sk_status setup(job *j, sk_df *df, df_op op, const char *instruction,
                       sk_err **err)
{
    const df_rowop_opts *o = j->o;
    sk_kernel *k = j->k;
    if ((unsigned)op > DF_EXTRACT) {
        *err = err_new(SK_USAGE, "unknown row operation %d", (int)op);
        return SK_USAGE;
    }
    j->op = op;
    j->instruction = instruction && *instruction ? instruction
                                                 : DEFAULT_INSTRUCTION[op];
    if (!j->instruction) {
        *err = err_new(SK_USAGE, "%s: the instruction is empty", OP_NAME[op]);
        return SK_USAGE;
    }
    if (op == DF_CLASSIFY && (!o->labels || o->n_labels == 0)) {
        *err = err_new(SK_USAGE, "classify: give at least one label");
        return SK_USAGE;
    }
    if (op == DF_EXTRACT && (!o->fields || o->n_fields == 0)) {
        *err = err_new(SK_USAGE, "extract: give at least one field");
        return SK_USAGE;
    }
    if (op == DF_EXTRACT && o->n_fields > 200) {
        *err = err_new(SK_TOO_LARGE, "extract: at most 200 fields");
        return SK_TOO_LARGE;
    }
    for (size_t i = 0; op == DF_CLASSIFY && i < o->n_labels; i++)
        if (!o->labels[i] || !*o->labels[i]) {
            *err = err_new(SK_USAGE, "classify: label %zu is empty", i + 1);
            return SK_USAGE;
        }
    for (size_t i = 0; op == DF_EXTRACT && i < o->n_fields; i++)
        if (!o->fields[i] || !*o->fields[i]) {
            *err = err_new(SK_USAGE, "extract: field %zu is empty", i + 1);
            return SK_USAGE;
        }
    if (o->concurrency < 0 || o->batch < 0) {
        *err = err_new(SK_USAGE, "%s: concurrency and batch must not be "
                       "negative", OP_NAME[op]);
        return SK_USAGE;
    }
    j->conc = o->concurrency ? o->concurrency : DEFAULT_CONCURRENCY;
    j->batch = o->batch > MAX_BATCH ? MAX_BATCH : o->batch;
    if (j->batch > 1 && op == DF_EXTRACT)
        j->batch = 1; /* a JSON object per row does not fit one line */
    j->f = reg_find(k, OP_FN[op]);
    j->fb = j->batch > 1 ? reg_find(k, BATCH_FN) : NULL;
    if (!j->f || (j->batch > 1 && !j->fb)) {
        *err = err_new(SK_NOT_FOUND, "the prompt %s is not loaded; load the "
                       "built-in skills first (sk_kernel_load_default_skills)",
                       j->f ? BATCH_FN : OP_FN[op]);
        return SK_NOT_FOUND;
    }
    if (j->f->kind != FN_SEMANTIC || !j->f->tpl) {
        *err = err_new(SK_USAGE, "%s must be a prompt function", OP_FN[op]);
        return SK_USAGE;
    }
    j->model = o->model ? o->model
               : j->f->cfg && j->f->cfg->model ? j->f->cfg->model
               : sk_kernel_model(k) ? sk_kernel_model(k) : "";
    if (op == DF_CLASSIFY && !(j->labels = bullet_list(o->labels, o->n_labels)))
        return SK_NOMEM;
    if (op == DF_EXTRACT && !(j->fields = bullet_list(o->fields, o->n_fields)))
        return SK_NOMEM;

    df_engine *e = kern_engine(k, err);
    if (!e)
        return *err ? (*err)->code : SK_NOMEM;
    df_col *cols = NULL;
    size_t n = 0;
    char *msg = NULL;
    sk_status st = e->vt->columns(e, df->name, &cols, &n, &msg);
    if (st != SK_OK) {
        *err = err_new(st, "%s: %s", df->name, msg ? msg : sk_strerror(st));
        free(msg);
        return st;
    }
    j->cols = sk_calloc(n ? n : 1, sizeof(char *));
    j->types = sk_calloc(n ? n : 1, sizeof(char *));
    if (!j->cols || !j->types) {
        df_cols_free(cols, n);
        return SK_NOMEM;
    }
    /* The names move into the job; df_cols_free then frees the array. */
    for (size_t i = 0; i < n; i++) {
        j->cols[i] = cols[i].name;
        j->types[i] = cols[i].type ? cols[i].type : sk_strdup("");
        cols[i].name = cols[i].type = NULL;
    }
    j->n_cols = n;
    df_cols_free(cols, n);
    j->err_col = -1;
    for (size_t i = 0; i < n; i++) {
        if (!j->types[i])
            return SK_NOMEM;
        if (strcmp(j->cols[i], "_error") == 0)
            j->err_col = (long)i;
    }
    /* Every reference is checked before any row is read or any model
     * called. */
    st = subst(j->instruction, j->cols, j->n_cols, NULL, NULL, &j->refs, err);
    if (st != SK_OK)
        return st;
    if (o->column && (op == DF_CLASSIFY || op == DF_EXTRACT) &&
        find_col(j->cols, j->n_cols, o->column, strlen(o->column)) < 0) {
        sk_buf list = {0};
        for (size_t i = 0; i < n; i++)
            buf_printf(&list, "%s%s", i ? ", " : "", j->cols[i]);
        *err = err_new(SK_USAGE, "%s: unknown column %s (the columns are: %s)",
                       OP_NAME[op], o->column, list.p ? list.p : "none");
        buf_free(&list);
        return SK_USAGE;
    }

    char *q = df_quote_ident(df->name);
    char *sql = q ? sk_asprintf("SELECT * FROM %s", q) : NULL;
    free(q);
    if (!sql)
        return SK_NOMEM;
    st = e->vt->query(e, sql, NULL, MAX_ROWS, collect_row, j, &msg);
    free(sql);
    if (j->fatal) {
        free(msg);
        *err = j->fatal;
        j->fatal = NULL;
        return (*err)->code;
    }
    if (st != SK_OK) {
        *err = err_new(st, "reading %s: %s", df->name,
                       msg ? msg : sk_strerror(st));
        free(msg);
        return st;
    }
    long only = -1;
    if (o->column && (op == DF_CLASSIFY || op == DF_EXTRACT))
        only = find_col(j->cols, j->n_cols, o->column, strlen(o->column));
    for (size_t i = 0; i < j->n_rows; i++)
        if ((st = prepare_row(j, &j->rows[i], only, err)) != SK_OK)
            return st;
    return SK_OK;
}

sk_status df_rowop(sk_df *df, df_op op, const char *instruction,
                   const df_rowop_opts *o, sk_df **out,
                   df_rowop_summary *sum, sk_err **err)
{
    *out = NULL;
    *err = NULL;
    if (sum)
        memset(sum, 0, sizeof *sum);
    if (!df || !df->k) {
        *err = err_new(SK_USAGE, "row operation on a closed DataFrame");
        return SK_USAGE;
    }
    df_rowop_opts none = {0};
    none.progress = 0;
    job j;
    memset(&j, 0, sizeof j);
    j.k = df->k;
    j.o = o ? o : &none;
    long long t0 = loop_now_ms();
    sk_usage u0;
    sk_kernel_usage(j.k, &u0);

    sk_status st = setup(&j, df, op, instruction, err);
    if (st == SK_OK) {
        j.progress = j.o->progress == 1 ||
                     (j.o->progress < 0 && isatty(STDERR_FILENO));
        j.t0 = loop_now_ms();
        j.last_draw = 0;
        if (j.batch > 1 && !(j.retry = sk_calloc(j.n_rows ? j.n_rows : 1,
                                                 sizeof *j.retry)))
            set_fatal(&j, NULL);
        schedule(&j);
        loop_run_until(j.k, &j.all_done);
        if (!j.all_done && !j.fatal)
            set_fatal(&j, err_new(SK_CANCELLED, "%s: the event loop lost "
                                  "%ld calls", OP_NAME[j.op], j.inflight));
        draw_progress(&j, 1);
        if (j.fatal) {
            st = j.fatal->code;
            *err = j.fatal;
            j.fatal = NULL;
        }
    } else if (!*err) {
        *err = err_new(st, "%s", sk_strerror(st));
    }

    j.sum.rows = (long)j.n_rows;
    for (size_t i = 0; i < j.n_rows; i++) {
        if (j.rows[i].done)
            j.sum.done++;
        if (j.rows[i].error)
            j.sum.failed++;
    }
    sk_usage u1;
    sk_kernel_usage(j.k, &u1);
    j.sum.model_calls = u1.calls - u0.calls;

    if (st == SK_OK) {
        df_engine *e = kern_engine(j.k, err);
        char *name = e ? df_new_name(j.k) : NULL;
        if (!e)
            st = *err ? (*err)->code : SK_NOMEM;
        else if (!name)
            st = SK_NOMEM;
        else
            st = write_result(&j, e, name, err);
        if (st == SK_OK) {
            *out = df_wrap(j.k, name, NULL, j.instruction);
            if (!*out)
                st = SK_NOMEM;
        }
        if (st == SK_NOMEM && !*err)
            *err = err_new(st, "%s", sk_strerror(st));
        free(name);
    }
    if (j.instruction)
        trace_op(&j, loop_now_ms() - t0);
    j.sum.batch_fallbacks = j.fallbacks;
    if (sum)
        *sum = j.sum;

    for (size_t i = 0; i < j.n_rows; i++)
        row_free(&j.rows[i], j.n_cols, j.o->n_fields);
    free(j.rows);
    free(j.retry);
    for (size_t i = 0; i < j.n_cols; i++) {
        free(j.cols[i]);
        free(j.types ? j.types[i] : NULL);
    }
    free(j.cols);
    free(j.types);
    free(j.labels);
    free(j.fields);
    err_free(j.fatal);
    return st;
}

/* ---- SQL functions ------------------------------------------------------ */

/* ---- the SQL functions ---------------------------------------------------
 * ai(instruction, text) and skein(function, text) run whoever wrote the
 * statement calling them: in the user's own SQL they call what the user
 * names; in a statement with generated SQL in it the name is the model's
 * (or came from the data), so the lookup holds it to that SQL's grant and
 * the call runs untrusted.
 *
 * SQLite calls a function once per row and waits for it.  So that a
 * statement over many rows makes its calls side by side, the engine runs
 * a read-only statement that uses them twice (df.c): first a collecting
 * pass, in which the functions only note the calls they would make (and
 * answer NULL), then the calls are made concurrently into the statement's
 * memo, bounded like the row operators, then the real pass, in which the
 * functions answer from the memo.  A call the collecting pass could not
 * see (its argument came from another call) is made when it is met. */

struct df_memo {
    struct memo_call {
        char *key;          /* kind, name or instruction, text */
        int kind;           /* 0 ai, 1 skein */
        char *a, *b;        /* instruction or function; text */
        int state;          /* 0 noted, 1 running, 2 done */
        sk_status st;
        char *text;         /* the answer, or the error's message */
    } *calls;
    size_t n, cap;
    size_t *slots;          /* open addressing over calls, by key */
    size_t n_slots;
    size_t pending;         /* noted, not yet made */
    /* while filling */
    sk_kernel *k;
    const sk_grant *grant;
    size_t next, inflight, limit;
    int done;
};

#define MEMO_MAX_CALLS 1000000

df_memo *df_memo_new(void) { return sk_calloc(1, sizeof(df_memo)); }

void df_memo_free(df_memo *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->calls[i].key);
        free(m->calls[i].a);
        free(m->calls[i].b);
        free(m->calls[i].text);
    }
    free(m->calls);
    free(m->slots);
    free(m);
}

size_t df_memo_pending(const df_memo *m) { return m ? m->pending : 0; }

static uint64_t memo_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static char *memo_key(int kind, const char *a, const char *b)
{
    return sk_asprintf("%d\x1f%s\x1f%s", kind, a, b);
}

/* The call under key, or NULL.  *slot gets where it is or would go. */
static struct memo_call *memo_find(const df_memo *m, const char *key, size_t *slot)
{
    if (!m->n_slots)
        return NULL;
    size_t i = (size_t)(memo_hash(key) & (m->n_slots - 1));
    for (;;) {
        size_t c = m->slots[i];
        if (c == 0) {
            *slot = i;
            return NULL;
        }
        if (strcmp(m->calls[c - 1].key, key) == 0) {
            *slot = i;
            return &m->calls[c - 1];
        }
        i = (i + 1) & (m->n_slots - 1);
    }
}

static sk_status memo_grow(df_memo *m)
{
    size_t ns = m->n_slots ? m->n_slots * 2 : 1024;
    size_t *slots = sk_calloc(ns, sizeof *slots);
    if (!slots)
        return SK_NOMEM;
    free(m->slots);
    m->slots = slots;
    m->n_slots = ns;
    for (size_t c = 0; c < m->n; c++) {
        size_t slot;
        memo_find(m, m->calls[c].key, &slot);
        m->slots[slot] = c + 1;
    }
    return SK_OK;
}

/* Notes a call the statement would make.  SK_NOMEM; past the ceiling the
 * call is simply not noted (it is made when it is met). */
static sk_status memo_note(df_memo *m, int kind, const char *a, const char *b)
{
    if (m->n >= MEMO_MAX_CALLS)
        return SK_OK;
    char *key = memo_key(kind, a, b);
    if (!key)
        return SK_NOMEM;
    size_t slot;
    if ((m->n + 1) * 2 > m->n_slots && memo_grow(m) != SK_OK) {
        free(key);
        return SK_NOMEM;
    }
    if (memo_find(m, key, &slot)) {
        free(key);
        return SK_OK;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct memo_call *c = sk_realloc(m->calls, cap * sizeof *c);
        if (!c) {
            free(key);
            return SK_NOMEM;
        }
        m->calls = c;
        m->cap = cap;
    }
    struct memo_call *c = &m->calls[m->n];
    memset(c, 0, sizeof *c);
    c->key = key;
    c->kind = kind;
    c->a = sk_strdup(a);
    c->b = sk_strdup(b);
    if (!c->a || !c->b) {
        free(c->a);
        free(c->b);
        free(key);
        return SK_NOMEM;
    }
    m->n++;
    m->slots[slot] = m->n;
    m->pending++;
    return SK_OK;
}

static inv_opts sql_call_opts(const sk_grant *g)
{
    /* the prompts here keep their own cache; a grant makes it untrusted */
    inv_opts o = {.policy = "{\"cache\": false}", .grant = g};
    return o;
}

/* The variables and the response-cache key of ai(ins, text): the prompt
 * DataFrame.Map would send.  SK_NOMEM; *f NULL when it is not loaded. */
static sk_status ai_call(sk_kernel *k, const sk_grant *g, const char *ins,
                         const char *text, sk_function **f, sk_vars **vars,
                         char **key, sk_err **err)
{
    *vars = NULL;
    *key = NULL;
    *f = inv_lookup(k, "DataFrame.Map", NULL, g, err);
    if (!*f)
        return *err ? (*err)->code : SK_NOMEM;
    if ((*f)->kind != FN_SEMANTIC || !(*f)->tpl) {
        *err = err_new(SK_NOT_FOUND, "the prompt DataFrame.Map is not loaded; "
                       "load the built-in skills first");
        return *err ? SK_NOT_FOUND : SK_NOMEM;
    }
    char *rowtext = sk_asprintf("text: %s", text);
    sk_buf b;
    buf_init(&b, MAX_PROMPT);
    const char *model = (*f)->cfg && (*f)->cfg->model ? (*f)->cfg->model
                        : sk_kernel_model(k) ? sk_kernel_model(k) : "";
    int ok = rowtext && sk_vars_new(vars) == SK_OK &&
             sk_vars_set(*vars, "instruction", ins) == SK_OK &&
             sk_vars_set(*vars, "row", rowtext) == SK_OK &&
             sk_vars_set(*vars, "input", rowtext) == SK_OK &&
             buf_printf(&b, "%s\nmap\n", model) == SK_OK &&
             tpl_assemble((*f)->tpl, *vars, NULL, NULL, &b) == SK_OK;
    free(rowtext);
    if (ok)
        *key = buf_steal(&b);
    buf_free(&b);
    if (!ok || !*key) {
        sk_vars_free(*vars);
        *vars = NULL;
        return SK_NOMEM;
    }
    return SK_OK;
}

/* ---- filling a memo: the noted calls, side by side ---------------------- */

typedef struct memo_job {
    df_memo *m;
    size_t i;
    char *cache_key;   /* ai(): the response-cache entry to write */
} memo_job;

static void memo_start_next(df_memo *m);

static void memo_settle(df_memo *m, size_t i, sk_status st, char *text, sk_err *err)
{
    struct memo_call *c = &m->calls[i];
    c->state = 2;
    c->st = st;
    if (st == SK_OK) {
        c->text = text;
    } else {
        free(text);
        c->text = sk_strdup(err && err->message ? err->message : sk_strerror(st));
    }
    err_free(err);
}

static void memo_call_done(void *ud, sk_status st, char *text, sk_err *err)
{
    memo_job *j = ud;
    df_memo *m = j->m;
    if (st == SK_OK && j->cache_key && text)
        kern_cache_put(m->k, j->cache_key, text);
    if (st == SK_OK && m->calls[j->i].kind == 0 && text) {
        char *t = trim_space(text);
        free(text);
        text = t;
        if (!t)
            st = SK_NOMEM;
    }
    memo_settle(m, j->i, st, text, err);
    free(j->cache_key);
    free(j);
    m->inflight--;
    memo_start_next(m);
}

static void memo_start_next(df_memo *m)
{
    while (m->inflight < m->limit && m->next < m->n) {
        size_t i = m->next++;
        struct memo_call *c = &m->calls[i];
        if (c->state != 0)
            continue;
        c->state = 1;
        m->pending--;
        memo_job *j = sk_calloc(1, sizeof *j);
        sk_err *err = NULL;
        sk_vars *v = NULL;
        const char *name = c->a;
        sk_status st = j ? SK_OK : SK_NOMEM;
        if (st == SK_OK && c->kind == 0) {
            sk_function *f = NULL;
            st = ai_call(m->k, m->grant, c->a, c->b, &f, &v, &j->cache_key, &err);
            name = "DataFrame.Map";
            char *hit = NULL;
            if (st == SK_OK && kern_cache_get(m->k, j->cache_key, &hit) == SK_OK && hit) {
                char *t = trim_space(hit);
                free(hit);
                memo_settle(m, i, t ? SK_OK : SK_NOMEM, t, NULL);
                sk_vars_free(v);
                free(j->cache_key);
                free(j);
                continue;
            }
        } else if (st == SK_OK) {
            if (sk_vars_new(&v) != SK_OK || sk_vars_set(v, "input", c->b) != SK_OK)
                st = SK_NOMEM;
        }
        if (st == SK_OK) {
            j->m = m;
            j->i = i;
            inv_opts o = sql_call_opts(m->grant);
            st = inv_start_name(m->k, name, NULL, v, 0, &o, memo_call_done, j, &err);
        }
        sk_vars_free(v);
        if (st != SK_OK) {
            memo_settle(m, i, st, NULL, err);
            if (j)
                free(j->cache_key);
            free(j);
            continue;
        }
        m->inflight++;
    }
    if (m->inflight == 0 && m->next >= m->n)
        m->done = 1;
}

sk_status df_memo_fill(sk_kernel *k, df_memo *m, const sk_grant *grant, int concurrency)
{
    m->k = k;
    m->grant = grant;
    m->limit = concurrency > 0 ? (size_t)concurrency : 16;
    m->next = 0;
    m->done = 0;
    memo_start_next(m);
    loop_run_until(k, &m->done);
    return SK_OK;
}

/* ---- the functions ------------------------------------------------------ */

/* Reports a failed call as the SQL function's error. */
static void sql_call_failed(sqlite3_context *ctx, sk_kernel *k, const char *fn)
{
    if (sk_errcode(k) == SK_NOMEM) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    char *m = sk_asprintf("%s(): %s", fn, sk_errmsg(k));
    sqlite3_result_error(ctx, m ? m : sk_errmsg(k), -1);
    free(m);
}

/* What the statement's memo says of a call: 1 answered (the result is
 * set), 0 the caller must make it.  In the collecting pass it notes the
 * call and answers NULL. */
static int from_memo(sqlite3_context *ctx, sk_kernel *k, int kind, const char *a,
                     const char *b, const char *fn)
{
    int collecting = 0;
    df_memo *m = df_statement_memo(kern_engine(k, NULL), &collecting);
    if (!m)
        return 0;
    if (collecting) {
        if (memo_note(m, kind, a, b) != SK_OK)
            sqlite3_result_error_nomem(ctx);
        else
            sqlite3_result_null(ctx);
        return 1;
    }
    char *key = memo_key(kind, a, b);
    size_t slot;
    const struct memo_call *c = key ? memo_find(m, key, &slot) : NULL;
    free(key);
    if (!c || c->state != 2)
        return 0;
    if (c->st == SK_OK) {
        sqlite3_result_text(ctx, c->text ? c->text : "", -1, SQLITE_TRANSIENT);
    } else if (c->st == SK_NOMEM) {
        sqlite3_result_error_nomem(ctx);
    } else {
        char *msg = sk_asprintf("%s(): %s", fn, c->text ? c->text : sk_strerror(c->st));
        sqlite3_result_error(ctx, msg ? msg : "failed", -1);
        free(msg);
    }
    return 1;
}

/* ai(instruction, text): DataFrame.Map on one value, through the cache. */
static void sql_ai(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sk_kernel *k = sqlite3_user_data(ctx);
    const char *ins = (const char *)sqlite3_value_text(argv[0]);
    const char *text = (const char *)sqlite3_value_text(argv[1]);
    if (!text) {
        sqlite3_result_null(ctx);
        return;
    }
    if (!ins || !*ins) {
        sqlite3_result_error(ctx, "ai(instruction, text): the instruction "
                             "is empty", -1);
        return;
    }
    if (from_memo(ctx, k, 0, ins, text, "ai"))
        return;
    int model = 0;
    inv_opts o = sql_call_opts(df_statement_grant(kern_engine(k, NULL), &model));
    sk_function *f = NULL;
    sk_vars *v = NULL;
    char *key = NULL;
    sk_err *lerr = NULL;
    sk_status st = ai_call(k, o.grant, ins, text, &f, &v, &key, &lerr);
    if (st != SK_OK) {
        if (st == SK_NOMEM && !lerr) {
            sqlite3_result_error_nomem(ctx);
        } else {
            char *m = sk_asprintf("ai(): %s", lerr ? lerr->message : sk_strerror(st));
            sqlite3_result_error(ctx, m ? m : "ai() failed", -1);
            free(m);
        }
        err_free(lerr);
        return;
    }
    char *reply = NULL;
    if (kern_cache_get(k, key, &reply) != SK_OK) {
        sqlite3_result_error_nomem(ctx);
    } else if (reply) {
        char *t = trim_space(reply);
        if (t)
            sqlite3_result_text(ctx, t, -1, free);
        else
            sqlite3_result_error_nomem(ctx);
    } else if (inv_invoke(k, "DataFrame.Map", v, &o, &reply) != SK_OK) {
        sql_call_failed(ctx, k, "ai");
    } else {
        kern_cache_put(k, key, reply);
        char *t = trim_space(reply);
        if (t)
            sqlite3_result_text(ctx, t, -1, free);
        else
            sqlite3_result_error_nomem(ctx);
    }
    free(reply);
    sk_vars_free(v);
    free(key);
}

/* skein(function, text): a function, with text as its input. */
static void sql_skein(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sk_kernel *k = sqlite3_user_data(ctx);
    const char *fn = (const char *)sqlite3_value_text(argv[0]);
    const char *text = (const char *)sqlite3_value_text(argv[1]);
    if (!text) {
        sqlite3_result_null(ctx);
        return;
    }
    if (!fn || !*fn) {
        sqlite3_result_error(ctx, "skein(function, text): the function name "
                             "is empty", -1);
        return;
    }
    if (from_memo(ctx, k, 1, fn, text, "skein"))
        return;
    int model = 0;
    inv_opts o = sql_call_opts(df_statement_grant(kern_engine(k, NULL), &model));
    sk_vars *v = NULL;
    char *out = NULL;
    if (sk_vars_new(&v) != SK_OK || sk_vars_set(v, "input", text) != SK_OK) {
        sqlite3_result_error_nomem(ctx);
    } else if (inv_invoke(k, fn, v, &o, &out) != SK_OK) {
        sql_call_failed(ctx, k, "skein");
    } else {
        sqlite3_result_text(ctx, out, -1, free);
        out = NULL;
    }
    free(out);
    sk_vars_free(v);
}

sk_status df_register_sql_functions(sk_kernel *k, sk_err **err)
{
    *err = NULL;
    df_engine *e = kern_engine(k, err);
    if (!e)
        return *err ? (*err)->code : SK_NOMEM;
    sqlite3 *db = df_sqlite(e);
    if (!db) {
        *err = err_new(SK_USAGE, "SQL functions need the SQLite engine");
        return SK_USAGE;
    }
    /* Not deterministic: a model may answer differently, and SQLite must
     * not fold two calls into one on that assumption. */
    int rc = sqlite3_create_function_v2(db, "ai", 2, SQLITE_UTF8, k, sql_ai,
                                        NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "skein", 2, SQLITE_UTF8, k,
                                        sql_skein, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        *err = err_new(SK_QUERY, "registering SQL functions: %s",
                       sqlite3_errmsg(db));
        return SK_QUERY;
    }
    return SK_OK;
}
