/*
 * errors.c -- how the command line reports a failure, and the standard
 * streams it reports on.
 *
 * One failure, one report, one format: "skein: message" on a terminal;
 * one JSON object when stderr is not a terminal or --json-errors asked
 * for it, never both.  The JSON object's "code" is the exit code, so a
 * script that reads it and one that reads $? agree.
 */
#define _GNU_SOURCE /* vasprintf */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

static int json_mode = -1; /* -1: not decided; JSON when stderr is no terminal */

void cli_errors_json(int on)
{
    json_mode = on ? 1 : !isatty(2);
}

int cli_errors_are_json(void)
{
    if (json_mode < 0)
        json_mode = !isatty(2);
    return json_mode;
}

int cli_exit_code(sk_status st)
{
    switch (st) {
    case SK_OK:
        return EXIT_OK;
    case SK_USAGE:
        return EXIT_USAGE;
    case SK_IO:
    case SK_TEMPLATE:
    case SK_CONFIG:
        return EXIT_TEMPLATE;
    case SK_MODEL:
    case SK_NETWORK:
    case SK_TIMEOUT:
    case SK_PROTOCOL:
    case SK_TOO_LARGE:
        return EXIT_MODEL;
    case SK_SCRIPT:
        return EXIT_SCRIPT;
    case SK_NOT_FOUND:
        return EXIT_NOT_FOUND;
    case SK_UNCERTAIN:
        return EXIT_UNCERTAIN;
    case SK_REJECTED:
    case SK_FILTERED:
    case SK_DENIED:
        return EXIT_REJECTED;
    case SK_PLAN:
        return EXIT_PLAN;
    case SK_QUERY:
    case SK_DATA:
        return EXIT_DATA;
    case SK_LIMIT:
        return EXIT_LIMIT;
    case SK_TRUNCATED:
        return EXIT_TRUNCATED;
    case SK_NOMEM:
    case SK_CANCELLED:
    case SK_RECURSION:
        return EXIT_RUNTIME;
    }
    return EXIT_RUNTIME;
}

/* Prints the object j (takes it) as one JSON line, its code set to
 * exit_code and its hint added; or, on a terminal, "skein: text" and
 * "hint: ...". */
static int emit(cJSON *j, int exit_code, const char *text, const char *hint)
{
    if (!cli_errors_are_json() || !j) {
        if (!text && j) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
            text = cJSON_IsString(m) ? m->valuestring : NULL;
        }
        fprintf(stderr, "skein: %s\n", text ? text : "out of memory");
        if (hint)
            fprintf(stderr, "hint: %s\n", hint);
        cJSON_Delete(j);
        fflush(stderr);
        return exit_code;
    }
    cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (cJSON_IsNumber(code))
        cJSON_SetNumberValue(code, exit_code); /* where the library put it */
    else
        cJSON_AddNumberToObject(j, "code", exit_code);
    if (hint && !cJSON_HasObjectItem(j, "hint"))
        cJSON_AddStringToObject(j, "hint", hint);
    char *line = cJSON_PrintUnformatted(j);
    if (line)
        fprintf(stderr, "%s\n", line);
    else
        fprintf(stderr, "{\"kind\":\"nomem\",\"code\":%d,\"message\":\"out of memory\"}\n",
                exit_code);
    cJSON_free(line);
    cJSON_Delete(j);
    fflush(stderr);
    return exit_code;
}

static int failv(const char *kind, int exit_code, const char *hint, const char *text_extra,
                 const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddNumberToObject(j, "code", exit_code);
    cJSON_AddStringToObject(j, "message", msg ? msg : "out of memory");
    char *text = NULL;
    if (msg && text_extra && asprintf(&text, "%s\n%s", msg, text_extra) < 0)
        text = NULL;
    int rc = emit(j, exit_code, text ? text : msg, hint);
    free(text);
    free(msg);
    return rc;
}

int cli_fail(const char *kind, int exit_code, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(kind, exit_code, hint, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_error(sk_status st, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv(sk_status_kind(st), cli_exit_code(st), hint, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = failv("usage", EXIT_USAGE, NULL, "Try 'skein --help'.", fmt, ap);
    va_end(ap);
    return rc;
}

int cli_report_json(const char *json, int exit_code, const char *text, const char *hint)
{
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    if (!j) {
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "kind", "runtime");
        cJSON_AddStringToObject(j, "message", text ? text : "unknown error");
    }
    return emit(j, exit_code, text, hint);
}

int cli_report(sk_kernel *k, sk_status st, const char *hint)
{
    if (!k)
        return cli_error(st, hint, "%s", sk_strerror(st));
    char *json = NULL;
    if (sk_error_json(k, &json) != SK_OK)
        json = NULL;
    int rc = cli_report_json(json, cli_exit_code(st), sk_errmsg(k), hint);
    sk_free(json);
    return rc;
}

char *cli_error_with_exit_code(const char *json, int exit_code)
{
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (cJSON_IsNumber(code))
        cJSON_SetNumberValue(code, exit_code);
    else
        cJSON_AddNumberToObject(j, "code", exit_code);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *copy = s ? strdup(s) : NULL;
    cJSON_free(s);
    return copy;
}

/* ---- the standard streams ------------------------------------------------ */

static int stdout_was_closed;
static int stdout_checked;

static void stdout_at_exit(void)
{
    if (!stdout_checked && cli_stdout_done(EXIT_OK) != EXIT_OK)
        _exit(EXIT_TEMPLATE);
}

void cli_stdio_init(void)
{
    atexit(stdout_at_exit);
    /* In order: open() returns the lowest free number, so each lands on
     * the one that was closed. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int got = open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
        if (got >= 0 && got != fd) {
            dup2(got, fd);
            close(got);
        }
        if (fd == 1)
            stdout_was_closed = 1;
    }
}

/* The write error on stdout, or 0: flushes it first. */
static int stdout_error(void)
{
    errno = 0;
    int failed = fflush(stdout) != 0;
    int e = errno;
    if (ferror(stdout))
        failed = 1;
    if (!failed)
        return 0;
    return e ? e : EIO;
}

int cli_stdout_done(int rc)
{
    if (stdout_checked)
        return rc;
    stdout_checked = 1;
    int e = stdout_error();
    if (!e)
        return rc;
    if (stdout_was_closed)
        cli_fail("io", EXIT_TEMPLATE, NULL, "stdout is closed: the output was not written");
    else
        cli_fail("io", EXIT_TEMPLATE, NULL, "cannot write the output: %s", strerror(e));
    return rc == EXIT_OK ? EXIT_TEMPLATE : rc;
}

/* ---- shared helpers --------------------------------------------------------- */

char *cli_read_all(FILE *f, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            if (cap > CLI_INPUT_CEILING) {
                free(p);
                errno = EFBIG;
                return NULL;
            }
            char *q = realloc(p, cap * 2 + 1);
            if (!q) {
                free(p);
                return NULL;
            }
            p = q;
            cap = cap * 2 + 1;
        }
        size_t got = fread(p + n, 1, cap - n - 1, f);
        n += got;
        if (n > CLI_INPUT_CEILING) {
            free(p);
            errno = EFBIG;
            return NULL;
        }
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                free(p);
                errno = e ? e : EIO;
                return NULL;
            }
            break;
        }
    }
    p[n] = '\0';
    *len = n;
    return p;
}

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}
