/*
 * models.c -- `skein models`: the default model, the names the config
 * file gives models (aliases and service ids, which --model takes), and
 * the connector kinds a spec can start with.  Credentials in a spec's URL
 * (user:password@, ?api-key=...) are masked: a listing is for reading,
 * not for copying keys around.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* A query parameter whose value is a secret. */
static int secret_param(const char *name, size_t n)
{
    static const char *const words[] = {"key", "token", "secret", "password", "sig",
                                        "auth"};
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= n; i++)
            if (strncasecmp(name + i, words[w], wl) == 0)
                return 1;
    }
    return 0;
}

/* spec with the password of a URL's user info and the values of secret
 * query parameters replaced by "***".  Caller frees; NULL: no memory. */
char *cli_mask_spec(const char *spec)
{
    size_t n = strlen(spec);
    char *out = malloc(n * 2 + 8);
    if (!out)
        return NULL;
    size_t o = 0;
    const char *scheme = strstr(spec, "://");
    const char *host = scheme ? scheme + 3 : NULL;
    /* user info: up to the last '@' before the path */
    const char *at = NULL;
    if (host) {
        const char *end = host + strcspn(host, "/?#");
        for (const char *p = host; p < end; p++)
            if (*p == '@')
                at = p;
    }
    for (const char *p = spec; *p;) {
        if (at && p == host) {
            const char *colon = memchr(host, ':', (size_t)(at - host));
            size_t keep = colon ? (size_t)(colon - host) : (size_t)(at - host);
            memcpy(out + o, host, keep);
            o += keep;
            if (colon) {
                memcpy(out + o, ":***", 4);
                o += 4;
            }
            p = at;
            continue;
        }
        if ((*p == '?' || *p == '&') && host && p > host) {
            out[o++] = *p++;
            size_t name = strcspn(p, "=&#");
            memcpy(out + o, p, name);
            o += name;
            if (p[name] == '=' && secret_param(p, name)) {
                memcpy(out + o, "=***", 4);
                o += 4;
                p += name + 1;
                p += strcspn(p, "&#");
            } else {
                p += name;
            }
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

/* Whether the kernel has a connector for kind ("openai+vllm" is of the
 * family "openai+"). */
static int known_kind(sk_kernel *k, const char *kind)
{
    for (size_t i = 0; i < sk_kernel_connector_kind_count(k); i++) {
        const char *name = sk_kernel_connector_kind_at(k, i);
        size_t n = strlen(name);
        if (n && name[n - 1] == '+' ? strncmp(kind, name, n) == 0 && kind[n]
                                    : strcmp(kind, name) == 0)
            return 1;
    }
    return 0;
}

/* The kind of a spec: what comes before its ':'.  Into buf. */
static const char *spec_kind(const char *spec, char *buf, size_t size)
{
    size_t n = strcspn(spec, ":");
    if (n >= size)
        n = size - 1;
    memcpy(buf, spec, n);
    buf[n] = '\0';
    return buf;
}

static int models_json(sk_kernel *k)
{
    cJSON *root = cJSON_CreateObject();
    char kind[64];
    const char *def = sk_kernel_model(k);
    if (def) {
        char *m = cli_mask_spec(def);
        cJSON *d = cJSON_AddObjectToObject(root, "default");
        cJSON_AddStringToObject(d, "spec", m ? m : "");
        cJSON_AddStringToObject(d, "kind", spec_kind(def, kind, sizeof kind));
        free(m);
    } else {
        cJSON_AddNullToObject(root, "default");
    }
    cJSON *names = cJSON_AddArrayToObject(root, "names");
    for (size_t i = 0; i < sk_kernel_model_name_count(k); i++) {
        sk_model_name mn;
        if (sk_kernel_model_name_at(k, i, &mn) != SK_OK)
            break;
        char *m = cli_mask_spec(mn.spec);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", mn.name);
        cJSON_AddStringToObject(o, "spec", m ? m : "");
        cJSON_AddStringToObject(o, "kind", spec_kind(mn.spec, kind, sizeof kind));
        cJSON_AddStringToObject(o, "from", mn.alias ? "aliases" : "services");
        cJSON_AddBoolToObject(o, "known_kind", known_kind(k, kind));
        cJSON_AddItemToArray(names, o);
        free(m);
    }
    cJSON *kinds = cJSON_AddArrayToObject(root, "kinds");
    for (size_t i = 0; i < sk_kernel_connector_kind_count(k); i++)
        cJSON_AddItemToArray(kinds, cJSON_CreateString(sk_kernel_connector_kind_at(k, i)));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        return cli_error(SK_NOMEM, NULL, "out of memory");
    puts(text);
    cJSON_free(text);
    return EXIT_OK;
}

int cli_models(sk_kernel *k, int json)
{
    if (json)
        return models_json(k);
    char kind[64];
    const char *def = sk_kernel_model(k);
    if (def) {
        char *m = cli_mask_spec(def);
        printf("default model: %s (%s)\n", m ? m : def, spec_kind(def, kind, sizeof kind));
        free(m);
    } else {
        printf("default model: none (set SKEIN_MODEL or \"model\" in the config file, "
               "or pass --model)\n");
    }
    size_t n = sk_kernel_model_name_count(k);
    int w = 4;
    for (size_t i = 0; i < n; i++) {
        sk_model_name mn;
        if (sk_kernel_model_name_at(k, i, &mn) == SK_OK && (int)strlen(mn.name) > w)
            w = (int)strlen(mn.name);
    }
    if (n)
        printf("\n%-*s  %-16s  %-8s  %s\n", w, "NAME", "KIND", "FROM", "MODEL");
    for (size_t i = 0; i < n; i++) {
        sk_model_name mn;
        if (sk_kernel_model_name_at(k, i, &mn) != SK_OK)
            break;
        char *m = cli_mask_spec(mn.spec);
        spec_kind(mn.spec, kind, sizeof kind);
        printf("%-*s  %-16s  %-8s  %s%s\n", w, mn.name, kind, mn.alias ? "alias" : "service",
               m ? m : "", known_kind(k, kind) ? "" : "  (no connector of this kind)");
        free(m);
    }
    if (!n)
        printf("\nno names for models (\"aliases\" or \"services\" in the config file)\n");
    printf("\nconnector kinds:");
    for (size_t i = 0; i < sk_kernel_connector_kind_count(k); i++) {
        const char *name = sk_kernel_connector_kind_at(k, i);
        size_t len = strlen(name);
        printf("%s %s%s", i ? "," : "", name, len && name[len - 1] == '+' ? "FLAVOR" : "");
    }
    putchar('\n');
    return EXIT_OK;
}
