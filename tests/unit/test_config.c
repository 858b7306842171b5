/* test_config.c -- config.json in both Semantic Kernel schemas: values,
 * permissive syntax, error positions, ceilings, allocation failure. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* The fixture directory: $SKEIN_SRC/tests/data, else data/ relative to
 * the tests directory ctest runs in. */
static const char *data_path(const char *rel)
{
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ % 4];
    const char *src = getenv("SKEIN_SRC");
    if (src && *src)
        snprintf(p, 1024, "%s/tests/data/%s", src, rel);
    else
        snprintf(p, 1024, "data/%s", rel);
    return p;
}

static cfg_function *parse_ok(const char *json)
{
    cfg_function *c = NULL;
    char *err = NULL;
    sk_status rc = cfg_parse(json, strlen(json), "t.json", &c, &err);
    CHECK_INT(rc, SK_OK);
    if (err)
        fprintf(stderr, "unexpected error: %s\n", err);
    CHECK(err == NULL);
    free(err);
    return c;
}

/* Parses json expecting `code` and an error message that starts with
 * "t.json:LINE:COL: " and contains `needle`. */
static void parse_err(const char *json, sk_status code, int line, int col,
                      const char *needle)
{
    cfg_function *c = (cfg_function *)1;
    char *err = NULL;
    sk_status rc = cfg_parse(json, strlen(json), "t.json", &c, &err);
    CHECK_INT(rc, code);
    CHECK(c == NULL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.json:%d:%d: ", line, col);
    CHECK(err && strncmp(err, prefix, strlen(prefix)) == 0);
    if (err && strncmp(err, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  got \"%s\", want prefix \"%s\"\n", err, prefix);
    CHECK_CONTAINS(err, needle);
    free(err);
}

static int is_nan(double d) { return isnan(d); }

TEST(classic_full)
{
    const char *json =
        "{\n"
        "  \"schema\": 1,\n"
        "  \"type\": \"completion\",\n"
        "  \"description\": \"Write a haiku\",\n"
        "  \"completion\": {\n"
        "    \"max_tokens\": 256,\n"
        "    \"temperature\": 0.7,\n"
        "    \"top_p\": 0.5,\n"
        "    \"presence_penalty\": 0.25,\n"
        "    \"frequency_penalty\": -0.5,\n"
        "    \"stop_sequences\": [\"\\n\\n\", \"END\"]\n"
        "  },\n"
        "  \"input\": {\n"
        "    \"parameters\": [\n"
        "      {\"name\": \"input\", \"description\": \"Topic\", "
        "\"defaultValue\": \"autumn\"},\n"
        "      {\"name\": \"style\", \"description\": \"Tone\", "
        "\"defaultValue\": \"\", \"required\": \"True\"},\n"
        "      {\"name\": \"count\"}\n"
        "    ]\n"
        "  },\n"
        "  \"default_services\": [\"gpt-4o\", \"local\"],\n"
        "  \"x_unknown\": {\"kept\": [1, 2, 3]}\n"
        "}\n";
    cfg_function *c = parse_ok(json);
    if (!c)
        return;
    CHECK_INT(c->schema, 1);
    CHECK_STR(c->type, "completion");
    CHECK(c->name == NULL);
    CHECK_STR(c->description, "Write a haiku");
    CHECK(c->model == NULL);
    CHECK_INT(c->n_settings, 1);
    const cfg_settings *s = &c->settings[0];
    CHECK_STR(s->service_id, "default");
    CHECK(s->model_id == NULL);
    CHECK_INT(s->max_tokens, 256);
    CHECK(s->temperature == 0.7);
    CHECK(s->top_p == 0.5);
    CHECK(s->presence_penalty == 0.25);
    CHECK(s->frequency_penalty == -0.5);
    CHECK_INT(s->n_stop, 2);
    if (s->n_stop == 2) {
        CHECK_STR(s->stop[0], "\n\n");
        CHECK_STR(s->stop[1], "END");
    }
    CHECK_INT(c->n_params, 3);
    if (c->n_params == 3) {
        CHECK_STR(c->params[0].name, "input");
        CHECK_STR(c->params[0].description, "Topic");
        CHECK_STR(c->params[0].default_value, "autumn");
        CHECK_INT(c->params[0].required, 0);
        CHECK_STR(c->params[1].name, "style");
        CHECK_STR(c->params[1].default_value, "");
        CHECK_INT(c->params[1].required, 1);
        CHECK_STR(c->params[2].name, "count");
        CHECK(c->params[2].description == NULL);
        CHECK(c->params[2].default_value == NULL);
    }
    CHECK_INT(c->n_default_services, 2);
    if (c->n_default_services == 2) {
        CHECK_STR(c->default_services[0], "gpt-4o");
        CHECK_STR(c->default_services[1], "local");
    }
    CHECK_STR(c->raw, json);
    CHECK_CONTAINS(c->raw, "\"x_unknown\"");
    cfg_free(c);
}

TEST(v1_full)
{
    const char *json =
        "{\n"
        "  \"schema\": 1,\n"
        "  \"name\": \"Haiku\",\n"
        "  \"description\": \"Write a haiku\",\n"
        "  \"template_format\": \"semantic-kernel\",\n"
        "  \"input_variables\": [\n"
        "    {\"name\": \"input\", \"description\": \"Topic\", "
        "\"default\": \"rain\", \"is_required\": true},\n"
        "    {\"name\": \"lines\", \"default\": 3, \"is_required\": false},\n"
        "    {\"name\": \"opts\", \"default\": {\"a\": [1, true]}},\n"
        "    {\"name\": \"flag\", \"default\": false}\n"
        "  ],\n"
        "  \"execution_settings\": {\n"
        "    \"default\": {\"max_tokens\": 100, \"temperature\": 0.2},\n"
        "    \"gpt4\": {\n"
        "      \"model_id\": \"gpt-4o\",\n"
        "      \"max_tokens\": \"300\",\n"
        "      \"temperature\": \"1.5\",\n"
        "      \"top_p\": \"0.9\",\n"
        "      \"presence_penalty\": 1,\n"
        "      \"frequency_penalty\": \"-1\",\n"
        "      \"stop_sequences\": [\"###\"],\n"
        "      \"response_format\": \"json_object\"\n"
        "    }\n"
        "  },\n"
        "  \"model\": \"openai:gpt-4o-mini\"\n"
        "}\n";
    cfg_function *c = parse_ok(json);
    if (!c)
        return;
    CHECK_INT(c->schema, 1);
    CHECK_STR(c->name, "Haiku");
    CHECK_STR(c->type, "completion");
    CHECK_STR(c->description, "Write a haiku");
    CHECK_STR(c->model, "openai:gpt-4o-mini");
    CHECK_INT(c->n_params, 4);
    if (c->n_params == 4) {
        CHECK_STR(c->params[0].name, "input");
        CHECK_STR(c->params[0].default_value, "rain");
        CHECK_INT(c->params[0].required, 1);
        CHECK_STR(c->params[1].default_value, "3");
        CHECK_INT(c->params[1].required, 0);
        CHECK_STR(c->params[2].default_value, "{\"a\":[1,true]}");
        CHECK_STR(c->params[3].default_value, "false");
    }
    CHECK_INT(c->n_settings, 2);
    if (c->n_settings == 2) {
        const cfg_settings *d = &c->settings[0], *g = &c->settings[1];
        CHECK_STR(d->service_id, "default");
        CHECK_INT(d->max_tokens, 100);
        CHECK(d->temperature == 0.2);
        CHECK(is_nan(d->top_p));
        CHECK(is_nan(d->presence_penalty));
        CHECK(is_nan(d->frequency_penalty));
        CHECK_INT(d->n_stop, 0);
        CHECK_STR(g->service_id, "gpt4");
        CHECK_STR(g->model_id, "gpt-4o");
        CHECK_INT(g->max_tokens, 300);
        CHECK(g->temperature == 1.5);
        CHECK(g->top_p == 0.9);
        CHECK(g->presence_penalty == 1);
        CHECK(g->frequency_penalty == -1);
        CHECK_INT(g->n_stop, 1);
        if (g->n_stop == 1)
            CHECK_STR(g->stop[0], "###");
    }
    CHECK_CONTAINS(c->raw, "response_format");
    cfg_free(c);
}

TEST(v1_settings_array)
{
    cfg_function *c = parse_ok(
        "{\"execution_settings\": [\n"
        "  {\"service_id\": \"fast\", \"max_tokens\": 10},\n"
        "  {\"model_id\": \"m\", \"temperature\": 0}\n"
        "]}");
    if (!c)
        return;
    CHECK_INT(c->n_settings, 2);
    if (c->n_settings == 2) {
        CHECK_STR(c->settings[0].service_id, "fast");
        CHECK_INT(c->settings[0].max_tokens, 10);
        CHECK_STR(c->settings[1].service_id, "default");
        CHECK_STR(c->settings[1].model_id, "m");
        CHECK(c->settings[1].temperature == 0);
    }
    cfg_free(c);
}

TEST(defaults_and_nulls)
{
    cfg_function *c = parse_ok("{}");
    if (c) {
        CHECK_INT(c->schema, 0);
        CHECK_STR(c->type, "completion");
        CHECK_STR(c->description, "");
        CHECK(c->name == NULL && c->model == NULL);
        CHECK_INT(c->n_params, 0);
        CHECK_INT(c->n_settings, 0);
        CHECK_INT(c->n_default_services, 0);
        CHECK(cfg_settings_for(c, "default") == NULL);
        CHECK_STR(c->raw, "{}");
    }
    cfg_free(c);
    c = parse_ok("{\"description\": null, \"completion\": {\"max_tokens\": "
                 "null, \"temperature\": null, \"stop_sequences\": null}, "
                 "\"input\": null, \"input_variables\": null, \"execution_"
                 "settings\": null, \"model\": null}");
    if (c) {
        CHECK_STR(c->description, "");
        CHECK_INT(c->n_settings, 1);
        CHECK_INT(c->settings[0].max_tokens, -1);
        CHECK(is_nan(c->settings[0].temperature));
        CHECK_INT(c->settings[0].n_stop, 0);
    }
    cfg_free(c);
}

/* SK reads config.json with trailing commas, comments and any key case. */
TEST(permissive_syntax)
{
    const char *json =
        "// a config\n"
        "{\n"
        "  \"Description\": \"x, y\", /* inline */\n"
        "  \"COMPLETION\": {\"Max_Tokens\": 5, \"stop_sequences\": "
        "[\"a,]\", \"//b\",],},\n"
        "  \"input\": {\"parameters\": [{\"name\": \"input\",},],},\n"
        "}\n"
        "/* trailing */\n";
    cfg_function *c = parse_ok(json);
    if (!c)
        return;
    CHECK_STR(c->description, "x, y");
    CHECK_INT(c->n_settings, 1);
    if (c->n_settings == 1) {
        CHECK_INT(c->settings[0].max_tokens, 5);
        CHECK_INT(c->settings[0].n_stop, 2);
        if (c->settings[0].n_stop == 2) {
            CHECK_STR(c->settings[0].stop[0], "a,]");
            CHECK_STR(c->settings[0].stop[1], "//b");
        }
    }
    CHECK_INT(c->n_params, 1);
    CHECK_STR(c->raw, json); /* raw is the text as written */
    cfg_free(c);
}

TEST(oldest_schema_aliases)
{
    cfg_function *c = parse_ok(
        "{\"default_settings\": {\"max_tokens\": 2000, \"top_p\": 1.0},\n"
        " \"default_backends\": [\"text-davinci-003\"]}");
    if (!c)
        return;
    CHECK_INT(c->n_settings, 1);
    CHECK_STR(c->settings[0].service_id, "default");
    CHECK_INT(c->settings[0].max_tokens, 2000);
    CHECK_INT(c->n_default_services, 1);
    CHECK_STR(c->default_services[0], "text-davinci-003");
    cfg_free(c);
}

TEST(settings_lookup)
{
    cfg_function *c = parse_ok(
        "{\"execution_settings\": {\"a\": {\"max_tokens\": 1}, "
        "\"default\": {\"max_tokens\": 2}, \"b\": {\"max_tokens\": 3}}}");
    if (!c)
        return;
    CHECK_INT(cfg_settings_for(c, "a")->max_tokens, 1);
    CHECK_INT(cfg_settings_for(c, "b")->max_tokens, 3);
    CHECK_INT(cfg_settings_for(c, "nope")->max_tokens, 2);
    CHECK_INT(cfg_settings_for(c, NULL)->max_tokens, 2);
    cfg_free(c);
    c = parse_ok("{\"execution_settings\": {\"x\": {\"max_tokens\": 7}, "
                 "\"y\": {\"max_tokens\": 8}}}");
    if (!c)
        return;
    CHECK_INT(cfg_settings_for(c, "y")->max_tokens, 8);
    CHECK_INT(cfg_settings_for(c, "default")->max_tokens, 7); /* first */
    cfg_free(c);
    CHECK(cfg_settings_for(NULL, "x") == NULL);
}

TEST(syntax_errors)
{
    parse_err("{\n  \"a\": 1\n  \"b\": 2\n}", SK_CONFIG, 3, 3, "invalid JSON");
    parse_err("{\"a\": tru}", SK_CONFIG, 1, 7, "invalid JSON");
    parse_err("", SK_CONFIG, 1, 1, "empty");
    parse_err("  \n  ", SK_CONFIG, 2, 3, "empty");
    parse_err("{} {}", SK_CONFIG, 1, 4, "after the JSON");
    parse_err("{\"a\": [,]}", SK_CONFIG, 1, 8, "invalid JSON");
    parse_err("{,}", SK_CONFIG, 1, 3, "invalid JSON");
    parse_err("{\"a\": 1 /* open", SK_CONFIG, 1, 9, "unterminated comment");
    parse_err("[1]", SK_CONFIG, 1, 1, "must be a JSON object");
    parse_err("\n\"text\"", SK_CONFIG, 2, 1, "must be a JSON object");
}

TEST(type_errors)
{
    parse_err("{\n  \"schema\": \"one\"\n}", SK_CONFIG, 2, 13, "'schema'");
    parse_err("{\"schema\": -1}", SK_CONFIG, 1, 12, "'schema'");
    parse_err("{\"description\": 5}", SK_CONFIG, 1, 17, "'description'");
    parse_err("{\"type\": []}", SK_CONFIG, 1, 10, "'type'");
    parse_err("{\"name\": {}}", SK_CONFIG, 1, 10, "'name'");
    parse_err("{\"model\": 1}", SK_CONFIG, 1, 11, "'model'");
    parse_err("{\"model\": \"\"}", SK_CONFIG, 1, 11, "'model'");
    parse_err("{\"execution_settings\": {\n  \"default\": {\n"
              "    \"temperature\": \"hot\"\n  }\n}}",
              SK_CONFIG, 3, 20, "'temperature' must be a number");
    parse_err("{\"completion\": {\"temperature\": 3}}", SK_CONFIG, 1, 32,
              "between 0 and 2");
    parse_err("{\"completion\": {\"top_p\": 1.5}}", SK_CONFIG, 1, 26,
              "'top_p'");
    parse_err("{\"completion\": {\"presence_penalty\": -3}}", SK_CONFIG, 1,
              37, "'presence_penalty'");
    parse_err("{\"completion\": {\"frequency_penalty\": true}}", SK_CONFIG,
              1, 38, "'frequency_penalty'");
    parse_err("{\"completion\": {\"max_tokens\": -5}}", SK_CONFIG, 1, 31,
              "'max_tokens' must be an integer");
    parse_err("{\"completion\": {\"max_tokens\": 1.5}}", SK_CONFIG, 1, 31,
              "'max_tokens'");
    parse_err("{\"completion\": {\"max_tokens\": \"12x\"}}", SK_CONFIG, 1, 31,
              "'max_tokens'");
    parse_err("{\"completion\": {\"max_tokens\": \" 12\"}}", SK_CONFIG, 1, 31,
              "'max_tokens'");
    parse_err("{\"completion\": {\"max_tokens\": 1e12}}", SK_CONFIG, 1, 31,
              "'max_tokens'");
    parse_err("{\"completion\": {\"model_id\": 4}}", SK_CONFIG, 1, 29,
              "'model_id'");
    parse_err("{\"completion\": {\"stop_sequences\": \"END\"}}", SK_CONFIG,
              1, 35, "'stop_sequences'");
    parse_err("{\"completion\": {\"stop_sequences\": [\"a\",\n 7]}}",
              SK_CONFIG, 2, 2, "'stop_sequences'");
    parse_err("{\"completion\": 12}", SK_CONFIG, 1, 16, "must be an object");
    parse_err("{\"execution_settings\": \"fast\"}", SK_CONFIG, 1, 24,
              "'execution_settings'");
    parse_err("{\"execution_settings\": {\"a\": {}, \"b\": [1]}}", SK_CONFIG,
              1, 39, "must be an object");
    parse_err("{\"execution_settings\": [{}, \n  5]}", SK_CONFIG, 2, 3,
              "must be an object");
    parse_err("{\"default_services\": \"gpt\"}", SK_CONFIG, 1, 22,
              "'default_services'");
    parse_err("{\"default_services\": [\"a\", null]}", SK_CONFIG, 1, 28,
              "'default_services'");
}

TEST(param_errors)
{
    parse_err("{\"input_variables\": {\"name\": \"input\"}}", SK_CONFIG, 1, 21,
              "'input_variables' must be an array");
    parse_err("{\"input_variables\": [\n  {\"name\": \"a\"},\n  "
              "{\"description\": \"b\"}\n]}",
              SK_CONFIG, 3, 3, "no 'name'");
    parse_err("{\"input_variables\": [{\"name\": \"\"}]}", SK_CONFIG, 1, 31,
              "parameter name");
    parse_err("{\"input_variables\": [{\"name\": \"a-b\"}]}", SK_CONFIG, 1,
              31, "parameter name");
    parse_err("{\"input_variables\": [{\"name\": 3}]}", SK_CONFIG, 1, 31,
              "parameter name");
    parse_err("{\"input_variables\": [{\"name\": \"a\"}, {\"name\": \"A\"}]}",
              SK_CONFIG, 1, 46, "duplicate parameter 'A'");
    parse_err("{\"input_variables\": [\"input\"]}", SK_CONFIG, 1, 22,
              "must be an object");
    parse_err("{\"input_variables\": [{\"name\": \"a\", \"description\": 1}]}",
              SK_CONFIG, 1, 51, "'description'");
    parse_err("{\"input_variables\": [{\"name\": \"a\", \"is_required\": "
              "\"maybe\"}]}",
              SK_CONFIG, 1, 51, "'is_required'");
    parse_err("{\"input\": []}", SK_CONFIG, 1, 11, "'input' must be an object");
    parse_err("{\"input\": {\"parameters\": {}}}", SK_CONFIG, 1, 26,
              "'parameters' must be an array");
    parse_err("{\"input\": {\"parameters\": [\n {\"name\": \"x\"},\n {\"name\": "
              "\"y z\"}]}}",
              SK_CONFIG, 3, 11, "parameter name");
    /* the same name in both schemas' lists is still a duplicate */
    parse_err("{\"input\": {\"parameters\": [{\"name\": \"input\"}]},\n"
              " \"input_variables\": [{\"name\": \"INPUT\"}]}",
              SK_CONFIG, 2, 31, "duplicate");
}

/* Each file in tests/data/bad_configs fails with its path and position. */
TEST(bad_config_files)
{
    static const struct {
        const char *file;
        sk_status code;
        int line, col;
        const char *needle;
    } cases[] = {
        {"missing_comma.json", SK_CONFIG, 4, 3, "invalid JSON"},
        {"truncated.json", SK_CONFIG, 3, 23, "invalid JSON"},
        {"hot_temperature.json", SK_CONFIG, 6, 22, "'temperature'"},
        {"negative_max_tokens.json", SK_CONFIG, 5, 19, "'max_tokens'"},
        {"input_variables_object.json", SK_CONFIG, 3, 22,
         "'input_variables'"},
        {"param_without_name.json", SK_CONFIG, 5, 7, "no 'name'"},
        {"not_an_object.json", SK_CONFIG, 1, 1, "JSON object"},
        {"stop_not_array.json", SK_CONFIG, 3, 23, "'stop_sequences'"},
        {"unterminated_comment.json", SK_CONFIG, 2, 15, "comment"},
        {"trailing_garbage.json", SK_CONFIG, 2, 1, "after the JSON"},
        {"too_deep.json", SK_TOO_LARGE, 1, 70, "deeper than 64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "bad_configs/%s", cases[i].file);
        const char *path = data_path(rel);
        char *text = NULL;
        size_t len = 0;
        CHECK_INT(sk_read_file(path, 1 << 20, &text, &len), SK_OK);
        if (!text)
            continue;
        cfg_function *c = NULL;
        char *err = NULL;
        sk_status rc = cfg_parse(text, len, path, &c, &err);
        CHECK_INT(rc, cases[i].code);
        CHECK(c == NULL);
        char want[1200];
        snprintf(want, sizeof want, "%s:%d:%d: ", path, cases[i].line,
                 cases[i].col);
        if (!err || strncmp(err, want, strlen(want)) != 0) {
            tu_failed++;
            fprintf(stderr, "%s: got \"%s\", want prefix \"%s\"\n",
                    cases[i].file, err ? err : "(null)", want);
        } else {
            tu_passed++;
        }
        CHECK_CONTAINS(err, cases[i].needle);
        free(err);
        free(text);
    }
}

/* The Semantic Kernel samples in tests/data/sk_samples parse unchanged. */
/* skein runs Semantic Kernel's own template language; a prompt written
 * for another engine is refused by name, at the value. */
TEST(template_formats)
{
    cfg_function *c = parse_ok("{\"template_format\": \"semantic-kernel\"}");
    CHECK_STR(c ? c->template_format : NULL, "semantic-kernel");
    cfg_free(c);
    c = parse_ok("{\"template_format\": \"Semantic-Kernel\"}");
    CHECK(c != NULL);
    cfg_free(c);
    c = parse_ok("{\"description\": \"no format\"}");
    CHECK(c && c->template_format == NULL);
    cfg_free(c);
    parse_err("{\n  \"name\": \"x\",\n  \"template_format\": \"handlebars\"\n}",
              SK_CONFIG, 3, 22, "template_format 'handlebars' is not supported");
    parse_err("{\"template_format\": \"jinja2\"}", SK_CONFIG, 1, 21,
              "template_format 'jinja2' is not supported");
    parse_err("{\"template_format\": \"Liquid\"}", SK_CONFIG, 1, 21,
              "template_format 'Liquid' is not supported");
    parse_err("{\"template_format\": \"mustache\"}", SK_CONFIG, 1, 21,
              "unknown template_format 'mustache'");
    parse_err("{\"template_format\": 2}", SK_CONFIG, 1, 21,
              "'template_format' must be a string");
}

TEST(sk_samples)
{
    static const char *files[] = {
        "FunSkill/Excuses/config.json",   "FunSkill/Joke/config.json",
        "SummarizeSkill/Summarize/config.json",
        "WriterSkill/ShortPoem/config.json",
        "WriterSkill/Brainstorm/config.json",
        "WriterPlugin/ShortPoem/config.json",
        "SummarizePlugin/Summarize/config.json",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "sk_samples/%s", files[i]);
        char *text = NULL;
        size_t len = 0;
        CHECK_INT(sk_read_file(data_path(rel), 1 << 20, &text, &len), SK_OK);
        if (!text)
            continue;
        cfg_function *c = NULL;
        char *err = NULL;
        CHECK_INT(cfg_parse(text, len, files[i], &c, &err), SK_OK);
        if (err)
            fprintf(stderr, "%s\n", err);
        CHECK(c && c->description[0] != '\0');
        CHECK(c && c->n_settings == 1);
        free(err);
        cfg_free(c);
        free(text);
    }

    char *text = NULL;
    size_t len = 0;
    cfg_function *c = NULL;
    sk_read_file(data_path("sk_samples/FunSkill/Joke/config.json"), 1 << 20,
                 &text, &len);
    if (text && cfg_parse(text, len, "Joke", &c, NULL) == SK_OK) {
        CHECK_STR(c->description, "Generate a funny joke");
        CHECK_INT(c->n_params, 2);
        CHECK_STR(c->params[1].name, "style");
        CHECK_INT(c->params[1].required, 1);
        CHECK_INT(c->settings[0].max_tokens, 1000);
        CHECK(c->settings[0].temperature == 0.9);
    } else {
        CHECK(0);
    }
    cfg_free(c);
    free(text);

    c = NULL;
    sk_read_file(data_path("sk_samples/SummarizePlugin/Summarize/config.json"),
                 1 << 20, &text, &len);
    if (text && cfg_parse(text, len, "Summarize", &c, NULL) == SK_OK) {
        CHECK_INT(c->n_params, 1);
        CHECK_STR(c->params[0].name, "input");
        CHECK_INT(c->params[0].required, 1);
        CHECK_STR(cfg_settings_for(c, "gpt-4")->service_id, "default");
        CHECK_INT(cfg_settings_for(c, "gpt-4")->max_tokens, 512);
    } else {
        CHECK(0);
    }
    cfg_free(c);
    free(text);

    c = NULL;
    sk_read_file(data_path("sk_samples/WriterSkill/Brainstorm/config.json"),
                 1 << 20, &text, &len);
    if (text && cfg_parse(text, len, "Brainstorm", &c, NULL) == SK_OK) {
        CHECK_INT(c->settings[0].n_stop, 1);
        CHECK_STR(c->settings[0].stop[0], "##END##");
        CHECK_INT(c->n_default_services, 1);
    } else {
        CHECK(0);
    }
    cfg_free(c);
    free(text);
}

TEST(ceilings)
{
    /* exactly 1 MiB is accepted, one byte more is not */
    size_t n = (size_t)1 << 20;
    char *big = malloc(n + 2);
    if (!big)
        return;
    memset(big, ' ', n + 1);
    memcpy(big, "{\"description\": \"", 17);
    memset(big + 17, 'x', n - 17 - 2);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = ' ';
    big[n + 1] = '\0';
    cfg_function *c = NULL;
    char *err = NULL;
    CHECK_INT(cfg_parse(big, n, "big.json", &c, &err), SK_OK);
    CHECK(c && strlen(c->description) == n - 19);
    cfg_free(c);
    c = NULL;
    CHECK_INT(cfg_parse(big, n + 1, "big.json", &c, &err), SK_TOO_LARGE);
    CHECK(c == NULL);
    CHECK_CONTAINS(err, "big.json:1:1: ");
    CHECK_CONTAINS(err, "larger than");
    free(err);
    free(big);

    /* 64 levels of nesting pass, 65 do not */
    char deep[256];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"x\": ");
    for (int i = 0; i < 63; i++)
        deep[k++] = '[';
    for (int i = 0; i < 63; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    c = parse_ok(deep);
    cfg_free(c);
    k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"x\": ");
    for (int i = 0; i < 64; i++)
        deep[k++] = '[';
    for (int i = 0; i < 64; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    parse_err(deep, SK_TOO_LARGE, 1, 70, "deeper than 64");
    /* brackets inside strings do not count */
    char quoted[200];
    memset(quoted, '[', sizeof quoted);
    memcpy(quoted, "{\"d\": \"", 7);
    memcpy(quoted + sizeof quoted - 3, "\"}", 3);
    c = parse_ok(quoted);
    cfg_free(c);
}

TEST(arguments)
{
    cfg_function *c = (cfg_function *)1;
    char *err = (char *)1;
    CHECK_INT(cfg_parse(NULL, 0, "x", &c, &err), SK_USAGE);
    CHECK(c == NULL && err == NULL);
    CHECK_INT(cfg_parse("{}", 2, "x", NULL, &err), SK_USAGE);
    /* a NULL errmsg is allowed: the message is dropped */
    CHECK_INT(cfg_parse("{", 1, "x", &c, NULL), SK_CONFIG);
    /* NULL origin still yields a located message */
    CHECK_INT(cfg_parse("{", 1, NULL, &c, &err), SK_CONFIG);
    CHECK_CONTAINS(err, "config.json:1:");
    free(err);
    /* len bounds the text: what follows is never read */
    c = NULL;
    CHECK_INT(cfg_parse("{}garbage", 2, "x", &c, NULL), SK_OK);
    cfg_free(c);
    cfg_free(NULL);
}

/* Fails each allocation in turn: every run ends in SK_NOMEM with no
 * message, or in success once n passes the number of allocations. */
TEST(allocation_failure)
{
    const char *json =
        "{\"schema\": 1, \"name\": \"F\", \"description\": \"d\", \"type\": "
        "\"completion\", \"model\": \"openai:m\",\n"
        " \"completion\": {\"max_tokens\": 5, \"stop_sequences\": [\"a\", "
        "\"b\"]},\n"
        " \"execution_settings\": {\"x\": {\"model_id\": \"m\", "
        "\"stop_sequences\": [\"c\"]}, \"y\": {}},\n"
        " \"input\": {\"parameters\": [{\"name\": \"p\", \"description\": "
        "\"q\", \"defaultValue\": \"r\"}]},\n"
        " \"input_variables\": [{\"name\": \"s\", \"default\": {\"o\": 1}}],\n"
        " \"default_services\": [\"u\", \"v\"]}";
    int succeeded = 0;
    long n;
    for (n = 1; n < 500 && !succeeded; n++) {
        cfg_function *c = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = cfg_parse(json, strlen(json), "t.json", &c, &err);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            succeeded = 1;
            CHECK(c && c->n_settings == 3 && c->n_params == 2);
        } else if (rc != SK_NOMEM || c || err) {
            tu_failed++;
            fprintf(stderr, "fail_at %ld: rc %d\n", n, rc);
        }
        cfg_free(c);
        free(err);
    }
    CHECK(succeeded);
    CHECK(n > 10); /* the loop really failed allocations along the way */

    /* an error whose message cannot be allocated is SK_NOMEM */
    const char *bad = "{\"completion\": {\"temperature\": \"hot\"}}";
    for (n = 1; n < 100; n++) {
        cfg_function *c = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = cfg_parse(bad, strlen(bad), "t.json", &c, &err);
        sk_alloc_fail_at(0);
        CHECK(c == NULL);
        if (rc == SK_CONFIG) {
            CHECK_CONTAINS(err, "t.json:1:32: ");
            free(err);
            break;
        }
        CHECK_INT(rc, SK_NOMEM);
        CHECK(err == NULL);
    }
}

/* Semantic Kernel's function_choice_behavior, in the shapes its .NET and
 * Python readers take. */
TEST(function_choice_behavior)
{
    cfg_function *c = parse_ok(
        "{\"execution_settings\": {\n"
        " \"default\": {\"function_choice_behavior\": {\"type\": \"auto\",\n"
        "   \"functions\": [\"Text.Upper\", \"Math-Add\", \"Lone\"],\n"
        "   \"options\": {\"allow_parallel_calls\": false,\n"
        "               \"allow_concurrent_invocation\": false,\n"
        "               \"allow_strict_schema_adherence\": true}}},\n"
        " \"req\": {\"function_choice_behavior\": \"Required\"},\n"
        " \"none\": {\"function_choice_behavior\": {\"type\": \"none\"}},\n"
        " \"py\": {\"function_choice_behavior\": {\"auto_invoke\": false,\n"
        "   \"maximum_auto_invoke_attempts\": 3,\n"
        "   \"filters\": {\"included_plugins\": [\"Text\"],\n"
        "               \"excluded_functions\": [\"Text-Lower\"]}}},\n"
        " \"zero\": {\"function_choice_behavior\": {\"type\": \"auto\", "
        "\"functions\": [], \"maximum_auto_invoke_attempts\": 0}},\n"
        " \"plain\": {\"temperature\": 0}}}");
    CHECK(c && c->n_settings == 6);
    if (!c || c->n_settings != 6)
        return;
    const cfg_tools *t = &c->settings[0].tools;
    CHECK_INT(t->choice, CFG_CHOICE_AUTO);
    CHECK_INT(t->listed, 1);
    CHECK_INT(t->n_functions, 3);
    if (t->n_functions == 3) {
        CHECK_STR(t->functions[0], "Text.Upper");
        CHECK_STR(t->functions[1], "Math.Add"); /* SK's wire form, read back */
        CHECK_STR(t->functions[2], "Lone");
    }
    CHECK_INT(t->parallel_calls, 0);
    CHECK_INT(t->concurrent, 0);
    CHECK_INT(t->strict, 1);
    CHECK_INT(t->auto_invoke, 1);
    CHECK_INT(t->max_rounds, -1);
    t = &c->settings[1].tools;
    CHECK_INT(t->choice, CFG_CHOICE_REQUIRED);
    CHECK_INT(t->listed, 0);
    CHECK_INT(t->concurrent, 1);
    CHECK_INT(t->parallel_calls, -1);
    CHECK_INT(c->settings[2].tools.choice, CFG_CHOICE_NONE);
    t = &c->settings[3].tools;
    CHECK_INT(t->choice, CFG_CHOICE_AUTO); /* SK Python: auto when no type */
    CHECK_INT(t->auto_invoke, 0);
    CHECK_INT(t->max_rounds, 3);
    CHECK_INT(t->n_incl_plugins, 1);
    CHECK_INT(t->n_excl_functions, 1);
    if (t->n_excl_functions == 1)
        CHECK_STR(t->excl_functions[0], "Text.Lower");
    t = &c->settings[4].tools;
    CHECK_INT(t->listed, 1);
    CHECK_INT(t->n_functions, 0);
    CHECK_INT(t->auto_invoke, 0); /* no attempts: nothing is run */
    CHECK_INT(c->settings[5].tools.choice, CFG_CHOICE_UNSET);
    cfg_free(c);

    /* mistakes are errors at the value */
    parse_err("{\"execution_settings\": {\"d\": {\n"
              "  \"function_choice_behavior\": \"sometimes\"}}}",
              SK_CONFIG, 2, 31, "must be auto, required or none");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\":\n"
              "  {\"type\": \"maybe\"}}}}",
              SK_CONFIG, 2, 12, "'type' must be auto, required or none");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\":\n"
              "  {\"functions\": [\"Text.Upper\", \"rm -rf\"]}}}}",
              SK_CONFIG, 2, 32, "must name functions as Plugin.Function");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\":\n"
              "  {\"functions\": \"Text.Upper\"}}}}",
              SK_CONFIG, 2, 17, "must be an array of strings");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\":\n"
              "  {\"maximum_auto_invoke_attempts\": -1}}}}",
              SK_CONFIG, 2, 36, "must be an integer of at least 0");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\":\n"
              "  {\"options\": {\"allow_parallel_calls\": 3}}}}}",
              SK_CONFIG, 2, 40, "must be true or false");
    parse_err("{\"execution_settings\": {\"d\": {\"function_choice_behavior\": 5}}}",
              SK_CONFIG, 1, 59, "must be auto, required, none or an object");

    /* every allocation failed in turn: SK_NOMEM and nothing leaks */
    const char *json =
        "{\"execution_settings\": {\"d\": {\"function_choice_behavior\": "
        "{\"type\": \"required\", \"functions\": [\"A.b\", \"C-d\"], "
        "\"filters\": {\"included_plugins\": [\"A\"], \"excluded_plugins\": "
        "[\"B\"], \"included_functions\": [\"A.x\"], \"excluded_functions\": "
        "[\"A.y\"]}, \"options\": {\"allow_parallel_calls\": true}}}}}";
    int ok = 0;
    for (long n = 1; n < 300 && !ok; n++) {
        cfg_function *cc = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = cfg_parse(json, strlen(json), "t.json", &cc, &err);
        sk_alloc_fail_at(0);
        if (rc == SK_OK)
            ok = cc && cc->settings[0].tools.n_incl_functions == 1;
        else
            CHECK(rc == SK_NOMEM && !cc && !err);
        cfg_free(cc);
        free(err);
    }
    CHECK(ok);
}

int main(void)
{
    RUN(function_choice_behavior);
    RUN(classic_full);
    RUN(v1_full);
    RUN(v1_settings_array);
    RUN(defaults_and_nulls);
    RUN(permissive_syntax);
    RUN(oldest_schema_aliases);
    RUN(settings_lookup);
    RUN(syntax_errors);
    RUN(type_errors);
    RUN(param_errors);
    RUN(bad_config_files);
    RUN(template_formats);
    RUN(sk_samples);
    RUN(ceilings);
    RUN(arguments);
    RUN(allocation_failure);
    return tu_finish();
}
