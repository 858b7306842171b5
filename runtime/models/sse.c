/*
 * sse.c -- an incremental text/event-stream parser (WHATWG HTML, "Server-
 * sent events", section 9.2.6 "Interpreting an event stream").
 *
 * Bytes arrive in whatever pieces the network hands us, so a line, and
 * even a CRLF pair, may be split across feeds.  The parser keeps the
 * unfinished line and the event being built in growing buffers, each
 * capped, so a server that never sends a newline cannot make us allocate
 * without bound.
 *
 * Differences from the browser algorithm, all irrelevant to the model
 * servers we talk to: "id" and "retry" are ignored (we never reconnect to
 * resume a stream) and a leading byte-order mark is not stripped.
 */
#include <string.h>

#include "models/models.h"

#define SSE_DEFAULT_MAX ((size_t)1 << 20)

void sse_init(sse_parser *p, size_t max_line)
{
    if (!max_line)
        max_line = SSE_DEFAULT_MAX;
    buf_init(&p->line, max_line);
    buf_init(&p->data, max_line);
    buf_init(&p->event, max_line);
    p->has_data = 0;
    p->skip_lf = 0;
}

void sse_free(sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->event);
    p->has_data = 0;
    p->skip_lf = 0;
}

int sse_pending(const sse_parser *p)
{
    return p->line.len > 0 || p->has_data || p->event.len > 0;
}

/* Ends the current event.  The buffers are reset before on_event runs so
 * that the callback sees a parser in a clean state.  An event with no data
 * line is dropped, as the spec says, but still clears the event type. */
static sk_status dispatch(sse_parser *p, sse_event_fn on_event, void *ud)
{
    if (!p->has_data) {
        buf_reset(&p->event);
        return SK_OK;
    }
    /* The callback borrows the buffers' bytes; take them out of the
     * parser first so a re-entrant feed cannot clobber them. */
    sk_buf data = p->data, event = p->event;
    buf_init(&p->data, data.max);
    buf_init(&p->event, event.max);
    p->has_data = 0;
    int abort_feed = on_event(ud, event.len ? event.p : "message",
                              data.p ? data.p : "", data.len);
    /* Keep the larger allocations for the next event. */
    if (!p->data.p) {
        buf_reset(&data);
        p->data = data;
    } else {
        buf_free(&data);
    }
    if (!p->event.p) {
        buf_reset(&event);
        p->event = event;
    } else {
        buf_free(&event);
    }
    return abort_feed ? SK_CANCELLED : SK_OK;
}

/* Interprets one complete line (without its terminator). */
static sk_status process_line(sse_parser *p, const char *s, size_t n,
                              sse_event_fn on_event, void *ud)
{
    if (n == 0)
        return dispatch(p, on_event, ud);
    if (s[0] == ':')
        return SK_OK; /* comment, e.g. a keep-alive ": ping" */
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *value = colon ? colon + 1 : s + n;
    size_t value_len = (size_t)(s + n - value);
    if (value_len && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        buf_reset(&p->event);
        return buf_add(&p->event, value, value_len);
    }
    if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        sk_status rc = SK_OK;
        if (p->has_data)
            rc = buf_addc(&p->data, '\n');
        if (rc == SK_OK)
            rc = buf_add(&p->data, value, value_len);
        if (rc == SK_OK)
            p->has_data = 1;
        return rc;
    }
    return SK_OK; /* id, retry and unknown fields */
}

sk_status sse_feed(sse_parser *p, const char *bytes, size_t n,
                   sse_event_fn on_event, void *ud)
{
    size_t i = 0;
    while (i < n) {
        if (p->skip_lf) {
            p->skip_lf = 0;
            if (bytes[i] == '\n') {
                i++;
                continue;
            }
        }
        /* Find the end of the line within this feed. */
        size_t j = i;
        while (j < n && bytes[j] != '\n' && bytes[j] != '\r')
            j++;
        if (j == n) {
            /* No terminator yet: keep the partial line for the next feed. */
            return buf_add(&p->line, bytes + i, n - i);
        }
        sk_status rc;
        if (p->line.len) {
            rc = buf_add(&p->line, bytes + i, j - i);
            if (rc == SK_OK)
                rc = process_line(p, p->line.p, p->line.len, on_event, ud);
            buf_reset(&p->line);
        } else {
            if (j - i > (p->line.max ? p->line.max : SSE_DEFAULT_MAX))
                return SK_TOO_LARGE;
            rc = process_line(p, bytes + i, j - i, on_event, ud);
        }
        if (bytes[j] == '\r')
            p->skip_lf = 1;
        i = j + 1;
        if (rc != SK_OK)
            return rc;
    }
    return SK_OK;
}
