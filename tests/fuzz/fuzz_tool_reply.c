/* fuzz_tool_reply.c -- libFuzzer target for reading tool calls out of
 * model replies, in every wire format, and for sending them back.
 *
 * The input is read as a whole reply and as a stream (one event or NDJSON
 * line per input line) by the OpenAI, Anthropic and Ollama readers.  The
 * tool calls they find, whatever the model wrote in them, then go back
 * in each format's request, with a result each: every request body must
 * be valid JSON, and every call's name and arguments must survive it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "all.h"

static void check_requests(const model_resp *r)
{
    if (!r || !r->n_calls)
        return;
    sk_msg msgs[2 + TOOL_CALLS_MAX];
    memset(msgs, 0, sizeof msgs);
    msgs[0].role = (char *)"user";
    msgs[0].content = (char *)"go";
    msgs[1].role = (char *)"assistant";
    msgs[1].content = r->text;
    msgs[1].calls = r->calls;
    msgs[1].n_calls = r->n_calls;
    for (size_t i = 0; i < r->n_calls; i++) {
        msgs[2 + i].role = (char *)"tool";
        msgs[2 + i].content = r->calls[i].arguments;
        msgs[2 + i].call_id = r->calls[i].id ? r->calls[i].id : (char *)"";
        msgs[2 + i].tool_name = r->calls[i].name;
        msgs[2 + i].is_error = (int)(i & 1);
    }
    tool_def tool = {"A-b", "d", "{\"type\":\"object\"}", 0};
    model_req req;
    memset(&req, 0, sizeof req);
    req.msgs = msgs;
    req.n_msgs = 2 + r->n_calls;
    req.max_tokens = -1;
    req.temperature = req.top_p = req.presence_penalty = req.frequency_penalty = 0.0 / 0.0;
    req.tools = &tool;
    req.n_tools = 1;
    req.tool_choice = CFG_CHOICE_AUTO;
    req.parallel_tool_calls = -1;
    char *bodies[3] = {oai_request_json(&req, "m"),
                       http_proto_anthropic.request_json(&req, "m"),
                       http_proto_ollama.request_json(&req, "m")};
    for (int i = 0; i < 3; i++) {
        if (!bodies[i])
            continue;
        cJSON *j = cJSON_Parse(bodies[i]);
        if (!j)
            __builtin_trap(); /* what a model wrote broke the request */
        cJSON_Delete(j);
        free(bodies[i]);
    }
}

static void whole(const http_proto *p, const char *d, size_t n)
{
    model_resp *r = NULL;
    char *msg = NULL;
    sk_status rc = p ? p->parse_reply(d, n, &r, &msg) : oai_parse_reply(d, n, &r, &msg);
    if ((rc == SK_OK) != (r != NULL))
        __builtin_trap();
    if (r && r->n_calls > TOOL_CALLS_MAX)
        __builtin_trap();
    check_requests(r);
    resp_free(r);
    free(msg);
}

static void stream(const http_proto *p, const char *d, size_t n)
{
    model_resp *r = http_resp_new();
    if (!r)
        return;
    sk_buf text;
    buf_init(&text, 1 << 16);
    size_t start = 0;
    int end = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && d[i] != '\n')
            continue;
        const char *delta;
        size_t dl;
        char *msg = NULL;
        if (p)
            p->apply_event("", d + start, i - start, r, &text, &delta, &dl, &end, &msg);
        else
            oai_apply_chunk(d + start, i - start, r, &text, &delta, &dl, &msg);
        free(msg);
        start = i + 1;
    }
    if (r->n_calls > TOOL_CALLS_MAX)
        __builtin_trap();
    r->text = buf_steal(&text);
    if (r->text)
        check_requests(r);
    buf_free(&text);
    resp_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    const char *d = (const char *)buf;
    const http_proto *protos[] = {NULL, &http_proto_anthropic, &http_proto_ollama};
    for (int i = 0; i < 3; i++) {
        whole(protos[i], d, size);
        stream(protos[i], d, size);
    }
    /* arguments as a model writes them, sent back as an object */
    char *t = sk_strndup(d, size);
    if (t) {
        sk_buf b;
        buf_init(&b, 0);
        if (http_json_args(&b, t) == SK_OK) {
            cJSON *j = cJSON_Parse(b.p);
            if (!cJSON_IsObject(j))
                __builtin_trap();
            cJSON_Delete(j);
        }
        buf_free(&b);
        free(t);
    }
    return 0;
}
