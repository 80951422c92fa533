/*
 * What the files of the users API share (users.c, users_totp.c,
 * users_import.c, users_log.c): the rules a user's fields obey, checked
 * before the database's CHECK constraints would answer with a 500
 * (users_fields.c, which links alone for the unit tests and the fuzzer); the
 * columns a user is shown with; the path /api/v1/users/{username}[/action];
 * and the replies for failed database calls (users_common.c). Not an API for
 * other subsystems.
 */
#ifndef MFA_NODE_USERS_PRIV_H
#define MFA_NODE_USERS_PRIV_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "node.h"
#include "pgconn.h"
#include "userfields.h" /* users_check_username(), USERS_USERNAME_MAX */

#define USERS_ACTOR_MAX     129 /* an API key's name and a NUL */
#define USERS_LIMIT_DEFAULT 100 /* rows per page of the lists */
#define USERS_LIMIT_MAX     1000

/*
 * The columns a user is shown with, from a row or CTE named "u": never the
 * PIN hash, only whether there is one; times as ISO 8601 (to_json).
 */
#define USERS_COLS                                                                                 \
    "u.id, u.username, u.display_name, u.email, u.phone, u.method,"                                \
    " u.pin_hash IS NOT NULL AS has_pin, u.disabled, to_json(u.created_at) AS created_at,"         \
    " to_json(u.updated_at) AS updated_at"

/*
 * A user's fields as a request gives them; NULL (or -1) means not given.
 * The strings belong to whoever filled the struct.
 */
struct users_fields {
    const char *username;
    const char *display_name; /* "" clears */
    const char *email;        /* "" clears */
    const char *phone;        /* "" clears */
    const char *method;
    const char *pin; /* NULL with pin_given: remove the PIN */
    bool pin_given;
    int disabled; /* -1, 0 or 1 */
};

/*
 * Checks the fields that are given against the rules of the users table and
 * of the API; for a create (<create>) username and method are required and
 * the sms method needs a phone. Returns 0, or -1 with *err a sentence that
 * starts with the field's name ("phone: ...").
 */
int users_fields_check(const struct users_fields *f, bool create, char **err) MFA_MUSTCHECK;

/*
 * Fills <f> from the JSON object <body> of a create (<create>) or an update:
 * every member must be one of the fields, of its type (strings; null clears
 * display_name, email, phone and, in an update, pin; disabled a boolean).
 * Then users_fields_check(). Returns 0, or -1 with *err naming the field.
 * The strings in <f> point into <body>.
 */
int users_fields_from_json(json_t *body, bool create, struct users_fields *f,
                           char **err) MFA_MUSTCHECK;

/*
 * Decodes the path /api/v1/users/{username}[/{action}] of <req>: copies the
 * percent-decoded username into <user> (USERS_USERNAME_MAX bytes) and the
 * action (a literal segment, "" when absent) into <action> of <asize>.
 * Returns 0; or replies itself (404 for a path of another shape, 400 for a
 * username that breaks the rules) and returns -1.
 */
int users_path(struct evhttp_request *req, char *user, char *action, size_t asize) MFA_MUSTCHECK;

/*
 * Queues an admin write with remote_apply. Returns 0 when <cb> will run, or
 * -1 after replying 503 read_only (no primary) or 500 itself: the caller
 * frees its job.
 */
int users_write(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
                int nparams, const char *const *params, pgconn_cb cb, void *job) MFA_MUSTCHECK;

/* As users_write() for a read on the local database. */
int users_read(struct node *n, struct evhttp_request *req, const char *what, const char *sql,
               int nparams, const char *const *params, pgconn_cb cb, void *job) MFA_MUSTCHECK;

/*
 * Replies for a write that failed with <err>: 409 conflict for a unique
 * violation (the username is taken), 400 for a broken CHECK, otherwise as
 * node_reply_db_error().
 */
void users_reply_write_error(struct evhttp_request *req, const char *what, const char *err);

/* Replies for a read of the local database that failed with <err>. */
void users_reply_read_error(struct evhttp_request *req, const char *what, const char *err);

/*
 * Copies query parameter <name> of <req> (decoded) into <buf> of <size>.
 * Returns 1, 0 when absent, or -1 after replying 400 (malformed query
 * string, value too long).
 */
int users_query_param(struct evhttp_request *req, const char *name, char *buf, size_t size);

/*
 * Parses the ?limit= of <req>: absent gives USERS_LIMIT_DEFAULT. Returns
 * 1..USERS_LIMIT_MAX, or -1 after replying 400.
 */
int users_limit_param(struct evhttp_request *req);

/* Row <row> of <res> as a JSON object without the column <skip> (NULL: none). */
json_t *users_row_json(const PGresult *res, int row, const char *skip);

/* The job of a request waiting for the database. */
struct users_job {
    struct node *n;
    struct evhttp_request *req;
    char username[USERS_USERNAME_MAX];
    int limit;
};

/* Allocates a job for <req>, or replies 500 and returns NULL. */
struct users_job *users_job_new(struct node *n, struct evhttp_request *req);

/*
 * The start of a request on /api/v1/users/{username}[/{action}]: checks that
 * <req> carries an admin key (its name into <actor> of USERS_ACTOR_MAX),
 * allocates the job and decodes the path into j->username and <action> of
 * <asize>. With <action> NULL the path may not name an action (404). Returns
 * the job, which the caller owns, or NULL after replying.
 */
struct users_job *users_job_for_path(struct node *n, struct evhttp_request *req, char *actor,
                                     char *action, size_t asize);

/*
 * POST /api/v1/users/{j->username}/totp for <actor> (users_totp.c). Takes
 * <j> (frees it) and replies, now or later.
 */
void users_totp_enrol(struct node *n, struct evhttp_request *req, const char *actor,
                      struct users_job *j);

/*
 * What an enrolment by the admin API and by the portal share (users_totp.c).
 * USERS_TOTP_SERIAL_MAX bytes hold a serial; users_totp_serial() makes one,
 * "totp-<username>-<12 hex>", and returns 0, or -1 (no random numbers).
 */
#define USERS_TOTP_SERIAL_MAX (5 + 96 * 4 + 1 + 6 * 2 + 1)
int users_totp_serial(const char *username, char *out, size_t size) MFA_MUSTCHECK;

/*
 * The one statement that stores an enrolled app: the token (SHA1, 6 digits,
 * 30 s), the user's method, the user's earlier app token deleted, an
 * imported TOTP token unassigned, and the audit row. Parameters: $1
 * username, $2 serial, $3 sealed seed, $4 actor, $5 node id, $6 the step
 * already used (the portal's confirming code) or NULL, $7 where it was made
 * ("api" or "portal"), $8 "t" to refuse a disabled user. Returns the
 * username and serial, or no row when the user is gone (or disabled with $8).
 */
extern const char users_totp_enrol_sql[];

/*
 * otpauth://totp/<issuer>:<username>?secret=<secret>&... (Google
 * Authenticator's Key Uri Format) for an app made with the statement above
 * (SHA1, 6 digits, 30 s), or NULL (out of memory). It holds the secret: the
 * caller wipes and frees it.
 */
char *users_totp_uri(const char *username, const char *secret);

/*
 * Checks an ISO 8601 timestamp, "YYYY-MM-DD[(T| )hh:mm[:ss[.frac]][Z|(+|-)hh[:mm]]]" (a
 * ' ' in place of the '+' of the offset is taken for one: '+' decodes to a
 * space in a query string), and writes it for PostgreSQL as
 * "YYYY-MM-DDThh:mm:ss[.ffffff](+|-)hh:mm" into <out> of <size> (>= 40);
 * without an offset the time is UTC. Returns 0, or -1.
 */
int users_parse_time(const char *s, char *out, size_t size) MFA_MUSTCHECK;

#endif
