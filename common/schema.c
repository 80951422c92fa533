/*
 * Applies the numbered migrations embedded from the common/schema folder.
 *
 * The version lives in the table schema_version that migration 1 creates.
 * Every migration runs as BEGIN; advisory lock; re-read the version; the
 * migration's SQL; its schema_version row; COMMIT — so concurrent callers
 * serialize, and a failure rolls back the migration and its row together.
 */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"

int schema_latest(void)
{
    return schema_migration_count;
}

int schema_min(void)
{
    return schema_latest() - 1;
}

int schema_max(void)
{
    return schema_latest() + 1;
}

bool schema_compatible(int db_version)
{
    return db_version >= schema_min() && db_version <= schema_max();
}

/* Runs <sql>; returns 0 when it succeeded, -1 with *err naming <what>. */
static int exec_ok(PGconn *conn, const char *sql, const char *what, char **err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = err_set(err, "%s: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/* Runs a one-value query; returns its integer, or -1 with *err. */
static int query_int(PGconn *conn, const char *sql, int *out, char **err)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 1)
        rc = err_set(err, "reading the schema version: %s", PQresultErrorMessage(res));
    else
        *out = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

int schema_version(PGconn *conn, int *version, char **err)
{
    int exists = 0;

    /*
     * Two statements: a query naming a missing table fails to plan at all.
     * pg_tables is read with this statement's snapshot, so a caller that
     * waited for the lock sees a table another one just committed (a
     * to_regclass() lookup could answer from a stale catalog cache).
     */
    if (query_int(conn,
                  "SELECT count(*) FROM pg_tables "
                  "WHERE schemaname = current_schema() AND tablename = 'schema_version'",
                  &exists, err) < 0)
        return -1;
    *version = 0;
    if (!exists)
        return 0;
    return query_int(conn, "SELECT coalesce(max(version), 0) FROM schema_version", version, err);
}

/* Applies migration <m> if the database, read under the lock, still needs it. */
static int apply_one(PGconn *conn, const struct schema_migration *m, bool *applied, char **err)
{
    char what[160], ver[16];
    const char *params[2] = { ver, m->name };
    PGresult *res;
    int current;

    *applied = false;
    snprintf(what, sizeof(what), "migration %s", m->name);
    snprintf(ver, sizeof(ver), "%d", m->version);
    if (exec_ok(conn, "BEGIN; SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", what, err) < 0)
        goto fail;
    if (schema_version(conn, &current, err) < 0)
        goto fail;
    if (current >= m->version)
        return exec_ok(conn, "COMMIT", what, err);
    if (current != m->version - 1) {
        err_set(err, "%s: the database is at version %d, expected %d", what, current,
                m->version - 1);
        goto fail;
    }
    if (exec_ok(conn, m->sql, what, err) < 0)
        goto fail;
    res = PQexecParams(conn, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", 2, NULL,
                       params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        err_set(err, "%s: recording it: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        goto fail;
    }
    PQclear(res);
    if (exec_ok(conn, "COMMIT", what, err) < 0)
        goto fail;
    *applied = true;
    return 0;
fail:
    PQclear(PQexec(conn, "ROLLBACK"));
    return -1;
}

int schema_apply(PGconn *conn, int *version, char **err)
{
    int current, n = 0;

    if (schema_version(conn, &current, err) < 0)
        return -1;
    for (int i = current; i < schema_migration_count; i++) {
        bool applied;

        if (apply_one(conn, &schema_migrations[i], &applied, err) < 0)
            return -1;
        n += applied;
    }
    if (schema_version(conn, version, err) < 0)
        return -1;
    return n;
}
