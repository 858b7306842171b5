/*
 * kernel_priv.h -- the kernel struct and the loop/invoke state it carries.
 * Only kernel.c, loop.c and invoke.c include this; every other file goes
 * through the accessors in core.h.
 */
#ifndef SKEIN_KERNEL_PRIV_H
#define SKEIN_KERNEL_PRIV_H

#include <stdio.h>

#include "core/core.h"

typedef struct loop_task {
    loop_fn fn;
    void *ud;
    unsigned long round;   /* the round it was deferred in */
    struct loop_task *next;
} loop_task;

struct loop_timer {
    long long due_ms;
    loop_fn fn;
    void *ud;
    struct loop_timer *next;
};

typedef struct loop_xfer {
    void *easy;
    loop_xfer_fn done;
    void *ud;
} loop_xfer;

typedef struct inv_queue inv_queue; /* invoke.c: model calls waiting */

struct sk_kernel {
    /* registry, sorted by full name */
    sk_function **fns;
    size_t n_fns, cap_fns;
    char **skills;             /* skill names in the order first registered */
    size_t n_skills;

    /* models */
    const conn_kind **kinds;   /* the connector kinds registered */
    size_t n_kinds;
    char *model_spec;
    sk_connector **conns;
    size_t n_conns;
    char **service_ids, **service_specs;
    unsigned char *service_alias; /* 1: set as an alias, 0: a service id */
    size_t n_services;

    /* settings */
    kern_net net;
    kern_sql sql;               /* the bounds of generated SQL */
    int max_depth;
    int max_inflight;
    int quiet;

    /* last error */
    sk_status errcode;
    sk_err *err;

    FILE *trace;
    sk_usage usage;

    /* what the layers above keep here (kern_slot, kern_on_free,
     * kern_add_skill_loader) */
    struct kern_slot_ {
        const void *key;
        void *p;
    } slots[8];
    size_t n_slots;
    struct kern_hook_ {
        int order;
        void (*fn)(sk_kernel *k);
    } hooks[8];
    size_t n_hooks;
    struct kern_loader_ {
        const char *file;
        skill_loader_fn fn;
    } loaders[4];
    size_t n_loaders;

    /* event loop */
    void *multi; /* CURLM */
    loop_task *tasks_head, *tasks_tail;
    unsigned long round;       /* run_tasks rounds so far */
    struct loop_timer *timers; /* sorted by due time */
    loop_xfer *xfers;
    size_t n_xfers, cap_xfers;

    /* invoke path */
    long calls_inflight;       /* top-level sk_call objects unfinished */
    long calls_finished;       /* top-level sk_call objects finished so far */
    long model_inflight;       /* model requests started, not finished */
    inv_queue *waiting;        /* model requests held back by max_inflight */
    int native_depth;          /* depth of the native function running */

    /* policies */
    struct sk_policy *base_policy; /* kernel-wide, NULL until first use */
    char *base_policy_json;
    unsigned policy_gen;
    char *err_field;               /* sk_error_get's last answer */
    rd_rules *redact_rules;        /* built-in redaction rules, lazily */

    /* data */
    void *cache;                   /* cache.c's response cache */
    void *journal;                 /* journal.c's journal, when one is kept */
    void *history;                 /* history.c's call history */
    void *problems;                /* skills.c: what failed to load */
    char *db_path;                 /* the "db" option */
    int db_used;                   /* the session database was opened */
    long next_id;
    struct kern_limits *limits;    /* limits.c */
    FILE *record;                  /* SKEIN_RECORD cassette, or NULL */
    char run_id[24];               /* random, per kernel: the prefix of the
                                      call ids in traces and cassettes */
    long call_seq;                 /* invokes started so far */
    long long born_ms;
    int native_untrusted;          /* the native running now is untrusted */
    int native_dry;                /* ... and runs inside a dry run */
    int allow_os;                  /* option allow_os */
    int allow_unsafe;              /* option allow_dangerously_set_content */
    int no_cache;                  /* option cache = 0: no cache is read or
                                      written (--no-cache) */
    int fixed_now;                 /* option now / SKEIN_NOW is set */
    long long now_s;               /* ... to this instant, Unix seconds */
    struct kern_tools_flags *tools_flags; /* tools.c: the config's "tools" */
};

SK_HIDDEN sk_status loop_init(sk_kernel *k);
SK_HIDDEN void loop_free(sk_kernel *k);
/* Waits for every call in flight (bounded by their timeouts) and frees
 * what is queued. */
SK_HIDDEN void inv_shutdown(sk_kernel *k);

#endif
