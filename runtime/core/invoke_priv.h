/*
 * invoke_priv.h -- the state of one invoke, shared by invoke.c (its life,
 * native functions, rendering, public calls) and pipeline.c (what happens
 * to a rendered prompt: filters, the model cascade, uncertainty checks,
 * review).
 */
#ifndef SKEIN_INVOKE_PRIV_H
#define SKEIN_INVOKE_PRIV_H

#include "kernel_priv.h"

typedef struct inv inv;
typedef struct mreq mreq;
typedef struct tool_set tool_set;     /* tools.c */
struct tool_round;

typedef struct child_ctx {
    inv *parent;
    size_t index;
} child_ctx;

/* Continues an invoke after a nested call made by the pipeline (a filter,
 * a reviewer, a judge) ends; takes text and err. */
typedef void (*sub_fn)(inv *v, sk_status st, char *text, sk_err *err);

struct inv {
    sk_kernel *k;
    sk_function *f;            /* retained; NULL for a bare render */
    const sk_template *tpl;    /* f->tpl, or the caller's for a render */
    const char *name;          /* for errors and traces */
    char call_id[48];          /* kern_new_call_id: joins its trace lines */
    const char *skill;         /* for bare function names in blocks */
    sk_vars *vars;             /* owned */
    int depth;
    int render_only;           /* stop after rendering: the prompt is the result */
    char *model_override;
    sk_stream_fn stream;
    void *stream_ud;
    int no_cache;              /* the caller caches: skip the response cache */
    int dry_run;               /* inv_opts.dry_run: 1 the request is the
                                  result, 2 inside a dry run */
    int untrusted;             /* a model chose this call (inherited) */
    inv_out *out;              /* the caller's, or NULL */
    inv_done_fn done;
    void *ud;
    sk_grant *tool_allow;      /* what the model's tool calls may reach
                                  here: inv_opts.tools and inv_opts.grant,
                                  and the caller's own; NULL: anything */
    const inv_tool_hook *hook; /* inv_opts.tool_hook, or NULL */

    /* function blocks */
    char **outputs;
    sk_err **errs;
    child_ctx *children;
    size_t n_calls, pending;

    /* the pipeline */
    sk_policy *own_policy;     /* a per-call overlay, owned */
    const sk_policy *pol;      /* the policy in force; NULL for natives */
    char *prompt;              /* the rendered prompt */
    int chat;                  /* it is chat markup, parsed strictly */
    size_t *starts;            /* each block's offset in prompt (errors) */
    char *plain;               /* the prompt as the model reads it (the
                                  messages' text): what filters, reviewers
                                  and judges are shown */
    sk_msg *msgs;              /* the prompt as chat messages */
    size_t n_msgs;
    size_t model_idx;          /* position in the cascade */
    char *spec;                /* the model spec of this attempt */
    const cfg_settings *settings;
    sk_connector *conn;
    sk_msg *send;              /* messages as sent (instruction, redaction) */
    size_t n_send;
    rd_map *rmap;              /* redaction map of this attempt, or NULL */
    int redacted;              /* some attempt sent placeholders for values */
    mreq *reqs;                /* one per sample */
    size_t n_samples, pending_samples;
    sk_err *sample_err;
    char **texts;              /* the samples' replies, restored */
    size_t pick;               /* the sample whose text is the reply */
    int streaming;             /* deltas go to stream */
    sk_buf held;               /* streamed text held back by redaction */
    sk_buf partial;            /* a cut reply's text so far, while the
                                  model is asked to continue it */
    int continued;             /* continuations asked for */
    char *reply;               /* the output being checked */
    size_t filter_idx;
    sub_fn sub_next;
    int round;                 /* review round */
    int shape_round;           /* answers of the wrong shape so far */
    char *shape_feedback;      /* appended to the prompt when asking again */
    char **critiques;
    size_t n_critiques;

    /* native tool calls (tools.c) in this attempt */
    tool_set *tl;              /* the tools offered, or NULL */
    struct tool_round *tround; /* the calls running now, or NULL */
    int tool_rounds;           /* rounds of calls run */
    int tool_sampling;         /* the answer's other samples are out */
    int hold;                  /* streamed text waits for the round's end */
    int tools_off;             /* its server refused tools: none again */

    /* the uncertainty stage (9) of this attempt */
    double sc[SIG_COUNT];      /* each signal's score, -1 not computed */
    int asked;                 /* the text checks found an ask */
    unc_verdict tv;            /* what the text checks found */
    inv_out sub_out;           /* the self-check judge's report */

    /* falling back on errors */
    int streamed;              /* reply text reached the caller's stream:
                                  no other model may answer now */
    sk_buf fell;               /* the models fallen back from, and why */
    sk_buf dry_skipped;        /* a dry run's input filters not run (they
                                  call a model) */
};

/* Ends the invoke: hands text or err to its caller and frees v. */
SK_HIDDEN void inv_finish(inv *v, sk_status st, char *text, sk_err *err);
/* Renders the template again (for a revision after review). */
SK_HIDDEN void inv_rerun(inv *v);
/* Starts a nested invoke of `name` whose end continues with next. */
SK_HIDDEN void inv_sub(inv *v, const char *name, sk_vars *vars, sub_fn next);

/* tools.c: the tools of this attempt (v->tl; none when its settings have
 * no function_choice_behavior), the request's tool fields, and after a
 * reply, the round of calls it asks for (1: the tool stage took over the
 * invoke; 0: the reply goes on as the answer). */
SK_HIDDEN sk_status tools_prepare(inv *v, sk_err **err);
SK_HIDDEN void tools_request(const inv *v, model_req *req, size_t sample);
SK_HIDDEN int tools_after_reply(inv *v);
SK_HIDDEN int tools_loop(const inv *v);       /* calls are run for the model */
SK_HIDDEN int tools_has_calls(const inv *v);  /* the first reply has calls */
SK_HIDDEN void tools_free(tool_set *t);
/* A request of this attempt failed with *err: 1 when it was its server
 * refusing the tools, and the attempt is to run again without them (the
 * connector is marked; *err is taken); 0 to fail with *err. */
SK_HIDDEN int tools_after_error(inv *v, sk_err **err);

/* pipeline.c */
SK_HIDDEN void pipe_fail(inv *v, sk_err *err);  /* ends the invoke */
/* What a model is sent / what it said, under this attempt's redaction
 * (copies when there is none).  Caller frees. */
SK_HIDDEN sk_status pipe_redact(inv *v, const char *in, char **out);
SK_HIDDEN char *pipe_restore(inv *v, const char *text);
/* The first request again, on the conversation as it now stands. */
SK_HIDDEN void pipe_request_again(inv *v);
/* The reply of this attempt's sample i (borrowed), or NULL. */
SK_HIDDEN model_resp *pipe_reply(const inv *v, size_t i);
/* Sends samples from..n_samples-1 of this attempt. */
SK_HIDDEN void pipe_start_samples(inv *v, size_t from);
SK_HIDDEN void pipe_start(inv *v);   /* v->prompt is rendered */
SK_HIDDEN void pipe_free(inv *v);    /* frees the pipeline's fields */
SK_HIDDEN void pipe_shutdown(sk_kernel *k);
SK_HIDDEN void pipe_trace(inv *v, const char *type, ...); /* name, value
                                                             pairs, NULL */

#endif
