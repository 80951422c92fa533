/*
 * Sign-in (DESIGN §4): one engine, answered over the HTTP API (POST
 * /api/v1/auth, POST /api/v1/challenges/{id}/verify and GET
 * /api/v1/challenges/{id}, auth scope) and RADIUS (radius_server.h).
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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directory.h"
#include "mem.h"
#include "node.h"

/* Makes the sign-in subsystems (challenges, SMS, auth log, limits) of <n>. */
int auth_start(struct node *n, char **err) MFA_MUSTCHECK;

/*
 * Stopping is in two steps around freeing the database connections:
 * auth_stop_delivery() ends SMS deliveries (their callbacks answer and
 * write) and answers the sign-ins waiting for the directory (a bind still
 * running finishes on its worker, answering nobody), auth_stop() the rest
 * (the auth log that late callbacks append to).
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

/* ---- the sign-in engine: the HTTP API (auth_http.c) and RADIUS (radius_server.c) ---- */

#define AUTH_SECRET_MAX 16 /* bytes of a PIN or a code, as sent */

/*
 * With directory.first_factor = "ldap", a directory user's first factor is
 * their directory password (docs/directory.md), checked by a bind as their
 * DN on a worker thread, where everyone else's is the PIN. It comes where
 * the PIN does (auth_request.pin, or the first part of .password) and may
 * be up to this long; the longer limits hold only in that mode.
 */
#define AUTH_PASSWORD_MAX DIRECTORY_PASSWORD_MAX

enum auth_outcome {
    AUTH_ACCEPTED = 0,
    AUTH_REJECTED,
    AUTH_CHALLENGE,
    AUTH_ERROR,
};

/* What a sign-in decided; valid only during the auth_done_fn call. */
struct auth_result {
    enum auth_outcome outcome;
    const char *outcome_name; /* "accepted", "rejected", "challenge", "error" */
    const char *method;       /* "sms", "totp", "hotp", or "-" before it was known */
    const char *reason;       /* why it was rejected or failed; NULL otherwise */
    int http_status;          /* the API's status for this answer */
    const char *challenge_id; /* AUTH_CHALLENGE: the id that only this node verifies */
    int expires_in;           /* AUTH_CHALLENGE: seconds */
    const char *phone;        /* AUTH_CHALLENGE of an SMS: where the code went; NULL otherwise */
    int attempts_left;        /* a wrong code on a challenge; -1 when it does not apply */
    int retry_after;          /* reasons "throttled", "busy": seconds; 0 otherwise */
    const char *detail;       /* a sentence for the caller, or NULL */
    bool retry; /* AUTH_ERROR before anything was done (no database): asking again may work */
};

/*
 * Runs once per sign-in, after the decision is in the auth log spool (or,
 * with reason "unrecorded", when it could not be: the caller must not
 * accept then — the outcome is AUTH_ERROR).
 */
typedef void (*auth_done_fn)(void *arg, const struct auth_result *r);

/*
 * The steps of a sign-in. The API and RADIUS take PIN and code in one
 * request (AUTH_STEP_ALL). The portal asks for them on two pages and must
 * not keep the PIN between them, so the engine can stop after the PIN and
 * take the code later:
 *
 *   AUTH_STEP_PIN    lockout and PIN are checked as always. An SMS user's
 *                    code is sent (AUTH_CHALLENGE with an id, as the API's);
 *                    for a TOTP/HOTP user the sign-in stops there: a right
 *                    PIN answers AUTH_CHALLENGE without a challenge id ("now
 *                    the code"), logged as a challenge.
 *   AUTH_STEP_CODE   the code of a TOTP/HOTP user whose PIN an AUTH_STEP_PIN
 *                    sign-in accepted moments ago; the caller vouches for
 *                    that (the portal keeps it in the session, in memory,
 *                    for at most node.portal.signin_timeout_s). Lockout is
 *                    checked again, the code counts and is marked used as
 *                    in AUTH_STEP_ALL. Not for SMS: that is auth_verify().
 *   AUTH_STEP_REPIN  only the PIN of a signed-in user, who asks to change
 *                    it (or the phone, or to set up an app): logged with
 *                    method "pin"; a wrong one counts toward
 *                    lockout like any; a right one answers AUTH_ACCEPTED and
 *                    sends no code. It does not clear earlier failures: that
 *                    takes a whole sign-in.
 *
 * So what the portal keeps between its pages is a fact the engine decided
 * ("this user's PIN was right"), never a secret, and every failure still
 * lands in the same lockout counts and auth log as the API's.
 *
 * "PIN" above is the first factor: for a directory user under
 * directory.first_factor = "ldap" every step that checks a PIN checks the
 * directory password instead (a wrong one: reason "wrong_password", counted
 * like a wrong PIN; a directory that does not answer: AUTH_ERROR
 * "directory_unavailable", 503, not counted). Lockout is decided before the
 * bind, so a locked user never reaches the directory, and one bind per user
 * runs at a time: a sign-in while the user's check is running or waiting is
 * rejected with reason "busy" (429, not counted, retry_after 1). A directory
 * user without a PIN on a node not in "ldap" mode is refused
 * ("pin_required", counted): the code alone never signs them in.
 */
enum auth_step {
    AUTH_STEP_ALL = 0,
    AUTH_STEP_PIN,
    AUTH_STEP_CODE,
    AUTH_STEP_REPIN,
};

struct auth_request {
    enum auth_step step;   /* AUTH_STEP_ALL for the API and RADIUS */
    const char *username;  /* checked by the caller (users_check_username) */
    const char *method;    /* "sms", "totp", "hotp", or NULL: the user's own */
    const char *pin, *otp; /* NULL when absent */
    /*
     * Instead of pin and otp (RADIUS PAP's one User-Password): the PIN for
     * SMS; for TOTP and HOTP the PIN followed by the code — its last
     * <digits> characters — or just the code when the user has no PIN. The
     * directory password stands in for the PIN as above.
     */
    const char *password;
    const char *client_ip; /* numeric: the person signing in, or the caller */
    /*
     * A user without a PIN is refused (reason "pin_required", counted as a
     * wrong PIN) instead of going on to the code: the portal's, where a
     * username alone must not find a user, show their phone or send a code.
     * A directory user whose first factor is the directory password has one.
     */
    bool require_pin;
};

/*
 * Where a RADIUS password (auth_request.password) of <len> bytes splits:
 * returns the length of its first part, the first factor; the rest is the
 * code. For SMS (<sms>) all of it is the first factor. For a token the code
 * is the last <digits> characters; a password no longer than that is all
 * first factor, and the sign-in then fails for want of a code. Without a
 * first factor (<has_first> false: no PIN, and no directory password) all
 * of it is the code. Pure: unit-tested.
 */
size_t auth_password_split(size_t len, bool sms, bool has_first, size_t digits);

/*
 * Starts a sign-in. <done> runs exactly once, possibly before this returns.
 * Returns 0, or -1 (out of memory) without calling <done>. The secrets in
 * <rq> are copied; the caller wipes its own.
 */
int auth_signin(struct node *n, const struct auth_request *rq, auth_done_fn done, void *arg);

/*
 * Checks <otp> against challenge <challenge_id> (untrusted text). With
 * <username> (RADIUS's User-Name) the challenge must be that user's. With
 * <end_on_wrong> a wrong code also ends the challenge (a RADIUS Reject ends
 * the exchange; the API lets the caller retry). An id of another node, or
 * one that expired or was used, is rejected with reason "challenge_expired".
 * <client_ip> stands for the person when the challenge does not say. <done>
 * as for auth_signin().
 */
int auth_verify(struct node *n, const char *challenge_id, const char *otp, const char *username,
                bool end_on_wrong, const char *client_ip, auth_done_fn done, void *arg);

/*
 * For pollers of challenge <id>: returns 1 and fills <method>, the seconds
 * left and whether it was accepted, or 0 when it is gone (expired, used,
 * never made here).
 */
size_t auth_challenge_state(const struct node *n, const char *id, char *method, size_t msize,
                            uint64_t *expires_in_s, bool *accepted);

/* ---- the HTTP API (auth_http.c) ---- */

void auth_handle_auth(struct evhttp_request *req, void *arg);
void auth_handle_verify(struct evhttp_request *req, void *arg);
void auth_handle_challenge(struct evhttp_request *req, void *arg);

#endif
