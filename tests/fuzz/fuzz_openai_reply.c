/* fuzz_openai_reply.c -- libFuzzer target for the OpenAI wire readers.
 *
 * The input is read as a whole reply body, as an error body, and as a
 * sequence of stream chunks split on newlines (as the SSE layer would
 * hand them over), all applied to one response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"

static void free_fields(model_resp *r)
{
    free(r->text);
    free(r->finish_reason);
    free(r->model);
    for (size_t i = 0; i < r->n_logprobs; i++)
        free(r->logprobs[i].token);
    free(r->logprobs);
    tool_calls_free(r->calls, r->n_calls);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    const char *p = (const char *)buf;
    model_resp *r = NULL;
    char *msg = NULL;
    sk_status rc = oai_parse_reply(p, size, &r, &msg);
    if ((rc == SK_OK) != (r != NULL))
        __builtin_trap();
    if (r) {
        if (!r->text)
            __builtin_trap();
        free_fields(r);
        free(r);
    }
    free(msg);

    free(oai_error_message(p, size));

    model_resp acc;
    memset(&acc, 0, sizeof acc);
    sk_buf text;
    buf_init(&text, 4096);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && p[i] != '\n')
            continue;
        const char *d;
        size_t dl;
        msg = NULL;
        rc = oai_apply_chunk(p + start, i - start, &acc, &text, &d, &dl, &msg);
        if (d && (d < text.p || d + dl != text.p + text.len))
            __builtin_trap();
        free(msg);
        start = i + 1;
    }
    buf_free(&text);
    free_fields(&acc);
    return 0;
}
