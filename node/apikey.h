/*
 * API keys: the callers of the HTTP API present "Authorization: Bearer
 * <key>"; the node keeps the SHA-256 of every active key in memory, loaded
 * from the local database and refreshed every second, so checking a key
 * needs no query and keeps working without a primary. A key created through
 * this node works here at once, on the others within a second; a revoked key
 * stops working everywhere within a second.
 *
 * Handlers: POST /api/v1/api-keys {name, scope} -> the key, shown once;
 * GET /api/v1/api-keys; DELETE /api/v1/api-keys/{id}. Admin scope.
 */
#ifndef MFA_NODE_APIKEY_H
#define MFA_NODE_APIKEY_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "node.h"

struct apikeys *apikeys_new(struct nodedb *db, char **err) MFA_MUSTCHECK;
void apikeys_free(struct apikeys *k);

/* Reloads the active keys from the local database (every second). */
void apikeys_tick(struct apikeys *k);

/* True once the first load finished. */
bool apikeys_loaded(const struct apikeys *k);

/*
 * Checks an Authorization header value. Returns 0 and copies the key's name
 * into <name>, 401 when the header is missing, malformed or names no active
 * key, 403 when the key's scope is not enough.
 */
int apikeys_check(const struct apikeys *k, const char *authorization, enum apikey_scope need,
                  char *name, size_t size);

const char *apikey_scope_name(enum apikey_scope scope);

void apikeys_handle_create(struct evhttp_request *req, void *arg);
void apikeys_handle_list(struct evhttp_request *req, void *arg);
void apikeys_handle_revoke(struct evhttp_request *req, void *arg);

#endif
