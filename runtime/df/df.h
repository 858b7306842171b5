/*
 * df.h -- DataFrames: the engine seam and its SQLite engine (df.c), CSV
 * (csv.c), English to SQL (nl2sql.c), the row operators and the SQL
 * functions (rowops.c).  Above core.
 */
#ifndef SKEIN_DF_H
#define SKEIN_DF_H

#include "core/core.h"

/* ---- DataFrames (runtime/df/df.c, runtime/df/csv.c) ---------------------------
 * A DataFrame is a table or a view in the kernel's session database, an
 * SQLite database in memory by default (a file with the "db" option).
 * All SQL goes through the engine seam below, so another engine can
 * replace SQLite without touching the transform logic. */
typedef struct df_col {
    char *name;
    char *type;          /* declared type: "INTEGER", "REAL", "TEXT", "" */
} df_col;

/* One result row: n values as text (NULL for SQL NULL), borrowed for the
 * call.  Return non-zero to stop. */
typedef int (*df_row_fn)(void *ud, size_t n, const char *const *names,
                         const char *const *values);

/* Who wrote a statement.  model NULL: the user (or the runtime), whose
 * SQL runs as written.  Otherwise a model wrote it under that grant (at
 * least grant_none()): the read-only policy applies, and its ai() and
 * skein() calls reach only what the grant allows.  Any statement that
 * reads a view made from generated SQL counts as the model's too, under
 * the grants met, and every such statement is bounded by the sql_timeout_ms,
 * sql_max_rows and sql_max_bytes options (SK_QUERY naming the limit). */
typedef struct df_engine df_engine;
typedef struct df_engine_vt {
    const char *dialect;  /* named in prompts: "SQLite" */
    /* Runs statements from the runtime itself (trusted). */
    sk_status (*exec)(df_engine *e, const char *sql, char **errmsg);
    /* Prepares sql without running it.  Errors in *errmsg. */
    sk_status (*check)(df_engine *e, const char *sql, const struct sk_grant *model,
                       char **errmsg);
    /* Runs a query, calling row for each row (at most max_rows; 0: no
     * limit; past it SK_TOO_LARGE). */
    sk_status (*query)(df_engine *e, const char *sql, const struct sk_grant *model,
                       long max_rows, df_row_fn row, void *ud, char **errmsg);
    /* The columns of a table or view.  Caller frees with df_cols_free. */
    sk_status (*columns)(df_engine *e, const char *relation, df_col **cols,
                         size_t *n, char **errmsg);
    void (*close)(df_engine *e);
} df_engine_vt;
struct df_engine {
    const df_engine_vt *vt;
};
SK_HIDDEN void df_cols_free(df_col *cols, size_t n);

/* Rows handed out one at a time, typed (df:rows()).  The user's SQL; the
 * limits of generated SQL still apply to the statement when it reads
 * generated views.  SQLite engine only. */
typedef enum df_type { DF_NULL, DF_INT, DF_REAL, DF_TEXT } df_type;
typedef struct df_value {
    df_type type;
    long long i;
    double r;
    const char *s;   /* DF_TEXT: borrowed until the next row */
    size_t len;
} df_value;
typedef struct df_cursor df_cursor;
SK_HIDDEN sk_status df_cursor_open(df_engine *e, const char *sql, df_cursor **out,
                                   char **errmsg);
/* *row 1: a row is ready (df_cursor_row); 0: the end.  Errors as query. */
SK_HIDDEN sk_status df_cursor_next(df_cursor *c, int *row, char **errmsg);
/* The current row: n columns, names and values borrowed until the next. */
SK_HIDDEN size_t df_cursor_row(const df_cursor *c, const char *const **names,
                               const df_value **values);
SK_HIDDEN void df_cursor_close(df_cursor *c);
/* The grant of the statement stepping now, for the SQL functions: NULL
 * with *model 0 when the user wrote it. */
SK_HIDDEN const struct sk_grant *df_statement_grant(df_engine *e, int *model);
/* The calls a statement's ai()/skein() make, made side by side before it
 * runs for real (rowops.c; df.c runs the passes). */
typedef struct df_memo df_memo;
SK_HIDDEN df_memo *df_memo_new(void);
SK_HIDDEN void df_memo_free(df_memo *m);
/* Calls noted and not yet made. */
SK_HIDDEN size_t df_memo_pending(const df_memo *m);
/* Makes the noted calls, at most concurrency at once, under grant. */
SK_HIDDEN sk_status df_memo_fill(sk_kernel *k, df_memo *m,
                                 const struct sk_grant *grant, int concurrency);
/* The memo of the statement stepping now (NULL: none), and whether this
 * is its collecting pass. */
SK_HIDDEN df_memo *df_statement_memo(df_engine *e, int *collecting);

/* The kernel's session engine, opened on first use (SQLite; the "db"
 * kernel option names a file, default in memory).  SQLite handle for
 * code that must register functions: df_sqlite(e) (NULL for other
 * engines). */
SK_HIDDEN df_engine *kern_engine(sk_kernel *k, sk_err **err);
struct sqlite3;
SK_HIDDEN struct sqlite3 *df_sqlite(df_engine *e);
/* A fresh relation name ("df_1", "df_2", ...), unique in the engine. */
SK_HIDDEN char *df_new_name(sk_kernel *k);
/* Quotes an identifier for SQL ("a""b").  Caller frees. */
SK_HIDDEN char *df_quote_ident(const char *name);

/* A DataFrame: a relation in the session engine. */
typedef struct sk_df {
    sk_kernel *k;
    char *name;          /* the table or view */
    char *sql;           /* the query that defines a view, or NULL */
    char *instruction;   /* the English it came from, or NULL */
} sk_df;
SK_HIDDEN sk_df *df_wrap(sk_kernel *k, const char *name, const char *sql,
                         const char *instruction);
SK_HIDDEN void df_free(sk_df *df);
/* SQL a model wrote, as df_from_query records it. */
typedef struct df_model_sql {
    const struct sk_grant *grant; /* what its ai()/skein() may call */
    const char *cache_key;   /* the instruction-cache entry for it, written
                                once a read of the view has run to its end
                                within the limits, removed when one fails;
                                or NULL */
    const char *cache_value;
    int cached;              /* the entry is in the cache already */
} df_model_sql;
/* Creates a view over sql and wraps it.  model NULL: the user's query;
 * otherwise a model wrote it (see df_engine_vt). */
SK_HIDDEN sk_status df_from_query(sk_kernel *k, const char *sql,
                                  const char *instruction,
                                  const df_model_sql *model, sk_df **out,
                                  sk_err **err);
/* Replaces each {df} in sql with df's quoted name.  Caller frees. */
SK_HIDDEN char *df_subst(const sk_df *df, const char *sql);
SK_HIDDEN sk_status df_count(const sk_df *df, long long *n, sk_err **err);
/* The first n rows as a compact text table for prompts ("col | col").
 * Caller frees. */
SK_HIDDEN char *df_sample_text(const sk_df *df, size_t n);
/* The schema as "name TYPE, ..." for prompts.  Caller frees. */
SK_HIDDEN char *df_schema_text(const sk_df *df);

/* CSV (runtime/df/csv.c).  delimiter 0: guess from the header line (, ; tab
 * |); header -1: guess, 1 yes, 0 no (columns c1, c2, ...).  Types are
 * inferred from the data (INTEGER, REAL, TEXT); the import streams in one
 * transaction.  Errors: SK_DATA "path:line: message" (ragged row,
 * unterminated quote, invalid UTF-8, field over 16 MiB). */
typedef struct df_csv_opts {
    char delimiter;
    int header;
    const char *table;   /* the table to create, or NULL for a new name */
} df_csv_opts;
SK_HIDDEN sk_status df_read_csv(sk_kernel *k, const char *path,
                                const df_csv_opts *o, sk_df **out, sk_err **err);
SK_HIDDEN sk_status df_write_csv(const sk_df *df, const char *path, sk_err **err);

/* English to SQL (runtime/nl2sql.c). */
typedef struct df_ai_opts {
    int samples;         /* sample rows in the prompt (-1: 5; 0: none) */
    int repairs;         /* corrections to ask for (-1: 3) */
    int no_cache;
    /* the functions the generated SQL may call through skein() ("ai" for
     * ai()); NULL: none.  They run untrusted. */
    const char *const *functions;
    size_t n_functions;
} df_ai_opts;
SK_HIDDEN sk_status df_ai_transform(sk_df *df, const char *instruction,
                                    const df_ai_opts *o, sk_df **out, sk_err **err);
/* What df's SQL does, in plain words (the model reads the SQL).  Caller
 * frees *out. */
SK_HIDDEN sk_status df_ai_explain(sk_df *df, char **out, sk_err **err);
/* The model writes a SQL check of expectation over df (read-only, with
 * repair); the engine runs it.  ok is 1 or 0; evidence is the check's
 * result rows as text, sql the check (both caller frees). */
typedef struct df_verdict {
    int ok;
    char *evidence;
    char *sql;
} df_verdict;
SK_HIDDEN sk_status df_ai_verify(sk_df *df, const char *expectation,
                                 const df_ai_opts *o, df_verdict *v, sk_err **err);

/* Semantic operators over rows (runtime/df/rowops.c). */
typedef enum df_op { DF_MAP, DF_FILTER, DF_CLASSIFY, DF_EXTRACT } df_op;
typedef struct df_rowop_opts {
    const char *as;          /* DF_MAP: the new column's name ("result") */
    const char *column;      /* DF_CLASSIFY / DF_EXTRACT: the input column */
    const char *const *labels;  /* DF_CLASSIFY */
    size_t n_labels;
    const char *const *fields;  /* DF_EXTRACT: new columns */
    size_t n_fields;
    int concurrency;         /* model calls in flight (0: 16) */
    int batch;               /* rows per prompt (0 or 1: one row each) */
    int no_cache;
    int raise_uncertain;     /* raise on a row's uncertainty instead of
                                recording it */
    int progress;            /* -1: when stderr is a terminal */
    const char *model;       /* per-call model override, or NULL */
} df_rowop_opts;
typedef struct df_rowop_summary {
    long rows, done, failed, uncertain, cached, model_calls;
    long batch_fallbacks;    /* batches asked again one row at a time */
} df_rowop_summary;
/* Applies instruction (with {column} references) to every row.  The
 * result is a new DataFrame with the input's columns plus the new ones
 * and an "_error" column (NULL when the row succeeded); DF_FILTER keeps
 * the rows the model says yes to (and the failed ones, with _error). */
SK_HIDDEN sk_status df_rowop(sk_df *df, df_op op, const char *instruction,
                             const df_rowop_opts *o, sk_df **out,
                             df_rowop_summary *sum, sk_err **err);
/* Registers ai(instruction, text) and skein(function, text) on the
 * session database. */
SK_HIDDEN sk_status df_register_sql_functions(sk_kernel *k, sk_err **err);

#endif /* SKEIN_DF_H */
