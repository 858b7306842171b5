/* fuzz_csv.c -- libFuzzer target for the CSV reader.
 *
 * Links the whole library (the import needs a kernel and its database):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *     -D_POSIX_C_SOURCE=200809L -DSKEIN_SKILLS_DIR='"/nonexistent"' \
 *     -DSKEIN_SOURCE_SKILLS='"/nonexistent"' -Iruntime -I. -Itests/support tests/fuzz/fuzz_csv.c \
 *     $(find runtime planner -maxdepth 1 -name '*.c') \
 *     $(pkg-config --cflags --libs lua5.4 libcurl libcjson libpcre2-8 sqlite3) \
 *     -lm -o fuzz_csv
 *   ./fuzz_csv -max_total_time=60 tests/fuzz/corpus/csv
 *
 * Each input is written to a temporary file and imported into a fresh
 * kernel.  Besides memory errors it checks that an import either makes a
 * frame whose rows can be counted, or fails with SK_DATA and a message
 * "path:LINE: ..." and leaves no table behind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "all.h"

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant broken: %s\n", what);
        abort();
    }
}

static int count_cb(void *ud, size_t n, const char *const *names,
                    const char *const *values)
{
    (void)names;
    if (n && values[0])
        *(long long *)ud = atoll(values[0]);
    return 0;
}

static long long tables(df_engine *e)
{
    long long n = -1;
    e->vt->query(e, "SELECT count(*) FROM sqlite_schema", grant_none(), 0, count_cb, &n, NULL);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/fuzz-csv-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    sk_kernel *k = NULL;
    if (sk_kernel_new(&k) != SK_OK) {
        sk_kernel_free(k);
        unlink(path);
        return 0;
    }
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    check(e != NULL, "the engine opens");
    long long before = tables(e);
    /* the first byte picks the options, so both guesses get exercised */
    df_csv_opts o = {0, -1, NULL};
    if (size > 0 && (data[0] & 1))
        o.delimiter = (data[0] & 2) ? ';' : ',';
    if (size > 0 && (data[0] & 4))
        o.header = (data[0] & 8) ? 1 : 0;
    sk_df *df = NULL;
    sk_status rc = df_read_csv(k, path, &o, &df, &err);
    if (rc == SK_OK) {
        check(df != NULL, "a frame on success");
        long long n = -1;
        sk_err *cerr = NULL;
        check(df_count(df, &n, &cerr) == SK_OK && n >= 0, "the frame can be counted");
        err_free(cerr);
        char *s = df_schema_text(df);
        check(s != NULL, "the frame has a schema");
        free(s);
    } else {
        check(df == NULL, "no frame on failure");
        check(rc == SK_DATA || rc == SK_NOMEM, "failures are SK_DATA");
        if (rc == SK_DATA) {
            check(err && strncmp(err->message, path, strlen(path)) == 0 &&
                      err->message[strlen(path)] == ':',
                  "errors start with path:");
        }
        check(tables(e) == before, "nothing half-imported remains");
    }
    err_free(err);
    df_free(df);
    sk_kernel_free(k);
    unlink(path);
    return 0;
}
