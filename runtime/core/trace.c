/*
 * trace.c -- one JSON line per model call, appended to the kernel's trace
 * file.  Traces carry prompts and replies but never credentials: request
 * headers are not recorded, and error messages are scrubbed where they
 * are made (openai.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "kernel_priv.h"

static void add_str(sk_buf *b, sk_status *rc, const char *key, const char *val)
{
    if (*rc != SK_OK || !val)
        return;
    *rc = buf_printf(b, ",\"%s\":", key);
    if (*rc == SK_OK)
        *rc = buf_add_json_str(b, val, strlen(val));
}

static void now_iso(char *when, size_t n);

void trace_model_call(sk_kernel *k, const trace_rec *r)
{
    if (!k->trace)
        return;
    char when[96];
    now_iso(when, sizeof when);
    sk_buf b;
    buf_init(&b, (size_t)64 << 20);
    sk_status rc = buf_printf(&b, "{\"time\":\"%s\",\"type\":\"model_call\"", when);
    add_str(&b, &rc, "function", r->function);
    add_str(&b, &rc, "model", r->model);
    add_str(&b, &rc, "system", r->system);
    add_str(&b, &rc, "prompt", r->prompt);
    /* a chat with earlier turns: the prompt above is only its last one */
    if (rc == SK_OK && r->turns > 1)
        rc = buf_printf(&b, ",\"turns\":%d", r->turns);
    add_str(&b, &rc, "reply", r->reply);
    if (rc == SK_OK && r->resp && r->resp->n_calls) {
        /* the tool calls a reply made, as the model wrote them */
        rc = buf_adds(&b, ",\"tool_calls\":[");
        for (size_t i = 0; rc == SK_OK && i < r->resp->n_calls; i++) {
            const sk_tool_call *c = &r->resp->calls[i];
            rc = buf_adds(&b, i ? ",{\"id\":" : "{\"id\":");
            if (rc == SK_OK)
                rc = buf_add_json_str(&b, c->id ? c->id : "", c->id ? strlen(c->id) : 0);
            add_str(&b, &rc, "name", c->name ? c->name : "");
            add_str(&b, &rc, "arguments", c->arguments ? c->arguments : "");
            if (rc == SK_OK)
                rc = buf_addc(&b, '}');
        }
        if (rc == SK_OK)
            rc = buf_addc(&b, ']');
    }
    if (rc == SK_OK && r->resp) {
        add_str(&b, &rc, "finish_reason", r->resp->finish_reason);
        if (rc == SK_OK)
            rc = buf_printf(&b,
                            ",\"usage\":{\"prompt_tokens\":%ld,"
                            "\"completion_tokens\":%ld}",
                            r->resp->prompt_tokens, r->resp->completion_tokens);
    }
    if (rc == SK_OK && r->cache)
        rc = buf_printf(&b, ",\"cache\":\"%s\"", r->cache);
    if (rc == SK_OK)
        rc = buf_printf(&b, ",\"start_ms\":%lld,\"latency_ms\":%lld,\"attempts\":%d",
                        r->start_ms, r->end_ms - r->start_ms, r->attempts);
    if (rc == SK_OK && r->err) {
        char *ej = err_json(r->err);
        if (ej) {
            rc = buf_adds(&b, ",\"error\":");
            if (rc == SK_OK)
                rc = buf_adds(&b, ej);
            free(ej);
        }
    }
    add_str(&b, &rc, "call", r->call);
    if (rc == SK_OK)
        rc = buf_adds(&b, "}\n");
    if (rc == SK_OK) {
        fwrite(b.p, 1, b.len, k->trace);
        fflush(k->trace);
    }
    buf_free(&b);
}

static void now_iso(char *when, size_t n)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(when, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

void trace_event(sk_kernel *k, const char *members)
{
    if (!k->trace || !members)
        return;
    char when[96];
    now_iso(when, sizeof when);
    fprintf(k->trace, "{\"time\":\"%s\",%s}\n", when, members);
    fflush(k->trace);
}

/* One line for the trace and the cassette alike: the scripted model skips
 * it when it replays a cassette, skein distill joins on its call id. */
void trace_call_end(sk_kernel *k, const char *call, const char *function,
                    sk_status st, const char *text, int redacted)
{
    FILE *rec = kern_record_file(k);
    if ((!k->trace && !rec) || !call || !function)
        return;
    sk_buf b;
    buf_init(&b, (size_t)64 << 20);
    sk_status rc = buf_adds(&b, "\"type\":\"call_end\"");
    add_str(&b, &rc, "call", call);
    add_str(&b, &rc, "function", function);
    add_str(&b, &rc, "status", sk_status_kind(st));
    if (st == SK_OK)
        add_str(&b, &rc, "answer", text ? text : "");
    if (rc == SK_OK && redacted)
        rc = buf_adds(&b, ",\"redacted\":true");
    if (rc == SK_OK) {
        trace_event(k, b.p);
        if (rec) {
            fprintf(rec, "{%s}\n", b.p);
            fflush(rec);
        }
    }
    buf_free(&b);
}

void sk_trace_event(sk_kernel *k, const char *json_members)
{
    if (k)
        trace_event(k, json_members);
}
