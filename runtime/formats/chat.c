/*
 * chat.c -- Semantic Kernel's chat prompt markup, read strictly.
 *
 *   <message role="system">You are terse.</message>
 *   <message role='user'>{{$input}}</message>
 *
 * A rendered chat prompt is a sequence of <message> elements.  As in
 * Semantic Kernel, bodies are XML text: entities (&lt; &amp; &#39; ...) are
 * decoded, and a <![CDATA[...]]> section is taken as written.  Text before
 * the first message is a system message and text between or after them a
 * user message, as SK's Python reader does.  Anything else -- a tag that is
 * not closed, a message inside a message, a missing or unknown role, a
 * stray </message> -- is an error at its offset, never a silent fall back
 * to one user message holding the tags.  A prompt is chat only when a
 * <message> tag of its own has a role (chat_marked): SK's older prompts
 * use role-less <message> tags as plain XML-style text, and SK sends them
 * as one prompt.
 *
 * The values a template inserts were encoded when it was rendered
 * (template.c), so data can add text to a message but never open, close or
 * forge one.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/formats.h"

#define MAX_MESSAGES 4096

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer"};

/* Appends the decoded XML text s[0, n) to b: entities and CDATA. */
static sk_status add_decoded(sk_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] == '<' && n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
            const char *end = NULL;
            for (size_t j = i + 9; j + 3 <= n; j++)
                if (memcmp(s + j, "]]>", 3) == 0) {
                    end = s + j;
                    break;
                }
            if (end) {
                sk_status rc = buf_add(b, s + i + 9, (size_t)(end - (s + i + 9)));
                if (rc != SK_OK)
                    return rc;
                i = (size_t)(end - s) + 3;
                continue;
            }
        }
        if (s[i] == '&') {
            size_t j = i + 1;
            while (j < n && j - i < 12 && s[j] != ';' && s[j] != '&' && s[j] != '<')
                j++;
            if (j < n && s[j] == ';') {
                const char *e = s + i + 1;
                size_t len = j - i - 1;
                unsigned long cp = 0;
                int ok = 1;
                if (len == 2 && memcmp(e, "lt", 2) == 0) cp = '<';
                else if (len == 2 && memcmp(e, "gt", 2) == 0) cp = '>';
                else if (len == 3 && memcmp(e, "amp", 3) == 0) cp = '&';
                else if (len == 4 && memcmp(e, "quot", 4) == 0) cp = '"';
                else if (len == 4 && memcmp(e, "apos", 4) == 0) cp = '\'';
                else if (len >= 2 && e[0] == '#') {
                    char *endp = NULL;
                    int hex = e[1] == 'x' || e[1] == 'X';
                    char num[16];
                    memcpy(num, e + 1 + hex, len - 1 - hex);
                    num[len - 1 - hex] = '\0';
                    cp = strtoul(num, &endp, hex ? 16 : 10);
                    ok = num[0] && endp && !*endp && cp > 0 && cp <= 0x10FFFF &&
                         !(cp >= 0xD800 && cp <= 0xDFFF);
                } else
                    ok = 0;
                if (ok) {
                    char u[4];
                    size_t un;
                    if (cp < 0x80) { u[0] = (char)cp; un = 1; }
                    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); un = 2; }
                    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); un = 3; }
                    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); un = 4; }
                    sk_status rc = buf_add(b, u, un);
                    if (rc != SK_OK)
                        return rc;
                    i = j + 1;
                    continue;
                }
            }
        }
        sk_status rc = buf_addc(b, s[i]);
        if (rc != SK_OK)
            return rc;
        i++;
    }
    return SK_OK;
}

char *chat_decode(const char *s, size_t n)
{
    sk_buf b;
    buf_init(&b, 0);
    if (buf_add(&b, "", 0) != SK_OK || add_decoded(&b, s, n) != SK_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

sk_status chat_encode(sk_buf *b, const char *s)
{
    sk_status rc = SK_OK;
    for (const char *p = s; rc == SK_OK && *p; p++) {
        switch (*p) {
        case '<': rc = buf_adds(b, "&lt;"); break;
        case '>': rc = buf_adds(b, "&gt;"); break;
        case '&': rc = buf_adds(b, "&amp;"); break;
        case '"': rc = buf_adds(b, "&quot;"); break;
        case '\'': rc = buf_adds(b, "&#39;"); break;
        default: rc = buf_addc(b, *p); break;
        }
    }
    return rc;
}

typedef struct parse {
    const char *s;
    sk_msg *msgs;
    size_t n, cap;
    size_t err_off;
    char *errmsg;
} parse;

static sk_status bad(parse *p, size_t off, const char *fmt, ...) SK_PRINTF(3, 4);
static sk_status bad(parse *p, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    p->errmsg = sk_vasprintf(fmt, ap);
    va_end(ap);
    p->err_off = off;
    return p->errmsg ? SK_TEMPLATE : SK_NOMEM;
}

/* Adds a message whose content is the decoded s[0, n), trimmed as SK's
 * reader trims it (leading line breaks, trailing white space). */
static sk_status add_msg(parse *p, const char *role, size_t role_len, const char *s,
                         size_t n, size_t at)
{
    if (p->n == MAX_MESSAGES)
        return bad(p, at, "more than %d chat messages", MAX_MESSAGES);
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        sk_msg *m = sk_realloc(p->msgs, cap * sizeof *m);
        if (!m)
            return SK_NOMEM;
        p->msgs = m;
        p->cap = cap;
    }
    while (n && (*s == '\n' || *s == '\r')) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    sk_msg *m = &p->msgs[p->n];
    memset(m, 0, sizeof *m);
    m->role = sk_strndup(role, role_len);
    m->content = chat_decode(s, n);
    if (!m->role || !m->content) {
        free(m->role);
        free(m->content);
        return SK_NOMEM;
    }
    p->n++;
    return SK_OK;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Where the next "<message" or "</message" tag starts in [from, end), or
 * end; CDATA sections are skipped. */
static size_t next_tag(const char *s, size_t from, size_t end)
{
    for (size_t i = from; i < end; i++) {
        if (s[i] != '<')
            continue;
        if (end - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
            const char *c = strstr(s + i + 9, "]]>");
            if (c && (size_t)(c - s) < end) {
                i = (size_t)(c - s) + 2;
                continue;
            }
        }
        if ((end - i >= 8 && memcmp(s + i, "<message", 8) == 0 &&
             (i + 8 == end || isspace((unsigned char)s[i + 8]) || s[i + 8] == '>' ||
              s[i + 8] == '/')) ||
            (end - i >= 9 && memcmp(s + i, "</message", 9) == 0))
            return i;
    }
    return end;
}

int chat_marked(const char *s)
{
    for (const char *t = strstr(s, "<message"); t; t = strstr(t + 8, "<message")) {
        const char *a = t + 8;
        if (!isspace((unsigned char)*a))
            continue; /* "<message>" has no attribute; "<messages" is another tag */
        for (; *a && *a != '>' && *a != '<'; a++) {
            if (strncmp(a, "role", 4) != 0 || !isspace((unsigned char)a[-1]))
                continue;
            const char *e = a + 4;
            while (isspace((unsigned char)*e))
                e++;
            if (*e == '=')
                return 1;
        }
    }
    return 0;
}

/* Reads the attributes of the tag whose name ends at *i; leaves *i after
 * the closing '>' and sets *self_closing.  The role goes to role/len. */
static sk_status read_attrs(parse *p, size_t start, size_t *i, const char **role,
                            size_t *role_len, int *self_closing)
{
    const char *s = p->s;
    *role = NULL;
    *self_closing = 0;
    size_t j = *i;
    for (;;) {
        while (isspace((unsigned char)s[j]))
            j++;
        if (s[j] == '>') {
            *i = j + 1;
            return SK_OK;
        }
        if (s[j] == '/' && s[j + 1] == '>') {
            *self_closing = 1;
            *i = j + 2;
            return SK_OK;
        }
        size_t name = j;
        while (isalnum((unsigned char)s[j]) || s[j] == '_' || s[j] == '-' || s[j] == ':')
            j++;
        if (j == name)
            return bad(p, start, "malformed <message> tag: %s",
                       s[j] ? "unexpected character in the tag" : "it is not closed with '>'");
        size_t name_len = j - name;
        while (isspace((unsigned char)s[j]))
            j++;
        if (s[j] != '=')
            return bad(p, start, "malformed <message> tag: attribute %.*s has no value",
                       (int)name_len, s + name);
        j++;
        while (isspace((unsigned char)s[j]))
            j++;
        char q = s[j];
        if (q != '"' && q != '\'')
            return bad(p, start, "malformed <message> tag: the value of %.*s must be "
                       "quoted", (int)name_len, s + name);
        const char *v = s + j + 1;
        const char *ve = strchr(v, q);
        if (!ve)
            return bad(p, start, "malformed <message> tag: the value of %.*s is not "
                       "closed", (int)name_len, s + name);
        if (name_len == 4 && memcmp(s + name, "role", 4) == 0) {
            *role = v;
            *role_len = (size_t)(ve - v);
        }
        j = (size_t)(ve - s) + 1;
    }
}

sk_status chat_parse(const char *text, sk_msg **out, size_t *n, size_t *err_off,
                     char **errmsg)
{
    parse p = {text, NULL, 0, 0, 0, NULL};
    size_t len = strlen(text), i = 0;
    sk_status rc = SK_OK;
    int seen = 0;
    while (rc == SK_OK && i < len) {
        size_t t = next_tag(text, i, len);
        if (!blank(text + i, t - i))
            /* text outside messages: system before the first, user after */
            rc = add_msg(&p, seen ? "user" : "system", seen ? 4 : 6, text + i, t - i, i);
        if (rc != SK_OK || t == len)
            break;
        if (text[t + 1] == '/') {
            rc = bad(&p, t, "</message> without a <message> before it");
            break;
        }
        size_t a = t + 8;
        const char *role = NULL;
        size_t role_len = 0;
        int self_closing = 0;
        rc = read_attrs(&p, t, &a, &role, &role_len, &self_closing);
        if (rc != SK_OK)
            break;
        if (!role) {
            rc = bad(&p, t, "a <message> without a role (write role=\"user\", "
                     "\"system\" or \"assistant\")");
            break;
        }
        char *r = chat_decode(role, role_len);
        if (!r) {
            rc = SK_NOMEM;
            break;
        }
        int known = 0;
        for (size_t k = 0; k < sizeof ROLES / sizeof *ROLES; k++)
            known |= strcmp(r, ROLES[k]) == 0;
        if (!known) {
            rc = bad(&p, t, "unknown message role \"%.40s\" (system, user, assistant, "
                     "tool or developer)", r);
            free(r);
            break;
        }
        size_t body = a, bend = a, after = a;
        if (!self_closing) {
            bend = next_tag(text, body, len);
            if (bend == len || text[bend + 1] != '/') {
                rc = bend == len ? bad(&p, t, "<message role=\"%s\"> is not closed "
                                       "with </message>", r)
                                 : bad(&p, t, "<message role=\"%s\"> is not closed "
                                       "before the next <message> starts", r);
                free(r);
                break;
            }
            after = bend + 9;
            while (isspace((unsigned char)text[after]))
                after++;
            if (text[after] != '>') {
                rc = bad(&p, bend, "malformed </message> tag");
                free(r);
                break;
            }
            after++;
        }
        rc = add_msg(&p, r, strlen(r), text + body, bend - body, t);
        free(r);
        seen = 1;
        i = after;
    }
    if (rc == SK_OK && p.n == 1 && !seen) {
        /* no markup at all: the one text is the user's */
        char *u = sk_strdup("user");
        if (!u) {
            rc = SK_NOMEM;
        } else {
            free(p.msgs[0].role);
            p.msgs[0].role = u;
        }
    }
    if (rc == SK_OK && p.n == 0)
        rc = add_msg(&p, "user", 4, "", 0, 0);
    if (rc != SK_OK) {
        for (size_t k = 0; k < p.n; k++) {
            free(p.msgs[k].role);
            free(p.msgs[k].content);
        }
        free(p.msgs);
        *err_off = p.err_off;
        *errmsg = p.errmsg;
        return rc;
    }
    *out = p.msgs;
    *n = p.n;
    return SK_OK;
}

/* ---- messages ------------------------------------------------------------ */

void tool_calls_free(sk_tool_call *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].id);
        free(c[i].name);
        free(c[i].arguments);
    }
    free(c);
}

sk_status tool_calls_copy(const sk_tool_call *c, size_t n, sk_tool_call **out)
{
    *out = NULL;
    if (!n)
        return SK_OK;
    sk_tool_call *d = sk_calloc(n, sizeof *d);
    if (!d)
        return SK_NOMEM;
    for (size_t i = 0; i < n; i++) {
        d[i].index = c[i].index;
        if (!(d[i].id = sk_strdup(c[i].id ? c[i].id : "")) ||
            !(d[i].name = sk_strdup(c[i].name ? c[i].name : "")) ||
            !(d[i].arguments = sk_strdup(c[i].arguments ? c[i].arguments : ""))) {
            tool_calls_free(d, n);
            return SK_NOMEM;
        }
    }
    *out = d;
    return SK_OK;
}

void msg_clear(sk_msg *m)
{
    if (!m)
        return;
    free(m->role);
    free(m->content);
    tool_calls_free(m->calls, m->n_calls);
    free(m->call_id);
    free(m->tool_name);
    memset(m, 0, sizeof *m);
}
