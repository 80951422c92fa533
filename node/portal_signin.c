/*
 * The portal's sign-in (docs/portal.md): the sign-in page, the code page,
 * starting again and signing out.
 *
 * Sign-in is the engine's (auth.h) in two steps: AUTH_STEP_PIN (with
 * require_pin: a user without a PIN cannot be found, shown or sent a code
 * through the portal), then for SMS auth_verify() on the challenge it made,
 * for TOTP/HOTP AUTH_STEP_CODE. Between them the session holds the fact
 * that the PIN was right, never the PIN. The id and CSRF token change at
 * both steps.
 *
 * One check is in flight per session (busy), and an answer is taken only
 * for the session generation and user it was asked for: a slow code check
 * of user A cannot complete a PIN step of user B that finished meanwhile.
 *
 * Under directory.first_factor = "ldap" the first field takes a directory
 * user's password or anyone else's PIN; the page is the same for both and
 * says "Password or PIN", and a wrong one or an unknown user gets the same
 * sentence. What still tells a directory user from others (docs/portal.md,
 * "What sign-in reveals"): the time of the answer (a bind to the directory
 * is slower than a PIN check, and there is no decoy bind for other users);
 * while the directory is away, its "cannot check your password" sentence,
 * which is kept because it tells the user it is not their fault; and while
 * one of their checks runs, the generic sentence a second sign-in gets
 * ("busy"). Whether the password was right is never told before the code.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "log.h"
#include "portal_page.h"
#include "users_priv.h"

bool portal_directory_password(const struct node *n)
{
    return node_conf(n)->directory.first_factor == FIRST_FACTOR_LDAP;
}

/* The one answer for an unknown user, a wrong first factor, no PIN, or a disabled account. */
static const char *wrong_signin(const struct node *n)
{
    return portal_directory_password(n) ? "Wrong username, password or PIN." : portal_msg_wrong_pin;
}

void portal_page_signin(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    bool password = portal_directory_password(n);
    struct pbuf b = { 0 };

    if (s->state == PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    if (s->state != PORTAL_ANON) {
        portal_redirect(n, req, s->id, "/portal/factor");
        return;
    }
    portal_page_begin(&b, n, "Sign in", s);
    portal_form_begin(&b, "signin", "/portal/signin", s);
    pbuf_puts(&b, "<label for=\"username\">Username</label>"
                  "<input id=\"username\" name=\"username\" autocomplete=\"username\" "
                  "autocapitalize=\"none\" required>");
    /* A password is not numeric: no digit keyboard on phones then. */
    pbuf_puts(&b, password ? "<label for=\"pin\">Password or PIN</label>"
                             "<input id=\"pin\" name=\"pin\" type=\"password\" "
                           : "<label for=\"pin\">PIN</label>"
                             "<input id=\"pin\" name=\"pin\" type=\"password\" "
                             "inputmode=\"numeric\" ");
    pbuf_puts(&b, "autocomplete=\"current-password\">"
                  "<button type=\"submit\">Continue</button></form>");
    portal_page_end(&b, n);
    portal_send_page(n, req, 200, s->id, &b);
}

const char *portal_signin_problem(const struct node *n, const struct auth_result *r)
{
    static const struct {
        const char *reason, *text;
    } texts[] = {
        { "locked_out", "Your account is locked for now after too many failed attempts. "
                        "Please try again later." },
        { "throttled", "Too many failed sign-ins came from your address. Please wait a minute "
                       "and try again." },
        { "sms_rate_limited", "Too many codes were sent to you this hour. Please try later." },
        { "sms_cap_reached", "No more codes can be sent this hour. Please try later." },
        { "sms_failed", "The code could not be sent to your phone. Please try again." },
        { "no_phone", "Your account has no phone number for codes; ask your administrator." },
        { "no_token", "Your account has no authenticator set up; ask your administrator." },
        { "challenge_expired", "The code expired. Please sign in again." },
        { "attempts_exhausted", "Too many wrong codes. Please sign in again." },
        { "replayed", "That code was used already. Wait for the next one and try again." },
        { "wrong_code", "That code is not right. Please try again." },
        { "database_unavailable", "The server cannot check your account right now. Please try "
                                  "again in a moment." },
        /* Says the user is a directory user; kept, it tells them what to do (see above). */
        { "directory_unavailable", "The company directory cannot check your password right now. "
                                   "Please try again in a moment." },
        /* Another sign-in of the user's is at the directory: the generic sentence. */
        { "busy", "Signing in is not possible right now. Please try again." },
    };

    for (size_t i = 0; r->reason && i < MFA_ARRAY_LEN(texts); i++) {
        if (strcmp(texts[i].reason, r->reason) == 0)
            return texts[i].text;
    }
    /* unknown_user, wrong_pin, wrong_password, pin_required, disabled: never say which */
    return r->outcome == AUTH_REJECTED ? wrong_signin(n)
                                       : "Signing in is not possible right now. Please try again.";
}

/*
 * The session <j> asked for, still as it was: the same generation (no
 * sign-in started or state changed since), state and user. NULL after
 * answering otherwise: a late answer changes nothing.
 */
static struct portal_session *same_session(struct portal_job *j)
{
    struct portal_session *s = portal_session_again(j->n, j->req, j->sid);

    if (!s)
        return NULL;
    s->busy = false;
    if (s->gen == j->gen && s->state == j->state && strcasecmp(s->username, j->username) == 0)
        return s;
    log_info("portal.stale_answer");
    portal_flash(s, true,
                 "That took too long and something else happened meanwhile. Please try again.");
    portal_redirect(j->n, j->req, s->id,
                    s->state == PORTAL_SIGNED_IN ? "/portal/home" : "/portal/");
    return NULL;
}

static void signin_done(void *arg, const struct auth_result *r)
{
    struct portal_job *j = arg;
    struct portal_session *s = same_session(j);

    if (!s)
        goto done;
    if (r->outcome != AUTH_CHALLENGE) {
        portal_flash(s, true, "%s", portal_signin_problem(j->n, r));
        portal_redirect(j->n, j->req, s->id, "/portal/");
        goto done;
    }
    snprintf(s->method, sizeof(s->method), "%s", r->method);
    s->stage_ms = clock_mono_ms();
    *s->challenge_id = *s->phone_tail = '\0';
    if (r->challenge_id) {
        size_t len = r->phone ? strlen(r->phone) : 0;

        snprintf(s->challenge_id, sizeof(s->challenge_id), "%s", r->challenge_id);
        /* The PIN was checked (require_pin): only now is any of the phone shown. */
        snprintf(s->phone_tail, sizeof(s->phone_tail), "%s", len > 4 ? r->phone + len - 4 : "");
        portal_session_set_state(portal_store_of(j->n), s, PORTAL_WAIT_SMS);
    } else {
        portal_session_set_state(portal_store_of(j->n), s, PORTAL_WAIT_CODE);
    }
    /* A new id for the half-done sign-in too: one planted before is worthless. */
    if (portal_session_rotate(portal_store_of(j->n), s) < 0) {
        portal_send_message(j->n, j->req, 500, "", "Error", "The server cannot keep your session.");
        goto done;
    }
    portal_redirect(j->n, j->req, s->id, "/portal/factor");
done:
    portal_job_free(j);
}

/* True when a check of <s> is in flight; then the user is told to wait (answered). */
static bool still_busy(struct node *n, struct evhttp_request *req, struct portal_session *s,
                       const char *back)
{
    if (!s->busy)
        return false;
    portal_flash(s, true, "Your last attempt is still being checked. Please try again.");
    portal_redirect(n, req, s->id, back);
    return true;
}

void portal_post_signin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    const char *user = portal_form_get(f, "username"), *pin = portal_form_get(f, "pin");
    struct auth_request rq = { .step = AUTH_STEP_PIN };
    char ip[64];
    struct portal_job *j;

    if (s->state == PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    if (still_busy(n, req, s, "/portal/"))
        return;
    /* Starting again from the sign-in page drops a sign-in half done. */
    portal_session_set_state(portal_store_of(n), s, PORTAL_ANON);
    *s->username = *s->challenge_id = *s->phone_tail = '\0';
    if (!user || users_check_username("username", user, NULL) < 0 ||
        strlen(user) >= PORTAL_USER_MAX) {
        portal_flash(s, true, "%s", wrong_signin(n));
        portal_redirect(n, req, s->id, "/portal/");
        return;
    }
    /* This attempt, for this user: the answer is taken only for it (same_session). */
    s->gen++;
    snprintf(s->username, sizeof(s->username), "%s", user);
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    portal_client_ip(n, req, ip, sizeof(ip));
    rq.username = user;
    rq.pin = pin && *pin ? pin : NULL;
    rq.client_ip = ip;
    rq.require_pin = true;
    /* Set before: the answer may come before auth_signin() returns, and clears it. */
    s->busy = true;
    if (auth_signin(n, &rq, signin_done, j) < 0) {
        s->busy = false; /* no answer will come */
        portal_send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        portal_job_free(j);
    }
}

void portal_page_factor(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    struct pbuf b = { 0 };

    if (s->state == PORTAL_SIGNED_IN || s->state == PORTAL_ANON) {
        portal_redirect(n, req, s->id, s->state == PORTAL_ANON ? "/portal/" : "/portal/home");
        return;
    }
    portal_page_begin(&b, n, "Enter your code", s);
    if (s->state == PORTAL_WAIT_SMS) {
        pbuf_puts(&b, "<p id=\"factor-text\">Enter the code we sent to your phone ending ");
        pbuf_escape(&b, s->phone_tail);
        pbuf_puts(&b, "</p>");
    } else {
        pbuf_printf(&b, "<p id=\"factor-text\">Enter the code from your %s</p>",
                    strcmp(s->method, "hotp") == 0 ? "token" : "authenticator app");
    }
    portal_form_begin(&b, "factor", "/portal/factor", s);
    pbuf_puts(&b, "<label for=\"code\">Code</label>"
                  "<input id=\"code\" name=\"code\" inputmode=\"numeric\" "
                  "autocomplete=\"one-time-code\" required>"
                  "<button type=\"submit\">Sign in</button></form>");
    /* A form, not a link: the sign-in page sends a sign-in half done back here. */
    portal_form_begin(&b, "restart", "/portal/restart", s);
    pbuf_puts(&b, "<button type=\"submit\">Start again</button></form>");
    portal_page_end(&b, n);
    portal_send_page(n, req, 200, s->id, &b);
}

static void factor_done(void *arg, const struct auth_result *r)
{
    struct portal_job *j = arg;
    struct portal_session *s = same_session(j);
    bool again;

    if (!s)
        goto done;
    if (r->outcome == AUTH_ACCEPTED) {
        portal_session_set_state(portal_store_of(j->n), s, PORTAL_SIGNED_IN);
        s->signed_in_ms = clock_mono_ms();
        *s->challenge_id = '\0';
        if (portal_session_rotate(portal_store_of(j->n), s) < 0) {
            portal_send_message(j->n, j->req, 500, "", "Error",
                                "The server cannot keep your session.");
            goto done;
        }
        portal_redirect(j->n, j->req, s->id, "/portal/home");
        goto done;
    }
    /* A wrong or replayed code may be tried again while the challenge lives. */
    again = r->outcome == AUTH_REJECTED && r->reason &&
            (strcmp(r->reason, "replayed") == 0 ||
             (strcmp(r->reason, "wrong_code") == 0 && r->attempts_left != 0));
    portal_flash(s, true, "%s", portal_signin_problem(j->n, r));
    if (!again)
        portal_session_set_state(portal_store_of(j->n), s, PORTAL_ANON);
    portal_redirect(j->n, j->req, s->id, again ? "/portal/factor" : "/portal/");
done:
    portal_job_free(j);
}

void portal_post_factor(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    const char *code = portal_form_get(f, "code");
    char ip[64];
    struct portal_job *j;
    int rc;

    if (s->state == PORTAL_SIGNED_IN || s->state == PORTAL_ANON) {
        portal_redirect(n, req, s->id, s->state == PORTAL_ANON ? "/portal/" : "/portal/home");
        return;
    }
    if (still_busy(n, req, s, "/portal/factor"))
        return;
    if (!code || !*code || strlen(code) > AUTH_SECRET_MAX) {
        portal_flash(s, true, "Enter the code.");
        portal_redirect(n, req, s->id, "/portal/factor");
        return;
    }
    j = portal_job_new(n, req, s);
    if (!j)
        return;
    portal_client_ip(n, req, ip, sizeof(ip));
    s->busy = true; /* before: the answer may come at once, and clears it */
    if (s->state == PORTAL_WAIT_SMS) {
        rc = auth_verify(n, s->challenge_id, code, s->username, false, ip, factor_done, j);
    } else {
        struct auth_request rq = {
            .step = AUTH_STEP_CODE,
            .username = s->username,
            .method = s->method,
            .otp = code,
            .client_ip = ip,
        };

        rc = auth_signin(n, &rq, factor_done, j);
    }
    if (rc < 0) {
        s->busy = false; /* no answer will come */
        portal_send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        portal_job_free(j);
    }
}

void portal_post_restart(struct node *n, struct evhttp_request *req, struct portal_session *s,
                         const struct portal_form *f)
{
    (void)f;
    if (s->state == PORTAL_SIGNED_IN) {
        portal_redirect(n, req, s->id, "/portal/home");
        return;
    }
    /* The sign-in half done ends; a check still in flight finds a newer generation. */
    portal_session_set_state(portal_store_of(n), s, PORTAL_ANON);
    *s->username = *s->challenge_id = *s->phone_tail = '\0';
    portal_redirect(n, req, s->id, "/portal/");
}

void portal_post_signout(struct node *n, struct evhttp_request *req, struct portal_session *s,
                         const struct portal_form *f)
{
    (void)f;
    portal_session_end(portal_store_of(n), s);
    s = portal_new_session(n, req, "You are signed out.");
    if (s)
        portal_redirect(n, req, s->id, "/portal/");
}
