/* test_template.c -- the prompt template language: block scanning, code
 * tokenizing, errors with positions, and assembly.  Many cases follow
 * Semantic Kernel's own tokenizer tests so both accept and reject the
 * same templates. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

/* A compact picture of the blocks: T(text) V(name) L(value) and
 * C(fn arg...), where args print as $v, 'v', name=$v or name='v'. */
static char *dump(const sk_template *t)
{
    sk_buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < t->n; i++) {
        const tpl_block *k = &t->blocks[i];
        switch (k->kind) {
        case TB_TEXT: buf_printf(&b, "T(%s)", k->text); break;
        case TB_VAR: buf_printf(&b, "V(%s)", k->text); break;
        case TB_VAL: buf_printf(&b, "L(%s)", k->text); break;
        case TB_CALL:
            buf_printf(&b, "C(%s", k->text);
            for (size_t a = 0; a < k->n_args; a++) {
                const tpl_arg *g = &k->args[a];
                buf_addc(&b, ' ');
                if (g->name)
                    buf_printf(&b, "%s=", g->name);
                if (g->is_var)
                    buf_printf(&b, "$%s", g->value);
                else
                    buf_printf(&b, "'%s'", g->value);
            }
            buf_addc(&b, ')');
            break;
        }
    }
    return buf_steal(&b);
}

/* Parses src and compares its dump with want. */
static void expect_blocks(const char *src, const char *want)
{
    sk_template *t = NULL;
    char *err = NULL;
    sk_status rc = tpl_parse(src, strlen(src), "t.txt", &t, &err);
    CHECK_INT(rc, SK_OK);
    if (rc != SK_OK) {
        fprintf(stderr, "  template: %s\n  error: %s\n", src, err ? err : "");
        free(err);
        return;
    }
    CHECK(err == NULL);
    char *d = dump(t);
    CHECK_STR(d, want);
    if (strcmp(d, want) != 0)
        fprintf(stderr, "  template: %s\n", src);
    free(d);
    tpl_free(t);
}

/* Parses src expecting SK_TEMPLATE at line:col with a message holding
 * `part`. */
static void expect_error(const char *src, int line, int col, const char *part)
{
    sk_template *t = NULL;
    char *err = NULL;
    sk_status rc = tpl_parse(src, strlen(src), "t.txt", &t, &err);
    CHECK_INT(rc, SK_TEMPLATE);
    CHECK(t == NULL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.txt:%d:%d: ", line, col);
    if (rc != SK_TEMPLATE || !err || strncmp(err, prefix, strlen(prefix))) {
        tu_failed++;
        fprintf(stderr, "[%s] template %s: want error at %s got %s\n",
                tu_current, src, prefix, err ? err : "(none)");
    } else {
        tu_passed++;
    }
    if (part)
        CHECK_CONTAINS(err, part);
    free(err);
    tpl_free(t);
}

/* Parses and assembles src; the result is a new string. */
static char *render(const char *src, const sk_vars *vars,
                    char *const *outputs)
{
    sk_template *t = NULL;
    char *err = NULL;
    sk_status rc = tpl_parse(src, strlen(src), "t.txt", &t, &err);
    CHECK_INT(rc, SK_OK);
    free(err);
    if (rc != SK_OK)
        return NULL;
    sk_buf b;
    buf_init(&b, 0);
    rc = tpl_assemble(t, vars, outputs, NULL, &b);
    CHECK_INT(rc, SK_OK);
    tpl_free(t);
    return buf_steal(&b);
}

static void expect_render(const char *src, const sk_vars *vars,
                          char *const *outputs, const char *want)
{
    char *got = render(src, vars, outputs);
    CHECK_STR(got, want);
    free(got);
}

/* ---- text without code (SK: ItParsesTextWithoutCode) ------------------- */

TEST(text_without_code)
{
    static const char *cases[] = {
        " ", "   ", " {}  ", " {{}  ", " {{ } } }  ", " { { }} }", "{{}}",
        "{{ }}", "{{  }}", "{{  '}}x", "{{  \"}}x", " aaa  ", "{$x} {x}",
        "}}", "{{", "{{a}", "{a}}", "{{\n\t}}", "{{'{{a}}", "{{'a}}", "{{a'}}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char want[64];
        snprintf(want, sizeof want, "T(%s)", cases[i]);
        expect_blocks(cases[i], want);
    }
}

TEST(empty_template)
{
    sk_template *t = NULL;
    char *err = NULL;
    CHECK_INT(tpl_parse("", 0, "e.txt", &t, &err), SK_OK);
    CHECK(t != NULL);
    CHECK_INT(t->n, 0);
    CHECK_INT(t->n_calls, 0);
    CHECK_STR(t->origin, "e.txt");
    sk_buf b;
    buf_init(&b, 0);
    CHECK_INT(tpl_assemble(t, NULL, NULL, NULL, &b), SK_OK);
    CHECK_INT(b.len, 0);
    buf_free(&b);
    tpl_free(t);
    /* NULL text with length 0 is the empty template too */
    CHECK_INT(tpl_parse(NULL, 0, NULL, &t, NULL), SK_OK);
    CHECK_INT(t->n, 0);
    CHECK_STR(t->origin, "<template>");
    tpl_free(t);
}

/* ---- basic blocks (SK: ItParsesBasicBlocks) ------------------------------ */

TEST(basic_blocks)
{
    static const struct { const char *src, *want; } cases[] = {
        {"{{$a}}", "V(a)"},
        {"{{ $a}}", "V(a)"},
        {"{{ $a }}", "V(a)"},
        {"{{  $a  }}", "V(a)"},
        {"{{ $var \n }}", "V(var)"},
        {"{{code}}", "C(code)"},
        {"{{code }}", "C(code)"},
        {"{{ code }}", "C(code)"},
        {"{{  code }}", "C(code)"},
        {"{{  code  }}", "C(code)"},
        {"{{''}}", "L()"},
        {"{{' '}}", "L( )"},
        {"{{ ' '}}", "L( )"},
        {"{{ ' ' }}", "L( )"},
        {"{{  ' ' }}", "L( )"},
        {"{{  ' '  }}", "L( )"},
        {"{{\"x\"}}", "L(x)"},
        {"{{x}}", "C(x)"},
        {"{{\tSkill.Fn\r\n}}", "C(Skill.Fn)"},
        {"{{ Sk_1.F2 }}", "C(Sk_1.F2)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_blocks(cases[i].src, cases[i].want);
}

/* ---- block boundaries (SK: ItTokenizesEdgeCasesCorrectly*) ------------ */

TEST(block_boundaries)
{
    expect_blocks("}}{{a}} {{b}}x", "T(}})C(a)T( )C(b)T(x)");
    expect_blocks("}}{{ -a\n} } {{b}}x", "T(}}{{ -a\n} } )C(b)T(x)");
    expect_blocks("{{{{a}}", "T({{)C(a)");
    expect_blocks("}}{{{{$a}}}} {{b}}$x}}", "T(}}{{)V(a)T(}} )C(b)T($x}})");
    expect_blocks("{{{$a}}}", "T({)V(a)T(})");
    expect_blocks("{{$a}}{{$b}}", "V(a)V(b)");
    expect_blocks("{{ {{$x}}", "T({{ )V(x)");
    /* empty blocks stay text and merge with their neighbours */
    expect_blocks("a{{ }}b", "T(a{{ }}b)");
    expect_blocks("{{}}{{$x}}{{ }}", "T({{}})V(x)T({{ }})");
}

TEST(quotes_poison_blocks)
{
    /* an unterminated quote swallows the rest of the template */
    expect_blocks("{{ ' }} {{$x}} end", "T({{ ' }} {{$x}} end)");
    /* ... until a later quote closes it */
    expect_blocks("{{ ' }} it's {{$x}}", "T({{ ' }} it's )V(x)");
    /* "{{" inside quotes does not start a block */
    expect_blocks("{{f '{{$x}}'}}", "C(f '{{$x}}')");
    /* quotes in plain text mean nothing */
    expect_blocks("it's \"{{$x}}\"", "T(it's \")V(x)T(\")");
    /* SK: {{call 'f\\'xy'}}: the value closes early, the stray quote
     * never does */
    expect_blocks("{{call 'f\\\\'xy'}}", "T({{call 'f\\\\'xy'}})");
    expect_blocks("{{f a'b='val'}}", "T({{f a'b='val'}})");
    expect_blocks("{{f 0='val\"}}", "T({{f 0='val\"}})");
}

TEST(typical_prompt)
{
    expect_blocks("this is a {{ $prompt }} with {{$some}} variables "
                  "and {{function $calls}} {{ and 'values' }}",
                  "T(this is a )V(prompt)T( with )V(some)T( variables and )"
                  "C(function $calls)T( )C(and 'values')");
    expect_blocks("this is a {{ function with='many' named=$arguments }}",
                  "T(this is a )C(function with='many' named=$arguments)");
    expect_blocks("{$x11} This {$a} is {$_a} a {{$x11}} test {{$x11}} "
                  "template {{foo}}{{bar $a}}{{baz $_a}}{{yay $x11}}"
                  "{{food a='b' c = $d}}{{positional 'abc' p1=$p1}}",
                  "T({$x11} This {$a} is {$_a} a )V(x11)T( test )V(x11)"
                  "T( template )C(foo)C(bar $a)C(baz $_a)C(yay $x11)"
                  "C(food a='b' c=$d)C(positional 'abc' p1=$p1)");
}

/* ---- code tokenizing (SK: CodeTokenizerTests) -------------------------- */

TEST(function_calls)
{
    expect_blocks("{{x.y $foo}}", "C(x.y $foo)");
    expect_blocks("{{xy $foo}}", "C(xy $foo)");
    expect_blocks("{{xy '$value'}}", "C(xy '$value')");
    expect_blocks("{{x.y first=$foo second='bar'}}",
                  "C(x.y first=$foo second='bar')");
    expect_blocks("{{f  $x   n=\"y\"\n\tm='z'}}", "C(f $x n='y' m='z')");
    expect_blocks("{{ f\n$x }}", "C(f $x)");
    expect_blocks("{{.f}}", "C(.f)");
}

TEST(escapes)
{
    expect_blocks("{{ asis 'f\\'oo' }}", "C(asis 'f'oo')");
    expect_blocks("{{func name='f\\'oo'}}", "C(func name='f'oo')");
    expect_blocks("{{'it\\'s'}}", "L(it's)");
    expect_blocks("{{\"a\\\"b\"}}", "L(a\"b)");
    expect_blocks("{{'a\\\\b'}}", "L(a\\b)");
    expect_blocks("{{'a\\\\'}}", "L(a\\)");
    /* other backslashes are kept */
    expect_blocks("{{'a\\nb\\x'}}", "L(a\\nb\\x)");
    /* either quote inside the other kind */
    expect_blocks("{{\"it's\"}}", "L(it's)");
    expect_blocks("{{'say \"hi\"'}}", "L(say \"hi\")");
    expect_blocks("{{f \"\\'\"}}", "C(f ''')");
    /* outside quotes a backslash is plain text */
    expect_blocks("a\\{{$x}}\\'", "T(a\\)V(x)T(\\')");
    expect_blocks("\\{{$x}}", "T(\\)V(x)");
}

TEST(named_args)
{
    expect_blocks("{{func name = 'foo'}}", "C(func name='foo')");
    expect_blocks("{{f a =  $b }}", "C(f a=$b)");
    expect_blocks("{{f name   ='value'}}", "C(f name='value')");
    expect_blocks("{{f name=   'value'}}", "C(f name='value')");
    expect_blocks("{{f a=\"b\"}}", "C(f a='b')");
    expect_blocks("{{f 'x' a=$b c=\"d\"}}", "C(f 'x' a=$b c='d')");
    static const char *ok_names[] = {"0", "1", "a", "_", "01", "01a", "a01",
                                     "_0", "a01_", "_a01"};
    for (size_t i = 0; i < sizeof ok_names / sizeof *ok_names; i++) {
        char src[64], want[64];
        snprintf(src, sizeof src, "{{f %s='val'}}", ok_names[i]);
        snprintf(want, sizeof want, "C(f %s='val')", ok_names[i]);
        expect_blocks(src, want);
        snprintf(src, sizeof src, "{{f a=$%s}}", ok_names[i]);
        snprintf(want, sizeof want, "C(f a=$%s)", ok_names[i]);
        expect_blocks(src, want);
    }
}

TEST(values_with_specials)
{
    /* SK splits on every '=' and rejects these; they work here */
    expect_blocks("{{f a='x=y'}}", "C(f a='x=y')");
    expect_blocks("{{f a=\"x=y\" b='='}}", "C(f a='x=y' b='=')");
    expect_blocks("{{f 'a=b'}}", "C(f 'a=b')");
    /* "}}" inside a quoted value does not close the block */
    expect_blocks("{{f '}}'}}", "C(f '}}')");
    expect_blocks("{{'a}}b'}}", "L(a}}b)");
    expect_blocks("{{f a='}}' b=\"{{\"}}!", "C(f a='}}' b='{{')T(!)");
    expect_blocks("{{f 'x \\' }}'}}", "C(f 'x ' }}')");
}

TEST(unicode_text)
{
    const char *src = "h\xc3\xa9llo {{$x}} w\xc3\xb6rld \xe2\x9c\x93 "
                      "{{f '\xe6\x97\xa5\xe6\x9c\xac'}}";
    expect_blocks(src, "T(h\xc3\xa9llo )V(x)T( w\xc3\xb6rld \xe2\x9c\x93 )"
                       "C(f '\xe6\x97\xa5\xe6\x9c\xac')");
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "x", "\xf0\x9f\x98\x80");
    expect_render(src, v, NULL,
                  "h\xc3\xa9llo \xf0\x9f\x98\x80 w\xc3\xb6rld \xe2\x9c\x93 "
                  "{{f '\xe6\x97\xa5\xe6\x9c\xac'}}");
    sk_vars_free(v);
}

/* ---- errors -------------------------------------------------------------- */

TEST(error_variables)
{
    expect_error("{{$}}", 1, 3, "variable name is empty");
    expect_error("{{ $ }}", 1, 4, "variable name is empty");
    expect_error("{{$a-b}}", 1, 3, "invalid character '-'");
    expect_error("{{$a b}}", 1, 6, "after variable $a");
    expect_error("{{$a\nb}}", 2, 1, "after variable");
    expect_error("{{$a\tb}}", 1, 6, "after variable");
    expect_error("{{$x a='b'}}", 1, 6, "after variable");
    expect_error("{{$\xc3\xa9}}", 1, 3, "\\xC3");
    static const char *bad[] = {
        ".", "-", "a.b", "a,b", "a-b", "a+b", "a~b", "a`b", "a!b", "a@b",
        "a#b", "a$b", "a%b", "a^b", "a*b", "a(b", "a)b", "a|b", "a{b",
        "a}b", "a[b", "a]b", "a:b", "a;b", "a<b", "a>b", "a/b", "a\\b",
        "a=b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char src[64];
        snprintf(src, sizeof src, "{{$%s}}", bad[i]);
        expect_error(src, 1, 3, "variable name");
    }
    static const char *good[] = {"0", "1", "a", "_", "01", "01a", "a01",
                                 "_0", "a01_", "_a01"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char src[64], want[64];
        snprintf(src, sizeof src, "{{ $%s }}", good[i]);
        snprintf(want, sizeof want, "V(%s)", good[i]);
        expect_blocks(src, want);
    }
}

TEST(error_values)
{
    expect_error("{{'x' $y}}", 1, 7, "after quoted value");
    expect_error("{{ 'x' 'y' }}", 1, 8, "after quoted value");
    expect_error("{{'a'b}}", 1, 6, "missing space");
    expect_error("{{call 'f\\\\'x}}", 1, 13, "missing space");
    expect_error("{{f a='x'b='y'}}", 1, 10, "missing space");
}

TEST(error_function_names)
{
    expect_error("{{f.g.h}}", 1, 3, "more than one '.'");
    expect_error("{{f-g}}", 1, 3, "invalid character '-' in function name");
    expect_error("}}{{ -a}} {{b}}x", 1, 6, "function name '-a'");
    expect_error("}}{{ -a\n}} {{b}}x", 1, 6, "function name");
    expect_error("}}{{{ {$a}}}} {{b}}x}}", 1, 7, "invalid character '{'");
    static const char *bad[] = {"{{a$}}", "{{a$a}}", "{{a''}}", "{{a\"\"}}",
                                "{{a'b'}}", "{{a\"b\"}}", "{{a'b'   }}",
                                "{{a\"b\"    }}", "{{f,g}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_error(bad[i], 1, 3, "in function name");
}

TEST(error_arguments)
{
    expect_error("{{f 'a' 'b'}}", 1, 9, "at most one positional");
    expect_error("{{f $a $b}}", 1, 8, "at most one positional");
    expect_error("{{f $a 'b'}}", 1, 8, "at most one positional");
    expect_error("{{f a='x' 'y'}}", 1, 11, "positional argument after named");
    expect_error("{{f a='x' $y}}", 1, 11, "positional argument after named");
    expect_error("{{f $x a='1' 'y'}}", 1, 14, "after named");
    expect_error("{{f name}}", 1, 5, "invalid argument 'name'");
    expect_error("{{f a='b' arg2}}", 1, 11, "invalid argument 'arg2'");
    expect_error("{{f a =}}", 1, 5, "argument 'a' has no value");
    expect_error("{{f a=}}", 1, 5, "has no value");
    expect_error("{{f a=b}}", 1, 7, "must be quoted or a $variable");
    expect_error("{{function input=$input age=42}}", 1, 29,
                 "value of argument 'age'");
    expect_error("{{f ='b'}}", 1, 5, "argument name is empty");
    expect_error("{{f a=$}}", 1, 7, "variable name is empty");
    expect_error("{{f a=$!@#^}}", 1, 7, "invalid character '!' in variable");
    expect_error("{{f !@#^='b'}}", 1, 5, "in argument name '!@#^'");
    expect_error("{{f foo=$bar=$baz}}", 1, 9, "variable name 'bar=$baz'");
    expect_error("{{f $a-b}}", 1, 5, "variable name 'a-b'");
    static const char *bad[] = {".", "-", "a.b", "a,b", "a-b", "a+b", "a@b",
                                "a#b", "a$b", "a:b", "a\\b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char src[64];
        snprintf(src, sizeof src, "{{f %s='val'}}", bad[i]);
        expect_error(src, 1, 5, "argument name");
    }
}

TEST(error_named_first)
{
    expect_error("{{ not='valid' }}", 1, 4, "without a function name");
    expect_error("{{a=$b}}", 1, 3, "without a function name");
    expect_error("{{ x = 'y' }}", 1, 6, "argument name is empty");
}

TEST(error_unterminated_in_code)
{
    /* the scanner saw balanced quotes, the code tokenizer does not: a
     * quote inside a word does not start a value */
    expect_error("{{f x'a' 'b}}'}}", 1, 5, "invalid argument");
    expect_error("{{f x' 'y}}", 1, 5, "invalid argument 'x''");
    /* a lexical error later in the block does not hide an earlier one */
    expect_error("{{$x.y ' 'z}}", 1, 3, "variable name");
    expect_error("{{f 'a' 'b'c}}", 1, 9, "at most one positional");
    expect_error("{{f $x 'b'c}}", 1, 8, "at most one positional");
    expect_error("{{f $x a=b}}", 1, 10, "must be quoted");
}

TEST(error_positions)
{
    expect_error("line one\nline two\n  say {{ f 'a' 'b' }}", 3, 16,
                 "positional");
    expect_error("a\r\n\r\n{{$a.b}}", 3, 3, "variable name");
    expect_error("\xe2\x9c\x93{{$-}}", 1, 6, NULL); /* cols count bytes */
    expect_error("{{$ok}} {{f\n  'x'\n  'y'}}", 3, 3, "positional");
    expect_error("{{x}}{{'a''b'}}", 1, 11, "missing space");
    expect_blocks("{{x}}{{'''}}", "C(x)T({{'''}})");
}

TEST(error_message_format)
{
    sk_template *t = NULL;
    char *err = NULL;
    const char *src = "hello\n {{$a b}}";
    CHECK_INT(tpl_parse(src, strlen(src), "skills/Fun/Joke/skprompt.txt", &t,
                        &err), SK_TEMPLATE);
    CHECK_STR(err, "skills/Fun/Joke/skprompt.txt:2:7: unexpected token "
                   "after variable $a");
    free(err);
    err = NULL;
    CHECK_INT(tpl_parse("{{$}}", 5, NULL, &t, &err), SK_TEMPLATE);
    CHECK_STR(err, "<template>:1:3: variable name is empty");
    free(err);
    /* errmsg may be NULL */
    CHECK_INT(tpl_parse("{{$}}", 5, NULL, &t, NULL), SK_TEMPLATE);
    CHECK(t == NULL);
    /* long names are cut in messages */
    char src2[300];
    memset(src2, 'x', sizeof src2);
    memcpy(src2, "{{$", 3);
    src2[200] = '-';
    memcpy(src2 + 296, "}}", 3);
    err = NULL;
    CHECK_INT(tpl_parse(src2, strlen(src2), "t", &t, &err), SK_TEMPLATE);
    CHECK(err && strlen(err) < 160);
    free(err);
}

TEST(nul_byte)
{
    sk_template *t = NULL;
    char *err = NULL;
    CHECK_INT(tpl_parse("ab\ncd\0ef", 8, "n.txt", &t, &err), SK_TEMPLATE);
    CHECK_STR(err, "n.txt:2:3: NUL byte in template");
    CHECK(t == NULL);
    free(err);
}

TEST(huge_template)
{
    size_t max = (size_t)16 << 20;
    char *big = malloc(max + 1);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'a', max + 1);
    memcpy(big + max - 8, "{{$x}}", 6);
    sk_template *t = NULL;
    char *err = NULL;
    CHECK_INT(tpl_parse(big, max + 1, "big.txt", &t, &err), SK_TOO_LARGE);
    CHECK(t == NULL);
    CHECK_CONTAINS(err, "big.txt: ");
    CHECK_CONTAINS(err, "16 MiB");
    free(err);
    err = NULL;
    /* exactly at the limit is fine */
    CHECK_INT(tpl_parse(big, max, "big.txt", &t, &err), SK_OK);
    if (t) {
        CHECK_INT(t->n, 3);
        CHECK_INT(t->blocks[1].kind, TB_VAR);
        CHECK_INT(t->blocks[2].col, (long long)(max - 8 + 6 + 1));
        tpl_free(t);
    }
    free(big);
}

/* ---- block fields -------------------------------------------------------- */

TEST(block_fields)
{
    const char *src = "Hi\n  {{ $name }} and {{'v'}}\n\n{{ Sk.F $x n='1' }}.";
    sk_template *t = NULL;
    CHECK_INT(tpl_parse(src, strlen(src), "f.txt", &t, NULL), SK_OK);
    if (!t)
        return;
    CHECK_INT(t->n, 7);
    CHECK_INT(t->n_calls, 1);
    const tpl_block *b = t->blocks;
    CHECK_INT(b[0].kind, TB_TEXT);
    CHECK_STR(b[0].src, "");
    CHECK_INT(b[0].line, 1);
    CHECK_INT(b[0].col, 1);
    CHECK_INT(b[1].kind, TB_VAR);
    CHECK_STR(b[1].src, "{{ $name }}");
    CHECK_STR(b[1].text, "name");
    CHECK_INT(b[1].line, 2);
    CHECK_INT(b[1].col, 3);
    CHECK_INT(b[2].line, 2);
    CHECK_INT(b[2].col, 14);
    CHECK_INT(b[3].kind, TB_VAL);
    CHECK_STR(b[3].src, "{{'v'}}");
    CHECK_STR(b[3].text, "v");
    CHECK_INT(b[3].col, 19);
    CHECK_INT(b[5].kind, TB_CALL);
    CHECK_STR(b[5].src, "{{ Sk.F $x n='1' }}");
    CHECK_STR(b[5].text, "Sk.F");
    CHECK_INT(b[5].line, 4);
    CHECK_INT(b[5].col, 1);
    CHECK_INT(b[5].n_args, 2);
    CHECK(b[5].args[0].name == NULL);
    CHECK_INT(b[5].args[0].is_var, 1);
    CHECK_STR(b[5].args[0].value, "x");
    CHECK_STR(b[5].args[1].name, "n");
    CHECK_INT(b[5].args[1].is_var, 0);
    CHECK_STR(b[5].args[1].value, "1");
    CHECK_INT(b[6].kind, TB_TEXT);
    CHECK_STR(b[6].text, ".");
    CHECK_INT(b[6].line, 4);
    CHECK_INT(b[6].col, 20);
    tpl_free(t);
}

TEST(call_at)
{
    const char *src = "{{a}} x {{$v}} {{b 'q'}}{{'lit'}}{{c}}";
    sk_template *t = NULL;
    CHECK_INT(tpl_parse(src, strlen(src), "c.txt", &t, NULL), SK_OK);
    if (!t)
        return;
    CHECK_INT(t->n_calls, 3);
    CHECK_STR(tpl_call_at(t, 0)->text, "a");
    CHECK_STR(tpl_call_at(t, 1)->text, "b");
    CHECK_STR(tpl_call_at(t, 1)->args[0].value, "q");
    CHECK_STR(tpl_call_at(t, 2)->text, "c");
    CHECK(tpl_call_at(t, 3) == NULL);
    CHECK(tpl_call_at(NULL, 0) == NULL);
    tpl_free(t);
    tpl_free(NULL); /* harmless */
}

/* ---- assembling ---------------------------------------------------------- */

TEST(assemble_variables)
{
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "Name", "Ada");
    sk_vars_set(v, "x", "{{$Name}}");
    expect_render("Hello {{$name}}, {{ $NAME }}!", v, NULL,
                  "Hello Ada, Ada!");
    expect_render("[{{$missing}}]", v, NULL, "[]");
    expect_render("[{{$missing}}]", NULL, NULL, "[]");
    /* variable values are not rendered again */
    expect_render("{{$x}}", v, NULL, "{{$Name}}");
    expect_render("{{'lit'}} {{\"{{$name}}\"}}", v, NULL, "lit {{$name}}");
    sk_vars_free(v);
}

TEST(assemble_calls)
{
    const char *src = "a {{ f  $x }} b {{g}} c {{h 'z'}}";
    /* without outputs, call blocks stay as written */
    expect_render(src, NULL, NULL, "a {{ f  $x }} b {{g}} c {{h 'z'}}");
    char *outs[] = {"ONE", NULL, "{{$x}}"};
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "x", "X");
    /* a NULL entry leaves its block as written; outputs are inserted
     * verbatim, never rendered again */
    expect_render(src, v, outs, "a ONE b {{g}} c {{$x}}");
    char *empty[] = {"", "", ""};
    expect_render(src, v, empty, "a  b  c ");
    sk_vars_free(v);
}

TEST(assemble_appends_and_ceiling)
{
    sk_template *t = NULL;
    const char *src = "0123456789{{$v}}";
    CHECK_INT(tpl_parse(src, strlen(src), "c.txt", &t, NULL), SK_OK);
    if (!t)
        return;
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "v", "abcdef");
    sk_buf b;
    buf_init(&b, 12);
    CHECK_INT(buf_adds(&b, ">"), SK_OK);
    CHECK_INT(tpl_assemble(t, v, NULL, NULL, &b), SK_TOO_LARGE);
    CHECK_STR(b.p, ">0123456789");
    buf_free(&b);
    buf_init(&b, 17);
    CHECK_INT(buf_adds(&b, ">"), SK_OK);
    CHECK_INT(tpl_assemble(t, v, NULL, NULL, &b), SK_OK);
    CHECK_STR(b.p, ">0123456789abcdef");
    /* assembling again appends */
    CHECK_INT(tpl_assemble(t, v, NULL, NULL, &b), SK_TOO_LARGE);
    buf_free(&b);
    CHECK_INT(tpl_assemble(NULL, v, NULL, NULL, &b), SK_USAGE);
    CHECK_INT(tpl_assemble(t, v, NULL, NULL, NULL), SK_USAGE);
    sk_vars_free(v);
    tpl_free(t);
}

TEST(parse_usage)
{
    sk_template *t = (sk_template *)&t;
    CHECK_INT(tpl_parse(NULL, 3, "x", &t, NULL), SK_USAGE);
    CHECK(t == NULL);
    CHECK_INT(tpl_parse("x", 1, "x", NULL, NULL), SK_USAGE);
    /* len is honoured: the text need not be NUL-terminated */
    CHECK_INT(tpl_parse("{{$a}}{{$b}}", 6, "x", &t, NULL), SK_OK);
    if (t) {
        CHECK_INT(t->n, 1);
        CHECK_STR(t->blocks[0].text, "a");
        tpl_free(t);
    }
}

/* ---- allocation failure ------------------------------------------------ */

TEST(alloc_failure_parse)
{
    const char *src =
        "System: {{$persona}}\n"
        "Text {{ Sk.Fn $input n='v\\'x' m=$y }} and {{f 'a=b'}}\n"
        "{{'lit'}}{{ }}{{g}}{{h a=\"}}\" b=$c}} tail";
    long n;
    int ok = 0;
    for (n = 1; n < 500 && !ok; n++) {
        sk_template *t = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = tpl_parse(src, strlen(src), "a.txt", &t, &err);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            ok = 1;
            char *d = dump(t);
            CHECK_STR(d, "T(System: )V(persona)T(\nText )"
                         "C(Sk.Fn $input n='v'x' m=$y)T( and )C(f 'a=b')"
                         "T(\n)L(lit)T({{ }})C(g)C(h a='}}' b=$c)T( tail)");
            free(d);
            tpl_free(t);
        } else {
            if (rc != SK_NOMEM) {
                tu_failed++;
                fprintf(stderr, "alloc failure %ld: status %d\n", n, rc);
            }
            CHECK(t == NULL);
            CHECK(err == NULL);
        }
    }
    CHECK(ok);
    CHECK(n > 10); /* it did fail a good number of times first */

    /* a syntax error whose message cannot be allocated is SK_NOMEM */
    int saw_template = 0;
    for (n = 1; n < 50 && !saw_template; n++) {
        sk_template *t = NULL;
        char *err = NULL;
        sk_alloc_fail_at(n);
        sk_status rc = tpl_parse("x {{$a}} {{f 'a' 'b'}}", 22, "e", &t, &err);
        sk_alloc_fail_at(0);
        CHECK(rc == SK_NOMEM || rc == SK_TEMPLATE);
        CHECK(t == NULL);
        if (rc == SK_TEMPLATE) {
            saw_template = 1;
            CHECK_CONTAINS(err, "e:1:18: ");
        } else {
            CHECK(err == NULL);
        }
        free(err);
    }
    CHECK(saw_template);
}

TEST(alloc_failure_assemble)
{
    sk_template *t = NULL;
    const char *src = "some text {{$v}} and more";
    CHECK_INT(tpl_parse(src, strlen(src), "a.txt", &t, NULL), SK_OK);
    if (!t)
        return;
    sk_buf b;
    buf_init(&b, 0);
    sk_alloc_fail_at(1);
    CHECK_INT(tpl_assemble(t, NULL, NULL, NULL, &b), SK_NOMEM);
    sk_alloc_fail_at(0);
    buf_free(&b);
    tpl_free(t);
}

/* A template is chat when a <message> tag of its own has a role; SK's
 * older prompts use role-less <message> tags as XML-style text, and SK
 * sends them as one prompt. */
TEST(chat_marking)
{
    static const struct {
        const char *text;
        int chat;
    } cases[] = {
        {"<message role=\"user\">{{$input}}</message>", 1},
        {"<message role='system'>a</message>", 1},
        {"<message\n  role = \"user\">a</message>", 1},
        {"<message role=\"{{$who}}\">a</message>", 1},
        {"<message role=user>a</message>", 1},
        {"<examples>\n<message>hi</message>\n<reply>no</reply>\n</examples>", 0},
        {"<message>a</message> <message >b</message>", 0},
        {"<messages role=\"x\">a</messages>", 0},
        {"<message data-role=\"x\">a</message>", 0},
        {"no markup at all, role=\"user\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sk_template *t = NULL;
        CHECK_INT(tpl_parse(cases[i].text, strlen(cases[i].text), "t", &t, NULL), SK_OK);
        CHECK_INT(t ? t->chat : -1, cases[i].chat);
        CHECK_INT(chat_marked(cases[i].text), cases[i].chat);
        tpl_free(t);
    }
}

int main(void)
{
    RUN(chat_marking);
    RUN(text_without_code);
    RUN(empty_template);
    RUN(basic_blocks);
    RUN(block_boundaries);
    RUN(quotes_poison_blocks);
    RUN(typical_prompt);
    RUN(function_calls);
    RUN(escapes);
    RUN(named_args);
    RUN(values_with_specials);
    RUN(unicode_text);
    RUN(error_variables);
    RUN(error_values);
    RUN(error_function_names);
    RUN(error_arguments);
    RUN(error_named_first);
    RUN(error_unterminated_in_code);
    RUN(error_positions);
    RUN(error_message_format);
    RUN(nul_byte);
    RUN(huge_template);
    RUN(block_fields);
    RUN(call_at);
    RUN(assemble_variables);
    RUN(assemble_calls);
    RUN(assemble_appends_and_ceiling);
    RUN(parse_usage);
    RUN(alloc_failure_parse);
    RUN(alloc_failure_assemble);
    return tu_finish();
}
