/* test_coreplugins.c -- Semantic Kernel's core plugins against the
 * loopback mock server (tests/support/mockserver.c): the
 * ConversationSummaryPlugin's chunking as the server sees it (requests
 * counted, each chunk within SK's 1024 tokens, SK's settings, answers
 * joined in order however they arrive), and the text memory ranked by the
 * embeddings the server returns, on OpenAI's and Ollama's endpoints. */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

#define KEY "sk-test-embeddings-secret-0123456789"

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

typedef struct mock {
    char url[64];
    int pid;
    char log[300];
} mock;

static int mock_start(mock *m, const char *members)
{
    static int seq;
    snprintf(m->log, sizeof m->log, "%s/log-%d.jsonl", scratch, seq++);
    char *text = sk_asprintf("{\"log\":\"%s\",\"idle_exit_ms\":20000%s%s}", m->log,
                             *members ? "," : "", members);
    const char *path = tu_tmpfile(text, ".json");
    free(text);
    if (!path || tu_mock_start(path, m->url, &m->pid) != 0) {
        CHECK(!"mock server started");
        m->pid = 0;
        return -1;
    }
    return 0;
}

static void mock_stop(mock *m) { tu_mock_stop(m->pid); }

/* Every logged request, parsed (caller deletes the array). */
static cJSON *requests(const mock *m)
{
    cJSON *all = cJSON_CreateArray();
    char *s = NULL;
    size_t n;
    if (sk_read_file(m->log, 0, &s, &n) != SK_OK)
        return all;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"))
        cJSON_AddItemToArray(all, cJSON_Parse(line));
    free(s);
    return all;
}

static cJSON *body_of(const cJSON *req)
{
    return cJSON_Parse(cJSON_GetStringValue(cJSON_GetObjectItem(req, "body")));
}

static sk_kernel *new_kernel(const mock *m)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_load_default_skills(k) == SK_OK);
    char spec[128];
    snprintf(spec, sizeof spec, "openai:m@%s/v1", m->url);
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    return k;
}

static char *invoke(sk_kernel *k, const char *fn, const char *input, sk_status *st)
{
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", input);
    char *out = NULL;
    *st = sk_invoke(k, fn, v, NULL, &out);
    if (*st != SK_OK)
        fprintf(stderr, "  %s: %s\n", fn, sk_errmsg(k));
    sk_vars_free(v);
    return out;
}

/* ---- ConversationSummaryPlugin ------------------------------------------ */

#define LINES 240

static char *transcript(void)
{
    sk_buf b;
    buf_init(&b, 0);
    for (int i = 1; i <= LINES; i++)
        buf_printf(&b, "Line %03d: %s said we ship release %d on day %d.\n", i,
                   i % 2 ? "Ada" : "Grace", i, i);
    return buf_steal(&b);
}

static const char HEAD[] = "BEGIN CONTENT TO SUMMARIZE:\n";
static const char TAIL[] = "\n\nEND CONTENT TO SUMMARIZE.";

/* A long transcript becomes SK's paragraphs of at most 1024 tokens (UTF-16
 * units / 4), one request each with SK's settings, run at most 4 at once;
 * the answers are joined with newlines in the transcript's order even
 * when the first comes back last. */
TEST(test_summary_chunks)
{
    mock m;
    if (mock_start(&m, "\"echo\":true,\"responses\":[{\"match\":\"Line 001:\","
                       "\"reply\":\"FIRST PART\",\"delay_ms\":300}]") != 0)
        return;
    sk_kernel *k = new_kernel(&m);
    char *text = transcript();
    sk_status st;
    char *out = invoke(k, "ConversationSummaryPlugin.SummarizeConversation", text, &st);
    CHECK_INT(st, SK_OK);
    cJSON *reqs = requests(&m);
    int n = cJSON_GetArraySize(reqs);
    /* 240 lines of about 50 characters, 3066 tokens: SK's chunker halves
     * it at newlines into lines of at most 1024 tokens (4 of about 766),
     * and no two of those fit one paragraph */
    CHECK_INT(n, 4);
    int seen[LINES + 1] = {0};
    int max_inflight = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r, "path")), "/v1/chat/completions");
        int inflight = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "inflight"));
        if (inflight > max_inflight)
            max_inflight = inflight;
        cJSON *b = body_of(r);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "temperature")) == 0.1);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "top_p")) == 0.5);
        CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(b, "max_tokens")) == 1024);
        const cJSON *msgs = cJSON_GetObjectItem(b, "messages");
        CHECK_INT(cJSON_GetArraySize(msgs), 1);
        const char *content = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "content"));
        CHECK(content && strncmp(content, HEAD, sizeof HEAD - 1) == 0);
        const char *end = content ? strstr(content, TAIL) : NULL;
        CHECK(end != NULL);
        if (content && end) {
            size_t chunk = (size_t)(end - content) - (sizeof HEAD - 1);
            CHECK(chunk / 4 <= 1024);
            CHECK(chunk / 4 > 256); /* paragraphs are filled, not tiny */
            const char *c = content + sizeof HEAD - 1;
            CHECK(strncmp(c, "Line ", 5) == 0); /* trimmed, starting at a line */
            for (const char *p = c; p < end && (p = strstr(p, "Line ")) && p < end; p += 5)
                seen[atoi(p + 5)]++;
        }
        cJSON_Delete(b);
    }
    for (int i = 1; i <= LINES; i++)
        if (seen[i] != 1) {
            fprintf(stderr, "  line %d seen %d times\n", i, seen[i]);
            CHECK(seen[i] == 1);
            break;
        }
    CHECK(max_inflight <= 4);
    /* in order: the delayed first answer first, then the echoes */
    CHECK(out && strncmp(out, "FIRST PART\nBEGIN CONTENT TO SUMMARIZE:\n", 39) == 0);
    const char *last = out;
    int found = 0;
    for (int i = 2; out && i <= LINES; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "Line %03d:", i);
        const char *p = strstr(out, tag); /* the first part's are in FIRST PART */
        if (p) {
            CHECK(p > last);
            last = p;
            found++;
        }
    }
    CHECK_INT(found, LINES - 62); /* all but the first part's 62 lines */
    sk_free(out);
    cJSON_Delete(reqs);
    free(text);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* A transcript of many paragraphs: at most four are asked at once. */
TEST(test_summary_bounded)
{
    mock m;
    if (mock_start(&m, "\"echo\":true,\"echo_delay_ms\":150") != 0)
        return;
    sk_kernel *k = new_kernel(&m);
    char *one = transcript();
    sk_buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 3; i++)
        buf_adds(&b, one);
    char *text = buf_steal(&b);
    sk_status st;
    char *out = invoke(k, "ConversationSummaryPlugin.GetConversationTopics", text, &st);
    CHECK_INT(st, SK_OK);
    cJSON *reqs = requests(&m);
    CHECK(cJSON_GetArraySize(reqs) >= 8);
    int max_inflight = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        int inflight = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "inflight"));
        if (inflight > max_inflight)
            max_inflight = inflight;
    }
    CHECK(max_inflight <= 4);
    cJSON_Delete(reqs);
    sk_free(out);
    free(text);
    free(one);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* Each of the three functions runs its own SK prompt; short input is one
 * request, and so is empty input, as in SK. */
TEST(test_summary_prompts)
{
    mock m;
    if (mock_start(&m, "\"echo\":true") != 0)
        return;
    sk_kernel *k = new_kernel(&m);
    sk_status st;
    char *out = invoke(k, "ConversationSummaryPlugin.GetConversationActionItems",
                       "John said: I will send the slides by Monday.", &st);
    CHECK_INT(st, SK_OK);
    CHECK_CONTAINS(out, "You are an action item extractor.");
    CHECK_CONTAINS(out, "CONTENT STARTS HERE.\n\nJohn said: I will send the slides by Monday.\n\n"
                        "CONTENT STOPS HERE.\n\nOUTPUT:");
    sk_free(out);
    out = invoke(k, "ConversationSummaryPlugin.GetConversationTopics",
                 "We talked about rockets and tea.", &st);
    CHECK_INT(st, SK_OK);
    CHECK_CONTAINS(out, "Analyze the following extract taken from a conversation transcript");
    CHECK_CONTAINS(out, "+++++\n[Input]\nWe talked about rockets and tea.\n[Output]");
    sk_free(out);
    out = invoke(k, "ConversationSummaryPlugin.SummarizeConversation", "", &st);
    CHECK_INT(st, SK_OK);
    CHECK_CONTAINS(out, "BEGIN CONTENT TO SUMMARIZE:\n\n\nEND CONTENT TO SUMMARIZE.");
    sk_free(out);
    cJSON *reqs = requests(&m);
    CHECK_INT(cJSON_GetArraySize(reqs), 3);
    cJSON_Delete(reqs);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* A failing chunk fails the whole call with the server's message. */
TEST(test_summary_error)
{
    mock m;
    if (mock_start(&m, "\"echo\":true,\"responses\":[{\"match\":\"Line 200:\",\"status\":400,"
                       "\"json\":{\"error\":{\"message\":\"context too long\"}}}]") != 0)
        return;
    sk_kernel *k = new_kernel(&m);
    char *text = transcript();
    sk_status st;
    char *out = invoke(k, "ConversationSummaryPlugin.SummarizeConversation", text, &st);
    CHECK_INT(st, SK_MODEL);
    CHECK(out == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "context too long");
    free(text);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* ---- text memory with embeddings ----------------------------------------- */

static sk_kernel *memory_kernel(const char *file, const char *embeddings)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    sk_kernel_set_option(k, "retries", "0");
    CHECK(sk_kernel_set_option(k, "memory", file) == SK_OK);
    CHECK(sk_kernel_set_option(k, "embeddings", embeddings) == SK_OK);
    return k;
}

static cJSON *recall(sk_kernel *k, const char *coll, const char *q, int limit, double rel)
{
    char *json = NULL;
    sk_status st = sk_memory_recall(k, coll, q, limit, rel, &json);
    if (st != SK_OK)
        fprintf(stderr, "  recall %s: %s\n", q, sk_errmsg(k));
    CHECK_INT(st, SK_OK);
    cJSON *a = cJSON_Parse(json ? json : "[]");
    sk_free(json);
    return a;
}

static const char *key_at(const cJSON *a, int i)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, i), "key"));
}

static void save_ok(sk_kernel *k, const char *coll, const char *key, const char *text)
{
    sk_status st = sk_memory_save(k, coll, key, text);
    if (st != SK_OK)
        fprintf(stderr, "  save %s: %s\n", key, sk_errmsg(k));
    CHECK_INT(st, SK_OK);
}

static int count(const mock *m)
{
    cJSON *r = requests(m);
    int n = cJSON_GetArraySize(r);
    cJSON_Delete(r);
    return n;
}

/* Ranked by meaning: the server's vectors make "car" find the automobile,
 * which shares no word with it (BM25 finds nothing). */
static void semantic_recall(const mock *m, const char *spec, const char *path,
                            int openai)
{
    char file[512];
    snprintf(file, sizeof file, "%s/%s.db", scratch, openai ? "openai" : "ollama");
    sk_kernel *k = memory_kernel(file, spec);
    save_ok(k, NULL, "auto", "An automobile is parked outside.");
    save_ok(k, NULL, "pup", "The puppy sleeps all day.");
    save_ok(k, NULL, "cash", "Cash is kept in the safe.");
    cJSON *reqs = requests(m);
    CHECK_INT(cJSON_GetArraySize(reqs), 3);
    const cJSON *r = cJSON_GetArrayItem(reqs, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(r, "path")), path);
    cJSON *b = body_of(r);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(b, "model")), "emb");
    const cJSON *in = cJSON_GetObjectItem(b, "input");
    CHECK(cJSON_IsArray(in) && cJSON_GetArraySize(in) == 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(in, 0)), "An automobile is parked outside.");
    if (openai) {
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(b, "encoding_format")), "float");
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "headers"),
                                                           "authorization")),
                  "Bearer " KEY);
    }
    cJSON_Delete(b);
    cJSON_Delete(reqs);

    cJSON *a = recall(k, NULL, "car", 3, 0);
    CHECK_INT(cJSON_GetArraySize(a), 3); /* every memory has some cosine */
    CHECK_STR(key_at(a, 0), "auto");
    double rel = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "relevance"));
    CHECK(rel > 0.3 && rel < 1);
    cJSON_Delete(a);
    a = recall(k, NULL, "canine", 1, 0);
    CHECK_STR(key_at(a, 0), "pup");
    cJSON_Delete(a);
    a = recall(k, NULL, "funds", 1, 0);
    CHECK_STR(key_at(a, 0), "cash");
    cJSON_Delete(a);
    a = recall(k, NULL, "car", 3, 0.9); /* none is that close */
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    CHECK_INT(count(m), 7); /* three saves, four questions */
    sk_kernel_free(k);
    /* without the embeddings model: BM25, and "car" is nowhere */
    k = memory_kernel(file, "");
    a = recall(k, NULL, "car", 3, 0);
    CHECK_INT(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
    sk_kernel_free(k);
    CHECK_INT(count(m), 7);
}

TEST(test_embeddings_openai)
{
    mock m;
    if (mock_start(&m, "\"embeddings\":true,\"embedding_dims\":256") != 0)
        return;
    setenv("OPENAI_API_KEY", KEY, 1);
    char spec[128];
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    semantic_recall(&m, spec, "/v1/embeddings", 1);
    unsetenv("OPENAI_API_KEY");
    mock_stop(&m);
}

TEST(test_embeddings_ollama)
{
    mock m;
    if (mock_start(&m, "\"embeddings\":true,\"embedding_dims\":256") != 0)
        return;
    char spec[128];
    snprintf(spec, sizeof spec, "ollama:emb@%s", m.url);
    semantic_recall(&m, spec, "/api/embed", 0);
    mock_stop(&m);
    /* OLLAMA_HOST is read as the chat connector reads it */
    if (mock_start(&m, "\"embeddings\":true") != 0)
        return;
    setenv("OLLAMA_HOST", m.url + strlen("http://"), 1);
    sk_kernel *k = memory_kernel("off", "ollama:emb");
    save_ok(k, NULL, "k", "hello");
    CHECK_INT(count(&m), 1);
    sk_kernel_free(k);
    unsetenv("OLLAMA_HOST");
    mock_stop(&m);
}

/* Memories saved before an embeddings model was named are embedded when a
 * recall first needs them, 32 to a request, once; a new model name
 * embeds them again. */
TEST(test_embeddings_backfill)
{
    mock m;
    if (mock_start(&m, "\"embeddings\":true") != 0)
        return;
    char file[512], spec[128], spec2[128];
    snprintf(file, sizeof file, "%s/backfill.db", scratch);
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    snprintf(spec2, sizeof spec2, "openai:emb2@%s/v1", m.url);
    sk_kernel *k = memory_kernel(file, "");
    for (int i = 0; i < 40; i++) {
        char key[16], text[64];
        snprintf(key, sizeof key, "k%02d", i);
        snprintf(text, sizeof text, "Memory number %d about %s.", i, i == 17 ? "a dog" : "nothing");
        save_ok(k, "bulk", key, text);
    }
    save_ok(k, "elsewhere", "x", "Not in this collection.");
    sk_kernel_free(k);
    CHECK_INT(count(&m), 0);

    k = memory_kernel(file, spec);
    cJSON *a = recall(k, "bulk", "puppy", 1, 0);
    CHECK_STR(key_at(a, 0), "k17");
    cJSON_Delete(a);
    cJSON *reqs = requests(&m);
    CHECK_INT(cJSON_GetArraySize(reqs), 3); /* the question, then 32 + 8 */
    int sizes[3];
    for (int i = 0; i < 3; i++) {
        cJSON *b = body_of(cJSON_GetArrayItem(reqs, i));
        sizes[i] = cJSON_GetArraySize(cJSON_GetObjectItem(b, "input"));
        cJSON_Delete(b);
    }
    CHECK_INT(sizes[0], 1);
    CHECK_INT(sizes[1], 32);
    CHECK_INT(sizes[2], 8);
    cJSON_Delete(reqs);
    a = recall(k, "bulk", "canine", 1, 0); /* now only the question */
    CHECK_STR(key_at(a, 0), "k17");
    cJSON_Delete(a);
    CHECK_INT(count(&m), 4);
    sk_kernel_free(k);

    k = memory_kernel(file, spec2);
    a = recall(k, "bulk", "dog", 1, 0);
    CHECK_STR(key_at(a, 0), "k17");
    cJSON_Delete(a);
    CHECK_INT(count(&m), 7); /* another model: embedded again */
    sk_kernel_free(k);
    mock_stop(&m);
}

/* The server's failures: an error says what the server said and never
 * the key, and a save whose text could not be embedded saves nothing. */
TEST(test_embeddings_errors)
{
    mock m;
    if (mock_start(&m, "\"embeddings\":true,\"responses\":["
                       "{\"match\":\"BOOM\",\"status\":500,\"json\":{\"error\":{\"message\":"
                       "\"embedder on fire, key " KEY "\"}}},"
                       "{\"match\":\"SHORT\",\"json\":{\"data\":[]}},"
                       "{\"match\":\"NAN\",\"body\":\"{\\\"data\\\":[{\\\"embedding\\\":[1,\\\"x\\\"]}]}\"},"
                       "{\"match\":\"GARBAGE\",\"body\":\"not json\"}]") != 0)
        return;
    setenv("OPENAI_API_KEY", KEY, 1);
    char spec[128];
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    sk_kernel *k = memory_kernel("off", spec);
    CHECK_INT(sk_memory_save(k, NULL, "b", "BOOM goes the server"), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "HTTP 500");
    CHECK_CONTAINS(sk_errmsg(k), "embedder on fire");
    CHECK(strstr(sk_errmsg(k), KEY) == NULL);
    char *t = NULL;
    CHECK_INT(sk_memory_get(k, NULL, "b", &t), SK_NOT_FOUND); /* nothing saved */
    CHECK_INT(sk_memory_save(k, NULL, "s", "SHORT reply"), SK_PROTOCOL);
    CHECK_CONTAINS(sk_errmsg(k), "0 vectors for 1 texts");
    CHECK_INT(sk_memory_save(k, NULL, "n", "NAN reply"), SK_PROTOCOL);
    CHECK_CONTAINS(sk_errmsg(k), "something not a number");
    CHECK_INT(sk_memory_save(k, NULL, "g", "GARBAGE reply"), SK_PROTOCOL);
    CHECK_CONTAINS(sk_errmsg(k), "not valid JSON");
    char *json = NULL;
    CHECK_INT(sk_memory_recall(k, NULL, "BOOM?", 1, 0, &json), SK_MODEL);
    CHECK(json == NULL);
    save_ok(k, NULL, "ok", "a fine text"); /* the server still answers others */
    sk_kernel_free(k);
    unsetenv("OPENAI_API_KEY");
    /* nobody listening */
    int port = atoi(strrchr(m.url, ':') + 1);
    mock_stop(&m);
    snprintf(spec, sizeof spec, "openai:emb@http://127.0.0.1:%d/v1", port);
    k = memory_kernel("off", spec);
    CHECK_INT(sk_memory_save(k, NULL, "x", "anything"), SK_NETWORK);
    sk_kernel_free(k);
    /* an embeddings spec with the model name left out */
    k = memory_kernel("off", "openai:@http://127.0.0.1:1/v1");
    CHECK_INT(sk_memory_save(k, NULL, "x", "anything"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "needs a model name");
    sk_kernel_free(k);
}

/* Each embeddings request is traced; a collection past the comparison
 * ceiling is refused rather than scanned without end. */
TEST(test_embeddings_trace_and_ceiling)
{
    char file[512], spec[128], trace[512];
    snprintf(file, sizeof file, "%s/ceiling.db", scratch);
    snprintf(trace, sizeof trace, "%s/trace.jsonl", scratch);
    /* 100,001 memories with vectors of the model, written straight in
     * (before the server starts: slow under valgrind) */
    sk_kernel *k = memory_kernel(file, "");
    save_ok(k, "small", "s", "a small one"); /* the schema */
    sk_kernel_free(k);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(file, &db) == SQLITE_OK);
    float vec[64] = {1}; /* the mock's 64 numbers */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(db, "INSERT INTO memory(collection, key, text, saved, model, "
                                 "vector) VALUES ('big', ?1, 'x', 0, 'openai:emb@' || ?2, ?3)",
                             -1, &st, NULL) == SQLITE_OK);
    for (int i = 0; i <= 100000; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, "URL", -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, vec, sizeof vec, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    mock m;
    if (mock_start(&m, "\"embeddings\":true") != 0) {
        sqlite3_close(db);
        return;
    }
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    /* the rows name the model the server now answers as */
    st = NULL;
    CHECK(sqlite3_prepare_v2(db, "UPDATE memory SET model = ?1 WHERE collection = 'big'", -1,
                             &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, spec, -1, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    k = memory_kernel(file, spec);
    CHECK(sk_kernel_set_trace(k, trace) == SK_OK);
    char *json = NULL;
    CHECK_INT(sk_memory_recall(k, "big", "memory", 5, 0, &json), SK_TOO_LARGE);
    CHECK_CONTAINS(sk_errmsg(k), "collection \"big\" holds more than 100000 memories");
    CHECK(json == NULL);
    CHECK_INT(count(&m), 1); /* the question alone: nothing to backfill */
    /* other collections are not held back */
    cJSON *a = recall(k, "small", "small", 1, 0);
    CHECK_STR(key_at(a, 0), "s");
    cJSON_Delete(a);
    sk_kernel_set_trace(k, NULL);
    char *t = NULL;
    size_t n;
    CHECK(sk_read_file(trace, 0, &t, &n) == SK_OK);
    CHECK_CONTAINS(t, "\"type\":\"embeddings\",\"texts\":1,");
    CHECK_CONTAINS(t, "\"ok\":true");
    free(t);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* A skill folder of one's own replaces a chunk prompt by name. */
TEST(test_summary_prompt_replaced)
{
    mock m;
    if (mock_start(&m, "\"echo\":true") != 0)
        return;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/skills/ConversationSummaryPlugin/SummarizeConversationChunk",
             scratch);
    CHECK(kern_make_parent_dirs(dir) == 0);
    mkdir(dir, 0700);
    char file[600];
    snprintf(file, sizeof file, "%s/skprompt.txt", dir);
    FILE *f = fopen(file, "w");
    fputs("MY OWN SUMMARY PROMPT: {{$input}}", f);
    fclose(f);
    sk_kernel *k = new_kernel(&m);
    snprintf(dir, sizeof dir, "%s/skills", scratch);
    CHECK(sk_kernel_load_skills(k, dir) == SK_OK);
    sk_status st;
    char *out = invoke(k, "ConversationSummaryPlugin.SummarizeConversation", "a short chat", &st);
    CHECK_STR(out, "MY OWN SUMMARY PROMPT: a short chat");
    sk_free(out);
    sk_kernel_free(k);
    mock_stop(&m);
}

static sk_status switch_memory(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)args, (void)ud;
    sk_status st = sk_kernel_set_option(k, "memory", "off");
    *out = st == SK_OK ? strdup("switched") : sk_asprintf("refused: %s", sk_errmsg(k));
    return SK_OK;
}

/* While a recall waits for its embeddings, what runs meanwhile cannot
 * pull the memory from under it. */
TEST(test_memory_in_use)
{
    mock m;
    if (mock_start(&m, "\"embeddings\":true") != 0)
        return;
    char spec[128];
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    sk_kernel *k = new_kernel(&m);
    CHECK(sk_kernel_set_option(k, "memory", "off") == SK_OK);
    CHECK(sk_kernel_set_option(k, "embeddings", spec) == SK_OK);
    save_ok(k, NULL, "a", "The automobile is blue.");
    CHECK(sk_kernel_add_native(k, "T", "Switch", NULL, NULL, 0, switch_memory, NULL) == SK_OK);
    sk_template *t = NULL;
    const char *src = "{{TextMemoryPlugin.Recall 'car'}}|{{T.Switch}}";
    CHECK(sk_template_parse(k, src, strlen(src), "t", &t) == SK_OK);
    char *out = NULL;
    CHECK(sk_render(k, t, NULL, 0, &out) == SK_OK);
    CHECK_STR(out, "The automobile is blue.|refused: option memory: the memory is in use");
    sk_free(out);
    sk_template_free(t);
    /* and afterwards it may */
    CHECK(sk_kernel_set_option(k, "memory", "off") == SK_OK);
    sk_kernel_free(k);
    mock_stop(&m);
}

/* Memory through the TextMemoryPlugin skill in a prompt, on embeddings:
 * {{recall $input}} reaches the model with the memory that fits. */
TEST(test_recall_in_a_prompt)
{
    mock m;
    if (mock_start(&m, "\"echo\":true,\"embeddings\":true,\"embedding_dims\":256") != 0)
        return;
    sk_kernel *k = new_kernel(&m);
    char spec[128];
    snprintf(spec, sizeof spec, "openai:emb@%s/v1", m.url);
    CHECK(sk_kernel_set_option(k, "memory", "off") == SK_OK);
    CHECK(sk_kernel_set_option(k, "embeddings", spec) == SK_OK);
    save_ok(k, NULL, "a", "The automobile is blue.");
    save_ok(k, NULL, "b", "The puppy is brown.");
    CHECK(sk_kernel_add_semantic(k, "Qa", "Ask",
                                 "Facts: {{recall $input}}\nQuestion: {{$input}}", NULL) == SK_OK);
    sk_status st;
    char *out = invoke(k, "Qa.Ask", "What colour is the car", &st);
    CHECK_INT(st, SK_OK);
    CHECK_STR(out, "Facts: The automobile is blue.\nQuestion: What colour is the car");
    sk_free(out);
    sk_kernel_free(k);
    mock_stop(&m);
}

int main(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/skein-test-core-XXXXXX", dir);
    if (!mkdtemp(scratch))
        return 1;
    atexit(cleanup);
    setenv("SKEIN_MEMORY", "off", 1);
    unsetenv("SKEIN_EMBEDDINGS");
    unsetenv("OPENAI_API_KEY");
    RUN(test_summary_chunks);
    RUN(test_summary_bounded);
    RUN(test_summary_prompts);
    RUN(test_summary_error);
    RUN(test_embeddings_openai);
    RUN(test_embeddings_ollama);
    RUN(test_embeddings_backfill);
    RUN(test_embeddings_errors);
    RUN(test_embeddings_trace_and_ceiling);
    RUN(test_summary_prompt_replaced);
    RUN(test_memory_in_use);
    RUN(test_recall_in_a_prompt);
    return tu_finish();
}
