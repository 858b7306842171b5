/* replay_main.c -- runs a libFuzzer target over saved inputs, without
 * libFuzzer, so every build (gcc too) replays the corpus and past crash
 * inputs as a regression test (ctest fuzz/<name>).
 *
 *     replay_<name> [-o] PATH...
 *
 * Each PATH is a file or a directory of files (not recursive, in name
 * order).  A missing PATH is an error unless it follows -o (optional:
 * tests/fuzz/regressions/<name> exists only once something was found).
 * Every input is passed in a buffer of exactly its size, so the sanitizers
 * catch reads past the end as the fuzzer would.  The target reports a
 * failure by crashing or aborting, so reaching the end is success. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as with libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Inputs past this are not replayed: the fuzzer's own -max_len is far
 * smaller, so such a file is a mistake, not a corpus entry. */
#define MAX_REPLAY_BYTES ((size_t)16 << 20)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || (size_t)st.st_size > MAX_REPLAY_BYTES) {
        fprintf(stderr, "%s: unreadable or larger than %zu bytes\n", path, MAX_REPLAY_BYTES);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    /* exactly n bytes (malloc(0) may return NULL: use 1 then, pass 0) */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "%s: read failed\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the number of inputs run, or -1. */
static long run_path(const char *path, int optional)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (optional && errno == ENOENT)
            return 0;
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len)))
            break;
        snprintf(names[n], len, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    long ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(names[i]) != 0)
                ran = -1;
            else if (ran >= 0)
                ran++;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    /* the empty input, which every target must survive */
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    long total = 1;
    int optional = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o")) {
            optional = 1;
            continue;
        }
        long n = run_path(argv[i], optional);
        optional = 0;
        if (n < 0)
            failed = 1;
        else
            total += n;
    }
    printf("%ld inputs replayed%s\n", total, failed ? ", some could not be read" : "");
    return failed;
}
