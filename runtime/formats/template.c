/*
 * template.c -- Semantic Kernel's prompt template language.
 *
 * A template is text with blocks in double braces:
 *
 *     {{$var}}                      a variable (unknown ones render empty)
 *     {{'text'}}  {{"text"}}        a quoted value
 *     {{Skill.Fn}}  {{fn}}          a function call ...
 *     {{Skill.Fn $v}}  {{f 'x'}}    ... with one positional argument ...
 *     {{f 'x' n=$v m="y"}}          ... and named arguments
 *
 * Parsing follows SK's two tokenizers.  The template scanner finds blocks:
 * a block opens at the last "{{" seen outside quotes and closes at the
 * first "}}" outside quotes, where quotes count only once a block is open
 * and `\'` `\"` `\\` are escapes inside them.  What SK leaves as text stays
 * text here too: an unclosed "{{", a block whose quote never closes (which
 * swallows the rest of the template), an empty "{{ }}", single braces.
 * The code inside a delimited block is then tokenized, and code errors
 * that SK raises when it builds a template (bad names, argument order,
 * missing separators...) are reported with the position of the token.
 *
 * Two SK quirks are deliberately not reproduced: a named argument's quoted
 * value may contain '=' ({{f a='x=y'}}), and the scanner's quote tracking
 * means a quoted value may contain "}}".
 *
 * Adjacent text (including empty blocks kept as text) is merged into one
 * TB_TEXT block, so rendering touches as few blocks as possible.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/formats.h"

#define TPL_MAX_BYTES ((size_t)16 << 20)
#define SNIP 40 /* longest piece of user text quoted in an error */

/* ---- tokens inside a block ---------------------------------------------- */

typedef enum tok_kind { T_VAR, T_VAL, T_ID, T_NAMED } tok_kind;

/* Offsets into the template text; nothing is copied until the block is
 * known to be valid. */
typedef struct tok {
    tok_kind kind;
    size_t off;            /* first byte of the token */
    size_t name, name_len; /* T_VAR: name after '$'; T_ID: the id; T_NAMED:
                              the argument name */
    int val_is_var;        /* T_NAMED: value is $var */
    size_t val, val_len;   /* T_VAL / quoted T_NAMED: between the quotes,
                              still escaped; $var T_NAMED: the name */
    size_t val_off;        /* T_NAMED: where the value starts ($ or quote) */
} tok;

typedef struct parser {
    const char *s;
    size_t len;
    const char *origin;
    tpl_block *blocks;
    size_t n, cap;
    size_t n_calls;
    tok *toks; /* scratch for the block being tokenized, reused */
    size_t n_toks, cap_toks;
    /* Line and column of byte pos_off; only ever moves forward, so the
     * whole parse counts lines once. */
    size_t pos_off;
    int pos_line, pos_col;
    int indent;   /* columns before each line after the first, in the file */
    char *errmsg; /* set with SK_TEMPLATE */
} parser;

static int is_sep(char c) /* what separates tokens, as in SK */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_trim(char c) /* what is trimmed around a block's code */
{
    return is_sep(c) || c == '\v' || c == '\f';
}

static int snip(size_t n) { return (int)(n < SNIP ? n : SNIP); }

static int is_quote(char c) { return c == '\'' || c == '"'; }

static int is_escapable(char c) { return c == '\'' || c == '"' || c == '\\'; }

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

static void advance_to(parser *p, size_t off)
{
    for (; p->pos_off < off; p->pos_off++) {
        if (p->s[p->pos_off] == '\n') {
            p->pos_line++;
            p->pos_col = p->indent + 1;
        } else {
            p->pos_col++;
        }
    }
}

/* Line and column of off (>= pos_off) without moving the parser. */
static void locate(const parser *p, size_t off, int *line, int *col)
{
    int l = p->pos_line, c = p->pos_col;
    for (size_t i = p->pos_off; i < off; i++) {
        if (p->s[i] == '\n') {
            l++;
            c = p->indent + 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* Records "origin:line:col: message" for the byte at off.  Returns
 * SK_TEMPLATE, or SK_NOMEM when the message itself cannot be built. */
static sk_status vfail_at(parser *p, size_t off, const char *fmt, va_list ap)
{
    int line, col;
    locate(p, off, &line, &col);
    char *msg = sk_vasprintf(fmt, ap);
    if (!msg)
        return SK_NOMEM;
    p->errmsg = sk_asprintf("%s:%d:%d: %s", p->origin, line, col, msg);
    free(msg);
    return p->errmsg ? SK_TEMPLATE : SK_NOMEM;
}

static sk_status fail_at(parser *p, size_t off, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_status fail_at(parser *p, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_status rc = vfail_at(p, off, fmt, ap);
    va_end(ap);
    return rc;
}

/* The first byte of s[off, off+n) that is not a name character, or n. */
static size_t bad_name_char(const char *s, size_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(s[off + i]))
            return i;
    return n;
}

/* A printable rendering of one byte for messages; buf has room for 5. */
static const char *show_char(char c, char *buf)
{
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7f)
        snprintf(buf, 5, "%c", c);
    else
        snprintf(buf, 5, "\\x%02X", u);
    return buf;
}

/* Scans a quoted value starting at the quote s[i]; *end gets the index
 * after the closing quote.  0 when the quote never closes before ce. */
static int scan_quoted(const char *s, size_t i, size_t ce, size_t *end)
{
    char q = s[i];
    for (size_t j = i + 1; j < ce; j++) {
        if (s[j] == '\\' && j + 1 < ce && is_escapable(s[j + 1]))
            j++;
        else if (s[j] == q) {
            *end = j + 1;
            return 1;
        }
    }
    return 0;
}

static sk_status validate(parser *p);

/* A lexical error at off.  The tokens read so far are checked first: the
 * checks of a token depend only on the tokens before it, so an error
 * there is the leftmost one and is reported instead. */
static sk_status lex_fail(parser *p, size_t off, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_status lex_fail(parser *p, size_t off, const char *fmt, ...)
{
    sk_status rc = validate(p);
    if (rc != SK_OK)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    rc = vfail_at(p, off, fmt, ap);
    va_end(ap);
    return rc;
}

static sk_status push_tok(parser *p, const tok *t)
{
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 8;
        tok *nt = sk_realloc(p->toks, cap * sizeof *nt);
        if (!nt)
            return SK_NOMEM;
        p->toks = nt;
        p->cap_toks = cap;
    }
    p->toks[p->n_toks++] = *t;
    return SK_OK;
}

/* Splits the code s[cs, ce) (already trimmed, non-empty) into tokens.
 * Only lexical errors are raised here; validate() checks the rest. */
static sk_status tokenize(parser *p, size_t cs, size_t ce)
{
    const char *s = p->s;
    size_t i = cs;
    p->n_toks = 0;
    for (;;) {
        size_t ws = i;
        while (i < ce && is_sep(s[i]))
            i++;
        if (i >= ce)
            return SK_OK;
        /* Only a closing quote can end a token without a separator. */
        if (p->n_toks > 0 && i == ws)
            return lex_fail(p, i, "missing space after quoted value");
        tok t;
        memset(&t, 0, sizeof t);
        t.off = i;
        char c = s[i];
        if (c == '$') {
            size_t j = i + 1;
            while (j < ce && !is_sep(s[j]))
                j++;
            t.kind = T_VAR;
            t.name = i + 1;
            t.name_len = j - i - 1;
            i = j;
        } else if (is_quote(c)) {
            size_t end;
            if (!scan_quoted(s, i, ce, &end))
                return lex_fail(p, i, "unterminated quoted value");
            t.kind = T_VAL;
            t.val = i + 1;
            t.val_len = end - i - 2;
            i = end;
        } else {
            size_t j = i;
            while (j < ce && !is_sep(s[j]) && s[j] != '=')
                j++;
            /* "c = $d" is a named argument, but a leading "f = 'x'" is a
             * function name and then an argument without a name, as in
             * SK, where only later tokens may have spaces around '='. */
            size_t k = j;
            while (p->n_toks > 0 && k < ce && is_sep(s[k]))
                k++;
            if (k < ce && s[k] == '=') {
                t.kind = T_NAMED;
                t.name = i;
                t.name_len = j - i;
                k++;
                while (k < ce && is_sep(s[k]))
                    k++;
                if (k >= ce)
                    return lex_fail(p, i, "argument '%.*s' has no value "
                                   "after '='", snip(j - i), s + i);
                t.val_off = k;
                if (s[k] == '$') {
                    size_t e = k + 1;
                    while (e < ce && !is_sep(s[e]))
                        e++;
                    t.val_is_var = 1;
                    t.val = k + 1;
                    t.val_len = e - k - 1;
                    i = e;
                } else if (is_quote(s[k])) {
                    size_t end;
                    if (!scan_quoted(s, k, ce, &end))
                        return lex_fail(p, k, "unterminated quoted value");
                    t.val = k + 1;
                    t.val_len = end - k - 2;
                    i = end;
                } else {
                    return lex_fail(p, k, "the value of argument '%.*s' must "
                                   "be quoted or a $variable",
                                   snip(j - i), s + i);
                }
            } else {
                t.kind = T_ID;
                t.name = i;
                t.name_len = j - i;
                i = j;
            }
        }
        sk_status rc = push_tok(p, &t);
        if (rc != SK_OK)
            return rc;
    }
}

static sk_status check_var_name(parser *p, size_t at, size_t name, size_t n,
                                const char *what)
{
    char cb[5];
    if (n == 0)
        return fail_at(p, at, "%s name is empty", what);
    size_t bad = bad_name_char(p->s, name, n);
    if (bad < n)
        return fail_at(p, at, "invalid character '%s' in %s name '%.*s' "
                       "(letters, digits and _ only)",
                       show_char(p->s[name + bad], cb), what, snip(n),
                       p->s + name);
    return SK_OK;
}

static sk_status check_function_id(parser *p, const tok *t)
{
    const char *s = p->s;
    char cb[5];
    int dots = 0;
    for (size_t i = 0; i < t->name_len; i++) {
        char c = s[t->name + i];
        if (c == '.') {
            if (++dots > 1)
                return fail_at(p, t->off, "function name '%.*s' has more "
                               "than one '.'", snip(t->name_len),
                               s + t->name);
        } else if (!is_name_char(c)) {
            return fail_at(p, t->off, "invalid character '%s' in function "
                           "name '%.*s'", show_char(c, cb),
                           snip(t->name_len), s + t->name);
        }
    }
    return SK_OK;
}

/* Checks the tokens of one block in order, so the first error reported
 * is the leftmost one.  Token k's checks look only at tokens 0..k. */
static sk_status validate(parser *p)
{
    const char *s = p->s;
    const tok *t = p->toks;
    sk_status rc;
    int named_seen = 0;
    for (size_t k = 0; k < p->n_toks; k++) {
        const tok *c = &t[k];
        if (k > 0 && t[0].kind == T_VAR)
            return fail_at(p, c->off, "unexpected token after variable "
                           "$%.*s", snip(t[0].name_len), s + t[0].name);
        if (k > 0 && t[0].kind == T_VAL)
            return fail_at(p, c->off, "unexpected token after quoted value");
        switch (c->kind) {
        case T_VAR:
            if (k >= 2 && named_seen)
                return fail_at(p, c->off, "positional argument after named "
                               "arguments");
            if (k >= 2)
                return fail_at(p, c->off, "a function takes at most one "
                               "positional argument");
            rc = check_var_name(p, c->off, c->name, c->name_len, "variable");
            if (rc != SK_OK)
                return rc;
            break;
        case T_VAL:
            if (k >= 2 && named_seen)
                return fail_at(p, c->off, "positional argument after named "
                               "arguments");
            if (k >= 2)
                return fail_at(p, c->off, "a function takes at most one "
                               "positional argument");
            break;
        case T_ID:
            if (k > 0)
                return fail_at(p, c->off, "invalid argument '%.*s' (expected "
                               "'value', $variable or name=value)",
                               snip(c->name_len), s + c->name);
            rc = check_function_id(p, c);
            if (rc != SK_OK)
                return rc;
            break;
        case T_NAMED:
            if (k == 0)
                return fail_at(p, c->off, "named argument '%.*s' without a "
                               "function name", snip(c->name_len),
                               s + c->name);
            named_seen = 1;
            rc = check_var_name(p, c->off, c->name, c->name_len, "argument");
            if (rc == SK_OK && c->val_is_var)
                rc = check_var_name(p, c->val_off, c->val, c->val_len,
                                    "variable");
            if (rc != SK_OK)
                return rc;
            break;
        }
    }
    return SK_OK;
}

/* ---- building blocks ----------------------------------------------------- */

/* A copy of the quoted text s[off, off+n) with its escapes resolved.
 * Caller frees. */
static char *unescape(const char *s, size_t off, size_t n)
{
    char *d = sk_malloc(n + 1);
    if (!d)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[off + i];
        if (c == '\\' && i + 1 < n && is_escapable(s[off + i + 1]))
            c = s[off + ++i];
        d[o++] = c;
    }
    d[o] = '\0';
    return d;
}

static void block_clear(tpl_block *b)
{
    free(b->text);
    if (b->kind != TB_TEXT) /* a text block's src is its text's NUL */
        free(b->src);
    for (size_t i = 0; i < b->n_args; i++) {
        free(b->args[i].name);
        free(b->args[i].value);
    }
    free(b->args);
}

/* Appends b, taking ownership of its strings in every case. */
static sk_status push_block(parser *p, tpl_block *b)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        tpl_block *nb = sk_realloc(p->blocks, cap * sizeof *nb);
        if (!nb) {
            block_clear(b);
            return SK_NOMEM;
        }
        p->blocks = nb;
        p->cap = cap;
    }
    if (b->kind == TB_CALL)
        p->n_calls++;
    p->blocks[p->n++] = *b;
    return SK_OK;
}

static sk_status emit_text(parser *p, size_t from, size_t to)
{
    if (from >= to)
        return SK_OK;
    advance_to(p, from);
    tpl_block b;
    memset(&b, 0, sizeof b);
    b.kind = TB_TEXT;
    b.line = p->pos_line;
    b.col = p->pos_col;
    if (!(b.text = sk_strndup(p->s + from, to - from)))
        return SK_NOMEM;
    b.src = b.text + (to - from);
    return push_block(p, &b);
}

/* Builds the block for the validated tokens of s[bs, be). */
static sk_status emit_code(parser *p, size_t bs, size_t be)
{
    const char *s = p->s;
    const tok *t = p->toks;
    tpl_block b;
    memset(&b, 0, sizeof b);
    b.line = p->pos_line;
    b.col = p->pos_col;
    if (!(b.src = sk_strndup(s + bs, be - bs)))
        return SK_NOMEM;
    switch (t[0].kind) {
    case T_VAR:
        b.kind = TB_VAR;
        b.text = sk_strndup(s + t[0].name, t[0].name_len);
        break;
    case T_VAL:
        b.kind = TB_VAL;
        b.text = unescape(s, t[0].val, t[0].val_len);
        break;
    default: /* T_ID: validate() allows nothing else first */
        b.kind = TB_CALL;
        b.text = sk_strndup(s + t[0].name, t[0].name_len);
        if (b.text && p->n_toks > 1) {
            b.args = sk_calloc(p->n_toks - 1, sizeof *b.args);
            if (!b.args)
                goto nomem;
            for (size_t k = 1; k < p->n_toks; k++) {
                const tok *a = &t[k];
                tpl_arg *arg = &b.args[b.n_args++];
                if (a->kind == T_NAMED &&
                    !(arg->name = sk_strndup(s + a->name, a->name_len)))
                    goto nomem;
                if (a->kind == T_VAR) {
                    arg->is_var = 1;
                    arg->value = sk_strndup(s + a->name, a->name_len);
                } else if (a->kind == T_NAMED && a->val_is_var) {
                    arg->is_var = 1;
                    arg->value = sk_strndup(s + a->val, a->val_len);
                } else {
                    arg->value = unescape(s, a->val, a->val_len);
                }
                if (!arg->value)
                    goto nomem;
            }
        }
        break;
    }
    if (!b.text)
        goto nomem;
    return push_block(p, &b);
nomem:
    block_clear(&b);
    return SK_NOMEM;
}

/* One "{{...}}" found by the scanner at s[bs, be). */
static sk_status handle_block(parser *p, size_t bs, size_t be)
{
    size_t cs = bs + 2, ce = be - 2;
    while (cs < ce && is_trim(p->s[cs]))
        cs++;
    while (ce > cs && is_trim(p->s[ce - 1]))
        ce--;
    advance_to(p, bs);
    sk_status rc = tokenize(p, cs, ce);
    if (rc == SK_OK)
        rc = validate(p);
    if (rc == SK_OK)
        rc = emit_code(p, bs, be);
    return rc;
}

/* ---- the API ------------------------------------------------------------- */

void tpl_free(sk_template *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        block_clear(&t->blocks[i]);
    free(t->blocks);
    free(t->origin);
    free(t);
}

/* text is borrowed (len bytes, need not be NUL-terminated); on SK_OK *out
 * is a new template the caller frees with tpl_free.  errmsg may be NULL;
 * otherwise *errmsg is a message the caller frees on SK_TEMPLATE and
 * SK_TOO_LARGE, NULL for SK_OK and SK_NOMEM. */
sk_status tpl_parse(const char *text, size_t len, const char *origin,
                    sk_template **out, char **errmsg)
{
    return tpl_parse_at(text, len, origin, NULL, out, errmsg);
}

sk_status tpl_parse_at(const char *text, size_t len, const char *origin,
                       const tpl_pos *at, sk_template **out, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return SK_USAGE;
    *out = NULL;
    if (!text && len)
        return SK_USAGE;
    if (!origin)
        origin = "<template>";
    if (len > TPL_MAX_BYTES) {
        if (errmsg)
            *errmsg = sk_asprintf("%s: template is %zu bytes, over the "
                                  "16 MiB limit", origin, len);
        return SK_TOO_LARGE;
    }

    parser p;
    memset(&p, 0, sizeof p);
    p.s = text;
    p.len = len;
    p.origin = origin;
    p.pos_line = at && at->line > 0 ? at->line : 1;
    p.pos_col = at && at->col > 0 ? at->col : 1;
    p.indent = at && at->indent > 0 ? at->indent : 0;
    sk_status rc = SK_OK;

    /* Blocks are NUL-terminated strings, so a NUL byte cannot survive. */
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    if (nul) {
        rc = fail_at(&p, (size_t)(nul - text), "NUL byte in template");
        goto done;
    }

    size_t text_start = 0, bstart = 0;
    int in_block = 0, in_quote = 0;
    char delim = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        char c = text[i], nx = text[i + 1];
        if (!in_quote && c == '{' && nx == '{') {
            bstart = i; /* "{{ {{x}}": the later opener wins */
            in_block = 1;
        }
        if (!in_block)
            continue;
        if (in_quote) {
            if (c == '\\' && is_escapable(nx))
                i++;
            else if (c == delim)
                in_quote = 0;
        } else if (is_quote(c)) {
            in_quote = 1;
            delim = c;
        } else if (c == '}' && nx == '}') {
            size_t bend = i + 2;
            in_block = 0;
            i++;
            size_t cs = bstart + 2;
            while (cs < bend - 2 && is_trim(text[cs]))
                cs++;
            if (cs == bend - 2)
                continue; /* "{{ }}" stays text, merged with its neighbours */
            if ((rc = emit_text(&p, text_start, bstart)) != SK_OK)
                goto done;
            if ((rc = handle_block(&p, bstart, bend)) != SK_OK)
                goto done;
            text_start = bend;
        }
    }
    if ((rc = emit_text(&p, text_start, len)) != SK_OK)
        goto done;

    sk_template *t = sk_calloc(1, sizeof *t);
    if (!t || !(t->origin = sk_strdup(origin))) {
        free(t);
        rc = SK_NOMEM;
        goto done;
    }
    t->blocks = p.blocks;
    t->indent = p.indent;
    t->n = p.n;
    t->n_calls = p.n_calls;
    for (size_t i = 0; i < t->n && !t->chat; i++)
        t->chat = t->blocks[i].kind == TB_TEXT && chat_marked(t->blocks[i].text);
    p.blocks = NULL;
    p.n = 0;
    *out = t;

done:
    for (size_t i = 0; i < p.n; i++)
        block_clear(&p.blocks[i]);
    free(p.blocks);
    free(p.toks);
    if (rc == SK_TEMPLATE && errmsg)
        *errmsg = p.errmsg;
    else
        free(p.errmsg);
    return rc;
}

/* Borrowed from t; NULL past the end. */
const tpl_block *tpl_call_at(const sk_template *t, size_t i)
{
    if (!t || i >= t->n_calls)
        return NULL;
    for (size_t k = 0; k < t->n; k++) {
        if (t->blocks[k].kind == TB_CALL && i-- == 0)
            return &t->blocks[k];
    }
    return NULL;
}

/* Appends to out (borrowed; keeps what was appended before a failure).
 * vars and outputs are borrowed and may be NULL. */
/* Whether variable name is trusted as written (its input variable says
 * allow_dangerously_set_content). */
static int var_raw(const tpl_safety *sf, const char *name)
{
    const cfg_function *c = sf->cfg;
    for (size_t i = 0; c && i < c->n_params; i++)
        if (strcasecmp(c->params[i].name, name) == 0)
            return c->params[i].allow_unsafe;
    return 0;
}

sk_status tpl_assemble(const sk_template *t, const sk_vars *vars,
                       char *const *outputs, const tpl_safety *sf, sk_buf *out)
{
    if (!t || !out)
        return SK_USAGE;
    size_t call = 0;
    for (size_t i = 0; i < t->n; i++) {
        const tpl_block *b = &t->blocks[i];
        const char *piece = NULL;
        int encode = 0;
        switch (b->kind) {
        case TB_TEXT:
        case TB_VAL:
            piece = b->text; /* the author's own text */
            break;
        case TB_VAR:
            piece = sk_vars_get(vars, b->text);
            encode = sf && sf->encode && !var_raw(sf, b->text);
            break;
        case TB_CALL:
            piece = outputs ? outputs[call] : NULL;
            encode = sf && sf->encode && !sf->raw_outputs && piece;
            if (!piece)
                piece = b->src;
            call++;
            break;
        }
        if (sf && sf->starts)
            sf->starts[i] = out->len;
        if (piece && *piece) {
            sk_status rc = encode ? chat_encode(out, piece) : buf_adds(out, piece);
            if (rc != SK_OK)
                return rc;
        }
    }
    return SK_OK;
}

void tpl_locate(const sk_template *t, const char *out, const size_t *starts,
                size_t off, int *line, int *col, const tpl_block **block)
{
    *line = *col = 1;
    *block = NULL;
    size_t i = 0;
    for (size_t j = 0; j < t->n; j++)
        if (starts[j] <= off)
            i = j;
    if (!t->n)
        return;
    const tpl_block *b = &t->blocks[i];
    *block = b;
    *line = b->line;
    *col = b->col;
    if (b->kind != TB_TEXT)
        return; /* inside inserted text: the block's own position */
    for (size_t p = starts[i]; p < off; p++) {
        if (out[p] == '\n') {
            (*line)++;
            *col = t->indent + 1;
        } else {
            (*col)++;
        }
    }
}
