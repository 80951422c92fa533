/*
 * The request path, the database calls and replies, and the small helpers
 * the users API shares; see users_priv.h.
 */
#include "users_priv.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "secrets.h"

#define PATH_PREFIX "/api/v1/users/"

int users_path(struct evhttp_request *req, char *user, char *action, size_t asize)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *seg, *slash;
    char *raw = NULL, *decoded = NULL, *err = NULL;
    size_t seglen, len = 0;

    if (!path || strncmp(path, PATH_PREFIX, strlen(PATH_PREFIX)) != 0)
        goto not_found;
    seg = path + strlen(PATH_PREFIX);
    slash = strchr(seg, '/');
    seglen = slash ? (size_t)(slash - seg) : strlen(seg);
    action[0] = '\0';
    if (slash) {
        if (strchr(slash + 1, '/') || strlen(slash + 1) >= asize || !slash[1])
            goto not_found;
        memcpy(action, slash + 1, strlen(slash + 1) + 1);
    }
    if (seglen == 0)
        goto not_found;
    if (seglen > 3 * (USERS_USERNAME_MAX - 1)) {
        http_reply_error(req, 400, "bad_request", "the username in the path is too long");
        return -1;
    }
    raw = strndup(seg, seglen);
    decoded = raw ? evhttp_uridecode(raw, 0, &len) : NULL;
    if (!decoded) {
        free(raw);
        http_reply_error(req, 500, "internal", "out of memory");
        return -1;
    }
    if (len != strlen(decoded) || len >= USERS_USERNAME_MAX ||
        users_check_username("the username in the path", decoded, &err) < 0) {
        http_reply_error(req, 400, "bad_request", "%s",
                         err ? err : "the username in the path is not valid");
        free(err);
        free(raw);
        free(decoded);
        return -1;
    }
    memcpy(user, decoded, len + 1);
    free(raw);
    free(decoded);
    return 0;
not_found:
    http_reply_error(req, 404, "not_found", "no such resource");
    return -1;
}

int users_write(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
                int nparams, const char *const *params, pgconn_cb cb, void *job)
{
    char *err = NULL;
    int rc = nodedb_write(n->db, sql, nparams, params, PGCONN_SYNC_REMOTE_APPLY, cb, job, &err);

    if (rc == 0)
        return 0;
    if (rc == NODEDB_READ_ONLY) {
        node_reply_read_only(req);
    } else {
        log_error("db.failed what=%s err=%s", what, err);
        http_reply_error(req, 500, "internal", "the change could not be queued");
    }
    free(err);
    return -1;
}

int users_read(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
               int nparams, const char *const *params, pgconn_cb cb, void *job)
{
    char *err = NULL;

    if (nodedb_read(n->db, sql, nparams, params, cb, job, &err) == 0)
        return 0;
    log_error("db.failed what=%s err=%s", what, err);
    http_reply_error(req, 500, "internal", "the query could not be queued");
    free(err);
    return -1;
}

void users_reply_write_error(struct evhttp_request *req, const char *what, const char *err)
{
    char state[6];

    if (pgconn_err_sqlstate(err, state) && strcmp(state, "23505") == 0) {
        http_reply_error(req, 409, "conflict",
                         "a user with that username already exists (usernames are compared "
                         "without regard to case)");
        return;
    }
    /* 23514 check_violation, 22xxx data exceptions: a value the checks here let through */
    if (pgconn_err_sqlstate(err, state) &&
        (strcmp(state, "23514") == 0 || strncmp(state, "22", 2) == 0)) {
        log_warn("db.rejected what=%s err=%s", what, err);
        http_reply_error(req, 400, "bad_request",
                         "the database refused a value (SQLSTATE %s); see the node's log", state);
        return;
    }
    node_reply_db_error(req, what, err);
}

void users_reply_read_error(struct evhttp_request *req, const char *what, const char *err)
{
    char state[6];

    if (!pgconn_err_sqlstate(err, state)) {
        log_warn("db.read_failed what=%s err=%s", what, err);
        http_reply_error(req, 503, "unavailable", "the local database does not answer; retry");
        return;
    }
    log_error("db.failed what=%s err=%s", what, err);
    http_reply_error(req, 500, "internal", "a database error occurred; see the node's log");
}

int users_query_param(struct evhttp_request *req, const char *name, char *buf, size_t size)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    const char *v;
    int rc = 0;

    if (!query || !*query)
        return 0;
    if (evhttp_parse_query_str(query, &params) != 0) {
        http_reply_error(req, 400, "bad_request", "the query string is malformed");
        return -1;
    }
    v = evhttp_find_header(&params, name);
    if (v && strlen(v) >= size) {
        http_reply_error(req, 400, "bad_request", "%s: too long", name);
        rc = -1;
    } else if (v) {
        memcpy(buf, v, strlen(v) + 1);
        rc = 1;
    }
    evhttp_clear_headers(&params);
    return rc;
}

int users_limit_param(struct evhttp_request *req)
{
    char buf[8];
    int rc = users_query_param(req, "limit", buf, sizeof(buf));
    long v;

    if (rc <= 0)
        return rc == 0 ? USERS_LIMIT_DEFAULT : -1;
    v = strspn(buf, "0123456789") == strlen(buf) && *buf ? strtol(buf, NULL, 10) : 0;
    if (v < 1 || v > USERS_LIMIT_MAX) {
        http_reply_error(req, 400, "bad_request", "limit: must be a number from 1 to %d",
                         USERS_LIMIT_MAX);
        return -1;
    }
    return (int)v;
}

json_t *users_row_json(const PGresult *res, int row, const char *skip)
{
    json_t *obj = nodedb_row_json(res, row);

    if (obj && skip)
        json_object_del(obj, skip);
    return obj;
}

struct users_job *users_job_new(struct node *n, struct evhttp_request *req)
{
    struct users_job *j = calloc(1, sizeof(*j));

    if (!j) {
        http_reply_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->n = n;
    j->req = req;
    return j;
}

struct users_job *users_job_for_path(struct node *n, struct evhttp_request *req, char *actor,
                                     char *action, size_t asize)
{
    char none[16];
    struct users_job *j;

    if (!node_authorize(n, req, APIKEY_ADMIN, actor, USERS_ACTOR_MAX))
        return NULL;
    j = users_job_new(n, req);
    if (!j)
        return NULL;
    if (users_path(req, j->username, action ? action : none, action ? asize : sizeof(none)) < 0)
        goto fail;
    if (!action && *none) {
        http_reply_error(req, 404, "not_found", "no such resource");
        goto fail;
    }
    return j;
fail:
    free(j);
    return NULL;
}
