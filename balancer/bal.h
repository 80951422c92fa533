/*
 * mfa-balancer's state, shared by its subsystems: the HAProxy it runs and
 * steers (haproxy.c), the runtime API client (runtime.c), the polls of the
 * members that feed the health page (members.c), the RADIUS UDP front
 * (radius_front.c, routing in radius_route.c) and the daemon with its two
 * HTTP servers (main.c).
 */
#ifndef MFA_BAL_H
#define MFA_BAL_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "appconf.h"

struct daemon;
struct proc_set;
struct proc;
struct httpclient;
struct http_server;
struct event_base;
struct radius_front;

enum server_state {
    SERVER_READY = 0,
    SERVER_DRAIN,
    SERVER_MAINT,
    SERVER_STATE_COUNT_,
};

struct bal_server {
    char id[17];
    enum server_state state; /* what the balancer keeps (and re-applies) */
    char status[16];         /* HAProxy's view: UP, DOWN, MAINT, DRAIN, ... */
    long current_sessions;
};

struct bal_member {
    char id[17];
    json_t *replicator; /* its replicator's last /status, or {"reachable": false, ...} */
    json_t *node;       /* its node's last /status, likewise */
    bool repl_in_flight, node_in_flight;
};

struct bal {
    struct daemon *d;
    struct event_base *base;
    struct proc_set *procs;
    struct httpclient *mtls, *plain;
    struct http_server *control, *health;
    char cfg_path[300], pem_path[300], admin_sock[300], pidfile[300], state_path[300];
    char srvstate_path[300]; /* HAProxy's own server-state-file, dumped before a reload */
    bool reload_pending;
    char *cfg_text; /* what haproxy runs with */

    /* HAProxy */
    pid_t master;
    struct proc *master_proc; /* NULL when adopted */
    int reloads, restarts;
    double next_start_s;
    bool states_dirty;   /* re-apply server states (after a start or reload) */
    unsigned states_gen; /* bumped whenever states_dirty is set */
    int failed_streak;   /* deaths soon after a start, in a row */
    double started_s;
    bool runtime_busy;
    bool rerender; /* the configuration was reloaded: render haproxy.cfg again */

    struct bal_server servers[APPCONF_MAX_MEMBERS];
    size_t nservers;
    struct bal_member members[APPCONF_MAX_MEMBERS];
    size_t nmembers;

    struct radius_front *radius; /* the RADIUS UDP front, NULL when off */
};

const char *server_state_name(enum server_state s);
/* Marks the server states to be applied again (a reload, a start, a drift). */
void bal_states_dirty(struct bal *b);
/* Parses "ready", "drain", "maint". Returns 0, or -1. */
int server_state_parse(const char *name, enum server_state *out);
struct bal_server *bal_server(struct bal *b, const char *id);
void bal_save_states(struct bal *b);
void bal_load_states(struct bal *b);

/* haproxy.c */
int haproxy_write_files(struct bal *b, char **err);
int haproxy_start(struct bal *b, char **err);
void haproxy_adopt(struct bal *b);
void haproxy_reload(struct bal *b);
void haproxy_tick(struct bal *b);
bool haproxy_running(const struct bal *b);

/* runtime.c: one command on the runtime API socket; <done> gets the reply or NULL. */
int runtime_command(struct bal *b, const char *cmd,
                    void (*done)(struct bal *b, const char *reply, void *arg), void *arg,
                    char **err);
void runtime_tick(struct bal *b);

/* members.c */
void members_init(struct bal *b);
void members_poll(struct bal *b);
void members_free(struct bal *b);
json_t *members_snapshot(struct bal *b);

/*
 * radius_front.c: the RADIUS UDP front on ports.radius (docs/balancer.md).
 * Started after HAProxy when balancer.radius.enabled; its tick follows the
 * servers' states and health and expires the retransmission table.
 */
int radius_front_start(struct bal *b, char **err);
void radius_front_tick(struct bal *b);
/* Takes no new requests; answers already asked for are still relayed. */
void radius_front_stop_listening(struct bal *b);
void radius_front_free(struct bal *b);
/* The control API's "radius" object (new reference): counters, nodes, drops. */
json_t *radius_front_status(struct bal *b);
/* The counters the open health page shows (new reference), or JSON null when off. */
json_t *radius_front_counters(struct bal *b);

#endif
