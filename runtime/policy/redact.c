/*
 * redact.c -- PII redaction: personal data and secrets are swapped for
 * placeholders ("[EMAIL_1]") before a prompt leaves the machine, and the
 * originals are put back into the reply.
 *
 * One pass over the text: every rule keeps its next accepted match at or
 * after the cursor; the earliest one wins (ties go to the rule added
 * first), so matches never overlap.  Rules whose regex cannot express the
 * whole test (Luhn, ISO 13616 mod-97, IPv6 syntax, phone heuristics,
 * entropy) have a check function that accepts, trims or rejects a match.
 *
 * A map remembers value <-> placeholder for one conversation.  Restoring
 * is exact: "[EMAIL_1]" comes back only if the reply spells it exactly
 * so; a placeholder whose brackets or case the model changed stays as the
 * model wrote it.  Placeholder-like text already in an input never
 * collides with a placeholder the map hands out: such literals are
 * reserved in the map, and allocation skips them.  A placeholder the map
 * itself issued is left alone when it appears in a later input, which is
 * what lets two rule sets run one after the other over the same text.
 *
 * Patterns are compiled with PCRE2_UTF (and JIT when available) and run
 * with PCRE2_NO_UTF_CHECK over text checked once per call; invalid bytes
 * match as U+001A (see utf8_shadow for why not PCRE2_MATCH_INVALID_UTF).
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "policy/policy.h"

#define RD_MAX_TEXT ((size_t)64 << 20)
#define RD_MAX_PLACEHOLDERS 100000
#define RD_MAX_RESERVED 100000
#define RD_MAX_NAME 64
#define RD_MATCH_LIMIT 1000000
/* "[" NAME "_" up to 9 digits "]": longer bracketed words are not ours. */
#define RD_MAX_TOKEN (RD_MAX_NAME + 12)

/* ---- rules ------------------------------------------------------------- */

/* Looks at a match [s, *e) of text; returns 1 to accept it (possibly
 * after moving *e back), 0 to reject it. */
typedef int (*rd_check_fn)(const char *text, size_t s, size_t *e);

typedef struct rd_rule {
    char *name;          /* owned */
    pcre2_code *re;      /* owned */
    rd_check_fn check;   /* NULL: the regex alone decides */
} rd_rule;

struct rd_rules {
    rd_rule *v;
    size_t n, cap;
    size_t n_custom;     /* custom rules sit in front of the built-ins */
    pcre2_general_context *gctx; /* routes PCRE2's memory through sk_malloc */
    pcre2_compile_context *cctx;
    pcre2_match_context *mctx;   /* carries the match limit */
    pcre2_jit_stack *jstack;     /* lets JIT code backtrack past 32 KiB */
};

static void *pcre_alloc(PCRE2_SIZE n, void *ud)
{
    (void)ud;
    return sk_malloc(n);
}

static void pcre_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

/* An empty rule set.  NULL on allocation failure; free with
 * rd_rules_free. */
rd_rules *rd_rules_new(void)
{
    rd_rules *r = sk_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    if (r->gctx) {
        r->cctx = pcre2_compile_context_create(r->gctx);
        r->mctx = pcre2_match_context_create(r->gctx);
    }
    if (r->mctx)
        r->jstack = pcre2_jit_stack_create(32 << 10, 1 << 20, r->gctx);
    if (!r->cctx || !r->mctx || !r->jstack) {
        rd_rules_free(r);
        return NULL;
    }
    pcre2_set_match_limit(r->mctx, RD_MATCH_LIMIT);
    pcre2_jit_stack_assign(r->mctx, NULL, r->jstack);
    return r;
}

void rd_rules_free(rd_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].name);
        pcre2_code_free(r->v[i].re);
    }
    free(r->v);
    pcre2_match_context_free(r->mctx);
    pcre2_jit_stack_free(r->jstack);
    pcre2_compile_context_free(r->cctx);
    pcre2_general_context_free(r->gctx);
    free(r);
}

static int valid_name(const char *name)
{
    if (!name || !(name[0] >= 'A' && name[0] <= 'Z'))
        return 0;
    size_t i = 1;
    for (; name[i]; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return i <= RD_MAX_NAME;
}

/* Compiles pattern and inserts it at position at.  name and pattern are
 * borrowed.  On SK_CONFIG *errmsg gets a message (caller frees). */
static sk_status insert_rule(rd_rules *r, size_t at, const char *name,
                             const char *pattern, rd_check_fn check,
                             char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!valid_name(name)) {
        if (errmsg)
            *errmsg = sk_asprintf("redaction rule %s: bad name (want "
                                  "[A-Z][A-Z0-9_]*, at most %d characters)",
                                  name ? name : "(null)", RD_MAX_NAME);
        return SK_CONFIG;
    }
    if (!pattern) {
        if (errmsg)
            *errmsg = sk_asprintf("redaction rule %s: no pattern", name);
        return SK_CONFIG;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        rd_rule *v = sk_realloc(r->v, cap * sizeof *v);
        if (!v)
            return SK_NOMEM;
        r->v = v;
        r->cap = cap;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF, &ec, &eo, r->cctx);
    if (!re) {
        if (ec == PCRE2_ERROR_HEAP_FAILED)
            return SK_NOMEM;
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        if (errmsg)
            *errmsg = sk_asprintf("redaction rule %s: bad pattern at offset "
                                  "%zu: %s", name, (size_t)eo, (char *)msg);
        return SK_CONFIG;
    }
    /* JIT is an optimisation: without it (no support, no memory) the
     * interpreter runs the same pattern. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    char *nm = sk_strdup(name);
    if (!nm) {
        pcre2_code_free(re);
        return SK_NOMEM;
    }
    memmove(r->v + at + 1, r->v + at, (r->n - at) * sizeof *r->v);
    r->v[at].name = nm;
    r->v[at].re = re;
    r->v[at].check = check;
    r->n++;
    return SK_OK;
}

/* Adds a custom rule in front of the built-ins (after earlier custom
 * rules).  name and pattern are borrowed.  SK_CONFIG with *errmsg set
 * (caller frees; errmsg may be NULL) on a bad name or pattern. */
sk_status rd_rules_add(rd_rules *r, const char *name, const char *pattern,
                       char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!r)
        return SK_USAGE;
    sk_status rc = insert_rule(r, r->n_custom, name, pattern, NULL, errmsg);
    if (rc == SK_OK)
        r->n_custom++;
    return rc;
}

/* ---- checks ------------------------------------------------------------ */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Luhn over the digits of [s, e); separators are skipped. */
static int luhn_ok(const char *t, size_t s, size_t e)
{
    int sum = 0, dbl = 0, n = 0, first = -1, same = 1;
    for (size_t i = e; i > s; i--) {
        char c = t[i - 1];
        if (!is_digit(c))
            continue;
        int d = c - '0';
        if (first < 0)
            first = d;
        else if (d != first)
            same = 0;
        if (dbl && (d *= 2) > 9)
            d -= 9;
        sum += d;
        dbl = !dbl;
        n++;
    }
    /* All-equal runs ("0000 0000 0000 0000") pass Luhn but are filler. */
    return n >= 13 && n <= 19 && !same && sum % 10 == 0;
}

static size_t count_digits(const char *t, size_t s, size_t e)
{
    size_t n = 0;
    for (size_t i = s; i < e; i++)
        n += is_digit(t[i]);
    return n;
}

/* Moves *e back to the last separator in (s, *e); 0 when there is none. */
static int drop_last_group(const char *t, size_t s, size_t *e)
{
    for (size_t i = *e; i > s + 1; i--) {
        if (t[i - 1] == ' ' || t[i - 1] == '-') {
            *e = i - 1;
            return 1;
        }
    }
    return 0;
}

/* A card number: the longest prefix, whole groups only, that passes
 * Luhn.  Trimming lets "4111 1111 1111 1111 2024" yield the card. */
static int check_card(const char *t, size_t s, size_t *e)
{
    size_t end = *e;
    for (;;) {
        if (count_digits(t, s, end) < 13)
            return 0;
        if (luhn_ok(t, s, end)) {
            *e = end;
            return 1;
        }
        if (!drop_last_group(t, s, &end))
            return 0;
    }
}

static int iban_ok(const char *t, size_t s, size_t e)
{
    char c[40];
    size_t n = 0;
    for (size_t i = s; i < e; i++) {
        if (t[i] == ' ')
            continue;
        if (n == sizeof c)
            return 0;
        c[n++] = t[i];
    }
    if (n < 15 || n > 34)
        return 0;
    /* ISO 13616: move the first four characters to the end, read letters
     * as 10..35, and the number mod 97 must be 1. */
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        char ch = c[(k + 4) % n];
        if (is_digit(ch))
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else if (ch >= 'A' && ch <= 'Z')
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        else
            return 0;
    }
    return rem == 1;
}

static int check_iban(const char *t, size_t s, size_t *e)
{
    size_t end = *e;
    for (;;) {
        if (iban_ok(t, s, end)) {
            *e = end;
            return 1;
        }
        if (!drop_last_group(t, s, &end) || end - s < 15)
            return 0;
    }
}

/* IPv4 is fully checked by the regex; IPv6 candidates go through
 * inet_pton, after dropping a trailing single ':' (sentence
 * punctuation). */
static int check_ip(const char *t, size_t s, size_t *e)
{
    size_t n = *e - s;
    if (!memchr(t + s, ':', n))
        return 1;
    char buf[64];
    struct in6_addr a;
    while (n >= 2 && n < sizeof buf) {
        memcpy(buf, t + s, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET6, buf, &a) == 1) {
            /* "::" alone is a bare pair of colons in prose, not an address. */
            if (n == 2)
                return 0;
            *e = s + n;
            return 1;
        }
        if (buf[n - 1] != ':' || buf[n - 2] == ':')
            return 0;
        n--;
    }
    return 0;
}

static int is_year(const char *g, size_t len)
{
    return len == 4 && ((g[0] == '1' && g[1] == '9') || (g[0] == '2' && g[1] == '0'));
}

/* A phone number candidate.  The regex finds runs of digits and
 * separators; this decides whether the run reads as a phone number
 * rather than a date, a year range, a version, a decimal or an address.
 * Rules: 7-15 digits; a bare run of digits only with a leading "+"; at
 * most one kind of separator among '-' and '.'; dotted forms need three
 * or more groups of two or more digits; a single-digit group only first
 * (trunk prefix) or right after the country code; no dates
 * (YYYY-MM-DD, DD.MM.YYYY), no lists of years, no thousands grouping
 * ("1 234 567"); parentheses only as one "(digits)" group. */
static int check_phone(const char *t, size_t s, size_t *e)
{
    size_t len[16], at[16], ng = 0, digits = 0;
    int plus = t[s] == '+', paren = 0, dash = 0, dot = 0, space = 0;
    int open = 0;
    size_t i = s + (size_t)plus;
    while (i < *e) {
        char c = t[i];
        if (is_digit(c)) {
            size_t j = i;
            while (j < *e && is_digit(t[j]))
                j++;
            if (ng == sizeof len / sizeof len[0])
                return 0;
            at[ng] = i;
            len[ng++] = j - i;
            digits += j - i;
            i = j;
            continue;
        }
        if (c == '(') {
            if (open || paren)
                return 0;
            open = 1;
            paren = 1;
        } else if (c == ')') {
            if (!open)
                return 0;
            open = 0;
        } else if (c == '-') {
            dash = 1;
        } else if (c == '.') {
            dot = 1;
        } else if (c == ' ') {
            space = 1;
        }
        i++;
    }
    if (open || digits < 7 || digits > 15)
        return 0;
    if (ng == 1)
        return plus && digits >= 8;
    if (dash && dot)
        return 0;
    for (size_t g = 1; g < ng; g++)
        if (len[g] == 1 && !(g == 1 && plus))
            return 0;
    if (plus || paren)
        return 1;
    if (dot) {
        if (ng < 3)
            return 0;
        for (size_t g = 0; g < ng; g++)
            if (len[g] < 2)
                return 0;
    }
    if (ng == 3 && (dash || dot) && !space &&
        ((len[0] == 4 && len[1] <= 2 && len[2] <= 2) ||
         (len[0] <= 2 && len[1] <= 2 && len[2] == 4)))
        return 0; /* a date */
    int years = 1, thousands = len[0] <= 3;
    for (size_t g = 0; g < ng; g++) {
        years &= is_year(t + at[g], len[g]);
        if (g > 0)
            thousands &= len[g] == 3;
    }
    if (years)
        return 0;
    if (thousands && len[0] == 1 && !dash)
        return 0;
    return 1;
}

/* Shannon entropy of s in bits per byte. */
static double entropy(const char *s, size_t n)
{
    size_t f[256] = {0};
    for (size_t i = 0; i < n; i++)
        f[(unsigned char)s[i]]++;
    double h = 0;
    for (int c = 0; c < 256; c++) {
        if (!f[c])
            continue;
        double p = (double)f[c] / (double)n;
        h -= p * log2(p);
    }
    return h;
}

/* A value after "token=" or "api_key": must look generated: 8+
 * characters, two or more character classes, and some entropy, so that
 * "token: required" stays readable. */
static int check_keyval(const char *t, size_t s, size_t *e)
{
    size_t n = *e - s;
    int lower = 0, upper = 0, digit = 0, other = 0;
    for (size_t i = s; i < *e; i++) {
        char c = t[i];
        if (c >= 'a' && c <= 'z')
            lower = 1;
        else if (c >= 'A' && c <= 'Z')
            upper = 1;
        else if (is_digit(c))
            digit = 1;
        else
            other = 1;
    }
    return n >= 8 && lower + upper + digit + other >= 2 && entropy(t + s, n) >= 2.5;
}

/* ---- built-in rules ---------------------------------------------------- */

typedef struct builtin {
    const char *name;
    const char *pattern;
    rd_check_fn check;
} builtin;

/* In priority order: when two rules match at the same offset the earlier
 * one wins, so the specific shapes come before PHONE's loose one. */
static const builtin builtins[] = {
    /* Provider keys and tokens with a recognisable prefix. */
    {"SECRET",
     "(?<![\\w-])(?:"
     "sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,256}"
     "|AKIA[0-9A-Z]{16}"
     "|gh[posur]_[A-Za-z0-9]{36,255}"
     "|github_pat_[A-Za-z0-9_]{22,255}"
     "|xox[abpr]-[A-Za-z0-9-]{10,255}"
     "|eyJ[A-Za-z0-9_-]{4,4096}\\.eyJ[A-Za-z0-9_-]{4,8192}\\.[A-Za-z0-9_-]{0,4096}"
     ")(?![\\w-])",
     NULL},
    /* "Authorization: Bearer TOKEN": only the token goes. */
    {"SECRET", "\\bBearer[ \\t]+\\K[A-Za-z0-9._~+/-]{8,4096}=*", NULL},
    /* Passwords: any value of four or more characters. */
    {"SECRET",
     "(?i)(?<![\\w-])(?:password|passwd|passphrase|pwd)[\"']?[ \\t]*[:=][ \\t]*"
     "[\"']?\\K[^\\s\"',;&]{4,1024}",
     NULL},
    /* Key, token and secret values that look generated. */
    {"SECRET",
     "(?i)(?<![\\w-])(?:[a-z0-9]{1,20}[_-])?(?:api[_-]?key|apikey|key|token|"
     "secret|access[_-]?key|client[_-]?secret|credentials?)[\"']?[ \\t]*"
     "[:=][ \\t]*[\"']?\\K[^\\s\"',;&]{8,4096}",
     check_keyval},
    {"EMAIL",
     "(?<![A-Za-z0-9._%+\\x{80}-\\x{10FFFF}-])"
     "[A-Za-z0-9._%+\\x{80}-\\x{10FFFF}-]{1,64}@"
     "(?:[A-Za-z0-9\\x{80}-\\x{10FFFF}]"
     "(?:[A-Za-z0-9\\x{80}-\\x{10FFFF}-]{0,61}[A-Za-z0-9\\x{80}-\\x{10FFFF}])?"
     "\\.){1,8}"
     "[A-Za-z]{2,63}(?![A-Za-z0-9-])",
     NULL},
    {"IBAN",
     "(?<![\\w])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"
     "(?![\\w])",
     check_iban},
    {"CARD", "(?<![\\w-])(?<![0-9][ -])[0-9](?:[ -]?[0-9]){12,18}(?![\\w])",
     check_card},
    {"IP",
     "(?<![\\w.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}"
     "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![\\w]|\\.[0-9])"
     "|(?<![\\w:.])(?:[0-9A-Fa-f]{0,4}:){2,8}"
     "(?:(?:[0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})(?![\\w:]|\\.[0-9])",
     check_ip},
    {"PHONE",
     "(?<![\\w+./:@-])(?<![0-9][ .-])(?:\\+|\\()?[0-9][0-9 ().-]{4,24}[0-9]"
     "(?![\\w/:@]|[.-]?[0-9])",
     check_phone},
};

/* The built-in rules.  *out is NULL on failure; free with
 * rd_rules_free. */
sk_status rd_rules_default(rd_rules **out)
{
    *out = NULL;
    rd_rules *r = rd_rules_new();
    if (!r)
        return SK_NOMEM;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        char *msg = NULL;
        sk_status rc = insert_rule(r, r->n, builtins[i].name,
                                   builtins[i].pattern, builtins[i].check, &msg);
        free(msg);
        if (rc != SK_OK) {
            rd_rules_free(r);
            return rc;
        }
    }
    *out = r;
    return SK_OK;
}

/* The built-in SECRET rules alone, for text that is kept rather than
 * sent: API keys and tokens, bearer tokens, passwords, key=value
 * secrets.  *out is NULL on failure; free with rd_rules_free. */
sk_status rd_rules_secrets(rd_rules **out)
{
    *out = NULL;
    rd_rules *r = rd_rules_new();
    if (!r)
        return SK_NOMEM;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(builtins[i].name, "SECRET") != 0)
            continue;
        char *msg = NULL;
        sk_status rc = insert_rule(r, r->n, builtins[i].name, builtins[i].pattern,
                                   builtins[i].check, &msg);
        free(msg);
        if (rc != SK_OK) {
            rd_rules_free(r);
            return rc;
        }
    }
    *out = r;
    return SK_OK;
}

/* ---- the map ----------------------------------------------------------- */

typedef struct rd_entry {
    char *ph;       /* "[NAME_n]", owned */
    char *value;    /* the original, owned; NULL: a literal seen in an
                       input, reserved so that no placeholder reuses it */
    size_t vlen;
    size_t name;    /* index into names (known entries only) */
} rd_entry;

typedef struct rd_name {
    char *name;         /* owned */
    unsigned long next; /* the next number to try */
} rd_name;

struct rd_map {
    rd_entry *e;
    size_t n, cap;
    size_t n_known, n_reserved;
    /* Open addressing; slots hold entry index + 1, 0 is empty. */
    uint32_t *by_ph, *by_val;
    size_t tcap;
    rd_name *names;
    size_t n_names, cap_names;
};

/* An empty map.  NULL on allocation failure; free with rd_map_free. */
rd_map *rd_map_new(void) { return sk_calloc(1, sizeof(rd_map)); }

void rd_map_free(rd_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].ph);
        free(m->e[i].value);
    }
    for (size_t i = 0; i < m->n_names; i++)
        free(m->names[i].name);
    free(m->e);
    free(m->by_ph);
    free(m->by_val);
    free(m->names);
    free(m);
}

/* Distinct originals the map has replaced. */
size_t rd_map_count(const rd_map *m) { return m ? m->n_known : 0; }

static uint32_t fnv(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

#define FNV_SEED 2166136261u

static uint32_t hash_val(const char *name, const char *v, size_t n)
{
    return fnv(fnv(FNV_SEED, name, strlen(name) + 1), v, n);
}

static uint32_t hash_ph(const char *ph, size_t n) { return fnv(FNV_SEED, ph, n); }

static void slot_put(uint32_t *t, size_t cap, uint32_t h, size_t idx)
{
    size_t i = h & (cap - 1);
    while (t[i])
        i = (i + 1) & (cap - 1);
    t[i] = (uint32_t)idx + 1;
}

/* Makes room for one more entry in the array and both tables. */
static sk_status map_reserve(rd_map *m)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        rd_entry *e = sk_realloc(m->e, cap * sizeof *e);
        if (!e)
            return SK_NOMEM;
        m->e = e;
        m->cap = cap;
    }
    if ((m->n + 1) * 2 <= m->tcap)
        return SK_OK;
    size_t tcap = m->tcap ? m->tcap * 2 : 64;
    uint32_t *a = sk_calloc(tcap, sizeof *a);
    uint32_t *b = sk_calloc(tcap, sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return SK_NOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        const rd_entry *x = &m->e[i];
        slot_put(a, tcap, hash_ph(x->ph, strlen(x->ph)), i);
        if (x->value)
            slot_put(b, tcap, hash_val(m->names[x->name].name, x->value, x->vlen),
                     i);
    }
    free(m->by_ph);
    free(m->by_val);
    m->by_ph = a;
    m->by_val = b;
    m->tcap = tcap;
    return SK_OK;
}

/* The entry whose placeholder is ph[0..n), or NULL.  Borrowed. */
static const rd_entry *find_ph(const rd_map *m, const char *ph, size_t n)
{
    if (!m->tcap)
        return NULL;
    for (size_t i = hash_ph(ph, n) & (m->tcap - 1); m->by_ph[i];
         i = (i + 1) & (m->tcap - 1)) {
        const rd_entry *x = &m->e[m->by_ph[i] - 1];
        if (strncmp(x->ph, ph, n) == 0 && x->ph[n] == '\0')
            return x;
    }
    return NULL;
}

static const rd_entry *find_val(const rd_map *m, const char *name,
                                const char *v, size_t n)
{
    if (!m->tcap)
        return NULL;
    for (size_t i = hash_val(name, v, n) & (m->tcap - 1); m->by_val[i];
         i = (i + 1) & (m->tcap - 1)) {
        const rd_entry *x = &m->e[m->by_val[i] - 1];
        if (x->vlen == n && memcmp(x->value, v, n) == 0 &&
            strcmp(m->names[x->name].name, name) == 0)
            return x;
    }
    return NULL;
}

/* Records a placeholder-like literal from an input so that allocation
 * never hands it out. */
static sk_status map_reserve_literal(rd_map *m, const char *ph, size_t n)
{
    if (find_ph(m, ph, n))
        return SK_OK;
    if (m->n_reserved >= RD_MAX_RESERVED)
        return SK_TOO_LARGE;
    sk_status rc = map_reserve(m);
    if (rc != SK_OK)
        return rc;
    char *p = sk_strndup(ph, n);
    if (!p)
        return SK_NOMEM;
    rd_entry *x = &m->e[m->n];
    memset(x, 0, sizeof *x);
    x->ph = p;
    slot_put(m->by_ph, m->tcap, hash_ph(p, n), m->n);
    m->n++;
    m->n_reserved++;
    return SK_OK;
}

/* The placeholder for value v[0..n) under name, allocating the next free
 * number on first sight.  Returned string borrowed from the map. */
static sk_status map_get(rd_map *m, const char *name, const char *v, size_t n,
                         const char **ph)
{
    const rd_entry *x = find_val(m, name, v, n);
    if (x) {
        *ph = x->ph;
        return SK_OK;
    }
    if (m->n_known >= RD_MAX_PLACEHOLDERS)
        return SK_TOO_LARGE;
    size_t ni = 0;
    while (ni < m->n_names && strcmp(m->names[ni].name, name) != 0)
        ni++;
    if (ni == m->n_names) {
        if (m->n_names == m->cap_names) {
            size_t cap = m->cap_names ? m->cap_names * 2 : 8;
            rd_name *nn = sk_realloc(m->names, cap * sizeof *nn);
            if (!nn)
                return SK_NOMEM;
            m->names = nn;
            m->cap_names = cap;
        }
        char *copy = sk_strdup(name);
        if (!copy)
            return SK_NOMEM;
        m->names[ni].name = copy;
        m->names[ni].next = 1;
        m->n_names++;
    }
    sk_status rc = map_reserve(m);
    if (rc != SK_OK)
        return rc;
    rd_name *nm = &m->names[ni];
    char *p = NULL;
    for (unsigned long k = nm->next;; k++) {
        free(p);
        if (!(p = sk_asprintf("[%s_%lu]", name, k)))
            return SK_NOMEM;
        if (!find_ph(m, p, strlen(p))) {
            nm->next = k + 1;
            break;
        }
    }
    char *val = sk_strndup(v, n);
    if (!val) {
        free(p);
        return SK_NOMEM;
    }
    rd_entry *e = &m->e[m->n];
    e->ph = p;
    e->value = val;
    e->vlen = n;
    e->name = ni;
    slot_put(m->by_ph, m->tcap, hash_ph(p, strlen(p)), m->n);
    slot_put(m->by_val, m->tcap, hash_val(name, val, n), m->n);
    m->n++;
    m->n_known++;
    *ph = e->ph;
    return SK_OK;
}

/* The length of a placeholder-shaped token "[NAME_n]" at t[i] (t[i] is
 * '['; the token must end before len), or 0. */
static size_t token_at(const char *t, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j >= len || !(t[j] >= 'A' && t[j] <= 'Z'))
        return 0;
    size_t us = 0; /* offset of the last '_' */
    for (; t[j] != ']'; j++) {
        char c = t[j];
        if (j - i > RD_MAX_TOKEN || j + 1 >= len)
            return 0;
        if (c == '_')
            us = j;
        else if (!((c >= 'A' && c <= 'Z') || is_digit(c)))
            return 0;
    }
    if (!us || us + 1 == j)
        return 0;
    for (size_t k = us + 1; k < j; k++)
        if (!is_digit(t[k]))
            return 0;
    return j + 1 - i;
}

/* ---- redact and restore ------------------------------------------------ */

static size_t next_char(const char *t, size_t len, size_t i)
{
    i++;
    while (i < len && ((unsigned char)t[i] & 0xC0) == 0x80)
        i++;
    return i;
}

static sk_status match_status(int rc)
{
    switch (rc) {
    case PCRE2_ERROR_NOMEMORY:
        return SK_NOMEM;
    case PCRE2_ERROR_MATCHLIMIT:
    case PCRE2_ERROR_DEPTHLIMIT:
    case PCRE2_ERROR_HEAPLIMIT:
    case PCRE2_ERROR_JIT_STACKLIMIT:
        return SK_TOO_LARGE;
    default:
        return SK_USAGE;
    }
}

enum { C_NEED, C_HAVE, C_DONE };

typedef struct cand {
    int state;
    size_t s, e;
} cand;

/* The first accepted, non-empty match of rule at or after from. */
static sk_status find_match(const rd_rules *r, const rd_rule *rule,
                            const char *t, size_t len, size_t from,
                            pcre2_match_data *md, cand *c)
{
    size_t pos = from;
    while (pos <= len) {
        /* The subject is valid UTF-8 (see utf8_shadow): skip the check. */
        int rc = pcre2_match(rule->re, (PCRE2_SPTR)t, len, pos,
                             PCRE2_NO_UTF_CHECK, md, r->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) {
            c->state = C_DONE;
            return SK_OK;
        }
        if (rc < 0)
            return match_status(rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (s < pos)
            s = pos; /* \K inside a lookbehind is refused; be safe anyway */
        if (e > s && (!rule->check || rule->check(t, s, &e)) && e > s) {
            c->state = C_HAVE;
            c->s = s;
            c->e = e;
            return SK_OK;
        }
        if (s >= len)
            break;
        pos = next_char(t, len, s);
    }
    c->state = C_DONE;
    return SK_OK;
}

/* The next placeholder the map issued, at or after from (left as is so a
 * second rule set cannot cut into it). */
static void find_own(const rd_map *m, const char *t, size_t len, size_t from,
                     cand *c)
{
    const char *p = t + from;
    while ((p = memchr(p, '[', len - (size_t)(p - t))) != NULL) {
        size_t i = (size_t)(p - t), n = token_at(t, len, i);
        const rd_entry *x = n ? find_ph(m, t + i, n) : NULL;
        if (x && x->value) {
            c->state = C_HAVE;
            c->s = i;
            c->e = i + n;
            return;
        }
        p++;
    }
    c->state = C_DONE;
}

/* Reserves every placeholder-shaped literal of text the map has not
 * issued. */
static sk_status reserve_literals(rd_map *m, const char *t, size_t len)
{
    for (const char *p = t; (p = memchr(p, '[', len - (size_t)(p - t)));) {
        size_t n = token_at(t, len, (size_t)(p - t));
        if (n) {
            sk_status rc = map_reserve_literal(m, p, n);
            if (rc != SK_OK)
                return rc;
            p += n;
        } else {
            p++;
        }
    }
    return SK_OK;
}

/* Appends t[0..len) to b with every placeholder m issued replaced by its
 * original.  One level is enough: originals never hold placeholders (see
 * rd_redact). */
static sk_status expand(const rd_map *m, const char *t, size_t len, sk_buf *b)
{
    size_t cur = 0;
    if (m && m->n_known) {
        const char *p = t;
        while ((p = memchr(p, '[', len - (size_t)(p - t)))) {
            size_t i = (size_t)(p - t), n = token_at(t, len, i);
            const rd_entry *x = n ? find_ph(m, p, n) : NULL;
            if (x && x->value) {
                sk_status rc = buf_add(b, t + cur, i - cur);
                if (rc == SK_OK)
                    rc = buf_add(b, x->value, x->vlen);
                if (rc != SK_OK)
                    return rc;
                cur = i + n;
                p += n;
            } else {
                p++;
            }
        }
    }
    return buf_add(b, t + cur, len - cur);
}

/* The length of the valid UTF-8 sequence (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF) at t[i], or 0. */
static size_t utf8_len(const unsigned char *t, size_t len, size_t i)
{
    unsigned char c = t[i];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (len - i < n || t[i + 1] < lo || t[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (t[i + k] < 0x80 || t[i + k] > 0xBF)
            return 0;
    return n;
}

/* Rules match against valid UTF-8 only.  PCRE2_MATCH_INVALID_UTF would
 * do this for us, but it re-validates the subject up to its end on every
 * pcre2_match call, which makes one pass over a text with many matches
 * quadratic.  So text is checked once here: when it is valid, *subj is
 * text itself; otherwise *subj is a copy (caller frees *copy) in which
 * every byte outside a valid sequence reads as U+001A SUBSTITUTE.  The
 * copy has the same length, so offsets carry over and originals are
 * still taken from text. */
static sk_status utf8_shadow(const char *text, size_t len, const char **subj,
                             char **copy)
{
    const unsigned char *t = (const unsigned char *)text;
    *subj = text;
    *copy = NULL;
    size_t i = 0, n;
    while (i < len && (n = utf8_len(t, len, i)) != 0)
        i += n;
    if (i == len)
        return SK_OK;
    char *c = sk_malloc(len + 1);
    if (!c)
        return SK_NOMEM;
    memcpy(c, text, len + 1);
    while (i < len) {
        n = utf8_len(t, len, i);
        if (n == 0) {
            c[i] = '\x1a';
            n = 1;
        }
        i += n;
    }
    *subj = c;
    *copy = c;
    return SK_OK;
}

/* Redacts text (borrowed) into *out (caller frees; NULL on error).  On
 * error the map may keep entries for values already seen, which is
 * harmless.  SK_TOO_LARGE past 64 MiB of text or output, past 100000
 * placeholders, or when a rule runs past its match limit (the text is
 * then not sent rather than sent unredacted). */
sk_status rd_redact(const rd_rules *r, rd_map *m, const char *text, char **out)
{
    if (!out)
        return SK_USAGE;
    *out = NULL;
    if (!r || !m || !text)
        return SK_USAGE;
    size_t len = strnlen(text, RD_MAX_TEXT + 1);
    if (len > RD_MAX_TEXT)
        return SK_TOO_LARGE;
    sk_status rc = reserve_literals(m, text, len);
    if (rc != SK_OK)
        return rc;
    const char *subj;
    char *copy;
    if ((rc = utf8_shadow(text, len, &subj, &copy)) != SK_OK)
        return rc;
    cand *c = sk_calloc(r->n + 1, sizeof *c); /* [0]: the map's own */
    pcre2_match_data *md = r->n ? pcre2_match_data_create(1, r->gctx) : NULL;
    sk_buf b, val;
    buf_init(&b, RD_MAX_TEXT);
    buf_init(&val, RD_MAX_TEXT);
    if (!c || (r->n && !md)) {
        rc = SK_NOMEM;
        goto done;
    }
    size_t cur = 0;
    for (;;) {
        size_t best = 0;
        int have = 0;
        for (size_t i = 0; i <= r->n; i++) {
            cand *ci = &c[i];
            if (ci->state == C_HAVE && ci->s < cur)
                ci->state = C_NEED;
            if (ci->state == C_NEED) {
                if (i == 0)
                    find_own(m, text, len, cur, ci);
                else if ((rc = find_match(r, &r->v[i - 1], subj, len, cur, md,
                                          ci)) != SK_OK)
                    goto done;
            }
            if (ci->state == C_HAVE && (!have || ci->s < c[best].s)) {
                best = i;
                have = 1;
            }
        }
        if (!have)
            break;
        cand *w = &c[best];
        if (best == 0) {
            rc = buf_add(&b, text + cur, w->e - cur);
        } else {
            const char *ph, *v = text + w->s;
            size_t vn = w->e - w->s;
            rc = buf_add(&b, text + cur, w->s - cur);
            /* A match can take in a placeholder issued earlier (a second
             * rule set over the first one's output): the map keeps the
             * original with it put back, so restoring is one pass. */
            if (rc == SK_OK && memchr(v, '[', vn)) {
                buf_reset(&val);
                if ((rc = expand(m, v, vn, &val)) == SK_OK) {
                    v = val.p;
                    vn = val.len;
                }
            }
            if (rc == SK_OK)
                rc = map_get(m, r->v[best - 1].name, v, vn, &ph);
            if (rc == SK_OK)
                rc = buf_adds(&b, ph);
        }
        if (rc != SK_OK)
            goto done;
        cur = w->e;
        w->state = C_NEED;
    }
    if ((rc = buf_add(&b, text + cur, len - cur)) == SK_OK &&
        !(*out = buf_steal(&b)))
        rc = SK_NOMEM;
done:
    buf_free(&b);
    buf_free(&val);
    pcre2_match_data_free(md);
    free(c);
    free(copy);
    return rc;
}

/* Copies text (borrowed) into *out (caller frees; NULL on error) with
 * every placeholder of m put back.  Only exact spellings count; unknown
 * and reserved placeholders stay as written.  A NULL map copies the text
 * unchanged.  SK_TOO_LARGE past 64 MiB in or out. */
sk_status rd_restore(const rd_map *m, const char *text, char **out)
{
    if (!out)
        return SK_USAGE;
    *out = NULL;
    if (!text)
        return SK_USAGE;
    size_t len = strnlen(text, RD_MAX_TEXT + 1);
    if (len > RD_MAX_TEXT)
        return SK_TOO_LARGE;
    sk_buf b;
    buf_init(&b, RD_MAX_TEXT);
    sk_status rc = expand(m, text, len, &b);
    if (rc == SK_OK && !(*out = buf_steal(&b)))
        rc = SK_NOMEM;
    buf_free(&b);
    return rc;
}

/* ---- local endpoints --------------------------------------------------- */

static int host_is_loopback(const char *h, size_t n)
{
    char buf[256];
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n && h[n - 1] == '.')
        n--; /* "localhost." is the same name, fully qualified */
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (strcasecmp(buf, "localhost") == 0 ||
        strcasecmp(buf, "localhost.localdomain") == 0)
        return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return ((const unsigned char *)&a4)[0] == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(&a6, &in6addr_loopback, sizeof a6) == 0)
            return 1;
        return memcmp(a6.s6_addr, mapped, 12) == 0 && a6.s6_addr[12] == 127;
    }
    return 0;
}

/* url is "scheme://[user@]host[:port][/...]" or "host[:port][/...]". */
static int url_is_local(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t alen = strcspn(p, "/?#");
    /* The host follows the last '@' of the authority: in
     * "http://127.0.0.1@example.com/" the server is example.com. */
    for (size_t i = alen; i > 0; i--) {
        if (p[i - 1] == '@') {
            p += i;
            alen -= i;
            break;
        }
    }
    size_t hlen;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            return 0;
        hlen = (size_t)(rb - p) + 1;
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
    }
    return host_is_loopback(p, hlen);
}

/* 1 when spec (borrowed) talks to this machine: "scripted:...", a URL or
 * "kind:MODEL@URL" on a loopback host, or "openai:MODEL" while
 * OPENAI_BASE_URL names a loopback host.  Anything unrecognised counts as
 * remote, so that redaction errs on the side of running. */
int rd_is_local(const char *spec)
{
    if (!spec || !*spec)
        return 0;
    if (strncmp(spec, "scripted:", 9) == 0)
        return 1;
    const char *sep = strstr(spec, "://");
    const char *colon = strchr(spec, ':');
    if (sep && colon == sep) /* a bare URL */
        return url_is_local(spec);
    if (colon && strncmp(spec, "openai:", 7) == 0) {
        const char *at = strchr(spec + 7, '@');
        if (at)
            return url_is_local(at + 1);
        const char *base = getenv("OPENAI_BASE_URL");
        return base && *base ? url_is_local(base) : 0;
    }
    if (sep) {
        const char *at = strchr(spec, '@');
        return at && at < sep ? url_is_local(at + 1) : 0;
    }
    return 0;
}
