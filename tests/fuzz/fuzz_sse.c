/* fuzz_sse.c -- libFuzzer target for the SSE parser.
 *
 * The first byte picks how the input is cut into feeds (so line breaks,
 * CRLF pairs and fields get split at every position) and a small line
 * ceiling; the rest is the stream.  Checks that events carry NUL-terminated
 * data of the stated length and that nothing leaks. */
#include <stdint.h>
#include <string.h>

#include "all.h"

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
    size_t *count = ud;
    (*count)++;
    if (strlen(data) > len || data[len] != '\0' || !event)
        __builtin_trap();
    return *count > 1000; /* exercise the abort path on long inputs */
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(buf[0] & 15) + 1;
    size_t max = (buf[0] & 16) ? 64 : 0;
    const char *p = (const char *)buf + 1;
    size_t n = size - 1;
    sse_parser sp;
    sse_init(&sp, max);
    size_t count = 0;
    sk_status rc = SK_OK;
    for (size_t i = 0; i < n && rc == SK_OK; i += step)
        rc = sse_feed(&sp, p + i, n - i < step ? n - i : step, on_event, &count);
    (void)sse_pending(&sp);
    sse_free(&sp);
    return 0;
}
