/*
 * agent.c -- sk_agent_run: a step-by-step (ReAct) agent over a plain-text
 * protocol.
 *
 * Each step invokes the built-in semantic function Agent.Step with the
 * goal, the function manual and the transcript so far.  The model answers
 *
 *     Thought: <reasoning>
 *     Action: Skill.Fn(name="value", ...)
 *
 * or "Final Answer: <text>".  The action is parsed with the plan call
 * grammar (planner/plan.c) and run through sk_invoke like any other call;
 * its output, or the error it raised, comes back to the model as the next
 * step's Observation.  Code does the syntax: a reply in the wrong shape, an
 * unknown function or one the agent was not given never runs anything, and
 * the model is told what was wrong so it can correct itself.
 *
 * Where the model's server takes native tool calls (its connector sends
 * tools, the config file does not turn them off, and the server has not
 * refused them in this run), the agent runs on them instead: the built-in
 * Agent.Act offers the agent's functions as tools (function_choice_behavior
 * auto), the invoke path runs the calls (core/tools.c) under the agent's
 * grant, and a hook on that loop counts each request as a step, holds the
 * run to its bounds and reports every call as a step.  A server that
 * refuses the tools before any call is made sends the agent back to its
 * text protocol, which works on every model, the scripted one included.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "planner/planner.h"

#define STEP_FN "Agent.Step"
#define ACT_FN "Agent.Act"
#define DEFAULT_STEPS 10
#define MANUAL_MAX 24          /* functions in the manual when unrestricted */
#define OBS_MAX 4000           /* an observation in the transcript */
#define TEXT_MAX 4000          /* a thought or action in the transcript */
#define TRACE_OBS_MAX 2000     /* an observation in the trace */
#define TRANSCRIPT_MAX ((size_t)4 << 20)
#define LIST_MAX 40            /* names listed in an error observation */

typedef struct agent {
    sk_kernel *k;
    const sk_agent_opts *o;
    int max_steps;
    sk_usage u0;               /* usage when the run began */
    long long t0;              /* when it began */
    int native_steps;          /* requests made on native tool calls */
    char **allowed;            /* canonical full names, owned */
    size_t n_allowed;
    sk_grant *grant;           /* the same, as the lookup checks it */
    char *names;               /* "A.b, C.d" for error observations, owned */
    sk_buf transcript;
} agent;

/* One parsed reply.  Every field owned; action and answer NULL when the
 * reply had none. */
typedef struct reply {
    char *thought;
    char *action;
    char *answer;
} reply;

static void reply_free(reply *r)
{
    free(r->thought);
    free(r->action);
    free(r->answer);
    memset(r, 0, sizeof *r);
}

/* ---- reading a reply --------------------------------------------------- */

enum { L_NONE, L_THOUGHT, L_ACTION, L_ANSWER, L_OBSERVATION };

/* Markdown a model may wrap a label in: "**Action:**", "## Thought:",
 * "- Final Answer:", "`Action`:". */
static int is_deco(char c)
{
    return c == '*' || c == '_' || c == '#' || c == '>' || c == '`' ||
           c == ' ' || c == '\t';
}

/* Matches word (lower case; a space in it stands for one or more spaces,
 * underscores or hyphens) at s, case-insensitively.  Returns the length
 * matched, or 0. */
static size_t match_word(const char *s, size_t len, const char *word)
{
    size_t i = 0;
    for (const char *w = word; *w; w++) {
        if (*w == ' ') {
            size_t st = i;
            while (i < len && (s[i] == ' ' || s[i] == '_' || s[i] == '-'))
                i++;
            if (i == st)
                return 0;
            continue;
        }
        if (i >= len || tolower((unsigned char)s[i]) != *w)
            return 0;
        i++;
    }
    return i;
}

/* The label that starts a line, with the offset of its value in *val. */
static int label_of(const char *s, size_t len, size_t *val)
{
    static const struct {
        const char *word;
        int id;
    } labels[] = {
        {"thought", L_THOUGHT},
        {"action", L_ACTION},
        {"final answer", L_ANSWER},
        {"observation", L_OBSERVATION},
    };
    size_t i = 0;
    while (i < len && (is_deco(s[i]) || s[i] == '-'))
        i++;
    for (size_t l = 0; l < sizeof labels / sizeof labels[0]; l++) {
        size_t n = match_word(s + i, len - i, labels[l].word);
        if (!n)
            continue;
        size_t j = i + n;
        while (j < len && (s[j] == '*' || s[j] == '_' || s[j] == '`' ||
                           s[j] == ' ' || s[j] == '\t'))
            j++;
        if (j >= len || s[j] != ':')
            return L_NONE;
        j++;
        while (j < len && is_deco(s[j]))
            j++;
        *val = j;
        return labels[l].id;
    }
    return L_NONE;
}

static size_t line_end(const char *s, size_t from, size_t end)
{
    const char *nl = memchr(s + from, '\n', end - from);
    return nl ? (size_t)(nl - s) : end;
}

/* A copy of s[from, to) without surrounding whitespace.  NULL only when
 * memory ran out. */
static char *trimmed(const char *s, size_t from, size_t to)
{
    while (from < to && isspace((unsigned char)s[from]))
        from++;
    while (to > from && isspace((unsigned char)s[to - 1]))
        to--;
    return sk_strndup(s + from, to - from);
}

/* 1 when s[from, to) holds no call: blank, markup, or a ``` fence. */
static int blank_or_fence(const char *s, size_t from, size_t to)
{
    while (from < to && isspace((unsigned char)s[from]))
        from++;
    if (to - from >= 3 && strncmp(s + from, "```", 3) == 0)
        return 1;
    while (from < to && (is_deco(s[from]) || isspace((unsigned char)s[from])))
        from++;
    return from == to;
}

/* The call on an Action line, without the code markup models add. */
static char *action_text(const char *s, size_t from, size_t to)
{
    while (from < to && (isspace((unsigned char)s[from]) || s[from] == '`'))
        from++;
    while (to > from && (isspace((unsigned char)s[to - 1]) ||
                         s[to - 1] == '`' || s[to - 1] == '*'))
        to--;
    return sk_strndup(s + from, to - from);
}

/* Splits a model reply (borrowed) into thought, action and answer.  An
 * Observation the model wrote itself ends the reply: it was never run.
 * The first Action or Final Answer decides the step; an Action value left
 * empty is taken from the next line with text (models put calls in code
 * fences).  A reply with no label at all is kept as the thought, so the
 * model sees what it said.  SK_NOMEM or SK_OK. */
static sk_status parse_reply(const char *text, reply *r)
{
    memset(r, 0, sizeof *r);
    size_t end = strlen(text), val = 0;
    for (size_t p = 0; p < end;) {
        size_t e = line_end(text, p, end);
        if (label_of(text + p, e - p, &val) == L_OBSERVATION) {
            end = p;
            break;
        }
        p = e + 1;
    }

    size_t th_from = 0, th_to = 0;
    int have_thought = 0, labelled = 0;
    for (size_t p = 0; p < end;) {
        size_t e = line_end(text, p, end);
        int l = label_of(text + p, e - p, &val);
        if (l != L_NONE && have_thought && th_to == 0)
            th_to = p;
        if (l == L_THOUGHT && !have_thought) {
            have_thought = 1;
            th_from = p + val;
        }
        if (l != L_NONE)
            labelled = 1;
        if (l == L_ANSWER) {
            if (!(r->answer = trimmed(text, p + val, end)))
                goto nomem;
            break;
        }
        if (l == L_ACTION) {
            size_t from = p + val, to = e;
            /* An empty value: the call is on the next line with text,
             * past a code fence. */
            while (blank_or_fence(text, from, to) && to < end) {
                from = to + 1;
                to = line_end(text, from, end);
            }
            if (!(r->action = action_text(text, from, to)))
                goto nomem;
            break;
        }
        p = e + 1;
    }
    if (have_thought && th_to == 0)
        th_to = end;
    if (have_thought)
        r->thought = trimmed(text, th_from, th_to);
    else if (!labelled)
        r->thought = trimmed(text, 0, end);
    else
        r->thought = sk_strdup("");
    if (!r->thought)
        goto nomem;
    return SK_OK;
nomem:
    reply_free(r);
    return SK_NOMEM;
}

/* ---- running an action ------------------------------------------------- */

/* A copy of s cut to at most max bytes (never inside a UTF-8 sequence),
 * with a note saying how much was left out.  Caller frees; NULL when
 * memory ran out. */
static char *clip(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return sk_strdup(s);
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return sk_asprintf("%.*s\n[truncated: %zu more bytes]", (int)n, s,
                       len - n);
}

static int is_listed(const agent *a, const char *full_name)
{
    for (size_t i = 0; i < a->n_allowed; i++)
        if (strcasecmp(a->allowed[i], full_name) == 0)
            return 1;
    return 0;
}

/* Expands a quoted argument with references: $goal and ${goal} become the
 * goal, "$$" a dollar; anything else is an error for the model, since an
 * agent has no plan steps and no other variables.  Returns the text
 * (caller frees), or NULL with *problem set (caller frees; NULL when
 * memory ran out). */
static char *expand(const char *t, const char *goal, char **problem)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    *problem = NULL;
    for (const char *p = t; *p;) {
        if (p[0] != '$') {
            size_t n = strcspn(p, "$");
            if (buf_add(&b, p, n) != SK_OK)
                goto fail;
            p += n;
            continue;
        }
        if (p[1] == '$') {
            if (buf_addc(&b, '$') != SK_OK)
                goto fail;
            p += 2;
            continue;
        }
        const char *name = p + 1;
        int braced = *name == '{';
        if (braced)
            name++;
        size_t n = 0;
        while (isalnum((unsigned char)name[n]) || name[n] == '_')
            n++;
        if (n == 0 || (braced && name[n] != '}')) {
            if (buf_addc(&b, '$') != SK_OK) /* a lone dollar is text */
                goto fail;
            p++;
            continue;
        }
        if (n == 4 && strncasecmp(name, "goal", 4) == 0) {
            if (buf_adds(&b, goal) != SK_OK)
                goto fail;
        } else {
            *problem = sk_asprintf(
                "error: $%.*s is not defined here; only $goal is. Write "
                "other values as quoted text (copy what you need from an "
                "observation)", (int)n, name);
            buf_free(&b);
            return NULL;
        }
        p = name + n + braced;
    }
    return buf_steal(&b);
fail:
    buf_free(&b);
    *problem = sk_strdup("error: an argument is too long");
    return NULL;
}

static int has_param(const sk_function *f, const char *name)
{
    if (f->n_params == 0 || strcasecmp(name, "input") == 0)
        return 1;
    for (size_t i = 0; i < f->n_params; i++)
        if (strcasecmp(f->params[i].name, name) == 0)
            return 1;
    return 0;
}

static char *param_list(const sk_function *f)
{
    sk_buf b = {0};
    for (size_t i = 0; i < f->n_params; i++)
        if (buf_printf(&b, "%s%s", i ? ", " : "", f->params[i].name) != SK_OK) {
            buf_free(&b);
            return NULL;
        }
    return buf_steal(&b);
}

/* The variables for a call, from its arguments.  Returns SK_OK with *out
 * set (caller frees with sk_vars_free), SK_OK with *out NULL and *obs set
 * when the model's arguments are wrong, or SK_NOMEM. */
static sk_status call_vars(const agent *a, const sk_function *f,
                           const plan_call *c, sk_vars **out, char **obs)
{
    *out = NULL;
    *obs = NULL;
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK)
        return SK_NOMEM;
    for (size_t i = 0; i < c->n_args; i++) {
        const plan_arg *arg = &c->args[i];
        const char *name = arg->name;
        if (!name)
            name = f->n_params ? f->params[0].name : "input";
        if (!has_param(f, name)) {
            char *ps = param_list(f);
            *obs = ps ? sk_asprintf("error: %s has no parameter \"%s\"; its "
                                    "parameters are: %s",
                                    f->full_name, name, ps)
                      : NULL;
            free(ps);
            goto wrong;
        }
        char *value = NULL;
        switch (arg->kind) {
        case PA_TEXT:
            value = sk_strdup(arg->text ? arg->text : "");
            break;
        case PA_VAR:
            if (strcasecmp(arg->text, "goal") == 0) {
                value = sk_strdup(a->o->goal);
                break;
            }
            *obs = sk_asprintf("error: $%s is not defined here; only $goal "
                               "is. Write other values as quoted text (copy "
                               "what you need from an observation)",
                               arg->text);
            goto wrong;
        case PA_STEP:
            *obs = sk_asprintf("error: $%d refers to a plan step, and an "
                               "agent has none; write the value as quoted "
                               "text (copy it from an observation)",
                               arg->step);
            goto wrong;
        case PA_TEMPLATE:
            value = expand(arg->text, a->o->goal, obs);
            if (!value && *obs)
                goto wrong;
            break;
        }
        if (!value || sk_vars_set(v, name, value) != SK_OK) {
            free(value);
            sk_vars_free(v);
            return SK_NOMEM;
        }
        free(value);
    }
    *out = v;
    return SK_OK;
wrong:
    sk_vars_free(v);
    return *obs ? SK_OK : SK_NOMEM;
}

/* Runs one Action (borrowed).  On SK_OK *obs holds what the model sees
 * next (caller frees): the function's output, or "error: ..." when the
 * action was malformed, named a function the agent may not use, or the
 * call failed.  Uncertainty, cancellation and memory exhaustion are not
 * the model's to fix: they return their status with the kernel error set. */
static sk_status act(agent *a, const char *action, char **obs)
{
    sk_kernel *k = a->k;
    *obs = NULL;
    char *src = NULL;
    if (!strchr(action, '(')) /* "Skill.Fn": a call without arguments */
        src = sk_asprintf("%s()", action);
    else
        src = sk_strdup(action);
    if (!src)
        return kern_fail(k, NULL);

    plan_call call;
    memset(&call, 0, sizeof call);
    char *msg = NULL;
    int col = 0;
    sk_status st = plan_parse_call(src, strlen(src), &call, &msg, &col);
    free(src);
    if (st == SK_NOMEM) {
        free(msg);
        return kern_fail(k, NULL);
    }
    if (st != SK_OK) {
        *obs = sk_asprintf("error: the action could not be read (column %d: "
                           "%s); write it as Skill.Function(name=\"value\")",
                           col, msg ? msg : "syntax error");
        free(msg);
        return *obs ? SK_OK : kern_fail(k, NULL);
    }
    free(msg);

    /* the parameters it takes, to read the arguments by; whether it may
     * be called at all is the lookup's to say, when it is invoked below */
    sk_err *lerr = NULL;
    sk_function *f = inv_lookup(k, call.function, NULL, NULL, &lerr);
    if (!f && lerr)
        *obs = sk_asprintf("error: unknown function %s; use one of: %s",
                           call.function, a->names);
    err_free(lerr);
    if (!f) {
        plan_call_free(&call);
        return *obs ? SK_OK : kern_fail(k, NULL);
    }

    sk_vars *v = NULL;
    st = call_vars(a, f, &call, &v, obs);
    if (st != SK_OK || !v) {
        plan_call_free(&call);
        return st == SK_OK ? SK_OK : kern_fail(k, NULL);
    }
    /* The name is copied: a Lua tool may redefine functions while it runs. */
    char *name = sk_strdup(f->full_name);
    plan_call_free(&call);
    if (!name) {
        sk_vars_free(v);
        return kern_fail(k, NULL);
    }
    char *out = NULL;
    /* the model chose this call: it runs under the agent's grant, and
     * everything it reaches runs untrusted */
    inv_opts io = {.grant = a->grant, .untrusted = 1};
    st = inv_invoke(k, name, v, &io, &out);
    sk_vars_free(v);
    if (st == SK_DENIED) {
        *obs = sk_asprintf("error: %s is not available to this agent; use "
                           "one of: %s", name, a->names);
        free(name);
        return *obs ? SK_OK : kern_fail(k, NULL);
    }
    free(name);
    if (st == SK_OK) {
        *obs = out ? out : sk_strdup("");
        return *obs ? SK_OK : kern_fail(k, NULL);
    }
    free(out);
    if (st == SK_UNCERTAIN || st == SK_NOMEM || st == SK_CANCELLED)
        return st;
    *obs = sk_asprintf("error: %s", sk_errmsg(k));
    return *obs ? SK_OK : kern_fail(k, NULL);
}

/* ---- the loop ---------------------------------------------------------- */

/* The functions the agent may use, as canonical names: opts->functions
 * (each must exist), or every registered function but the agent's own. */
static sk_status setup_allowed(agent *a)
{
    sk_kernel *k = a->k;
    const sk_agent_opts *o = a->o;
    size_t n = o->functions ? o->n_functions : sk_kernel_function_count(k);
    a->allowed = sk_calloc(n ? n : 1, sizeof *a->allowed);
    if (!a->allowed)
        return kern_fail(k, NULL);
    for (size_t i = 0; i < n; i++) {
        const char *full;
        if (o->functions) {
            const char *want = o->functions[i];
            if (!want)
                return kern_failf(k, SK_USAGE, "sk_agent_run: functions[%zu] "
                                  "is NULL", i);
            sk_function *f = reg_find(k, want);
            if (!f)
                f = reg_find_short(k, want, NULL);
            if (!f)
                return inv_not_found(k, want);
            full = f->full_name;
        } else {
            sk_function_info info;
            if (sk_kernel_function_at(k, i, &info) != SK_OK)
                break;
            if (strcasecmp(info.skill, "Agent") == 0)
                continue;
            full = info.full_name;
        }
        if (is_listed(a, full))
            continue;
        if (!(a->allowed[a->n_allowed] = sk_strdup(full)))
            return kern_fail(k, NULL);
        a->n_allowed++;
    }
    sk_buf b = {0};
    sk_status st = SK_OK;
    for (size_t i = 0; i < a->n_allowed && st == SK_OK; i++) {
        if (i == LIST_MAX) {
            st = buf_printf(&b, ", ... (%zu more)", a->n_allowed - i);
            break;
        }
        st = buf_printf(&b, "%s%s", i ? ", " : "", a->allowed[i]);
    }
    if (st == SK_OK && a->n_allowed == 0)
        st = buf_adds(&b, "(none: give the Final Answer)");
    if (st != SK_OK || !(a->names = buf_steal(&b))) {
        buf_free(&b);
        return kern_fail(k, NULL);
    }
    sk_err *gerr = NULL;
    st = grant_new(k, "this agent", (const char *const *)a->allowed, a->n_allowed,
                   &a->grant, &gerr);
    if (st != SK_OK)
        return gerr ? kern_fail(k, gerr) : kern_fail(k, NULL);
    return SK_OK;
}

/* Writes the step's trace event.  Strings are borrowed; action and
 * observation may be NULL (a final step), answer NULL otherwise. */
static void trace_step(sk_kernel *k, int step, const reply *r,
                       const char *obs)
{
    sk_buf b = {0};
    sk_status st = buf_printf(&b, "\"type\":\"agent_step\",\"step\":%d,"
                              "\"thought\":", step);
    if (st == SK_OK)
        st = buf_add_json_str(&b, r->thought, strlen(r->thought));
    if (st == SK_OK && r->answer) {
        st = buf_adds(&b, ",\"answer\":");
        if (st == SK_OK)
            st = buf_add_json_str(&b, r->answer, strlen(r->answer));
    } else if (st == SK_OK) {
        st = buf_adds(&b, ",\"action\":");
        if (st == SK_OK)
            st = r->action ? buf_add_json_str(&b, r->action, strlen(r->action))
                           : buf_adds(&b, "null");
        char *c = obs ? clip(obs, TRACE_OBS_MAX) : NULL;
        if (st == SK_OK)
            st = buf_adds(&b, ",\"observation\":");
        if (st == SK_OK)
            st = c ? buf_add_json_str(&b, c, strlen(c)) : buf_adds(&b, "null");
        free(c);
    }
    if (st == SK_OK)
        trace_event(k, b.p);
    buf_free(&b);
}

/* The step's transcript text (caller frees): Thought, Action and
 * Observation, or Thought and Final Answer; long parts clipped. */
static char *step_text(const reply *r, const char *obs)
{
    sk_buf b = {0};
    char *th = clip(r->thought, TEXT_MAX);
    char *ac = r->action ? clip(r->action, TEXT_MAX) : NULL;
    char *ob = obs ? clip(obs, OBS_MAX) : NULL;
    sk_status st = SK_OK;
    if (!th || (r->action && !ac) || (obs && !ob))
        st = SK_NOMEM;
    if (st == SK_OK && *th)
        st = buf_printf(&b, "Thought: %s\n", th);
    if (st == SK_OK && r->answer)
        st = buf_printf(&b, "Final Answer: %s\n\n", r->answer);
    if (st == SK_OK && ac)
        st = buf_printf(&b, "Action: %s\n", ac);
    if (st == SK_OK && ob)
        st = buf_printf(&b, "Observation: %s\n\n", ob);
    free(th);
    free(ac);
    free(ob);
    char *s = st == SK_OK ? buf_steal(&b) : NULL;
    buf_free(&b);
    return s;
}

/* One step: ask Agent.Step, then act on its reply.  *answer is set
 * (caller frees) when the model gave its final answer. */
static sk_status run_step(agent *a, int step, const char *manual,
                          char **answer)
{
    sk_kernel *k = a->k;
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK)
        return kern_fail(k, NULL);
    if (sk_vars_set(v, "goal", a->o->goal) != SK_OK ||
        sk_vars_set(v, "manual", manual) != SK_OK ||
        sk_vars_set(v, "transcript", a->transcript.len ? a->transcript.p
                                                       : "(none yet)") != SK_OK) {
        sk_vars_free(v);
        return kern_fail(k, NULL);
    }
    char *text = NULL;
    sk_status st = sk_invoke(k, STEP_FN, v, NULL, &text);
    sk_vars_free(v);
    if (st != SK_OK)
        return st;

    reply r;
    st = parse_reply(text ? text : "", &r);
    free(text);
    if (st != SK_OK)
        return kern_fail(k, NULL);

    char *obs = NULL;
    if (r.answer && *r.answer) {
        /* A step's reply is the agent's protocol, read by the agent, so
         * Agent.Step turns the asks-back signal off; the final answer is
         * the user's, and one that asks the user back is uncertainty. */
        size_t qb, qe;
        int ask = unc_asks_back(r.answer, a->o->goal, &qb, &qe);
        if (ask < 0) {
            reply_free(&r);
            return kern_fail(k, NULL);
        }
        if (ask) {
            char *q = sk_strndup(r.answer + qb, qe - qb);
            reply_free(&r);
            if (!q)
                return kern_fail(k, NULL);
            st = sk_raise_uncertain(k, "asks back: the agent's final answer "
                                    "asks instead of answering", q, -1);
            free(q);
            return st;
        }
    } else if (r.answer) {
        free(r.answer);
        r.answer = NULL;
        obs = sk_strdup("error: the Final Answer was empty; give the answer "
                        "after \"Final Answer:\"");
    } else if (r.action) {
        st = act(a, r.action, &obs);
        if (st != SK_OK) {
            reply_free(&r);
            return st;
        }
    } else {
        obs = sk_strdup("error: the reply had neither an Action nor a Final "
                        "Answer; reply with \"Action: Skill.Function(name="
                        "\\\"value\\\")\" or \"Final Answer: <the answer>\"");
    }
    if (!r.answer && !obs) {
        reply_free(&r);
        return kern_fail(k, NULL);
    }

    char *st_text = step_text(&r, obs);
    if (!st_text) {
        free(obs);
        reply_free(&r);
        return kern_fail(k, NULL);
    }
    trace_step(k, step, &r, obs);
    if (a->o->on_step)
        a->o->on_step(a->o->on_step_ud, st_text, strlen(st_text));
    if (r.answer) {
        *answer = r.answer;
        r.answer = NULL;
    } else {
        st = buf_adds(&a->transcript, st_text);
        if (st == SK_TOO_LARGE)
            st = kern_failf(k, SK_TOO_LARGE, "the agent's transcript passed "
                            "its ceiling of %zu bytes", TRANSCRIPT_MAX);
        else if (st != SK_OK)
            st = kern_fail(k, NULL);
    }
    free(st_text);
    free(obs);
    reply_free(&r);
    return st;
}

/* The error for a run that may not take step `step` (1, 2, ...): past
 * its steps, its tokens or its time.  NULL when it may. */
static sk_err *limit_err(const agent *a, int step)
{
    const sk_agent_opts *o = a->o;
    if (step > a->max_steps)
        return err_new(SK_LIMIT, "the agent reached its limit of %d steps without a "
                                 "final answer", a->max_steps);
    if (o->max_tokens > 0) {
        sk_usage u;
        sk_kernel_usage(a->k, &u);
        long used = (u.prompt_tokens + u.completion_tokens) -
                    (a->u0.prompt_tokens + a->u0.completion_tokens);
        if (used >= o->max_tokens)
            return err_new(SK_LIMIT, "the agent used up its token budget (%ld of %ld "
                                     "tokens) after %d steps without a final answer",
                           used, o->max_tokens, step - 1);
    }
    if (o->max_ms > 0 && loop_now_ms() - a->t0 >= o->max_ms)
        return err_new(SK_LIMIT, "the agent reached its time limit of %ld ms after %d "
                                 "steps without a final answer",
                       o->max_ms, step - 1);
    return NULL;
}

/* ---- native tool calls ---------------------------------------------------- */

/* Whether this run goes on native tool calls: Agent.Act is loaded and its
 * model's server takes them. */
static int native_tools(agent *a)
{
    return reg_find(a->k, ACT_FN) && tools_native_for(a->k, ACT_FN);
}

/* A tool call as an Action line: Skill.Fn(name="value", ...), values as
 * the plan syntax quotes them. Caller frees. */
static char *action_of(const tool_report *c)
{
    sk_buf b;
    buf_init(&b, (size_t)1 << 20);
    sk_status rc = buf_printf(&b, "%s(", c->function);
    cJSON *args = cJSON_Parse(c->arguments ? c->arguments : "{}");
    int n = 0;
    for (const cJSON *e = cJSON_IsObject(args) ? args->child : NULL; rc == SK_OK && e;
         e = e->next) {
        char *v = cJSON_IsString(e) ? NULL : cJSON_PrintUnformatted(e);
        const char *text = v ? v : e->valuestring;
        rc = buf_printf(&b, "%s%s=", n++ ? ", " : "", e->string);
        if (rc == SK_OK)
            rc = buf_add_json_str(&b, text ? text : "", text ? strlen(text) : 0);
        cJSON_free(v);
    }
    cJSON_Delete(args);
    if (rc == SK_OK)
        rc = buf_addc(&b, ')');
    char *s = rc == SK_OK ? buf_steal(&b) : NULL;
    buf_free(&b);
    return s;
}

/* One step's record: the trace line, on_step, the transcript. */
static void record_step(agent *a, int step, reply *r, const char *obs)
{
    char *text = step_text(r, obs);
    trace_step(a->k, step, r, obs);
    if (text && a->o->on_step)
        a->o->on_step(a->o->on_step_ud, text, strlen(text));
    if (text && !r->answer)
        buf_adds(&a->transcript, text);
    free(text);
}

/* The tool loop's hook: every request after the first is a step, held to
 * the run's bounds; every call a round made is reported as a step. */
static sk_err *native_before(void *ud, int round)
{
    agent *a = ud;
    a->native_steps = round + 1;
    return limit_err(a, round + 1);
}

static void native_after(void *ud, int round, const char *text, const tool_report *calls,
                         size_t n)
{
    agent *a = ud;
    for (size_t i = 0; i < n; i++) {
        reply r = {0};
        r.thought = sk_strdup(i == 0 && text ? text : "");
        r.action = action_of(&calls[i]);
        if (r.thought && r.action)
            record_step(a, round, &r, calls[i].result);
        reply_free(&r);
    }
}

/* The run on native tool calls: Agent.Act with the agent's functions as
 * tools.  *fell_back is set when the server refused the tools before any
 * call was made (the run is then the text protocol's to do). */
static sk_status run_native(agent *a, char **answer, int *fell_back)
{
    sk_kernel *k = a->k;
    *fell_back = 0;
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK || sk_vars_set(v, "goal", a->o->goal) != SK_OK) {
        sk_vars_free(v);
        return kern_fail(k, NULL);
    }
    sk_err *stop = limit_err(a, 1);
    if (stop) {
        sk_vars_free(v);
        return kern_fail(k, stop);
    }
    a->native_steps = 1;
    /* one more round than steps: the hook stops the run first */
    inv_tool_hook hook = {a->max_steps + 1, native_before, native_after, a};
    inv_opts io = {.tools = a->grant, .tool_hook = &hook};
    char *text = NULL;
    sk_status st = inv_invoke(k, ACT_FN, v, &io, &text);
    sk_vars_free(v);
    if (st != SK_OK) {
        free(text);
        *fell_back = st == SK_MODEL && a->native_steps == 1 && !tools_native_for(k, ACT_FN);
        return st;
    }
    reply r = {0};
    r.thought = sk_strdup("");
    r.answer = text;
    if (!r.thought) {
        reply_free(&r);
        return kern_fail(k, NULL);
    }
    if (!*r.answer) {
        reply_free(&r);
        return kern_failf(k, SK_MODEL, "the agent's model ended with an empty answer "
                          "after %d steps", a->native_steps);
    }
    size_t qb, qe;
    int ask = unc_asks_back(r.answer, a->o->goal, &qb, &qe);
    if (ask < 0) {
        reply_free(&r);
        return kern_fail(k, NULL);
    }
    if (ask) {
        char *q = sk_strndup(r.answer + qb, qe - qb);
        reply_free(&r);
        if (!q)
            return kern_fail(k, NULL);
        st = sk_raise_uncertain(k, "asks back: the agent's final answer asks instead of "
                                   "answering", q, -1);
        free(q);
        return st;
    }
    record_step(a, a->native_steps, &r, NULL);
    *answer = r.answer;
    r.answer = NULL;
    reply_free(&r);
    return SK_OK;
}

sk_status sk_agent_run(sk_kernel *k, const sk_agent_opts *o, char **answer)
{
    if (!k)
        return SK_USAGE;
    if (!answer)
        return kern_failf(k, SK_USAGE, "sk_agent_run: answer is NULL");
    *answer = NULL;
    if (!o || !o->goal || !*o->goal)
        return kern_failf(k, SK_USAGE, "sk_agent_run: the agent needs a goal");
    if (o->max_steps < 0 || o->max_tokens < 0 || o->max_ms < 0)
        return kern_failf(k, SK_USAGE, "sk_agent_run: max_steps, max_tokens "
                          "and max_ms must not be negative");
    if (o->n_functions && !o->functions)
        return kern_failf(k, SK_USAGE, "sk_agent_run: n_functions without "
                          "functions");
    if (!reg_find(k, STEP_FN))
        return kern_failf(k, SK_NOT_FOUND, "the agent's prompt %s is not "
                          "loaded; load the built-in skills first "
                          "(sk_kernel_load_default_skills)", STEP_FN);

    agent a;
    memset(&a, 0, sizeof a);
    a.k = k;
    a.o = o;
    a.max_steps = o->max_steps ? o->max_steps : DEFAULT_STEPS;
    buf_init(&a.transcript, TRANSCRIPT_MAX);
    char *manual = NULL;
    sk_status st = setup_allowed(&a);
    if (st == SK_OK) {
        size_t max = o->functions ? a.n_allowed : MANUAL_MAX;
        manual = plan_manual(k, o->goal, (const char *const *)a.allowed,
                             a.n_allowed, max ? max : 1);
        if (!manual)
            st = kern_fail(k, NULL);
    }

    sk_kernel_usage(k, &a.u0);
    a.t0 = loop_now_ms();
    if (st == SK_OK && native_tools(&a)) {
        int fell_back = 0;
        st = run_native(&a, answer, &fell_back);
        if (!fell_back)
            goto done;
        /* the server refused the tools before any call: the text protocol */
        buf_reset(&a.transcript);
        trace_event(k, "\"type\":\"agent_fallback\",\"reason\":\"the server refused "
                       "native tool calls\"");
        kern_ok(k);
        st = SK_OK;
    }
    for (int step = 1; st == SK_OK && !*answer; step++) {
        sk_err *stop = limit_err(&a, step);
        if (stop) {
            st = kern_fail(k, stop);
            break;
        }
        st = run_step(&a, step, manual, answer);
    }
done:

    free(manual);
    for (size_t i = 0; i < a.n_allowed; i++)
        free(a.allowed[i]);
    free(a.allowed);
    grant_release(a.grant);
    free(a.names);
    buf_free(&a.transcript);
    if (st != SK_OK) {
        free(*answer);
        *answer = NULL;
        return st;
    }
    kern_ok(k);
    return SK_OK;
}
