/* test_sse.c -- the text/event-stream parser. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* Collects events as "type|data" lines separated by "\x1e". */
typedef struct collect {
    struct {
        char p[4096]; /* plain memory: allocation-failure tests must not hit it */
        size_t len;
    } out;
    int count;
    int abort_after; /* abort on this event number (1-based), 0 never */
} collect;

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
    collect *c = ud;
    c->count++;
    size_t el = strlen(event);
    if (c->out.len + el + len + 3 < sizeof c->out.p) {
        memcpy(c->out.p + c->out.len, event, el);
        c->out.len += el;
        c->out.p[c->out.len++] = '|';
        memcpy(c->out.p + c->out.len, data, len);
        c->out.len += len;
        c->out.p[c->out.len++] = '\x1e';
        c->out.p[c->out.len] = '\0';
    }
    CHECK(strlen(data) == len); /* data is NUL-terminated */
    return c->abort_after && c->count >= c->abort_after;
}

static void collect_init(collect *c)
{
    memset(c, 0, sizeof *c);
}

/* Feeds text whole, then byte by byte, then in chunks of 3; all three
 * must give the same events.  Returns the events of the whole feed. */
static char *feed_all_ways(const char *text, int *count)
{
    size_t n = strlen(text);
    char *results[3];
    int counts[3];
    size_t steps[3] = {n ? n : 1, 1, 3};
    for (int w = 0; w < 3; w++) {
        sse_parser p;
        collect c;
        sse_init(&p, 0);
        collect_init(&c);
        for (size_t i = 0; i < n; i += steps[w]) {
            size_t k = n - i < steps[w] ? n - i : steps[w];
            CHECK_INT(sse_feed(&p, text + i, k, on_event, &c), SK_OK);
        }
        results[w] = strdup(c.out.p);
        counts[w] = c.count;
        sse_free(&p);
    }
    CHECK_STR(results[1], results[0]);
    CHECK_STR(results[2], results[0]);
    CHECK_INT(counts[1], counts[0]);
    free(results[1]);
    free(results[2]);
    if (count)
        *count = counts[0];
    return results[0];
}

TEST(test_basic_lf)
{
    int n;
    char *r = feed_all_ways("data: hello\n\ndata: world\n\n", &n);
    CHECK_INT(n, 2);
    CHECK_STR(r, "message|hello\x1emessage|world\x1e");
    free(r);
}

TEST(test_crlf_and_cr)
{
    int n;
    char *r = feed_all_ways("data: a\r\n\r\ndata: b\r\rdata: c\n\r\ndata:d\r\n\n", &n);
    CHECK_INT(n, 4);
    CHECK_STR(r, "message|a\x1emessage|b\x1emessage|c\x1emessage|d\x1e");
    free(r);
}

TEST(test_split_crlf_across_feeds)
{
    /* A \r at the end of one feed and \n at the start of the next is one
     * line break, not two (which would dispatch early). */
    sse_parser p;
    collect c;
    sse_init(&p, 0);
    collect_init(&c);
    CHECK_INT(sse_feed(&p, "data: x\r", 8, on_event, &c), SK_OK);
    CHECK_INT(sse_feed(&p, "\ndata: y\r", 9, on_event, &c), SK_OK);
    CHECK_INT(c.count, 0);
    CHECK_INT(sse_feed(&p, "\n\r\n", 3, on_event, &c), SK_OK);
    CHECK_INT(c.count, 1);
    CHECK_STR(c.out.p, "message|x\ny\x1e");
    CHECK(!sse_pending(&p));
    sse_free(&p);
}

TEST(test_multiline_data_and_spaces)
{
    int n;
    /* only one leading space is stripped; "data" alone is an empty line */
    char *r = feed_all_ways("data: one\ndata:two\ndata:  three\ndata\ndata: \n\n", &n);
    CHECK_INT(n, 1);
    CHECK_STR(r, "message|one\ntwo\n three\n\n\x1e");
    free(r);
}

TEST(test_comments_event_types_ignored_fields)
{
    int n;
    char *r = feed_all_ways(": keep-alive\n"
                            "event: delta\n"
                            "id: 42\n"
                            "retry: 1000\n"
                            "unknown: field\n"
                            "data: {\"a\":1}\n"
                            "\n"
                            ": ping\n\n"      /* comment-only: no event */
                            "event: ignored\n\n" /* no data: dropped */
                            "data: after\n\n", /* type back to message */
                            &n);
    CHECK_INT(n, 2);
    CHECK_STR(r, "delta|{\"a\":1}\x1emessage|after\x1e");
    free(r);
}

TEST(test_empty_data_dispatches)
{
    int n;
    char *r = feed_all_ways("data:\n\n", &n);
    CHECK_INT(n, 1);
    CHECK_STR(r, "message|\x1e");
    free(r);
}

TEST(test_colon_in_value)
{
    int n;
    char *r = feed_all_ways("data: a: b: c\n\n", &n);
    CHECK_INT(n, 1);
    CHECK_STR(r, "message|a: b: c\x1e");
    free(r);
}

TEST(test_pending)
{
    sse_parser p;
    collect c;
    sse_init(&p, 0);
    collect_init(&c);
    CHECK(!sse_pending(&p));
    CHECK_INT(sse_feed(&p, "data: com", 9, on_event, &c), SK_OK);
    CHECK(sse_pending(&p)); /* partial line */
    CHECK_INT(sse_feed(&p, "plete\n", 6, on_event, &c), SK_OK);
    CHECK(sse_pending(&p)); /* data but no blank line yet */
    CHECK_INT(c.count, 0);
    CHECK_INT(sse_feed(&p, "\n", 1, on_event, &c), SK_OK);
    CHECK(!sse_pending(&p));
    CHECK_INT(c.count, 1);
    CHECK_INT(sse_feed(&p, "event: x\n", 9, on_event, &c), SK_OK);
    CHECK(sse_pending(&p));
    sse_free(&p);
}

TEST(test_line_ceiling)
{
    sse_parser p;
    collect c;
    sse_init(&p, 16);
    collect_init(&c);
    /* whole line in one feed */
    CHECK_INT(sse_feed(&p, "data: 0123456789abcdef\n", 23, on_event, &c),
              SK_TOO_LARGE);
    sse_free(&p);
    /* the same, split byte by byte: the partial line hits the ceiling */
    sse_init(&p, 16);
    const char *s = "data: 0123456789abcdef";
    sk_status rc = SK_OK;
    for (size_t i = 0; s[i] && rc == SK_OK; i++)
        rc = sse_feed(&p, s + i, 1, on_event, &c);
    CHECK_INT(rc, SK_TOO_LARGE);
    sse_free(&p);
    /* exactly at the ceiling is fine */
    sse_init(&p, 16);
    CHECK_INT(sse_feed(&p, "data: 0123456789\n\n", 18, on_event, &c), SK_OK);
    CHECK_INT(c.count, 1);
    sse_free(&p);
}

TEST(test_event_ceiling)
{
    /* Many short data lines add up past the ceiling on event size. */
    sse_parser p;
    collect c;
    sse_init(&p, 32);
    collect_init(&c);
    sk_status rc = SK_OK;
    for (int i = 0; i < 20 && rc == SK_OK; i++)
        rc = sse_feed(&p, "data: abcd\n", 11, on_event, &c);
    CHECK_INT(rc, SK_TOO_LARGE);
    CHECK_INT(c.count, 0);
    sse_free(&p);
}

TEST(test_abort_from_callback)
{
    sse_parser p;
    collect c;
    sse_init(&p, 0);
    collect_init(&c);
    c.abort_after = 2;
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    CHECK_INT(sse_feed(&p, s, strlen(s), on_event, &c), SK_CANCELLED);
    CHECK_INT(c.count, 2);
    CHECK_STR(c.out.p, "message|1\x1emessage|2\x1e");
    sse_free(&p);
}

TEST(test_openai_style_stream)
{
    int n;
    char *r = feed_all_ways(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n"
        "data: [DONE]\n\n",
        &n);
    CHECK_INT(n, 3);
    CHECK_CONTAINS(r, "message|[DONE]\x1e");
    free(r);
}

TEST(test_alloc_failure)
{
    for (long i = 1; i < 20; i++) {
        sse_parser p;
        collect c;
        sse_init(&p, 0);
        collect_init(&c);
        sk_alloc_fail_at(i);
        sk_status rc = SK_OK;
        const char *parts[] = {"event: e\nda", "ta: x\ndata: y\n", "\n"};
        for (int k = 0; k < 3 && rc == SK_OK; k++)
            rc = sse_feed(&p, parts[k], strlen(parts[k]), on_event, &c);
        sk_alloc_fail_at(0);
        CHECK(rc == SK_OK || rc == SK_NOMEM);
        if (rc == SK_OK && c.count == 1)
            CHECK_STR(c.out.p, "e|x\ny\x1e");
        sse_free(&p);
        }
}

int main(void)
{
    RUN(test_basic_lf);
    RUN(test_crlf_and_cr);
    RUN(test_split_crlf_across_feeds);
    RUN(test_multiline_data_and_spaces);
    RUN(test_comments_event_types_ignored_fields);
    RUN(test_empty_data_dispatches);
    RUN(test_colon_in_value);
    RUN(test_pending);
    RUN(test_line_ceiling);
    RUN(test_event_ceiling);
    RUN(test_abort_from_callback);
    RUN(test_openai_style_stream);
    RUN(test_alloc_failure);
    return tu_finish();
}
