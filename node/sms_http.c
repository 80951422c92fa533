/*
 * The http SMS provider: a templated POST to an SMS gateway through
 * common/httpclient (libcurl's multi interface on the daemon's loop).
 *
 * A 2xx answer means the gateway took the message. A transport failure
 * (refused, reset, TLS, timed out) or a 5xx answer is tried again, up to
 * `retries` more times, after 200 ms, 400 ms, ... (at most 2 s); any other
 * answer (4xx: the gateway refused this message or our credentials) ends it
 * at once, since asking again would get the same answer. One deadline covers
 * every attempt and wait: each attempt gets what is left of it.
 *
 * TLS verification is always on (httpclient.h): against http_ca_file, with
 * which the client speaks https only, or the system trust store. Plain http
 * is accepted only to a loopback address, where nothing crosses a network.
 *
 * The body holds the code, so it is wiped when the message ends; the
 * gateway's answer is never looked at beyond its status (it may echo the
 * text) and the Authorization header is never logged.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "errmsg.h"
#include "httpclient.h"
#include "sms_priv.h"

#define GATEWAY_MAX_BODY  (64 * 1024)
#define BACKOFF_FIRST_MS  200
#define BACKOFF_MAX_MS    2000
#define ATTEMPT_MIN_MS    100 /* do not start an attempt with less time than this */
#define GATEWAY_ERROR_MAX 512

/* True when <host> (as libcurl's URL parser gives it) is a loopback address. */
static bool host_is_loopback(const char *host)
{
    struct in_addr a4;

    if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* Checks scheme and host of <url>; <tls_only>: an https URL is required. */
static int url_check(const char *url, bool tls_only, char **err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (!u)
        return err_set(err, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err_set(err, "sms http provider: http_url is not a URL");
        goto out;
    }
    if (strcmp(scheme, "https") == 0) {
        rc = 0;
    } else if (strcmp(scheme, "http") != 0) {
        err_set(err, "sms http provider: http_url must be https");
    } else if (tls_only) {
        err_set(err, "sms http provider: http_url must be https with a CA file");
    } else if (!host_is_loopback(host)) {
        err_set(err, "sms http provider: http_url must be https (plain http only to a "
                     "loopback address)");
    } else {
        rc = 0;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* An HTTP header line "Name: value": a token, a colon, no CR, LF or NUL. */
static bool header_line_ok(const char *h)
{
    size_t n = strspn(h, "!#$%&'*+-.^_`|~0123456789"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    return n > 0 && h[n] == ':' && strpbrk(h, "\r\n") == NULL;
}

int sms_http_check(const struct sms_settings *s, char **err)
{
    static const char *const body_vars[] = { "phone", "text", "code", "minutes", NULL };
    static const char *const body_required[] = { "phone", NULL };
    const char *ctype = s->http_content_type ? s->http_content_type : SMS_DEFAULT_HTTP_CTYPE;
    char *line = NULL;
    bool ok;

    if (!s->http_url || !*s->http_url)
        return err_set(err, "sms http provider: http_url is required");
    if (url_check(s->http_url, s->http_ca_file != NULL, err) < 0)
        return -1;
    if (sms_template_check(s->http_body ? s->http_body : SMS_DEFAULT_HTTP_BODY, "sms http_body",
                           body_vars, body_required, err) < 0)
        return -1;
    if (asprintf(&line, "Content-Type: %s", ctype) < 0)
        return err_set(err, "out of memory");
    ok = *ctype && header_line_ok(line);
    free(line);
    if (!ok)
        return err_set(err, "sms http provider: bad http_content_type");
    if (s->http_auth_header && !header_line_ok(s->http_auth_header))
        return err_set(err, "sms http provider: http_auth_header must be one \"Name: value\" line");
    if (s->http_ca_file && access(s->http_ca_file, R_OK) != 0)
        return err_set(err, "sms http provider: cannot read http_ca_file %s", s->http_ca_file);
    return 0;
}

int sms_http_init(struct sms_provider *p, const struct sms_settings *s, char **err)
{
    const char *ctype = s->http_content_type ? s->http_content_type : SMS_DEFAULT_HTTP_CTYPE;
    struct httpclient_tls tls = { .ca_file = s->http_ca_file };
    int connect_ms = p->timeout_ms < HTTPCLIENT_CONNECT_TIMEOUT_MS ? p->timeout_ms
                                                                   : HTTPCLIENT_CONNECT_TIMEOUT_MS;

    p->http_url = strdup(s->http_url);
    p->http_body = strdup(s->http_body ? s->http_body : SMS_DEFAULT_HTTP_BODY);
    if (asprintf(&p->http_ctype_line, "Content-Type: %s", ctype) < 0)
        p->http_ctype_line = NULL;
    p->http_auth_header = s->http_auth_header ? strdup(s->http_auth_header) : NULL;
    if (!p->http_url || !p->http_body || !p->http_ctype_line ||
        (s->http_auth_header && !p->http_auth_header))
        return err_set(err, "out of memory");
    p->http_esc = strncasecmp(ctype, SMS_FORM_CTYPE, strlen(SMS_FORM_CTYPE)) == 0 ? SMS_ESC_FORM
                                                                                  : SMS_ESC_JSON;
    p->http = httpclient_new(p->base, s->http_ca_file ? &tls : NULL, err);
    if (!p->http)
        return err_prefix(err, "sms http provider");
    if (httpclient_set_limits(p->http, GATEWAY_MAX_BODY, connect_ms, err) < 0)
        return -1;
    return 0;
}

static void on_response(void *arg, const struct httpclient_response *resp);

/* Starts the next attempt with what is left of the deadline. Returns 0 or -1 with *err. */
static int attempt(struct sms_req *req, char **err)
{
    struct sms_provider *p = req->p;
    const char *headers[] = { p->http_ctype_line, p->http_auth_header, NULL };
    uint64_t now = sms_now_ms();

    if (now >= req->deadline_ms)
        return err_set(err, "timed out after %d ms", p->timeout_ms);
    if (httpclient_request(p->http, "POST", p->http_url, headers, req->body, req->body_len,
                           (int)(req->deadline_ms - now), on_response, req, err) < 0)
        return -1;
    req->attempts++;
    req->http_active = true;
    return 0;
}

/* Ends <req> with <error>, saying how many attempts it took when more than one. */
static void fail(struct sms_req *req, const char *error)
{
    char msg[GATEWAY_ERROR_MAX];

    if (req->attempts <= 1 ||
        snprintf(msg, sizeof(msg), "%s (%d attempts)", error, req->attempts) >= (int)sizeof(msg))
        snprintf(msg, sizeof(msg), "%s", error); /* one attempt, or no room to say how many */
    sms_req_finish(req, false, msg);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    struct sms_req *req = arg;
    char *err = NULL;

    (void)fd;
    (void)what;
    if (attempt(req, &err) < 0) {
        fail(req, req->last_error ? req->last_error : err);
        free(err);
    }
}

/* Waits before the next attempt; returns -1 when there is no attempt or time left for one. */
static int schedule_retry(struct sms_req *req)
{
    struct sms_provider *p = req->p;
    uint64_t now = sms_now_ms();
    int shift = req->attempts - 1 < 4 ? req->attempts - 1 : 4;
    uint64_t delay = (uint64_t)BACKOFF_FIRST_MS << shift;
    struct timeval tv;

    if (req->attempts > p->retries)
        return -1;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    if (now + delay + ATTEMPT_MIN_MS > req->deadline_ms)
        return -1;
    if (!req->timer && !(req->timer = evtimer_new(p->base, on_backoff, req)))
        return -1;
    tv.tv_sec = (time_t)(delay / 1000);
    tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
    return evtimer_add(req->timer, &tv) == 0 ? 0 : -1;
}

static void on_response(void *arg, const struct httpclient_response *resp)
{
    struct sms_req *req = arg;
    char error[GATEWAY_ERROR_MAX];

    req->http_active = false;
    if (req->p->closing) {
        sms_req_finish(req, false, SMS_SHUTDOWN_ERROR);
        return;
    }
    if (resp->status >= 200 && resp->status <= 299) {
        sms_req_finish(req, true, NULL);
        return;
    }
    if (resp->status == 0)
        snprintf(error, sizeof(error), "%s", resp->error ? resp->error : "transfer failed");
    else
        snprintf(error, sizeof(error), "gateway answered HTTP %ld", resp->status);
    /* Transport failures and 5xx may pass; anything else would be answered the same. */
    if (resp->status == 0 || (resp->status >= 500 && resp->status <= 599)) {
        free(req->last_error);
        req->last_error = strdup(error);
        if (req->last_error && schedule_retry(req) == 0)
            return;
    }
    fail(req, error);
}

int sms_http_send(struct sms_req *req, const char *phone, const char *text, const char *code,
                  int minutes, char **err)
{
    struct sms_provider *p = req->p;
    int len;

    req->body = malloc(SMS_BODY_MAX);
    if (!req->body)
        return err_set(err, "out of memory");
    len = sms_render_body(p->http_body, p->http_esc, phone, text, code, minutes, req->body,
                          SMS_BODY_MAX);
    if (len < 0) {
        req->body_len = SMS_BODY_MAX; /* wiped whole when freed */
        return err_set(err, "the SMS gateway body is longer than %d bytes", SMS_BODY_MAX - 1);
    }
    req->body_len = (size_t)len;
    return attempt(req, err);
}

void sms_http_close(struct sms_provider *p)
{
    struct httpclient *c = p->http;

    /* With p->closing set, every pending request ends in on_response(). */
    p->http = NULL;
    httpclient_free(c);
}
