/*
 * The node's own sign-in counters, in memory:
 *
 * - a throttle per client address: failed sign-ins from one address are a
 *   token bucket of `per_minute`; an empty bucket answers "throttled", so a
 *   stranger can neither guess on nor lock many users out from one address;
 * - while no primary is reachable, what the primary would count: failures
 *   per user and address (for lockout, with the tighter offline limits),
 *   the last accepted TOTP step or HOTP counter of each token (replay), and
 *   the SMS sent per user and per phone. These are "pending" until merged
 *   into the primary when it returns (counters take the maximum), so lockout
 *   and replay protection never silently stop.
 */
#ifndef MFA_NODE_RATELIMIT_H
#define MFA_NODE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

struct ratelimit;

struct ratelimit *ratelimit_new(void) MFA_MUSTCHECK;
void ratelimit_free(struct ratelimit *l);

/*
 * True when <addr> has used up its failures for now; *retry_after_s says when
 * the next attempt is allowed.
 */
bool ratelimit_throttled(struct ratelimit *l, const char *addr, int per_minute, uint64_t now_ms,
                         int *retry_after_s);

/* Counts a failed sign-in from <addr> against its bucket. */
void ratelimit_addr_failure(struct ratelimit *l, const char *addr, int per_minute, uint64_t now_ms);

/*
 * Counts a failure of <user> from <addr> on this node. With <offline> the
 * primary has not seen it: it is pending until merged. Online failures are
 * kept too, so the node's next answer already counts them even before its
 * own write reached the database it reads.
 */
void ratelimit_failure(struct ratelimit *l, const char *user, const char *addr, bool offline,
                       int window_s, uint64_t now_ms);

/* This node's failures of one user within the lockout window. */
struct ratelimit_counts {
    int pair;         /* from the address asked about */
    int total;        /* from every address */
    int pair_offline; /* of those, the ones the primary has not seen */
    int total_offline;
};

void ratelimit_failures(struct ratelimit *l, const char *user, const char *addr, int window_s,
                        uint64_t now_ms, struct ratelimit_counts *out);

/* Forgets <user>'s failures from <addr> (a successful sign-in). */
void ratelimit_clear(struct ratelimit *l, const char *user, const char *addr);

/*
 * Replay marks of token <token_id>: returns true and records <value> when it
 * is above both <db_value> (what the database said) and the mark kept here;
 * false when the code was used already.
 */
bool ratelimit_mark(struct ratelimit *l, const char *token_id, int64_t db_value, int64_t value);

/* True when this node has marked <value> or a later one used for the token. */
bool ratelimit_marked(struct ratelimit *l, const char *token_id, int64_t value);

/*
 * SMS this node sent in the hour before <wall_ms> to <key> ("user:NAME" or
 * "phone:NUMBER"), and in all. Counted when the challenge is made, so
 * requests in flight count at once; <offline> ones are merged later.
 */
int ratelimit_sms_count(struct ratelimit *l, const char *key, uint64_t wall_ms);
int ratelimit_sms_node_count(struct ratelimit *l, uint64_t wall_ms);
void ratelimit_sms_note(struct ratelimit *l, const char *user, const char *phone, bool offline,
                        uint64_t wall_ms);

/*
 * The pending offline state as JSON text for the merge statement: arrays of
 * {"username","client_ip","failures"}, {"token_id","value"} and
 * {"username","phone","at_ms"}. Returns malloc'd text, or NULL when nothing is
 * pending. ratelimit_merged() then forgets what was merged.
 */
char *ratelimit_pending_json(struct ratelimit *l);
void ratelimit_merged(struct ratelimit *l);

/* The merge failed: what it carried is pending again. */
void ratelimit_merge_failed(struct ratelimit *l);

/* Drops full buckets and merged counters older than <window_s> (the tick). */
void ratelimit_sweep(struct ratelimit *l, int window_s, uint64_t now_ms, uint64_t wall_ms);

#endif
