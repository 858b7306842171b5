/*
 * history.c -- the call history: every model call a kernel makes, kept in
 * a SQLite file when the option history names one, as `llm logs` keeps
 * its prompts: the prompt and the system prompt as sent, the reply as
 * received, the model, tokens, when and how long, the function, and the
 * conversation the call belongs to.  A full-text index (FTS5) over the
 * prompt, system prompt and reply makes it searchable.
 *
 * What is kept is what crossed the wire: values that redaction replaced
 * stay placeholders.  Before anything is stored, secrets are scrubbed
 * from every field: the values of environment variables that hold keys,
 * tokens or passwords, secret-looking values of the config file, the
 * credentials in model URLs, the Authorization line of a pasted header,
 * and whatever the SECRET redaction rules recognise (API keys, bearer
 * tokens, passwords).  Request headers are never seen here at all.
 *
 * Calls that end in the same turn of the event loop are written in one
 * transaction, committed on the loop's next turn, or at once when no
 * other model request is in flight: a batch of concurrent calls costs
 * one commit per turn, and the write lock is never held while the
 * program waits (for a person typing, say).
 *
 * Like the response cache, the history never fails a call: when it
 * cannot open or write, a notice says so once and the work goes on.  The
 * file is bounded (option history_max_bytes): past it, the oldest tenth
 * of the calls goes, until it fits.  Each text is cut at 1 MiB.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "core/core.h"

extern char **environ;

#define HISTORY_APP_ID 0x736b6873        /* "skhs", in the file's header */
#define HISTORY_FIELD_MAX ((size_t)1 << 20) /* bytes kept of one text */
#define HISTORY_DEFAULT_MAX ((long long)512 << 20)
#define HISTORY_CHECK_EVERY 32           /* puts between size checks */
#define HISTORY_BUSY_MS 30000            /* waited for another writer */
#define HISTORY_MAX_SECRETS 256
#define HISTORY_MIN_SECRET 8             /* shorter values are not scrubbed */

enum { H_OFF, H_AUTO, H_ALWAYS, H_PATH }; /* the option's value */

typedef struct history {
    sk_kernel *k;        /* whose history */
    int mode;
    int on;              /* recording wanted */
    int state;           /* 0: not opened yet, 1: open, -1: unusable */
    int warned;
    char *path;          /* where it is (also when recording is off) */
    sqlite3 *db;
    sqlite3_stmt *put;
    long long max_bytes;
    long puts;           /* since the last size check */
    long pending;        /* written in the open transaction, not committed */
    int commit_queued;   /* commit_task is on the loop */
    char conversation[65];
    rd_rules *scrub;     /* SECRET rules and the literal secrets */
    char *secrets[HISTORY_MAX_SECRETS];
    size_t n_secrets, n_compiled;
} history;

void **kern_history_slot(sk_kernel *k);

/* The state behind the kernel's slot, made on first use; NULL only when
 * memory ran out. */
static history *hist(sk_kernel *k)
{
    void **slot = kern_history_slot(k);
    if (!*slot) {
        history *h = sk_calloc(1, sizeof *h);
        if (!h)
            return NULL;
        h->max_bytes = HISTORY_DEFAULT_MAX;
        h->k = k;
        *slot = h;
    }
    return *slot;
}

static void hist_warn(sk_kernel *k, history *h, const char *why);

/* Commits what is pending.  COMMIT waits for other writers through the
 * busy timeout; if it still fails the transaction is rolled back, so the
 * next record starts afresh, and the caller is told (-1). */
static int hist_commit(history *h)
{
    int rc = 0;
    if (h->db && !sqlite3_get_autocommit(h->db)) {
        for (int tries = 0; tries < 3; tries++) {
            int r = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
            if (r == SQLITE_OK)
                break;
            if ((r & 0xff) != SQLITE_BUSY || tries == 2) {
                hist_warn(h->k, h, sqlite3_errmsg(h->db));
                sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
                rc = -1;
                break;
            }
        }
    }
    h->pending = 0;
    return rc;
}

static void hist_close_db(history *h)
{
    hist_commit(h);
    sqlite3_finalize(h->put);
    sqlite3_close(h->db);
    h->put = NULL;
    h->db = NULL;
    h->state = 0;
}

void history_shutdown(sk_kernel *k)
{
    void **slot = kern_history_slot(k);
    history *h = *slot;
    if (!h)
        return;
    hist_close_db(h);
    rd_rules_free(h->scrub);
    for (size_t i = 0; i < h->n_secrets; i++)
        free(h->secrets[i]);
    free(h->path);
    free(h);
    *slot = NULL;
}

static void hist_warn(sk_kernel *k, history *h, const char *why)
{
    if (h->warned)
        return;
    h->warned = 1;
    kern_notice(k, "history %s: %s; calls are not recorded", h->path ? h->path : "",
                why);
}

/* ---- where it lives ------------------------------------------------------ */

/* The user's history: $SKEIN_HISTORY, else $XDG_DATA_HOME/skein/
 * history.db, else ~/.local/share/skein/history.db.  *off: SKEIN_HISTORY
 * is "off" or "0" (then NULL, unless even_off: the place it would have).
 * Caller frees; NULL when there is no place. */
static char *user_path(int *off, int even_off)
{
    *off = 0;
    const char *env = getenv("SKEIN_HISTORY");
    if (env && *env) {
        if (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)
            *off = 1;
        else
            return sk_strdup(env);
        if (!even_off)
            return NULL;
    }
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg == '/')
        return sk_asprintf("%s/skein/history.db", xdg);
    const char *home = getenv("HOME");
    if (home && *home)
        return sk_asprintf("%s/.local/share/skein/history.db", home);
    return NULL;
}

/* The file whose presence switches the user's history off. */
static char *switch_path(const char *path) { return sk_asprintf("%s.off", path); }

static int exists(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0;
}

sk_status history_set(sk_kernel *k, const char *value)
{
    history *h = hist(k);
    if (!h)
        return kern_fail(k, NULL);
    hist_close_db(h);
    h->warned = 0;
    free(h->path);
    h->path = NULL;
    h->on = 0;
    h->mode = H_OFF;
    if (!value || !*value || strcmp(value, "off") == 0) {
        kern_ok(k);
        return SK_OK;
    }
    if (strcmp(value, "auto") == 0 || strcmp(value, "always") == 0) {
        int off = 0;
        h->mode = strcmp(value, "auto") == 0 ? H_AUTO : H_ALWAYS;
        /* even where the user turned it off, the place it has, for
         * reading it (skein logs) and for --log */
        h->path = user_path(&off, 1);
        if (h->mode == H_ALWAYS) {
            h->on = h->path != NULL;
        } else if (h->path && !off) {
            char *sw = switch_path(h->path);
            h->on = sw && !exists(sw);
            free(sw);
        }
    } else {
        if (!(h->path = sk_strdup(value)))
            return kern_fail(k, NULL);
        h->mode = H_PATH;
        h->on = 1;
    }
    kern_ok(k);
    return SK_OK;
}

sk_status history_set_max(sk_kernel *k, const char *value)
{
    history *h = hist(k);
    if (!h)
        return kern_fail(k, NULL);
    char *end = NULL;
    errno = 0;
    long long v = value ? strtoll(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < 65536 || v > (1LL << 40))
        return kern_failf(k, SK_USAGE, "option history_max_bytes: \"%s\" is not a whole "
                          "number from 65536 to %lld", value ? value : "", 1LL << 40);
    h->max_bytes = v;
    kern_ok(k);
    return SK_OK;
}

/* ---- conversations ------------------------------------------------------- */

/* A new id, sortable by time as ULIDs are: 10 characters of milliseconds
 * and 16 of randomness, in Crockford's base 32. */
static void new_id(char out[27])
{
    static const char digits[] = "0123456789abcdefghjkmnpqrstvwxyz";
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    for (int i = 9; i >= 0; i--) {
        out[i] = digits[ms & 31];
        ms >>= 5;
    }
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = (uint64_t)tv.tv_usec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof r; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r[i] = (unsigned char)x;
        }
    }
    for (int i = 0; i < 16; i++)
        out[10 + i] = digits[r[i] & 31];
    out[26] = '\0';
}

sk_status history_set_conversation(sk_kernel *k, const char *id)
{
    history *h = hist(k);
    if (!h)
        return kern_fail(k, NULL);
    if (!id || !*id) {
        new_id(h->conversation);
        kern_ok(k);
        return SK_OK;
    }
    size_t n = strlen(id);
    for (size_t i = 0; i < n; i++)
        if (!(id[i] == '-' || id[i] == '_' || (id[i] >= '0' && id[i] <= '9') ||
              (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')))
            n = 0;
    if (n == 0 || n >= sizeof h->conversation)
        return kern_failf(k, SK_USAGE, "option conversation: \"%s\" is not an id (1 to 64 "
                          "letters, digits, '-' and '_')", id);
    memcpy(h->conversation, id, n + 1);
    kern_ok(k);
    return SK_OK;
}

const char *sk_kernel_conversation(sk_kernel *k)
{
    history *h = k ? hist(k) : NULL;
    if (!h)
        return NULL;
    if (!h->conversation[0])
        new_id(h->conversation);
    return h->conversation;
}

/* ---- secrets ---------------------------------------------------------------- */

/* Remembers a value never to store (copied); short or repeated ones are
 * skipped. */
static void add_secret(history *h, const char *value, size_t n)
{
    if (n < HISTORY_MIN_SECRET || n > 4096 || h->n_secrets == HISTORY_MAX_SECRETS)
        return;
    for (size_t i = 0; i < h->n_secrets; i++)
        if (strlen(h->secrets[i]) == n && memcmp(h->secrets[i], value, n) == 0)
            return;
    char *c = sk_strndup(value, n);
    if (c)
        h->secrets[h->n_secrets++] = c;
}

/* A name that says its value is a secret: API_KEY, token, password... */
static int secret_name(const char *name, size_t n)
{
    static const char *const words[] = {"key", "token", "secret", "password", "passwd",
                                        "credential", "auth"};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= n; i++)
            if (strncasecmp(name + i, words[w], wl) == 0)
                return 1;
    }
    return 0;
}

/* The credentials in a model spec's URL: the user info's password (and
 * user), and the values of secret query parameters. */
static void spec_secrets(history *h, const char *spec)
{
    const char *host = spec ? strstr(spec, "://") : NULL;
    if (!host)
        return;
    host += 3;
    size_t hn = strcspn(host, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < hn; i++)
        if (host[i] == '@')
            at = host + i;
    if (at) {
        const char *colon = memchr(host, ':', (size_t)(at - host));
        if (colon)
            add_secret(h, colon + 1, (size_t)(at - colon - 1));
    }
    for (const char *q = strchr(host, '?'); q && *q; q += strcspn(q + 1, "&#") + 1) {
        if (*q == '#')
            break;
        const char *name = q + 1;
        size_t nn = strcspn(name, "=&#");
        if (name[nn] == '=' && secret_name(name, nn))
            add_secret(h, name + nn + 1, strcspn(name + nn + 1, "&#"));
    }
}

void kern_history_note_config(sk_kernel *k, const struct cJSON *node)
{
    history *h = hist(k);
    const cJSON *it;
    if (!h || !node)
        return;
    cJSON_ArrayForEach(it, node)
    {
        if (cJSON_IsString(it)) {
            if (it->string && secret_name(it->string, strlen(it->string)))
                add_secret(h, it->valuestring, strlen(it->valuestring));
            spec_secrets(h, it->valuestring);
        } else if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
            kern_history_note_config(k, it);
        }
    }
}

/* The environment's secrets: values of variables named like keys. */
static void env_secrets(history *h)
{
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && secret_name(*e, (size_t)(eq - *e)))
            add_secret(h, eq + 1, strlen(eq + 1));
    }
}

/* The scrubbing rules: the built-in SECRET rules, an Authorization line,
 * and every literal secret known so far (rebuilt when more are known). */
static rd_rules *scrub_rules(history *h)
{
    if (h->scrub && h->n_compiled == h->n_secrets)
        return h->scrub;
    rd_rules_free(h->scrub);
    h->scrub = NULL;
    rd_rules *r = NULL;
    if (rd_rules_secrets(&r) != SK_OK)
        return NULL;
    char *msg = NULL;
    sk_status rc = rd_rules_add(r, "SECRET", "(?i)\\b(?:proxy-)?authorization[\"']?[ \\t]*"
                                "[:=][ \\t]*\\K[^\\r\\n]{1,4096}", &msg);
    free(msg);
    for (size_t i = 0; rc == SK_OK && i < h->n_secrets; i++) {
        /* the value as a literal: every character but letters and digits
         * escaped */
        const char *v = h->secrets[i];
        char *pat = sk_malloc(strlen(v) * 2 + 1);
        if (!pat) {
            rc = SK_NOMEM;
            break;
        }
        char *p = pat;
        for (; *v; v++) {
            unsigned char c = (unsigned char)*v;
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c >= 0x80))
                *p++ = '\\';
            *p++ = (char)c;
        }
        *p = '\0';
        rc = rd_rules_add(r, "SECRET", pat, &msg);
        free(msg);
        msg = NULL;
        free(pat);
    }
    if (rc != SK_OK) {
        rd_rules_free(r);
        return NULL;
    }
    h->scrub = r;
    h->n_compiled = h->n_secrets;
    return r;
}

/* text cut to HISTORY_FIELD_MAX (at a character boundary) and scrubbed of
 * secrets.  Caller frees.  NULL for NULL text, or when it cannot be
 * scrubbed (then nothing of it may be stored: *fail is set). */
static char *clean(history *h, const char *text, int *fail)
{
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *cut = NULL;
    if (n > HISTORY_FIELD_MAX) {
        size_t keep = HISTORY_FIELD_MAX;
        while (keep && ((unsigned char)text[keep] & 0xc0) == 0x80)
            keep--;
        cut = sk_asprintf("%.*s\n[... %zu more bytes not kept]", (int)keep, text, n - keep);
        if (!cut) {
            *fail = 1;
            return NULL;
        }
        text = cut;
    }
    rd_rules *r = scrub_rules(h);
    rd_map *m = r ? rd_map_new() : NULL;
    char *out = NULL;
    if (!m || rd_redact(r, m, text, &out) != SK_OK) {
        free(out);
        out = NULL;
        *fail = 1;
    }
    rd_map_free(m);
    free(cut);
    return out;
}

/* ---- the file --------------------------------------------------------------- */

static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "CREATE TABLE IF NOT EXISTS calls ("
    "  id INTEGER PRIMARY KEY,"
    "  conversation TEXT NOT NULL,"
    "  time TEXT NOT NULL,"              /* ISO 8601 UTC, when it started */
    "  function TEXT,"
    "  model TEXT,"                      /* the spec, credentials scrubbed */
    "  system TEXT,"
    "  prompt TEXT,"
    "  reply TEXT,"                      /* NULL when the call failed */
    "  error TEXT,"
    "  source TEXT NOT NULL,"            /* model, cache, journal */
    "  prompt_tokens INTEGER,"
    "  completion_tokens INTEGER,"
    "  duration_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS calls_conversation ON calls (conversation, id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS calls_fts USING fts5(prompt, system, reply, "
    "  content='calls', content_rowid='id');"
    "CREATE TRIGGER IF NOT EXISTS calls_ai AFTER INSERT ON calls BEGIN"
    "  INSERT INTO calls_fts (rowid, prompt, system, reply)"
    "  VALUES (new.id, new.prompt, new.system, new.reply);"
    "END;"
    "CREATE TRIGGER IF NOT EXISTS calls_ad AFTER DELETE ON calls BEGIN"
    "  INSERT INTO calls_fts (calls_fts, rowid, prompt, system, reply)"
    "  VALUES ('delete', old.id, old.prompt, old.system, old.reply);"
    "END;";

/* Opens path (flags: SQLITE_OPEN_READONLY, or READWRITE|CREATE) and
 * checks that it is a history, or empty.  On failure *why says so
 * (static or sqlite's). */
static int open_file(const char *path, int flags, sqlite3 **out, const char **why)
{
    sqlite3 *db = NULL;
    *out = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        *why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        return -1;
    }
    /* other skein processes write to the same file: wait for them
     * rather than drop a record, however loaded the machine */
    sqlite3_busy_timeout(db, HISTORY_BUSY_MS);
    sqlite3_stmt *st = NULL;
    int app = 0, tables = 0;
    rc = sqlite3_prepare_v2(db, "SELECT (SELECT application_id FROM pragma_application_id),"
                            " (SELECT count(*) FROM sqlite_schema)", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        app = sqlite3_column_int(st, 0);
        tables = sqlite3_column_int(st, 1);
    } else {
        rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        *why = "cannot read it (not a SQLite database?)";
        sqlite3_close(db);
        return -1;
    }
    if (tables > 0 && app != HISTORY_APP_ID) {
        *why = "it is a database but not a skein history";
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* Opens the history for writing on first use; NULL when it is off or
 * unusable (a notice says why, once). */
static history *hist_open(sk_kernel *k)
{
    history *h = hist(k);
    if (!h || !h->on || h->state < 0)
        return NULL;
    if (h->state > 0)
        return h;
    h->state = -1;
    if (kern_make_parent_dirs(h->path) != 0) {
        hist_warn(k, h, strerror(errno));
        return NULL;
    }
    const char *why = NULL;
    if (open_file(h->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &h->db, &why) != 0) {
        hist_warn(k, h, why);
        return NULL;
    }
    chmod(h->path, 0600); /* prompts are private */
    char *setup = sk_asprintf("PRAGMA application_id = %d;%s", HISTORY_APP_ID, schema);
    char *msg = NULL;
    int rc = setup ? sqlite3_exec(h->db, setup, NULL, NULL, &msg) : SQLITE_NOMEM;
    free(setup);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(h->db,
                                "INSERT INTO calls (conversation, time, function, model, "
                                "system, prompt, reply, error, source, prompt_tokens, "
                                "completion_tokens, duration_ms) VALUES (?1, ?2, ?3, ?4, "
                                "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                                -1, &h->put, NULL);
    if (rc != SQLITE_OK) {
        hist_warn(k, h, msg ? msg : sqlite3_errmsg(h->db));
        sqlite3_free(msg);
        hist_close_db(h);
        h->state = -1;
        return NULL;
    }
    env_secrets(h);
    spec_secrets(h, sk_kernel_model(k));
    for (size_t i = 0; i < sk_kernel_model_name_count(k); i++) {
        sk_model_name mn;
        if (sk_kernel_model_name_at(k, i, &mn) == SK_OK)
            spec_secrets(h, mn.spec);
    }
    h->state = 1;
    h->puts = HISTORY_CHECK_EVERY; /* check the size at the first put */
    return h;
}

/* Keeps the file within max_bytes: the oldest tenth of the calls goes
 * until the pages in use fit (a few rounds at most). */
static void keep_bounded(sk_kernel *k, history *h)
{
    for (int round = 0; round < 16; round++) {
        sqlite3_stmt *st = NULL;
        long long used = 0;
        if (sqlite3_prepare_v2(h->db, "SELECT (page_count - freelist_count) * page_size "
                               "FROM pragma_page_count, pragma_freelist_count, "
                               "pragma_page_size", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            used = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (used <= h->max_bytes)
            return;
        char *msg = NULL;
        if (sqlite3_exec(h->db, "DELETE FROM calls WHERE id < (SELECT min(id) + "
                         "(count(*) + 9) / 10 FROM calls)", NULL, NULL, &msg) != SQLITE_OK) {
            hist_warn(k, h, msg ? msg : "cannot remove old calls");
            sqlite3_free(msg);
            return;
        }
        if (sqlite3_changes(h->db) == 0)
            return;
    }
}

static void iso_time(long long ms_ago, char *out, size_t n)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000 - ms_ago;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* The loop's next turn: what this turn recorded is committed. */
static void commit_task(void *ud)
{
    history *h = ud;
    h->commit_queued = 0;
    hist_commit(h);
}

void kern_history_put(sk_kernel *k, const trace_rec *r)
{
    void **slot = kern_history_slot(k);
    if (!*slot || !((history *)*slot)->on)
        return;
    history *h = hist_open(k);
    if (!h)
        return;
    spec_secrets(h, r->model);
    int fail = 0;
    char *model = clean(h, r->model, &fail);
    char *system = clean(h, r->system, &fail);
    char *prompt = clean(h, r->prompt, &fail);
    char *reply = clean(h, r->reply, &fail);
    char *emsg = r->err ? clean(h, r->err->message ? r->err->message
                                                   : sk_strerror(r->err->code), &fail)
                        : NULL;
    if (fail) {
        hist_warn(k, h, "out of memory");
    } else {
        long long ms = r->end_ms > r->start_ms ? r->end_ms - r->start_ms : 0;
        char when[64];
        iso_time(ms, when, sizeof when);
        sqlite3_stmt *st = h->put;
        /* IMMEDIATE: the write lock is taken here, where the busy
         * timeout applies, never upgraded from a read mid-way */
        if (sqlite3_get_autocommit(h->db) &&
            sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            hist_warn(k, h, sqlite3_errmsg(h->db));
        bind_text(st, 1, sk_kernel_conversation(k));
        bind_text(st, 2, when);
        bind_text(st, 3, r->function);
        bind_text(st, 4, model);
        bind_text(st, 5, system);
        bind_text(st, 6, prompt);
        bind_text(st, 7, reply);
        bind_text(st, 8, emsg);
        bind_text(st, 9, r->cache && strcmp(r->cache, "hit") == 0     ? "cache"
                         : r->cache && strcmp(r->cache, "journal") == 0 ? "journal"
                                                                        : "model");
        if (r->resp && r->resp->prompt_tokens >= 0)
            sqlite3_bind_int64(st, 10, r->resp->prompt_tokens);
        else
            sqlite3_bind_null(st, 10);
        if (r->resp && r->resp->completion_tokens >= 0)
            sqlite3_bind_int64(st, 11, r->resp->completion_tokens);
        else
            sqlite3_bind_null(st, 11);
        sqlite3_bind_int64(st, 12, ms);
        if (sqlite3_step(st) != SQLITE_DONE)
            hist_warn(k, h, sqlite3_errmsg(h->db));
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        h->pending++;
        if (++h->puts >= HISTORY_CHECK_EVERY) {
            h->puts = 0;
            keep_bounded(k, h);
        }
        /* nothing else in flight: the program may now wait on something
         * else entirely, so commit; otherwise on the loop's next turn */
        if (kern_model_inflight(k) == 0 || h->pending >= 256 ||
            (!h->commit_queued && loop_defer(k, commit_task, h) != SK_OK))
            hist_commit(h);
        else
            h->commit_queued = 1;
    }
    free(model);
    free(system);
    free(prompt);
    free(reply);
    free(emsg);
}

/* ---- reading ------------------------------------------------------------------ */

/* The words of a search as an FTS5 query: each one quoted (so that no
 * word is read as syntax), all of them required.  Caller frees; NULL
 * when there is no word or no memory. */
static char *fts_query(const char *words)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 16);
    sk_status rc = SK_OK;
    int any = 0;
    for (const char *p = words; rc == SK_OK && *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, " \t\r\n");
        rc = buf_adds(&b, any ? " \"" : "\"");
        for (size_t i = 0; rc == SK_OK && i < n; i++)
            rc = p[i] == '"' ? buf_adds(&b, "\"\"") : buf_addc(&b, p[i]);
        if (rc == SK_OK)
            rc = buf_addc(&b, '"');
        any = 1;
        p += n;
    }
    if (rc != SK_OK || !any) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

sk_status sk_kernel_history(sk_kernel *k, const sk_history_query *q, sk_history_fn fn,
                            void *ud)
{
    if (!k || !fn)
        return SK_USAGE;
    history *h = hist(k);
    if (!h)
        return kern_fail(k, NULL);
    if (!h->path)
        return kern_failf(k, SK_USAGE, "no call history is kept (option history is off)");
    sk_history_query none = {0};
    if (!q)
        q = &none;
    char *match = NULL;
    if (q->search && !(match = fts_query(q->search)))
        return kern_failf(k, SK_USAGE, "search: give one or more words to look for");
    if (!exists(h->path)) {
        free(match);
        kern_ok(k);
        return SK_OK; /* nothing recorded yet */
    }
    sqlite3 *db = h->state > 0 ? h->db : NULL;
    sqlite3 *own = NULL;
    const char *why = NULL;
    if (!db) {
        if (open_file(h->path, SQLITE_OPEN_READONLY, &own, &why) != 0) {
            free(match);
            return kern_failf(k, SK_IO, "history %s: %s", h->path, why);
        }
        db = own;
    }
    sk_buf sql;
    buf_init(&sql, 4096);
    sk_status rc = buf_adds(&sql, "SELECT c.id, c.conversation, c.time, c.function, c.model, "
                                  "c.system, c.prompt, c.reply, c.error, c.source, "
                                  "c.prompt_tokens, c.completion_tokens, c.duration_ms");
    if (rc == SK_OK)
        rc = buf_adds(&sql, match ? ", f.rank FROM calls_fts f JOIN calls c ON c.id = f.rowid "
                                    "WHERE calls_fts MATCH ?1"
                                  : " FROM calls c WHERE 1");
    if (rc == SK_OK && q->conversation)
        rc = buf_adds(&sql, " AND c.conversation = ?2");
    if (rc == SK_OK && q->function)
        rc = buf_adds(&sql, " AND c.function = ?3");
    if (rc == SK_OK && q->model)
        rc = buf_adds(&sql, " AND c.model = ?4");
    if (rc == SK_OK)
        rc = buf_adds(&sql, match ? " ORDER BY f.rank, c.id DESC" : " ORDER BY c.id DESC");
    if (rc == SK_OK)
        rc = buf_printf(&sql, " LIMIT %ld", q->limit > 0 ? q->limit : -1L);
    if (rc == SK_OK && q->oldest_first && !match) {
        char *inner = buf_steal(&sql);
        buf_init(&sql, 4096);
        rc = inner ? buf_printf(&sql, "SELECT * FROM (%s) ORDER BY 1", inner) : SK_NOMEM;
        free(inner);
    }
    sqlite3_stmt *st = NULL;
    int src = rc == SK_OK ? sqlite3_prepare_v2(db, sql.p, -1, &st, NULL) : SQLITE_NOMEM;
    buf_free(&sql);
    if (src != SQLITE_OK) {
        rc = kern_failf(k, SK_IO, "history %s: %s", h->path,
                        src == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        sqlite3_close(own);
        free(match);
        return rc;
    }
    if (match)
        sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    if (q->conversation)
        sqlite3_bind_text(st, 2, q->conversation, -1, SQLITE_STATIC);
    if (q->function)
        sqlite3_bind_text(st, 3, q->function, -1, SQLITE_STATIC);
    if (q->model)
        sqlite3_bind_text(st, 4, q->model, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        sk_history_entry e = {
            .id = sqlite3_column_int64(st, 0),
            .conversation = col(st, 1),
            .time = col(st, 2),
            .function = col(st, 3),
            .model = col(st, 4),
            .system = col(st, 5),
            .prompt = col(st, 6),
            .reply = col(st, 7),
            .error = col(st, 8),
            .source = col(st, 9),
            .prompt_tokens = sqlite3_column_type(st, 10) == SQLITE_NULL
                                 ? -1 : (long)sqlite3_column_int64(st, 10),
            .completion_tokens = sqlite3_column_type(st, 11) == SQLITE_NULL
                                     ? -1 : (long)sqlite3_column_int64(st, 11),
            .duration_ms = sqlite3_column_int64(st, 12),
        };
        if (fn(ud, &e) != 0)
            break;
    }
    rc = SK_OK;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = kern_failf(k, SK_IO, "history %s: %s", h->path, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(own);
    free(match);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

sk_status sk_kernel_history_info(sk_kernel *k, sk_history_info *out)
{
    if (!k || !out)
        return SK_USAGE;
    memset(out, 0, sizeof *out);
    history *h = hist(k);
    if (!h)
        return kern_fail(k, NULL);
    out->path = h->path;
    if (h->mode == H_OFF) {
        out->off = "the option history is off";
    } else if (h->mode == H_AUTO || h->mode == H_ALWAYS) {
        /* what the user's own switches say, whatever this kernel does */
        int off = 0;
        char *user = user_path(&off, 1);
        char *sw = user ? switch_path(user) : NULL;
        if (off)
            out->off = "SKEIN_HISTORY=off";
        else if (sw && exists(sw))
            out->off = "switched off (skein logs off)";
        else if (!user)
            out->off = "no place for it (neither XDG_DATA_HOME nor HOME is set)";
        free(user);
        free(sw);
    }
    if (!h->path || !exists(h->path)) {
        kern_ok(k);
        return SK_OK;
    }
    struct stat stt;
    if (stat(h->path, &stt) == 0)
        out->bytes = (long long)stt.st_size;
    sqlite3 *db = h->state > 0 ? h->db : NULL, *own = NULL;
    const char *why = NULL;
    if (!db) {
        if (open_file(h->path, SQLITE_OPEN_READONLY, &own, &why) != 0)
            return kern_failf(k, SK_IO, "history %s: %s", h->path, why);
        db = own;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT conversation) FROM calls",
                                -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        out->calls = sqlite3_column_int64(st, 0);
        out->conversations = sqlite3_column_int64(st, 1);
    }
    /* an empty file someone made is not an error: there is no table yet */
    sqlite3_finalize(st);
    sqlite3_close(own);
    kern_ok(k);
    return SK_OK;
}

sk_status sk_kernel_history_switch(sk_kernel *k, int on)
{
    if (!k)
        return SK_USAGE;
    int off = 0;
    char *user = user_path(&off, 1);
    if (!user)
        return kern_failf(k, SK_IO, "the call history has no place: neither "
                          "XDG_DATA_HOME nor HOME is set");
    char *sw = switch_path(user);
    sk_status rc = SK_OK;
    if (!sw) {
        rc = kern_fail(k, NULL);
    } else if (on) {
        if (unlink(sw) != 0 && errno != ENOENT)
            rc = kern_failf(k, SK_IO, "%s: %s", sw, strerror(errno));
    } else {
        FILE *f = kern_make_parent_dirs(sw) == 0 ? fopen(sw, "w") : NULL;
        int failed = !f || fputs("While this file is here, skein records no calls "
                                 "(`skein logs on` removes it).\n", f) == EOF;
        int e = errno;
        if (f && fclose(f) != 0 && !failed) {
            failed = 1;
            e = errno;
        }
        if (failed)
            rc = kern_failf(k, SK_IO, "%s: %s", sw, strerror(e));
    }
    free(sw);
    free(user);
    if (rc == SK_OK) {
        kern_ok(k);
        /* this kernel follows at once, as a later one would */
        history *h = hist(k);
        if (h && h->mode == H_AUTO)
            h->on = on && !off;
    }
    return rc;
}
