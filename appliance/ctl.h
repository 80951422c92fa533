/*
 * mfactl's client of the replicators' control API (docs/replication.md)
 * and the balancers' (docs/balancer.md): the configuration, one event_base,
 * and two httpclients on it, one with the cluster's mutual TLS for those
 * APIs and one plain for the nodes' GET /ready and /status. mfactl speaks
 * only these APIs: no private back door.
 *
 * mfactl is a command line program, so every call here runs the loop itself
 * until its requests have answered (each has its own deadline, and the loop
 * a safety deadline a little later) and then returns: the caller reads like
 * a script. Waits between polls are timers on the same loop, not sleep().
 *
 * SIGINT and SIGTERM are caught on the loop: the first one sets
 * ctl_interrupted() (polls and waits then end early, requests in flight are
 * still awaited, so that a state-changing POST is never abandoned half-way);
 * the second one quits at once with exit code 1.
 */
#ifndef MFA_APPLIANCE_CTL_H
#define MFA_APPLIANCE_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "cluster_plan.h"
#include "mem.h"

/* Request deadlines, docs/replication.md via the mfactl brief. */
#define CTL_STATUS_TIMEOUT_MS 3000
/* Beyond the replicator's own limits (pg_promote 65 s + checkpoint 60 s + ...). */
#define CTL_PROMOTE_TIMEOUT_MS 150000
#define CTL_FENCE_TIMEOUT_MS   150000
#define CTL_OTHER_TIMEOUT_MS   10000

struct ctl;

/*
 * The outcome of a POST. <status>: the HTTP status, 0 when no response came.
 * <json>: the reply body when it is a JSON object (owned), else NULL.
 * <error>: NULL when the status is 2xx and the body a JSON object; else a
 * sentence fragment: the transport error, "HTTP 409 not_standby: <detail>",
 * or why the reply is not usable. ctl_reply_clear() frees.
 */
struct ctl_reply {
    long status;
    json_t *json;
    char *error;
};

/*
 * Loads <config_path> with appconf_load(), makes the loop, the clients and
 * the signal events. Returns the client, or NULL with *err (a sentence for
 * an operator: the configuration or a TLS file is bad); the caller exits 2.
 */
struct ctl *ctl_open(const char *config_path, char **err) MFA_MUSTCHECK;

/* Frees everything; NULL is fine. */
void ctl_close(struct ctl *c);

/* The loaded configuration; valid until ctl_close(). */
const struct appconf *ctl_conf(const struct ctl *c);

/* The index of member <id> in cluster.members, or -1. */
int ctl_member_index(const struct ctl *c, const char *id);

/* Seconds since ctl_open() (the command's start), monotonic. */
double ctl_elapsed_s(const struct ctl *c);

/* True once SIGINT or SIGTERM arrived. */
bool ctl_interrupted(const struct ctl *c);

/*
 * Fetches GET /status of every member i with want[i] (want NULL: all) at
 * once, each with CTL_STATUS_TIMEOUT_MS, into out[i] (an array of
 * cluster.nmembers): plan_member_from_json() or plan_member_down() with the
 * reason. With <ready>, also GET /ready on ports.node (https with the client
 * certificate off loopback, as the node listens) of the same
 * members into out[i].node_ready. Members not wanted are left untouched.
 * Returns how many of the wanted members answered.
 */
size_t ctl_fetch(struct ctl *c, struct plan_member *out, const bool *want, bool ready);

/*
 * POSTs <body> (borrowed; NULL: no body) to <path> ("/promote") on member
 * <idx>'s replicator with <timeout_ms>, and waits for the answer. Fills *r
 * (zeroed first). Returns 0 when r->error is NULL, else -1.
 */
int ctl_post(struct ctl *c, size_t idx, const char *path, json_t *body, int timeout_ms,
             struct ctl_reply *r);

void ctl_reply_clear(struct ctl_reply *r);

/* Which daemon of a member a ctl_call goes to. */
enum ctl_api {
    CTL_API_REPLICATOR = 0, /* https://address:ports.replicator, mutual TLS */
    CTL_API_BALANCER,       /* https://address:ports.balancer_control, mutual TLS */
    CTL_API_NODE,           /* address:ports.node: plain on loopback, else mutual TLS */
};

/*
 * One request of ctl_call_all(). The caller fills the first six fields
 * (<path> and <body> borrowed until the call returns); <reply> is the
 * outcome, as ctl_post()'s, which the caller clears.
 */
struct ctl_call {
    size_t idx; /* the member, in cluster.members */
    enum ctl_api api;
    const char *method; /* "GET", "POST" */
    const char *path;   /* "/status" */
    json_t *body;       /* NULL: no body */
    int timeout_ms;
    struct ctl_reply reply;
};

/*
 * Starts the <n> calls at once and waits until every one has answered or
 * passed its deadline. Each reply is zeroed first; a call that could not be
 * started has its reply.error set.
 */
void ctl_call_all(struct ctl *c, struct ctl_call *calls, size_t n);

/*
 * Replaces, in place, the control characters in <s> (C0, DEL and, in UTF-8,
 * C1) with '?', so that text from a reply cannot drive the operator's
 * terminal. Returns <s>.
 */
char *ctl_sanitize(char *s);

/*
 * Runs the loop for <seconds>. Returns true, or false when interrupted
 * (at once if ctl_interrupted() already).
 */
bool ctl_sleep(struct ctl *c, double seconds);

#endif
