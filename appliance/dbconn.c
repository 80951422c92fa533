/*
 * mfactl's connections to the cluster's PostgreSQL; see dbconn.h.
 */
#include "dbconn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_plan.h"
#include "ctl.h"
#include "errmsg.h"
#include "pgconn.h"
#include "secrets.h"

/* A host that vanishes mid-command fails it after this long, not never. */
#define DBCONN_TCP_TIMEOUT_MS 15000

int dbconn_error(PGconn *conn, const char *what, char **err)
{
    const char *m = conn ? PQerrorMessage(conn) : "out of memory";

    return err_set(err, "%s%s%.*s", what, *what ? ": " : "", (int)strcspn(m, "\n"), m);
}

int dbconn_result_error(const PGresult *res, const char *what, char **err)
{
    const char *m = res ? PQresultErrorMessage(res) : "out of memory";

    return err_set(err, "%s%s%.*s", what, *what ? ": " : "", (int)strcspn(m, "\n"), m);
}

/* ---- which member ---- */

static bool answers_with_data(const struct plan_member *m)
{
    return m->reachable && (m->role == PLAN_ROLE_PRIMARY || m->role == PLAN_ROLE_STANDBY);
}

static void fill_target(const struct appconf *c, size_t i, const struct plan_member *m,
                        struct dbconn_target *t)
{
    const struct member_conf *mc = &c->cluster.members[i];

    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", mc->id);
    snprintf(t->address, sizeof(t->address), "%s", mc->address);
    t->port = mc->ports.postgres;
    t->primary = m->role == PLAN_ROLE_PRIMARY && m->writable;
}

/* The index <want> asks for among the answers <m>, or -1. */
static int pick(const struct appconf *c, const struct plan_member *m, enum dbconn_want want)
{
    int primary = -1, fenced = -1, best = -1, local = -1;

    for (size_t i = 0; i < c->cluster.nmembers; i++) {
        if (!answers_with_data(&m[i]))
            continue;
        if (m[i].role == PLAN_ROLE_PRIMARY && m[i].writable)
            primary = (int)i;
        /* fenced or read-only: it still holds every acknowledged write */
        if (m[i].role == PLAN_ROLE_PRIMARY && !m[i].writable)
            fenced = (int)i;
        if (strcmp(c->cluster.members[i].id, c->appliance.member) == 0)
            local = (int)i;
        if (m[i].role == PLAN_ROLE_STANDBY &&
            (best < 0 || !m[best].has_pos ||
             (m[i].has_pos && (m[i].timeline > m[best].timeline ||
                               (m[i].timeline == m[best].timeline && m[i].lsn > m[best].lsn)))))
            best = (int)i;
    }
    switch (want) {
    case DBCONN_PRIMARY:
        return primary;
    case DBCONN_READ:
        return local >= 0 ? local : primary >= 0 ? primary : best;
    case DBCONN_BACKUP:
        return primary >= 0 ? primary : fenced >= 0 ? fenced : best;
    }
    return -1;
}

int dbconn_find(const char *config, enum dbconn_want want, const char *from,
                struct dbconn_target *t, char **err)
{
    struct plan_member m[APPCONF_MAX_MEMBERS];
    struct ctl *ctl = ctl_open(config, err);
    const struct appconf *c;
    int idx, rc = DBCONN_EXIT_OK;

    if (!ctl)
        return DBCONN_EXIT_USAGE;
    c = ctl_conf(ctl);
    memset(m, 0, sizeof(m));
    if (from && ctl_member_index(ctl, from) < 0) {
        err_set(err, "no member \"%s\" in cluster.members", from);
        rc = DBCONN_EXIT_USAGE;
        goto done;
    }
    ctl_fetch(ctl, m, NULL, false);
    if (from) {
        idx = ctl_member_index(ctl, from);
        if (!answers_with_data(&m[idx])) {
            err_set(err, "member %s's database is not available (%s)", from,
                    m[idx].reachable ? m[idx].role_name : m[idx].why);
            rc = DBCONN_EXIT_NOBODY;
            goto done;
        }
    } else {
        idx = pick(c, m, want);
        if (idx < 0 && want == DBCONN_PRIMARY) {
            bool any = false;

            for (size_t i = 0; i < c->cluster.nmembers; i++)
                any = any || answers_with_data(&m[i]);
            err_set(err, "%s (read_only): writes need one; see mfactl status",
                    any ? "no member is a writable primary" : "no member's database answers");
            rc = any ? DBCONN_EXIT_REFUSED : DBCONN_EXIT_NOBODY;
            goto done;
        }
        if (idx < 0) {
            err_set(err, "no member's database answers; see mfactl status");
            rc = DBCONN_EXIT_NOBODY;
            goto done;
        }
    }
    fill_target(c, (size_t)idx, &m[idx], t);
done:
    ctl_close(ctl);
    return rc;
}

/* ---- connecting ---- */

int dbconn_conninfo(const struct appconf *c, const struct dbconn_target *t, const char *what,
                    char *buf, size_t size, char **err)
{
    const char *rootcert = c->node.db.sslrootcert;
    char extra[1024];

    if (!*rootcert && (strcmp(c->node.db.sslmode, "verify-ca") == 0 ||
                       strcmp(c->node.db.sslmode, "verify-full") == 0))
        rootcert = c->cluster.tls_ca;
    /* pgconn_conninfo() parses <extra> and quotes it again: plain words are all it may hold. */
    if (strpbrk(what, " '\\=") || strpbrk(c->node.db.sslmode, " '\\=") || strpbrk(rootcert, " '\\"))
        return err_set(err, "node.db.sslmode or the CA path holds a space or a quote");
    snprintf(extra, sizeof(extra), "application_name=mfactl-%s sslmode=%s%s%s", what,
             c->node.db.sslmode, *rootcert ? " sslrootcert=" : "", rootcert);
    return pgconn_conninfo(buf, size, t->address, t->port, c->node.db.name, c->node.db.user, extra,
                           DBCONN_TCP_TIMEOUT_MS, err);
}

int dbconn_password(const struct appconf *c, const struct keyring *kr, char *out, size_t size,
                    char **err)
{
    if (*c->node.db.password) {
        if (strlen(c->node.db.password) >= size)
            return err_set(err, "node.db.password is too long");
        memcpy(out, c->node.db.password, strlen(c->node.db.password) + 1);
        return 0;
    }
    if (db_password(kr, c->node.db.user, out, size, err) < 0)
        return err_prefix(err, "the database password from the key file");
    return 0;
}

static int exec_ok(PGconn *conn, const char *sql, const char *what, char **err)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = dbconn_result_error(res, what, err);
    PQclear(res);
    return rc;
}

PGconn *dbconn_open(const struct appconf *c, const struct keyring *kr,
                    const struct dbconn_target *t, const char *what, char **err)
{
    char conninfo[2048], password[DB_PASSWORD_MAX + 256];
    const char *keys[] = { "dbname", "password", NULL };
    const char *values[] = { conninfo, password, NULL };
    PGconn *conn;

    if (dbconn_conninfo(c, t, what, conninfo, sizeof(conninfo), err) < 0 ||
        dbconn_password(c, kr, password, sizeof(password), err) < 0) {
        secret_wipe(password, sizeof(password));
        return NULL;
    }
    /* expand_dbname: the first "dbname" is the whole conninfo; the password comes after it. */
    conn = PQconnectdbParams(keys, values, 1);
    secret_wipe(password, sizeof(password));
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char prefix[128];

        snprintf(prefix, sizeof(prefix), "cannot reach member %s's database", t->id);
        dbconn_error(conn, prefix, err);
        PQfinish(conn);
        return NULL;
    }
    /*
     * The tables live in public, where schema_version() looks (current_schema()).
     * pg_catalog is searched first all the same, as it always is when not named.
     */
    if (exec_ok(conn, "SET search_path = public", "setting search_path", err) < 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* ---- admin writes ---- */

int dbconn_begin_write(PGconn *conn, char **err)
{
    if (exec_ok(conn, "BEGIN; SET LOCAL synchronous_commit TO remote_apply", "BEGIN", err) < 0) {
        dbconn_rollback(conn);
        return -1;
    }
    return 0;
}

int dbconn_commit(PGconn *conn, char **err)
{
    if (exec_ok(conn, "COMMIT", "COMMIT", err) < 0) {
        dbconn_rollback(conn);
        return -1;
    }
    return 0;
}

void dbconn_rollback(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}

int dbconn_audit(PGconn *conn, const struct appconf *c, const char *action, const char *target,
                 const char *detail_json, char **err)
{
    const char *params[4] = { c->appliance.member, action, target ? target : "",
                              detail_json ? detail_json : "{}" };
    PGresult *res = PQexecParams(conn,
                                 "INSERT INTO admin_audit (actor, node_id, action, target, detail)"
                                 " VALUES ('mfactl', $1, $2, $3, $4::jsonb)",
                                 4, NULL, params, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = dbconn_result_error(res, "writing the audit log", err);
    PQclear(res);
    return rc;
}

int dbconn_dispatch(const struct dbconn_subcmd *subs, size_t nsubs, const char *usage,
                    const char *config, bool json, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";

    argc--;
    argv++;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(sub, "help") == 0) {
            fputs(usage, stdout);
            return DBCONN_EXIT_OK;
        }
    }
    for (size_t i = 0; i < nsubs; i++) {
        if (strcmp(sub, subs[i].name) == 0)
            return subs[i].run(config, json, argc, argv);
    }
    fputs(usage, stderr);
    return DBCONN_EXIT_USAGE;
}
