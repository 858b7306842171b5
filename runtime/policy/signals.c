/*
 * signals.c -- the uncertainty signals that read a reply, and the
 * calibration of their thresholds.  Pure functions: the pipeline's
 * uncertainty stage (core/pipeline.c) computes them and decides.
 *
 *   asks back     the reply asks the user instead of doing the task (the
 *                 default signal: no extra call)
 *   logprob       the chosen label's probability, or the mean token
 *                 probability (no extra call; needs a server that gives
 *                 logprobs)
 *   agreement,    n samples at a sampling temperature of their own, the
 *   entropy       final answers extracted and clustered (n calls)
 *   self_check    P(True) of a fresh-context judge (one more call)
 *   verbalized    the model's own CONFIDENCE line (no extra call)
 *
 * The asks-back detector reads English.  It looks for sentences that ask
 * the user to clarify, choose or supply something; it ignores them inside
 * quotation marks (dialogue in a story, a quoted question), when the
 * prompt already held them (a summary of a chat, a translation), and when
 * the reply did the task around them (an offer after an answer).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pcre2.h>

#include "policy.h"

/* ---- signal names ------------------------------------------------------ */

static const char *const signal_names[SIG_COUNT] = {
    NULL, "logprob", "agreement", "entropy", "self_check", "verbalized",
};

const char *unc_signal_name(unc_signal s)
{
    return s > SIG_NONE && s < SIG_COUNT ? signal_names[s] : NULL;
}

unc_signal unc_signal_from_name(const char *name)
{
    for (int i = 1; name && i < SIG_COUNT; i++)
        if (strcmp(name, signal_names[i]) == 0)
            return (unc_signal)i;
    return SIG_NONE;
}

/* ---- asks back --------------------------------------------------------- */

/* Asking for what the task needs: an ask wherever it stands. */
static const char strong_re[] =
    "\\b(?:could|can|would|will)\\s+you\\s+(?:please\\s+)?(?:clarify|specify|"
    "elaborate|confirm|rephrase|be\\s+more\\s+specific|tell\\s+me\\s+(?:more|"
    "which|what|whether|if|how|who|where|when)|let\\s+me\\s+know\\s+(?:which|"
    "what|whether|if|how|who|where|when)|provide|share|give\\s+(?:me\\s+)?"
    "(?:more|some|the|a\\s+bit)|explain\\s+what\\s+you|say\\s+(?:more|which|"
    "what))"
    "|\\b(?:please|kindly)\\s+(?:clarify|specify|confirm|provide|share|"
    "tell\\s+me|let\\s+me\\s+know)\\s+(?!if\\s+you\\s+(?:want|need|would|"
    "like|have))"
    "|\\b(?:what|which)\\s+(?:exactly\\s+)?(?:do|did)\\s+you\\s+mean"
    "|\\b(?:do|did)\\s+you\\s+mean\\b"
    "|\\b(?:which|what)\\s+(?:[\\w'\\x{2019}-]+\\s+){0,4}(?:do|did|would|"
    "should|will)\\s+you\\s+(?:want|prefer|like|have\\s+in\\s+mind|intend|"
    "need|mean|be\\s+(?:using|targeting))"
    "|\\b(?:which|what)\\s+(?:[\\w'\\x{2019}-]+\\s+){0,4}(?:should|shall)\\s+I"
    "\\s+(?:use|translate|target|write|pick|choose|assume|focus|cover)"
    "|\\bI(?:\\s+would|\\s+will|(?:'|\\x{2019})d|(?:'|\\x{2019})ll)?\\s+(?:also\\s+)?"
    "need\\s+(?:a\\s+bit\\s+|a\\s+little\\s+|some\\s+|a\\s+few\\s+|a\\s+couple\\s+"
    "(?:of\\s+)?|the\\s+following\\s+)?(?:more\\s+|additional\\s+|further\\s+)?"
    "(?:information|context|details?|specifics|answers)\\b"
    "|\\bI(?:\\s+would|\\s+will|(?:'|\\x{2019})d|(?:'|\\x{2019})ll)?\\s+(?:also\\s+)?"
    "need\\s+to\\s+know\\b"
    "|^\\W*(?:please\\s+)?let\\s+me\\s+know\\s+(?:which|what|whether|how|who|"
    "where|when)\\b"
    "|\\b(?:more|additional|further)\\s+(?:information|context|details)\\s+"
    "(?:is|are)\\s+(?:needed|required)"
    "|\\bI(?:(?:'|\\x{2019})?m|\\s+am)\\s+not\\s+(?:sure|clear|certain)\\s+(?:what|"
    "which)\\s+(?:[\\w'\\x{2019}-]+\\s+){0,3}(?:you|language|file|one|kind|type|"
    "format)\\b"
    "|\\btell\\s+me\\s+(?:whether|which|what|if|how|who|where|when|a\\s+(?:little|"
    "bit)|more|about)\\b"
    "|\\bit(?:'|\\x{2019})?s\\s+(?:not\\s+clear|unclear)\\s+(?:what|which)\\s+"
    "you";

/* Something the task needs is missing: an ask whatever the task. */
static const char missing_re[] =
    "\\b(?:please|kindly)\\s+(?:paste|provide|share|send|upload|include|"
    "give|attach|supply)\\s+(?:me\\s+|in\\s+|over\\s+)?(?:the|your|a|an|some|it)\\b"
    "|\\b(?:could|can|would)\\s+you\\s+(?:please\\s+)?(?:paste|upload|attach|"
    "include)\\b"
    "|\\b(?:could|can|would)\\s+you\\s+(?:please\\s+)?(?:provide|share|give\\s+me)"
    "\\s+(?:a\\s+(?:bit|little)\\s+|a\\s+few\\s+)?(?:more|some|additional)\\s+"
    "(?:details|information|context)\\b"
    "|\\b(?:it|this|that|(?:the|your)\\s+(?:[\\w-]+\\s+)?(?:message|text|input|file|"
    "document|attachment|prompt|e-?mail|list|table|request|question|code|data|"
    "section|field|context|body))\\s+(?:is|"
    "seems|looks|appears)\\s+(?:to\\s+be\\s+)?(?:missing|empty|blank)\\b"
    "|\\bnothing\\s+(?:seems|appears)\\s+to\\s+(?:be|have\\s+been)\\s+(?:attached|"
    "included|pasted|provided|shared|listed)\\b"
    "|\\b(?:didn(?:'|\\x{2019})?t|did\\s+not|wasn(?:'|\\x{2019})?t|weren(?:'|\\x{2019})?t|"
    "was\\s+not|were\\s+not)\\s+(?:get\\s+)?(?:included|attached|pasted|provided|"
    "shared|come\\s+through)\\b"
    "|^\\W*(?:please\\s+)?(?:paste|send|share|upload)\\s+(?:it|them|(?:the|your|"
    "me)\\s+[\\w'\\x{2019}-]+)(?:\\s+[\\w'\\x{2019}-]+){0,6}?\\s+(?:in|here|below|"
    "with\\s+me|over)\\b"
    "|\\b(?:as\\s+far\\s+as\\s+I\\s+can\\s+go|can(?:'|\\x{2019})?t\\s+(?:go\\s+(?:any\\s+)?"
    "further|continue|finish|complete\\s+(?:it|this)))\\s+without\\b"

    "|\\bto\\s+(?:make|write|draft|tailor|personali[sz]e|fill|build|calculate|"
    "give|do|plan|estimate|answer)\\b[^.?!\\n]{0,60}\\bI(?:\\s+will|\\s+would|"
    "(?:'|\\x{2019})ll|(?:'|\\x{2019})d)?\\s+(?:also\\s+|first\\s+)?need\\b"
    "|\\bI\\s+(?:don(?:'|\\x{2019})?t|do\\s+not|can(?:'|\\x{2019})?t|cannot)\\s+"
    "(?:see|find)\\s+(?:a|an|the|any)\\b"
    "|\\bI\\s+(?:don(?:'|\\x{2019})?t|do\\s+not)\\s+know\\s+(?:which|what|who|"
    "where|when|how)\\b"
    "|\\bnothing\\s+(?:was|is|has\\s+been)\\s+(?:included|attached|provided|"
    "given|pasted|shared|listed)\\b"
    "|\\b(?:a\\s+(?:couple|few)\\s+(?:of\\s+)?(?:quick\\s+)?questions|quick\\s+"
    "questions?)\\b"
    "|\\bit\\s+would\\s+help\\s+(?:me\\s+)?to\\s+know\\b"
    "|\\bI\\s+(?:need|would\\s+need|(?:'|\\x{2019})d\\s+need)\\s+(?:more|some|"
    "additional)\\s+(?:context|information|details)\\s+(?:to|before)\\s+(?:I\\s+can\\s+)?"
    "(?:answer|help|write|do|draft|complete|give|start)\\b"
    "|\\b(?:please|kindly)\\s+(?:type|write|spell|list|describe)(?:\\s+out)?\\s+"
    "(?:the|your|a|an|it|what)\\b"
    "|\\bI\\s+(?:can(?:'|\\x{2019})?t|cannot|am\\s+unable\\s+to|(?:'|\\x{2019})m\\s+"
    "unable\\s+to)\\s+(?:view|see|open|read)\\s+(?:images|attachments|files|links|"
    "the\\s+(?:image|attachment|file|link|screenshot))\\b"
    "|\\bI\\s+(?:don(?:'|\\x{2019})?t|do\\s+not)\\s+have\\s+(?:any\\s+)?(?:earlier|"
    "prior|previous)\\s+context\\b";

/* A question about the task itself (what the user wants of it): an ask
 * even in a composed text, where requests to a third party are content. */
static const char meta_re[] =
    "\\byou(?:(?:'|\\x{2019})d|\\s+would)?\\s+(?:like|want|prefer|mean|have\\s+"
    "in\\s+mind|intend)\\b(?!\\s+me\\s+to\\b)"
    "|\\b(?:should|shall)\\s+I\\b"
    "|\\b(?:which|what)\\s+(?:[\\w'\\x{2019}-]+\\s+){0,4}should\\b"
    "|\\b\\w+\\s+(?:of|about|for|on)\\s+what\\s*\\?"
    "|\\bwhat,?\\s+exactly\\s*\\?"
    "|\\bwho\\s+is\\s+(?:it|the\\s+\\w+|this)\\s+for\\b"
    "|\\bin\\s+what\\s+(?:sense|way)\\b"
    "|\\bwhat\\s+(?:[\\w'\\x{2019}-]+\\s+){0,3}is\\s+(?:this|it)\\s+for\\b"
    "|\\b(?:which|what)\\s+(?:[\\w'\\x{2019}-]+\\s+){0,4}(?:are|were)\\s+you\\s+"
    "\\w+ing\\b";

/* The model saying what it needs from the user: an ask in a statement,
 * though not in a question ("Do I need a visa?" is someone's question). */
static const char need_re[] =
    "\\bI(?:\\s+will|\\s+would|(?:'|\\x{2019})ll|(?:'|\\x{2019})d)?\\s+(?:also\\s+|first\\s+)?"
    "need\\s*(?::|(?:the|your|a|an|some|a\\s+few|a\\s+couple|more|to\\s+know|to\\s+"
    "see|to\\s+have)\\b)";

/* A lead-in that puts the task on hold for a question: in a question, an
 * ask wherever it stands. */
static const char lead_re[] =
    "\\b(?:quick\\s+check|one\\s+thing\\s+first|but\\s+first|first,?\\s+(?:a|one)\\s+"
    "(?:quick\\s+)?question|before\\s+I\\s+(?:start|begin|draft|write|answer|"
    "proceed|go\\s+ahead|can|dive\\s+in|get\\s+started|do\\s+that|put|translate|"
    "rewrite|summari[sz]e|edit|convert))\\b"
    "|\\b(?:tell|give|send|share)\\s+me\\b[^.?!\\n]{0,80}\\bfirst\\b";

/* Follow-ups that hand the next step to the user: part of an ask, never
 * one alone. */
static const char handoff_re[] =
    "\\b(?:if|once|when)\\s+you\\s+(?:can\\s+)?(?:paste|share|send|provide|upload|"
    "give\\s+me|tell\\s+me|attach|let\\s+me\\s+know)\\b";

/* A reply that opens by asking the user about their own request; a
 * rhetorical opener does not count. */
static const char rhetorical_re[] =
    "^\\W*(?:have\\s+you\\s+ever|did\\s+you\\s+know|ever\\s+wonder|what\\s+if|"
    "why\\s+not|who\\s+doesn(?:'|\\x{2019})?t|isn(?:'|\\x{2019})?t\\s+it|"
    "wouldn(?:'|\\x{2019})?t\\s+it)\\b";

/* The task asks for a composed text (its questions speak to someone
 * else), or to transform a text that holds questions. */
static const char compose_re[] =
    "\\b(?:(?:good|some|a\\s+few|\\d+|ten|five|three)\\s+(?:[\\w'-]+\\s+){0,2}"
    "questions?\\b)"
    "|\\b(?:write|draft|compose|create|generate|make\\s+up|come\\s+up\\s+with|"
    "brainstorm|suggest|list|propose|outline|make|tell|give\\s+me)\\s+(?:me\\s+)?(?:[\\w'-]+\\s+){0,4}(?:e-?mail|message|"
    "note|letter|reply|response|text|post|tweet|copy|questions?|riddle|joke|"
    "story|poem|dialogue|script|quiz|faq|prompt|announcement|invitation|"
    "survey|interview|error|greeting|sms|haiku|limerick|verse|song|lyrics|"
    "sonnet|rhyme|slogan|tagline|headline|talk|speech|presentation|pitch|"
    "lesson|article|essay|blog|newsletter|ad|advert)"
    "|\\b(?:ask(?:ing)?|quiz(?:zing)?|interview(?:ing)?)\\s+me\\b";
static const char transform_re[] =
    "\\b(?:translate|paraphrase|rephrase|reword|rewrite|make\\s+(?:this|it)"
    "|correct\\s+(?:this|the|it|my)|proofread|fix\\s+the\\s+grammar|traduire|"
    "traduce)\\b";

/* A question about the user's preference: an ask only when the reply is
 * little else (otherwise an offer after a done task). */
static const char weak_re[] =
    "\\b(?:do|would)\\s+you\\s+(?:want|like|prefer)\\b"
    "|\\b(?:shall|should)\\s+I\\b"
    "|\\b(?:is\\s+(?:this|it)|are\\s+you)\\s+(?:for|about|asking|referring|"
    "looking|talking)\\b"
    "|\\bwhat\\s+(?:kind|type|sort)\\s+of\\b"
    "|\\bwho\\s+is\\s+(?:the|this|it)\\s+(?:for|audience)\\b"
    "|\\byou\\b[^?]*\\bor\\b"
    "|\\byour?\\b"
    "|^\\W*(?:which|what|who|where|when|how\\s+(?:many|much|long))\\b";

#define ASK_OPTS (PCRE2_CASELESS | PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF)
#define ASK_MAX_REST_STRONG 60 /* words besides the asking that still */
#define ASK_MAX_REST_WEAK 12   /* leave the task undone */
#define ASK_MAX_BYTES 65536    /* longer replies are read up to here */
#define ASK_OPENING_WORDS 8    /* a greeting before the reply's first question */
#define ASK_MAX_REST_COMPOSED 30 /* ... when the task was to compose a text */
#define ASK_CODE_LINE_WORDS 4  /* a line of code in a fence weighs this much */

enum { RE_STRONG, RE_WEAK, RE_MISSING, RE_META, RE_COMPOSE, RE_TRANSFORM,
       RE_LEAD, RE_HANDOFF, RE_RHETORICAL, RE_NEED, RE_COUNT };

static const char *ask_pattern(int i)
{
    static const char *const pats[RE_COUNT] = {
        strong_re, weak_re, missing_re, meta_re, compose_re, transform_re,
        lead_re, handoff_re, rhetorical_re, need_re,
    };
    return pats[i];
}

static pcre2_code *compile(const char *pat)
{
    int code;
    PCRE2_SIZE off;
    return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, ASK_OPTS, &code,
                         &off, NULL);
}

/* The detector's patterns, compiled once per process and shared by all
 * threads (a compiled pattern is read-only; match data is per call).
 * Freed when the library is unloaded (the Lua module is dlclose'd by
 * lua_close) or the process ends. */
static pcre2_code *ask_re[RE_COUNT];
static int ask_re_ok;
static pthread_once_t ask_re_once = PTHREAD_ONCE_INIT;

static void ask_re_compile(void)
{
    ask_re_ok = 1;
    for (int i = 0; i < RE_COUNT; i++)
        if (!(ask_re[i] = compile(ask_pattern(i))))
            ask_re_ok = 0;
        else
            (void)pcre2_jit_compile(ask_re[i], PCRE2_JIT_COMPLETE); /* else interpreted */
}

__attribute__((destructor)) static void ask_re_free(void)
{
    for (int i = 0; i < RE_COUNT; i++) {
        pcre2_code_free(ask_re[i]);
        ask_re[i] = NULL;
    }
}

static int matches(const pcre2_code *re, pcre2_match_data *md, const char *s,
                   size_t len)
{
    return pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) >= 0;
}

/* UTF-8 quotation marks: U+201C U+201D (double), U+2018 U+2019 (single). */
static int open_quote(const char *s, size_t i, size_t len, int *kind, size_t *w)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '"') {
        *kind = '"';
        *w = 1;
        return 1;
    }
    if (c == '\'' && (i == 0 || isspace((unsigned char)s[i - 1]) ||
                      s[i - 1] == '(') &&
        i + 1 < len && isalpha((unsigned char)s[i + 1])) {
        *kind = '\'';
        *w = 1;
        return 1;
    }
    if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
        ((unsigned char)s[i + 2] == 0x9C || (unsigned char)s[i + 2] == 0x98)) {
        *kind = (unsigned char)s[i + 2] == 0x9C ? 'D' : 'S';
        *w = 3;
        return 1;
    }
    return 0;
}

static int close_quote(const char *s, size_t i, size_t len, int kind, size_t *w)
{
    unsigned char c = (unsigned char)s[i];
    if (kind == '"' && c == '"') {
        *w = 1;
        return 1;
    }
    if (kind == '\'' && c == '\'' &&
        (i + 1 >= len || !isalpha((unsigned char)s[i + 1]))) {
        *w = 1;
        return 1;
    }
    if ((kind == 'D' || kind == 'S') && c == 0xE2 && i + 2 < len &&
        (unsigned char)s[i + 1] == 0x80 &&
        (unsigned char)s[i + 2] == (kind == 'D' ? 0x9D : 0x99)) {
        *w = 3;
        return 1;
    }
    return 0;
}

/* Blanks quoted spans (a closing mark within the paragraph), lines quoted
 * with '>' and code, so that what a character says or the reply cites is
 * not read as the reply asking.  A quote around the whole reply is kept:
 * models quote their answers. */
static void mask_quotes(char *m, size_t len)
{
    size_t i = 0;
    int line_start = 1, fence = 0;
    while (i < len) {
        if (line_start) {
            size_t j = i;
            while (j < len && (m[j] == ' ' || m[j] == '\t'))
                j++;
            if (len - j >= 3 && strncmp(m + j, "```", 3) == 0) {
                fence = !fence;
                m[j] = m[j + 1] = m[j + 2] = ' ';
            }
            if (fence || (j < len && m[j] == '>')) {
                while (i < len && m[i] != '\n')
                    m[i++] = ' ';
                i++; /* past the line end: the next line starts */
                continue;
            }
        }
        line_start = m[i] == '\n';
        int kind;
        size_t w;
        if (!open_quote(m, i, len, &kind, &w)) {
            i++;
            continue;
        }
        size_t j = i + w, cw = 0;
        int found = 0;
        while (j < len && !(m[j] == '\n' && j + 1 < len && m[j + 1] == '\n')) {
            if (close_quote(m, j, len, kind, &cw)) {
                found = 1;
                break;
            }
            j++;
        }
        if (!found) {
            i += w;
            continue;
        }
        size_t b = i, e = j + cw;
        /* the whole reply in quotes: the reply itself */
        size_t lb = 0, le = len;
        while (lb < len && isspace((unsigned char)m[lb]))
            lb++;
        while (le > lb && isspace((unsigned char)m[le - 1]))
            le--;
        if (!(b == lb && e >= le - 1))
            memset(m + b, ' ', e - b);
        i = e;
    }
}

static size_t count_words(const char *s, size_t b, size_t e)
{
    size_t n = 0;
    int in = 0;
    for (size_t i = b; i < e; i++) {
        unsigned char c = (unsigned char)s[i];
        int w = isalnum(c) || c >= 0x80;
        if (w && !in)
            n++;
        in = w;
    }
    return n;
}

/* s[b..e) lowercased with whitespace runs as one space, into out. */
static size_t fold(const char *s, size_t b, size_t e, char *out)
{
    size_t n = 0;
    int sp = 0;
    for (size_t i = b; i < e; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            sp = n > 0;
            continue;
        }
        if (sp)
            out[n++] = ' ';
        sp = 0;
        out[n++] = (char)tolower(c);
    }
    out[n] = '\0';
    return n;
}

/* Whether the sentence starting at s[b] sits on a list item's line: a
 * bullet or a number before it on its line. */
static int list_item(const char *s, size_t b)
{
    size_t ls = b;
    while (ls > 0 && s[ls - 1] != '\n')
        ls--;
    size_t j = ls;
    while (s[j] == ' ' || s[j] == '\t')
        j++;
    size_t mk = j; /* past the marker */
    if (s[j] == '-' || s[j] == '*' || s[j] == '+')
        mk = j + 1;
    else if (strncmp(s + j, "\xE2\x80\xA2", 3) == 0)
        mk = j + 3; /* U+2022 bullet */
    else {
        size_t d = j;
        while (isdigit((unsigned char)s[d]))
            d++;
        if (d > j && (s[d] == '.' || s[d] == ')'))
            mk = d + 1;
    }
    if (mk == j)
        return 0;
    while (s[mk] == ' ' || s[mk] == '\t')
        mk++;
    /* the sentence is the item's first, marker included or not */
    return b >= j && b <= mk;
}

/* The non-blank lines inside ``` fences. */
static size_t code_lines(const char *s, size_t len)
{
    size_t n = 0;
    int fence = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && s[e] != '\n')
            e++;
        size_t j = i;
        while (j < e && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (e - j >= 3 && strncmp(s + j, "```", 3) == 0)
            fence = !fence;
        else if (fence && j < e)
            n++;
        i = e + 1;
    }
    return n;
}

/* Whether the '.' at s[i] ends an abbreviation ("e.g.", "etc.", "Dr.")
 * or an initial rather than a sentence; from is the sentence's start. */
static int abbreviation(const char *s, size_t from, size_t i)
{
    static const char *const abbr[] = {"e.g", "i.e", "etc", "vs", "cf", "mr",
                                       "mrs", "ms", "dr", "approx", "incl",
                                       "fig"};
    size_t w = i;
    while (w > from && !isspace((unsigned char)s[w - 1]) && s[w - 1] != '(')
        w--;
    size_t wl = i - w;
    if (wl == 1 && isupper((unsigned char)s[w]))
        return 1; /* an initial: "J. Smith" */
    size_t d = w;
    while (d < i && isdigit((unsigned char)s[d]))
        d++;
    if (d == i && wl > 0 && wl <= 3) {
        size_t ls = w;
        while (ls > from && (s[ls - 1] == ' ' || s[ls - 1] == '\t'))
            ls--;
        if (ls == 0 || s[ls - 1] == '\n')
            return 1; /* a list's number: "2. What ..." */
    }
    for (size_t k = 0; k < sizeof abbr / sizeof abbr[0]; k++)
        if (wl == strlen(abbr[k]) && strncasecmp(s + w, abbr[k], wl) == 0)
            return 1;
    return 0;
}

typedef struct sent {
    size_t b, e;   /* in the reply, without leading space */
    int question;  /* ends in '?' */
    int ask;       /* 0, 1 weak, 2 strong */
} sent;

#define ASK_MAX_SENTS 512

int unc_asks_back(const char *reply, const char *input, size_t *qb, size_t *qe)
{
    if (!reply)
        return 0;
    size_t len = strlen(reply);
    if (len > ASK_MAX_BYTES)
        len = ASK_MAX_BYTES;
    if (!memchr(reply, '?', len) && count_words(reply, 0, len) > 80)
        return 0; /* a long reply with no question did the task */
    int rc = -1;
    char *m = sk_malloc(len + 1);
    char *sq = sk_malloc(len + 1);
    char *fin = NULL;
    sent *ss = sk_calloc(ASK_MAX_SENTS, sizeof *ss);
    pthread_once(&ask_re_once, ask_re_compile);
    const pcre2_code *strong = ask_re[RE_STRONG], *weak = ask_re[RE_WEAK];
    const pcre2_code *missing = ask_re[RE_MISSING], *meta = ask_re[RE_META];
    const pcre2_code *compose = ask_re[RE_COMPOSE];
    const pcre2_code *transform = ask_re[RE_TRANSFORM];
    const pcre2_code *lead = ask_re[RE_LEAD], *handoff = ask_re[RE_HANDOFF];
    const pcre2_code *rhetorical = ask_re[RE_RHETORICAL];
    const pcre2_code *need = ask_re[RE_NEED];
    pcre2_match_data *md = ask_re_ok ? pcre2_match_data_create(4, NULL) : NULL;
    if (!m || !sq || !ss || !md)
        goto done;
    /* what the task asks for decides which questions are the reply's own */
    enum { ANSWER, COMPOSED, TRANSFORMED } task = ANSWER;
    if (input) {
        size_t il = strlen(input);
        if (il > ASK_MAX_BYTES)
            il = ASK_MAX_BYTES;
        int has_q = memchr(input, '?', il) || strstr(input, "\xEF\xBC\x9F") ||
                    strstr(input, "\xC2\xBF");
        if (has_q && matches(transform, md, input, il))
            task = TRANSFORMED;
        else if (matches(compose, md, input, il))
            task = COMPOSED;
    }
    memcpy(m, reply, len);
    m[len] = '\0';
    mask_quotes(m, len);
    if (input) {
        size_t il = strlen(input);
        if (!(fin = sk_malloc(il + 1)))
            goto done;
        fold(input, 0, il, fin);
    }
    /* sentences: end at '?', '!' or '.' before a space, and at line ends */
    size_t n = 0, b = 0;
    for (size_t i = 0; i <= len && n < ASK_MAX_SENTS; i++) {
        int end = i == len || m[i] == '\n' || m[i] == '?' ||
                  ((m[i] == '.' || m[i] == '!') &&
                   (i + 1 == len || isspace((unsigned char)m[i + 1])) &&
                   !(m[i] == '.' && abbreviation(m, b, i)));
        if (!end)
            continue;
        size_t e = i < len && m[i] != '\n' ? i + 1 : i;
        while (b < e && isspace((unsigned char)m[b]))
            b++;
        if (e > b) {
            ss[n].b = b;
            ss[n].e = e;
            ss[n].question = m[e - 1] == '?';
            n++;
        }
        b = i + 1;
    }
    /* code the reply wrote is work done: each line weighs as words */
    size_t words_total = count_words(reply, 0, len) + ASK_CODE_LINE_WORDS * code_lines(reply, len);
    size_t ask_words = 0;
    int strongest = 0;
    size_t at = 0;
    size_t words_before = 0, words_left = 0;
    for (size_t i = 0; i < n; i++)
        words_left += count_words(reply, ss[i].b, ss[i].e);
    for (size_t i = 0; i < n; i++) {
        /* once even every sentence left could not make the reply an ask,
         * it is not one: a long answer costs a few sentences' matching */
        if (ask_words + words_left + ASK_MAX_REST_STRONG < words_total)
            break;
        words_left -= count_words(reply, ss[i].b, ss[i].e);
        const char *t = m + ss[i].b;
        size_t tl = ss[i].e - ss[i].b;
        size_t opening = words_before <= ASK_OPENING_WORDS;
        words_before += count_words(reply, ss[i].b, ss[i].e);
        int a = 0;
        if (matches(missing, md, t, tl) ||
            (!ss[i].question && task != TRANSFORMED && matches(need, md, t, tl)))
            a = 2;
        else if (task == TRANSFORMED)
            a = 0; /* the text's own questions, transformed */
        else if (ss[i].question && (matches(meta, md, t, tl) ||
                                    matches(lead, md, t, tl)))
            a = 2;
        else if (task == COMPOSED)
            a = 0; /* a composed text speaks to its reader */
        else if (matches(strong, md, t, tl))
            a = 2;
        else if (ss[i].question && matches(weak, md, t, tl))
            /* opening with a question about the user's request, or after
             * a lead-in that holds the task, is an ask; elsewhere it may
             * be an offer after a done task */
            a = (opening && !matches(rhetorical, md, t, tl)) ||
                        matches(lead, md, t, tl)
                    ? 2
                    : 1;
        else if (ss[i].question && matches(lead, md, t, tl))
            a = 2;
        else if (matches(handoff, md, t, tl))
            a = -1; /* counted with an ask, never one alone */
        if (!a)
            continue;
        /* the prompt held this question: it is data, not an ask */
        if (fin) {
            size_t fl = fold(reply, ss[i].b, ss[i].e, sq);
            if (fl >= 8 && strstr(fin, sq))
                continue;
        }
        ss[i].ask = a;
        ask_words += count_words(reply, ss[i].b, ss[i].e);
        if (a > 0 && a >= strongest) {
            strongest = a;
            at = i;
        }
    }
    /* the items of a list that an ask introduces ("I need:", "a few
     * questions:") are part of the ask */
    for (size_t i = 0; i + 1 < n; i++) {
        if (ss[i].ask <= 0 || m[ss[i].e - 1] != ':')
            continue;
        for (size_t j = i + 1; j < n && list_item(reply, ss[j].b); j++)
            if (!ss[j].ask) {
                ss[j].ask = -1;
                ask_words += count_words(reply, ss[j].b, ss[j].e);
            }
    }
    rc = 0;
    if (strongest) {
        size_t rest = words_total - ask_words;
        size_t limit = strongest == 2 ? ASK_MAX_REST_STRONG : ASK_MAX_REST_WEAK;
        if (task == COMPOSED && limit > ASK_MAX_REST_COMPOSED)
            limit = ASK_MAX_REST_COMPOSED; /* a composed text is long; an ask is not */
        if (rest <= limit) {
            rc = 1;
            /* the user is shown the asking questions, from the first to
             * the last question after it; else the strongest ask */
            size_t first = n, last = n;
            for (size_t i = 0; i < n; i++) {
                if (first == n && ss[i].ask > 0 && ss[i].question)
                    first = i;
                if (first < n && ss[i].question)
                    last = i;
            }
            if (first < n) {
                *qb = ss[first].b;
                *qe = ss[last].e;
            } else {
                *qb = ss[at].b;
                *qe = ss[at].e;
            }
        }
    }
done:
    pcre2_match_data_free(md);
    free(ss);
    free(fin);
    free(sq);
    free(m);
    return rc;
}

/* ---- logprobs ---------------------------------------------------------- */

static int blank_token(const char *t)
{
    for (; t && *t; t++)
        if (!isspace((unsigned char)*t))
            return 0;
    return 1;
}

static double prob(double lp)
{
    double p = exp(lp);
    if (!(p >= 0))
        return 0;
    return p > 1 ? 1 : p;
}

double unc_logprob_score(const sk_logprob *lp, size_t n, int label)
{
    if (!lp || n == 0)
        return -1;
    if (label) {
        /* the label as a whole: the product over its tokens; whitespace
         * around it is not part of the choice */
        double p = 1;
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            if (blank_token(lp[i].token))
                continue;
            p *= prob(lp[i].logprob);
            used++;
        }
        return used ? p : -1;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += prob(lp[i].logprob);
    return sum / (double)n;
}

/* ---- verbalised confidence --------------------------------------------- */

const char *unc_verbal_instruction(void)
{
    return "\n\nAfter your answer, add one last line `CONFIDENCE: N`, where N "
           "is from 0 to 100: how sure you are that the answer is right and "
           "is what was asked for.";
}

int unc_verbal_parse(const char *reply, double *conf, char **rest)
{
    *rest = NULL;
    if (!reply)
        return 0;
    /* the last line that starts with the word */
    const char *found = NULL, *line = reply;
    while (*line) {
        const char *c = line;
        while (*c == ' ' || *c == '\t' || *c == '*' || *c == '_' || *c == '`')
            c++;
        if (strncasecmp(c, "CONFIDENCE", 10) == 0)
            found = line;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    if (!found)
        return 0;
    const char *c = found;
    while (*c && *c != ':' && *c != '\n')
        c++;
    if (*c != ':')
        return 0;
    c++;
    while (*c == ' ' || *c == '*' || *c == '_' || *c == '`')
        c++;
    char *end;
    double v = strtod(c, &end);
    if (end == c || !(v >= 0))
        return 0;
    if (*end == '%' || v > 1)
        v /= 100;
    if (v > 1)
        v = 1;
    *conf = v;
    const char *after = strchr(found, '\n');
    size_t head = (size_t)(found - reply);
    while (head > 0 && isspace((unsigned char)reply[head - 1]))
        head--;
    char *r = sk_asprintf("%.*s%s", (int)head, reply,
                          after && after[1] ? after : "");
    if (!r)
        return -1;
    *rest = r;
    return 1;
}

/* ---- sampled agreement ------------------------------------------------- */

void unc_extract_answer(const char *reply, size_t *b, size_t *e)
{
    const char *s = reply ? reply : "";
    size_t len = strlen(s);
    *b = 0;
    *e = len;
    /* the last "Answer:" ("Final answer:", "**Answer:**"), to its line's
     * end */
    const char *hit = NULL;
    size_t hit_len = 0;
    for (size_t i = 0; i + 6 <= len; i++) {
        if (strncasecmp(s + i, "answer", 6) != 0 ||
            (i > 0 && isalnum((unsigned char)s[i - 1])))
            continue;
        const char *d = s + i + 6;
        while (*d == '*' || *d == '_')
            d++;
        if (*d != ':')
            continue;
        hit = d + 1;
        const char *nl = strchr(hit, '\n');
        hit_len = nl ? (size_t)(nl - hit) : strlen(hit);
    }
    if (hit) {
        size_t hb = (size_t)(hit - s), he = hb + hit_len;
        while (hb < he && (isspace((unsigned char)s[hb]) || s[hb] == '*'))
            hb++;
        while (he > hb && (isspace((unsigned char)s[he - 1]) || s[he - 1] == '*'))
            he--;
        if (he > hb) {
            *b = hb;
            *e = he;
            return;
        }
    }
    /* \boxed{...}, the last one */
    const char *bx = NULL;
    for (const char *p = strstr(s, "\\boxed{"); p; p = strstr(p + 1, "\\boxed{"))
        bx = p;
    if (bx) {
        size_t ob = (size_t)(bx - s) + 7, depth = 1, i = ob;
        for (; i < len && depth; i++) {
            if (s[i] == '{')
                depth++;
            else if (s[i] == '}')
                depth--;
        }
        if (!depth) {
            *b = ob;
            *e = i - 1;
        }
    }
}

double unc_clusters(char *const *answers, size_t n, size_t *majority,
                    double *entropy_score)
{
    if (entropy_score)
        *entropy_score = n ? 1 : 0;
    if (majority)
        *majority = 0;
    if (!answers || n == 0)
        return 0;
    /* the extracted answers, compared by unc_agreement's normalised match */
    char **ex = sk_calloc(n, sizeof *ex);
    char *const *use = answers;
    if (ex) {
        size_t i = 0;
        for (; i < n; i++) {
            size_t b, e;
            unc_extract_answer(answers[i], &b, &e);
            if (!(ex[i] = sk_strndup(answers[i] ? answers[i] + b : "", e - b)))
                break;
        }
        if (i == n)
            use = ex;
    }
    double share = unc_agreement(use, n, majority);
    if (entropy_score && n > 1) {
        /* entropy over the clusters: each answer's cluster is the first
         * member it matches */
        size_t *cl = sk_calloc(n, sizeof *cl);
        if (cl) {
            char *one[2];
            for (size_t i = 0; i < n; i++) {
                cl[i] = i;
                for (size_t j = 0; j < i; j++) {
                    one[0] = use[i];
                    one[1] = use[j];
                    if (unc_agreement(one, 2, NULL) == 1.0) {
                        cl[i] = cl[j];
                        break;
                    }
                }
            }
            double h = 0;
            for (size_t c = 0; c < n; c++) {
                size_t count = 0;
                for (size_t i = 0; i < n; i++)
                    count += cl[i] == c;
                if (count) {
                    double p = (double)count / (double)n;
                    h -= p * log(p);
                }
            }
            *entropy_score = 1 - h / log((double)n);
            if (*entropy_score < 0)
                *entropy_score = 0;
            free(cl);
        }
    }
    for (size_t i = 0; ex && i < n; i++)
        free(ex[i]);
    free(ex);
    return share;
}

/* ---- self-check -------------------------------------------------------- */

double unc_self_check_score(const char *reply, const sk_logprob *lp, size_t n)
{
    if (!reply)
        return -1;
    const char *s = reply;
    while (*s && (isspace((unsigned char)*s) || *s == '*' || *s == '`' ||
                  *s == '#' || *s == '>' || *s == '"'))
        s++;
    int yes;
    if (strncasecmp(s, "yes", 3) == 0 || strncasecmp(s, "true", 4) == 0 ||
        strncasecmp(s, "pass", 4) == 0)
        yes = 1;
    else if (strncasecmp(s, "no", 2) == 0 || strncasecmp(s, "false", 5) == 0 ||
             strncasecmp(s, "fail", 4) == 0)
        yes = 0;
    else
        return -1;
    /* the verdict token's probability (Kadavath et al.): the first token
     * that is not blank or markup */
    for (size_t i = 0; lp && i < n; i++) {
        const char *t = lp[i].token ? lp[i].token : "";
        while (*t && (isspace((unsigned char)*t) || *t == '*' || *t == '`' ||
                      *t == '"'))
            t++;
        if (!*t)
            continue;
        double p = prob(lp[i].logprob);
        return yes ? p : 1 - p;
    }
    return yes ? 1 : 0;
}

/* ---- calibration ------------------------------------------------------- */

/* P(X <= k) for X ~ Binomial(m, p), summed in logs. */
static double binom_cdf(size_t k, size_t m, double p)
{
    if (p <= 0)
        return 1;
    if (p >= 1)
        return k >= m ? 1 : 0;
    double sum = 0, lp = log(p), lq = log1p(-p);
    for (size_t i = 0; i <= k && i <= m; i++) {
        double lc = lgamma((double)m + 1) - lgamma((double)i + 1) -
                    lgamma((double)(m - i) + 1);
        sum += exp(lc + (double)i * lp + (double)(m - i) * lq);
    }
    return sum > 1 ? 1 : sum;
}

/* The thresholds a calibration may choose, fixed before any data is seen:
 * every 0.01, then finer near 1, where label probabilities sit.  They are
 * tested from the highest down (fixed-sequence testing, as in Learn then
 * Test, Angelopoulos et al. 2021): the order does not depend on the data,
 * so each test runs at the full level delta and the family of tests still
 * errs with probability at most delta. */
#define CAL_STEPS 99 /* 0.01 .. 0.99 */
static const double cal_fine[] = {0.995, 0.999};
#define CAL_GRID (CAL_STEPS + sizeof cal_fine / sizeof cal_fine[0])

/* The g-th threshold, from the highest (g = 0) down. */
static double cal_grid(size_t g)
{
    size_t nf = sizeof cal_fine / sizeof cal_fine[0];
    if (g < nf)
        return cal_fine[nf - 1 - g];
    return (double)(CAL_STEPS - (g - nf)) / 100.0;
}

size_t cal_min_n(double alpha, double delta)
{
    /* with no error among m accepted answers, the test rejects "risk >
     * alpha" once (1 - alpha)^m <= delta */
    if (!(alpha > 0 && alpha < 1 && delta > 0 && delta < 1))
        return (size_t)-1;
    return (size_t)ceil(log(delta) / log1p(-alpha));
}

int cal_fit(const double *score, const int *correct, size_t n, double alpha,
            double delta, double *threshold, const char **why)
{
    *why = NULL;
    size_t need = cal_min_n(alpha, delta);
    if (n < need) {
        *why = "too few examples";
        return -1;
    }
    /* At each threshold the null "an accepted answer is wrong with
     * probability above alpha" meets an exact binomial test at level
     * delta; going down while it is rejected, the last threshold rejected
     * accepts the most answers.  The sequence starts where a tenth of
     * the examples (and at least the minimum) pass: a start chosen from
     * the scores alone, never from which answers are right, so the
     * sequence stays fixed with respect to the outcomes it tests, and a
     * single early error among a handful of top scores cannot end it. */
    size_t start = n / 10 > need ? n / 10 : need;
    int certified = 0;
    for (size_t g = 0; g < CAL_GRID; g++) {
        double t = cal_grid(g);
        size_t accepted = 0, errors = 0;
        for (size_t i = 0; i < n; i++)
            if (score[i] >= t) {
                accepted++;
                errors += !correct[i];
            }
        if (accepted < start)
            continue; /* not yet where the sequence starts */
        if (binom_cdf(errors, accepted, alpha) > delta)
            break;
        certified = 1;
        *threshold = t;
    }
    if (!certified) {
        *why = "too many wrong answers even among the most confident";
        return -1;
    }
    return 0;
}
