/* test_csv.c -- CSV import and export: quoting, line ends, BOM, the
 * delimiter and header guesses, type inference, every error with its
 * line, the round trip, and allocation failures. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "all.h"
#include "testutil.h"

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

static int collect_row(void *ud, size_t n, const char *const *names,
                       const char *const *values)
{
    (void)names;
    sk_buf *b = ud;
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_addc(b, '|');
        buf_adds(b, values[i] ? values[i] : "NULL");
    }
    buf_addc(b, ';');
    return 0;
}

/* Rows of sql over df ({df} is its name) as "a|b;c|d;".  Caller frees. */
static char *rows(const sk_df *df, const char *sql)
{
    sk_err *err = NULL;
    df_engine *e = kern_engine(df->k, &err);
    err_free(err);
    char *s = df_subst(df, sql);
    sk_buf b;
    buf_init(&b, 0);
    char *msg = NULL;
    sk_status rc = e->vt->query(e, s, grant_none(), 0, collect_row, &b, &msg);
    if (rc != SK_OK)
        fprintf(stderr, "query %s: %s\n", s, msg ? msg : "?");
    free(msg);
    free(s);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Imports text with options; returns the frame, or NULL with *rc and *err set. */
static sk_df *import(sk_kernel *k, const char *text, char delim, int header,
                     sk_status *rc, sk_err **err)
{
    const char *path = tu_tmpfile(text, ".csv");
    df_csv_opts o = {delim, header, NULL};
    sk_df *df = NULL;
    *err = NULL;
    *rc = df_read_csv(k, path, &o, &df, err);
    unlink(path);
    return df;
}

/* Expects text to fail with SK_DATA and a message containing want
 * (":LINE: message"). */
static void expect_error(sk_kernel *k, const char *text, const char *want)
{
    sk_status rc;
    sk_err *err = NULL;
    sk_df *df = import(k, text, 0, -1, &rc, &err);
    CHECK(df == NULL);
    CHECK_INT(rc, SK_DATA);
    CHECK(err != NULL);
    if (err) {
        CHECK_INT(err->code, SK_DATA);
        CHECK_CONTAINS(err->message, want);
        CHECK_CONTAINS(err->message, "skein-test-");
    }
    err_free(err);
    df_free(df);
}

static long long table_count(sk_kernel *k)
{
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    err_free(err);
    sk_buf b;
    buf_init(&b, 0);
    e->vt->query(e, "SELECT count(*) FROM sqlite_schema", grant_none(), 0, collect_row, &b, NULL);
    long long n = b.p ? atoll(b.p) : -1;
    buf_free(&b);
    return n;
}

TEST(basic_and_types)
{
    sk_kernel *k = new_kernel();
    sk_status rc;
    sk_err *err = NULL;
    sk_df *df = import(k, "id,name,price,zip,when,big\n"
                          "1,apple,1.5,007,2024-01-01,9223372036854775807\n"
                          "2,pear,2,012,2024-01-02,9223372036854775808\n"
                          "-3,, -1e3 ,,2024-01-03,1\n",
                       0, -1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    CHECK(df != NULL);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "id INTEGER, name TEXT, price REAL, zip TEXT, when TEXT, big REAL");
        free(s);
        char *r = rows(df, "SELECT id, typeof(id), name, price, typeof(price), zip FROM {df} "
                           "ORDER BY rowid");
        CHECK_STR(r, "1|integer|apple|1.5|real|007;2|integer|pear|2.0|real|012;"
                     "-3|integer|NULL|-1000.0|real|NULL;");
        free(r);
        r = rows(df, "SELECT count(*) FROM {df} WHERE name IS NULL");
        CHECK_STR(r, "1;");
        free(r);
        long long n = 0;
        CHECK_INT(df_count(df, &n, &err), SK_OK);
        CHECK_INT(n, 3);
        CHECK(strncmp(df->name, "df_", 3) == 0);
    }
    df_free(df);
    /* a named table, and the same name twice */
    const char *path = tu_tmpfile("x\n1\n", ".csv");
    df_csv_opts o = {0, -1, "mine"};
    df = NULL;
    CHECK_INT(df_read_csv(k, path, &o, &df, &err), SK_OK);
    if (df)
        CHECK_STR(df->name, "mine");
    df_free(df);
    df = NULL;
    CHECK_INT(df_read_csv(k, path, &o, &df, &err), SK_DATA);
    CHECK(df == NULL);
    if (err)
        CHECK_CONTAINS(err->message, "already exists");
    err_free(err);
    err = NULL;
    /* NULL options are the defaults */
    CHECK_INT(df_read_csv(k, path, NULL, &df, &err), SK_OK);
    df_free(df);
    unlink(path);
    sk_kernel_free(k);
}

TEST(quoting_and_line_ends)
{
    sk_kernel *k = new_kernel();
    sk_status rc;
    sk_err *err = NULL;
    /* "" escapes, embedded delimiters and line breaks, CRLF */
    sk_df *df = import(k, "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n\"line1\r\nline2\",\"\"\r\n", 0,
                       -1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    if (df) {
        char *r = rows(df, "SELECT a, b, length(a) FROM {df}");
        CHECK_STR(r, "x,y|say \"hi\"|3;line1\r\nline2|NULL|12;");
        free(r);
    }
    df_free(df);
    /* CR only, and no final line end */
    df = import(k, "a,b\r1,2\r3,4", 0, -1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    if (df) {
        char *r = rows(df, "SELECT a + b FROM {df}");
        CHECK_STR(r, "3;7;");
        free(r);
    }
    df_free(df);
    /* blank lines are skipped; trailing empty field */
    df = import(k, "a,b\n\n1,\n\r\n2,x\n\n", 0, -1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    if (df) {
        char *r = rows(df, "SELECT a, b FROM {df}");
        CHECK_STR(r, "1|NULL;2|x;");
        free(r);
    }
    df_free(df);
    /* the fixture: BOM, semicolons, CRLF */
    df_csv_opts o = {0, -1, NULL};
    df = NULL;
    CHECK_INT(df_read_csv(k, "data/csv/bom_semicolon.csv", &o, &df, &err), SK_OK);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "id INTEGER, name TEXT, price REAL");
        free(s);
        char *r = rows(df, "SELECT * FROM {df}");
        CHECK_STR(r, "1|Widget; large|2.5;2|Say \"hi\"|3.0;3|NULL|NULL;");
        free(r);
    }
    df_free(df);
    df = NULL;
    CHECK_INT(df_read_csv(k, "data/csv/multiline.csv", &o, &df, &err), SK_OK);
    if (df) {
        char *r = rows(df, "SELECT city, pop, note FROM {df} ORDER BY pop DESC");
        CHECK_STR(r, "New\nYork|8336817|big, busy;Paris|2148000|NULL;Oslo|709037|cold;");
        free(r);
    }
    df_free(df);
    sk_kernel_free(k);
}

TEST(delimiters)
{
    sk_kernel *k = new_kernel();
    static const struct {
        const char *text;
        char delim;
        const char *want;
    } cases[] = {
        {"a;b\n1;2\n", 0, "1|2;"},
        {"a\tb\n1\t2\n", 0, "1|2;"},
        {"a|b\n1|2\n", 0, "1|2;"},
        {"a,b\n1,2\n", 0, "1|2;"},
        /* commas inside quotes do not count */
        {"\"x,y,z\";b\n1;2\n", 0, "1|2;"},
        /* the most frequent wins */
        {"a;b;c,d\n1;2;3,4\n", 0, "1|2|3,4;"},
        /* given explicitly */
        {"a;b,c\n1;2,3\n", ',', "1;2|3;"},
        {"a:b\n1:2\n", ':', "1|2;"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sk_status rc;
        sk_err *err = NULL;
        sk_df *df = import(k, cases[i].text, cases[i].delim, 1, &rc, &err);
        CHECK_INT(rc, SK_OK);
        if (df) {
            char *r = rows(df, "SELECT * FROM {df}");
            CHECK_STR(r, cases[i].want);
            free(r);
        }
        err_free(err);
        df_free(df);
    }
    sk_kernel_free(k);
}

TEST(header_guess_and_names)
{
    sk_kernel *k = new_kernel();
    sk_status rc;
    sk_err *err = NULL;
    /* numbers in the first row: data */
    sk_df *df = import(k, "1,2\n3,4\n", 0, -1, &rc, &err);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "c1 INTEGER, c2 INTEGER");
        free(s);
        char *r = rows(df, "SELECT count(*) FROM {df}");
        CHECK_STR(r, "2;");
        free(r);
    }
    df_free(df);
    /* text over numbers: a header */
    df = import(k, "x,y\n3,4\n", 0, -1, &rc, &err);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "x INTEGER, y INTEGER");
        free(s);
    }
    df_free(df);
    /* an empty field in the first row: data */
    df = import(k, "a,,c\nd,e,f\n", 0, -1, &rc, &err);
    if (df) {
        char *r = rows(df, "SELECT count(*), min(c1) FROM {df}");
        CHECK_STR(r, "2|a;");
        free(r);
    }
    df_free(df);
    /* repeated values in the first row: data */
    df = import(k, "yes,yes\nno,yes\n", 0, -1, &rc, &err);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "c1 TEXT, c2 TEXT");
        free(s);
    }
    df_free(df);
    /* all text: a header */
    df = import(k, "name,city\nAda,London\n", 0, -1, &rc, &err);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "name TEXT, city TEXT");
        free(s);
    }
    df_free(df);
    /* forced: header 0 keeps the first row; its text makes a column TEXT */
    df = import(k, "x,y\n3,4\n", 0, 0, &rc, &err);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "c1 TEXT, c2 TEXT");
        free(s);
        char *r = rows(df, "SELECT count(*) FROM {df}");
        CHECK_STR(r, "2;");
        free(r);
    }
    df_free(df);
    /* forced header with numbers; names made unique and non-empty */
    df = import(k, "1,a,,A, a ,a_2\n5,6,7,8,9,10\n", 0, 1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    if (df) {
        char *s = df_schema_text(df);
        CHECK_STR(s, "1 INTEGER, a INTEGER, c3 INTEGER, A_2 INTEGER, a_3 INTEGER, "
                     "a_2_2 INTEGER");
        free(s);
    }
    df_free(df);
    /* a header alone: an empty table */
    df = import(k, "p,q\n", 0, 1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    if (df) {
        long long n = -1;
        CHECK_INT(df_count(df, &n, &err), SK_OK);
        CHECK_INT(n, 0);
        char *s = df_schema_text(df);
        CHECK_STR(s, "p TEXT, q TEXT");
        free(s);
    }
    df_free(df);
    sk_kernel_free(k);
}

TEST(errors)
{
    sk_kernel *k = new_kernel();
    long long before = table_count(k);
    expect_error(k, "a,b,c\n1,2,3\n4,5,6,7\n", ":3: row has 4 fields, the header has 3");
    expect_error(k, "a,b,c\n1,2\n", ":2: row has 2 fields, the header has 3");
    expect_error(k, "a,b\n1,2\n3,\"open\n\n\n", ":3: unterminated quote");
    expect_error(k, "a,b\n1,ab\"c\n", ":2: a quote in the middle of an unquoted field");
    expect_error(k, "a,b\n1,\"ab\"c\n", ":2: unexpected character after a closing quote");
    expect_error(k, "a,b\n1,2\n3,\xff\n", ":3: invalid UTF-8 at byte 3");
    expect_error(k, "a,b\n1,\"x\ny\xc3\x28\"\n", ":3: invalid UTF-8 at byte 3");
    expect_error(k, "a,b\n1,\xed\xa0\x80\n", ":2: invalid UTF-8"); /* a surrogate */
    expect_error(k, "a,b\n1,\xc0\xaf\n", ":2: invalid UTF-8");     /* overlong */
    expect_error(k, "a,b\n1,\xe2\x82", ":2: invalid UTF-8");       /* cut short */
    expect_error(k, "", ":1: the file has no rows");
    expect_error(k, "\n\n", "the file has no rows");
    /* an error past the sampled rows: nothing half-imported remains */
    sk_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "n,s\n");
    for (int i = 0; i < 12000; i++)
        buf_printf(&b, "%d,row%d\n", i, i);
    buf_adds(&b, "1,2,3\n");
    expect_error(k, b.p, ":12002: row has 3 fields, the header has 2");
    buf_free(&b);
    CHECK_INT(table_count(k), before);
    /* fixtures */
    static const struct {
        const char *path, *want;
    } files[] = {
        {"data/csv/ragged.csv", "data/csv/ragged.csv:3: row has 2 fields, the header has 3"},
        {"data/csv/unterminated.csv", "data/csv/unterminated.csv:2: unterminated quote"},
        {"data/csv/bad_utf8.csv", "data/csv/bad_utf8.csv:3: invalid UTF-8 at byte 3"},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        sk_df *df = NULL;
        sk_err *err = NULL;
        CHECK_INT(df_read_csv(k, files[i].path, NULL, &df, &err), SK_DATA);
        CHECK(err && strstr(err->message, files[i].want) == err->message);
        if (err && !strstr(err->message, files[i].want))
            fprintf(stderr, "got: %s\n", err->message);
        err_free(err);
    }
    /* a missing file */
    sk_df *df = NULL;
    sk_err *err = NULL;
    CHECK_INT(df_read_csv(k, "/nonexistent/x.csv", NULL, &df, &err), SK_IO);
    if (err)
        CHECK_STR(err->message, "/nonexistent/x.csv: No such file or directory");
    err_free(err);
    CHECK_INT(table_count(k), before);
    sk_kernel_free(k);
}

TEST(too_many_columns_and_big_fields)
{
    sk_kernel *k = new_kernel();
    sk_buf b;
    buf_init(&b, (size_t)64 << 20);
    for (int i = 0; i < 4097; i++)
        buf_adds(&b, i ? ",x" : "x");
    buf_addc(&b, '\n');
    expect_error(k, b.p, ":1: more than 4096 columns");
    /* over SQLite's column limit but under ours: a clear error too */
    buf_reset(&b);
    for (int i = 0; i < 2500; i++)
        buf_printf(&b, "%sc%d", i ? "," : "", i);
    buf_adds(&b, "\n");
    for (int i = 0; i < 2500; i++)
        buf_adds(&b, i ? ",1" : "1");
    buf_adds(&b, "\n");
    expect_error(k, b.p, "too many columns");
    /* a field over 16 MiB */
    buf_reset(&b);
    buf_adds(&b, "a,b\n1,\"");
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (size_t n = 0; n < ((size_t)16 << 20) + 8192; n += sizeof chunk)
        buf_add(&b, chunk, sizeof chunk);
    buf_adds(&b, "\"\n");
    expect_error(k, b.p, ":2: a field is larger than 16 MiB");
    buf_free(&b);
    sk_kernel_free(k);
}

TEST(round_trip)
{
    sk_kernel *k = new_kernel();
    sk_status rc;
    sk_err *err = NULL;
    const char *text = "id,name,score,note\n"
                       "1,\"Smith, Jo\",1.5,\"said \"\"no\"\"\"\n"
                       "2,Émile,2.25,\"two\nlines\"\n"
                       "3,,,\n";
    sk_df *a = import(k, text, 0, -1, &rc, &err);
    CHECK_INT(rc, SK_OK);
    char out[] = "/tmp/skein-csv-out-XXXXXX";
    int fd = mkstemp(out);
    close(fd);
    chmod(out, 0640);
    CHECK_INT(df_write_csv(a, out, &err), SK_OK);
    struct stat sb;
    CHECK(stat(out, &sb) == 0 && (sb.st_mode & 0777) == 0640); /* mode kept */
    char *written = NULL;
    size_t len = 0;
    CHECK_INT(sk_read_file(out, 1 << 20, &written, &len), SK_OK);
    CHECK_STR(written, "id,name,score,note\n"
                       "1,\"Smith, Jo\",1.5,\"said \"\"no\"\"\"\n"
                       "2,Émile,2.25,\"two\nlines\"\n"
                       "3,,,\n");
    free(written);
    df_csv_opts o = {0, -1, NULL};
    sk_df *b = NULL;
    CHECK_INT(df_read_csv(k, out, &o, &b, &err), SK_OK);
    if (a && b) {
        char *ra = rows(a, "SELECT * FROM {df}");
        char *rb = rows(b, "SELECT * FROM {df}");
        CHECK_STR(rb, ra);
        free(ra);
        free(rb);
        char *sa = df_schema_text(a), *sb2 = df_schema_text(b);
        CHECK_STR(sb2, sa);
        free(sa);
        free(sb2);
    }
    /* an empty view still writes its header */
    sk_df *v = NULL;
    CHECK_INT(df_from_query(k, "SELECT id AS only FROM df_1 WHERE 0", NULL, NULL, &v, &err), SK_OK);
    if (v) {
        CHECK_INT(df_write_csv(v, out, &err), SK_OK);
        CHECK_INT(sk_read_file(out, 1 << 20, &written, &len), SK_OK);
        CHECK_STR(written, "only\n");
        free(written);
    }
    df_free(v);
    /* failures leave the old file alone */
    sk_df *gone = df_wrap(k, "gone", NULL, NULL);
    CHECK_INT(df_write_csv(gone, out, &err), SK_QUERY);
    err_free(err);
    err = NULL;
    df_free(gone);
    CHECK_INT(sk_read_file(out, 1 << 20, &written, &len), SK_OK);
    CHECK_STR(written, "only\n");
    free(written);
    CHECK_INT(df_write_csv(a, "/nonexistent/dir/out.csv", &err), SK_IO);
    if (err)
        CHECK_CONTAINS(err->message, "/nonexistent/dir/out.csv");
    err_free(err);
    unlink(out);
    df_free(a);
    df_free(b);
    sk_kernel_free(k);
}

TEST(alloc_failures)
{
    const char *path = tu_tmpfile("a,b,c\n1,\"x,y\",2.5\n3,z,\n", ".csv");
    int ok = 0, nomem = 0, other = 0;
    for (long n = 1; n < 400 && !ok; n++) {
        sk_kernel *k = new_kernel();
        sk_err *err = NULL;
        df_engine *e = kern_engine(k, &err);
        CHECK(e != NULL);
        long long before = table_count(k);
        sk_df *df = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = df_read_csv(k, path, NULL, &df, &err);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            ok = 1;
            char *r = rows(df, "SELECT * FROM {df}");
            CHECK_STR(r, "1|x,y|2.5;3|z|NULL;");
            free(r);
        } else if (rc == SK_NOMEM) {
            nomem++;
            CHECK(df == NULL);
            CHECK_INT(table_count(k), before);
        } else {
            other++;
            fprintf(stderr, "alloc failure %ld: status %d %s\n", n, rc,
                    err ? err->message : "");
        }
        err_free(err);
        df_free(df);
        sk_kernel_free(k);
    }
    CHECK(ok);
    CHECK(nomem > 5);
    CHECK_INT(other, 0);
    unlink(path);
}

TEST(speed)
{
    /* 1,000,000 rows x 5 columns must import in seconds */
    char path[] = "/tmp/skein-csv-big-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("id,name,price,qty,city\n", f);
    for (int i = 0; i < 1000000; i++)
        fprintf(f, "%d,item %d,%d.%02d,%d,\"City, %d\"\n", i, i, i % 1000, i % 100, i % 7,
                i % 50);
    fclose(f);
    sk_kernel *k = new_kernel();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sk_df *df = NULL;
    sk_err *err = NULL;
    CHECK_INT(df_read_csv(k, path, NULL, &df, &err), SK_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "imported 1,000,000 rows in %.2f s\n", s);
    CHECK(s < 60.0);
    long long n = 0;
    if (df) {
        CHECK_INT(df_count(df, &n, &err), SK_OK);
        CHECK_INT(n, 1000000);
        char *t = df_schema_text(df);
        CHECK_STR(t, "id INTEGER, name TEXT, price REAL, qty INTEGER, city TEXT");
        free(t);
    }
    err_free(err);
    df_free(df);
    sk_kernel_free(k);
    unlink(path);
}

int main(void)
{
    RUN(basic_and_types);
    RUN(quoting_and_line_ends);
    RUN(delimiters);
    RUN(header_guess_and_names);
    RUN(errors);
    RUN(too_many_columns_and_big_fields);
    RUN(round_trip);
    RUN(alloc_failures);
    if (!getenv("SKEIN_CSV_NO_SPEED"))
        RUN(speed);
    return tu_finish();
}
