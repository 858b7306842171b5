/*
 * config.c -- Semantic Kernel's config.json, both schemas.
 *
 * The classic schema ("completion", "input.parameters", "default_services")
 * and the 1.x schema ("execution_settings", "input_variables") are read
 * into one cfg_function.  SK reads these files permissively (trailing
 * commas, comments, case-insensitive keys, numbers written as strings) and
 * its own samples depend on that, so we do too: a first pass blanks out
 * comments and trailing commas in a copy of the text, keeping every byte at
 * its offset, so that positions found in the copy are positions in the
 * file.  cJSON then parses the copy.
 *
 * Unknown keys are ignored (the whole text is kept in `raw`); a known key
 * holding the wrong kind of value is an error that points at the value.
 *
 * Ownership: the static helpers below borrow their text and cJSON
 * arguments; whatever they allocate is attached to the cfg_function being
 * built at once, so cfg_free releases it whether or not the parse ends
 * well.  Positions are 1-based lines and byte columns.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "formats/formats.h"

#define CFG_MAX_BYTES ((size_t)1 << 20)
#define CFG_MAX_DEPTH 64
#define CFG_MAX_PATH 6 /* deepest key path we ever report on */

/* One step of the path from the root to the value being checked: an
 * object key (borrowed) or, when key is NULL, an array index. */
typedef struct seg {
    const char *key;
    int index;
} seg;

typedef struct pctx {
    const char *text; /* the normalised copy; offsets match the file */
    size_t len;
    const char *origin;
    const cfg_srcmap *map; /* the text was made from another file, or NULL */
    seg path[CFG_MAX_PATH];
    int depth;
    char **errmsg;
} pctx;

/* ---- positions --------------------------------------------------------- */

static void line_col(const char *t, size_t len, size_t off, int *line,
                     int *col)
{
    int l = 1;
    size_t start = 0;
    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++)
        if (t[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = (int)(off - start) + 1;
}

static size_t skip_ws(const char *t, size_t len, size_t p)
{
    while (p < len && (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' ||
                       t[p] == '\r'))
        p++;
    return p;
}

/* Returns the offset just past the string starting at t[p] == '"'. */
static size_t skip_string(const char *t, size_t len, size_t p)
{
    for (p++; p < len; p++) {
        if (t[p] == '\\')
            p++;
        else if (t[p] == '"')
            return p + 1;
    }
    return len;
}

/* Returns the offset just past the value starting at p.  Safe on any
 * text: it never reads past len, whatever the bytes. */
static size_t skip_value(const char *t, size_t len, size_t p)
{
    if (p >= len)
        return len;
    if (t[p] == '"')
        return skip_string(t, len, p);
    if (t[p] == '{' || t[p] == '[') {
        int depth = 0;
        while (p < len) {
            char ch = t[p];
            if (ch == '"') {
                p = skip_string(t, len, p);
                continue;
            }
            if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return len;
    }
    while (p < len && !strchr(",]} \t\r\n", t[p]))
        p++;
    return p;
}

/* Finds the offset of the value at path in the text.  Keys compare
 * case-insensitively, first match, as cJSON_GetObjectItem does.  When a
 * step cannot be followed (a key written with escapes, say) the deepest
 * value found is returned: close enough, and always a real line. */
static size_t locate(const char *t, size_t len, const seg *path, int n)
{
    size_t p = skip_ws(t, len, 0);
    for (int i = 0; i < n && p < len; i++) {
        size_t q = p;
        int found = 0;
        if (path[i].key) {
            if (t[q] != '{')
                return p;
            q = skip_ws(t, len, q + 1);
            size_t klen = strlen(path[i].key);
            while (q < len && t[q] == '"') {
                size_t ks = q + 1, ke = skip_string(t, len, q);
                int match = ke >= ks + 1 && ke - 1 - ks == klen &&
                            strncasecmp(t + ks, path[i].key, klen) == 0;
                q = skip_ws(t, len, ke);
                if (q >= len || t[q] != ':')
                    return p;
                q = skip_ws(t, len, q + 1);
                if (match) {
                    found = 1;
                    break;
                }
                q = skip_ws(t, len, skip_value(t, len, q));
                if (q >= len || t[q] != ',')
                    return p;
                q = skip_ws(t, len, q + 1);
            }
        } else {
            if (t[q] != '[')
                return p;
            q = skip_ws(t, len, q + 1);
            for (int k = 0; q < len && t[q] != ']'; k++) {
                if (k == path[i].index) {
                    found = 1;
                    break;
                }
                q = skip_ws(t, len, skip_value(t, len, q));
                if (q >= len || t[q] != ',')
                    return p;
                q = skip_ws(t, len, q + 1);
            }
        }
        if (!found)
            return p;
        p = q;
    }
    return p;
}

/* Sets *errmsg to "origin:line:col: message" for offset off.  Returns
 * code, or SK_NOMEM (with *errmsg NULL) if the message cannot be made. */
static sk_status fail_off(pctx *x, sk_status code, size_t off,
                          const char *fmt, va_list ap)
{
    int line, col;
    if (x->map && x->map->n) {
        /* the last recorded value at or before off: the file's position */
        size_t lo = 0, hi = x->map->n;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (x->map->pos[mid].off <= off)
                lo = mid;
            else
                hi = mid;
        }
        line = x->map->pos[lo].line;
        col = x->map->pos[lo].col;
    } else {
        line_col(x->text, x->len, off, &line, &col);
    }
    char *msg = sk_vasprintf(fmt, ap);
    if (!msg)
        return SK_NOMEM;
    *x->errmsg = sk_asprintf("%s:%d:%d: %s", x->origin, line, col, msg);
    free(msg);
    return *x->errmsg ? code : SK_NOMEM;
}

static sk_status failo(pctx *x, sk_status code, size_t off, const char *fmt,
                       ...) SK_PRINTF(4, 5);
static sk_status failo(pctx *x, sk_status code, size_t off, const char *fmt,
                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_status rc = fail_off(x, code, off, fmt, ap);
    va_end(ap);
    return rc;
}

/* An SK_CONFIG error at the value of `key` (NULL: at the current path). */
static sk_status fail(pctx *x, const char *key, const char *fmt, ...)
    SK_PRINTF(3, 4);
static sk_status fail(pctx *x, const char *key, const char *fmt, ...)
{
    seg path[CFG_MAX_PATH + 1];
    int n = x->depth < CFG_MAX_PATH ? x->depth : CFG_MAX_PATH;
    memcpy(path, x->path, (size_t)n * sizeof *path);
    if (key)
        path[n++] = (seg){key, 0};
    size_t off = locate(x->text, x->len, path, n);
    va_list ap;
    va_start(ap, fmt);
    sk_status rc = fail_off(x, SK_CONFIG, off, fmt, ap);
    va_end(ap);
    return rc;
}

static void push_key(pctx *x, const char *key)
{
    if (x->depth < CFG_MAX_PATH)
        x->path[x->depth] = (seg){key, 0};
    x->depth++;
}

static void push_index(pctx *x, int i)
{
    if (x->depth < CFG_MAX_PATH)
        x->path[x->depth] = (seg){NULL, i};
    x->depth++;
}

static void pop(pctx *x) { x->depth--; }

/* ---- permissive pre-pass ----------------------------------------------- */

/* Blanks comments and trailing commas in t (in place, offsets kept) and
 * checks the nesting depth.  A comma counts as trailing only after a
 * value, so "[,]" still fails in the parser as it should.  Shared with
 * policy.c, which reads the same files. */
sk_status cfg_relax(char *t, size_t len, int max_depth, size_t *err_off)
{
    int depth = 0;
    size_t pending = (size_t)-1; /* offset of a comma that may trail */
    char last = 0;               /* last significant byte */
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        if (ch == '"') {
            size_t end = skip_string(t, len, i);
            pending = (size_t)-1;
            last = '"';
            i = end - 1;
            continue;
        }
        if (ch == '/' && i + 1 < len && t[i + 1] == '/') {
            while (i < len && t[i] != '\n')
                t[i++] = ' ';
            continue;
        }
        if (ch == '/' && i + 1 < len && t[i + 1] == '*') {
            size_t j = i + 2;
            while (j + 1 < len && !(t[j] == '*' && t[j + 1] == '/'))
                j++;
            if (j + 1 >= len) {
                *err_off = i;
                return SK_CONFIG;
            }
            for (size_t k = i; k <= j + 1; k++)
                if (t[k] != '\n')
                    t[k] = ' ';
            i = j + 1;
            continue;
        }
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
            continue;
        if ((ch == '}' || ch == ']') && pending != (size_t)-1)
            t[pending] = ' ';
        pending = (size_t)-1;
        if (ch == '{' || ch == '[') {
            if (++depth > max_depth) {
                *err_off = i;
                return SK_TOO_LARGE;
            }
        } else if (ch == '}' || ch == ']') {
            depth--;
        } else if (ch == ',' && last && !strchr("{[,:", last)) {
            pending = i;
        }
        last = ch;
    }
    return SK_OK;
}

static sk_status normalise(pctx *x, char *t, size_t len)
{
    size_t off = 0;
    sk_status rc = cfg_relax(t, len, CFG_MAX_DEPTH, &off);
    if (rc == SK_CONFIG)
        return failo(x, SK_CONFIG, off, "unterminated comment");
    if (rc == SK_TOO_LARGE)
        return failo(x, SK_TOO_LARGE, off, "nested deeper than %d levels",
                     CFG_MAX_DEPTH);
    return SK_OK;
}

/* ---- value readers ------------------------------------------------------
 * Each reads obj[key] (case-insensitive).  A missing key or JSON null
 * leaves the output untouched. */

static int is_unset(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Copies a string value into *out, freeing what *out held. */
static sk_status get_string(pctx *x, const cJSON *obj, const char *key,
                            char **out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    if (!cJSON_IsString(v))
        return fail(x, key, "'%s' must be a string", key);
    char *s = sk_strdup(v->valuestring);
    if (!s)
        return SK_NOMEM;
    free(*out);
    *out = s;
    return SK_OK;
}

/* SK accepts numbers written as strings ("0.5"); the whole string must
 * be the number.  Shared with policy.c. */
char *cfg_json_take(cJSON *j)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    char *copy = s ? sk_strdup(s) : NULL;
    cJSON_free(s);
    return copy;
}

int cfg_number(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return isfinite(*out);
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        char *end;
        if (!*s || isspace((unsigned char)*s))
            return 0;
        errno = 0;
        *out = strtod(s, &end);
        return *end == '\0' && errno == 0 && isfinite(*out);
    }
    return 0;
}

static sk_status get_double(pctx *x, const cJSON *obj, const char *key,
                            double lo, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d))
        return fail(x, key, "'%s' must be a number", key);
    if (d < lo || d > hi)
        return fail(x, key, "'%s' must be between %g and %g", key, lo, hi);
    *out = d;
    return SK_OK;
}

static sk_status get_count(pctx *x, const cJSON *obj, const char *key,
                           int min, int *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d) || d != floor(d) || d < min || d > INT_MAX)
        return fail(x, key, "'%s' must be an integer of at least %d", key,
                    min);
    *out = (int)d;
    return SK_OK;
}

/* true/false, or the strings "true"/"false" in any case, as SK's samples
 * write ("required": "True"). */
static sk_status get_bool(pctx *x, const cJSON *obj, const char *key,
                          int *out)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsBool(v))
        *out = cJSON_IsTrue(v);
    else if (cJSON_IsString(v) && strcasecmp(v->valuestring, "true") == 0)
        *out = 1;
    else if (cJSON_IsString(v) && strcasecmp(v->valuestring, "false") == 0)
        *out = 0;
    else
        return fail(x, key, "'%s' must be true or false", key);
    return SK_OK;
}

/* An array of strings; appends copies to *arr / *n. */
static sk_status get_strings(pctx *x, const cJSON *obj, const char *key,
                             char ***arr, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    if (!cJSON_IsArray(v))
        return fail(x, key, "'%s' must be an array of strings", key);
    size_t count = (size_t)cJSON_GetArraySize(v);
    if (!count)
        return SK_OK;
    char **grown = sk_realloc(*arr, (*n + count) * sizeof(char *));
    if (!grown)
        return SK_NOMEM;
    *arr = grown;
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            push_key(x, key);
            push_index(x, i);
            sk_status rc = fail(x, NULL, "'%s' must be an array of strings",
                                key);
            x->depth -= 2;
            return rc;
        }
        if (!((*arr)[*n] = sk_strdup(e->valuestring)))
            return SK_NOMEM;
        (*n)++;
    }
    return SK_OK;
}

/* ---- function_choice_behavior ------------------------------------------ */

static int valid_name(const char *s);

/* A function name in a behaviour's list: "Skill.Fn", "Skill-Fn" (the
 * form SK sends models) or a bare "Fn"; kept with '.'.  NULL when it is
 * not such a name (or memory ran out: *nomem). */
static char *tool_fn_name(const char *s, int *nomem)
{
    *nomem = 0;
    size_t n = strlen(s), seps = 0;
    if (!n || n > 256)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.' || s[i] == '-') {
            if (i == 0 || i + 1 == n || ++seps > 1)
                return NULL;
        } else if (!isalnum((unsigned char)s[i]) && s[i] != '_') {
            return NULL;
        }
    }
    char *d = sk_strdup(s);
    if (!d) {
        *nomem = 1;
        return NULL;
    }
    for (char *p = d; *p; p++)
        if (*p == '-')
            *p = '.';
    return d;
}

/* obj[key]: an array of function names (plugin names when plugins),
 * appended to *arr. */
static sk_status get_fn_names(pctx *x, const cJSON *obj, const char *key,
                              int plugins, char ***arr, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    size_t before = *n;
    sk_status rc = get_strings(x, obj, key, arr, n);
    if (rc != SK_OK)
        return rc;
    for (size_t i = before; i < *n; i++) {
        int nomem = 0;
        char *name = plugins ? (valid_name((*arr)[i]) ? sk_strdup((*arr)[i]) : NULL)
                             : tool_fn_name((*arr)[i], &nomem);
        if (!name && (nomem || (plugins && valid_name((*arr)[i]))))
            return SK_NOMEM;
        if (!name) {
            push_key(x, key);
            push_index(x, (int)(i - before));
            rc = fail(x, NULL, plugins ? "'%s' must name plugins (letters, digits "
                                         "and '_')"
                                       : "'%s' must name functions as Plugin.Function",
                      key);
            x->depth -= 2;
            return rc;
        }
        free((*arr)[i]);
        (*arr)[i] = name;
    }
    return SK_OK;
}

/* A behaviour's type: "auto", "required" or "none", in any case. */
static int choice_of(const char *s)
{
    if (strcasecmp(s, "auto") == 0)
        return CFG_CHOICE_AUTO;
    if (strcasecmp(s, "required") == 0)
        return CFG_CHOICE_REQUIRED;
    if (strcasecmp(s, "none") == 0)
        return CFG_CHOICE_NONE;
    return CFG_CHOICE_UNSET;
}

/* "function_choice_behavior" of one settings entry, in the shapes SK
 * reads: a type name ("auto"), or an object with "type" (auto when
 * absent, as SK Python reads it), "functions", SK Python's "filters",
 * "auto_invoke" and "maximum_auto_invoke_attempts", and SK .NET's
 * "options". */
static sk_status read_tools(pctx *x, const cJSON *obj, cfg_tools *t)
{
    const char *key = "function_choice_behavior";
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsString(v)) {
        if (!(t->choice = choice_of(v->valuestring)))
            return fail(x, key, "'%s' must be auto, required or none", key);
        return SK_OK;
    }
    if (!cJSON_IsObject(v))
        return fail(x, key, "'%s' must be auto, required, none or an object "
                            "with a \"type\"", key);
    push_key(x, key);
    sk_status rc = SK_OK;
    const cJSON *type = cJSON_GetObjectItem(v, "type");
    t->choice = CFG_CHOICE_AUTO;
    if (!is_unset(type) && (!cJSON_IsString(type) || !(t->choice = choice_of(type->valuestring))))
        rc = fail(x, "type", "'type' must be auto, required or none");
    if (rc == SK_OK && !is_unset(cJSON_GetObjectItem(v, "functions"))) {
        t->listed = 1;
        rc = get_fn_names(x, v, "functions", 0, &t->functions, &t->n_functions);
    }
    const cJSON *filters = cJSON_GetObjectItem(v, "filters");
    if (rc == SK_OK && !is_unset(filters)) {
        if (!cJSON_IsObject(filters)) {
            rc = fail(x, "filters", "'filters' must be an object");
        } else {
            push_key(x, "filters");
            rc = get_fn_names(x, filters, "included_plugins", 1, &t->incl_plugins,
                              &t->n_incl_plugins);
            if (rc == SK_OK)
                rc = get_fn_names(x, filters, "excluded_plugins", 1, &t->excl_plugins,
                                  &t->n_excl_plugins);
            if (rc == SK_OK)
                rc = get_fn_names(x, filters, "included_functions", 0,
                                  &t->incl_functions, &t->n_incl_functions);
            if (rc == SK_OK)
                rc = get_fn_names(x, filters, "excluded_functions", 0,
                                  &t->excl_functions, &t->n_excl_functions);
            pop(x);
        }
    }
    if (rc == SK_OK)
        rc = get_bool(x, v, "auto_invoke", &t->auto_invoke);
    int enabled = 1;
    if (rc == SK_OK)
        rc = get_bool(x, v, "enable_kernel_functions", &enabled);
    if (rc == SK_OK && !enabled) {
        t->listed = 1; /* SK Python: no kernel function is offered */
        for (size_t i = 0; i < t->n_functions; i++)
            free(t->functions[i]);
        t->n_functions = 0;
    }
    if (rc == SK_OK)
        rc = get_count(x, v, "maximum_auto_invoke_attempts", 0, &t->max_rounds);
    if (rc == SK_OK && t->max_rounds == 0)
        t->auto_invoke = 0; /* SK Python: no attempts, no auto-invoke */
    const cJSON *opts = cJSON_GetObjectItem(v, "options");
    if (rc == SK_OK && !is_unset(opts)) {
        if (!cJSON_IsObject(opts)) {
            rc = fail(x, "options", "'options' must be an object");
        } else {
            push_key(x, "options");
            rc = get_bool(x, opts, "allow_parallel_calls", &t->parallel_calls);
            if (rc == SK_OK)
                rc = get_bool(x, opts, "allow_concurrent_invocation", &t->concurrent);
            if (rc == SK_OK)
                rc = get_bool(x, opts, "allow_strict_schema_adherence", &t->strict);
            if (rc == SK_OK) /* its earlier home, in SK .NET's first version */
                rc = get_bool(x, opts, "auto_invoke", &t->auto_invoke);
            pop(x);
        }
    }
    pop(x);
    return rc;
}

/* ---- settings ---------------------------------------------------------- */

/* Appends one execution-settings entry read from obj, the current path.
 * Entries are appended before they are filled so that cfg_free releases
 * a half-read one. */
static sk_status add_settings(pctx *x, cfg_function *c, const cJSON *obj,
                              const char *service_id)
{
    if (!cJSON_IsObject(obj))
        return fail(x, NULL, "execution settings must be an object");
    cfg_settings *grown =
        sk_realloc(c->settings, (c->n_settings + 1) * sizeof *grown);
    if (!grown)
        return SK_NOMEM;
    c->settings = grown;
    cfg_settings *s = &c->settings[c->n_settings++];
    memset(s, 0, sizeof *s);
    s->max_tokens = -1;
    s->temperature = s->top_p = NAN;
    s->presence_penalty = s->frequency_penalty = NAN;
    s->tools.auto_invoke = 1;
    s->tools.max_rounds = -1;
    s->tools.parallel_calls = -1;
    s->tools.concurrent = 1;
    const cJSON *sid = cJSON_GetObjectItem(obj, "service_id");
    if (!service_id && cJSON_IsString(sid))
        service_id = sid->valuestring;
    if (!(s->service_id = sk_strdup(service_id ? service_id : "default")))
        return SK_NOMEM;
    sk_status rc = get_string(x, obj, "model_id", &s->model_id);
    if (rc == SK_OK)
        rc = get_count(x, obj, "max_tokens", 1, &s->max_tokens);
    if (rc == SK_OK)
        rc = get_double(x, obj, "temperature", 0, 2, &s->temperature);
    if (rc == SK_OK)
        rc = get_double(x, obj, "top_p", 0, 1, &s->top_p);
    if (rc == SK_OK)
        rc = get_double(x, obj, "presence_penalty", -2, 2,
                        &s->presence_penalty);
    if (rc == SK_OK)
        rc = get_double(x, obj, "frequency_penalty", -2, 2,
                        &s->frequency_penalty);
    if (rc == SK_OK)
        rc = get_strings(x, obj, "stop_sequences", &s->stop, &s->n_stop);
    if (rc == SK_OK)
        rc = read_tools(x, obj, &s->tools);
    return rc;
}

/* The classic schema's single settings object ("completion", or
 * "default_settings" in the oldest files) becomes service "default". */
static sk_status read_classic_settings(pctx *x, cfg_function *c,
                                       const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(root, key);
    if (is_unset(v))
        return SK_OK;
    push_key(x, key);
    sk_status rc = add_settings(x, c, v, "default");
    pop(x);
    return rc;
}

/* 1.x "execution_settings": an object keyed by service id, or (in some
 * versions) an array of settings objects carrying their own service_id. */
static sk_status read_execution_settings(pctx *x, cfg_function *c,
                                         const cJSON *root)
{
    const char *key = "execution_settings";
    const cJSON *v = cJSON_GetObjectItem(root, key);
    if (is_unset(v))
        return SK_OK;
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
        return fail(x, key, "'%s' must be an object keyed by service id",
                    key);
    push_key(x, key);
    sk_status rc = SK_OK;
    int i = 0;
    for (const cJSON *e = v->child; rc == SK_OK && e; e = e->next, i++) {
        if (cJSON_IsObject(v)) {
            push_key(x, e->string);
            rc = add_settings(x, c, e, e->string);
        } else {
            push_index(x, i);
            rc = add_settings(x, c, e, NULL);
        }
        pop(x);
    }
    pop(x);
    return rc;
}

/* ---- parameters -------------------------------------------------------- */

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

/* A default value as text: SK 1.x allows any JSON value here. */
static sk_status default_text(const cJSON *v, char **out)
{
    if (is_unset(v))
        return SK_OK;
    if (cJSON_IsString(v)) {
        *out = sk_strdup(v->valuestring);
        return *out ? SK_OK : SK_NOMEM;
    }
    char *printed = cJSON_PrintUnformatted(v);
    if (!printed)
        return SK_NOMEM;
    *out = sk_strdup(printed);
    cJSON_free(printed);
    return *out ? SK_OK : SK_NOMEM;
}

/* Appends the parameters of array `key` in obj (the current path).
 * Names follow SK's rule (letters, digits, '_') and must be unique. */
static sk_status read_params(pctx *x, cfg_function *c, const cJSON *obj,
                             const char *key, const char *default_key,
                             const char *required_key)
{
    const cJSON *arr = cJSON_GetObjectItem(obj, key);
    if (is_unset(arr))
        return SK_OK;
    if (!cJSON_IsArray(arr))
        return fail(x, key, "'%s' must be an array", key);
    size_t count = (size_t)cJSON_GetArraySize(arr);
    if (!count)
        return SK_OK;
    cfg_param *grown =
        sk_realloc(c->params, (c->n_params + count) * sizeof *grown);
    if (!grown)
        return SK_NOMEM;
    c->params = grown;
    push_key(x, key);
    sk_status rc = SK_OK;
    int i = 0;
    for (const cJSON *e = arr->child; rc == SK_OK && e; e = e->next, i++) {
        push_index(x, i);
        if (!cJSON_IsObject(e)) {
            rc = fail(x, NULL, "a parameter must be an object");
            pop(x);
            break;
        }
        cfg_param *p = &c->params[c->n_params++];
        memset(p, 0, sizeof *p);
        const cJSON *name = cJSON_GetObjectItem(e, "name");
        if (is_unset(name))
            rc = fail(x, NULL, "parameter has no 'name'");
        else if (!cJSON_IsString(name) || !valid_name(name->valuestring))
            rc = fail(x, "name",
                      "parameter name must be letters, digits and '_'");
        for (size_t j = 0; rc == SK_OK && j + 1 < c->n_params; j++)
            if (strcasecmp(c->params[j].name, name->valuestring) == 0)
                rc = fail(x, "name", "duplicate parameter '%s'",
                          name->valuestring);
        if (rc == SK_OK && !(p->name = sk_strdup(name->valuestring)))
            rc = SK_NOMEM;
        if (rc == SK_OK)
            rc = get_string(x, e, "description", &p->description);
        if (rc == SK_OK)
            rc = default_text(cJSON_GetObjectItem(e, default_key),
                              &p->default_value);
        if (rc == SK_OK)
            rc = get_bool(x, e, required_key, &p->required);
        if (rc == SK_OK)
            rc = get_bool(x, e, "allow_dangerously_set_content", &p->allow_unsafe);
        pop(x);
    }
    pop(x);
    return rc;
}

/* ---- top level --------------------------------------------------------- */

static sk_status read_schema(pctx *x, const cJSON *root, int *out)
{
    const cJSON *v = cJSON_GetObjectItem(root, "schema");
    double d;
    if (is_unset(v))
        return SK_OK;
    if (!cfg_number(v, &d) || d != floor(d) || d < 0 || d > INT_MAX)
        return fail(x, "schema", "'schema' must be a non-negative integer");
    *out = (int)d;
    return SK_OK;
}

/* Semantic Kernel's template formats.  skein runs its own language
 * (semantic-kernel, the default); a prompt written for another engine
 * would render wrong, so it is refused by name rather than run. */
static sk_status read_template_format(pctx *x, cfg_function *c,
                                      const cJSON *root)
{
    static const char *const others[] = {"handlebars", "jinja2", "liquid"};
    const char *key = "template_format";
    sk_status rc = get_string(x, root, key, &c->template_format);
    if (rc != SK_OK || !c->template_format ||
        strcasecmp(c->template_format, "semantic-kernel") == 0)
        return rc;
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        if (strcasecmp(c->template_format, others[i]) == 0)
            return fail(x, key,
                        "template_format '%s' is not supported: skein runs "
                        "Semantic Kernel's own templates (semantic-kernel)",
                        c->template_format);
    return fail(x, key,
                "unknown template_format '%s' (Semantic Kernel's are "
                "semantic-kernel, handlebars, jinja2 and liquid; skein runs "
                "semantic-kernel)",
                c->template_format);
}

static sk_status read_function(pctx *x, cfg_function *c, const cJSON *root)
{
    sk_status rc = read_schema(x, root, &c->schema);
    if (rc == SK_OK)
        rc = read_template_format(x, c, root);
    if (rc == SK_OK)
        rc = get_string(x, root, "type", &c->type);
    if (rc == SK_OK)
        rc = get_string(x, root, "name", &c->name);
    if (rc == SK_OK)
        rc = get_string(x, root, "description", &c->description);
    if (rc == SK_OK)
        rc = get_string(x, root, "model", &c->model);
    if (rc == SK_OK)
        rc = get_bool(x, root, "allow_dangerously_set_content", &c->allow_unsafe);
    if (rc == SK_OK && c->model && !*c->model)
        rc = fail(x, "model", "'model' must be a model spec, not empty");
    if (rc == SK_OK)
        rc = read_classic_settings(x, c, root, "completion");
    if (rc == SK_OK)
        rc = read_classic_settings(x, c, root, "default_settings");
    if (rc == SK_OK)
        rc = read_execution_settings(x, c, root);
    if (rc == SK_OK) {
        const cJSON *input = cJSON_GetObjectItem(root, "input");
        if (!is_unset(input) && !cJSON_IsObject(input))
            rc = fail(x, "input", "'input' must be an object");
        else if (!is_unset(input)) {
            push_key(x, "input");
            rc = read_params(x, c, input, "parameters", "defaultValue",
                             "required");
            pop(x);
        }
    }
    if (rc == SK_OK)
        rc = read_params(x, c, root, "input_variables", "default",
                         "is_required");
    if (rc == SK_OK)
        rc = get_strings(x, root, "default_services", &c->default_services,
                         &c->n_default_services);
    if (rc == SK_OK) /* the name before "services" */
        rc = get_strings(x, root, "default_backends", &c->default_services,
                         &c->n_default_services);
    return rc;
}

sk_status cfg_parse(const char *json, size_t len, const char *origin,
                    cfg_function **out, char **errmsg)
{
    return cfg_parse_mapped(json, len, origin, NULL, out, errmsg);
}

sk_status cfg_parse_mapped(const char *json, size_t len, const char *origin,
                           const cfg_srcmap *map, cfg_function **out,
                           char **errmsg)
{
    char *ignored = NULL;
    if (!errmsg)
        errmsg = &ignored;
    *errmsg = NULL;
    if (!out)
        return SK_USAGE;
    *out = NULL;
    if (!json)
        return SK_USAGE;
    pctx x = {.text = json, .len = len,
              .origin = origin ? origin : "config.json", .map = map,
              .errmsg = errmsg};
    if (len > CFG_MAX_BYTES)
        return failo(&x, SK_TOO_LARGE, 0,
                     "config file is larger than %zu bytes", CFG_MAX_BYTES);
    char *text = sk_strndup(json, len);
    if (!text)
        return SK_NOMEM;
    x.text = text;
    cJSON *root = NULL;
    cfg_function *c = NULL;
    sk_status rc = normalise(&x, text, len);
    if (rc != SK_OK)
        goto done;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        if (skip_ws(text, len, 0) == len)
            rc = failo(&x, SK_CONFIG, len, "empty document");
        else
            rc = failo(&x, SK_CONFIG, off, "invalid JSON");
        goto done;
    }
    size_t tail = skip_ws(text, len, (size_t)(end - text));
    if (tail < len) {
        rc = failo(&x, SK_CONFIG, tail, "unexpected text after the JSON");
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = failo(&x, SK_CONFIG, skip_ws(text, len, 0),
                   "config must be a JSON object");
        goto done;
    }
    if (!(c = sk_calloc(1, sizeof *c)) || !(c->raw = sk_strndup(json, len))) {
        rc = SK_NOMEM;
        goto done;
    }
    rc = read_function(&x, c, root);
    if (rc == SK_OK && !c->type && !(c->type = sk_strdup("completion")))
        rc = SK_NOMEM;
    if (rc == SK_OK && !c->description && !(c->description = sk_strdup("")))
        rc = SK_NOMEM;
done:
    cJSON_Delete(root);
    free(text);
    if (rc != SK_OK) {
        cfg_free(c);
        if (rc == SK_NOMEM) {
            free(*errmsg);
            *errmsg = NULL;
        }
        free(ignored);
        return rc;
    }
    *out = c;
    return SK_OK;
}

static void free_strings(char **arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(arr[i]);
    free(arr);
}

void cfg_free(cfg_function *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_params; i++) {
        free(c->params[i].name);
        free(c->params[i].description);
        free(c->params[i].default_value);
    }
    free(c->params);
    for (size_t i = 0; i < c->n_settings; i++) {
        cfg_settings *s = &c->settings[i];
        free(s->service_id);
        free(s->model_id);
        free_strings(s->stop, s->n_stop);
        cfg_tools *t = &s->tools;
        free_strings(t->functions, t->n_functions);
        free_strings(t->incl_plugins, t->n_incl_plugins);
        free_strings(t->excl_plugins, t->n_excl_plugins);
        free_strings(t->incl_functions, t->n_incl_functions);
        free_strings(t->excl_functions, t->n_excl_functions);
    }
    free(c->settings);
    free_strings(c->default_services, c->n_default_services);
    free(c->type);
    free(c->template_format);
    free(c->name);
    free(c->description);
    free(c->model);
    free(c->raw);
    free(c);
}

const cfg_settings *cfg_settings_for(const cfg_function *c,
                                     const char *service_id)
{
    if (!c || !c->n_settings)
        return NULL;
    for (size_t i = 0; service_id && i < c->n_settings; i++)
        if (strcmp(c->settings[i].service_id, service_id) == 0)
            return &c->settings[i];
    for (size_t i = 0; i < c->n_settings; i++)
        if (strcmp(c->settings[i].service_id, "default") == 0)
            return &c->settings[i];
    return &c->settings[0];
}
