/*
 * df.c -- the DataFrame core: the SQLite engine behind df_engine, the
 * kernel's session database, and the small operations every DataFrame
 * needs (names, views, counts, the text shown to a model).
 *
 * The engine's read-only mode is the product's safety promise: SQL that a
 * model wrote runs with an authorizer that allows reading and nothing
 * else, one statement at a time, under limits on rows, bytes and time.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#include "df/df.h"

#define BUSY_TIMEOUT_MS 5000
#define SQL_MAX_LENGTH (1 << 20)
#define VALUE_MAX_LENGTH (256 << 20)         /* one string or blob */
#define PROGRESS_OPS 1000                    /* VM steps between clock checks */
#define SAMPLE_CELL_MAX 60                   /* bytes of a value in a sample */
#define MAX_STMT_VIEWS 16                    /* model views one statement
                                                tracks; past it, it may call
                                                no function */

/* A view made from SQL a model wrote: the grant its ai()/skein() calls
 * run under, and the instruction-cache entry that is written only once a
 * read of it has run to the end within the limits (and removed when a
 * later read fails), so that a query that fails or runs away is never
 * cached as an instruction's answer. */
typedef struct model_view {
    char *name;
    sk_grant *grant;
    char *cache_key, *cache_value; /* NULL once settled */
    int committed;
    struct model_view *next;
} model_view;

/* What one statement is, by who wrote its SQL: its grant (NULL: the user
 * wrote all of it), the model views it reads, and its limits.  While it
 * steps it is on the engine's active stack, where the SQL functions and
 * the progress handler find it. */
typedef struct stmt_ctx {
    sk_grant *grant;        /* owned; NULL for the user's own SQL */
    model_view *views[MAX_STMT_VIEWS];
    size_t n_views;
    int too_many;
    /* limits (model statements only) */
    long long timeout_ms, used_ms, deadline_ms;
    long max_rows;           /* the sql_max_rows option; 0 none */
    long long max_bytes;
    long rows;
    long long bytes;
    int timed_out;
    /* ai()/skein() in it: their calls, made side by side (rowops.c) */
    int sql_calls;
    df_memo *memo;           /* owned */
    int collecting;          /* this pass only notes the calls */
    struct stmt_ctx *up;
} stmt_ctx;

typedef struct sq_engine {
    df_engine base;
    sk_kernel *k;
    sqlite3 *db;
    model_view *views;     /* views made from generated SQL */
    stmt_ctx *active;      /* statements stepping now, innermost first */
    /* per prepare: what the authorizer saw */
    stmt_ctx *prep;
    const sk_grant *prep_model; /* non-NULL: the SQL is a model's */
    char refused[256];
    int schema_write;
} sq_engine;

static const df_engine_vt sq_vt;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* *errmsg = a copy of msg (NULL when memory ran out). */
static void set_msg(char **errmsg, const char *fmt, ...) SK_PRINTF(2, 3);
static void set_msg(char **errmsg, const char *fmt, ...)
{
    if (!errmsg)
        return;
    va_list ap;
    va_start(ap, fmt);
    *errmsg = sk_vasprintf(fmt, ap);
    va_end(ap);
}

/* SQLite's message for the last failure on db, with the position in sql
 * when SQLite knows it: the message goes back to the model that wrote the
 * SQL, and "line 3, column 14" is what lets it fix the right spot. */
static void sql_error(sqlite3 *db, const char *sql, char **errmsg)
{
    const char *m = sqlite3_errmsg(db);
    int off = sqlite3_error_offset(db);
    if (sql && off >= 0 && (size_t)off <= strlen(sql)) {
        int line, col;
        sk_line_col(sql, (size_t)off, &line, &col);
        set_msg(errmsg, "%s (at line %d, column %d)", m, line, col);
    } else {
        set_msg(errmsg, "%s", m);
    }
}

/* ---- the read-only policy ---------------------------------------------- */

static int is_schema_table(const char *t)
{
    return t && (strcasecmp(t, "sqlite_master") == 0 ||
                 strcasecmp(t, "sqlite_schema") == 0 ||
                 strcasecmp(t, "sqlite_temp_master") == 0 ||
                 strcasecmp(t, "sqlite_temp_schema") == 0);
}

/* Functions that reach outside the database or change how it parses. */
static int banned_function(const char *f)
{
    static const char *const banned[] = {"load_extension", "readfile", "writefile",
                                         "edit", "fts3_tokenizer"};
    for (size_t i = 0; f && i < sizeof banned / sizeof *banned; i++)
        if (strcasecmp(f, banned[i]) == 0)
            return 1;
    return 0;
}

/* Words for what a refused action would have done, for the message the
 * model reads ("DROP TABLE sales"). */
static void describe(char *out, size_t n, int action, const char *a1, const char *a2)
{
    const char *x = a1 ? a1 : "", *y = a2 ? a2 : "";
    switch (action) {
    case SQLITE_CREATE_INDEX: case SQLITE_CREATE_TEMP_INDEX:
        snprintf(out, n, "CREATE INDEX %s", x); break;
    case SQLITE_CREATE_TABLE: case SQLITE_CREATE_TEMP_TABLE:
        snprintf(out, n, "CREATE TABLE %s", x); break;
    case SQLITE_CREATE_TRIGGER: case SQLITE_CREATE_TEMP_TRIGGER:
        snprintf(out, n, "CREATE TRIGGER %s", x); break;
    case SQLITE_CREATE_VIEW: case SQLITE_CREATE_TEMP_VIEW:
        snprintf(out, n, "CREATE VIEW %s", x); break;
    case SQLITE_CREATE_VTABLE:
        snprintf(out, n, "CREATE VIRTUAL TABLE %s", x); break;
    case SQLITE_DROP_INDEX: case SQLITE_DROP_TEMP_INDEX:
        snprintf(out, n, "DROP INDEX %s", x); break;
    case SQLITE_DROP_TABLE: case SQLITE_DROP_TEMP_TABLE:
        snprintf(out, n, "DROP TABLE %s", x); break;
    case SQLITE_DROP_TRIGGER: case SQLITE_DROP_TEMP_TRIGGER:
        snprintf(out, n, "DROP TRIGGER %s", x); break;
    case SQLITE_DROP_VIEW: case SQLITE_DROP_TEMP_VIEW:
        snprintf(out, n, "DROP VIEW %s", x); break;
    case SQLITE_DROP_VTABLE:
        snprintf(out, n, "DROP VIRTUAL TABLE %s", x); break;
    case SQLITE_DELETE: snprintf(out, n, "DELETE FROM %s", x); break;
    case SQLITE_INSERT: snprintf(out, n, "INSERT INTO %s", x); break;
    case SQLITE_UPDATE: snprintf(out, n, "UPDATE %s", x); break;
    case SQLITE_PRAGMA:
        snprintf(out, n, "run PRAGMA %s%s%s", x, *y ? " = " : "", y); break;
    case SQLITE_TRANSACTION: snprintf(out, n, "%s a transaction", x); break;
    case SQLITE_SAVEPOINT: snprintf(out, n, "%s SAVEPOINT %s", x, y); break;
    case SQLITE_ATTACH: snprintf(out, n, "ATTACH %s", x); break;
    case SQLITE_DETACH: snprintf(out, n, "DETACH %s", x); break;
    case SQLITE_ALTER_TABLE: snprintf(out, n, "ALTER TABLE %s", y); break;
    case SQLITE_REINDEX: snprintf(out, n, "REINDEX %s", x); break;
    case SQLITE_ANALYZE: snprintf(out, n, "ANALYZE %s", x); break;
    case SQLITE_FUNCTION: snprintf(out, n, "call %s()", y); break;
    default: snprintf(out, n, "perform action %d", action); break;
    }
}

/* ---- who wrote a statement ----------------------------------------------- */

static model_view *find_view(const sq_engine *se, const char *name)
{
    for (model_view *v = name ? se->views : NULL; v; v = v->next)
        if (strcasecmp(v->name, name) == 0)
            return v;
    return NULL;
}

/* Notes that the statement being prepared reads model view name. */
static void note_view(sq_engine *se, const char *name)
{
    stmt_ctx *c = se->prep;
    model_view *v = c ? find_view(se, name) : NULL;
    if (!v)
        return;
    for (size_t i = 0; i < c->n_views; i++)
        if (c->views[i] == v)
            return;
    if (c->n_views == MAX_STMT_VIEWS)
        c->too_many = 1;
    else
        c->views[c->n_views++] = v;
}

static int is_sql_function(const char *f)
{
    return f && (strcasecmp(f, "ai") == 0 || strcasecmp(f, "skein") == 0);
}

/* One authorizer for every prepare.  It notes which views made from
 * generated SQL the statement reads (a view's reads name it as the view
 * or as the innermost context), and for SQL a model wrote it allows
 * reading and nothing else.  A write to the schema table is let through to
 * the check that follows it (which names the statement: "DROP TABLE t"
 * rather than "DELETE FROM sqlite_master") but remembered, and the
 * statement is refused after prepare whatever happens. */
static int authorizer(void *ud, int action, const char *a1, const char *a2,
                      const char *dbname, const char *inner)
{
    (void)dbname;
    sq_engine *se = ud;
    note_view(se, inner);
    if (action == SQLITE_READ)
        note_view(se, a1);
    if (action == SQLITE_FUNCTION && se->prep && is_sql_function(a2))
        se->prep->sql_calls = 1;
    if (!se->prep_model)
        return SQLITE_OK;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION:
        if (banned_function(a2))
            break;
        /* ai() and skein() reach functions: only when the user allowed
         * some for this SQL (the lookup checks each call's name) */
        if (!is_sql_function(a2) || grant_allows_all(se->prep_model) ||
            grant_count(se->prep_model) > 0)
            return SQLITE_OK;
        if (!se->refused[0])
            snprintf(se->refused, sizeof se->refused,
                     "call %s(), and no function is allowed in it (the user "
                     "allows some with --functions)", a2);
        return SQLITE_DENY;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        if (is_schema_table(a1)) {
            se->schema_write = 1;
            return SQLITE_OK;
        }
        break;
    default:
        break;
    }
    if (!se->refused[0])
        describe(se->refused, sizeof se->refused, action, a1, a2);
    return SQLITE_DENY;
}

/* Skips whitespace, semicolons and comments: what may follow the one
 * statement of a read-only query. */
static const char *skip_tail(const char *p)
{
    for (;;) {
        if (isspace((unsigned char)*p) || *p == ';') {
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

/* The statement's grant: the model's own (when it wrote this SQL) met
 * with the grant of every model view it reads.  NULL when the user wrote
 * all of it.  SK_NOMEM. */
static sk_status settle_grant(stmt_ctx *c, const sk_grant *model)
{
    sk_grant *g = model ? grant_retain((sk_grant *)model) : NULL;
    for (size_t i = 0; i < c->n_views; i++) {
        sk_grant *m = grant_intersect(g, c->views[i]->grant);
        grant_release(g);
        if (!(g = m))
            return SK_NOMEM;
    }
    if (c->too_many) {
        /* more model views than it tracks: it may call nothing */
        sk_grant *none = grant_intersect(g, grant_none());
        grant_release(g);
        if (!(g = none))
            return SK_NOMEM;
    }
    c->grant = g;
    return SK_OK;
}

/* The limits of a statement with SQL a model wrote in it: the kernel's
 * sql_* options, read at each statement so a change applies at once. */
static void set_limits(sq_engine *se, stmt_ctx *c)
{
    if (!c->grant)
        return;
    const kern_sql *l = kern_sql_limits(se->k);
    c->timeout_ms = l->timeout_ms;
    c->max_rows = l->max_rows;
    c->max_bytes = l->max_bytes;
}

/* Prepares sql.  model non-NULL: a model wrote it (under that grant), so
 * the read-only policy applies.  On success *st is the statement and *ctx
 * (when non-NULL) what it is (caller frees both); otherwise *errmsg. */
static sk_status prepare(sq_engine *se, const char *sql, const sk_grant *model,
                         sqlite3_stmt **st, stmt_ctx *ctx, char **errmsg)
{
    *st = NULL;
    if (!sql)
        return SK_USAGE;
    if (strlen(sql) > SQL_MAX_LENGTH) {
        set_msg(errmsg, "the query is longer than %d bytes", SQL_MAX_LENGTH);
        return SK_TOO_LARGE;
    }
    stmt_ctx scratch;
    stmt_ctx *c = ctx ? ctx : &scratch;
    memset(c, 0, sizeof *c);
    const char *tail = NULL;
    se->refused[0] = '\0';
    se->schema_write = 0;
    se->prep = c;
    se->prep_model = model;
    int rc = sqlite3_prepare_v2(se->db, sql, -1, st, &tail);
    se->prep = NULL;
    se->prep_model = NULL;
    if (rc == SQLITE_NOMEM) {
        sqlite3_finalize(*st);
        *st = NULL;
        return SK_NOMEM;
    }
    if (rc != SQLITE_OK) {
        if (model && se->refused[0])
            set_msg(errmsg, "refused: the query would %s; generated SQL may only read",
                    se->refused);
        else
            sql_error(se->db, sql, errmsg);
        sqlite3_finalize(*st);
        *st = NULL;
        return SK_QUERY;
    }
    if (!*st) {
        set_msg(errmsg, "the query is empty");
        return SK_QUERY;
    }
    if (model) {
        const char *rest = tail ? skip_tail(tail) : "";
        const char *why = NULL;
        if (*rest)
            set_msg(errmsg, "refused: the query has more than one statement (the "
                    "second starts \"%.40s\"); generated SQL must be a single SELECT",
                    rest);
        else if (se->schema_write)
            why = "refused: the query would change the schema; generated SQL may only read";
        else if (!sqlite3_stmt_readonly(*st))
            why = "refused: the query would write to the database; generated SQL may "
                  "only read";
        else if (sqlite3_column_count(*st) == 0)
            /* e.g. a REINDEX with nothing to do: harmless, but not a query */
            why = "refused: the statement returns no rows; generated SQL must be a "
                  "single SELECT";
        if (why)
            set_msg(errmsg, "%s", why);
        if (*rest || why) {
            sqlite3_finalize(*st);
            *st = NULL;
            return SK_QUERY;
        }
    }
    if (ctx) {
        if (settle_grant(c, model) != SK_OK) {
            sqlite3_finalize(*st);
            *st = NULL;
            return SK_NOMEM;
        }
        set_limits(se, c);
    }
    return SK_OK;
}

/* ---- running statements -------------------------------------------------- */

/* Stops the innermost statement once its time is up. */
static int progress(void *ud)
{
    sq_engine *se = ud;
    stmt_ctx *c = se->active;
    if (c && c->deadline_ms && now_ms() > c->deadline_ms) {
        c->timed_out = 1;
        return 1;
    }
    return 0;
}

/* A read of model views ran to its end (ok) or failed: the instruction
 * cache keeps a view's query only while its reads succeed. */
static void settle_views(sq_engine *se, stmt_ctx *c, int ok)
{
    for (size_t i = 0; i < c->n_views; i++) {
        model_view *v = c->views[i];
        if (!v->cache_key)
            continue;
        if (ok && !v->committed) {
            kern_cache_put(se->k, v->cache_key, v->cache_value);
            v->committed = 1;
        } else if (!ok) {
            if (v->committed)
                kern_cache_del(se->k, v->cache_key);
            free(v->cache_key);
            free(v->cache_value);
            v->cache_key = v->cache_value = NULL;
        }
    }
}

/* One step of a prepared statement, with its limits: SK_OK with *row set
 * (1 a row, 0 the end), or an error in *errmsg naming the limit it hit. */
static sk_status step_stmt(sq_engine *se, sqlite3_stmt *st, stmt_ctx *c, int *row,
                           char **errmsg)
{
    *row = 0;
    c->up = se->active;
    se->active = c;
    long long t0 = now_ms();
    c->deadline_ms = c->timeout_ms > 0 ? t0 + (c->timeout_ms - c->used_ms) : 0;
    c->timed_out = 0;
    int s = sqlite3_step(st);
    c->used_ms += now_ms() - t0;
    se->active = c->up;
    if (s == SQLITE_DONE) {
        settle_views(se, c, 1);
        return SK_OK;
    }
    sk_status rc = SK_OK;
    if (s != SQLITE_ROW) {
        if (c->timed_out) {
            set_msg(errmsg, "the query ran past the time limit of %.1f s for generated "
                    "SQL and was stopped (raise it with --option sql_timeout_ms=N, "
                    "or skein.set_option)", c->timeout_ms / 1000.0);
            rc = SK_QUERY;
        } else if (s == SQLITE_NOMEM) {
            rc = SK_NOMEM;
        } else {
            sql_error(se->db, NULL, errmsg);
            rc = SK_QUERY;
        }
    } else if (c->max_rows > 0 && c->rows >= c->max_rows) {
        set_msg(errmsg, "the query returned more than %ld rows, the limit for generated "
                "SQL (raise it with --option sql_max_rows=N, or skein.set_option)",
                c->max_rows);
        rc = SK_QUERY;
    } else {
        c->rows++;
        int n = sqlite3_column_count(st);
        for (int i = 0; i < n; i++)
            c->bytes += sqlite3_column_bytes(st, i);
        if (c->max_bytes > 0 && c->bytes > c->max_bytes) {
            set_msg(errmsg, "the query's result is larger than %lld bytes, the limit for "
                    "generated SQL (raise it with --option sql_max_bytes=N, or "
                    "skein.set_option)", c->max_bytes);
            rc = SK_QUERY;
        } else {
            *row = 1;
        }
    }
    if (rc != SK_OK)
        settle_views(se, c, 0);
    return rc;
}

/* A read-only statement that calls ai() or skein() runs first in a
 * collecting pass: the functions note the calls they would make, which
 * are then made side by side into the statement's memo (rowops.c), and
 * the real pass answers from it.  A call whose argument came from another
 * call shows up in the next pass; after three, what is left is made when
 * it is met.  The collecting pass is bounded like the statement. */
static sk_status prefetch(sq_engine *se, sqlite3_stmt *st, const char *sql, stmt_ctx *c,
                          char **errmsg)
{
    if (!c->sql_calls || !sqlite3_stmt_readonly(st))
        return SK_OK;
    if (!(c->memo = df_memo_new()))
        return SK_NOMEM;
    sk_status rc = SK_OK;
    for (int pass = 0; pass < 3 && rc == SK_OK; pass++) {
        sqlite3_stmt *again = NULL;
        if (sqlite3_prepare_v2(se->db, sql, -1, &again, NULL) != SQLITE_OK) {
            sqlite3_finalize(again);
            break; /* the real pass reports it */
        }
        stmt_ctx pc = *c;
        pc.n_views = 0; /* settles nothing */
        pc.rows = 0;
        pc.bytes = 0;
        pc.used_ms = 0;
        pc.collecting = 1;
        int row = 1;
        while (rc == SK_OK && row)
            rc = step_stmt(se, again, &pc, &row, errmsg);
        sqlite3_finalize(again);
        if (rc != SK_OK || !df_memo_pending(c->memo))
            break;
        rc = df_memo_fill(se->k, c->memo, c->grant, kern_sql_limits(se->k)->concurrency);
    }
    return rc;
}

static void ctx_free(stmt_ctx *c)
{
    grant_release(c->grant);
    c->grant = NULL;
    df_memo_free(c->memo);
    c->memo = NULL;
}

df_memo *df_statement_memo(df_engine *e, int *collecting)
{
    *collecting = 0;
    if (!e || e->vt != &sq_vt)
        return NULL;
    stmt_ctx *c = ((sq_engine *)e)->active;
    if (!c || !c->memo)
        return NULL;
    *collecting = c->collecting;
    return c->memo;
}

/* ---- the engine -------------------------------------------------------- */

static sk_status sq_exec(df_engine *e, const char *sql, char **errmsg)
{
    sq_engine *se = (sq_engine *)e;
    char *m = NULL;
    int rc = sqlite3_exec(se->db, sql, NULL, NULL, &m);
    if (rc == SQLITE_OK)
        return SK_OK;
    if (rc == SQLITE_NOMEM) {
        sqlite3_free(m);
        return SK_NOMEM;
    }
    set_msg(errmsg, "%s", m ? m : sqlite3_errstr(rc));
    sqlite3_free(m);
    return SK_QUERY;
}

static sk_status sq_check(df_engine *e, const char *sql, const sk_grant *model,
                          char **errmsg)
{
    sqlite3_stmt *st = NULL;
    sk_status rc = prepare((sq_engine *)e, sql, model, &st, NULL, errmsg);
    sqlite3_finalize(st);
    return rc;
}

static sk_status sq_query(df_engine *e, const char *sql, const sk_grant *model,
                          long max_rows, df_row_fn row, void *ud, char **errmsg)
{
    sq_engine *se = (sq_engine *)e;
    sqlite3_stmt *st = NULL;
    stmt_ctx c;
    sk_status rc = prepare(se, sql, model, &st, &c, errmsg);
    if (rc != SK_OK)
        return rc;
    int n = sqlite3_column_count(st);
    const char **names = sk_calloc((size_t)n + 1, sizeof *names);
    const char **values = sk_calloc((size_t)n + 1, sizeof *values);
    if (!names || !values) {
        rc = SK_NOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        names[i] = sqlite3_column_name(st, i);
        if (!names[i]) {
            rc = SK_NOMEM;
            goto done;
        }
    }
    if ((rc = prefetch(se, st, sql, &c, errmsg)) != SK_OK)
        goto done;
    long rows = 0;
    for (;;) {
        int has = 0;
        rc = step_stmt(se, st, &c, &has, errmsg);
        if (rc != SK_OK || !has)
            break;
        if (max_rows > 0 && rows >= max_rows) {
            set_msg(errmsg, "the query returned more than %ld rows", max_rows);
            rc = SK_TOO_LARGE;
            break;
        }
        for (int i = 0; i < n; i++) {
            values[i] = (const char *)sqlite3_column_text(st, i);
            if (!values[i] && sqlite3_column_type(st, i) != SQLITE_NULL) {
                rc = SK_NOMEM;
                break;
            }
        }
        if (rc != SK_OK)
            break;
        rows++;
        /* the callback's time is the caller's: step_stmt counts only the
         * statement's own */
        if (row && row(ud, (size_t)n, names, values))
            break;
    }
done:
    free(names);
    free(values);
    sqlite3_finalize(st);
    ctx_free(&c);
    return rc;
}

/* A cursor over a statement, for reads that hand rows to the caller one
 * at a time (df:rows()).  The statement keeps its limits across calls. */
struct df_cursor {
    sq_engine *se;
    sqlite3_stmt *st;
    stmt_ctx c;
    size_t n;
    const char **names;
    df_value *values;
};

static sk_status sq_open_cursor(df_engine *e, const char *sql, df_cursor **out,
                                char **errmsg)
{
    sq_engine *se = (sq_engine *)e;
    *out = NULL;
    df_cursor *cur = sk_calloc(1, sizeof *cur);
    if (!cur)
        return SK_NOMEM;
    cur->se = se;
    sk_status rc = prepare(se, sql, NULL, &cur->st, &cur->c, errmsg);
    if (rc != SK_OK) {
        free(cur);
        return rc;
    }
    cur->n = (size_t)sqlite3_column_count(cur->st);
    cur->names = sk_calloc(cur->n + 1, sizeof *cur->names);
    cur->values = sk_calloc(cur->n + 1, sizeof *cur->values);
    if (!cur->names || !cur->values) {
        df_cursor_close(cur);
        return SK_NOMEM;
    }
    for (size_t i = 0; i < cur->n; i++) {
        cur->names[i] = sqlite3_column_name(cur->st, (int)i);
        if (!cur->names[i]) {
            df_cursor_close(cur);
            return SK_NOMEM;
        }
    }
    if ((rc = prefetch(se, cur->st, sql, &cur->c, errmsg)) != SK_OK) {
        df_cursor_close(cur);
        return rc;
    }
    *out = cur;
    return SK_OK;
}

sk_status df_cursor_next(df_cursor *cur, int *row, char **errmsg)
{
    *row = 0;
    if (!cur || !cur->st)
        return SK_OK;
    sk_status rc = step_stmt(cur->se, cur->st, &cur->c, row, errmsg);
    if (rc != SK_OK || !*row) {
        sqlite3_finalize(cur->st); /* finished: nothing more to read */
        cur->st = NULL;
        *row = 0;
        return rc;
    }
    for (size_t i = 0; i < cur->n; i++) {
        df_value *v = &cur->values[i];
        memset(v, 0, sizeof *v);
        switch (sqlite3_column_type(cur->st, (int)i)) {
        case SQLITE_NULL: v->type = DF_NULL; break;
        case SQLITE_INTEGER:
            v->type = DF_INT;
            v->i = (long long)sqlite3_column_int64(cur->st, (int)i);
            break;
        case SQLITE_FLOAT:
            v->type = DF_REAL;
            v->r = sqlite3_column_double(cur->st, (int)i);
            break;
        default:
            v->type = DF_TEXT;
            v->s = (const char *)sqlite3_column_text(cur->st, (int)i);
            v->len = (size_t)sqlite3_column_bytes(cur->st, (int)i);
            if (!v->s) {
                sqlite3_finalize(cur->st);
                cur->st = NULL;
                return SK_NOMEM;
            }
        }
    }
    *row = 1;
    return SK_OK;
}

size_t df_cursor_row(const df_cursor *cur, const char *const **names,
                     const df_value **values)
{
    *names = cur->names;
    *values = cur->values;
    return cur->n;
}

void df_cursor_close(df_cursor *cur)
{
    if (!cur)
        return;
    sqlite3_finalize(cur->st);
    ctx_free(&cur->c);
    free(cur->names);
    free(cur->values);
    free(cur);
}

sk_status df_cursor_open(df_engine *e, const char *sql, df_cursor **out, char **errmsg)
{
    *out = NULL;
    if (!e || e->vt != &sq_vt) {
        set_msg(errmsg, "reading rows one at a time needs the SQLite engine");
        return SK_USAGE;
    }
    return sq_open_cursor(e, sql, out, errmsg);
}

const sk_grant *df_statement_grant(df_engine *e, int *model)
{
    *model = 0;
    if (!e || e->vt != &sq_vt)
        return NULL;
    stmt_ctx *c = ((sq_engine *)e)->active;
    if (!c || !c->grant)
        return NULL;
    *model = 1;
    return c->grant;
}

static sk_status sq_columns(df_engine *e, const char *relation, df_col **cols,
                            size_t *n, char **errmsg)
{
    sq_engine *se = (sq_engine *)e;
    *cols = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(se->db, "SELECT name, type FROM pragma_table_info(?)", -1,
                           &st, NULL) != SQLITE_OK) {
        sql_error(se->db, NULL, errmsg);
        return SK_QUERY;
    }
    sqlite3_bind_text(st, 1, relation, -1, SQLITE_STATIC);
    sk_status rc = SK_OK;
    size_t cap = 0;
    df_col *v = NULL;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            df_col *p = sk_realloc(v, nc * sizeof *p);
            if (!p) {
                rc = SK_NOMEM;
                break;
            }
            v = p;
            cap = nc;
        }
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        v[*n].name = sk_strdup(name ? name : "");
        v[*n].type = sk_strdup(type ? type : "");
        (*n)++;
        if (!v[*n - 1].name || !v[*n - 1].type) {
            rc = SK_NOMEM;
            break;
        }
    }
    if (rc == SK_OK && s != SQLITE_DONE && s != SQLITE_ROW) {
        sql_error(se->db, NULL, errmsg);
        rc = SK_QUERY;
    }
    sqlite3_finalize(st);
    if (rc == SK_OK && *n == 0) {
        set_msg(errmsg, "no such table or view: %s", relation);
        rc = SK_QUERY;
    }
    if (rc != SK_OK) {
        df_cols_free(v, *n);
        *n = 0;
        return rc;
    }
    *cols = v;
    return SK_OK;
}

static void sq_close(df_engine *e)
{
    if (!e)
        return;
    sq_engine *se = (sq_engine *)e;
    sqlite3_close_v2(se->db);
    while (se->views) {
        model_view *v = se->views;
        se->views = v->next;
        free(v->name);
        grant_release(v->grant);
        free(v->cache_key);
        free(v->cache_value);
        free(v);
    }
    free(se);
}

static const df_engine_vt sq_vt = {
    "SQLite", sq_exec, sq_check, sq_query, sq_columns, sq_close,
};

void df_cols_free(df_col *cols, size_t n)
{
    for (size_t i = 0; cols && i < n; i++) {
        free(cols[i].name);
        free(cols[i].type);
    }
    free(cols);
}

/* Opens the session database at path (NULL: in memory) with the safety
 * settings.  Caller closes with vt->close. */
static sk_status sq_open(sk_kernel *k, const char *path, df_engine **out, sk_err **err)
{
    *out = NULL;
    sq_engine *se = sk_calloc(1, sizeof *se);
    if (!se)
        return SK_NOMEM;
    se->base.vt = &sq_vt;
    se->k = k;
    const char *file = path && *path ? path : ":memory:";
    int rc = sqlite3_open_v2(file, &se->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        if (err)
            *err = err_new(rc == SQLITE_NOMEM ? SK_NOMEM : SK_IO,
                           "%s: cannot open the session database: %s", file,
                           se->db ? sqlite3_errmsg(se->db) : sqlite3_errstr(rc));
        sqlite3_close_v2(se->db);
        free(se);
        return rc == SQLITE_NOMEM ? SK_NOMEM : SK_IO;
    }
    sqlite3 *db = se->db;
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, SQL_MAX_LENGTH);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, VALUE_MAX_LENGTH);
    sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 500);
    sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 10000);
    sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 100);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* every prepare passes the authorizer (who wrote it), every step the
     * progress handler (the time limit of generated SQL) */
    sqlite3_set_authorizer(db, authorizer, se);
    sqlite3_progress_handler(db, PROGRESS_OPS, progress, se);
    const char *setup = path && *path ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                      : "PRAGMA temp_store=MEMORY;";
    char *m = NULL;
    if (sqlite3_exec(db, setup, NULL, NULL, &m) != SQLITE_OK) {
        if (err)
            *err = err_new(SK_IO, "%s: cannot set up the session database: %s", file,
                           m ? m : sqlite3_errmsg(db));
        sqlite3_free(m);
        sq_close(&se->base);
        return SK_IO;
    }
    *out = &se->base;
    return SK_OK;
}

static const char ENGINE_KEY = 'E'; /* the kernel slot of the session engine */

static void df_shutdown(sk_kernel *k);

df_engine *kern_engine(sk_kernel *k, sk_err **err)
{
    void **slot = kern_slot(k, &ENGINE_KEY);
    if (slot && *slot)
        return *slot;
    if (!slot || kern_on_free(k, 20, df_shutdown) != SK_OK) {
        if (err)
            *err = err_new(SK_NOMEM, "out of memory");
        return NULL;
    }
    df_engine *e = NULL;
    sk_err *x = NULL;
    sk_status rc = sq_open(k, kern_db_path(k), &e, &x);
    if (rc != SK_OK) {
        if (!x && rc != SK_NOMEM)
            x = err_new(rc, "cannot open the session database");
        if (err)
            *err = x;
        else
            err_free(x);
        return NULL;
    }
    *slot = e;
    /* ai() and skein() are part of every session database */
    sk_err *rx = NULL;
    if (df_register_sql_functions(k, &rx) != SK_OK) {
        *slot = NULL;
        e->vt->close(e);
        if (err)
            *err = rx;
        else
            err_free(rx);
        return NULL;
    }
    return e;
}

struct sqlite3 *df_sqlite(df_engine *e)
{
    return e && e->vt == &sq_vt ? ((sq_engine *)e)->db : NULL;
}

static void df_shutdown(sk_kernel *k)
{
    void **slot = kern_slot(k, &ENGINE_KEY);
    df_engine *e = slot ? *slot : NULL;
    if (!slot)
        return;
    if (e)
        e->vt->close(e);
    *slot = NULL;
}

/* ---- names ------------------------------------------------------------- */

char *df_quote_ident(const char *name)
{
    if (!name)
        return NULL;
    size_t n = 2;
    for (const char *p = name; *p; p++)
        n += *p == '"' ? 2 : 1;
    char *q = sk_malloc(n + 1), *o = q;
    if (!q)
        return NULL;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    return q;
}

/* 1 when a table or view called name exists (names compare without case,
 * as SQLite's do); 0 when not or when the database cannot say. */
static int relation_exists(df_engine *e, const char *name)
{
    sqlite3 *db = df_sqlite(e);
    if (!db)
        return 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE "
                           "UNION ALL SELECT 1 FROM sqlite_temp_schema WHERE name = ?1 "
                           "COLLATE NOCASE",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

char *df_new_name(sk_kernel *k)
{
    df_engine *e = kern_engine(k, NULL);
    for (;;) {
        char *name = sk_asprintf("df_%ld", kern_next_id(k));
        if (!name || !e || !relation_exists(e, name))
            return name;
        free(name);
    }
}

/* ---- DataFrames -------------------------------------------------------- */

sk_df *df_wrap(sk_kernel *k, const char *name, const char *sql, const char *instruction)
{
    sk_df *df = sk_calloc(1, sizeof *df);
    if (!df)
        return NULL;
    df->k = k;
    df->name = sk_strdup(name);
    df->sql = sk_strdup(sql);
    df->instruction = sk_strdup(instruction);
    if (!df->name || (sql && !df->sql) || (instruction && !df->instruction)) {
        df_free(df);
        return NULL;
    }
    return df;
}

/* Frees the handle only: the relation stays in the session database,
 * since views made from it may still read it. */
void df_free(sk_df *df)
{
    if (!df)
        return;
    free(df->name);
    free(df->sql);
    free(df->instruction);
    free(df);
}

/* The status of a failed kern_engine call. */
static sk_status engine_status(sk_err **err)
{
    return err && *err ? (*err)->code : SK_NOMEM;
}

/* Makes *err from status and an engine message (taking the message). */
static sk_status fail(sk_err **err, sk_status rc, char *msg, const char *what)
{
    if (err) {
        if (rc == SK_NOMEM)
            *err = err_new(SK_NOMEM, "out of memory");
        else
            *err = err_new(rc, "%s: %s", what, msg ? msg : sk_strerror(rc));
    }
    free(msg);
    return rc;
}

/* Remembers that view name holds SQL a model wrote (m).  SK_NOMEM. */
static sk_status add_model_view(df_engine *e, const char *name, const df_model_sql *m)
{
    if (e->vt != &sq_vt)
        return SK_OK;
    sq_engine *se = (sq_engine *)e;
    model_view *v = sk_calloc(1, sizeof *v);
    if (!v || !(v->name = sk_strdup(name)) ||
        (m->cache_key && !(v->cache_key = sk_strdup(m->cache_key))) ||
        (m->cache_value && !(v->cache_value = sk_strdup(m->cache_value)))) {
        if (v) {
            free(v->name);
            free(v->cache_key);
            free(v);
        }
        return SK_NOMEM;
    }
    if (!v->cache_value) {
        free(v->cache_key);
        v->cache_key = NULL;
    }
    v->committed = m->cached;
    v->grant = grant_retain((sk_grant *)m->grant);
    v->next = se->views;
    se->views = v;
    return SK_OK;
}

sk_status df_from_query(sk_kernel *k, const char *sql, const char *instruction,
                        const df_model_sql *model, sk_df **out, sk_err **err)
{
    *out = NULL;
    if (!sql || (model && !model->grant))
        return fail(err, SK_USAGE, NULL, "df_from_query");
    df_engine *e = kern_engine(k, err);
    if (!e)
        return engine_status(err);
    /* A view body takes one statement with no trailing semicolon. */
    size_t len = strlen(sql);
    while (len && (isspace((unsigned char)sql[len - 1]) || sql[len - 1] == ';'))
        len--;
    char *name = df_new_name(k);
    char *q = df_quote_ident(name);
    char *body = sk_strndup(sql, len);
    char *create = q && body ? sk_asprintf("CREATE VIEW %s AS %s", q, body) : NULL;
    sk_status rc = create ? SK_OK : SK_NOMEM;
    char *msg = NULL;
    /* SQLite resolves a view's columns only when it is read: check the
     * query first (by who wrote it) so that a bad one makes no view. */
    if (rc == SK_OK)
        rc = e->vt->check(e, body, model ? model->grant : NULL, &msg);
    if (rc == SK_OK)
        rc = e->vt->exec(e, create, &msg);
    if (rc == SK_OK && model && add_model_view(e, name, model) != SK_OK)
        rc = SK_NOMEM;
    if (rc == SK_OK) {
        *out = df_wrap(k, name, body, instruction);
        if (!*out)
            rc = SK_NOMEM;
    }
    if (rc == SK_NOMEM && create) {
        char *drop = sk_asprintf("DROP VIEW IF EXISTS %s", q);
        if (drop)
            e->vt->exec(e, drop, NULL);
        free(drop);
    }
    free(name);
    free(q);
    free(body);
    free(create);
    if (rc != SK_OK)
        return fail(err, rc, msg, "cannot create the view");
    return SK_OK;
}

char *df_subst(const sk_df *df, const char *sql)
{
    if (!df || !sql)
        return NULL;
    char *q = df_quote_ident(df->name);
    if (!q)
        return NULL;
    sk_buf b;
    buf_init(&b, SQL_MAX_LENGTH * 2);
    sk_status rc = SK_OK;
    const char *p = sql;
    for (const char *hit; rc == SK_OK && (hit = strstr(p, "{df}")); p = hit + 4) {
        rc = buf_add(&b, p, (size_t)(hit - p));
        if (rc == SK_OK)
            rc = buf_adds(&b, q);
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, p);
    free(q);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static int count_row(void *ud, size_t n, const char *const *names,
                     const char *const *values)
{
    (void)names;
    if (n > 0 && values[0])
        *(long long *)ud = strtoll(values[0], NULL, 10);
    return 0;
}

sk_status df_count(const sk_df *df, long long *n, sk_err **err)
{
    *n = 0;
    df_engine *e = kern_engine(df->k, err);
    if (!e)
        return engine_status(err);
    char *q = df_quote_ident(df->name);
    char *sql = q ? sk_asprintf("SELECT count(*) FROM %s", q) : NULL;
    free(q);
    if (!sql)
        return fail(err, SK_NOMEM, NULL, NULL);
    char *msg = NULL;
    sk_status rc = e->vt->query(e, sql, NULL, 0, count_row, n, &msg);
    free(sql);
    if (rc != SK_OK)
        return fail(err, rc, msg, df->name);
    return SK_OK;
}

typedef struct sample_ctx {
    sk_buf b;
    sk_status rc;
    int header_done;
} sample_ctx;

/* Appends v, cut to SAMPLE_CELL_MAX bytes on a UTF-8 boundary, with line
 * breaks and tabs as spaces so that one row stays one line. */
static sk_status add_cell(sk_buf *b, const char *v)
{
    size_t n = strlen(v), cut = n;
    if (n > SAMPLE_CELL_MAX) {
        cut = SAMPLE_CELL_MAX;
        while (cut > 0 && ((unsigned char)v[cut] & 0xC0) == 0x80)
            cut--;
    }
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && i < cut; i++) {
        char c = v[i];
        rc = buf_addc(b, c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
    }
    if (rc == SK_OK && cut < n)
        rc = buf_adds(b, "...");
    return rc;
}

static int sample_row(void *ud, size_t n, const char *const *names,
                      const char *const *values)
{
    sample_ctx *c = ud;
    if (!c->header_done) {
        for (size_t i = 0; c->rc == SK_OK && i < n; i++) {
            if (i)
                c->rc = buf_adds(&c->b, " | ");
            if (c->rc == SK_OK)
                c->rc = add_cell(&c->b, names[i]);
        }
        if (c->rc == SK_OK)
            c->rc = buf_addc(&c->b, '\n');
        c->header_done = 1;
    }
    for (size_t i = 0; c->rc == SK_OK && i < n; i++) {
        if (i)
            c->rc = buf_adds(&c->b, " | ");
        if (c->rc == SK_OK)
            c->rc = add_cell(&c->b, values[i] ? values[i] : "NULL");
    }
    if (c->rc == SK_OK)
        c->rc = buf_addc(&c->b, '\n');
    return c->rc != SK_OK;
}

char *df_sample_text(const sk_df *df, size_t n)
{
    df_engine *e = kern_engine(df->k, NULL);
    if (!e)
        return NULL;
    sample_ctx c;
    memset(&c, 0, sizeof c);
    buf_init(&c.b, 0);
    /* The header comes from the columns, so an empty frame still shows
     * what it holds. */
    df_col *cols = NULL;
    size_t nc = 0;
    char *msg = NULL;
    c.rc = e->vt->columns(e, df->name, &cols, &nc, &msg);
    free(msg);
    msg = NULL;
    for (size_t i = 0; c.rc == SK_OK && i < nc; i++) {
        if (i)
            c.rc = buf_adds(&c.b, " | ");
        if (c.rc == SK_OK)
            c.rc = add_cell(&c.b, cols[i].name);
    }
    df_cols_free(cols, nc);
    if (c.rc == SK_OK)
        c.rc = buf_addc(&c.b, '\n');
    c.header_done = 1;
    char *q = c.rc == SK_OK ? df_quote_ident(df->name) : NULL;
    char *sql = q ? sk_asprintf("SELECT * FROM %s LIMIT %zu", q, n) : NULL;
    free(q);
    sk_status rc = sql ? SK_OK : SK_NOMEM;
    if (rc == SK_OK && n > 0)
        rc = e->vt->query(e, sql, NULL, 0, sample_row, &c, &msg);
    free(sql);
    free(msg);
    if (rc != SK_OK || c.rc != SK_OK) {
        buf_free(&c.b);
        return NULL;
    }
    return buf_steal(&c.b);
}

static int first_value(void *ud, size_t n, const char *const *names,
                       const char *const *values)
{
    (void)names;
    char **out = ud;
    if (n > 0 && values[0] && !*out)
        *out = sk_strdup(values[0]);
    return 1;
}

/* The storage class of the column's first non-NULL value ("INTEGER"), for
 * view columns that have no declared type; NULL when unknown. */
static char *observed_type(df_engine *e, const char *relation, const char *column)
{
    char *qr = df_quote_ident(relation), *qc = df_quote_ident(column);
    char *sql = qr && qc ? sk_asprintf("SELECT upper(typeof(%s)) FROM %s WHERE %s IS "
                                       "NOT NULL LIMIT 1", qc, qr, qc)
                         : NULL;
    char *type = NULL;
    if (sql)
        e->vt->query(e, sql, NULL, 1, first_value, &type, NULL);
    free(qr);
    free(qc);
    free(sql);
    return type;
}

char *df_schema_text(const sk_df *df)
{
    df_engine *e = kern_engine(df->k, NULL);
    if (!e)
        return NULL;
    df_col *cols = NULL;
    size_t nc = 0;
    char *msg = NULL;
    if (e->vt->columns(e, df->name, &cols, &nc, &msg) != SK_OK) {
        free(msg);
        return NULL;
    }
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && i < nc; i++) {
        char *seen = cols[i].type[0] ? NULL : observed_type(e, df->name, cols[i].name);
        const char *type = cols[i].type[0] ? cols[i].type : seen;
        rc = buf_printf(&b, "%s%s%s%s", i ? ", " : "", cols[i].name, type ? " " : "",
                        type ? type : "");
        free(seen);
    }
    df_cols_free(cols, nc);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}
