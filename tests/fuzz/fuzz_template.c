/* fuzz_template.c -- libFuzzer target for the template parser.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support tests/fuzz/fuzz_template.c \
 *     runtime/formats/template.c runtime/base/util.c -o fuzz_template
 *   ./fuzz_template tests/fuzz/corpus/template
 *
 * Besides memory errors it checks that the blocks cover the input exactly:
 * joining each text block's text and every other block's src gives back
 * the template, and block positions only move forward. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_template *t = NULL;
    char *err = NULL;
    sk_status rc = tpl_parse((const char *)data, size, "fuzz", &t, &err);
    if (rc != SK_OK) {
        check(t == NULL, "no template on failure");
        check(rc != SK_TEMPLATE || (err && strncmp(err, "fuzz:", 5) == 0),
              "syntax errors carry a position");
        free(err);
        return 0;
    }
    check(err == NULL, "no message on success");

    sk_buf whole;
    buf_init(&whole, 0);
    int line = 0, col = 0;
    size_t calls = 0;
    for (size_t i = 0; i < t->n; i++) {
        const tpl_block *b = &t->blocks[i];
        check(b->line > line || (b->line == line && b->col > col),
              "positions move forward");
        line = b->line;
        col = b->col;
        check(b->text && b->src, "text and src are set");
        if (b->kind == TB_CALL)
            check(tpl_call_at(t, calls++) == b, "tpl_call_at order");
        if (buf_adds(&whole, b->kind == TB_TEXT ? b->text : b->src) != SK_OK)
            abort();
    }
    check(calls == t->n_calls, "n_calls");
    check(whole.len == size && (size == 0 || !memcmp(whole.p, data, size)),
          "blocks cover the input exactly");
    buf_free(&whole);

    sk_vars *v;
    if (sk_vars_new(&v) != SK_OK)
        abort();
    sk_vars_set(v, "input", "{{$x}} in");
    sk_vars_set(v, "x", "X");
    char **outs = calloc(t->n_calls + 1, sizeof *outs);
    for (size_t i = 0; i < t->n_calls; i++)
        outs[i] = (i % 2) ? "out" : NULL;
    sk_buf b;
    buf_init(&b, 1 << 20);
    rc = tpl_assemble(t, v, outs, NULL, &b);
    check(rc == SK_OK || rc == SK_TOO_LARGE, "assemble status");
    buf_free(&b);
    buf_init(&b, 0);
    check(tpl_assemble(t, NULL, NULL, NULL, &b) == SK_OK, "assemble without vars");
    buf_free(&b);
    free(outs);
    sk_vars_free(v);
    tpl_free(t);
    return 0;
}
