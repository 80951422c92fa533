/*
 * What every request handler of mfa-node shares: the API key check and the
 * answers for a database that cannot take a write. In the node library, so
 * unit tests can link any handler.
 */
#include "node.h"

#include <stdlib.h>

#include "apikey.h"
#include "db.h"
#include "httpserver.h"
#include "log.h"

const struct appconf *node_conf(const struct node *n)
{
    return daemon_conf(n->d);
}

bool node_authorize(struct node *n, struct evhttp_request *req, enum apikey_scope need, char *actor,
                    size_t size)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    int rc = apikeys_check(n->apikeys, auth, need, actor, size);

    if (rc == 0)
        return true;
    /* Just started, keys not read yet: not the caller's fault, and HAProxy's check says so. */
    if (!apikeys_loaded(n->apikeys)) {
        http_reply_error(req, 503, "not_ready", "this node is starting; try again in a moment");
        return false;
    }
    if (rc == 403)
        http_reply_error(req, 403, "forbidden", "this API key's scope does not allow that");
    else
        http_reply_error(req, 401, "unauthorized",
                         "send a valid API key as Authorization: Bearer <key>");
    return false;
}

void node_reply_read_only(struct evhttp_request *req)
{
    http_reply_error(req, 503, "read_only",
                     "no primary database is reachable; changes are paused until it returns "
                     "(sign-ins keep working)");
}

void node_reply_db_error(struct evhttp_request *req, const char *what, const char *err)
{
    if (nodedb_error_is_read_only(err)) {
        log_warn("db.write_failed what=%s err=%s", what, err);
        http_reply_error(req, 503, "read_only",
                         "the primary database went away; the change was not confirmed — check "
                         "and retry when it is back");
        return;
    }
    log_error("db.failed what=%s err=%s", what, err);
    http_reply_error(req, 500, "internal", "a database error occurred; see the node's log");
}

bool node_admin_write(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
                      int nparams, const char *const *params,
                      void (*cb)(void *arg, const PGresult *res, const char *err), void *arg)
{
    char *err = NULL;
    int rc = nodedb_write(n->db, sql, nparams, params, PGCONN_SYNC_REMOTE_APPLY, cb, arg, &err);

    if (rc == 0)
        return true;
    if (rc == NODEDB_READ_ONLY)
        node_reply_read_only(req);
    else
        node_reply_db_error(req, what, err);
    free(err);
    return false;
}
