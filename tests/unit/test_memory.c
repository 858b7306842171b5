/* test_memory.c -- the text memory on real SQLite files, without an
 * embeddings model: save, get, remove, recall ranked by BM25, collections,
 * every ceiling, where the memory lives (SKEIN_MEMORY, the data folder,
 * off), files that are not memories, and questions that try to be FTS5
 * syntax.  The embeddings side is in integration/test_coreplugins.c. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "all.h"
#include "testutil.h"

static char scratch[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void cleanup(void)
{
    if (scratch[0])
        nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *path_in(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ % 4];
    snprintf(p, 512, "%s/%s", scratch, name);
    return p;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static sk_kernel *new_kernel(const char *memory)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    if (memory)
        CHECK(sk_kernel_set_option(k, "memory", memory) == SK_OK);
    return k;
}

/* The recall as a parsed JSON array (caller deletes); NULL on failure. */
static cJSON *recall(sk_kernel *k, const char *coll, const char *q, int limit,
                     double rel, sk_status *st)
{
    char *json = NULL;
    *st = sk_memory_recall(k, coll, q, limit, rel, &json);
    if (*st != SK_OK)
        return NULL;
    cJSON *a = cJSON_Parse(json);
    CHECK(cJSON_IsArray(a));
    sk_free(json);
    return a;
}

static const char *key_at(const cJSON *a, int i)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), "key"));
}

static double rel_at(const cJSON *a, int i)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), "relevance"));
}

static void save_ok(sk_kernel *k, const char *coll, const char *key, const char *text)
{
    sk_status st = sk_memory_save(k, coll, key, text);
    if (st != SK_OK)
        fprintf(stderr, "  save %s: %s\n", key, sk_errmsg(k));
    CHECK_INT(st, SK_OK);
}

static void finances(sk_kernel *k)
{
    save_ok(k, "finances", "b2024", "The budget for 2024 is 100,000 euros.");
    save_ok(k, "finances", "s2023", "Savings from 2023 are 50,000 euros.");
    save_ok(k, "finances", "inv", "I invested in solar panels and index funds.");
    save_ok(k, NULL, "pet", "My cat is called Budget, strangely.");
}

/* Ranked by BM25: the words that tell memories apart, stemmed
 * (investments ~ invested), common words left out; best first. */
TEST(test_recall_ranks)
{
    sk_kernel *k = new_kernel(path_in("rank.db"));
    finances(k);
    sk_status st;
    cJSON *a = recall(k, "finances", "What are my investments?", 1, 0, &st);
    CHECK_INT(st, SK_OK);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "inv");
    CHECK(rel_at(a, 0) > 0 && rel_at(a, 0) < 1);
    cJSON_Delete(a);
    a = recall(k, "finances", "budget by year", 3, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1); /* only one memory says budget */
    CHECK_STR(key_at(a, 0), "b2024");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "text")),
              "The budget for 2024 is 100,000 euros.");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "collection")),
              "finances");
    cJSON_Delete(a);
    /* two match; the one that matches more of the question comes first */
    a = recall(k, "finances", "euros savings", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 2);
    CHECK_STR(key_at(a, 0), "s2023");
    CHECK_STR(key_at(a, 1), "b2024");
    CHECK(rel_at(a, 0) > rel_at(a, 1));
    cJSON_Delete(a);
    /* limit */
    a = recall(k, "finances", "euros savings", 1, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "s2023");
    cJSON_Delete(a);
    /* a relevance floor drops the weaker */
    a = recall(k, "finances", "euros savings", 5, 0, &st);
    double mid = (rel_at(a, 0) + rel_at(a, 1)) / 2;
    cJSON_Delete(a);
    a = recall(k, "finances", "euros savings", 5, mid, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "s2023");
    cJSON_Delete(a);
    a = recall(k, "finances", "euros savings", 5, 1, &st);
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    /* nothing in common: nothing recalled */
    a = recall(k, "finances", "volcanoes", 5, 0, &st);
    CHECK_INT(st, SK_OK);
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    /* a question of common words alone still searches with them */
    a = recall(k, "finances", "what is it?", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "b2024");
    cJSON_Delete(a);
    /* case and accents do not matter */
    save_ok(k, "misc", "cafe", "We met at the Café Crème.");
    a = recall(k, "misc", "CAFE creme", 5, 0, &st);
    CHECK_STR(key_at(a, 0), "cafe");
    cJSON_Delete(a);
    sk_kernel_free(k);
}

/* Collections keep memories apart; NULL is SK's "generic". */
TEST(test_collections)
{
    sk_kernel *k = new_kernel(path_in("coll.db"));
    finances(k);
    sk_status st;
    cJSON *a = recall(k, NULL, "budget", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "pet");
    cJSON_Delete(a);
    a = recall(k, "generic", "budget", 5, 0, &st);
    CHECK_STR(key_at(a, 0), "pet");
    cJSON_Delete(a);
    a = recall(k, "finances", "budget", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    CHECK_STR(key_at(a, 0), "b2024");
    cJSON_Delete(a);
    a = recall(k, "Finances", "budget", 5, 0, &st); /* names are exact */
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    /* the same key in two collections is two memories */
    save_ok(k, "other", "b2024", "Another budget entirely.");
    char *t = NULL;
    CHECK(sk_memory_get(k, "finances", "b2024", &t) == SK_OK);
    CHECK_STR(t, "The budget for 2024 is 100,000 euros.");
    sk_free(t);
    CHECK(sk_memory_get(k, "other", "b2024", &t) == SK_OK);
    CHECK_STR(t, "Another budget entirely.");
    sk_free(t);
    sk_kernel_free(k);
}

/* A key holds one memory: saving again replaces it (and its index);
 * remove forgets it; get says when there is none. */
TEST(test_save_get_remove)
{
    sk_kernel *k = new_kernel(path_in("keys.db"));
    save_ok(k, NULL, "k1", "The first version mentions giraffes.");
    save_ok(k, NULL, "k1", "The second version mentions zebras.");
    sk_status st;
    cJSON *a = recall(k, NULL, "giraffes", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 0); /* the old text is out of the index */
    cJSON_Delete(a);
    a = recall(k, NULL, "zebras", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 1);
    cJSON_Delete(a);
    char *t = NULL;
    CHECK(sk_memory_get(k, NULL, "k1", &t) == SK_OK);
    CHECK_STR(t, "The second version mentions zebras.");
    sk_free(t);
    CHECK(sk_memory_remove(k, NULL, "k1") == SK_OK);
    CHECK(sk_memory_remove(k, NULL, "k1") == SK_OK); /* nothing to forget */
    t = (char *)1;
    CHECK_INT(sk_memory_get(k, NULL, "k1", &t), SK_NOT_FOUND);
    CHECK(t == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "no \"k1\" in collection \"generic\"");
    a = recall(k, NULL, "zebras", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    /* an empty text is a memory too */
    save_ok(k, NULL, "empty", "");
    CHECK(sk_memory_get(k, NULL, "empty", &t) == SK_OK);
    CHECK_STR(t, "");
    sk_free(t);
    sk_kernel_free(k);
}

/* Every bound: a clear error, nothing written. */
TEST(test_ceilings)
{
    sk_kernel *k = new_kernel(path_in("bounds.db"));
    save_ok(k, NULL, "a", "alpha");
    size_t big = ((size_t)1 << 20) + 1;
    char *text = malloc(big + 1);
    memset(text, 'x', big);
    text[big] = '\0';
    CHECK_INT(sk_memory_save(k, NULL, "big", text), SK_TOO_LARGE);
    CHECK_CONTAINS(sk_errmsg(k), "over the 1048576-byte ceiling");
    text[big - 1] = '\0'; /* exactly 1 MiB is allowed */
    save_ok(k, NULL, "big", text);
    text[(size_t)64 << 10] = '\0';
    char *json = NULL;
    CHECK_INT(sk_memory_recall(k, NULL, text, 1, 0, &json), SK_OK); /* 64 KiB */
    sk_free(json);
    text[(size_t)64 << 10] = 'x';
    text[((size_t)64 << 10) + 1] = '\0';
    CHECK_INT(sk_memory_recall(k, NULL, text, 1, 0, &json), SK_TOO_LARGE);
    CHECK(json == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "a question of 65537 bytes");
    free(text);
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 0, 0, &json), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "limit 0 is not from 1 to 100");
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 101, 0, &json), SK_USAGE);
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 100, 0, &json), SK_OK);
    sk_free(json);
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 1, 1.5, &json), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "relevance 1.5 is not from 0 to 1");
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 1, -0.1, &json), SK_USAGE);
    CHECK_INT(sk_memory_recall(k, NULL, "alpha", 1, 0.0 / 0.0, &json), SK_USAGE);
    CHECK_INT(sk_memory_save(k, NULL, "  ", "x"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "the key is empty");
    CHECK_INT(sk_memory_save(k, " ", "k", "x"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "the collection name is empty");
    char longname[300];
    memset(longname, 'c', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_INT(sk_memory_save(k, longname, "k", "x"), SK_USAGE);
    CHECK_INT(sk_memory_recall(k, longname, "x", 1, 0, &json), SK_USAGE);
    char longkey[1100];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    CHECK_INT(sk_memory_save(k, NULL, longkey, "x"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "a key is longer than 1024 bytes");
    CHECK_INT(sk_memory_save(NULL, NULL, "k", "x"), SK_USAGE);
    CHECK_INT(sk_memory_recall(k, NULL, NULL, 1, 0, &json), SK_USAGE);
    sk_kernel_free(k);
    /* many memories of up to 1 MiB: the answer has a ceiling too */
    k = new_kernel("off");
    size_t mib = (size_t)1 << 20;
    char *huge = malloc(mib + 1);
    memset(huge, 'x', mib);
    memcpy(huge + mib - 5, " pick", 5);
    huge[mib] = '\0';
    for (int i = 0; i < 17; i++) {
        char key[8];
        snprintf(key, sizeof key, "h%d", i);
        save_ok(k, NULL, key, huge);
    }
    free(huge);
    CHECK_INT(sk_memory_recall(k, NULL, "pick", 17, 0, &json), SK_TOO_LARGE);
    CHECK_CONTAINS(sk_errmsg(k), "the 17 memories recalled are over 16777216 bytes");
    CHECK(json == NULL);
    CHECK_INT(sk_memory_recall(k, NULL, "pick", 15, 0, &json), SK_OK);
    sk_free(json);
    sk_kernel_free(k);
}

/* A question is words, never FTS5 syntax: quotes, operators, column
 * filters and stray punctuation are searched for as text or dropped. */
TEST(test_questions_are_not_syntax)
{
    sk_kernel *k = new_kernel(path_in("syntax.db"));
    save_ok(k, NULL, "a", "Alpha and omega: the NEAR future.");
    save_ok(k, NULL, "b", "text: a column named text");
    const char *qs[] = {"\"alpha", "alpha\"", "NEAR(alpha omega)", "alpha*", "text:alpha",
                        "alpha OR", "AND", "NOT omega", "^alpha", "{text}: alpha", "(", ")",
                        "alpha\" OR \"b", "'; DROP TABLE memory; --", "-alpha", "+", ":", ""};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        char *json = NULL;
        sk_status st = sk_memory_recall(k, NULL, qs[i], 5, 0, &json);
        if (st != SK_OK)
            fprintf(stderr, "  question %s: %s\n", qs[i], sk_errmsg(k));
        CHECK_INT(st, SK_OK);
        CHECK(json && json[0] == '[');
        sk_free(json);
    }
    sk_status st;
    cJSON *a = recall(k, NULL, "NEAR(alpha omega)", 5, 0, &st);
    CHECK_STR(key_at(a, 0), "a");
    cJSON_Delete(a);
    a = recall(k, NULL, "", 5, 0, &st);
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    char *t = NULL;
    CHECK(sk_memory_get(k, NULL, "b", &t) == SK_OK); /* the table is still there */
    sk_free(t);
    /* what comes back is exact, quotes, newlines and all */
    save_ok(k, NULL, "q", "She said \"hi\"\n\tand left \\ quickly \xe2\x9c\x93");
    a = recall(k, NULL, "quickly", 1, 0, &st);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "text")),
              "She said \"hi\"\n\tand left \\ quickly \xe2\x9c\x93");
    cJSON_Delete(a);
    sk_kernel_free(k);
}

/* On disk, memories outlive the kernel; another kernel sees them. */
TEST(test_persists)
{
    const char *p = path_in("persist/deep/memory.db"); /* folders are made */
    sk_kernel *k = new_kernel(p);
    save_ok(k, "c", "k", "Persistent penguins.");
    sk_kernel_free(k);
    CHECK(exists(p));
    struct stat st;
    CHECK(stat(path_in("persist/deep"), &st) == 0 && (st.st_mode & 0777) == 0700);
    k = new_kernel(p);
    char *t = NULL;
    CHECK(sk_memory_get(k, "c", "k", &t) == SK_OK);
    CHECK_STR(t, "Persistent penguins.");
    sk_free(t);
    sk_kernel_free(k);
    /* the file says what it is */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 0x736b6d6d);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* Where it lives: the option over SKEIN_MEMORY over the data folder;
 * "off" writes nothing anywhere and forgets at the end. */
TEST(test_where_it_lives)
{
    const char *home = path_in("home");
    mkdir(home, 0700);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    unsetenv("XDG_DATA_HOME");
    unsetenv("SKEIN_MEMORY");
    sk_kernel *k = new_kernel(NULL);
    save_ok(k, NULL, "h", "home");
    sk_kernel_free(k);
    CHECK(exists(path_in("home/.local/share/skein/memory.db")));
    setenv("XDG_DATA_HOME", path_in("xdg"), 1);
    k = new_kernel(NULL);
    save_ok(k, NULL, "x", "xdg");
    sk_kernel_free(k);
    CHECK(exists(path_in("xdg/skein/memory.db")));
    setenv("SKEIN_MEMORY", path_in("env.db"), 1);
    k = new_kernel(NULL);
    save_ok(k, NULL, "e", "env");
    sk_kernel_free(k);
    CHECK(exists(path_in("env.db")));
    k = new_kernel(path_in("opt.db")); /* the option over the environment */
    save_ok(k, NULL, "o", "opt");
    char *t = NULL;
    CHECK_INT(sk_memory_get(k, NULL, "e", &t), SK_NOT_FOUND);
    /* changing the option moves to the new file */
    CHECK(sk_kernel_set_option(k, "memory", path_in("env.db")) == SK_OK);
    CHECK(sk_memory_get(k, NULL, "e", &t) == SK_OK);
    sk_free(t);
    sk_kernel_free(k);
    CHECK(exists(path_in("opt.db")));

    /* off: in this process only */
    setenv("SKEIN_MEMORY", "off", 1);
    k = new_kernel(NULL);
    save_ok(k, NULL, "v", "volatile vole");
    CHECK(sk_memory_get(k, NULL, "v", &t) == SK_OK);
    sk_free(t);
    sk_status st;
    cJSON *a = recall(k, NULL, "vole", 1, 0, &st);
    CHECK_STR(key_at(a, 0), "v");
    cJSON_Delete(a);
    sk_kernel_free(k);
    k = new_kernel(NULL);
    CHECK_INT(sk_memory_get(k, NULL, "v", &t), SK_NOT_FOUND);
    sk_kernel_free(k);
    /* the environment overrides the config file's options */
    /* a folder that cannot be made: a file is in the way */
    FILE *f = fopen(path_in("afile"), "w");
    fclose(f);
    char cfgtext[700];
    snprintf(cfgtext, sizeof cfgtext, "{\"options\": {\"memory\": \"%s\"}}",
             path_in("afile/dir/x.db"));
    const char *cfg = tu_tmpfile(cfgtext, ".json");
    setenv("SKEIN_CONFIG", cfg, 1);
    k = new_kernel(NULL);
    save_ok(k, NULL, "v", "still volatile");
    sk_kernel_free(k);
    unsetenv("SKEIN_MEMORY");
    k = new_kernel(NULL); /* now the config file's, which cannot be made */
    CHECK_INT(sk_memory_save(k, NULL, "v", "x"), SK_IO);
    CHECK_CONTAINS(sk_errmsg(k), "afile/dir/x.db: cannot create its folder");
    sk_kernel_free(k);
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    setenv("SKEIN_MEMORY", "off", 1);
    unsetenv("XDG_DATA_HOME");
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
}

/* A file that is someone else's database is refused and left alone. */
TEST(test_foreign_file)
{
    const char *p = path_in("foreign.db");
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE people(name TEXT); INSERT INTO people VALUES ('ada')",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    sk_kernel *k = new_kernel(p);
    CHECK_INT(sk_memory_save(k, NULL, "k", "x"), SK_IO);
    CHECK_CONTAINS(sk_errmsg(k), "not a skein memory file");
    sk_kernel_free(k);
    CHECK(sqlite3_open(p, &db) == SQLITE_OK);
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 1); /* untouched */
    sqlite3_finalize(s);
    sqlite3_close(db);
    /* a file that is not SQLite at all */
    const char *junk = path_in("junk.db");
    FILE *f = fopen(junk, "w");
    fputs("this is not a database, not even close; it is just some text\n", f);
    fclose(f);
    k = new_kernel(junk);
    CHECK_INT(sk_memory_save(k, NULL, "k", "x"), SK_IO);
    CHECK_CONTAINS(sk_errmsg(k), junk);
    sk_kernel_free(k);
}

/* The embeddings model is an option, a config key and SKEIN_EMBEDDINGS;
 * a spec that cannot be one is refused where it is given. */
TEST(test_embeddings_setting)
{
    sk_kernel *k = new_kernel("off");
    CHECK_INT(sk_kernel_set_option(k, "embeddings", "nomodel"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "expected KIND:MODEL");
    CHECK(sk_kernel_set_option(k, "embeddings", "anthropic:claude") == SK_OK);
    CHECK_STR(mem_embeddings(k), "anthropic:claude");
    /* anthropic has no embeddings endpoint: said when it is used */
    CHECK_INT(sk_memory_save(k, NULL, "k", "x"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "the anthropic connector has no embeddings endpoint "
                                 "(kinds with one: openai, openai+FLAVOR, ollama)");
    char *t = NULL;
    CHECK_INT(sk_memory_get(k, NULL, "k", &t), SK_NOT_FOUND); /* nothing saved */
    CHECK(sk_kernel_set_option(k, "embeddings", "nosuch:m") == SK_OK);
    char *json = NULL;
    CHECK_INT(sk_memory_recall(k, NULL, "x", 1, 0, &json), SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(k), "unknown embeddings model kind \"nosuch\"");
    CHECK(sk_kernel_set_option(k, "embeddings", "") == SK_OK);
    CHECK(mem_embeddings(k) == NULL);
    CHECK(sk_memory_recall(k, NULL, "x", 1, 0, &json) == SK_OK); /* BM25 again */
    sk_free(json);
    sk_kernel_free(k);

    const char *cfg = tu_tmpfile("{\"embeddings\": \"ollama:nomic-embed-text\"}", ".json");
    setenv("SKEIN_CONFIG", cfg, 1);
    k = new_kernel(NULL);
    CHECK_STR(mem_embeddings(k), "ollama:nomic-embed-text");
    sk_kernel_free(k);
    setenv("SKEIN_EMBEDDINGS", "openai:text-embedding-3-small", 1);
    k = new_kernel(NULL); /* the environment over the file */
    CHECK_STR(mem_embeddings(k), "openai:text-embedding-3-small");
    sk_kernel_free(k);
    setenv("SKEIN_EMBEDDINGS", "bad", 1);
    k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "SKEIN_EMBEDDINGS: embeddings model \"bad\"");
    sk_kernel_free(k);
    unsetenv("SKEIN_EMBEDDINGS");
    cfg = tu_tmpfile("{\"embeddings\": 42}", ".json");
    setenv("SKEIN_CONFIG", cfg, 1);
    k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_CONFIG);
    CHECK_CONTAINS(sk_errmsg(k), "embeddings: expected a model spec");
    sk_kernel_free(k);
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
}

/* Failing allocations anywhere in a save and a recall end in an error,
 * never a crash or a leak. */
TEST(test_alloc_failures)
{
    for (long n = 1; n < 400; n++) {
        sk_kernel *k = NULL;
        if (sk_kernel_new(&k) != SK_OK) {
            sk_kernel_free(k);
            continue;
        }
        sk_kernel_set_option(k, "quiet", "1");
        sk_kernel_set_option(k, "memory", "off");
        sk_alloc_fail_at(n);
        sk_status a = sk_memory_save(k, "c", "k", "some words to find");
        char *json = NULL;
        sk_status b = sk_memory_recall(k, "c", "words", 3, 0, &json);
        sk_alloc_fail_at(0);
        CHECK(a == SK_OK || a == SK_NOMEM || a == SK_IO);
        CHECK(b == SK_OK || b == SK_NOMEM || b == SK_IO);
        sk_free(json);
        sk_kernel_free(k);
    }
}

int main(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/skein-test-mem-XXXXXX", dir);
    if (!mkdtemp(scratch))
        return 1;
    atexit(cleanup);
    setenv("SKEIN_MEMORY", "off", 1);
    unsetenv("SKEIN_EMBEDDINGS");
    RUN(test_recall_ranks);
    RUN(test_collections);
    RUN(test_save_get_remove);
    RUN(test_ceilings);
    RUN(test_questions_are_not_syntax);
    RUN(test_persists);
    RUN(test_where_it_lives);
    RUN(test_foreign_file);
    RUN(test_embeddings_setting);
    RUN(test_alloc_failures);
    return tu_finish();
}
