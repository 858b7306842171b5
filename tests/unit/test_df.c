/* test_df.c -- the DataFrame engine: the read-only policy, query limits,
 * views, names, sample and schema text. */
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* Test-only hook in df.c. */

static sk_kernel *new_kernel(void)
{
    sk_kernel *k = NULL;
    if (sk_kernel_new(&k) != SK_OK) {
        fprintf(stderr, "cannot make a kernel\n");
        exit(1);
    }
    sk_kernel_set_option(k, "quiet", "1");
    return k;
}

static sk_status run(df_engine *e, const char *sql)
{
    char *msg = NULL;
    sk_status rc = e->vt->exec(e, sql, &msg);
    if (rc != SK_OK)
        fprintf(stderr, "exec %s: %s\n", sql, msg ? msg : "?");
    free(msg);
    return rc;
}

typedef struct collect {
    sk_buf b;
    long rows;
} collect;

static int collect_row(void *ud, size_t n, const char *const *names,
                       const char *const *values)
{
    (void)names;
    collect *c = ud;
    c->rows++;
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_addc(&c->b, ',');
        buf_adds(&c->b, values[i] ? values[i] : "NULL");
    }
    buf_addc(&c->b, ';');
    return 0;
}

/* The query's rows as "a,b;c,d;" (caller frees), or NULL on error with
 * *rc and *msg set. */
static char *q(df_engine *e, const char *sql, int readonly, sk_status *rc, char **msg)
{
    collect c;
    memset(&c, 0, sizeof c);
    buf_init(&c.b, 0);
    *msg = NULL;
    *rc = e->vt->query(e, sql, readonly ? grant_none() : NULL, 0, collect_row, &c, msg);
    if (*rc != SK_OK) {
        buf_free(&c.b);
        return NULL;
    }
    return buf_steal(&c.b);
}

/* The sales table's fingerprint: row count and a checksum of its text. */
static char *fingerprint(df_engine *e)
{
    sk_status rc;
    char *msg;
    char *out = q(e, "SELECT count(*), sum(length(region) + length(amount)), "
                     "(SELECT count(*) FROM sqlite_schema) FROM sales", 0, &rc, &msg);
    free(msg);
    return out;
}

static df_engine *setup(sk_kernel *k)
{
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    CHECK(e != NULL);
    err_free(err);
    if (!e)
        exit(1);
    run(e, "CREATE TABLE sales (region TEXT, amount INTEGER)");
    run(e, "INSERT INTO sales VALUES ('north', 10), ('south', 20), ('north', 5), "
           "('east', NULL)");
    run(e, "CREATE TABLE regions (region TEXT, manager TEXT)");
    run(e, "INSERT INTO regions VALUES ('north', 'Ada'), ('south', 'Bo')");
    run(e, "CREATE INDEX regions_region ON regions(region)");
    return e;
}

TEST(engine_basics)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    CHECK_STR(e->vt->dialect, "SQLite");
    CHECK(df_sqlite(e) != NULL);
    sk_err *err = NULL;
    CHECK(kern_engine(k, &err) == e); /* one engine per kernel */
    sk_status rc;
    char *msg;
    char *out = q(e, "SELECT region, amount FROM sales ORDER BY rowid", 0, &rc, &msg);
    CHECK_STR(out, "north,10;south,20;north,5;east,NULL;");
    free(out);
    CHECK_INT(e->vt->check(e, "SELECT * FROM sales", grant_none(), &msg), SK_OK);
    /* errors carry SQLite's message and the position */
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELECT nope FROM sales", grant_none(), &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "no such column: nope");
    CHECK_CONTAINS(msg, "line 1, column 8");
    free(msg);
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELECT *\nFROM salez", NULL, &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "no such table: salez");
    free(msg);
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELECT *\nFROM sales\nWHERE amont > 1", grant_none(), &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "no such column: amont (at line 3, column 7)");
    free(msg);
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELEC 1", grant_none(), &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "syntax error");
    free(msg);
    msg = NULL;
    CHECK_INT(e->vt->check(e, "  -- nothing\n", grant_none(), &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "empty");
    free(msg);
    /* a runtime error while stepping */
    out = q(e, "SELECT abs(-9223372036854775807 - 1)", 1, &rc, &msg);
    CHECK(out == NULL);
    CHECK_INT(rc, SK_QUERY);
    CHECK_CONTAINS(msg, "integer overflow");
    free(msg);
    /* columns */
    df_col *cols = NULL;
    size_t n = 0;
    msg = NULL;
    CHECK_INT(e->vt->columns(e, "sales", &cols, &n, &msg), SK_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(cols[0].name, "region");
        CHECK_STR(cols[1].type, "INTEGER");
    }
    df_cols_free(cols, n);
    CHECK_INT(e->vt->columns(e, "missing", &cols, &n, &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "no such table or view: missing");
    free(msg);
    sk_kernel_free(k);
}

/* Every class of write is refused, names what it would have done, and
 * leaves the data as it was. */
TEST(readonly_refusals)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    char *before = fingerprint(e);
    CHECK_STR(before, "4,20,3;");
    static const struct {
        const char *sql, *want;
    } cases[] = {
        {"DROP TABLE sales", "DROP TABLE sales"},
        {"DELETE FROM sales", "DELETE FROM sales"},
        {"DELETE FROM sales WHERE amount > 5", "DELETE FROM sales"},
        {"INSERT INTO sales VALUES ('west', 1)", "INSERT INTO sales"},
        {"INSERT INTO sales SELECT * FROM sales", "INSERT INTO sales"},
        {"UPDATE sales SET amount = 0", "UPDATE sales"},
        {"REPLACE INTO sales VALUES ('x', 1)", "INSERT INTO sales"},
        {"CREATE TABLE t2 (x)", "CREATE TABLE t2"},
        {"CREATE TABLE t3 AS SELECT * FROM sales", "CREATE TABLE t3"},
        {"CREATE TEMP TABLE t4 (x)", "CREATE TABLE t4"},
        {"CREATE VIEW v AS SELECT 1", "CREATE VIEW v"},
        {"CREATE INDEX i ON sales(region)", "CREATE INDEX i"},
        {"CREATE TRIGGER tr AFTER INSERT ON sales BEGIN DELETE FROM sales; END",
         "CREATE TRIGGER tr"},
        {"ALTER TABLE sales ADD COLUMN x", "ALTER TABLE sales"},
        {"ALTER TABLE sales RENAME TO other", "ALTER TABLE sales"},
        {"ATTACH DATABASE '/tmp/skein-evil.db' AS evil", "ATTACH"},
        {"DETACH DATABASE main", "DETACH"},
        {"PRAGMA writable_schema = 1", "PRAGMA writable_schema"},
        {"PRAGMA journal_mode = DELETE", "PRAGMA journal_mode"},
        {"PRAGMA table_info(sales)", "PRAGMA table_info"},
        {"PRAGMA user_version", "PRAGMA user_version"},
        {"BEGIN", "a transaction"},
        {"COMMIT", "a transaction"},
        {"SAVEPOINT s", "SAVEPOINT"},
        {"ANALYZE", "refused"},
        {"ANALYZE sales", "refused"},
        {"EXPLAIN DELETE FROM sales", "DELETE FROM sales"},
        {"REINDEX", "refused"},
        {"REINDEX sales", "refused"},
        {"VACUUM", "refused"},
        {"SELECT load_extension('/tmp/x.so')", "call load_extension()"},
        {"SELECT LOAD_EXTENSION('x')", "call load_extension()"},
        {"SELECT fts3_tokenizer('simple')", "call fts3_tokenizer()"},
        {"SELECT readfile('/etc/passwd')", "readfile"},
        {"SELECT writefile('/tmp/x', 'y')", "writefile"},
        {"WITH x AS (SELECT 1) DELETE FROM sales", "DELETE FROM sales"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *msg = NULL;
        sk_status rc = e->vt->check(e, cases[i].sql, grant_none(), &msg);
        if (rc != SK_QUERY || !msg || !strstr(msg, cases[i].want))
            fprintf(stderr, "case %zu: %s -> %d %s\n", i, cases[i].sql, rc,
                    msg ? msg : "(null)");
        CHECK_INT(rc, SK_QUERY);
        CHECK_CONTAINS(msg, cases[i].want);
        free(msg);
        /* query refuses the same way, and runs nothing */
        msg = NULL;
        CHECK_INT(e->vt->query(e, cases[i].sql, grant_none(), 0, NULL, NULL, &msg), SK_QUERY);
        free(msg);
    }
    char *msg = NULL;
    CHECK_INT(e->vt->check(e, "DROP TABLE sales", grant_none(), &msg), SK_QUERY);
    CHECK_STR(msg, "refused: the query would DROP TABLE sales; generated SQL may only read");
    free(msg);
    /* more than one statement, whatever the second is */
    msg = NULL;
    CHECK_INT(e->vt->query(e, "SELECT 1; DROP TABLE sales", grant_none(), 0, NULL, NULL, &msg),
              SK_QUERY);
    CHECK_CONTAINS(msg, "more than one statement");
    CHECK_CONTAINS(msg, "DROP TABLE sales");
    free(msg);
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELECT 1;\n/* c */ SELECT 2", grant_none(), &msg), SK_QUERY);
    CHECK_CONTAINS(msg, "more than one statement");
    free(msg);
    /* trailing semicolons and comments are fine */
    msg = NULL;
    CHECK_INT(e->vt->check(e, "SELECT 1; ;\n-- done\n/* end */", grant_none(), &msg), SK_OK);
    free(msg);
    char *after = fingerprint(e);
    CHECK_STR(after, before);
    free(before);
    free(after);
    /* the authorizer is gone afterwards: trusted statements still work */
    CHECK_INT(run(e, "CREATE TABLE later (x)"), SK_OK);
    CHECK_INT(run(e, "DROP TABLE later"), SK_OK);
    /* and trusted mode allows writes that read-only refused */
    msg = NULL;
    CHECK_INT(e->vt->check(e, "DELETE FROM sales", NULL, &msg), SK_OK);
    free(msg);
    sk_kernel_free(k);
}

TEST(readonly_allowed)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    static const struct {
        const char *sql, *want;
    } cases[] = {
        {"SELECT region, sum(amount) FROM sales GROUP BY region ORDER BY region",
         "east,NULL;north,15;south,20;"},
        {"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4) "
         "SELECT group_concat(i) FROM n",
         "1,2,3,4;"},
        {"SELECT region, amount, sum(amount) OVER (PARTITION BY region ORDER BY amount) "
         "FROM sales WHERE region = 'north' ORDER BY amount",
         "north,5,5;north,10,15;"},
        {"SELECT s.region, r.manager FROM sales s JOIN regions r USING (region) "
         "ORDER BY s.amount",
         "north,Ada;north,Ada;south,Bo;"},
        {"SELECT count(*) FROM sales s LEFT JOIN regions r ON r.region = s.region "
         "WHERE r.manager IS NULL",
         "1;"},
        {"SELECT upper(region), length(region), round(1.5), abs(-2) FROM sales LIMIT 1",
         "NORTH,5,2.0,2;"},
        {"SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
         "regions;sales;"},
        {"SELECT 1 UNION SELECT 2 ORDER BY 1", "1;2;"},
        {"select * from (select region from sales where amount > 9) order by 1;",
         "north;south;"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sk_status rc;
        char *msg;
        char *out = q(e, cases[i].sql, 1, &rc, &msg);
        if (rc != SK_OK)
            fprintf(stderr, "allowed case %zu: %s\n", i, msg ? msg : "?");
        CHECK_INT(rc, SK_OK);
        CHECK_STR(out, cases[i].want);
        free(out);
        free(msg);
    }
    /* a view made by the runtime can be read */
    sk_df *v = NULL;
    sk_err *err = NULL;
    CHECK_INT(df_from_query(k, "SELECT region FROM sales WHERE amount > 6;", "big ones", NULL,
                            &v, &err),
              SK_OK);
    if (v) {
        char *sql = df_subst(v, "SELECT count(*) FROM {df}");
        sk_status rc;
        char *msg;
        char *out = q(e, sql, 1, &rc, &msg);
        CHECK_STR(out, "2;");
        free(out);
        free(msg);
        free(sql);
        CHECK_STR(v->sql, "SELECT region FROM sales WHERE amount > 6");
        CHECK_STR(v->instruction, "big ones");
    }
    df_free(v);
    sk_kernel_free(k);
}

TEST(limits)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    char *msg = NULL;
    collect c;
    memset(&c, 0, sizeof c);
    /* rows: exactly max_rows is fine, one more is not */
    CHECK_INT(e->vt->query(e, "SELECT * FROM sales", grant_none(), 4, collect_row, &c, &msg), SK_OK);
    CHECK_INT(c.rows, 4);
    c.rows = 0;
    CHECK_INT(e->vt->query(e, "SELECT * FROM sales", grant_none(), 3, collect_row, &c, &msg),
              SK_TOO_LARGE);
    CHECK_INT(c.rows, 3);
    CHECK_CONTAINS(msg, "more than 3 rows");
    free(msg);
    buf_free(&c.b);
    /* time: a recursive CTE that never ends stops at the limit */
    sk_kernel_set_option(k, "sql_timeout_ms", "300");
    msg = NULL;
    CHECK_INT(e->vt->query(e, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                              "FROM n) SELECT max(i) FROM n",
                           grant_none(), 0, NULL, NULL, &msg),
              SK_QUERY);
    CHECK_CONTAINS(msg, "time limit");
    CHECK_CONTAINS(msg, "sql_timeout_ms");
    free(msg);
    /* the engine is usable after a timeout */
    sk_status rc;
    char *out = q(e, "SELECT count(*) FROM sales", 1, &rc, &msg);
    CHECK_STR(out, "4;");
    free(out);
    free(msg);
    /* bytes */
    sk_kernel_set_option(k, "sql_max_bytes", "1000");
    msg = NULL;
    CHECK_INT(e->vt->query(e, "SELECT zeroblob(600) || 'x' FROM sales", grant_none(), 0, NULL, NULL,
                           &msg),
              SK_QUERY);
    CHECK_CONTAINS(msg, "larger than");
    CHECK_CONTAINS(msg, "sql_max_bytes");
    free(msg);
    /* a row callback can stop early, which is not an error */
    msg = NULL;
    CHECK_INT(e->vt->query(e, "SELECT * FROM sales", grant_none(), 0, NULL, NULL, &msg), SK_OK);
    sk_kernel_free(k);
}

static int stop_first(void *ud, size_t n, const char *const *names,
                      const char *const *values)
{
    (void)n;
    (void)names;
    (void)values;
    (*(int *)ud)++;
    return 1;
}

TEST(callback_stop_and_nested)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    int calls = 0;
    char *msg = NULL;
    CHECK_INT(e->vt->query(e, "SELECT * FROM sales", grant_none(), 0, stop_first, &calls, &msg), SK_OK);
    CHECK_INT(calls, 1);
    sk_kernel_free(k);
}

TEST(names_and_subst)
{
    sk_kernel *k = new_kernel();
    char *qd = df_quote_ident("a\"b");
    CHECK_STR(qd, "\"a\"\"b\"");
    free(qd);
    qd = df_quote_ident("plain");
    CHECK_STR(qd, "\"plain\"");
    free(qd);
    CHECK(df_quote_ident(NULL) == NULL);
    df_engine *e = setup(k);
    /* df_new_name skips names already taken */
    run(e, "CREATE TABLE df_1 (x)");
    run(e, "CREATE VIEW DF_2 AS SELECT 1");
    char *n = df_new_name(k);
    CHECK_STR(n, "df_3");
    free(n);
    n = df_new_name(k);
    CHECK_STR(n, "df_4");
    free(n);
    sk_df *df = df_wrap(k, "we\"ird", NULL, NULL);
    CHECK(df != NULL);
    char *s = df_subst(df, "SELECT * FROM {df} JOIN {df} b WHERE x = '{y}' AND {d} {df");
    CHECK_STR(s, "SELECT * FROM \"we\"\"ird\" JOIN \"we\"\"ird\" b WHERE x = '{y}' AND {d} {df");
    free(s);
    s = df_subst(df, "");
    CHECK_STR(s, "");
    free(s);
    df_free(df);
    df_free(NULL);
    sk_kernel_free(k);
}

TEST(views_counts_text)
{
    sk_kernel *k = new_kernel();
    df_engine *e = setup(k);
    run(e, "INSERT INTO sales VALUES ('a very long region name that goes on and on and on "
           "past sixty bytes for sure', 1), ('two\nlines', 2)");
    sk_df *s = df_wrap(k, "sales", NULL, NULL);
    long long count = -1;
    sk_err *err = NULL;
    CHECK_INT(df_count(s, &count, &err), SK_OK);
    CHECK_INT(count, 6);
    char *t = df_sample_text(s, 2);
    CHECK_STR(t, "region | amount\nnorth | 10\nsouth | 20\n");
    free(t);
    t = df_sample_text(s, 100);
    CHECK_CONTAINS(t, "east | NULL\n");
    CHECK_CONTAINS(t, "a very long region name that goes on and on and on past sixt... | 1\n");
    CHECK_CONTAINS(t, "two lines | 2\n");
    free(t);
    t = df_sample_text(s, 0);
    CHECK_STR(t, "region | amount\n");
    free(t);
    t = df_schema_text(s);
    CHECK_STR(t, "region TEXT, amount INTEGER");
    free(t);
    /* a view: computed columns get the type of their values */
    sk_df *v = NULL;
    CHECK_INT(df_from_query(k, "SELECT region, amount * 1.5 AS scaled, NULL AS blank "
                               "FROM sales WHERE 0",
                            NULL, NULL, &v, &err),
              SK_OK);
    if (v) {
        CHECK(strncmp(v->name, "df_", 3) == 0);
        CHECK_INT(df_count(v, &count, &err), SK_OK);
        CHECK_INT(count, 0);
        t = df_schema_text(v);
        CHECK_STR(t, "region TEXT, scaled, blank");
        free(t);
        t = df_sample_text(v, 5);
        CHECK_STR(t, "region | scaled | blank\n");
        free(t);
    }
    df_free(v);
    v = NULL;
    CHECK_INT(df_from_query(k, "SELECT amount * 2 AS twice FROM sales", NULL, NULL, &v, &err),
              SK_OK);
    if (v) {
        t = df_schema_text(v);
        CHECK_STR(t, "twice INTEGER");
        free(t);
    }
    df_free(v);
    /* a bad query makes no view */
    v = NULL;
    CHECK_INT(df_from_query(k, "SELECT nope FROM sales", NULL, NULL, &v, &err), SK_QUERY);
    CHECK(v == NULL);
    CHECK(err != NULL);
    if (err)
        CHECK_CONTAINS(err->message, "no such column: nope");
    err_free(err);
    err = NULL;
    /* missing relations */
    sk_df *gone = df_wrap(k, "gone", NULL, NULL);
    CHECK_INT(df_count(gone, &count, &err), SK_QUERY);
    err_free(err);
    CHECK(df_sample_text(gone, 3) == NULL);
    CHECK(df_schema_text(gone) == NULL);
    df_free(gone);
    df_free(s);
    sk_kernel_free(k);
}

TEST(file_database)
{
    char path[] = "/tmp/skein-df-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    sk_kernel *k = new_kernel();
    CHECK_INT(sk_kernel_set_option(k, "db", path), SK_OK);
    df_engine *e = setup(k);
    sk_status rc;
    char *msg;
    char *out = q(e, "PRAGMA journal_mode", 0, &rc, &msg);
    CHECK_STR(out, "wal;");
    free(out);
    free(msg);
    sk_kernel_free(k);
    /* the data is in the file for the next kernel */
    k = new_kernel();
    sk_kernel_set_option(k, "db", path);
    sk_err *err = NULL;
    e = kern_engine(k, &err);
    out = e ? q(e, "SELECT count(*) FROM sales", 1, &rc, &msg) : NULL;
    CHECK_STR(out, "4;");
    free(out);
    free(msg);
    sk_kernel_free(k);
    /* an unopenable path */
    k = new_kernel();
    sk_kernel_set_option(k, "db", "/nonexistent/dir/x.db");
    err = NULL;
    CHECK(kern_engine(k, &err) == NULL);
    CHECK(err != NULL);
    if (err) {
        CHECK_INT(err->code, SK_IO);
        CHECK_CONTAINS(err->message, "/nonexistent/dir/x.db");
    }
    err_free(err);
    sk_kernel_free(k);
    unlink(path);
    char extra[300];
    snprintf(extra, sizeof extra, "%s-wal", path);
    unlink(extra);
    snprintf(extra, sizeof extra, "%s-shm", path);
    unlink(extra);
}

int main(void)
{
    RUN(engine_basics);
    RUN(readonly_refusals);
    RUN(readonly_allowed);
    RUN(limits);
    RUN(callback_stop_and_nested);
    RUN(names_and_subst);
    RUN(views_counts_text);
    RUN(file_database);
    return tu_finish();
}
