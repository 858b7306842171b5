/*
 * logs.c -- `skein logs`: the call history, as `llm logs` shows its own.
 *
 *   skein logs [-n N] [-q WORDS] [-c | --cid ID] [-m MODEL]
 *              [--function NAME] [--json] [-t]
 *   skein logs path | status | on | off
 *
 * The list is newest first (a search, best match first); a conversation
 * reads in order, oldest first.  Everything comes through the library's
 * sk_kernel_history, so what a program reads is what this shows.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_COUNT 3   /* as `llm logs` */
#define TRUNCATE_AT 120   /* characters of a text with -t */

typedef struct show {
    int json, truncate;
    long n;
} show;

/* s on one line, cut to TRUNCATE_AT characters (UTF-8 kept whole). */
static void put_short(const char *s)
{
    size_t chars = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++) {
        if ((*p & 0xc0) != 0x80 && chars++ == TRUNCATE_AT) {
            fputs("...", stdout);
            return;
        }
        putchar(*p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p);
    }
}

static void put_text(const show *sh, const char *title, const char *text)
{
    if (!text)
        return;
    if (sh->truncate) {
        printf("%s: ", title);
        put_short(text);
        putchar('\n');
        return;
    }
    size_t n = strlen(text);
    printf("\n## %s\n\n%s%s", title, text, n && text[n - 1] == '\n' ? "" : "\n");
}

static void put_num(const char *key, long long v)
{
    printf(",\"%s\":", key);
    if (v < 0)
        fputs("null", stdout);
    else
        printf("%lld", v);
}

static void put_str(const char *key, const char *v, int truncate)
{
    printf(",\"%s\":", key);
    if (!v) {
        fputs("null", stdout);
        return;
    }
    if (truncate && strlen(v) > TRUNCATE_AT) {
        size_t keep = TRUNCATE_AT;
        while (keep && ((unsigned char)v[keep] & 0xc0) == 0x80)
            keep--;
        char *c = malloc(keep + 4);
        if (c) {
            memcpy(c, v, keep);
            memcpy(c + keep, "...", 4);
            cli_json_str(stdout, c);
            free(c);
            return;
        }
    }
    cli_json_str(stdout, v);
}

static int show_entry(void *ud, const sk_history_entry *e)
{
    show *sh = ud;
    if (sh->json) {
        fputs(sh->n++ ? ",\n {" : "{", stdout);
        printf("\"id\":%lld", e->id);
        put_str("conversation", e->conversation, 0);
        put_str("time", e->time, 0);
        put_str("function", e->function, 0);
        put_str("model", e->model, 0);
        put_str("system", e->system, sh->truncate);
        put_str("prompt", e->prompt, sh->truncate);
        put_str("reply", e->reply, sh->truncate);
        put_str("error", e->error, sh->truncate);
        put_str("source", e->source, 0);
        put_num("prompt_tokens", e->prompt_tokens);
        put_num("completion_tokens", e->completion_tokens);
        put_num("duration_ms", e->duration_ms);
        putchar('}');
        return 0;
    }
    if (sh->n++ && !sh->truncate)
        putchar('\n');
    printf("# %s  %s  %s\n", e->time ? e->time : "", e->function ? e->function : "-",
           e->model ? e->model : "-");
    printf("conversation %s, ", e->conversation ? e->conversation : "-");
    if (e->prompt_tokens >= 0 || e->completion_tokens >= 0)
        printf("%ld tokens in, %ld out, ", e->prompt_tokens < 0 ? 0 : e->prompt_tokens,
               e->completion_tokens < 0 ? 0 : e->completion_tokens);
    printf("%lld ms", e->duration_ms);
    if (e->source && strcmp(e->source, "model") != 0)
        printf(", from the %s", e->source);
    putchar('\n');
    put_text(sh, "System", e->system);
    put_text(sh, "Prompt", e->prompt);
    if (e->reply)
        put_text(sh, "Reply", e->reply);
    else
        put_text(sh, "Error", e->error ? e->error : "(failed)");
    return 0;
}

typedef struct last {
    char *conversation;
} last;

static int keep_conversation(void *ud, const sk_history_entry *e)
{
    last *l = ud;
    free(l->conversation);
    l->conversation = e->conversation ? strdup(e->conversation) : NULL;
    return 1;
}

/* The conversation of the newest call (of function, when given): *out
 * (caller frees), or NULL when there is none.  Returns -1 or an exit
 * code. */
int cli_last_conversation(sk_kernel *k, const char *function, char **out)
{
    *out = NULL;
    sk_history_query q = {.function = function, .limit = 1};
    last l = {NULL};
    sk_status st = sk_kernel_history(k, &q, keep_conversation, &l);
    if (st != SK_OK) {
        free(l.conversation);
        return cli_report(k, st, NULL);
    }
    *out = l.conversation;
    return -1;
}

static int logs_status(sk_kernel *k)
{
    sk_history_info info;
    sk_status st = sk_kernel_history_info(k, &info);
    if (st != SK_OK)
        return cli_report(k, st, NULL);
    if (info.off)
        printf("recording: off (%s)\n", info.off);
    else
        printf("recording: on\n");
    printf("history: %s\n", info.path ? info.path : "(no place for it)");
    printf("calls: %lld in %lld conversation%s\n", info.calls, info.conversations,
           info.conversations == 1 ? "" : "s");
    printf("size: %.2f MB\n", (double)info.bytes / 1e6);
    return EXIT_OK;
}

int cli_logs(sk_kernel *k, const logs_opts *o)
{
    const char *a = o->action;
    if (a && strcmp(a, "list") != 0) {
        if (o->search || o->conversation || o->last_conversation || o->json || o->count >= 0)
            return cli_usage("logs %s: takes no options", a);
        if (strcmp(a, "path") == 0) {
            sk_history_info info;
            sk_status st = sk_kernel_history_info(k, &info);
            if (st != SK_OK)
                return cli_report(k, st, NULL);
            if (!info.path)
                return cli_error(SK_IO, NULL, "the call history has no place: neither "
                                 "XDG_DATA_HOME nor HOME is set");
            puts(info.path);
            return EXIT_OK;
        }
        if (strcmp(a, "status") == 0)
            return logs_status(k);
        if (strcmp(a, "on") == 0 || strcmp(a, "off") == 0) {
            int on = strcmp(a, "on") == 0;
            sk_status st = sk_kernel_history_switch(k, on);
            if (st != SK_OK)
                return cli_report(k, st, NULL);
            sk_history_info info;
            if (sk_kernel_history_info(k, &info) == SK_OK && on && info.off)
                printf("the history is switched on, but records nothing: %s\n", info.off);
            else
                printf("the history is %s: calls are %srecorded\n", on ? "on" : "off",
                       on ? "" : "not ");
            return EXIT_OK;
        }
        return cli_usage("logs: unknown action '%s' (list, path, status, on, off)", a);
    }
    if (o->last_conversation && o->conversation)
        return cli_usage("logs: -c and --cid both name a conversation; give one");
    if (o->search && (o->last_conversation || o->conversation))
        return cli_usage("logs: -q searches every conversation; leave out -c and --cid");
    char *conv = NULL;
    if (o->last_conversation) {
        int rc = cli_last_conversation(k, NULL, &conv);
        if (rc >= 0)
            return rc;
        if (!conv) {
            if (o->json)
                puts("[]");
            return EXIT_OK; /* no call yet */
        }
    }
    const char *conversation = conv ? conv : o->conversation;
    sk_history_query q = {
        .search = o->search,
        .conversation = conversation,
        .function = o->function,
        .model = o->model,
        /* a conversation is read whole, in order, unless -n says */
        .limit = o->count >= 0 ? o->count : conversation ? 0 : DEFAULT_COUNT,
        .oldest_first = conversation != NULL,
    };
    show sh = {o->json, o->truncate, 0};
    if (o->json)
        fputc('[', stdout);
    sk_status st = sk_kernel_history(k, &q, show_entry, &sh);
    free(conv);
    if (o->json)
        fputs("]\n", stdout);
    if (st != SK_OK)
        return cli_report(k, st, NULL);
    return EXIT_OK;
}
