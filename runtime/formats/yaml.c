/*
 * yaml.c -- Semantic Kernel's YAML prompt functions.
 *
 * The format SK .NET reads with KernelFunctionYaml and SK Python with
 * KernelFunctionFromPrompt.from_yaml: one mapping per file holding
 * PromptTemplateConfig's keys -- name, description, template,
 * template_format, input_variables, output_variable, execution_settings
 * (keyed by service id, "default" among them) and
 * allow_dangerously_set_content.
 *
 * libyaml parses the file into a document.  Everything but the template
 * is written out as config.json text, so that one reader (config.c)
 * checks the settings of both formats, with a map from each value's
 * offset in that text to its line and column in the YAML, so that its
 * errors point into the file the user wrote.  The template is handed back
 * with its position.
 *
 * Plain scalars are typed as YAML 1.2's core schema types them (null,
 * true/false, integers and floats; YamlDotNet, which SK .NET uses, does
 * the same): quoted and block scalars are always text, and so is an input
 * variable's default, which SK requires to be a string and keeps as
 * written ("1.50" stays "1.50").
 *
 * Ceilings: the file (16 MiB, for the template), the settings written out
 * (1 MiB, as config.json), nesting (64 levels, which also stops an alias
 * that contains itself) and values visited (aliases expand; 100000).
 * Ownership: the static helpers borrow their arguments; what they build
 * hangs off the context and is freed in one place.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "formats/formats.h"

#define YML_MAX_BYTES ((size_t)16 << 20)
#define YML_MAX_CONFIG ((size_t)1 << 20)
#define YML_MAX_DEPTH 64
#define YML_MAX_VISITS 100000

/* What a value is, from where it sits: the object of input_variables, one
 * of its entries, a value kept as text (a default), or anything else. */
enum { AT_ANY, AT_INPUT_VARS, AT_INPUT_VAR, AT_TEXT };

typedef struct ycx {
    yaml_document_t *doc;
    const char *origin;
    sk_buf out;        /* the config text */
    cfg_srcpos *pos;
    size_t n_pos, cap_pos;
    size_t visits;
    char **errmsg;
} ycx;

/* ---- errors ------------------------------------------------------------ */

static sk_status fail_at(ycx *c, sk_status code, int line, int col,
                         const char *fmt, ...) SK_PRINTF(5, 6);
static sk_status fail_at(ycx *c, sk_status code, int line, int col,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sk_vasprintf(fmt, ap);
    va_end(ap);
    if (!msg)
        return SK_NOMEM;
    *c->errmsg = sk_asprintf("%s:%d:%d: %s", c->origin, line, col, msg);
    free(msg);
    return *c->errmsg ? code : SK_NOMEM;
}

/* An error at node n (libyaml's marks are 0-based); fmt takes one %s. */
static sk_status fail_node_code(ycx *c, sk_status code, const yaml_node_t *n,
                                const char *fmt, const char *arg)
{
    char *msg = sk_asprintf(fmt, arg);
    if (!msg)
        return SK_NOMEM;
    sk_status rc = fail_at(c, code, (int)n->start_mark.line + 1,
                           (int)n->start_mark.column + 1, "%s", msg);
    free(msg);
    return rc;
}

static sk_status fail_node(ycx *c, const yaml_node_t *n, const char *fmt,
                           const char *arg)
{
    return fail_node_code(c, SK_CONFIG, n, fmt, arg);
}

/* The parser's own error, at its mark. */
static sk_status parser_error(ycx *c, const yaml_parser_t *p, const char *text,
                              size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return SK_NOMEM;
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) { /* an offset, not a mark */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        sk_line_col(text, off, &line, &col);
        return fail_at(c, SK_CONFIG, line, col, "%s",
                       p->problem ? p->problem : "invalid text");
    }
    if (p->context)
        return fail_at(c, SK_CONFIG, line, col, "%s (%s at %d:%d)",
                       p->problem ? p->problem : "invalid YAML", p->context,
                       (int)p->context_mark.line + 1,
                       (int)p->context_mark.column + 1);
    return fail_at(c, SK_CONFIG, line, col, "%s",
                   p->problem ? p->problem : "invalid YAML");
}

/* ---- writing the config text ------------------------------------------- */

/* Records that the value written next starts at node's position. */
static sk_status mark(ycx *c, const yaml_node_t *n)
{
    if (c->n_pos == c->cap_pos) {
        size_t cap = c->cap_pos ? c->cap_pos * 2 : 32;
        cfg_srcpos *grown = sk_realloc(c->pos, cap * sizeof *grown);
        if (!grown)
            return SK_NOMEM;
        c->pos = grown;
        c->cap_pos = cap;
    }
    c->pos[c->n_pos++] = (cfg_srcpos){c->out.len, (int)n->start_mark.line + 1,
                                      (int)n->start_mark.column + 1};
    return SK_OK;
}

static sk_status put_string(ycx *c, const char *s, size_t n)
{
    return buf_add_json_str(&c->out, s, n);
}

static int is_word(const char *s, size_t n, const char *const *words)
{
    for (size_t i = 0; words[i]; i++)
        if (strlen(words[i]) == n && memcmp(s, words[i], n) == 0)
            return 1;
    return 0;
}

static int all_of(const char *s, size_t n, const char *set)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]))
            return 0;
    return 1;
}

/* YAML 1.2's core-schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (!digits)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = ++i;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++, e++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e)
            return 0;
    }
    return i == n;
}

/* A plain scalar typed by the core schema: null, a boolean, a number, or
 * text. */
static sk_status put_plain(ycx *c, const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (is_word(s, n, nulls))
        return buf_adds(&c->out, "null");
    if (is_word(s, n, trues))
        return buf_adds(&c->out, "true");
    if (is_word(s, n, falses))
        return buf_adds(&c->out, "false");
    if (n > 2 && n < 40 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        int hex = s[1] == 'x';
        if (all_of(s + 2, n - 2, hex ? "0123456789abcdefABCDEF" : "01234567")) {
            char tmp[48];
            memcpy(tmp, s + 2, n - 2);
            tmp[n - 2] = '\0';
            double d = (double)strtoull(tmp, NULL, hex ? 16 : 8);
            return buf_printf(&c->out, "%.17g", d);
        }
    }
    if (n < 64 && is_float(s, n)) {
        char tmp[64];
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        errno = 0;
        double d = strtod(tmp, NULL);
        if (isfinite(d) && errno == 0) {
            if (d == floor(d) && fabs(d) < 9007199254740992.0)
                return buf_printf(&c->out, "%.0f", d);
            return buf_printf(&c->out, "%.17g", d);
        }
    }
    return put_string(c, s, n);
}

typedef struct keyref {
    const yaml_node_t *node;
} keyref;

static int by_key(const void *a, const void *b)
{
    const yaml_node_t *x = ((const keyref *)a)->node, *y = ((const keyref *)b)->node;
    size_t nx = x->data.scalar.length, ny = y->data.scalar.length;
    int d = memcmp(x->data.scalar.value, y->data.scalar.value, nx < ny ? nx : ny);
    if (d)
        return d;
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return x->start_mark.index < y->start_mark.index ? -1 : 1;
}

/* Every key of a mapping is a scalar, and none comes twice (YamlDotNet
 * refuses a repeated key; the JSON it would become keeps only one). */
static sk_status check_keys(ycx *c, const yaml_node_t *map)
{
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (n < 2) {
        if (n == 1) {
            const yaml_node_t *k = yaml_document_get_node(
                c->doc, map->data.mapping.pairs.start[0].key);
            if (k && k->type != YAML_SCALAR_NODE)
                return fail_node(c, k, "%s", "a key must be a plain value");
        }
        return SK_OK;
    }
    keyref *keys = sk_calloc(n, sizeof *keys);
    if (!keys)
        return SK_NOMEM;
    sk_status rc = SK_OK;
    for (size_t i = 0; i < n; i++) {
        keys[i].node = yaml_document_get_node(c->doc, map->data.mapping.pairs.start[i].key);
        if (!keys[i].node || keys[i].node->type != YAML_SCALAR_NODE) {
            rc = keys[i].node ? fail_node(c, keys[i].node, "%s", "a key must be a plain value")
                              : SK_CONFIG;
            free(keys);
            return rc;
        }
    }
    qsort(keys, n, sizeof *keys, by_key);
    const yaml_node_t *dup = NULL;
    for (size_t i = 1; i < n; i++) {
        const yaml_node_t *a = keys[i - 1].node, *b = keys[i].node;
        if (a->data.scalar.length == b->data.scalar.length &&
            memcmp(a->data.scalar.value, b->data.scalar.value, a->data.scalar.length) == 0 &&
            (!dup || b->start_mark.index < dup->start_mark.index))
            dup = b;
    }
    if (dup) {
        char *name = sk_strndup((const char *)dup->data.scalar.value,
                                dup->data.scalar.length < 64 ? dup->data.scalar.length : 64);
        rc = name ? fail_node(c, dup, "duplicate key '%s'", name) : SK_NOMEM;
        free(name);
    }
    free(keys);
    return rc;
}

static int key_is(const yaml_node_t *k, const char *word)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(word) &&
           memcmp(k->data.scalar.value, word, k->data.scalar.length) == 0;
}

/* Writes node n as JSON.  at says what the value is (AT_*). */
static sk_status put_node(ycx *c, const yaml_node_t *n, int depth, int at)
{
    if (depth > YML_MAX_DEPTH)
        return fail_node(c, n, "nested deeper than %s levels (or an alias "
                               "that contains itself)", "64");
    if (++c->visits > YML_MAX_VISITS)
        return fail_node(c, n, "more than %s values (aliases expand where "
                               "they are used)", "100000");
    if (c->out.len > YML_MAX_CONFIG)
        return fail_node_code(c, SK_TOO_LARGE, n,
                              "the settings are larger than %s bytes", "1048576");
    sk_status rc = mark(c, n);
    if (rc != SK_OK)
        return rc;
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)n->data.scalar.value;
        size_t len = n->data.scalar.length;
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && at != AT_TEXT)
            return put_plain(c, s, len);
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && at == AT_TEXT &&
            is_word(s, len, (const char *const[]){"", "~", "null", "Null", "NULL", NULL}))
            return buf_adds(&c->out, "null");
        return put_string(c, s, len);
    }
    case YAML_SEQUENCE_NODE: {
        rc = buf_addc(&c->out, '[');
        int i = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             rc == SK_OK && it < n->data.sequence.items.top; it++, i++) {
            const yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            if (!item)
                return fail_node(c, n, "%s", "a broken sequence");
            if (i)
                rc = buf_addc(&c->out, ',');
            if (rc == SK_OK)
                rc = put_node(c, item, depth + 1,
                              at == AT_INPUT_VARS ? AT_INPUT_VAR : AT_ANY);
        }
        return rc == SK_OK ? buf_addc(&c->out, ']') : rc;
    }
    case YAML_MAPPING_NODE: {
        if ((rc = check_keys(c, n)) != SK_OK)
            return rc;
        rc = buf_addc(&c->out, '{');
        int i = 0;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             rc == SK_OK && p < n->data.mapping.pairs.top; p++, i++) {
            const yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            const yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
            if (!k || !v)
                return fail_node(c, n, "%s", "a broken mapping");
            if (i)
                rc = buf_addc(&c->out, ',');
            if (rc == SK_OK)
                rc = put_string(c, (const char *)k->data.scalar.value, k->data.scalar.length);
            if (rc == SK_OK)
                rc = buf_addc(&c->out, ':');
            int child = AT_ANY;
            if (at == AT_INPUT_VAR && key_is(k, "default"))
                child = AT_TEXT;
            if (rc == SK_OK)
                rc = put_node(c, v, depth + 1, child);
        }
        return rc == SK_OK ? buf_addc(&c->out, '}') : rc;
    }
    default:
        return fail_node(c, n, "%s", "an empty node");
    }
}

/* ---- the template's position -------------------------------------------- */

/* Byte offset of the start of 0-based line `line` in text (\n, \r\n and
 * \r end lines, as in YAML). */
static size_t line_start(const char *text, size_t len, size_t line)
{
    size_t off = 0;
    for (size_t l = 0; l < line && off < len; off++) {
        if (text[off] == '\n' || (text[off] == '\r' && (off + 1 >= len || text[off + 1] != '\n')))
            l++;
    }
    return off;
}

/* Where the template's text starts in the file and the indentation of
 * its later lines.  Exact for a literal block (|) and a one-line value;
 * a folded (>) or multi-line quoted value joins lines, so positions past
 * its first line are near, not exact. */
static tpl_pos template_pos(const char *text, size_t len, const yaml_node_t *n)
{
    tpl_pos at = {(int)n->start_mark.line + 1, (int)n->start_mark.column + 1,
                  (int)n->start_mark.column};
    yaml_scalar_style_t style = n->data.scalar.style;
    if (style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
        at.col++;
    if (style != YAML_LITERAL_SCALAR_STYLE && style != YAML_FOLDED_SCALAR_STYLE)
        return at;
    /* a block: its text starts on the line after the indicator; find the
     * first line with text to learn the indentation the block strips */
    const char *v = (const char *)n->data.scalar.value;
    size_t vlen = n->data.scalar.length, i = 0, vline = 0;
    while (i < vlen && v[i] == '\n')
        i++, vline++;
    size_t lead = 0;
    while (i + lead < vlen && v[i + lead] == ' ')
        lead++;
    size_t src = line_start(text, len, n->start_mark.line + 1 + vline);
    size_t spaces = 0;
    while (src + spaces < len && text[src + spaces] == ' ')
        spaces++;
    int indent = spaces >= lead ? (int)(spaces - lead) : 0;
    at.line = (int)n->start_mark.line + 2;
    at.indent = indent;
    at.col = vline ? 1 : indent + 1;
    return at;
}

/* ---- the file ----------------------------------------------------------- */

static sk_status read_root(ycx *c, const char *text, size_t len,
                           const yaml_node_t *root, yml_prompt *y)
{
    if (root->type != YAML_MAPPING_NODE)
        return fail_node(c, root, "%s",
                         "a YAML prompt function is a mapping of keys "
                         "(name, template, execution_settings, ...)");
    sk_status rc = check_keys(c, root);
    if (rc != SK_OK)
        return rc;
    const yaml_node_t *tpl = NULL;
    rc = mark(c, root);
    if (rc == SK_OK)
        rc = buf_addc(&c->out, '{');
    int i = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         rc == SK_OK && p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v)
            return fail_node(c, root, "%s", "a broken mapping");
        if (key_is(k, "template")) {
            if (v->type != YAML_SCALAR_NODE)
                return fail_node(c, v, "%s", "'template' must be text");
            tpl = v;
            continue; /* the template is not a setting */
        }
        if (key_is(k, "name") && v->type == YAML_SCALAR_NODE) {
            y->name_line = (int)v->start_mark.line + 1;
            y->name_col = (int)v->start_mark.column + 1;
            y->name = sk_strndup((const char *)v->data.scalar.value, v->data.scalar.length);
            if (!y->name)
                return SK_NOMEM;
        }
        if (i++)
            rc = buf_addc(&c->out, ',');
        if (rc == SK_OK)
            rc = put_string(c, (const char *)k->data.scalar.value, k->data.scalar.length);
        if (rc == SK_OK)
            rc = buf_addc(&c->out, ':');
        if (rc == SK_OK)
            rc = put_node(c, v, 1, key_is(k, "input_variables") ? AT_INPUT_VARS : AT_ANY);
    }
    if (rc == SK_OK)
        rc = buf_addc(&c->out, '}');
    if (rc == SK_TOO_LARGE && !*c->errmsg)
        return fail_node_code(c, SK_TOO_LARGE, root,
                              "the settings are larger than %s bytes", "1048576");
    if (rc != SK_OK)
        return rc;
    if (!tpl || (tpl->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                 is_word((const char *)tpl->data.scalar.value, tpl->data.scalar.length,
                         (const char *const[]){"", "~", "null", "Null", "NULL", NULL})))
        return fail_node(c, tpl ? tpl : root, "%s",
                         "no 'template': a YAML prompt function needs its prompt "
                         "text under 'template'");
    y->tpl = sk_strndup((const char *)tpl->data.scalar.value, tpl->data.scalar.length);
    if (!y->tpl)
        return SK_NOMEM;
    y->tpl_len = tpl->data.scalar.length;
    y->tpl_at = template_pos(text, len, tpl);
    return SK_OK;
}

sk_status yml_prompt_parse(const char *text, size_t len, const char *origin,
                           yml_prompt **out, char **errmsg)
{
    char *ignored = NULL;
    if (!errmsg)
        errmsg = &ignored;
    *errmsg = NULL;
    if (!out)
        return SK_USAGE;
    *out = NULL;
    if (!text && len)
        return SK_USAGE;
    ycx c = {.origin = origin ? origin : "prompt.yaml", .errmsg = errmsg};
    /* a UTF-8 byte order mark (SK's .NET samples have one) is not text;
     * without it libyaml's marks count from the first line's first byte */
    if (text && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    if (len > YML_MAX_BYTES) {
        sk_status rc = fail_at(&c, SK_TOO_LARGE, 1, 1, "larger than %zu bytes",
                               YML_MAX_BYTES);
        free(ignored);
        return rc;
    }
    yml_prompt *y = sk_calloc(1, sizeof *y);
    if (!y)
        return SK_NOMEM;
    buf_init(&c.out, YML_MAX_CONFIG + 64 * 1024);
    yaml_parser_t parser;
    yaml_document_t doc, next;
    int have_doc = 0;
    sk_status rc = SK_OK;
    if (!yaml_parser_initialize(&parser)) {
        free(y);
        return SK_NOMEM;
    }
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = parser_error(&c, &parser, text, len);
        goto done;
    }
    have_doc = 1;
    c.doc = &doc;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = fail_at(&c, SK_CONFIG, 1, 1, "empty document: a YAML prompt "
                                          "function needs at least 'template'");
        goto done;
    }
    if (!yaml_parser_load(&parser, &next)) {
        rc = parser_error(&c, &parser, text, len);
        goto done;
    }
    const yaml_node_t *second = yaml_document_get_root_node(&next);
    if (second) {
        rc = fail_at(&c, SK_CONFIG, (int)second->start_mark.line + 1,
                     (int)second->start_mark.column + 1,
                     "a second YAML document: a file holds one prompt function");
        yaml_document_delete(&next);
        goto done;
    }
    yaml_document_delete(&next);
    rc = read_root(&c, text, len, root, y);
    if (rc == SK_OK) {
        y->config_len = c.out.len;
        y->config = buf_steal(&c.out);
        y->pos = c.pos;
        y->n_pos = c.n_pos;
        c.pos = NULL;
        if (!y->config)
            rc = SK_NOMEM;
    }
done:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    buf_free(&c.out);
    free(c.pos);
    if (rc != SK_OK) {
        yml_prompt_free(y);
        if (rc == SK_NOMEM) {
            free(*errmsg);
            *errmsg = NULL;
        }
        free(ignored);
        return rc;
    }
    *out = y;
    return SK_OK;
}

void yml_prompt_free(yml_prompt *y)
{
    if (!y)
        return;
    free(y->name);
    free(y->tpl);
    free(y->config);
    free(y->pos);
    free(y);
}
