/* test_redact.c -- PII redaction: rules, placeholders, restore, local
 * endpoints, ceilings and allocation failure. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static rd_rules *defaults;

/* Redacts in with the built-ins and a fresh map; returns the text (caller
 * frees) or NULL on error. */
static char *red(const char *in)
{
    rd_map *m = rd_map_new();
    char *out = NULL;
    if (m && rd_redact(defaults, m, in, &out) != SK_OK)
        out = NULL;
    rd_map_free(m);
    return out;
}

/* 1 when the built-ins turn in into exactly want. */
static int red_is(const char *in, const char *want)
{
    char *out = red(in);
    int ok = out && strcmp(out, want) == 0;
    if (!ok)
        fprintf(stderr, "  redact(\"%s\") = \"%s\", want \"%s\"\n", in,
                out ? out : "(null)", want);
    free(out);
    return ok;
}

/* 1 when the built-ins leave in alone. */
static int kept(const char *in) { return red_is(in, in); }

/* 1 when redact then restore with one map gives in back. */
static int round_trips(const rd_rules *r, const char *in)
{
    rd_map *m = rd_map_new();
    char *red_text = NULL, *back = NULL;
    int ok = m && rd_redact(r, m, in, &red_text) == SK_OK &&
             rd_restore(m, red_text, &back) == SK_OK && strcmp(back, in) == 0;
    free(red_text);
    free(back);
    rd_map_free(m);
    return ok;
}

TEST(test_email)
{
    CHECK(red_is("mail alice@example.com now", "mail [EMAIL_1] now"));
    CHECK(red_is("a.b+tag@mail.example.co.uk.", "[EMAIL_1]."));
    CHECK(red_is("<bob_99@sub.example.org>", "<[EMAIL_1]>"));
    CHECK(kept("user@localhost has no domain"));
    CHECK(kept("@handle and a@b and x@y.z"));
}

TEST(test_phone)
{
    CHECK(red_is("call +1 415 555 2671 today", "call [PHONE_1] today"));
    CHECK(red_is("call +14155552671", "call [PHONE_1]"));
    CHECK(red_is("+44 20 7946 0958", "[PHONE_1]"));
    CHECK(red_is("+33 6 12 34 56 78", "[PHONE_1]"));
    CHECK(red_is("(555) 123-4567", "[PHONE_1]"));
    CHECK(red_is("+1 (555) 123-4567.", "[PHONE_1]."));
    CHECK(red_is("555-123-4567 or 555.123.4567", "[PHONE_1] or [PHONE_2]"));
    CHECK(red_is("06 12 34 56 78", "[PHONE_1]"));
    /* Not phones: years, dates, times, versions, short numbers, money. */
    CHECK(kept("in 2023 and 1999"));
    CHECK(kept("from 1990-2024, or 2019 2020 2021"));
    CHECK(kept("on 2023-01-15 or 15.01.2023 or 15/01/2023"));
    CHECK(kept("at 12:30:45 or 10:30 - 11:30"));
    CHECK(kept("version 1.2.3, 10.0.19041.1 and v2.14.1234"));
    CHECK(red_is("call 555-1234", "call [PHONE_1]"));
    CHECK(kept("call 123-456 or 12 34 56"));
    CHECK(kept("pi is 3.14159265 and e 2.718281828"));
    CHECK(kept("order 1234567 and 98765432"));
    CHECK(kept("1 234 567 people"));
}

TEST(test_card)
{
    CHECK(red_is("card 4111 1111 1111 1111 exp", "card [CARD_1] exp"));
    CHECK(red_is("4111-1111-1111-1111", "[CARD_1]"));
    CHECK(red_is("5555555555554444", "[CARD_1]"));
    CHECK(red_is("amex 378282246310005", "amex [CARD_1]"));
    /* The card is found even when a year follows it. */
    CHECK(red_is("4111 1111 1111 1111 2024", "[CARD_1] 2024"));
    /* Luhn failures stay. */
    CHECK(kept("card 4111 1111 1111 1112 exp"));
    CHECK(kept("5555555555554445"));
    CHECK(kept("0000 0000 0000 0000"));
    CHECK(kept("id 12345678901234567890123"));
}

TEST(test_iban)
{
    CHECK(red_is("pay GB82WEST12345698765432 now", "pay [IBAN_1] now"));
    CHECK(red_is("DE89370400440532013000", "[IBAN_1]"));
    CHECK(red_is("GB82 WEST 1234 5698 7654 32.", "[IBAN_1]."));
    CHECK(red_is("FR14 2004 1010 0505 0001 3M02 606", "[IBAN_1]"));
    /* One character off fails mod-97. */
    CHECK(kept("pay GB82WEST12345698765433 now"));
    CHECK(kept("DE89370400440532013001"));
    char *o = red("GB83 WEST 1234 5698 7654 32");
    CHECK(o && !strstr(o, "[IBAN_") && strncmp(o, "GB83 WEST ", 10) == 0);
    free(o);
}

TEST(test_ip)
{
    CHECK(red_is("host 192.168.1.10 up", "host [IP_1] up"));
    CHECK(red_is("10.0.0.1, 255.255.255.255.", "[IP_1], [IP_2]."));
    CHECK(red_is("v6 2001:db8::8a2e:370:7334 ok", "v6 [IP_1] ok"));
    CHECK(red_is("loopback ::1 and fe80::1", "loopback [IP_1] and [IP_2]"));
    CHECK(red_is("at 2001:db8:0:0:1:0:0:1: up", "at [IP_1]: up"));
    CHECK(red_is("::ffff:192.0.2.128", "[IP_1]"));
    CHECK(kept("version 1.2.3 and 256.1.1.1 and 1.2.3.4.5"));
    CHECK(kept("at 12:30:45 and std::vector and a::b::c::d"));
    CHECK(kept("mac 00:1A:2B:3C:4D:5E"));
}

TEST(test_secret)
{
    CHECK(red_is("key sk-abcdefghijklmnopqrstuvwx1234", "key [SECRET_1]"));
    CHECK(red_is("sk-proj-AbCdEfGhIjKlMnOpQrStUvWx_-12", "[SECRET_1]"));
    CHECK(red_is("AKIAIOSFODNN7EXAMPLE", "[SECRET_1]"));
    CHECK(red_is("ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                 "[SECRET_1]"));
    CHECK(red_is("github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
                 "[SECRET_1]"));
    CHECK(red_is("xoxb-1234567890-abcdefghij", "[SECRET_1]"));
    CHECK(red_is("Authorization: Bearer abc.DEF-123_xyz==",
                 "Authorization: Bearer [SECRET_1]"));
    CHECK(red_is("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_Abc-123",
                 "jwt [SECRET_1]"));
    CHECK(red_is("token=9f8A7b6C5d4E3f2", "token=[SECRET_1]"));
    CHECK(red_is("{\"api_key\": \"Zx81kLq0Pm3vN7\"}",
                 "{\"api_key\": \"[SECRET_1]\"}"));
    CHECK(red_is("password=hunter2", "password=[SECRET_1]"));
    CHECK(red_is("PASSWORD: 'correct horse'", "PASSWORD: '[SECRET_1] horse'"));
    /* Not secrets: prose and short or plain values. */
    CHECK(kept("the token: required, key=value, secret=abc"));
    CHECK(kept("sk-short and task-abcdefghijklmnopqrstuvwxyz"));
    CHECK(kept("AKIA123"));
}

TEST(test_placeholders)
{
    rd_map *m = rd_map_new();
    char *out = NULL, *back = NULL;
    const char *in = "a@x.io b@x.io a@x.io +1 415 555 2671";
    CHECK_INT(rd_redact(defaults, m, in, &out), SK_OK);
    CHECK_STR(out, "[EMAIL_1] [EMAIL_2] [EMAIL_1] [PHONE_1]");
    CHECK_INT(rd_map_count(m), 3);
    /* A second text shares the map: same value, same placeholder. */
    char *out2 = NULL;
    CHECK_INT(rd_redact(defaults, m, "to b@x.io, cc c@x.io", &out2), SK_OK);
    CHECK_STR(out2, "to [EMAIL_2], cc [EMAIL_3]");
    /* A reply that reorders and repeats placeholders, and mentions ones
     * the map does not know or spells differently. */
    CHECK_INT(rd_restore(m, "[PHONE_1]; [EMAIL_2]/[EMAIL_1]/[EMAIL_2] "
                            "[EMAIL_9] [email_1] EMAIL_1 [EMAIL_1",
                         &back),
              SK_OK);
    CHECK_STR(back, "+1 415 555 2671; b@x.io/a@x.io/b@x.io "
                    "[EMAIL_9] [email_1] EMAIL_1 [EMAIL_1");
    free(out);
    free(out2);
    free(back);
    /* NULL map: a plain copy. */
    CHECK_INT(rd_restore(NULL, "[EMAIL_1]", &back), SK_OK);
    CHECK_STR(back, "[EMAIL_1]");
    free(back);
    rd_map_free(m);
}

TEST(test_literal_placeholders)
{
    rd_map *m = rd_map_new();
    char *out = NULL, *back = NULL;
    const char *in = "keep [EMAIL_1] and [EMAIL_3], hide a@x.io b@x.io c@x.io";
    CHECK_INT(rd_redact(defaults, m, in, &out), SK_OK);
    CHECK_STR(out, "keep [EMAIL_1] and [EMAIL_3], hide [EMAIL_2] [EMAIL_4] "
                   "[EMAIL_5]");
    CHECK_INT(rd_restore(m, out, &back), SK_OK);
    CHECK_STR(back, in);
    free(out);
    free(back);
    /* Reserved literals stay reserved for later texts of the map. */
    CHECK_INT(rd_redact(defaults, m, "d@x.io [PHONE_1]", &out), SK_OK);
    CHECK_STR(out, "[EMAIL_6] [PHONE_1]");
    free(out);
    CHECK_INT(rd_redact(defaults, m, "+1 415 555 2671", &out), SK_OK);
    CHECK_STR(out, "[PHONE_2]");
    free(out);
    rd_map_free(m);
    CHECK(round_trips(defaults, "[SECRET_1] [IP_1] 10.0.0.1 [IP_2] [X_1]"));
}

TEST(test_custom_rules)
{
    rd_rules *r = rd_rules_new();
    char *msg = NULL;
    CHECK(r != NULL);
    CHECK_INT(rd_rules_add(r, "EMPLOYEE_ID", "\\bE-[0-9]{6}\\b", &msg), SK_OK);
    CHECK(msg == NULL);
    char *out = NULL;
    rd_map *m = rd_map_new();
    /* An empty set plus one rule: only that rule applies. */
    CHECK_INT(rd_redact(r, m, "E-123456 wrote a@x.io", &out), SK_OK);
    CHECK_STR(out, "[EMPLOYEE_ID_1] wrote a@x.io");
    free(out);
    rd_map_free(m);

    CHECK_INT(rd_rules_add(r, "lower", "x", &msg), SK_CONFIG);
    CHECK_CONTAINS(msg, "redaction rule lower: bad name");
    free(msg);
    CHECK_INT(rd_rules_add(r, "9LIVES", "x", &msg), SK_CONFIG);
    free(msg);
    CHECK_INT(rd_rules_add(r, "A-B", "x", NULL), SK_CONFIG);
    CHECK_INT(rd_rules_add(r, "", "x", NULL), SK_CONFIG);
    CHECK_INT(rd_rules_add(r, "BAD", "ab(c", &msg), SK_CONFIG);
    CHECK_CONTAINS(msg, "redaction rule BAD: bad pattern at offset 4: ");
    free(msg);
    CHECK_INT(rd_rules_add(r, "BAD", "[z-a]", &msg), SK_CONFIG);
    CHECK_CONTAINS(msg, "redaction rule BAD: bad pattern at offset 3: ");
    free(msg);
    rd_rules_free(r);

    /* Custom rules run before the built-ins, even when added later. */
    rd_rules *d = NULL;
    CHECK_INT(rd_rules_default(&d), SK_OK);
    CHECK_INT(rd_rules_add(d, "INTERNAL_MAIL", "[a-z]+@corp\\.example\\.com", NULL),
              SK_OK);
    m = rd_map_new();
    CHECK_INT(rd_redact(d, m, "ann@corp.example.com, bob@else.org", &out), SK_OK);
    CHECK_STR(out, "[INTERNAL_MAIL_1], [EMAIL_1]");
    free(out);
    /* A custom rule that matches the empty string never loops. */
    CHECK_INT(rd_rules_add(d, "EMPTY", "x*", NULL), SK_OK);
    CHECK_INT(rd_redact(d, m, "abc xx", &out), SK_OK);
    CHECK_STR(out, "abc [EMPTY_1]");
    free(out);
    rd_map_free(m);
    rd_rules_free(d);
}

TEST(test_chained_rule_sets)
{
    /* Two sets over one map, one after the other (custom first, then the
     * built-ins): the second leaves the first's placeholders alone and
     * one restore undoes both. */
    rd_rules *custom = rd_rules_new();
    CHECK_INT(rd_rules_add(custom, "NUM", "[0-9]+", NULL), SK_OK);
    rd_map *m = rd_map_new();
    char *a = NULL, *b = NULL, *back = NULL;
    const char *in = "ticket 77 from a@x.io";
    CHECK_INT(rd_redact(custom, m, in, &a), SK_OK);
    CHECK_STR(a, "ticket [NUM_1] from a@x.io");
    CHECK_INT(rd_redact(defaults, m, a, &b), SK_OK);
    CHECK_STR(b, "ticket [NUM_1] from [EMAIL_1]");
    /* ...and a custom rule that could cut into a placeholder does not. */
    char *c = NULL;
    CHECK_INT(rd_redact(custom, m, b, &c), SK_OK);
    CHECK_STR(c, b);
    CHECK_INT(rd_restore(m, c, &back), SK_OK);
    CHECK_STR(back, in);
    free(a);
    free(b);
    free(c);
    free(back);
    /* A built-in match that swallows a custom placeholder stores the
     * original with it put back, so one restore is enough. */
    const char *in2 = "token=Ab7x55Zq9 done";
    CHECK_INT(rd_redact(custom, m, in2, &a), SK_OK);
    CHECK_STR(a, "token=Ab[NUM_2]x[NUM_3]Zq[NUM_4] done");
    CHECK_INT(rd_redact(defaults, m, a, &b), SK_OK);
    CHECK_STR(b, "token=[SECRET_1] done");
    CHECK_INT(rd_restore(m, b, &back), SK_OK);
    CHECK_STR(back, in2);
    free(a);
    free(b);
    free(back);
    rd_map_free(m);
    rd_rules_free(custom);
}

TEST(test_round_trips)
{
    CHECK(round_trips(defaults, ""));
    CHECK(round_trips(defaults, "no personal data here"));
    CHECK(round_trips(defaults,
                      "Hi, I'm Ann (ann@example.com, +49 30 12345678), card "
                      "4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, "
                      "server 192.168.0.1 / 2001:db8::1, key "
                      "sk-abcdefghijklmnopqrstuvwx1234."));
}

TEST(test_utf8)
{
    CHECK(red_is("Grüße an jürgen.müller@example.de? nein: anna@example.de ✓",
                 "Grüße an [EMAIL_1]? nein: [EMAIL_2] ✓"));
    CHECK(red_is("电话：+86 138 0013 8000。", "电话：[PHONE_1]。"));
    CHECK(red_is("« 192.168.1.1 » — ok", "« [IP_1] » — ok"));
    CHECK(round_trips(defaults, "日本語 bob@example.jp 日本語"));
    /* Invalid UTF-8 around and between matches neither crashes nor stops
     * the rules. */
    CHECK(red_is("\xff\xfe a@x.io \xc3 \xe2\x82 10.0.0.1 \x80",
                 "\xff\xfe [EMAIL_1] \xc3 \xe2\x82 [IP_1] \x80"));
    CHECK(round_trips(defaults, "\xc0\xaf\xed\xa0\x80 [EMAIL_1\xff] x@y.io"));
    /* An invalid byte inside a match is kept, byte for byte, in the
     * original. */
    CHECK(red_is("password=p\xffssw\xc3rd!", "password=[SECRET_1]"));
    CHECK(round_trips(defaults, "password=p\xffssw\xc3rd! \xf4\x90\x80\x80"));
}

TEST(test_is_local)
{
    CHECK(rd_is_local("openai:llama@http://127.0.0.1:8080/v1"));
    CHECK(rd_is_local("openai:llama@http://127.1.2.3/v1"));
    CHECK(rd_is_local("openai:llama@http://localhost:11434/v1"));
    CHECK(rd_is_local("openai:llama@http://LOCALHOST.localdomain/v1"));
    CHECK(rd_is_local("openai:llama@http://[::1]:8080/v1"));
    CHECK(rd_is_local("http://127.0.0.1:8080"));
    CHECK(rd_is_local("https://user:pw@localhost/v1"));
    CHECK(rd_is_local("scripted:tests/data/replies.json"));
    CHECK(!rd_is_local("openai:gpt-4o@https://api.openai.com/v1"));
    CHECK(!rd_is_local("openai:x@http://127.0.0.1.evil.com/v1"));
    CHECK(!rd_is_local("openai:x@http://localhost.evil.com/v1"));
    CHECK(!rd_is_local("http://127.0.0.1@evil.com/"));
    CHECK(!rd_is_local("http://10.0.0.5:8080/v1"));
    CHECK(!rd_is_local("http://[2001:db8::1]/v1"));
    CHECK(!rd_is_local(""));
    CHECK(!rd_is_local(NULL));
    CHECK(!rd_is_local("ollama:llama"));

    const char *saved = getenv("OPENAI_BASE_URL");
    char *keep = saved ? strdup(saved) : NULL;
    unsetenv("OPENAI_BASE_URL");
    CHECK(!rd_is_local("openai:gpt-4o"));
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1", 1);
    CHECK(rd_is_local("openai:gpt-4o"));
    setenv("OPENAI_BASE_URL", "https://api.openai.com/v1", 1);
    CHECK(!rd_is_local("openai:gpt-4o"));
    if (keep)
        setenv("OPENAI_BASE_URL", keep, 1);
    else
        unsetenv("OPENAI_BASE_URL");
    free(keep);
}

TEST(test_errors_and_ceilings)
{
    rd_map *m = rd_map_new();
    char *out = (char *)"x";
    CHECK_INT(rd_redact(NULL, m, "a", &out), SK_USAGE);
    CHECK(out == NULL);
    CHECK_INT(rd_redact(defaults, m, NULL, &out), SK_USAGE);
    CHECK_INT(rd_restore(m, NULL, &out), SK_USAGE);

    /* Text past 64 MiB. */
    size_t big = ((size_t)64 << 20) + 1;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    CHECK_INT(rd_redact(defaults, m, huge, &out), SK_TOO_LARGE);
    CHECK(out == NULL);
    CHECK_INT(rd_restore(m, huge, &out), SK_TOO_LARGE);
    free(huge);
    rd_map_free(m);

    /* 100000 distinct placeholders, then one more. */
    rd_rules *r = rd_rules_new();
    CHECK_INT(rd_rules_add(r, "N", "[0-9]+", NULL), SK_OK);
    sk_buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 100000; i++)
        buf_printf(&b, "%d ", i);
    m = rd_map_new();
    CHECK_INT(rd_redact(r, m, b.p, &out), SK_OK);
    CHECK_INT(rd_map_count(m), 100000);
    CHECK(out && strncmp(out, "[N_1] [N_2] ", 12) == 0);
    free(out);
    CHECK_INT(rd_redact(r, m, "99999 0", &out), SK_OK); /* known values */
    free(out);
    CHECK_INT(rd_redact(r, m, "100000", &out), SK_TOO_LARGE);
    CHECK(out == NULL);
    rd_map_free(m);
    buf_free(&b);

    /* A runaway pattern hits the match limit: an error, not a pass. */
    CHECK_INT(rd_rules_add(r, "SLOW", "(a+)+$", NULL), SK_OK);
    m = rd_map_new();
    CHECK_INT(rd_redact(r, m, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", &out),
              SK_TOO_LARGE);
    rd_map_free(m);
    rd_rules_free(r);
}

TEST(test_alloc_failure)
{
    const char *in = "a@x.io [EMAIL_1] 4111 1111 1111 1111 +1 415 555 2671 "
                     "sk-abcdefghijklmnopqrstuvwx1234 a@x.io";
    int oks = 0, fails = 0, wrong = 0;
    for (long n = 1; n < 400; n++) {
        sk_alloc_fail_at(n);
        rd_rules *r = NULL;
        sk_status rc = rd_rules_default(&r);
        if (rc == SK_OK)
            rc = rd_rules_add(r, "TICKET", "T-[0-9]+", NULL);
        rd_map *m = rc == SK_OK ? rd_map_new() : NULL;
        if (rc == SK_OK && !m)
            rc = SK_NOMEM;
        char *out = NULL, *back = NULL;
        if (rc == SK_OK)
            rc = rd_redact(r, m, in, &out);
        if (rc == SK_OK)
            rc = rd_restore(m, out, &back);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            oks++;
            if (strcmp(back, in) != 0)
                wrong++;
        } else if (rc == SK_NOMEM) {
            fails++;
        } else {
            fprintf(stderr, "n=%ld rc=%d\n", n, rc);
            wrong++;
        }
        free(out);
        free(back);
        rd_map_free(m);
        rd_rules_free(r);
    }
    CHECK(fails > 20);
    CHECK(oks > 0);
    CHECK_INT(wrong, 0);
    sk_alloc_fail_at(0);
}

int main(void)
{
    if (rd_rules_default(&defaults) != SK_OK) {
        fprintf(stderr, "rd_rules_default failed\n");
        return 1;
    }
    RUN(test_email);
    RUN(test_phone);
    RUN(test_card);
    RUN(test_iban);
    RUN(test_ip);
    RUN(test_secret);
    RUN(test_placeholders);
    RUN(test_literal_placeholders);
    RUN(test_custom_rules);
    RUN(test_chained_rule_sets);
    RUN(test_round_trips);
    RUN(test_utf8);
    RUN(test_is_local);
    RUN(test_errors_and_ceilings);
    RUN(test_alloc_failure);
    rd_rules_free(defaults);
    return tu_finish();
}
