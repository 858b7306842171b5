/*
 * kernel.c -- the kernel handle: function registry, models, options,
 * errors and usage.  The event loop is in loop.c, the invoke path in
 * invoke.c; both hang their state off the kernel (kernel_priv.h).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kernel_priv.h"

/* ---- errors ------------------------------------------------------------ */

sk_status kern_fail(sk_kernel *k, sk_err *e)
{
    err_free(k->err);
    k->err = e;
    k->errcode = e ? e->code : SK_NOMEM;
    return k->errcode;
}

sk_status kern_failf(sk_kernel *k, sk_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_err *e = err_newv(code, fmt, ap);
    va_end(ap);
    if (!e) {
        kern_fail(k, NULL);
        return code;
    }
    return kern_fail(k, e);
}

void kern_ok(sk_kernel *k)
{
    err_free(k->err);
    k->err = NULL;
    k->errcode = SK_OK;
}

void sk_set_error(sk_kernel *k, sk_status code, const char *fmt, ...)
{
    if (!k)
        return;
    va_list ap;
    va_start(ap, fmt);
    sk_err *e = err_newv(code, fmt, ap);
    va_end(ap);
    kern_fail(k, e);
}

const char *sk_errmsg(const sk_kernel *k)
{
    if (!k)
        return "no kernel";
    if (k->errcode == SK_OK)
        return "no error";
    if (!k->err || !k->err->message)
        return sk_strerror(k->errcode);
    return k->err->message;
}

sk_status sk_errcode(const sk_kernel *k) { return k ? k->errcode : SK_USAGE; }

sk_status sk_error_json(const sk_kernel *k, char **out)
{
    if (!k || !out)
        return SK_USAGE;
    sk_err tmp = {0};
    const sk_err *e = k->err;
    if (!e) {
        tmp.code = k->errcode;
        tmp.message = (char *)sk_strerror(k->errcode);
        e = &tmp;
    }
    *out = err_json(e);
    return *out ? SK_OK : SK_NOMEM;
}

void kern_notice(const sk_kernel *k, const char *fmt, ...)
{
    if (k && k->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("skein: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int kern_quiet(const sk_kernel *k) { return k->quiet; }
long kern_model_inflight(const sk_kernel *k) { return k->model_inflight; }
const kern_net *kern_net_settings(const sk_kernel *k) { return &k->net; }
const kern_sql *kern_sql_limits(const sk_kernel *k) { return &k->sql; }
void **kern_cache_slot(sk_kernel *k) { return &k->cache; }
void **kern_journal_slot(sk_kernel *k) { return &k->journal; }
void **kern_history_slot(sk_kernel *k) { return &k->history; }
void **kern_problems_slot(sk_kernel *k) { return &k->problems; }

void **kern_slot(sk_kernel *k, const void *key)
{
    for (size_t i = 0; i < k->n_slots; i++)
        if (k->slots[i].key == key)
            return &k->slots[i].p;
    if (k->n_slots == sizeof k->slots / sizeof *k->slots)
        return NULL;
    k->slots[k->n_slots].key = key;
    k->slots[k->n_slots].p = NULL;
    return &k->slots[k->n_slots++].p;
}

sk_status kern_on_free(sk_kernel *k, int order, void (*fn)(sk_kernel *k))
{
    for (size_t i = 0; i < k->n_hooks; i++)
        if (k->hooks[i].fn == fn)
            return SK_OK;
    if (k->n_hooks == sizeof k->hooks / sizeof *k->hooks)
        return kern_fail(k, NULL);
    /* kept in order: lower first, equal ones as registered */
    size_t i = k->n_hooks;
    while (i > 0 && k->hooks[i - 1].order > order) {
        k->hooks[i] = k->hooks[i - 1];
        i--;
    }
    k->hooks[i].order = order;
    k->hooks[i].fn = fn;
    k->n_hooks++;
    return SK_OK;
}

sk_status kern_add_skill_loader(sk_kernel *k, const char *file, skill_loader_fn fn)
{
    if (k->n_loaders == sizeof k->loaders / sizeof *k->loaders)
        return kern_fail(k, NULL);
    k->loaders[k->n_loaders].file = file;
    k->loaders[k->n_loaders].fn = fn;
    k->n_loaders++;
    return SK_OK;
}

size_t kern_skill_loaders(const sk_kernel *k, const char **file, skill_loader_fn *fn,
                          size_t i)
{
    if (i >= k->n_loaders)
        return 0;
    *file = k->loaders[i].file;
    *fn = k->loaders[i].fn;
    return 1;
}
const char *kern_db_path(sk_kernel *k)
{
    k->db_used = 1; /* opened: the option can no longer change it */
    return k->db_path;
}
long kern_next_id(sk_kernel *k) { return ++k->next_id; }

/* The run id that starts each call id ("3f9c0a1b2e4d5c6f-12"): random, so
 * that the calls of runs appending to one trace or cassette never share
 * an id; the time and pid stand in when the system gives no entropy. */
static void new_run_id(sk_kernel *k)
{
    unsigned long long r = 0;
    if (getentropy(&r, sizeof r) != 0)
        r = ((unsigned long long)loop_now_ms() << 20) ^ (unsigned long long)getpid();
    snprintf(k->run_id, sizeof k->run_id, "%016llx", r);
}

void kern_new_call_id(sk_kernel *k, char *out, size_t n)
{
    snprintf(out, n, "%s-%ld", k->run_id, ++k->call_seq);
}
int kern_untrusted(const sk_kernel *k) { return k->native_untrusted; }
void kern_native_get(const sk_kernel *k, int *depth, int *ctx)
{
    *depth = k->native_depth;
    *ctx = (k->native_untrusted ? KERN_CTX_UNTRUSTED : 0) |
           (k->native_dry ? KERN_CTX_DRY_RUN : 0);
}
void kern_native_set(sk_kernel *k, int depth, int ctx)
{
    k->native_depth = depth;
    k->native_untrusted = (ctx & KERN_CTX_UNTRUSTED) != 0;
    k->native_dry = (ctx & KERN_CTX_DRY_RUN) != 0;
}
int kern_allow_os(const sk_kernel *k) { return k->allow_os; }
int kern_allow_unsafe(const sk_kernel *k) { return k->allow_unsafe; }
int kern_cache_off(const sk_kernel *k) { return k->no_cache; }

/* ---- lifecycle --------------------------------------------------------- */

static sk_status set_clock(sk_kernel *k, const char *value, const char *what);

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0;
}

/* Sets a millisecond option from an environment variable that holds
 * seconds ("30", "2.5"; "0" only where zero is allowed, meaning no
 * limit).  Unset or empty: nothing.  A bad value is SK_CONFIG naming the
 * variable. */
static sk_status env_seconds(sk_kernel *k, const char *var, const char *option,
                             int positive)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return SK_OK;
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (errno || end == v || *end || !(s >= 0) || s > 86400 || (positive && s <= 0))
        return kern_failf(k, SK_CONFIG, "%s=%s: expected a number of seconds %s "
                                        "(at most 86400)",
                          var, v, positive ? "above 0" : "(0: no limit)");
    char ms[32];
    long n = (long)(s * 1000 + 0.5);
    snprintf(ms, sizeof ms, "%ld", positive && n < 1 ? 1L : n);
    return sk_kernel_set_option(k, option, ms);
}

/* The user config file: $SKEIN_CONFIG, else $XDG_CONFIG_HOME/skein/
 * config.json, else ~/.config/skein/config.json.  Caller frees. */
static char *config_path(void)
{
    const char *p = getenv("SKEIN_CONFIG");
    if (p && *p)
        return sk_strdup(p);
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        return sk_asprintf("%s/skein/config.json", xdg);
    const char *home = getenv("HOME");
    if (home && *home)
        return sk_asprintf("%s/.config/skein/config.json", home);
    return NULL;
}

/* Reads the user config file: {"model": SPEC, "services": {ID: SPEC},
 * "aliases": {NAME: SPEC}, "options": {NAME: VALUE}, ...}.  A missing
 * file is fine; a malformed one is an error, reported with its path.
 * keep_model: SKEIN_MODEL is set, and wins over "model". */
static sk_status load_user_config(sk_kernel *k, int keep_model)
{
    char *path = config_path();
    if (!path)
        return SK_OK;
    char *text = NULL;
    size_t len = 0;
    sk_status rc = sk_read_file(path, 1 << 20, &text, &len);
    if (rc == SK_IO && (errno == ENOENT || errno == ENOTDIR)) {
        free(path);
        return SK_OK;
    }
    if (rc != SK_OK) {
        kern_failf(k, rc == SK_IO ? SK_CONFIG : rc, "%s: %s", path,
                   rc == SK_IO ? strerror(errno) : sk_strerror(rc));
        free(path);
        return k->errcode;
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!doc || !cJSON_IsObject(doc)) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        int line, col;
        sk_line_col(text, off < len ? off : len, &line, &col);
        kern_failf(k, SK_CONFIG, "%s:%d:%d: %s", path, line, col,
                   doc ? "expected a JSON object" : "invalid JSON");
        cJSON_Delete(doc);
        free(text);
        free(path);
        return SK_CONFIG;
    }
    rc = SK_OK;
    kern_history_note_config(k, doc); /* its secrets are never recorded */
    cJSON *embeddings = cJSON_GetObjectItemCaseSensitive(doc, "embeddings");
    if (embeddings) {
        if (!cJSON_IsString(embeddings))
            rc = kern_failf(k, SK_CONFIG, "%s: embeddings: expected a model spec "
                                          "such as \"openai:text-embedding-3-small\"",
                            path);
        else if ((rc = sk_kernel_set_option(k, "embeddings", embeddings->valuestring)) != SK_OK) {
            char *why = sk_strdup(sk_errmsg(k));
            rc = kern_failf(k, SK_CONFIG, "%s: %s", path, why ? why : "bad embeddings model");
            free(why);
        }
    }
    cJSON *services = cJSON_GetObjectItemCaseSensitive(doc, "services");
    cJSON *it;
    cJSON_ArrayForEach(it, services)
    {
        if (rc == SK_OK && cJSON_IsString(it))
            rc = sk_kernel_set_service(k, it->string, it->valuestring);
    }
    /* names for models, as `llm aliases` keeps them: --model NAME */
    cJSON *aliases = cJSON_GetObjectItemCaseSensitive(doc, "aliases");
    if (rc == SK_OK && aliases && !cJSON_IsObject(aliases))
        rc = kern_failf(k, SK_CONFIG, "%s: \"aliases\" must be an object of "
                        "NAME: \"KIND:MODEL\"", path);
    cJSON_ArrayForEach(it, aliases)
    {
        if (rc != SK_OK)
            break;
        if (!cJSON_IsString(it))
            rc = kern_failf(k, SK_CONFIG, "%s: aliases.%s: expected a model spec "
                            "(\"KIND:MODEL\")", path, it->string);
        else
            rc = sk_kernel_set_alias(k, it->string, it->valuestring);
    }
    /* after the names, so that "model" may be one */
    cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    if (rc == SK_OK && cJSON_IsString(model) && !keep_model)
        rc = sk_kernel_set_model(k, model->valuestring);
    if (rc == SK_USAGE) { /* a bad model spec: say which file */
        char *why = sk_strdup(sk_errmsg(k));
        rc = kern_failf(k, SK_CONFIG, "%s: %s", path, why ? why : "bad model");
        free(why);
    }
    cJSON *policy = cJSON_GetObjectItemCaseSensitive(doc, "policy");
    if (rc == SK_OK && policy) {
        char *pj = cJSON_PrintUnformatted(policy);
        rc = pj ? sk_kernel_set_policy(k, pj) : kern_fail(k, NULL);
        cJSON_free(pj);
        if (rc != SK_OK && rc != SK_NOMEM) {
            char *why = sk_strdup(sk_errmsg(k));
            rc = kern_failf(k, SK_CONFIG, "%s: policy: %s", path, why ? why : "invalid");
            free(why);
        }
    }
    cJSON *lims = cJSON_GetObjectItemCaseSensitive(doc, "limits");
    cJSON_ArrayForEach(it, lims)
    {
        if (rc != SK_OK)
            break;
        const cJSON *rpm = cJSON_GetObjectItemCaseSensitive(it, "rpm");
        const cJSON *tpm = cJSON_GetObjectItemCaseSensitive(it, "tpm");
        const cJSON *inf = cJSON_GetObjectItemCaseSensitive(it, "inflight");
        if (!cJSON_IsObject(it) || (rpm && !cJSON_IsNumber(rpm)) ||
            (tpm && !cJSON_IsNumber(tpm)) || (inf && !cJSON_IsNumber(inf))) {
            rc = kern_failf(k, SK_CONFIG, "%s: limits.%s: expected {\"rpm\": N, "
                                          "\"tpm\": N, \"inflight\": N}",
                            path, it->string);
            break;
        }
        rc = sk_kernel_set_limits(k, it->string, rpm ? (long)rpm->valuedouble : 0,
                                  tpm ? (long)tpm->valuedouble : 0,
                                  inf ? (int)inf->valuedouble : 0);
        if (rc != SK_OK)
            rc = kern_failf(k, SK_CONFIG, "%s: limits.%s: values must be 0 or more",
                            path, it->string);
    }
    /* "tools": {SPEC or KIND: false} turns native tool calls off for a
     * model whose server does not take them (tools.c) */
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(doc, "tools");
    if (rc == SK_OK && tools && !cJSON_IsObject(tools))
        rc = kern_failf(k, SK_CONFIG, "%s: tools: expected {\"MODEL or KIND\": true "
                                      "or false}", path);
    cJSON_ArrayForEach(it, tools)
    {
        if (rc != SK_OK)
            break;
        if (!cJSON_IsBool(it)) {
            rc = kern_failf(k, SK_CONFIG, "%s: tools.%s: expected true or false", path,
                            it->string);
            break;
        }
        if (kern_set_native_tools(k, it->string, cJSON_IsTrue(it)) != SK_OK)
            rc = kern_fail(k, NULL);
    }
    cJSON *options = cJSON_GetObjectItemCaseSensitive(doc, "options");
    cJSON_ArrayForEach(it, options)
    {
        char num[64];
        const char *val = NULL;
        if (cJSON_IsString(it)) {
            val = it->valuestring;
        } else if (cJSON_IsNumber(it)) {
            snprintf(num, sizeof num, "%.0f", it->valuedouble);
            val = num;
        } else if (cJSON_IsBool(it)) {
            val = cJSON_IsTrue(it) ? "1" : "0";
        }
        if (rc == SK_OK && val) {
            rc = sk_kernel_set_option(k, it->string, val);
            if (rc != SK_OK) {
                char *why = sk_strdup(sk_errmsg(k));
                rc = kern_failf(k, SK_CONFIG, "%s: %s", path,
                                why ? why : "bad option");
                free(why);
            }
        }
    }
    cJSON_Delete(doc);
    free(text);
    free(path);
    return rc;
}

sk_status kern_new(sk_kernel **out)
{
    if (!out)
        return SK_USAGE;
    *out = NULL;
    sk_kernel *k = sk_calloc(1, sizeof *k);
    if (!k)
        return SK_NOMEM;
    k->net.timeout_ms = 120000;
    k->net.connect_timeout_ms = 10000;
    k->net.idle_timeout_ms = 30000;
    k->net.retries = 3;
    k->net.retry_base_ms = 500;
    k->net.max_response_bytes = (size_t)8 << 20;
    k->sql.timeout_ms = 30000;
    k->sql.max_rows = 1000000;
    k->sql.max_bytes = (long long)64 << 20;
    k->sql.concurrency = 16;
    k->max_depth = 32;
    k->max_inflight = 256;
    k->quiet = env_true("SKEIN_QUIET");
    if (loop_init(k) != SK_OK) {
        free(k);
        return SK_NOMEM;
    }
    sk_status rc = SK_OK;
    const char *env_now = getenv("SKEIN_NOW");
    if (env_now && *env_now)
        rc = set_clock(k, env_now, "SKEIN_NOW");
    /* SKEIN_MODEL wins over the config file's model, and may be one of
     * the names the file gives, so it is set after the file is read */
    const char *env_model = getenv("SKEIN_MODEL");
    int have_env = env_model && *env_model;
    if (rc == SK_OK)
        rc = load_user_config(k, have_env);
    if (rc == SK_OK && have_env)
        rc = sk_kernel_set_model(k, env_model);
    /* the environment's timeouts win over the config file's options */
    if (rc == SK_OK)
        rc = env_seconds(k, "SKEIN_TIMEOUT", "timeout_ms", 1);
    if (rc == SK_OK)
        rc = env_seconds(k, "SKEIN_IDLE_TIMEOUT", "idle_timeout_ms", 0);
    /* the environment over the config file, as for the model */
    const char *env_memory = getenv("SKEIN_MEMORY");
    if (rc == SK_OK && env_memory && *env_memory)
        rc = mem_set_path(k, env_memory);
    const char *env_embed = getenv("SKEIN_EMBEDDINGS");
    if (rc == SK_OK && env_embed && *env_embed) {
        rc = mem_set_embeddings(k, env_embed);
        if (rc == SK_USAGE) {
            char *why = sk_strdup(sk_errmsg(k));
            rc = kern_failf(k, SK_USAGE, "SKEIN_EMBEDDINGS: %s", why ? why : "invalid");
            free(why);
        }
    }
    if (rc == SK_OK && !k->model_spec) {
        const char *key = getenv("OPENAI_API_KEY");
        const char *base = getenv("OPENAI_BASE_URL");
        if ((key && *key) || (base && *base))
            rc = sk_kernel_set_model(k, "openai:gpt-4o-mini");
    }
    const char *trace = getenv("SKEIN_TRACE");
    if (rc == SK_OK && trace && *trace)
        rc = sk_kernel_set_trace(k, trace);
    const char *record = getenv("SKEIN_RECORD");
    if (rc == SK_OK && record && *record && !(k->record = fopen(record, "a")))
        rc = kern_failf(k, SK_IO, "SKEIN_RECORD=%s: %s", record, strerror(errno));
    k->born_ms = loop_now_ms();
    new_run_id(k);
    if (rc != SK_OK) {
        /* Keep the kernel so the caller can read sk_errmsg, as sqlite3_open
         * does; the caller still frees it. */
        *out = k;
        return rc;
    }
    *out = k;
    return SK_OK;
}

void sk_kernel_free(sk_kernel *k)
{
    if (!k)
        return;
    /* Let calls in flight finish: every network call has a timeout, so
     * this ends; dropping them would leak their continuations. */
    inv_shutdown(k);
    for (size_t i = 0; i < k->n_hooks; i++)
        k->hooks[i].fn(k);
    cache_shutdown(k);
    journal_shutdown(k);
    history_shutdown(k);
    sk_kernel_clear_skill_problems(k);
    free(k->db_path);
    for (size_t i = 0; i < k->n_fns; i++)
        fn_release(k, k->fns[i]);
    free(k->fns);
    for (size_t i = 0; i < k->n_skills; i++)
        free(k->skills[i]);
    free(k->skills);
    for (size_t i = 0; i < k->n_conns; i++)
        conn_close(k->conns[i]);
    free(k->conns);
    free(k->kinds);
    for (size_t i = 0; i < k->n_services; i++) {
        free(k->service_ids[i]);
        free(k->service_specs[i]);
    }
    free(k->service_ids);
    free(k->service_specs);
    free(k->service_alias);
    pol_free(k->base_policy);
    free(k->base_policy_json);
    rd_rules_free(k->redact_rules);
    lim_free(k);
    kern_tools_free(k);
    if (k->record)
        fclose(k->record);
    free(k->err_field);
    loop_free(k);
    if (k->trace)
        fclose(k->trace);
    free(k->model_spec);
    err_free(k->err);
    free(k);
}

/* ---- models ------------------------------------------------------------ */

static int valid_spec(const char *spec)
{
    const char *colon = strchr(spec, ':');
    return colon && colon != spec && colon[1];
}

/* The error for a model that is neither KIND:MODEL nor a known name. */
static sk_status bad_model(sk_kernel *k, const char *spec)
{
    if (spec && *spec && !strchr(spec, ':')) {
        sk_buf known;
        buf_init(&known, 4096);
        for (size_t i = 0; i < k->n_services; i++)
            buf_printf(&known, "%s%s", i ? ", " : "", k->service_ids[i]);
        sk_status rc = kern_failf(k, SK_USAGE,
                                  "unknown model \"%s\": not KIND:MODEL (e.g. "
                                  "openai:gpt-4o-mini), and no alias or service of "
                                  "that name in the config file (%s%s)",
                                  spec, known.len ? "known: " : "it names none",
                                  known.len ? known.p : "");
        buf_free(&known);
        return rc;
    }
    return kern_failf(k, SK_USAGE,
                      "invalid model \"%s\": expected KIND:MODEL, e.g. "
                      "openai:gpt-4o-mini or scripted:rules.json",
                      spec ? spec : "(null)");
}

const char *kern_resolve_model(const sk_kernel *k, const char *spec)
{
    if (!spec || strchr(spec, ':'))
        return spec;
    const char *named = kern_service(k, spec);
    return named ? named : spec;
}

sk_status sk_kernel_set_model(sk_kernel *k, const char *spec)
{
    if (!k)
        return SK_USAGE;
    spec = kern_resolve_model(k, spec);
    if (!spec || !valid_spec(spec))
        return bad_model(k, spec);
    char *copy = sk_strdup(spec);
    if (!copy)
        return kern_fail(k, NULL);
    free(k->model_spec);
    k->model_spec = copy;
    kern_ok(k);
    return SK_OK;
}

const char *sk_kernel_model(const sk_kernel *k) { return k ? k->model_spec : NULL; }

/* Names spec id, as a service id or an alias: one table, so that a
 * function's default_services and --model find both. */
static sk_status add_name(sk_kernel *k, const char *id, const char *spec, int alias)
{
    if (!k || !id || !*id)
        return SK_USAGE;
    const char *what = alias ? "alias" : "service";
    if (alias && strchr(id, ':'))
        return kern_failf(k, SK_USAGE, "alias \"%s\": a name has no ':' (that "
                          "would read as KIND:MODEL)", id);
    if (!spec || !valid_spec(spec))
        return kern_failf(k, SK_USAGE, "%s %s: invalid model \"%s\": expected "
                          "KIND:MODEL", what, id, spec ? spec : "(null)");
    for (size_t i = 0; i < k->n_services; i++) {
        if (strcmp(k->service_ids[i], id) == 0) {
            char *c = sk_strdup(spec);
            if (!c)
                return kern_fail(k, NULL);
            free(k->service_specs[i]);
            k->service_specs[i] = c;
            k->service_alias[i] = (unsigned char)alias;
            return SK_OK;
        }
    }
    char **ids = sk_realloc(k->service_ids, (k->n_services + 1) * sizeof *ids);
    if (!ids)
        return kern_fail(k, NULL);
    k->service_ids = ids;
    char **specs = sk_realloc(k->service_specs, (k->n_services + 1) * sizeof *specs);
    if (!specs)
        return kern_fail(k, NULL);
    k->service_specs = specs;
    unsigned char *flags = sk_realloc(k->service_alias, k->n_services + 1);
    if (!flags)
        return kern_fail(k, NULL);
    k->service_alias = flags;
    char *i2 = sk_strdup(id), *s2 = sk_strdup(spec);
    if (!i2 || !s2) {
        free(i2);
        free(s2);
        return kern_fail(k, NULL);
    }
    k->service_ids[k->n_services] = i2;
    k->service_specs[k->n_services] = s2;
    k->service_alias[k->n_services] = (unsigned char)alias;
    k->n_services++;
    return SK_OK;
}

sk_status sk_kernel_set_service(sk_kernel *k, const char *id, const char *spec)
{
    return add_name(k, id, spec, 0);
}

sk_status sk_kernel_set_alias(sk_kernel *k, const char *name, const char *spec)
{
    return add_name(k, name, spec, 1);
}

size_t sk_kernel_model_name_count(const sk_kernel *k) { return k ? k->n_services : 0; }

sk_status sk_kernel_model_name_at(const sk_kernel *k, size_t i, sk_model_name *out)
{
    if (!k || !out || i >= k->n_services)
        return SK_USAGE;
    out->name = k->service_ids[i];
    out->spec = k->service_specs[i];
    out->alias = k->service_alias[i];
    return SK_OK;
}

/* The kinds a model spec may name; entries that only add embeddings to a
 * kind already listed are not counted again. */
size_t sk_kernel_connector_kind_count(const sk_kernel *k)
{
    size_t n = 0;
    for (size_t i = 0; k && i < k->n_kinds; i++)
        n += k->kinds[i]->open != NULL;
    return n;
}

const char *sk_kernel_connector_kind_at(const sk_kernel *k, size_t i)
{
    for (size_t j = 0; k && j < k->n_kinds; j++)
        if (k->kinds[j]->open && i-- == 0)
            return k->kinds[j]->name;
    return NULL;
}

const char *kern_service(const sk_kernel *k, const char *id)
{
    for (size_t i = 0; id && i < k->n_services; i++)
        if (strcmp(k->service_ids[i], id) == 0)
            return k->service_specs[i];
    return NULL;
}

sk_status kern_add_conn_kind(sk_kernel *k, const conn_kind *kind)
{
    const conn_kind **kinds = sk_realloc(k->kinds, (k->n_kinds + 1) * sizeof *kinds);
    if (!kinds)
        return kern_fail(k, NULL);
    k->kinds = kinds;
    k->kinds[k->n_kinds++] = kind;
    return SK_OK;
}

/* Whether kind answers to the spec prefix kind_name: "ollama" exactly,
 * or a family "openai+" followed by a flavor. */
static int kind_matches(const conn_kind *kind, const char *kind_name)
{
    const char *name = kind->name;
    size_t n = strlen(name);
    int family = n && name[n - 1] == '+';
    return family ? strncmp(kind_name, name, n) == 0 && kind_name[n]
                  : strcmp(kind_name, name) == 0;
}

/* Opens spec through the first registered kind that matches it and
 * offers what is asked (embed: an embeddings connector, else chat). */
static sk_connector *open_spec(sk_kernel *k, const char *spec, int embed,
                               sk_err **err)
{
    const char *colon = strchr(spec, ':');
    if (!colon) {
        *err = err_new(SK_USAGE, "invalid model \"%s\"", spec);
        return NULL;
    }
    size_t kind_len = (size_t)(colon - spec);
    char kind[64];
    if (kind_len >= sizeof kind)
        kind_len = sizeof kind - 1;
    memcpy(kind, spec, kind_len);
    kind[kind_len] = '\0';
    const conn_kind *found = NULL;
    int known_kind = 0;
    for (size_t i = 0; i < k->n_kinds && !found; i++) {
        const conn_kind *c = k->kinds[i];
        if (!kind_matches(c, kind))
            continue;
        known_kind = 1;
        if (embed ? c->open_embed != NULL : c->open != NULL)
            found = c;
    }
    if (!found) {
        sk_buf known;
        buf_init(&known, 0);
        for (size_t i = 0; i < k->n_kinds; i++) {
            const conn_kind *c = k->kinds[i];
            int dup = 0;
            for (size_t j = 0; j < i; j++)
                dup |= strcmp(k->kinds[j]->name, c->name) == 0 &&
                       (embed ? k->kinds[j]->open_embed != NULL : k->kinds[j]->open != NULL);
            if (dup || !(embed ? c->open_embed != NULL : c->open != NULL))
                continue;
            buf_printf(&known, "%s%s%s", known.len ? ", " : "", c->name,
                       c->name[strlen(c->name) - 1] == '+' ? "FLAVOR" : "");
        }
        if (embed && known_kind)
            *err = err_new(SK_USAGE, "embeddings model \"%s\": the %s connector "
                                     "has no embeddings endpoint (kinds with one: %s)",
                           spec, kind, known.p ? known.p : "none");
        else
            *err = err_new(SK_NOT_FOUND, "unknown %s kind \"%s\" in \"%s\" (known: %s)",
                           embed ? "embeddings model" : "model", kind, spec,
                           known.p ? known.p : "none");
        buf_free(&known);
        return NULL;
    }
    sk_connector *c = embed ? found->open_embed(k, kind, colon + 1, err)
                            : found->open(k, kind, colon + 1, err);
    if (c && !c->spec && !(c->spec = sk_strdup(spec))) {
        conn_close(c);
        *err = NULL;
        return NULL;
    }
    return c;
}

sk_connector *conn_open(sk_kernel *k, const char *spec, sk_err **err)
{
    return open_spec(k, spec, 0, err);
}

sk_connector *conn_open_embed(sk_kernel *k, const char *spec, sk_err **err)
{
    return open_spec(k, spec, 1, err);
}

void conn_close(sk_connector *c)
{
    if (!c)
        return;
    if (c->vt && c->vt->destroy)
        c->vt->destroy(c->self);
    free(c->spec);
    free(c->model);
    free(c->endpoint);
    free(c);
}

sk_connector *kern_connector(sk_kernel *k, const char *spec, sk_err **err)
{
    *err = NULL;
    for (size_t i = 0; i < k->n_conns; i++)
        if (strcmp(k->conns[i]->spec, spec) == 0)
            return k->conns[i];
    sk_connector **conns = sk_realloc(k->conns, (k->n_conns + 1) * sizeof *conns);
    if (!conns)
        return NULL;
    k->conns = conns;
    sk_connector *c = conn_open(k, spec, err);
    if (!c)
        return NULL;
    k->conns[k->n_conns++] = c;
    return c;
}

/* ---- options ----------------------------------------------------------- */

static int parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

/* An instant as Unix seconds: "1925242507", or ISO 8601
 * "2031-01-13T05:15:07Z" (also with a space for T, seconds left out, or
 * an offset "+01:00", "-0800").  1 on success. */
static int parse_instant(const char *s, long long *out)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    errno = 0;
    if (*s == '-' || isdigit((unsigned char)*s)) {
        long long v = strtoll(s, &end, 10);
        if (!errno && end != s && !*end) {
            *out = v;
            return 1;
        }
    }
    int y, mo, d, h, mi, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 || !n)
        return 0;
    const char *p = s + n;
    if (*p == ':') {
        int m = 0;
        if (sscanf(p, ":%2d%n", &sec, &m) != 1 || !m)
            return 0;
        p += m;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0, m = 0;
        p++;
        if (sscanf(p, "%2d%n", &oh, &m) != 1 || m != 2)
            return 0;
        p += 2;
        if (*p == ':')
            p++;
        if (isdigit((unsigned char)*p)) {
            if (sscanf(p, "%2d%n", &om, &m) != 1 || m != 2)
                return 0;
            p += 2;
        }
        if (oh > 23 || om > 59)
            return 0;
        off = sign * (oh * 3600L + om * 60L);
    } else {
        return 0; /* a local time would depend on TZ: say which zone */
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* 31 February rolled over */
        return 0;
    *out = (long long)t - off;
    return 1;
}

/* Fixes the clock the time functions read (option now, SKEIN_NOW); an
 * empty value gives back the system clock. */
static sk_status set_clock(sk_kernel *k, const char *value, const char *what)
{
    if (!*value) {
        k->fixed_now = 0;
        kern_ok(k);
        return SK_OK;
    }
    long long t;
    if (!parse_instant(value, &t))
        return kern_failf(k, SK_USAGE,
                          "%s: \"%s\" is not an instant: give Unix seconds "
                          "or ISO 8601 with a zone, e.g. 2031-01-13T05:15:07Z",
                          what, value);
    k->fixed_now = 1;
    k->now_s = t;
    kern_ok(k);
    return SK_OK;
}

long long kern_now(const sk_kernel *k)
{
    return k->fixed_now ? k->now_s : (long long)time(NULL);
}

sk_status sk_kernel_set_option(sk_kernel *k, const char *name, const char *value)
{
    if (!k || !name || !value)
        return SK_USAGE;
    if (strcmp(name, "db") == 0) {
        if (k->db_used)
            return kern_failf(k, SK_USAGE, "option db: the session database "
                                            "is already open");
        char *copy = *value ? sk_strdup(value) : NULL;
        if (*value && !copy)
            return kern_fail(k, NULL);
        free(k->db_path);
        k->db_path = copy;
        kern_ok(k);
        return SK_OK;
    }
    if (strcmp(name, "journal") == 0)
        return journal_open(k, value);
    if (strcmp(name, "history") == 0)
        return history_set(k, value);
    if (strcmp(name, "history_max_bytes") == 0)
        return history_set_max(k, value);
    if (strcmp(name, "conversation") == 0)
        return history_set_conversation(k, value);
    if (strcmp(name, "now") == 0)
        return set_clock(k, value, "option now");
    if (strcmp(name, "memory") == 0)
        return mem_set_path(k, value);
    if (strcmp(name, "embeddings") == 0)
        return mem_set_embeddings(k, value);
    long v;
    struct {
        const char *name;
        long lo, hi;
    } spec[] = {
        {"timeout_ms", 1, 86400000L},  {"connect_timeout_ms", 1, 600000L},
        {"retries", 0, 100},           {"retry_base_ms", 0, 600000L},
        {"max_response_bytes", 1024, 1L << 30}, {"max_depth", 1, 1000},
        {"max_inflight", 1, 100000},   {"quiet", 0, 1},
        {"allow_os", 0, 1},            {"sql_timeout_ms", 0, 86400000L},
        {"sql_max_rows", 0, 2000000000L}, {"sql_max_bytes", 0, 1L << 40},
        {"allow_dangerously_set_content", 0, 1}, {"sql_concurrency", 1, 10000},
        {"cache", 0, 1},               {"idle_timeout_ms", 0, 86400000L},
        {"slots", 0, 1024},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        if (strcmp(name, spec[i].name) != 0)
            continue;
        if (!parse_long(value, spec[i].lo, spec[i].hi, &v))
            return kern_failf(k, SK_USAGE,
                              "option %s: \"%s\" is not a whole number from "
                              "%ld to %ld",
                              name, value, spec[i].lo, spec[i].hi);
        switch (i) {
        case 0: k->net.timeout_ms = v; break;
        case 1: k->net.connect_timeout_ms = v; break;
        case 2: k->net.retries = (int)v; break;
        case 3: k->net.retry_base_ms = v; break;
        case 4: k->net.max_response_bytes = (size_t)v; break;
        case 5: k->max_depth = (int)v; break;
        case 6: k->max_inflight = (int)v; break;
        case 7: k->quiet = (int)v; break;
        case 8: k->allow_os = (int)v; break;
        case 9: k->sql.timeout_ms = v; break;
        case 10: k->sql.max_rows = v; break;
        case 11: k->sql.max_bytes = v; break;
        case 12: k->allow_unsafe = (int)v; break;
        case 13: k->sql.concurrency = (int)v; break;
        case 14: k->no_cache = !v; break;
        case 15: k->net.idle_timeout_ms = v; break;
        case 16: k->net.slots = (int)v; break;
        }
        kern_ok(k);
        return SK_OK;
    }
    return kern_failf(k, SK_USAGE, "unknown option \"%s\"", name);
}

sk_status sk_kernel_set_trace(sk_kernel *k, const char *path)
{
    if (!k)
        return SK_USAGE;
    if (k->trace) {
        fclose(k->trace);
        k->trace = NULL;
    }
    if (!path)
        return SK_OK;
    k->trace = fopen(path, "a");
    if (!k->trace)
        return kern_failf(k, SK_IO, "cannot open trace file %s: %s", path,
                          strerror(errno));
    return SK_OK;
}

void sk_kernel_usage(const sk_kernel *k, sk_usage *out)
{
    if (!out)
        return;
    if (!k) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = k->usage;
    out->wall_ms = loop_now_ms() - k->born_ms;
}

FILE *kern_record_file(sk_kernel *k) { return k->record; }

/* ---- registry ---------------------------------------------------------- */

static int valid_ident(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

sk_function *fn_new(fn_kind kind, const char *skill, const char *name)
{
    sk_function *f = sk_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->kind = kind;
    f->ref = -1;
    f->refcount = 1;
    f->skill = sk_strdup(skill);
    f->name = sk_strdup(name);
    f->full_name = sk_asprintf("%s.%s", skill, name);
    f->description = sk_strdup("");
    if (!f->skill || !f->name || !f->full_name || !f->description) {
        fn_release(NULL, f);
        return NULL;
    }
    return f;
}

static void free_params(sk_param_info *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)p[i].name);
        free((char *)p[i].description);
        free((char *)p[i].default_value);
    }
    free(p);
}

sk_status fn_set_params(sk_function *f, const cfg_param *p, size_t n)
{
    sk_param_info *ps = n ? sk_calloc(n, sizeof *ps) : NULL;
    if (n && !ps)
        return SK_NOMEM;
    for (size_t i = 0; i < n; i++) {
        ps[i].name = sk_strdup(p[i].name);
        ps[i].description = sk_strdup(p[i].description ? p[i].description : "");
        ps[i].default_value = p[i].default_value ? sk_strdup(p[i].default_value) : NULL;
        ps[i].required = p[i].required;
        if (!ps[i].name || !ps[i].description ||
            (p[i].default_value && !ps[i].default_value)) {
            free_params(ps, i + 1);
            return SK_NOMEM;
        }
    }
    free_params(f->params, f->n_params);
    f->params = ps;
    f->n_params = n;
    return SK_OK;
}

void fn_retain(sk_function *f) { f->refcount++; }

void fn_release(sk_kernel *k, sk_function *f)
{
    if (!f || --f->refcount > 0)
        return;
    if (f->kind == FN_NATIVE_OPS && f->ops && f->ops->release && k)
        f->ops->release(k, f);
    free(f->skill);
    free(f->name);
    free(f->full_name);
    free(f->description);
    free(f->path);
    free(f->cfg_origin);
    free_params(f->params, f->n_params);
    tpl_free(f->tpl);
    cfg_free(f->cfg);
    pol_free(f->policy);
    free(f);
}

/* The registry is kept sorted by full name (case-insensitively), so
 * lookups are a binary search and listings come out ordered. */
static size_t reg_lower_bound(const sk_kernel *k, const char *full, int *found)
{
    size_t lo = 0, hi = k->n_fns;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcasecmp(k->fns[mid]->full_name, full);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Numbers f's skill by when the kernel first saw it (0, 1, ...), the
 * order in which reg_resolve tries skills for a bare name.  A skill keeps
 * its number when its functions are replaced or more are added. */
static sk_status skill_seq(sk_kernel *k, sk_function *f)
{
    for (size_t i = 0; i < k->n_skills; i++) {
        if (strcasecmp(k->skills[i], f->skill) == 0) {
            f->skill_seq = i;
            return SK_OK;
        }
    }
    char **skills = sk_realloc(k->skills, (k->n_skills + 1) * sizeof *skills);
    if (!skills)
        return SK_NOMEM;
    k->skills = skills;
    if (!(k->skills[k->n_skills] = sk_strdup(f->skill)))
        return SK_NOMEM;
    f->skill_seq = k->n_skills++;
    return SK_OK;
}

sk_status reg_add(sk_kernel *k, sk_function *f)
{
    if (!valid_ident(f->skill) || !valid_ident(f->name)) {
        sk_status rc = kern_failf(k, SK_USAGE,
                                  "invalid function name \"%s\": skill and "
                                  "function names use letters, digits and _",
                                  f->full_name);
        fn_release(k, f);
        return rc;
    }
    if (skill_seq(k, f) != SK_OK) {
        fn_release(k, f);
        return kern_fail(k, NULL);
    }
    int found;
    size_t i = reg_lower_bound(k, f->full_name, &found);
    if (found) {
        fn_release(k, k->fns[i]);
        k->fns[i] = f;
        return SK_OK;
    }
    if (k->n_fns == k->cap_fns) {
        size_t cap = k->cap_fns ? k->cap_fns * 2 : 32;
        sk_function **fns = sk_realloc(k->fns, cap * sizeof *fns);
        if (!fns) {
            fn_release(k, f);
            return kern_fail(k, NULL);
        }
        k->fns = fns;
        k->cap_fns = cap;
    }
    memmove(k->fns + i + 1, k->fns + i, (k->n_fns - i) * sizeof *k->fns);
    k->fns[i] = f;
    k->n_fns++;
    return SK_OK;
}

sk_function *reg_find(const sk_kernel *k, const char *full_name)
{
    if (!full_name)
        return NULL;
    int found;
    size_t i = reg_lower_bound(k, full_name, &found);
    return found ? k->fns[i] : NULL;
}

/* A name without a skill is resolved as Semantic Kernel resolves a
 * function name without a plugin name: the function of the skill
 * registered first that has one (SK .NET's
 * KernelPluginExtensions.TryGetFunction, SK Python's Kernel.get_function),
 * so {{date}} finds the built-in time.Date.  skein looks in the caller's
 * own skill before that.  A name a model chose (grant non-NULL) is
 * resolved only among the functions the grant allows, and must name one
 * of them unambiguously: a model cannot reach a function by shadowing, nor
 * is it handed the first of several it may call.  When the grant allows
 * none of the functions of that name, the first of them is returned, so
 * that the caller reports it as denied. */
sk_function *reg_resolve(const sk_kernel *k, const char *name,
                         const char *prefer_skill, const sk_grant *grant)
{
    if (!name)
        return NULL;
    if (strchr(name, '.'))
        return reg_find(k, name);
    if (prefer_skill) {
        char *full = sk_asprintf("%s.%s", prefer_skill, name);
        if (full) {
            sk_function *f = reg_find(k, full);
            free(full);
            if (f && grant_allows(grant, f))
                return f;
        }
    }
    sk_function *first = NULL, *allowed = NULL;
    size_t n_allowed = 0;
    for (size_t i = 0; i < k->n_fns; i++) {
        sk_function *f = k->fns[i];
        if (strcasecmp(f->name, name) != 0)
            continue;
        if (!first || f->skill_seq < first->skill_seq)
            first = f;
        if (grant_allows(grant, f)) {
            n_allowed++;
            if (!allowed || f->skill_seq < allowed->skill_seq)
                allowed = f;
        }
    }
    if (!grant)
        return first;
    if (n_allowed > 1)
        return NULL; /* ambiguous for a model: it must name the skill */
    return allowed ? allowed : first;
}

sk_function *reg_find_short(const sk_kernel *k, const char *name,
                            const char *prefer_skill)
{
    return reg_resolve(k, name, prefer_skill, NULL);
}

/* Adds the variables a template uses as parameters when its config names
 * none, as Semantic Kernel 1.x does, so manuals list them. */
static sk_status infer_params(sk_function *f)
{
    const sk_template *t = f->tpl;
    cfg_param ps[64];
    size_t n = 0;
    for (size_t i = 0; i < t->n && n < 64; i++) {
        const tpl_block *b = &t->blocks[i];
        const char *names[16];
        size_t nn = 0;
        if (b->kind == TB_VAR)
            names[nn++] = b->text;
        for (size_t a = 0; b->kind == TB_CALL && a < b->n_args && nn < 16; a++)
            if (b->args[a].is_var)
                names[nn++] = b->args[a].value;
        for (size_t j = 0; j < nn && n < 64; j++) {
            int dup = 0;
            for (size_t m = 0; m < n; m++)
                dup |= strcasecmp(ps[m].name, names[j]) == 0;
            if (!dup) {
                ps[n].name = (char *)names[j];
                ps[n].description = "";
                ps[n].default_value = NULL;
                ps[n].required = 0;
                n++;
            }
        }
    }
    return fn_set_params(f, ps, n);
}

sk_status reg_add_prompt(sk_kernel *k, const prompt_src *src)
{
    sk_function *f = fn_new(FN_SEMANTIC, src->skill, src->name);
    if (!f)
        return kern_fail(k, NULL);
    char *msg = NULL;
    const char *cfg_text = src->cfg;
    size_t cfg_len = src->cfg_len;
    if (!cfg_text) {
        cfg_text = "{}";
        cfg_len = 2;
    }
    /* the config first: it says whether the template is one skein can
     * read at all (template_format) */
    sk_status rc = cfg_parse_mapped(cfg_text, cfg_len,
                                    src->cfg_origin ? src->cfg_origin : "config.json",
                                    src->cfg_map, &f->cfg, &msg);
    if (rc != SK_OK) {
        fn_release(k, f);
        if (!msg)
            return rc == SK_NOMEM ? kern_fail(k, NULL)
                                  : kern_failf(k, rc, "%s", sk_strerror(rc));
        kern_failf(k, rc, "%s", msg);
        free(msg);
        return rc;
    }
    rc = tpl_parse_at(src->tpl, src->tpl_len, src->tpl_origin, src->tpl_at,
                      &f->tpl, &msg);
    if (rc != SK_OK) {
        fn_release(k, f);
        if (!msg)
            return rc == SK_NOMEM ? kern_fail(k, NULL)
                                  : kern_failf(k, rc, "%s: %s", src->tpl_origin,
                                               sk_strerror(rc));
        kern_failf(k, rc, "%s", msg);
        free(msg);
        return rc;
    }
    if (f->cfg->description) {
        char *d = sk_strdup(f->cfg->description);
        if (!d) {
            fn_release(k, f);
            return kern_fail(k, NULL);
        }
        free(f->description);
        f->description = d;
    }
    if (src->cfg && src->cfg_origin &&
        !(f->cfg_origin = sk_strdup(src->cfg_origin))) {
        fn_release(k, f);
        return kern_fail(k, NULL);
    }
    if (src->path && !(f->path = sk_strdup(src->path))) {
        fn_release(k, f);
        return kern_fail(k, NULL);
    }
    sk_err *perr = NULL;
    if (!kern_policy(k, f, &perr)) {
        fn_release(k, f);
        return kern_fail(k, perr);
    }
    rc = f->cfg->n_params ? fn_set_params(f, f->cfg->params, f->cfg->n_params)
                          : infer_params(f);
    if (rc != SK_OK) {
        fn_release(k, f);
        return kern_fail(k, NULL);
    }
    if (src->taken) {
        fn_release(k, f);
        return kern_failf(k, SK_CONFIG, "%s", src->taken);
    }
    return reg_add(k, f);
}

sk_status reg_add_semantic(sk_kernel *k, const char *skill, const char *name,
                           const char *tpl_text, size_t tpl_len,
                           const char *tpl_origin, const char *cfg_text,
                           size_t cfg_len, const char *cfg_origin,
                           const char *path)
{
    prompt_src src = {.skill = skill, .name = name, .tpl = tpl_text,
                      .tpl_len = tpl_len, .tpl_origin = tpl_origin,
                      .cfg = cfg_text, .cfg_len = cfg_len,
                      .cfg_origin = cfg_origin, .path = path};
    return reg_add_prompt(k, &src);
}

sk_status sk_kernel_add_semantic(sk_kernel *k, const char *skill,
                                 const char *name, const char *template_text,
                                 const char *config_json)
{
    if (!k || !skill || !name || !template_text)
        return SK_USAGE;
    char *origin = sk_asprintf("%s.%s", skill, name);
    char *corigin = sk_asprintf("%s.%s config", skill, name);
    if (!origin || !corigin) {
        free(origin);
        free(corigin);
        return kern_fail(k, NULL);
    }
    sk_status rc = reg_add_semantic(
        k, skill, name, template_text, strlen(template_text), origin,
        config_json, config_json ? strlen(config_json) : 0, corigin, NULL);
    free(origin);
    free(corigin);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

sk_status sk_kernel_add_native(sk_kernel *k, const char *skill,
                               const char *name, const char *description,
                               const sk_param_info *params, size_t n_params,
                               sk_native_fn fn, void *ud)
{
    if (!k || !skill || !name || !fn || (n_params && !params))
        return SK_USAGE;
    sk_function *f = fn_new(FN_NATIVE_C, skill, name);
    if (!f)
        return kern_fail(k, NULL);
    f->cfn = fn;
    f->cud = ud;
    sk_status rc = SK_OK;
    if (description) {
        char *d = sk_strdup(description);
        if (!d)
            rc = SK_NOMEM;
        else {
            free(f->description);
            f->description = d;
        }
    }
    if (rc == SK_OK && n_params) {
        cfg_param tmp[64];
        if (n_params > 64) {
            fn_release(k, f);
            return kern_failf(k, SK_USAGE, "too many parameters (%zu > 64)", n_params);
        }
        for (size_t i = 0; i < n_params; i++) {
            if (!params[i].name) {
                fn_release(k, f);
                return kern_failf(k, SK_USAGE, "parameter %zu has no name", i + 1);
            }
            tmp[i].name = (char *)params[i].name;
            tmp[i].description = (char *)params[i].description;
            tmp[i].default_value = (char *)params[i].default_value;
            tmp[i].required = params[i].required;
        }
        rc = fn_set_params(f, tmp, n_params);
    }
    if (rc != SK_OK) {
        fn_release(k, f);
        return kern_fail(k, NULL);
    }
    rc = reg_add(k, f);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

static void fill_info(const sk_function *f, sk_function_info *info)
{
    info->skill = f->skill;
    info->name = f->name;
    info->full_name = f->full_name;
    info->description = f->description ? f->description : "";
    info->kind = f->kind == FN_SEMANTIC ? "semantic" : "native";
    info->path = f->path;
    info->params = f->params;
    info->n_params = f->n_params;
}

size_t sk_kernel_function_count(const sk_kernel *k) { return k ? k->n_fns : 0; }

sk_status sk_kernel_function_at(const sk_kernel *k, size_t i,
                                sk_function_info *info)
{
    if (!k || !info || i >= k->n_fns)
        return SK_USAGE;
    fill_info(k->fns[i], info);
    return SK_OK;
}

sk_status sk_kernel_function_find(const sk_kernel *k, const char *full_name,
                                  sk_function_info *info)
{
    if (!k || !full_name || !info)
        return SK_USAGE;
    sk_function *f = reg_find(k, full_name);
    if (!f)
        return SK_NOT_FOUND;
    fill_info(f, info);
    return SK_OK;
}

/* ---- templates (public wrappers) --------------------------------------- */

sk_status sk_template_parse(sk_kernel *k, const char *text, size_t len,
                            const char *origin, sk_template **out)
{
    if (!k || !text || !out)
        return SK_USAGE;
    *out = NULL;
    char *msg = NULL;
    sk_status rc = tpl_parse(text, len, origin ? origin : "template", out, &msg);
    if (rc != SK_OK) {
        if (msg)
            kern_failf(k, rc, "%s", msg);
        else
            kern_failf(k, rc, "%s: %s", origin ? origin : "template",
                       sk_strerror(rc));
        free(msg);
        return rc;
    }
    kern_ok(k);
    return SK_OK;
}

void sk_template_free(sk_template *t) { tpl_free(t); }

void resp_free(model_resp *r)
{
    if (!r)
        return;
    free(r->text);
    free(r->finish_reason);
    free(r->model);
    for (size_t i = 0; i < r->n_logprobs; i++)
        free(r->logprobs[i].token);
    free(r->logprobs);
    tool_calls_free(r->calls, r->n_calls);
    free(r);
}

/* ---- policies ---------------------------------------------------------- */

sk_usage *kern_usage(sk_kernel *k) { return &k->usage; }

rd_rules *kern_redact_rules(sk_kernel *k)
{
    if (!k->redact_rules && rd_rules_default(&k->redact_rules) != SK_OK)
        k->redact_rules = NULL;
    return k->redact_rules;
}

const sk_policy *kern_base_policy(sk_kernel *k)
{
    if (!k->base_policy) {
        char *msg = NULL;
        if (pol_parse(NULL, 0, "defaults", NULL, &k->base_policy, &msg) != SK_OK)
            k->base_policy = NULL;
        free(msg);
    }
    return k->base_policy;
}

const sk_policy *kern_policy(sk_kernel *k, sk_function *f, sk_err **err)
{
    *err = NULL;
    if (f->policy && f->policy_gen == k->policy_gen)
        return f->policy;
    const sk_policy *base = kern_base_policy(k);
    if (!base) {
        *err = err_new(SK_NOMEM, "out of memory");
        return NULL;
    }
    sk_policy *p = NULL;
    char *msg = NULL;
    const char *raw = f->cfg && f->cfg->raw ? f->cfg->raw : NULL;
    char *origin = f->cfg_origin ? sk_strdup(f->cfg_origin)
                   : f->path     ? sk_asprintf("%s/config.json", f->path)
                                 : sk_asprintf("%s config", f->full_name);
    sk_status rc = pol_parse(raw, raw ? strlen(raw) : 0,
                             origin ? origin : f->full_name, base, &p, &msg);
    free(origin);
    if (rc != SK_OK) {
        *err = msg ? err_new(rc, "%s", msg) : err_new(rc, "%s", sk_strerror(rc));
        free(msg);
        return NULL;
    }
    pol_free(f->policy);
    f->policy = p;
    f->policy_gen = k->policy_gen;
    return p;
}

sk_status sk_kernel_set_policy(sk_kernel *k, const char *json)
{
    if (!k)
        return SK_USAGE;
    sk_policy *p = NULL;
    char *msg = NULL;
    sk_status rc = pol_parse(json, json ? strlen(json) : 0, "kernel policy",
                             NULL, &p, &msg);
    if (rc != SK_OK) {
        rc = msg ? kern_failf(k, rc, "%s", msg) : kern_failf(k, rc, "%s", sk_strerror(rc));
        free(msg);
        return rc;
    }
    /* Every function's policy must be valid over the new base before it
     * is adopted, so a bad kernel policy cannot break functions later. */
    pol_free(k->base_policy);
    k->base_policy = p;
    k->policy_gen++;
    for (size_t i = 0; i < k->n_fns; i++) {
        if (k->fns[i]->kind != FN_SEMANTIC)
            continue;
        sk_err *e = NULL;
        if (!kern_policy(k, k->fns[i], &e))
            return kern_fail(k, e);
    }
    kern_ok(k);
    return SK_OK;
}

/* ---- error details ----------------------------------------------------- */

const char *sk_error_get(sk_kernel *k, const char *field)
{
    if (!k || !field || !k->err || !k->err->detail_json)
        return NULL;
    cJSON *d = cJSON_Parse(k->err->detail_json);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, field);
    free(k->err_field);
    k->err_field = cJSON_IsString(v) ? sk_strdup(v->valuestring) : NULL;
    cJSON_Delete(d);
    return k->err_field;
}

sk_status sk_raise_uncertain(sk_kernel *k, const char *reason,
                             const char *question, double confidence)
{
    if (!k)
        return SK_USAGE;
    if (confidence > 1)
        confidence = 1;
    sk_err *e = err_new(SK_UNCERTAIN, "uncertain: %s",
                        reason && *reason ? reason : "the intent is unclear");
    if (e)
        e->detail_json = unc_detail_json(reason, question, confidence, NULL, 0, NULL);
    return kern_fail(k, e);
}
