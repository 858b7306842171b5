/*
 * nl2sql.c -- English to SQL over DataFrames.
 *
 * The model writes the query; the code decides whether it runs.  A reply
 * is cut down to the SQL in it (extract_sql), the engine prepares that
 * under its read-only policy, and whatever the engine rejects -- a syntax
 * slip, a column that does not exist, a statement that would write --
 * goes back to the model with the engine's own message for a correction,
 * a bounded number of times.  Nothing the model writes runs before the
 * read-only check has passed, so a destructive answer cannot touch the
 * data whatever the model says.
 *
 * Prompts call the table "{df}" and the code substitutes the real name
 * (df_subst), so prompts and cached queries do not depend on generated
 * names.  The code speaks to the engine only through df_engine_vt: the
 * dialect named in prompts comes from it too.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "df/df.h"

/* Generated SQL is cached here, per schema and instruction: its prompts
 * skip the response cache, so a no_cache request really asks again. */
static const sk_invoke_opts own_cache = {.policy = "{\"cache\": false}"};

#define DEFAULT_SAMPLES 5
#define DEFAULT_REPAIRS 3
#define MAX_SAMPLES 100          /* rows of data put in one prompt */
#define MAX_REPAIRS 20
#define MAX_INSTRUCTION ((size_t)64 << 10)
#define MAX_SQL ((size_t)1 << 20)  /* the engine's own statement limit */
#define MAX_EVIDENCE_VALUE 200   /* bytes of one value in a verdict */
#define MAX_QUOTED 200           /* bytes of an instruction in a message */

#define FN_TO_SQL "DataFrame.ToSql"
#define FN_FIX_SQL "DataFrame.FixSql"
#define FN_EXPLAIN "DataFrame.Explain"
#define FN_VERIFY "DataFrame.Verify"

/* ---- errors ------------------------------------------------------------ */

/* The kernel's last error (set by a failed sk_invoke) as a value the
 * caller owns, keeping its function, chain, HTTP status and detail fields
 * (an uncertain model's question must survive the trip).  NULL only when
 * memory ran out. */
static sk_err *kernel_err(sk_kernel *k)
{
    sk_status code = sk_errcode(k);
    if (code == SK_OK)
        code = SK_MODEL; /* a failure with nothing recorded */
    sk_err *e = err_new(code, "%s", sk_errmsg(k));
    char *json = NULL;
    if (!e || sk_error_json(k, &json) != SK_OK)
        return e;
    cJSON *doc = cJSON_Parse(json);
    free(json);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return e;
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(doc, "function");
    if (cJSON_IsString(fn))
        e->function = sk_strdup(fn->valuestring);
    const cJSON *chain = cJSON_GetObjectItemCaseSensitive(doc, "chain"), *it;
    cJSON_ArrayForEach(it, chain) {
        if (cJSON_IsString(it))
            err_push(e, it->valuestring);
    }
    const cJSON *http = cJSON_GetObjectItemCaseSensitive(doc, "http_status");
    if (cJSON_IsNumber(http))
        e->http_status = http->valueint;
    static const char *const known[] = {"kind", "code", "message", "function",
                                        "chain", "http_status"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(doc, known[i]);
    if (doc->child) {
        char *detail = cJSON_PrintUnformatted(doc);
        if (detail) {
            e->detail_json = sk_strdup(detail);
            cJSON_free(detail);
        }
    }
    cJSON_Delete(doc);
    return e;
}

/* Returns code after setting *err to a new error, or SK_NOMEM with *err
 * NULL when even that could not be made. */
static sk_status fail(sk_err **err, sk_status code, const char *fmt, ...) SK_PRINTF(3, 4);
static sk_status fail(sk_err **err, sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    *err = err_newv(code, fmt, ap);
    va_end(ap);
    return *err ? code : SK_NOMEM;
}

/* ---- extracting SQL from a reply -------------------------------------- */

static int word_at(const char *s, const char *w)
{
    size_t n = strlen(w);
    return strncasecmp(s, w, n) == 0 && !(isalnum((unsigned char)s[n]) || s[n] == '_');
}

/* Whether a line (from s to its end, len bytes) begins a query.  WITH is
 * also an English word ("With a window function:"), so it counts only
 * when the line reads like a common table expression. */
static int starts_query(const char *s, size_t len)
{
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    if (word_at(s, "select"))
        return 1;
    if (!word_at(s, "with"))
        return 0;
    const char *rest = s + 4;
    size_t rlen = len - 4;
    while (rlen && isspace((unsigned char)*rest)) {
        rest++;
        rlen--;
    }
    if (!rlen || word_at(rest, "recursive"))
        return 1; /* "WITH" alone on its line, or WITH RECURSIVE */
    for (size_t i = 0; i + 2 <= rlen; i++) {
        if (strncasecmp(rest + i, "as", 2) == 0 &&
            (i == 0 || !(isalnum((unsigned char)rest[i - 1]) || rest[i - 1] == '_')) &&
            (i + 2 == rlen || rest[i + 2] == ' ' || rest[i + 2] == '(' ||
             rest[i + 2] == '\t' || rest[i + 2] == '\r'))
            return 1;
    }
    return 0;
}

/* The SQL in a model's reply: the text of a ```sql fence (else of the
 * first fence), else from the first line that starts a query to the end,
 * else the whole reply -- so that a bare "DROP TABLE t" still reaches the
 * engine and is refused by name rather than reported as missing.  Outer
 * whitespace and trailing semicolons are removed.  Returns "" when there
 * is nothing, NULL when memory ran out; caller frees. */
static char *extract_sql(const char *reply)
{
    const char *start = NULL, *end = NULL;
    const char *first_start = NULL, *first_end = NULL;
    const char *p = reply;
    while ((p = strstr(p, "```")) != NULL) {
        const char *tag = p + 3;
        const char *nl = strchr(tag, '\n');
        if (!nl)
            break; /* a fence with nothing after its tag line */
        const char *body = nl + 1;
        const char *close = strstr(body, "```");
        const char *body_end = close ? close : body + strlen(body);
        while (tag < nl && (*tag == ' ' || *tag == '\t'))
            tag++;
        if (!first_start) {
            first_start = body;
            first_end = body_end;
        }
        if (strncasecmp(tag, "sql", 3) == 0) {
            start = body;
            end = body_end;
            break;
        }
        if (!close)
            break;
        p = close + 3;
    }
    if (!start && first_start) {
        start = first_start;
        end = first_end;
    }
    if (!start) {
        for (const char *line = reply; *line;) {
            const char *eol = strchr(line, '\n');
            size_t len = eol ? (size_t)(eol - line) : strlen(line);
            if (starts_query(line, len)) {
                start = line;
                break;
            }
            if (!eol)
                break;
            line = eol + 1;
        }
        if (!start)
            start = reply;
        end = start + strlen(start);
    }
    while (start < end && isspace((unsigned char)*start))
        start++;
    while (end > start && (isspace((unsigned char)end[-1]) || end[-1] == ';'))
        end--;
    return sk_strndup(start, (size_t)(end - start));
}

/* Whether an engine message is the read-only policy speaking rather than
 * a mistake in the query.  Engines word their refusals "refused: ..."; a
 * prefix, so that a column that happens to be called "refused" in a
 * syntax error is not taken for one. */
static int is_refusal(const char *msg)
{
    if (!msg)
        return 0;
    while (isspace((unsigned char)*msg))
        msg++;
    return strncasecmp(msg, "refused", 7) == 0;
}

/* ---- the write, check, repair loop ------------------------------------ */

typedef struct job {
    sk_kernel *k;
    sk_df *df;
    df_engine *e;
    sk_grant *grant;        /* what the generated SQL's ai()/skein() may
                               call: none unless the user allowed some */
    const char *task;       /* the instruction as the user gave it */
    const char *fix_task;   /* what FixSql is told the query is for */
    const char *schema;
    sk_vars *vars;          /* for the first function */
    const char *first_fn;
    int repairs;
    int verify;             /* run the query and judge its row */
    /* results (owned) */
    char *sql;              /* the {df} form of the accepted query */
    char *real_sql;         /* the same, substituted */
    int attempts;
    int ok;                 /* verify: the first value was 1 */
    char *evidence;         /* verify: "col=value, ..." */
} job;

typedef struct row_seen {
    int rows;
    int verdict;            /* 1, 0, or -1 when the value is neither */
    char *first;            /* the first value as text, or NULL for NULL */
    sk_buf evidence;
    int nomem;
} row_seen;

/* 1 or 0 for a check's first value; -1 when it is neither. */
static int truth(const char *v)
{
    if (!v)
        return -1;
    while (isspace((unsigned char)*v))
        v++;
    if (strcasecmp(v, "true") == 0)
        return 1;
    if (strcasecmp(v, "false") == 0)
        return 0;
    char *endp;
    double d = strtod(v, &endp);
    if (endp == v)
        return -1;
    while (isspace((unsigned char)*endp))
        endp++;
    if (*endp)
        return -1;
    return d == 1.0 ? 1 : d == 0.0 ? 0 : -1;
}

static int on_check_row(void *ud, size_t n, const char *const *names,
                        const char *const *values)
{
    row_seen *r = ud;
    if (r->rows++)
        return 0; /* only the first row is the verdict */
    r->verdict = n ? truth(values[0]) : -1;
    if (n && values[0] && !(r->first = sk_strdup(values[0])))
        r->nomem = 1;
    sk_status st = SK_OK;
    for (size_t i = 0; st == SK_OK && i < n; i++) {
        const char *v = values[i] ? values[i] : "NULL";
        size_t len = strlen(v);
        st = buf_printf(&r->evidence, "%s%s=", i ? ", " : "", names[i]);
        if (st == SK_OK)
            st = buf_add(&r->evidence, v, len > MAX_EVIDENCE_VALUE ? MAX_EVIDENCE_VALUE : len);
        if (st == SK_OK && len > MAX_EVIDENCE_VALUE)
            st = buf_adds(&r->evidence, "...");
    }
    if (st == SK_NOMEM)
        r->nomem = 1;
    return r->nomem;
}

/* Runs a check query and judges its row.  SK_OK with j->ok and
 * j->evidence set; SK_QUERY with *why (caller frees) when the check must
 * be rewritten; SK_NOMEM. */
static sk_status run_check(job *j, const char *real, char **why)
{
    row_seen r = {0};
    buf_init(&r.evidence, (size_t)64 << 10);
    char *msg = NULL;
    sk_status st = j->e->vt->query(j->e, real, j->grant, 1, on_check_row, &r, &msg);
    if (r.nomem || st == SK_NOMEM) {
        free(msg);
        free(r.first);
        buf_free(&r.evidence);
        return SK_NOMEM;
    }
    if (st == SK_TOO_LARGE)
        *why = sk_strdup("the check returned more than one row; it must "
                         "return exactly one row (use an aggregate such as "
                         "count(*) or min())");
    else if (st != SK_OK)
        *why = sk_asprintf("%s", msg ? msg : sk_strerror(st));
    else if (r.rows == 0)
        *why = sk_strdup("the check returned no rows; it must return exactly "
                         "one row (use an aggregate such as count(*) or min())");
    else if (r.verdict < 0)
        *why = sk_asprintf("the check's first column was %s%s%s; it must be 1 "
                           "when the expectation holds and 0 when it does not",
                           r.first ? "\"" : "", r.first ? r.first : "NULL",
                           r.first ? "\"" : "");
    free(msg);
    free(r.first);
    if (st != SK_OK || r.rows == 0 || r.verdict < 0) {
        buf_free(&r.evidence);
        return *why ? SK_QUERY : SK_NOMEM;
    }
    j->ok = r.verdict;
    free(j->evidence);
    j->evidence = buf_steal(&r.evidence);
    return j->evidence ? SK_OK : SK_NOMEM;
}

/* Substitutes and checks sql ({df} form).  SK_OK with *real set (caller
 * frees); SK_QUERY with *why (caller frees) when the model must try again;
 * SK_NOMEM. */
static sk_status accept(job *j, const char *sql, char **real, char **why)
{
    *real = NULL;
    *why = NULL;
    if (!*sql) {
        *why = sk_strdup("the reply held no SQL query");
        return *why ? SK_QUERY : SK_NOMEM;
    }
    if (strlen(sql) > MAX_SQL) {
        *why = sk_asprintf("the query is longer than %zu bytes", MAX_SQL);
        return *why ? SK_QUERY : SK_NOMEM;
    }
    char *r = df_subst(j->df, sql);
    if (!r)
        return SK_NOMEM;
    char *msg = NULL;
    sk_status st = j->e->vt->check(j->e, r, j->grant, &msg);
    if (st == SK_NOMEM) {
        free(msg);
        free(r);
        return SK_NOMEM;
    }
    if (st != SK_OK) {
        *why = msg ? msg : sk_strdup(sk_strerror(st));
        free(r);
        return *why ? SK_QUERY : SK_NOMEM;
    }
    free(msg);
    if (j->verify) {
        st = run_check(j, r, why);
        if (st != SK_OK) {
            free(r);
            return st;
        }
    }
    *real = r;
    return SK_OK;
}

static void trace_repair(sk_kernel *k, const char *task, int attempt,
                         const char *sql, const char *why)
{
    sk_buf b;
    buf_init(&b, (size_t)4 << 20);
    if (buf_adds(&b, "\"type\":\"sql_repair\",\"instruction\":") == SK_OK &&
        buf_add_json_str(&b, task, strlen(task)) == SK_OK &&
        buf_printf(&b, ",\"attempt\":%d,\"sql\":", attempt) == SK_OK &&
        buf_add_json_str(&b, sql, strlen(sql)) == SK_OK &&
        buf_adds(&b, ",\"error\":") == SK_OK &&
        buf_add_json_str(&b, why, strlen(why)) == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

/* The final error once every attempt failed: SK_QUERY, naming a refusal
 * as one, with the last query and the engine's message as detail. */
static sk_status give_up(job *j, const char *last_sql, const char *why, sk_err **err)
{
    const char *s = j->fix_task == j->task ? "query" : "check";
    int plural = j->attempts != 1;
    sk_status rc;
    if (is_refusal(why))
        rc = fail(err, SK_QUERY, "refused: every %s written for \"%.*s\" was "
                  "rejected by the read-only policy (%d attempt%s); last: %s",
                  s, (int)MAX_QUOTED, j->task, j->attempts, plural ? "s" : "", why);
    else
        rc = fail(err, SK_QUERY, "could not write a working %s for \"%.*s\" "
                  "after %d attempt%s: %s", s, (int)MAX_QUOTED, j->task,
                  j->attempts, plural ? "s" : "", why);
    if (!*err)
        return rc;
    char *real = df_subst(j->df, last_sql);
    sk_buf b;
    buf_init(&b, 0);
    const char *shown = real ? real : last_sql;
    if (buf_adds(&b, "{\"sql\":") == SK_OK &&
        buf_add_json_str(&b, shown, strlen(shown)) == SK_OK &&
        buf_adds(&b, ",\"sqlite_error\":") == SK_OK &&
        buf_add_json_str(&b, why, strlen(why)) == SK_OK &&
        buf_printf(&b, ",\"attempts\":%d,\"refused\":%s}", j->attempts,
                   is_refusal(why) ? "true" : "false") == SK_OK)
        (*err)->detail_json = buf_steal(&b);
    buf_free(&b);
    free(real);
    return rc;
}

/* Asks the model for a query, then for corrections, until one is accepted
 * or j->repairs corrections have been asked for.  On SK_OK j->sql and
 * j->real_sql are set; otherwise *err (NULL: out of memory). */
static sk_status run_job(job *j, sk_err **err)
{
    sk_vars *fix = NULL;
    char *sql = NULL, *why = NULL, *reply = NULL;
    sk_status rc;
    for (j->attempts = 1;; j->attempts++) {
        const char *fn = j->attempts == 1 ? j->first_fn : FN_FIX_SQL;
        rc = sk_invoke(j->k, fn, j->attempts == 1 ? j->vars : fix, &own_cache, &reply);
        if (rc != SK_OK) {
            *err = kernel_err(j->k); /* the model's own failure: no repair */
            goto done;
        }
        free(sql);
        free(why);
        why = NULL;
        sql = extract_sql(reply);
        if (!sql) {
            rc = SK_NOMEM;
            goto done;
        }
        char *real = NULL;
        rc = accept(j, sql, &real, &why);
        if (rc == SK_OK) {
            j->sql = sql;
            j->real_sql = real;
            sql = NULL;
            goto done;
        }
        if (rc != SK_QUERY)
            goto done;
        /* a query the model wrote as prose keeps its whole reply, so the
         * correction request shows the model what it said */
        const char *shown = *sql ? sql : reply;
        trace_repair(j->k, j->task, j->attempts, shown, why);
        if (j->attempts > j->repairs) {
            if (!*sql) {
                free(sql);
                sql = sk_strdup(reply);
            }
            rc = sql ? give_up(j, sql, why, err) : SK_NOMEM;
            goto done;
        }
        if (!fix) {
            if (sk_vars_new(&fix) != SK_OK ||
                sk_vars_set(fix, "input", j->fix_task) != SK_OK ||
                sk_vars_set(fix, "dialect", j->e->vt->dialect) != SK_OK ||
                sk_vars_set(fix, "schema", j->schema) != SK_OK) {
                rc = SK_NOMEM;
                goto done;
            }
        }
        if (sk_vars_set(fix, "sql", shown) != SK_OK ||
            sk_vars_set(fix, "error", why) != SK_OK) {
            rc = SK_NOMEM;
            goto done;
        }
        free(reply);
        reply = NULL;
    }
done:
    free(reply);
    free(sql);
    free(why);
    sk_vars_free(fix);
    return rc;
}

static void job_free(job *j)
{
    grant_release(j->grant);
    j->grant = NULL;
    free(j->sql);
    free(j->real_sql);
    free(j->evidence);
    sk_vars_free(j->vars);
}

/* The prompt's word on SQL functions: what the grant lets the query call,
 * with each function's parameters, or "" when it may call none.  Caller
 * frees; NULL when memory ran out. */
static char *functions_section(sk_kernel *k, const sk_grant *g)
{
    size_t n = grant_count(g);
    if (n == 0)
        return sk_strdup("");
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = buf_adds(&b, "The query may call these functions, one text "
                                "value in and one out, and no others:\n");
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        const char *name = grant_name_at(g, i);
        const sk_function *f = reg_find(k, name);
        if (f && strcasecmp(name, "DataFrame.Map") == 0)
            rc = buf_adds(&b, "- ai('instruction', value): applies a plain-words "
                              "instruction to one value\n");
        else if (f)
            rc = buf_printf(&b, "- skein('%s', value): %s\n", name,
                            f->description && *f->description ? f->description
                                                              : "(no description)");
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, '\n');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Sets up what both transform and verify need: the engine, the schema and
 * the first prompt's variables (input, dialect, schema, samples).  *schema
 * is the caller's to free. */
static sk_status job_init(job *j, sk_df *df, const char *task, const df_ai_opts *o,
                          char **schema, sk_err **err)
{
    memset(j, 0, sizeof *j);
    *schema = NULL;
    if (!*task)
        return fail(err, SK_USAGE, "an empty instruction");
    if (strlen(task) > MAX_INSTRUCTION)
        return fail(err, SK_TOO_LARGE, "the instruction is longer than %zu bytes",
                    MAX_INSTRUCTION);
    j->k = df->k;
    j->df = df;
    j->task = task;
    j->fix_task = task;
    j->first_fn = FN_TO_SQL;
    int samples = o && o->samples >= 0 ? o->samples : DEFAULT_SAMPLES;
    if (samples > MAX_SAMPLES)
        samples = MAX_SAMPLES;
    j->repairs = o && o->repairs >= 0 ? o->repairs : DEFAULT_REPAIRS;
    if (j->repairs > MAX_REPAIRS)
        j->repairs = MAX_REPAIRS;
    j->e = kern_engine(df->k, err);
    if (!j->e)
        return *err ? (*err)->code : SK_NOMEM;
    /* the SQL is the model's: it may call the functions the user lists,
     * and by default none */
    if (o && o->functions) {
        sk_status gs = grant_new(df->k, "generated SQL", o->functions, o->n_functions,
                                 &j->grant, err);
        if (gs != SK_OK)
            return *err ? gs : SK_NOMEM;
    } else {
        j->grant = grant_none();
    }
    if (!(*schema = df_schema_text(df)))
        return SK_NOMEM;
    j->schema = *schema;
    char *rows = NULL, *section = NULL;
    if (samples > 0) {
        /* samples = 0 is a privacy choice: no row of data leaves the
         * machine, only the column names and types */
        rows = df_sample_text(df, (size_t)samples);
        if (!rows)
            return SK_NOMEM;
        section = sk_asprintf("Sample rows:\n%s\n", rows);
        free(rows);
        if (!section)
            return SK_NOMEM;
    }
    char *fns = functions_section(j->k, j->grant);
    sk_status st = SK_NOMEM;
    if (fns && sk_vars_new(&j->vars) == SK_OK &&
        sk_vars_set(j->vars, "input", task) == SK_OK &&
        sk_vars_set(j->vars, "dialect", j->e->vt->dialect) == SK_OK &&
        sk_vars_set(j->vars, "schema", *schema) == SK_OK &&
        sk_vars_set(j->vars, "samples", section ? section : "") == SK_OK &&
        sk_vars_set(j->vars, "functions", fns) == SK_OK)
        st = SK_OK;
    free(section);
    free(fns);
    return st;
}

/* ---- transform --------------------------------------------------------- */

static void trace_transform(sk_kernel *k, const char *instruction, const char *sql,
                            int attempts, int cached)
{
    sk_buf b;
    buf_init(&b, (size_t)4 << 20);
    if (buf_adds(&b, "\"type\":\"ai_transform\",\"instruction\":") == SK_OK &&
        buf_add_json_str(&b, instruction, strlen(instruction)) == SK_OK &&
        buf_adds(&b, ",\"sql\":") == SK_OK &&
        buf_add_json_str(&b, sql, strlen(sql)) == SK_OK &&
        buf_printf(&b, ",\"attempts\":%d,\"cached\":%s", attempts,
                   cached ? "true" : "false") == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

/* The cache key holds everything the query depends on except the table's
 * name: the model that writes it, the functions it may call, the dialect,
 * the schema and the request; the same request over the same shape of
 * table gets the same SQL. */
static char *cache_key(const job *j, const char *schema, const char *instruction)
{
    char *model = pipe_model_id(j->k, FN_TO_SQL);
    char *fns = grant_describe(j->grant);
    char *key = model && fns ? sk_asprintf("sql:%s\n%s\n%s\n%s\n%s", model, fns,
                                           j->e->vt->dialect, schema, instruction)
                             : NULL;
    free(model);
    free(fns);
    return key;
}

/* A cached query ({df} form) that still passes the check, substituted;
 * NULL on a miss (or when it no longer passes, or memory ran out: the
 * model is asked then, as if the cache were empty). */
static char *cached_sql(job *j, const char *key, char **df_form)
{
    char *val = NULL;
    *df_form = NULL;
    if (kern_cache_get(j->k, key, &val) != SK_OK || !val)
        return NULL;
    char *real = NULL, *why = NULL;
    if (accept(j, val, &real, &why) != SK_OK) {
        free(why);
        free(val);
        return NULL;
    }
    *df_form = val;
    return real;
}

sk_status df_ai_transform(sk_df *df, const char *instruction, const df_ai_opts *o,
                          sk_df **out, sk_err **err)
{
    if (!err)
        return SK_USAGE;
    *err = NULL;
    if (!out)
        return fail(err, SK_USAGE, "df_ai_transform: no place for the result");
    *out = NULL;
    if (!df || !instruction)
        return fail(err, SK_USAGE, "df_ai_transform: a DataFrame and an instruction are needed");
    job j;
    char *schema = NULL, *key = NULL;
    sk_status rc = job_init(&j, df, instruction, o, &schema, err);
    if (rc != SK_OK)
        goto done;
    int use_cache = !(o && o->no_cache);
    int cached = 0;
    if (!(key = cache_key(&j, schema, instruction))) {
        rc = SK_NOMEM;
        goto done;
    }
    if (use_cache && (j.real_sql = cached_sql(&j, key, &j.sql)) != NULL) {
        cached = 1;
    } else {
        rc = run_job(&j, err);
        if (rc != SK_OK)
            goto done;
    }
    /* The view is the model's SQL.  Its query becomes the instruction's
     * cached answer only once a read of it has run to the end within the
     * limits, and leaves the cache when a read fails (df.c). */
    df_model_sql m = {j.grant, use_cache ? key : NULL, j.sql, cached};
    rc = df_from_query(df->k, j.real_sql, instruction, &m, out, err);
    if (rc != SK_OK)
        goto done;
    trace_transform(df->k, instruction, j.real_sql, cached ? 0 : j.attempts, cached);
done:
    job_free(&j);
    free(schema);
    free(key);
    return rc;
}

/* ---- explain ----------------------------------------------------------- */

static char *trim_dup(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return sk_strndup(s, n);
}

sk_status df_ai_explain(sk_df *df, char **out, sk_err **err)
{
    if (!err)
        return SK_USAGE;
    *err = NULL;
    if (!df || !out)
        return fail(err, SK_USAGE, "df_ai_explain: a DataFrame and a place for the result are needed");
    *out = NULL;
    df_engine *e = kern_engine(df->k, err);
    if (!e)
        return *err ? (*err)->code : SK_NOMEM;
    char *schema = df_schema_text(df);
    char *quoted = df_quote_ident(df->name);
    char *sql = df->sql ? sk_strdup(df->sql)
                        : (quoted ? sk_asprintf("SELECT * FROM %s", quoted) : NULL);
    sk_vars *v = NULL;
    char *reply = NULL;
    sk_status rc = SK_NOMEM;
    if (schema && sql && sk_vars_new(&v) == SK_OK &&
        sk_vars_set(v, "input", sql) == SK_OK &&
        sk_vars_set(v, "dialect", e->vt->dialect) == SK_OK &&
        sk_vars_set(v, "schema", schema) == SK_OK) {
        rc = sk_invoke(df->k, FN_EXPLAIN, v, &own_cache, &reply);
        if (rc != SK_OK)
            *err = kernel_err(df->k);
        else if (!(*out = trim_dup(reply)))
            rc = SK_NOMEM;
    }
    free(reply);
    sk_vars_free(v);
    free(sql);
    free(quoted);
    free(schema);
    return rc;
}

/* ---- verify ------------------------------------------------------------ */

static void trace_verify(sk_kernel *k, const char *expectation, const job *j)
{
    sk_buf b;
    buf_init(&b, (size_t)4 << 20);
    if (buf_adds(&b, "\"type\":\"ai_verify\",\"expectation\":") == SK_OK &&
        buf_add_json_str(&b, expectation, strlen(expectation)) == SK_OK &&
        buf_adds(&b, ",\"sql\":") == SK_OK &&
        buf_add_json_str(&b, j->real_sql, strlen(j->real_sql)) == SK_OK &&
        buf_printf(&b, ",\"attempts\":%d,\"ok\":%s,\"evidence\":", j->attempts,
                   j->ok ? "true" : "false") == SK_OK &&
        buf_add_json_str(&b, j->evidence, strlen(j->evidence)) == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

sk_status df_ai_verify(sk_df *df, const char *expectation, const df_ai_opts *o,
                       df_verdict *v, sk_err **err)
{
    if (!err)
        return SK_USAGE;
    *err = NULL;
    if (!v)
        return fail(err, SK_USAGE, "df_ai_verify: no place for the verdict");
    memset(v, 0, sizeof *v);
    if (!df || !expectation)
        return fail(err, SK_USAGE, "df_ai_verify: a DataFrame and an expectation are needed");
    job j;
    char *schema = NULL, *fix_task = NULL;
    sk_status rc = job_init(&j, df, expectation, o, &schema, err);
    if (rc != SK_OK)
        goto done;
    /* FixSql knows nothing of checks: tell it what the query is for */
    fix_task = sk_asprintf("a check of the expectation \"%s\": one row whose first "
                           "column is 1 when it holds and 0 when it does not, "
                           "then optional columns showing the evidence", expectation);
    if (!fix_task) {
        rc = SK_NOMEM;
        goto done;
    }
    j.fix_task = fix_task;
    j.first_fn = FN_VERIFY;
    j.verify = 1;
    rc = run_job(&j, err);
    if (rc != SK_OK)
        goto done;
    trace_verify(df->k, expectation, &j);
    v->ok = j.ok;
    v->evidence = j.evidence;
    v->sql = j.real_sql;
    j.evidence = NULL;
    j.real_sql = NULL;
done:
    job_free(&j);
    free(schema);
    free(fix_task);
    return rc;
}
