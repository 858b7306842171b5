/*
 * loop.c -- the kernel's event loop: one libcurl multi handle for every
 * transfer, a queue of deferred work and a list of timers, all driven from
 * one thread by loop_pump.
 *
 * Completions never run inside the call that registered them, nor inside
 * a libcurl callback: they run from loop_pump.  So code may start work
 * from anywhere (even from a completion) without re-entering itself, and
 * nothing longjmps across libcurl's frames.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "kernel_priv.h"

long long loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

sk_status loop_init(sk_kernel *k)
{
    /* curl_global_init is reference-counted and thread-safe in the
     * libcurl versions we require (7.84+); calling it per kernel keeps the
     * library free of one-time set-up by the embedder. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return SK_NOMEM;
    k->multi = curl_multi_init();
    if (!k->multi) {
        curl_global_cleanup();
        return SK_NOMEM;
    }
    /* Keep idle connections for reuse across calls; HTTP/2 multiplexing
     * when the server offers it. */
    curl_multi_setopt(k->multi, CURLMOPT_MAXCONNECTS, 64L);
    curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return SK_OK;
}

void loop_free(sk_kernel *k)
{
    loop_task *t = k->tasks_head;
    while (t) {
        loop_task *next = t->next;
        free(t);
        t = next;
    }
    k->tasks_head = k->tasks_tail = NULL;
    struct loop_timer *tm = k->timers;
    while (tm) {
        struct loop_timer *next = tm->next;
        free(tm);
        tm = next;
    }
    k->timers = NULL;
    for (size_t i = 0; i < k->n_xfers; i++)
        curl_multi_remove_handle(k->multi, k->xfers[i].easy);
    free(k->xfers);
    k->xfers = NULL;
    k->n_xfers = 0;
    if (k->multi) {
        curl_multi_cleanup(k->multi);
        k->multi = NULL;
        curl_global_cleanup();
    }
}

sk_status loop_defer(sk_kernel *k, loop_fn fn, void *ud)
{
    loop_task *t = sk_malloc(sizeof *t);
    if (!t)
        return SK_NOMEM;
    t->fn = fn;
    t->ud = ud;
    t->round = k->round;
    t->next = NULL;
    if (k->tasks_tail)
        k->tasks_tail->next = t;
    else
        k->tasks_head = t;
    k->tasks_tail = t;
    return SK_OK;
}

sk_status loop_after(sk_kernel *k, long ms, loop_fn fn, void *ud,
                     loop_timer **out)
{
    struct loop_timer *t = sk_malloc(sizeof *t);
    if (!t)
        return SK_NOMEM;
    t->due_ms = loop_now_ms() + (ms > 0 ? ms : 0);
    t->fn = fn;
    t->ud = ud;
    /* sorted insert; equal due times keep their order */
    struct loop_timer **pp = &k->timers;
    while (*pp && (*pp)->due_ms <= t->due_ms)
        pp = &(*pp)->next;
    t->next = *pp;
    *pp = t;
    if (out)
        *out = t;
    return SK_OK;
}

void loop_cancel(sk_kernel *k, loop_timer *t)
{
    for (struct loop_timer **pp = &k->timers; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            free(t);
            return;
        }
    }
}

sk_status loop_add_easy(sk_kernel *k, void *easy, loop_xfer_fn done, void *ud)
{
    if (k->n_xfers == k->cap_xfers) {
        size_t cap = k->cap_xfers ? k->cap_xfers * 2 : 16;
        loop_xfer *x = sk_realloc(k->xfers, cap * sizeof *x);
        if (!x)
            return SK_NOMEM;
        k->xfers = x;
        k->cap_xfers = cap;
    }
    if (curl_multi_add_handle(k->multi, easy) != CURLM_OK)
        return SK_NOMEM;
    k->xfers[k->n_xfers].easy = easy;
    k->xfers[k->n_xfers].done = done;
    k->xfers[k->n_xfers].ud = ud;
    k->n_xfers++;
    return SK_OK;
}

static long xfer_index(sk_kernel *k, void *easy)
{
    for (size_t i = 0; i < k->n_xfers; i++)
        if (k->xfers[i].easy == easy)
            return (long)i;
    return -1;
}

static void xfer_forget(sk_kernel *k, long i)
{
    k->xfers[i] = k->xfers[k->n_xfers - 1];
    k->n_xfers--;
}

void loop_remove_easy(sk_kernel *k, void *easy)
{
    long i = xfer_index(k, easy);
    if (i < 0)
        return;
    curl_multi_remove_handle(k->multi, easy);
    xfer_forget(k, i);
}

/* Runs the tasks queued before this round began; tasks they queue wait
 * for the next round, so a task that re-queues itself cannot starve I/O. */
/* Runs the tasks deferred before this round, one at a time from the head
 * of the queue: a task that waits (a native function's nested call pumps
 * the loop) lets the nested round run the tasks after it, so work
 * deferred side by side runs side by side.  Tasks deferred during this
 * round wait for the next, so a task that defers itself cannot spin. */
static int run_tasks(sk_kernel *k)
{
    if (!k->tasks_head)
        return 0;
    unsigned long round = ++k->round;
    int ran = 0;
    while (k->tasks_head && k->tasks_head->round < round) {
        loop_task *t = k->tasks_head;
        k->tasks_head = t->next;
        if (!k->tasks_head)
            k->tasks_tail = NULL;
        loop_fn fn = t->fn;
        void *ud = t->ud;
        free(t);
        fn(ud);
        ran = 1;
    }
    return ran;
}

static int run_timers(sk_kernel *k)
{
    long long now = loop_now_ms();
    int ran = 0;
    /* Only timers due now; ones added by callbacks wait for a later round
     * even if already due, for the same reason as run_tasks. */
    struct loop_timer *due = NULL, **tail = &due;
    while (k->timers && k->timers->due_ms <= now) {
        struct loop_timer *t = k->timers;
        k->timers = t->next;
        t->next = NULL;
        *tail = t;
        tail = &t->next;
    }
    while (due) {
        struct loop_timer *t = due;
        due = t->next;
        loop_fn fn = t->fn;
        void *ud = t->ud;
        free(t);
        fn(ud);
        ran = 1;
    }
    return ran;
}

static int drive_transfers(sk_kernel *k)
{
    if (!k->n_xfers)
        return 0;
    int running = 0;
    curl_multi_perform(k->multi, &running);
    int ran = 0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(k->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        void *easy = msg->easy_handle;
        int code = (int)msg->data.result;
        long i = xfer_index(k, easy);
        if (i < 0)
            continue;
        loop_xfer x = k->xfers[i];
        curl_multi_remove_handle(k->multi, easy);
        xfer_forget(k, i);
        /* The completion may add or remove handles; info_read stays valid
         * across that per libcurl's documentation. */
        x.done(x.ud, code);
        ran = 1;
    }
    return ran;
}

int loop_pump(sk_kernel *k, int timeout_ms)
{
    int ran = run_tasks(k);
    ran |= run_timers(k);
    ran |= drive_transfers(k);
    int pending = k->tasks_head || k->timers || k->n_xfers;
    if (!pending || k->tasks_head || timeout_ms == 0)
        return pending;
    if (ran) /* something happened: look again before sleeping */
        return pending;
    long wait = timeout_ms < 0 ? 1000 : timeout_ms;
    if (k->timers) {
        long long until = k->timers->due_ms - loop_now_ms();
        if (until < wait)
            wait = until < 0 ? 0 : (long)until;
    }
    if (k->n_xfers) {
        long curl_wait = -1;
        curl_multi_timeout(k->multi, &curl_wait);
        if (curl_wait >= 0 && curl_wait < wait)
            wait = curl_wait;
        if (wait > 0) {
            int numfds = 0;
            curl_multi_poll(k->multi, NULL, 0, (int)wait, &numfds);
        }
        drive_transfers(k);
    } else if (wait > 0) {
        poll(NULL, 0, (int)wait);
    }
    return k->tasks_head || k->timers || k->n_xfers;
}

void loop_run_until(sk_kernel *k, const int *flag)
{
    while (!*flag) {
        if (!loop_pump(k, 1000) && !*flag)
            break;
    }
}
