/*
 * endpoint.c -- what connectors need to know about the URLs they are
 * given, before a request goes out: where a chat request goes (OpenAI's
 * /chat/completions under a base URL, Azure OpenAI's deployment URLs with
 * their api-version), which hosts are Azure's, which hosts refuse a
 * request without an API key.  (How a URL may be shown, its secrets
 * masked, is base's url_mask.)
 *
 * Pure string functions: no network, no environment.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/models.h"

/* The Azure OpenAI api-version used when a deployment URL names none: the
 * latest generally available data-plane inference version. */
#define AZURE_API_VERSION "2024-10-21"

/* 1 when the host (len bytes at h) is name or ends in "." name. */
static int host_is(const char *h, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len == n)
        return strncasecmp(h, name, n) == 0;
    return len > n && h[len - n - 1] == '.' && strncasecmp(h + len - n, name, n) == 0;
}

/* Azure OpenAI's resource hosts: RESOURCE.openai.azure.com, and the
 * Cognitive Services and AI Services hosts that serve the same API. */
static int azure_host(const char *h, size_t len)
{
    return host_is(h, len, "openai.azure.com") ||
           host_is(h, len, "cognitiveservices.azure.com") ||
           host_is(h, len, "services.ai.azure.com");
}

/* The value of query parameter name in the query at q (after '?', up to
 * end), or NULL; *len its length. */
static const char *query_param(const char *q, size_t qlen, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < qlen;) {
        size_t amp = i;
        while (amp < qlen && q[amp] != '&')
            amp++;
        if (amp - i > n && strncasecmp(q + i, name, n) == 0 && q[i + n] == '=') {
            *len = amp - i - n - 1;
            return q + i + n + 1;
        }
        i = amp + 1;
    }
    return NULL;
}

int http_url_is_azure(const char *url)
{
    sk_url u;
    if (!url || !url_split(url, &u))
        return 0;
    size_t len;
    const char *q = url + u.query + (u.query < u.fragment);
    size_t qlen = u.fragment - u.query - (u.query < u.fragment);
    return azure_host(url + u.host, u.host_len) ||
           query_param(q, qlen, "api-version", &len) != NULL;
}

int http_host_needs_key(const char *url)
{
    /* hosted APIs that answer 401 to a request without a key */
    static const char *const hosts[] = {
        "api.openai.com", "api.anthropic.com", "openrouter.ai", "api.groq.com",
        "api.together.xyz", "api.mistral.ai", "api.deepseek.com", "api.x.ai",
        "api.fireworks.ai", "generativelanguage.googleapis.com",
    };
    sk_url u;
    if (!url || !url_split(url, &u))
        return 0;
    const char *h = url + u.host;
    if (azure_host(h, u.host_len))
        return 1;
    for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++)
        if (host_is(h, u.host_len, hosts[i]))
            return 1;
    return 0;
}

/* Appends s percent-encoded for a URL path segment. */
static sk_status add_segment(sk_buf *b, const char *s, size_t n)
{
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            rc = buf_addc(b, (char)c);
        else
            rc = buf_printf(b, "%%%02X", c);
    }
    return rc;
}

char *oai_chat_url(const char *base, const char *model, size_t model_len,
                   int azure)
{
    sk_url u;
    int is_url = url_split(base, &u);
    size_t path_end = is_url ? u.query : strlen(base);
    while (path_end > (is_url ? u.path : 0) && base[path_end - 1] == '/')
        path_end--;
    const char *query = is_url && u.query < u.fragment ? base + u.query + 1 : NULL;
    size_t query_len = query ? u.fragment - u.query - 1 : 0;
    static const char tail[] = "/chat/completions";
    size_t tl = sizeof tail - 1;
    int has_tail = path_end >= tl && strncmp(base + path_end - tl, tail, tl) == 0;
    /* an Azure resource URL with no path: its deployment named by model */
    int bare = is_url && path_end == u.path;
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_add(&b, base, path_end);
    if (rc == SK_OK && azure && bare) {
        rc = buf_adds(&b, "/openai/deployments/");
        if (rc == SK_OK)
            rc = add_segment(&b, model, model_len);
    }
    if (rc == SK_OK && !has_tail)
        rc = buf_adds(&b, tail);
    if (rc == SK_OK && query_len)
        rc = buf_printf(&b, "?%.*s", (int)query_len, query);
    /* a deployment URL needs an api-version; the v1 API does not */
    size_t vl;
    if (rc == SK_OK && azure && b.p && strstr(b.p, "/openai/deployments/") &&
        !(query && query_param(query, query_len, "api-version", &vl)))
        rc = buf_printf(&b, "%capi-version=" AZURE_API_VERSION, query_len ? '&' : '?');
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

int http_url_has_v1(const char *url)
{
    sk_url u;
    if (!url || !url_split(url, &u))
        return 1; /* nothing to suggest */
    const char *p = url + u.path, *end = url + u.query;
    for (const char *s = p; s + 3 <= end; s++)
        if (s[0] == '/' && s[1] == 'v' && isdigit((unsigned char)s[2]))
            return 1; /* /v1, /v2beta, ... */
    return strstr(url, "/openai/deployments/") != NULL;
}
