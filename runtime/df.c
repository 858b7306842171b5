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

#include "internal.h"

#define QUERY_TIMEOUT_MS 30000L              /* wall time of one query */
#define QUERY_MAX_BYTES ((long long)64 << 20) /* result text of one query */
#define BUSY_TIMEOUT_MS 5000
#define SQL_MAX_LENGTH (1 << 20)
#define VALUE_MAX_LENGTH (256 << 20)         /* one string or blob */
#define PROGRESS_OPS 1000                    /* VM steps between clock checks */
#define SAMPLE_CELL_MAX 60                   /* bytes of a value in a sample */

typedef struct sq_engine {
    df_engine base;
    sqlite3 *db;
    long timeout_ms;       /* 0: no time limit */
    long long max_bytes;   /* 0: no byte limit */
    /* per query */
    long long deadline_ms;
    int timed_out;
    /* per read-only prepare: what the authorizer refused */
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

/* Test-only: changes the limits of a SQLite engine (timeout_ms <= 0 and
 * max_bytes <= 0 leave them as they are).  Not in internal.h on purpose:
 * only the test suite declares it. */
SK_HIDDEN void df_test_set_limits(df_engine *e, long timeout_ms, long long max_bytes);
void df_test_set_limits(df_engine *e, long timeout_ms, long long max_bytes)
{
    if (!e || e->vt != &sq_vt)
        return;
    sq_engine *se = (sq_engine *)e;
    if (timeout_ms > 0)
        se->timeout_ms = timeout_ms;
    if (max_bytes > 0)
        se->max_bytes = max_bytes;
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

/* Allows reading and nothing else.  A write to the schema table is let
 * through to the check that follows it (which names the statement: "DROP
 * TABLE t" rather than "DELETE FROM sqlite_master") but remembered, and
 * the statement is refused after prepare whatever happens. */
static int ro_authorizer(void *ud, int action, const char *a1, const char *a2,
                         const char *dbname, const char *trigger)
{
    (void)dbname;
    (void)trigger;
    sq_engine *se = ud;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION:
        if (!banned_function(a2))
            return SQLITE_OK;
        break;
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

/* Prepares sql.  readonly applies the policy above, then removes the
 * authorizer so the runtime's own statements work.  On success *st is
 * the statement (caller finalizes); otherwise *errmsg (caller frees). */
static sk_status prepare(sq_engine *se, const char *sql, int readonly,
                         sqlite3_stmt **st, char **errmsg)
{
    *st = NULL;
    if (!sql)
        return SK_USAGE;
    if (strlen(sql) > SQL_MAX_LENGTH) {
        set_msg(errmsg, "the query is longer than %d bytes", SQL_MAX_LENGTH);
        return SK_TOO_LARGE;
    }
    const char *tail = NULL;
    se->refused[0] = '\0';
    se->schema_write = 0;
    if (readonly)
        sqlite3_set_authorizer(se->db, ro_authorizer, se);
    int rc = sqlite3_prepare_v2(se->db, sql, -1, st, &tail);
    if (readonly)
        sqlite3_set_authorizer(se->db, NULL, NULL);
    if (rc == SQLITE_NOMEM) {
        sqlite3_finalize(*st);
        *st = NULL;
        return SK_NOMEM;
    }
    if (rc != SQLITE_OK) {
        if (readonly && se->refused[0])
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
    if (!readonly)
        return SK_OK;
    const char *rest = tail ? skip_tail(tail) : "";
    if (*rest) {
        set_msg(errmsg, "refused: the query has more than one statement (the second "
                "starts \"%.40s\"); generated SQL must be a single SELECT", rest);
    } else if (se->schema_write) {
        set_msg(errmsg, "refused: the query would change the schema; generated SQL "
                "may only read");
    } else if (!sqlite3_stmt_readonly(*st)) {
        set_msg(errmsg, "refused: the query would write to the database; generated "
                "SQL may only read");
    } else if (sqlite3_column_count(*st) == 0) {
        /* e.g. a REINDEX with nothing to do: harmless, but not a query */
        set_msg(errmsg, "refused: the statement returns no rows; generated SQL must "
                "be a single SELECT");
    } else {
        return SK_OK;
    }
    sqlite3_finalize(*st);
    *st = NULL;
    return SK_QUERY;
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

static sk_status sq_check(df_engine *e, const char *sql, int readonly, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    sk_status rc = prepare((sq_engine *)e, sql, readonly, &st, errmsg);
    sqlite3_finalize(st);
    return rc;
}

/* Stops the statement once the deadline has passed. */
static int progress(void *ud)
{
    sq_engine *se = ud;
    if (se->deadline_ms && now_ms() > se->deadline_ms) {
        se->timed_out = 1;
        return 1;
    }
    return 0;
}

static sk_status sq_query(df_engine *e, const char *sql, int readonly, long max_rows,
                          df_row_fn row, void *ud, char **errmsg)
{
    sq_engine *se = (sq_engine *)e;
    sqlite3_stmt *st = NULL;
    sk_status rc = prepare(se, sql, readonly, &st, errmsg);
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
    /* Save and restore the limit state: a row callback may run another
     * query on this engine. */
    long long saved_deadline = se->deadline_ms;
    int saved_timed_out = se->timed_out;
    se->deadline_ms = se->timeout_ms > 0 ? now_ms() + se->timeout_ms : 0;
    se->timed_out = 0;
    sqlite3_progress_handler(se->db, PROGRESS_OPS, progress, se);
    long rows = 0;
    long long bytes = 0;
    for (;;) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            if (se->timed_out) {
                set_msg(errmsg, "the query ran past its time limit of %.1f s and was "
                        "stopped", se->timeout_ms / 1000.0);
                rc = SK_TIMEOUT;
            } else if (s == SQLITE_NOMEM) {
                rc = SK_NOMEM;
            } else {
                sql_error(se->db, NULL, errmsg);
                rc = SK_QUERY;
            }
            break;
        }
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
            bytes += sqlite3_column_bytes(st, i);
        }
        if (rc != SK_OK)
            break;
        if (se->max_bytes > 0 && bytes > se->max_bytes) {
            set_msg(errmsg, "the query's result is larger than %lld MiB",
                    se->max_bytes >> 20);
            rc = SK_TOO_LARGE;
            break;
        }
        rows++;
        if (row) {
            /* Time in the callback is the caller's, not the query's. */
            long long t0 = now_ms();
            int stop = row(ud, (size_t)n, names, values);
            if (se->deadline_ms)
                se->deadline_ms += now_ms() - t0;
            if (stop)
                break;
        }
    }
    sqlite3_progress_handler(se->db, 0, NULL, NULL);
    se->deadline_ms = saved_deadline;
    se->timed_out = saved_timed_out;
    if (saved_deadline)
        sqlite3_progress_handler(se->db, PROGRESS_OPS, progress, se);
done:
    free(names);
    free(values);
    sqlite3_finalize(st);
    return rc;
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
static sk_status sq_open(const char *path, df_engine **out, sk_err **err)
{
    *out = NULL;
    sq_engine *se = sk_calloc(1, sizeof *se);
    if (!se)
        return SK_NOMEM;
    se->base.vt = &sq_vt;
    se->timeout_ms = QUERY_TIMEOUT_MS;
    se->max_bytes = QUERY_MAX_BYTES;
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

df_engine *kern_engine(sk_kernel *k, sk_err **err)
{
    void **slot = kern_engine_slot(k);
    if (*slot)
        return *slot;
    df_engine *e = NULL;
    sk_err *x = NULL;
    sk_status rc = sq_open(kern_db_path(k), &e, &x);
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

void df_shutdown(sk_kernel *k)
{
    void **slot = kern_engine_slot(k);
    df_engine *e = *slot;
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

sk_status df_from_query(sk_kernel *k, const char *sql, const char *instruction,
                        sk_df **out, sk_err **err)
{
    *out = NULL;
    if (!sql)
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
     * query first so that a bad one makes no view. */
    if (rc == SK_OK)
        rc = e->vt->check(e, body, 0, &msg);
    if (rc == SK_OK)
        rc = e->vt->exec(e, create, &msg);
    if (rc == SK_OK) {
        *out = df_wrap(k, name, body, instruction);
        if (!*out) {
            char *drop = sk_asprintf("DROP VIEW %s", q);
            if (drop)
                e->vt->exec(e, drop, NULL);
            free(drop);
            rc = SK_NOMEM;
        }
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
    sk_status rc = e->vt->query(e, sql, 0, 0, count_row, n, &msg);
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
        rc = e->vt->query(e, sql, 0, 0, sample_row, &c, &msg);
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
        e->vt->query(e, sql, 0, 1, first_value, &type, NULL);
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
