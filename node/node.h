/*
 * mfa-node's shared state: the subsystems main.c wires together, reached by
 * every request handler through the HTTP server's argument. One per
 * process, on one event loop.
 */
#ifndef MFA_NODE_H
#define MFA_NODE_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "appconf.h"
#include "daemon.h"
#include "keyfile.h"
#include <libpq-fe.h>

struct apikeys;
struct nodedb;
struct worker_pool;
struct http_server;
struct radius_server;

enum apikey_scope {
    APIKEY_AUTH = 0, /* sign-ins: /api/v1/auth and challenges */
    APIKEY_ADMIN,    /* everything, sign-ins included */
};

struct node {
    struct daemon *d;
    char id[17];         /* this node's id, the prefix of its challenge ids */
    struct keyring keys; /* pepper and sealing keys from the key file */
    struct worker_pool *workers;
    struct nodedb *db;
    struct apikeys *apikeys;
    struct http_server *http;
    struct radius_server *radius; /* NULL when node.radius.enabled is false */
    void *auth;                   /* the sign-in subsystems (auth.c) */
    void *portal;                 /* the user portal's sessions (portal.c) */
    void *dirsync;                /* the scheduled directory sync (dirsync.c) */
    void *mail;                   /* the e-mail sender (mail.c) */
    uint64_t started_ms;
};

const struct appconf *node_conf(const struct node *n);

/*
 * Checks the request's "Authorization: Bearer <key>" for <need>. Returns
 * true and copies the key's name (the actor of the audit log) into <actor>;
 * otherwise it has replied 401 or 403 itself and the handler returns.
 */
bool node_authorize(struct node *n, struct evhttp_request *req, enum apikey_scope need, char *actor,
                    size_t size);

/*
 * Queues an admin write (<sql> with <params>, remote_apply) for <req>.
 * Returns true when queued (<cb> will run); false after replying 503
 * read_only or 500 itself — the caller frees its job.
 */
bool node_admin_write(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
                      int nparams, const char *const *params,
                      void (*cb)(void *arg, const PGresult *res, const char *err), void *arg);

/* Replies 503 read_only: no primary reachable, the change was not made. */
void node_reply_read_only(struct evhttp_request *req);

/*
 * Replies for a failed database call: 503 read_only when the primary went
 * away or is read-only, else 500 with a generic detail (the error is logged).
 */
void node_reply_db_error(struct evhttp_request *req, const char *what, const char *err);

#endif
