/* fuzz_embed_reply.c -- libFuzzer target for the embeddings reply readers
 * (runtime/models/embed.c): the input is read as an OpenAI and as an
 * Ollama embeddings reply; what comes out is one JSON array of equally
 * long arrays of finite numbers, or an error with a message. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "all.h"

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    for (int ollama = 0; ollama < 2; ollama++) {
        model_resp *r = NULL;
        char *msg = NULL;
        sk_status rc = embed_parse_reply(ollama, (const char *)buf, size, &r, &msg);
        if ((rc == SK_OK) != (r != NULL) || (rc != SK_OK && rc != SK_NOMEM && !msg))
            __builtin_trap();
        if (r) {
            cJSON *a = cJSON_Parse(r->text);
            if (!cJSON_IsArray(a))
                __builtin_trap();
            int dims = -1;
            const cJSON *v, *x;
            cJSON_ArrayForEach(v, a)
            {
                if (!cJSON_IsArray(v) || (dims >= 0 && cJSON_GetArraySize(v) != dims))
                    __builtin_trap();
                dims = cJSON_GetArraySize(v);
                cJSON_ArrayForEach(x, v) if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
                    __builtin_trap();
            }
            cJSON_Delete(a);
            resp_free(r);
        }
        free(msg);
    }
    return 0;
}
