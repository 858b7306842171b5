/* test_planner.c -- plans from a goal (with repair), hand-written plans,
 * and the DAG scheduler: parallel steps, failures, uncertainty and
 * resuming, all with the scripted model. */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

static int counter;

static sk_status count_calls(sk_kernel *k, const sk_vars *a, char **out, void *ud)
{
    (void)k;
    (void)ud;
    counter++;
    const char *in = sk_vars_get(a, "input");
    char buf[512];
    snprintf(buf, sizeof buf, "counted(%s)", in ? in : "");
    *out = strdup(buf);
    return SK_OK;
}

static sk_status join2(sk_kernel *k, const sk_vars *a, char **out, void *ud)
{
    (void)k;
    (void)ud;
    const char *x = sk_vars_get(a, "input"), *y = sk_vars_get(a, "other");
    char buf[1024];
    snprintf(buf, sizeof buf, "%s+%s", x ? x : "", y ? y : "");
    *out = strdup(buf);
    return SK_OK;
}

static sk_status fail_always(sk_kernel *k, const sk_vars *a, char **out, void *ud)
{
    (void)a;
    (void)out;
    (void)ud;
    sk_set_error(k, SK_SCRIPT, "the disk is full");
    return SK_SCRIPT;
}

static sk_kernel *kernel(const char *rules_json)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    char spec[300];
    snprintf(spec, sizeof spec, "scripted:%s", tu_tmpfile(rules_json, ".json"));
    CHECK(sk_kernel_set_model(k, spec) == SK_OK);
    const char *skills = getenv("SKEIN_SRC");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/skills", skills ? skills : "..");
    CHECK(sk_kernel_load_skills(k, dir) == SK_OK); /* Planner.Create */
    sk_param_info p1[] = {{"input", "the text", NULL, 1}};
    CHECK(sk_kernel_add_native(k, "T", "Count", "counts its calls", p1, 1, count_calls, NULL) == SK_OK);
    sk_param_info p2[] = {{"input", "first", NULL, 1}, {"other", "second", "", 0}};
    CHECK(sk_kernel_add_native(k, "T", "Join", "joins two texts", p2, 2, join2, NULL) == SK_OK);
    CHECK(sk_kernel_add_native(k, "T", "Fail", "always fails", p1, 1, fail_always, NULL) == SK_OK);
    return k;
}

static const char *RULES =
    "{\"rules\":["
    /* planner: the first reply uses a function that does not exist; the
     * repair request (which quotes the problems) gets a good plan */
    "{\"match\":\"Goal: shout twice(?s:.*)rejected\",\"reply\":\"Here is the corrected plan:\\n"
    "```\\n1. T.Count(input=$goal)\\n2. T.Join(input=$1, other=\\\"!\\\")\\n```\"},"
    "{\"match\":\"Goal: shout twice\",\"reply\":\"1. T.Shout(input=$goal)\\n2. T.Join(input=$1, other=\\\"!\\\")\"},"
    "{\"match\":\"Goal: impossible\",\"reply\":\"NO PLAN: nothing here can book flights\"},"
    "{\"match\":\"Goal: always wrong\",\"reply\":\"1. Nope.Nothing()\"},"
    "{\"match\":\"^slow\",\"reply\":\"slow-done\",\"delay_ms\":200},"
    "{\"match\":\"^ask(?s:.*)Clarified: yes\",\"reply\":\"resolved\"},"
    "{\"match\":\"^ask\",\"reply\":\"I'm not sure. Do you mean the blue one?\"}"
    "]}";

TEST(test_create_with_repair)
{
    sk_kernel *k = kernel(RULES);
    const char *trace = tu_tmpfile("", ".jsonl");
    sk_kernel_set_trace(k, trace);
    sk_plan *p = NULL;
    counter = 0;
    CHECK(sk_plan_create(k, "shout twice", NULL, &p) == SK_OK);
    CHECK(p != NULL);
    if (!p) {
        sk_kernel_free(k);
        return;
    }
    CHECK_INT(sk_plan_step_count(p), 2);
    CHECK_INT(counter, 0); /* the hallucinated function never ran */
    char *text = sk_plan_text(p);
    CHECK_CONTAINS(text, "# goal: shout twice");
    CHECK_CONTAINS(text, "1. T.Count(input=$goal)");
    CHECK_CONTAINS(text, "2. T.Join(input=$1, other=\"!\")");
    sk_free(text);
    char *out = NULL;
    sk_vars *v;
    sk_vars_new(&v);
    sk_vars_set(v, "goal", "shout twice");
    CHECK(sk_plan_run(k, p, v, 0, &out) == SK_OK);
    CHECK_STR(out, "counted(shout twice)+!");
    sk_free(out);
    CHECK_INT(counter, 1);
    sk_vars_free(v);
    sk_plan_free(p);
    sk_kernel_free(k);
    char *t = NULL;
    size_t n;
    sk_read_file(trace, 1 << 20, &t, &n);
    CHECK_CONTAINS(t, "\"type\":\"plan_repair\"");
    CHECK_CONTAINS(t, "unknown function T.Shout");
    free(t);
}

TEST(test_create_fails)
{
    sk_kernel *k = kernel(RULES);
    sk_plan *p = NULL;
    CHECK(sk_plan_create(k, "impossible", NULL, &p) == SK_PLAN);
    CHECK(p == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "nothing here can book flights");
    sk_plan_opts o = {0, 1, NULL, 0};
    CHECK(sk_plan_create(k, "always wrong", &o, &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "after 2 attempts");
    CHECK_CONTAINS(sk_errmsg(k), "unknown function Nope.Nothing");
    /* an unknown name in the list the user allows is a mistake to name,
     * not something to ignore */
    const char *only[] = {"No.Such"};
    sk_plan_opts o2 = {0, -1, only, 1};
    CHECK(sk_plan_create(k, "shout twice", &o2, &p) == SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(k), "No.Such");
    sk_kernel_free(k);
}

TEST(test_manual)
{
    sk_kernel *k = kernel(RULES);
    char *m = plan_manual(k, "translate the summary into French", NULL, 0, 0);
    CHECK_CONTAINS(m, "- Writer.Translate:");
    CHECK_CONTAINS(m, "- T.Join: joins two texts");
    CHECK_CONTAINS(m, "    input: first (required)");
    CHECK(strstr(m, "Planner.Create") == NULL); /* never plans with itself */
    free(m);
    /* with a small budget the relevant ones stay, in name order (the
     * goal names the writer: ConversationSummaryPlugin summarizes too) */
    m = plan_manual(k, "translate the writer's summary into French", NULL, 0, 2);
    CHECK_CONTAINS(m, "Writer.Translate");
    CHECK_CONTAINS(m, "Writer.Summarize");
    CHECK(strstr(m, "T.Join") == NULL);
    CHECK(strstr(m, "Writer.Summarize") < strstr(m, "Writer.Translate"));
    free(m);
    const char *only[] = {"T.Join"};
    m = plan_manual(k, "anything", only, 1, 0);
    CHECK_CONTAINS(m, "T.Join");
    CHECK(strstr(m, "T.Count") == NULL);
    free(m);
    sk_kernel_free(k);
}

TEST(test_hand_written_errors)
{
    sk_kernel *k = kernel(RULES);
    sk_plan *p = NULL;
    const char *cyclic = "# goal: loop\n1. T.Join(input=$2)\n2. T.Join(input=$1)\n";
    CHECK(sk_plan_parse(k, cyclic, "cyclic.plan", &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "cyclic.plan:2:");
    CHECK_CONTAINS(sk_errmsg(k), "cycle");
    const char *malformed = "1. T.Count(input=\"a\")\nthis is not a step\n3. T.Join(input=$9)\n";
    CHECK(sk_plan_parse(k, malformed, "bad.plan", &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "bad.plan:2:");
    const char *unknown = "1. T.Count(input=\"a\")\n2. T.Nope(input=$1)\n";
    CHECK(sk_plan_parse(k, unknown, "u.plan", &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "u.plan:2:");
    CHECK_CONTAINS(sk_errmsg(k), "unknown function T.Nope");
    const char *badref = "1. T.Count(input=$7)\n";
    CHECK(sk_plan_parse(k, badref, "r.plan", &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "r.plan:1:");
    const char *badparam = "1. T.Join(input=\"a\", colour=\"red\")\n";
    CHECK(sk_plan_parse(k, badparam, "p.plan", &p) == SK_PLAN);
    CHECK_CONTAINS(sk_errmsg(k), "colour");
    sk_kernel_free(k);
}

TEST(test_parallel_steps)
{
    /* four independent steps with a 200 ms delay each: their start and
     * end times overlap (read from the steps, not from the wall clock) */
    sk_kernel *k = kernel(RULES);
    CHECK(sk_kernel_add_semantic(k, "S", "Slow", "slow {{$input}}", "{\"uncertainty\": false}") == SK_OK);
    const char *text =
        "1. S.Slow(input=\"a\")\n2. S.Slow(input=\"b\")\n3. S.Slow(input=\"c\")\n"
        "4. S.Slow(input=\"d\")\n5. T.Join(input=$1, other=\"$2 $3 $4\")\n";
    sk_plan *p = NULL;
    CHECK(sk_plan_parse(k, text, "par.plan", &p) == SK_OK);
    if (!p) {
        sk_kernel_free(k);
        return;
    }
    char *out = NULL;
    CHECK(sk_plan_run(k, p, NULL, 0, &out) == SK_OK);
    CHECK_STR(out, "slow-done+slow-done slow-done slow-done");
    sk_free(out);
    long long latest_start = 0, earliest_end = -1;
    for (size_t i = 0; i < 4; i++) {
        sk_plan_step_info si;
        sk_plan_step(p, i, &si);
        CHECK_STR(si.state, "done");
        if (si.start_ms > latest_start)
            latest_start = si.start_ms;
        if (earliest_end < 0 || si.end_ms < earliest_end)
            earliest_end = si.end_ms;
    }
    CHECK(latest_start < earliest_end); /* all four were in flight together */
    sk_plan_step_info last;
    sk_plan_step(p, 4, &last);
    CHECK(last.start_ms >= earliest_end); /* the join waited for its inputs */
    CHECK_INT(last.n_deps, 4);
    /* the graph shows the edges */
    char *dot = sk_plan_dot(p);
    CHECK_CONTAINS(dot, "digraph");
    CHECK_CONTAINS(dot, "s1 -> s5");
    sk_free(dot);
    sk_plan_free(p);
    /* a limit of one runs them one after another */
    CHECK(sk_plan_parse(k, text, "par.plan", &p) == SK_OK);
    CHECK(sk_plan_run(k, p, NULL, 1, &out) == SK_OK);
    sk_free(out);
    sk_plan_step_info a, b;
    sk_plan_step(p, 0, &a);
    sk_plan_step(p, 1, &b);
    CHECK(b.start_ms >= a.end_ms);
    sk_plan_free(p);
    sk_kernel_free(k);
}

TEST(test_failure_stops_dependents)
{
    sk_kernel *k = kernel(RULES);
    const char *text = "1. T.Fail(input=\"x\")\n2. T.Count(input=$1)\n3. T.Count(input=\"free\")\n";
    sk_plan *p = NULL;
    CHECK(sk_plan_parse(k, text, "f.plan", &p) == SK_OK);
    counter = 0;
    char *out = NULL;
    CHECK(sk_plan_run(k, p, NULL, 0, &out) == SK_SCRIPT);
    CHECK(out == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "f.plan:1: step 1 (T.Fail): the disk is full");
    sk_plan_step_info s;
    sk_plan_step(p, 1, &s);
    CHECK_STR(s.state, "skipped");
    sk_plan_step(p, 2, &s);
    CHECK_STR(s.state, "done"); /* independent work still finished */
    CHECK_INT(counter, 1);
    sk_plan_free(p);
    sk_kernel_free(k);
}

TEST(test_uncertain_step_resumes)
{
    sk_kernel *k = kernel(RULES);
    CHECK(sk_kernel_add_semantic(k, "S", "Ask", "ask {{$input}}\nClarified: {{$clarification}}", NULL) == SK_OK);
    const char *text = "1. T.Count(input=\"first\")\n2. S.Ask(input=$1)\n3. T.Join(input=$2, other=$1)\n";
    sk_plan *p = NULL;
    CHECK(sk_plan_parse(k, text, "u.plan", &p) == SK_OK);
    counter = 0;
    char *out = NULL;
    sk_vars *v;
    sk_vars_new(&v);
    CHECK(sk_plan_run(k, p, v, 0, &out) == SK_UNCERTAIN);
    CHECK_CONTAINS(sk_errmsg(k), "u.plan:2: step 2 (S.Ask)");
    CHECK_STR(sk_error_get(k, "question"), "Do you mean the blue one?");
    char *js = NULL;
    sk_error_json(k, &js);
    CHECK_CONTAINS(js, "\"plan_step\":2");
    CHECK_CONTAINS(js, "\"plan_line\":2");
    CHECK_CONTAINS(js, "\"kind\":\"uncertain\"");
    sk_free(js);
    CHECK_INT(counter, 1);
    /* clarify and run again: step 1 is not run a second time */
    sk_vars_set(v, "clarification", "yes, the blue one");
    CHECK(sk_plan_run(k, p, v, 0, &out) == SK_OK);
    CHECK_STR(out, "resolved+counted(first)");
    CHECK_INT(counter, 1);
    sk_free(out);
    sk_vars_free(v);
    sk_plan_free(p);
    sk_kernel_free(k);
}

int main(void)
{
    setenv("SKEIN_CONFIG", "/nonexistent", 1);
    unsetenv("SKEIN_MODEL");
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENAI_BASE_URL");
    RUN(test_create_with_repair);
    RUN(test_create_fails);
    RUN(test_manual);
    RUN(test_hand_written_errors);
    RUN(test_parallel_steps);
    RUN(test_failure_stops_dependents);
    RUN(test_uncertain_step_resumes);
    return tu_finish();
}
