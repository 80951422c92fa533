/*
 * The JSON bodies of the sign-in requests (auth_http.c), read apart from the
 * handlers so that the fuzz target reaches them without a request or a
 * database. Not an API for other subsystems.
 */
#ifndef MFA_NODE_AUTH_HTTP_PRIV_H
#define MFA_NODE_AUTH_HTTP_PRIV_H

#include <jansson.h>
#include <stdbool.h>

#include "auth.h"
#include "mem.h"
#include "users_priv.h"

/* The members of a POST /api/v1/auth body, copied out of the parse. */
struct auth_body {
    char username[USERS_USERNAME_MAX];
    char method[8];
    char pin[AUTH_PASSWORD_MAX + 1]; /* or a directory user's password (auth.h) */
    char otp[AUTH_SECRET_MAX + 1];
    char client_ip[64];
    bool has_method, has_pin, has_otp, has_client_ip;
};

/*
 * Reads the sign-in body <body> (an object) into <b>: username required (the
 * rules of users_check_username()), method "sms", "totp" or "hotp", pin and
 * otp non-empty strings of at most AUTH_SECRET_MAX bytes, client_ip a
 * numeric address; null counts as absent. Returns NULL, or the name of the
 * first member found missing or bad ("username", "method", "pin", "otp" or
 * "client_ip"). <b> holds secrets either way: the caller wipes it.
 */
const char *auth_body_signin(json_t *body, struct auth_body *b) MFA_MUSTCHECK;

/*
 * As auth_body_signin(), with pin up to <pin_max> bytes (at most
 * AUTH_PASSWORD_MAX): AUTH_PASSWORD_MAX under directory.first_factor =
 * "ldap", where pin carries a directory user's password.
 */
const char *auth_body_signin_max(json_t *body, struct auth_body *b, size_t pin_max) MFA_MUSTCHECK;

/*
 * Reads the code of a POST /api/v1/challenges/{id}/verify body <body> (an
 * object) into <otp>: a non-empty string of at most AUTH_SECRET_MAX bytes.
 * Returns 0, or -1 when it is missing or bad. The caller wipes <otp>.
 */
int auth_body_verify(json_t *body, char otp[AUTH_SECRET_MAX + 1]) MFA_MUSTCHECK;

#endif
