/*
 * csv.c -- CSV import into the session database, and export.
 *
 * The reader is a streaming state machine over fread chunks: RFC 4180
 * quoting ("" inside quotes, line breaks inside quotes), CRLF, LF or CR
 * line ends, an optional UTF-8 byte order mark.  The file is read twice:
 * the first pass looks at up to SAMPLE_ROWS rows to guess the header and
 * the column types, the second streams every row into one prepared INSERT
 * inside one savepoint, so a failure leaves no table behind.
 *
 * Header guess (header = -1): the first row is a header unless one of its
 * fields is empty or a number, or two of its fields are equal.  A first
 * row of text over data that is all text is taken as a header too, since
 * most files have one.
 *
 * Types: a column is INTEGER when every non-empty sampled value is an
 * integer (no leading zeros: "007" is a code, not 7), REAL when every one
 * is a number, TEXT otherwise.  Empty fields are NULL.  Blank lines are
 * skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "df/df.h"

#define CHUNK (64 * 1024)
#define FIELD_MAX ((size_t)16 << 20)
#define RECORD_MAX ((size_t)256 << 20)
#define COLUMNS_MAX 4096
#define SAMPLE_ROWS 10000

enum { S_START, S_UNQUOTED, S_QUOTED, S_QUOTE_IN_QUOTED };

typedef struct reader {
    FILE *f;
    const char *path;
    char delim;
    unsigned char chunk[CHUNK];
    size_t pos, len;
    int eof;
    long line;          /* physical line of the next byte, 1-based */
    long col;           /* byte column of the next byte, 1-based */
    int prev_cr;
    /* UTF-8 validation across chunk boundaries */
    int u_need;         /* continuation bytes still expected */
    unsigned char u_lo, u_hi; /* range of the next continuation byte */
    /* the record being read: fields back to back, each NUL-terminated */
    sk_buf rec;
    size_t *offs;
    size_t n_fields, cap_fields;
    size_t field_start;
    long rec_line;      /* where the record started */
    int quoted_any;     /* the record had a quoted field */
    sk_err *err;
} reader;

static sk_status rd_fail(reader *r, sk_status code, long line, const char *fmt, ...)
    SK_PRINTF(4, 5);
static sk_status rd_fail(reader *r, sk_status code, long line, const char *fmt, ...)
{
    if (code == SK_NOMEM)
        return SK_NOMEM;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->err = err_new(code, "%s:%ld: %s", r->path, line, msg);
    return code;
}

static sk_status rd_open(reader *r, const char *path, sk_err **err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->line = r->col = 1;
    buf_init(&r->rec, RECORD_MAX);
    r->f = fopen(path, "rb");
    if (!r->f) {
        int e = errno;
        if (err)
            *err = err_new(SK_IO, "%s: %s", path, strerror(e));
        return SK_IO;
    }
    return SK_OK;
}

static void rd_close(reader *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
    buf_free(&r->rec);
    free(r->offs);
    r->offs = NULL;
    err_free(r->err);
    r->err = NULL;
}

/* Back to the start of the file for the second pass. */
static sk_status rd_rewind(reader *r)
{
    if (fseek(r->f, 0, SEEK_SET) != 0) {
        r->err = err_new(SK_IO, "%s: cannot read the file twice: %s", r->path,
                         strerror(errno));
        return SK_IO;
    }
    r->pos = r->len = 0;
    r->eof = 0;
    r->line = r->col = 1;
    r->prev_cr = 0;
    r->u_need = 0;
    return SK_OK;
}

/* Refills the chunk; skips a byte order mark at the start of the file. */
static sk_status fill(reader *r)
{
    int first = ftell(r->f) == 0;
    r->len = fread(r->chunk, 1, CHUNK, r->f);
    r->pos = 0;
    if (r->len == 0) {
        if (ferror(r->f)) {
            r->err = err_new(SK_IO, "%s: %s", r->path, strerror(errno));
            return SK_IO;
        }
        r->eof = 1;
    }
    if (first && r->len >= 3 && r->chunk[0] == 0xEF && r->chunk[1] == 0xBB &&
        r->chunk[2] == 0xBF)
        r->pos = 3;
    return SK_OK;
}

/* Checks one byte of UTF-8 (RFC 3629: no overlongs, no surrogates, no
 * code points past U+10FFFF). */
static int utf8_ok(reader *r, unsigned char c)
{
    if (r->u_need) {
        if (c < r->u_lo || c > r->u_hi)
            return 0;
        r->u_need--;
        r->u_lo = 0x80;
        r->u_hi = 0xBF;
        return 1;
    }
    if (c < 0x80)
        return 1;
    r->u_lo = 0x80;
    r->u_hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        r->u_need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        r->u_need = 2;
        if (c == 0xE0)
            r->u_lo = 0xA0;
        else if (c == 0xED)
            r->u_hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        r->u_need = 3;
        if (c == 0xF0)
            r->u_lo = 0x90;
        else if (c == 0xF4)
            r->u_hi = 0x8F;
    } else {
        return 0;
    }
    return 1;
}

static sk_status add_byte(reader *r, unsigned char c)
{
    if (r->rec.len - r->field_start >= FIELD_MAX)
        return rd_fail(r, SK_DATA, r->rec_line, "a field is larger than %zu MiB",
                       FIELD_MAX >> 20);
    sk_status rc = buf_addc(&r->rec, (char)c);
    if (rc == SK_TOO_LARGE)
        return rd_fail(r, SK_DATA, r->rec_line, "a record is larger than %zu MiB",
                       RECORD_MAX >> 20);
    return rc;
}

static sk_status end_field(reader *r)
{
    if (r->n_fields >= COLUMNS_MAX)
        return rd_fail(r, SK_DATA, r->rec_line, "more than %d columns", COLUMNS_MAX);
    if (r->n_fields == r->cap_fields) {
        size_t nc = r->cap_fields ? r->cap_fields * 2 : 16;
        size_t *p = sk_realloc(r->offs, nc * sizeof *p);
        if (!p)
            return SK_NOMEM;
        r->offs = p;
        r->cap_fields = nc;
    }
    sk_status rc = buf_addc(&r->rec, '\0');
    if (rc == SK_TOO_LARGE)
        return rd_fail(r, SK_DATA, r->rec_line, "a record is larger than %zu MiB",
                       RECORD_MAX >> 20);
    if (rc != SK_OK)
        return rc;
    r->offs[r->n_fields++] = r->field_start;
    r->field_start = r->rec.len;
    return SK_OK;
}

static const char *field(const reader *r, size_t i) { return r->rec.p + r->offs[i]; }

/* Reads the next record.  *got is 0 at the end of the file.  Blank lines
 * are skipped. */
static sk_status next_record(reader *r, int *got)
{
    *got = 0;
    for (;;) {
        buf_reset(&r->rec);
        r->n_fields = 0;
        r->field_start = 0;
        r->quoted_any = 0;
        r->rec_line = r->line;
        int state = S_START, done = 0, any = 0;
        long quote_line = 0;
        sk_status rc = SK_OK;
        while (!done) {
            if (r->pos == r->len) {
                if (r->eof || (rc = fill(r)) != SK_OK || r->eof) {
                    if (rc != SK_OK)
                        return rc;
                    if (state == S_QUOTED)
                        return rd_fail(r, SK_DATA, quote_line,
                                       "unterminated quote: the field opened here "
                                       "never closes");
                    if (r->u_need)
                        return rd_fail(r, SK_DATA, r->line,
                                       "invalid UTF-8 at byte %ld (truncated sequence)",
                                       r->col);
                    if (!any)
                        return SK_OK;
                    if ((rc = end_field(r)) != SK_OK)
                        return rc;
                    done = 1;
                    break;
                }
                continue;
            }
            unsigned char c = r->chunk[r->pos++];
            long line = r->line, col = r->col;
            /* positions: a CR, an LF, or a CRLF pair ends a physical line */
            if (c == '\n') {
                if (!r->prev_cr)
                    r->line++;
                r->col = 1;
            } else if (c == '\r') {
                r->line++;
                r->col = 1;
            } else {
                r->col++;
            }
            int after_cr = r->prev_cr;
            r->prev_cr = c == '\r';
            if (!utf8_ok(r, c))
                return rd_fail(r, SK_DATA, line, "invalid UTF-8 at byte %ld", col);
            if (c == '\n' && after_cr && state == S_START && !any)
                continue; /* the LF of a CRLF that ended the last record */
            any = 1;
            switch (state) {
            case S_START:
                if (c == '"') {
                    state = S_QUOTED;
                    quote_line = line;
                    r->quoted_any = 1;
                } else if (c == (unsigned char)r->delim) {
                    rc = end_field(r);
                } else if (c == '\r' || c == '\n') {
                    rc = end_field(r);
                    done = 1;
                } else {
                    rc = add_byte(r, c);
                    state = S_UNQUOTED;
                }
                break;
            case S_UNQUOTED:
                if (c == (unsigned char)r->delim) {
                    rc = end_field(r);
                    state = S_START;
                } else if (c == '\r' || c == '\n') {
                    rc = end_field(r);
                    done = 1;
                } else if (c == '"') {
                    return rd_fail(r, SK_DATA, line,
                                   "a quote in the middle of an unquoted field (byte %ld); "
                                   "quote the whole field and double the quote",
                                   col);
                } else {
                    rc = add_byte(r, c);
                }
                break;
            case S_QUOTED:
                if (c == '"')
                    state = S_QUOTE_IN_QUOTED;
                else
                    rc = add_byte(r, c);
                break;
            case S_QUOTE_IN_QUOTED:
                if (c == '"') {
                    rc = add_byte(r, c);
                    state = S_QUOTED;
                } else if (c == (unsigned char)r->delim) {
                    rc = end_field(r);
                    state = S_START;
                } else if (c == '\r' || c == '\n') {
                    rc = end_field(r);
                    done = 1;
                } else {
                    return rd_fail(r, SK_DATA, line,
                                   "unexpected character after a closing quote (byte %ld)",
                                   col);
                }
                break;
            }
            if (rc != SK_OK)
                return rc;
        }
        /* a line with nothing on it */
        if (r->n_fields == 1 && !r->quoted_any && field(r, 0)[0] == '\0')
            continue;
        *got = 1;
        return SK_OK;
    }
}

/* The delimiter: the most frequent of , tab ; | outside quotes on the
 * first line of the file (comma when none appears). */
static sk_status guess_delimiter(reader *r)
{
    if (r->len == 0 && !r->eof) {
        sk_status rc = fill(r);
        if (rc != SK_OK)
            return rc;
    }
    static const char cand[] = {',', '\t', ';', '|'};
    size_t count[4] = {0, 0, 0, 0};
    int inq = 0;
    for (size_t i = r->pos; i < r->len; i++) {
        unsigned char c = r->chunk[i];
        if (c == '"')
            inq = !inq;
        else if (!inq && (c == '\n' || c == '\r'))
            break;
        for (int j = 0; !inq && j < 4; j++)
            if (c == (unsigned char)cand[j])
                count[j]++;
    }
    int best = 0;
    for (int j = 1; j < 4; j++)
        if (count[j] > count[best])
            best = j;
    r->delim = cand[best];
    return SK_OK;
}

/* ---- values ------------------------------------------------------------ */

enum { T_NONE, T_INTEGER, T_REAL, T_TEXT };

/* What s is: T_NONE (empty), T_INTEGER, T_REAL or T_TEXT.  Surrounding
 * spaces are allowed around a number. */
static int classify(const char *s)
{
    while (*s == ' ')
        s++;
    if (!*s)
        return T_NONE;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    const char *digits = p;
    while (*p >= '0' && *p <= '9')
        p++;
    size_t nint = (size_t)(p - digits);
    size_t nfrac = 0;
    int real = 0;
    if (*p == '.') {
        real = 1;
        p++;
        const char *f = p;
        while (*p >= '0' && *p <= '9')
            p++;
        nfrac = (size_t)(p - f);
    }
    if (nint + nfrac == 0)
        return T_TEXT;
    if (*p == 'e' || *p == 'E') {
        real = 1;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return T_TEXT;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    while (*p == ' ')
        p++;
    if (*p)
        return T_TEXT;
    if (!real) {
        if (nint > 1 && digits[0] == '0')
            return T_TEXT; /* a code with leading zeros */
        errno = 0;
        (void)strtoll(s, NULL, 10);
        return errno == ERANGE ? T_REAL : T_INTEGER;
    }
    if (nint > 1 && digits[0] == '0')
        return T_TEXT;
    return T_REAL;
}

static int merge_type(int have, int v)
{
    if (v == T_NONE)
        return have;
    if (have == T_NONE)
        return v;
    if (have == T_TEXT || v == T_TEXT)
        return T_TEXT;
    if (have == T_REAL || v == T_REAL)
        return T_REAL;
    return T_INTEGER;
}

static const char *type_name(int t)
{
    return t == T_INTEGER ? "INTEGER" : t == T_REAL ? "REAL" : "TEXT";
}

/* ---- import ------------------------------------------------------------ */

typedef struct layout {
    size_t nc;
    char **names;
    int *types;
    int header;
} layout;

static void layout_free(layout *p)
{
    for (size_t i = 0; p->names && i < p->nc; i++)
        free(p->names[i]);
    free(p->names);
    free(p->types);
}

static int name_taken(char **names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(names[i], s) == 0)
            return 1;
    return 0;
}

/* Column names: the header's, non-empty (c1, c2, ...) and unique without
 * case (name, name_2, ...); c1..cN without a header. */
static sk_status make_names(layout *p, const char *const *hdr)
{
    p->names = sk_calloc(p->nc, sizeof *p->names);
    if (!p->names)
        return SK_NOMEM;
    for (size_t i = 0; i < p->nc; i++) {
        const char *h = hdr ? hdr[i] : "";
        while (*h == ' ')
            h++;
        char *base = *h ? sk_strdup(h) : sk_asprintf("c%zu", i + 1);
        if (!base)
            return SK_NOMEM;
        if (*base && base[strlen(base) - 1] == ' ') {
            size_t n = strlen(base);
            while (n && base[n - 1] == ' ')
                base[--n] = '\0';
        }
        char *name = base;
        for (int k = 2; name_taken(p->names, i, name); k++) {
            if (name != base)
                free(name);
            name = sk_asprintf("%s_%d", base, k);
            if (!name) {
                free(base);
                return SK_NOMEM;
            }
        }
        if (name != base)
            free(base);
        p->names[i] = name;
    }
    return SK_OK;
}

/* Pass one: the header guess and the column types from the first
 * SAMPLE_ROWS rows. */
static sk_status sample(reader *r, const df_csv_opts *o, layout *p)
{
    int got;
    sk_status rc = next_record(r, &got);
    if (rc != SK_OK)
        return rc;
    if (!got)
        return rd_fail(r, SK_DATA, r->line, "the file has no rows");
    p->nc = r->n_fields;
    char **first = sk_calloc(p->nc, sizeof *first);
    p->types = sk_calloc(p->nc, sizeof *p->types);
    int *data_types = sk_calloc(p->nc, sizeof *data_types);
    int *first_types = sk_calloc(p->nc, sizeof *first_types);
    if (!first || !p->types || !data_types || !first_types) {
        rc = SK_NOMEM;
        goto out;
    }
    int first_has_number = 0, first_has_dup = 0, first_has_empty = 0;
    for (size_t i = 0; i < p->nc; i++) {
        first[i] = sk_strdup(field(r, i));
        if (!first[i]) {
            rc = SK_NOMEM;
            goto out;
        }
        first_types[i] = classify(first[i]);
        if (first_types[i] == T_INTEGER || first_types[i] == T_REAL)
            first_has_number = 1;
        if (first_types[i] == T_NONE)
            first_has_empty = 1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(first[i], first[j]) == 0)
                first_has_dup = 1;
    }
    long row_line = 0;
    for (long n = 0; n < SAMPLE_ROWS; n++) {
        rc = next_record(r, &got);
        if (rc != SK_OK || !got)
            break;
        row_line = r->rec_line;
        if (r->n_fields != p->nc) {
            rc = rd_fail(r, SK_DATA, row_line, "row has %zu fields, the %s has %zu",
                         r->n_fields, o->header == 0 ? "first row" : "header", p->nc);
            break;
        }
        for (size_t i = 0; i < p->nc; i++)
            data_types[i] = merge_type(data_types[i], classify(field(r, i)));
    }
    if (rc != SK_OK)
        goto out;
    if (o->header == -1)
        p->header = !(first_has_number || first_has_empty || first_has_dup);
    else
        p->header = o->header != 0;
    for (size_t i = 0; i < p->nc; i++)
        p->types[i] = p->header ? data_types[i] : merge_type(data_types[i], first_types[i]);
    rc = make_names(p, p->header ? (const char *const *)first : NULL);
out:
    for (size_t i = 0; first && i < p->nc; i++)
        free(first[i]);
    free(first);
    free(data_types);
    free(first_types);
    return rc;
}

static int bind_field(sqlite3_stmt *st, int i, int type, const char *v)
{
    int t = classify(v);
    if (t == T_NONE)
        return sqlite3_bind_null(st, i);
    if (t == T_INTEGER && (type == T_INTEGER || type == T_REAL))
        return sqlite3_bind_int64(st, i, strtoll(v, NULL, 10));
    if ((t == T_INTEGER || t == T_REAL) && type == T_REAL)
        return sqlite3_bind_double(st, i, strtod(v, NULL));
    return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static char *create_sql(const char *qtable, const layout *p)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_printf(&b, "CREATE TABLE %s (", qtable);
    for (size_t i = 0; rc == SK_OK && i < p->nc; i++) {
        char *q = df_quote_ident(p->names[i]);
        rc = q ? buf_printf(&b, "%s%s %s", i ? ", " : "", q, type_name(p->types[i]))
               : SK_NOMEM;
        free(q);
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, ')');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static char *insert_sql(const char *qtable, size_t nc)
{
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_printf(&b, "INSERT INTO %s VALUES (", qtable);
    for (size_t i = 0; rc == SK_OK && i < nc; i++)
        rc = buf_adds(&b, i ? ",?" : "?");
    if (rc == SK_OK)
        rc = buf_addc(&b, ')');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Pass two: every row into the new table.  Runs inside the savepoint the
 * caller opened. */
static sk_status import(reader *r, sqlite3 *db, const char *qtable, const layout *p,
                        sk_err **err)
{
    char *create = create_sql(qtable, p);
    char *insert = insert_sql(qtable, p->nc);
    sqlite3_stmt *st = NULL;
    sk_status rc = create && insert ? SK_OK : SK_NOMEM;
    if (rc == SK_OK && sqlite3_exec(db, create, NULL, NULL, NULL) != SQLITE_OK) {
        *err = err_new(SK_DATA, "%s: cannot create the table: %s", r->path,
                       sqlite3_errmsg(db));
        rc = SK_DATA;
    }
    if (rc == SK_OK && sqlite3_prepare_v2(db, insert, -1, &st, NULL) != SQLITE_OK) {
        *err = err_new(SK_QUERY, "%s: %s", r->path, sqlite3_errmsg(db));
        rc = SK_QUERY;
    }
    free(create);
    free(insert);
    if (rc == SK_OK)
        rc = rd_rewind(r);
    int got = 1;
    if (rc == SK_OK && p->header)
        rc = next_record(r, &got);
    while (rc == SK_OK) {
        rc = next_record(r, &got);
        if (rc != SK_OK || !got)
            break;
        if (r->n_fields != p->nc) {
            rc = rd_fail(r, SK_DATA, r->rec_line, "row has %zu fields, the %s has %zu",
                         r->n_fields, p->header ? "header" : "first row", p->nc);
            break;
        }
        for (size_t i = 0; i < p->nc; i++)
            bind_field(st, (int)i + 1, p->types[i], field(r, i));
        int s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE) {
            if (s == SQLITE_NOMEM) {
                rc = SK_NOMEM;
            } else {
                *err = err_new(SK_QUERY, "%s:%ld: %s", r->path, r->rec_line,
                               sqlite3_errmsg(db));
                rc = SK_QUERY;
            }
        }
    }
    sqlite3_finalize(st);
    return rc;
}

sk_status df_read_csv(sk_kernel *k, const char *path, const df_csv_opts *o, sk_df **out,
                      sk_err **err)
{
    *out = NULL;
    sk_err *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    df_csv_opts defaults = {0, -1, NULL};
    if (!o)
        o = &defaults;
    if (!path) {
        *err = err_new(SK_USAGE, "read_csv: no path");
        return SK_USAGE;
    }
    df_engine *e = kern_engine(k, err);
    if (!e)
        return *err ? (*err)->code : SK_NOMEM;
    sqlite3 *db = df_sqlite(e);
    if (!db) {
        *err = err_new(SK_USAGE, "read_csv needs the SQLite engine");
        return SK_USAGE;
    }
    reader r;
    sk_status rc = rd_open(&r, path, err);
    if (rc != SK_OK) {
        rd_close(&r);
        return rc;
    }
    layout p;
    memset(&p, 0, sizeof p);
    char *table = NULL, *qtable = NULL;
    if (o->delimiter)
        r.delim = o->delimiter;
    else
        rc = guess_delimiter(&r);
    if (rc == SK_OK)
        rc = sample(&r, o, &p);
    if (rc == SK_OK) {
        table = o->table ? sk_strdup(o->table) : df_new_name(k);
        qtable = df_quote_ident(table);
        if (!table || !qtable)
            rc = SK_NOMEM;
    }
    int in_savepoint = 0;
    if (rc == SK_OK) {
        if (sqlite3_exec(db, "SAVEPOINT skein_csv_import", NULL, NULL, NULL) != SQLITE_OK) {
            *err = err_new(SK_QUERY, "%s: %s", path, sqlite3_errmsg(db));
            rc = SK_QUERY;
        } else {
            in_savepoint = 1;
        }
    }
    if (rc == SK_OK)
        rc = import(&r, db, qtable, &p, err);
    if (in_savepoint) {
        if (rc == SK_OK &&
            sqlite3_exec(db, "RELEASE skein_csv_import", NULL, NULL, NULL) != SQLITE_OK) {
            *err = err_new(SK_QUERY, "%s: %s", path, sqlite3_errmsg(db));
            rc = SK_QUERY;
        }
        if (rc != SK_OK) {
            sqlite3_exec(db, "ROLLBACK TO skein_csv_import; RELEASE skein_csv_import",
                         NULL, NULL, NULL);
        }
    }
    if (rc == SK_OK) {
        *out = df_wrap(k, table, NULL, NULL);
        if (!*out) {
            char *drop = sk_asprintf("DROP TABLE IF EXISTS %s", qtable);
            if (drop)
                sqlite3_exec(db, drop, NULL, NULL, NULL);
            free(drop);
            rc = SK_NOMEM;
        }
    }
    if (rc != SK_OK && !*err && r.err) {
        *err = r.err;
        r.err = NULL;
    }
    if (rc == SK_NOMEM && !*err)
        *err = err_new(SK_NOMEM, "out of memory");
    rd_close(&r);
    layout_free(&p);
    free(table);
    free(qtable);
    err_free(dummy);
    return rc;
}

/* ---- export ------------------------------------------------------------ */

typedef struct writer {
    FILE *f;
    int failed;
} writer;

static void put_field(writer *w, const char *v)
{
    if (!v)
        return;
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, w->f);
        return;
    }
    fputc('"', w->f);
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            fputc('"', w->f);
        fputc(*p, w->f);
    }
    fputc('"', w->f);
}

static int write_row(void *ud, size_t n, const char *const *names,
                     const char *const *values)
{
    (void)names;
    writer *w = ud;
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', w->f);
        put_field(w, values[i]);
    }
    fputc('\n', w->f);
    w->failed = ferror(w->f);
    return w->failed;
}

sk_status df_write_csv(const sk_df *df, const char *path, sk_err **err)
{
    sk_err *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (!df || !path) {
        *err = err_new(SK_USAGE, "write_csv: no DataFrame or path");
        return SK_USAGE;
    }
    df_engine *e = kern_engine(df->k, err);
    if (!e)
        return *err ? (*err)->code : SK_NOMEM;
    df_col *cols = NULL;
    size_t nc = 0;
    char *msg = NULL;
    sk_status rc = e->vt->columns(e, df->name, &cols, &nc, &msg);
    if (rc != SK_OK) {
        *err = err_new(rc, "%s: %s", df->name, msg ? msg : sk_strerror(rc));
        free(msg);
        err_free(dummy);
        return rc;
    }
    /* The temporary file sits beside the target so that rename is atomic. */
    char *tmp = sk_asprintf("%s.tmp-XXXXXX", path);
    char *q = df_quote_ident(df->name);
    char *sql = q ? sk_asprintf("SELECT * FROM %s", q) : NULL;
    free(q);
    int fd = -1;
    writer w = {NULL, 0};
    if (!tmp || !sql) {
        rc = SK_NOMEM;
        goto out;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        *err = err_new(SK_IO, "%s: %s", path, strerror(errno));
        rc = SK_IO;
        goto out;
    }
    struct stat sb;
    fchmod(fd, stat(path, &sb) == 0 ? (sb.st_mode & 07777) : 0644);
    w.f = fdopen(fd, "w");
    if (!w.f) {
        *err = err_new(SK_IO, "%s: %s", path, strerror(errno));
        close(fd);
        rc = SK_IO;
        goto out;
    }
    for (size_t i = 0; i < nc; i++) {
        if (i)
            fputc(',', w.f);
        put_field(&w, cols[i].name);
    }
    fputc('\n', w.f);
    rc = e->vt->query(e, sql, NULL, 0, write_row, &w, &msg);
    if (rc != SK_OK) {
        *err = rc == SK_NOMEM ? NULL : err_new(rc, "%s: %s", path, msg ? msg : sk_strerror(rc));
    }
    int werr = ferror(w.f) || w.failed;
    int cerr = fclose(w.f);
    if (rc == SK_OK && (werr || cerr != 0)) {
        *err = err_new(SK_IO, "%s: %s", path, strerror(errno ? errno : EIO));
        rc = SK_IO;
    }
    if (rc == SK_OK && rename(tmp, path) != 0) {
        *err = err_new(SK_IO, "%s: %s", path, strerror(errno));
        rc = SK_IO;
    }
    if (rc != SK_OK)
        unlink(tmp);
out:
    if (rc == SK_NOMEM && !*err)
        *err = err_new(SK_NOMEM, "out of memory");
    free(msg);
    free(tmp);
    free(sql);
    df_cols_free(cols, nc);
    if (err == &dummy)
        err_free(dummy);
    return rc;
}
