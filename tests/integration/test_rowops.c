/* test_rowops.c -- semantic row operators (map, filter, classify,
 * extract), batching and its fallback, row errors and uncertainty,
 * concurrency, the ai() and skein() SQL functions, and the response
 * cache, all on the scripted model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "all.h"
#include "testutil.h"

static char cache_file[256];
static char trace_file[256];

/* Rules keyed on the wording of the DataFrame.* prompts and on the row
 * text ("n: 17\nname: item17"). */
static const char *RULES =
    "{\"rules\":["
    /* batches: a right count, and a short one that must fall back */
    "{\"match\":\"each numbered item(?s:.*)Instruction: (?s:.*)odd ones\","
    "\"reply\":\"Here you go:\\n1. yes\\n2. no\\n3. yes\\n4. no\"},"
    "{\"match\":\"each numbered item(?s:.*)Items:\\n1. shout\","
    "\"reply\":\"1. LOUD\\n2. LOUD\"},"
    "{\"match\":\"each numbered item(?s:.*)Instruction: pair\","
    "\"reply\":\"1. first\\n2) second\"},"
    "{\"match\":\"each numbered item(?s:.*)Instruction: size it\","
    "\"reply\":\"1. small\\n2. Medium.\\n3. LARGE\"},"
    /* map */
    "{\"match\":\"transform one row(?s:.*)Instruction: parity(?s:.*)n: \\\\d*[02468]\\n\",\"reply\":\"  EVEN\\n\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: parity\",\"reply\":\"ODD\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: shout it(?s:.*)text: alpha\",\"reply\":\"ALPHA\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: shout it(?s:.*)text: beta\",\"reply\":\"BETA\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: shout(?s:.*)n: \\\\d*[02468]\\n\",\"reply\":\"EVEN!\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: shout\",\"reply\":\"ODD!\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: slow\",\"reply\":\"done\",\"delay_ms\":100},"
    "{\"match\":\"transform one row(?s:.*)Instruction: name is item7\\n\",\"reply\":\"seven\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: name is\",\"reply\":\"other\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: unsure(?s:.*)n: 3\\n\","
    "\"reply\":\"maybe\",\"logprobs\":[[\"maybe\",-3.0]]},"
    "{\"match\":\"transform one row(?s:.*)Instruction: unsure\",\"reply\":\"sure\"},"
    "{\"match\":\"transform one row(?s:.*)Instruction: broken(?s:.*)n: 2\\n\","
    "\"error\":{\"kind\":\"model\",\"message\":\"the server fell over\",\"http_status\":500}},"
    "{\"match\":\"transform one row(?s:.*)Instruction: broken\",\"reply\":\"fine\"},"
    /* filter */
    "{\"match\":\"Decide whether(?s:.*)n: 7\\n\",\"reply\":\"perhaps\"},"
    "{\"match\":\"Decide whether(?s:.*)n: \\\\d*[05]\\n\",\"reply\":\"Yes, it does.\"},"
    "{\"match\":\"Decide whether(?s:.*)n: 1\\n\",\"reply\":\"KEEP\"},"
    "{\"match\":\"Decide whether\",\"reply\":\"no\"},"
    /* classify */
    "{\"match\":\"Classify one row(?s:.*)n: 250\\n\",\"reply\":\"huge\"},"
    "{\"match\":\"Classify one row(?s:.*)n: \\\\d\\n\",\"reply\":\"Small\"},"
    "{\"match\":\"Classify one row(?s:.*)n: \\\\d\\\\d\\n\",\"reply\":\"\\\"medium\\\".\"},"
    "{\"match\":\"Classify one row(?s:.*)n: \\\\d\\\\d\\\\d\\n\",\"reply\":\"**LARGE**\"},"
    /* extract */
    "{\"match\":\"Extract fields(?s:.*)n: 13\\n\",\"reply\":\"I cannot\"},"
    "{\"match\":\"Extract fields(?s:.*)n: \\\\d*[02468]\\n\","
    "\"reply\":\"```json\\n{\\\"num\\\": 2, \\\"tag\\\": \\\"even\\\", \\\"extra\\\": [1]}\\n```\"},"
    "{\"match\":\"Extract fields\",\"reply\":\"{\\\"num\\\": 1.5, \\\"tag\\\": null, \\\"flag\\\": true}\"}"
    "]}";

/* ---- helpers ------------------------------------------------------------ */

static sk_kernel *kernel(void)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    /* one rules file for every kernel: the model spec is part of the
     * cache key, and a second kernel must hit what the first stored */
    static char spec[300];
    if (!*spec)
        snprintf(spec, sizeof spec, "scripted:%s", tu_tmpfile(RULES, ".json"));
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    const char *src = getenv("SKEIN_SRC");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/skills", src ? src : "..");
    CHECK(sk_kernel_load_skills(k, dir) == SK_OK);
    return k;
}

static void exec_sql(sk_kernel *k, const char *sql)
{
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    CHECK(e != NULL);
    char *msg = NULL;
    sk_status st = e ? e->vt->exec(e, sql, &msg) : SK_USAGE;
    if (st != SK_OK)
        fprintf(stderr, "exec_sql: %s\n", msg ? msg : "?");
    CHECK(st == SK_OK);
    free(msg);
    err_free(err);
}

/* A table of n rows (n INTEGER, name TEXT) made by a recursive CTE. */
static sk_df *numbers(sk_kernel *k, const char *table, int n)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (n INTEGER, name TEXT);"
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
             "WHERE x < %d) INSERT INTO %s SELECT x, 'item' || x FROM c",
             table, n, table);
    exec_sql(k, sql);
    return df_wrap(k, table, NULL, NULL);
}

/* Query results, as text, kept until the next query. */
#define MAXR 512
#define MAXC 8
static char *cell[MAXR][MAXC];
static size_t nrows, ncols;
static char colname[MAXC][64];

static void clear_result(void)
{
    for (size_t r = 0; r < MAXR; r++)
        for (size_t c = 0; c < MAXC; c++) {
            free(cell[r][c]);
            cell[r][c] = NULL;
        }
    nrows = ncols = 0;
}

static int grab(void *ud, size_t n, const char *const *names,
                const char *const *values)
{
    (void)ud;
    if (nrows >= MAXR)
        return 1;
    ncols = n < MAXC ? n : MAXC;
    for (size_t c = 0; c < ncols; c++) {
        snprintf(colname[c], sizeof colname[c], "%s", names[c]);
        cell[nrows][c] = values[c] ? strdup(values[c]) : NULL;
    }
    nrows++;
    return 0;
}

static sk_status query(sk_kernel *k, const char *sql, char **msg)
{
    clear_result();
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    err_free(err);
    *msg = NULL;
    return e->vt->query(e, sql, NULL, 0, grab, NULL, msg);
}

/* Loads every row of a DataFrame, in order. */
static void load(const sk_df *df)
{
    char sql[256], *msg = NULL;
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", df->name);
    CHECK(query(df->k, sql, &msg) == SK_OK);
    free(msg);
}

static long calls(sk_kernel *k)
{
    sk_usage u;
    sk_kernel_usage(k, &u);
    return u.calls;
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

/* ---- map ----------------------------------------------------------------- */

TEST(test_map_every_row_and_cache)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 300);
    df_rowop_opts o = {0};
    o.as = "parity";
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    long c0 = calls(k);
    CHECK(df_rowop(t, DF_MAP, "parity of {n}", &o, &out, &s, &err) == SK_OK);
    CHECK(err == NULL);
    CHECK_INT(s.rows, 300);
    CHECK_INT(s.done, 300);
    CHECK_INT(s.failed, 0);
    CHECK_INT(s.cached, 0);
    CHECK_INT(s.model_calls, 300);
    CHECK_INT(calls(k) - c0, 300);
    CHECK(out != NULL && strcmp(out->name, "t") != 0);
    load(out);
    CHECK_INT(nrows, 300);
    CHECK_INT(ncols, 4);
    CHECK_STR(colname[0], "n");
    CHECK_STR(colname[1], "name");
    CHECK_STR(colname[2], "parity");
    CHECK_STR(colname[3], "_error");
    int wrong = 0;
    for (size_t r = 0; r < nrows; r++) {
        int n = atoi(str_or(cell[r][0], "0"));
        if (n != (int)r + 1 || strcmp(str_or(cell[r][2], ""), n % 2 ? "ODD" : "EVEN") != 0 ||
            cell[r][3] != NULL)
            wrong++;
    }
    CHECK_INT(wrong, 0);
    /* the input's INTEGER type is kept */
    char *msg = NULL;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT typeof(n), sum(n) FROM \"%s\"", out->name);
    CHECK(query(k, sql, &msg) == SK_OK);
    CHECK_STR(cell[0][0], "integer");
    CHECK_STR(cell[0][1], "45150");
    free(msg);
    df_free(out);

    /* the same again: every row from the cache, no model call */
    c0 = calls(k);
    out = NULL;
    CHECK(df_rowop(t, DF_MAP, "parity of {n}", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(calls(k) - c0, 0);
    CHECK_INT(s.cached, 300);
    CHECK_INT(s.model_calls, 0);
    load(out);
    CHECK_STR(cell[41][2], "EVEN");
    CHECK_STR(cell[42][2], "ODD");
    df_free(out);

    /* no_cache asks the model again */
    o.no_cache = 1;
    c0 = calls(k);
    CHECK(df_rowop(t, DF_MAP, "parity of {n}", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(calls(k) - c0, 300);
    CHECK_INT(s.cached, 0);
    df_free(out);

    /* a second kernel shares the cache file */
    sk_kernel *k2 = kernel();
    sk_df *t2 = numbers(k2, "t", 300);
    o.no_cache = 0;
    c0 = calls(k2);
    CHECK(df_rowop(t2, DF_MAP, "parity of {n}", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(calls(k2) - c0, 0);
    CHECK_INT(s.cached, 300);
    df_free(out);
    df_free(t2);
    sk_kernel_free(k2);

    df_free(t);
    sk_kernel_free(k);

    /* the cache file holds the answers */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(cache_file, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*), min(created) > 0 FROM cache "
                             "WHERE key LIKE '%parity of%'", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 300);
    CHECK_INT(sqlite3_column_int(st, 1), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

TEST(test_map_replaces_column_and_references)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 9);
    df_rowop_opts o = {0};
    o.as = "name"; /* replaces the input's column of that name */
    o.no_cache = 1;
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    CHECK(df_rowop(t, DF_MAP, "name is {name}", &o, &out, &s, &err) == SK_OK);
    load(out);
    CHECK_INT(ncols, 3);
    CHECK_STR(colname[1], "name");
    CHECK_STR(cell[6][1], "seven");
    CHECK_STR(cell[5][1], "other");
    df_free(out);

    /* an unknown reference fails before any model call */
    long c0 = calls(k);
    CHECK(df_rowop(t, DF_MAP, "use {nope} and {{literal}}", &o, &out, &s, &err) == SK_USAGE);
    CHECK(out == NULL);
    CHECK(err != NULL);
    CHECK_CONTAINS(err ? err->message : NULL, "{nope}");
    CHECK_CONTAINS(err ? err->message : NULL, "n, name");
    CHECK_INT(calls(k) - c0, 0);
    err_free(err);
    err = NULL;

    /* {{ and }} are literal braces: this one has no references */
    CHECK(df_rowop(t, DF_MAP, "name is {{x}}", &o, &out, &s, &err) == SK_OK);
    df_free(out);

    /* classify without labels, extract without fields */
    CHECK(df_rowop(t, DF_CLASSIFY, "x", &o, &out, &s, &err) == SK_USAGE);
    CHECK_CONTAINS(err ? err->message : NULL, "label");
    err_free(err);
    err = NULL;
    CHECK(df_rowop(t, DF_EXTRACT, "x", &o, &out, &s, &err) == SK_USAGE);
    err_free(err);
    err = NULL;
    /* an empty map instruction */
    CHECK(df_rowop(t, DF_MAP, "", &o, &out, &s, &err) == SK_USAGE);
    err_free(err);
    err = NULL;
    df_free(t);
    sk_kernel_free(k);
}

/* ---- filter, classify, extract -------------------------------------------- */

TEST(test_filter)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 300);
    df_rowop_opts o = {0};
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    CHECK(df_rowop(t, DF_FILTER, "is {n} a multiple of five?", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.rows, 300);
    CHECK_INT(s.failed, 1);
    load(out);
    CHECK_INT(ncols, 3);
    CHECK_STR(colname[2], "_error");
    /* 60 multiples of five, 1 (KEEP) and 7 (failed, kept with its error) */
    CHECK_INT(nrows, 62);
    int wrong = 0;
    for (size_t r = 0; r < nrows; r++) {
        int n = atoi(str_or(cell[r][0], "0"));
        int ok = (n % 5 == 0 && !cell[r][2]) || (n == 1 && !cell[r][2]) ||
                 (n == 7 && cell[r][2]);
        if (!ok)
            wrong++;
    }
    CHECK_INT(wrong, 0);
    CHECK_STR(cell[0][0], "1");
    CHECK_STR(cell[1][0], "5");
    CHECK_STR(cell[2][0], "7");
    CHECK_CONTAINS(cell[2][2], "answered \"perhaps\", not yes or no");
    df_free(out);
    df_free(t);
    sk_kernel_free(k);
}

TEST(test_classify)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 300);
    const char *labels[] = {"small", "medium", "large"};
    df_rowop_opts o = {0};
    o.labels = labels;
    o.n_labels = 3;
    o.column = "n";
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    CHECK(df_rowop(t, DF_CLASSIFY, "How big is the number?", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.failed, 1);
    load(out);
    CHECK_INT(nrows, 300);
    CHECK_STR(colname[2], "label");
    int wrong = 0;
    for (size_t r = 0; r < nrows; r++) {
        int n = (int)r + 1;
        const char *want = n < 10 ? "small" : n < 100 ? "medium" : "large";
        if (n == 250) {
            if (cell[r][2] || !cell[r][3])
                wrong++;
        } else if (!cell[r][2] || strcmp(cell[r][2], want) != 0 || cell[r][3]) {
            wrong++;
        }
    }
    CHECK_INT(wrong, 0);
    CHECK_CONTAINS(cell[249][3], "answered \"huge\", not one of: small, medium, large");
    df_free(out);

    /* an unknown input column */
    o.column = "size";
    CHECK(df_rowop(t, DF_CLASSIFY, NULL, &o, &out, &s, &err) == SK_USAGE);
    CHECK_CONTAINS(err ? err->message : NULL, "unknown column size");
    err_free(err);
    df_free(t);
    sk_kernel_free(k);
}

TEST(test_extract)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 200);
    const char *fields[] = {"num", "tag", "missing", "flag", "extra"};
    df_rowop_opts o = {0};
    o.fields = fields;
    o.n_fields = 5;
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    CHECK(df_rowop(t, DF_EXTRACT, "Pull out the details of {name}", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.failed, 1);
    load(out);
    CHECK_INT(nrows, 200);
    CHECK_INT(ncols, 8);
    CHECK_STR(colname[2], "num");
    CHECK_STR(colname[7], "_error");
    int wrong = 0;
    for (size_t r = 0; r < nrows; r++) {
        int n = (int)r + 1;
        if (n == 13) {
            if (cell[r][2] || !cell[r][7])
                wrong++;
        } else if (n % 2 == 0) {
            if (strcmp(str_or(cell[r][2], ""), "2") || strcmp(str_or(cell[r][3], ""), "even") ||
                cell[r][4] || cell[r][5] || strcmp(str_or(cell[r][6], ""), "[1]") || cell[r][7])
                wrong++;
        } else if (strcmp(str_or(cell[r][2], ""), "1.5") || cell[r][3] || cell[r][4] ||
                   strcmp(str_or(cell[r][5], ""), "true") || cell[r][6] || cell[r][7]) {
            wrong++;
        }
    }
    CHECK_INT(wrong, 0);
    CHECK_CONTAINS(cell[12][7], "not a JSON object: I cannot");
    df_free(out);
    df_free(t);
    sk_kernel_free(k);
}

/* ---- batching ----------------------------------------------------------- */

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len;
    if (sk_read_file(path, 1 << 24, &text, &len) != SK_OK)
        return NULL;
    return text;
}

TEST(test_batches)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 200);
    df_rowop_opts o = {0};
    o.batch = 4;
    o.no_cache = 1;
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    /* a right count: one call per four rows, answers tied to their rows */
    CHECK(df_rowop(t, DF_FILTER, "keep the odd ones", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.model_calls, 50);
    CHECK_INT(s.failed, 0);
    load(out);
    CHECK_INT(nrows, 100);
    int wrong = 0;
    for (size_t r = 0; r < nrows; r++)
        if (atoi(str_or(cell[r][0], "0")) != 2 * (int)r + 1)
            wrong++;
    CHECK_INT(wrong, 0);
    df_free(out);

    /* map with batches of two */
    o.batch = 2;
    CHECK(df_rowop(t, DF_MAP, "pair them", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.model_calls, 100);
    load(out);
    CHECK_STR(cell[0][2], "first");
    CHECK_STR(cell[1][2], "second");
    CHECK_STR(cell[198][2], "first");
    CHECK_STR(cell[199][2], "second");
    df_free(out);

    /* classify in batches of three: labels come back in their spelling */
    const char *labels[] = {"small", "medium", "large"};
    o.batch = 3;
    o.labels = labels;
    o.n_labels = 3;
    sk_df *t9 = numbers(k, "t9", 9);
    CHECK(df_rowop(t9, DF_CLASSIFY, "size it", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.model_calls, 3);
    load(out);
    CHECK_STR(cell[3][2], "small");
    CHECK_STR(cell[4][2], "medium");
    CHECK_STR(cell[8][2], "large");
    df_free(out);
    df_free(t9);
    o.labels = NULL;
    o.n_labels = 0;

    /* a wrong count: each batch falls back to one call per row, and the
     * results are still right */
    CHECK(sk_kernel_set_trace(k, trace_file) == SK_OK);
    o.batch = 3;
    sk_df *t30 = numbers(k, "t30", 30);
    CHECK(df_rowop(t30, DF_MAP, "shout {name}", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.model_calls, 10 + 30);
    CHECK_INT(s.failed, 0);
    load(out);
    wrong = 0;
    for (size_t r = 0; r < nrows; r++)
        if (strcmp(str_or(cell[r][2], ""), (r + 1) % 2 ? "ODD!" : "EVEN!") != 0)
            wrong++;
    CHECK_INT(wrong, 0);
    CHECK_INT(nrows, 30);
    df_free(out);
    df_free(t30);
    sk_kernel_set_trace(k, NULL);
    char *trace = slurp(trace_file);
    CHECK_CONTAINS(trace, "\"type\":\"rowop_batch_fallback\"");
    CHECK_CONTAINS(trace, "\"type\":\"rowop\",\"op\":\"map\"");
    CHECK_CONTAINS(trace, "\"batch_fallbacks\":10");
    CHECK_CONTAINS(trace, "\"model_calls\":40");
    free(trace);
    df_free(t);
    sk_kernel_free(k);
}

/* ---- failures and uncertainty ------------------------------------------- */

TEST(test_row_errors_and_uncertainty)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 10);
    df_rowop_opts o = {0};
    o.no_cache = 1;
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    /* a model error on row 2 is recorded, the rest go on */
    CHECK(df_rowop(t, DF_MAP, "broken", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.failed, 1);
    CHECK_INT(s.uncertain, 0);
    load(out);
    CHECK_INT(nrows, 10);
    CHECK(cell[1][2] == NULL);
    CHECK_CONTAINS(cell[1][3], "the server fell over");
    CHECK_STR(cell[2][2], "fine");
    CHECK(cell[2][3] == NULL);
    df_free(out);

    /* a chained operation keeps the earlier error of a row */
    sk_df *prev = NULL;
    CHECK(df_rowop(t, DF_MAP, "broken", &o, &prev, &s, &err) == SK_OK);
    o.as = "p";
    CHECK(df_rowop(prev, DF_MAP, "parity", &o, &out, &s, &err) == SK_OK);
    o.as = NULL;
    load(out);
    CHECK_INT(ncols, 5);
    CHECK_STR(colname[4], "_error");
    CHECK_CONTAINS(cell[1][4], "the server fell over");
    CHECK_STR(cell[1][3], "EVEN");
    CHECK(cell[2][4] == NULL);
    df_free(out);
    df_free(prev);

    /* uncertainty recorded in _error */
    CHECK(df_rowop(t, DF_MAP, "unsure", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.uncertain, 1);
    CHECK_INT(s.failed, 1);
    load(out);
    CHECK_CONTAINS(cell[2][3], "uncertain: ");
    CHECK(cell[2][2] == NULL);
    CHECK_STR(cell[3][2], "sure");
    df_free(out);

    /* ... or raised, naming the row */
    o.raise_uncertain = 1;
    CHECK(df_rowop(t, DF_MAP, "unsure", &o, &out, &s, &err) == SK_UNCERTAIN);
    CHECK(out == NULL);
    CHECK(err != NULL && err->code == SK_UNCERTAIN);
    CHECK_CONTAINS(err ? err->message : NULL, "row 3");
    err_free(err);
    err = NULL;

    /* failures are not cached: a second run asks again */
    o.raise_uncertain = 0;
    o.no_cache = 0;
    CHECK(df_rowop(t, DF_MAP, "broken", &o, &out, &s, &err) == SK_OK);
    df_free(out);
    CHECK(df_rowop(t, DF_MAP, "broken", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.cached, 9);
    CHECK_INT(s.model_calls, 1);
    CHECK_INT(s.failed, 1);
    df_free(out);
    df_free(t);
    sk_kernel_free(k);
}

/* ---- concurrency -------------------------------------------------------- */

typedef struct sampler {
    sk_kernel *k;
    long max_inflight;
    int ticks;
} sampler;

static void sample(void *ud)
{
    sampler *s = ud;
    long n = kern_model_inflight(s->k);
    if (n > s->max_inflight)
        s->max_inflight = n;
    if (++s->ticks < 40)
        loop_after(s->k, 10, sample, s, NULL);
}

TEST(test_concurrency)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 50);
    df_rowop_opts o = {0};
    o.concurrency = 25;
    o.no_cache = 1;
    sampler sm = {k, 0, 0};
    CHECK(loop_after(k, 10, sample, &sm, NULL) == SK_OK);
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    long long t0 = loop_now_ms();
    CHECK(df_rowop(t, DF_MAP, "slow", &o, &out, &s, &err) == SK_OK);
    long long ms = loop_now_ms() - t0;
    CHECK(sm.max_inflight > 1);
    CHECK(sm.max_inflight <= 25);
    CHECK(ms < 50 * 100 / 2);
    CHECK_INT(s.model_calls, 50);
    df_free(out);

    /* concurrency 1 runs one at a time */
    o.concurrency = 1;
    sk_df *t5 = numbers(k, "t5", 5);
    sampler one = {k, 0, 0};
    CHECK(loop_after(k, 10, sample, &one, NULL) == SK_OK);
    CHECK(df_rowop(t5, DF_MAP, "slow", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(one.max_inflight, 1);
    df_free(out);
    df_free(t5);
    df_free(t);
    sk_kernel_free(k);
}

/* ---- progress ------------------------------------------------------------ */

TEST(test_progress)
{
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 20);
    df_rowop_opts o = {0};
    o.progress = 1;
    o.no_cache = 1;
    const char *path = tu_tmpfile("", ".txt");
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    dup2(fileno(f), 2);
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    sk_status st = df_rowop(t, DF_MAP, "parity", &o, &out, &s, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    CHECK(st == SK_OK);
    char *text = slurp(path);
    CHECK_CONTAINS(text, "\r  20/20 rows  100%");
    CHECK(text && text[strlen(text) - 1] == '\n');
    free(text);
    df_free(out);
    df_free(t);
    sk_kernel_free(k);
}

/* ---- SQL functions -------------------------------------------------------- */

TEST(test_sql_functions)
{
    sk_kernel *k = kernel();
    exec_sql(k, "CREATE TABLE w (id INTEGER, name TEXT);"
                "INSERT INTO w VALUES (1, 'alpha'), (2, 'beta'), (3, NULL)");
    sk_err *err = NULL;
    CHECK(df_register_sql_functions(k, &err) == SK_OK);
    char *msg = NULL;
    long c0 = calls(k);
    CHECK(query(k, "SELECT ai('shout it', name) FROM w ORDER BY id", &msg) == SK_OK);
    CHECK_INT(nrows, 3);
    CHECK_STR(cell[0][0], "ALPHA");
    CHECK_STR(cell[1][0], "BETA");
    CHECK(cell[2][0] == NULL);
    CHECK_INT(calls(k) - c0, 2);
    free(msg);
    /* again: from the cache */
    c0 = calls(k);
    CHECK(query(k, "SELECT ai('shout it', name) FROM w ORDER BY id", &msg) == SK_OK);
    CHECK_STR(cell[1][0], "BETA");
    CHECK_INT(calls(k) - c0, 0);
    free(msg);

    CHECK(query(k, "SELECT skein('Text.Upper', name) FROM w ORDER BY id", &msg) == SK_OK);
    CHECK_STR(cell[0][0], "ALPHA");
    CHECK_STR(cell[1][0], "BETA");
    CHECK(cell[2][0] == NULL);
    free(msg);

    /* errors carry the kernel's message */
    CHECK(query(k, "SELECT skein('Text.Uper', name) FROM w", &msg) != SK_OK);
    CHECK_CONTAINS(msg, "unknown function");
    CHECK_CONTAINS(msg, "Text.Upper");
    free(msg);
    CHECK(query(k, "SELECT ai('', name) FROM w", &msg) != SK_OK);
    CHECK_CONTAINS(msg, "instruction is empty");
    free(msg);
    sk_kernel_free(k);
}

/* ---- where the cache lives ------------------------------------------------ */

TEST(test_cache_off_and_unusable)
{
    setenv("SKEIN_CACHE", "off", 1);
    sk_kernel *k = kernel();
    sk_df *t = numbers(k, "t", 20);
    df_rowop_opts o = {0};
    sk_df *out = NULL;
    df_rowop_summary s;
    sk_err *err = NULL;
    CHECK(df_rowop(t, DF_MAP, "parity", &o, &out, &s, &err) == SK_OK);
    df_free(out);
    CHECK(df_rowop(t, DF_MAP, "parity", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.cached, 0);
    CHECK_INT(s.model_calls, 20);
    char *v = (char *)"x";
    CHECK(kern_cache_put(k, "key", "value") == SK_OK);
    CHECK(kern_cache_get(k, "key", &v) == SK_OK);
    CHECK(v == NULL);
    df_free(out);
    df_free(t);
    sk_kernel_free(k);

    /* a cache that cannot be created: the operation carries on */
    setenv("SKEIN_CACHE", "/proc/no-such-dir/cache.db", 1);
    k = kernel();
    t = numbers(k, "t", 20);
    CHECK(df_rowop(t, DF_MAP, "parity", &o, &out, &s, &err) == SK_OK);
    CHECK_INT(s.model_calls, 20);
    CHECK_INT(s.failed, 0);
    df_free(out);
    df_free(t);
    sk_kernel_free(k);

    /* XDG_CACHE_HOME, with the folder made on the way */
    char xdg[256];
    snprintf(xdg, sizeof xdg, "/tmp/skein-rowops-xdg-%d", (int)getpid());
    unsetenv("SKEIN_CACHE");
    setenv("XDG_CACHE_HOME", xdg, 1);
    k = kernel();
    CHECK(kern_cache_put(k, "k1", "v1") == SK_OK);
    CHECK(kern_cache_get(k, "k1", &v) == SK_OK);
    CHECK_STR(v, "v1");
    free(v);
    CHECK(kern_cache_get(k, "k2", &v) == SK_OK);
    CHECK(v == NULL);
    sk_kernel_free(k);
    char path[512];
    snprintf(path, sizeof path, "%s/skein/cache.db", xdg);
    CHECK(access(path, R_OK | W_OK) == 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", xdg);
    CHECK(system(cmd) == 0);
    setenv("SKEIN_CACHE", cache_file, 1);
}

int main(void)
{
    char dir[200];
    snprintf(dir, sizeof dir, "/tmp/skein-rowops-%d", (int)getpid());
    snprintf(cache_file, sizeof cache_file, "%s/sub/cache.db", dir);
    snprintf(trace_file, sizeof trace_file, "%s/trace.jsonl", dir);
    setenv("SKEIN_CACHE", cache_file, 1);
    RUN(test_map_every_row_and_cache);
    RUN(test_map_replaces_column_and_references);
    RUN(test_filter);
    RUN(test_classify);
    RUN(test_extract);
    RUN(test_batches);
    RUN(test_row_errors_and_uncertainty);
    RUN(test_concurrency);
    RUN(test_progress);
    RUN(test_sql_functions);
    RUN(test_cache_off_and_unusable);
    clear_result();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish();
}
