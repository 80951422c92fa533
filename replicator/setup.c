/*
 * What a primary must hold, made idempotently on a worker thread (blocking
 * libpq, off the loop) when the cluster is created and each time a member
 * becomes primary: the replication and rewind roles and the node's role,
 * all with passwords derived from the key file (db_password()), the node's
 * database owned by the node's role, the schema migrations run as that role,
 * a replication slot per other member and none for a member that left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "daemon.h"
#include "errmsg.h"
#include "log.h"
#include "repl.h"
#include "schema.h"
#include "secrets.h"
#include "worker.h"

struct setup_job {
    struct repl *r;
    void (*done)(struct repl *r, const char *err);
    char conninfo[512];
    char dbname[64], dbuser[64];
    char repl_pw[DB_PASSWORD_MAX], rewind_pw[DB_PASSWORD_MAX], node_pw[DB_PASSWORD_MAX];
    char slots[1024];
    char *error;
    int migrated, version;
};

void setup_slot_list(const struct repl *r, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < r->npeers; i++) {
        const char *role = peer_str(&r->peers[i], "role");
        char slot[40];

        if (role && strcmp(role, "witness") == 0)
            continue;
        pgsetup_slot_name(r->peers[i].id, slot, sizeof(slot));
        int n = snprintf(buf + len, size - len, "%s%s", len ? "," : "", slot);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
}

/* Runs <sql>; an error names <what>, never the statement (it may hold a secret). */
static int run(PGconn *conn, const char *what, const char *sql, char **err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = err_set(err, "%s: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/*
 * CREATE ROLE if missing, then ALTER ROLE ... <attrs> PASSWORD with the
 * SCRAM verifier computed here: the password itself never reaches the
 * server (nor its log, should the statement fail).
 */
static int ensure_role(PGconn *conn, const char *name, const char *attrs, const char *pw,
                       char **err)
{
    char sql[600];
    char *ident = PQescapeIdentifier(conn, name, strlen(name));
    char *lit = PQescapeLiteral(conn, name, strlen(name));
    char *verifier = PQencryptPasswordConn(conn, pw, name, "scram-sha-256");
    char *pwlit = verifier ? PQescapeLiteral(conn, verifier, strlen(verifier)) : NULL;
    int rc = -1;

    if (!ident || !lit || !pwlit) {
        err_set(err, "escaping role %s: %s", name, PQerrorMessage(conn));
        goto out;
    }
    snprintf(sql, sizeof(sql),
             "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN "
             "CREATE ROLE %s; END IF; END$$",
             lit, ident);
    if (run(conn, "creating a role", sql, err) < 0)
        goto out;
    snprintf(sql, sizeof(sql), "ALTER ROLE %s WITH %s PASSWORD %s", ident, attrs, pwlit);
    rc = run(conn, "setting a role's password", sql, err);
    memset(sql, 0, sizeof(sql));
out:
    PQfreemem(ident);
    PQfreemem(lit);
    if (pwlit) {
        memset(pwlit, 0, strlen(pwlit));
        PQfreemem(pwlit);
    }
    if (verifier) {
        memset(verifier, 0, strlen(verifier));
        PQfreemem(verifier);
    }
    return rc;
}

static int ensure_database(PGconn *conn, const char *db, const char *owner, char **err)
{
    const char *params[1] = { db };
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    int exists = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    char sql[300];
    int rc;

    PQclear(res);
    if (exists < 0)
        return err_set(err, "looking up database %s: %s", db, PQerrorMessage(conn));
    if (exists)
        return 0;
    char *dbi = PQescapeIdentifier(conn, db, strlen(db));
    char *owi = PQescapeIdentifier(conn, owner, strlen(owner));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s", dbi ? dbi : "\"\"",
             owi ? owi : "\"\"");
    PQfreemem(dbi);
    PQfreemem(owi);
    rc = run(conn, "creating the database", sql, err);
    return rc;
}

static int ensure_slots(PGconn *conn, const char *slots, char **err)
{
    const char *params[1] = { slots };
    PGresult *res = PQexecParams(conn,
                                 "SELECT count(pg_create_physical_replication_slot(s, true))"
                                 " FROM unnest(string_to_array($1, ',')) s"
                                 " WHERE s NOT IN (SELECT slot_name FROM pg_replication_slots)",
                                 1, NULL, params, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = err_set(err, "creating replication slots: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (rc < 0)
        return -1;
    /* A member that left the cluster must not keep WAL on the primary. */
    res = PQexecParams(conn,
                       "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots"
                       " WHERE slot_name LIKE 'member\\_%' AND NOT active"
                       " AND slot_name <> ALL (string_to_array($1, ','))",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = err_set(err, "dropping old replication slots: %s", PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

static void setup_work(void *arg)
{
    struct setup_job *j = arg;
    char conninfo[700];
    PGconn *conn = PQconnectdb(j->conninfo);
    char *err = NULL;

    if (PQstatus(conn) != CONNECTION_OK) {
        err_set(&err, "connecting to the local database: %s", PQerrorMessage(conn));
        goto out;
    }
    if (ensure_role(conn, PG_ROLE_REPLICATION, "REPLICATION LOGIN", j->repl_pw, &err) < 0 ||
        ensure_role(conn, PG_ROLE_REWIND, "LOGIN", j->rewind_pw, &err) < 0 ||
        ensure_role(conn, j->dbuser, "LOGIN", j->node_pw, &err) < 0)
        goto out;
    /* pg_rewind's needs as a normal login (its documentation lists these four). */
    if (run(conn, "granting pg_rewind's functions",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean),"
            " pg_catalog.pg_stat_file(text, boolean), pg_catalog.pg_read_binary_file(text),"
            " pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO " PG_ROLE_REWIND,
            &err) < 0)
        goto out;
    {
        char sql[200];
        char *ui = PQescapeIdentifier(conn, j->dbuser, strlen(j->dbuser));
        /* pg_monitor: the node reads pg_stat_wal_receiver when its replicator is away. */
        snprintf(sql, sizeof(sql), "GRANT pg_monitor TO %s", ui ? ui : "\"\"");
        PQfreemem(ui);
        if (run(conn, "granting pg_monitor", sql, &err) < 0)
            goto out;
    }
    if (ensure_database(conn, j->dbname, j->dbuser, &err) < 0 ||
        ensure_slots(conn, j->slots, &err) < 0)
        goto out;
    PQfinish(conn);

    /* The migrations, as the node's role so that it owns what they make. */
    snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", j->conninfo, j->dbname);
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        err_set(&err, "connecting to database %s: %s", j->dbname, PQerrorMessage(conn));
        goto out;
    }
    {
        char sql[200];
        char *ui = PQescapeIdentifier(conn, j->dbuser, strlen(j->dbuser));
        snprintf(sql, sizeof(sql), "SET ROLE %s", ui ? ui : "\"\"");
        PQfreemem(ui);
        if (run(conn, "SET ROLE", sql, &err) < 0)
            goto out;
    }
    j->migrated = schema_apply(conn, &j->version, &err);
out:
    PQfinish(conn);
    j->error = err;
}

static void setup_done(void *arg)
{
    struct setup_job *j = arg;

    if (!j->error)
        log_notice("setup.done migrations=%d schema_version=%d", j->migrated, j->version);
    j->r->setup_running = false;
    j->r->setup_ok = !j->error;
    if (j->error)
        j->r->setup_retry_s = (double)clock_mono_ms() / 1000.0 + 10;
    j->done(j->r, j->error);
    free(j->error);
    secret_wipe(j, sizeof(*j));
    free(j);
}

int setup_primary(struct repl *r, void (*done)(struct repl *r, const char *err), char **err)
{
    const struct appconf *c = daemon_conf(r->d);
    struct setup_job *j = calloc(1, sizeof(*j));

    if (!j)
        return err_set(err, "out of memory");
    j->r = r;
    j->done = done;
    snprintf(j->conninfo, sizeof(j->conninfo),
             "host='%s' port=%d user=" PG_SUPERUSER " dbname=postgres connect_timeout=10 "
             "application_name=mfa-replicator-setup "
             "options='-c statement_timeout=60000 -c lock_timeout=30000'",
             r->paths.socket_dir, appconf_local(c)->ports.postgres);
    snprintf(j->dbname, sizeof(j->dbname), "%s", c->node.db.name);
    snprintf(j->dbuser, sizeof(j->dbuser), "%s", c->node.db.user);
    setup_slot_list(r, j->slots, sizeof(j->slots));
    r->setup_running = true;
    if (db_password(&r->keys, PG_ROLE_REPLICATION, j->repl_pw, sizeof(j->repl_pw), err) < 0 ||
        db_password(&r->keys, PG_ROLE_REWIND, j->rewind_pw, sizeof(j->rewind_pw), err) < 0 ||
        db_password(&r->keys, c->node.db.user, j->node_pw, sizeof(j->node_pw), err) < 0 ||
        worker_submit(r->workers, setup_work, setup_done, j) < 0) {
        r->setup_retry_s = (double)clock_mono_ms() / 1000.0 + 10;
        r->setup_running = false;
        if (err && !*err)
            err_set(err, "cannot queue the setup");
        secret_wipe(j, sizeof(*j));
        free(j);
        return -1;
    }
    return 0;
}
