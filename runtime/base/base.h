/*
 * base.h -- what every file of libskein uses: allocation that tests can
 * fail, buffers with a ceiling, variable sets, structured errors.  The
 * bottom layer (runtime/base/util.c); it knows nothing of a kernel.
 * Layers, each using only those below it: base, formats (template,
 * config, chat markup), policy (detectors, shapes, redaction), core
 * (kernel, registry, loop, the invoke path and its stages, trust, cache),
 * then models, df and planner, then lua; init.c assembles a kernel.
 * Everything here has hidden visibility.
 */
#ifndef SKEIN_BASE_H
#define SKEIN_BASE_H


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "skein.h"

#if defined(__GNUC__)
#define SK_HIDDEN __attribute__((visibility("hidden")))
#define SK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SK_HIDDEN
#define SK_PRINTF(a, b)
#endif

/* ---- allocation --------------------------------------------------------
 * Every allocation in the library goes through these, so that tests can
 * fail the Nth one.  They never abort; callers check for NULL. */
SK_HIDDEN void *sk_malloc(size_t n);
SK_HIDDEN void *sk_calloc(size_t n, size_t size);
SK_HIDDEN void *sk_realloc(void *p, size_t n);
SK_HIDDEN char *sk_strdup(const char *s);             /* NULL -> NULL */
SK_HIDDEN char *sk_strndup(const char *s, size_t n);
SK_HIDDEN char *sk_asprintf(const char *fmt, ...) SK_PRINTF(1, 2);
SK_HIDDEN char *sk_vasprintf(const char *fmt, va_list ap);
/* Reads a whole file, NUL-terminated; *len gets its length.  Caller frees.
 * SK_IO (with errno intact) or SK_TOO_LARGE past max bytes. */
SK_HIDDEN sk_status sk_read_file(const char *path, size_t max, char **out,
                                 size_t *len);

/* Case-insensitive Levenshtein distance, for "did you mean" hints; names
 * over 64 bytes are never close (99). */
SK_HIDDEN size_t sk_edit_distance(const char *a, const char *b);

/* The 1-based line and column (in bytes) of offset off in text. */
SK_HIDDEN void sk_line_col(const char *text, size_t off, int *line, int *col);

/* Test builds: the Nth allocation from now fails (0 disables). */
SK_HIDDEN void sk_alloc_fail_at(long n);

/* ---- growing buffers ---------------------------------------------------
 * A byte buffer with a ceiling.  p is always NUL-terminated when non-NULL.
 * Zero-initialise, or buf_init with a ceiling (0 means 64 MiB). */
typedef struct sk_buf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
} sk_buf;

SK_HIDDEN void buf_init(sk_buf *b, size_t max);
/* SK_NOMEM, or SK_TOO_LARGE when len would pass max (nothing appended). */
SK_HIDDEN sk_status buf_add(sk_buf *b, const char *s, size_t n);
SK_HIDDEN sk_status buf_adds(sk_buf *b, const char *s);
SK_HIDDEN sk_status buf_addc(sk_buf *b, char c);
SK_HIDDEN sk_status buf_printf(sk_buf *b, const char *fmt, ...) SK_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. */
SK_HIDDEN sk_status buf_add_json_str(sk_buf *b, const char *s, size_t n);
/* Hands the bytes to the caller (an empty string when nothing was added;
 * NULL on allocation failure) and resets the buffer. */
SK_HIDDEN char *buf_steal(sk_buf *b);
SK_HIDDEN void buf_reset(sk_buf *b); /* len = 0, keeps memory */
SK_HIDDEN void buf_free(sk_buf *b);

/* ---- URLs (runtime/base/url.c) ----------------------------------------- */
/* The parts of an http(s) URL, as offsets into it. */
typedef struct sk_url {
    size_t host, host_len;  /* without user info and port */
    size_t path;            /* '/' or the end of the authority */
    size_t query;           /* '?' or the fragment (or the end) */
    size_t fragment;        /* '#' or the end */
    size_t user, user_len;  /* user info before '@' (0 length: none) */
} sk_url;
/* Splits url; 0 when it is not an http:// or https:// URL. */
SK_HIDDEN int url_split(const char *url, sk_url *u);
/* s (a URL, or a model spec holding one) as it may be shown: a password
 * in the URL's user info and the values of query parameters named like
 * secrets (key, token, sig, ...) become "***".  Caller frees; NULL when
 * memory ran out. */
SK_HIDDEN char *url_mask(const char *s);

/* ---- variables --------------------------------------------------------- */
struct sk_vars {
    size_t n, cap;
    char **names;
    char **values;
};
/* A deep copy; NULL src gives an empty set.  NULL on allocation failure. */
SK_HIDDEN sk_vars *vars_clone(const sk_vars *src);

/* ---- structured errors -------------------------------------------------
 * An error travels up the invoke path as a value.  Each invoke it passes
 * through appends its function name to the chain. */
typedef struct sk_err {
    sk_status code;
    char *message;       /* owned; never holds an API key */
    char *function;      /* the function where it was raised, or NULL */
    char **chain;        /* function names, innermost first */
    size_t n_chain;
    int http_status;     /* 0 when not an HTTP error */
    char *detail_json;   /* extra fields as a JSON object text, or NULL */
} sk_err;

/* A new error with a formatted message.  NULL only when memory ran out. */
SK_HIDDEN sk_err *err_new(sk_status code, const char *fmt, ...) SK_PRINTF(2, 3);
SK_HIDDEN sk_err *err_newv(sk_status code, const char *fmt, va_list ap);
SK_HIDDEN void err_free(sk_err *e);
SK_HIDDEN sk_err *err_clone(const sk_err *e);
/* Appends a function name to the chain (and sets e->function if unset). */
SK_HIDDEN void err_push(sk_err *e, const char *function);
/* The error as a JSON object text.  Caller frees. */
SK_HIDDEN char *err_json(const sk_err *e);

#endif /* SKEIN_BASE_H */
