/*
 * The user portal (DESIGN §4, docs/portal.md): server-rendered HTML under
 * /portal/ on the node's HTTP port, reached through HAProxy's TLS front.
 * Users sign in with username and PIN, then their second factor, through
 * the same sign-in engine as the API (auth.h: same lockout, same auth log,
 * works without a primary); then they see and change their phone, default
 * method and PIN, enrol a TOTP app and see their recent sign-ins.
 *
 * Sessions live in this node's memory only (portal_session.c); a request
 * whose session this node does not know gets the sign-in page, never an
 * error. Without a writable primary every change is refused with a banner.
 */
#ifndef MFA_NODE_PORTAL_H
#define MFA_NODE_PORTAL_H

#include <event2/http.h>
#include <jansson.h>
#include <stddef.h>

#include "mem.h"
#include "node.h"

/* Makes the session store of <n> (also when node.portal.enabled is false: then it stays empty). */
int portal_start(struct node *n, char **err) MFA_MUSTCHECK;

/* Ends every session. */
void portal_stop(struct node *n);

/* The maintenance tick: ends sessions past their timeouts. */
void portal_tick(struct node *n);

/* Sessions mid-sign-in or signed in: /status "sessions", what a drain waits for. */
size_t portal_sessions(const struct node *n);

/* Every request under /portal/ (GET and POST). */
void portal_handle(struct evhttp_request *req, void *arg);

#endif
