/*
 * mfa-node's database connections; see db.h.
 *
 * Two sources name the primary. The replicator's answer (primary.h), while
 * it answers: the member it names, or none. Otherwise the probe, which asks
 * the local database once a second whether it is in recovery and which
 * upstream its WAL receiver streams from: the local database on a primary,
 * the upstream on a standby, none when a standby streams from nobody (the
 * primary is gone). The probe always runs (it also gives the role and the
 * lag), and its last answer is kept, so a replicator that stops answering
 * hands over at once; the first answer from the replicator takes back over.
 *
 * A write connection to a new address replaces the old one; its pending
 * writes fail through their callbacks, and the caller answers read_only.
 *
 * The local database's schema version is read when the local database comes
 * up and then every NODEDB_SCHEMA_POLL_MS (every tick while it is unknown or
 * incompatible): a rolling upgrade migrates the schema under running nodes
 * (docs/upgrade.md), and a node outside the range schema_compatible() allows
 * says so on /status and stops being ready. A failed read keeps the last
 * version known.
 */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "errmsg.h"
#include "log.h"
#include "primary.h"
#include "schema.h"
#include "secrets.h"

#define PROBE_TIMEOUT_MS 900
#define STMTS_MAX        16
#define POOL_MAX         32

/* A statement prepared on every connection of its kind. */
struct stmt {
    bool write;
    const char *name, *sql;
    int nparams;
};
/* The local database counts as down after this long without an answer. */
#define LOCAL_STALE_MS 3000

struct nodedb {
    struct event_base *base;
    const struct appconf *conf; /* the daemon's, read afresh at each use */
    char extra[512];            /* conninfo tail: credentials, TLS, application name; wiped */
    /*
     * Each libpq connection runs one query at a time, so each side has a
     * small pool (node.db.connections); [0] is the one the probe and the auth
     * log use.
     */
    struct pgconn *local[POOL_MAX];
    struct pgconn *primary[POOL_MAX];
    struct pgconn *marks[POOL_MAX]; /* to the primary, synchronous_commit off */
    int pool;
    unsigned next; /* round robin */
    char primary_addr[64];
    int primary_port;
    struct stmt stmts[STMTS_MAX];
    size_t nstmts;
    struct primary_watch *watch; /* NULL: the replicator is never asked */
    enum nodedb_source source;
    bool probe_said;     /* the probe has named a primary (or none) */
    char probe_addr[64]; /* what it named: "" for none */
    int probe_port;
    bool probing;
    bool schema_reading;
    uint64_t schema_read_ms; /* when the last read of the schema version started, 0 never */
    bool closing;            /* in nodedb_free(): callbacks may not queue more */
    void (*on_primary)(void *arg, struct pgconn *primary);
    void *on_primary_arg;
    uint64_t last_probe_ok_ms;
    struct nodedb_status status;
};

static const char *const role_names[] = {
    [NODEDB_UNKNOWN] = "unknown",
    [NODEDB_PRIMARY] = "primary",
    [NODEDB_STANDBY] = "standby",
};

static const char *const source_names[] = {
    [NODEDB_SOURCE_DATABASE] = "database",
    [NODEDB_SOURCE_REPLICATOR] = "replicator",
};

const char *nodedb_role_name(enum nodedb_role role)
{
    return (unsigned)role < MFA_ARRAY_LEN(role_names) ? role_names[role] : "?";
}

const char *nodedb_source_name(enum nodedb_source source)
{
    return (unsigned)source < MFA_ARRAY_LEN(source_names) ? source_names[source] : "?";
}

/* Appends " key='value'" to <buf>, quoting as libpq reads it. */
static int append_kv(char *buf, size_t size, const char *key, const char *value)
{
    size_t len = strlen(buf);
    int n = snprintf(buf + len, size - len, " %s='", key);

    if (n < 0 || (size_t)n >= size - len)
        return -1;
    len += (size_t)n;
    for (; *value; value++) {
        if (len + 3 >= size)
            return -1;
        if (*value == '\'' || *value == '\\')
            buf[len++] = '\\';
        buf[len++] = *value;
    }
    if (len + 2 > size)
        return -1;
    buf[len++] = '\'';
    buf[len] = '\0';
    return 0;
}

/*
 * Connects to <addr>:<port>. With <marks>, the session commits with
 * synchronous_commit off: the sign-in path's marks then take one statement
 * instead of a transaction around SET LOCAL.
 */
static struct pgconn *connect_to(struct nodedb *db, const char *addr, int port, bool marks,
                                 char **err)
{
    const struct appconf *c = db->conf;
    char conninfo[1024], extra[sizeof(db->extra) + 64];
    struct pgconn_settings s = {
        .conninfo = conninfo,
        .connect_timeout_ms = c->node.db.connect_timeout_ms,
        .query_timeout_ms = c->node.db.query_timeout_ms,
    };
    struct pgconn *conn = NULL;

    snprintf(extra, sizeof(extra), "%s%s", db->extra,
             marks ? " options='-c synchronous_commit=off'" : "");
    if (pgconn_conninfo(conninfo, sizeof(conninfo), addr, port, c->node.db.name, c->node.db.user,
                        extra, c->node.db.connect_timeout_ms, err) == 0)
        conn = pgconn_new(db->base, &s, err);
    secret_wipe(extra, sizeof(extra)); /* both hold the password */
    secret_wipe(conninfo, sizeof(conninfo));
    return conn;
}

/* The connection of <pool> to use: an idle one if any, else the next in turn. */
static struct pgconn *pick(struct nodedb *db, struct pgconn *const *pool)
{
    for (int i = 0; i < db->pool; i++) {
        struct pgconn *c = pool[(db->next + (unsigned)i) % (unsigned)db->pool];

        if (c && pgconn_state(c) == PGCONN_IDLE) {
            db->next++;
            return c;
        }
    }
    return pool[db->next++ % (unsigned)db->pool];
}

/*
 * The marks connection for a write whose first parameter is <key>: one
 * connection per key (ASCII case folded, as usernames are), so the writes of
 * one user or token — a failure, then the reset after a success — reach the
 * primary in the order they were made.
 */
static struct pgconn *pick_marks(struct nodedb *db, int nparams, const char *const *params)
{
    uint32_t h = 2166136261u;

    if (nparams < 1 || !params[0])
        return pick(db, db->marks);
    for (const char *p = params[0]; *p; p++) {
        h ^= (uint32_t)(unsigned char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        h *= 16777619u;
    }
    return db->marks[h % (uint32_t)db->pool];
}

static void free_pool(struct pgconn **pool, int n)
{
    for (int i = 0; i < n; i++) {
        pgconn_free(pool[i]);
        pool[i] = NULL;
    }
}

/*
 * Fills db->extra: the application name, TLS settings and the password
 * (node.db.password, else derived from <kr>), whose copy here is wiped.
 */
static int set_extra(struct nodedb *db, const struct keyring *kr, char **err)
{
    const struct appconf *c = db->conf;
    const char *password = c->node.db.password, *rootcert = c->node.db.sslrootcert;
    char derived[DB_PASSWORD_MAX], app[64];
    int rc = -1;

    if (!*password) {
        if (db_password(kr, c->node.db.user, derived, sizeof(derived), err) < 0)
            return err_prefix(err, "node.db.password from the key file");
        password = derived;
    }
    if (!*rootcert && (strcmp(c->node.db.sslmode, "verify-ca") == 0 ||
                       strcmp(c->node.db.sslmode, "verify-full") == 0))
        rootcert = c->cluster.tls_ca;
    snprintf(app, sizeof(app), "mfa-node-%s", appconf_local(c)->id);
    if (append_kv(db->extra, sizeof(db->extra), "application_name", app) < 0 ||
        append_kv(db->extra, sizeof(db->extra), "sslmode", c->node.db.sslmode) < 0 ||
        append_kv(db->extra, sizeof(db->extra), "password", password) < 0 ||
        (*rootcert && append_kv(db->extra, sizeof(db->extra), "sslrootcert", rootcert) < 0))
        err_set(err, "node.db: settings too long");
    else
        rc = 0;
    secret_wipe(derived, sizeof(derived));
    return rc;
}

static void follow_primary(struct nodedb *db, const char *addr, int port);

/* What the replicator said (primary.h); the probe's word stands in while it is silent. */
static void on_replicator(void *arg, const struct member_conf *primary, const char *err)
{
    struct nodedb *db = arg;

    if (db->closing)
        return;
    if (err) {
        if (db->source != NODEDB_SOURCE_REPLICATOR)
            return;
        log_notice("db.primary_source from=replicator to=database err=%s", err);
        db->source = NODEDB_SOURCE_DATABASE;
        if (db->probe_said)
            follow_primary(db, db->probe_addr, db->probe_port);
        return;
    }
    if (db->source != NODEDB_SOURCE_REPLICATOR) {
        log_notice("db.primary_source from=database to=replicator");
        db->source = NODEDB_SOURCE_REPLICATOR;
    }
    /* A primary that is this member is its local database: the same address and port. */
    if (primary)
        follow_primary(db, primary->address, primary->ports.postgres);
    else
        follow_primary(db, "", 0);
}

struct nodedb *nodedb_new(struct event_base *base, const struct appconf *conf,
                          const struct keyring *kr, char **err)
{
    const struct member_conf *me = appconf_local(conf);
    struct nodedb *db = calloc(1, sizeof(*db));
    char *werr = NULL;

    if (!db) {
        err_set(err, "out of memory");
        return NULL;
    }
    db->base = base;
    db->conf = conf;
    if (set_extra(db, kr, err) < 0)
        goto fail;
    db->pool = conf->node.db.connections;
    for (int i = 0; i < db->pool; i++) {
        db->local[i] = connect_to(db, me->address, me->ports.postgres, false, err);
        if (!db->local[i])
            goto fail;
    }
    db->status.replay_lag_s = -1;
    db->status.lag_bytes = -1;
    db->status.schema_version = -1;
    db->watch = primary_watch_new(base, conf, on_replicator, db, &werr);
    if (!db->watch)
        log_notice("db.primary_source replicator=off reason=%s", werr);
    free(werr);
    nodedb_tick(db);
    nodedb_poll_replicator(db);
    return db;
fail:
    nodedb_free(db);
    return NULL;
}

void nodedb_free(struct nodedb *db)
{
    if (!db)
        return;
    db->closing = true;
    primary_watch_free(db->watch);
    if (db->on_primary)
        db->on_primary(db->on_primary_arg, NULL);
    free_pool(db->marks, db->pool);
    free_pool(db->primary, db->pool);
    free_pool(db->local, db->pool);
    secret_wipe(db->extra, sizeof(db->extra));
    free(db);
}

int nodedb_read(struct nodedb *db, const char *sql, int nparams, const char *const *params,
                pgconn_cb cb, void *arg, char **err)
{
    if (db->closing)
        return err_set(err, "shutting down");
    return pgconn_query(pick(db, db->local), sql, nparams, params, PGCONN_SYNC_DEFAULT, 0, cb, arg,
                        err);
}

bool nodedb_writable(const struct nodedb *db)
{
    return !db->closing && db->primary[0] && pgconn_ready(db->primary[0]);
}

int nodedb_write(struct nodedb *db, const char *sql, int nparams, const char *const *params,
                 enum pgconn_sync sync, pgconn_cb cb, void *arg, char **err)
{
    if (!nodedb_writable(db))
        return NODEDB_READ_ONLY;
    if (sync == PGCONN_SYNC_OFF) /* the session's own setting: no transaction around it */
        return pgconn_query(pick_marks(db, nparams, params), sql, nparams, params,
                            PGCONN_SYNC_DEFAULT, 0, cb, arg, err);
    return pgconn_query(pick(db, db->primary), sql, nparams, params, sync, 0, cb, arg, err);
}

bool nodedb_error_is_read_only(const char *err)
{
    char state[6];

    if (!err)
        return false;
    /* A server error names its SQLSTATE; anything else is the connection. */
    if (!pgconn_err_sqlstate(err, state))
        return true;
    /* 25006 read_only_sql_transaction; 57P01-03 shutdown; 08xxx connection. */
    return strcmp(state, "25006") == 0 || strncmp(state, "57P0", 4) == 0 ||
           strncmp(state, "08", 2) == 0;
}

/* Points the write connection at <addr>:<port>, or nowhere for "". */
static void follow_primary(struct nodedb *db, const char *addr, int port)
{
    char *err = NULL;

    if (strcmp(addr, db->primary_addr) == 0 && port == db->primary_port &&
        (db->primary[0] || !*addr))
        return;
    if (*db->primary_addr || *addr)
        log_notice("db.primary from=%s:%d to=%s:%d", *db->primary_addr ? db->primary_addr : "-",
                   db->primary_port, *addr ? addr : "-", port);
    if (db->on_primary)
        db->on_primary(db->on_primary_arg, NULL);
    free_pool(db->marks, db->pool);
    free_pool(db->primary, db->pool);
    snprintf(db->primary_addr, sizeof(db->primary_addr), "%s", addr);
    db->primary_port = port;
    if (!*addr)
        return;
    for (int c = 0; c < 2 * db->pool; c++) {
        bool marks = c >= db->pool;
        struct pgconn **slot = marks ? &db->marks[c - db->pool] : &db->primary[c];

        *slot = connect_to(db, addr, port, marks, &err);
        if (!*slot) {
            log_error("db.primary_failed addr=%s port=%d err=%s", addr, port, err);
            free(err);
            free_pool(db->marks, db->pool);
            free_pool(db->primary, db->pool);
            return;
        }
        for (size_t i = 0; i < db->nstmts; i++) {
            if (db->stmts[i].write && pgconn_prepare(*slot, db->stmts[i].name, db->stmts[i].sql,
                                                     db->stmts[i].nparams, &err) < 0) {
                log_error("db.prepare_failed name=%s err=%s", db->stmts[i].name, err);
                mfa_free(err);
            }
        }
    }
    if (db->on_primary)
        db->on_primary(db->on_primary_arg, db->primary[0]);
}

int nodedb_prepare(struct nodedb *db, bool write, const char *name, const char *sql, int nparams,
                   char **err)
{
    struct pgconn **pool = write ? db->primary : db->local;

    if (db->nstmts == STMTS_MAX)
        return err_set(err, "too many prepared statements");
    for (int i = 0; i < db->pool; i++) {
        if ((pool[i] && pgconn_prepare(pool[i], name, sql, nparams, err) < 0) ||
            (write && db->marks[i] && pgconn_prepare(db->marks[i], name, sql, nparams, err) < 0))
            return -1;
    }
    db->stmts[db->nstmts++] = (struct stmt){ write, name, sql, nparams };
    return 0;
}

int nodedb_read_prepared(struct nodedb *db, const char *name, int nparams,
                         const char *const *params, pgconn_cb cb, void *arg, char **err)
{
    if (db->closing)
        return err_set(err, "shutting down");
    return pgconn_exec_prepared(pick(db, db->local), name, nparams, params, PGCONN_SYNC_DEFAULT, 0,
                                cb, arg, err);
}

int nodedb_write_prepared(struct nodedb *db, const char *name, int nparams,
                          const char *const *params, enum pgconn_sync sync, pgconn_cb cb, void *arg,
                          char **err)
{
    if (!nodedb_writable(db))
        return NODEDB_READ_ONLY;
    if (sync == PGCONN_SYNC_OFF)
        return pgconn_exec_prepared(pick_marks(db, nparams, params), name, nparams, params,
                                    PGCONN_SYNC_DEFAULT, 0, cb, arg, err);
    return pgconn_exec_prepared(pick(db, db->primary), name, nparams, params, sync, 0, cb, arg,
                                err);
}

struct pgconn *nodedb_primary(const struct nodedb *db)
{
    return db->primary[0];
}

void nodedb_on_primary(struct nodedb *db, void (*fn)(void *arg, struct pgconn *primary), void *arg)
{
    db->on_primary = fn;
    db->on_primary_arg = arg;
    fn(arg, db->primary[0]);
}

/* Logs a change of the schema version, at error level when this build cannot work with it. */
static void schema_changed(int from, int to)
{
    if (schema_compatible(to))
        log_notice("db.schema version=%d from=%d compatible=true min=%d max=%d", to, from,
                   schema_min(), schema_max());
    else
        log_error("db.schema version=%d from=%d compatible=false min=%d max=%d: this release "
                  "does not work with the database's schema; the node is not ready",
                  to, from, schema_min(), schema_max());
}

static void schema_done(void *arg, const PGresult *res, const char *err)
{
    struct nodedb *db = arg;
    char state[6];
    int version;

    db->schema_reading = false;
    if (err) {
        /* 42P01 undefined_table: no migration has run yet (a cluster being made). */
        if (!pgconn_err_sqlstate(err, state) || strcmp(state, "42P01") != 0) {
            log_warn("db.schema_read_failed err=%s", err);
            return;
        }
        version = 0;
    } else {
        version = atoi(PQgetvalue(res, 0, 0));
    }
    if (version != db->status.schema_version)
        schema_changed(db->status.schema_version, version);
    db->status.schema_version = version;
}

/* Reads the local schema version unless a read is under way. */
static void schema_read(struct nodedb *db)
{
    static const char sql[] = "SELECT coalesce(max(version), 0) FROM schema_version";
    char *err = NULL;

    if (db->schema_reading || db->closing)
        return;
    db->schema_read_ms = clock_mono_ms();
    if (pgconn_query(db->local[0], sql, 0, NULL, PGCONN_SYNC_DEFAULT, PROBE_TIMEOUT_MS, schema_done,
                     db, &err) < 0) {
        log_error("db.schema_read_failed err=%s", err);
        free(err);
        return;
    }
    db->schema_reading = true;
}

/*
 * How long after the last read the schema version is read again: on every
 * tick while this node cannot work with it (a cluster being made gets its
 * migrations a moment after the node starts), else every NODEDB_SCHEMA_POLL_MS.
 */
static uint64_t schema_poll_ms(const struct nodedb *db)
{
    int v = db->status.schema_version;

    return v >= 0 && schema_compatible(v) ? NODEDB_SCHEMA_POLL_MS : 0;
}

static void probe_done(void *arg, const PGresult *res, const char *err)
{
    struct nodedb *db = arg;
    struct nodedb_status *st = &db->status;
    bool recovery;

    db->probing = false;
    if (err) {
        if (st->local_up)
            log_warn("db.local_down err=%s", err);
        st->local_up = false;
        return;
    }
    if (!st->local_up) {
        log_notice("db.local_up");
        schema_read(db);
    }
    st->local_up = true;
    db->last_probe_ok_ms = clock_mono_ms();
    recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    st->role = recovery ? NODEDB_STANDBY : NODEDB_PRIMARY;
    st->replay_lag_s = PQgetisnull(res, 0, 3) ? -1 : atof(PQgetvalue(res, 0, 3));
    st->lag_bytes = PQgetisnull(res, 0, 4) ? -1 : atoll(PQgetvalue(res, 0, 4));
    st->clock_offset_s = atof(PQgetvalue(res, 0, 5)) - (double)clock_wall_ms() / 1000.0;
    if (!recovery) {
        const struct member_conf *me = appconf_local(db->conf);

        snprintf(db->probe_addr, sizeof(db->probe_addr), "%s", me->address);
        db->probe_port = me->ports.postgres;
    } else if (!PQgetisnull(res, 0, 1)) {
        snprintf(db->probe_addr, sizeof(db->probe_addr), "%s", PQgetvalue(res, 0, 1));
        db->probe_port = atoi(PQgetvalue(res, 0, 2));
    } else {
        db->probe_addr[0] = '\0';
        db->probe_port = 0;
    }
    db->probe_said = true;
    if (db->source == NODEDB_SOURCE_DATABASE)
        follow_primary(db, db->probe_addr, db->probe_port);
}

void nodedb_tick(struct nodedb *db)
{
    static const char probe[] =
        "SELECT pg_is_in_recovery(),"
        " (SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'),"
        " (SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'),"
        " CASE WHEN pg_is_in_recovery() THEN"
        "   extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END,"
        " CASE WHEN pg_is_in_recovery() THEN"
        "   pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END,"
        " extract(epoch FROM clock_timestamp())";
    char *err = NULL;

    if (db->last_probe_ok_ms && clock_mono_ms() - db->last_probe_ok_ms > LOCAL_STALE_MS)
        db->status.local_up = false;
    if (db->status.local_up && clock_mono_ms() - db->schema_read_ms >= schema_poll_ms(db))
        schema_read(db);
    if (db->probing)
        return;
    if (pgconn_query(db->local[0], probe, 0, NULL, PGCONN_SYNC_DEFAULT, PROBE_TIMEOUT_MS,
                     probe_done, db, &err) < 0) {
        log_error("db.probe_failed err=%s", err);
        free(err);
        return;
    }
    db->probing = true;
}

void nodedb_poll_replicator(struct nodedb *db)
{
    if (db->watch && !db->closing)
        primary_watch_poll(db->watch);
}

void nodedb_get_status(const struct nodedb *db, struct nodedb_status *out)
{
    *out = db->status;
    out->source = db->source;
    out->primary_up = nodedb_writable(db);
    if (*db->primary_addr)
        snprintf(out->primary, sizeof(out->primary), "%s:%d", db->primary_addr, db->primary_port);
    else
        out->primary[0] = '\0';
}

/* PostgreSQL type OIDs (pg_type.h) that keep their JSON type. */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_JSON = 114,
    OID_JSONB = 3802,
};

json_t *nodedb_row_json(const PGresult *res, int row)
{
    json_t *obj = json_object();

    for (int col = 0; obj && col < PQnfields(res); col++) {
        const char *v = PQgetvalue(res, row, col);
        json_t *j;

        if (PQgetisnull(res, row, col)) {
            j = json_null();
        } else {
            switch (PQftype(res, col)) {
            case OID_BOOL:
                j = json_boolean(v[0] == 't');
                break;
            case OID_INT2:
            case OID_INT4:
            case OID_INT8:
                j = json_integer(strtoll(v, NULL, 10));
                break;
            case OID_JSON:
            case OID_JSONB:
                j = json_loads(v, JSON_DECODE_ANY, NULL);
                break;
            default:
                j = json_string(v);
            }
        }
        json_object_set_new(obj, PQfname(res, col), j ? j : json_null());
    }
    return obj;
}

json_t *nodedb_rows_json(const PGresult *res)
{
    json_t *arr = json_array();

    for (int row = 0; arr && row < PQntuples(res); row++)
        json_array_append_new(arr, nodedb_row_json(res, row));
    return arr;
}
