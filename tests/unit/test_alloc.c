/* test_alloc.c -- allocation failure across whole operations.
 *
 * With sk_alloc_fail_at(n) the nth allocation from now fails.  Each sweep
 * runs one operation for n = 1, 2, ... and requires every attempt to end
 * in SK_OK with the right result or in SK_NOMEM, never a crash, a leak
 * (the sanitized suite runs this under LeakSanitizer) or some other error
 * that would blame the input for a lack of memory.  A failure the code
 * absorbs (a trace line not written, say) legitimately succeeds, so a
 * sweep ends only after a run of successes, when n is past the last
 * allocation the operation makes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "all.h"
#include "skein.h"
#include "testutil.h"

/* Consecutive successes that end a sweep. */
#define STREAK 25

static char src[512];
static char model_spec[600];

/* One attempt with allocation n failing.  Returns the operation's status;
 * on failure *msg may hold its message (caller frees).  SK_OK only when
 * the result was also right: a wrong result is reported as SK_USAGE. */
typedef sk_status (*attempt_fn)(long n, char **msg);

/* A status other than SK_NOMEM is still clean when its message says memory
 * ran out (a Lua skill's error is SK_SCRIPT "...: out of memory").  known,
 * when not NULL, is a message accepted for a known misreport (see the
 * callers). */
static int clean_error(const char *msg, const char *known)
{
    return msg && (strstr(msg, "out of memory") || strstr(msg, "not enough memory") ||
                   (known && strstr(msg, known)));
}

static void sweep(const char *what, attempt_fn fn, long max_n, const char *known)
{
    tu_current = what;
    long nomem = 0, other = 0, clean = 0, ok = 0, streak = 0, n;
    for (n = 1; n <= max_n && streak < STREAK; n++) {
        char *msg = NULL;
        sk_status rc = fn(n, &msg);
        sk_alloc_fail_at(0);
        if (rc == SK_OK) {
            ok++;
            streak++;
        } else {
            streak = 0;
            if (rc == SK_NOMEM) {
                nomem++;
            } else if (rc != SK_USAGE && clean_error(msg, known)) {
                clean++;
            } else {
                other++;
                if (other <= 5)
                    fprintf(stderr, "%s: allocation %ld failed: %s (%s)\n", what, n,
                            sk_status_kind(rc), msg ? msg : "");
            }
        }
        free(msg);
    }
    CHECK(streak >= STREAK); /* reached the end of the operation's allocations */
    CHECK(nomem > 0);        /* and the sweep did hit allocations */
    CHECK_INT(other, 0);
    fprintf(stderr, "%s: %ld attempts, %ld out of memory, %ld other clean errors, "
            "%ld succeeded\n", what, n - 1, nomem, clean, ok);
    tu_current = NULL;
}

/* The kernel every attempt starts from, made with allocation working:
 * the scripted model, quiet, no trace. */
static sk_kernel *new_kernel(void)
{
    sk_kernel *k = NULL;
    if (sk_kernel_new(&k) != SK_OK)
        return NULL;
    sk_kernel_set_option(k, "quiet", "1");
    if (sk_kernel_set_model(k, model_spec) != SK_OK) {
        sk_kernel_free(k);
        return NULL;
    }
    return k;
}

static char *errcopy(sk_kernel *k)
{
    const char *m = sk_errmsg(k);
    return strdup(m ? m : "");
}

/* ---- kernel and skills ------------------------------------------------- */

static sk_status try_kernel_new(long n, char **msg)
{
    sk_kernel *k = NULL;
    sk_alloc_fail_at(n);
    sk_status rc = sk_kernel_new(&k);
    sk_alloc_fail_at(0);
    if (rc == SK_OK && !k)
        rc = SK_USAGE;
    if (rc != SK_OK && k)
        *msg = errcopy(k);
    sk_kernel_free(k);
    return rc;
}

static sk_status load_dir(long n, char **msg, const char *dir, const char *must_have)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return SK_USAGE;
    sk_alloc_fail_at(n);
    sk_status rc = sk_kernel_load_skills(k, dir);
    sk_alloc_fail_at(0);
    if (rc != SK_OK) {
        *msg = errcopy(k);
    } else {
        sk_function_info fi;
        if (sk_kernel_function_find(k, must_have, &fi) != SK_OK) {
            *msg = strdup(must_have);
            rc = SK_USAGE;
        }
    }
    sk_kernel_free(k);
    return rc;
}

static sk_status try_load_samples(long n, char **msg)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/tests/data/sk_samples", src);
    return load_dir(n, msg, dir, "WriterSkill.ShortPoem");
}

static sk_status try_load_builtin(long n, char **msg)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/skills", src);
    return load_dir(n, msg, dir, "Review.Check");
}

/* ---- templates, config ------------------------------------------------- */

static sk_status try_template(long n, char **msg)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return SK_USAGE;
    sk_status rc = sk_kernel_add_semantic(k, "T", "Inner", "inner({{$input}})", NULL);
    if (rc == SK_OK)
        rc = sk_kernel_add_semantic(k, "T", "Outer", "outer[{{T.Inner $input}}]", NULL);
    sk_vars *v = NULL;
    if (rc == SK_OK)
        rc = sk_vars_new(&v);
    if (rc == SK_OK)
        rc = sk_vars_set(v, "input", "x");
    if (rc == SK_OK)
        rc = sk_vars_set(v, "who", "world");
    if (rc != SK_OK) {
        sk_vars_free(v);
        sk_kernel_free(k);
        return SK_USAGE;
    }
    const char *text = "Hello {{$who}}! {{T.Outer $input}} / {{T.Inner 'quoted'}} "
                       "{{ $missing }} {{T.Inner input=$who}}";
    sk_template *t = NULL;
    char *out = NULL;
    sk_alloc_fail_at(n);
    rc = sk_template_parse(k, text, strlen(text), "t.txt", &t);
    if (rc == SK_OK)
        rc = sk_render(k, t, v, 0, &out);
    sk_alloc_fail_at(0);
    if (rc == SK_OK) {
        /* the scripted model echoes the prompt, so nesting shows */
        const char *want = "Hello world! outer[inner(x)] / inner(quoted)  inner(world)";
        if (!out || strcmp(out, want) != 0) {
            *msg = sk_asprintf("rendered \"%s\"", out ? out : "(null)");
            rc = SK_USAGE;
        }
    } else {
        *msg = errcopy(k);
        if (out)
            rc = SK_USAGE; /* an error must not also return text */
    }
    sk_free(out);
    sk_template_free(t);
    sk_vars_free(v);
    sk_kernel_free(k);
    return rc;
}

static sk_status try_config(long n, char **msg)
{
    const char *doc =
        "{ \"schema\": 1, \"type\": \"completion\",\n"
        "  \"description\": \"Summarize a text\",\n"
        "  // comments are allowed\n"
        "  \"completion\": {\"max_tokens\": 200, \"temperature\": 0.2,\n"
        "                  \"stop_sequences\": [\"##\", \"END\"]},\n"
        "  \"execution_settings\": {\"default\": {\"max_tokens\": 10},\n"
        "                           \"fast\": {\"temperature\": 0}},\n"
        "  \"input\": {\"parameters\": [\n"
        "    {\"name\": \"input\", \"description\": \"the text\", \"defaultValue\": \"\"},\n"
        "    {\"name\": \"style\", \"description\": \"how\", \"defaultValue\": \"terse\"}]},\n"
        "  \"input_variables\": [{\"name\": \"lang\", \"description\": \"language\","
        " \"default\": \"en\", \"is_required\": false}],\n"
        "  \"policy\": {\"review\": \"Review.Check\","
        " \"filters\": {\"output\": [{\"pattern\": \"(?i)secret\"}]}}\n"
        "}";
    cfg_function *c = NULL;
    char *err = NULL;
    sk_alloc_fail_at(n);
    sk_status rc = cfg_parse(doc, strlen(doc), "config.json", &c, &err);
    sk_alloc_fail_at(0);
    if (rc == SK_OK) {
        if (!c || c->n_params < 2 || strcmp(c->description, "Summarize a text") != 0)
            rc = SK_USAGE;
    } else {
        if (c)
            rc = SK_USAGE;
        *msg = err;
        err = NULL;
    }
    free(err);
    cfg_free(c);
    return rc;
}

/* ---- a full invoke with a policy --------------------------------------- */

static sk_status try_invoke_policy(long n, char **msg)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return SK_USAGE;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/skills/Review", src);
    sk_status rc = sk_kernel_load_skill(k, dir);
    if (rc == SK_OK)
        rc = sk_kernel_add_semantic(k, "T", "Answer", "ANSWER {{$input}}", NULL);
    sk_vars *v = NULL;
    if (rc == SK_OK)
        rc = sk_vars_new(&v);
    if (rc == SK_OK)
        rc = sk_vars_set(v, "input", "what is six times seven?");
    if (rc != SK_OK) {
        sk_vars_free(v);
        sk_kernel_free(k);
        return SK_USAGE;
    }
    sk_invoke_opts o = {
        .policy = "{\"review\": \"Review.Check\","
                  " \"filters\": {\"input\": [{\"name\": \"no-ssn\","
                  "   \"pattern\": \"\\\\d{3}-\\\\d{2}-\\\\d{4}\"}],"
                  "  \"output\": [{\"name\": \"no-secret\", \"pattern\": \"(?i)secret\"}]}}",
    };
    char *out = NULL;
    sk_alloc_fail_at(n);
    rc = sk_invoke(k, "T.Answer", v, &o, &out);
    sk_alloc_fail_at(0);
    if (rc == SK_OK) {
        sk_usage u;
        sk_kernel_usage(k, &u);
        if (!out || strcmp(out, "The answer is 42.") != 0 || u.reviews < 1) {
            *msg = sk_asprintf("got \"%s\" after %ld reviews", out ? out : "(null)", u.reviews);
            rc = SK_USAGE;
        }
    } else {
        *msg = errcopy(k);
        if (out)
            rc = SK_USAGE;
    }
    sk_free(out);
    sk_vars_free(v);
    sk_kernel_free(k);
    return rc;
}

/* ---- plans, CSV -------------------------------------------------------- */

static sk_status try_plan(long n, char **msg)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return SK_USAGE;
    sk_status rc = sk_kernel_add_semantic(k, "W", "Summarize", "S {{$input}}", NULL);
    if (rc == SK_OK)
        rc = sk_kernel_add_semantic(k, "W", "Translate", "T {{$input}} {{$language}}", NULL);
    if (rc != SK_OK) {
        sk_kernel_free(k);
        return SK_USAGE;
    }
    const char *text = "# goal: summarize then translate\n"
                       "1. W.Summarize(input=$input)\n"
                       "2. W.Translate(input=$1, language=\"French\")\n"
                       "3. W.Translate(input=$2, language=\"German \\\"formal\\\"\")\n";
    sk_plan *p = NULL;
    char *canon = NULL;
    sk_alloc_fail_at(n);
    rc = sk_plan_parse(k, text, "plan.txt", &p);
    if (rc == SK_OK) {
        canon = sk_plan_text(p);
        if (!canon)
            rc = SK_NOMEM;
    }
    sk_alloc_fail_at(0);
    if (rc == SK_OK) {
        if (sk_plan_step_count(p) != 3 || !strstr(canon, "W.Translate(input=$2"))
            rc = SK_USAGE;
    } else {
        *msg = errcopy(k);
    }
    /* a plan that does not validate must say so, not run out of memory */
    if (rc == SK_OK) {
        sk_plan *bad = NULL;
        sk_status rb = sk_plan_parse(k, "1. W.Nope(input=$input)\n", "bad.txt", &bad);
        if (rb != SK_PLAN || bad)
            rc = SK_USAGE;
        sk_plan_free(bad);
    }
    free(canon);
    sk_plan_free(p);
    sk_kernel_free(k);
    return rc;
}

static const char *csv_path;

static sk_status try_csv(long n, char **msg)
{
    sk_kernel *k = new_kernel();
    if (!k)
        return SK_USAGE;
    df_csv_opts o = {0, -1, NULL};
    sk_df *df = NULL;
    sk_err *err = NULL;
    sk_alloc_fail_at(n);
    sk_status rc = df_read_csv(k, csv_path, &o, &df, &err);
    long long rows = -1;
    if (rc == SK_OK) {
        sk_err *e2 = NULL;
        rc = df_count(df, &rows, &e2);
        if (rc != SK_OK && !err) {
            err = e2;
            e2 = NULL;
        }
        err_free(e2);
    }
    sk_alloc_fail_at(0);
    if (rc == SK_OK) {
        if (rows != 4) {
            *msg = sk_asprintf("%lld rows", rows);
            rc = SK_USAGE;
        }
    } else {
        *msg = strdup(err && err->message ? err->message : "(no message)");
        if (!err && rc != SK_NOMEM)
            rc = SK_USAGE; /* any other error must say why */
    }
    err_free(err);
    df_free(df);
    sk_kernel_free(k);
    return rc;
}

int main(void)
{
    const char *s = getenv("SKEIN_SRC");
    snprintf(src, sizeof src, "%s", s && *s ? s : "..");
    /* The scripted model: the reviewer passes, the function answers, and
     * anything else (template calls) is echoed back. */
    const char *script =
        "{\"rules\": ["
        " {\"match\": \"careful reviewer\", \"reply\": \"PASS\"},"
        " {\"match\": \"^ANSWER\", \"reply\": \"The answer is 42.\"}],"
        " \"default\": \"{{echo}}\"}";
    const char *path = tu_tmpfile(script, ".json");
    snprintf(model_spec, sizeof model_spec, "scripted:%s", path ? path : "");
    char *script_copy = strdup(path ? path : "");
    const char *csv = tu_tmpfile("name,qty,price\n"
                                 "widget,3,2.5\n"
                                 "\"gadget, large\",10,\"1,000\"\n"
                                 "\"multi\nline\",0,\n"
                                 "caf\xc3\xa9,-1,0.1\n",
                                 ".csv");
    char *csv_copy = strdup(csv ? csv : "");
    csv_path = csv_copy;

    sweep("kernel_new", try_kernel_new, 5000, NULL);
    sweep("config", try_config, 5000, NULL);
    sweep("template", try_template, 20000, NULL);
    sweep("plan", try_plan, 20000, NULL);
    sweep("csv", try_csv, 20000, NULL);
    /* running out of memory inside a filter is SK_NOMEM, not "filtered" */
    sweep("invoke with policy", try_invoke_policy, 40000, NULL);
    sweep("skills: sk_samples", try_load_samples, 40000, NULL);
    sweep("skills: built-in", try_load_builtin, 40000, NULL);

    unlink(script_copy);
    unlink(csv_copy);
    free(script_copy);
    free(csv_copy);
    return tu_finish();
}
