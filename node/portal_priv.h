/*
 * What the files of the user portal share (portal.c, portal_signin.c,
 * portal_settings.c, portal_session.c, portal_form.c, portal_html.c,
 * portal_qr.c): the session store, the form parser, the page buffer with
 * its HTML escaping, and the QR code. The pages' own helpers are in
 * portal_page.h. Not an API for other subsystems (portal.h is).
 *
 * portal_form.c and the page buffer (portal_html.c) link alone, for the
 * unit tests and the fuzzer; portal_session.c needs only ids.h.
 */
#ifndef MFA_NODE_PORTAL_PRIV_H
#define MFA_NODE_PORTAL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ids.h"
#include "mem.h"

/* ---- the page buffer (portal_html.c) ---- */

/*
 * A growing text buffer for a page. Pages may hold a TOTP seed, so the
 * buffer is wiped when freed. Out of memory sticks (oom) and later appends
 * do nothing: the caller checks once, at the end.
 */
struct pbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

void pbuf_add(struct pbuf *b, const char *s, size_t len);
void pbuf_puts(struct pbuf *b, const char *s);
void pbuf_printf(struct pbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends <s> escaped for HTML text and double- or single-quoted attribute
 * values: & < > " ' become entities, everything else is copied (the text is
 * UTF-8 the database checked).
 */
void pbuf_escape(struct pbuf *b, const char *s);

/* Wipes and frees the text; the buffer may be used again. */
void pbuf_free(struct pbuf *b);

/* ---- form bodies (portal_form.c) ---- */

#define PORTAL_FORM_FIELDS    8    /* most fields a form may send */
#define PORTAL_FORM_NAME_MAX  24   /* bytes of a field name, decoded */
#define PORTAL_FORM_VALUE_MAX 512  /* bytes of a value, decoded */
#define PORTAL_FORM_BODY_MAX  4096 /* bytes of a whole body */

struct portal_form {
    size_t n;
    struct {
        char name[PORTAL_FORM_NAME_MAX + 1];
        char value[PORTAL_FORM_VALUE_MAX + 1];
    } f[PORTAL_FORM_FIELDS];
};

/*
 * Parses an application/x-www-form-urlencoded body (the WHATWG URL
 * standard's "application/x-www-form-urlencoded parsing": '&'-separated
 * name=value pairs, '+' for a space, %XX escapes) of <len> bytes, which
 * need not end in a NUL. Stricter than the standard: a malformed escape, a
 * decoded NUL, an empty name, a name or value over its limit, a body over
 * PORTAL_FORM_BODY_MAX, more than PORTAL_FORM_FIELDS fields or a name given
 * twice is refused. Returns 0, or -1 with *err a sentence (naming no value).
 * <f> holds secrets: wipe it (secret_wipe) when done.
 */
int portal_form_parse(const char *body, size_t len, struct portal_form *f,
                      char **err) MFA_MUSTCHECK;

/* The value of field <name>, or NULL; the form owns it. */
const char *portal_form_get(const struct portal_form *f, const char *name);

/* ---- sessions (portal_session.c) ---- */

#define PORTAL_CSRF_BYTES 32
#define PORTAL_CSRF_LEN   43 /* base64url of 32 bytes */
#define PORTAL_SEED_LEN   20 /* RFC 4226 §4 R6: 160 bits */
#define PORTAL_USER_MAX   513
#define PORTAL_FLASH_MAX  256

enum portal_state {
    PORTAL_ANON = 0,  /* the sign-in page was shown */
    PORTAL_WAIT_SMS,  /* PIN right, an SMS code was sent (challenge_id) */
    PORTAL_WAIT_CODE, /* PIN right, the TOTP/HOTP code is next */
    PORTAL_SIGNED_IN,
};

struct portal_session {
    char id[ID_MAX];
    char csrf[PORTAL_CSRF_LEN + 1];
    enum portal_state state;
    char username[PORTAL_USER_MAX];
    char method[8];
    char challenge_id[ID_MAX];
    char phone_tail[8]; /* the last digits of the phone an SMS went to */
    uint64_t created_ms, used_ms, stage_ms, signed_in_ms;
    /*
     * Bumped on every change of state and every sign-in attempt: an answer
     * of the engine is taken only for the generation (and user) it was asked
     * for, so a late answer cannot complete a newer, different sign-in.
     */
    uint64_t gen;
    bool busy; /* a sign-in or code check is in flight: a second one waits */
    /* A TOTP seed being enrolled: only here until a code confirms it. */
    unsigned char seed[PORTAL_SEED_LEN];
    bool has_seed;
    /* What the next page shows once (after a redirect): a notice or an error. */
    char notice[PORTAL_FLASH_MAX], error[PORTAL_FLASH_MAX];
    struct portal_session *older, *newer; /* by creation, for eviction */
};

struct portal_limits {
    uint64_t idle_ms, absolute_ms, signin_ms;
    size_t max_sessions;
};

struct portal_store;

struct portal_store *portal_store_new(const char *node_id) MFA_MUSTCHECK;

/* Frees every session (wiping them) and the store. */
void portal_store_free(struct portal_store *st);

/*
 * Makes an anonymous session at <now_ms>. When the store holds
 * <lim>->max_sessions the expired sessions go, then the oldest anonymous
 * one, then the oldest half-done sign-in (a flood of sign-in pages must not
 * push out people entering their code); when all are signed in, returns
 * NULL with *full set. NULL without *full:
 * out of memory or no random numbers. The store owns the session.
 */
struct portal_session *portal_session_new(struct portal_store *st, const struct portal_limits *lim,
                                          uint64_t now_ms, bool *full);

/*
 * The live session with id <id> (untrusted text), or NULL (malformed,
 * unknown, or past its timeouts: then it is removed). Marks it used at
 * <now_ms>. The store owns it: do not keep it across a callback, look it up
 * again by id.
 */
struct portal_session *portal_session_get(struct portal_store *st, const char *id,
                                          const struct portal_limits *lim, uint64_t now_ms);

/*
 * Gives <s> a new id and a new CSRF token (at each step of the sign-in: an
 * id an attacker planted before is worthless now). Returns 0, or -1 (no random
 * numbers; the session is ended then).
 */
int portal_session_rotate(struct portal_store *st, struct portal_session *s) MFA_MUSTCHECK;

/* Moves <s> to <state> (keeps the count of active sessions right, bumps gen). */
void portal_session_set_state(struct portal_store *st, struct portal_session *s,
                              enum portal_state state);

/* Ends <s>: removed, wiped and freed. */
void portal_session_end(struct portal_store *st, struct portal_session *s);

/* Ends the sessions past their timeouts at <now_ms>. */
void portal_store_expire(struct portal_store *st, const struct portal_limits *lim, uint64_t now_ms);

/* Sessions, and those mid-sign-in or signed in (what a drain waits for). */
size_t portal_store_count(const struct portal_store *st);
size_t portal_store_active(const struct portal_store *st);

/* True when <token> (untrusted, may be NULL) is <s>'s CSRF token; constant time. */
bool portal_csrf_ok(const struct portal_session *s, const char *token);

/* ---- the QR code (portal_qr.c) ---- */

/*
 * Appends the QR code of <text> as an inline <svg id="qr">, or nothing
 * when it cannot be made (returns -1). The symbol's modules (qr->data) are
 * wiped; libqrencode's own working copies of <text> are freed unwiped.
 */
int portal_qr_svg(struct pbuf *b, const char *text) MFA_MUSTCHECK;

#endif
