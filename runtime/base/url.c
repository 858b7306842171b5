/*
 * url.c -- http(s) URLs as strings: their parts, and the form in which
 * one may be shown (errors, traces, dry runs) with its secrets masked.
 * Connectors decide where requests go; this only reads what they were
 * given.
 */
#include <string.h>
#include <strings.h>

#include "base/base.h"

int url_split(const char *url, sk_url *u)
{
    memset(u, 0, sizeof *u);
    const char *p = url ? strstr(url, "://") : NULL;
    size_t scheme = p ? (size_t)(p - url) : 0;
    if (!p || !((scheme == 4 && strncasecmp(url, "http", 4) == 0) ||
                (scheme == 5 && strncasecmp(url, "https", 5) == 0)))
        return 0;
    size_t auth = scheme + 3;
    size_t end = auth + strcspn(url + auth, "/?#");
    size_t host = auth;
    for (size_t i = auth; i < end; i++)
        if (url[i] == '@')
            host = i + 1; /* the last '@' ends the user info */
    if (host > auth) {
        u->user = auth;
        u->user_len = host - 1 - auth;
    }
    size_t host_end = end;
    if (url[host] == '[') { /* [v6]:port */
        const char *close = memchr(url + host, ']', end - host);
        host_end = close ? (size_t)(close - url) + 1 : end;
    } else {
        const char *colon = memchr(url + host, ':', end - host);
        if (colon)
            host_end = (size_t)(colon - url);
    }
    u->host = host;
    u->host_len = host_end - host;
    u->path = end;
    u->fragment = end + strcspn(url + end, "#");
    u->query = end + strcspn(url + end, "?#");
    return 1;
}

/* Whether a query parameter's name says its value is a secret. */
static int secret_name(const char *name, size_t n)
{
    static const char *const words[] = {"key", "token", "secret", "password",
                                        "passwd", "sig", "auth", "credential"};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= n; i++)
            if (strncasecmp(name + i, words[w], wl) == 0)
                return 1;
    }
    return 0;
}

/* Appends url (an http(s) URL) masked. */
static sk_status add_masked(sk_buf *b, const char *url, const sk_url *u)
{
    size_t scheme_end = u->user_len ? u->user : u->host;
    sk_status rc = buf_add(b, url, scheme_end);
    if (rc == SK_OK && u->user_len) {
        /* user:password@ keeps the user; a lone token@ is all secret */
        const char *colon = memchr(url + u->user, ':', u->user_len);
        if (colon)
            rc = buf_add(b, url + u->user, (size_t)(colon - url - u->user) + 1);
        if (rc == SK_OK)
            rc = buf_adds(b, "***@");
    }
    if (rc == SK_OK)
        rc = buf_add(b, url + u->host, u->query - u->host);
    /* the query, with secret-looking values masked */
    for (size_t i = u->query; rc == SK_OK && i < u->fragment;) {
        size_t amp = i + 1;
        while (amp < u->fragment && url[amp] != '&')
            amp++;
        const char *eq = memchr(url + i + 1, '=', amp - i - 1);
        if (eq && secret_name(url + i + 1, (size_t)(eq - url - i - 1))) {
            rc = buf_add(b, url + i, (size_t)(eq - url - i) + 1);
            if (rc == SK_OK)
                rc = buf_adds(b, "***");
        } else {
            rc = buf_add(b, url + i, amp - i);
        }
        i = amp;
    }
    if (rc == SK_OK)
        rc = buf_adds(b, url + u->fragment);
    return rc;
}

char *url_mask(const char *s)
{
    if (!s)
        return NULL;
    const char *at = strstr(s, "http://");
    const char *at2 = strstr(s, "https://");
    if (!at || (at2 && at2 < at))
        at = at2;
    sk_url u;
    if (!at || !url_split(at, &u))
        return sk_strdup(s);
    sk_buf b;
    buf_init(&b, 0);
    sk_status rc = buf_add(&b, s, (size_t)(at - s));
    if (rc == SK_OK)
        rc = add_masked(&b, at, &u);
    if (rc != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}
