/*
 * mfa-node's two database connections: reads go to the local PostgreSQL
 * (primary or hot standby), writes to the cluster's primary.
 *
 * The node learns where the primary is from its local mfa-replicator, every
 * 250 ms (primary.h): the member its /status names, or none. While the
 * replicator does not answer (or the node has no TLS files to ask it with)
 * the local database says, once a second: a primary is itself; a standby
 * names the upstream it streams from (pg_stat_wal_receiver, which needs the
 * pg_read_all_stats role). When the primary changes the write connection
 * follows; when there is none, writes are refused at once (read-only)
 * instead of waiting on a dead host.
 *
 * Credentials: node.db.password, or when it is empty the password the
 * replicator gives the role, derived from the key file (db_password(),
 * secrets.h). With sslmode verify-ca or verify-full and no
 * node.db.sslrootcert, the server's certificate must chain to
 * cluster.tls.ca.
 */
#ifndef MFA_NODE_DB_H
#define MFA_NODE_DB_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "appconf.h"
#include "mem.h"
#include "pgconn.h"

struct keyring;
struct nodedb;

enum nodedb_role {
    NODEDB_UNKNOWN = 0, /* the local database has not answered */
    NODEDB_PRIMARY,
    NODEDB_STANDBY,
};

/* Who named the primary the write connection follows. */
enum nodedb_source {
    NODEDB_SOURCE_DATABASE = 0, /* the local database's pg_stat_wal_receiver */
    NODEDB_SOURCE_REPLICATOR,   /* the local mfa-replicator's /status */
};

struct nodedb_status {
    enum nodedb_role role;
    enum nodedb_source source;
    bool local_up;         /* the local database answered the last probe */
    bool primary_up;       /* the write connection is up */
    char primary[80];      /* "address:port" of the primary, "" when unknown */
    double replay_lag_s;   /* standby: seconds since the last replayed commit, -1 unknown */
    int64_t lag_bytes;     /* standby: received but not yet replayed WAL, -1 unknown */
    double clock_offset_s; /* the database's clock minus ours */
    int schema_version;    /* the local database's schema_version, -1 not read yet */
};

/*
 * How often a compatible schema version is read again (at once when the local
 * database comes up, and every tick while it is unknown or incompatible).
 */
#define NODEDB_SCHEMA_POLL_MS 10000

/* Returned by nodedb_write() when no primary is reachable. */
#define NODEDB_READ_ONLY 1

/* How often the daemon calls nodedb_poll_replicator(). */
#define NODEDB_REPLICATOR_POLL_MS 250

/*
 * Connects to the local database of <conf>'s member and starts looking for
 * the primary. <kr> (the key file) gives the password when node.db.password
 * is empty; it is not kept. Without usable TLS files the replicator is never
 * asked (logged once). Returns the handle, or NULL with *err.
 */
struct nodedb *nodedb_new(struct event_base *base, const struct appconf *conf,
                          const struct keyring *kr, char **err) MFA_MUSTCHECK;

/* Closes both connections; pending callbacks get "connection closed". */
void nodedb_free(struct nodedb *db);

/* Queues a read on the local database; as pgconn_query(). */
int nodedb_read(struct nodedb *db, const char *sql, int nparams, const char *const *params,
                pgconn_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/*
 * Queues a write on the primary with <sync> (remote_apply for admin writes,
 * off for sign-in marks). Writes with synchronous_commit off that share their
 * first parameter (case folded) run in order, on one connection: the sign-in
 * path puts the user or token first. Returns 0 (queued; <cb> will run), NODEDB_READ_ONLY
 * when no primary is reachable now (<cb> will not run: answer read_only), or
 * -1 with *err for a programming error.
 */
int nodedb_write(struct nodedb *db, const char *sql, int nparams, const char *const *params,
                 enum pgconn_sync sync, pgconn_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/*
 * Registers statement <name> (<sql>, which must stay valid: a literal) to be
 * prepared on the local connection, or with <write> on every write
 * connection, now and after each reconnection. The hot path of sign-in runs
 * prepared: parsing and planning cost more than running its queries.
 */
int nodedb_prepare(struct nodedb *db, bool write, const char *name, const char *sql, int nparams,
                   char **err) MFA_MUSTCHECK;

/* As nodedb_read() and nodedb_write(), running a statement nodedb_prepare() registered. */
int nodedb_read_prepared(struct nodedb *db, const char *name, int nparams,
                         const char *const *params, pgconn_cb cb, void *arg,
                         char **err) MFA_MUSTCHECK;
int nodedb_write_prepared(struct nodedb *db, const char *name, int nparams,
                          const char *const *params, enum pgconn_sync sync, pgconn_cb cb, void *arg,
                          char **err) MFA_MUSTCHECK;

/* True when a write would be queued now. */
bool nodedb_writable(const struct nodedb *db);

/*
 * True when a write's error means the primary is gone or read-only (lost
 * connection, timeout, a standby's 25006): the caller answers read_only.
 */
bool nodedb_error_is_read_only(const char *err);

/*
 * The write connection, or NULL when there is no primary. It is replaced
 * when the primary moves: <fn> (set with nodedb_on_primary) hears of every
 * change before the old one is freed, so holders can let go of it.
 */
struct pgconn *nodedb_primary(const struct nodedb *db);
void nodedb_on_primary(struct nodedb *db, void (*fn)(void *arg, struct pgconn *primary), void *arg);

/* Probes the local role; the daemon calls it every second. */
void nodedb_tick(struct nodedb *db);

/* Asks the local replicator for the primary, unless a request is in flight. */
void nodedb_poll_replicator(struct nodedb *db);

void nodedb_get_status(const struct nodedb *db, struct nodedb_status *out);

const char *nodedb_role_name(enum nodedb_role role);
const char *nodedb_source_name(enum nodedb_source source);

/*
 * Row <row> of <res> as a JSON object keyed by column name: booleans,
 * integers, json/jsonb and NULL keep their types, everything else is a
 * string. Returns a new reference (NULL without memory).
 */
json_t *nodedb_row_json(const PGresult *res, int row);

/* Every row of <res> as a JSON array of such objects. */
json_t *nodedb_rows_json(const PGresult *res);

#endif
