/*
 * What directory.c, directory_map.c and directory_sync.c share, and what the
 * unit tests and the fuzz target reach: the mapping of an entry's untrusted
 * attribute values into a struct directory_user, and the LDAP connection
 * the fetch and the bind check open. Not an API for other subsystems.
 */
#ifndef MFA_DIRECTORY_PRIV_H
#define MFA_DIRECTORY_PRIV_H

#include <jansson.h>
#include <ldap.h>
#include <stdbool.h>
#include <stddef.h>

#include "appconf.h"
#include "directory.h"
#include "mem.h"

#define DIRECTORY_ENTRIES_MAX     1000000 /* a fetch of more is refused (a filter gone wrong) */
#define DIRECTORY_DN_MAX          1024    /* the schema's limit on users.directory_dn */
#define DIRECTORY_VALUE_MAX       4096    /* longer attribute values are invalid before any check */
#define DIRECTORY_REPORT_LIST_MAX 1000    /* entries per list of a report; the rest only counted */
#define DIRECTORY_PAGES_MAX       100000  /* pages of one search: more is a server looping */

/*
 * One attribute of an entry as the server sent it: its type (matched
 * case-insensitively, as LDAP types are) and its first value, <len> bytes
 * that may hold anything (a NUL, invalid UTF-8).
 */
struct directory_attr {
    const char *name;
    const char *value;
    size_t len;
};

/*
 * Maps the entry <dn> with <nattrs> <attrs> into <out> by
 * directory.attributes: the username is required and must pass
 * users_check_username(); display name, e-mail and phone (the first of the
 * phone attributes present, normalized by directory_phone_normalize()) are
 * "" when absent or invalid, an invalid one appended to <invalid> (a JSON
 * array, may be NULL) as {dn, username, field, reason}. Returns 1 with <out>
 * filled (the caller frees it with directory_user_clear()), 0 when the entry
 * is skipped (*reason, malloc'd, says why), or -1 (out of memory).
 */
int directory_map_entry(const struct appconf *conf, const char *dn,
                        const struct directory_attr *attrs, size_t nattrs,
                        struct directory_user *out, json_t *invalid, char **reason) MFA_MUSTCHECK;

/* Frees the strings of <u> and clears it. */
void directory_user_clear(struct directory_user *u);

/*
 * Writes the phone number <in> without the spaces, dashes, dots and
 * parentheses people type in them ("+41 (44) 123-45.67" gives
 * "+41441234567") into <out> of <size>; anything else, a '+' included, is
 * kept for users_check_phone() to judge. Returns 0, or -1 when it does not
 * fit.
 */
int directory_phone_normalize(const char *in, char *out, size_t size) MFA_MUSTCHECK;

/*
 * The <i>th (from 0) attribute name of the comma-separated <list> (blanks
 * around names ignored) into <out> of <size>. Returns 1, or 0 past the end
 * or when a name does not fit.
 */
int directory_attr_list_item(const char *list, size_t i, char *out, size_t size);

/*
 * Drops from <users> (*n of them, in the server's order) each entry whose
 * key (directory_user_key(): the database's lower() of the username)
 * equals an earlier one's, appending it to <skipped> (a JSON array, may be
 * NULL) as {dn, reason}. Keeps the order of the rest. Returns 0, or -1 (out
 * of memory: <users> as it was).
 */
int directory_users_dedup(struct directory_user *users, size_t *n, json_t *skipped) MFA_MUSTCHECK;

/* What an entry is matched by: its folded key, or its username when none was set. */
static inline const char *directory_user_key(const struct directory_user *u)
{
    return u->key ? u->key : u->username;
}

static inline const char *directory_current_key(const struct directory_current *c)
{
    return c->key ? c->key : c->username;
}

/*
 * <s> (a DN) cut to at most <max> bytes on a character boundary, "..."
 * added when cut, into <out> of <size> (> max + 3): for messages.
 */
void directory_cut(const char *s, size_t max, char *out, size_t size);

/*
 * <dn> normalized for comparison (RFC 4514 form, blanks around separators
 * dropped, ASCII lower case), malloc'd into *out. Returns 0, or -1 when it
 * is not a DN (or out of memory).
 */
int directory_dn_normalize(const char *dn, char **out) MFA_MUSTCHECK;

/* ---- the LDAP connection (directory.c), for the fetch (directory_fetch.c) */

struct directory_conn;

/*
 * Opens a connection to directory.url: LDAPv3, no referrals, TLS (ldaps://
 * or StartTLS) verified against directory.ca_file, connected and the TLS
 * handshake done within directory.timeout_ms (a watchdog ends a handshake
 * libldap would not), every read and write on the socket bounded by it.
 * The URLs of a list are tried in order, each with its own timeout_ms (at
 * worst, their number times timeout_ms in all); the first that connects and
 * starts TLS is used, and *err of a failure has each one's reason.
 * With <stop> (may be NULL) the watchdog stays until the close and shuts
 * the socket down as soon as *stop is set. Returns it, or NULL with *err.
 */
struct directory_conn *directory_conn_open(const struct appconf *conf, const atomic_bool *stop,
                                           char **err) MFA_MUSTCHECK;

/* Whether <c> was shut down because its stop flag was set. */
bool directory_conn_stopped(struct directory_conn *c);

/* Unbinds and frees <c> (NULL is fine). */
void directory_conn_close(struct directory_conn *c);

/* The libldap handle of <c>; <c> keeps it. */
LDAP *directory_conn_ldap(const struct directory_conn *c);

/*
 * Binds <c> as directory.bind_dn with the first line of
 * directory.bind_password_file (never empty: that would be an anonymous
 * bind); without a bind_dn the connection stays anonymous. Returns 0, or -1
 * with *err (which never holds the password).
 */
int directory_service_bind(struct directory_conn *c, const struct appconf *conf,
                           char **err) MFA_MUSTCHECK;

/*
 * err_set() with "directory: <what>: <libldap's sentence for rc>" and the
 * diagnostic message of <ld> (the server's or the TLS library's words),
 * cut and without control characters. Returns -1.
 */
int directory_ldap_err(LDAP *ld, int rc, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* <ms> milliseconds as a struct timeval, for libldap's deadlines. */
void directory_timeval(struct timeval *tv, int ms);

#endif
