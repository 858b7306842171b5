/* fuzz_config.c -- libFuzzer target for cfg_parse.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support $(pkg-config --cflags libcjson) \
 *     tests/fuzz/fuzz_config.c runtime/formats/config.c runtime/base/util.c \
 *     $(pkg-config --libs libcjson) -lm -o fuzz_config
 *   ./fuzz_config -max_total_time=60 tests/fuzz/corpus/config
 *
 * Any input must end in SK_OK or an error with a located message; a
 * successful parse must satisfy the invariants the registry relies on. */
#include <stdlib.h>
#include <string.h>

#include "all.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    cfg_function *c = NULL;
    char *err = NULL;
    sk_status rc = cfg_parse((const char *)data, size, "f.json", &c, &err);
    if (rc == SK_OK) {
        if (!c || err || !c->type || !c->description || !c->raw ||
            memcmp(c->raw, data, size) != 0)
            abort();
        for (size_t i = 0; i < c->n_params; i++)
            if (!c->params[i].name || !c->params[i].name[0])
                abort();
        for (size_t i = 0; i < c->n_settings; i++)
            if (!c->settings[i].service_id)
                abort();
        (void)cfg_settings_for(c, "default");
    } else if (rc == SK_CONFIG || rc == SK_TOO_LARGE) {
        if (c || !err || strncmp(err, "f.json:", 7) != 0)
            abort();
    } else {
        abort();
    }
    cfg_free(c);
    free(err);
    return 0;
}
