/*
 * policy.h -- what a function's policy decides, as pure functions: the
 * policy itself and the uncertainty detectors (policy.c), PII redaction
 * (redact.c), the shapes an answer must have (shape.c).  Above formats;
 * the core's stages call it.
 */
#ifndef SKEIN_POLICY_H
#define SKEIN_POLICY_H

#include "formats/formats.h"

/* ---- PII redaction (redact.c) ------------------------------------------
 * Replaces personal data and secrets with stable placeholders before text
 * leaves the machine, and puts the originals back into the reply. */
typedef struct rd_rules rd_rules;
typedef struct rd_map rd_map;

/* The built-in rules: EMAIL, PHONE, CARD (Luhn-checked), IBAN (mod-97
 * checked), IP (v4 and v6), SECRET (API keys and tokens). */
SK_HIDDEN sk_status rd_rules_default(rd_rules **out);
/* The SECRET rules alone (keys, tokens, passwords), for text that is
 * stored rather than sent (the call history). */
SK_HIDDEN sk_status rd_rules_secrets(rd_rules **out);
/* An empty rule set (custom rules only).  NULL on allocation failure. */
SK_HIDDEN rd_rules *rd_rules_new(void);
/* Adds a rule; placeholders read "[NAME_n]".  SK_CONFIG with *errmsg on
 * a bad pattern or name. */
SK_HIDDEN sk_status rd_rules_add(rd_rules *r, const char *name,
                                 const char *pattern, char **errmsg);
SK_HIDDEN void rd_rules_free(rd_rules *r);
SK_HIDDEN rd_map *rd_map_new(void);
SK_HIDDEN void rd_map_free(rd_map *m);
SK_HIDDEN size_t rd_map_count(const rd_map *m);
/* Redacts text into *out (caller frees); the same value always gets the
 * same placeholder within one map. */
SK_HIDDEN sk_status rd_redact(const rd_rules *r, rd_map *m, const char *text,
                              char **out);
/* Puts the originals back for every placeholder of m found in text. */
SK_HIDDEN sk_status rd_restore(const rd_map *m, const char *text, char **out);
/* 1 when a model spec or URL points at this machine (127.0.0.0/8, ::1,
 * localhost) or is in-process (scripted:). */
SK_HIDDEN int rd_is_local(const char *spec);

/* ---- output shapes (runtime/policy/shape.c) ------------------------------------
 * A function can require the shape of its answer, with skein's "output"
 * key in config.json:
 *   "output": {"json_schema": {...}}            a JSON value matching it
 *   "output": {"choice": ["yes", "no"]}          exactly one of these
 *   "output": {"regex": "^\\d{4}-\\d{2}-\\d{2}$"} a match for the pattern
 * with optional "retries" (default 2).  Where the server can constrain
 * decoding, the connector asks it to; the answer is validated either way,
 * and a failing answer is retried with the problem fed back. */
typedef struct sk_shape sk_shape;
/* Parses the value of "output" (JSON text).  SK_CONFIG with *errmsg
 * "origin: output.json_schema: ..." (caller frees). */
SK_HIDDEN sk_status shape_parse(const char *json, size_t len, const char *origin,
                                sk_shape **out, char **errmsg);
SK_HIDDEN sk_shape *shape_clone(const sk_shape *s);
SK_HIDDEN void shape_free(sk_shape *s);
/* 1 when reply fits.  Otherwise 0 and *problem (caller frees) says what
 * is wrong, in words fit to send back to the model ("$.age: expected an
 * integer, got \"ten\"").  -1 on allocation failure.  For JSON schemas the
 * JSON may be wrapped in a code fence or prose: *clean (caller frees)
 * gets the bare JSON text (or the trimmed choice) when non-NULL. */
SK_HIDDEN int shape_check(const sk_shape *s, const char *reply, char **problem,
                          char **clean);
SK_HIDDEN int shape_retries(const sk_shape *s);
/* The model_req fields for this shape: json_schema text (borrowed from
 * s, or NULL), choices (borrowed), regex (borrowed). */
SK_HIDDEN void shape_request(const sk_shape *s, const char **json_schema,
                             char *const **choices, size_t *n_choices,
                             const char **regex);
/* A JSON schema validator on its own (type, enum, const, required,
 * properties, additionalProperties, items, minItems/maxItems,
 * minLength/maxLength, pattern, minimum/maximum, exclusive forms,
 * anyOf/oneOf/allOf basics).  Same contract as shape_check. */
SK_HIDDEN int shape_validate_json(const char *schema_json, const char *json,
                                  char **problem);

/* ---- policies: uncertainty, cascade, review, filters, redaction --------
 * A function's policy comes from skein's own keys in its config.json
 * ("uncertainty", "models", "review", "filters", "redact"), optionally
 * overlaid per call by a JSON object of the same shape.  policy.c. */
typedef struct pol_filter {
    char *name;        /* the rule's name, reported in SK_FILTERED errors */
    void *re;          /* pcre2_code*: a deterministic rule, or NULL */
    char *function;    /* a model-based rule: a function (Filter.Content) */
    char *policy;      /* passed to that function as {{$policy}} */
} pol_filter;

/* The built-in P(True) judge (skills/Uncertainty/SelfCheck). */
#define UNC_SELF_CHECK_FN "Uncertainty.SelfCheck"

/* The signals whose score a calibration can set a threshold on. */
typedef enum unc_signal {
    SIG_NONE = 0,
    SIG_LOGPROB,    /* the chosen label's probability, or the mean token
                       probability of free text */
    SIG_AGREEMENT,  /* share of samples in the largest answer cluster */
    SIG_ENTROPY,    /* semantic entropy over the clusters, as 1 - H/log n */
    SIG_SELF_CHECK, /* P(True) of a fresh-context judge */
    SIG_VERBAL,     /* the model's own CONFIDENCE line */
    SIG_COUNT
} unc_signal;
/* "logprob", ...; NULL for SIG_NONE.  unc_signal_from_name: SIG_NONE for
 * an unknown name. */
SK_HIDDEN const char *unc_signal_name(unc_signal s);
SK_HIDDEN unc_signal unc_signal_from_name(const char *name);

typedef struct sk_policy {
    /* uncertainty signals */
    int raise;             /* 0: compute and report the signals, never
                              raise or escalate (eval, calibrate) */
    int protocol;          /* append the UNSURE instruction, detect the
                              marker line; default 0 */
    int asks_back;         /* a reply that asks the user instead of doing
                              the task; default 1 */
    int hedging;           /* match hedging phrases; default 0 (opt-in) */
    void *hedge_re;        /* pcre2_code*: the phrases as one pattern */
    int want_logprobs;     /* ask the server for logprobs; default 0 */
    int check_logprobs;    /* judge logprobs when the reply has them;
                              default 1 */
    double min_mean_prob;  /* uncertain below this mean token probability;
                              default 0.5 */
    double min_token_prob; /* uncertain if any token is below; default 0
                              (off) */
    int samples;           /* self-consistency: answers to sample; 1 off */
    double sample_temperature; /* the samples' own temperature; 0.7 */
    double min_agreement;  /* share of samples that must agree; 0.5 */
    double min_entropy_score; /* uncertain below this 1 - H/log n; 0 off */
    char *judge;           /* a function comparing answers, or NULL for
                              normalised match of the extracted answers */
    char *self_check;      /* the P(True) judge function, or NULL */
    double min_self_check; /* uncertain below this P(True); 0.5 */
    int verbalized;        /* ask for a CONFIDENCE line; default 0 */
    double min_verbal;     /* uncertain below this stated confidence; 0.5 */
    /* a calibrated threshold ("calibrated" in config.json) */
    unc_signal cal_signal;
    double cal_threshold, cal_alpha;
    /* escalation cascade: model specs, cheapest first (n 0: none) */
    char **models;
    size_t n_models;
    /* self-review */
    char *review;          /* the review function, or NULL */
    int review_rounds;     /* revisions before raising; default 2 */
    /* content filters */
    pol_filter *in_filters;
    size_t n_in;
    pol_filter *out_filters;
    size_t n_out;
    /* PII redaction: -1 auto (on for non-loopback endpoints), 0, 1 */
    int redact;
    struct rd_rules *redact_rules; /* extra rules, or NULL */
    /* the response cache: -1 auto (deterministic calls: temperature 0),
     * 0 off, 1 on */
    int cache;
    /* the required shape of the answer ("output"), or NULL */
    struct sk_shape *shape;
    /* a reply cut by the token limit: 0 raise `truncated` (default), N ask
     * the model to continue up to N times, -1 accept it ("truncated") */
    int continuations;
    /* falling back on errors ("fallbacks"): after an error that remains
     * after retries (a server error, the network, a timeout), the call
     * moves on to the next model of the chain, the cascade's next step and
     * then these specs.  fallback 0 (default): off; 1: on (a list, or
     * true for the cascade alone) */
    int fallback;
    char **fallbacks;
    size_t n_fallbacks;
} sk_policy;

/* Parses the policy keys of a config.json document or a per-call
 * override object.  base (may be NULL for the defaults) is copied first,
 * then what json sets replaces it.  Unknown keys are ignored.  Errors are
 * SK_CONFIG with *errmsg "origin: message" (caller frees). */
SK_HIDDEN sk_status pol_parse(const char *json, size_t len, const char *origin,
                              const sk_policy *base, sk_policy **out,
                              char **errmsg);
SK_HIDDEN void pol_free(sk_policy *p);

/* A detector's finding. */
typedef struct unc_verdict {
    int uncertain;
    char *reason;      /* e.g. "hedging: \"I'm not sure\"" (caller frees) */
    char *question;    /* the clarifying question, or NULL */
    double confidence; /* in [0,1], or -1 when unknown */
} unc_verdict;
SK_HIDDEN void unc_verdict_clear(unc_verdict *v);

/* The instruction appended to a prompt when p->protocol is on.  Static. */
SK_HIDDEN const char *unc_protocol_instruction(void);
/* The explicit marker, a reply that asks back (input: the prompt the
 * model read, may be NULL) and the opt-in hedging phrases. */
SK_HIDDEN sk_status unc_check_text(const sk_policy *p, const char *reply,
                                   const char *input, unc_verdict *v);
/* One token of a reply and its log probability. */
typedef struct sk_logprob {
    char *token;
    double logprob;
} sk_logprob;

/* Confidence from per-token logprobs: for a label (label != 0) the
 * probability of the label as a whole, the product over its tokens;
 * otherwise the mean token probability, and the minimum. */
SK_HIDDEN sk_status unc_check_logprobs(const sk_policy *p,
                                       const sk_logprob *lp, size_t n,
                                       int label, unc_verdict *v);
/* The probability unc_check_logprobs judges (-1 without logprobs). */
SK_HIDDEN double unc_logprob_score(const sk_logprob *lp, size_t n, int label);

/* A reply that asks the user back instead of doing the task.  input (the
 * prompt the model read, may be NULL) excuses a question it already held;
 * quoted text and offers after a done task do not count.  1 with the
 * asking sentence's bounds in reply, 0 if not, -1 when memory ran out. */
SK_HIDDEN int unc_asks_back(const char *reply, const char *input, size_t *qb,
                            size_t *qe);

/* The instruction appended when p->verbalized is on.  Static. */
SK_HIDDEN const char *unc_verbal_instruction(void);
/* Finds the CONFIDENCE line: its value in [0,1] goes to *conf, and the
 * reply without the line to *rest (caller frees).  0 when there is none
 * (*rest NULL), -1 when memory ran out. */
SK_HIDDEN int unc_verbal_parse(const char *reply, double *conf, char **rest);

/* The final answer of a reply, for comparing samples: the last "Answer:"
 * or "Final answer:" line, else a \boxed{...}, else the whole reply.
 * Bounds into reply. */
SK_HIDDEN void unc_extract_answer(const char *reply, size_t *b, size_t *e);
/* Clusters n answers (the extracted answers, normalised) and returns the
 * share of the largest cluster; *entropy_score (may be NULL) gets
 * 1 - H/log n, where H is the entropy over the clusters (1 when all
 * agree, 0 when all differ). */
SK_HIDDEN double unc_clusters(char *const *answers, size_t n, size_t *majority,
                              double *entropy_score);
/* P(True) from a self-check judge's reply: the verdict word, weighted by
 * its token's probability when lp has it.  -1 when the reply has no
 * verdict. */
SK_HIDDEN double unc_self_check_score(const char *reply, const sk_logprob *lp,
                                      size_t n);

/* ---- calibration ------------------------------------------------------
 * The threshold on a signal's score under which skein raises, fitted on
 * labelled (score, correct) pairs so that, with probability 1 - delta over
 * the calibration set, an answer skein does not raise on is wrong with
 * probability at most alpha (Learn then Test: fixed-sequence binomial
 * tests from the strictest threshold down).  0 with *threshold; -1 when
 * no threshold is certified (too few examples, or too many errors even
 * among the most confident: *why says which, static). */
SK_HIDDEN int cal_fit(const double *score, const int *correct, size_t n,
                      double alpha, double delta, double *threshold,
                      const char **why);
/* The least n for which a threshold could be certified at all. */
SK_HIDDEN size_t cal_min_n(double alpha, double delta);
/* Agreement of n answers by normalised exact match (case, whitespace and
 * trailing punctuation folded): the share of answers equal to the most
 * common one, whose index goes to *majority. */
SK_HIDDEN double unc_agreement(char *const *answers, size_t n,
                               size_t *majority);

/* The detail object of an uncertainty error.  Caller frees. */
SK_HIDDEN char *unc_detail_json(const char *reason, const char *question,
                                double confidence, char *const *candidates,
                                size_t n, const char *output);

/* A review function's reply: 1 for PASS; 0 for FAIL with *critique set
 * (caller frees); a reply that is neither is a FAIL whose critique says
 * so. */
SK_HIDDEN int rev_parse(const char *reply, char **critique);
/* A model-based filter's reply: 1 for ALLOW; 0 for BLOCK with *reason. */
SK_HIDDEN int flt_parse(const char *reply, char **reason);
/* A deterministic filter rule: 1 if it matches text (the match goes to
 * *matched when non-NULL, caller frees), 0 if not, -1 on a match error
 * (a runaway pattern), -2 when memory ran out. */
SK_HIDDEN int pol_filter_match(const pol_filter *f, const char *text,
                               char **matched);

#endif /* SKEIN_POLICY_H */
