/*
 * The user portal's pages and forms; see portal.h and docs/portal.md.
 *
 * Every request finds its session by the mfa_sid cookie (portal_session.c).
 * A GET without a live session makes one (the sign-in page has a CSRF token
 * and the session is sticky from its first request); a POST must carry the
 * session's CSRF token. Every POST answers with a 303 to a page, which
 * shows what happened once (the session's notice or error): reloading a
 * page never sends a form again.
 *
 * Sign-in is the engine's (auth.h) in two steps: AUTH_STEP_PIN, then for
 * SMS auth_verify() on the challenge it made, for TOTP/HOTP AUTH_STEP_CODE.
 * Between them the session holds the fact that the PIN was right, never the
 * PIN. The id and CSRF token change when the sign-in completes.
 *
 * Requests that wait (the engine, the database) hold a job with the
 * session's id, not the session: when the answer comes the session is
 * looked up again, since it may have timed out meanwhile. PINs and codes
 * are wiped from the request body and the parsed form once read.
 *
 * Without a writable primary the pages still show and sign-in works (the
 * engine works offline); every change is refused with a banner, and a
 * write that loses its primary on the way says the same. Nothing here
 * answers 5xx for that.
 */
#include "portal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "b64.h"
#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "netaddr.h"
#include "otp.h"
#include "portal_priv.h"
#include "seal.h"
#include "secrets.h"
#include "users_priv.h"

#define COOKIE      "mfa_sid"
#define TOTP_ISSUER "MFA Appliance"
#define TOTP_PERIOD 30
#define TOTP_DIGITS 6

static const char msg_ended[] = "Your session has ended (it timed out, or the server holding it "
                                "went away). Please sign in again.";
static const char msg_read_only[] =
    "Changes are paused until the primary server is back; nothing was changed.";
static const char msg_wrong_pin[] = "Wrong username or PIN.";
static const char msg_failed[] = "That did not work because of a problem on the server; nothing "
                                 "was changed. Please try again.";

struct portal {
    struct portal_store *store;
};

static struct portal_store *store_of(const struct node *n)
{
    return ((struct portal *)n->portal)->store;
}

static struct portal_limits limits_of(const struct node *n)
{
    const struct appconf *c = node_conf(n);

    return (struct portal_limits){
        .idle_ms = (uint64_t)c->node.portal.idle_timeout_s * 1000,
        .absolute_ms = (uint64_t)c->node.portal.absolute_timeout_s * 1000,
        .signin_ms = (uint64_t)c->node.portal.signin_timeout_s * 1000,
        .max_sessions = (size_t)c->node.portal.max_sessions,
    };
}

static void flash(struct portal_session *s, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void flash(struct portal_session *s, bool error, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(error ? s->error : s->notice, PORTAL_FLASH_MAX, fmt, ap);
    va_end(ap);
}

/* ---- answers ---- */

/* Whether the request came through TLS: HAProxy says so. */
static bool secure_request(struct evhttp_request *req)
{
    const char *proto =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-Proto");

    return proto && strcasecmp(proto, "https") == 0;
}

/* The headers of every portal answer, and the cookie of session <sid> ("" for none). */
static void add_headers(const struct node *n, struct evhttp_request *req, const char *sid)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "X-MFA-Node", n->id);
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    if (*sid) {
        char cookie[128];

        snprintf(cookie, sizeof(cookie), COOKIE "=%s; Path=/portal/; HttpOnly; SameSite=Strict%s",
                 sid, secure_request(req) ? "; Secure" : "");
        evhttp_add_header(h, "Set-Cookie", cookie);
    }
}

static void send_page(const struct node *n, struct evhttp_request *req, int status, const char *sid,
                      struct pbuf *b)
{
    static const char oom[] = "<!DOCTYPE html><title>Error</title><p>Out of memory.</p>";

    add_headers(n, req, sid);
    if (b->oom)
        http_reply(req, 500, "text/html; charset=utf-8", oom, sizeof(oom) - 1);
    else
        http_reply(req, status, "text/html; charset=utf-8", b->p, b->len);
    pbuf_free(b);
}

static void redirect(const struct node *n, struct evhttp_request *req, const char *sid,
                     const char *location)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", location);
    add_headers(n, req, sid);
    http_reply(req, 303, "text/html; charset=utf-8", "", 0);
}

static const char style[] =
    "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}"
    "main{max-width:40rem;margin:0 auto;padding:1rem}"
    "h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}"
    "form{background:#fff;border:1px solid #d5d8dd;border-radius:6px;padding:1rem;margin:.8rem 0}"
    "label{display:block;margin:.5rem 0 .2rem}"
    "input,select{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}"
    "button{font-size:1rem;padding:.5rem 1rem;margin-top:.8rem}"
    "#error{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem}"
    "#notice{background:#e6f4ea;border:1px solid #9fd0ab;padding:.6rem}"
    "#banner-read-only{background:#fff4d6;border-bottom:1px solid #e2c36b;padding:.6rem 1rem}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}dd{margin:0}"
    "table{border-collapse:collapse;width:100%;font-size:.85rem;background:#fff}"
    "th,td{border:1px solid #d5d8dd;padding:.3rem;text-align:left}"
    "code{word-break:break-all}footer{color:#666;font-size:.8rem;text-align:center;padding:1rem}";

/* The top of a page: head, the read-only banner, and the session's message, shown once. */
static void page_begin(struct pbuf *b, const struct node *n, const char *title,
                       struct portal_session *s)
{
    pbuf_puts(b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                 "<title>");
    pbuf_escape(b, title);
    pbuf_printf(b, "</title><style>%s</style></head><body>", style);
    if (!nodedb_writable(n->db))
        pbuf_puts(b, "<div id=\"banner-read-only\" role=\"status\">Changes are paused until the "
                     "primary server is back. You can sign in and see your settings.</div>");
    pbuf_puts(b, "<main><h1>");
    pbuf_escape(b, title);
    pbuf_puts(b, "</h1>");
    if (s && *s->notice) {
        pbuf_puts(b, "<p id=\"notice\">");
        pbuf_escape(b, s->notice);
        pbuf_puts(b, "</p>");
    }
    if (s && *s->error) {
        pbuf_puts(b, "<p id=\"error\" role=\"alert\">");
        pbuf_escape(b, s->error);
        pbuf_puts(b, "</p>");
    }
    if (s)
        *s->notice = *s->error = '\0';
}

static void page_end(struct pbuf *b, const struct node *n)
{
    pbuf_puts(b, "</main><footer>Served by ");
    pbuf_escape(b, n->id);
    pbuf_puts(b, "</footer></body></html>");
}

static void form_begin(struct pbuf *b, const char *id, const char *action,
                       const struct portal_session *s)
{
    pbuf_printf(b,
                "<form id=\"%s\" method=\"post\" action=\"%s\">"
                "<input type=\"hidden\" name=\"csrf\" value=\"%s\">",
                id, action, s->csrf);
}

/* A page with one sentence and a link back; for the answers that are not a form. */
static void send_message(const struct node *n, struct evhttp_request *req, int status,
                         const char *sid, const char *title, const char *text)
{
    struct pbuf b = { 0 };

    page_begin(&b, n, title, NULL);
    pbuf_puts(&b, "<p>");
    pbuf_escape(&b, text);
    pbuf_puts(&b, "</p><p><a href=\"/portal/\">Go to the sign-in page</a></p>");
    page_end(&b, n);
    send_page(n, req, status, sid, &b);
}

/* ---- requests ---- */

/*
 * The address of the person: HAProxy (on a cluster member, or this host's
 * loopback) appends it as X-Forwarded-For, having dropped any the client
 * sent; from anyone else the header is not believed.
 */
static void client_ip(const struct node *n, struct evhttp_request *req, char *buf, size_t size)
{
    const struct appconf *c = node_conf(n);
    const char *xff = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For");
    char peer[64];
    bool member;

    http_peer_address(req, peer, sizeof(peer));
    member = strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0;
    for (size_t i = 0; i < c->cluster.nmembers; i++)
        member = member || strcmp(c->cluster.members[i].address, peer) == 0;
    snprintf(buf, size, "%s", peer);
    if (member && xff) {
        const char *last = strrchr(xff, ',');

        last = last ? last + 1 : xff;
        while (*last == ' ')
            last++;
        if (strlen(last) < size && netaddr_numeric(last))
            snprintf(buf, size, "%s", last);
    }
}

/*
 * The value of the mfa_sid cookie into <buf>: 1, 0 when there is none, and
 * 1 with "" when it is there but could not be one of ours (too long).
 */
static int read_cookie(struct evhttp_request *req, char *buf, size_t size)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    size_t nlen = strlen(COOKIE);

    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        if (strncmp(h, COOKIE "=", nlen + 1) == 0) {
            size_t vlen = strcspn(h + nlen + 1, "; ");

            buf[0] = '\0';
            if (vlen < size)
                snprintf(buf, size, "%.*s", (int)vlen, h + nlen + 1);
            return 1;
        }
        h = strchr(h, ';');
    }
    return 0;
}

/*
 * Makes a new session with <notice> (may be NULL). Returns it, or NULL
 * after answering 503 (full) or 500 itself.
 */
static struct portal_session *new_session(struct node *n, struct evhttp_request *req,
                                          const char *notice)
{
    struct portal_limits lim = limits_of(n);
    bool full;
    struct portal_session *s = portal_session_new(store_of(n), &lim, clock_mono_ms(), &full);

    if (!s) {
        log_warn("portal.no_session reason=%s", full ? "full" : "no_memory");
        send_message(n, req, full ? 503 : 500, "", "Too many sessions",
                     full ? "There are too many sessions on this server right now (too many "
                            "sessions). Please try again in a few minutes."
                          : "The server cannot start a session now. Please try again.");
        return NULL;
    }
    if (notice)
        flash(s, false, "%s", notice);
    return s;
}

/* The live session <sid> again after a wait, or NULL after sending the user to sign in. */
static struct portal_session *session_again(struct node *n, struct evhttp_request *req,
                                            const char *sid)
{
    struct portal_limits lim = limits_of(n);
    struct portal_session *s = portal_session_get(store_of(n), sid, &lim, clock_mono_ms());

    struct portal_session *fresh;

    if (s)
        return s;
    fresh = new_session(n, req, msg_ended);
    if (fresh)
        redirect(n, req, fresh->id, "/portal/");
    return NULL;
}

/* A job waiting on the engine or the database, for the session <sid>. */
struct job {
    struct node *n;
    struct evhttp_request *req;
    char sid[ID_MAX];
    char username[PORTAL_USER_MAX];
    char value[PORTAL_FORM_VALUE_MAX + 1]; /* the phone, method or PIN hash being set */
    char serial[USERS_TOTP_SERIAL_MAX];
    int64_t step; /* a TOTP enrolment: the step its code confirmed */
    unsigned char seed[PORTAL_SEED_LEN];
    /* the home page: the user's row, kept for the second read */
    char display_name[1040], phone[32], method[8];
    bool has_totp, has_hotp;
};

static struct job *job_new(struct node *n, struct evhttp_request *req,
                           const struct portal_session *s)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j) {
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        return NULL;
    }
    j->n = n;
    j->req = req;
    snprintf(j->sid, sizeof(j->sid), "%s", s->id);
    snprintf(j->username, sizeof(j->username), "%s", s->username);
    return j;
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    secret_wipe(j, sizeof(*j));
    free(j);
}

/* ---- sign-in ---- */

static void page_signin(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    struct pbuf b = { 0 };

    if (s->state == PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/home");
        return;
    }
    if (s->state != PORTAL_ANON) {
        redirect(n, req, s->id, "/portal/factor");
        return;
    }
    page_begin(&b, n, "Sign in", s);
    form_begin(&b, "signin", "/portal/signin", s);
    pbuf_puts(&b, "<label for=\"username\">Username</label>"
                  "<input id=\"username\" name=\"username\" autocomplete=\"username\" "
                  "autocapitalize=\"none\" required>"
                  "<label for=\"pin\">PIN</label>"
                  "<input id=\"pin\" name=\"pin\" type=\"password\" inputmode=\"numeric\" "
                  "autocomplete=\"current-password\">"
                  "<button type=\"submit\">Continue</button></form>");
    page_end(&b, n);
    send_page(n, req, 200, s->id, &b);
}

/* The sentence for a sign-in the engine refused or could not finish. */
static const char *signin_problem(const struct auth_result *r)
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
    };

    for (size_t i = 0; r->reason && i < MFA_ARRAY_LEN(texts); i++) {
        if (strcmp(texts[i].reason, r->reason) == 0)
            return texts[i].text;
    }
    /* unknown_user, wrong_pin, pin_required, disabled: never say which */
    return r->outcome == AUTH_REJECTED ? msg_wrong_pin
                                       : "Signing in is not possible right now. Please try again.";
}

static void signin_done(void *arg, const struct auth_result *r)
{
    struct job *j = arg;
    struct portal_session *s = session_again(j->n, j->req, j->sid);

    if (!s)
        goto done;
    if (r->outcome != AUTH_CHALLENGE) {
        flash(s, true, "%s", signin_problem(r));
        redirect(j->n, j->req, s->id, "/portal/");
        goto done;
    }
    snprintf(s->username, sizeof(s->username), "%s", j->username);
    snprintf(s->method, sizeof(s->method), "%s", r->method);
    s->stage_ms = clock_mono_ms();
    *s->challenge_id = *s->phone_tail = '\0';
    if (r->challenge_id) {
        size_t len = r->phone ? strlen(r->phone) : 0;

        snprintf(s->challenge_id, sizeof(s->challenge_id), "%s", r->challenge_id);
        snprintf(s->phone_tail, sizeof(s->phone_tail), "%s", len > 4 ? r->phone + len - 4 : "");
        portal_session_set_state(store_of(j->n), s, PORTAL_WAIT_SMS);
    } else {
        portal_session_set_state(store_of(j->n), s, PORTAL_WAIT_CODE);
    }
    redirect(j->n, j->req, s->id, "/portal/factor");
done:
    job_free(j);
}

static void post_signin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    const char *user = portal_form_get(f, "username"), *pin = portal_form_get(f, "pin");
    struct auth_request rq = { .step = AUTH_STEP_PIN };
    char ip[64];
    struct job *j;

    if (s->state == PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/home");
        return;
    }
    /* Starting again from the sign-in page drops a sign-in half done. */
    portal_session_set_state(store_of(n), s, PORTAL_ANON);
    if (!user || users_check_username("username", user, NULL) < 0 ||
        strlen(user) >= PORTAL_USER_MAX) {
        flash(s, true, "%s", msg_wrong_pin);
        redirect(n, req, s->id, "/portal/");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    snprintf(j->username, sizeof(j->username), "%s", user);
    client_ip(n, req, ip, sizeof(ip));
    rq.username = user;
    rq.pin = pin && *pin ? pin : NULL;
    rq.client_ip = ip;
    if (auth_signin(n, &rq, signin_done, j) < 0) {
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        job_free(j);
    }
}

static void page_factor(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    struct pbuf b = { 0 };

    if (s->state == PORTAL_SIGNED_IN || s->state == PORTAL_ANON) {
        redirect(n, req, s->id, s->state == PORTAL_ANON ? "/portal/" : "/portal/home");
        return;
    }
    page_begin(&b, n, "Enter your code", s);
    if (s->state == PORTAL_WAIT_SMS) {
        pbuf_puts(&b, "<p id=\"factor-text\">Enter the code we sent to your phone ending ");
        pbuf_escape(&b, s->phone_tail);
        pbuf_puts(&b, "</p>");
    } else {
        pbuf_printf(&b, "<p id=\"factor-text\">Enter the code from your %s</p>",
                    strcmp(s->method, "hotp") == 0 ? "token" : "authenticator app");
    }
    form_begin(&b, "factor", "/portal/factor", s);
    pbuf_puts(&b, "<label for=\"code\">Code</label>"
                  "<input id=\"code\" name=\"code\" inputmode=\"numeric\" "
                  "autocomplete=\"one-time-code\" required>"
                  "<button type=\"submit\">Sign in</button></form>"
                  "<p><a href=\"/portal/\">Start again</a></p>");
    page_end(&b, n);
    send_page(n, req, 200, s->id, &b);
}

static void factor_done(void *arg, const struct auth_result *r)
{
    struct job *j = arg;
    struct portal_session *s = session_again(j->n, j->req, j->sid);
    bool again;

    if (!s)
        goto done;
    if (r->outcome == AUTH_ACCEPTED) {
        portal_session_set_state(store_of(j->n), s, PORTAL_SIGNED_IN);
        s->signed_in_ms = clock_mono_ms();
        *s->challenge_id = '\0';
        if (portal_session_rotate(store_of(j->n), s) < 0) {
            send_message(j->n, j->req, 500, "", "Error", "The server cannot keep your session.");
            goto done;
        }
        redirect(j->n, j->req, s->id, "/portal/home");
        goto done;
    }
    /* A wrong or replayed code may be tried again while the challenge lives. */
    again = r->outcome == AUTH_REJECTED && r->reason &&
            (strcmp(r->reason, "replayed") == 0 ||
             (strcmp(r->reason, "wrong_code") == 0 && r->attempts_left != 0));
    flash(s, true, "%s", signin_problem(r));
    if (!again)
        portal_session_set_state(store_of(j->n), s, PORTAL_ANON);
    redirect(j->n, j->req, s->id, again ? "/portal/factor" : "/portal/");
done:
    job_free(j);
}

static void post_factor(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    const char *code = portal_form_get(f, "code");
    char ip[64];
    struct job *j;
    int rc;

    if (s->state == PORTAL_SIGNED_IN || s->state == PORTAL_ANON) {
        redirect(n, req, s->id, s->state == PORTAL_ANON ? "/portal/" : "/portal/home");
        return;
    }
    if (!code || !*code || strlen(code) > AUTH_SECRET_MAX) {
        flash(s, true, "Enter the code.");
        redirect(n, req, s->id, "/portal/factor");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    client_ip(n, req, ip, sizeof(ip));
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
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        job_free(j);
    }
}

static void post_signout(struct node *n, struct evhttp_request *req, struct portal_session *s,
                         const struct portal_form *f)
{
    (void)f;
    portal_session_end(store_of(n), s);
    s = new_session(n, req, "You are signed out.");
    if (s)
        redirect(n, req, s->id, "/portal/");
}

/* ---- the settings ---- */

static const char home_user_sql[] =
    "SELECT u.username, u.display_name, u.phone, u.method, u.disabled,"
    " EXISTS (SELECT 1 FROM oath_tokens t WHERE t.user_id = u.id AND t.kind = 'totp'),"
    " EXISTS (SELECT 1 FROM oath_tokens t WHERE t.user_id = u.id AND t.kind = 'hotp')"
    " FROM users u WHERE lower(u.username) = lower($1)";

static const char home_recent_sql[] =
    "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), method, result, reason,"
    " coalesce(host(client_ip), ''), server_name FROM auth_log"
    " WHERE lower(username) = lower($1) AND result <> 'challenge'"
    " ORDER BY at DESC, id DESC LIMIT 10"; /* the contract's "last 10" */

static void send_home(struct job *j, struct portal_session *s, const PGresult *recent)
{
    static const char *const methods[] = { "sms", "totp", "hotp" };
    bool usable[] = { *j->phone != '\0', j->has_totp, j->has_hotp };
    struct pbuf b = { 0 };

    page_begin(&b, j->n, "Your sign-in settings", s);
    pbuf_puts(&b, "<dl id=\"profile\"><dt>Username</dt><dd id=\"username\">");
    pbuf_escape(&b, j->username);
    pbuf_puts(&b, "</dd><dt>Name</dt><dd id=\"display-name\">");
    pbuf_escape(&b, j->display_name);
    pbuf_puts(&b, "</dd><dt>Phone</dt><dd id=\"phone\">");
    pbuf_escape(&b, j->phone);
    pbuf_puts(&b, "</dd><dt>Sign-in method</dt><dd id=\"method\">");
    pbuf_escape(&b, j->method);
    pbuf_puts(&b, "</dd></dl>");

    pbuf_puts(&b, "<h2>Phone number</h2>");
    form_begin(&b, "phone-form", "/portal/phone", s);
    pbuf_puts(&b, "<label for=\"phone-input\">Phone (digits, may start with +)</label>"
                  "<input id=\"phone-input\" name=\"phone\" type=\"tel\" value=\"");
    pbuf_escape(&b, j->phone);
    pbuf_puts(&b, "\"><button type=\"submit\">Save phone</button></form>");

    pbuf_puts(&b, "<h2>Sign-in method</h2>");
    form_begin(&b, "method-form", "/portal/method", s);
    pbuf_puts(&b, "<label for=\"method-select\">Method</label>"
                  "<select id=\"method-select\" name=\"method\">");
    for (size_t i = 0; i < MFA_ARRAY_LEN(methods); i++) {
        if (usable[i])
            pbuf_printf(&b, "<option value=\"%s\"%s>%s</option>", methods[i],
                        strcmp(methods[i], j->method) == 0 ? " selected" : "", methods[i]);
    }
    pbuf_puts(&b, "</select><button type=\"submit\">Save method</button></form>");

    pbuf_puts(&b, "<h2>PIN</h2>");
    form_begin(&b, "pin-form", "/portal/pin", s);
    pbuf_puts(&b, "<label for=\"current_pin\">Current PIN</label><input id=\"current_pin\" "
                  "name=\"current_pin\" type=\"password\" inputmode=\"numeric\" "
                  "autocomplete=\"current-password\">"
                  "<label for=\"new_pin\">New PIN (4 to 8 digits)</label><input id=\"new_pin\" "
                  "name=\"new_pin\" type=\"password\" inputmode=\"numeric\" "
                  "autocomplete=\"new-password\">"
                  "<label for=\"new_pin2\">New PIN again</label><input id=\"new_pin2\" "
                  "name=\"new_pin2\" type=\"password\" inputmode=\"numeric\" "
                  "autocomplete=\"new-password\">"
                  "<button type=\"submit\">Change PIN</button></form>");

    pbuf_puts(&b, "<h2>Authenticator app</h2><p><a id=\"totp-link\" href=\"/portal/totp\">Set up "
                  "an authenticator app</a></p>");

    pbuf_puts(&b, "<h2>Recent sign-ins</h2><table id=\"recent\"><thead><tr><th>Time (UTC)</th>"
                  "<th>Method</th><th>Result</th><th>Client IP</th><th>Server</th></tr></thead>"
                  "<tbody>");
    for (int i = 0; recent && i < PQntuples(recent); i++) {
        pbuf_puts(&b, "<tr><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 0));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 1));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 2));
        if (*PQgetvalue(recent, i, 3)) {
            pbuf_puts(&b, " (");
            pbuf_escape(&b, PQgetvalue(recent, i, 3));
            pbuf_puts(&b, ")");
        }
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 4));
        pbuf_puts(&b, "</td><td>");
        pbuf_escape(&b, PQgetvalue(recent, i, 5));
        pbuf_puts(&b, "</td></tr>");
    }
    pbuf_puts(&b, "</tbody></table>");
    form_begin(&b, "signout", "/portal/signout", s);
    pbuf_puts(&b, "<button type=\"submit\">Sign out</button></form>");
    page_end(&b, j->n);
    send_page(j->n, j->req, 200, s->id, &b);
}

static void home_failed(struct job *j, struct portal_session *s, const char *err)
{
    log_error("portal.read_failed err=%s", err);
    send_message(j->n, j->req, 503, s->id, "Your sign-in settings",
                 "Your settings cannot be read right now. Please try again in a moment.");
}

static void home_recent_done(void *arg, const PGresult *res, const char *err)
{
    struct job *j = arg;
    struct portal_session *s = session_again(j->n, j->req, j->sid);

    if (s) {
        if (err) /* the settings without the list beat no page */
            log_warn("portal.recent_failed err=%s", err);
        send_home(j, s, err ? NULL : res);
    }
    job_free(j);
}

static void home_user_done(void *arg, const PGresult *res, const char *err)
{
    struct job *j = arg;
    struct portal_session *s = session_again(j->n, j->req, j->sid);
    const char *params[1] = { j->username };
    char *qerr = NULL;

    if (!s)
        goto done;
    if (err) {
        home_failed(j, s, err);
        goto done;
    }
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
        /* Deleted or disabled since the sign-in: the session is over. */
        portal_session_end(store_of(j->n), s);
        if ((s = new_session(j->n, j->req, msg_ended)) != NULL)
            redirect(j->n, j->req, s->id, "/portal/");
        goto done;
    }
    snprintf(j->username, sizeof(j->username), "%s", PQgetvalue(res, 0, 0));
    /* As the database spells it, not as typed at sign-in (the app's account name). */
    snprintf(s->username, sizeof(s->username), "%s", j->username);
    snprintf(j->display_name, sizeof(j->display_name), "%s", PQgetvalue(res, 0, 1));
    snprintf(j->phone, sizeof(j->phone), "%s", PQgetvalue(res, 0, 2));
    snprintf(j->method, sizeof(j->method), "%s", PQgetvalue(res, 0, 3));
    j->has_totp = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
    j->has_hotp = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
    if (nodedb_read(j->n->db, home_recent_sql, 1, params, home_recent_done, j, &qerr) == 0)
        return;
    log_warn("portal.recent_failed err=%s", qerr);
    free(qerr);
    send_home(j, s, NULL);
done:
    job_free(j);
}

static void page_home(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    const char *params[1] = { s->username };
    char *err = NULL;
    struct job *j;

    if (s->state != PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    if (nodedb_read(n->db, home_user_sql, 1, params, home_user_done, j, &err) < 0) {
        home_failed(j, s, err);
        free(err);
        job_free(j);
    }
}

/* ---- changes ---- */

/*
 * What a change of <j> says once written: 1 row is done (<ok>), none is
 * <none>; a lost primary is the read-only message.
 */
struct change {
    const char *what, *ok, *none;
};

static void change_done(struct job *j, const struct change *c, const PGresult *res, const char *err)
{
    struct portal_session *s = session_again(j->n, j->req, j->sid);

    if (!s)
        return;
    if (err) {
        bool ro = nodedb_error_is_read_only(err);

        if (ro)
            log_warn("portal.write_failed what=%s err=%s", c->what, err);
        else
            log_error("portal.write_failed what=%s err=%s", c->what, err);
        flash(s, true, "%s", ro ? msg_read_only : msg_failed);
    } else if (PQntuples(res) == 0) {
        flash(s, true, "%s", c->none);
    } else {
        log_notice("portal.changed what=%s username=%s", c->what, j->username);
        flash(s, false, "%s", c->ok);
    }
    redirect(j->n, j->req, s->id, "/portal/home");
}

/*
 * Queues an admin write (remote_apply, like the admin API's) for <j>.
 * Returns true when <cb> will run; false after redirecting with the reason.
 */
static bool write_change(struct job *j, struct portal_session *s, const char *what, const char *sql,
                         int nparams, const char *const *params, pgconn_cb cb)
{
    char *err = NULL;
    int rc = nodedb_write(j->n->db, sql, nparams, params, PGCONN_SYNC_REMOTE_APPLY, cb, j, &err);

    if (rc == 0)
        return true;
    if (rc != NODEDB_READ_ONLY)
        log_error("portal.write_failed what=%s err=%s", what, err);
    free(err);
    flash(s, true, "%s", rc == NODEDB_READ_ONLY ? msg_read_only : msg_failed);
    redirect(j->n, j->req, s->id, "/portal/home");
    return false;
}

/*
 * The start of every change: signed in, and a primary to write to. Returns
 * true, or false after redirecting.
 */
static bool may_change(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    if (s->state != PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/");
        return false;
    }
    if (!nodedb_writable(n->db)) {
        flash(s, true, "%s", msg_read_only);
        redirect(n, req, s->id, "/portal/home");
        return false;
    }
    return true;
}

/* The audit row of a change the user made themselves (actor "portal"). */
#define AUDIT(fields)                                                                              \
    " a AS (INSERT INTO admin_audit (actor, node_id, action, target, detail)"                      \
    "  SELECT 'portal', $3, 'user.update', u.username,"                                            \
    "   '{\"fields\": [" fields "], \"via\": \"portal\"}'::jsonb FROM u)"

static void phone_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = {
        "phone",
        "Your phone number was changed.",
        "The phone number cannot be removed while text messages are your sign-in method; "
        "choose another method first.",
    };

    change_done(arg, &c, res, err);
    job_free(arg);
}

static void post_phone(struct node *n, struct evhttp_request *req, struct portal_session *s,
                       const struct portal_form *f)
{
    static const char sql[] =
        "WITH u AS (UPDATE users SET phone = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled AND ($2 <> '' OR method <> 'sms')"
        "  RETURNING username)," AUDIT("\"phone\"") " SELECT username FROM u";
    const char *phone = portal_form_get(f, "phone");
    struct users_fields uf = { .phone = phone ? phone : "", .disabled = -1 };
    const char *params[3];
    char *err = NULL;
    struct job *j;

    if (!may_change(n, req, s))
        return;
    if (users_fields_check(&uf, false, &err) < 0) {
        flash(s, true, "%s",
              strcmp(err, "phone: must be 3 to 20 digits, optionally after a '+', "
                          "no spaces") == 0
                  ? "The phone number must be 3 to 20 digits, optionally after a "
                    "'+', without spaces."
                  : err);
        free(err);
        redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    snprintf(j->value, sizeof(j->value), "%s", uf.phone);
    params[0] = j->username;
    params[1] = j->value;
    params[2] = n->id;
    if (!write_change(j, s, "phone", sql, 3, params, phone_done))
        job_free(j);
}

static void method_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = {
        "method",
        "Your sign-in method was changed.",
        "That method cannot be used with your account.",
    };

    change_done(arg, &c, res, err);
    job_free(arg);
}

static void post_method(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f)
{
    /* Only a method the user can sign in with: a phone for sms, a token for totp or hotp. */
    static const char sql[] =
        "WITH u AS (UPDATE users SET method = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled"
        "  AND (($2 = 'sms' AND phone <> '') OR EXISTS (SELECT 1 FROM oath_tokens t"
        "   WHERE t.user_id = users.id AND t.kind = $2))"
        "  RETURNING username)," AUDIT("\"method\"") " SELECT username FROM u";
    const char *method = portal_form_get(f, "method");
    const char *params[3];
    struct job *j;

    if (!may_change(n, req, s))
        return;
    if (!method || (strcmp(method, "sms") != 0 && strcmp(method, "totp") != 0 &&
                    strcmp(method, "hotp") != 0)) {
        flash(s, true, "Choose a sign-in method from the list.");
        redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    snprintf(j->value, sizeof(j->value), "%s", method);
    params[0] = j->username;
    params[1] = j->value;
    params[2] = n->id;
    if (!write_change(j, s, "method", sql, 3, params, method_done))
        job_free(j);
}

static void pin_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = { "pin", "Your PIN was changed.", "Your PIN was not changed." };

    change_done(arg, &c, res, err);
    job_free(arg);
}

/* The engine checked the current PIN (AUTH_STEP_REPIN): on to the write. */
static void repin_done(void *arg, const struct auth_result *r)
{
    static const char sql[] =
        "WITH u AS (UPDATE users SET pin_hash = $2, updated_at = now()"
        "  WHERE lower(username) = lower($1) AND NOT disabled RETURNING username)," AUDIT(
            "\"pin\"") " SELECT username FROM u";
    struct job *j = arg;
    struct portal_session *s = session_again(j->n, j->req, j->sid);
    const char *params[3] = { j->username, j->value, j->n->id };

    if (!s)
        goto done;
    if (r->outcome != AUTH_ACCEPTED) {
        flash(s, true, "%s",
              r->reason && strcmp(r->reason, "wrong_pin") == 0 ? "Your current PIN is not right."
                                                               : signin_problem(r));
        redirect(j->n, j->req, s->id, "/portal/home");
        goto done;
    }
    if (write_change(j, s, "pin", sql, 3, params, pin_done))
        return;
done:
    job_free(j);
}

static void post_pin(struct node *n, struct evhttp_request *req, struct portal_session *s,
                     const struct portal_form *f)
{
    const char *cur = portal_form_get(f, "current_pin"), *pin = portal_form_get(f, "new_pin"),
               *pin2 = portal_form_get(f, "new_pin2");
    struct auth_request rq = { .step = AUTH_STEP_REPIN };
    char ip[64], *err = NULL;
    struct job *j;

    if (!may_change(n, req, s))
        return;
    if (!pin || !pin2 || strcmp(pin, pin2) != 0 || !pin_syntax_ok(pin)) {
        flash(s, true, "%s",
              !pin || !pin2 || strcmp(pin, pin2) != 0 ? "The new PINs do not match."
                                                      : "The new PIN must be 4 to 8 digits.");
        redirect(n, req, s->id, "/portal/home");
        return;
    }
    j = job_new(n, req, s);
    if (!j)
        return;
    /* Hashed now, so only the hash waits for the check of the current PIN. */
    if (pin_hash(&n->keys, pin, j->value, sizeof(j->value), &err) < 0) {
        log_error("portal.pin_hash_failed err=%s", err);
        free(err);
        flash(s, true, "%s", msg_failed);
        redirect(n, req, s->id, "/portal/home");
        job_free(j);
        return;
    }
    client_ip(n, req, ip, sizeof(ip));
    rq.username = s->username;
    rq.pin = cur && *cur ? cur : NULL;
    rq.client_ip = ip;
    if (auth_signin(n, &rq, repin_done, j) < 0) {
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        job_free(j);
    }
}

/* ---- a TOTP app ---- */

/* otpauth://totp/<issuer>:<username>?secret=... (Google Authenticator's Key Uri Format). */
static char *otpauth_uri(const char *username, const char *secret)
{
    char *issuer = evhttp_uriencode(TOTP_ISSUER, -1, 0);
    char *account = evhttp_uriencode(username, -1, 0);
    char *uri = NULL;

    if (issuer && account &&
        asprintf(&uri,
                 "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&period=%d",
                 issuer, account, secret, issuer, TOTP_DIGITS, TOTP_PERIOD) < 0)
        uri = NULL;
    free(issuer);
    free(account);
    return uri;
}

static void page_totp(struct node *n, struct evhttp_request *req, struct portal_session *s)
{
    char secret[B32_ENCODED_LEN(PORTAL_SEED_LEN) + 1], *uri;
    struct pbuf b = { 0 };

    if (s->state != PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/");
        return;
    }
    /* One pending seed per session, until a code confirms it or the session ends. */
    if (!s->has_seed && rand_bytes(s->seed, sizeof(s->seed)) < 0) {
        send_message(n, req, 500, s->id, "Error", "The server has no random numbers.");
        return;
    }
    s->has_seed = true;
    if (b32_encode(s->seed, sizeof(s->seed), secret, sizeof(secret)) < 0 ||
        !(uri = otpauth_uri(s->username, secret))) {
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        return;
    }
    page_begin(&b, n, "Set up an authenticator app", s);
    pbuf_puts(&b, "<p>Scan the QR code with your authenticator app, or type in the key. Then "
                  "enter the code the app shows to finish.</p>");
    if (portal_qr_svg(&b, uri) < 0)
        pbuf_puts(&b, "<p>The QR code cannot be drawn; type in the key instead.</p>");
    pbuf_puts(&b, "<p>Key: <code id=\"totp-secret\">");
    pbuf_escape(&b, secret);
    pbuf_puts(&b, "</code></p><p>Link: <code id=\"otpauth-uri\">");
    pbuf_escape(&b, uri);
    pbuf_puts(&b, "</code></p>");
    form_begin(&b, "totp-form", "/portal/totp", s);
    pbuf_puts(&b, "<label for=\"code\">Code from the app</label>"
                  "<input id=\"code\" name=\"code\" inputmode=\"numeric\" "
                  "autocomplete=\"one-time-code\" required>"
                  "<button type=\"submit\">Finish</button></form>"
                  "<p><a href=\"/portal/home\">Back to your settings</a></p>");
    page_end(&b, n);
    send_page(n, req, 200, s->id, &b);
    secret_wipe(secret, sizeof(secret));
    secret_wipe(uri, strlen(uri));
    free(uri);
}

static void totp_done(void *arg, const PGresult *res, const char *err)
{
    static const struct change c = { "totp", "Authenticator app set up.",
                                     "Your account could not be found." };
    struct job *j = arg;

    if (!err && PQntuples(res) > 0)
        log_notice("portal.totp_enrolled username=%s serial=%s", j->username, j->serial);
    change_done(j, &c, res, err);
    job_free(j);
}

static void post_totp(struct node *n, struct evhttp_request *req, struct portal_session *s,
                      const struct portal_form *f)
{
    const char *code = portal_form_get(f, "code");
    uint64_t matched = 0;
    char step[24], *sealed = NULL, *err = NULL;
    const char *params[8];
    struct job *j;

    if (s->state != PORTAL_SIGNED_IN) {
        redirect(n, req, s->id, "/portal/");
        return;
    }
    if (!s->has_seed) {
        flash(s, true, "Start the set-up again.");
        redirect(n, req, s->id, "/portal/totp");
        return;
    }
    if (!code || otp_totp_check(s->seed, sizeof(s->seed), (uint64_t)time(NULL), TOTP_PERIOD,
                                (unsigned)node_conf(n)->node.otp.totp_window, TOTP_DIGITS, OTP_SHA1,
                                code, &matched) != 1) {
        flash(s, true,
              "That code is not right. Check that your phone's clock is right and enter "
              "the code the app shows now.");
        redirect(n, req, s->id, "/portal/totp");
        return;
    }
    if (!may_change(n, req, s))
        return;
    j = job_new(n, req, s);
    if (!j)
        return;
    memcpy(j->seed, s->seed, sizeof(j->seed));
    if (users_totp_serial(s->username, j->serial, sizeof(j->serial)) < 0 ||
        seal_encrypt(&n->keys, j->seed, sizeof(j->seed), j->serial, &sealed, &err) < 0) {
        log_error("portal.totp_seal_failed err=%s", err ? err : "no random numbers");
        free(err);
        flash(s, true, "%s", msg_failed);
        redirect(n, req, s->id, "/portal/home");
        job_free(j);
        return;
    }
    snprintf(step, sizeof(step), "%llu", (unsigned long long)matched);
    /*
     * The admin API's enrolment, by the user: the confirming code's step is
     * marked used (it cannot sign in again), and a disabled user gets none.
     */
    params[0] = j->username;
    params[1] = j->serial;
    params[2] = sealed;
    params[3] = "portal";
    params[4] = n->id;
    params[5] = step;
    params[6] = "portal";
    params[7] = "t";
    /* The pending seed is spent: on success it is in the database, else set up again. */
    secret_wipe(s->seed, sizeof(s->seed));
    s->has_seed = false;
    if (!write_change(j, s, "totp", users_totp_enrol_sql, 8, params, totp_done))
        job_free(j);
    free(sealed);
}

/* ---- dispatch ---- */

typedef void (*page_fn)(struct node *n, struct evhttp_request *req, struct portal_session *s);
typedef void (*form_fn)(struct node *n, struct evhttp_request *req, struct portal_session *s,
                        const struct portal_form *f);

static const struct {
    const char *path;
    page_fn get;
    form_fn post;
} pages[] = {
    { "/portal/", page_signin, NULL },
    { "/portal/signin", NULL, post_signin },
    { "/portal/factor", page_factor, post_factor },
    { "/portal/home", page_home, NULL },
    { "/portal/phone", NULL, post_phone },
    { "/portal/method", NULL, post_method },
    { "/portal/pin", NULL, post_pin },
    { "/portal/totp", page_totp, post_totp },
    { "/portal/signout", NULL, post_signout },
};

/* Reads the form of a POST into <f>, wiping the body. Returns 0, or -1 after answering. */
static int read_form(struct node *n, struct evhttp_request *req, struct portal_session *s,
                     struct portal_form *f)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    char *err = NULL;
    int rc;

    if (!type || strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0) {
        http_wipe_body(req);
        send_message(n, req, 415, s->id, "Error", "The form was not sent as a web form.");
        return -1;
    }
    rc = portal_form_parse(len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "", len, f,
                           &err);
    http_wipe_body(req);
    if (rc < 0) {
        log_info("portal.bad_form err=%s", err);
        send_message(n, req, 400, s->id, "Error", "The form could not be read.");
        free(err);
        return -1;
    }
    return 0;
}

static void expired_form(struct node *n, struct evhttp_request *req, const char *sid)
{
    send_message(n, req, 403, sid, "This form has expired",
                 "This form has expired. Please try again.");
}

void portal_handle(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    struct portal_limits lim = limits_of(n);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char path[64], sid[ID_MAX + 1];
    int has_cookie = read_cookie(req, sid, sizeof(sid));
    struct portal_session *s;
    struct portal_form *f;
    size_t i;

    if (!n->portal || !node_conf(n)->node.portal.enabled) {
        http_wipe_body(req);
        http_reply_error(req, 404, "not_found", "the portal is not enabled on this node");
        return;
    }
    http_request_path(req, path, sizeof(path));
    if (strcmp(path, "/portal") == 0) {
        redirect(n, req, "", "/portal/");
        return;
    }
    for (i = 0; i < MFA_ARRAY_LEN(pages) && strcmp(pages[i].path, path) != 0; i++)
        ;
    if (i == MFA_ARRAY_LEN(pages) || (cmd == EVHTTP_REQ_GET && !pages[i].get) ||
        (cmd == EVHTTP_REQ_POST && !pages[i].post)) {
        http_wipe_body(req);
        send_message(n, req, i == MFA_ARRAY_LEN(pages) ? 404 : 405, "", "No such page",
                     "There is no such page.");
        return;
    }
    s = has_cookie ? portal_session_get(store_of(n), sid, &lim, clock_mono_ms()) : NULL;
    if (cmd == EVHTTP_REQ_GET) {
        if (s) {
            pages[i].get(n, req, s);
            return;
        }
        /* No session, or one this node does not know: the sign-in page, whatever was asked. */
        s = new_session(n, req, has_cookie ? msg_ended : NULL);
        if (s)
            (has_cookie ? page_signin : pages[i].get)(n, req, s);
        return;
    }
    if (!s) {
        http_wipe_body(req);
        if (!has_cookie) {
            expired_form(n, req, "");
            return;
        }
        /* Its node went away, or it timed out: sign in again, here. */
        s = new_session(n, req, msg_ended);
        if (s)
            redirect(n, req, s->id, "/portal/");
        return;
    }
    f = malloc(sizeof(*f));
    if (!f) {
        http_wipe_body(req);
        send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        return;
    }
    if (read_form(n, req, s, f) == 0) {
        if (!portal_csrf_ok(s, portal_form_get(f, "csrf")))
            expired_form(n, req, s->id);
        else
            pages[i].post(n, req, s, f);
    }
    secret_wipe(f, sizeof(*f));
    free(f);
}

/* ---- lifecycle ---- */

int portal_start(struct node *n, char **err)
{
    struct portal *p = calloc(1, sizeof(*p));

    if (!p)
        return err_set(err, "out of memory");
    p->store = portal_store_new(n->id);
    if (!p->store) {
        free(p);
        return err_set(err, "out of memory");
    }
    n->portal = p;
    return 0;
}

void portal_stop(struct node *n)
{
    struct portal *p = n->portal;

    if (!p)
        return;
    portal_store_free(p->store);
    free(p);
    n->portal = NULL;
}

void portal_tick(struct node *n)
{
    struct portal_limits lim;

    if (!n->portal || !daemon_every(n->d, 1000))
        return;
    lim = limits_of(n);
    portal_store_expire(store_of(n), &lim, clock_mono_ms());
}

size_t portal_sessions(const struct node *n)
{
    return n->portal ? portal_store_active(store_of(n)) : 0;
}
