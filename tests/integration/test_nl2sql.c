/* test_nl2sql.c -- English to SQL with the scripted model: a window query
 * checked against values computed here, repair from the engine's message,
 * refusal of destructive answers with the data left intact, extraction
 * from prose, the query cache, samples kept out of the prompt, explain
 * and verify. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static const char *DEPTS[] = {"Zanzibar", "garden", "toys"};
#define N_DEPTS 3
#define N_WEEKS 8

/* The data, computed the same way here and in the table. */
static double sales_of(int d, int w)
{
    return 10.5 + (double)((w * 7 + d * 13) % 23);
}

static const char *MA_SQL =
    "SELECT dept, week, sales, AVG(sales) OVER (PARTITION BY dept ORDER BY week "
    "ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS ma4 FROM {df} ORDER BY dept, week";

/* Scripted rules, tried in order.  Correction requests (FixSql) carry the
 * engine's message, so the repair rules come first and match on it. */
static char *rules_json(void)
{
    static char buf[8192];
    snprintf(buf, sizeof buf,
        "{\"rules\":["
        /* repairs */
        "{\"match\":\"The database said:\\\\s+no such column: revenue\","
        " \"reply\":\"```sql\\nSELECT dept, sum(sales) AS total FROM {df} GROUP BY dept ORDER BY dept\\n```\"},"
        "{\"match\":\"first column was \\\"\","
        " \"reply\":\"SELECT max(sales) > 0 AS ok, max(sales) AS top FROM {df}\"},"
        "{\"match\":\"more than one row\","
        " \"reply\":\"SELECT count(*) > 0 AS ok, count(*) AS n FROM {df}\"},"
        /* requests */
        "{\"match\":\"Request: get 4 week moving average sales by dept\","
        " \"reply\":\"Sure! This uses a window function:\\n\\n```sql\\n%s;\\n```\\n\\nEach row averages up to four weeks.\"},"
        "{\"match\":\"Request: total revenue by dept\","
        " \"reply\":\"SELECT dept, sum(revenue) AS total FROM {df} GROUP BY dept\"},"
        "{\"match\":\"Request: drop everything\", \"reply\":\"DROP TABLE sales\"},"
        "{\"match\":\"Request: clear the table\", \"reply\":\"DELETE FROM {df}\"},"
        "{\"match\":\"Request: sneaky\", \"reply\":\"SELECT 1; DROP TABLE sales\"},"
        "{\"match\":\"Request: hopeless\", \"reply\":\"SELECT nope FROM {df}\"},"
        "{\"match\":\"Request: nothing at all\", \"reply\":\"   \"},"
        "{\"match\":\"Request: boom\", \"error\":{\"kind\":\"model\",\"message\":\"server on fire\",\"http_status\":500}},"
        "{\"match\":\"Request: plain prose\","
        " \"reply\":\"Here is the query you asked for.\\nSELECT dept, count(*) AS n FROM {df} GROUP BY dept ORDER BY dept;;\\n\"},"
        "{\"match\":\"Request: top week per dept\","
        " \"reply\":\"With a common table expression:\\nWITH t AS (SELECT dept, sales FROM {df})\\nSELECT dept, max(sales) AS top FROM t GROUP BY dept ORDER BY dept;\"},"
        "{\"match\":\"Request: bare fence\","
        " \"reply\":\"```\\nSELECT week FROM {df} WHERE dept = 'toys' ORDER BY week DESC LIMIT 1\\n```\"},"
        "{\"match\":\"(?s)Zanzibar.*Request: count rows per dept\","
        " \"reply\":\"SELECT 'leaked' AS leak FROM {df}\"},"
        "{\"match\":\"Request: count rows per dept\","
        " \"reply\":\"SELECT dept, count(*) AS n FROM {df} GROUP BY dept\"},"
        "{\"match\":\"Request: total sales by dept\","
        " \"reply\":\"SELECT dept, sum(sales) AS total FROM {df} GROUP BY dept ORDER BY dept\"},"
        /* verify */
        "{\"match\":\"Expectation: every week has positive sales\","
        " \"reply\":\"```sql\\nSELECT min(sales) > 0 AS ok, min(sales) AS min_sales, count(*) AS n FROM {df}\\n```\"},"
        "{\"match\":\"Expectation: some dept sold over 1000 in a week\","
        " \"reply\":\"SELECT max(sales) > 1000 AS ok, max(sales) AS max_sales FROM {df}\"},"
        "{\"match\":\"Expectation: not a truth value\", \"reply\":\"SELECT max(sales) AS top FROM {df}\"},"
        "{\"match\":\"Expectation: many rows\", \"reply\":\"SELECT dept FROM {df}\"},"
        "{\"match\":\"Expectation: destroy\", \"reply\":\"DROP TABLE sales\"},"
        /* explain */
        "{\"match\":\"(?s)Explain.*AVG\\\\(sales\\\\) OVER\","
        " \"reply\":\"  It averages each department's sales over the current and three previous weeks.\\n\"},"
        "{\"match\":\"(?s)Explain.*SELECT \\\\* FROM \\\"sales\\\"\", \"reply\":\"It lists every row of the sales table.\"}"
        "]}", MA_SQL);
    return buf;
}

static const char *skills_dir(void)
{
    static char dir[512];
    const char *src = getenv("SKEIN_SRC");
    snprintf(dir, sizeof dir, "%s/skills", src ? src : "..");
    return dir;
}

/* A kernel on the scripted model with the sales table.  cache: the
 * SKEIN_CACHE file (a fresh one when NULL). */
static sk_kernel *kernel(const char *cache, df_engine **e)
{
    setenv("SKEIN_CACHE", cache ? cache : tu_tmpfile("", ".db"), 1);
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    /* one model for every kernel here: the instruction cache is keyed
     * by the model that writes the SQL */
    static char spec[300];
    if (!spec[0])
        snprintf(spec, sizeof spec, "scripted:%s", tu_tmpfile(rules_json(), ".json"));
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    CHECK(sk_kernel_load_skills(k, skills_dir()) == SK_OK);
    sk_err *err = NULL;
    *e = kern_engine(k, &err);
    err_free(err);
    char *msg = NULL;
    sk_status st = (*e)->vt->exec(*e, "CREATE TABLE sales(dept TEXT, week INTEGER, sales REAL)", &msg);
    for (int d = 0; st == SK_OK && d < N_DEPTS; d++)
        for (int w = 1; st == SK_OK && w <= N_WEEKS; w++) {
            char sql[200];
            snprintf(sql, sizeof sql, "INSERT INTO sales VALUES('%s', %d, %.1f)",
                     DEPTS[d], w, sales_of(d, w));
            st = (*e)->vt->exec(*e, sql, &msg);
        }
    if (st != SK_OK)
        fprintf(stderr, "setup: %s\n", msg ? msg : "?");
    free(msg);
    return k;
}

static long calls(sk_kernel *k)
{
    sk_usage u;
    sk_kernel_usage(k, &u);
    return u.calls;
}

/* Rows of a query as text: "a|b|c\n" per row. */
static int collect(void *ud, size_t n, const char *const *names, const char *const *values)
{
    (void)names;
    sk_buf *b = ud;
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s%s", i ? "|" : "", values[i] ? values[i] : "NULL");
    buf_addc(b, '\n');
    return 0;
}

static char *rows_of(df_engine *e, const char *sql)
{
    sk_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "");
    char *msg = NULL;
    if (e->vt->query(e, sql, NULL, 0, collect, &b, &msg) != SK_OK)
        fprintf(stderr, "query failed: %s\n", msg ? msg : "?");
    free(msg);
    return buf_steal(&b);
}

static char *rows_of_df(df_engine *e, const sk_df *df, const char *select)
{
    char *q = df_quote_ident(df->name);
    char *sql = sk_asprintf("SELECT %s FROM %s", select, q);
    char *r = rows_of(e, sql);
    free(sql);
    free(q);
    return r;
}

/* What proves the table untouched: its row count and a checksum over
 * every value. */
static char *fingerprint(df_engine *e)
{
    return rows_of(e, "SELECT count(*), total(sales), total(week), "
                      "group_concat(dept, ',') FROM sales");
}

static char *read_trace(const char *path)
{
    char *t = NULL;
    size_t n;
    if (sk_read_file(path, 1 << 20, &t, &n) != SK_OK)
        return NULL;
    return t;
}

TEST(test_moving_average)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    const char *trace = tu_tmpfile("", ".jsonl");
    sk_kernel_set_trace(k, trace);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    sk_df *out = NULL;
    sk_err *err = NULL;
    long before = calls(k);
    sk_status st = df_ai_transform(sales, "get 4 week moving average sales by dept", NULL, &out, &err);
    CHECK_INT(st, SK_OK);
    CHECK(err == NULL);
    CHECK_INT(calls(k) - before, 1);
    if (st != SK_OK || !out) {
        if (err)
            fprintf(stderr, "error: %s\n", err->message);
        err_free(err);
        df_free(sales);
        sk_kernel_free(k);
        return;
    }
    /* the SQL is kept, with the real name in place of {df} */
    CHECK_CONTAINS(out->sql, "FROM \"sales\"");
    CHECK(strstr(out->sql, "{df}") == NULL);
    CHECK_CONTAINS(out->sql, "ROWS BETWEEN 3 PRECEDING");
    CHECK_STR(out->instruction, "get 4 week moving average sales by dept");
    CHECK(strcmp(out->name, "sales") != 0);

    /* every value against a moving average computed here */
    char *got = rows_of_df(e, out, "dept, week, ma4");
    sk_buf want;
    buf_init(&want, 0);
    buf_adds(&want, "");
    int bad = 0, n_rows = 0;
    const char *line = got;
    for (int d = 0; d < N_DEPTS; d++) {
        for (int w = 1; w <= N_WEEKS; w++) {
            double sum = 0;
            int n = 0;
            for (int x = w - 3; x <= w; x++)
                if (x >= 1) {
                    sum += sales_of(d, x);
                    n++;
                }
            char dept[32];
            int week = 0;
            double ma = 0;
            if (!line || sscanf(line, "%31[^|]|%d|%lf", dept, &week, &ma) != 3 ||
                strcmp(dept, DEPTS[d]) != 0 || week != w || fabs(ma - sum / n) > 1e-9)
                bad++;
            else
                n_rows++;
            line = line ? strchr(line, '\n') : NULL;
            if (line)
                line++;
        }
    }
    CHECK_INT(bad, 0);
    CHECK_INT(n_rows, N_DEPTS * N_WEEKS);
    CHECK(line && *line == '\0'); /* no extra rows */
    buf_free(&want);
    free(got);

    /* explain reads the SQL, not the instruction */
    char *text = NULL;
    CHECK_INT(df_ai_explain(out, &text, &err), SK_OK);
    CHECK_STR(text, "It averages each department's sales over the current and three previous weeks.");
    free(text);
    text = NULL;
    CHECK_INT(df_ai_explain(sales, &text, &err), SK_OK);
    CHECK_STR(text, "It lists every row of the sales table.");
    free(text);
    df_free(out);
    df_free(sales);
    sk_kernel_free(k);

    char *t = read_trace(trace);
    CHECK_CONTAINS(t, "\"type\":\"ai_transform\"");
    CHECK_CONTAINS(t, "\"instruction\":\"get 4 week moving average sales by dept\"");
    CHECK_CONTAINS(t, "\"attempts\":1,\"cached\":false");
    free(t);
}

TEST(test_repair)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    const char *trace = tu_tmpfile("", ".jsonl");
    sk_kernel_set_trace(k, trace);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    sk_df *out = NULL;
    sk_err *err = NULL;
    long before = calls(k);
    /* the first answer names a column that does not exist; the repair rule
     * fires only when the correction request quotes SQLite's message */
    CHECK_INT(df_ai_transform(sales, "total revenue by dept", NULL, &out, &err), SK_OK);
    CHECK_INT(calls(k) - before, 2);
    if (out) {
        CHECK_CONTAINS(out->sql, "sum(sales)");
        char *got = rows_of_df(e, out, "dept, total");
        char want[512];
        int len = 0;
        for (int d = 0; d < N_DEPTS; d++) {
            double sum = 0;
            for (int w = 1; w <= N_WEEKS; w++)
                sum += sales_of(d, w);
            len += snprintf(want + len, sizeof want - (size_t)len, "%s|%.1f\n", DEPTS[d], sum);
        }
        CHECK_STR(got, want);
        free(got);
    }
    df_free(out);
    err_free(err);

    /* one that stays broken gives up after 1 + repairs attempts */
    out = NULL;
    err = NULL;
    before = calls(k);
    df_ai_opts o = {-1, 1, 0, NULL, 0};
    CHECK_INT(df_ai_transform(sales, "hopeless", &o, &out, &err), SK_QUERY);
    CHECK(out == NULL);
    CHECK_INT(calls(k) - before, 2);
    if (err) {
        CHECK_INT(err->code, SK_QUERY);
        CHECK_CONTAINS(err->message, "could not write a working query for \"hopeless\" after 2 attempts");
        CHECK_CONTAINS(err->message, "no such column: nope");
        CHECK_CONTAINS(err->detail_json, "\"sql\":\"SELECT nope FROM \\\"sales\\\"\"");
        CHECK_CONTAINS(err->detail_json, "\"sqlite_error\":\"no such column: nope");
    }
    err_free(err);

    /* a reply with no SQL at all is repaired too, and said so */
    err = NULL;
    o.repairs = 0;
    CHECK_INT(df_ai_transform(sales, "nothing at all", &o, &out, &err), SK_QUERY);
    CHECK_CONTAINS(err ? err->message : NULL, "after 1 attempt: the reply held no SQL query");
    err_free(err);

    /* the model's own failure is not repaired: it comes back as it was */
    err = NULL;
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, "boom", NULL, &out, &err), SK_MODEL);
    CHECK_INT(calls(k) - before, 1);
    CHECK_CONTAINS(err ? err->message : NULL, "server on fire");
    CHECK_INT(err ? err->http_status : 0, 500);
    err_free(err);

    /* misuse */
    err = NULL;
    CHECK_INT(df_ai_transform(sales, "", NULL, &out, &err), SK_USAGE);
    CHECK(err != NULL);
    err_free(err);
    err = NULL;
    CHECK_INT(df_ai_transform(NULL, "x", NULL, &out, &err), SK_USAGE);
    err_free(err);

    df_free(sales);
    sk_kernel_free(k);
    char *t = read_trace(trace);
    CHECK_CONTAINS(t, "\"type\":\"sql_repair\"");
    CHECK_CONTAINS(t, "no such column: revenue");
    CHECK_CONTAINS(t, "\"attempts\":2,\"cached\":false");
    free(t);
}

TEST(test_refused)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    char *fp = fingerprint(e);
    CHECK_CONTAINS(fp, "24|");
    static const char *const asks[] = {"drop everything", "clear the table", "sneaky"};
    for (size_t i = 0; i < 3; i++) {
        sk_df *out = NULL;
        sk_err *err = NULL;
        long before = calls(k);
        sk_status st = df_ai_transform(sales, asks[i], NULL, &out, &err);
        CHECK_INT(st, SK_QUERY);
        CHECK(out == NULL);
        /* the model was told why, three times (the default), to no avail */
        CHECK_INT(calls(k) - before, 4);
        CHECK_STR(sk_status_kind(err ? err->code : SK_OK), "query");
        CHECK_CONTAINS(err ? err->message : NULL, "refused");
        CHECK_CONTAINS(err ? err->message : NULL, asks[i]);
        CHECK_CONTAINS(err ? err->detail_json : NULL, "\"refused\":true");
        char *now = fingerprint(e);
        CHECK_STR(now, fp);
        free(now);
        err_free(err);
    }
    /* the destructive statement is named, in the message and the detail */
    sk_df *out = NULL;
    sk_err *err = NULL;
    df_ai_opts o = {-1, 0, 0, NULL, 0};
    CHECK_INT(df_ai_transform(sales, "drop everything", &o, &out, &err), SK_QUERY);
    CHECK_CONTAINS(err ? err->message : NULL, "DROP TABLE");
    CHECK_CONTAINS(err ? err->detail_json : NULL, "\"sql\":\"DROP TABLE sales\"");
    err_free(err);
    /* a check that would write is refused the same way */
    df_verdict v;
    err = NULL;
    CHECK_INT(df_ai_verify(sales, "destroy", &o, &v, &err), SK_QUERY);
    CHECK_CONTAINS(err ? err->message : NULL, "refused");
    CHECK(v.sql == NULL && v.evidence == NULL);
    err_free(err);
    char *now = fingerprint(e);
    CHECK_STR(now, fp);
    free(now);
    free(fp);
    df_free(sales);
    sk_kernel_free(k);
}

TEST(test_extraction)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    sk_df *out = NULL;
    sk_err *err = NULL;
    /* prose, then a query ending in semicolons */
    CHECK_INT(df_ai_transform(sales, "plain prose", NULL, &out, &err), SK_OK);
    if (out) {
        CHECK_STR(out->sql, "SELECT dept, count(*) AS n FROM \"sales\" GROUP BY dept ORDER BY dept");
        char *got = rows_of_df(e, out, "*");
        CHECK_STR(got, "Zanzibar|8\ngarden|8\ntoys|8\n");
        free(got);
    }
    df_free(out);
    out = NULL;
    /* an English "With ..." line is not mistaken for a CTE */
    CHECK_INT(df_ai_transform(sales, "top week per dept", NULL, &out, &err), SK_OK);
    if (out) {
        CHECK(strncmp(out->sql, "WITH t AS", 9) == 0);
        char *got = rows_of_df(e, out, "count(*)");
        CHECK_STR(got, "3\n");
        free(got);
    }
    df_free(out);
    out = NULL;
    /* a fence with no language tag */
    CHECK_INT(df_ai_transform(sales, "bare fence", NULL, &out, &err), SK_OK);
    if (out) {
        char *got = rows_of_df(e, out, "*");
        CHECK_STR(got, "8\n");
        free(got);
    }
    df_free(out);
    err_free(err);
    df_free(sales);
    sk_kernel_free(k);
}

TEST(test_cache)
{
    const char *cache = tu_tmpfile("", ".db");
    char cache_path[512];
    snprintf(cache_path, sizeof cache_path, "%s", cache);
    const char *trace = tu_tmpfile("", ".jsonl");
    df_engine *e;
    sk_kernel *k = kernel(cache_path, &e);
    sk_kernel_set_trace(k, trace);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    sk_df *a = NULL, *b = NULL, *c = NULL;
    sk_err *err = NULL;
    const char *ask = "get 4 week moving average sales by dept";
    long before = calls(k);
    CHECK_INT(df_ai_transform(sales, ask, NULL, &a, &err), SK_OK);
    CHECK_INT(calls(k) - before, 1);
    /* the query is the instruction's answer only once it has been read
     * to its end: before that, asking again asks the model */
    sk_df *unread = NULL;
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, ask, NULL, &unread, &err), SK_OK);
    CHECK_INT(calls(k) - before, 1);
    df_free(unread);
    if (a) {
        char *ra = rows_of_df(e, a, "*");
        CHECK(ra != NULL);
        free(ra);
    }
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, ask, NULL, &b, &err), SK_OK);
    CHECK_INT(calls(k) - before, 0); /* no model call at all */
    if (a && b) {
        CHECK_STR(a->sql, b->sql);
        CHECK(strcmp(a->name, b->name) != 0);
        char *ra = rows_of_df(e, a, "*"), *rb = rows_of_df(e, b, "*");
        CHECK_STR(ra, rb);
        free(ra);
        free(rb);
    }
    /* a different instruction asks the model */
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, "total sales by dept", NULL, &c, &err), SK_OK);
    CHECK_INT(calls(k) - before, 1);
    df_free(c);
    c = NULL;
    /* no_cache asks again */
    df_ai_opts o = {-1, -1, 1, NULL, 0};
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, ask, &o, &c, &err), SK_OK);
    CHECK_INT(calls(k) - before, 1);
    df_free(c);
    c = NULL;
    /* refused or failed answers are never cached */
    df_ai_opts r0 = {-1, 0, 0, NULL, 0};
    sk_df *d = NULL;
    CHECK_INT(df_ai_transform(sales, "drop everything", &r0, &d, &err), SK_QUERY);
    err_free(err);
    err = NULL;
    before = calls(k);
    CHECK_INT(df_ai_transform(sales, "drop everything", &r0, &d, &err), SK_QUERY);
    CHECK_INT(calls(k) - before, 1);
    err_free(err);
    err = NULL;
    df_free(a);
    df_free(b);
    df_free(sales);
    sk_kernel_free(k);
    char *t = read_trace(trace);
    CHECK_CONTAINS(t, "\"attempts\":0,\"cached\":true");
    free(t);

    /* another kernel, the same cache, a table of the same shape under
     * another name: the cached query is used with that name */
    k = kernel(cache_path, &e);
    char *msg = NULL;
    CHECK_INT(e->vt->exec(e, "CREATE TABLE other(dept TEXT, week INTEGER, sales REAL);"
                             "INSERT INTO other SELECT * FROM sales WHERE dept = 'toys'", &msg), SK_OK);
    free(msg);
    sk_df *other = df_wrap(k, "other", NULL, NULL);
    before = calls(k);
    CHECK_INT(df_ai_transform(other, ask, NULL, &a, &err), SK_OK);
    CHECK_INT(calls(k) - before, 0);
    if (a) {
        CHECK_CONTAINS(a->sql, "FROM \"other\"");
        char *got = rows_of_df(e, a, "count(*)");
        CHECK_STR(got, "8\n");
        free(got);
    }
    df_free(a);
    a = NULL;
    /* another model writes its own SQL: the cache does not answer for it */
    char other_model[300];
    snprintf(other_model, sizeof other_model, "scripted:%s", tu_tmpfile(rules_json(), ".json"));
    CHECK(sk_kernel_set_model(k, other_model) == SK_OK);
    before = calls(k);
    CHECK_INT(df_ai_transform(other, ask, NULL, &a, &err), SK_OK);
    CHECK_INT(calls(k) - before, 1);
    df_free(a);
    df_free(other);
    sk_kernel_free(k);
}

TEST(test_samples)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    sk_df *out = NULL;
    sk_err *err = NULL;
    /* by default sample rows go into the prompt: the rule that matches a
     * value from the data fires */
    df_ai_opts with = {-1, -1, 1, NULL, 0};
    CHECK_INT(df_ai_transform(sales, "count rows per dept", &with, &out, &err), SK_OK);
    CHECK_CONTAINS(out ? out->sql : NULL, "leak");
    df_free(out);
    out = NULL;
    /* samples = 0: no value of the data reaches the model */
    df_ai_opts without = {0, -1, 1, NULL, 0};
    CHECK_INT(df_ai_transform(sales, "count rows per dept", &without, &out, &err), SK_OK);
    if (out) {
        CHECK(strstr(out->sql, "leak") == NULL);
        char *got = rows_of_df(e, out, "n");
        CHECK_STR(got, "8\n8\n8\n");
        free(got);
    }
    df_free(out);
    err_free(err);
    df_free(sales);
    sk_kernel_free(k);
}

TEST(test_verify)
{
    df_engine *e;
    sk_kernel *k = kernel(NULL, &e);
    sk_df *sales = df_wrap(k, "sales", NULL, NULL);
    double min = 1e9, max = -1e9;
    for (int d = 0; d < N_DEPTS; d++)
        for (int w = 1; w <= N_WEEKS; w++) {
            min = fmin(min, sales_of(d, w));
            max = fmax(max, sales_of(d, w));
        }
    df_verdict v;
    sk_err *err = NULL;
    CHECK_INT(df_ai_verify(sales, "every week has positive sales", NULL, &v, &err), SK_OK);
    CHECK_INT(v.ok, 1);
    char want[128];
    snprintf(want, sizeof want, "ok=1, min_sales=%.1f, n=24", min);
    CHECK_STR(v.evidence, want);
    CHECK_CONTAINS(v.sql, "FROM \"sales\"");
    free(v.evidence);
    free(v.sql);

    CHECK_INT(df_ai_verify(sales, "some dept sold over 1000 in a week", NULL, &v, &err), SK_OK);
    CHECK_INT(v.ok, 0);
    snprintf(want, sizeof want, "ok=0, max_sales=%.1f", max);
    CHECK_STR(v.evidence, want);
    free(v.evidence);
    free(v.sql);

    /* a check whose first value is not 0 or 1 goes back for repair */
    long before = calls(k);
    CHECK_INT(df_ai_verify(sales, "not a truth value", NULL, &v, &err), SK_OK);
    CHECK_INT(calls(k) - before, 2);
    CHECK_INT(v.ok, 1);
    snprintf(want, sizeof want, "ok=1, top=%.1f", max);
    CHECK_STR(v.evidence, want);
    free(v.evidence);
    free(v.sql);

    /* and one that returns many rows */
    before = calls(k);
    CHECK_INT(df_ai_verify(sales, "many rows", NULL, &v, &err), SK_OK);
    CHECK_INT(calls(k) - before, 2);
    CHECK_STR(v.evidence, "ok=1, n=24");
    free(v.evidence);
    free(v.sql);

    /* without repairs the message says what was wrong */
    df_ai_opts o = {-1, 0, 0, NULL, 0};
    CHECK_INT(df_ai_verify(sales, "not a truth value", &o, &v, &err), SK_QUERY);
    CHECK_CONTAINS(err ? err->message : NULL, "could not write a working check");
    CHECK_CONTAINS(err ? err->message : NULL, "must be 1 when the expectation holds");
    err_free(err);
    err = NULL;
    CHECK_INT(df_ai_verify(sales, "many rows", &o, &v, &err), SK_QUERY);
    CHECK_CONTAINS(err ? err->message : NULL, "more than one row");
    err_free(err);
    df_free(sales);
    sk_kernel_free(k);
}

int main(void)
{
    RUN(test_moving_average);
    RUN(test_repair);
    RUN(test_refused);
    RUN(test_extraction);
    RUN(test_cache);
    RUN(test_samples);
    RUN(test_verify);
    return tu_finish();
}
