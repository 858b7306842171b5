/*
 * distill.c -- `skein distill Skill.Fn --from FILE... --out DIR`: the
 * accepted answers of one function, read from traces (--trace,
 * SKEIN_TRACE) and cassettes (SKEIN_RECORD), written as training data
 * for llama-finetune and hosted fine-tuning, with seeded held-out splits
 * for `skein calibrate` and `skein eval` (README "Distilling a function").
 *
 * A call's lines share its "call" id; its call_end line says how it ended.
 * An example is the first exchange's prompt (and system message) with the
 * answer the caller received, from calls that ended "ok" only: a call
 * that was uncertain, rejected, filtered, truncated or failed gives
 * nothing, and neither does an escalated call's first, uncertain answer
 * (the answer kept is the one the call ended with).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define LINE_CEILING ((size_t)64 << 20) /* a trace line is at most 64 MiB */
#define CALLS_CEILING 1000000L          /* calls of the function, all inputs */
#define END_MARK "<|endoftext|>"

/* Why a call gave no example; the order of the summary. */
enum {
    SKIP_UNCERTAIN,
    SKIP_REJECTED,
    SKIP_FILTERED,
    SKIP_TRUNCATED,
    SKIP_FAILED,
    SKIP_TOOLS,
    SKIP_MULTI_TURN,
    SKIP_NO_OUTCOME,
    SKIP_NO_EXCHANGE,
    SKIP_END_MARK,
    SKIP_DUPLICATE,
    N_SKIP
};
static const char *const SKIP_NAMES[N_SKIP] = {
    "uncertain", "rejected",   "filtered", "truncated",  "failed",   "tool_calls",
    "multi_turn", "no_outcome", "no_exchange", "end_marker", "duplicate",
};

/* One call of the function, joined over every input on its id. */
typedef struct dcall {
    char *id;
    char *system, *prompt; /* of its first exchange; NULL until one is seen */
    char *answer;          /* from call_end, when it ended ok */
    char *last_reply;      /* the reply of its last exchange, or NULL */
    int redacted;          /* call_end: the prompts had placeholders */
    char *status;          /* call_end's status; NULL: no call_end seen */
    int tools, multi_turn;
    size_t order;          /* first appearance */
} dcall;

typedef struct example {
    const char *system, *prompt, *answer; /* borrowed from its call */
    size_t group;                          /* index of its (system, prompt) */
} example;

/* An open-addressing table of keys to indexes, for call ids, examples
 * and prompt groups.  Keys are borrowed. */
typedef struct table {
    char **keys;
    size_t *vals;
    size_t cap, n;
} table;

typedef struct distill {
    const char *function;
    dcall *calls;
    size_t n_calls, cap_calls;
    table by_id;
    long skipped[N_SKIP];
} distill;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot of key: where it is, or the empty slot it would take. */
static size_t table_slot(const table *t, const char *key)
{
    size_t i = (size_t)hash_str(key) & (t->cap - 1);
    while (t->keys[i] && strcmp(t->keys[i], key) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* 1 and *val when key is there, else 0. */
static int table_get(const table *t, const char *key, size_t *val)
{
    if (!t->cap)
        return 0;
    size_t i = table_slot(t, key);
    if (!t->keys[i])
        return 0;
    *val = t->vals[i];
    return 1;
}

/* Adds key (borrowed, not there yet).  0, or -1 when memory ran out. */
static int table_put(table *t, char *key, size_t val)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        table g = {calloc(nc, sizeof *g.keys), calloc(nc, sizeof *g.vals), nc, t->n};
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return -1;
        }
        for (size_t i = 0; i < t->cap; i++)
            if (t->keys[i]) {
                size_t j = table_slot(&g, t->keys[i]);
                g.keys[j] = t->keys[i];
                g.vals[j] = t->vals[i];
            }
        free(t->keys);
        free(t->vals);
        *t = g;
    }
    size_t i = table_slot(t, key);
    t->keys[i] = key;
    t->vals[i] = val;
    t->n++;
    return 0;
}

static void table_free(table *t)
{
    free(t->keys);
    free(t->vals);
    memset(t, 0, sizeof *t);
}

/* The call with this id, made when new.  NULL when memory ran out or past
 * the ceiling (*too_many set). */
static dcall *call_for(distill *d, const char *id, int *too_many)
{
    size_t at;
    if (table_get(&d->by_id, id, &at))
        return &d->calls[at];
    if ((long)d->n_calls >= CALLS_CEILING) {
        *too_many = 1;
        return NULL;
    }
    if (d->n_calls == d->cap_calls) {
        size_t nc = d->cap_calls ? d->cap_calls * 2 : 64;
        dcall *g = realloc(d->calls, nc * sizeof *g);
        if (!g)
            return NULL;
        /* the table's keys are the calls' id strings, which stay put */
        d->calls = g;
        d->cap_calls = nc;
    }
    dcall *c = &d->calls[d->n_calls];
    memset(c, 0, sizeof *c);
    c->order = d->n_calls;
    if (!(c->id = strdup(id)) || table_put(&d->by_id, c->id, d->n_calls) != 0) {
        free(c->id);
        return NULL;
    }
    d->n_calls++;
    return c;
}

static const char *str_member(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

/* Takes what an exchange (a trace's model_call line or a cassette line)
 * says about its call.  0, or an exit code after reporting. */
static int take_exchange(distill *d, const cJSON *j, int cassette, const char *where)
{
    const char *id = str_member(j, "call");
    const char *prompt = str_member(j, "prompt");
    if (!prompt)
        return cli_error(SK_DATA, NULL, "%s: an exchange without a \"prompt\"", where);
    if (!id) {
        /* written before calls had ids: how it ended is unknown */
        d->skipped[SKIP_NO_OUTCOME]++;
        return 0;
    }
    int too_many = 0;
    dcall *c = call_for(d, id, &too_many);
    if (!c)
        return too_many ? cli_error(SK_DATA, NULL, "%s: more than %ld calls of %s", where,
                                    CALLS_CEILING, d->function)
                        : cli_error(SK_NOMEM, NULL, "out of memory");
    if (cJSON_GetObjectItemCaseSensitive(j, "tool_calls"))
        c->tools = 1;
    const char *system = str_member(j, "system");
    const cJSON *turns = cJSON_GetObjectItemCaseSensitive(j, "turns");
    if (cJSON_IsNumber(turns) && turns->valuedouble > 1)
        c->multi_turn = 1;
    if (cassette) {
        /* the messages sent: a system message, then the prompt alone */
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
        int n = cJSON_GetArraySize(msgs), i = 0;
        const cJSON *first = cJSON_GetArrayItem(msgs, 0);
        const char *role = str_member(first, "role");
        system = NULL;
        if (role && strcmp(role, "system") == 0) {
            system = str_member(first, "content");
            i = 1;
        }
        if (n - i > 1)
            c->multi_turn = 1;
        for (; i < n; i++) {
            const char *r = str_member(cJSON_GetArrayItem(msgs, i), "role");
            if (!r || strcmp(r, "user") != 0)
                c->multi_turn = 1;
        }
    }
    const char *reply = str_member(j, "reply");
    if (reply) {
        free(c->last_reply);
        if (!(c->last_reply = strdup(reply)))
            return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    if (!c->prompt) {
        c->prompt = strdup(prompt);
        c->system = system ? strdup(system) : NULL;
        if (!c->prompt || (system && !c->system))
            return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    return 0;
}

static int take_end(distill *d, const cJSON *j, const char *where)
{
    const char *id = str_member(j, "call");
    const char *status = str_member(j, "status");
    if (!id || !status)
        return cli_error(SK_DATA, NULL, "%s: a call_end line needs \"call\" and \"status\"",
                         where);
    int too_many = 0;
    dcall *c = call_for(d, id, &too_many);
    if (!c)
        return too_many ? cli_error(SK_DATA, NULL, "%s: more than %ld calls of %s", where,
                                    CALLS_CEILING, d->function)
                        : cli_error(SK_NOMEM, NULL, "out of memory");
    if (c->status) /* the same run's trace and cassette, both given */
        return 0;
    const char *answer = str_member(j, "answer");
    if (strcmp(status, "ok") == 0 && !answer)
        return cli_error(SK_DATA, NULL, "%s: a call_end line with status ok and no \"answer\"",
                         where);
    c->redacted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "redacted"));
    c->status = strdup(status);
    c->answer = answer ? strdup(answer) : NULL;
    if (!c->status || (answer && !c->answer))
        return cli_error(SK_NOMEM, NULL, "out of memory");
    return 0;
}

/* Reads the next line of f into *buf (the newline and a '\r' before it
 * removed).  1: a line; 0: the end; -1: longer than LINE_CEILING; -2: a
 * read error (errno). */
static int next_line(FILE *f, char **buf, size_t *cap, size_t *len)
{
    size_t n = 0;
    for (;;) {
        if (*cap - n < 2) {
            if (*cap >= LINE_CEILING + 2)
                return -1;
            size_t nc = *cap ? *cap * 2 : 65536;
            if (nc > LINE_CEILING + 2)
                nc = LINE_CEILING + 2;
            char *g = realloc(*buf, nc);
            if (!g) {
                errno = ENOMEM;
                return -2;
            }
            *buf = g;
            *cap = nc;
        }
        if (!fgets(*buf + n, (int)(*cap - n), f)) {
            if (ferror(f))
                return -2;
            if (n == 0)
                return 0;
            break;
        }
        n += strlen(*buf + n);
        if (n && (*buf)[n - 1] == '\n')
            break;
        if (n > LINE_CEILING)
            return -1;
    }
    while (n && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r'))
        n--;
    (*buf)[n] = '\0';
    if (n > LINE_CEILING)
        return -1;
    *len = n;
    return 1;
}

/* Reads one input: every line a trace line or a recorded exchange. */
static int read_input(distill *d, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_error(SK_IO, NULL, "--from %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, len = 0;
    long line = 0;
    int rc = EXIT_OK, got;
    char where[4200];
    while (rc == EXIT_OK && (got = next_line(f, &buf, &cap, &len)) == 1) {
        line++;
        snprintf(where, sizeof where, "%s:%ld", path, line);
        const char *c = buf;
        while (*c == ' ' || *c == '\t')
            c++;
        if (!*c)
            continue;
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
        if (!j) {
            long col = end && end >= buf && end <= buf + len ? (long)(end - buf) + 1 : 1;
            rc = cli_error(SK_DATA, NULL, "%s:%ld: not JSON: neither a trace nor a cassette",
                           where, col);
            break;
        }
        const char *type = str_member(j, "type");
        const char *fn = str_member(j, "function");
        int exchange = !type && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "prompt")) &&
                       cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "messages")) &&
                       (cJSON_GetObjectItemCaseSensitive(j, "reply") ||
                        cJSON_GetObjectItemCaseSensitive(j, "error"));
        if (!cJSON_IsObject(j) || (!type && !exchange) ||
            (type && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "type")))) {
            rc = cli_error(SK_DATA, NULL,
                           "%s:1: neither a trace line nor a recorded exchange "
                           "(want --trace or SKEIN_RECORD output)", where);
        } else if (fn && strcmp(fn, d->function) == 0) {
            if (exchange)
                rc = take_exchange(d, j, 1, where);
            else if (strcmp(type, "model_call") == 0)
                rc = take_exchange(d, j, 0, where);
            else if (strcmp(type, "call_end") == 0)
                rc = take_end(d, j, where);
            /* other trace lines (uncertain, escalate, review, ...) carry
             * nothing call_end does not say */
        }
        cJSON_Delete(j);
    }
    if (rc == EXIT_OK && got == -1)
        rc = cli_error(SK_DATA, NULL, "%s:%ld: a line longer than 64 MiB", path, line + 1);
    else if (rc == EXIT_OK && got == -2)
        rc = cli_error(SK_IO, NULL, "--from %s: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    return rc;
}

/* A key made of strings that cannot run into each other: each one's
 * length before it.  Caller frees. */
static char *make_key(const char *a, const char *b, const char *c)
{
    size_t la = a ? strlen(a) : 0, lb = strlen(b), lc = c ? strlen(c) : 0;
    size_t n = la + lb + lc + 80;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%c%zu:%s%zu:%s%zu:%s", a ? 's' : '-', la, a ? a : "", lb, b, lc,
                 c ? c : "");
    return k;
}

/* splitmix64: the same sequence for a seed on every platform. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int has_end_mark(const char *s)
{
    for (const char *p = strstr(s, END_MARK); p; p = strstr(p + 1, END_MARK))
        if ((p == s || p[-1] == '\n') &&
            (p[sizeof END_MARK - 1] == '\n' || p[sizeof END_MARK - 1] == '\0'))
            return 1;
    return 0;
}

enum { SPLIT_TRAIN, SPLIT_CALIBRATION, SPLIT_TEST, N_SPLIT };

/* Writes one JSON line of o to f; 0, or -1. */
static int put_json(FILE *f, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    int rc = s && fputs(s, f) >= 0 && fputc('\n', f) != EOF ? 0 : -1;
    cJSON_free(s);
    cJSON_Delete(o);
    return rc;
}

static cJSON *chat_line(const example *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *m = o ? cJSON_AddArrayToObject(o, "messages") : NULL;
    if (!m) {
        cJSON_Delete(o);
        return NULL;
    }
    const char *roles[3] = {"system", "user", "assistant"};
    const char *texts[3] = {x->system, x->prompt, x->answer};
    for (int i = x->system ? 0 : 1; i < 3; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "role", roles[i]) ||
            !cJSON_AddStringToObject(e, "content", texts[i])) {
            cJSON_Delete(e);
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddItemToArray(m, e);
    }
    return o;
}

static cJSON *heldout_line(const example *x, const char *function)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "input", x->prompt) ||
        !cJSON_AddStringToObject(o, "expected", x->answer) ||
        !cJSON_AddStringToObject(o, "function", function) ||
        (x->system && !cJSON_AddStringToObject(o, "system", x->system))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The training text: the system message and a blank line when there is
 * one, the prompt, the answer right after it, a newline unless the
 * answer ends with one, then the END_MARK line. */
static int put_text(FILE *f, const example *x)
{
    size_t la = strlen(x->answer);
    if (x->system && fprintf(f, "%s\n\n", x->system) < 0)
        return -1;
    if (fputs(x->prompt, f) < 0 || fputs(x->answer, f) < 0)
        return -1;
    if ((!la || x->answer[la - 1] != '\n') && fputc('\n', f) == EOF)
        return -1;
    return fputs(END_MARK "\n", f) < 0 ? -1 : 0;
}

static const char *const OUT_FILES[] = {"train.txt", "train.jsonl", "calibration.jsonl",
                                        "test.jsonl"};
#define N_OUT 4

/* Writes the four files, each first as DIR/.NAME.tmp, renamed into place
 * once all are written: a failure leaves what was there before. */
static int write_outputs(const distill *d, const char *dir, const example *xs, size_t n,
                         const int *split)
{
    char tmp[N_OUT][4200], fin[N_OUT][4200];
    FILE *f[N_OUT] = {0};
    int rc = EXIT_OK;
    for (int i = 0; i < N_OUT && rc == EXIT_OK; i++) {
        snprintf(tmp[i], sizeof tmp[i], "%s/.%s.tmp", dir, OUT_FILES[i]);
        snprintf(fin[i], sizeof fin[i], "%s/%s", dir, OUT_FILES[i]);
        if (!(f[i] = fopen(tmp[i], "w")))
            rc = cli_error(SK_IO, NULL, "--out %s: %s", tmp[i], strerror(errno));
    }
    for (size_t i = 0; i < n && rc == EXIT_OK; i++) {
        const example *x = &xs[i];
        int s = split[x->group], bad;
        if (s == SPLIT_TRAIN)
            bad = put_text(f[0], x) || put_json(f[1], chat_line(x));
        else
            bad = put_json(f[s == SPLIT_CALIBRATION ? 2 : 3], heldout_line(x, d->function));
        if (bad)
            rc = cli_error(SK_IO, NULL, "--out %s: %s", dir,
                           errno ? strerror(errno) : "cannot write");
    }
    for (int i = 0; i < N_OUT; i++) {
        if (f[i] && fclose(f[i]) != 0 && rc == EXIT_OK)
            rc = cli_error(SK_IO, NULL, "--out %s: %s", fin[i], strerror(errno));
    }
    for (int i = 0; i < N_OUT && rc == EXIT_OK; i++)
        if (rename(tmp[i], fin[i]) != 0)
            rc = cli_error(SK_IO, NULL, "--out %s: %s", fin[i], strerror(errno));
    if (rc != EXIT_OK)
        for (int i = 0; i < N_OUT; i++)
            if (f[i])
                unlink(tmp[i]);
    return rc;
}

/* mkdir -p dir.  0, or -1 with errno. */
static int make_dirs(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n >= sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -1;
        p[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void distill_free(distill *d)
{
    for (size_t i = 0; i < d->n_calls; i++) {
        free(d->calls[i].id);
        free(d->calls[i].system);
        free(d->calls[i].prompt);
        free(d->calls[i].answer);
        free(d->calls[i].last_reply);
        free(d->calls[i].status);
    }
    free(d->calls);
    table_free(&d->by_id);
}

/* The skip reason of a call that ended with status (not "ok"). */
static int status_reason(const char *status)
{
    if (strcmp(status, "uncertain") == 0)
        return SKIP_UNCERTAIN;
    if (strcmp(status, "rejected") == 0)
        return SKIP_REJECTED;
    if (strcmp(status, "filtered") == 0)
        return SKIP_FILTERED;
    if (strcmp(status, "truncated") == 0)
        return SKIP_TRUNCATED;
    return SKIP_FAILED;
}

/* Turns the calls into examples: *xs (caller frees), each group's split
 * in *split (caller frees), the counts per split in counts. */
static int make_examples(distill *d, const distill_opts *o, example **xs_out, size_t *n_out,
                         int **split_out, size_t counts[N_SPLIT], size_t *n_groups_out)
{
    example *xs = calloc(d->n_calls ? d->n_calls : 1, sizeof *xs);
    char **keys = calloc(2 * (d->n_calls ? d->n_calls : 1), sizeof *keys);
    size_t n_keys = 0, n = 0, n_groups = 0;
    table seen = {0}, groups = {0};
    int rc = xs && keys ? EXIT_OK : cli_error(SK_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < d->n_calls && rc == EXIT_OK; i++) {
        dcall *c = &d->calls[i];
        int why = -1;
        if (!c->status)
            why = SKIP_NO_OUTCOME;
        else if (strcmp(c->status, "ok") != 0)
            why = status_reason(c->status);
        else if (!c->prompt || (c->redacted && !c->last_reply))
            why = SKIP_NO_EXCHANGE;
        else if (c->tools)
            why = SKIP_TOOLS;
        else if (c->multi_turn)
            why = SKIP_MULTI_TURN;
        else if (has_end_mark(c->prompt) || has_end_mark(c->answer) ||
                 (c->system && has_end_mark(c->system)))
            why = SKIP_END_MARK;
        /* the prompt went out with placeholders: so does the answer, as
         * the model wrote it, not as restored for the caller */
        if (why < 0 && c->redacted) {
            free(c->answer);
            c->answer = c->last_reply;
            c->last_reply = NULL;
        }
        if (why < 0 && has_end_mark(c->answer))
            why = SKIP_END_MARK;
        if (why < 0) {
            char *key = make_key(c->system, c->prompt, c->answer);
            char *gkey = make_key(c->system, c->prompt, NULL);
            size_t at;
            if (!key || !gkey) {
                free(key);
                free(gkey);
                rc = cli_error(SK_NOMEM, NULL, "out of memory");
                break;
            }
            if (table_get(&seen, key, &at)) {
                why = SKIP_DUPLICATE;
                free(key);
                free(gkey);
            } else {
                keys[n_keys++] = key;
                if (table_put(&seen, key, n) != 0) {
                    free(gkey);
                    rc = cli_error(SK_NOMEM, NULL, "out of memory");
                    break;
                }
                size_t g;
                if (table_get(&groups, gkey, &g)) {
                    free(gkey);
                } else {
                    keys[n_keys++] = gkey;
                    g = n_groups++;
                    if (table_put(&groups, gkey, g) != 0) {
                        rc = cli_error(SK_NOMEM, NULL, "out of memory");
                        break;
                    }
                }
                xs[n++] = (example){c->system, c->prompt, c->answer, g};
            }
        }
        if (why >= 0)
            d->skipped[why]++;
    }
    for (size_t i = 0; i < n_keys; i++)
        free(keys[i]);
    free(keys);
    table_free(&seen);
    table_free(&groups);
    int *split = NULL;
    size_t *order = NULL;
    if (rc == EXIT_OK) {
        split = calloc(n_groups ? n_groups : 1, sizeof *split);
        order = calloc(n_groups ? n_groups : 1, sizeof *order);
        if (!split || !order)
            rc = cli_error(SK_NOMEM, NULL, "out of memory");
    }
    if (rc == EXIT_OK) {
        /* a seeded shuffle of the prompts; the first shares are held out,
         * so that a prompt is never both trained on and held out */
        uint64_t state = (uint64_t)o->seed;
        for (size_t i = 0; i < n_groups; i++)
            order[i] = i;
        for (size_t i = n_groups; i > 1; i--) {
            size_t j = (size_t)(next_rand(&state) % i);
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        size_t n_cal = (size_t)(o->calibration * (double)n_groups + 0.5);
        size_t n_test = (size_t)(o->test * (double)n_groups + 0.5);
        if (n_cal > n_groups)
            n_cal = n_groups;
        if (n_test > n_groups - n_cal)
            n_test = n_groups - n_cal;
        for (size_t i = 0; i < n_groups; i++)
            split[order[i]] = i < n_cal ? SPLIT_CALIBRATION
                              : i < n_cal + n_test ? SPLIT_TEST
                                                   : SPLIT_TRAIN;
        for (size_t i = 0; i < n; i++)
            counts[split[xs[i].group]]++;
    }
    free(order);
    if (rc != EXIT_OK) {
        free(xs);
        free(split);
        return rc;
    }
    *xs_out = xs;
    *n_out = n;
    *split_out = split;
    *n_groups_out = n_groups;
    return EXIT_OK;
}

static void print_summary(const distill *d, const distill_opts *o, size_t n,
                          const size_t counts[N_SPLIT])
{
    fprintf(stderr, "%s: %zu example%s: train %zu, calibration %zu, test %zu (seed %ld)\n",
            d->function, n, n == 1 ? "" : "s", counts[SPLIT_TRAIN],
            counts[SPLIT_CALIBRATION], counts[SPLIT_TEST], o->seed);
    long total = 0;
    for (int i = 0; i < N_SKIP; i++)
        total += d->skipped[i];
    fputs("skipped:", stderr);
    if (!total)
        fputs(" none", stderr);
    for (int i = 0, first = 1; i < N_SKIP; i++)
        if (d->skipped[i]) {
            fprintf(stderr, "%s %s %ld", first ? "" : ",", SKIP_NAMES[i], d->skipped[i]);
            first = 0;
        }
    fputc('\n', stderr);
    if (o->json) {
        printf("{\"function\":");
        cli_json_str(stdout, d->function);
        printf(",\"examples\":%zu,\"train\":%zu,\"calibration\":%zu,\"test\":%zu,"
               "\"seed\":%ld,\"skipped\":{",
               n, counts[SPLIT_TRAIN], counts[SPLIT_CALIBRATION], counts[SPLIT_TEST], o->seed);
        for (int i = 0; i < N_SKIP; i++)
            printf("%s\"%s\":%ld", i ? "," : "", SKIP_NAMES[i], d->skipped[i]);
        printf("}}\n");
    }
}

int cli_distill(const distill_opts *o)
{
    distill d = {.function = o->function};
    int rc = EXIT_OK;
    for (size_t i = 0; i < o->n_from && rc == EXIT_OK; i++)
        rc = read_input(&d, o->from[i]);
    example *xs = NULL;
    int *split = NULL;
    size_t n = 0, n_groups = 0, counts[N_SPLIT] = {0};
    if (rc == EXIT_OK)
        rc = make_examples(&d, o, &xs, &n, &split, counts, &n_groups);
    if (rc == EXIT_OK) {
        print_summary(&d, o, n, counts);
        if (n == 0)
            rc = cli_error(SK_DATA, NULL, "no accepted answers of %s in the input%s: nothing "
                                          "written", d.function, o->n_from > 1 ? "s" : "");
    }
    if (rc == EXIT_OK && make_dirs(o->out) != 0)
        rc = cli_error(SK_IO, NULL, "--out %s: %s", o->out, strerror(errno));
    if (rc == EXIT_OK)
        rc = write_outputs(&d, o->out, xs, n, split);
    free(xs);
    free(split);
    distill_free(&d);
    return rc;
}
