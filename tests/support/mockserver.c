/*
 * mockserver.c -- a loopback HTTP/1.1 server that plays canned model
 * replies, for tests and benchmarks.
 *
 *     skein-mockserver SCENARIO.json
 *
 * Binds 127.0.0.1 on an ephemeral port and prints the port and a newline
 * on stdout once it listens (tests/support/testutil.c reads that line).
 * Single-threaded and poll()-based; delays are timers, so 1000 concurrent
 * connections each waiting 50 ms cost nothing.  Keep-alive, TCP_NODELAY,
 * Content-Length and chunked request bodies, up to 1024 connections.
 * Exits on SIGTERM, or by itself after idle_exit_ms with no connection open
 * so that a crashed test never leaves it running.
 *
 * Scenario (every key optional):
 *
 *   { "log": "/tmp/requests.jsonl",  one JSON line per request:
 *                                    {"inflight","method","path","headers":
 *                                    {..},"body"} (header names lower-cased;
 *                                    inflight: requests being answered when
 *                                    it arrived, itself included)
 *     "idle_exit_ms": 30000,
 *     "echo": false,                 true: reply with a chat completion
 *                                    whose content is the request's last
 *                                    user message (when no response fits)
 *     "echo_nonce": false,           true: the echo ends " #N", N the
 *                                    request's number (1, 2, ...; "n" in
 *                                    the log), so that no two replies are
 *                                    alike, as at a temperature above 0
 *     "echo_delay_ms": 0,            before an echo starts
 *     "embeddings": false,           true: answer POSTs to .../embeddings
 *                                    (OpenAI) and .../api/embed (Ollama)
 *                                    that no "match" response takes with
 *                                    deterministic vectors: each word
 *                                    (lower-cased, a few synonyms folded:
 *                                    car/automobile/vehicle, dog/puppy/
 *                                    canine, money/cash/funds/budget)
 *                                    adds 1 to a dimension chosen by its
 *                                    hash, of "embedding_dims" (64)
 *     "responses": [                 served in order; the last one repeats
 *       { "status": 200,
 *         "headers": {"Retry-After": "1"},
 *         one body form:
 *         "body": "raw text",        Content-Type application/json unless
 *                                    "headers" sets one
 *         "json": {...},             serialised
 *         "reply": "text",           a complete chat.completion with this
 *                                    content; "logprobs": [["tok", -0.1],..]
 *                                    adds logprobs, "usage": {"prompt_tokens":
 *                                    N, "completion_tokens": M} overrides the
 *                                    default usage (word counts of the
 *                                    request's messages and of the text)
 *         "sse": ["data1", {..}],    an event stream (chunked): each item
 *                                    (a string, or JSON serialised) sent as
 *                                    "data: ITEM\n\n", chunk_delay_ms apart
 *         "stream": "text",          chat.completion.chunk events, one per
 *                                    word, then finish_reason, usage and
 *                                    [DONE]; "logprobs" attach one per word
 *         "chunks": ["raw", {..}],   a chunked body (NDJSON streams): each
 *                                    string sent as is, each JSON value
 *                                    serialised with a newline, one body
 *                                    chunk each, chunk_delay_ms apart;
 *                                    Content-Type application/x-ndjson
 *         "sse_events": [["type", {..}], ...]   typed events (Anthropic):
 *                                    "event: TYPE\ndata: JSON\n\n" each
 *                                    (type "" leaves out the event line; a
 *                                    string data is sent as is); streams
 *                                    like "sse"
 *         "delay_ms": 0,             before the response starts
 *         "chunk_delay_ms": 0,       between events (and trickled bytes)
 *         "action": "close"          close without replying
 *                 | "reset"          RST (SO_LINGER 0)
 *                 | "stall"          accept the request, never reply
 *                 | "cut"            headers and half the body/stream (half
 *                                    the events or chunks), close
 *                 | "reset_mid"      as "cut", then RST instead of FIN
 *                 | "stall_mid"      as "cut", then silence with the
 *                                    connection open
 *                 | "trickle"        one byte every chunk_delay_ms
 *                 | "oversize"       an endless body
 *                 | "wrong_type",    200 with Content-Type text/html
 *         "match": "substring"       served only to requests whose body
 *                                    contains it; matching responses are
 *                                    tried first and are not in the order
 *         "tool_calls": [            a reply that calls tools:
 *           {"id": "call_1",         (made up when absent)
 *            "name": "Text-Upper",
 *            "arguments": {..} | "raw text"} ],
 *         "content": "text",         text beside them
 *         "format": "openai"         the wire format of a "tool_calls" or
 *                 | "anthropic"      "reply" response: chat.completion,
 *                 | "ollama",        Anthropic's message, Ollama's /api/chat
 *         "stream": true             streamed in that format (OpenAI
 *                                    deltas with arguments in two pieces,
 *                                    Anthropic events with input_json_delta,
 *                                    Ollama NDJSON)
 *       } ] }
 *
 * Each logged request also carries what tool calling it held, in any of
 * the three formats: "tools" (the names offered), "tool_choice" (as sent)
 * and "tool_results" ([{"id", "content", "is_error"}]); and llama.cpp's
 * slot fields when the body has them: "id_slot" and "cache_prompt", as
 * sent.
 *
 * A request that no response fits (every response has "match", none
 * matched, and no echo) gets a 500 with an error body.
 */
#define _GNU_SOURCE /* accept4 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_BODY_BYTES ((size_t)64 << 20)
#define ENDLESS_CHUNK 65536

enum end_action { END_KEEP, END_CLOSE, END_RESET, END_STALL, END_ENDLESS };

typedef struct seg {
    char *p;
    size_t n;
    long delay_ms; /* wait before sending this segment */
} seg;

typedef struct conn {
    int fd;
    char *in;
    size_t in_len, in_cap;
    int responding;       /* a response is in progress */
    seg *segs;
    size_t n_segs, cur, off;
    long long next_at;    /* when segs[cur] may start; 0: now */
    enum end_action end;
    int close_after;      /* the request said Connection: close */
    size_t endless_off;
} conn;

static cJSON *scenario;
static cJSON *responses;   /* array, or NULL */
static int echo_mode;
static int echo_nonce;
static long echo_delay_ms;
static int embeddings_mode;
static int embedding_dims = 64;
static long n_requests; /* requests received, the one being planned included */
static int log_fd = -1;
static long idle_exit_ms = 30000;
static long served_in_order;
static conn *conns[MAX_CONNS];
static size_t n_conns;
static char endless_block[ENDLESS_CHUNK + 16];
static size_t endless_len;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "skein-mockserver: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- small string builder ---------------------------------------------- */

typedef struct sb {
    char *p;
    size_t len, cap;
} sb;

static void sb_add(sb *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(sb *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("bad format");
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, s, (size_t)n);
    free(s);
}

/* ---- requests ---------------------------------------------------------- */

typedef struct request {
    char *method, *path;
    cJSON *headers; /* object, lower-cased names */
    char *body;
    size_t body_len;
    int close;
    int expect_continue;
} request;

static void request_free(request *r)
{
    free(r->method);
    free(r->path);
    cJSON_Delete(r->headers);
    free(r->body);
}

static const char *find_crlfcrlf(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
            return p + i;
    return NULL;
}

/* Decodes a chunked body starting at p.  Returns the bytes consumed, 0 if
 * incomplete, -1 if malformed. */
static long decode_chunked(const char *p, size_t n, sb *out)
{
    size_t i = 0;
    for (;;) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol)
            return 0;
        char *end;
        unsigned long sz = strtoul(p + i, &end, 16);
        if (end == p + i)
            return -1;
        i = (size_t)(eol - p) + 2;
        if (sz == 0) {
            /* trailers until an empty line */
            for (;;) {
                const char *e = memmem(p + i, n - i, "\r\n", 2);
                if (!e)
                    return 0;
                size_t linelen = (size_t)(e - (p + i));
                i += linelen + 2;
                if (linelen == 0)
                    return (long)i;
            }
        }
        if (sz > MAX_BODY_BYTES || out->len + sz > MAX_BODY_BYTES)
            return -1;
        if (n - i < sz + 2)
            return 0;
        sb_add(out, p + i, sz);
        i += sz + 2;
    }
}

/* Parses one request from the front of c->in.  Returns 1 and fills r
 * (removing the bytes) when complete, 0 when more is needed, -1 when
 * malformed or too large. */
static int parse_request(conn *c, request *r)
{
    memset(r, 0, sizeof *r);
    const char *hend = find_crlfcrlf(c->in, c->in_len);
    if (!hend)
        return c->in_len > MAX_HEADER_BYTES ? -1 : 0;
    size_t head_len = (size_t)(hend - c->in) + 4;
    const char *line_end = memmem(c->in, head_len, "\r\n", 2);
    const char *sp1 = memchr(c->in, ' ', (size_t)(line_end - c->in));
    if (!sp1)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (!sp2)
        return -1;
    cJSON *headers = cJSON_CreateObject();
    long content_length = -1;
    int chunked = 0, close = 0, expect = 0;
    if (strncmp(sp2 + 1, "HTTP/1.0", 8) == 0)
        close = 1;
    const char *h = line_end + 2;
    while (h < hend) {
        const char *e = memmem(h, (size_t)(hend + 2 - h), "\r\n", 2);
        const char *colon = memchr(h, ':', (size_t)(e - h));
        if (colon) {
            char *name = xstrndup(h, (size_t)(colon - h));
            for (char *q = name; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            const char *v = colon + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            char *value = xstrndup(v, (size_t)(e - v));
            if (strcmp(name, "content-length") == 0)
                content_length = atol(value);
            else if (strcmp(name, "transfer-encoding") == 0 && strcasestr(value, "chunked"))
                chunked = 1;
            else if (strcmp(name, "connection") == 0) {
                if (strcasestr(value, "close"))
                    close = 1;
                else if (strcasestr(value, "keep-alive"))
                    close = 0;
            } else if (strcmp(name, "expect") == 0 && strcasestr(value, "100-continue"))
                expect = 1;
            cJSON_DeleteItemFromObjectCaseSensitive(headers, name);
            cJSON_AddStringToObject(headers, name, value);
            free(name);
            free(value);
        }
        h = e + 2;
    }
    sb body = {0};
    size_t consumed;
    if (chunked) {
        long used = decode_chunked(c->in + head_len, c->in_len - head_len, &body);
        if (used <= 0) {
            free(body.p);
            cJSON_Delete(headers);
            if (used == 0 && expect && !c->responding) {
                r->expect_continue = 1; /* the caller answers 100 */
            }
            return used == 0 ? 0 : -1;
        }
        consumed = head_len + (size_t)used;
    } else {
        if (content_length < 0)
            content_length = 0;
        if ((size_t)content_length > MAX_BODY_BYTES) {
            cJSON_Delete(headers);
            return -1;
        }
        if (c->in_len - head_len < (size_t)content_length) {
            cJSON_Delete(headers);
            if (expect)
                r->expect_continue = 1;
            return 0;
        }
        sb_add(&body, c->in + head_len, (size_t)content_length);
        consumed = head_len + (size_t)content_length;
    }
    r->method = xstrndup(c->in, (size_t)(sp1 - c->in));
    r->path = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    r->headers = headers;
    r->body = body.p ? body.p : xstrndup("", 0);
    r->body_len = body.len;
    r->close = close;
    memmove(c->in, c->in + consumed, c->in_len - consumed);
    c->in_len -= consumed;
    return 1;
}

/* Requests being answered now, this one included: what the server sees
 * in flight, for tests that measure concurrency where it happens. */
static int in_flight(void);

static void log_tool_fields(cJSON *o, const char *body, size_t len);

/* llama.cpp's id_slot and cache_prompt, copied as sent. */
static void log_slot_fields(cJSON *o, const char *body, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    const char *names[] = {"id_slot", "cache_prompt"};
    for (size_t i = 0; cJSON_IsObject(req) && i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, names[i]);
        if (v)
            cJSON_AddItemToObject(o, names[i], cJSON_Duplicate(v, 1));
    }
    cJSON_Delete(req);
}

static void log_request(const request *r)
{
    if (log_fd < 0)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "inflight", in_flight() + 1);
    cJSON_AddNumberToObject(o, "n", (double)n_requests);
    cJSON_AddStringToObject(o, "method", r->method);
    cJSON_AddStringToObject(o, "path", r->path);
    cJSON_AddItemReferenceToObject(o, "headers", r->headers);
    cJSON_AddStringToObject(o, "body", r->body);
    log_tool_fields(o, r->body, r->body_len);
    log_slot_fields(o, r->body, r->body_len);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = strlen(s);
    s[n] = '\n'; /* overwrites the NUL: write n + 1 bytes in one call */
    if (write(log_fd, s, n + 1) < 0)
        perror("skein-mockserver: log");
    free(s);
}

/* ---- tool calling in the log ------------------------------------------- */

/* Adds to o what the request body holds of tool calling, whatever its
 * format: the tools' names, tool_choice, and the tool results it sends
 * back (OpenAI and Ollama tool messages, Anthropic tool_result blocks). */
static void log_tool_fields(cJSON *o, const char *body, size_t len)
{
    cJSON *req = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return;
    }
    const cJSON *tools = cJSON_GetObjectItem(req, "tools");
    if (cJSON_IsArray(tools)) {
        cJSON *names = cJSON_AddArrayToObject(o, "tools");
        const cJSON *t;
        cJSON_ArrayForEach(t, tools)
        {
            const cJSON *fn = cJSON_GetObjectItem(t, "function");
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(fn ? fn : t, "name"));
            cJSON_AddItemToArray(names, cJSON_CreateString(name ? name : ""));
        }
    }
    const cJSON *choice = cJSON_GetObjectItem(req, "tool_choice");
    if (choice)
        cJSON_AddItemToObject(o, "tool_choice", cJSON_Duplicate(choice, 1));
    cJSON *results = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(req, "messages"))
    {
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(m, "role"));
        const cJSON *content = cJSON_GetObjectItem(m, "content");
        if (role && strcmp(role, "tool") == 0) {
            cJSON *e = cJSON_CreateObject();
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(m, "tool_call_id"));
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "tool_name"));
            cJSON_AddStringToObject(e, "id", id ? id : name ? name : "");
            cJSON_AddStringToObject(e, "content", cJSON_IsString(content) ? content->valuestring : "");
            cJSON_AddItemToArray(results, e);
            continue;
        }
        const cJSON *blk;
        const cJSON *blocks = cJSON_IsArray(content) ? content : NULL;
        cJSON_ArrayForEach(blk, blocks)
        {
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(blk, "type"));
            if (!type || strcmp(type, "tool_result") != 0)
                continue;
            cJSON *e = cJSON_CreateObject();
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(blk, "tool_use_id"));
            const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(blk, "content"));
            cJSON_AddStringToObject(e, "id", id ? id : "");
            cJSON_AddStringToObject(e, "content", text ? text : "");
            if (cJSON_IsTrue(cJSON_GetObjectItem(blk, "is_error")))
                cJSON_AddTrueToObject(e, "is_error");
            cJSON_AddItemToArray(results, e);
        }
    }
    if (cJSON_GetArraySize(results))
        cJSON_AddItemToObject(o, "tool_results", results);
    else
        cJSON_Delete(results);
    cJSON_Delete(req);
}

/* ---- responses --------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return "Status";
    }
}

static long count_words(const char *s)
{
    long n = 0;
    int in = 0;
    for (; s && *s; s++) {
        if (isspace((unsigned char)*s))
            in = 0;
        else if (!in) {
            in = 1;
            n++;
        }
    }
    return n;
}

/* Word count of every message's content: the default prompt_tokens. */
static long prompt_words(const cJSON *req)
{
    long n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(req, "messages"))
        n += count_words(cJSON_GetStringValue(cJSON_GetObjectItem(m, "content")));
    return n;
}

static const char *last_user_message(const cJSON *req)
{
    const char *text = "";
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(req, "messages"))
    {
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(m, "role"));
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(m, "content"));
        if (role && strcmp(role, "user") == 0 && content)
            text = content;
    }
    return text;
}

static const char *model_of(const cJSON *req)
{
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(req, "model"));
    return m ? m : "mock-model";
}

static void add_usage(cJSON *o, const cJSON *spec, const cJSON *req, const char *text)
{
    const cJSON *u = spec ? cJSON_GetObjectItem(spec, "usage") : NULL;
    long pt = prompt_words(req), ct = count_words(text);
    if (cJSON_IsObject(u)) {
        const cJSON *p = cJSON_GetObjectItem(u, "prompt_tokens");
        const cJSON *q = cJSON_GetObjectItem(u, "completion_tokens");
        if (cJSON_IsNumber(p))
            pt = (long)p->valuedouble;
        if (cJSON_IsNumber(q))
            ct = (long)q->valuedouble;
    }
    cJSON *usage = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", (double)pt);
    cJSON_AddNumberToObject(usage, "completion_tokens", (double)ct);
    cJSON_AddNumberToObject(usage, "total_tokens", (double)(pt + ct));
}

/* logprobs entries [tok, lp] from..to of the spec, as a content array. */
static cJSON *logprob_content(const cJSON *lps, int from, int to)
{
    cJSON *content = cJSON_CreateArray();
    for (int i = from; i < to; i++) {
        const cJSON *pair = cJSON_GetArrayItem(lps, i);
        const char *tok = cJSON_GetStringValue(cJSON_GetArrayItem(pair, 0));
        const cJSON *lp = cJSON_GetArrayItem(pair, 1);
        if (!tok || !cJSON_IsNumber(lp))
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "token", tok);
        cJSON_AddNumberToObject(e, "logprob", lp->valuedouble);
        cJSON_AddItemToObject(e, "top_logprobs", cJSON_CreateArray());
        cJSON_AddItemToArray(content, e);
    }
    return content;
}

static char *completion_json(const cJSON *spec, const cJSON *req, const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "chatcmpl-mock");
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", model_of(req));
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", text);
    const cJSON *lps = spec ? cJSON_GetObjectItem(spec, "logprobs") : NULL;
    if (cJSON_IsArray(lps)) {
        cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(lp, "content",
                              logprob_content(lps, 0, cJSON_GetArraySize(lps)));
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    cJSON_AddStringToObject(ch, "finish_reason", "stop");
    add_usage(o, spec, req, text);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static cJSON *chunk_base(const cJSON *req)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "chatcmpl-mock");
    cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", model_of(req));
    return o;
}

/* One chunk: delta content (NULL: none), finish reason (NULL: null). */
static char *chunk_json(const cJSON *req, const char *role, const char *content,
                        size_t content_len, const char *finish, cJSON *logprobs)
{
    cJSON *o = chunk_base(req);
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *d = cJSON_AddObjectToObject(ch, "delta");
    if (role)
        cJSON_AddStringToObject(d, "role", role);
    if (content) {
        char *c = xstrndup(content, content_len);
        cJSON_AddStringToObject(d, "content", c);
        free(c);
    }
    if (logprobs) {
        cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(lp, "content", logprobs);
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static void sl_push(strlist *l, char *s)
{
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v)
        die("out of memory");
    l->v = v;
    l->v[l->n++] = s;
}

/* The "stream" shorthand: role chunk, one chunk per word (with its leading
 * whitespace), a finish chunk, a usage chunk, [DONE]. */
static void stream_events(const cJSON *spec, const cJSON *req, const char *text,
                          strlist *ev)
{
    sl_push(ev, chunk_json(req, "assistant", "", 0, NULL, NULL));
    const cJSON *lps = cJSON_GetObjectItem(spec, "logprobs");
    int word = 0;
    const char *p = text;
    while (*p) {
        const char *s = p;
        while (*p && isspace((unsigned char)*p))
            p++;
        while (*p && !isspace((unsigned char)*p))
            p++;
        cJSON *lp = NULL;
        if (cJSON_IsArray(lps) && word < cJSON_GetArraySize(lps))
            lp = logprob_content(lps, word, word + 1);
        sl_push(ev, chunk_json(req, NULL, s, (size_t)(p - s), NULL, lp));
        word++;
    }
    sl_push(ev, chunk_json(req, NULL, NULL, 0, "stop", NULL));
    cJSON *u = chunk_base(req);
    cJSON_AddArrayToObject(u, "choices");
    add_usage(u, spec, req, text);
    sl_push(ev, cJSON_PrintUnformatted(u));
    cJSON_Delete(u);
    sl_push(ev, xstrndup("[DONE]", 6));
}

static void conn_add_seg(conn *c, char *p, size_t n, long delay)
{
    seg *s = realloc(c->segs, (c->n_segs + 1) * sizeof *s);
    if (!s)
        die("out of memory");
    c->segs = s;
    c->segs[c->n_segs].p = p;
    c->segs[c->n_segs].n = n;
    c->segs[c->n_segs].delay_ms = delay;
    c->n_segs++;
}

static long num_field(const cJSON *spec, const char *name, long dflt)
{
    const cJSON *v = spec ? cJSON_GetObjectItem(spec, name) : NULL;
    return cJSON_IsNumber(v) ? (long)v->valuedouble : dflt;
}

static const cJSON *pick_response(const request *r)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, responses)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(item, "match"));
        if (m && strstr(r->body, m))
            return item;
    }
    const cJSON *ordered[256];
    int n = 0;
    cJSON_ArrayForEach(item, responses)
    {
        if (!cJSON_GetObjectItem(item, "match") && n < 256)
            ordered[n++] = item;
    }
    if (n == 0)
        return NULL;
    long i = served_in_order++;
    return ordered[i < n ? i : n - 1];
}

/* Adds the header block (with the scenario's extra headers) to b. */
static void add_head(sb *b, int status, const cJSON *spec, const char *ctype,
                     long content_length, int chunked, int close)
{
    sb_printf(b, "HTTP/1.1 %d %s\r\n", status, reason(status));
    int has_ctype = 0;
    const cJSON *h, *extra = spec ? cJSON_GetObjectItem(spec, "headers") : NULL;
    cJSON_ArrayForEach(h, extra)
    {
        if (strcasecmp(h->string, "content-type") == 0)
            has_ctype = 1;
        if (cJSON_IsString(h))
            sb_printf(b, "%s: %s\r\n", h->string, h->valuestring);
        else if (cJSON_IsNumber(h))
            sb_printf(b, "%s: %g\r\n", h->string, h->valuedouble);
    }
    if (!has_ctype && ctype)
        sb_printf(b, "Content-Type: %s\r\n", ctype);
    if (chunked)
        sb_printf(b, "Transfer-Encoding: chunked\r\n");
    else if (content_length >= 0)
        sb_printf(b, "Content-Length: %ld\r\n", content_length);
    if (close)
        sb_printf(b, "Connection: close\r\n");
    sb_printf(b, "\r\n");
}

/* ---- embeddings --------------------------------------------------------- */

/* A word's concept: a few synonyms share one, so that a test can tell
 * ranking by meaning from ranking by words. */
static const char *concept(const char *w)
{
    static const char *const groups[][5] = {
        {"car", "automobile", "vehicle", "cars", NULL},
        {"dog", "puppy", "canine", "dogs", NULL},
        {"money", "cash", "funds", "budget", NULL},
    };
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++)
        for (size_t i = 0; groups[g][i]; i++)
            if (strcmp(w, groups[g][i]) == 0)
                return groups[g][0];
    return w;
}

/* The deterministic vector of a text, as a JSON array. */
static cJSON *embed_text(const char *t)
{
    double v[256] = {0};
    int dims = embedding_dims;
    char word[64];
    size_t n = 0;
    for (const char *p = t;; p++) {
        if (*p && (isalnum((unsigned char)*p) || (unsigned char)*p >= 0x80)) {
            if (n < sizeof word - 1)
                word[n++] = (char)tolower((unsigned char)*p);
            continue;
        }
        if (n) {
            word[n] = '\0';
            unsigned long h = 5381;
            for (const char *q = concept(word); *q; q++)
                h = h * 33 + (unsigned char)*q;
            v[h % (unsigned long)dims] += 1;
            n = 0;
        }
        if (!*p)
            break;
    }
    v[0] += 0.01; /* never the zero vector */
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < dims; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* Answers an embeddings request with deterministic vectors; 0 when r is
 * not one for this server to answer that way. */
static int plan_embeddings(conn *c, const request *r)
{
    int openai = ends_with(r->path, "/embeddings"), ollama = ends_with(r->path, "/api/embed");
    if (!embeddings_mode || (!openai && !ollama) || strcmp(r->method, "POST") != 0)
        return 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, responses)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(item, "match"));
        if (m && strstr(r->body, m))
            return 0; /* the scenario has an answer of its own for it */
    }
    cJSON *req = cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *input = cJSON_GetObjectItem(req, "input");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "model", model_of(req));
    cJSON *list = openai ? cJSON_AddArrayToObject(out, "data")
                         : cJSON_AddArrayToObject(out, "embeddings");
    long words = 0;
    int i = 0;
    const cJSON *texts = cJSON_IsArray(input) ? input : NULL;
    const cJSON *one = cJSON_IsString(input) ? input : NULL;
    for (const cJSON *t = texts ? texts->child : one; t; t = texts ? t->next : NULL, i++) {
        const char *s = cJSON_GetStringValue(t);
        words += count_words(s);
        cJSON *vec = embed_text(s ? s : "");
        if (openai) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "object", "embedding");
            cJSON_AddNumberToObject(e, "index", i);
            cJSON_AddItemToObject(e, "embedding", vec);
            cJSON_AddItemToArray(list, e);
        } else {
            cJSON_AddItemToArray(list, vec);
        }
        if (!texts)
            break;
    }
    if (openai) {
        cJSON_AddStringToObject(out, "object", "list");
        cJSON *u = cJSON_AddObjectToObject(out, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)words);
        cJSON_AddNumberToObject(u, "total_tokens", (double)words);
    } else {
        cJSON_AddNumberToObject(out, "prompt_eval_count", (double)words);
    }
    char *body = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(req);
    sb head = {0};
    size_t blen = strlen(body);
    c->end = r->close ? END_CLOSE : END_KEEP;
    c->close_after = r->close;
    add_head(&head, 200, NULL, "application/json", (long)blen, 0, r->close);
    sb_add(&head, body, blen);
    free(body);
    conn_add_seg(c, head.p, head.len, 0);
    return 1;
}

/* ---- replies in a format, with tool calls -------------------------------- */

/* A tool call's arguments as JSON text (an object serialised, a string
 * as it is) and as an object (NULL when they are not one). */
static char *call_args_text(const cJSON *call)
{
    const cJSON *a = cJSON_GetObjectItem(call, "arguments");
    if (cJSON_IsString(a))
        return xstrndup(a->valuestring, strlen(a->valuestring));
    return a ? cJSON_PrintUnformatted(a) : xstrndup("{}", 2);
}

static cJSON *call_args_object(const cJSON *call)
{
    char *t = call_args_text(call);
    cJSON *o = cJSON_Parse(t);
    free(t);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return cJSON_CreateObject();
    }
    return o;
}

static char *call_id(const cJSON *call, int i)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(call, "id"));
    sb b = {0};
    if (id)
        sb_printf(&b, "%s", id);
    else
        sb_printf(&b, "call_mock_%d", i + 1);
    return b.p;
}

static const char *call_name(const cJSON *call)
{
    const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(call, "name"));
    return n ? n : "";
}

static char *print_free(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* OpenAI: a chat.completion, or its chunks. */
static char *openai_whole(const cJSON *req, const char *content, const cJSON *calls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "chatcmpl-mock");
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddStringToObject(o, "model", model_of(req));
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    if (content)
        cJSON_AddStringToObject(msg, "content", content);
    else
        cJSON_AddNullToObject(msg, "content");
    int n = cJSON_GetArraySize(calls);
    if (n) {
        cJSON *tc = cJSON_AddArrayToObject(msg, "tool_calls");
        for (int i = 0; i < n; i++) {
            const cJSON *call = cJSON_GetArrayItem(calls, i);
            cJSON *e = cJSON_CreateObject();
            char *id = call_id(call, i), *args = call_args_text(call);
            cJSON_AddStringToObject(e, "id", id);
            cJSON_AddStringToObject(e, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(e, "function");
            cJSON_AddStringToObject(fn, "name", call_name(call));
            cJSON_AddStringToObject(fn, "arguments", args);
            free(id);
            free(args);
            cJSON_AddItemToArray(tc, e);
        }
    }
    cJSON_AddStringToObject(ch, "finish_reason", n ? "tool_calls" : "stop");
    add_usage(o, NULL, req, content ? content : "");
    return print_free(o);
}

static void openai_stream(const cJSON *req, const char *content, const cJSON *calls,
                          strlist *ev)
{
    sl_push(ev, chunk_json(req, "assistant", "", 0, NULL, NULL));
    if (content && *content)
        sl_push(ev, chunk_json(req, NULL, content, strlen(content), NULL, NULL));
    int n = cJSON_GetArraySize(calls);
    for (int i = 0; i < n; i++) {
        const cJSON *call = cJSON_GetArrayItem(calls, i);
        char *id = call_id(call, i), *args = call_args_text(call);
        size_t half = strlen(args) / 2;
        for (int part = 0; part < 3; part++) {
            cJSON *o = chunk_base(req);
            cJSON *ch = cJSON_CreateObject();
            cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
            cJSON_AddNumberToObject(ch, "index", 0);
            cJSON *d = cJSON_AddObjectToObject(ch, "delta");
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "tool_calls"), e);
            cJSON_AddNumberToObject(e, "index", i);
            cJSON *fn = cJSON_AddObjectToObject(e, "function");
            if (part == 0) {
                cJSON_AddStringToObject(e, "id", id);
                cJSON_AddStringToObject(e, "type", "function");
                cJSON_AddStringToObject(fn, "name", call_name(call));
                cJSON_AddStringToObject(fn, "arguments", "");
            } else {
                char *piece = part == 1 ? xstrndup(args, half) : xstrndup(args + half, strlen(args + half));
                cJSON_AddStringToObject(fn, "arguments", piece);
                free(piece);
            }
            cJSON_AddNullToObject(ch, "finish_reason");
            sl_push(ev, print_free(o));
        }
        free(id);
        free(args);
    }
    sl_push(ev, chunk_json(req, NULL, NULL, 0, n ? "tool_calls" : "stop", NULL));
    cJSON *u = chunk_base(req);
    cJSON_AddArrayToObject(u, "choices");
    add_usage(u, NULL, req, content ? content : "");
    sl_push(ev, print_free(u));
    sl_push(ev, xstrndup("[DONE]", 6));
}

/* Anthropic: a message, or its typed events ("type\ndata" items). */
static char *anthropic_whole(const cJSON *req, const char *content, const cJSON *calls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "msg_mock");
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", model_of(req));
    cJSON *blocks = cJSON_AddArrayToObject(o, "content");
    if (content && *content) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", "text");
        cJSON_AddStringToObject(t, "text", content);
        cJSON_AddItemToArray(blocks, t);
    }
    int n = cJSON_GetArraySize(calls);
    for (int i = 0; i < n; i++) {
        const cJSON *call = cJSON_GetArrayItem(calls, i);
        cJSON *b = cJSON_CreateObject();
        char *id = call_id(call, i);
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", id);
        cJSON_AddStringToObject(b, "name", call_name(call));
        cJSON_AddItemToObject(b, "input", call_args_object(call));
        free(id);
        cJSON_AddItemToArray(blocks, b);
    }
    cJSON_AddStringToObject(o, "stop_reason", n ? "tool_use" : "end_turn");
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)prompt_words(req));
    cJSON_AddNumberToObject(u, "output_tokens", (double)count_words(content));
    return print_free(o);
}

static void anthropic_event(strlist *ev, const char *type, cJSON *data)
{
    char *js = print_free(data);
    sb e = {0};
    sb_printf(&e, "event: %s\ndata: %s\n\n", type, js);
    free(js);
    sl_push(ev, e.p);
}

static void anthropic_stream(const cJSON *req, const char *content, const cJSON *calls,
                             strlist *ev)
{
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "type", "message_start");
    cJSON *m = cJSON_AddObjectToObject(st, "message");
    cJSON_AddStringToObject(m, "id", "msg_mock");
    cJSON_AddStringToObject(m, "model", model_of(req));
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(m, "usage"), "input_tokens",
                            (double)prompt_words(req));
    anthropic_event(ev, "message_start", st);
    int index = 0;
    if (content && *content) {
        cJSON *s0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(s0, "index", index);
        cJSON *b = cJSON_AddObjectToObject(s0, "content_block");
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", "");
        anthropic_event(ev, "content_block_start", s0);
        cJSON *d0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(d0, "index", index);
        cJSON *d = cJSON_AddObjectToObject(d0, "delta");
        cJSON_AddStringToObject(d, "type", "text_delta");
        cJSON_AddStringToObject(d, "text", content);
        anthropic_event(ev, "content_block_delta", d0);
        cJSON *e0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(e0, "index", index++);
        anthropic_event(ev, "content_block_stop", e0);
    }
    int n = cJSON_GetArraySize(calls);
    for (int i = 0; i < n; i++, index++) {
        const cJSON *call = cJSON_GetArrayItem(calls, i);
        char *id = call_id(call, i);
        char *args = print_free(call_args_object(call));
        cJSON *s0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(s0, "index", index);
        cJSON *b = cJSON_AddObjectToObject(s0, "content_block");
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", id);
        cJSON_AddStringToObject(b, "name", call_name(call));
        cJSON_AddObjectToObject(b, "input");
        anthropic_event(ev, "content_block_start", s0);
        size_t half = strlen(args) / 2;
        for (int part = 0; part < 2; part++) {
            cJSON *d0 = cJSON_CreateObject();
            cJSON_AddNumberToObject(d0, "index", index);
            cJSON *d = cJSON_AddObjectToObject(d0, "delta");
            cJSON_AddStringToObject(d, "type", "input_json_delta");
            char *piece = part == 0 ? xstrndup(args, half) : xstrndup(args + half, strlen(args + half));
            cJSON_AddStringToObject(d, "partial_json", piece);
            free(piece);
            anthropic_event(ev, "content_block_delta", d0);
        }
        cJSON *e0 = cJSON_CreateObject();
        cJSON_AddNumberToObject(e0, "index", index);
        anthropic_event(ev, "content_block_stop", e0);
        free(id);
        free(args);
    }
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(md, "delta"), "stop_reason",
                            n ? "tool_use" : "end_turn");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(md, "usage"), "output_tokens",
                            (double)count_words(content));
    anthropic_event(ev, "message_delta", md);
    anthropic_event(ev, "message_stop", cJSON_CreateObject());
}

/* Ollama: one /api/chat object, or NDJSON lines. */
static cJSON *ollama_obj(const cJSON *req, const char *content, const cJSON *calls, int done)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model_of(req));
    cJSON_AddStringToObject(o, "created_at", "2025-01-01T00:00:00Z");
    cJSON *m = cJSON_AddObjectToObject(o, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", content ? content : "");
    int n = cJSON_GetArraySize(calls);
    if (n) {
        cJSON *tc = cJSON_AddArrayToObject(m, "tool_calls");
        for (int i = 0; i < n; i++) {
            const cJSON *call = cJSON_GetArrayItem(calls, i);
            cJSON *e = cJSON_CreateObject();
            cJSON *fn = cJSON_AddObjectToObject(e, "function");
            cJSON_AddStringToObject(fn, "name", call_name(call));
            cJSON_AddItemToObject(fn, "arguments", call_args_object(call));
            cJSON_AddItemToArray(tc, e);
        }
    }
    if (done) {
        cJSON_AddTrueToObject(o, "done");
        cJSON_AddStringToObject(o, "done_reason", "stop");
        cJSON_AddNumberToObject(o, "prompt_eval_count", (double)prompt_words(req));
        cJSON_AddNumberToObject(o, "eval_count", (double)count_words(content));
    } else {
        cJSON_AddFalseToObject(o, "done");
    }
    return o;
}

static void ollama_stream(const cJSON *req, const char *content, const cJSON *calls,
                          strlist *ev)
{
    sb line = {0};
    char *js;
    if (content && *content) {
        js = print_free(ollama_obj(req, content, NULL, 0));
        sb_printf(&line, "%s\n", js);
        free(js);
        sl_push(ev, line.p);
        memset(&line, 0, sizeof line);
    }
    if (cJSON_GetArraySize(calls)) {
        js = print_free(ollama_obj(req, "", calls, 0));
        sb_printf(&line, "%s\n", js);
        free(js);
        sl_push(ev, line.p);
        memset(&line, 0, sizeof line);
    }
    js = print_free(ollama_obj(req, "", NULL, 1));
    sb_printf(&line, "%s\n", js);
    free(js);
    sl_push(ev, line.p);
}

/* A response with "tool_calls" or a "format": built here, whole or
 * streamed.  Returns 0 when spec is neither. */
static int plan_formatted(conn *c, const request *r, const cJSON *spec, const cJSON *req)
{
    const cJSON *calls = spec ? cJSON_GetObjectItem(spec, "tool_calls") : NULL;
    const char *format = spec ? cJSON_GetStringValue(cJSON_GetObjectItem(spec, "format")) : NULL;
    if (!cJSON_IsArray(calls) && !format)
        return 0;
    format = format ? format : "openai";
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(spec, "content"));
    if (!content)
        content = cJSON_GetStringValue(cJSON_GetObjectItem(spec, "reply"));
    int stream = cJSON_IsTrue(cJSON_GetObjectItem(spec, "stream"));
    long delay = num_field(spec, "delay_ms", 0);
    long chunk_delay = num_field(spec, "chunk_delay_ms", 0);
    int status = (int)num_field(spec, "status", 200);
    sb head = {0};
    if (!stream) {
        char *body = strcmp(format, "anthropic") == 0 ? anthropic_whole(req, content, calls)
                     : strcmp(format, "ollama") == 0
                         ? print_free(ollama_obj(req, content, calls, 1))
                         : openai_whole(req, content, calls);
        size_t blen = strlen(body);
        add_head(&head, status, spec, "application/json", (long)blen, 0, r->close);
        sb_add(&head, body, blen);
        free(body);
        conn_add_seg(c, head.p, head.len, delay);
        return 1;
    }
    strlist ev = {0};
    const char *ctype = "text/event-stream";
    if (strcmp(format, "anthropic") == 0) {
        anthropic_stream(req, content, calls, &ev);
    } else if (strcmp(format, "ollama") == 0) {
        ollama_stream(req, content, calls, &ev);
        ctype = "application/x-ndjson";
    } else {
        strlist items = {0};
        openai_stream(req, content, calls, &items);
        for (size_t i = 0; i < items.n; i++) {
            sb e = {0};
            sb_printf(&e, "data: %s\n\n", items.v[i]);
            free(items.v[i]);
            sl_push(&ev, e.p);
        }
        free(items.v);
    }
    add_head(&head, status, spec, ctype, -1, 1, r->close);
    conn_add_seg(c, head.p, head.len, delay);
    for (size_t i = 0; i < ev.n; i++) {
        size_t dlen = strlen(ev.v[i]);
        sb e = {0};
        sb_printf(&e, "%zx\r\n", dlen);
        sb_add(&e, ev.v[i], dlen);
        sb_add(&e, "\r\n", 2);
        conn_add_seg(c, e.p, e.len, i ? chunk_delay : 0);
        free(ev.v[i]);
    }
    free(ev.v);
    conn_add_seg(c, xstrndup("0\r\n\r\n", 5), 5, 0);
    return 1;
}

/* Plans the response to r on c as a list of timed segments. */
static void plan_response(conn *c, const request *r)
{
    if (plan_embeddings(c, r))
        return;
    cJSON *req = cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *spec = pick_response(r);
    long delay = num_field(spec, "delay_ms", spec ? 0 : echo_delay_ms);
    long chunk_delay = num_field(spec, "chunk_delay_ms", 0);
    int status = (int)num_field(spec, "status", 200);
    const char *action = spec ? cJSON_GetStringValue(cJSON_GetObjectItem(spec, "action")) : NULL;
    action = action ? action : "";
    c->end = r->close ? END_CLOSE : END_KEEP;
    c->close_after = r->close;

    if (!strcmp(action, "close") || !strcmp(action, "reset") || !strcmp(action, "stall")) {
        conn_add_seg(c, NULL, 0, delay);
        c->end = !strcmp(action, "close") ? END_CLOSE
                 : !strcmp(action, "reset") ? END_RESET : END_STALL;
        cJSON_Delete(req);
        return;
    }
    if (plan_formatted(c, r, spec, req)) {
        cJSON_Delete(req);
        return;
    }

    sb head = {0};
    const cJSON *sse = spec ? cJSON_GetObjectItem(spec, "sse") : NULL;
    const cJSON *stream = spec ? cJSON_GetObjectItem(spec, "stream") : NULL;
    if (!strcmp(action, "oversize")) {
        add_head(&head, status, spec, "application/json", -1, 1, 0);
        conn_add_seg(c, head.p, head.len, delay);
        c->end = END_ENDLESS;
        cJSON_Delete(req);
        return;
    }
    const cJSON *chunks = spec ? cJSON_GetObjectItem(spec, "chunks") : NULL;
    const cJSON *sse_events = spec ? cJSON_GetObjectItem(spec, "sse_events") : NULL;
    if (cJSON_IsArray(sse) || cJSON_IsString(stream) || cJSON_IsArray(chunks) ||
        cJSON_IsArray(sse_events)) {
        /* ev: the body's pieces, each sent as one chunk */
        strlist ev = {0};
        const char *stream_type = "text/event-stream";
        if (cJSON_IsArray(chunks)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, chunks)
            {
                if (cJSON_IsString(it)) {
                    sl_push(&ev, xstrndup(it->valuestring, strlen(it->valuestring)));
                } else {
                    sb line = {0};
                    char *js = cJSON_PrintUnformatted(it);
                    sb_printf(&line, "%s\n", js);
                    free(js);
                    sl_push(&ev, line.p);
                }
            }
            stream_type = "application/x-ndjson";
        } else if (cJSON_IsArray(sse_events)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, sse_events)
            {
                const char *type = cJSON_GetStringValue(cJSON_GetArrayItem(it, 0));
                const cJSON *data = cJSON_GetArrayItem(it, 1);
                char *js = cJSON_IsString(data) ? xstrndup(data->valuestring, strlen(data->valuestring))
                           : data ? cJSON_PrintUnformatted(data) : xstrndup("{}", 2);
                sb e = {0};
                if (type && *type)
                    sb_printf(&e, "event: %s\n", type);
                sb_printf(&e, "data: %s\n\n", js);
                free(js);
                sl_push(&ev, e.p);
            }
        } else {
            strlist items = {0};
            if (cJSON_IsString(stream)) {
                stream_events(spec, req, stream->valuestring, &items);
            } else {
                const cJSON *it;
                cJSON_ArrayForEach(it, sse)
                    sl_push(&items, cJSON_IsString(it) ? xstrndup(it->valuestring, strlen(it->valuestring))
                                                       : cJSON_PrintUnformatted(it));
            }
            for (size_t i = 0; i < items.n; i++) {
                sb e = {0};
                sb_printf(&e, "data: %s\n\n", items.v[i]);
                free(items.v[i]);
                sl_push(&ev, e.p);
            }
            free(items.v);
        }
        add_head(&head, status, spec, stream_type, -1, 1, r->close);
        sb all = {0}; /* for trickle */
        int trickle = !strcmp(action, "trickle");
        int reset_mid = !strcmp(action, "reset_mid");
        int stall_mid = !strcmp(action, "stall_mid");
        int cut = !strcmp(action, "cut") || reset_mid || stall_mid;
        size_t n_send = cut ? ev.n / 2 : ev.n;
        if (trickle)
            sb_add(&all, head.p, head.len);
        else
            conn_add_seg(c, head.p, head.len, delay);
        for (size_t i = 0; i < ev.n; i++) {
            size_t dlen = strlen(ev.v[i]);
            if (i < n_send && dlen) {
                sb e = {0};
                sb_printf(&e, "%zx\r\n", dlen);
                sb_add(&e, ev.v[i], dlen);
                sb_add(&e, "\r\n", 2);
                if (trickle) {
                    sb_add(&all, e.p, e.len);
                    free(e.p);
                } else {
                    conn_add_seg(c, e.p, e.len, i ? chunk_delay : 0);
                }
            }
            free(ev.v[i]);
        }
        free(ev.v);
        if (cut) {
            c->end = reset_mid ? END_RESET : stall_mid ? END_STALL : END_CLOSE;
        } else if (trickle) {
            sb_add(&all, "0\r\n\r\n", 5);
            for (size_t i = 0; i < all.len; i++)
                conn_add_seg(c, xstrndup(all.p + i, 1), 1, i ? chunk_delay : delay);
            free(head.p);
            free(all.p);
        } else {
            conn_add_seg(c, xstrndup("0\r\n\r\n", 5), 5, 0);
        }
        cJSON_Delete(req);
        return;
    }

    /* a whole body */
    char *body;
    const char *ctype = "application/json";
    const cJSON *b;
    if (!strcmp(action, "wrong_type")) {
        b = spec ? cJSON_GetObjectItem(spec, "body") : NULL;
        body = cJSON_IsString(b) ? xstrndup(b->valuestring, strlen(b->valuestring))
                                 : xstrndup("<html><body><h1>Welcome</h1></body></html>", 42);
        ctype = "text/html; charset=utf-8";
    } else if (spec && cJSON_IsString(b = cJSON_GetObjectItem(spec, "body"))) {
        body = xstrndup(b->valuestring, strlen(b->valuestring));
    } else if (spec && (b = cJSON_GetObjectItem(spec, "json"))) {
        body = cJSON_PrintUnformatted(b);
    } else if (spec && cJSON_IsString(b = cJSON_GetObjectItem(spec, "reply"))) {
        body = completion_json(spec, req, b->valuestring);
    } else if (echo_mode && echo_nonce) {
        const char *m = last_user_message(req);
        sb t = {0};
        sb_printf(&t, "%s #%ld", m ? m : "", n_requests);
        body = completion_json(spec, req, t.p);
        free(t.p);
    } else if (echo_mode) {
        body = completion_json(spec, req, last_user_message(req));
    } else if (!spec) {
        status = 500;
        body = xstrndup("{\"error\":{\"message\":\"mock: no response matches this request\"}}", 63);
    } else {
        body = xstrndup("", 0);
    }
    size_t blen = strlen(body);
    add_head(&head, status, spec, ctype, (long)blen, 0, r->close);
    if (!strcmp(action, "cut") || !strcmp(action, "reset_mid") ||
        !strcmp(action, "stall_mid")) {
        blen /= 2;
        c->end = !strcmp(action, "cut") ? END_CLOSE
                 : !strcmp(action, "stall_mid") ? END_STALL : END_RESET;
    }
    sb_add(&head, body, blen);
    free(body);
    if (!strcmp(action, "trickle")) {
        for (size_t i = 0; i < head.len; i++)
            conn_add_seg(c, xstrndup(head.p + i, 1), 1, i ? chunk_delay : delay);
        free(head.p);
    } else {
        conn_add_seg(c, head.p, head.len, delay);
    }
    cJSON_Delete(req);
}

/* ---- connections ------------------------------------------------------- */

static void clear_segs(conn *c)
{
    for (size_t i = 0; i < c->n_segs; i++)
        free(c->segs[i].p);
    free(c->segs);
    c->segs = NULL;
    c->n_segs = c->cur = c->off = 0;
    c->next_at = 0;
    c->responding = 0;
}

static void conn_close(size_t i, int reset)
{
    conn *c = conns[i];
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    clear_segs(c);
    free(c->in);
    free(c);
    conns[i] = conns[--n_conns];
}

static int in_flight(void)
{
    int n = 0;
    for (size_t i = 0; i < n_conns; i++)
        n += conns[i]->responding;
    return n;
}

/* Starts the next response if a whole request is buffered.  Returns -1 if
 * the connection must close. */
static int next_request(conn *c)
{
    if (c->responding)
        return 0;
    request r;
    int got = parse_request(c, &r);
    if (got < 0) {
        static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        conn_add_seg(c, xstrndup(resp, sizeof resp - 1), sizeof resp - 1, 0);
        c->end = END_CLOSE;
        c->responding = 1;
        return 0;
    }
    if (got == 0) {
        if (r.expect_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL) < 0)
                return -1;
        }
        return 0;
    }
    n_requests++;
    log_request(&r);
    plan_response(c, &r);
    request_free(&r);
    c->responding = 1;
    long long now = now_ms();
    c->next_at = c->n_segs && c->segs[0].delay_ms > 0 ? now + c->segs[0].delay_ms : 0;
    return 0;
}

/* Writes what is due.  Returns -1 to close, -2 to reset. */
static int pump_out(conn *c, long long now)
{
    while (c->responding) {
        if (c->cur < c->n_segs) {
            if (c->next_at && now < c->next_at)
                return 0;
            seg *s = &c->segs[c->cur];
            while (c->off < s->n) {
                ssize_t w = send(c->fd, s->p + c->off, s->n - c->off, MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK)
                        return 0;
                    return -1;
                }
                c->off += (size_t)w;
            }
            c->cur++;
            c->off = 0;
            if (c->cur < c->n_segs && c->segs[c->cur].delay_ms > 0) {
                c->next_at = now + c->segs[c->cur].delay_ms;
                return 0;
            }
            c->next_at = 0;
            continue;
        }
        switch (c->end) {
        case END_KEEP:
            clear_segs(c);
            if (next_request(c) < 0)
                return -1;
            continue;
        case END_CLOSE:
            return -1;
        case END_RESET:
            return -2;
        case END_STALL:
            return 0;
        case END_ENDLESS:
            for (;;) {
                ssize_t w = send(c->fd, endless_block + c->endless_off,
                                 endless_len - c->endless_off, MSG_NOSIGNAL);
                if (w < 0)
                    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
                c->endless_off = (c->endless_off + (size_t)w) % endless_len;
            }
        }
    }
    return 0;
}

/* 1 if c wants POLLOUT now. */
static int wants_out(const conn *c, long long now)
{
    if (!c->responding)
        return 0;
    if (c->cur < c->n_segs)
        return !c->next_at || now >= c->next_at;
    return c->end == END_ENDLESS;
}

static int read_in(conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 16384) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
            if (cap > MAX_BODY_BYTES + MAX_HEADER_BYTES + 65536)
                return -1;
            char *p = realloc(c->in, cap);
            if (!p)
                return -1;
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (r == 0)
            return -1;
        if (r < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
        c->in_len += (size_t)r;
        if (c->responding && c->end == END_STALL)
            c->in_len = 0; /* a stalled connection swallows input */
    }
}

static void load_scenario(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("%s: %s", path, strerror(errno));
    sb b = {0};
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        sb_add(&b, tmp, n);
    fclose(f);
    scenario = cJSON_ParseWithLength(b.p ? b.p : "", b.len);
    free(b.p);
    if (!cJSON_IsObject(scenario))
        die("%s: not a JSON object", path);
    responses = cJSON_GetObjectItem(scenario, "responses");
    if (responses && !cJSON_IsArray(responses))
        die("%s: \"responses\" must be an array", path);
    echo_mode = cJSON_IsTrue(cJSON_GetObjectItem(scenario, "echo"));
    echo_nonce = cJSON_IsTrue(cJSON_GetObjectItem(scenario, "echo_nonce"));
    echo_delay_ms = num_field(scenario, "echo_delay_ms", 0);
    embeddings_mode = cJSON_IsTrue(cJSON_GetObjectItem(scenario, "embeddings"));
    embedding_dims = (int)num_field(scenario, "embedding_dims", 64);
    if (embedding_dims < 1 || embedding_dims > 256)
        die("\"embedding_dims\" must be from 1 to 256");
    idle_exit_ms = num_field(scenario, "idle_exit_ms", 30000);
    const char *log = cJSON_GetStringValue(cJSON_GetObjectItem(scenario, "log"));
    if (log && (log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        die("%s: %s", log, strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: skein-mockserver SCENARIO.json\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    load_scenario(argv[1]);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < MAX_CONNS + 64) {
        rl.rlim_cur = rl.rlim_max < MAX_CONNS + 64 ? rl.rlim_max : MAX_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* the endless body: one chunk, repeated */
    int hl = snprintf(endless_block, sizeof endless_block, "%x\r\n", ENDLESS_CHUNK);
    memset(endless_block + hl, 'x', ENDLESS_CHUNK);
    memcpy(endless_block + hl + ENDLESS_CHUNK, "\r\n", 2);
    endless_len = (size_t)hl + ENDLESS_CHUNK + 2;

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind: %s", strerror(errno));
    if (listen(lfd, 4096) < 0)
        die("listen: %s", strerror(errno));
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    static struct pollfd pfds[MAX_CONNS + 1];
    long long last_activity = now_ms();
    for (;;) {
        long long now = now_ms();
        int timeout = -1;
        if (n_conns == 0 && idle_exit_ms > 0) {
            long long left = last_activity + idle_exit_ms - now;
            if (left <= 0)
                return 0;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        pfds[0].fd = lfd;
        pfds[0].events = n_conns < MAX_CONNS ? POLLIN : 0;
        for (size_t i = 0; i < n_conns; i++) {
            conn *c = conns[i];
            pfds[i + 1].fd = c->fd;
            pfds[i + 1].events = POLLIN;
            if (wants_out(c, now))
                pfds[i + 1].events |= POLLOUT;
            else if (c->responding && c->cur < c->n_segs && c->next_at > now) {
                long long left = c->next_at - now;
                if (timeout < 0 || left < timeout)
                    timeout = (int)left;
            }
        }
        size_t polled = n_conns;
        int rc = poll(pfds, polled + 1, timeout);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        now = now_ms();
        /* connections, back to front so closing (swap-remove) is safe */
        for (size_t k = polled; k-- > 0;) {
            conn *c = conns[k];
            short re = pfds[k + 1].revents;
            int res = 0;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (read_in(c) < 0)
                    res = -1;
                else if (!c->responding && next_request(c) < 0)
                    res = -1;
            }
            if (res == 0)
                res = pump_out(c, now);
            if (res < 0) {
                conn_close(k, res == -2);
                last_activity = now;
            }
        }
        if (pfds[0].revents & POLLIN) {
            while (n_conns < MAX_CONNS) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn *c = calloc(1, sizeof *c);
                if (!c) {
                    close(fd);
                    break;
                }
                c->fd = fd;
                conns[n_conns++] = c;
                last_activity = now;
            }
        }
    }
}
