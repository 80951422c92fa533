/*
 * GET /api/v1/audit-log and GET /api/v1/auth-log: the admin audit log and
 * the sign-in log, read from the local database (so they answer on a
 * standby without a primary), oldest first.
 *
 * Paging is by time: ?since=<ISO 8601> gives the entries at or after it,
 * ?limit= (1-1000, default 100) at most that many. Many entries can share a
 * timestamp (an import writes one audit row per user in one transaction), so
 * a page that is not the last also gives next_since and next_after (the last
 * entry's time and id): passing both back as ?since=&after= continues right
 * after that entry, however many share its time. The auth log also takes
 * ?username= (any case).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpserver.h"
#include "users.h"
#include "users_priv.h"

struct log_kind {
    const char *what;
    const char *sql; /* $1 since, $2 after, $3 username, $4 limit */
    bool by_user;
};

static const struct log_kind audit_log = {
    "audit_log",
    "SELECT id, to_json(at) AS at, actor, node_id, action, target, detail FROM admin_audit"
    " WHERE ($1::timestamptz IS NULL OR (at >= $1 AND (at > $1 OR id > COALESCE($2::bigint, 0))))"
    " AND $3::text IS NULL ORDER BY admin_audit.at, admin_audit.id LIMIT $4::integer",
    false,
};

static const struct log_kind auth_log = {
    "auth_log",
    "SELECT id, to_json(at) AS at, node_id, boot_epoch, seq, username, method, result, reason,"
    " server_name, host(server_ip) AS server_ip, host(client_ip) AS client_ip, challenge_id,"
    " to_json(received_at) AS received_at FROM auth_log"
    " WHERE ($1::timestamptz IS NULL OR (at >= $1 AND (at > $1 OR id > COALESCE($2::bigint, 0))))"
    " AND ($3::text IS NULL OR lower(username) = lower($3))"
    " ORDER BY auth_log.at, auth_log.id LIMIT $4::integer",
    true,
};

struct log_job {
    struct evhttp_request *req;
    const struct log_kind *kind;
    int limit;
};

static void log_done(void *arg, const PGresult *res, const char *err)
{
    struct log_job *j = arg;
    json_t *out, *entries;
    int n;

    if (err) {
        users_reply_read_error(j->req, j->kind->what, err);
        goto done;
    }
    n = PQntuples(res);
    entries = json_array();
    for (int i = 0; i < n && i < j->limit; i++)
        json_array_append_new(entries, users_row_json(res, i, NULL));
    out = json_pack("{s:o}", "entries", entries);
    if (n > j->limit) {
        json_t *last = json_array_get(entries, (size_t)j->limit - 1);

        json_object_set(out, "next_since", json_object_get(last, "at"));
        json_object_set(out, "next_after", json_object_get(last, "id"));
    }
    http_reply_json(j->req, 200, out);
done:
    free(j);
}

static void handle_log(struct evhttp_request *req, struct node *n, const struct log_kind *kind)
{
    char actor[USERS_ACTOR_MAX], since[64], when[48], after[24], user[USERS_USERNAME_MAX],
        limit[16], *err = NULL;
    const char *params[4] = { NULL };
    struct log_job *j;
    int lim, rc;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, sizeof(actor)))
        return;
    lim = users_limit_param(req);
    if (lim < 0)
        return;
    rc = users_query_param(req, "since", since, sizeof(since));
    if (rc < 0)
        return;
    if (rc == 1) {
        if (users_parse_time(since, when, sizeof(when)) < 0) {
            http_reply_error(req, 400, "bad_request",
                             "since: must be an ISO 8601 time such as 2024-05-01T12:00:00Z");
            return;
        }
        params[0] = when;
    }
    rc = users_query_param(req, "after", after, sizeof(after));
    if (rc < 0)
        return;
    if (rc == 1) {
        if (!params[0] || !*after || strlen(after) > 18 ||
            strspn(after, "0123456789") != strlen(after)) {
            http_reply_error(req, 400, "bad_request",
                             "after: must be an entry id (a number), given with since");
            return;
        }
        params[1] = after;
    }
    if (kind->by_user) {
        rc = users_query_param(req, "username", user, sizeof(user));
        if (rc < 0)
            return;
        if (rc == 1 && users_check_username("username", user, &err) < 0) {
            http_reply_error(req, 400, "bad_request", "%s", err);
            free(err);
            return;
        }
        params[2] = rc == 1 ? user : NULL;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    j->req = req;
    j->kind = kind;
    j->limit = lim;
    snprintf(limit, sizeof(limit), "%d", lim + 1);
    params[3] = limit;
    if (users_read(n, req, kind->what, kind->sql, 4, params, log_done, j) < 0)
        free(j);
}

void users_handle_audit_log(struct evhttp_request *req, void *arg)
{
    handle_log(req, arg, &audit_log);
}

void users_handle_auth_log(struct evhttp_request *req, void *arg)
{
    handle_log(req, arg, &auth_log);
}
