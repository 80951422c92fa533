/*
 * mfa-replicator's state, shared by its subsystems: the postmaster it
 * supervises (postmaster.c), the probes of its PostgreSQL (probe.c), the
 * peers it polls (peers.c), the role decisions (role.c), the setup it runs
 * on a primary (setup.c) and the control API (control.c).
 *
 * Everything runs on the daemon's one loop. A long operation (bootstrap,
 * clone, rewind, promotion, fence) is a task: one at a time, written as a
 * chain of callbacks, and r->task names it while it runs.
 */
#ifndef MFA_REPL_H
#define MFA_REPL_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "appconf.h"
#include "keyfile.h"
#include "pgsetup.h"

struct daemon;
struct proc;
struct proc_set;
struct pgconn;
struct httpclient;
struct http_server;
struct worker_pool;

enum repl_role {
    ROLE_STARTING = 0, /* deciding; nothing started, or PostgreSQL starting */
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ROLE_REJOINING, /* re-pointing, pg_rewind or pg_basebackup under way */
    ROLE_STOPPED,   /* stopped on purpose by /fence until /rejoin or /resume */
    ROLE_WITNESS,
    ROLE_COUNT_,
};

enum pm_state {
    PM_DOWN = 0,
    PM_RUNNING, /* started or adopted; see r->local.up for "answers" */
    PM_STOPPING,
};

/* What the last probe of the local PostgreSQL found. */
struct local_state {
    bool up; /* it answered the last probe */
    bool in_recovery;
    bool read_only; /* default_transaction_read_only */
    bool streaming; /* standby: its WAL receiver streams */
    char sysid[24];
    uint32_t tli;
    uint64_t flush_lsn; /* primary */
    uint64_t receive_lsn, replay_lsn;
    double lag_s;
    json_t *standbys; /* primary: [{id, state, sync, replay_lsn, reply_age_s}] */
};

struct peer {
    char id[17];
    bool in_flight;
    double last_ok_s;     /* clock_mono, seconds; 0: never */
    double last_mutual_s; /* last answer that also said it sees this member */
    json_t *status;       /* its last /status; NULL before the first */
    char error[200];      /* why the last poll failed */
    /* Since this replicator started (noted by repl_note_peers()): */
    bool had_data;    /* it reported data (has_data not false) or the primary role */
    bool was_witness; /* it reported the witness role */
};

struct repl {
    struct daemon *d;
    struct event_base *base;
    struct keyring keys;
    struct pgpaths paths;
    char os_user[64];
    char me[17];
    double started_s; /* when this replicator started (clock_mono seconds) */
    struct proc_set *procs;
    struct worker_pool *workers;
    struct httpclient *http;
    struct http_server *api;
    /* The certificate the control API serves (appliance.tls.cert as loaded at start). */
    bool cert_known;
    time_t cert_not_after;
    char cert_expires_at[32]; /* ISO 8601 UTC */
    struct pgconn *db;        /* the local superuser connection, over the socket */
    bool probe_in_flight;

    /* The postmaster. */
    enum pm_state pm;
    pid_t pm_pid;
    struct proc *pm_proc; /* NULL when adopted */
    bool pm_adopted;
    int pm_restarts;
    int pm_failed_starts; /* starts in a row that exited before answering */
    bool pm_answered;     /* this run answered a probe */
    double pm_started_s, pm_next_start_s;
    double pm_stop_started_s; /* when the fast shutdown was asked for */
    int pm_backoff_s;
    void (*pm_on_stop)(struct repl *r); /* a task waiting for it to exit */
    bool control_reading;               /* pg_controldata is running */
    void (*control_done)(struct repl *r, bool ok);

    struct local_state local;
    struct pg_controldata control; /* of the data directory while PostgreSQL is down */
    bool control_valid;
    struct tli_switch history[64];
    int nhistory;
    uint32_t history_tli;

    struct peer peers[APPCONF_MAX_MEMBERS];
    size_t npeers;

    enum repl_role role;
    char upstream[17];
    char sync_names[1024];
    bool fenced;
    const char *fence_reason;
    double stale_since_s; /* standby: when it last streamed or was re-pointed */

    const char *task; /* the task running, NULL when none */
    char task_error[300];
    struct evhttp_request *task_req; /* the request the task answers when done */
    char rejoin_to[17];
    bool setup_ok; /* roles, database and migrations are in place on this primary */
    bool setup_running;
    double setup_retry_s;
    /* When each standby's reply last changed, on our clock (not the standby's). */
    struct {
        char id[17];
        char reply[48];
        double changed_s;
    } replies[APPCONF_MAX_MEMBERS];
    double promote_started_s;
    char rejoin_pending[17]; /* asked to follow a member not yet seen as primary */
    double rejoin_pending_until_s;
    void (*on_up)(struct repl *r); /* a task waiting for PostgreSQL to answer */
    /* Holds setup --primary's permission with no data yet (/status "bootstrap_pending"). */
    bool bootstrap_pending;
    char bootstrap_refused[17]; /* the last peer that kept it from being used (logged once) */
};

/* role.c */
const char *repl_role_name(enum repl_role role);
void repl_set_role(struct repl *r, enum repl_role role, const char *why);
void repl_decide(struct repl *r);
/* Notes what each peer's last answer said that must be remembered since start. */
void repl_note_peers(struct repl *r);
/* A peer polled at least once since start: it answered, or its poll failed or timed out. */
bool repl_peer_polled(const struct peer *p);
/* Starts the task <name>: false (and nothing done) when one runs already. */
bool repl_task_begin(struct repl *r, const char *name);
void repl_task_end(struct repl *r, const char *error);
int repl_write_conf(struct repl *r, char **err);
int repl_rejoin(struct repl *r, const char *primary, char **err);
int repl_promote(struct repl *r, struct evhttp_request *req, char **err);
int repl_fence(struct repl *r, struct evhttp_request *req, char **err);
int repl_resume(struct repl *r, char **err);
void repl_save_state(struct repl *r);
void repl_load_state(struct repl *r);

/* postmaster.c */
int pm_start(struct repl *r, char **err);
void pm_stop(struct repl *r, void (*done)(struct repl *r));
void pm_adopt(struct repl *r);
void pm_tick(struct repl *r);
/* Runs a PostgreSQL tool to completion; <done> gets ok and its output's tail. */
int pm_run_tool(struct repl *r, const char *const *argv, int timeout_ms,
                void (*done)(struct repl *r, bool ok, const char *tail), char **err);
void pm_read_control(struct repl *r, void (*done)(struct repl *r, bool ok));

/* probe.c */
void probe_tick(struct repl *r);
void probe_reload(struct repl *r);
void probe_read_history(struct repl *r);
/* Queues <sql> on the local connection; <done> gets the result or the error. */
int probe_query(struct repl *r, const char *sql, int timeout_ms,
                void (*done)(struct repl *r, const char *value, const char *err), char **err);
/* The data's timeline and position, from the probe or pg_controldata; false when unknown. */
bool repl_position(const struct repl *r, uint32_t *tli, uint64_t *lsn);

/* peers.c */
void peers_init(struct repl *r);
void peers_poll(struct repl *r);
void peers_free(struct repl *r);
bool peer_seen(const struct repl *r, const struct peer *p);
double peer_age(const struct peer *p);
/* The seen peer that says it is primary, NULL when none or more than one (to follow). */
const struct peer *peers_primary(const struct repl *r);
/* How many seen peers say they are primary (for the checks that must see any). */
size_t peers_primary_count(const struct repl *r);
/* Of the seen peers that say they are primary, the one on the newest timeline; NULL if none. */
const struct peer *peers_newest_primary(const struct repl *r);
bool repl_sees_majority(const struct repl *r);
/* Seconds since a majority of the voters was last seen (0: now). */
double repl_majority_age(const struct repl *r);
const char *peer_str(const struct peer *p, const char *key);
json_int_t peer_int(const struct peer *p, const char *key);

/* setup.c */
/* Roles, database, migrations and slots on this primary; <done> from the loop. */
int setup_primary(struct repl *r, void (*done)(struct repl *r, const char *err), char **err);
/* The slot names of the other members that run PostgreSQL, comma-separated. */
void setup_slot_list(const struct repl *r, char *buf, size_t size);

/* control.c */
struct http_server *control_start(struct repl *r, char **err);
json_t *control_status(struct repl *r);

#endif
