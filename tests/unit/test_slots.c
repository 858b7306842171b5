/* test_slots.c -- the prefix-aware slot router (runtime/models/slots.c). */
#include <stdlib.h>
#include <string.h>

#include "all.h"
#include "testutil.h"

/* A request body: a long prefix named by p, then a short row. */
static const char *body(char p, int row)
{
    static char b[2][1200];
    static int which;
    char *s = b[which ^= 1];
    memset(s, p, 1000);
    snprintf(s + 1000, 200, " row %d", row);
    return s;
}

static int route(slot_router *r, int n, const char *s, unsigned *gen)
{
    return slot_route(r, n, s, strlen(s), gen);
}

/* Requests that share a prefix go to one slot, one at a time. */
TEST(test_same_prefix_same_slot)
{
    slot_router *r = slot_router_new();
    unsigned gen;
    int first = route(r, 4, body('a', 0), &gen);
    CHECK(first >= 0 && first < 4);
    slot_done(r, first, gen);
    for (int i = 1; i < 20; i++) {
        int s = route(r, 4, body('a', i), &gen);
        CHECK_INT(s, first);
        slot_done(r, s, gen);
    }
    slot_router_free(r);
}

/* Different prefixes take different slots while there are free ones, and
 * each keeps its own afterwards, interleaved. */
TEST(test_prefixes_spread)
{
    slot_router *r = slot_router_new();
    unsigned gen;
    int slot_of[4];
    for (int p = 0; p < 4; p++) {
        slot_of[p] = route(r, 4, body((char)('a' + p), 0), &gen);
        slot_done(r, slot_of[p], gen);
        for (int q = 0; q < p; q++)
            CHECK(slot_of[q] != slot_of[p]);
    }
    for (int i = 1; i < 12; i++) {
        int p = i % 4;
        int s = route(r, 4, body((char)('a' + p), i), &gen);
        CHECK_INT(s, slot_of[p]);
        slot_done(r, s, gen);
    }
    slot_router_free(r);
}

/* One hot prefix with many requests in flight: a slot takes at most
 * SLOT_BALANCE (2) more than the least loaded, so all four fill evenly,
 * and the slots that took the overflow are then matches too. */
TEST(test_busy_slot_overflows)
{
    slot_router *r = slot_router_new();
    unsigned gen[8];
    int count[4] = {0}, slot[8];
    for (int i = 0; i < 8; i++) {
        slot[i] = route(r, 4, body('h', i), &gen[i]);
        CHECK(slot[i] >= 0 && slot[i] < 4);
        count[slot[i]]++;
    }
    for (int s = 0; s < 4; s++)
        CHECK_INT(count[s], 2);
    for (int i = 0; i < 8; i++)
        slot_done(r, slot[i], gen[i]);
    /* all idle again: every slot holds the prefix, the next is a match */
    int again = route(r, 4, body('h', 99), &gen[0]);
    CHECK(again >= 0 && again < 4);
    slot_done(r, again, gen[0]);
    slot_router_free(r);
}

/* A prompt sharing less than half its bytes with every slot is no match:
 * it goes to the least recently used slot, not to the one it barely
 * matches. */
TEST(test_short_match_is_no_match)
{
    slot_router *r = slot_router_new();
    unsigned g1, g2;
    int a = route(r, 2, body('a', 0), &g1);
    slot_done(r, a, g1); /* both idle: only the match could choose a's slot */
    char other[1200];
    memcpy(other, body('a', 0), 400); /* 400 of 1006 bytes in common */
    memset(other + 400, 'z', 600);
    other[1000] = '\0';
    int b = route(r, 2, other, &g2);
    CHECK(a != b);
    slot_done(r, b, g2);
    slot_router_free(r);
}

/* Changing the slot count starts afresh; a request counted in the old
 * table finishing later changes nothing in the new one. */
TEST(test_count_change)
{
    slot_router *r = slot_router_new();
    unsigned old, g;
    int s = route(r, 4, body('a', 0), &old);
    int t = route(r, 2, body('b', 0), &g);
    CHECK(t >= 0 && t < 2);
    slot_done(r, s, old); /* stale: ignored */
    int u = route(r, 2, body('c', 0), &g);
    CHECK(u != t); /* t is still in flight: c goes to the other slot */
    CHECK_INT(slot_pick(r, 2, body('b', 1), strlen(body('b', 1))), t);
    slot_router_free(r);
    slot_router_free(NULL);
    CHECK_INT(slot_route(NULL, 4, "x", 1, &g), -1);
}

/* Out of memory: -1 (the request goes unrouted), never a crash. */
TEST(test_alloc_failure)
{
    for (int i = 1; i < 6; i++) {
        slot_router *r = slot_router_new();
        unsigned gen;
        sk_alloc_fail_at(i);
        int s = r ? route(r, 4, body('a', 0), &gen) : -1;
        sk_alloc_fail_at(0);
        CHECK(s >= -1 && s < 4);
        if (s >= 0)
            slot_done(r, s, gen);
        slot_router_free(r);
    }
}

int main(void)
{
    RUN(test_same_prefix_same_slot);
    RUN(test_prefixes_spread);
    RUN(test_busy_slot_overflows);
    RUN(test_short_match_is_no_match);
    RUN(test_count_change);
    RUN(test_alloc_failure);
    return tu_finish();
}
