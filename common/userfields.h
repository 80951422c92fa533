/*
 * The rules a user's fields obey, shared by everything that writes users:
 * the users API and CSV import (node/users_fields.c) and the directory sync
 * (directory.c), so that a value the sync stores is one the API would take.
 *
 * The checks mirror the CHECK constraints of the users table (schema 001)
 * and are a little stricter where the database's answer would depend on its
 * locale: a username may hold no Unicode space or invisible character either,
 * whatever [:space:] means to the server. Text must be valid UTF-8 without
 * NUL (PostgreSQL stores neither invalid UTF-8 nor NUL); lengths are counted
 * in characters, as the schema counts them.
 */
#ifndef MFA_USERFIELDS_H
#define MFA_USERFIELDS_H

#include <stdbool.h>

#include "mem.h"

#define USERS_USERNAME_CHARS 128                            /* the schema's limit, in characters */
#define USERS_USERNAME_MAX   (USERS_USERNAME_CHARS * 4 + 1) /* bytes of UTF-8 and a NUL */
#define USERS_TEXT_CHARS     256                            /* display_name, email: characters */
#define USERS_PHONE_DIGITS   20                             /* the schema's ^\+?[0-9]{3,20}$ */

/*
 * 1 to 128 characters of valid UTF-8, none a space, a control character or
 * an invisible one. Returns 0, or -1 with *err naming <what>.
 */
int users_check_username(const char *what, const char *s, char **err) MFA_MUSTCHECK;

/*
 * At most USERS_TEXT_CHARS characters of valid UTF-8, no control character
 * (and with <no_space> no space or invisible one either). Returns 0, or -1
 * with *err naming <what>.
 */
int users_check_text(const char *what, const char *s, bool no_space, char **err) MFA_MUSTCHECK;

/* Whether <s> is valid UTF-8 (RFC 3629: no overlong form, no surrogate), as the checks want. */
bool users_utf8_valid(const char *s);

/* "" or a text without spaces holding an '@'. Returns 0, or -1 with *err naming <what>. */
int users_check_email(const char *what, const char *s, char **err) MFA_MUSTCHECK;

/* "" or the schema's ^\+?[0-9]{3,20}$. Returns 0, or -1 with *err naming <what>. */
int users_check_phone(const char *what, const char *s, char **err) MFA_MUSTCHECK;

#endif
