/* fuzz_yaml.c -- libFuzzer target for Semantic Kernel's YAML prompt
 * functions (yml_prompt_parse), and what the loader does with a parse:
 * the settings through cfg_parse_mapped, the template through
 * tpl_parse_at.
 *
 * Any input must end in SK_OK or an error whose message starts with the
 * file's name; a parse must hand back a template of the length it says,
 * positions in order and inside the settings text, and settings and a
 * template that the readers after it either take or refuse with a
 * located message. */
#include <stdlib.h>
#include <string.h>

#include "all.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void located(const char *err)
{
    if (!err || strncmp(err, "f.yaml:", 7) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    yml_prompt *y = NULL;
    char *err = NULL;
    sk_status rc = yml_prompt_parse((const char *)data, size, "f.yaml", &y, &err);
    if (rc == SK_CONFIG || rc == SK_TOO_LARGE) {
        if (y)
            abort();
        located(err);
        free(err);
        return 0;
    }
    if (rc != SK_OK || !y || err || !y->tpl || !y->config ||
        strlen(y->config) != y->config_len || y->tpl[y->tpl_len] != '\0' ||
        y->tpl_at.line < 1 || y->tpl_at.col < 1)
        abort();
    for (size_t i = 0; i < y->n_pos; i++)
        if (y->pos[i].off > y->config_len || y->pos[i].line < 1 || y->pos[i].col < 1 ||
            (i && y->pos[i].off < y->pos[i - 1].off))
            abort();
    cfg_srcmap map = {y->pos, y->n_pos};
    cfg_function *c = NULL;
    rc = cfg_parse_mapped(y->config, y->config_len, "f.yaml", &map, &c, &err);
    if (rc == SK_OK) {
        if (!c || err)
            abort();
    } else if (rc == SK_CONFIG || rc == SK_TOO_LARGE) {
        if (c)
            abort();
        located(err);
    } else {
        abort();
    }
    cfg_free(c);
    free(err);
    err = NULL;
    sk_template *t = NULL;
    rc = tpl_parse_at(y->tpl, y->tpl_len, "f.yaml", &y->tpl_at, &t, &err);
    if (rc == SK_TEMPLATE)
        located(err);
    else if (rc != SK_OK && rc != SK_TOO_LARGE)
        abort();
    tpl_free(t);
    free(err);
    yml_prompt_free(y);
    return 0;
}
