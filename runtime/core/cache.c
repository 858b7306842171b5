/*
 * cache.c -- the response cache: SQLite at $SKEIN_CACHE, else
 * $XDG_CACHE_HOME/skein/cache.db, else ~/.cache/skein/cache.db, in WAL
 * mode so that several processes share it.  A cache never fails an
 * operation: when it cannot open or write, a notice says so once and the
 * work goes on without it.  The kernel's option cache = 0 (--no-cache)
 * turns it off for that kernel.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "core/core.h"

#define MAX_CACHED_VALUE (16 << 20)    /* longer cache values are ignored */


/* ---- the response cache ------------------------------------------------ */

typedef struct cache {
    int state;          /* 0: not tried yet, 1: open, -1: off or unusable */
    int warned;         /* a failure notice was already written */
    sqlite3 *db;
    sqlite3_stmt *get, *put;
    char *path;         /* the file, once open */
} cache;

/* The cache's state behind the kernel slot, allocated on first use.
 * Borrowed from the kernel; NULL only when memory ran out. */
static cache *cache_state(sk_kernel *k)
{
    void **slot = kern_cache_slot(k);
    if (!*slot)
        *slot = sk_calloc(1, sizeof(cache));
    return *slot;
}

static void cache_warn(sk_kernel *k, cache *c, const char *what,
                       const char *why)
{
    if (c->warned)
        return;
    c->warned = 1;
    kern_notice(k, "response cache %s: %s; continuing without it", what, why);
}

int kern_make_parent_dirs(const char *path)
{
    char *dir = sk_strdup(path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                free(dir);
                return -1;
            }
            *p = saved;
            if (!saved)
                break;
        }
    }
    free(dir);
    return 0;
}

/* The cache file, or NULL when the cache is off.  Caller frees. */
static char *cache_path(int *off)
{
    *off = 0;
    const char *env = getenv("SKEIN_CACHE");
    if (env && *env) {
        if (strcmp(env, "off") == 0 || strcmp(env, "0") == 0) {
            *off = 1;
            return NULL;
        }
        return sk_strdup(env);
    }
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/')
        return sk_asprintf("%s/skein/cache.db", xdg);
    const char *home = getenv("HOME");
    if (home && *home)
        return sk_asprintf("%s/.cache/skein/cache.db", home);
    return NULL;
}

static void cache_close(cache *c)
{
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->put);
    sqlite3_close(c->db);
    c->get = c->put = NULL;
    c->db = NULL;
}

/* Opens the cache on first use.  Returns the open cache, or NULL when it
 * is off or unusable (a notice says why, once). */
static cache *cache_open(sk_kernel *k)
{
    cache *c = cache_state(k);
    if (!c || c->state < 0)
        return NULL;
    if (c->state > 0)
        return c;
    c->state = -1;
    int off;
    char *path = cache_path(&off);
    if (!path) {
        if (!off)
            cache_warn(k, c, "has no place", "neither SKEIN_CACHE, "
                       "XDG_CACHE_HOME nor HOME is set");
        return NULL;
    }
    if (kern_make_parent_dirs(path) != 0) {
        char *why = sk_asprintf("cannot create the folder for %s: %s", path,
                                strerror(errno));
        cache_warn(k, c, "unavailable", why ? why : path);
        free(why);
        free(path);
        return NULL;
    }
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->db, 5000);
    /* WAL lets one process read while another writes; NORMAL sync keeps a
     * put cheap, and a lost last write only costs a model call. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db,
                          "PRAGMA journal_mode=WAL;"
                          "PRAGMA synchronous=NORMAL;"
                          "CREATE TABLE IF NOT EXISTS cache("
                          "key TEXT PRIMARY KEY, value TEXT, created INTEGER)",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(c->db, "SELECT value FROM cache WHERE key = ?1",
                                -1, &c->get, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO cache"
                                "(key, value, created) VALUES (?1, ?2, ?3)",
                                -1, &c->put, NULL);
    if (rc != SQLITE_OK) {
        char *why = sk_asprintf("%s: %s", path,
                                c->db ? sqlite3_errmsg(c->db)
                                      : sqlite3_errstr(rc));
        cache_warn(k, c, "unavailable", why ? why : path);
        free(why);
        free(path);
        cache_close(c);
        return NULL;
    }
    c->path = path;
    c->state = 1;
    return c;
}

/* On a hit *value is the cached text (caller frees); on a miss, or when
 * the cache is off or failing, *value is NULL and the status still SK_OK:
 * a cache never fails an operation.  SK_NOMEM only when a hit could not
 * be copied. */
sk_status kern_cache_get(sk_kernel *k, const char *key, char **value)
{
    *value = NULL;
    cache *c = key && !kern_cache_off(k) ? cache_open(k) : NULL;
    if (!c)
        return SK_OK;
    sk_status st = SK_OK;
    sqlite3_bind_text(c->get, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(c->get);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(c->get, 0);
        int n = sqlite3_column_bytes(c->get, 0);
        if (v && n <= MAX_CACHED_VALUE) {
            *value = sk_strndup(v, (size_t)n);
            if (!*value)
                st = SK_NOMEM;
        }
    } else if (rc != SQLITE_DONE) {
        cache_warn(k, c, "read failed", sqlite3_errmsg(c->db));
    }
    sqlite3_reset(c->get);
    sqlite3_clear_bindings(c->get);
    return st;
}

/* Stores value under key (both borrowed).  Failures are reported once as
 * a notice and otherwise ignored; always SK_OK. */
sk_status kern_cache_put(sk_kernel *k, const char *key, const char *value)
{
    cache *c = key && value && !kern_cache_off(k) ? cache_open(k) : NULL;
    if (!c)
        return SK_OK;
    sqlite3_bind_text(c->put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(c->put, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(c->put, 3, (sqlite3_int64)time(NULL));
    if (sqlite3_step(c->put) != SQLITE_DONE)
        cache_warn(k, c, "write failed", sqlite3_errmsg(c->db));
    sqlite3_reset(c->put);
    sqlite3_clear_bindings(c->put);
    return SK_OK;
}

/* Removes key's entry, if any (a cached answer that turned out bad). */
void kern_cache_del(sk_kernel *k, const char *key)
{
    cache *c = key ? cache_open(k) : NULL;
    if (!c)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM cache WHERE key = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            cache_warn(k, c, "write failed", sqlite3_errmsg(c->db));
    }
    sqlite3_finalize(st);
}

void cache_shutdown(sk_kernel *k)
{
    void **slot = kern_cache_slot(k);
    cache *c = *slot;
    if (!c)
        return;
    cache_close(c);
    free(c->path);
    free(c);
    *slot = NULL;
}

/* ---- what `skein cache` shows and clears -------------------------------- */

sk_status sk_kernel_cache_info(sk_kernel *k, const char **path, long long *entries,
                               long long *bytes)
{
    if (!k || !path || !entries || !bytes)
        return SK_USAGE;
    *path = NULL;
    *entries = *bytes = 0;
    cache *c = cache_open(k); /* even under --no-cache: this is about it */
    if (!c) {
        kern_ok(k);
        return SK_OK;
    }
    *path = c->path;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT count(*), coalesce(sum(length(key) + "
                           "length(value)), 0) FROM cache", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *entries = sqlite3_column_int64(st, 0);
        *bytes = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    kern_ok(k);
    return SK_OK;
}

sk_status sk_kernel_cache_clear(sk_kernel *k)
{
    if (!k)
        return SK_USAGE;
    cache *c = cache_open(k);
    if (!c) {
        kern_ok(k);
        return SK_OK;
    }
    char *msg = NULL;
    if (sqlite3_exec(c->db, "DELETE FROM cache", NULL, NULL, &msg) != SQLITE_OK) {
        sk_status rc = kern_failf(k, SK_IO, "%s: %s", c->path, msg ? msg : "cannot clear");
        sqlite3_free(msg);
        return rc;
    }
    /* give the space back; a busy reader only delays it */
    sqlite3_exec(c->db, "PRAGMA wal_checkpoint(TRUNCATE); VACUUM", NULL, NULL, NULL);
    kern_ok(k);
    return SK_OK;
}

