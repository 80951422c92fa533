/*
 * Sign-in: POST /api/v1/auth, POST /api/v1/challenges/{id}/verify and GET
 * /api/v1/challenges/{id} (DESIGN §4), auth scope.
 *
 * A sign-in reads the user, their token and their failure counts from the
 * local database (primary or standby), so it works without a primary. The
 * PIN, when the user has one, comes in the same request. TOTP and HOTP codes
 * answer at once; SMS answers "challenge" with an id that only this node can
 * verify. Every decision is in the auth log spool before the answer goes out.
 *
 * The sign-in path's own writes — replay marks, failure counts, SMS sent —
 * go to the primary with synchronous_commit off. Without a primary they are
 * kept in this node's memory with the tighter offline limits and merged into
 * the primary when it is back (limits.h), so replay protection and lockout
 * never silently stop.
 */
#ifndef MFA_NODE_AUTH_H
#define MFA_NODE_AUTH_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stddef.h>

#include "mem.h"
#include "node.h"

/* Makes the sign-in subsystems (challenges, SMS, auth log, limits) of <n>. */
int auth_start(struct node *n, char **err) MFA_MUSTCHECK;

/*
 * Stopping is in two steps around freeing the database connections:
 * auth_stop_delivery() ends SMS deliveries (their callbacks answer and
 * write), auth_stop() the rest (the auth log that late callbacks append to).
 */
void auth_stop_delivery(struct node *n);
void auth_stop(struct node *n);

/* The maintenance tick: expiry, merging offline state, sweeping. */
void auth_tick(struct node *n);

/* Live challenges, for /status and the drain wait. */
size_t auth_live_challenges(const struct node *n);

/* Adds the sign-in metrics and /status fields. */
void auth_metrics(const struct node *n, struct evbuffer *out);
void auth_status(const struct node *n, json_t *status);

void auth_handle_auth(struct evhttp_request *req, void *arg);
void auth_handle_verify(struct evhttp_request *req, void *arg);
void auth_handle_challenge(struct evhttp_request *req, void *arg);

#endif
