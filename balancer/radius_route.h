/*
 * Where the balancer's RADIUS front sends each request: the routing rules as
 * a pure data structure, with no sockets and no clock of its own (the caller
 * passes the time), so the unit tests drive every rule (radius_front.c does
 * the I/O).
 *
 * Rules, in order (docs/balancer.md, "The RADIUS front"):
 *
 * 1. A retransmission (RFC 5080 §2.2.2: same NAS address and port,
 *    Identifier and Request Authenticator within the window) goes to the
 *    node that got the first copy while that node is up (ready or drain), so
 *    the node's duplicate cache answers it and no second SMS goes out.
 * 2. A State that starts with "<node id>-" of a member goes to that node
 *    while it is up (ready or drain).
 * 3. Anything else, and the two above when their node is down, unreachable
 *    or in maintenance, goes to the ready node with the fewest outstanding
 *    requests, round-robin among ties. A request whose node is gone thus
 *    reaches a live node, which answers "start again" instead of letting the
 *    NAS time out.
 *
 * The retransmission table remembers each forwarded request for the window
 * in a FIFO ring (the window is uniform, so the oldest entry always expires
 * first: O(1) amortised) with two hash chains per entry: one by the full
 * duplicate key, one by (NAS address, port, Identifier) to match an answer
 * to its request. Outstanding counts per node are the table's entries for
 * that node not answered yet, so a request that is never answered stops
 * counting when its entry expires. The table grows by doubling up to its
 * bound; at the bound the oldest entry is forgotten early and counted.
 * Buckets are chosen with SipHash under a random key: NASes (or anyone who
 * can reach the port) choose every byte of the key.
 */
#ifndef MFA_BAL_RADIUS_ROUTE_H
#define MFA_BAL_RADIUS_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "appconf.h"
#include "bal.h"
#include "ids.h"
#include "mem.h"

#define RROUTE_NODES_MAX    APPCONF_MAX_MEMBERS
#define RROUTE_HOLD_MS      2000      /* a node that refused a datagram rests this long */
#define RROUTE_TABLE_MIN    1024      /* entries the table starts with */
#define RROUTE_TABLE_MAX    (1 << 20) /* default bound of the retransmission table */
#define RROUTE_ANSWER_PROBE 64        /* entries an answer looks at to find its request */

/* What a node takes, from its state, its health and the last refusal. */
enum rroute_mode {
    RROUTE_READY = 0,   /* new requests, its State, its retransmissions */
    RROUTE_DRAIN,       /* only its State and its retransmissions */
    RROUTE_DOWN,        /* nothing: it does not answer its health checks */
    RROUTE_UNREACHABLE, /* nothing until the hold-down ends: it refused a datagram */
    RROUTE_MAINT,       /* nothing */
    RROUTE_MODE_COUNT_,
};

/* Why a request went where it went. */
enum rroute_why {
    RROUTE_NEW = 0,    /* least outstanding among the ready nodes */
    RROUTE_STATE,      /* the node its State names */
    RROUTE_RETRANSMIT, /* the node that got the first copy */
    RROUTE_REROUTED,   /* its State's or first copy's node is not up: another one */
};

struct rroute_node {
    char id[NODE_ID_MAX + 1];
    enum server_state admin; /* what the balancer keeps: ready, drain, maint */
    bool answers;            /* its health checks pass (radius_front.c decides) */
    uint64_t held_until_ms;  /* after a refusal (ICMP port unreachable) */
    uint64_t outstanding;    /* forwarded, not answered, not expired */
};

/* The duplicate key of RFC 5080 §2.2.2. IPv4 addresses are kept v4-mapped. */
struct rroute_key {
    uint8_t addr[16];
    uint16_t port;
    uint8_t id;
    uint8_t auth[16];
};

struct rroute_entry;

struct rroute {
    struct rroute_node nodes[RROUTE_NODES_MAX];
    size_t nnodes;
    size_t rr; /* where the next tie-break starts */
    uint64_t window_ms;
    uint32_t max_entries; /* a power of two */

    struct rroute_entry *ring; /* FIFO of entries, oldest at head */
    uint32_t cap, head, count;
    uint32_t *by_key, *by_answer; /* bucket heads (cap of each), slots or UINT32_MAX */
    uint8_t hash_key[16];

    uint64_t evicted; /* entries forgotten before their window ended (table full) */
};

/*
 * Prepares <r> for <nnodes> nodes named <ids> (valid node ids), all down
 * until told otherwise, remembering requests for <window_ms> in at most
 * <max_entries> (rounded down to a power of two, at least RROUTE_TABLE_MIN)
 * entries. Returns 0, or -1 with *err. rroute_free() releases it.
 */
int rroute_init(struct rroute *r, const char *const *ids, size_t nnodes, uint64_t window_ms,
                uint32_t max_entries, char **err) MFA_MUSTCHECK;
void rroute_free(struct rroute *r);

/* Fills <k> from the NAS's address and port (AF_INET or AF_INET6) and the request. */
void rroute_key_make(struct rroute_key *k, const struct sockaddr *nas, uint8_t id,
                     const uint8_t auth[16]);

/*
 * The index of the member a State value names ("<node id>-..."), or -1
 * when it names none. <state> need not be NUL-terminated.
 */
int rroute_state_node(const struct rroute *r, const uint8_t *state, size_t len);

/* What node <i> takes at <now_ms>. */
enum rroute_mode rroute_mode(const struct rroute *r, size_t i, uint64_t now_ms);
const char *rroute_mode_name(enum rroute_mode m);

/*
 * Routes a request with duplicate key <k> whose State names member
 * <state_node> (-1: none) at <now_ms>, and remembers it for the window.
 * Returns the node's index and sets *why, or -1 when no node can take it
 * (nothing is remembered then).
 */
int rroute_request(struct rroute *r, const struct rroute_key *k, int state_node, uint64_t now_ms,
                   enum rroute_why *why);

/*
 * Node <node> answered the request with Identifier <id> from the NAS at
 * <nas>: its outstanding count drops. Only the first RROUTE_ANSWER_PROBE
 * entries of the chain are looked at (the newest first: a NAS does not
 * reuse an Identifier while a request is outstanding). Returns true when
 * the request was found.
 */
bool rroute_answered(struct rroute *r, size_t node, const struct sockaddr *nas, uint8_t id);

/* Node <i> refused a datagram at <now_ms>: it takes nothing for RROUTE_HOLD_MS. */
void rroute_unreachable(struct rroute *r, size_t i, uint64_t now_ms);

/* Forgets the entries older than the window. */
void rroute_expire(struct rroute *r, uint64_t now_ms);

/* Entries in the table. */
static inline uint32_t rroute_entries(const struct rroute *r)
{
    return r->count;
}

#endif
