/* test_agent.c -- sk_agent_run end to end on the scripted model: native C
 * tools, the text protocol's tolerance (markdown labels, multi-line
 * answers, invented observations), refusals that never run anything, the
 * step, token and time limits, uncertainty, traces and on_step. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "all.h"
#include "testutil.h"

static char model_spec[320], trace_path[300], rules_path[300];
static int n_lookup, n_multiply, n_delete, n_echo;

/* Scripted rules are tried in order, so each scenario lists its later
 * stages (matching observations in the transcript) first.  Every goal
 * carries a keyword that keeps the scenarios apart. */
static void add_rule(cJSON *rules, const char *match, const char *reply)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "match", match);
    cJSON_AddStringToObject(r, "reply", reply);
    cJSON_AddItemToArray(rules, r);
}

static void setup_model(void)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *rules = cJSON_AddArrayToObject(doc, "rules");

    /* happy: three steps through two tools; the first sees the manual and
     * an empty transcript, each later one the previous observation */
    add_rule(rules, "(?s)HAPPY.*Observation: 84\\n",
             "Thought: 12 widgets at 7 each make 84.\n"
             "Final Answer: The widgets in stock are worth 84.");
    add_rule(rules, "(?s)HAPPY.*Observation: 12 widgets at 7 each",
             "Thought: Now multiply the count by the price.\n"
             "Action: Math.Multiply(a=\"12\", b=\"7\")");
    add_rule(rules, "(?s)HAPPY.*Inventory\\.Lookup.*Math\\.Multiply.*\\(none yet\\)",
             "Thought: I should look up the stock first.\n"
             "Action: Inventory.Lookup(item=\"widget\")");

    /* hallucinated function */
    add_rule(rules, "(?s)HALLUCINATE.*Observation: error: unknown function "
                    "Danger\\.Wipe; use one of: [^\\n]*Inventory\\.Lookup",
             "Thought: That function does not exist.\nFinal Answer: refused");
    add_rule(rules, "HALLUCINATE",
             "Thought: Wipe everything.\nAction: Danger.Wipe(all=\"yes\")");

    /* a real function the agent was not given */
    add_rule(rules, "(?s)RESTRICTED.*Observation: error: Danger\\.Delete is not "
                    "available to this agent; use one of: Inventory\\.Lookup\\n",
             "Thought: I may not delete.\nFinal Answer: not allowed");
    add_rule(rules, "RESTRICTED",
             "Thought: Delete the stock.\nAction: Danger.Delete(input=\"all\")");

    /* a reply with neither an action nor an answer */
    add_rule(rules, "(?s)RAMBLING.*Thought: I think widgets are involved\\.\\n"
                    "Observation: error: the reply had neither an Action nor "
                    "a Final Answer",
             "Final Answer: fine");
    add_rule(rules, "RAMBLING", "I think widgets are involved.");

    /* markdown labels, a call in backticks, a multi-line answer */
    add_rule(rules, "(?s)MARKDOWN.*Observation: 12 widgets",
             "**Thought:** I have the count.\n**Final Answer:**\nLine one\n"
             "Line two\n");
    add_rule(rules, "MARKDOWN",
             "## Thought: look it up\n**Action:** `Inventory.Lookup(item=\"widget\")`");

    /* an invented observation with no action before it: nothing ran, so
     * its answer is not taken */
    add_rule(rules, "(?s)FABRICATE.*Observation: error: the reply had neither",
             "Thought: I must call a function.\nFinal Answer: asked properly");
    add_rule(rules, "FABRICATE",
             "Thought: I know it\nObservation: 999 widgets\nFinal Answer: 999");

    /* the model writes an observation (and an answer) of its own */
    add_rule(rules, "(?s)INVENTOR.*Observation: 12 widgets",
             "Thought: The real count.\nFinal Answer: 12");
    add_rule(rules, "INVENTOR",
             "Thought: look\nAction: Inventory.Lookup(item=\"widget\")\n"
             "Observation: 999 widgets\nThought: plenty\nFinal Answer: 999");

    /* lower-case labels, the call in a code fence on the next line */
    add_rule(rules, "(?s)FENCED.*Observation: 12 widgets",
             "thought: got it\nfinal answer: twelve");
    add_rule(rules, "FENCED",
             "thought: look\naction:\n```\nInventory.Lookup(item=\"widget\")\n```");

    /* a long observation is clipped in the transcript and the trace */
    add_rule(rules, "(?s)HUGE.*Observation: x+\n\\[truncated: 1000 more bytes\\]",
             "Thought: long\nFinal Answer: clipped");
    add_rule(rules, "HUGE", "Thought: big\nAction: Big.Output()");

    /* never finishes */
    add_rule(rules, "FOREVER",
             "Thought: again\nAction: Inventory.Lookup(item=\"widget\")");

    /* a tool raises uncertainty */
    add_rule(rules, "UNSURE", "Thought: ask\nAction: Unsure.Ask(input=\"x\")");

    /* hedging in a thought is not uncertainty: Agent.Step turns it off */
    add_rule(rules, "(?s)HEDGY.*Observation: 12 widgets",
             "Thought: I'm not sure, but it seems so.\nFinal Answer: maybe 12");
    add_rule(rules, "HEDGY",
             "Thought: I'm not sure what you mean; perhaps the widget.\n"
             "Action: Inventory.Lookup(item=\"widget\")");

    /* a final answer that asks the user back */
    add_rule(rules, "ASKER",
             "Thought: The goal names no warehouse.\n"
             "Final Answer: Which warehouse do you mean, north or south?");

    /* a failing tool: its error becomes the observation */
    add_rule(rules, "(?s)FAILING.*Observation: error: [^\\n]*no item called gizmo",
             "Thought: No gizmos.\nFinal Answer: none in stock");
    add_rule(rules, "FAILING",
             "Thought: look\nAction: Inventory.Lookup(item=\"gizmo\")");

    /* a malformed action */
    add_rule(rules, "(?s)SYNTAX.*Observation: error: the action could not be read",
             "Thought: fix it\nFinal Answer: fixed");
    add_rule(rules, "SYNTAX",
             "Thought: look\nAction: Inventory.Lookup(item=\"widget\"");

    /* $goal, a positional argument, a bare name, then an unknown $var and
     * a step reference */
    add_rule(rules, "(?s)ECHOING.*Observation: error: \\$2 refers to a plan step",
             "Thought: done\nFinal Answer: echoed");
    add_rule(rules, "(?s)ECHOING.*Observation: error: \\$other is not defined",
             "Thought: try a step reference\nAction: Echo.Say(text=$2)");
    add_rule(rules, "(?s)ECHOING.*Observation: says: ECHOING the goal",
             "Thought: now a variable\nAction: Echo.Say(text=$other)");
    add_rule(rules, "ECHOING", "Thought: echo\nAction: Say($goal)");

    /* unknown parameter name */
    add_rule(rules, "(?s)PARAMS.*Observation: error: Inventory\\.Lookup has no "
                    "parameter \"thing\"; its parameters are: item",
             "Thought: ok\nFinal Answer: checked");
    add_rule(rules, "PARAMS",
             "Thought: look\nAction: Inventory.Lookup(thing=\"widget\")");

    /* the step prompt's own model call fails */
    add_rule(rules, "BROKEN", "unused");
    cJSON *broken = cJSON_GetArrayItem(rules, cJSON_GetArraySize(rules) - 1);
    cJSON *err = cJSON_AddObjectToObject(broken, "error");
    cJSON_AddStringToObject(err, "kind", "model");
    cJSON_AddStringToObject(err, "message", "server on fire");

    /* slow: each step takes 80 ms */
    add_rule(rules, "SLOW",
             "Thought: wait\nAction: Inventory.Lookup(item=\"widget\")");
    cJSON_AddNumberToObject(cJSON_GetArrayItem(rules, cJSON_GetArraySize(rules) - 1),
                            "delay_ms", 80);

    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    const char *p = tu_tmpfile(text, ".json");
    free(text);
    snprintf(rules_path, sizeof rules_path, "%s", p ? p : "");
    snprintf(model_spec, sizeof model_spec, "scripted:%s", rules_path);
    const char *t = tu_tmpfile("", ".jsonl");
    snprintf(trace_path, sizeof trace_path, "%s", t ? t : "");
}

/* ---- native tools ------------------------------------------------------ */

static sk_status lookup(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)ud;
    n_lookup++;
    const char *item = sk_vars_get(args, "item");
    if (item && strcmp(item, "widget") == 0) {
        *out = strdup("12 widgets at 7 each");
        return *out ? SK_OK : SK_NOMEM;
    }
    sk_set_error(k, SK_NOT_FOUND, "no item called %s", item ? item : "(none)");
    return SK_NOT_FOUND;
}

static sk_status multiply(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)ud;
    n_multiply++;
    const char *a = sk_vars_get(args, "a"), *b = sk_vars_get(args, "b");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%ld", strtol(a ? a : "0", NULL, 10) *
                                         strtol(b ? b : "0", NULL, 10));
    *out = strdup(tmp);
    return *out ? SK_OK : SK_NOMEM;
}

static sk_status delete_all(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)args;
    (void)ud;
    n_delete++;
    *out = strdup("deleted everything");
    return *out ? SK_OK : SK_NOMEM;
}

static sk_status unsure(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)args;
    (void)out;
    (void)ud;
    return sk_raise_uncertain(k, "which warehouse?", "Which warehouse do you mean?", 0.3);
}

static sk_status echo(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)ud;
    n_echo++;
    const char *t = sk_vars_get(args, "text");
    size_t n = strlen(t ? t : "") + 8;
    *out = malloc(n);
    if (!*out)
        return SK_NOMEM;
    snprintf(*out, n, "says: %s", t ? t : "");
    return SK_OK;
}

static sk_status big_output(sk_kernel *k, const sk_vars *args, char **out, void *ud)
{
    (void)k;
    (void)args;
    (void)ud;
    *out = malloc(5001);
    if (!*out)
        return SK_NOMEM;
    memset(*out, 'x', 5000);
    (*out)[5000] = '\0';
    return SK_OK;
}

static const char *src_dir(void)
{
    const char *s = getenv("SKEIN_SRC");
    return s && *s ? s : "..";
}

static sk_kernel *kernel(void)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    if (!k)
        exit(1);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_set_model(k, model_spec) == SK_OK);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/skills/Agent", src_dir());
    CHECK(sk_kernel_load_skill(k, dir) == SK_OK);
    static const sk_param_info item[] = {{"item", "The item's name", NULL, 1}};
    static const sk_param_info ab[] = {{"a", "A whole number", NULL, 1},
                                       {"b", "Another", NULL, 1}};
    static const sk_param_info text[] = {{"text", "What to say", NULL, 1}};
    sk_kernel_add_native(k, "Inventory", "Lookup", "How many of an item are "
                         "in stock, and at what price", item, 1, lookup, NULL);
    sk_kernel_add_native(k, "Math", "Multiply", "Multiplies two whole numbers",
                         ab, 2, multiply, NULL);
    sk_kernel_add_native(k, "Danger", "Delete", "Deletes the whole stock",
                         NULL, 0, delete_all, NULL);
    sk_kernel_add_native(k, "Unsure", "Ask", "Asks", NULL, 0, unsure, NULL);
    sk_kernel_add_native(k, "Echo", "Say", "Says the text back", text, 1,
                         echo, NULL);
    sk_kernel_add_native(k, "Big", "Output", "Writes a lot", NULL, 0,
                         big_output, NULL);
    n_lookup = n_multiply = n_delete = n_echo = 0;
    return k;
}

typedef struct steps {
    int calls;
    sk_buf all;
} steps;

static void on_step(void *ud, const char *text, size_t len)
{
    steps *s = ud;
    s->calls++;
    buf_add(&s->all, text, len);
}

static sk_status run(sk_kernel *k, const char *goal, sk_agent_opts *o,
                     char **answer)
{
    sk_agent_opts d;
    memset(&d, 0, sizeof d);
    if (!o)
        o = &d;
    o->goal = goal;
    *answer = NULL;
    return sk_agent_run(k, o, answer);
}

static int count_lines(const char *path, const char *needle)
{
    char *s = NULL;
    size_t n;
    if (sk_read_file(path, 1 << 24, &s, &n) != SK_OK)
        return -1;
    int c = 0;
    for (char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        c++;
    free(s);
    return c;
}

/* ---- tests ------------------------------------------------------------- */

TEST(test_three_steps)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_set_trace(k, trace_path) == SK_OK);
    steps s = {0};
    sk_agent_opts o = {.on_step = on_step, .on_step_ud = &s};
    char *answer;
    sk_status st = run(k, "HAPPY: what are the widgets in stock worth?", &o, &answer);
    CHECK_INT(st, SK_OK);
    CHECK_STR(answer, "The widgets in stock are worth 84.");
    CHECK_INT(n_lookup, 1);
    CHECK_INT(n_multiply, 1);
    CHECK_INT(n_delete, 0);
    CHECK_INT(s.calls, 3);
    CHECK_CONTAINS(s.all.p, "Thought: I should look up the stock first.\n"
                            "Action: Inventory.Lookup(item=\"widget\")\n"
                            "Observation: 12 widgets at 7 each\n\n");
    CHECK_CONTAINS(s.all.p, "Action: Math.Multiply(a=\"12\", b=\"7\")\n"
                            "Observation: 84\n\n");
    CHECK_CONTAINS(s.all.p, "Final Answer: The widgets in stock are worth 84.");
    CHECK_INT(sk_errcode(k), SK_OK);
    sk_usage u;
    sk_kernel_usage(k, &u);
    CHECK_INT(u.calls, 3);
    CHECK_INT(count_lines(trace_path, "\"type\":\"agent_step\""), 3);
    CHECK_INT(count_lines(trace_path, "\"observation\":\"12 widgets at 7 each\""), 1);
    CHECK_INT(count_lines(trace_path, "\"answer\":\"The widgets in stock are worth 84.\""), 1);
    CHECK_INT(count_lines(trace_path, "\"action\":\"Math.Multiply(a=\\\"12\\\", b=\\\"7\\\")\""), 1);
    sk_free(answer);
    buf_free(&s.all);
    sk_kernel_free(k);
}

TEST(test_hallucinated_function)
{
    sk_kernel *k = kernel();
    char *answer;
    CHECK_INT(run(k, "HALLUCINATE the data", NULL, &answer), SK_OK);
    CHECK_STR(answer, "refused");
    CHECK_INT(n_delete, 0);
    CHECK_INT(n_lookup, 0);
    sk_free(answer);
    sk_kernel_free(k);
}

TEST(test_function_not_given)
{
    sk_kernel *k = kernel();
    const char *const fns[] = {"inventory.lookup"};
    sk_agent_opts o = {.functions = fns, .n_functions = 1};
    char *answer;
    CHECK_INT(run(k, "RESTRICTED: clear the stock", &o, &answer), SK_OK);
    CHECK_STR(answer, "not allowed");
    CHECK_INT(n_delete, 0);
    sk_free(answer);

    /* a listed function that does not exist is the caller's mistake */
    const char *const bad[] = {"Inventory.Lookup", "Nope.Missing"};
    sk_agent_opts o2 = {.functions = bad, .n_functions = 2};
    CHECK_INT(run(k, "RESTRICTED", &o2, &answer), SK_NOT_FOUND);
    CHECK(answer == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "Nope.Missing");
    sk_kernel_free(k);
}

TEST(test_no_action_no_answer)
{
    sk_kernel *k = kernel();
    steps s = {0};
    sk_agent_opts o = {.on_step = on_step, .on_step_ud = &s};
    char *answer;
    CHECK_INT(run(k, "RAMBLING about widgets", &o, &answer), SK_OK);
    CHECK_STR(answer, "fine");
    CHECK_INT(s.calls, 2);
    CHECK_CONTAINS(s.all.p, "Observation: error: the reply had neither");
    CHECK_INT(n_lookup + n_multiply + n_delete, 0);
    sk_free(answer);
    buf_free(&s.all);
    sk_kernel_free(k);
}

TEST(test_markdown_and_multiline_answer)
{
    sk_kernel *k = kernel();
    char *answer;
    CHECK_INT(run(k, "MARKDOWN count", NULL, &answer), SK_OK);
    CHECK_STR(answer, "Line one\nLine two");
    CHECK_INT(n_lookup, 1);
    sk_free(answer);
    sk_kernel_free(k);
}

TEST(test_invented_observation_is_cut)
{
    sk_kernel *k = kernel();
    steps s = {0};
    sk_agent_opts o = {.on_step = on_step, .on_step_ud = &s};
    char *answer;
    CHECK_INT(run(k, "INVENTOR count", &o, &answer), SK_OK);
    CHECK_STR(answer, "12");
    CHECK_INT(n_lookup, 1);
    CHECK(s.all.p && !strstr(s.all.p, "999"));
    CHECK_INT(s.calls, 2);
    sk_free(answer);

    CHECK_INT(run(k, "FABRICATE a count", NULL, &answer), SK_OK);
    CHECK_STR(answer, "asked properly");
    CHECK_INT(n_lookup, 1);
    sk_free(answer);
    buf_free(&s.all);
    sk_kernel_free(k);
}

TEST(test_lenient_reading)
{
    sk_kernel *k = kernel();
    char *answer;
    CHECK_INT(run(k, "FENCED count", NULL, &answer), SK_OK);
    CHECK_STR(answer, "twelve");
    CHECK_INT(n_lookup, 1);
    sk_free(answer);
    sk_kernel_free(k);
}

TEST(test_long_observation)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_set_trace(k, trace_path) == SK_OK);
    steps s = {0};
    sk_agent_opts o = {.on_step = on_step, .on_step_ud = &s};
    char *answer;
    CHECK_INT(run(k, "HUGE output", &o, &answer), SK_OK);
    CHECK_STR(answer, "clipped");
    CHECK_CONTAINS(s.all.p, "\n[truncated: 1000 more bytes]\n\n");
    CHECK(s.all.p && strlen(s.all.p) < 4400);
    CHECK_INT(count_lines(trace_path, "[truncated: 3000 more bytes]"), 1);
    sk_free(answer);
    buf_free(&s.all);
    sk_kernel_free(k);
}

TEST(test_step_limit)
{
    sk_kernel *k = kernel();
    CHECK(sk_kernel_set_trace(k, trace_path) == SK_OK);
    int before = count_lines(trace_path, "\"type\":\"agent_step\"");
    int before3 = count_lines(trace_path, "\"step\":3,");
    sk_agent_opts o = {.max_steps = 3};
    char *answer;
    CHECK_INT(run(k, "FOREVER", &o, &answer), SK_LIMIT);
    CHECK(answer == NULL);
    CHECK_INT(sk_errcode(k), SK_LIMIT);
    CHECK_STR(sk_errmsg(k), "the agent reached its limit of 3 steps without a final answer");
    CHECK_INT(n_lookup, 3);
    CHECK_INT(count_lines(trace_path, "\"type\":\"agent_step\"") - before, 3);
    CHECK_INT(count_lines(trace_path, "\"step\":3,") - before3, 1);

    /* the default is ten steps */
    CHECK_INT(run(k, "FOREVER", NULL, &answer), SK_LIMIT);
    CHECK_CONTAINS(sk_errmsg(k), "limit of 10 steps");
    CHECK_INT(n_lookup, 13);
    sk_kernel_free(k);
}

TEST(test_token_budget)
{
    sk_kernel *k = kernel();
    sk_agent_opts o = {.max_tokens = 50};
    char *answer;
    CHECK_INT(run(k, "FOREVER on a budget", &o, &answer), SK_LIMIT);
    CHECK(answer == NULL);
    CHECK_CONTAINS(sk_errmsg(k), "token budget");
    /* the first step's prompt alone passes 50 tokens */
    CHECK_INT(n_lookup, 1);

    /* a generous budget lets it finish */
    o.max_tokens = 100000;
    CHECK_INT(run(k, "HAPPY with money", &o, &answer), SK_OK);
    CHECK_STR(answer, "The widgets in stock are worth 84.");
    sk_free(answer);
    sk_kernel_free(k);
}

TEST(test_time_limit)
{
    sk_kernel *k = kernel();
    sk_agent_opts o = {.max_ms = 120};
    char *answer;
    CHECK_INT(run(k, "SLOW", &o, &answer), SK_LIMIT);
    CHECK_CONTAINS(sk_errmsg(k), "time limit of 120 ms");
    CHECK(n_lookup >= 1 && n_lookup <= 3);
    sk_kernel_free(k);
}

TEST(test_uncertainty_propagates)
{
    sk_kernel *k = kernel();
    char *answer;
    CHECK_INT(run(k, "UNSURE where", NULL, &answer), SK_UNCERTAIN);
    CHECK(answer == NULL);
    CHECK_INT(sk_errcode(k), SK_UNCERTAIN);
    CHECK_STR(sk_error_get(k, "question"), "Which warehouse do you mean?");

    /* hedging words in the agent's own thoughts are not uncertainty */
    CHECK_INT(run(k, "HEDGY count", NULL, &answer), SK_OK);
    CHECK_STR(answer, "maybe 12");
    sk_free(answer);

    /* ... but a final answer that asks the user back is */
    CHECK_INT(run(k, "ASKER stock", NULL, &answer), SK_UNCERTAIN);
    CHECK(answer == NULL);
    CHECK_STR(sk_error_get(k, "question"),
              "Which warehouse do you mean, north or south?");
    CHECK_CONTAINS(sk_errmsg(k), "asks back");
    sk_kernel_free(k);
}

TEST(test_failed_call_is_observed)
{
    sk_kernel *k = kernel();
    char *answer;
    CHECK_INT(run(k, "FAILING lookup", NULL, &answer), SK_OK);
    CHECK_STR(answer, "none in stock");
    CHECK_INT(n_lookup, 1);
    CHECK_INT(sk_errcode(k), SK_OK);
    sk_free(answer);

    CHECK_INT(run(k, "SYNTAX error", NULL, &answer), SK_OK);
    CHECK_STR(answer, "fixed");
    CHECK_INT(n_lookup, 1);
    sk_free(answer);

    CHECK_INT(run(k, "PARAMS check", NULL, &answer), SK_OK);
    CHECK_STR(answer, "checked");
    CHECK_INT(n_lookup, 1);
    sk_free(answer);
    sk_kernel_free(k);
}

TEST(test_arguments)
{
    sk_kernel *k = kernel();
    steps s = {0};
    sk_agent_opts o = {.on_step = on_step, .on_step_ud = &s};
    char *answer;
    CHECK_INT(run(k, "ECHOING the goal", &o, &answer), SK_OK);
    CHECK_STR(answer, "echoed");
    CHECK_INT(n_echo, 1);
    CHECK_INT(s.calls, 4);
    CHECK_CONTAINS(s.all.p, "Observation: says: ECHOING the goal\n");
    sk_free(answer);
    buf_free(&s.all);
    sk_kernel_free(k);
}

TEST(test_errors)
{
    sk_kernel *k = kernel();
    char *answer = NULL;
    CHECK_INT(run(k, "BROKEN", NULL, &answer), SK_MODEL);
    CHECK_CONTAINS(sk_errmsg(k), "server on fire");
    CHECK(answer == NULL);

    CHECK_INT(run(k, "", NULL, &answer), SK_USAGE);
    CHECK_INT(sk_agent_run(k, NULL, &answer), SK_USAGE);
    sk_agent_opts o = {.goal = "x", .max_steps = -1};
    CHECK_INT(sk_agent_run(k, &o, &answer), SK_USAGE);
    o.max_steps = 0;
    CHECK_INT(sk_agent_run(k, &o, NULL), SK_USAGE);
    CHECK_INT(sk_agent_run(NULL, &o, &answer), SK_USAGE);
    sk_kernel_free(k);

    /* without the built-in skills there is no Agent.Step */
    sk_kernel *bare = NULL;
    CHECK(sk_kernel_new(&bare) == SK_OK);
    sk_kernel_set_option(bare, "quiet", "1");
    CHECK_INT(run(bare, "HAPPY", NULL, &answer), SK_NOT_FOUND);
    CHECK_CONTAINS(sk_errmsg(bare), "Agent.Step");
    sk_kernel_free(bare);
}

/* Every allocation on the way fails once in turn: the run either succeeds
 * or fails cleanly (no crash, no leak, no answer).  A first run loads the
 * scripted model, so the failures land on the agent's own path. */
TEST(test_allocation_failures)
{
    int ok = 0, failed = 0, bad = 0, streak = 0;
    for (long n = 1; n < 20000 && streak < 30; n++) {
        sk_kernel *k = kernel();
        char *answer = NULL;
        sk_agent_opts o;
        memset(&o, 0, sizeof o);
        o.goal = "HAPPY: what are the widgets in stock worth?";
        if (sk_agent_run(k, &o, &answer) != SK_OK)
            bad++;
        sk_free(answer);
        answer = NULL;
        sk_alloc_fail_at(n);
        sk_status st = sk_agent_run(k, &o, &answer);
        sk_alloc_fail_at(0);
        streak = st == SK_OK ? streak + 1 : 0;
        if (st == SK_OK) {
            ok++;
            if (!answer || strcmp(answer, "The widgets in stock are worth 84.") != 0)
                bad++;
        } else {
            failed++;
            if (answer)
                bad++;
        }
        sk_free(answer);
        sk_kernel_free(k);
    }
    CHECK(failed > 50);
    CHECK_INT(streak, 30); /* it ran out of allocations to fail */
    CHECK_INT(bad, 0);
}

int main(void)
{
    setup_model();
    RUN(test_three_steps);
    RUN(test_hallucinated_function);
    RUN(test_function_not_given);
    RUN(test_no_action_no_answer);
    RUN(test_markdown_and_multiline_answer);
    RUN(test_invented_observation_is_cut);
    RUN(test_lenient_reading);
    RUN(test_long_observation);
    RUN(test_step_limit);
    RUN(test_token_budget);
    RUN(test_time_limit);
    RUN(test_uncertainty_propagates);
    RUN(test_failed_call_is_observed);
    RUN(test_arguments);
    RUN(test_errors);
    RUN(test_allocation_failures);
    unlink(rules_path);
    unlink(trace_path);
    return tu_finish();
}
