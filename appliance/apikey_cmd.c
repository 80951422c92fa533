/*
 * mfactl apikey create; see apikey_cmd.h.
 */
#include "apikey_cmd.h"

#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appconf.h"
#include "daemon.h"
#include "errmsg.h"
#include "secrets.h"

#define NAME_MAX_BYTES 128        /* api_keys.name, as the admin API takes it */
#define PG_SUPERUSER   "postgres" /* the superuser mfa-replicator makes, peer-mapped */

static const char usage_text[] =
    "usage: mfactl apikey create NAME [--scope admin|auth]\n"
    "\n"
    "Makes an API key in the cluster's database through this member's local\n"
    "PostgreSQL, which must be the primary; run it there as root. The key is\n"
    "printed once (with --json: {\"name\", \"scope\", \"key\", \"prefix\"}); only its\n"
    "SHA-256 is stored. NAME: 1 to 128 bytes, for the audit log. --scope: admin\n"
    "(default: everything) or auth (sign-ins only).\n"
    "\n"
    "exit codes: 0 made, 1 failed, 2 bad usage or configuration, 3 refused (this\n"
    "member is not the primary), 4 the local database did not answer\n";

/* Sets *err to libpq's message for <conn>, without its line break. Returns -1. */
static int pq_err(PGconn *conn, const char *what, char **err)
{
    const char *m = PQerrorMessage(conn);
    int len = (int)strcspn(m, "\n");

    return err_set(err, "%s%.*s", what, len, m);
}

/* Connects to the local PostgreSQL as its superuser, over the socket in run_dir. */
static PGconn *connect_local(const struct appconf *c, char **err)
{
    char port[8];
    const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
    const char *values[] = {
        c->appliance.run_dir, port, c->node.db.name, PG_SUPERUSER, "10", NULL
    };
    PGconn *conn;

    snprintf(port, sizeof(port), "%d", appconf_local(c)->ports.postgres);
    conn = PQconnectdbParams(keys, values, 0);
    if (!conn) {
        err_set(err, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        pq_err(conn, "cannot reach this member's PostgreSQL: ", err);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* 1 when the local database is a standby, 0 when it takes writes, -1 on error. */
static int is_standby(PGconn *conn, char **err)
{
    PGresult *res = PQexec(conn, "SELECT pg_is_in_recovery()");
    int rc = -1;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    else
        pq_err(conn, "", err);
    PQclear(res);
    return rc;
}

/*
 * Makes the rest of the session the node's role with a fixed search_path:
 * the tables belong to that role, and a superuser writing into them would
 * run whatever triggers it put there with a superuser's rights.
 */
static int become_owner(PGconn *conn, const struct appconf *c, char **err)
{
    char *role = PQescapeIdentifier(conn, c->node.db.user, strlen(c->node.db.user));
    char sql[300];
    PGresult *res;
    int rc = 0;

    if (!role)
        return pq_err(conn, "", err);
    snprintf(sql, sizeof(sql), "SET search_path = pg_catalog, public; SET ROLE %s", role);
    PQfreemem(role);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = pq_err(conn, "cannot take the node's database role: ", err);
    PQclear(res);
    return rc;
}

static int insert_key(PGconn *conn, const char *member, const char *name, const char *scope,
                      const char *key, char prefix[13], char **err)
{
    static const char sql[] =
        "WITH k AS (INSERT INTO public.api_keys (name, scope, key_hash, prefix, created_by)"
        "  VALUES ($1, $2, $3, $4, 'mfactl') RETURNING id, name, scope),"
        " a AS (INSERT INTO public.admin_audit (actor, node_id, action, target, detail)"
        "  SELECT 'mfactl', $5, 'api_key.create', k.name,"
        "         jsonb_build_object('id', k.id, 'scope', k.scope) FROM k)"
        " SELECT id FROM k";
    char hash[65];
    const char *params[5] = { name, scope, hash, prefix, member };
    PGresult *res;
    int rc = 0;

    apikey_hash(key, hash);
    snprintf(prefix, 13, "%.12s", key);
    res = PQexecParams(conn, sql, 5, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = pq_err(conn, "", err);
    PQclear(res);
    return rc;
}

static int create(const struct appconf *c, bool json, const char *name, const char *scope)
{
    char key[APIKEY_MAX], prefix[13], *err = NULL;
    PGconn *conn;
    int rc = 1, standby;

    if (daemon_drop_root(c->appliance.user, &err) < 0) {
        fprintf(stderr, "mfactl apikey: %s\n", err);
        free(err);
        return 1;
    }
    conn = connect_local(c, &err);
    if (!conn) {
        fprintf(stderr, "mfactl apikey: %s\n", err);
        free(err);
        return 4;
    }
    standby = is_standby(conn, &err);
    if (standby != 0) {
        if (standby > 0)
            fprintf(stderr,
                    "mfactl apikey: member %s is a standby; run this on the primary "
                    "(mfactl status shows which member it is)\n",
                    appconf_local(c)->id);
        else
            fprintf(stderr, "mfactl apikey: %s\n", err);
        rc = standby > 0 ? 3 : 1;
        goto done;
    }
    if (become_owner(conn, c, &err) < 0) {
        fprintf(stderr, "mfactl apikey: %s\n", err);
        goto done;
    }
    if (apikey_new(key, sizeof(key)) < 0) {
        fprintf(stderr, "mfactl apikey: no random numbers\n");
        goto done;
    }
    if (insert_key(conn, appconf_local(c)->id, name, scope, key, prefix, &err) < 0) {
        fprintf(stderr, "mfactl apikey: the key was not stored: %s\n", err);
        goto done;
    }
    if (json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "scope", scope, "key", key,
                                "prefix", prefix);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;

        if (text)
            printf("%s\n", text);
        secret_wipe(text, text ? strlen(text) : 0);
        json_decref(out);
        if (!text) {
            fprintf(stderr,
                    "mfactl apikey: out of memory: key \"%s\" (%s...) was stored but not shown; "
                    "revoke it\n",
                    name, prefix);
            goto done;
        }
        free(text);
    } else {
        printf("%s\n", key);
        fprintf(stderr,
                "mfactl apikey: made %s key \"%s\" (%s...). It is shown only now: keep it in a "
                "password manager or your application's secret store.\n",
                scope, name, prefix);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr,
                "mfactl apikey: the key \"%s\" (%s...) was stored but could not be written out; "
                "revoke it\n",
                name, prefix);
        goto done;
    }
    rc = 0;
done:
    secret_wipe(key, sizeof(key));
    free(err);
    PQfinish(conn);
    return rc;
}

int apikey_cmd(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "scope", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *scope = "admin", *name;
    struct appconf conf = { 0 };
    char *err = NULL;
    int ch, rc;

    optind = 0; /* glibc: start afresh on this argv */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            scope = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            fprintf(stderr, "mfactl apikey: bad option %s\n%s", argv[optind - 1], usage_text);
            return 2;
        }
    }
    if (argc - optind != 2 || strcmp(argv[optind], "create") != 0) {
        fputs(usage_text, stderr);
        return 2;
    }
    name = argv[optind + 1];
    if (!*name || strlen(name) > NAME_MAX_BYTES) {
        fprintf(stderr, "mfactl apikey: NAME must be 1 to %d bytes\n", NAME_MAX_BYTES);
        return 2;
    }
    if (strcmp(scope, "admin") != 0 && strcmp(scope, "auth") != 0) {
        fprintf(stderr, "mfactl apikey: --scope must be admin or auth\n");
        return 2;
    }
    if (appconf_load(config, &conf, NULL, NULL, &err) < 0) {
        fprintf(stderr, "mfactl: %s\n", err);
        free(err);
        return 2;
    }
    rc = create(&conf, json, name, scope);
    appconf_free(&conf);
    return rc;
}
