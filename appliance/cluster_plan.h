/*
 * The decisions behind `mfactl switchover | failover | rejoin`, as pure
 * functions of the members' /status replies (docs/replication.md): no I/O,
 * no clock, no globals, so that every rule is unit-tested.
 *
 * A member is described by struct plan_member, filled from its /status JSON
 * by plan_member_from_json() or marked unreachable by plan_member_down().
 * The caller passes the whole cluster as an array in cluster.members order;
 * members are named by their index in it.
 *
 * Ranking: data is compared by (timeline, LSN). A higher timeline wins over
 * any LSN on a lower one; byte differences are only given on one timeline,
 * where they mean something.
 *
 * Failover rules, in the order they are checked (the first that fails
 * decides; --force skips 3 to 6 and lists what may be lost instead):
 *   1. the candidate answered and is a standby with data;
 *   2. no reachable member is a writable primary (use switchover);
 *   3. every member other than the old primary (plan_old_primary()) answered;
 *   4. no other reachable member has more data than the candidate;
 *   5. when the old primary did not answer, the cluster has more than two
 *      members (a two-member cluster has no witness and its primary never
 *      fences: docs/replication.md, Fencing);
 *   6. the old primary, when it did not answer, has been unseen by every
 *      member for cluster.fence_after seconds plus PLAN_FENCE_MARGIN_S:
 *      otherwise the verdict is PLAN_WAIT with the seconds left.
 * Rules 1 and 2 are not skipped by --force: promoting a member that does not
 * answer or is no standby cannot work, and with a writable primary in reach a
 * switchover moves it without losing a write.
 *
 * "Unseen for": the least age_s that the members answering report for the
 * old primary in their `peers` (0 when one still has it `seen`); when none
 * reports an age, the time mfactl has watched it stay so
 * (plan_failover_opts.watched_unseen_s), because every member polls its
 * peers all along and would have reported a sighting.
 */
#ifndef MFA_APPLIANCE_CLUSTER_PLAN_H
#define MFA_APPLIANCE_CLUSTER_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "appconf.h"
#include "mem.h"

#define PLAN_ID_MAX         17  /* a member id (1-16 of [a-z0-9]) and NUL */
#define PLAN_LSN_MAX        18  /* "XXXXXXXX/XXXXXXXX" and NUL */
#define PLAN_WHY_MAX        256 /* why a member is unreachable */
#define PLAN_ROLE_NAME_MAX  24
#define PLAN_REASON_MAX     64 /* fence_reason */
#define PLAN_FENCE_MARGIN_S 0.5
#define PLAN_EXIT_REFUSED   3
#define PLAN_EXIT_NO_MEMBER 4

/* docs/replication.md, the role table; DOWN: did not answer. */
enum plan_role {
    PLAN_ROLE_UNKNOWN = 0, /* answered with a role this build does not know */
    PLAN_ROLE_PRIMARY,
    PLAN_ROLE_STANDBY,
    PLAN_ROLE_STARTING,
    PLAN_ROLE_REJOINING,
    PLAN_ROLE_STOPPED,
    PLAN_ROLE_WITNESS,
    PLAN_ROLE_DOWN,
};

/* One entry of a member's `peers`: how it last saw another member. */
struct plan_peer {
    char id[PLAN_ID_MAX];
    bool seen;    /* answered within the replicator's peer timeout */
    bool has_age; /* age_s not null */
    double age_s; /* seconds since it last answered */
    bool has_pos; /* timeline and lsn not null */
    int64_t timeline;
    uint64_t lsn;
};

struct plan_member {
    char id[PLAN_ID_MAX];
    bool reachable;         /* answered /status with a valid reply */
    char why[PLAN_WHY_MAX]; /* !reachable: why, a sentence fragment */
    enum plan_role role;
    char role_name[PLAN_ROLE_NAME_MAX]; /* as reported ("down" when unreachable) */
    bool writable, fenced;
    char fence_reason[PLAN_REASON_MAX]; /* "" when null */
    bool has_pos;                       /* timeline and lsn not null */
    int64_t timeline;
    uint64_t lsn;
    bool has_replay;
    uint64_t replay_lsn;
    bool has_lag; /* lag_bytes not null */
    int64_t lag_bytes;
    bool has_lag_s;
    double lag_seconds;
    char upstream[PLAN_ID_MAX];    /* "" when null */
    char primary[PLAN_ID_MAX];     /* "" when null */
    char task[PLAN_ROLE_NAME_MAX]; /* the replicator's task under way ("promote"), "" when none */
    int streaming;                 /* 1 true, 0 false, -1 null */
    struct plan_peer peers[APPCONF_MAX_MEMBERS];
    size_t npeers;
    bool node_ready; /* GET /ready on its mfa-node answered 200 (filled by ctl) */
};

enum plan_verdict {
    PLAN_GO = 0,
    PLAN_WAIT,
    PLAN_REFUSE,
};

/*
 * A decision. <message>: for PLAN_REFUSE why (a sentence, without the
 * "mfactl: " prefix) and <exit_code> (PLAN_EXIT_REFUSED); for PLAN_WAIT the
 * line to print while waiting <wait_s> seconds; for PLAN_GO NULL or a note.
 * <loss>: for PLAN_GO with --force, what may be lost (NULL when nothing).
 * <primary>: the old (failover) or current (switchover, rejoin) primary's
 * index, -1 when none. Strings are malloc'd: plan_decision_clear() frees.
 */
struct plan_decision {
    enum plan_verdict verdict;
    int exit_code;
    double wait_s;
    int primary;
    char *message;
    char *loss;
};

/* Failover inputs besides the members. */
struct plan_failover_opts {
    int fence_after;         /* cluster.fence_after, seconds */
    double detect_s;         /* how late a replicator notices a silent peer: peer timeout + poll */
    bool force;              /* --force */
    double watched_unseen_s; /* seconds mfactl itself has watched the old primary
                              * fail to answer while no member reported having
                              * seen it (0 on the first decision) */
};

/*
 * Parses a PostgreSQL LSN "X/Y" (each 1 to 8 hex digits, either case, nothing
 * else) into *out as (X << 32) | Y. Returns 0, or -1 (nothing stored) on
 * anything else.
 */
int plan_lsn_parse(const char *s, uint64_t *out) MFA_MUSTCHECK;

/* Writes <lsn> as PostgreSQL prints it ("%X/%X") into <buf>; returns <buf>. */
char *plan_lsn_format(uint64_t lsn, char buf[PLAN_LSN_MAX]);

/* "1234 bytes" or, from 1 KiB up, "5242880 bytes (5.0 MiB)", into <buf>. */
char *plan_bytes_format(uint64_t n, char *buf, size_t size);

/* The role named <name> (PLAN_ROLE_UNKNOWN for others), and back. */
enum plan_role plan_role_from_name(const char *name);
const char *plan_role_name(enum plan_role r);

/*
 * Fills *m from a /status reply <st> of member <id>: reachable, fields as
 * documented, absent ones as null. Returns 0, or -1 with *err when <st> is
 * not an object, answers for another member than <id>, or a field has the
 * wrong type or form (the field is named); *m is then left marked down with
 * that reason. node_ready is cleared (ctl.c sets it).
 */
int plan_member_from_json(const json_t *st, const char *id, struct plan_member *m,
                          char **err) MFA_MUSTCHECK;

/* Marks *m (all of it) as member <id>, unreachable because <why> (truncated to fit). */
void plan_member_down(struct plan_member *m, const char *id, const char *why);

/* How <m> last saw member <id>, or NULL; the caller does not own it. */
const struct plan_peer *plan_peer_of(const struct plan_member *m, const char *id);

/*
 * Compares the data of <a> and <b> by (timeline, lsn): < 0, 0, > 0. A member
 * without data ranks below every member with data.
 */
int plan_rank_cmp(const struct plan_member *a, const struct plan_member *b);

/* True when <m> answered as a standby streaming from member <primary>. */
bool plan_streams_from(const struct plan_member *m, const char *primary);

/*
 * The old primary for a failover to <cand>: the member the reachable
 * non-primary members name most often as `upstream` (standbys) or `primary`
 * (ties: the first in order), never <cand> itself; when none is named, the
 * first member that did not answer. Returns its index or -1.
 */
int plan_old_primary(const struct plan_member *m, size_t n, size_t cand);

/*
 * Decides a failover to member <cand> (< n) under the rules at the top of
 * this file. Fills *d (zero it first or reuse after plan_decision_clear()).
 * Returns 0, or -1 when out of memory.
 */
int plan_failover(const struct plan_member *m, size_t n, size_t cand,
                  const struct plan_failover_opts *o, struct plan_decision *d) MFA_MUSTCHECK;

/*
 * Decides whether a switchover to <to> may start: exactly one writable
 * primary P (d->primary), and <to> a standby streaming from P. PLAN_GO or
 * PLAN_REFUSE. Returns 0, or -1 when out of memory.
 */
int plan_switchover(const struct plan_member *m, size_t n, size_t to,
                    struct plan_decision *d) MFA_MUSTCHECK;

/*
 * Decides whether member <who> may rejoin the primary <to> (-1: the one
 * writable primary the members report; d->primary is the choice): <who>
 * answered, is not that primary, and <to> answers as a primary. PLAN_GO or
 * PLAN_REFUSE. Returns 0, or -1 when out of memory.
 */
int plan_rejoin(const struct plan_member *m, size_t n, size_t who, int to,
                struct plan_decision *d) MFA_MUSTCHECK;

/* Frees the strings of *d and zeroes it. */
void plan_decision_clear(struct plan_decision *d);

#endif
