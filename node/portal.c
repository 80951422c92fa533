/*
 * The user portal: dispatch, the answers every page shares, sessions by
 * cookie; see portal.h and docs/portal.md. The pages are in
 * portal_signin.c (sign-in, the code page, sign-out) and portal_settings.c
 * (the settings, changes, the TOTP app).
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

#include "db.h"
#include "errmsg.h"
#include "httpserver.h"
#include "log.h"
#include "netaddr.h"
#include "portal_page.h"
#include "secrets.h"

#define COOKIE "mfa_sid"

const char portal_msg_ended[] = "Your session has ended (it timed out, or the server holding it "
                                "went away). Please sign in again.";
const char portal_msg_read_only[] =
    "Changes are paused until the primary server is back; nothing was changed.";
const char portal_msg_wrong_pin[] = "Wrong username or PIN.";
const char portal_msg_failed[] = "That did not work because of a problem on the server; nothing "
                                 "was changed. Please try again.";

struct portal {
    struct portal_store *store;
};

struct portal_store *portal_store_of(const struct node *n)
{
    return ((struct portal *)n->portal)->store;
}

struct portal_limits portal_limits_of(const struct node *n)
{
    const struct appconf *c = node_conf(n);

    return (struct portal_limits){
        .idle_ms = (uint64_t)c->node.portal.idle_timeout_s * 1000,
        .absolute_ms = (uint64_t)c->node.portal.absolute_timeout_s * 1000,
        .signin_ms = (uint64_t)c->node.portal.signin_timeout_s * 1000,
        .max_sessions = (size_t)c->node.portal.max_sessions,
    };
}

void portal_flash(struct portal_session *s, bool error, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(error ? s->error : s->notice, PORTAL_FLASH_MAX, fmt, ap);
    va_end(ap);
}

/* ---- answers ---- */

static bool forward_trusted(const struct node *n, struct evhttp_request *req);

/* Whether the request came through TLS: HAProxy (and only HAProxy) says so. */
static bool secure_request(const struct node *n, struct evhttp_request *req)
{
    const char *proto =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-Proto");

    return proto && strcasecmp(proto, "https") == 0 && forward_trusted(n, req);
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
                 sid, secure_request(n, req) ? "; Secure" : "");
        evhttp_add_header(h, "Set-Cookie", cookie);
    }
}

void portal_send_page(const struct node *n, struct evhttp_request *req, int status, const char *sid,
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

void portal_redirect(const struct node *n, struct evhttp_request *req, const char *sid,
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
    ".brand{color:#5b6270;font-size:.9rem;margin:.4rem 0 0}"
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
void portal_page_begin(struct pbuf *b, const struct node *n, const char *title,
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
    /* Whose page this is: users reach it from a link or a bookmark. */
    pbuf_puts(b, "<main><p class=\"brand\">MFA Appliance &middot; ");
    pbuf_escape(b, node_conf(n)->cluster.name);
    pbuf_puts(b, "</p><h1>");
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

void portal_page_end(struct pbuf *b, const struct node *n)
{
    pbuf_puts(b, "</main><footer>Served by ");
    pbuf_escape(b, n->id);
    pbuf_puts(b, "</footer></body></html>");
}

void portal_form_begin(struct pbuf *b, const char *id, const char *action,
                       const struct portal_session *s)
{
    pbuf_printf(b,
                "<form id=\"%s\" method=\"post\" action=\"%s\">"
                "<input type=\"hidden\" name=\"csrf\" value=\"%s\">",
                id, action, s->csrf);
}

/* A page with one sentence and a link back; for the answers that are not a form. */
void portal_send_message(const struct node *n, struct evhttp_request *req, int status,
                         const char *sid, const char *title, const char *text)
{
    struct pbuf b = { 0 };

    portal_page_begin(&b, n, title, NULL);
    pbuf_puts(&b, "<p>");
    pbuf_escape(&b, text);
    pbuf_puts(&b, "</p><p><a href=\"/portal/\">Go to the sign-in page</a></p>");
    portal_page_end(&b, n);
    portal_send_page(n, req, status, sid, &b);
}

/* ---- requests ---- */

bool portal_peer_trusted(const struct appconf *c, const char *peer)
{
    static const char *const loopback[] = { "127.0.0.0/8", "::1/128" };
    struct sockaddr_storage p, m;
    struct netaddr_prefix pre;
    const char *why;

    if (!netaddr_make(peer, 0, &p))
        return false;
    for (size_t i = 0; i < MFA_ARRAY_LEN(loopback); i++) {
        if (netaddr_parse_prefix(loopback[i], &pre, &why) == 0 &&
            netaddr_prefix_match(&pre, (const struct sockaddr *)&p))
            return true;
    }
    for (size_t i = 0; i < c->cluster.nmembers; i++) {
        if (netaddr_make(c->cluster.members[i].address, 0, &m) &&
            netaddr_same_host((const struct sockaddr *)&m, (const struct sockaddr *)&p))
            return true;
    }
    return false;
}

void portal_forwarded_for(const char *peer, const char *xff, bool trusted, char *buf, size_t size)
{
    const char *from = peer;
    struct sockaddr_storage ss;
    char text[NETADDR_TEXT_MAX + 1];

    if (trusted && xff) {
        const char *last = strrchr(xff, ',');

        last = last ? last + 1 : xff;
        while (*last == ' ')
            last++;
        if (netaddr_numeric(last))
            from = last;
    }
    /* ::ffff:192.0.2.1 is 192.0.2.1: one spelling for lockout, throttle and the log. */
    if (netaddr_make(from, 0, &ss) && netaddr_to_family(&ss, AF_INET) &&
        strcmp(netaddr_text((const struct sockaddr *)&ss, text, sizeof(text)), "?") != 0)
        from = text;
    snprintf(buf, size, "%s", strlen(from) < size ? from : "");
}

/*
 * Whether this request's X-Forwarded-* headers are believed: HAProxy (on a
 * cluster member, or this host's loopback) appends them, having dropped any
 * the client sent. From anyone else they are ignored, and that is logged
 * once (the node's port should be reachable by the members only).
 */
static bool forward_trusted(const struct node *n, struct evhttp_request *req)
{
    static bool warned;
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    char peer[64];
    bool trusted;

    http_peer_address(req, peer, sizeof(peer));
    trusted = portal_peer_trusted(node_conf(n), peer);
    if (!trusted && !warned &&
        (evhttp_find_header(h, "X-Forwarded-For") || evhttp_find_header(h, "X-Forwarded-Proto"))) {
        warned = true;
        log_warn("portal.forwarded_untrusted peer=%s headers=ignored once=true", peer);
    }
    return trusted;
}

void portal_client_ip(const struct node *n, struct evhttp_request *req, char *buf, size_t size)
{
    const char *xff = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Forwarded-For");
    char peer[64];

    http_peer_address(req, peer, sizeof(peer));
    portal_forwarded_for(peer, xff, forward_trusted(n, req), buf, size);
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

struct portal_session *portal_new_session(struct node *n, struct evhttp_request *req,
                                          const char *notice)
{
    struct portal_limits lim = portal_limits_of(n);
    bool full;
    struct portal_session *s = portal_session_new(portal_store_of(n), &lim, clock_mono_ms(), &full);

    if (!s) {
        log_warn("portal.no_session reason=%s", full ? "full" : "no_memory");
        portal_send_message(n, req, full ? 503 : 500, "", "Too many sessions",
                            full ? "There are too many sessions on this server right now (too many "
                                   "sessions). Please try again in a few minutes."
                                 : "The server cannot start a session now. Please try again.");
        return NULL;
    }
    if (notice)
        portal_flash(s, false, "%s", notice);
    return s;
}

struct portal_session *portal_session_again(struct node *n, struct evhttp_request *req,
                                            const char *sid)
{
    struct portal_limits lim = portal_limits_of(n);
    struct portal_session *s = portal_session_get(portal_store_of(n), sid, &lim, clock_mono_ms());

    /*
     * Gone (timed out, signed out, rotated by another answer): no new
     * session and no cookie here, which could replace the cookie of a
     * newer session; the sign-in page says the session ended.
     */
    if (!s)
        portal_redirect(n, req, "", "/portal/");
    return s;
}

struct portal_job *portal_job_new(struct node *n, struct evhttp_request *req,
                                  const struct portal_session *s)
{
    struct portal_job *j = calloc(1, sizeof(*j));

    if (!j) {
        portal_send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
        return NULL;
    }
    j->n = n;
    j->req = req;
    snprintf(j->sid, sizeof(j->sid), "%s", s->id);
    snprintf(j->username, sizeof(j->username), "%s", s->username);
    j->gen = s->gen;
    j->state = s->state;
    return j;
}

void portal_job_free(struct portal_job *j)
{
    if (!j)
        return;
    secret_wipe(j, sizeof(*j));
    free(j);
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
    { "/portal/", portal_page_signin, NULL },
    { "/portal/signin", NULL, portal_post_signin },
    { "/portal/factor", portal_page_factor, portal_post_factor },
    { "/portal/home", portal_page_home, NULL },
    { "/portal/phone", NULL, portal_post_phone },
    { "/portal/method", NULL, portal_post_method },
    { "/portal/pin", NULL, portal_post_pin },
    { "/portal/totp", portal_page_totp, portal_post_totp },
    { "/portal/restart", NULL, portal_post_restart },
    { "/portal/signout", NULL, portal_post_signout },
};

/* Whether Content-Type <type> is a web form (parameters such as a charset allowed). */
static bool form_type(const char *type)
{
    static const char form[] = "application/x-www-form-urlencoded";
    size_t len = sizeof(form) - 1;

    return strncasecmp(type, form, len) == 0 && (type[len] == '\0' || type[len] == ';');
}

/* Reads the form of a POST into <f>, wiping the body. Returns 0, or -1 after answering. */
static int read_form(struct node *n, struct evhttp_request *req, struct portal_session *s,
                     struct portal_form *f)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    char *err = NULL;
    int rc;

    if (!type || !form_type(type)) {
        http_wipe_body(req);
        portal_send_message(n, req, 415, s->id, "Error", "The form was not sent as a web form.");
        return -1;
    }
    rc = portal_form_parse(len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "", len, f,
                           &err);
    http_wipe_body(req);
    if (rc < 0) {
        log_info("portal.bad_form err=%s", err);
        portal_send_message(n, req, 400, s->id, "Error", "The form could not be read.");
        free(err);
        return -1;
    }
    return 0;
}

static void expired_form(struct node *n, struct evhttp_request *req, const char *sid)
{
    portal_send_message(n, req, 403, sid, "This form has expired",
                        "This form has expired. Please try again.");
}

void portal_handle(struct evhttp_request *req, void *arg)
{
    struct node *n = arg;
    struct portal_limits lim = portal_limits_of(n);
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
        portal_redirect(n, req, "", "/portal/");
        return;
    }
    for (i = 0; i < MFA_ARRAY_LEN(pages) && strcmp(pages[i].path, path) != 0; i++)
        ;
    if (i == MFA_ARRAY_LEN(pages) || (cmd == EVHTTP_REQ_GET && !pages[i].get) ||
        (cmd == EVHTTP_REQ_POST && !pages[i].post)) {
        http_wipe_body(req);
        portal_send_message(n, req, i == MFA_ARRAY_LEN(pages) ? 404 : 405, "", "No such page",
                            "There is no such page.");
        return;
    }
    s = has_cookie ? portal_session_get(portal_store_of(n), sid, &lim, clock_mono_ms()) : NULL;
    if (cmd == EVHTTP_REQ_GET) {
        if (s) {
            pages[i].get(n, req, s);
            return;
        }
        /* No session, or one this node does not know: the sign-in page, whatever was asked. */
        s = portal_new_session(n, req, has_cookie ? portal_msg_ended : NULL);
        if (s)
            (has_cookie ? portal_page_signin : pages[i].get)(n, req, s);
        return;
    }
    if (!s) {
        http_wipe_body(req);
        if (!has_cookie) {
            expired_form(n, req, "");
            return;
        }
        /* Its node went away, or it timed out: sign in again, here. */
        s = portal_new_session(n, req, portal_msg_ended);
        if (s)
            portal_redirect(n, req, s->id, "/portal/");
        return;
    }
    f = malloc(sizeof(*f));
    if (!f) {
        http_wipe_body(req);
        portal_send_message(n, req, 500, s->id, "Error", "The server is out of memory; try again.");
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
    lim = portal_limits_of(n);
    portal_store_expire(portal_store_of(n), &lim, clock_mono_ms());
}

size_t portal_sessions(const struct node *n)
{
    return n->portal ? portal_store_active(portal_store_of(n)) : 0;
}
