/*
 * prompt.c -- `skein prompt` and `skein chat`: ad hoc prompts and a
 * conversation, with the conventions of Simon Willison's `llm`.
 *
 *   skein prompt "text" [-s SYSTEM] [-m MODEL] [-c | --cid ID]
 *   skein chat [-s SYSTEM] [-m MODEL] [-c | --cid ID]
 *
 * Both run one semantic function, Skein.Prompt, through the one invoke
 * path like any other: a user message, after the conversation so far.
 * The conversation is chat markup that this file writes itself (each
 * text encoded, so nothing a person or a model wrote can open or close a
 * message) into a variable the function trusts, as Semantic Kernel's
 * allow_dangerously_set_content does for one input variable; the new
 * prompt is an ordinary variable, encoded by the template like any value.
 * Continuing a conversation reads it back from the call history.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli.h"

#define PROMPT_FN "Skein.Prompt"
#define TURNS_MAX 1000                     /* turns sent back at most */
#define CONVO_BYTES_MAX ((size_t)8 << 20)  /* bytes of them at most */
#define LINE_MAX_BYTES ((size_t)16 << 20)  /* one line or !multi block */

static const char TEMPLATE[] = "{{$history}}<message role=\"user\">{{$input}}</message>";
static const char CONFIG[] =
    "{\"description\": \"An ad hoc prompt, after the conversation so far "
    "(skein prompt, skein chat)\","
    " \"input_variables\": ["
    "  {\"name\": \"input\", \"description\": \"the prompt\"},"
    "  {\"name\": \"history\", \"description\": \"the conversation so far, as chat "
    "markup\", \"default\": \"\", \"allow_dangerously_set_content\": true}],"
    " \"uncertainty\": false}";

/* ---- the conversation ---------------------------------------------------- */

typedef struct turn {
    char *user, *assistant;
} turn;

typedef struct convo {
    char *system;  /* NULL: none */
    turn *t;
    size_t n, cap;
    int dropped;   /* old turns left out to stay within the bounds */
} convo;

static void convo_free(convo *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->t[i].user);
        free(c->t[i].assistant);
    }
    free(c->t);
    free(c->system);
    memset(c, 0, sizeof *c);
}

static int convo_add(convo *c, const char *user, const char *assistant)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        turn *t = realloc(c->t, nc * sizeof *t);
        if (!t)
            return -1;
        c->t = t;
        c->cap = nc;
    }
    char *u = strdup(user), *a = strdup(assistant);
    if (!u || !a) {
        free(u);
        free(a);
        return -1;
    }
    c->t[c->n].user = u;
    c->t[c->n].assistant = a;
    c->n++;
    return 0;
}

/* s as the body of a chat message: &, < and > as entities. */
static void put_encoded(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

/* The conversation as chat markup: the system message, then the newest
 * turns that fit TURNS_MAX and CONVO_BYTES_MAX.  Caller frees. */
static char *convo_markup(convo *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    if (c->system && *c->system) {
        fputs("<message role=\"system\">", f);
        put_encoded(f, c->system);
        fputs("</message>", f);
    }
    size_t first = c->n > TURNS_MAX ? c->n - TURNS_MAX : 0, bytes = 0;
    for (size_t i = c->n; i > first; i--) {
        bytes += strlen(c->t[i - 1].user) + strlen(c->t[i - 1].assistant);
        if (bytes > CONVO_BYTES_MAX) {
            first = i;
            break;
        }
    }
    if (first && !c->dropped) {
        c->dropped = 1;
        fprintf(stderr, "skein: the conversation is long: its oldest turns are no "
                        "longer sent\n");
    }
    for (size_t i = first; i < c->n; i++) {
        fputs("<message role=\"user\">", f);
        put_encoded(f, c->t[i].user);
        fputs("</message><message role=\"assistant\">", f);
        put_encoded(f, c->t[i].assistant);
        fputs("</message>", f);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct loader {
    convo *c;
    const char *system_given;
    char *model;
    int failed;
} loader;

static int load_turn(void *ud, const sk_history_entry *e)
{
    loader *l = ud;
    if (!e->reply || !e->prompt)
        return 0; /* a failed call left no turn */
    if (!l->system_given && !l->c->system && e->system && !(l->c->system = strdup(e->system)))
        l->failed = 1;
    if (convo_add(l->c, e->prompt, e->reply) != 0)
        l->failed = 1;
    free(l->model);
    l->model = e->model ? strdup(e->model) : NULL;
    return l->failed;
}

/* Sets up the conversation: a new one, or the one -c or --cid names,
 * read back from the history (its model is used when -m is not given).
 * Returns -1, or an exit code. */
static int convo_start(sk_kernel *k, const prompt_opts *p, convo *c)
{
    memset(c, 0, sizeof *c);
    if (p->cont && p->conversation)
        return cli_usage("-c and --cid both name a conversation; give one");
    char *id = NULL;
    if (p->cont) {
        int rc = cli_last_conversation(k, PROMPT_FN, &id);
        if (rc >= 0)
            return rc;
        if (!id && !p->quiet)
            fprintf(stderr, "skein: no conversation to continue in the history; "
                            "starting a new one\n");
    } else if (p->conversation && !(id = strdup(p->conversation))) {
        return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    if (id) {
        loader l = {c, p->system, NULL, 0};
        sk_history_query q = {.conversation = id, .limit = TURNS_MAX, .oldest_first = 1};
        sk_status st = sk_kernel_history(k, &q, load_turn, &l);
        int rc = -1;
        if (st != SK_OK)
            rc = cli_report(k, st, NULL);
        else if (l.failed)
            rc = cli_error(SK_NOMEM, NULL, "out of memory");
        else if (!c->n && !l.model)
            rc = cli_fail("not_found", EXIT_NOT_FOUND, "skein logs lists the conversations",
                          "no conversation %s in the history", id);
        else if ((st = sk_kernel_set_option(k, "conversation", id)) != SK_OK)
            rc = cli_report(k, st, NULL);
        /* the model the conversation had, unless one is given; a spec
         * whose credentials the history scrubbed cannot be used again */
        if (rc < 0 && !p->model && l.model && !strstr(l.model, "[SECRET_") &&
            (st = sk_kernel_set_model(k, l.model)) != SK_OK)
            rc = cli_report(k, st, NULL);
        free(l.model);
        free(id);
        if (rc >= 0)
            return rc;
    }
    if (p->system) {
        free(c->system);
        if (!(c->system = strdup(p->system)))
            return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    sk_status st = sk_kernel_add_semantic(k, "Skein", "Prompt", TEMPLATE, CONFIG);
    if (st != SK_OK)
        return cli_report(k, st, NULL);
    return -1;
}

/* ---- one turn -------------------------------------------------------------- */

typedef struct out_state {
    size_t bytes;
    char last;
} out_state;

static void stream_out(void *ud, const char *text, size_t len)
{
    out_state *s = ud;
    if (!len)
        return;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    s->bytes += len;
    s->last = text[len - 1];
}

/* Sends text after the conversation; on success prints the reply and
 * adds the turn.  Returns EXIT_OK or the error's exit code (reported). */
static int turn_run(sk_kernel *k, const prompt_opts *p, convo *c, const char *text)
{
    char *markup = convo_markup(c);
    sk_vars *v = NULL;
    if (!markup || sk_vars_new(&v) != SK_OK || sk_vars_set(v, "input", text) != SK_OK ||
        sk_vars_set(v, "history", markup) != SK_OK) {
        free(markup);
        sk_vars_free(v);
        return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    free(markup);
    int stream = p->stream >= 0 ? p->stream : isatty(1);
    out_state os = {0, 0};
    sk_invoke_opts io = {0};
    io.stream = stream ? stream_out : NULL;
    io.stream_ud = &os;
    io.policy = p->policy;
    char *out = NULL;
    sk_status st = sk_invoke(k, PROMPT_FN, v, &io, &out);
    sk_vars_free(v);
    if (os.bytes && os.last != '\n')
        putchar('\n');
    if (st != SK_OK) {
        fflush(stdout);
        const char *hint = !sk_kernel_model(k) && (st == SK_CONFIG || st == SK_NOT_FOUND)
                               ? "set SKEIN_MODEL, \"model\" in the config file, or pass -m"
                               : NULL;
        return cli_report(k, st, hint);
    }
    if (!os.bytes) {
        size_t n = strlen(out);
        fwrite(out, 1, n, stdout);
        if (!n || out[n - 1] != '\n')
            putchar('\n');
    }
    fflush(stdout);
    int rc = convo_add(c, text, out) == 0 ? EXIT_OK : cli_error(SK_NOMEM, NULL, "out of memory");
    sk_free(out);
    return rc;
}

/* ---- skein prompt ------------------------------------------------------------- */

int cli_prompt(sk_kernel *k, const prompt_opts *p)
{
    /* as llm: what comes on stdin, then a space and the argument */
    char *text = NULL;
    if (!isatty(0)) {
        size_t len = 0;
        char *in = cli_read_all(stdin, &len);
        if (!in)
            return cli_error(SK_IO, NULL, "reading stdin: %s",
                             errno == EFBIG ? "input larger than 64 MiB" : strerror(errno));
        if (len && p->text) {
            text = malloc(len + strlen(p->text) + 2);
            if (text)
                sprintf(text, "%s %s", in, p->text);
            free(in);
        } else if (len) {
            text = in;
        } else {
            free(in);
        }
    }
    if (!text && p->text)
        text = strdup(p->text);
    if (!text || !*text) {
        free(text);
        return cli_usage("prompt: give the prompt as an argument, on stdin, or both");
    }
    convo c;
    int rc = convo_start(k, p, &c);
    if (rc < 0)
        rc = turn_run(k, p, &c, text);
    convo_free(&c);
    free(text);
    return rc;
}

/* ---- skein chat ---------------------------------------------------------------- */

static const char CHAT_HELP[] =
    "Type a message and Enter to send it.  !multi starts a message of several\n"
    "lines, !end sends it (!multi WORD ... !end WORD when the text holds a line\n"
    "!end).  !exit, !quit or Ctrl-D ends the chat; up and down recall earlier lines.\n";

/* Reads one line: with line editing and history at a terminal, plainly
 * from a pipe.  Caller frees; NULL at the end of input. */
static char *read_line(int tty, const char *prompt)
{
    if (tty) {
        char *line = readline(prompt);
        if (line && *line)
            add_history(line);
        return line;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if ((size_t)n > LINE_MAX_BYTES) {
        fprintf(stderr, "skein: a line longer than 16 MiB was cut\n");
        line[LINE_MAX_BYTES] = '\0';
        n = (ssize_t)LINE_MAX_BYTES;
    }
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

/* Reads the lines of a !multi block up to its !end line.  Caller frees;
 * NULL at the end of input (the block is dropped). */
static char *read_block(int tty, const char *delim)
{
    char *end = delim && *delim ? NULL : strdup("!end");
    if (!end && asprintf(&end, "!end %s", delim) < 0)
        return NULL;
    size_t len = 0, cap = 256;
    char *text = malloc(cap);
    if (!text) {
        free(end);
        return NULL;
    }
    text[0] = '\0';
    for (;;) {
        char *line = read_line(tty, tty ? ". " : NULL);
        if (!line) {
            free(text);
            text = NULL;
            break;
        }
        if (strcmp(line, end) == 0) {
            free(line);
            break;
        }
        size_t n = strlen(line);
        if (len + n + 2 > LINE_MAX_BYTES) {
            fprintf(stderr, "skein: the message is longer than 16 MiB; the rest is cut\n");
            free(line);
            continue;
        }
        if (len + n + 2 > cap) {
            while (len + n + 2 > cap)
                cap *= 2;
            char *g = realloc(text, cap);
            if (!g) {
                free(line);
                free(text);
                text = NULL;
                break;
            }
            text = g;
        }
        if (len)
            text[len++] = '\n';
        memcpy(text + len, line, n + 1);
        len += n;
        free(line);
    }
    free(end);
    return text;
}

int cli_chat(sk_kernel *k, const prompt_opts *p)
{
    if (p->text)
        return cli_usage("chat: unexpected argument '%s' (type the messages once it "
                         "starts)", p->text);
    int tty = isatty(0) && isatty(2);
    convo c;
    int rc = convo_start(k, p, &c);
    if (rc >= 0)
        return rc;
    if (tty) {
        /* prompts and the echo of typing on the terminal, stdout for the
         * replies alone */
        rl_instream = stdin;
        rl_outstream = stderr;
        using_history();
        const char *model = sk_kernel_model(k);
        fprintf(stderr, "Chatting with %s (conversation %s)%s\n%s",
                model ? model : "(no model configured)", sk_kernel_conversation(k),
                c.n ? ", continued" : "", CHAT_HELP);
    }
    int first_error = EXIT_OK;
    for (;;) {
        char *line = read_line(tty, tty ? "> " : NULL);
        if (!line)
            break;
        const char *cmd = line;
        while (*cmd == ' ' || *cmd == '\t')
            cmd++;
        if (strcmp(cmd, "!exit") == 0 || strcmp(cmd, "!quit") == 0 ||
            strcmp(cmd, "exit") == 0 || strcmp(cmd, "quit") == 0) {
            free(line);
            break;
        }
        if (strcmp(cmd, "!help") == 0) {
            fputs(CHAT_HELP, tty ? stderr : stdout);
            free(line);
            continue;
        }
        char *text = line;
        if (strncmp(cmd, "!multi", 6) == 0 && (cmd[6] == '\0' || cmd[6] == ' ')) {
            const char *delim = cmd + 6;
            while (*delim == ' ')
                delim++;
            text = read_block(tty, delim);
            free(line);
            if (!text)
                break; /* the input ended inside the block */
        }
        if (*text) {
            int r = turn_run(k, p, &c, text);
            if (r != EXIT_OK && first_error == EXIT_OK)
                first_error = r;
        }
        free(text);
    }
    if (tty) {
        clear_history();
        fputc('\n', stderr);
    }
    convo_free(&c);
    /* the exit code tells whether every turn went */
    return first_error;
}
