/*
 * memory.c -- the text memory behind Semantic Kernel's TextMemoryPlugin
 * (recall, save): texts saved under a key in a collection, and found
 * again by a question.
 *
 * One SQLite file holds every collection (a column), with an FTS5 index
 * of the texts.  Without an embeddings model a recall ranks by BM25; with
 * one (option embeddings), by the cosine similarity of the question's
 * vector to each text's, and texts saved before that model was named are
 * embedded when a recall first needs them.  The file is the option
 * memory, else $SKEIN_MEMORY, else $XDG_DATA_HOME/skein/memory.db, else
 * ~/.local/share/skein/memory.db; "off" keeps the memory in this process
 * only (SQLite in memory), so nothing reaches the disk.
 *
 * Every operation is bounded: the text of a memory, a question, a key and
 * a collection name have ceilings, a recall returns at most MEM_MAX_LIMIT
 * memories and compares at most MEM_MAX_SCAN vectors, and embeddings are
 * asked for in batches.  The calls are synchronous for their caller; an
 * embeddings request runs on the kernel's loop, so other work goes on
 * while it waits.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "core/core.h"

#define MEM_APP_ID 0x736b6d6d            /* "skmm", in the file's header */
#define MEM_MAX_TEXT ((size_t)1 << 20)   /* one memory's text */
#define MEM_MAX_QUERY ((size_t)64 << 10) /* a question */
#define MEM_MAX_KEY 1024
#define MEM_MAX_COLLECTION 256
#define MEM_MAX_LIMIT 100                /* memories one recall returns */
#define MEM_MAX_SCAN 100000              /* vectors one recall compares */
#define MEM_MAX_TERMS 64                 /* words of a question BM25 uses */
#define MEM_EMBED_BATCH 32               /* texts per embeddings request */
#define MEM_MAX_RESULT ((size_t)16 << 20) /* the JSON one recall returns */

typedef struct mem_store {
    sqlite3 *db;          /* NULL until first use */
    char *file;           /* what db is: a path, or ":memory:" */
    char *path;           /* option memory: a path, "off", NULL: default */
    char *embed_spec;     /* option embeddings, NULL: none */
    sk_connector *embedder; /* opened from embed_spec on first use */
    int busy;             /* operations under way: an embeddings request
                             runs the loop, and what runs meanwhile must
                             not close what they use */
} mem_store;

static const char SLOT_KEY = 'M';

static void mem_close_db(mem_store *m)
{
    sqlite3_close(m->db);
    m->db = NULL;
    free(m->file);
    m->file = NULL;
}

static void mem_shutdown(sk_kernel *k)
{
    void **slot = kern_slot(k, &SLOT_KEY);
    mem_store *m = slot ? *slot : NULL;
    if (!m)
        return;
    mem_close_db(m);
    conn_close(m->embedder);
    free(m->path);
    free(m->embed_spec);
    free(m);
    *slot = NULL;
}

/* The kernel's memory state, made on first use.  NULL when memory ran
 * out (the kernel error says so). */
static mem_store *mem_state(sk_kernel *k)
{
    void **slot = kern_slot(k, &SLOT_KEY);
    if (!slot) {
        kern_fail(k, NULL);
        return NULL;
    }
    if (!*slot) {
        if (kern_on_free(k, 30, mem_shutdown) != SK_OK)
            return NULL;
        if (!(*slot = sk_calloc(1, sizeof(mem_store)))) {
            kern_fail(k, NULL);
            return NULL;
        }
    }
    return *slot;
}

sk_status mem_set_path(sk_kernel *k, const char *value)
{
    mem_store *m = mem_state(k);
    if (!m)
        return SK_NOMEM;
    if (m->busy)
        return kern_failf(k, SK_USAGE, "option memory: the memory is in use");
    char *copy = *value ? sk_strdup(value) : NULL;
    if (*value && !copy)
        return kern_fail(k, NULL);
    mem_close_db(m); /* the next operation opens the new place */
    free(m->path);
    m->path = copy;
    kern_ok(k);
    return SK_OK;
}

sk_status mem_set_embeddings(sk_kernel *k, const char *spec)
{
    const char *colon = strchr(spec, ':');
    if (*spec && (!colon || colon == spec || !colon[1]))
        return kern_failf(k, SK_USAGE,
                          "embeddings model \"%s\": expected KIND:MODEL, e.g. "
                          "openai:text-embedding-3-small or ollama:nomic-embed-text",
                          spec);
    mem_store *m = mem_state(k);
    if (!m)
        return SK_NOMEM;
    if (m->busy)
        return kern_failf(k, SK_USAGE, "option embeddings: the memory is in use");
    char *copy = *spec ? sk_strdup(spec) : NULL;
    if (*spec && !copy)
        return kern_fail(k, NULL);
    conn_close(m->embedder);
    m->embedder = NULL;
    free(m->embed_spec);
    m->embed_spec = copy;
    kern_ok(k);
    return SK_OK;
}

const char *mem_embeddings(sk_kernel *k)
{
    mem_store *m = mem_state(k);
    return m ? m->embed_spec : NULL;
}

/* Where the memory lives: the option, SKEIN_MEMORY, then the user's data
 * folder.  ":memory:" when it is off or has no place (*homeless set).
 * Caller frees. */
static char *mem_file(const mem_store *m, int *homeless)
{
    *homeless = 0;
    const char *p = m->path;
    if (!p) {
        const char *env = getenv("SKEIN_MEMORY");
        if (env && *env)
            p = env;
    }
    if (p)
        return sk_strdup(strcmp(p, "off") == 0 ? ":memory:" : p);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg == '/')
        return sk_asprintf("%s/skein/memory.db", xdg);
    const char *home = getenv("HOME");
    if (home && *home)
        return sk_asprintf("%s/.local/share/skein/memory.db", home);
    *homeless = 1;
    return sk_strdup(":memory:");
}

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS memory("
    "  id INTEGER PRIMARY KEY,"
    "  collection TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  saved INTEGER NOT NULL,"  /* Unix seconds, the kernel's clock */
    "  model TEXT,"              /* the embeddings model of vector */
    "  vector BLOB,"             /* float32 numbers, or NULL */
    "  UNIQUE(collection, key));"
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
    "  text, content='memory', content_rowid='id',"
    "  tokenize='porter unicode61 remove_diacritics 2');"
    "CREATE TRIGGER IF NOT EXISTS memory_ai AFTER INSERT ON memory BEGIN"
    "  INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER IF NOT EXISTS memory_ad AFTER DELETE ON memory BEGIN"
    "  INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); END;"
    "CREATE TRIGGER IF NOT EXISTS memory_au AFTER UPDATE OF text ON memory BEGIN"
    "  INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END;";

/* The open database, opening it on first use.  NULL with the kernel
 * error set when it cannot be opened or is not a memory file. */
static sqlite3 *mem_db(sk_kernel *k, mem_store *m)
{
    if (m->db)
        return m->db;
    int homeless;
    char *file = mem_file(m, &homeless);
    if (!file) {
        kern_fail(k, NULL);
        return NULL;
    }
    if (homeless)
        kern_notice(k, "memory: neither SKEIN_MEMORY, XDG_DATA_HOME nor HOME "
                       "is set; keeping it in this process only");
    int on_disk = strcmp(file, ":memory:") != 0;
    if (on_disk && kern_make_parent_dirs(file) != 0) {
        kern_failf(k, SK_IO, "memory %s: cannot create its folder: %s", file,
                   strerror(errno));
        free(file);
        return NULL;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(file, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db, 5000);
    /* a file that holds tables of its own and is not a memory file is
     * someone else's: refuse it rather than add tables to it */
    int tables = 0, app = 0;
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK &&
        (rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st,
                                 NULL)) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_OK &&
        (rc = sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &st, NULL)) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        app = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && tables > 0 && app != MEM_APP_ID) {
        kern_failf(k, SK_IO, "memory %s: not a skein memory file (it holds "
                             "other tables); name another with SKEIN_MEMORY",
                   file);
        sqlite3_close(db);
        free(file);
        return NULL;
    }
    if (rc == SQLITE_OK && on_disk)
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    char *setup = rc == SQLITE_OK ? sk_asprintf("PRAGMA application_id = %d;%s",
                                                MEM_APP_ID, SCHEMA)
                                  : NULL;
    if (rc == SQLITE_OK && !setup) {
        sqlite3_close(db);
        free(file);
        kern_fail(k, NULL);
        return NULL;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, setup, NULL, NULL, NULL);
    free(setup);
    if (rc != SQLITE_OK) {
        kern_failf(k, SK_IO, "memory %s: %s", file,
                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        free(file);
        return NULL;
    }
    m->db = db;
    m->file = file;
    return db;
}

static sk_status db_fail(sk_kernel *k, mem_store *m, const char *what)
{
    return kern_failf(k, SK_IO, "memory %s: %s: %s", m->file ? m->file : "",
                      what, sqlite3_errmsg(m->db));
}

/* Checks a collection name (NULL: "generic", SK's default) and a key. */
static sk_status check_names(sk_kernel *k, const char **collection,
                             const char *key, int need_key)
{
    if (!*collection)
        *collection = "generic";
    const char *c = *collection;
    while (isspace((unsigned char)*c))
        c++;
    if (!*c)
        return kern_failf(k, SK_USAGE, "memory: the collection name is empty");
    if (strlen(*collection) > MEM_MAX_COLLECTION)
        return kern_failf(k, SK_USAGE, "memory: a collection name is longer "
                                       "than %d bytes", MEM_MAX_COLLECTION);
    if (!need_key)
        return SK_OK;
    const char *p = key ? key : "";
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return kern_failf(k, SK_USAGE, "memory: the key is empty");
    if (strlen(key) > MEM_MAX_KEY)
        return kern_failf(k, SK_USAGE, "memory: a key is longer than %d bytes",
                          MEM_MAX_KEY);
    return SK_OK;
}

/* ---- embeddings --------------------------------------------------------- */

typedef struct embed_wait {
    int done;
    sk_status st;
    model_resp *resp;
    sk_err *err;
} embed_wait;

static void embed_done(void *ud, sk_status st, model_resp *resp, sk_err *err)
{
    embed_wait *w = ud;
    w->done = 1;
    w->st = st;
    w->resp = resp;
    w->err = err;
}

/* The vectors of n texts from the embeddings model, as n * *dims floats
 * (caller frees *vecs).  Traced as an "embeddings" line.  On failure the
 * kernel error says why. */
static sk_status embed(sk_kernel *k, mem_store *m, const char *const *texts,
                       size_t n, float **vecs, size_t *dims)
{
    *vecs = NULL;
    *dims = 0;
    if (!m->embedder) {
        sk_err *err = NULL;
        m->embedder = conn_open_embed(k, m->embed_spec, &err);
        if (!m->embedder)
            return err ? kern_fail(k, err) : kern_fail(k, NULL);
    }
    sk_connector *c = m->embedder;
    sk_msg *msgs = sk_calloc(n, sizeof *msgs);
    if (!msgs)
        return kern_fail(k, NULL);
    for (size_t i = 0; i < n; i++) {
        msgs[i].role = "user";
        msgs[i].content = (char *)texts[i];
    }
    model_req req = {
        .function = "TextMemoryPlugin",
        .model = c->model,
        .msgs = msgs,
        .n_msgs = n,
        .max_tokens = -1,
        .temperature = NAN,
        .top_p = NAN,
        .presence_penalty = NAN,
        .frequency_penalty = NAN,
    };
    embed_wait w = {0};
    sk_err *err = NULL;
    void *handle = NULL;
    long long t0 = loop_now_ms();
    sk_status st = c->vt->start(c->self, k, &req, NULL, embed_done, &w, &handle, &err);
    free(msgs);
    if (st != SK_OK)
        return err ? kern_fail(k, err) : kern_failf(k, st, "%s", sk_strerror(st));
    m->busy++;
    loop_run_until(k, &w.done);
    m->busy--;
    if (!w.done) { /* every request has a timeout: this is a lost one */
        if (handle && c->vt->cancel)
            c->vt->cancel(c->self, k, handle); /* its done never runs */
        return kern_failf(k, SK_CANCELLED, "embeddings request to %s never completed",
                          c->endpoint);
    }
    char members[160];
    snprintf(members, sizeof members,
             "\"type\":\"embeddings\",\"texts\":%zu,\"latency_ms\":%lld,\"ok\":%s",
             n, loop_now_ms() - t0, w.st == SK_OK ? "true" : "false");
    trace_event(k, members);
    if (w.st != SK_OK) {
        resp_free(w.resp);
        return w.err ? kern_fail(k, w.err) : kern_failf(k, w.st, "%s", sk_strerror(w.st));
    }
    cJSON *arr = cJSON_Parse(w.resp->text);
    resp_free(w.resp);
    st = SK_OK;
    if (!arr)
        st = kern_fail(k, NULL);
    else if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != n)
        st = kern_failf(k, SK_PROTOCOL, "embeddings from %s: %d vectors for %zu texts",
                        c->endpoint, cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0, n);
    size_t d = st == SK_OK ? (size_t)cJSON_GetArraySize(cJSON_GetArrayItem(arr, 0)) : 0;
    float *out = st == SK_OK ? sk_calloc(n * d, sizeof *out) : NULL;
    if (st == SK_OK && !out)
        st = kern_fail(k, NULL);
    size_t i = 0;
    const cJSON *v;
    const cJSON *rows = st == SK_OK ? arr : NULL;
    cJSON_ArrayForEach(v, rows)
    {
        size_t j = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, v) if (j < d) out[i * d + j++] = (float)x->valuedouble;
        i++;
    }
    cJSON_Delete(arr);
    if (st != SK_OK) {
        free(out);
        return st;
    }
    *vecs = out;
    *dims = d;
    return SK_OK;
}

/* ---- save, get, remove -------------------------------------------------- */

/* The open store for an operation, or NULL with the kernel error set. */
static mem_store *mem_open(sk_kernel *k)
{
    mem_store *m = mem_state(k);
    return m && mem_db(k, m) ? m : NULL;
}

static sk_status fail_code(sk_kernel *k)
{
    sk_status st = sk_errcode(k);
    return st != SK_OK ? st : SK_NOMEM;
}

sk_status sk_memory_save(sk_kernel *k, const char *collection, const char *key,
                         const char *text)
{
    if (!k || !key || !text)
        return SK_USAGE;
    sk_status rc = check_names(k, &collection, key, 1);
    if (rc != SK_OK)
        return rc;
    size_t len = strlen(text);
    if (len > MEM_MAX_TEXT)
        return kern_failf(k, SK_TOO_LARGE, "memory: a text of %zu bytes is over "
                                           "the %zu-byte ceiling", len, MEM_MAX_TEXT);
    mem_store *m = mem_open(k);
    if (!m)
        return fail_code(k);
    float *vec = NULL;
    size_t dims = 0;
    if (m->embed_spec && (rc = embed(k, m, &text, 1, &vec, &dims)) != SK_OK)
        return rc; /* nothing saved: a memory without its vector would rank wrong */
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(
        m->db,
        "INSERT INTO memory(collection, key, text, saved, model, vector) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(collection, key) DO UPDATE SET "
        "text = excluded.text, saved = excluded.saved, model = excluded.model, "
        "vector = excluded.vector",
        -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, text, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, kern_now(k));
        if (vec) {
            sqlite3_bind_text(st, 5, m->embed_spec, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 6, vec, (int)(dims * sizeof *vec), SQLITE_STATIC);
        }
        src = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    rc = src == SQLITE_OK ? SK_OK : db_fail(k, m, "save");
    sqlite3_finalize(st);
    free(vec);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

sk_status sk_memory_get(sk_kernel *k, const char *collection, const char *key,
                        char **text)
{
    if (!k || !key || !text)
        return SK_USAGE;
    *text = NULL;
    sk_status rc = check_names(k, &collection, key, 1);
    if (rc != SK_OK)
        return rc;
    mem_store *m = mem_open(k);
    if (!m)
        return fail_code(k);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT text FROM memory WHERE collection = ?1 "
                                  "AND key = ?2", -1, &st, NULL) != SQLITE_OK)
        return db_fail(k, m, "get");
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (!(*text = sk_strdup(t ? t : "")))
            rc = kern_fail(k, NULL);
    } else if (step != SQLITE_DONE) {
        rc = db_fail(k, m, "get");
    }
    sqlite3_finalize(st);
    if (rc == SK_OK && !*text)
        rc = kern_failf(k, SK_NOT_FOUND, "memory: no \"%s\" in collection \"%s\"",
                        key, collection);
    else if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

sk_status sk_memory_remove(sk_kernel *k, const char *collection, const char *key)
{
    if (!k || !key)
        return SK_USAGE;
    sk_status rc = check_names(k, &collection, key, 1);
    if (rc != SK_OK)
        return rc;
    mem_store *m = mem_open(k);
    if (!m)
        return fail_code(k);
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(m->db, "DELETE FROM memory WHERE collection = ?1 "
                                        "AND key = ?2", -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        src = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    rc = src == SQLITE_OK ? SK_OK : db_fail(k, m, "remove");
    sqlite3_finalize(st);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

/* ---- recall ------------------------------------------------------------- */

typedef struct hit {
    sqlite3_int64 id;
    double relevance;
} hit;

/* Keeps the best `limit` hits in hits[0..*n), best first; ties go to the
 * memory saved first (lower id). */
static void keep(hit *hits, size_t *n, size_t limit, sqlite3_int64 id, double rel)
{
    size_t i = *n;
    if (i == limit) {
        const hit *last = &hits[limit - 1];
        if (rel < last->relevance || (rel == last->relevance && id > last->id))
            return;
        i = limit - 1;
    } else {
        (*n)++;
    }
    while (i > 0 && (hits[i - 1].relevance < rel ||
                     (hits[i - 1].relevance == rel && hits[i - 1].id > id))) {
        hits[i] = hits[i - 1];
        i--;
    }
    hits[i].id = id;
    hits[i].relevance = rel;
}

/* English words too common to tell memories apart.  A question made only
 * of them keeps them all. */
static const char *const STOP_WORDS[] = {
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "but", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or",
    "our", "she", "so", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "too", "us", "was", "we",
    "were", "what", "when", "where", "which", "who", "whom", "why", "will",
    "with", "would", "you", "your",
};

static int stop_word(const unsigned char *w, size_t n)
{
    for (size_t i = 0; i < sizeof STOP_WORDS / sizeof *STOP_WORDS; i++) {
        const char *s = STOP_WORDS[i];
        if (strlen(s) != n)
            continue;
        size_t j = 0;
        while (j < n && tolower(w[j]) == s[j])
            j++;
        if (j == n)
            return 1;
    }
    return 0;
}

/* The FTS5 query for a question: each of its words quoted, any of them
 * matching ("capital" OR "france"), common English words left out.
 * Words are runs of letters and digits (any non-ASCII byte counts as a
 * letter); at most MEM_MAX_TERMS.  NULL when it has none; *nomem on
 * allocation failure. */
static char *fts_query(const char *q, int *nomem)
{
    *nomem = 0;
    for (int keep_all = 0; keep_all < 2; keep_all++) {
        sk_buf b;
        buf_init(&b, 0);
        size_t terms = 0;
        const unsigned char *p = (const unsigned char *)q;
        while (*p && terms < MEM_MAX_TERMS) {
            while (*p && !(isalnum(*p) || *p >= 0x80))
                p++;
            const unsigned char *w = p;
            while (*p && (isalnum(*p) || *p >= 0x80))
                p++;
            if (p == w)
                break;
            if (!keep_all && stop_word(w, (size_t)(p - w)))
                continue;
            if ((terms && buf_adds(&b, " OR ") != SK_OK) || buf_addc(&b, '"') != SK_OK ||
                buf_add(&b, (const char *)w, (size_t)(p - w)) != SK_OK ||
                buf_addc(&b, '"') != SK_OK) {
                buf_free(&b);
                *nomem = 1;
                return NULL;
            }
            terms++;
        }
        if (terms) {
            char *s = buf_steal(&b);
            if (!s)
                *nomem = 1;
            return s;
        }
        buf_free(&b);
    }
    return NULL;
}

/* BM25 through the FTS5 index: relevance s / (1 + s) for a BM25 score s
 * (higher is better), so in [0, 1). */
static sk_status rank_bm25(sk_kernel *k, mem_store *m, const char *collection,
                           const char *query, double min_rel, hit *hits,
                           size_t limit, size_t *n)
{
    int nomem;
    char *match = fts_query(query, &nomem);
    if (!match)
        return nomem ? kern_fail(k, NULL) : SK_OK;
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(
        m->db,
        "SELECT memory.id, -bm25(memory_fts) FROM memory_fts JOIN memory "
        "ON memory.id = memory_fts.rowid WHERE memory_fts MATCH ?1 "
        "AND memory.collection = ?2 ORDER BY bm25(memory_fts), memory.id LIMIT ?3",
        -1, &st, NULL);
    if (src != SQLITE_OK) {
        free(match);
        return db_fail(k, m, "recall");
    }
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, collection, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        double s = sqlite3_column_double(st, 1);
        double rel = s > 0 ? s / (1 + s) : 0;
        if (rel >= min_rel)
            keep(hits, n, limit, sqlite3_column_int64(st, 0), rel);
    }
    sk_status rc = src == SQLITE_DONE ? SK_OK : db_fail(k, m, "recall");
    sqlite3_finalize(st);
    free(match);
    return rc;
}

/* Gives every memory of the collection a vector from the current
 * embeddings model (of dims numbers), in batches: those saved before it
 * was named, or under another. */
static sk_status backfill(sk_kernel *k, mem_store *m, const char *collection,
                          size_t dims)
{
    size_t done = 0;
    for (;;) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(m->db,
                               "SELECT id, text FROM memory WHERE collection = ?1 AND "
                               "(vector IS NULL OR model IS NOT ?2 OR length(vector) != ?3) "
                               "ORDER BY id LIMIT ?4",
                               -1, &st, NULL) != SQLITE_OK)
            return db_fail(k, m, "recall");
        sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, m->embed_spec, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)(dims * sizeof(float)));
        sqlite3_bind_int(st, 4, MEM_EMBED_BATCH);
        sqlite3_int64 ids[MEM_EMBED_BATCH];
        char *texts[MEM_EMBED_BATCH];
        size_t n = 0;
        int src;
        sk_status rc = SK_OK;
        while (rc == SK_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 1);
            ids[n] = sqlite3_column_int64(st, 0);
            if (!(texts[n] = sk_strdup(t ? t : "")))
                rc = kern_fail(k, NULL);
            else
                n++;
        }
        if (rc == SK_OK && src != SQLITE_DONE)
            rc = db_fail(k, m, "recall");
        sqlite3_finalize(st);
        float *vecs = NULL;
        size_t got = 0;
        if (rc == SK_OK && n)
            rc = embed(k, m, (const char *const *)texts, n, &vecs, &got);
        if (rc == SK_OK && n && got != dims)
            rc = kern_failf(k, SK_PROTOCOL, "embeddings from %s: %zu numbers per "
                                            "text, then %zu", m->embedder->endpoint,
                            dims, got);
        for (size_t i = 0; rc == SK_OK && i < n; i++) {
            if (sqlite3_prepare_v2(m->db, "UPDATE memory SET model = ?1, vector = ?2 "
                                          "WHERE id = ?3", -1, &st, NULL) != SQLITE_OK) {
                rc = db_fail(k, m, "recall");
                break;
            }
            sqlite3_bind_text(st, 1, m->embed_spec, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 2, vecs + i * dims, (int)(dims * sizeof *vecs),
                              SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, ids[i]);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(k, m, "recall");
            sqlite3_finalize(st);
        }
        free(vecs);
        for (size_t i = 0; i < n; i++)
            free(texts[i]);
        if (rc != SK_OK || n < MEM_EMBED_BATCH)
            return rc;
        if ((done += n) >= MEM_MAX_SCAN)
            return kern_failf(k, SK_TOO_LARGE, "memory: collection \"%s\" holds more "
                                               "than %d memories to compare",
                              collection, MEM_MAX_SCAN);
    }
}

/* Cosine similarity of the question to every memory of the collection. */
static sk_status rank_cosine(sk_kernel *k, mem_store *m, const char *collection,
                             const char *query, double min_rel, hit *hits,
                             size_t limit, size_t *n)
{
    float *q = NULL;
    size_t dims = 0;
    sk_status rc = embed(k, m, &query, 1, &q, &dims);
    if (rc == SK_OK)
        rc = backfill(k, m, collection, dims);
    if (rc != SK_OK) {
        free(q);
        return rc;
    }
    double qn = 0;
    for (size_t i = 0; i < dims; i++)
        qn += (double)q[i] * q[i];
    qn = sqrt(qn);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT id, vector FROM memory WHERE collection = ?1 "
                                  "AND model = ?2 AND length(vector) = ?3 ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        free(q);
        return db_fail(k, m, "recall");
    }
    sqlite3_bind_text(st, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->embed_spec, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(dims * sizeof(float)));
    size_t scanned = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (++scanned > MEM_MAX_SCAN) {
            rc = kern_failf(k, SK_TOO_LARGE, "memory: collection \"%s\" holds more "
                                             "than %d memories to compare",
                            collection, MEM_MAX_SCAN);
            break;
        }
        const float *v = sqlite3_column_blob(st, 1);
        double dot = 0, vn = 0;
        for (size_t i = 0; v && i < dims; i++) {
            float x;
            memcpy(&x, v + i, sizeof x); /* the blob need not be aligned */
            dot += (double)q[i] * x;
            vn += (double)x * x;
        }
        double rel = qn > 0 && vn > 0 ? dot / (qn * sqrt(vn)) : 0;
        if (rel >= min_rel)
            keep(hits, n, limit, sqlite3_column_int64(st, 0), rel);
    }
    if (rc == SK_OK && src != SQLITE_DONE)
        rc = db_fail(k, m, "recall");
    sqlite3_finalize(st);
    free(q);
    return rc;
}

sk_status sk_memory_recall(sk_kernel *k, const char *collection, const char *query,
                           int limit, double min_relevance, char **json)
{
    if (!k || !query || !json)
        return SK_USAGE;
    *json = NULL;
    sk_status rc = check_names(k, &collection, NULL, 0);
    if (rc != SK_OK)
        return rc;
    if (limit < 1 || limit > MEM_MAX_LIMIT)
        return kern_failf(k, SK_USAGE, "memory: limit %d is not from 1 to %d", limit,
                          MEM_MAX_LIMIT);
    if (!(min_relevance >= 0 && min_relevance <= 1))
        return kern_failf(k, SK_USAGE, "memory: relevance %g is not from 0 to 1",
                          min_relevance);
    size_t qlen = strlen(query);
    if (qlen > MEM_MAX_QUERY)
        return kern_failf(k, SK_TOO_LARGE, "memory: a question of %zu bytes is over "
                                           "the %zu-byte ceiling", qlen, MEM_MAX_QUERY);
    mem_store *m = mem_open(k);
    if (!m)
        return fail_code(k);
    hit hits[MEM_MAX_LIMIT];
    size_t n = 0;
    rc = m->embed_spec ? rank_cosine(k, m, collection, query, min_relevance, hits,
                                     (size_t)limit, &n)
                       : rank_bm25(k, m, collection, query, min_relevance, hits,
                                   (size_t)limit, &n);
    if (rc != SK_OK)
        return rc;
    /* [{"collection", "key", "text", "relevance"}, ...], best first */
    sk_buf b;
    buf_init(&b, MEM_MAX_RESULT);
    sk_status br = buf_addc(&b, '[');
    sqlite3_stmt *st = NULL;
    if (n && sqlite3_prepare_v2(m->db, "SELECT key, text FROM memory WHERE id = ?1",
                                -1, &st, NULL) != SQLITE_OK) {
        buf_free(&b);
        return db_fail(k, m, "recall");
    }
    for (size_t i = 0; br == SK_OK && i < n; i++) {
        sqlite3_bind_int64(st, 1, hits[i].id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *key = (const char *)sqlite3_column_text(st, 0);
            const char *text = (const char *)sqlite3_column_text(st, 1);
            int klen = sqlite3_column_bytes(st, 0), tlen = sqlite3_column_bytes(st, 1);
            if (b.len > 1)
                br = buf_addc(&b, ',');
            if (br == SK_OK)
                br = buf_adds(&b, "{\"collection\":");
            if (br == SK_OK)
                br = buf_add_json_str(&b, collection, strlen(collection));
            if (br == SK_OK)
                br = buf_adds(&b, ",\"key\":");
            if (br == SK_OK)
                br = buf_add_json_str(&b, key ? key : "", (size_t)klen);
            if (br == SK_OK)
                br = buf_adds(&b, ",\"text\":");
            if (br == SK_OK)
                br = buf_add_json_str(&b, text ? text : "", (size_t)tlen);
            if (br == SK_OK)
                br = buf_printf(&b, ",\"relevance\":%.6f}", hits[i].relevance);
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (br == SK_OK)
        br = buf_addc(&b, ']');
    if (br != SK_OK) {
        buf_free(&b);
        return br == SK_TOO_LARGE
                   ? kern_failf(k, SK_TOO_LARGE, "memory: the %d memories recalled "
                                                 "are over %zu bytes; ask for fewer",
                                limit, MEM_MAX_RESULT)
                   : kern_fail(k, NULL);
    }
    if (!(*json = buf_steal(&b)))
        return kern_fail(k, NULL);
    kern_ok(k);
    return SK_OK;
}
