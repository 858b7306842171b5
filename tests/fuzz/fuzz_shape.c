/* fuzz_shape.c -- libFuzzer target for output shapes: the JSON schema
 * validator, finding JSON in a reply, and parsing "output" values.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -Iruntime -I. -Itests/support \
 *     $(pkg-config --cflags libcjson libpcre2-8) \
 *     tests/fuzz/fuzz_shape.c runtime/policy/shape.c runtime/base/util.c \
 *     $(pkg-config --libs libcjson libpcre2-8) -lm -o fuzz_shape
 *   ./fuzz_shape -max_total_time=60
 *
 * The input is a reply (or a JSON value) checked against a fixed set of
 * schemas and shapes, and also an "output" value to parse.  Invariants:
 * exactly one of the problem and the clean text comes back; the clean
 * text is JSON that passes the same schema on its own; a parsed shape
 * survives a clone and checks its own text without crashing. */
#include <stdlib.h>
#include <string.h>

#include "all.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const char *const schemas[] = {
    "{\"type\":\"object\",\"required\":[\"name\",\"tags\"],\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"exclusiveMaximum\":150},"
    "\"tags\":{\"type\":\"array\",\"maxItems\":4,\"items\":{\"enum\":[\"a\",\"b\",1,null]}}},"
    "\"additionalProperties\":false}",
    "{\"anyOf\":[{\"type\":\"string\",\"pattern\":\"^(a|b)*c$\"},{\"type\":[\"number\",\"null\"]}]}",
    "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\",\"maximum\":1}],"
    "\"allOf\":[{\"minimum\":-5}]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"additionalProperties\":"
    "{\"const\":{\"k\":[true]}}}}",
    "true",
};

static const char *const outputs[] = {
    "{\"choice\":[\"yes\",\"no\",\"Not sure\"]}",
    "{\"regex\":\"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"}",
};

static void check_reply(const sk_shape *s, const char *schema, const char *reply)
{
    char *problem = NULL, *clean = NULL;
    int rc = shape_check(s, reply, &problem, &clean);
    if (rc == 1) {
        if (problem || !clean)
            abort();
        if (schema && shape_validate_json(schema, clean, NULL) != 1)
            abort();
    } else if (rc == 0) {
        if (!problem || clean || !*problem)
            abort();
    } else {
        abort(); /* no allocation failures are injected here */
    }
    free(problem);
    free(clean);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    for (size_t i = 0; i < sizeof schemas / sizeof *schemas; i++) {
        char *problem = NULL;
        int rc = shape_validate_json(schemas[i], text, &problem);
        if ((rc == 1) != (problem == NULL) || rc < 0)
            abort();
        free(problem);

        char *out = sk_asprintf("{\"json_schema\":%s}", schemas[i]);
        sk_shape *s = NULL;
        char *msg = NULL;
        if (!out || shape_parse(out, strlen(out), "f", &s, &msg) != SK_OK)
            abort();
        check_reply(s, schemas[i], text);
        shape_free(s);
        free(out);
    }
    for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++) {
        sk_shape *s = NULL;
        char *msg = NULL;
        if (shape_parse(outputs[i], strlen(outputs[i]), "f", &s, &msg) != SK_OK)
            abort();
        check_reply(s, NULL, text);
        shape_free(s);
    }

    /* the input as an "output" value, and as a schema */
    sk_shape *s = NULL;
    char *msg = NULL;
    sk_status rc = shape_parse(text, size, "f", &s, &msg);
    if (rc == SK_OK) {
        if (!s || msg)
            abort();
        sk_shape *c = shape_clone(s);
        if (!c)
            abort();
        check_reply(c, NULL, text);
        shape_free(c);
        shape_free(s);
    } else if (s || !msg || strncmp(msg, "f: ", 3) != 0) {
        abort();
    }
    free(msg);
    char *problem = NULL;
    int vr = shape_validate_json(text, "{\"a\":[1,\"x\",null]}", &problem);
    if (vr < 0 || (vr == 1) != (problem == NULL))
        abort();
    free(problem);
    free(text);
    return 0;
}
