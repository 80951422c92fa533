/*
 * The JSON body of POST /api/v1/api-keys (apikey.c), read apart from the
 * handler so that the fuzz target reaches it without a request or a
 * database. Not an API for other subsystems.
 */
#ifndef MFA_NODE_APIKEY_PRIV_H
#define MFA_NODE_APIKEY_PRIV_H

#include <jansson.h>

#include "mem.h"
#include "node.h"

#define APIKEY_NAME_MAX 128 /* bytes of a key's name; the schema allows 128 characters */

/*
 * Reads the create body <body> (an object): name a non-empty string of at
 * most APIKEY_NAME_MAX bytes, scope "auth" or "admin". Copies the name into
 * <name> and the scope into *scope. Returns 0, or -1 when either is missing
 * or bad.
 */
int apikey_body_create(json_t *body, char name[APIKEY_NAME_MAX + 1],
                       enum apikey_scope *scope) MFA_MUSTCHECK;

#endif
