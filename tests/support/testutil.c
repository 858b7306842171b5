/* testutil.c -- counters, temporary files and the mock server launcher
 * shared by the C tests. */
#include "testutil.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int tu_passed, tu_failed;
const char *tu_current;

int tu_finish(void)
{
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

/* Every file tu_tmpfile made, removed when the test exits (by the process
 * that made them, not by a forked child that exits). */
static char **made;
static size_t n_made;
static pid_t made_by;

/* A file and what SQLite keeps beside an open database of that name. */
static void unlink_with_sidecars(const char *path)
{
    static const char *const side[] = {"", "-wal", "-shm", "-journal"};
    char p[300];
    for (size_t i = 0; i < sizeof side / sizeof *side; i++) {
        snprintf(p, sizeof p, "%s%s", path, side[i]);
        unlink(p);
    }
}

static void remove_made(void)
{
    for (size_t i = 0; i < n_made; i++) {
        if (getpid() == made_by)
            unlink_with_sidecars(made[i]);
        free(made[i]);
    }
    free(made);
    made = NULL;
    n_made = 0;
}

/* A test stopped by a signal (a crash, an interrupt, a timeout's TERM)
 * removes its files too, then dies of the signal as it would have. */
static void remove_made_on_signal(int sig)
{
    if (getpid() == made_by)
        for (size_t i = 0; i < n_made; i++)
            unlink_with_sidecars(made[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void note_made(const char *path)
{
    char **grown = realloc(made, (n_made + 1) * sizeof *made);
    char *copy = strdup(path);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            made = grown;
        return;
    }
    made = grown;
    made[n_made++] = copy;
    if (!made_by) {
        made_by = getpid();
        atexit(remove_made);
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGABRT, SIGBUS};
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
            signal(sigs[i], remove_made_on_signal);
    }
}

const char *tu_tmpfile(const char *text, const char *suffix)
{
    static char paths[8][256];
    static int slot;
    char *p = paths[slot++ % 8];
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(p, 256, "%s/skein-test-XXXXXX%s", dir, suffix ? suffix : "");
    int fd = mkstemps(p, suffix ? (int)strlen(suffix) : 0);
    if (fd < 0)
        return NULL;
    note_made(p);
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        close(fd);
        return NULL;
    }
    close(fd);
    return p;
}

/* Starts $SKEIN_MOCKSERVER SCENARIO; the server prints its port on the
 * first line of stdout once it listens. */
int tu_mock_start(const char *scenario_path, char *url, int *pid)
{
    const char *bin = getenv("SKEIN_MOCKSERVER");
    if (!bin || !*bin) {
        fprintf(stderr, "SKEIN_MOCKSERVER is not set\n");
        return -1;
    }
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(bin, bin, scenario_path, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[64];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(fds[0], line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(fds[0]);
    int port = atoi(line);
    if (port <= 0) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        fprintf(stderr, "mock server did not start\n");
        return -1;
    }
    snprintf(url, 64, "http://127.0.0.1:%d", port);
    *pid = (int)p;
    return 0;
}

void tu_mock_stop(int pid)
{
    if (pid <= 0)
        return;
    kill((pid_t)pid, SIGTERM);
    waitpid((pid_t)pid, NULL, 0);
}
