/* test_yaml.c -- Semantic Kernel's YAML prompt functions: what each key
 * becomes, one reader of settings with config.json (cfg_parse_mapped),
 * errors at the YAML's own line and column, ceilings, and the loader that
 * finds *.yaml / *.yml in a skill folder. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "all.h"
#include "testutil.h"

static yml_prompt *parse_ok(const char *text)
{
    yml_prompt *y = NULL;
    char *err = NULL;
    sk_status rc = yml_prompt_parse(text, strlen(text), "f.yaml", &y, &err);
    CHECK_INT(rc, SK_OK);
    if (err)
        fprintf(stderr, "unexpected error: %s\n", err);
    free(err);
    return y;
}

/* Parses text expecting `code` and a message that starts
 * "f.yaml:LINE:COL: " and contains needle. */
static void parse_err(const char *text, sk_status code, int line, int col,
                      const char *needle)
{
    yml_prompt *y = (yml_prompt *)1;
    char *err = NULL;
    sk_status rc = yml_prompt_parse(text, strlen(text), "f.yaml", &y, &err);
    CHECK_INT(rc, code);
    CHECK(y == NULL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "f.yaml:%d:%d: ", line, col);
    CHECK(err && strncmp(err, prefix, strlen(prefix)) == 0);
    if (!err || strncmp(err, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  got \"%s\", want prefix \"%s\"\n", err ? err : "(null)", prefix);
    CHECK_CONTAINS(err, needle);
    free(err);
}

/* The YAML's settings through the config reader, as the loader does. */
static cfg_function *config_of(const yml_prompt *y, char **err)
{
    cfg_srcmap map = {y->pos, y->n_pos};
    cfg_function *c = NULL;
    *err = NULL;
    cfg_parse_mapped(y->config, y->config_len, "f.yaml", &map, &c, err);
    return c;
}

/* Parses a YAML whose settings must fail in the config reader at
 * line:col with needle. */
static void settings_err(const char *text, int line, int col, const char *needle)
{
    yml_prompt *y = parse_ok(text);
    if (!y)
        return;
    char *err = NULL;
    cfg_function *c = config_of(y, &err);
    CHECK(c == NULL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "f.yaml:%d:%d: ", line, col);
    CHECK(err && strncmp(err, prefix, strlen(prefix)) == 0);
    if (!err || strncmp(err, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  got \"%s\", want prefix \"%s\"\n", err ? err : "(null)", prefix);
    CHECK_CONTAINS(err, needle);
    free(err);
    cfg_free(c);
    yml_prompt_free(y);
}

/* SK's own sample (dotnet/samples/Concepts/Resources/GenerateStory.yaml,
 * with its byte order mark) and every key of the format. */
TEST(sk_format)
{
    const char *text =
        "\xEF\xBB\xBFname: GenerateStory\n"
        "template: |\n"
        "  Tell a story about {{$topic}} that is {{$length}} sentences long.\n"
        "template_format: semantic-kernel\n"
        "description: A function that generates a story about a topic.\n"
        "input_variables:\n"
        "  - name: topic\n"
        "    description: The topic of the story.\n"
        "    is_required: true\n"
        "  - name: length\n"
        "    description: The number of sentences in the story.\n"
        "    is_required: true\n"
        "    default: 3\n"
        "    allow_dangerously_set_content: true\n"
        "output_variable:\n"
        "  description: The generated story.\n"
        "execution_settings:\n"
        "  default:\n"
        "    temperature: 0.6\n"
        "  gpt4:\n"
        "    model_id: gpt-4o\n"
        "    max_tokens: 0x100\n"
        "    stop_sequences: [\"\\n\\n\", END]\n"
        "allow_dangerously_set_content: false\n";
    yml_prompt *y = parse_ok(text);
    if (!y)
        return;
    CHECK_STR(y->name, "GenerateStory");
    CHECK_INT(y->name_line, 1);
    CHECK_INT(y->name_col, 7);
    CHECK_STR(y->tpl, "Tell a story about {{$topic}} that is {{$length}} sentences long.\n");
    CHECK_INT(y->tpl_len, strlen(y->tpl));
    CHECK_INT(y->tpl_at.line, 3);
    CHECK_INT(y->tpl_at.col, 3);
    CHECK_INT(y->tpl_at.indent, 2);
    CHECK(strstr(y->config, "Tell a story") == NULL); /* not a setting */
    char *err = NULL;
    cfg_function *c = config_of(y, &err);
    CHECK(c != NULL);
    CHECK(err == NULL);
    free(err);
    if (c) {
        CHECK_STR(c->name, "GenerateStory");
        CHECK_STR(c->description, "A function that generates a story about a topic.");
        CHECK_STR(c->template_format, "semantic-kernel");
        CHECK_INT(c->n_params, 2);
        if (c->n_params == 2) {
            CHECK_STR(c->params[0].name, "topic");
            CHECK_INT(c->params[0].required, 1);
            CHECK(c->params[0].default_value == NULL);
            CHECK_STR(c->params[1].default_value, "3");
            CHECK_INT(c->params[1].allow_unsafe, 1);
            CHECK_INT(c->params[0].allow_unsafe, 0);
        }
        CHECK_INT(c->allow_unsafe, 0);
        CHECK_INT(c->n_settings, 2);
        const cfg_settings *s = cfg_settings_for(c, "default");
        CHECK(s && s->temperature == 0.6 && s->max_tokens == -1);
        s = cfg_settings_for(c, "gpt4");
        CHECK(s && s->max_tokens == 256);
        CHECK_STR(s ? s->model_id : NULL, "gpt-4o");
        CHECK(s && s->n_stop == 2);
        if (s && s->n_stop == 2) {
            CHECK_STR(s->stop[0], "\n\n");
            CHECK_STR(s->stop[1], "END");
        }
    }
    cfg_free(c);
    yml_prompt_free(y);
}

/* Plain scalars are typed by YAML 1.2's core schema; quoted ones and an
 * input variable's default are text as written. */
TEST(scalars)
{
    yml_prompt *y = parse_ok(
        "template: x\n"
        "input_variables:\n"
        "  - {name: price, default: 1.50}\n"
        "  - {name: flag, default: yes}\n"
        "  - {name: empty, default: ''}\n"
        "  - {name: none, default: ~}\n"
        "  - {name: quoted, default: \"007\"}\n"
        "  - {name: list, default: [a, b]}\n"
        "execution_settings:\n"
        "  default: {temperature: '0.25', max_tokens: +12, top_p: .5, presence_penalty: -1e0}\n"
        "uncertainty: {samples: 3, asks_back: False, hedging: null}\n");
    if (!y)
        return;
    CHECK_CONTAINS(y->config, "\"samples\":3");
    CHECK_CONTAINS(y->config, "\"asks_back\":false");
    CHECK_CONTAINS(y->config, "\"hedging\":null");
    char *err = NULL;
    cfg_function *c = config_of(y, &err);
    free(err);
    CHECK(c != NULL);
    if (c && c->n_params == 6) {
        CHECK_STR(c->params[0].default_value, "1.50");
        CHECK_STR(c->params[1].default_value, "yes");
        CHECK_STR(c->params[2].default_value, "");
        CHECK(c->params[3].default_value == NULL);
        CHECK_STR(c->params[4].default_value, "007");
        CHECK_STR(c->params[5].default_value, "[\"a\",\"b\"]");
        const cfg_settings *s = cfg_settings_for(c, NULL);
        CHECK(s && s->temperature == 0.25 && s->max_tokens == 12 && s->top_p == 0.5 &&
              s->presence_penalty == -1);
    } else {
        CHECK(0);
    }
    cfg_free(c);
    yml_prompt_free(y);
}

/* Malformed YAML: libyaml's own message, at its line and column. */
TEST(syntax_errors)
{
    parse_err("name: a\ntemplate: |\n  hi\n bad: [1, 2\n", SK_CONFIG, 4, 2,
              "did not find expected key (while parsing a block mapping at 1:1)");
    parse_err("name: a\n\ttemplate: x\n", SK_CONFIG, 2, 1,
              "found a tab character that violates indentation");
    parse_err("name: [a, b\ntemplate: x\n", SK_CONFIG, 2, 9, "did not find expected ',' or ']'");
    parse_err("template: x\nname: \"unterminated\n", SK_CONFIG, 3, 1,
              "found unexpected end of stream");
    parse_err("template: x\n  name: y\n", SK_CONFIG, 2, 7,
              "mapping values are not allowed in this context");
    parse_err("template: *nowhere\n", SK_CONFIG, 1, 11, "found undefined alias");
    parse_err("name: a\ntemplate: \xff\n", SK_CONFIG, 2, 11, "invalid leading UTF-8 octet");
}

/* The shape of a prompt function. */
TEST(shape_errors)
{
    parse_err("", SK_CONFIG, 1, 1, "empty document");
    parse_err("# only a comment\n", SK_CONFIG, 1, 1, "empty document");
    parse_err("- name: a\n  template: x\n", SK_CONFIG, 1, 1, "is a mapping of keys");
    parse_err("just text\n", SK_CONFIG, 1, 1, "is a mapping of keys");
    parse_err("name: a\ndescription: b\n", SK_CONFIG, 1, 1, "no 'template'");
    parse_err("name: a\ntemplate:\n", SK_CONFIG, 2, 10, "no 'template'");
    parse_err("name: a\ntemplate:\n  - x\n", SK_CONFIG, 3, 3, "'template' must be text");
    parse_err("name: a\ntemplate: x\n---\nname: b\ntemplate: y\n", SK_CONFIG, 4, 1,
              "a second YAML document");
    parse_err("name: a\ntemplate: x\nname: b\n", SK_CONFIG, 3, 1, "duplicate key 'name'");
    parse_err("template: x\nexecution_settings:\n  default: {temperature: 1, temperature: 2}\n",
              SK_CONFIG, 3, 29, "duplicate key 'temperature'");
    parse_err("template: x\n? [a, b]\n: c\n", SK_CONFIG, 2, 3, "a key must be a plain value");
}

/* The settings go through config.json's reader; its errors point into the
 * YAML. */
TEST(settings_errors)
{
    settings_err("name: a\n"
                 "template: x\n"
                 "execution_settings:\n"
                 "  default:\n"
                 "    temperature: hot\n",
                 5, 18, "'temperature' must be a number");
    settings_err("template: x\n"
                 "execution_settings:\n"
                 "  default:\n"
                 "    max_tokens: -5\n",
                 4, 17, "'max_tokens' must be an integer of at least 1");
    settings_err("template: x\n"
                 "input_variables:\n"
                 "  - name: ok\n"
                 "  - description: no name\n",
                 4, 5, "parameter has no 'name'");
    settings_err("template: x\n"
                 "input_variables:\n"
                 "  - name: a b\n",
                 3, 11, "parameter name must be letters, digits and '_'");
    settings_err("template: x\n"
                 "input_variables: {name: a}\n",
                 2, 18, "'input_variables' must be an array");
    settings_err("template: x\n"
                 "template_format: handlebars\n",
                 2, 18, "template_format 'handlebars' is not supported");
    settings_err("template_format: jinja2\ntemplate: '{{ x }}'\n", 1, 18,
                 "template_format 'jinja2' is not supported");
    settings_err("template: x\n"
                 "description: [not, text]\n",
                 2, 14, "'description' must be a string");
}

/* Where the template is: exact for a literal block and a one-line
 * value, so a template error names the YAML's line and column. */
static void template_err_at(const char *text, int line, int col)
{
    yml_prompt *y = parse_ok(text);
    if (!y)
        return;
    sk_template *t = NULL;
    char *err = NULL;
    CHECK_INT(tpl_parse_at(y->tpl, y->tpl_len, "f.yaml", &y->tpl_at, &t, &err),
              SK_TEMPLATE);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "f.yaml:%d:%d: ", line, col);
    CHECK(err && strncmp(err, prefix, strlen(prefix)) == 0);
    if (!err || strncmp(err, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  got \"%s\", want prefix \"%s\"\n", err ? err : "(null)", prefix);
    free(err);
    tpl_free(t);
    yml_prompt_free(y);
}

TEST(template_positions)
{
    template_err_at("name: a\n"
                    "template: |\n"
                    "    line one\n"
                    "    say {{$a-b}}\n",
                    4, 11);
    template_err_at("name: a\n"
                    "template: |\n"
                    "\n"
                    "  first\n"
                    "    indented {{$x y}}\n",
                    5, 19);
    template_err_at("template: |-\n  {{$bad-name}}\n", 2, 5);
    template_err_at("template: 'Hi {{$a-b}}'\n", 1, 17);
    template_err_at("template: \"Hi {{$a-b}}\"\n", 1, 17);
    template_err_at("template: Hi {{$a-b}}\n", 1, 16);
    template_err_at("execution_settings: {}\n"
                    "template: |2\n"
                    "    two more {{$a b}}\n",
                    3, 19);
    /* the text blocks of a template keep the file's positions too, for
     * errors found in the rendered prompt (chat markup) */
    yml_prompt *y = parse_ok("template: |\n  a\n  <message role=\"x\">b</message>\n");
    sk_template *t = NULL;
    char *err = NULL;
    if (y && tpl_parse_at(y->tpl, y->tpl_len, "f.yaml", &y->tpl_at, &t, &err) == SK_OK) {
        size_t starts[4] = {0};
        int line = 0, col = 0;
        const tpl_block *b = NULL;
        const char *out = t->blocks[0].text;
        tpl_locate(t, out, starts, strlen("a\n"), &line, &col, &b);
        CHECK_INT(line, 3);
        CHECK_INT(col, 3);
    } else {
        CHECK(0);
    }
    free(err);
    tpl_free(t);
    yml_prompt_free(y);
}

/* Ceilings: aliases that expand without end, an alias inside itself,
 * deep nesting, a file past 16 MiB.  Each fails with a position, fast. */
TEST(ceilings)
{
    const char *bomb =
        "template: x\n"
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
        "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    yml_prompt *y = NULL;
    char *err = NULL;
    sk_status rc = yml_prompt_parse(bomb, strlen(bomb), "f.yaml", &y, &err);
    CHECK(rc == SK_CONFIG || rc == SK_TOO_LARGE);
    CHECK(y == NULL);
    CHECK(err && strncmp(err, "f.yaml:", 7) == 0);
    free(err);

    parse_err("template: x\na: &a [1, *a]\n", SK_CONFIG, 2, 8,
              "nested deeper than 64 levels");

    size_t depth = 200;
    char *deep = malloc(depth * 2 + 64);
    if (deep) {
        char *p = deep + sprintf(deep, "template: x\nd: ");
        for (size_t i = 0; i < depth; i++)
            *p++ = '[';
        for (size_t i = 0; i < depth; i++)
            *p++ = ']';
        *p++ = '\n';
        *p = '\0';
        y = (yml_prompt *)1;
        err = NULL;
        CHECK_INT(yml_prompt_parse(deep, strlen(deep), "f.yaml", &y, &err), SK_CONFIG);
        CHECK_CONTAINS(err, "nested deeper than 64 levels");
        free(err);
        free(deep);
    }

    size_t big = ((size_t)16 << 20) + 1;
    char *huge = malloc(big);
    if (huge) {
        memset(huge, ' ', big);
        y = (yml_prompt *)1;
        err = NULL;
        CHECK_INT(yml_prompt_parse(huge, big, "f.yaml", &y, &err), SK_TOO_LARGE);
        CHECK(y == NULL);
        CHECK_CONTAINS(err, "f.yaml:1:1: larger than");
        free(err);
        free(huge);
    }
}

TEST(arguments)
{
    yml_prompt *y = NULL;
    CHECK_INT(yml_prompt_parse("template: x", 11, "f.yaml", NULL, NULL), SK_USAGE);
    CHECK_INT(yml_prompt_parse(NULL, 3, "f.yaml", &y, NULL), SK_USAGE);
    CHECK_INT(yml_prompt_parse("template: x", 11, NULL, &y, NULL), SK_OK);
    yml_prompt_free(y);
    yml_prompt_free(NULL);
    /* a NUL byte is a reader error, not a cut */
    y = (yml_prompt *)1;
    char *err = NULL;
    CHECK_INT(yml_prompt_parse("template: a\0b", 13, "f.yaml", &y, &err), SK_CONFIG);
    CHECK(y == NULL);
    free(err);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* The loader: YAML prompts in a skill folder beside skprompt.txt folders,
 * named by `name` or by the file; a bad one is a problem with its line
 * and column, the rest load; the policy keys of a YAML work as in
 * config.json. */
TEST(skill_folder)
{
    char root[] = "/tmp/skein-yaml-XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0);
        return;
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/Plug", root);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/Plug/Folder", root);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/Plug/Folder/skprompt.txt", root);
    CHECK_INT(write_file(p, "folder {{$input}}"), 0);
    snprintf(p, sizeof p, "%s/Plug/story.yaml", root);
    CHECK_INT(write_file(p, "name: Story\n"
                            "description: Tells a story.\n"
                            "template: |\n"
                            "  A story about {{$topic}} in {{$style}}.\n"
                            "input_variables:\n"
                            "  - name: topic\n"
                            "    is_required: true\n"
                            "  - name: style\n"
                            "    default: verse\n"
                            "uncertainty: false\n"),
              0);
    snprintf(p, sizeof p, "%s/Plug/Unnamed.yml", root);
    CHECK_INT(write_file(p, "template: 'unnamed {{$input}}'\n"), 0);
    snprintf(p, sizeof p, "%s/Plug/hot.yaml", root);
    CHECK_INT(write_file(p, "name: Hot\ntemplate: x\nexecution_settings:\n  default:\n"
                            "    temperature: 9\n"),
              0);
    snprintf(p, sizeof p, "%s/Plug/broken.yaml", root);
    CHECK_INT(write_file(p, "name: Broken\ntemplate: [unclosed\n"), 0);
    snprintf(p, sizeof p, "%s/Plug/badname.yaml", root);
    CHECK_INT(write_file(p, "name: Bad Name\ntemplate: x\n"), 0);
    snprintf(p, sizeof p, "%s/Plug/badpolicy.yaml", root);
    CHECK_INT(write_file(p, "name: BadPolicy\ntemplate: x\nuncertainty: {samples: lots}\n"), 0);
    snprintf(p, sizeof p, "%s/Plug/zdup.yaml", root);
    CHECK_INT(write_file(p, "# the same name again\nname: story\ntemplate: another\n"), 0);
    snprintf(p, sizeof p, "%s/Plug/notes.txt", root);
    CHECK_INT(write_file(p, "not a prompt"), 0);

    sk_kernel *k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_OK);
    if (k) {
        sk_kernel_set_option(k, "quiet", "1");
        CHECK_INT(sk_kernel_load_skills(k, root), SK_OK);
        sk_function_info fi;
        CHECK_INT(sk_kernel_function_find(k, "Plug.Folder", &fi), SK_OK);
        CHECK_INT(sk_kernel_function_find(k, "Plug.Story", &fi), SK_OK);
        if (sk_kernel_function_find(k, "Plug.Story", &fi) == SK_OK) {
            CHECK_STR(fi.description, "Tells a story.");
            CHECK_STR(fi.kind, "semantic");
            CHECK(fi.path && strstr(fi.path, "Plug/story.yaml"));
            CHECK_INT(fi.n_params, 2);
            if (fi.n_params == 2) {
                CHECK_STR(fi.params[1].default_value, "verse");
                CHECK_INT(fi.params[0].required, 1);
            }
        }
        CHECK_INT(sk_kernel_function_find(k, "Plug.Unnamed", &fi), SK_OK);
        CHECK_INT(sk_kernel_function_find(k, "Plug.Hot", &fi), SK_NOT_FOUND);
        CHECK_INT(sk_kernel_function_find(k, "Plug.Broken", &fi), SK_NOT_FOUND);
        CHECK_INT(sk_kernel_skill_problem_count(k), 5);
        for (size_t i = 0; i < sk_kernel_skill_problem_count(k); i++) {
            sk_skill_problem pr;
            if (sk_kernel_skill_problem(k, i, &pr) != SK_OK)
                continue;
            if (strstr(pr.path, "hot.yaml")) {
                CHECK_INT(pr.line, 5);
                CHECK_INT(pr.col, 18);
                CHECK_STR(pr.what, "Plug.Hot");
                CHECK_CONTAINS(pr.message, "'temperature' must be between 0 and 2");
            } else if (strstr(pr.path, "broken.yaml")) {
                CHECK_INT(pr.line, 3);
                CHECK_STR(pr.what, "Plug.broken");
            } else if (strstr(pr.path, "badname.yaml")) {
                CHECK_INT(pr.line, 1);
                CHECK_INT(pr.col, 7);
                CHECK_CONTAINS(pr.message, "function name 'Bad Name'");
            } else if (strstr(pr.path, "zdup.yaml")) {
                /* two of one name in one folder: the first stays */
                CHECK_INT(pr.line, 2);
                CHECK_INT(pr.col, 7);
                CHECK_STR(pr.what, "Plug.story");
                CHECK_CONTAINS(pr.message, "is already defined in this skill, by");
                CHECK_CONTAINS(pr.message, "Plug/story.yaml");
            } else if (strstr(pr.path, "badpolicy.yaml")) {
                CHECK_STR(pr.what, "Plug.BadPolicy");
                CHECK_CONTAINS(pr.message, "badpolicy.yaml");
            } else {
                CHECK_STR(pr.path, "an expected problem");
            }
        }
        /* rendered as invoke renders it: the YAML's defaults fill in */
        sk_vars *v = NULL;
        sk_vars_new(&v);
        sk_vars_set(v, "topic", "a fox");
        char *out = NULL;
        CHECK_INT(sk_render_function(k, "Plug.Story", v, 0, &out), SK_OK);
        CHECK_STR(out, "A story about a fox in verse.\n");
        sk_free(out);
        sk_vars_set(v, "style", "prose");
        CHECK_INT(sk_render_function(k, "plug.story", v, SK_RENDER_NO_CALLS, &out), SK_OK);
        CHECK_STR(out, "A story about a fox in prose.\n");
        sk_free(out);
        sk_vars_free(v);
    }
    sk_kernel_free(k);
    snprintf(p, sizeof p, "rm -rf '%s'", root);
    CHECK_INT(system(p), 0);
}

int main(void)
{
    RUN(sk_format);
    RUN(scalars);
    RUN(syntax_errors);
    RUN(shape_errors);
    RUN(settings_errors);
    RUN(template_positions);
    RUN(ceilings);
    RUN(arguments);
    RUN(skill_folder);
    return tu_finish();
}
