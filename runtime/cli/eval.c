/*
 * eval.c -- `skein eval` and `skein calibrate`: a function over labelled
 * examples.  Uses only the public API.
 *
 * The data is JSON lines: each line's string values are the function's
 * variables, and "expected" is the right answer (compared after folding
 * case, whitespace, quotes and trailing punctuation) unless --check names
 * a function that decides (it gets input = the answer, expected, task =
 * the line as JSON, and answers yes or no).
 *
 * eval runs the function as configured and reports accuracy, how often
 * each signal raised, risk and coverage at each threshold of every scored
 * signal, review flips, escalations, calls, tokens and wall time.
 * calibrate runs it with raising off, fits the threshold of one signal
 * (sk_calibrate) and writes it into the skill's config.json.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define EVAL_MAX_LINES 1000000
#define EVAL_LINE_MAX ((size_t)16 << 20)

static const char *const SIGNALS[] = {"logprob", "agreement", "entropy", "self_check",
                                      "verbalized"};
#define N_SIGNALS (sizeof SIGNALS / sizeof SIGNALS[0])
static const double GRID[] = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
                              0.9, 0.95, 0.99};
#define N_GRID (sizeof GRID / sizeof GRID[0])

typedef struct example {
    long line;
    char *json;      /* the line */
    char *expected;  /* NULL with --check */
    sk_call *call;
    sk_call *check;  /* --check on the stage-9 answer */
    sk_call *check_final; /* and on the final one, when review changed it */
    /* outcome */
    int started, done;
    sk_status st;
    char *answer;    /* what the checks judged (the candidate when raised) */
    char *final;     /* the result, after review and filters; NULL if failed */
    char *raised;    /* the signal that raised, or NULL */
    char *model;
    double score[N_SIGNALS];
    int correct, final_correct; /* -1 unknown */
} example;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Case, whitespace, surrounding quotes and trailing punctuation folded. */
static char *fold_answer(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t b = 0, e = n;
    while (b < e && (isspace((unsigned char)s[b]) || s[b] == '"' || s[b] == '\'' ||
                     s[b] == '*' || s[b] == '`'))
        b++;
    while (e > b && (isspace((unsigned char)s[e - 1]) || s[e - 1] == '"' ||
                     s[e - 1] == '\'' || s[e - 1] == '.' || s[e - 1] == '!' ||
                     s[e - 1] == '*' || s[e - 1] == '`'))
        e--;
    size_t k = 0;
    int sp = 0;
    for (size_t i = b; i < e; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            sp = 1;
            continue;
        }
        if (sp && k)
            o[k++] = ' ';
        sp = 0;
        o[k++] = (char)tolower(c);
    }
    o[k] = '\0';
    return o;
}

static int same_answer(const char *a, const char *b)
{
    char *x = fold_answer(a), *y = fold_answer(b);
    int same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

static int verdict_yes(const char *s)
{
    while (*s && (isspace((unsigned char)*s) || *s == '*' || *s == '"'))
        s++;
    return strncasecmp(s, "yes", 3) == 0 || strncasecmp(s, "true", 4) == 0 ||
           strncasecmp(s, "pass", 4) == 0 || strncasecmp(s, "correct", 7) == 0;
}

static void example_free(example *x)
{
    free(x->json);
    free(x->expected);
    sk_call_free(x->call);
    sk_call_free(x->check);
    sk_call_free(x->check_final);
    free(x->answer);
    free(x->final);
    free(x->raised);
    free(x->model);
}

/* Reads the data file: every non-blank line an object. */
static int read_data(const char *path, const char *check, example **out, size_t *n_out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f)
        return cli_error(SK_IO, NULL, "%s: %s", path, strerror(errno));
    example *xs = NULL;
    size_t n = 0, cap = 0;
    char *buf = NULL;
    size_t bcap = 0;
    long line = 0;
    ssize_t len;
    int rc = EXIT_OK;
    while ((len = getline(&buf, &bcap, f)) >= 0) {
        line++;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        const char *c = buf;
        while (isspace((unsigned char)*c))
            c++;
        if (!*c)
            continue;
        if ((size_t)len > EVAL_LINE_MAX || n >= EVAL_MAX_LINES) {
            rc = cli_error(SK_DATA, NULL, "%s:%ld: %s", path, line,
                           n >= EVAL_MAX_LINES ? "more than 1,000,000 examples"
                                               : "line longer than 16 MiB");
            break;
        }
        cJSON *j = cJSON_Parse(buf);
        if (!cJSON_IsObject(j)) {
            const char *at = cJSON_GetErrorPtr();
            long col = at && at >= buf && at <= buf + len ? (long)(at - buf) + 1 : 1;
            cJSON_Delete(j);
            rc = cli_error(SK_DATA, NULL, "%s:%ld:%ld: not a JSON object", path, line, col);
            break;
        }
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expected");
        if (!check && !cJSON_IsString(exp)) {
            cJSON_Delete(j);
            rc = cli_error(SK_DATA, NULL,
                           "%s:%ld:1: no \"expected\" answer (a string), and no --check "
                           "function to judge the answer", path, line);
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            example *g = realloc(xs, nc * sizeof *g);
            if (!g) {
                cJSON_Delete(j);
                rc = cli_error(SK_NOMEM, NULL, "out of memory");
                break;
            }
            xs = g;
            cap = nc;
        }
        example *x = &xs[n++];
        memset(x, 0, sizeof *x);
        x->line = line;
        x->json = strdup(buf);
        x->expected = cJSON_IsString(exp) ? strdup(exp->valuestring) : NULL;
        x->correct = x->final_correct = -1;
        for (size_t s = 0; s < N_SIGNALS; s++)
            x->score[s] = -1;
        cJSON_Delete(j);
        if (!x->json) {
            rc = cli_error(SK_NOMEM, NULL, "out of memory");
            break;
        }
    }
    free(buf);
    if (f != stdin)
        fclose(f);
    if (rc == EXIT_OK && n == 0) {
        rc = cli_error(SK_DATA, NULL, "%s: no examples", path);
    }
    if (rc != EXIT_OK) {
        for (size_t i = 0; i < n; i++)
            example_free(&xs[i]);
        free(xs);
        return rc;
    }
    *out = xs;
    *n_out = n;
    return EXIT_OK;
}

/* The example's variables: its string values, "expected" aside. */
static sk_vars *example_vars(const example *x)
{
    cJSON *j = cJSON_Parse(x->json);
    sk_vars *v = NULL;
    if (!j || sk_vars_new(&v) != SK_OK) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        if (strcmp(it->string, "expected") == 0 || cJSON_IsNull(it))
            continue;
        char *text = cJSON_IsString(it) ? NULL : cJSON_PrintUnformatted(it);
        sk_vars_set(v, it->string, cJSON_IsString(it) ? it->valuestring : (text ? text : ""));
        cJSON_free(text);
    }
    cJSON_Delete(j);
    return v;
}

/* Takes what the finished call measured. */
static void collect(example *x)
{
    x->st = sk_call_status(x->call);
    if (x->st == SK_OK)
        x->final = strdup(sk_call_result(x->call));
    const char *sj = sk_call_signals(x->call);
    cJSON *s = sj ? cJSON_Parse(sj) : NULL;
    if (s) {
        const cJSON *a = cJSON_GetObjectItem(s, "answer");
        const cJSON *r = cJSON_GetObjectItem(s, "raised");
        const cJSON *m = cJSON_GetObjectItem(s, "model");
        const cJSON *sg = cJSON_GetObjectItem(s, "signals");
        if (cJSON_IsString(a))
            x->answer = strdup(a->valuestring);
        if (cJSON_IsString(r))
            x->raised = strdup(r->valuestring);
        if (cJSON_IsString(m))
            x->model = strdup(m->valuestring);
        for (size_t i = 0; i < N_SIGNALS; i++) {
            const cJSON *v = cJSON_GetObjectItem(sg, SIGNALS[i]);
            if (cJSON_IsNumber(v))
                x->score[i] = v->valuedouble;
        }
        cJSON_Delete(s);
    }
    if (!x->answer && x->final)
        x->answer = strdup(x->final);
    /* a call that failed otherwise (a model error, a rejection) without
     * having been raised on is counted as raised by its error kind */
    if (x->st != SK_OK && !x->raised)
        x->raised = strdup(sk_status_kind(x->st));
}

static sk_status start_check(sk_kernel *k, const char *check, const example *x,
                             const char *answer, sk_call **out)
{
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK)
        return SK_NOMEM;
    sk_vars_set(v, "input", answer);
    sk_vars_set(v, "expected", x->expected ? x->expected : "");
    sk_vars_set(v, "task", x->json);
    sk_status st = sk_invoke_async(k, check, v, NULL, out);
    sk_vars_free(v);
    return st;
}

/* Runs every example, at most `window` at a time, with progress on a
 * terminal.  policy overlays the function's (NULL: as configured). */
static int run_all(sk_kernel *k, const eval_opts *e, const char *policy, example *xs,
                   size_t n)
{
    size_t window = e->concurrency > 0 ? (size_t)e->concurrency : 8;
    int progress = isatty(2) && !e->quiet;
    size_t next = 0, done = 0, inflight = 0;
    sk_invoke_opts io = {0};
    io.policy = policy;
    while (done < n) {
        while (next < n && inflight < window) {
            example *x = &xs[next++];
            sk_vars *v = example_vars(x);
            if (!v)
                return cli_error(SK_NOMEM, NULL, "out of memory");
            sk_status st = sk_invoke_async(k, e->function, v, &io, &x->call);
            sk_vars_free(v);
            if (st != SK_OK)
                return cli_report(k, st, NULL);
            x->started = 1;
            inflight++;
        }
        for (size_t i = 0; i < next; i++) {
            example *x = &xs[i];
            if (x->done || !x->started)
                continue;
            if (!x->check && x->correct < 0 && sk_call_done(x->call)) {
                collect(x);
                if (!e->check) {
                    x->correct = x->answer ? same_answer(x->answer, x->expected) : 0;
                    x->final_correct = x->final ? same_answer(x->final, x->expected) : 0;
                } else if (x->answer) {
                    if (start_check(k, e->check, x, x->answer, &x->check) != SK_OK)
                        return cli_fail("not_found", EXIT_NOT_FOUND, NULL, "--check: %s",
                                        sk_errmsg(k));
                    if (x->final && strcmp(x->final, x->answer) != 0 &&
                        start_check(k, e->check, x, x->final, &x->check_final) != SK_OK)
                        return cli_report(k, sk_errcode(k), NULL);
                } else {
                    x->correct = x->final_correct = 0;
                }
            }
            if (x->check && sk_call_done(x->check) &&
                (!x->check_final || sk_call_done(x->check_final))) {
                x->correct = sk_call_status(x->check) == SK_OK &&
                             verdict_yes(sk_call_result(x->check));
                x->final_correct = !x->final ? 0
                                   : x->check_final
                                       ? sk_call_status(x->check_final) == SK_OK &&
                                             verdict_yes(sk_call_result(x->check_final))
                                       : x->correct;
                sk_call_free(x->check);
                sk_call_free(x->check_final);
                x->check = x->check_final = NULL;
            }
            if (x->correct >= 0 && !x->check) {
                x->done = 1;
                sk_call_free(x->call);
                x->call = NULL;
                done++;
                inflight--;
            }
        }
        if (progress)
            fprintf(stderr, "\r  %zu/%zu examples, %zu in flight ", done, n, inflight);
        if (done < n)
            sk_kernel_run(k, 50);
    }
    if (progress)
        fprintf(stderr, "\r%60s\r", "");
    return EXIT_OK;
}

/* ---- eval ---------------------------------------------------------------- */

typedef struct rc_point {
    double threshold, coverage, risk;
    size_t accepted;
} rc_point;

/* Risk (wrong among accepted) and coverage (accepted among all scored)
 * for each threshold of the grid. */
static size_t risk_coverage(const example *xs, size_t n, size_t sig, rc_point *pts)
{
    size_t scored = 0;
    for (size_t i = 0; i < n; i++)
        scored += xs[i].score[sig] >= 0;
    if (!scored)
        return 0;
    for (size_t g = 0; g < N_GRID; g++) {
        size_t acc = 0, wrong = 0;
        for (size_t i = 0; i < n; i++)
            if (xs[i].score[sig] >= 0 && xs[i].score[sig] >= GRID[g]) {
                acc++;
                wrong += xs[i].correct != 1;
            }
        pts[g].threshold = GRID[g];
        pts[g].accepted = acc;
        pts[g].coverage = (double)acc / (double)scored;
        pts[g].risk = acc ? (double)wrong / (double)acc : 0;
    }
    return N_GRID;
}

static int write_plot(const char *path, const char *fn, const example *xs, size_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return cli_error(SK_IO, NULL, "--plot %s: %s", path, strerror(errno));
    static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                          "#ff7f0e"};
    const int W = 640, H = 420, L = 60, R = 160, T = 40, B = 50;
    double pw = W - L - R, ph = H - T - B;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">Risk and coverage: ", L);
    for (const char *c = fn; *c; c++)
        fputs(*c == '<' ? "&lt;" : *c == '&' ? "&amp;" : (char[]){*c, 0}, f);
    fprintf(f, " (%zu examples)</text>\n", n);
    /* axes: coverage 0..1 across, risk 0..1 up */
    fprintf(f, "<g stroke=\"#888\" fill=\"none\"><rect x=\"%d\" y=\"%d\" width=\"%.0f\" "
               "height=\"%.0f\"/></g>\n",
            L, T, pw, ph);
    for (int t = 0; t <= 4; t++) {
        double v = t / 4.0;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.2f</text>\n",
                L + v * pw, H - B + 18, v);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", L - 6,
                T + ph - v * ph + 4, v);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">coverage (share "
               "answered)</text>\n",
            L + pw / 2, H - 12);
    fprintf(f, "<text x=\"16\" y=\"%.1f\" transform=\"rotate(-90 16 %.1f)\" "
               "text-anchor=\"middle\">risk (wrong among answered)</text>\n",
            T + ph / 2, T + ph / 2);
    int drawn = 0;
    rc_point pts[N_GRID];
    for (size_t s = 0; s < N_SIGNALS; s++) {
        size_t np = risk_coverage(xs, n, s, pts);
        if (!np)
            continue;
        const char *col = colours[drawn % 5];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (size_t g = 0; g < np; g++)
            fprintf(f, "%.1f,%.1f ", L + pts[g].coverage * pw, T + ph - pts[g].risk * ph);
        fprintf(f, "\"/>\n");
        for (size_t g = 0; g < np; g++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s >= "
                       "%.2f: coverage %.2f, risk %.3f</title></circle>\n",
                    L + pts[g].coverage * pw, T + ph - pts[g].risk * ph, col, SIGNALS[s],
                    pts[g].threshold, pts[g].coverage, pts[g].risk);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"%d\">%s</text>\n",
                W - R + 16, T + 10 + drawn * 20, col, W - R + 34, T + 21 + drawn * 20,
                SIGNALS[s]);
        drawn++;
    }
    if (!drawn)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no signal gave "
                   "scores: enable logprobs, samples, self_check or verbalized</text>\n",
                L + pw / 2, T + ph / 2);
    fputs("</svg>\n", f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cli_error(SK_IO, NULL, "--plot %s: %s", path, strerror(e));
    }
    return EXIT_OK;
}

int cli_eval(sk_kernel *k, const eval_opts *e)
{
    example *xs = NULL;
    size_t n = 0;
    int rc = read_data(e->data, e->check, &xs, &n);
    if (rc != EXIT_OK)
        return rc;
    sk_usage u0, u1;
    sk_kernel_usage(k, &u0);
    long long t0 = now_ms();
    rc = run_all(k, e, e->policy, xs, n);
    long long wall = now_ms() - t0;
    sk_kernel_usage(k, &u1);
    if (rc != EXIT_OK)
        goto done;
    size_t answered = 0, right = 0, raised = 0, r2w = 0, w2r = 0, reviewed = 0;
    /* raised by: the signals, then error kinds */
    const char *names[32];
    size_t counts[32], n_names = 0;
    for (size_t i = 0; i < n; i++) {
        example *x = &xs[i];
        if (x->st == SK_OK) {
            answered++;
            right += x->final_correct == 1;
        }
        if (x->raised) {
            raised++;
            size_t j = 0;
            while (j < n_names && strcmp(names[j], x->raised) != 0)
                j++;
            if (j == n_names && n_names < 32) {
                names[n_names] = x->raised;
                counts[n_names++] = 0;
            }
            if (j < 32)
                counts[j]++;
        }
        if (x->final && x->answer && strcmp(x->final, x->answer) != 0) {
            reviewed++;
            r2w += x->correct == 1 && x->final_correct != 1;
            w2r += x->correct != 1 && x->final_correct == 1;
        }
    }
    size_t right_any = 0;
    for (size_t i = 0; i < n; i++)
        right_any += xs[i].correct == 1;
    if (e->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "function", e->function);
        cJSON_AddNumberToObject(o, "examples", (double)n);
        cJSON_AddNumberToObject(o, "answered", (double)answered);
        cJSON_AddNumberToObject(o, "correct", (double)right);
        cJSON_AddNumberToObject(o, "accuracy", answered ? (double)right / answered : 0);
        cJSON_AddNumberToObject(o, "accuracy_all", (double)right_any / n);
        cJSON *rb = cJSON_AddObjectToObject(o, "raised");
        for (size_t j = 0; j < n_names; j++)
            cJSON_AddNumberToObject(rb, names[j], (double)counts[j]);
        cJSON *sig = cJSON_AddObjectToObject(o, "signals");
        rc_point pts[N_GRID];
        for (size_t s = 0; s < N_SIGNALS; s++) {
            size_t np = risk_coverage(xs, n, s, pts);
            if (!np)
                continue;
            cJSON *arr = cJSON_AddArrayToObject(sig, SIGNALS[s]);
            for (size_t g = 0; g < np; g++) {
                cJSON *p = cJSON_CreateObject();
                cJSON_AddNumberToObject(p, "threshold", pts[g].threshold);
                cJSON_AddNumberToObject(p, "coverage", pts[g].coverage);
                cJSON_AddNumberToObject(p, "risk", pts[g].risk);
                cJSON_AddItemToArray(arr, p);
            }
        }
        cJSON *rv = cJSON_AddObjectToObject(o, "review");
        cJSON_AddNumberToObject(rv, "changed", (double)reviewed);
        cJSON_AddNumberToObject(rv, "right_to_wrong", (double)r2w);
        cJSON_AddNumberToObject(rv, "wrong_to_right", (double)w2r);
        cJSON_AddNumberToObject(o, "escalations", (double)(u1.escalations - u0.escalations));
        cJSON_AddNumberToObject(o, "calls", (double)(u1.calls - u0.calls));
        cJSON_AddNumberToObject(o, "cache_hits",
                                (double)(u1.cache_hits - u0.cache_hits));
        cJSON_AddNumberToObject(o, "tokens", (double)(u1.prompt_tokens - u0.prompt_tokens +
                                                      u1.completion_tokens -
                                                      u0.completion_tokens));
        cJSON_AddNumberToObject(o, "wall_ms", (double)wall);
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            puts(s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("%s over %zu examples (%s)\n", e->function, n, e->data);
        printf("  accuracy       %.3f  (%zu of %zu answered are right; %zu raised)\n",
               answered ? (double)right / answered : 0.0, right, answered, raised);
        printf("  if none raised %.3f  (the checked answers, right among all)\n",
               (double)right_any / n);
        printf("  raised by     ");
        if (!n_names)
            printf(" nothing");
        for (size_t j = 0; j < n_names; j++)
            printf(" %s %zu%s", names[j], counts[j], j + 1 < n_names ? "," : "");
        printf("\n");
        printf("  escalations    %ld\n", u1.escalations - u0.escalations);
        printf("  review         %zu changed: right to wrong %zu, wrong to right %zu\n",
               reviewed, r2w, w2r);
        printf("  calls          %ld (%ld more from the cache), tokens %ld in + %ld out\n",
               u1.calls - u0.calls, u1.cache_hits - u0.cache_hits,
               u1.prompt_tokens - u0.prompt_tokens,
               u1.completion_tokens - u0.completion_tokens);
        printf("  wall time      %.2f s\n", wall / 1000.0);
        rc_point pts[N_GRID];
        for (size_t s = 0; s < N_SIGNALS; s++) {
            size_t np = risk_coverage(xs, n, s, pts);
            if (!np)
                continue;
            printf("\n  %-10s threshold  coverage  risk\n", SIGNALS[s]);
            for (size_t g = 0; g < np; g++)
                printf("  %-10s %9.2f  %8.3f  %5.3f\n", "", pts[g].threshold,
                       pts[g].coverage, pts[g].risk);
        }
    }
    if (e->plot)
        rc = write_plot(e->plot, e->function, xs, n);
done:
    for (size_t i = 0; i < n; i++)
        example_free(&xs[i]);
    free(xs);
    return rc;
}

/* ---- calibrate ----------------------------------------------------------- */

static size_t signal_index(const char *name)
{
    for (size_t i = 0; i < N_SIGNALS; i++)
        if (strcmp(SIGNALS[i], name) == 0)
            return i;
    return N_SIGNALS;
}

/* cJSON's formatted output with two-space indents and "key": value, the
 * way the skill folders are written (a JSON string holds no raw tab, so
 * every tab is layout).  Caller frees. */
static char *json_pretty(const cJSON *item)
{
    char *t = cJSON_Print(item);
    if (!t)
        return NULL;
    size_t n = 0;
    for (const char *c = t; *c; c++)
        n += *c == '\t' ? 2 : 1;
    char *out = malloc(n + 1), *o = out;
    if (out) {
        int bol = 1;
        for (const char *c = t; *c; c++) {
            if (*c == '\t') {
                *o++ = ' ';
                if (bol)
                    *o++ = ' ';
                continue;
            }
            bol = *c == '\n';
            *o++ = *c;
        }
        *o = '\0';
    }
    cJSON_free(t);
    return out;
}

/* Sets uncertainty.calibrated in the skill's config.json, keeping the
 * rest; written to a temporary file and renamed over. */
static int write_calibration(const char *dir, const cJSON *cal)
{
    char path[4096], tmp[4160];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root = NULL;
    FILE *f = fopen(path, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *text = len >= 0 && len < (16L << 20) ? malloc((size_t)len + 1) : NULL;
        if (text && fread(text, 1, (size_t)len, f) == (size_t)len) {
            text[len] = '\0';
            root = cJSON_Parse(text);
        }
        free(text);
        fclose(f);
        if (!root)
            return cli_error(SK_CONFIG, NULL,
                             "%s: not valid JSON; the calibration was not written", path);
    } else {
        root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "schema", 1);
        cJSON_AddStringToObject(root, "type", "completion");
    }
    cJSON *unc = cJSON_GetObjectItem(root, "uncertainty");
    if (!cJSON_IsObject(unc)) {
        cJSON_DeleteItemFromObject(root, "uncertainty");
        unc = cJSON_AddObjectToObject(root, "uncertainty");
    }
    cJSON_DeleteItemFromObject(unc, "calibrated");
    cJSON_AddItemToObject(unc, "calibrated", cJSON_Duplicate(cal, 1));
    char *out = json_pretty(root);
    cJSON_Delete(root);
    if (!out)
        return cli_error(SK_NOMEM, NULL, "out of memory");
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    int ok = f && fputs(out, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    free(out);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cli_error(SK_IO, NULL, "%s: %s", path, strerror(e ? e : EIO));
    }
    return EXIT_OK;
}

static unsigned long long rng;
static double uniform01(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

int cli_calibrate(sk_kernel *k, const eval_opts *e)
{
    size_t sig = signal_index(e->signal ? e->signal : "logprob");
    if (sig == N_SIGNALS) {
        return cli_usage("calibrate: unknown signal '%s' (logprob, agreement, entropy, "
                         "self_check, verbalized)", e->signal);
    }
    double alpha = e->alpha > 0 ? e->alpha : 0.1, delta = e->delta > 0 ? e->delta : 0.1;
    if (alpha >= 1 || delta >= 1) {
        return cli_usage("calibrate: --alpha and --delta must be between 0 and 1");
    }
    sk_function_info fi;
    if (sk_kernel_function_find(k, e->function, &fi) != SK_OK)
        return cli_fail("not_found", EXIT_NOT_FOUND, NULL, "%s", sk_errmsg(k));
    example *xs = NULL;
    size_t n = 0;
    int rc = read_data(e->data, e->check, &xs, &n);
    if (rc != EXIT_OK)
        return rc;
    /* a held-out test split, seeded */
    size_t n_test = e->test > 0 && e->test < 1 ? (size_t)floor(e->test * (double)n) : 0;
    size_t n_cal = n - n_test;
    size_t need = 0;
    double th = 0;
    const char *why = NULL;
    sk_calibrate(NULL, NULL, 0, alpha, delta, &th, &need, &why);
    if (n_cal < need) {
        rc = cli_error(SK_DATA, NULL,
                       "calibrate: %zu calibration examples are too few for alpha %.3g at "
                       "delta %.3g: at least %zu are needed, and more for a useful threshold",
                       n_cal, alpha, delta, need);
        goto done;
    }
    rng = e->seed ? (unsigned long long)e->seed : 0x5EEDULL;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(uniform01() * (double)(i + 1));
        example t = xs[i];
        xs[i] = xs[j];
        xs[j] = t;
    }
    /* raising off, so that every example is scored; the signal on */
    char policy[512];
    static const char *const turn_on[] = {
        "\"logprobs\":{\"request\":true,\"check\":false}", "", "",
        "\"self_check\":true", "\"verbalized\":true"};
    snprintf(policy, sizeof policy, "{\"uncertainty\":{\"raise\":false%s%s}}",
             turn_on[sig][0] ? "," : "", turn_on[sig]);
    long long t0 = now_ms();
    rc = run_all(k, e, policy, xs, n);
    if (rc != EXIT_OK)
        goto done;
    double *score = calloc(n, sizeof *score);
    int *ok = calloc(n, sizeof *ok);
    if (!score || !ok) {
        free(score);
        free(ok);
        rc = cli_error(SK_NOMEM, NULL, "out of memory");
        goto done;
    }
    size_t scored = 0;
    for (size_t i = 0; i < n_cal; i++) {
        score[i] = xs[i].score[sig];
        ok[i] = xs[i].correct == 1;
        scored += score[i] >= 0;
    }
    if (!scored) {
        cli_error(SK_DATA, NULL, "calibrate: no example got a %s score (%s)", SIGNALS[sig],
                  sig == 0   ? "the server returned no logprobs"
                  : sig <= 2 ? "set uncertainty.samples to 2 or more in the function's config"
                             : "the judge or the model gave none");
        free(score);
        free(ok);
        rc = EXIT_DATA;
        goto done;
    }
    sk_status st = sk_calibrate(score, ok, n_cal, alpha, delta, &th, &need, &why);
    if (st != SK_OK) {
        cli_error(SK_DATA, NULL, "calibrate: no threshold on %s keeps the error rate "
                                 "within alpha %.3g: %s",
                  SIGNALS[sig], alpha, why ? why : "unknown");
        free(score);
        free(ok);
        rc = EXIT_DATA;
        goto done;
    }
    size_t acc = 0, wrong = 0;
    for (size_t i = 0; i < n_cal; i++)
        if (score[i] >= th) {
            acc++;
            wrong += !ok[i];
        }
    free(score);
    free(ok);
    size_t tacc = 0, twrong = 0;
    for (size_t i = n_cal; i < n; i++)
        if (xs[i].score[sig] >= th) {
            tacc++;
            twrong += xs[i].correct != 1;
        }
    char date[16];
    time_t tt = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&tt));
    cJSON *cal = cJSON_CreateObject();
    cJSON_AddStringToObject(cal, "signal", SIGNALS[sig]);
    cJSON_AddNumberToObject(cal, "threshold", th);
    cJSON_AddNumberToObject(cal, "alpha", alpha);
    cJSON_AddNumberToObject(cal, "delta", delta);
    cJSON_AddNumberToObject(cal, "n", (double)n_cal);
    cJSON_AddStringToObject(cal, "date", date);
    printf("%s: %s >= %.3f answers; below it skein raises `uncertain`\n", e->function,
           SIGNALS[sig], th);
    printf("  calibration    %zu examples: answers %zu (coverage %.2f), wrong among them "
           "%.3f (bound %.3g, with probability %.2f)\n",
           n_cal, acc, (double)acc / n_cal, acc ? (double)wrong / acc : 0.0, alpha,
           1 - delta);
    if (n_test)
        printf("  held out       %zu examples: answers %zu (coverage %.2f), wrong among "
               "them %.3f: the bound %s\n",
               n_test, tacc, (double)tacc / n_test, tacc ? (double)twrong / tacc : 0.0,
               tacc == 0 || (double)twrong / tacc <= alpha ? "held" : "did NOT hold");
    printf("  wall time      %.2f s\n", (now_ms() - t0) / 1000.0);
    struct stat sb;
    int folder = fi.path && stat(fi.path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (e->dry_run || !folder) {
        /* a YAML prompt is the user's own text, comments and all: shown
         * what to add, not rewritten */
        char *s = json_pretty(cal);
        printf("%s\"uncertainty\": {\"calibrated\": %s}\n",
               e->dry_run && folder ? "not written (--dry-run): "
               : fi.path ? "not written (a YAML prompt; add it there as YAML): "
                         : "the function has no folder; put this in its config: ",
               s ? s : "");
        free(s);
    } else {
        rc = write_calibration(fi.path, cal);
        if (rc == EXIT_OK)
            printf("  written to     %s/config.json\n", fi.path);
    }
    cJSON_Delete(cal);
done:
    for (size_t i = 0; i < n; i++)
        example_free(&xs[i]);
    free(xs);
    return rc;
}
