/* test_endpoint.c -- URLs before a request goes out: their parts, how
 * they are shown with secrets masked (base/url.c), where chat requests go
 * for a base URL, Azure OpenAI's URLs, the hosts that need a key and the
 * /v1 hint (models/endpoint.c), and the connectors built from them. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static void check_mask(const char *in, const char *want)
{
    char *got = url_mask(in);
    CHECK_STR(got, want);
    free(got);
}

static void test_split(void)
{
    tu_current = "url_split";
    sk_url u;
    const char *url = "https://ann:pw@[::1]:8443/v1/x?a=1#f";
    CHECK(url_split(url, &u));
    CHECK_INT(u.host_len, 5);
    CHECK(strncmp(url + u.host, "[::1]", 5) == 0);
    CHECK(strncmp(url + u.user, "ann:pw", u.user_len) == 0);
    CHECK_STR(url + u.path, "/v1/x?a=1#f");
    CHECK_STR(url + u.query, "?a=1#f");
    CHECK_STR(url + u.fragment, "#f");
    CHECK(url_split("HTTP://h", &u));
    CHECK(!url_split("ht://h", &u));     /* not a prefix of http */
    CHECK(!url_split("ftp://h/x", &u));
    CHECK(!url_split("127.0.0.1:8080", &u));
}

static void test_mask(void)
{
    tu_current = "url_mask";
    check_mask("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1");
    check_mask("https://ann:s3cret@h/v1", "https://ann:***@h/v1");
    check_mask("https://tok3n@h/v1", "https://***@h/v1");
    check_mask("https://h/v1?api-key=abc&api-version=2024-10-21&sig=x#frag",
               "https://h/v1?api-key=***&api-version=2024-10-21&sig=***#frag");
    check_mask("https://h/?Token=1&code=2&access_token=3",
               "https://h/?Token=***&code=2&access_token=***");
    /* a model spec holding a URL */
    check_mask("openai:gpt@http://u:p@h:1/v1?key=k", "openai:gpt@http://u:***@h:1/v1?key=***");
    check_mask("scripted:rules.json", "scripted:rules.json");
    /* '@' in the path is not user info */
    check_mask("http://h/a@b", "http://h/a@b");
}

static void check_url(const char *base, const char *model, int azure, const char *want)
{
    char *got = oai_chat_url(base, model, strlen(model), azure);
    CHECK_STR(got, want);
    free(got);
}

static void test_chat_url(void)
{
    tu_current = "oai_chat_url";
    check_url("http://127.0.0.1:8080/v1", "m", 0, "http://127.0.0.1:8080/v1/chat/completions");
    check_url("http://127.0.0.1:8080/v1///", "m", 0, "http://127.0.0.1:8080/v1/chat/completions");
    check_url("http://h/v1/chat/completions", "m", 0, "http://h/v1/chat/completions");
    check_url("http://h/v1?x=1", "m", 0, "http://h/v1/chat/completions?x=1");
    /* Azure: the bare resource, a deployment URL, the portal's whole
     * endpoint, the v1 API */
    check_url("https://res.openai.azure.com", "gpt 4o", 1,
              "https://res.openai.azure.com/openai/deployments/gpt%204o/chat/completions"
              "?api-version=2024-10-21");
    check_url("https://res.openai.azure.com/", "d", 1,
              "https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?api-version=2024-10-21");
    check_url("https://res.openai.azure.com/openai/deployments/d?api-version=2024-06-01", "d", 1,
              "https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?api-version=2024-06-01");
    check_url("https://res.openai.azure.com/openai/deployments/d/", "d", 1,
              "https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?api-version=2024-10-21");
    check_url("https://res.openai.azure.com/openai/deployments/d?x=1", "d", 1,
              "https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?x=1&api-version=2024-10-21");
    check_url("https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?api-version=2025-01-01-preview", "d", 1,
              "https://res.openai.azure.com/openai/deployments/d/chat/completions"
              "?api-version=2025-01-01-preview");
    check_url("https://res.openai.azure.com/openai/v1", "gpt-4.1", 1,
              "https://res.openai.azure.com/openai/v1/chat/completions");
}

static void test_hosts(void)
{
    tu_current = "hosts";
    CHECK(http_url_is_azure("https://res.openai.azure.com"));
    CHECK(http_url_is_azure("https://RES.OPENAI.AZURE.COM/openai/v1"));
    CHECK(http_url_is_azure("https://x.cognitiveservices.azure.com/openai/deployments/d"));
    CHECK(http_url_is_azure("http://127.0.0.1:9/openai/deployments/d?api-version=2024-10-21"));
    CHECK(!http_url_is_azure("https://api.openai.com/v1"));
    CHECK(!http_url_is_azure("https://evilopenai.azure.com.example/v1"));
    CHECK(!http_url_is_azure("https://notopenai.azure.com/v1"));
    CHECK(http_host_needs_key("https://api.openai.com/v1/chat/completions"));
    CHECK(http_host_needs_key("https://API.anthropic.com/v1/messages"));
    CHECK(http_host_needs_key("https://res.openai.azure.com/openai/v1/chat/completions"));
    CHECK(http_host_needs_key("https://openrouter.ai/api/v1/chat/completions"));
    CHECK(!http_host_needs_key("http://127.0.0.1:8080/v1/chat/completions"));
    CHECK(!http_host_needs_key("https://my-vllm.example.com/v1/chat/completions"));
    CHECK(!http_host_needs_key("https://api.openai.com.example.com/v1"));
    CHECK(http_url_has_v1("http://h:1/v1/chat/completions"));
    CHECK(http_url_has_v1("http://h:1/api/v2beta/chat/completions"));
    CHECK(http_url_has_v1("https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=x"));
    CHECK(!http_url_has_v1("http://h:1/chat/completions"));
    CHECK(!http_url_has_v1("http://h:1/api/chat/completions?v1=x"));
}

/* The connectors built from specs: where they send, and what they catch
 * before anything is sent. */
static void test_connectors(void)
{
    tu_current = "connectors";
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_err *err = NULL;
    sk_connector *c = conn_open(k, "openai:http://127.0.0.1:8080/v1", &err);
    CHECK(!c);
    CHECK(err && err->code == SK_USAGE);
    CHECK_CONTAINS(err ? err->message : NULL, "write openai:MODEL@http://127.0.0.1:8080/v1");
    err_free(err);
    c = conn_open(k, "openai+vllm:https://h/v1", &err);
    CHECK(!c && err);
    CHECK_CONTAINS(err ? err->message : NULL, "write openai+vllm:MODEL@https://h/v1");
    err_free(err);
    c = conn_open(k, "anthropic:https://h", &err);
    CHECK(!c && err && err->code == SK_USAGE);
    err_free(err);
    c = conn_open(k, "ollama:http://h:11434", &err);
    CHECK(!c && err && err->code == SK_USAGE);
    err_free(err);
    c = conn_open(k, "azure:dep@https://res.openai.azure.com", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->endpoint, "https://res.openai.azure.com/openai/deployments/dep/"
                               "chat/completions?api-version=2024-10-21");
        CHECK_STR(c->spec, "azure:dep@https://res.openai.azure.com");
        CHECK_STR(c->model, "dep");
        conn_close(c);
    }
    unsetenv("AZURE_OPENAI_ENDPOINT");
    c = conn_open(k, "azure:dep", &err);
    CHECK(!c && err && err->code == SK_CONFIG);
    CHECK_CONTAINS(err ? err->message : NULL, "AZURE_OPENAI_ENDPOINT");
    err_free(err);
    setenv("AZURE_OPENAI_ENDPOINT", "https://r2.openai.azure.com/", 1);
    c = conn_open(k, "azure:d2", &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->endpoint, "https://r2.openai.azure.com/openai/deployments/d2/"
                               "chat/completions?api-version=2024-10-21");
        conn_close(c);
    }
    unsetenv("AZURE_OPENAI_ENDPOINT");
    sk_kernel_free(k);
}

int main(void)
{
    test_split();
    test_mask();
    test_chat_url();
    test_hosts();
    test_connectors();
    return tu_finish();
}
