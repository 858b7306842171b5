/* fuzz_redact.c -- libFuzzer target for PII redaction.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support $(pkg-config --cflags libpcre2-8) \
 *     tests/fuzz/fuzz_redact.c runtime/policy/redact.c runtime/base/util.c \
 *     $(pkg-config --libs libpcre2-8) -lm -o fuzz_redact
 *   ./fuzz_redact tests/fuzz/corpus/redact
 *
 * The input is a text (up to its first NUL).  Besides memory errors it
 * checks the round trip: restoring what the built-ins redacted gives the
 * text back exactly, also when a custom rule set runs first over the same
 * map (as the invoke path does), and a second text through the same map
 * reuses placeholders for values already seen.  It also restores the raw
 * input, which is what a model's reply looks like to rd_restore. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static rd_rules *defaults, *custom;

static void setup(void)
{
    if (defaults)
        return;
    check(rd_rules_default(&defaults) == SK_OK, "rd_rules_default");
    custom = rd_rules_new();
    check(custom != NULL, "rd_rules_new");
    /* Rules that overlap the built-ins and placeholder syntax on purpose. */
    check(rd_rules_add(custom, "NUM", "[0-9]{2,}", NULL) == SK_OK, "NUM");
    check(rd_rules_add(custom, "BR", "\\[[A-Z]+", NULL) == SK_OK, "BR");
    check(rd_rules_add(custom, "ANY", "\\x{1a}.|Z.?", NULL) == SK_OK, "ANY");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    /* Built-ins alone, fresh map. */
    rd_map *m = rd_map_new();
    char *red = NULL, *back = NULL;
    check(m != NULL, "rd_map_new");
    if (rd_redact(defaults, m, text, &red) == SK_OK) {
        check(rd_restore(m, red, &back) == SK_OK, "restore");
        check(strcmp(back, text) == 0, "round trip (built-ins)");
        free(back);
        back = NULL;
        /* The same text again: the same output, no new placeholders. */
        size_t n = rd_map_count(m);
        char *again = NULL;
        if (rd_redact(defaults, m, text, &again) == SK_OK) {
            check(rd_map_count(m) == n, "repeat adds no placeholders");
            free(again);
        }
    }
    if (rd_restore(m, text, &back) == SK_OK)
        free(back);
    free(red);
    rd_map_free(m);

    /* Custom rules, then the built-ins over their output. */
    m = rd_map_new();
    check(m != NULL, "rd_map_new");
    char *a = NULL, *b = NULL;
    if (rd_redact(custom, m, text, &a) == SK_OK &&
        rd_redact(defaults, m, a, &b) == SK_OK) {
        back = NULL;
        check(rd_restore(m, b, &back) == SK_OK, "restore (chained)");
        check(strcmp(back, text) == 0, "round trip (chained)");
        free(back);
    }
    free(a);
    free(b);
    rd_map_free(m);
    free(text);
    return 0;
}
