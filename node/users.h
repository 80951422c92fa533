/*
 * The admin API for users (DESIGN §4), admin scope, every change in the
 * audit log in the same statement as the change:
 *
 *   GET    /api/v1/users?limit=&after=       list, paged by username
 *   POST   /api/v1/users                     create
 *   POST   /api/v1/users/import              CSV import with a per-row report
 *   GET    /api/v1/users/{username}          one user
 *   PATCH  /api/v1/users/{username}          update fields
 *   DELETE /api/v1/users/{username}          delete
 *   POST   /api/v1/users/{username}/disable  and /enable
 *   POST   /api/v1/users/{username}/totp     enrol a TOTP seed: {secret, otpauth_uri}, shown once
 *   GET    /api/v1/audit-log?since=&limit=   the admin audit log
 *   GET    /api/v1/auth-log?since=&limit=    the sign-in log
 *
 * Writes go to the primary with synchronous_commit = remote_apply, so a user
 * created through one node signs in through any other at once; without a
 * primary they answer 503 read_only.
 */
#ifndef MFA_NODE_USERS_H
#define MFA_NODE_USERS_H

#include <event2/http.h>

void users_handle_list(struct evhttp_request *req, void *arg);
void users_handle_create(struct evhttp_request *req, void *arg);
void users_handle_import(struct evhttp_request *req, void *arg);
void users_handle_get(struct evhttp_request *req, void *arg);
void users_handle_update(struct evhttp_request *req, void *arg);
void users_handle_delete(struct evhttp_request *req, void *arg);
/* POST /api/v1/users/{username}/{disable|enable|totp} */
void users_handle_action(struct evhttp_request *req, void *arg);
void users_handle_audit_log(struct evhttp_request *req, void *arg);
void users_handle_auth_log(struct evhttp_request *req, void *arg);

#endif
