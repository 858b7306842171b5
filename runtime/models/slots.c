/*
 * slots.c -- prefix-aware routing of requests to a llama.cpp server's
 * slots.
 *
 * llama-server keeps one KV cache per slot: the tokens of the last prompt
 * that slot evaluated.  A request whose prompt starts with those tokens
 * pays only for the rest.  Left to itself the server puts a request on
 * any idle slot whose cache is similar enough, else on the least recently
 * used one, and when every slot is busy the next one to come free takes
 * it, whatever it holds: under load, a long shared prefix (a system
 * prompt, few-shot examples, a schema) is evaluated again and again on
 * slots that held another one.
 *
 * The router does what SGLang's cache-aware router does for a fleet of
 * workers, for the slots of one server: it remembers, per slot, the head
 * of the last request body it sent there (the bytes the server's chat
 * template turns into the cached tokens), and sends a request to a slot
 * whose head shares at least half of the request's bytes (the longest
 * such match when several are equally loaded).  A request that matches
 * no slot goes to the least loaded one, the least recently used on a
 * tie, whose head it then replaces.  Load is counted as requests in
 * flight per slot, and bounded: a matching slot is passed over once it
 * has SLOT_BALANCE more in flight than the least loaded slot, so one hot
 * prefix spreads over more slots (each then learns it) instead of
 * queueing on one while others idle.
 *
 * Pure data structure: no I/O, no clock (recency is a counter).  One per
 * connector (http.c), so two connectors or two kernels never share one.
 */
#include <stdlib.h>
#include <string.h>

#include "models/models.h"

/* Bytes of a request body remembered per slot, and compared: far beyond
 * any prefix that matters for a decision, bounded so that the router's
 * memory is SLOT_HEAD_MAX times the slot count at most. */
#define SLOT_HEAD_MAX 65536
/* How many more requests in flight a matching slot may have than the
 * least loaded one before a request goes elsewhere. */
#define SLOT_BALANCE 2

typedef struct slot_state {
    char *head;          /* the last body routed here (its first bytes) */
    size_t head_len;
    int inflight;        /* requests routed here and not yet finished */
    unsigned long used;  /* when it was last chosen (router's counter) */
} slot_state;

struct slot_router {
    slot_state *slots;
    int n;
    unsigned long clock;
    unsigned gen;        /* bumped when the table is remade */
};

slot_router *slot_router_new(void)
{
    return sk_calloc(1, sizeof(slot_router));
}

static void clear_slots(slot_router *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->slots[i].head);
    free(r->slots);
    r->slots = NULL;
    r->n = 0;
}

void slot_router_free(slot_router *r)
{
    if (!r)
        return;
    clear_slots(r);
    free(r);
}

static size_t common_prefix(const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

int slot_pick(const slot_router *r, int n, const char *body, size_t len)
{
    if (!r || n <= 0)
        return -1;
    if (r->n != n)
        return 0; /* a table not yet made (or remade for a new count) */
    if (len > SLOT_HEAD_MAX)
        len = SLOT_HEAD_MAX;
    int min_load = r->slots[0].inflight;
    for (int i = 1; i < n; i++)
        if (r->slots[i].inflight < min_load)
            min_load = r->slots[i].inflight;
    /* the matching slot that is least loaded, the longest match on a tie */
    int best = -1;
    size_t best_lcp = 0;
    for (int i = 0; i < n; i++) {
        const slot_state *s = &r->slots[i];
        size_t lcp = common_prefix(s->head, s->head_len, body, len);
        if (len == 0 || lcp * 2 < len)
            continue;
        if (best < 0 || s->inflight < r->slots[best].inflight ||
            (s->inflight == r->slots[best].inflight && lcp > best_lcp)) {
            best = i;
            best_lcp = lcp;
        }
    }
    if (best >= 0 && r->slots[best].inflight - min_load < SLOT_BALANCE)
        return best;
    /* no match, or its slots are too busy: the least loaded slot, the
     * least recently used on a tie */
    int pick = 0;
    for (int i = 1; i < n; i++) {
        const slot_state *s = &r->slots[i], *p = &r->slots[pick];
        if (s->inflight < p->inflight ||
            (s->inflight == p->inflight && s->used < p->used))
            pick = i;
    }
    return pick;
}

int slot_route(slot_router *r, int n, const char *body, size_t len,
               unsigned *gen)
{
    if (!r || n <= 0)
        return -1;
    if (r->n != n) {
        /* the slot count changed (the option was set again): what was
         * learnt was about other slots */
        slot_state *fresh = sk_calloc((size_t)n, sizeof *fresh);
        if (!fresh)
            return -1;
        clear_slots(r);
        r->slots = fresh;
        r->n = n;
        r->gen++;
    }
    int i = slot_pick(r, n, body, len);
    slot_state *s = &r->slots[i];
    size_t keep = len > SLOT_HEAD_MAX ? SLOT_HEAD_MAX : len;
    if (keep != s->head_len || memcmp(s->head, body, keep) != 0) {
        char *head = sk_malloc(keep ? keep : 1);
        if (!head)
            return -1;
        memcpy(head, body, keep);
        free(s->head);
        s->head = head;
        s->head_len = keep;
    }
    s->inflight++;
    s->used = ++r->clock;
    *gen = r->gen;
    return i;
}

void slot_done(slot_router *r, int slot, unsigned gen)
{
    /* a request routed before the slot count changed finishes against a
     * table that no longer counts it */
    if (r && gen == r->gen && slot >= 0 && slot < r->n &&
        r->slots[slot].inflight > 0)
        r->slots[slot].inflight--;
}
