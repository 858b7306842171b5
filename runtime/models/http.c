/*
 * http.c -- what every HTTP model connector shares.
 *
 * A connector for a JSON-over-HTTP model server is two things: a wire
 * format (how a request body is built, how a reply, a streamed event and
 * an error body are read) and the machinery that moves bytes.  The wire
 * format is an http_proto; this file is the machinery: one CURL easy
 * handle per request in flight, recycled through a small per-connector
 * free list so the multi handle's connection pool is reused; the reply
 * ceiling enforced as bytes arrive; streams framed as SSE events or NDJSON
 * lines; retries as timers on the kernel's loop (never sleeps), honouring
 * Retry-After, with exponential backoff and full jitter otherwise; errors
 * mapped to SK_MODEL (an HTTP error), SK_NETWORK, SK_TIMEOUT, SK_PROTOCOL
 * (a reply or stream we cannot read) and SK_TOO_LARGE; and the API key
 * scrubbed from every error message.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "models/models.h"

#define MAX_RETRY_AFTER_MS 60000L
#define MAX_BACKOFF_MS 30000L
#define FREE_EASY_MAX 16
#define SERVER_MSG_MAX 300 /* bytes of a non-JSON error body we quote */

/* ======================================================================
 * Shared helpers
 * ====================================================================== */

char *http_scrub_key(char *s, const char *key)
{
    if (!s || !key || !*key)
        return s;
    size_t klen = strlen(key);
    if (!strstr(s, key))
        return s;
    sk_buf b;
    buf_init(&b, 0);
    const char *p = s, *hit;
    sk_status rc = SK_OK;
    while (rc == SK_OK && (hit = strstr(p, key))) {
        rc = buf_add(&b, p, (size_t)(hit - p));
        if (rc == SK_OK)
            rc = buf_adds(&b, "[redacted]");
        p = hit + klen;
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, p);
    if (rc != SK_OK) {
        buf_free(&b);
        for (char *h; (h = strstr(s, key));)
            memset(h, '*', klen);
        return s;
    }
    free(s);
    return buf_steal(&b);
}

char *http_body_excerpt(const char *p, size_t n)
{
    if (n > SERVER_MSG_MAX)
        n = SERVER_MSG_MAX;
    char *s = sk_malloc(n + 1);
    if (!s)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        char o = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
        if (o == ' ' && (j == 0 || s[j - 1] == ' '))
            continue;
        s[j++] = o;
    }
    while (j && s[j - 1] == ' ')
        j--;
    s[j] = '\0';
    return s;
}

int http_transport_error(int code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

int http_retryable_status(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

uint64_t http_rand(uint64_t *state)
{
    /* xorshift64* */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

long http_retry_delay_ms(void *easy, long status, int attempts, long base_ms,
                         uint64_t *rng)
{
    curl_off_t ra = 0;
    if (status && easy &&
        curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        return ra >= MAX_RETRY_AFTER_MS / 1000 ? MAX_RETRY_AFTER_MS
                                                : (long)ra * 1000;
    /* exponential backoff with full jitter: uniform in [0, base*2^n] */
    long cap = base_ms > 0 ? base_ms : 0;
    for (int i = 1; i < attempts && cap < MAX_BACKOFF_MS; i++)
        cap *= 2;
    if (cap > MAX_BACKOFF_MS)
        cap = MAX_BACKOFF_MS;
    return cap > 0 ? (long)(http_rand(rng) % (uint64_t)(cap + 1)) : 0;
}

model_resp *http_resp_new(void)
{
    model_resp *r = sk_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->prompt_tokens = r->completion_tokens = -1;
    r->attempts = 1;
    return r;
}

/* ======================================================================
 * The connector engine
 * ====================================================================== */

typedef struct http_conn {
    const http_proto *proto;
    char *url;      /* the endpoint every request is POSTed to */
    char *key;      /* secret scrubbed from errors, or NULL */
    char *model;    /* from the spec; a request may name another */
    char *shown;    /* url as errors and dry runs show it (secrets masked) */
    const char *key_env;  /* where the key comes from (static), or NULL */
    int key_required;     /* the server refuses requests without a key */
    struct curl_slist *headers;
    void *free_easy[FREE_EASY_MAX];
    size_t n_free;
    int refs;       /* the connector itself + requests in flight */
    uint64_t rng;   /* backoff jitter; per connector, no global state */
    slot_router *router; /* made at the first routed request */
} http_conn;

typedef struct http_call {
    http_conn *conn;
    sk_kernel *k;
    char *body;           /* request JSON, alive while curl sends it */
    size_t body_len;
    model_delta_fn on_delta;
    model_done_fn done;
    void *ud;
    int stream;
    int slot;             /* the server slot it was routed to, or -1 */
    unsigned slot_gen;    /* the router's table it was counted in */
    void *easy;
    int in_loop;          /* easy handle is on the loop */
    int in_write;         /* inside the write callback */
    int cancelled;        /* cancelled from inside the write callback */
    loop_timer *timer;    /* pending retry, or NULL */
    int attempts;
    /* per attempt */
    long status;          /* HTTP status, once headers are in */
    int stream_mode;      /* 2xx streamed reply to a streaming request */
    sk_buf rx;            /* raw body (non-streamed or error replies) */
    size_t rx_total;      /* all body bytes of this attempt */
    int too_large;
    sse_parser sse;       /* SSE framing */
    sk_buf line;          /* NDJSON framing: the unfinished line */
    model_resp *resp;     /* streamed reply being built */
    sk_buf text;          /* streamed text */
    int delivered;        /* deltas reached on_delta: never retry */
    /* Set by apply_event: > 0 once the end marker was seen (nothing after
     * it counts), < 0 once the reply is whole without one (later events
     * still count, and the stream may end there). */
    int ended;
    sk_err *stream_err;   /* an error found inside the stream */
    char errbuf[CURL_ERROR_SIZE];
    /* the idle timeout (see idle_check) */
    loop_timer *idle_timer;
    long long started_ms; /* when this attempt was handed to curl */
    long long last_io_ms; /* the last byte received (or sent) */
    curl_off_t sent_seen; /* request bytes sent at the last check */
    int got_bytes;        /* the reply has begun (a header or body byte) */
    int idle_hit;         /* this attempt was stopped by the idle timeout */
    int idle_suspect;     /* silent past the limit at the last look */
    const char *timeout;  /* which limit ended the call: "idle", "total",
                             "connect", or NULL */
    long timeout_ms;      /* that limit */
} http_call;

static void conn_unref(http_conn *c)
{
    if (!c || --c->refs > 0)
        return;
    for (size_t i = 0; i < c->n_free; i++)
        curl_easy_cleanup(c->free_easy[i]);
    curl_slist_free_all(c->headers);
    slot_router_free(c->router);
    if (c->key) {
        /* do not leave the key lying in freed memory */
        memset(c->key, 0, strlen(c->key));
        free(c->key);
    }
    free(c->url);
    free(c->shown);
    free(c->model);
    free(c);
}

/* An error whose message went through http_scrub_key.  NULL only when
 * memory ran out. */
static sk_err *conn_err(const http_conn *c, sk_status code, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_err *conn_err(const http_conn *c, sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err *e = err_newv(code, fmt, ap);
    va_end(ap);
    if (e)
        e->message = http_scrub_key(e->message, c->key);
    return e;
}

static void reset_attempt(http_call *call)
{
    call->status = 0;
    call->stream_mode = 0;
    buf_reset(&call->rx);
    call->rx_total = 0;
    call->too_large = 0;
    sse_free(&call->sse);
    sse_init(&call->sse, 0);
    buf_reset(&call->line);
    resp_free(call->resp);
    call->resp = NULL;
    buf_reset(&call->text);
    call->ended = 0;
    err_free(call->stream_err);
    call->stream_err = NULL;
    call->errbuf[0] = '\0';
    call->got_bytes = 0;
    call->idle_hit = 0;
    call->idle_suspect = 0;
    call->sent_seen = 0;
    call->started_ms = call->last_io_ms = loop_now_ms();
}

/* Returns the easy handle to the connector's free list (or frees it). */
static void release_easy(http_call *call)
{
    if (!call->easy)
        return;
    http_conn *c = call->conn;
    if (c->n_free < FREE_EASY_MAX)
        c->free_easy[c->n_free++] = call->easy;
    else
        curl_easy_cleanup(call->easy);
    call->easy = NULL;
}

static void call_free(http_call *call)
{
    if (!call)
        return;
    if (call->idle_timer)
        loop_cancel(call->k, call->idle_timer);
    if (call->slot >= 0)
        slot_done(call->conn->router, call->slot, call->slot_gen);
    release_easy(call);
    free(call->body);
    buf_free(&call->rx);
    sse_free(&call->sse);
    buf_free(&call->line);
    resp_free(call->resp);
    buf_free(&call->text);
    err_free(call->stream_err);
    http_conn *c = call->conn;
    free(call);
    conn_unref(c);
}

/* Ends the request: done takes resp or err.  call is freed first so that
 * done may start another request on the same connector. */
static void finish(http_call *call, sk_status st, model_resp *resp, sk_err *err)
{
    model_done_fn done = call->done;
    void *ud = call->ud;
    if (resp) {
        resp->attempts = call->attempts;
        resp->http_status = (int)call->status;
    }
    int attempts = call->attempts;
    const char *timeout = st == SK_TIMEOUT ? call->timeout : NULL;
    long timeout_ms = call->timeout_ms;
    call_free(call);
    if (st != SK_OK && !err)
        err = err_new(st, "%s", sk_strerror(st));
    /* how hard we tried, and which limit ended it, show in sk_error_json
     * and in Lua error tables */
    if (err && !err->detail_json && attempts > 0)
        err->detail_json =
            timeout ? sk_asprintf("{\"attempts\":%d,\"timeout\":\"%s\","
                                  "\"timeout_ms\":%ld}",
                                  attempts, timeout, timeout_ms)
                    : sk_asprintf("{\"attempts\":%d}", attempts);
    done(ud, st, st == SK_OK ? resp : NULL, st == SK_OK ? NULL : err);
}

/* ---- streaming --------------------------------------------------------- */

/* One framed event (SSE) or line (NDJSON, event ""): non-zero stops the
 * transfer, with call->stream_err set unless the call was cancelled. */
static int on_event(void *ud, const char *event, const char *data, size_t len)
{
    http_call *call = ud;
    http_conn *c = call->conn;
    if (call->ended > 0)
        return 0; /* nothing counts after the end marker */
    const char *delta = NULL;
    size_t dlen = 0;
    char *msg = NULL;
    sk_status rc = c->proto->apply_event(event, data, len, call->resp, &call->text,
                                         &delta, &dlen, &call->ended, &msg);
    if (rc != SK_OK) {
        if (rc == SK_NOMEM)
            call->stream_err = err_new(SK_NOMEM, "out of memory");
        else if (rc == SK_MODEL)
            call->stream_err = conn_err(c, rc, "error in stream from %s: %s",
                                        c->shown, msg ? msg : "(no message)");
        else
            call->stream_err = conn_err(c, rc, "bad stream from %s: %s", c->shown,
                                        msg ? msg : sk_strerror(rc));
        free(msg);
        return 1;
    }
    if (dlen && call->on_delta) {
        call->delivered = 1;
        call->on_delta(call->ud, delta, dlen);
        if (call->cancelled)
            return 1;
    }
    return 0;
}

/* Splits NDJSON into lines; blank lines are skipped. */
static sk_status feed_lines(http_call *call, const char *p, size_t n)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        sk_status rc = buf_add(&call->line, p, take);
        if (rc != SK_OK)
            return rc;
        if (!nl)
            return SK_OK;
        p += take + 1;
        n -= take + 1;
        size_t len = call->line.len;
        while (len && (call->line.p[len - 1] == '\r' || call->line.p[len - 1] == ' '))
            len--;
        int stop = len ? on_event(call, "", call->line.p, len) : 0;
        buf_reset(&call->line);
        if (stop)
            return SK_CANCELLED;
    }
    return SK_OK;
}

/* Decides, once the first body bytes arrive, whether this attempt is a
 * stream: a 2xx answer to a streaming request, with Content-Type
 * text/event-stream for SSE protocols (a server that ignores "stream" and
 * sends one JSON body is read as a plain reply).  NDJSON has no telling
 * content type everywhere, and one JSON object is a one-line stream. */
static void classify(http_call *call)
{
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    char *ct = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
    int ok = call->stream && call->status >= 200 && call->status < 300;
    if (call->conn->proto->ndjson)
        call->stream_mode = ok;
    else
        call->stream_mode = ok && ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    if (call->stream_mode && !call->resp)
        call->resp = http_resp_new();
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    http_call *call = ud;
    size_t n = size * nmemb;
    if (call->cancelled)
        return 0;
    call->got_bytes = 1;
    call->last_io_ms = loop_now_ms();
    if (!call->status)
        classify(call);
    size_t max = kern_net_settings(call->k)->max_response_bytes;
    if (max && (n > max || call->rx_total > max - n)) {
        call->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    call->rx_total += n;
    if (!call->stream_mode) {
        sk_status rc = buf_add(&call->rx, ptr, n);
        if (rc == SK_TOO_LARGE)
            call->too_large = 1;
        return rc == SK_OK ? n : 0;
    }
    if (!call->resp) {
        call->stream_err = err_new(SK_NOMEM, "out of memory");
        return 0;
    }
    call->in_write = 1;
    sk_status rc = call->conn->proto->ndjson
                       ? feed_lines(call, ptr, n)
                       : sse_feed(&call->sse, ptr, n, on_event, call);
    call->in_write = 0;
    if (rc == SK_OK)
        return n;
    if (!call->stream_err && rc == SK_TOO_LARGE)
        call->too_large = 1;
    else if (!call->stream_err && rc == SK_NOMEM)
        call->stream_err = err_new(SK_NOMEM, "out of memory");
    return 0;
}

/* ---- attempts and retries ---------------------------------------------- */

static void attempt(void *ud);

/* Schedules the next attempt if the retry budget allows.  Returns 1 when a
 * retry is scheduled (the call lives on), 0 when the caller must fail. */
static int maybe_retry(http_call *call)
{
    const kern_net *net = kern_net_settings(call->k);
    if (call->delivered || call->attempts > net->retries)
        return 0;
    long ms = http_retry_delay_ms(call->easy, call->status, call->attempts,
                                  net->retry_base_ms, &call->conn->rng);
    return loop_after(call->k, ms, attempt, call, &call->timer) == SK_OK;
}

/* A limit for a message: "300 ms", "30 s", "1.5 s".  Returns buf. */
static const char *secs(char buf[32], long ms)
{
    if (ms < 1000)
        snprintf(buf, 32, "%ld ms", ms);
    else
        snprintf(buf, 32, "%g s", (double)ms / 1000);
    return buf;
}

/* The error for a finished transfer that did not give a usable reply. */
static sk_err *transfer_error(http_call *call, int code)
{
    http_conn *c = call->conn;
    const kern_net *net = kern_net_settings(call->k);
    if (call->too_large)
        return conn_err(c, SK_TOO_LARGE, "reply from %s is larger than %zu bytes",
                        c->shown, net->max_response_bytes);
    if (call->stream_err) {
        sk_err *e = call->stream_err;
        call->stream_err = NULL;
        return e;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
        /* name the limit that was hit, and how to raise it */
        char t[32];
        double connect_s = 0;
        curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME, &connect_s);
        if (call->idle_hit) {
            call->timeout = "idle";
            call->timeout_ms = net->idle_timeout_ms;
            return conn_err(c, SK_TIMEOUT, "no bytes from %s for %s: the idle timeout "
                            "(raise it with --idle-timeout SECONDS, "
                            "SKEIN_IDLE_TIMEOUT or the option idle_timeout_ms)",
                            c->shown, secs(t, net->idle_timeout_ms));
        }
        if (connect_s <= 0 && net->connect_timeout_ms > 0 &&
            net->connect_timeout_ms < net->timeout_ms) {
            call->timeout = "connect";
            call->timeout_ms = net->connect_timeout_ms;
            return conn_err(c, SK_TIMEOUT, "could not connect to %s within %s: the "
                            "connect timeout (raise it with the option "
                            "connect_timeout_ms)",
                            c->shown, secs(t, net->connect_timeout_ms));
        }
        call->timeout = "total";
        call->timeout_ms = net->timeout_ms;
        return conn_err(c, SK_TIMEOUT, "no complete reply from %s within %s: the "
                        "total timeout per request (raise it with --timeout SECONDS, "
                        "SKEIN_TIMEOUT or the option timeout_ms)",
                        c->shown, secs(t, net->timeout_ms));
    }
    if (call->stream_mode)
        return conn_err(c, SK_PROTOCOL, "stream ended mid-reply from %s (%s)",
                        c->shown, call->errbuf[0] ? call->errbuf
                                                : curl_easy_strerror((CURLcode)code));
    return conn_err(c, SK_NETWORK, "%s: %s", c->shown,
                    call->errbuf[0] ? call->errbuf
                                    : curl_easy_strerror((CURLcode)code));
}

static sk_err *http_error(http_call *call)
{
    http_conn *c = call->conn;
    char *m = call->rx.p ? c->proto->error_message(call->rx.p, call->rx.len) : NULL;
    if (!m && call->rx.len)
        m = http_body_excerpt(call->rx.p, call->rx.len);
    /* what to do about it, where that is clear from here */
    char *hint = NULL;
    if ((call->status == 401 || call->status == 403) && c->key_env)
        hint = c->key ? sk_asprintf(" (the key in %s was refused)", c->key_env)
                      : sk_asprintf(" (no API key was sent: set %s)", c->key_env);
    else if (c->proto->hint)
        hint = c->proto->hint(c->shown, call->status);
    sk_err *e = conn_err(c, SK_MODEL, "HTTP %ld from %s: %s%s", call->status,
                         c->shown, m && *m ? m : "(no message)", hint ? hint : "");
    free(hint);
    free(m);
    if (e)
        e->http_status = (int)call->status;
    return e;
}

/* Turns a finished 2xx attempt into a reply, or an error. */
static void finish_ok(http_call *call)
{
    http_conn *c = call->conn;
    if (call->stream_mode) {
        /* an NDJSON stream's last line may lack its newline */
        if (!call->stream_err && call->line.len) {
            call->in_write = 1;
            sk_status rc = feed_lines(call, "\n", 1);
            call->in_write = 0;
            if (call->cancelled) {
                call_free(call);
                return;
            }
            if (rc == SK_NOMEM && !call->stream_err)
                call->stream_err = err_new(SK_NOMEM, "out of memory");
        }
        if (call->stream_err) {
            sk_err *e = call->stream_err;
            call->stream_err = NULL;
            finish(call, e ? e->code : SK_NOMEM, NULL, e);
            return;
        }
        if (!call->ended) {
            finish(call, SK_PROTOCOL, NULL,
                   conn_err(c, SK_PROTOCOL, "stream ended mid-reply from %s",
                            c->shown));
            return;
        }
        model_resp *r = call->resp;
        call->resp = NULL;
        r->text = buf_steal(&call->text);
        if (!r->text) {
            resp_free(r);
            finish(call, SK_NOMEM, NULL, NULL);
            return;
        }
        finish(call, SK_OK, r, NULL);
        return;
    }
    model_resp *r = NULL;
    char *msg = NULL;
    sk_status rc = call->rx.p ? c->proto->parse_reply(call->rx.p, call->rx.len, &r, &msg)
                              : c->proto->parse_reply("", 0, &r, &msg);
    if (rc == SK_OK) {
        if (call->stream && call->on_delta && r->text[0]) {
            /* a server that ignored "stream": deliver it all at once */
            call->in_write = 1;
            call->on_delta(call->ud, r->text, strlen(r->text));
            call->in_write = 0;
            if (call->cancelled) {
                resp_free(r);
                call_free(call);
                return;
            }
        }
        finish(call, SK_OK, r, NULL);
        return;
    }
    sk_err *e;
    if (rc == SK_NOMEM) {
        e = NULL;
    } else {
        char *ct = NULL;
        curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (ct && rc == SK_PROTOCOL && strncasecmp(ct, "application/json", 16) != 0)
            e = conn_err(c, rc, "bad reply from %s: %s (Content-Type %s)", c->shown,
                         msg ? msg : sk_strerror(rc), ct);
        else
            e = conn_err(c, rc, "bad reply from %s: %s", c->shown,
                         msg ? msg : sk_strerror(rc));
    }
    free(msg);
    finish(call, rc, NULL, e);
}

static void on_done(void *ud, int code)
{
    http_call *call = ud;
    call->in_loop = 0;
    if (call->idle_timer) {
        loop_cancel(call->k, call->idle_timer);
        call->idle_timer = NULL;
    }
    if (call->cancelled) {
        call_free(call);
        return;
    }
    if (!call->status)
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    if (code == CURLE_OK && call->status >= 200 && call->status < 300) {
        finish_ok(call);
        return;
    }
    if (code == CURLE_OK) {
        if (call->conn->proto->retryable(call->status) && maybe_retry(call))
            return;
        finish(call, SK_MODEL, NULL, http_error(call));
        return;
    }
    if (!call->too_large && !call->stream_err && http_transport_error(code) &&
        maybe_retry(call))
        return;
    sk_err *e = transfer_error(call, code);
    finish(call, e ? e->code : SK_NOMEM, NULL, e);
}

/* Any header line counts as the reply having begun. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    http_call *call = ud;
    (void)ptr;
    call->got_bytes = 1;
    call->last_io_ms = loop_now_ms();
    return size * nmemb;
}

static void idle_check(void *ud);

static void idle_arm(http_call *call, long ms)
{
    /* out of memory: no idle check, the total timeout still holds */
    if (loop_after(call->k, ms, idle_check, call, &call->idle_timer) != SK_OK)
        call->idle_timer = NULL;
}

/* The idle timeout: a reply may go silent for at most idle_timeout_ms.
 * Silence counts from the connection being ready (connecting has a
 * timeout of its own) and from every byte received or sent since.  A
 * request that is not streamed gets nothing back until the model has
 * written its whole reply, so until its first byte only the total
 * timeout bounds it; a streamed one gets headers and tokens as they come,
 * so silence there is a stall.  A stalled attempt ends as a timeout,
 * which is retried like any other. */
static void idle_check(void *ud)
{
    http_call *call = ud;
    call->idle_timer = NULL;
    long idle = kern_net_settings(call->k)->idle_timeout_ms;
    if (!call->in_loop || idle <= 0)
        return;
    long long now = loop_now_ms();
    curl_off_t ready_us = 0, sent = 0;
    curl_easy_getinfo(call->easy, CURLINFO_PRETRANSFER_TIME_T, &ready_us);
    curl_easy_getinfo(call->easy, CURLINFO_SIZE_UPLOAD_T, &sent);
    long long ready_ms = call->started_ms + ready_us / 1000;
    /* connected: curl says when, or bytes have gone either way */
    int ready = ready_us > 0 || sent > 0 || call->got_bytes;
    if (ready && sent != call->sent_seen) {
        /* a request already whole at the first look went out as the
         * connection became ready; one still going out was sent lately */
        int whole_at_once = call->sent_seen == 0 && sent >= (curl_off_t)call->body_len;
        if (!call->got_bytes)
            call->last_io_ms = whole_at_once ? ready_ms : now;
        call->sent_seen = sent;
    }
    if (!ready || (!call->stream && !call->got_bytes)) {
        idle_arm(call, idle);
        return;
    }
    long long from = call->last_io_ms > ready_ms ? call->last_io_ms : ready_ms;
    if (now - from < idle) {
        call->idle_suspect = 0;
        idle_arm(call, (long)(idle - (now - from)));
        return;
    }
    if (!call->idle_suspect) {
        /* timers run before transfers in a round of the loop: let curl
         * read what may already be waiting (a busy or slowed process)
         * before calling the server silent */
        call->idle_suspect = 1;
        idle_arm(call, 0);
        return;
    }
    loop_remove_easy(call->k, call->easy);
    call->idle_hit = 1;
    on_done(call, CURLE_OPERATION_TIMEDOUT);
}

static sk_status setup_easy(http_call *call)
{
    http_conn *c = call->conn;
    const kern_net *net = kern_net_settings(call->k);
    CURL *h = call->easy;
    curl_easy_reset(h);
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) \
    rc = curl_easy_setopt(h, opt, val)
    SET(CURLOPT_URL, c->url);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_POSTFIELDS, call->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, call);
    SET(CURLOPT_PRIVATE, call);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, net->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, net->timeout_ms);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#undef SET
    return rc == CURLE_OK ? SK_OK : SK_NOMEM;
}

/* One attempt: runs from start (first) or from a retry timer.  On failure
 * to even queue the transfer, finishes the call. */
static void attempt(void *ud)
{
    http_call *call = ud;
    call->timer = NULL;
    call->attempts++;
    reset_attempt(call);
    sk_status rc = setup_easy(call);
    if (rc == SK_OK)
        rc = loop_add_easy(call->k, call->easy, on_done, call);
    if (rc != SK_OK) {
        finish(call, rc, NULL,
               err_new(rc, "could not start a request to %s", call->conn->shown));
        return;
    }
    call->in_loop = 1;
    long idle = kern_net_settings(call->k)->idle_timeout_ms;
    if (idle > 0)
        idle_arm(call, idle);
}

/* The body of the request for req: what http_start sends and
 * http_describe shows, from the one builder.  Caller frees. */
static char *make_body(const http_conn *c, const model_req *req)
{
    return c->proto->request_json(req, req->model && *req->model ? req->model : c->model);
}

/* The slot count to route among: the option slots, for a server that has
 * slots (0: no routing). */
static int route_slots(const http_conn *c, sk_kernel *k)
{
    return c->proto->with_slot ? kern_net_settings(k)->slots : 0;
}

/* Pins *body to a slot chosen by its prefix (slots.c) when routing is on:
 * the call holds the slot until it is freed.  With commit zero (a dry
 * run), shows the choice and changes nothing.  SK_NOMEM. */
static sk_status route_body(http_conn *c, sk_kernel *k, char **body, int commit,
                            http_call *call)
{
    int n = route_slots(c, k);
    if (n <= 0)
        return SK_OK;
    if (!c->router && !(c->router = slot_router_new()))
        return SK_NOMEM;
    size_t len = strlen(*body);
    int slot = commit ? slot_route(c->router, n, *body, len, &call->slot_gen)
                      : slot_pick(c->router, n, *body, len);
    if (slot < 0)
        return SK_NOMEM;
    char *pinned = c->proto->with_slot(*body, slot);
    if (!pinned) {
        if (commit)
            slot_done(c->router, slot, call->slot_gen);
        return SK_NOMEM;
    }
    free(*body);
    *body = pinned;
    if (commit)
        call->slot = slot;
    return SK_OK;
}

/* Why a request may not go out: no key for a server that needs one.
 * Caller frees. */
static char *missing_key(const http_conn *c)
{
    return sk_asprintf("no API key for %s: set %s", c->shown,
                       c->key_env ? c->key_env : "the connector's key");
}

sk_status http_describe(void *self, sk_kernel *k, const model_req *req, char **out,
                        sk_err **err)
{
    http_conn *c = self;
    *out = NULL;
    *err = NULL;
    char *body = make_body(c, req);
    if (!body)
        return SK_NOMEM;
    if (route_body(c, k, &body, 0, NULL) != SK_OK) {
        free(body);
        return SK_NOMEM;
    }
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_adds(&b, "{\"method\":\"POST\",\"url\":");
    if (rc == SK_OK)
        rc = buf_add_json_str(&b, c->shown, strlen(c->shown));
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"headers\":[");
    int first = 1;
    for (const struct curl_slist *h = c->headers; rc == SK_OK && h; h = h->next) {
        size_t n = strlen(h->data);
        if (n && h->data[n - 1] == ':')
            continue; /* "Name:" tells curl to leave a header out */
        char *line = http_scrub_key(sk_strdup(h->data), c->key);
        if (!line) {
            rc = SK_NOMEM;
            break;
        }
        if (!first)
            rc = buf_addc(&b, ',');
        if (rc == SK_OK)
            rc = buf_add_json_str(&b, line, strlen(line));
        first = 0;
        free(line);
    }
    if (rc == SK_OK)
        rc = buf_addc(&b, ']');
    if (rc == SK_OK && c->key_env)
        rc = c->key ? buf_printf(&b, ",\"key\":\"from %s\"", c->key_env)
                    : buf_printf(&b, ",\"key\":\"none (%s is not set)\"", c->key_env);
    if (rc == SK_OK && c->key_required && !c->key) {
        char *why = missing_key(c);
        rc = why ? buf_adds(&b, ",\"problem\":") : SK_NOMEM;
        if (rc == SK_OK)
            rc = buf_add_json_str(&b, why, strlen(why));
        free(why);
    }
    if (rc == SK_OK)
        rc = buf_adds(&b, ",\"body\":");
    if (rc == SK_OK)
        rc = buf_add_json_str(&b, body, strlen(body));
    if (rc == SK_OK)
        rc = buf_addc(&b, '}');
    free(body);
    if (rc != SK_OK) {
        buf_free(&b);
        return rc;
    }
    *out = buf_steal(&b);
    return *out ? SK_OK : SK_NOMEM;
}

sk_status http_start(void *self, sk_kernel *k, const model_req *req,
                     model_delta_fn on_delta, model_done_fn done, void *ud,
                     void **handle, sk_err **err)
{
    http_conn *c = self;
    *err = NULL;
    if (handle)
        *handle = NULL;
    if (c->key_required && !c->key) {
        /* caught before it goes out: the server would answer 401 */
        char *why = missing_key(c);
        *err = why ? err_new(SK_CONFIG, "%s", why) : NULL;
        free(why);
        return *err ? SK_CONFIG : SK_NOMEM;
    }
    http_call *call = sk_calloc(1, sizeof *call);
    if (!call)
        return SK_NOMEM;
    call->conn = c;
    c->refs++;
    call->k = k;
    call->slot = -1;
    call->on_delta = on_delta;
    call->done = done;
    call->ud = ud;
    call->stream = req->stream;
    size_t max = kern_net_settings(k)->max_response_bytes;
    /* The body ceiling is enforced in on_write against all the bytes of an
     * attempt; the buffers' own ceilings only back it up. */
    buf_init(&call->rx, max);
    buf_init(&call->text, max);
    buf_init(&call->line, max);
    sse_init(&call->sse, 0);
    call->body = make_body(c, req);
    if (!call->body || route_body(c, k, &call->body, 1, call) != SK_OK) {
        call_free(call);
        return SK_NOMEM;
    }
    call->body_len = strlen(call->body);
    if (c->n_free)
        call->easy = c->free_easy[--c->n_free];
    else if (!(call->easy = curl_easy_init())) {
        call_free(call);
        *err = err_new(SK_NOMEM, "could not create an HTTP handle");
        return SK_NOMEM;
    }
    call->attempts = 1;
    reset_attempt(call);
    sk_status rc = setup_easy(call);
    if (rc == SK_OK)
        rc = loop_add_easy(k, call->easy, on_done, call);
    if (rc != SK_OK) {
        call_free(call);
        *err = err_new(rc, "could not start a request to %s", c->shown);
        return rc;
    }
    call->in_loop = 1;
    if (kern_net_settings(k)->idle_timeout_ms > 0)
        idle_arm(call, kern_net_settings(k)->idle_timeout_ms);
    if (handle)
        *handle = call;
    return SK_OK;
}

void http_cancel(void *self, sk_kernel *k, void *handle)
{
    (void)self;
    http_call *call = handle;
    if (!call)
        return;
    if (call->in_write) {
        /* curl forbids removing a handle from inside its own callback:
         * on_write aborts the transfer and on_done frees the call. */
        call->cancelled = 1;
        call->done = NULL;
        return;
    }
    if (call->timer) {
        loop_cancel(k, call->timer);
        call->timer = NULL;
    }
    if (call->in_loop) {
        loop_remove_easy(k, call->easy);
        call->in_loop = 0;
    }
    call_free(call);
}

void http_destroy(void *self) { conn_unref(self); }

void http_conn_set_auth(void *self, const char *key_env, int required)
{
    http_conn *c = self;
    c->key_env = key_env;
    c->key_required = required;
}

void *http_conn_new(const http_proto *proto, const char *url, const char *model,
                    const char *key, const char *const *headers, size_t n_headers)
{
    http_conn *c = sk_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->proto = proto;
    c->refs = 1;
    c->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
             (uint64_t)(uintptr_t)c;
    if (!c->rng)
        c->rng = 0x9e3779b97f4a7c15ULL;
    if (!(c->url = sk_strdup(url)) || !(c->shown = url_mask(url)) ||
        !(c->model = sk_strdup(model)))
        goto nomem;
    if (key && *key && !(c->key = sk_strdup(key)))
        goto nomem;
    /* "Expect:" stops curl waiting for 100-continue on large prompts. */
    const char *fixed[] = {"Content-Type: application/json", "Expect:"};
    struct curl_slist *h;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed + n_headers; i++) {
        const char *line = i < 2 ? fixed[i] : headers[i - 2];
        if (!(h = curl_slist_append(c->headers, line)))
            goto nomem;
        c->headers = h;
    }
    return c;
nomem:
    conn_unref(c);
    return NULL;
}

/* ---- base URLs --------------------------------------------------------- */

const char *http_find_base(const char *rest)
{
    for (const char *at = strchr(rest, '@'); at; at = strchr(at + 1, '@'))
        if (strncmp(at + 1, "http://", 7) == 0 ||
            strncmp(at + 1, "https://", 8) == 0)
            return at;
    return NULL;
}

/* ---- building JSON bodies ---------------------------------------------- */

sk_status http_json_number(sk_buf *b, double d)
{
    char s[64];
    snprintf(s, sizeof s, "%.15g", d);
    if (strtod(s, NULL) != d)
        snprintf(s, sizeof s, "%.17g", d);
    return buf_adds(b, s);
}

sk_status http_json_key(sk_buf *b, int comma, const char *key)
{
    sk_status rc = comma ? buf_addc(b, ',') : SK_OK;
    if (rc == SK_OK)
        rc = buf_add_json_str(b, key, strlen(key));
    if (rc == SK_OK)
        rc = buf_addc(b, ':');
    return rc;
}

sk_status http_json_strs(sk_buf *b, char *const *v, size_t n)
{
    sk_status rc = buf_addc(b, '[');
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        const char *s = v[i] ? v[i] : "";
        if (i)
            rc = buf_addc(b, ',');
        if (rc == SK_OK)
            rc = buf_add_json_str(b, s, strlen(s));
    }
    return rc == SK_OK ? buf_addc(b, ']') : rc;
}

/* ---- tool calls --------------------------------------------------------- */

sk_tool_call *http_call_at(model_resp *r, int index, int *too_many)
{
    *too_many = 0;
    for (size_t i = 0; i < r->n_calls; i++)
        if (r->calls[i].index == index)
            return &r->calls[i];
    if (r->n_calls >= TOOL_CALLS_MAX) {
        *too_many = 1;
        return NULL;
    }
    sk_tool_call *grown = sk_realloc(r->calls, (r->n_calls + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    r->calls = grown;
    sk_tool_call *c = &r->calls[r->n_calls++];
    memset(c, 0, sizeof *c);
    c->index = index;
    return c;
}

sk_status http_str_append(char **slot, const char *s)
{
    char *joined = sk_asprintf("%s%s", *slot ? *slot : "", s ? s : "");
    if (!joined)
        return SK_NOMEM;
    free(*slot);
    *slot = joined;
    return SK_OK;
}

char *http_args_text(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return sk_strdup("");
    if (cJSON_IsString(v))
        return sk_strdup(v->valuestring);
    char *p = cJSON_PrintUnformatted(v);
    char *copy = p ? sk_strdup(p) : NULL;
    cJSON_free(p);
    return copy;
}

sk_status http_json_args(sk_buf *b, const char *arguments)
{
    cJSON *o = arguments ? cJSON_Parse(arguments) : NULL;
    char *p = cJSON_IsObject(o) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    sk_status rc = buf_adds(b, p ? p : "{}");
    cJSON_free(p);
    return rc;
}

sk_status http_json_tools(sk_buf *b, const model_req *req, const char *no_params,
                          int with_strict)
{
    sk_status rc = buf_adds(b, ",\"tools\":[");
    for (size_t i = 0; rc == SK_OK && i < req->n_tools; i++) {
        const tool_def *t = &req->tools[i];
        rc = buf_adds(b, i ? ",{\"type\":\"function\",\"function\":{\"name\":"
                           : "{\"type\":\"function\",\"function\":{\"name\":");
        if (rc == SK_OK)
            rc = buf_add_json_str(b, t->name ? t->name : "", t->name ? strlen(t->name) : 0);
        if (rc == SK_OK && t->description && *t->description) {
            rc = http_json_key(b, 1, "description");
            if (rc == SK_OK)
                rc = buf_add_json_str(b, t->description, strlen(t->description));
        }
        if (rc == SK_OK)
            rc = http_json_key(b, 1, "parameters");
        if (rc == SK_OK)
            rc = buf_adds(b, t->parameters ? t->parameters : no_params);
        if (rc == SK_OK && with_strict && t->strict)
            rc = buf_adds(b, ",\"strict\":true");
        if (rc == SK_OK)
            rc = buf_adds(b, "}}");
    }
    return rc == SK_OK ? buf_addc(b, ']') : rc;
}

