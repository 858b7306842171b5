/* testutil.h -- a tiny test harness: CHECK macros that count, and a
 * summary line "N passed, N failed" that ctest-style runners read. */
#ifndef SKEIN_TESTUTIL_H
#define SKEIN_TESTUTIL_H

#include <stdio.h>
#include <string.h>

extern int tu_passed, tu_failed;
extern const char *tu_current;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            tu_passed++;                                                   \
        } else {                                                           \
            tu_failed++;                                                   \
            fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__,    \
                    __LINE__, tu_current ? tu_current : "", #cond);        \
        }                                                                  \
    } while (0)

#define CHECK_STR(got, want)                                               \
    do {                                                                   \
        const char *g_ = (got), *w_ = (want);                              \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                             \
            tu_passed++;                                                   \
        } else {                                                           \
            tu_failed++;                                                   \
            fprintf(stderr, "%s:%d: [%s] got \"%s\", want \"%s\"\n",       \
                    __FILE__, __LINE__, tu_current ? tu_current : "",      \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");               \
        }                                                                  \
    } while (0)

#define CHECK_CONTAINS(got, needle)                                        \
    do {                                                                   \
        const char *g_ = (got), *n_ = (needle);                            \
        if (g_ && n_ && strstr(g_, n_)) {                                  \
            tu_passed++;                                                   \
        } else {                                                           \
            tu_failed++;                                                   \
            fprintf(stderr, "%s:%d: [%s] \"%s\" does not contain \"%s\"\n", \
                    __FILE__, __LINE__, tu_current ? tu_current : "",      \
                    g_ ? g_ : "(null)", n_ ? n_ : "(null)");               \
        }                                                                  \
    } while (0)

#define CHECK_INT(got, want)                                               \
    do {                                                                   \
        long long g_ = (long long)(got), w_ = (long long)(want);           \
        if (g_ == w_) {                                                    \
            tu_passed++;                                                   \
        } else {                                                           \
            tu_failed++;                                                   \
            fprintf(stderr, "%s:%d: [%s] %s = %lld, want %lld\n",          \
                    __FILE__, __LINE__, tu_current ? tu_current : "", #got, \
                    g_, w_);                                               \
        }                                                                  \
    } while (0)

#define TEST(name) static void name(void)
#define RUN(name) (tu_current = #name, name())

/* Prints the summary and returns the process exit code. */
int tu_finish(void);

/* Mock server helpers (tests/support/mockserver.c).  Starts the server
 * with a scenario file, returns its base URL ("http://127.0.0.1:PORT") in
 * url (size >= 64) and its pid; 0 on success. */
int tu_mock_start(const char *scenario_path, char *url, int *pid);
/* Stops it (SIGTERM) and reaps it. */
void tu_mock_stop(int pid);
/* Writes text to a new temporary file; returns its path (static buffer
 * rotated over 8 slots). */
const char *tu_tmpfile(const char *text, const char *suffix);

#endif
