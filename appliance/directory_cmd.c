/*
 * mfactl directory sync|status; see directory_cmd.h and docs/directory.md.
 *
 * `sync` connects to the writable primary as the node's role (dbconn.h, as
 * the token commands do) and runs directory_sync_run() there with trigger
 * "mfactl": the same code, the same cluster-wide advisory lock and the same
 * directory_syncs row as the node's scheduled sync, so the two never run at
 * once and the operator sees both in `status`. The bind password file is
 * read by the sync itself (directory.bind_password_file); nothing secret is
 * printed.
 *
 * Exit codes as every mfactl command's: 0 the sync ran (or the dry run
 * planned), 3 the guard refused it (nothing was changed), 1 it failed
 * (nothing was changed either: one transaction) or another sync was
 * running ("another directory sync is running", no row), 2 bad usage or
 * configuration (the directory not enabled), 4 no member's database answered.
 */
#include "directory_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "errmsg.h"
#include "token_priv.h"

#define CHANGES_SHOWN 200 /* changes listed by the human summary; --json: the report's 1000 */
#define STATUS_ROWS   "10"

static const char usage_text[] =
    "usage: mfactl directory sync [--dry-run] [--force] [--json]\n"
    "       mfactl directory status [--json]\n"
    "\n"
    "Users from the company directory (LDAP, Active Directory; docs/directory.md).\n"
    "Run as root on a member: the sync connects to the writable primary's database.\n"
    "\n"
    "  sync      read the directory now and create, update, disable and enable users\n"
    "            as it says, in one transaction; enrolled factors are never touched.\n"
    "            --dry-run: say what would change, change nothing; --force: apply a\n"
    "            sync that disables more than directory.max_disable_percent of the\n"
    "            directory users (an empty directory result is refused even so)\n"
    "  status    the last " STATUS_ROWS " syncs (scheduled and by mfactl), newest first\n"
    "\n"
    "exit codes: 0 done (a dry run too), 1 failed (nothing was changed) or another\n"
    "sync is running, 2 bad usage or configuration (the directory not enabled),\n"
    "3 refused (the guard, no writable primary, a database before schema 3; nothing\n"
    "was changed), 4 no member's database answered\n";

/* ---- the report, for people ---- */

static long long report_int(const json_t *report, const char *key)
{
    return json_integer_value(json_object_get(report, key));
}

static const char *report_str(const json_t *report, const char *key)
{
    const char *s = json_string_value(json_object_get(report, key));

    return s ? s : "";
}

/* A list of the report and its "<key>_more" (the items past the report's 1000). */
static size_t list_count(const json_t *report, const char *key)
{
    char more[64];

    snprintf(more, sizeof(more), "%s_more", key);
    return json_array_size(json_object_get(report, key)) +
           (size_t)json_integer_value(json_object_get(report, more));
}

static void print_changes(FILE *out, const json_t *changes, size_t total, size_t max_changes)
{
    size_t i, n = total;
    json_t *c;

    json_array_foreach(changes, i, c)
    {
        if (i == max_changes)
            break;
        fprintf(out, "  %-9s %s\n", report_str(c, "change"), report_str(c, "username"));
    }
    if (n > max_changes)
        fprintf(out, "  ... and %zu more (--json lists up to 1000)\n", n - max_changes);
}

static void print_conflicts(FILE *out, const json_t *conflicts)
{
    size_t i;
    json_t *c;

    if (json_array_size(conflicts) == 0)
        return;
    fprintf(out,
            "conflicts: %zu local user(s) with a directory user's name, left alone "
            "(directory.adopt_local makes them directory users):\n",
            json_array_size(conflicts));
    json_array_foreach(conflicts, i, c)
    {
        if (i == CHANGES_SHOWN) {
            fprintf(out, "  ... and %zu more\n", json_array_size(conflicts) - i);
            break;
        }
        fprintf(out, "  %s\n", json_string_value(c) ? json_string_value(c) : "?");
    }
}

static void print_skipped(FILE *out, const json_t *skipped)
{
    size_t i;
    json_t *s;

    if (json_array_size(skipped) == 0)
        return;
    fprintf(out, "skipped: %zu directory entr%s:\n", json_array_size(skipped),
            json_array_size(skipped) == 1 ? "y" : "ies");
    json_array_foreach(skipped, i, s)
    {
        if (i == CHANGES_SHOWN) {
            fprintf(out, "  ... and %zu more\n", json_array_size(skipped) - i);
            break;
        }
        fprintf(out, "  %s: %s\n", report_str(s, "dn"), report_str(s, "reason"));
    }
}

void directory_cmd_print_report(FILE *out, const json_t *report, size_t max_changes)
{
    const char *result = report_str(report, "result");
    const char *reason = report_str(report, "reason");

    if (strcmp(result, "ok") == 0)
        fprintf(out, "directory sync done");
    else if (strcmp(result, "dry_run") == 0)
        fprintf(out, "directory sync dry run (nothing was changed)");
    else if (strcmp(result, "refused") == 0)
        fprintf(out, "directory sync REFUSED (nothing was changed)");
    else
        fprintf(out, "directory sync %s (nothing was changed)", *result ? result : "failed");
    fprintf(out, ": %lld directory users\n", report_int(report, "directory_users"));
    if (*reason)
        fprintf(out, "reason: %s\n", reason);
    fprintf(out,
            "created %lld, updated %lld, enabled %lld, disabled %lld, adopted %lld, "
            "unchanged %lld\n",
            report_int(report, "created"), report_int(report, "updated"),
            report_int(report, "enabled"), report_int(report, "disabled"),
            report_int(report, "adopted"), report_int(report, "unchanged"));
    if (json_array_size(json_object_get(report, "changes")) > 0) {
        fprintf(out, "%s:\n", strcmp(result, "ok") == 0 ? "changes" : "changes planned");
        print_changes(out, json_object_get(report, "changes"), list_count(report, "changes"),
                      max_changes);
    }
    print_conflicts(out, json_object_get(report, "conflicts"));
    print_skipped(out, json_object_get(report, "skipped"));
}

/* ---- shared ---- */

/* Refuses (exit 3) a database before schema 3: it has no directory columns yet. */
static int check_schema(PGconn *conn, char **err)
{
    PGresult *res =
        PQexec(conn, "SELECT to_regclass('public.directory_syncs') IS NOT NULL AS present");
    int rc = DBCONN_EXIT_OK;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        dbconn_result_error(res, "reading the schema", err);
        rc = DBCONN_EXIT_FAILED;
    } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        err_set(err, "the database is before schema 3 (no directory_syncs): finish the upgrade "
                     "(docs/upgrade.md) first");
        rc = DBCONN_EXIT_REFUSED;
    }
    PQclear(res);
    return rc;
}

static void print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

    if (text)
        printf("%s\n", text);
    free(text);
}

/* ---- sync ---- */

static int cmd_sync(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "dry-run", no_argument, NULL, 'n' },
        { "force", no_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    struct directory_sync_opts so = { .trigger = DIRECTORY_TRIGGER_MFACTL };
    struct tok_session s = { 0 };
    json_t *report = NULL;
    char *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'n') {
            so.dry_run = true;
        } else if (ch == 'f') {
            so.force = true;
        } else if (ch == 'j') {
            json = true;
        } else {
            fprintf(stderr, "mfactl directory sync: bad option %s\n%s", argv[optind - 1],
                    usage_text);
            return DBCONN_EXIT_USAGE;
        }
    }
    if (argc != optind) {
        fprintf(stderr, "mfactl directory sync: no arguments\n%s", usage_text);
        return DBCONN_EXIT_USAGE;
    }
    rc = tok_open(&s, config, DBCONN_PRIMARY, "directory-sync", &err);
    if (rc == DBCONN_EXIT_OK && !s.conf.directory.enabled) {
        err_set(&err, "directory.enabled is false in %s (docs/directory.md)", config);
        rc = DBCONN_EXIT_USAGE;
    }
    if (rc == DBCONN_EXIT_OK)
        rc = check_schema(s.conn, &err);
    if (rc != DBCONN_EXIT_OK)
        goto done;
    so.node_id = s.conf.appliance.member;
    switch (directory_sync_run(s.conn, &s.conf, &so, &report, &err)) {
    case 0:
        rc = DBCONN_EXIT_OK;
        break;
    case 1:
        rc = DBCONN_EXIT_REFUSED;
        break;
    case DIRECTORY_SYNC_BUSY:    /* *err says "another directory sync is running" */
    case DIRECTORY_SYNC_STOPPED: /* not here: mfactl sets no stop flag */
    default:
        rc = DBCONN_EXIT_FAILED;
        break;
    }
    if (report && json)
        print_json(report);
    else if (report && rc != DBCONN_EXIT_FAILED)
        directory_cmd_print_report(stdout, report, CHANGES_SHOWN);
    if (rc == DBCONN_EXIT_REFUSED && !err)
        err_set(&err, "refused, nothing was changed: %s", report_str(report, "reason"));
done:
    json_decref(report);
    if (rc != DBCONN_EXIT_OK)
        rc = tok_fail("directory sync", rc, &err);
    free(err);
    tok_close(&s);
    return rc;
}

/* ---- status ---- */

static const char status_sql[] =
    "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " node_id, trigger, result, report::text, error"
    " FROM directory_syncs ORDER BY started_at DESC, id DESC LIMIT " STATUS_ROWS;

static json_t *status_row(const PGresult *res, int i)
{
    json_t *report = json_loads(PQgetvalue(res, i, 5), 0, NULL);

    return json_pack("{s:s, s:s?, s:s, s:s, s:s, s:o, s:s}", "started_at", PQgetvalue(res, i, 0),
                     "finished_at", PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
                     "node_id", PQgetvalue(res, i, 2), "trigger", PQgetvalue(res, i, 3), "result",
                     PQgetvalue(res, i, 4), "report", report ? report : json_object(), "error",
                     PQgetvalue(res, i, 6));
}

static void status_table(const json_t *rows)
{
    size_t i;
    json_t *r;

    if (json_array_size(rows) == 0) {
        printf("no directory sync yet\n");
        return;
    }
    printf("%-20s %-8s %-8s %-8s %7s %7s %7s %8s %9s %7s  %s\n", "STARTED", "NODE", "TRIGGER",
           "RESULT", "CREATED", "UPDATED", "ENABLED", "DISABLED", "CONFLICTS", "SKIPPED", "REASON");
    json_array_foreach(rows, i, r)
    {
        const json_t *rep = json_object_get(r, "report");
        const char *why = report_str(r, "error");

        if (!*why)
            why = report_str(rep, "reason");
        printf("%-20s %-8s %-8s %-8s %7lld %7lld %7lld %8lld %9zu %7zu  %s\n",
               report_str(r, "started_at"), report_str(r, "node_id"), report_str(r, "trigger"),
               report_str(r, "result"), report_int(rep, "created"), report_int(rep, "updated"),
               report_int(rep, "enabled"), report_int(rep, "disabled"),
               list_count(rep, "conflicts"), list_count(rep, "skipped"), why);
    }
}

static int cmd_status(const char *config, bool json, int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { NULL, 0, NULL, 0 },
    };
    struct tok_session s = { 0 };
    PGresult *res = NULL;
    json_t *rows = NULL;
    char *err = NULL;
    int ch, rc;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch != 'j') {
            fprintf(stderr, "mfactl directory status: bad option %s\n%s", argv[optind - 1],
                    usage_text);
            return DBCONN_EXIT_USAGE;
        }
        json = true;
    }
    if (argc != optind) {
        fprintf(stderr, "mfactl directory status: no arguments\n%s", usage_text);
        return DBCONN_EXIT_USAGE;
    }
    rc = tok_open(&s, config, DBCONN_READ, "directory-status", &err);
    if (rc == DBCONN_EXIT_OK)
        rc = check_schema(s.conn, &err);
    if (rc != DBCONN_EXIT_OK)
        goto done;
    res = PQexec(s.conn, status_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        dbconn_result_error(res, "reading directory_syncs", &err);
        rc = DBCONN_EXIT_FAILED;
        goto done;
    }
    rows = json_array();
    for (int i = 0; rows && i < PQntuples(res); i++)
        if (json_array_append_new(rows, status_row(res, i)) < 0) {
            err_set(&err, "out of memory");
            rc = DBCONN_EXIT_FAILED;
            goto done;
        }
    if (!rows) {
        err_set(&err, "out of memory");
        rc = DBCONN_EXIT_FAILED;
    } else if (json) {
        json_t *doc = json_pack("{s:O}", "syncs", rows);

        print_json(doc);
        json_decref(doc);
    } else {
        status_table(rows);
    }
done:
    json_decref(rows);
    PQclear(res);
    if (rc != DBCONN_EXIT_OK)
        rc = tok_fail("directory status", rc, &err);
    tok_close(&s);
    return rc;
}

int directory_cmd(const char *config, bool json, int argc, char **argv)
{
    static const struct dbconn_subcmd subs[] = {
        { "sync", cmd_sync },
        { "status", cmd_status },
    };

    return dbconn_dispatch(subs, MFA_ARRAY_LEN(subs), usage_text, config, json, argc, argv);
}
