/*
 * journal.c -- a run's journal: every model exchange, recorded as it
 * completes, in a SQLite file the user names (option journal, `--journal
 * FILE`).  Re-running the same work with the same journal serves each
 * exchange it holds instead of calling the model, so a run killed at any
 * point (kill -9 included) resumes without paying twice, and sees the
 * same answers, at any temperature.
 *
 * An exchange is keyed by its exact request (the pipeline's hash of
 * everything sent, the endpoint included) and its occurrence: the n-th
 * identical request in a run gets the n-th recorded answer.  Each answer
 * is its own transaction, committed before the caller sees it (WAL,
 * synchronous NORMAL: a killed process loses nothing committed; a power
 * cut may lose the last few).
 *
 * Unlike the response cache, which is shared across runs, optional and
 * only for deterministic calls, the journal is per run, exact, and asked
 * for: a journal that cannot be opened is an error, not a notice.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "core/core.h"

#define JOURNAL_APP_ID 0x736b6a6e /* "skjn", in the file's header */

typedef struct journal {
    sqlite3 *db;
    sqlite3_stmt *get, *put, *occ;
    char *path;
    int warned;
} journal;

static journal *journal_state(sk_kernel *k) { return *kern_journal_slot(k); }

static void journal_close(journal *j)
{
    if (!j)
        return;
    sqlite3_finalize(j->get);
    sqlite3_finalize(j->put);
    sqlite3_finalize(j->occ);
    sqlite3_close(j->db);
    free(j->path);
    free(j);
}

void journal_shutdown(sk_kernel *k)
{
    void **slot = kern_journal_slot(k);
    journal_close(*slot);
    *slot = NULL;
}

static void journal_warn(sk_kernel *k, journal *j, const char *why)
{
    if (j->warned)
        return;
    j->warned = 1;
    kern_notice(k, "journal %s: cannot record: %s; the rest of this run is not "
                "journaled", j->path, why);
}

static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "CREATE TABLE IF NOT EXISTS exchange ("
    "  key   TEXT NOT NULL,"    /* the exact request */
    "  occ   INTEGER NOT NULL," /* its occurrence in the run, from 0 */
    "  reply TEXT NOT NULL,"    /* what the checks read: text, finish reason, ... */
    "  at    INTEGER NOT NULL," /* when it was recorded, seconds */
    "  PRIMARY KEY (key, occ)) WITHOUT ROWID;"
    "CREATE TEMP TABLE seen (key TEXT PRIMARY KEY, n INTEGER NOT NULL);";

sk_status journal_open(sk_kernel *k, const char *path)
{
    void **slot = kern_journal_slot(k);
    if (*slot)
        return kern_failf(k, SK_USAGE, "option journal: this run already keeps "
                          "the journal %s", ((journal *)*slot)->path);
    if (!path || !*path)
        return kern_failf(k, SK_USAGE, "option journal: give a file name");
    journal *j = sk_calloc(1, sizeof *j);
    if (!j || !(j->path = sk_strdup(path))) {
        free(j);
        return kern_fail(k, NULL);
    }
    const char *what = "cannot open it";
    int rc = sqlite3_open_v2(path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             NULL);
    sqlite3_stmt *st = NULL;
    int app = 0, tables = 0;
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(j->db, 10000);
        /* a file that is some other database is not taken over */
        what = "cannot read it";
        rc = sqlite3_prepare_v2(j->db, "PRAGMA application_id", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            app = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(j->db, "SELECT count(*) FROM sqlite_schema", -1, &st,
                                NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            tables = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_OK && tables > 0 && app != JOURNAL_APP_ID) {
        journal_close(j);
        return kern_failf(k, SK_IO, "%s is a database but not a skein journal; "
                          "give --journal a new file", path);
    }
    char *msg = NULL;
    if (rc == SQLITE_OK) {
        what = "cannot set it up";
        char *setup = sk_asprintf("PRAGMA application_id = %d;%s", JOURNAL_APP_ID,
                                  schema);
        rc = setup ? sqlite3_exec(j->db, setup, NULL, NULL, &msg) : SQLITE_NOMEM;
        free(setup);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(j->db, "SELECT reply FROM exchange WHERE key = ?1 "
                                "AND occ = ?2", -1, &j->get, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(j->db, "INSERT OR REPLACE INTO exchange (key, occ, "
                                "reply, at) VALUES (?1, ?2, ?3, ?4)", -1, &j->put,
                                NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(j->db, "INSERT INTO seen (key, n) VALUES (?1, 0) "
                                "ON CONFLICT (key) DO UPDATE SET n = n + 1 "
                                "RETURNING n", -1, &j->occ, NULL);
    if (rc != SQLITE_OK) {
        sk_status s = kern_failf(k, SK_IO, "journal %s: %s: %s", path, what,
                                 msg ? msg : j->db ? sqlite3_errmsg(j->db)
                                                   : sqlite3_errstr(rc));
        sqlite3_free(msg);
        journal_close(j);
        return s;
    }
    *slot = j;
    kern_ok(k);
    return SK_OK;
}

int kern_journal_on(sk_kernel *k) { return journal_state(k) != NULL; }

long kern_journal_next(sk_kernel *k, const char *key)
{
    journal *j = journal_state(k);
    if (!j || !key)
        return -1;
    long n = -1;
    sqlite3_bind_text(j->occ, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(j->occ) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(j->occ, 0);
    else
        journal_warn(k, j, sqlite3_errmsg(j->db));
    /* RETURNING: the statement runs to its end before it is reset */
    while (sqlite3_step(j->occ) == SQLITE_ROW)
        ;
    sqlite3_reset(j->occ);
    sqlite3_clear_bindings(j->occ);
    return n;
}

sk_status kern_journal_get(sk_kernel *k, const char *key, long occ, char **value)
{
    *value = NULL;
    journal *j = journal_state(k);
    if (!j || !key || occ < 0)
        return SK_OK;
    sqlite3_bind_text(j->get, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(j->get, 2, occ);
    int rc = sqlite3_step(j->get);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(j->get, 0);
        *value = t ? sk_strdup(t) : NULL;
    } else if (rc != SQLITE_DONE) {
        journal_warn(k, j, sqlite3_errmsg(j->db));
    }
    sqlite3_reset(j->get);
    sqlite3_clear_bindings(j->get);
    return SK_OK;
}

void kern_journal_put(sk_kernel *k, const char *key, long occ, const char *value)
{
    journal *j = journal_state(k);
    if (!j || !key || occ < 0 || !value)
        return;
    sqlite3_bind_text(j->put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(j->put, 2, occ);
    sqlite3_bind_text(j->put, 3, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(j->put, 4, (sqlite3_int64)time(NULL));
    if (sqlite3_step(j->put) != SQLITE_DONE)
        journal_warn(k, j, sqlite3_errmsg(j->db));
    sqlite3_reset(j->put);
    sqlite3_clear_bindings(j->put);
}
