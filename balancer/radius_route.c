/*
 * The RADIUS front's routing rules and its retransmission table; see
 * radius_route.h. Nothing here does I/O or reads a clock.
 *
 * Invariants: the ring holds <count> entries from <head>, oldest first, each
 * linked into exactly one chain of by_key and one of by_answer (newest at
 * the chain's head); a node's <outstanding> is the number of its entries
 * with <pending> set.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "ids.h"
#include "netaddr.h"
#include "radius_route.h"

#define NIL UINT32_MAX

struct rroute_entry {
    struct rroute_key key;
    uint8_t node;
    bool pending; /* forwarded and not answered yet */
    uint64_t at_ms;
    uint32_t knext, kprev; /* chain of by_key */
    uint32_t anext, aprev; /* chain of by_answer */
};

static const char *const mode_names[RROUTE_MODE_COUNT_] = {
    [RROUTE_READY] = "ready", [RROUTE_DRAIN] = "drain",
    [RROUTE_DOWN] = "down",   [RROUTE_UNREACHABLE] = "unreachable",
    [RROUTE_MAINT] = "maint",
};

const char *rroute_mode_name(enum rroute_mode m)
{
    return m < RROUTE_MODE_COUNT_ ? mode_names[m] : "unknown";
}

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012), keyed per process ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t load64_le(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = ROTL(v[1], 13) ^ v[0];
    v[0] = ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = ROTL(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = ROTL(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = ROTL(v[1], 17) ^ v[2];
    v[2] = ROTL(v[2], 32);
}

static uint64_t siphash(const uint8_t key[16], const uint8_t *in, size_t len)
{
    uint64_t k0 = load64_le(key), k1 = load64_le(key + 8);
    uint64_t v[4] = { 0x736f6d6570736575ULL ^ k0, 0x646f72616e646f6dULL ^ k1,
                      0x6c7967656e657261ULL ^ k0, 0x7465646279746573ULL ^ k1 };
    uint64_t last = (uint64_t)len << 56;
    size_t whole = len - (len & 7);

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load64_le(in + i);

        v[3] ^= m;
        sip_round(v);
        sip_round(v);
        v[0] ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        last |= (uint64_t)in[whole + i] << (8 * i);
    v[3] ^= last;
    sip_round(v);
    sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* Bucket of the full duplicate key. */
static uint32_t key_bucket(const struct rroute *r, const struct rroute_key *k)
{
    uint8_t buf[16 + 2 + 1 + 16];

    memcpy(buf, k->addr, 16);
    buf[16] = (uint8_t)(k->port >> 8);
    buf[17] = (uint8_t)k->port;
    buf[18] = k->id;
    memcpy(buf + 19, k->auth, 16);
    return (uint32_t)siphash(r->hash_key, buf, sizeof(buf)) & (r->cap - 1);
}

/* Bucket of what an answer carries: the NAS's address and port, the Identifier. */
static uint32_t answer_bucket(const struct rroute *r, const struct rroute_key *k)
{
    uint8_t buf[16 + 2 + 1];

    memcpy(buf, k->addr, 16);
    buf[16] = (uint8_t)(k->port >> 8);
    buf[17] = (uint8_t)k->port;
    buf[18] = k->id;
    return (uint32_t)siphash(r->hash_key, buf, sizeof(buf)) & (r->cap - 1);
}

static bool same_nas(const struct rroute_key *a, const struct rroute_key *b)
{
    return a->port == b->port && a->id == b->id && memcmp(a->addr, b->addr, 16) == 0;
}

static bool same_key(const struct rroute_key *a, const struct rroute_key *b)
{
    return same_nas(a, b) && memcmp(a->auth, b->auth, 16) == 0;
}

/* ---- the table ---- */

static void link_entry(struct rroute *r, uint32_t slot)
{
    struct rroute_entry *e = &r->ring[slot];
    uint32_t kb = key_bucket(r, &e->key), ab = answer_bucket(r, &e->key);

    e->kprev = NIL;
    e->knext = r->by_key[kb];
    if (e->knext != NIL)
        r->ring[e->knext].kprev = slot;
    r->by_key[kb] = slot;
    e->aprev = NIL;
    e->anext = r->by_answer[ab];
    if (e->anext != NIL)
        r->ring[e->anext].aprev = slot;
    r->by_answer[ab] = slot;
}

static void unlink_entry(struct rroute *r, uint32_t slot)
{
    struct rroute_entry *e = &r->ring[slot];

    if (e->kprev != NIL)
        r->ring[e->kprev].knext = e->knext;
    else
        r->by_key[key_bucket(r, &e->key)] = e->knext;
    if (e->knext != NIL)
        r->ring[e->knext].kprev = e->kprev;
    if (e->aprev != NIL)
        r->ring[e->aprev].anext = e->anext;
    else
        r->by_answer[answer_bucket(r, &e->key)] = e->anext;
    if (e->anext != NIL)
        r->ring[e->anext].aprev = e->aprev;
}

static void settle(struct rroute *r, struct rroute_entry *e)
{
    if (e->pending && r->nodes[e->node].outstanding > 0)
        r->nodes[e->node].outstanding--;
    e->pending = false;
}

static void drop_oldest(struct rroute *r)
{
    uint32_t slot = r->head;

    settle(r, &r->ring[slot]);
    unlink_entry(r, slot);
    r->head = (r->head + 1) & (r->cap - 1);
    r->count--;
}

/*
 * Doubles the table: the entries move to the new ring in order from slot 0
 * and the chains are made again (slots changed), so the cost is amortised
 * over the inserts that filled it. Returns 0, or -1 without memory (the
 * table is unchanged).
 */
static int grow(struct rroute *r, uint32_t cap)
{
    struct rroute_entry *ring = malloc(sizeof(*ring) * cap);
    uint32_t *by_key = malloc(sizeof(*by_key) * cap);
    uint32_t *by_answer = malloc(sizeof(*by_answer) * cap);

    if (!ring || !by_key || !by_answer) {
        free(ring);
        free(by_key);
        free(by_answer);
        return -1;
    }
    for (uint32_t i = 0; i < r->count; i++)
        ring[i] = r->ring[(r->head + i) & (r->cap - 1)];
    for (uint32_t i = 0; i < cap; i++)
        by_key[i] = by_answer[i] = NIL;
    free(r->ring);
    free(r->by_key);
    free(r->by_answer);
    r->ring = ring;
    r->by_key = by_key;
    r->by_answer = by_answer;
    r->cap = cap;
    r->head = 0;
    for (uint32_t i = 0; i < r->count; i++)
        link_entry(r, i);
    return 0;
}

static uint32_t find(const struct rroute *r, const struct rroute_key *k)
{
    for (uint32_t s = r->by_key[key_bucket(r, k)]; s != NIL; s = r->ring[s].knext)
        if (same_key(&r->ring[s].key, k))
            return s;
    return NIL;
}

/* Remembers <k> as sent to <node>; a full table forgets its oldest entry first. */
static void insert(struct rroute *r, const struct rroute_key *k, size_t node, uint64_t now_ms)
{
    struct rroute_entry *e;
    uint32_t slot;

    if (r->count == r->cap && (r->cap >= r->max_entries || grow(r, r->cap * 2) < 0)) {
        drop_oldest(r);
        r->evicted++;
    }
    slot = (r->head + r->count) & (r->cap - 1);
    e = &r->ring[slot];
    e->key = *k;
    e->node = (uint8_t)node;
    e->pending = true;
    e->at_ms = now_ms;
    link_entry(r, slot);
    r->count++;
    r->nodes[node].outstanding++;
}

int rroute_init(struct rroute *r, const char *const *ids, size_t nnodes, uint64_t window_ms,
                uint32_t max_entries, char **err)
{
    uint32_t max = RROUTE_TABLE_MIN;

    memset(r, 0, sizeof(*r));
    if (nnodes == 0 || nnodes > RROUTE_NODES_MAX)
        return err_set(err, "RADIUS routing: expected 1 to %d nodes, got %zu", RROUTE_NODES_MAX,
                       nnodes);
    for (size_t i = 0; i < nnodes; i++) {
        if (!node_id_valid(ids[i]))
            return err_set(err, "RADIUS routing: \"%.20s\" is not a node id", ids[i]);
        memcpy(r->nodes[i].id, ids[i], strlen(ids[i]) + 1);
        r->nodes[i].answers = false;
        r->nodes[i].admin = SERVER_READY;
    }
    while (max <= max_entries / 2)
        max *= 2;
    r->nnodes = nnodes;
    r->window_ms = window_ms;
    r->max_entries = max;
    if (rand_bytes(r->hash_key, sizeof(r->hash_key)) < 0)
        return err_set(err, "RADIUS routing: the random generator failed");
    if (grow(r, RROUTE_TABLE_MIN) < 0)
        return err_set(err, "RADIUS routing: out of memory");
    return 0;
}

void rroute_free(struct rroute *r)
{
    mfa_free(r->ring);
    mfa_free(r->by_key);
    mfa_free(r->by_answer);
    r->cap = r->count = r->head = 0;
}

void rroute_key_make(struct rroute_key *k, const struct sockaddr *nas, uint8_t id,
                     const uint8_t auth[16])
{
    struct sockaddr_storage ss = { 0 };

    memset(k, 0, sizeof(*k));
    if (nas->sa_family == AF_INET || nas->sa_family == AF_INET6)
        memcpy(&ss, nas,
               nas->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                         : sizeof(struct sockaddr_in6));
    /* IPv4 kept v4-mapped: one form for a NAS, whichever socket it came in on. */
    if (netaddr_to_family(&ss, AF_INET6)) {
        memcpy(k->addr, &((const struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        k->port = (uint16_t)netaddr_port((const struct sockaddr *)&ss);
    }
    k->id = id;
    if (auth)
        memcpy(k->auth, auth, 16);
}

int rroute_state_node(const struct rroute *r, const uint8_t *state, size_t len)
{
    char id[NODE_ID_MAX + 1];
    const uint8_t *dash = memchr(state, '-', len < sizeof(id) ? len : sizeof(id));
    size_t n = dash ? (size_t)(dash - state) : 0;

    /* The node id before the first dash; node ids hold none, so "n1-" is never n10's. */
    if (n == 0)
        return -1;
    memcpy(id, state, n);
    id[n] = '\0';
    if (!node_id_valid(id))
        return -1;
    for (size_t i = 0; i < r->nnodes; i++)
        if (strcmp(r->nodes[i].id, id) == 0)
            return (int)i;
    return -1;
}

enum rroute_mode rroute_mode(const struct rroute *r, size_t i, uint64_t now_ms)
{
    const struct rroute_node *n = &r->nodes[i];

    if (n->admin == SERVER_MAINT)
        return RROUTE_MAINT;
    if (!n->answers)
        return RROUTE_DOWN;
    if (now_ms < n->held_until_ms)
        return RROUTE_UNREACHABLE;
    return n->admin == SERVER_DRAIN ? RROUTE_DRAIN : RROUTE_READY;
}

/* Up for its own State and retransmissions: ready or drain. */
static bool takes_own(const struct rroute *r, int i, uint64_t now_ms)
{
    enum rroute_mode m;

    if (i < 0)
        return false;
    m = rroute_mode(r, (size_t)i, now_ms);
    return m == RROUTE_READY || m == RROUTE_DRAIN;
}

/* The ready node with the fewest outstanding requests, the first after the last pick on a tie. */
static int pick_ready(struct rroute *r, uint64_t now_ms)
{
    int best = -1;

    for (size_t j = 0; j < r->nnodes; j++) {
        size_t i = (r->rr + j) % r->nnodes;

        if (rroute_mode(r, i, now_ms) == RROUTE_READY &&
            (best < 0 || r->nodes[i].outstanding < r->nodes[best].outstanding))
            best = (int)i;
    }
    if (best >= 0)
        r->rr = (size_t)best + 1;
    return best;
}

int rroute_request(struct rroute *r, const struct rroute_key *k, int state_node, uint64_t now_ms,
                   enum rroute_why *why)
{
    uint32_t slot;
    int to;

    if (state_node >= (int)r->nnodes)
        state_node = -1;
    rroute_expire(r, now_ms);
    slot = find(r, k);
    if (slot != NIL) {
        struct rroute_entry *e = &r->ring[slot];

        /* The first copy's node answers from its duplicate cache; else start afresh. */
        if (takes_own(r, e->node, now_ms)) {
            to = e->node;
            *why = RROUTE_RETRANSMIT;
        } else {
            to = takes_own(r, state_node, now_ms) ? state_node : pick_ready(r, now_ms);
            *why = RROUTE_REROUTED;
        }
        if (to < 0)
            return -1;
        settle(r, e);
        e->node = (uint8_t)to;
        e->pending = true;
        r->nodes[to].outstanding++;
        return to;
    }
    if (takes_own(r, state_node, now_ms)) {
        to = state_node;
        *why = RROUTE_STATE;
    } else {
        to = pick_ready(r, now_ms);
        *why = state_node >= 0 ? RROUTE_REROUTED : RROUTE_NEW;
    }
    if (to < 0)
        return -1;
    insert(r, k, (size_t)to, now_ms);
    return to;
}

bool rroute_answered(struct rroute *r, size_t node, const struct sockaddr *nas, uint8_t id)
{
    struct rroute_key k;
    uint32_t s;
    int probes = 0;

    rroute_key_make(&k, nas, id, NULL);
    for (s = r->by_answer[answer_bucket(r, &k)]; s != NIL && probes < RROUTE_ANSWER_PROBE;
         s = r->ring[s].anext, probes++) {
        struct rroute_entry *e = &r->ring[s];

        /* The newest request of this NAS, port and Identifier at that node is the one. */
        if (e->node == node && same_nas(&e->key, &k)) {
            if (!e->pending)
                return false;
            settle(r, e);
            return true;
        }
    }
    return false;
}

void rroute_unreachable(struct rroute *r, size_t i, uint64_t now_ms)
{
    r->nodes[i].held_until_ms = now_ms + RROUTE_HOLD_MS;
}

void rroute_expire(struct rroute *r, uint64_t now_ms)
{
    while (r->count > 0 && r->ring[r->head].at_ms + r->window_ms <= now_ms)
        drop_oldest(r);
}
