/* test_openai_wire.c -- the OpenAI wire format: request bodies, replies,
 * streamed chunks and error bodies.  No network. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static model_req base_req(void)
{
    static const sk_msg msgs[] = {{.role = "system", .content = "Be brief."},
                                  {.role = "user", .content = "Say \"hi\"\n\tplease"}};
    model_req r;
    memset(&r, 0, sizeof r);
    r.function = "T.Echo";
    r.model = "gpt-test";
    r.msgs = msgs;
    r.n_msgs = 2;
    r.max_tokens = -1;
    r.temperature = r.top_p = r.presence_penalty = r.frequency_penalty = NAN;
    return r;
}

TEST(test_request_minimal)
{
    model_req r = base_req();
    char *s = oai_request_json(&r, "gpt-test");
    CHECK(s != NULL);
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "gpt-test");
    cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    CHECK_INT(cJSON_GetArraySize(msgs), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "role")), "system");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "content")),
              "Say \"hi\"\n\tplease");
    /* unset settings are omitted, not sent as defaults */
    const char *absent[] = {"max_tokens", "temperature", "top_p",
                            "presence_penalty", "frequency_penalty", "stop",
                            "stream", "stream_options", "logprobs",
                            "top_logprobs"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++)
        CHECK(cJSON_GetObjectItem(j, absent[i]) == NULL);
    cJSON_Delete(j);
    free(s);
    /* model NULL falls back to req->model */
    s = oai_request_json(&r, NULL);
    CHECK_CONTAINS(s, "\"model\":\"gpt-test\"");
    free(s);
}

TEST(test_request_full)
{
    model_req r = base_req();
    char *stop[] = {"\n\n", "END"};
    r.max_tokens = 256;
    r.temperature = 0.7;
    r.top_p = 1;
    r.presence_penalty = -0.5;
    r.frequency_penalty = 0.25;
    r.stop = stop;
    r.n_stop = 2;
    r.stream = 1;
    r.logprobs = 1;
    r.top_logprobs = 3;
    char *s = oai_request_json(&r, "m");
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    CHECK_INT(cJSON_GetObjectItem(j, "max_tokens")->valueint, 256);
    CHECK(cJSON_GetObjectItem(j, "temperature")->valuedouble == 0.7);
    CHECK_CONTAINS(s, "\"temperature\":0.7,"); /* short, exact form */
    CHECK(cJSON_GetObjectItem(j, "top_p")->valuedouble == 1);
    CHECK(cJSON_GetObjectItem(j, "presence_penalty")->valuedouble == -0.5);
    CHECK(cJSON_GetObjectItem(j, "frequency_penalty")->valuedouble == 0.25);
    cJSON *st = cJSON_GetObjectItem(j, "stop");
    CHECK_INT(cJSON_GetArraySize(st), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(st, 0)), "\n\n");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(st, 1)), "END");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"),
                                           "include_usage")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "logprobs")));
    CHECK_INT(cJSON_GetObjectItem(j, "top_logprobs")->valueint, 3);
    cJSON_Delete(j);
    free(s);
    /* max_tokens 0 is a value, and infinities are never emitted */
    r.max_tokens = 0;
    r.temperature = INFINITY;
    r.top_logprobs = 0;
    s = oai_request_json(&r, "m");
    j = cJSON_Parse(s);
    CHECK(j != NULL);
    CHECK_INT(cJSON_GetObjectItem(j, "max_tokens")->valueint, 0);
    CHECK(cJSON_GetObjectItem(j, "temperature") == NULL);
    CHECK(cJSON_GetObjectItem(j, "top_logprobs") == NULL);
    cJSON_Delete(j);
    free(s);
}

TEST(test_request_control_chars)
{
    static const sk_msg msgs[] = {{.role = "user", .content = "a\x01" "b\\c"}};
    model_req r = base_req();
    r.msgs = msgs;
    r.n_msgs = 1;
    char *s = oai_request_json(&r, "m");
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(
                  cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content")),
              "a\x01" "b\\c");
    cJSON_Delete(j);
    free(s);
}

static const char *full_reply =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-x-2024\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},"
    "\"logprobs\":{\"content\":[{\"token\":\"Hello\",\"logprob\":-0.25,\"bytes\":[72],\"top_logprobs\":[]},"
    "{\"token\":\" there\",\"logprob\":-1.5,\"top_logprobs\":[]}]},"
    "\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14}}";

TEST(test_parse_reply)
{
    model_resp *r = NULL;
    char *msg = NULL;
    CHECK_INT(oai_parse_reply(full_reply, strlen(full_reply), &r, &msg), SK_OK);
    CHECK(msg == NULL);
    if (!r)
        return;
    CHECK_STR(r->text, "Hello there");
    CHECK_STR(r->finish_reason, "stop");
    CHECK_STR(r->model, "gpt-x-2024");
    CHECK_INT(r->prompt_tokens, 12);
    CHECK_INT(r->completion_tokens, 2);
    CHECK_INT(r->n_logprobs, 2);
    CHECK_STR(r->logprobs[0].token, "Hello");
    CHECK(r->logprobs[0].logprob == -0.25);
    CHECK_STR(r->logprobs[1].token, " there");
    CHECK(r->logprobs[1].logprob == -1.5);
    CHECK_INT(r->attempts, 1);
    resp_free(r);
}

TEST(test_parse_reply_minimal)
{
    const char *s = "{\"choices\":[{\"message\":{\"content\":\"\"},\"finish_reason\":null,"
                    "\"logprobs\":null}]}";
    model_resp *r = NULL;
    CHECK_INT(oai_parse_reply(s, strlen(s), &r, NULL), SK_OK);
    if (!r)
        return;
    CHECK_STR(r->text, "");
    CHECK(r->finish_reason == NULL);
    CHECK(r->model == NULL);
    CHECK_INT(r->prompt_tokens, -1);
    CHECK_INT(r->completion_tokens, -1);
    CHECK_INT(r->n_logprobs, 0);
    resp_free(r);
}

/* Each bad body gives want and a message containing needle. */
static void bad_reply(const char *body, sk_status want, const char *needle)
{
    model_resp *r = (model_resp *)1;
    char *msg = NULL;
    CHECK_INT(oai_parse_reply(body, strlen(body), &r, &msg), want);
    CHECK(r == NULL);
    CHECK_CONTAINS(msg, needle);
    free(msg);
}

TEST(test_parse_reply_errors)
{
    bad_reply("", SK_PROTOCOL, "not valid JSON");
    bad_reply("<html>oops</html>", SK_PROTOCOL, "not valid JSON");
    bad_reply("{\"choices\":[{\"message\":{\"content\":\"x\"}}", SK_PROTOCOL, "not valid JSON");
    bad_reply("[1,2]", SK_PROTOCOL, "not a JSON object");
    bad_reply("{}", SK_PROTOCOL, "no \"choices\"");
    bad_reply("{\"choices\":[]}", SK_PROTOCOL, "non-empty array");
    bad_reply("{\"choices\":{}}", SK_PROTOCOL, "non-empty array");
    bad_reply("{\"choices\":[{\"text\":\"legacy\"}]}", SK_PROTOCOL, "\"message\"");
    bad_reply("{\"choices\":[{\"message\":{\"content\":42}}]}", SK_PROTOCOL,
              "content is not a string");
    bad_reply("{\"choices\":[{\"message\":{\"content\":null}}]}", SK_PROTOCOL,
              "content is not a string");
    bad_reply("{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":\"content_filter\"}]}",
              SK_FILTERED, "content filter");
    bad_reply("{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":7}", SK_PROTOCOL,
              "usage");
    bad_reply("{\"choices\":[{\"message\":{\"content\":\"x\"},\"logprobs\":{\"content\":5}}]}",
              SK_PROTOCOL, "logprobs.content");
    bad_reply("{\"choices\":[{\"message\":{\"content\":\"x\"},\"logprobs\":{\"content\":[{\"token\":1}]}}]}",
              SK_PROTOCOL, "logprobs entry");
    bad_reply("{\"error\":{\"message\":\"quota exceeded\"}}", SK_MODEL, "quota exceeded");
}

/* Applies a list of chunks; returns the joined deltas (caller frees). */
static char *apply_all(const char *const *chunks, size_t n, model_resp *resp,
                       sk_status *last)
{
    sk_buf text, deltas;
    buf_init(&text, 0);
    buf_init(&deltas, 0);
    *last = SK_OK;
    for (size_t i = 0; i < n && *last == SK_OK; i++) {
        const char *d = NULL;
        size_t dl = 99;
        char *msg = NULL;
        *last = oai_apply_chunk(chunks[i], strlen(chunks[i]), resp, &text, &d,
                                &dl, &msg);
        if (*last == SK_OK) {
            CHECK(msg == NULL);
            CHECK((d == NULL) == (dl == 0));
            if (d) {
                /* the delta is the tail of the accumulated text */
                CHECK(d + dl == text.p + text.len);
                buf_add(&deltas, d, dl);
            }
        } else {
            CHECK(msg != NULL);
        }
        free(msg);
    }
    free(resp->text);
    resp->text = buf_steal(&text);
    return buf_steal(&deltas);
}

TEST(test_chunks)
{
    const char *chunks[] = {
        "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-s\","
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
        "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},"
        "\"logprobs\":{\"content\":[{\"token\":\"Hel\",\"logprob\":-0.5,\"top_logprobs\":[]}]},"
        "\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},"
        "\"logprobs\":{\"content\":[{\"token\":\"lo\",\"logprob\":-0.125,\"top_logprobs\":[]}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
        "{\"model\":\"other\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
    };
    model_resp resp;
    memset(&resp, 0, sizeof resp);
    resp.prompt_tokens = resp.completion_tokens = -1;
    sk_status last;
    char *deltas = apply_all(chunks, 5, &resp, &last);
    CHECK_INT(last, SK_OK);
    CHECK_STR(deltas, "Hello");
    CHECK_STR(resp.text, "Hello");
    CHECK_STR(resp.finish_reason, "length");
    CHECK_STR(resp.model, "gpt-s"); /* the first one reported */
    CHECK_INT(resp.prompt_tokens, 5);
    CHECK_INT(resp.completion_tokens, 2);
    CHECK_INT(resp.n_logprobs, 2);
    if (resp.n_logprobs == 2) {
        CHECK_STR(resp.logprobs[1].token, "lo");
        CHECK(resp.logprobs[1].logprob == -0.125);
    }
    free(deltas);
    model_resp *heap = sk_calloc(1, sizeof *heap);
    *heap = resp;
    resp_free(heap);
}

TEST(test_chunk_errors)
{
    struct {
        const char *chunk;
        sk_status want;
        const char *needle;
    } cases[] = {
        {"[DONE]", SK_PROTOCOL, "not valid JSON"},
        {"{\"choices\":[{\"delta\":{\"content\":\"x\"}}]", SK_PROTOCOL, "not valid JSON"},
        {"\"str\"", SK_PROTOCOL, "not a JSON object"},
        {"{\"choices\":7}", SK_PROTOCOL, "not an array"},
        {"{\"choices\":[3]}", SK_PROTOCOL, "choice is not an object"},
        {"{\"choices\":[{\"delta\":[]}]}", SK_PROTOCOL, "delta"},
        {"{\"choices\":[{\"delta\":{\"content\":[1]}}]}", SK_PROTOCOL, "not a string"},
        {"{\"error\":{\"message\":\"overloaded\"}}", SK_MODEL, "overloaded"},
        {"{\"error\":\"bad\"}", SK_MODEL, "bad"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        model_resp resp;
        memset(&resp, 0, sizeof resp);
        sk_buf text;
        buf_init(&text, 0);
        const char *d = (const char *)1;
        size_t dl = 1;
        char *msg = NULL;
        CHECK_INT(oai_apply_chunk(cases[i].chunk, strlen(cases[i].chunk), &resp,
                                  &text, &d, &dl, &msg),
                  cases[i].want);
        CHECK(d == NULL && dl == 0);
        CHECK_CONTAINS(msg, cases[i].needle);
        free(msg);
        buf_free(&text);
        free(resp.model);
        free(resp.finish_reason);
    }
    /* lenient: no choices at all, or null content, is not an error */
    model_resp resp;
    memset(&resp, 0, sizeof resp);
    sk_buf text;
    buf_init(&text, 0);
    const char *d;
    size_t dl;
    CHECK_INT(oai_apply_chunk("{}", 2, &resp, &text, &d, &dl, NULL), SK_OK);
    const char *nc = "{\"choices\":[{\"delta\":{\"content\":null}}]}";
    CHECK_INT(oai_apply_chunk(nc, strlen(nc), &resp, &text, &d, &dl, NULL), SK_OK);
    CHECK(d == NULL);
    /* the text buffer's ceiling */
    text.max = 4;
    const char *big = "{\"choices\":[{\"delta\":{\"content\":\"abcdef\"}}]}";
    char *msg = NULL;
    CHECK_INT(oai_apply_chunk(big, strlen(big), &resp, &text, &d, &dl, &msg),
              SK_TOO_LARGE);
    free(msg);
    buf_free(&text);
}

TEST(test_error_message)
{
    struct {
        const char *body, *want;
    } cases[] = {
        {"{\"error\":{\"message\":\"Incorrect API key\",\"type\":\"invalid_request_error\"}}",
         "Incorrect API key"},
        {"{\"error\":\"model not found\"}", "model not found"},
        {"{\"message\":\"rate limited\"}", "rate limited"},
        {"{\"detail\":\"Not Found\"}", "Not Found"},
        {"{\"detail\":[{\"loc\":[\"body\"],\"msg\":\"field required\"}]}", "field required"},
        {"{\"error\":{\"code\":1},\"message\":\"fallback\"}", "fallback"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *m = oai_error_message(cases[i].body, strlen(cases[i].body));
        CHECK_STR(m, cases[i].want);
        free(m);
    }
    const char *none[] = {"", "not json", "[]", "{\"error\":{}}", "{\"detail\":5}",
                          "{\"message\":null}"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        CHECK(oai_error_message(none[i], strlen(none[i])) == NULL);
}

/* The body for flavor, parsed; NULL (and a failed check) if it is not
 * JSON.  Caller deletes. */
static cJSON *flavor_body(const model_req *r, const char *flavor, char **text)
{
    char *s = oai_request_json_flavor(r, "m", flavor);
    CHECK(s != NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    CHECK(j != NULL);
    if (text)
        *text = s;
    else
        free(s);
    return j;
}

static const char *schema_text =
    "{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\"}},"
    "\"required\":[\"age\"]}";

TEST(test_request_json_schema)
{
    model_req r = base_req();
    r.json_schema = schema_text;
    /* plain: OpenAI's response_format */
    cJSON *j = flavor_body(&r, NULL, NULL);
    cJSON *rf = cJSON_GetObjectItem(j, "response_format");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(rf, "type")), "json_schema");
    cJSON *js = cJSON_GetObjectItem(rf, "json_schema");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(js, "name")), "output");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(js, "strict")));
    char *sch = cJSON_PrintUnformatted(cJSON_GetObjectItem(js, "schema"));
    CHECK_STR(sch, schema_text);
    free(sch);
    const char *not_plain[] = {"json_schema", "grammar", "n_probs", "guided_json",
                               "guided_choice", "guided_regex"};
    for (size_t i = 0; i < sizeof not_plain / sizeof *not_plain; i++)
        CHECK(cJSON_GetObjectItem(j, not_plain[i]) == NULL);
    cJSON_Delete(j);
    /* oai_request_json is the plain flavor */
    char *a = oai_request_json(&r, "m"), *b = oai_request_json_flavor(&r, "m", NULL);
    CHECK(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);

    /* llama.cpp: its own json_schema and the OpenAI form, never a grammar
     * with it (the server refuses both) */
    r.grammar = "root ::= \"x\"";
    r.logprobs = 1;
    j = flavor_body(&r, "llamacpp", NULL);
    sch = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "json_schema"));
    CHECK_STR(sch, schema_text);
    free(sch);
    rf = cJSON_GetObjectItem(j, "response_format");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(rf, "type")), "json_schema");
    CHECK(cJSON_GetObjectItem(j, "grammar") == NULL);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "logprobs")));
    CHECK_INT(cJSON_GetObjectItem(j, "n_probs")->valueint, 1);
    cJSON_Delete(j);

    /* vLLM: guided_json only */
    j = flavor_body(&r, "vllm", NULL);
    sch = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "guided_json"));
    CHECK_STR(sch, schema_text);
    free(sch);
    CHECK(cJSON_GetObjectItem(j, "response_format") == NULL);
    CHECK(cJSON_GetObjectItem(j, "json_schema") == NULL);
    CHECK(cJSON_GetObjectItem(j, "grammar") == NULL);
    CHECK(cJSON_GetObjectItem(j, "n_probs") == NULL);
    cJSON_Delete(j);

    /* unknown flavors build nothing */
    CHECK(oai_request_json_flavor(&r, "m", "tgi") == NULL);
}

TEST(test_request_choices)
{
    model_req r = base_req();
    char *choices[] = {"yes", "no", "say \"maybe\"\\now\n", "caf\xC3\xA9"};
    r.choices = choices;
    r.n_choices = 4;
    r.logprobs = 1;
    r.top_logprobs = 5;
    /* OpenAI has no way to ask for choices: nothing is sent */
    char *s = NULL;
    cJSON *j = flavor_body(&r, NULL, &s);
    CHECK(cJSON_GetObjectItem(j, "response_format") == NULL);
    CHECK(cJSON_GetObjectItem(j, "grammar") == NULL);
    CHECK(cJSON_GetObjectItem(j, "n_probs") == NULL);
    CHECK_INT(cJSON_GetObjectItem(j, "top_logprobs")->valueint, 5);
    cJSON_Delete(j);
    free(s);

    /* llama.cpp: a GBNF grammar with escaped literals, and n_probs */
    j = flavor_body(&r, "llamacpp", NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "grammar")),
              "root ::= \"yes\" | \"no\" | \"say \\\"maybe\\\"\\\\now\\n\" | "
              "\"caf\xC3\xA9\"");
    CHECK_INT(cJSON_GetObjectItem(j, "n_probs")->valueint, 5);
    CHECK_INT(cJSON_GetObjectItem(j, "top_logprobs")->valueint, 5);
    CHECK(cJSON_GetObjectItem(j, "json_schema") == NULL);
    cJSON_Delete(j);

    /* an explicit grammar wins over the generated one */
    r.grammar = "root ::= [a-z]+";
    j = flavor_body(&r, "llamacpp", NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "grammar")), "root ::= [a-z]+");
    cJSON_Delete(j);
    r.grammar = NULL;

    /* vLLM: guided_choice, as listed */
    j = flavor_body(&r, "vllm", NULL);
    cJSON *gc = cJSON_GetObjectItem(j, "guided_choice");
    CHECK_INT(cJSON_GetArraySize(gc), 4);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(gc, 0)), "yes");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(gc, 2)), "say \"maybe\"\\now\n");
    CHECK(cJSON_GetObjectItem(j, "grammar") == NULL);
    cJSON_Delete(j);
}

TEST(test_request_regex)
{
    model_req r = base_req();
    r.regex = "^\\d{4}-\\d{2}$";
    r.stream = 1;
    cJSON *j = flavor_body(&r, "vllm", NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "guided_regex")), "^\\d{4}-\\d{2}$");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    cJSON_Delete(j);
    /* neither OpenAI nor llama.cpp take a pattern: nothing is sent */
    const char *others[] = {NULL, "llamacpp"};
    for (size_t i = 0; i < 2; i++) {
        char *s = NULL;
        j = flavor_body(&r, others[i], &s);
        CHECK(strstr(s ? s : "", "d{4}") == NULL);
        CHECK(cJSON_GetObjectItem(j, "grammar") == NULL);
        cJSON_Delete(j);
        free(s);
    }
    /* a schema takes precedence over choices and a pattern (one guided
     * field per request) */
    char *choices[] = {"a"};
    r.choices = choices;
    r.n_choices = 1;
    r.json_schema = "{\"type\":\"string\"}";
    j = flavor_body(&r, "vllm", NULL);
    CHECK(cJSON_GetObjectItem(j, "guided_json") != NULL);
    CHECK(cJSON_GetObjectItem(j, "guided_choice") == NULL);
    CHECK(cJSON_GetObjectItem(j, "guided_regex") == NULL);
    cJSON_Delete(j);
}

/* The connector keeps its flavor in its spec; unknown flavors fail. */
TEST(test_flavor_connector)
{
    sk_err *err = NULL;
    sk_connector *c = conn_kind_openai_flavor.open(NULL, "openai+vllm",
                                                   "m@http://127.0.0.1:9", &err);
    CHECK(c != NULL && err == NULL);
    if (c) {
        CHECK_STR(c->spec, "openai+vllm:m@http://127.0.0.1:9");
        CHECK_STR(c->model, "m");
        conn_close(c);
    }
    c = conn_kind_openai.open(NULL, "openai", "m", &err);
    CHECK(c != NULL && err == NULL);
    if (c) {
        CHECK_STR(c->spec, "openai:m");
        conn_close(c);
    }
    c = conn_kind_openai_flavor.open(NULL, "openai+tgi", "m", &err);
    CHECK(c == NULL);
    CHECK(err != NULL && err->code == SK_NOT_FOUND);
    CHECK_CONTAINS(err ? err->message : NULL, "unknown server flavor \"tgi\"");
    err_free(err);
    err = NULL;
    c = conn_kind_openai_flavor.open(NULL, "openai+llamacpp", "", &err);
    CHECK(c == NULL && err != NULL);
    err_free(err);
}

/* Fails the Nth allocation for N = 1.. until a run succeeds; every run
 * must either succeed or report SK_NOMEM, and never leak. */
TEST(test_alloc_failures)
{
    model_req r = base_req();
    char *stop[] = {"x"};
    r.stop = stop;
    r.n_stop = 1;
    r.temperature = 0.5;
    r.stream = 1;
    int ok = 0;
    for (long n = 1; n < 200 && !ok; n++) {
        sk_alloc_fail_at(n);
        char *s = oai_request_json(&r, "m");
        sk_alloc_fail_at(0);
        ok = s != NULL;
        free(s);
    }
    CHECK(ok);

    ok = 0;
    char *choices[] = {"yes", "no"};
    r.choices = choices;
    r.n_choices = 2;
    for (long n = 1; n < 200 && !ok; n++) {
        sk_alloc_fail_at(n);
        char *s = oai_request_json_flavor(&r, "m", "llamacpp");
        sk_alloc_fail_at(0);
        ok = s != NULL;
        if (s)
            CHECK_CONTAINS(s, "\"grammar\":\"root ::= \\\"yes\\\" | \\\"no\\\"\"");
        free(s);
    }
    CHECK(ok);

    ok = 0;
    for (long n = 1; n < 200 && !ok; n++) {
        model_resp *resp = NULL;
        char *msg = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = oai_parse_reply(full_reply, strlen(full_reply), &resp, &msg);
        sk_alloc_fail_at(0);
        CHECK(rc == SK_OK || rc == SK_NOMEM);
        CHECK((rc == SK_OK) == (resp != NULL));
        if (rc == SK_OK) {
            ok = 1;
            CHECK_STR(resp->text, "Hello there");
            CHECK_INT(resp->n_logprobs, 2);
        }
        resp_free(resp);
        free(msg);
    }
    CHECK(ok);

    ok = 0;
    const char *chunk = "{\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"hey\"},"
                        "\"finish_reason\":\"stop\",\"logprobs\":{\"content\":"
                        "[{\"token\":\"hey\",\"logprob\":-1}]}}]}";
    for (long n = 1; n < 200 && !ok; n++) {
        model_resp *resp = sk_calloc(1, sizeof *resp);
        CHECK(resp != NULL);
        if (!resp)
            break;
        sk_buf text;
        buf_init(&text, 0);
        const char *d;
        size_t dl;
        char *msg = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = oai_apply_chunk(chunk, strlen(chunk), resp, &text, &d, &dl, &msg);
        sk_alloc_fail_at(0);
        CHECK(rc == SK_OK || rc == SK_NOMEM);
        if (rc == SK_OK) {
            ok = 1;
            CHECK(dl == 3 && memcmp(d, "hey", 3) == 0);
            CHECK_STR(resp->finish_reason, "stop");
        }
        free(msg);
        buf_free(&text);
        resp_free(resp);
    }
    CHECK(ok);

    ok = 0;
    const char *eb = "{\"error\":{\"message\":\"nope\"}}";
    for (long n = 1; n < 50 && !ok; n++) {
        sk_alloc_fail_at(n);
        char *m = oai_error_message(eb, strlen(eb));
        sk_alloc_fail_at(0);
        if (m) {
            ok = 1;
            CHECK_STR(m, "nope");
        }
        free(m);
    }
    CHECK(ok);
}

/* Tools go out as OpenAI's "tools", "tool_choice" and
 * "parallel_tool_calls"; a conversation's tool calls and results go back
 * as assistant tool_calls and tool messages with their call ids. */
TEST(test_request_tools)
{
    sk_tool_call calls[] = {{.id = "call_1", .name = "Text-Upper",
                             .arguments = "{\"input\":\"hi\"}"},
                            {.id = "call_2", .name = "Text-Lower", .arguments = ""}};
    sk_msg msgs[] = {{.role = "user", .content = "shout hi"},
                     {.role = "assistant", .content = "", .calls = calls, .n_calls = 2},
                     {.role = "tool", .content = "HI", .call_id = "call_1",
                      .tool_name = "Text-Upper"},
                     {.role = "tool", .content = "Error: no", .call_id = "call_2",
                      .tool_name = "Text-Lower", .is_error = 1}};
    tool_def tools[] = {{.name = "Text-Upper", .description = "Upper-cases",
                         .parameters = "{\"type\":\"object\",\"properties\":{}}"},
                        {.name = "Text-Lower", .parameters = "{\"type\":\"object\"}",
                         .strict = 1}};
    model_req r = base_req();
    r.msgs = msgs;
    r.n_msgs = 4;
    r.tools = tools;
    r.n_tools = 2;
    r.tool_choice = CFG_CHOICE_REQUIRED;
    r.parallel_tool_calls = 0;
    char *s = oai_request_json(&r, "m");
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    cJSON *t = cJSON_GetObjectItem(j, "tools");
    CHECK_INT(cJSON_GetArraySize(t), 2);
    cJSON *f0 = cJSON_GetObjectItem(cJSON_GetArrayItem(t, 0), "function");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(t, 0), "type")),
              "function");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(f0, "name")), "Text-Upper");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(f0, "description")), "Upper-cases");
    CHECK(cJSON_IsObject(cJSON_GetObjectItem(f0, "parameters")));
    CHECK(cJSON_GetObjectItem(f0, "strict") == NULL);
    cJSON *f1 = cJSON_GetObjectItem(cJSON_GetArrayItem(t, 1), "function");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(f1, "strict")));
    CHECK(cJSON_GetObjectItem(f1, "description") == NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "tool_choice")), "required");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "parallel_tool_calls")));
    cJSON *m = cJSON_GetObjectItem(j, "messages");
    cJSON *a = cJSON_GetArrayItem(m, 1);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(a, "content")));
    cJSON *tc = cJSON_GetObjectItem(a, "tool_calls");
    CHECK_INT(cJSON_GetArraySize(tc), 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(tc, 0), "id")),
              "call_1");
    cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(tc, 0), "function");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(fn, "arguments")),
              "{\"input\":\"hi\"}");
    fn = cJSON_GetObjectItem(cJSON_GetArrayItem(tc, 1), "function");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(fn, "arguments")), "{}");
    cJSON *res = cJSON_GetArrayItem(m, 3);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res, "role")), "tool");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res, "tool_call_id")), "call_2");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(res, "content")), "Error: no");
    cJSON_Delete(j);
    free(s);

    /* auto and none; the server's own parallel default when unset */
    r.tool_choice = CFG_CHOICE_AUTO;
    r.parallel_tool_calls = -1;
    s = oai_request_json(&r, "m");
    CHECK_CONTAINS(s, "\"tool_choice\":\"auto\"");
    CHECK(s && !strstr(s, "parallel_tool_calls"));
    free(s);
    r.tool_choice = CFG_CHOICE_NONE;
    s = oai_request_json(&r, "m");
    CHECK_CONTAINS(s, "\"tool_choice\":\"none\"");
    free(s);
    /* no tools offered: none of these fields */
    r.n_tools = 0;
    s = oai_request_json(&r, "m");
    CHECK(s && !strstr(s, "\"tools\"") && !strstr(s, "tool_choice"));
    free(s);
}

/* Tool calls in a reply, whole and streamed in pieces joined by index. */
TEST(test_reply_tool_calls)
{
    const char *body =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\","
        "\"function\":{\"name\":\"Text-Upper\",\"arguments\":\"{\\\"input\\\":"
        "\\\"x\\\"}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":"
        "{\"name\":\"Math-Add\",\"arguments\":{\"a\":1}}}]},"
        "\"finish_reason\":\"tool_calls\"}]}";
    model_resp *r = NULL;
    char *msg = NULL;
    CHECK_INT(oai_parse_reply(body, strlen(body), &r, &msg), SK_OK);
    CHECK(r != NULL);
    if (r) {
        CHECK_STR(r->text, "");
        CHECK_STR(r->finish_reason, "tool_calls");
        CHECK_INT(r->n_calls, 2);
        if (r->n_calls == 2) {
            CHECK_STR(r->calls[0].id, "call_a");
            CHECK_STR(r->calls[0].name, "Text-Upper");
            CHECK_STR(r->calls[0].arguments, "{\"input\":\"x\"}");
            CHECK_STR(r->calls[1].arguments, "{\"a\":1}"); /* an object, printed */
        }
    }
    resp_free(r);
    free(msg);

    /* malformed tool calls are protocol errors, not crashes */
    const char *bad[] = {
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":{}}}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[1]}}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"x\"}]}}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":"
        "[{\"function\":{\"name\":7}}]}}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[]}}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = NULL;
        msg = NULL;
        CHECK_INT(oai_parse_reply(bad[i], strlen(bad[i]), &r, &msg), SK_PROTOCOL);
        CHECK(r == NULL && msg != NULL);
        free(msg);
    }
    /* more calls than the ceiling */
    sk_buf b;
    buf_init(&b, 0);
    buf_adds(&b, "{\"choices\":[{\"message\":{\"content\":\"\",\"tool_calls\":[");
    for (int i = 0; i <= TOOL_CALLS_MAX; i++)
        buf_printf(&b, "%s{\"id\":\"c%d\",\"function\":{\"name\":\"A-b\","
                       "\"arguments\":\"{}\"}}", i ? "," : "", i);
    buf_adds(&b, "]}}]}");
    r = NULL;
    msg = NULL;
    CHECK_INT(oai_parse_reply(b.p, b.len, &r, &msg), SK_PROTOCOL);
    CHECK_CONTAINS(msg, "more than 64 tool calls");
    free(msg);
    buf_free(&b);

    const char *chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
        "\"Let me\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
        "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"Text-Upper\","
        "\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"function\":{\"arguments\":\"{\\\"inp\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":"
        "\"call_2\",\"function\":{\"name\":\"Text-Lower\",\"arguments\":\"{}\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"function\":{\"name\":\"Text-Upper\",\"arguments\":\"ut\\\":\\\"a\\\"}\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
    };
    model_resp resp;
    memset(&resp, 0, sizeof resp);
    sk_status last;
    char *deltas = apply_all(chunks, 6, &resp, &last);
    CHECK_INT(last, SK_OK);
    CHECK_STR(deltas, "Let me");
    CHECK_STR(resp.finish_reason, "tool_calls");
    CHECK_INT(resp.n_calls, 2);
    if (resp.n_calls == 2) {
        CHECK_STR(resp.calls[0].id, "call_1");
        CHECK_STR(resp.calls[0].name, "Text-Upper"); /* a repeated name is read once */
        CHECK_STR(resp.calls[0].arguments, "{\"input\":\"a\"}");
        CHECK_STR(resp.calls[1].name, "Text-Lower");
    }
    free(deltas);
    model_resp *heap = sk_calloc(1, sizeof *heap);
    *heap = resp;
    resp_free(heap);

    /* allocation failures while reading calls: SK_NOMEM, no leak */
    int ok = 0;
    for (long n = 1; n < 300 && !ok; n++) {
        r = NULL;
        msg = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = oai_parse_reply(body, strlen(body), &r, &msg);
        sk_alloc_fail_at(0);
        CHECK(rc == SK_OK || rc == SK_NOMEM);
        ok = rc == SK_OK && r && r->n_calls == 2;
        resp_free(r);
        free(msg);
    }
    CHECK(ok);
    sk_tool_call call = {.id = "c", .name = "A-b", .arguments = "{}"};
    sk_msg msgs[] = {{.role = "assistant", .content = "", .calls = &call, .n_calls = 1},
                     {.role = "tool", .content = "out", .call_id = "c"}};
    tool_def tool = {.name = "A-b", .description = "d", .parameters = "{}"};
    model_req q = base_req();
    q.msgs = msgs;
    q.n_msgs = 2;
    q.tools = &tool;
    q.n_tools = 1;
    q.parallel_tool_calls = 1;
    ok = 0;
    for (long n = 1; n < 300 && !ok; n++) {
        sk_alloc_fail_at(n);
        char *req = oai_request_json(&q, "m");
        sk_alloc_fail_at(0);
        ok = req != NULL;
        if (req)
            CHECK_CONTAINS(req, "\"parallel_tool_calls\":true");
        free(req);
    }
    CHECK(ok);
}

int main(void)
{
    RUN(test_request_tools);
    RUN(test_reply_tool_calls);
    RUN(test_request_minimal);
    RUN(test_request_full);
    RUN(test_request_control_chars);
    RUN(test_request_json_schema);
    RUN(test_request_choices);
    RUN(test_request_regex);
    RUN(test_flavor_connector);
    RUN(test_parse_reply);
    RUN(test_parse_reply_minimal);
    RUN(test_parse_reply_errors);
    RUN(test_chunks);
    RUN(test_chunk_errors);
    RUN(test_error_message);
    RUN(test_alloc_failures);
    return tu_finish();
}
