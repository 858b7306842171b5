/* test_shape.c -- output shapes: the JSON schema subset, finding JSON in
 * a reply, choices, patterns, bad shapes rejected at load, ceilings. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* The problem for json under schema, or "OK" when it fits.  Static
 * buffer, valid until the next call. */
static const char *verdict(const char *schema, const char *json)
{
    static char out[4200];
    char *p = NULL;
    int rc = shape_validate_json(schema, json, &p);
    if (rc == 1)
        snprintf(out, sizeof out, "OK%s", p ? " (with a problem!)" : "");
    else if (rc == 0)
        snprintf(out, sizeof out, "%s", p ? p : "(no problem text)");
    else
        snprintf(out, sizeof out, "NOMEM");
    free(p);
    return out;
}

#define OK(schema, json) CHECK_STR(verdict(schema, json), "OK")
#define BAD(schema, json, want) CHECK_STR(verdict(schema, json), want)
#define BAD_HAS(schema, json, want) CHECK_CONTAINS(verdict(schema, json), want)

TEST(test_type)
{
    OK("{\"type\":\"string\"}", "\"x\"");
    OK("{\"type\":\"number\"}", "1.5");
    OK("{\"type\":\"integer\"}", "3");
    OK("{\"type\":\"integer\"}", "3.0");
    OK("{\"type\":\"boolean\"}", "false");
    OK("{\"type\":\"null\"}", "null");
    OK("{\"type\":\"object\"}", "{}");
    OK("{\"type\":\"array\"}", "[]");
    OK("{\"type\":[\"string\",\"null\"]}", "null");
    BAD("{\"type\":\"integer\"}", "\"ten\"", "$: expected an integer, got \"ten\"");
    BAD("{\"type\":\"integer\"}", "2.5", "$: expected an integer, got 2.5");
    BAD("{\"type\":\"string\"}", "{\"a\":1}", "$: expected a string, got an object");
    BAD("{\"type\":\"object\"}", "[1]", "$: expected an object, got an array");
    BAD("{\"type\":\"boolean\"}", "\"true\"", "$: expected a boolean, got \"true\"");
    BAD("{\"type\":\"null\"}", "0", "$: expected null, got 0");
    BAD("{\"type\":[\"string\",\"integer\",\"null\"]}", "true",
        "$: expected a string, an integer or null, got true");
    /* a long string is quoted only in part */
    char big[300];
    memset(big, 'a', sizeof big);
    big[0] = '"';
    big[298] = '"';
    big[299] = '\0';
    BAD_HAS("{\"type\":\"number\"}", big, "aaaa\"...");
    CHECK(strlen(verdict("{\"type\":\"number\"}", big)) < 120);
}

TEST(test_enum_const)
{
    OK("{\"enum\":[\"red\",\"green\",1,null]}", "\"green\"");
    OK("{\"enum\":[\"red\",{\"a\":[1,2]}]}", "{\"a\":[1,2]}");
    BAD("{\"enum\":[\"red\",\"green\"]}", "\"blue\"",
        "$: expected one of \"red\", \"green\", got \"blue\"");
    BAD("{\"enum\":[1,2]}", "\"1\"", "$: expected one of 1, 2, got \"1\"");
    OK("{\"const\":42}", "42");
    BAD("{\"const\":42}", "43", "$: expected 42, got 43");
    BAD("{\"const\":\"x\"}", "\"X\"", "$: expected \"x\", got \"X\"");
}

TEST(test_objects)
{
    const char *s = "{\"type\":\"object\",\"required\":[\"name\",\"age\"],"
                    "\"properties\":{\"name\":{\"type\":\"string\"},"
                    "\"age\":{\"type\":\"integer\",\"minimum\":0}},"
                    "\"additionalProperties\":false}";
    OK(s, "{\"name\":\"Ann\",\"age\":30}");
    BAD(s, "{\"name\":\"Ann\"}", "$: missing required property \"age\"");
    BAD(s, "{\"name\":\"Ann\",\"age\":\"ten\"}",
        "$.age: expected an integer, got \"ten\"");
    BAD(s, "{\"name\":\"Ann\",\"age\":3,\"x\":1}",
        "$: unexpected property \"x\" (allowed: name, age)");
    /* every problem is listed, up to a limit */
    BAD(s, "{\"age\":-1}",
        "$: missing required property \"name\"; $.age: expected a number >= 0, "
        "got -1");
    /* additionalProperties as a schema */
    const char *m = "{\"additionalProperties\":{\"type\":\"number\"}}";
    OK(m, "{\"a\":1,\"b\":2}");
    BAD(m, "{\"a\":1,\"b\":\"2\"}", "$.b: expected a number, got \"2\"");
    /* additionalProperties true (or absent) allows anything */
    OK("{\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"a\":\"x\",\"z\":[1]}");
    /* keys that are not identifiers are bracketed in the path */
    BAD("{\"properties\":{\"first name\":{\"type\":\"string\"}}}",
        "{\"first name\":1}", "$[\"first name\"]: expected a string, got 1");
    /* object keywords do not apply to other types */
    OK("{\"required\":[\"a\"]}", "5");
}

TEST(test_arrays_and_paths)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":"
                    "\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":"
                    "\"object\",\"required\":[\"name\"],\"properties\":{\"name\":"
                    "{\"type\":\"string\",\"minLength\":2}}}}}}";
    OK(s, "{\"items\":[{\"name\":\"ab\"}]}");
    BAD(s, "{\"items\":[{\"name\":\"ab\"},{\"name\":\"cd\"},{\"name\":7}]}",
        "$.items[2].name: expected a string, got 7");
    BAD(s, "{\"items\":[{\"name\":\"ab\"},{}]}",
        "$.items[1]: missing required property \"name\"");
    BAD(s, "{\"items\":[{\"name\":\"a\"}]}",
        "$.items[0].name: expected at least 2 characters, got 1");
    BAD(s, "{\"items\":[]}", "$.items: expected at least 1 item, got 0");
    BAD(s, "{\"items\":[{\"name\":\"ab\"},{\"name\":\"ab\"},{\"name\":\"ab\"},"
           "{\"name\":\"ab\"}]}",
        "$.items: expected at most 3 items, got 4");
    OK("{\"items\":{\"type\":\"integer\"}}", "[1,2,3]");
    BAD("{\"items\":{\"type\":\"integer\"}}", "[1,\"2\",3]",
        "$[1]: expected an integer, got \"2\"");
    /* many problems: the first five, then a count */
    BAD_HAS("{\"items\":{\"type\":\"integer\"}}", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\"]",
            "$[4]: expected an integer, got \"e\" (and ");
}

TEST(test_strings)
{
    /* lengths count characters, not bytes */
    const char *s = "{\"type\":\"string\",\"minLength\":3,\"maxLength\":4}";
    OK(s, "\"h\xC3\xA9h\"");          /* 3 characters, 4 bytes */
    OK(s, "\"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\""); /* 3 CJK, 9 bytes */
    BAD(s, "\"\xC3\xA9\xC3\xA9\"", "$: expected at least 3 characters, got 2");
    BAD(s, "\"abcde\"", "$: expected at most 4 characters, got 5");
    OK(s, "\"\\u00e9t\\u00e9\"");      /* escapes decode to 3 characters */
    OK("{\"maxLength\":1}", "\"\xF0\x9F\x98\x80\""); /* one emoji */
    const char *d = "{\"type\":\"string\",\"pattern\":\"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"}";
    OK(d, "\"2024-01-31\"");
    BAD(d, "\"31/01/2024\"",
        "$: expected a string matching /^\\d{4}-\\d{2}-\\d{2}$/, got \"31/01/2024\"");
    /* a pattern is a search, as in JSON Schema */
    OK("{\"pattern\":\"b+\"}", "\"abbbc\"");
    /* a runaway pattern stops at the match limit instead of hanging */
    char runaway[200];
    snprintf(runaway, sizeof runaway, "\"%s\"",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
    BAD_HAS("{\"pattern\":\"^(a+)+$\"}", runaway, "ran past its limit");
}

TEST(test_numbers)
{
    OK("{\"minimum\":0,\"maximum\":10}", "0");
    OK("{\"minimum\":0,\"maximum\":10}", "10");
    BAD("{\"minimum\":0}", "-0.5", "$: expected a number >= 0, got -0.5");
    BAD("{\"maximum\":10}", "11", "$: expected a number <= 10, got 11");
    OK("{\"exclusiveMinimum\":0}", "0.001");
    BAD("{\"exclusiveMinimum\":0}", "0", "$: expected a number > 0, got 0");
    OK("{\"exclusiveMaximum\":1}", "0.999");
    BAD("{\"exclusiveMaximum\":1.5}", "1.5", "$: expected a number < 1.5, got 1.5");
    OK("{\"minimum\":5}", "\"strings are not numbers\"");
}

TEST(test_combinators)
{
    const char *any = "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}";
    OK(any, "\"a\"");
    OK(any, "3");
    BAD(any, "1.5", "$: matches none of the 2 alternatives (the first: $: "
                    "expected a string, got 1.5)");
    const char *one = "{\"oneOf\":[{\"type\":\"number\"},{\"type\":\"integer\"}]}";
    OK(one, "1.5");
    BAD(one, "2", "$: matches 2 of the alternatives, expected exactly one");
    BAD_HAS(one, "\"x\"", "matches none of the 2 alternatives");
    const char *all = "{\"allOf\":[{\"minimum\":1},{\"maximum\":5}]}";
    OK(all, "3");
    BAD(all, "6", "$: expected a number <= 5, got 6");
    /* nested: the path reaches into the branch */
    BAD("{\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":"
        "\"string\"}]}}}", "{\"v\":1}",
        "$.v: matches none of the 2 alternatives (the first: $.v: expected "
        "null, got 1)");
    /* boolean schemas */
    OK("true", "{\"anything\":[1]}");
    BAD("false", "1", "$: no value is allowed here");
    OK("{\"properties\":{\"x\":true}}", "{\"x\":5}");
    /* unknown keywords are ignored */
    OK("{\"type\":\"string\",\"format\":\"email\",\"title\":\"T\",\"$id\":\"x\"}",
       "\"not an email\"");
}

TEST(test_bad_input)
{
    BAD("{\"type\":\"string\"}", "{\"a\":", "the value is not valid JSON: it ends too soon");
    BAD_HAS("{\"type\":\"string\"}", "[1,,2]", "the value is not valid JSON near \",2]\"");
    BAD_HAS("{\"type\":\"string\"}", "\"a\" \"b\"", "unexpected text after the value");
    /* depth ceiling on the value */
    char deep[400];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    BAD("true", deep, "the value nests deeper than 64 levels");
    /* bad schemas are reported as such */
    BAD_HAS("{\"type\":\"int\"}", "1", "invalid schema: schema.type: unknown type \"int\"");
    BAD_HAS("{\"type\":", "1", "invalid schema: the schema is not valid JSON");
    /* a NULL problem pointer is allowed */
    CHECK_INT(shape_validate_json("{\"type\":\"string\"}", "1", NULL), 0);
    CHECK_INT(shape_validate_json("{\"type\":\"string\"}", "\"1\"", NULL), 1);
}

/* shape_parse's error for an "output" value, or "OK". */
static const char *parse_err(const char *json)
{
    static char out[1024];
    sk_shape *s = NULL;
    char *msg = NULL;
    sk_status rc = shape_parse(json, strlen(json), "skills/T/F/config.json", &s,
                               &msg);
    if (rc == SK_OK)
        snprintf(out, sizeof out, "OK%s", msg ? " (with a message!)" : "");
    else
        snprintf(out, sizeof out, "%d %s", (int)rc, msg ? msg : "(null)");
    if (rc != SK_OK && s)
        snprintf(out, sizeof out, "failed but returned a shape");
    shape_free(s);
    free(msg);
    return out;
}

TEST(test_parse_errors)
{
    CHECK_STR(parse_err("{\"json_schema\":{\"type\":\"object\"}}"), "OK");
    CHECK_STR(parse_err("{\"choice\":[\"yes\",\"no\"],\"retries\":0}"), "OK");
    CHECK_STR(parse_err("{\"regex\":\"^\\\\d+$\",\"retries\":10}"), "OK");
    CHECK_STR(parse_err("{\"json_schema\":{\"properties\":{\"age\":{\"type\":\"int\"}}}}"),
              "5 skills/T/F/config.json: output.json_schema.properties.age.type: "
              "unknown type \"int\" (known: string, number, integer, boolean, "
              "null, object, array)");
    CHECK_STR(parse_err("{\"json_schema\":{\"items\":{\"anyOf\":[{\"type\":\"string\"},"
                        "{\"minLength\":-1}]}}}"),
              "5 skills/T/F/config.json: output.json_schema.items.anyOf[1].minLength: "
              "expected a non-negative integer");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"properties\":{\"d\":{\"pattern\":\"(\"}}}}"),
                   "output.json_schema.properties.d.pattern: invalid regular expression: ");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"required\":\"a\"}}"),
                   "output.json_schema.required: expected an array of property names");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"enum\":[]}}"),
                   "output.json_schema.enum: expected a non-empty array");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"oneOf\":{}}}"),
                   "output.json_schema.oneOf: expected a non-empty array of schemas");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"maximum\":\"5\"}}"),
                   "output.json_schema.maximum: expected a number");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"properties\":[]}}"),
                   "output.json_schema.properties: expected an object");
    CHECK_CONTAINS(parse_err("{\"json_schema\":{\"additionalProperties\":3}}"),
                   "output.json_schema.additionalProperties: expected a schema");
    CHECK_CONTAINS(parse_err("{\"json_schema\":5}"), "output.json_schema: expected a schema");
    CHECK_CONTAINS(parse_err("{\"choice\":[]}"), "output.choice: expected a non-empty array");
    CHECK_CONTAINS(parse_err("{\"choice\":[\"a\",2]}"), "output.choice[1]: expected a non-empty string");
    CHECK_CONTAINS(parse_err("{\"choice\":[\"Yes\",\"yes\"]}"), "output.choice[1]: \"yes\" is listed twice");
    CHECK_CONTAINS(parse_err("{\"regex\":\"a(b\"}"), "output.regex: invalid regular expression: ");
    CHECK_CONTAINS(parse_err("{\"regex\":\"\"}"), "output.regex: expected a regular expression");
    CHECK_CONTAINS(parse_err("{\"regex\":\"a\",\"retries\":11}"),
                   "output.retries: expected an integer from 0 to 10");
    CHECK_CONTAINS(parse_err("{\"regex\":\"a\",\"retries\":1.5}"), "output.retries");
    CHECK_CONTAINS(parse_err("{\"regex\":\"a\",\"choice\":[\"x\"]}"), "give only one of");
    CHECK_CONTAINS(parse_err("{\"retries\":1}"), "output: expected one of");
    CHECK_CONTAINS(parse_err("{\"choise\":[\"a\"]}"), "output: unknown key \"choise\"");
    CHECK_CONTAINS(parse_err("[1]"), "output: expected an object");
    CHECK_CONTAINS(parse_err("{\"regex\":"), "5 skills/T/F/config.json: output is not valid JSON");

    /* no origin: the message starts at the path */
    sk_shape *s = NULL;
    char *msg = NULL;
    CHECK_INT(shape_parse("{}", 2, NULL, &s, &msg), SK_CONFIG);
    CHECK(s == NULL);
    CHECK_STR(msg, "output: expected one of \"json_schema\", \"choice\" or \"regex\"");
    free(msg);
}

TEST(test_ceilings)
{
    /* nesting of the document */
    char deep[300];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"json_schema\":");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    CHECK_CONTAINS(parse_err(deep), "output nests deeper than 64 levels");
    /* nesting of schemas within the limit of the text, past that of
     * schemas: {"items":{"items":...}} 63 deep is fine, the text limit
     * catches deeper ones */
    char nested[2000];
    n = (size_t)snprintf(nested, sizeof nested, "{\"json_schema\":");
    for (int i = 0; i < 62; i++)
        n += (size_t)snprintf(nested + n, sizeof nested - n, "{\"items\":");
    n += (size_t)snprintf(nested + n, sizeof nested - n, "true");
    for (int i = 0; i < 62; i++)
        nested[n++] = '}';
    nested[n++] = '}';
    nested[n] = '\0';
    CHECK_STR(parse_err(nested), "OK");
    /* size */
    size_t big = ((size_t)1 << 20) + 10;
    char *huge = malloc(big + 1);
    CHECK(huge != NULL);
    if (huge) {
        memset(huge, ' ', big);
        memcpy(huge, "{\"regex\":\"a\"}", 13);
        huge[big] = '\0';
        sk_shape *s = NULL;
        char *msg = NULL;
        CHECK_INT(shape_parse(huge, big, "f", &s, &msg), SK_CONFIG);
        CHECK_CONTAINS(msg, "f: output: over the 1048576-byte limit");
        free(msg);
        CHECK_CONTAINS(verdict(huge, "1"), "invalid schema: over the 1048576-byte limit");
        free(huge);
    }
}

static sk_shape *mk(const char *json)
{
    sk_shape *s = NULL;
    char *msg = NULL;
    if (shape_parse(json, strlen(json), "t", &s, &msg) != SK_OK) {
        fprintf(stderr, "shape_parse(%s): %s\n", json, msg ? msg : "nomem");
        free(msg);
        return NULL;
    }
    return s;
}

/* shape_check's verdict: "OK <clean>" or the problem. */
static const char *check(const sk_shape *s, const char *reply)
{
    static char out[4200];
    char *p = NULL, *c = NULL;
    int rc = shape_check(s, reply, &p, &c);
    if (rc == 1)
        snprintf(out, sizeof out, "OK %s%s", c ? c : "(null)", p ? " (problem!)" : "");
    else if (rc == 0)
        snprintf(out, sizeof out, "%s%s", p ? p : "(null)", c ? " (clean!)" : "");
    else
        snprintf(out, sizeof out, "NOMEM");
    free(p);
    free(c);
    return out;
}

TEST(test_extraction)
{
    sk_shape *s = mk("{\"json_schema\":{\"type\":\"object\",\"required\":[\"a\"]}}");
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_STR(check(s, "{\"a\":1}"), "OK {\"a\":1}");
    CHECK_STR(check(s, "  \n{\"a\": 1}\n\n"), "OK {\"a\": 1}");
    CHECK_STR(check(s, "Here you go:\n```json\n{\"a\": [1, 2]}\n```\nAnything else?"),
              "OK {\"a\": [1, 2]}");
    CHECK_STR(check(s, "```\n{\"a\":true}\n```"), "OK {\"a\":true}");
    /* a fence whose content is not JSON is skipped for the next one */
    CHECK_STR(check(s, "```sh\nls {x}\n```\nthen\n```json\n{\"a\":2}\n```"),
              "OK {\"a\":2}");
    /* prose around a bare object; braces inside strings do not count */
    CHECK_STR(check(s, "Sure! The answer is {\"a\": \"} tricky {\", \"b\": 2}. Hope it helps."),
              "OK {\"a\": \"} tricky {\", \"b\": 2}");
    /* an escaped quote inside a string */
    CHECK_STR(check(s, "Result: {\"a\": \"say \\\"hi\\\" }\"} done"),
              "OK {\"a\": \"say \\\"hi\\\" }\"}");
    /* a stray brace before the JSON: the next candidate is tried */
    CHECK_STR(check(s, "use {braces} wisely: {\"a\":0}"), "OK {\"a\":0}");
    /* found, but does not validate */
    CHECK_STR(check(s, "```json\n{\"b\":1}\n```"), "$: missing required property \"a\"");
    /* no JSON at all */
    CHECK_STR(check(s, "I cannot help with that."),
              "expected a JSON value, but the reply contains none");
    /* cut short */
    CHECK_STR(check(s, "Here: {\"a\": [1, 2"), "the reply is not valid JSON: it ends too soon");
    CHECK_STR(check(s, ""), "expected a JSON value, but the reply contains none");
    shape_free(s);

    /* a scalar schema takes the whole reply */
    s = mk("{\"json_schema\":{\"type\":\"integer\"}}");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(check(s, " 42 \n"), "OK 42");
        CHECK_STR(check(s, "\"42\""), "$: expected an integer, got \"42\"");
        shape_free(s);
    }
    /* arrays */
    s = mk("{\"json_schema\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(check(s, "Tags: [\"a\", \"b\"]."), "OK [\"a\", \"b\"]");
        CHECK_STR(check(s, "[\"a\", 2]"), "$[1]: expected a string, got 2");
        shape_free(s);
    }
}

TEST(test_choice)
{
    sk_shape *s = mk("{\"choice\":[\"Yes\",\"No\",\"Not sure\"],\"retries\":4}");
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(shape_retries(s), 4);
    CHECK_STR(check(s, "yes"), "OK Yes");
    CHECK_STR(check(s, "  YES.\n"), "OK Yes");
    CHECK_STR(check(s, "\"no\""), "OK No");
    CHECK_STR(check(s, "'No'!"), "OK No");
    CHECK_STR(check(s, "**not sure**"), "OK Not sure");
    CHECK_STR(check(s, "`Yes`."), "OK Yes");
    CHECK_STR(check(s, "Yes, definitely"),
              "expected exactly one of: Yes, No, Not sure; got \"Yes, definitely\"");
    CHECK_STR(check(s, "maybe"), "expected exactly one of: Yes, No, Not sure; got \"maybe\"");
    CHECK_STR(check(s, ""), "expected exactly one of: Yes, No, Not sure; got \"\"");
    const char *json_schema = "x", *regex = "x";
    char *const *choices = NULL;
    size_t n = 0;
    shape_request(s, &json_schema, &choices, &n, &regex);
    CHECK(json_schema == NULL && regex == NULL);
    CHECK_INT(n, 3);
    CHECK(choices && strcmp(choices[2], "Not sure") == 0);
    shape_free(s);
}

TEST(test_regex)
{
    sk_shape *s = mk("{\"regex\":\"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"}");
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_INT(shape_retries(s), 2); /* the default */
    CHECK_STR(check(s, "2024-05-06"), "OK 2024-05-06");
    CHECK_STR(check(s, "\n 2024-05-06 \n"), "OK 2024-05-06");
    CHECK_STR(check(s, "The date is 2024-05-06"),
              "expected a reply matching /^\\d{4}-\\d{2}-\\d{2}$/, got \"The date is 2024-05-06\"");
    const char *json_schema = "x", *regex = NULL;
    char *const *choices = (char *const *)&s;
    size_t n = 9;
    shape_request(s, &json_schema, &choices, &n, &regex);
    CHECK(json_schema == NULL && choices == NULL && n == 0);
    CHECK_STR(regex, "^\\d{4}-\\d{2}-\\d{2}$");

    sk_shape *c = shape_clone(s);
    CHECK(c != NULL);
    shape_free(s);
    if (c) {
        CHECK_STR(check(c, "1999-12-31"), "OK 1999-12-31");
        CHECK_STR(check(c, "12/31/1999"),
                  "expected a reply matching /^\\d{4}-\\d{2}-\\d{2}$/, got \"12/31/1999\"");
        shape_free(c);
    }
    /* unicode in the pattern and the reply */
    s = mk("{\"regex\":\"^caf\xC3\xA9.$\"}");
    CHECK(s != NULL);
    if (s) {
        CHECK_STR(check(s, "caf\xC3\xA9\xC3\xA9"), "OK caf\xC3\xA9\xC3\xA9");
        shape_free(s);
    }
}

TEST(test_request_and_clone)
{
    sk_shape *s = mk("{\"json_schema\": {\"type\": \"object\", \"properties\": "
                     "{\"a\": {\"type\": \"string\"}}}, \"retries\": 0}");
    CHECK(s != NULL);
    if (!s)
        return;
    const char *js = NULL, *re = "x";
    char *const *ch = (char *const *)&s;
    size_t n = 5;
    shape_request(s, &js, &ch, &n, &re);
    CHECK_STR(js, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}");
    CHECK(ch == NULL && n == 0 && re == NULL);
    CHECK_INT(shape_retries(s), 0);
    sk_shape *c = shape_clone(s);
    shape_free(s);
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(shape_retries(c), 0);
        CHECK_STR(check(c, "{\"a\":\"x\"}"), "OK {\"a\":\"x\"}");
        CHECK_STR(check(c, "{\"a\":1}"), "$.a: expected a string, got 1");
        shape_free(c);
    }
    /* NULL shapes: anything fits; NULL frees and clones are harmless */
    CHECK_STR(check(NULL, "free text"), "OK free text");
    CHECK(shape_clone(NULL) == NULL);
    shape_free(NULL);
    CHECK_INT(shape_retries(NULL), 0);
    /* the clean text is optional */
    s = mk("{\"choice\":[\"a\"]}");
    if (s) {
        CHECK_INT(shape_check(s, "A", NULL, NULL), 1);
        CHECK_INT(shape_check(s, "B", NULL, NULL), 0);
        shape_free(s);
    }
}

/* Fails the Nth allocation for N = 1.. until a run succeeds; every run
 * must report -1 / SK_NOMEM cleanly and never leak. */
TEST(test_alloc_failures)
{
    const char *out = "{\"json_schema\":{\"type\":\"object\",\"required\":[\"a\"],"
                      "\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^x\"},"
                      "\"b\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"integer\"}]}},"
                      "\"additionalProperties\":false}}";
    int ok = 0, bad = 0;
    for (long n = 1; n < 500 && !ok; n++) {
        sk_shape *s = NULL;
        char *msg = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = shape_parse(out, strlen(out), "f", &s, &msg);
        sk_alloc_fail_at(0);
        if (rc == SK_OK)
            ok = 1;
        else if (rc != SK_NOMEM || s || msg)
            bad++;
        shape_free(s);
        free(msg);
    }
    CHECK(ok);
    CHECK_INT(bad, 0);

    sk_shape *s = mk(out);
    CHECK(s != NULL);
    const char *replies[] = {"```json\n{\"a\":\"xy\",\"b\":3}\n```",
                             "{\"a\":\"y\",\"b\":\"3\",\"c\":1}",
                             "no json here"};
    const int want[] = {1, 0, 0};
    for (size_t r = 0; s && r < 3; r++) {
        ok = 0;
        bad = 0;
        for (long n = 1; n < 500 && !ok; n++) {
            char *p = NULL, *c = NULL;
            sk_alloc_fail_at(n);
            int rc = shape_check(s, replies[r], &p, &c);
            sk_alloc_fail_at(0);
            if (rc == want[r])
                ok = 1;
            else if (rc != -1 || p || c)
                bad++;
            if (rc == 1 && !c)
                bad++;
            if (rc == 0 && !p)
                bad++;
            free(p);
            free(c);
        }
        CHECK(ok);
        CHECK_INT(bad, 0);
    }
    for (long n = 1; s && n < 100; n++) {
        sk_alloc_fail_at(n);
        sk_shape *c = shape_clone(s);
        sk_alloc_fail_at(0);
        if (c) {
            shape_free(c);
            break;
        }
    }
    shape_free(s);

    s = mk("{\"choice\":[\"yes\",\"no\"]}");
    ok = 0;
    for (long n = 1; s && n < 100 && !ok; n++) {
        char *p = NULL;
        sk_alloc_fail_at(n);
        int rc = shape_check(s, "perhaps", &p, NULL);
        sk_alloc_fail_at(0);
        ok = rc == 0 && p;
        CHECK(rc == 0 || (rc == -1 && !p));
        free(p);
    }
    CHECK(ok);
    shape_free(s);

    ok = 0;
    for (long n = 1; n < 500 && !ok; n++) {
        char *p = NULL;
        sk_alloc_fail_at(n);
        int rc = shape_validate_json("{\"items\":{\"enum\":[1,2]}}", "[1,3]", &p);
        sk_alloc_fail_at(0);
        ok = rc == 0 && p && strcmp(p, "$[1]: expected one of 1, 2, got 3") == 0;
        CHECK(rc == 0 || (rc == -1 && !p));
        free(p);
    }
    CHECK(ok);
}

int main(void)
{
    RUN(test_type);
    RUN(test_enum_const);
    RUN(test_objects);
    RUN(test_arrays_and_paths);
    RUN(test_strings);
    RUN(test_numbers);
    RUN(test_combinators);
    RUN(test_bad_input);
    RUN(test_parse_errors);
    RUN(test_ceilings);
    RUN(test_extraction);
    RUN(test_choice);
    RUN(test_regex);
    RUN(test_request_and_clone);
    RUN(test_alloc_failures);
    return tu_finish();
}
