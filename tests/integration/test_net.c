/* test_net.c -- the network conventions through the C API: a dry run
 * (sk_invoke_opts.dry_run) that sends nothing to a loopback server, a
 * fallback counted in sk_usage, the idle_timeout_ms option, and every
 * allocation failing in turn across a dry run and across a fallback, each
 * ending in SK_OK with the right result or in SK_NOMEM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

#define KEY "sk-test-capi0123456789SECRET"

static char dir[256];
static char url[64];
static char model[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static long file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static sk_kernel *new_kernel(const char *spec)
{
    sk_kernel *k = NULL;
    if (sk_kernel_new(&k) != SK_OK) {
        sk_kernel_free(k);
        return NULL;
    }
    sk_kernel_set_option(k, "quiet", "1");
    sk_kernel_set_option(k, "retries", "0");
    if (sk_kernel_set_model(k, spec) != SK_OK ||
        sk_kernel_add_semantic(k, "T", "Ask",
                               "<message role=\"system\">Be terse.</message>"
                               "<message role=\"user\">Capital of {{$input}}?</message>",
                               "{\"uncertainty\": false, \"completion\": {\"max_tokens\": 9}}") !=
            SK_OK) {
        sk_kernel_free(k);
        return NULL;
    }
    return k;
}

static sk_status upper(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)ud;
    const char *in = sk_vars_get(args, "input");
    *out = strdup(in ? in : "");
    return SK_OK;
}

static void test_dry_run(void)
{
    tu_current = "dry run";
    char log[512];
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    sk_kernel *k = new_kernel(model);
    CHECK(k != NULL);
    if (!k)
        return;
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "France");
    sk_invoke_opts o = {.dry_run = 1};
    char *out = NULL;
    CHECK_INT(sk_invoke(k, "T.Ask", v, &o, &out), SK_OK);
    char want[160];
    snprintf(want, sizeof want, "\"url\":\t\"%s/v1/chat/completions\"", url);
    CHECK_CONTAINS(out, want);
    CHECK_CONTAINS(out, "\"Authorization: Bearer [redacted]\"");
    CHECK(out && !strstr(out, KEY));
    CHECK_CONTAINS(out, "\"content\":\t\"Capital of France?\"");
    CHECK_CONTAINS(out, "\"body\":\t{\"model\":\"m\",\"messages\":[{\"role\":\"system\","
                        "\"content\":\"Be terse.\"},{\"role\":\"user\",\"content\":"
                        "\"Capital of France?\"}],\"max_tokens\":9}");
    sk_free(out);
    /* the same through sk_invoke_async */
    sk_call *c = NULL;
    CHECK_INT(sk_invoke_async(k, "T.Ask", v, &o, &c), SK_OK);
    CHECK_INT(sk_call_wait(c), SK_OK);
    CHECK_CONTAINS(sk_call_result(c), "\"method\":\t\"POST\"");
    CHECK(sk_call_signals(c) == NULL);
    sk_call_free(c);
    /* a native function has no request to show */
    sk_kernel_add_native(k, "N", "Up", "upper", NULL, 0, upper, NULL);
    CHECK_INT(sk_invoke(k, "N.Up", v, &o, &out), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "N.Up is a native function");
    CHECK_INT(file_lines(log), 0); /* nothing reached the server */
    /* and without dry_run, the request does go out */
    sk_invoke_opts real = {0};
    CHECK_INT(sk_invoke(k, "T.Ask", v, &real, &out), SK_OK);
    CHECK_STR(out, "Paris");
    sk_free(out);
    CHECK_INT(file_lines(log), 1);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 1);
    sk_vars_free(v);
    sk_kernel_free(k);
}

static void test_options(void)
{
    tu_current = "options";
    sk_kernel *k = new_kernel(model);
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK_INT(sk_kernel_set_option(k, "idle_timeout_ms", "0"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "idle_timeout_ms", "2500"), SK_OK);
    CHECK_INT(sk_kernel_set_option(k, "idle_timeout_ms", "-1"), SK_USAGE);
    CHECK_INT(sk_kernel_set_option(k, "idle_timeout_ms", "soon"), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "option idle_timeout_ms");
    CHECK_INT(sk_kernel_set_option(k, "timeout_ms", "0"), SK_USAGE);
    sk_kernel_free(k);
}

/* Two in-process models: a failing one, and its fallback. */
static char fail_spec[600], good_spec[600], fb_policy[700];

static void test_fallback_usage(void)
{
    tu_current = "fallback usage";
    sk_kernel *k = new_kernel(fail_spec);
    CHECK(k != NULL);
    if (!k)
        return;
    sk_vars *v = NULL;
    sk_vars_new(&v);
    sk_vars_set(v, "input", "Peru");
    char *out = NULL;
    sk_invoke_opts none = {0};
    CHECK_INT(sk_invoke(k, "T.Ask", v, &none, &out), SK_MODEL);
    sk_invoke_opts o = {.policy = fb_policy};
    CHECK_INT(sk_invoke(k, "T.Ask", v, &o, &out), SK_OK);
    CHECK_STR(out, "Lima");
    sk_free(out);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.fallbacks, 1);
    CHECK_INT(u.failures, 2);
    /* the whole chain failing: the last error, naming the first model */
    char both[700];
    snprintf(both, sizeof both, "{\"fallbacks\": [\"%s\"]}", fail_spec);
    sk_invoke_opts o2 = {.policy = both};
    CHECK_INT(sk_invoke(k, "T.Ask", v, &o2, &out), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "(after falling back from scripted:");
    sk_vars_free(v);
    sk_kernel_free(k);
}

/* ---- allocation failures ------------------------------------------------ */

#define STREAK 25

typedef sk_status (*attempt_fn)(long n, char **msg);

static void sweep(const char *what, attempt_fn fn)
{
    tu_current = what;
    long nomem = 0, other = 0, streak = 0, n;
    for (n = 1; n <= 20000 && streak < STREAK; n++) {
        char *msg = NULL;
        sk_status rc = fn(n, &msg);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            streak++;
        } else {
            streak = 0;
            if (rc == SK_NOMEM || (rc != SK_USAGE && msg && strstr(msg, "out of memory")))
                nomem++;
            else if (++other <= 5)
                fprintf(stderr, "%s: allocation %ld failed: %s (%s)\n", what, n,
                        sk_status_kind(rc), msg ? msg : "");
        }
        free(msg);
    }
    CHECK(streak >= STREAK);
    CHECK(nomem > 0);
    CHECK_INT(other, 0);
    tu_current = NULL;
}

/* One attempt: a kernel made with allocation working, then the call with
 * allocation n failing.  SK_USAGE for a wrong result. */
static sk_status attempt(long n, char **msg, const char *spec, const sk_invoke_opts *o,
                         const char *must_have)
{
    sk_kernel *k = new_kernel(spec);
    sk_vars *v = NULL;
    if (!k || sk_vars_new(&v) != SK_OK || sk_vars_set(v, "input", "Peru") != SK_OK) {
        sk_vars_free(v);
        sk_kernel_free(k);
        return SK_USAGE;
    }
    char *out = NULL;
    sk_alloc_fail_at(n);
    sk_status rc = sk_invoke(k, "T.Ask", v, o, &out);
    sk_alloc_fail_at(0);
    if (rc != SK_OK)
        *msg = strdup(sk_errmsg(k) ? sk_errmsg(k) : "");
    else if (!out || !strstr(out, must_have))
        rc = SK_USAGE;
    sk_free(out);
    sk_vars_free(v);
    sk_kernel_free(k);
    return rc;
}

static sk_status try_dry_run(long n, char **msg)
{
    sk_invoke_opts o = {.dry_run = 1};
    return attempt(n, msg, model, &o, "\"body\":\t{\"model\":\"m\"");
}

static sk_status try_fallback(long n, char **msg)
{
    sk_invoke_opts o = {.policy = fb_policy};
    return attempt(n, msg, fail_spec, &o, "Lima");
}

int main(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/skein-test-net-XXXXXX", tmp);
    if (!mkdtemp(dir))
        return 1;
    char path[512], scripted[512];
    snprintf(path, sizeof path, "%s/scenario.json", dir);
    char scenario[1024];
    snprintf(scenario, sizeof scenario,
             "{\"log\": \"%s/log.jsonl\", \"responses\": [{\"reply\": \"Paris\"}]}", dir);
    write_file(path, scenario);
    snprintf(scripted, sizeof scripted, "%s/fail.json", dir);
    write_file(scripted, "{\"rules\": [{\"match\": \"\", \"error\": {\"kind\": \"model\", "
                         "\"message\": \"server on fire\", \"http_status\": 503}}]}");
    snprintf(fail_spec, sizeof fail_spec, "scripted:%s", scripted);
    snprintf(scripted, sizeof scripted, "%s/good.json", dir);
    write_file(scripted, "{\"default\": \"Lima\"}");
    snprintf(good_spec, sizeof good_spec, "scripted:%s", scripted);
    snprintf(fb_policy, sizeof fb_policy, "{\"fallbacks\": [\"%s\"]}", good_spec);
    setenv("OPENAI_API_KEY", KEY, 1);
    setenv("SKEIN_CACHE", "off", 1);
    int pid = 0;
    if (tu_mock_start(path, url, &pid) == 0) {
        snprintf(model, sizeof model, "openai:m@%s/v1", url);
        test_dry_run();
        test_options();
        test_fallback_usage();
        sweep("dry run", try_dry_run);
        sweep("fallback", try_fallback);
        tu_mock_stop(pid);
    } else {
        CHECK(!"mock server started");
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish();
}
