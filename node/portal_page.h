/*
 * What the portal's page files share (portal.c: dispatch, answers and
 * sessions; portal_signin.c: sign-in, the code page, sign-out;
 * portal_settings.c: the settings, changes and the TOTP app). Not an API for
 * other subsystems (portal.h is).
 */
#ifndef MFA_NODE_PORTAL_PAGE_H
#define MFA_NODE_PORTAL_PAGE_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "node.h"
#include "portal_priv.h"
#include "users_priv.h"

extern const char portal_msg_ended[], portal_msg_read_only[], portal_msg_wrong_pin[],
    portal_msg_failed[];

struct portal_store *portal_store_of(const struct node *n);
struct portal_limits portal_limits_of(const struct node *n);

/* Sets what the next page shows once: a notice, or an error. */
void portal_flash(struct portal_session *s, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- answers (portal.c); <sid> "" sets no cookie ---- */

void portal_send_page(const struct node *n, struct evhttp_request *req, int status, const char *sid,
                      struct pbuf *b);
void portal_redirect(const struct node *n, struct evhttp_request *req, const char *sid,
                     const char *location);
/* The top of a page: head, the read-only banner, and the session's message, shown once. */
void portal_page_begin(struct pbuf *b, const struct node *n, const char *title,
                       struct portal_session *s);
void portal_page_end(struct pbuf *b, const struct node *n);
/* <form id=<id> method=post action=<action>> with the session's CSRF token. */
void portal_form_begin(struct pbuf *b, const char *id, const char *action,
                       const struct portal_session *s);
/* A page with one sentence and a link back; for the answers that are not a form. */
void portal_send_message(const struct node *n, struct evhttp_request *req, int status,
                         const char *sid, const char *title, const char *text);

/* The person's address (numeric) into <buf>: see portal_forwarded_for(). */
void portal_client_ip(const struct node *n, struct evhttp_request *req, char *buf, size_t size);

/*
 * Whether <peer> (numeric, as accepted) may speak for the client with
 * X-Forwarded-For and X-Forwarded-Proto: loopback (this host's HAProxy) or
 * a cluster member's address, IPv4-mapped IPv6 counting as the IPv4.
 */
bool portal_peer_trusted(const struct appconf *c, const char *peer);

/*
 * The client's address into <buf> (size > 0): the last entry of <xff> (the
 * one HAProxy appended) when <trusted> and it is a numeric address, else
 * <peer>; an IPv4-mapped IPv6 address is written as the IPv4.
 */
void portal_forwarded_for(const char *peer, const char *xff, bool trusted, char *buf, size_t size);

/*
 * Makes a new session with <notice> (may be NULL). Returns it, or NULL
 * after answering 503 (full) or 500 itself.
 */
struct portal_session *portal_new_session(struct node *n, struct evhttp_request *req,
                                          const char *notice);

/*
 * The live session <sid> again after a wait, or NULL after sending the
 * user to the sign-in page (without a cookie: a stale answer must not
 * replace the cookie of a newer session).
 */
struct portal_session *portal_session_again(struct node *n, struct evhttp_request *req,
                                            const char *sid);

/* A job waiting on the engine or the database, for the session <sid>. */
struct portal_job {
    struct node *n;
    struct evhttp_request *req;
    char sid[ID_MAX];
    /* the session when the job started: an answer for another one is dropped */
    uint64_t gen;
    enum portal_state state;
    char username[PORTAL_USER_MAX];
    char value[PORTAL_FORM_VALUE_MAX + 1]; /* the phone, method or PIN hash being set */
    char serial[USERS_TOTP_SERIAL_MAX];
    unsigned char seed[PORTAL_SEED_LEN];
    /* the home page: the user's row, kept for the second read */
    char display_name[1040], phone[32], method[8];
    bool has_totp, has_hotp;
    bool directory; /* signs in with the directory password (portal_directory_password()) */
};

/* A job for <s> (NULL after answering 500). */
struct portal_job *portal_job_new(struct node *n, struct evhttp_request *req,
                                  const struct portal_session *s);
/* Wipes and frees <j> (may be NULL). */
void portal_job_free(struct portal_job *j);

/* The sentence for a sign-in the engine refused or could not finish. */
const char *portal_signin_problem(const struct node *n, const struct auth_result *r);

/*
 * True when directory users sign in with their directory password
 * (directory.first_factor = "ldap"): the pages then say "password or PIN".
 */
bool portal_directory_password(const struct node *n);

/* ---- the pages (portal_signin.c, portal_settings.c) ---- */

void portal_page_signin(struct node *n, struct evhttp_request *req, struct portal_session *s);
void portal_post_signin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f);
void portal_page_factor(struct node *n, struct evhttp_request *req, struct portal_session *s);
void portal_post_factor(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f);
void portal_post_restart(struct node *n, struct evhttp_request *req, struct portal_session *s,
                         const struct portal_form *f);
void portal_post_signout(struct node *n, struct evhttp_request *req, struct portal_session *s,
                         const struct portal_form *f);
void portal_page_home(struct node *n, struct evhttp_request *req, struct portal_session *s);
void portal_post_phone(struct node *n, struct evhttp_request *req, struct portal_session *s,
                       const struct portal_form *f);
void portal_post_method(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f);
void portal_post_pin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                     const struct portal_form *f);
void portal_page_totp(struct node *n, struct evhttp_request *req, struct portal_session *s);
void portal_post_totp(struct node *n, struct evhttp_request *req, struct portal_session *s,
                      const struct portal_form *f);

#endif
