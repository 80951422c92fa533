/*
 * mfactl drain, ready and maint (docs/balancer.md, "mfactl"): set a member's
 * server state on every balancer through the balancers' control API, and
 * with `drain --wait` watch the node's own GET /status until it holds no
 * live challenges and sessions. Also the balancers' view of each member for
 * `mfactl status`.
 *
 * The commands take the same arguments and return the same exit codes as
 * cluster_cmd.h's. A balancer is any member whose control API answers
 * GET /status; only those are asked to change the state.
 *
 * The reading of replies and the exit-code decision are pure functions,
 * exported for tests/unit/test_mfactl_server.c. Every string kept from a
 * reply has its control characters replaced (ctl_sanitize()).
 */
#ifndef MFA_APPLIANCE_SERVER_CMD_H
#define MFA_APPLIANCE_SERVER_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "appconf.h"
#include "mem.h"

#define SERVER_ID_MAX    17 /* a member id (1-16 of [a-z0-9]) and NUL */
#define SERVER_STATE_MAX 16 /* "ready", "drain", "maint"; HAProxy's "UP", "NOLB", ... */

/* server_cmd_agreed_state() when the balancers disagree. */
#define SERVER_STATE_MIXED "mixed"

/* One entry of a balancer's "servers". */
struct server_entry {
    char id[SERVER_ID_MAX];
    char state[SERVER_STATE_MAX];  /* the state the balancer keeps */
    char status[SERVER_STATE_MAX]; /* HAProxy's view; "" when absent */
};

/* What one balancer's GET /status says about the servers. */
struct server_view {
    size_t nservers;
    struct server_entry servers[APPCONF_MAX_MEMBERS];
};

/* What became of a state change on one balancer. */
enum server_outcome {
    SERVER_NOT_ASKED = 0, /* its GET /status did not answer: not asked */
    SERVER_TOOK,          /* 2xx with the state asked for */
    SERVER_REFUSED,       /* 4xx: it did not change the state */
    SERVER_FAILED,        /* no answer, 5xx, or a reply that does not confirm the state */
};

/*
 * Reads a balancer's GET /status reply <doc> into *out: "servers" must be an
 * array of at most APPCONF_MAX_MEMBERS objects, each with a non-empty string
 * "id" and a string "state" ("status" optional), none longer than the
 * fields. Returns 0, or -1 with *err saying what is wrong.
 */
int server_cmd_parse_status(const json_t *doc, struct server_view *out, char **err) MFA_MUSTCHECK;

/* The entry of server <id> in <v>, or NULL; it stays <v>'s. */
const struct server_entry *server_cmd_find(const struct server_view *v, const char *id);

/*
 * The state the balancers with answered[i] (of <views>[0..n)) keep for
 * server <id>: NULL when none lists it, its state when all that list it
 * agree, else SERVER_STATE_MIXED. The string stays <views>'s (or static).
 */
const char *server_cmd_agreed_state(const struct server_view *views, const bool *answered, size_t n,
                                    const char *id);

/*
 * Classifies the answer to POST /servers/<id> {"state": <want>}: <status>
 * the HTTP status (0: no answer), <reply> the body when it is a JSON object
 * (else NULL). Taken only when a 2xx reply confirms "state": <want>.
 */
enum server_outcome server_cmd_post_outcome(long status, const json_t *reply, const char *want);

/*
 * The exit code for the outcomes on <n> balancers: 4 when none was asked;
 * 0 when every balancer asked took it; 3 when every one asked refused
 * (nothing was changed); else 1 (some refused or failed, whether or not
 * others took it). Balancers not asked do not count against success.
 */
int server_cmd_exit_code(const enum server_outcome *o, size_t n);

/*
 * Reads the live counts from a node's GET /status reply <doc>: "challenges"
 * and "sessions", integers >= 0. Returns 0, or -1 with *err.
 */
int server_cmd_node_counts(const json_t *doc, int64_t *challenges, int64_t *sessions,
                           char **err) MFA_MUSTCHECK;

struct ctl;

/*
 * For `mfactl status`: asks every member's balancer for GET /status at once
 * and fills states[i] (an array of cluster.nmembers) with
 * server_cmd_agreed_state() for member i, "" when no balancer that answered
 * lists it. Returns how many balancers answered.
 */
size_t server_cmd_states(struct ctl *c, char (*states)[SERVER_STATE_MAX]);

#define SERVER_WHY_MAX 256

/* What server_cmd_move() found and did on each member's balancer. */
struct server_move {
    size_t n;                                          /* balancers: cluster.nmembers */
    bool up[APPCONF_MAX_MEMBERS];                      /* its GET /status answered */
    char state[APPCONF_MAX_MEMBERS][SERVER_STATE_MAX]; /* up: the member's state there, "" none */
    enum server_outcome outcome[APPCONF_MAX_MEMBERS];  /* SERVER_NOT_ASKED: not up or not <from> */
    char why[APPCONF_MAX_MEMBERS][SERVER_WHY_MAX];     /* !up, REFUSED or FAILED: why */
};

/*
 * For mfactl switchover: sets member <idx>'s state to <to> on every balancer
 * that answers, is in <only> (NULL: any) and keeps the member in state <from>
 * now, all at once; a balancer where the operator set another state is left
 * alone. Fills *mv (the caller reports) and returns how many took <to>
 * (mv->outcome[i] == SERVER_TOOK).
 */
size_t server_cmd_move(struct ctl *c, size_t idx, const char *from, const char *to,
                       const bool *only, struct server_move *mv);

/* mfactl drain NODE [--wait] [--timeout S] */
int server_cmd_drain(const char *config, bool json, int argc, char **argv);

/* mfactl ready NODE */
int server_cmd_ready(const char *config, bool json, int argc, char **argv);

/* mfactl maint NODE */
int server_cmd_maint(const char *config, bool json, int argc, char **argv);

#endif
