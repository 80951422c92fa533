/*
 * HTTP(S) client on libcurl's multi interface and libevent; see httpclient.h.
 *
 * libcurl tells us which sockets to watch (sock_cb: one persistent event per
 * socket, kept in the socket's curl_multi_assign() slot and in c->socks) and
 * when to call it back (timer_cb: the one evtimer c->timer). Each event hands
 * control back with curl_multi_socket_action() and then check_done() collects
 * finished transfers with curl_multi_info_read().
 *
 * Invariants:
 * - Every accepted request is on c->reqs until its callback has been called,
 *   exactly once, by req_finish(). A request is either in the multi handle
 *   (r->added) or has its r->defer timer armed (it failed before libcurl
 *   could take it); never both.
 * - User callbacks are only called from our own event callbacks or from
 *   destroy(), never from inside a libcurl callback and never from inside
 *   httpclient_request(). c->depth counts callbacks running; an
 *   httpclient_free() while depth > 0 only sets c->free_pending, and whoever
 *   called the callback runs destroy() once it is back at depth 0 and touches
 *   nothing of <c> afterwards.
 * - The response buffer holds at most r->max_body bytes plus a NUL; the write
 *   callback aborts the transfer (returns short) past the limit.
 */
#include "httpclient.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "appconf.h"
#include "clock.h"
#include "errmsg.h"

#define METHOD_MAX 32

struct hc_sock {
    struct hc_sock *prev, *next;
    struct httpclient *c;
    curl_socket_t fd;
    struct event *ev;
};

struct hc_req {
    struct hc_req *prev, *next;
    struct httpclient *c;
    CURL *easy;
    bool added; /* in c->multi */
    struct curl_slist *headers;
    struct event *defer; /* failed before libcurl: reported from here */
    char *defer_error;
    char *body; /* our copy of the request body, wiped when freed: it may hold a code */
    size_t body_len;
    char *buf; /* response body, NUL-terminated */
    size_t len, cap, max_body;
    bool too_big, oom;
    uint64_t start_us; /* monotonic */
    httpclient_cb cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
};

struct httpclient {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    bool tls;
    char *ca_file, *cert_file, *key_file, *ciphers, *ciphersuites;
    int min_tls;
    size_t max_body;
    int connect_timeout_ms;
    struct hc_req *reqs;
    struct hc_sock *socks;
    uint64_t nrequests, nfailures;
    size_t in_flight;
    int depth;         /* user callbacks running */
    bool free_pending; /* httpclient_free() was called: refuse new requests */
};

/* ---- libcurl global state ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int httpclient_global_init(char **err)
{
    if (pthread_once(&global_once, global_init_once) != 0)
        return err_set(err, "libcurl initialization: pthread_once failed");
    if (global_rc != CURLE_OK)
        return err_set(err, "libcurl initialization failed: %s", curl_easy_strerror(global_rc));
    return 0;
}

/* ---- small helpers ---- */

static int dup_opt(char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    return r ? r : "unknown OpenSSL error";
}

static bool method_ok(const char *m)
{
    size_t n = 0;

    for (; m[n]; n++) {
        if (!isupper((unsigned char)m[n]) && m[n] != '-' && m[n] != '_')
            return false;
    }
    return n > 0 && n <= METHOD_MAX;
}

/* ---- sockets and timer: libcurl <-> libevent ---- */

static void check_done(struct httpclient *c);

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpclient *c = arg;
    int flags = 0, running = 0;

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_done(c);
}

static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct httpclient *c = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static void sock_free(struct httpclient *c, struct hc_sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->ev)
        event_free(s->ev);
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: watch <fd> for what libcurl wants, or stop. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct httpclient *c = userp;
    struct hc_sock *s = socketp;
    short kind = EV_PERSIST;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            sock_free(c, s);
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    } else if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
    s->ev = event_new(c->base, fd, kind, sock_event_cb, c);
    if (!s->ev || event_add(s->ev, NULL) != 0)
        return -1;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer, else (re)arm it. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpclient *c = userp;
    struct timeval tv;

    (void)multi;
    if (!c->timer)
        return 0;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(c->timer, &tv) == 0 ? 0 : -1;
}

/* ---- requests ---- */

static void req_unlink(struct hc_req *r)
{
    struct httpclient *c = r->c;

    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(struct hc_req *r)
{
    if (r->added) {
        curl_multi_remove_handle(r->c->multi, r->easy);
        r->added = false;
    }
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    if (r->defer)
        event_free(r->defer);
    free(r->defer_error);
    if (r->body)
        OPENSSL_cleanse(r->body, r->body_len);
    free(r->body);
    free(r->buf);
    free(r);
}

/*
 * Reports <r> to its owner and frees it. The request must already be out of
 * the multi handle. <error> NULL means success with <status>.
 */
static void req_finish(struct hc_req *r, long status, const char *error)
{
    struct httpclient *c = r->c;
    struct httpclient_response resp;

    req_unlink(r);
    c->in_flight--;
    if (error)
        c->nfailures++;
    resp.status = error ? 0 : status;
    resp.body = !error && r->buf ? r->buf : "";
    resp.body_len = error ? 0 : r->len;
    resp.error = error;
    resp.elapsed_s = (double)(clock_mono_us() - r->start_us) / 1e6;
    c->depth++;
    r->cb(r->arg, &resp);
    c->depth--;
    req_free(r);
}

static void destroy(struct httpclient *c);

static void check_done(struct httpclient *c)
{
    CURLMsg *msg;
    int left;

    while (!c->free_pending && (msg = curl_multi_info_read(c->multi, &left))) {
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        struct hc_req *r;
        char *priv = NULL;
        long status = 0;
        char text[CURL_ERROR_SIZE + 64];
        const char *error = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        /* <msg> dies with the removal: everything is copied out first. */
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        r = (struct hc_req *)priv;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(c->multi, easy);
        r->added = false;
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
            snprintf(text, sizeof(text), "response body exceeds the limit of %zu bytes",
                     r->max_body);
            error = text;
        } else if (r->oom) {
            error = "out of memory for the response body";
        } else if (rc == CURLE_UNSUPPORTED_PROTOCOL && c->tls) {
            snprintf(text, sizeof(text), "%s (a TLS client speaks https only)",
                     r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
            error = text;
        } else if (rc != CURLE_OK) {
            error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
        } else if (status <= 0) {
            error = "no HTTP status received";
        }
        req_finish(r, status, error);
    }
    if (c->free_pending && c->depth == 0)
        destroy(c);
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hc_req *r = arg;
    struct httpclient *c = r->c;

    (void)fd;
    (void)what;
    req_finish(r, 0, r->defer_error ? r->defer_error : "out of memory");
    if (c->free_pending && c->depth == 0)
        destroy(c);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct hc_req *r = userp;
    size_t n = size * nmemb;

    if (n > r->max_body - r->len) {
        r->too_big = true;
        return 0; /* short write: libcurl aborts with CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        char *p;

        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1;
        p = realloc(r->buf, cap);
        if (!p) {
            r->oom = true;
            return 0;
        }
        r->buf = p;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return n;
}

/*
 * Sets option <o> to <v> on the easy handle <e>; on failure stores the
 * option's name in *which and returns the CURLcode from the enclosing
 * function (which has a CURLcode rc).
 */
#define OPT(o, v)                                                                                  \
    do {                                                                                           \
        if ((rc = curl_easy_setopt(e, o, v)) != CURLE_OK) {                                        \
            *which = #o;                                                                           \
            return rc;                                                                             \
        }                                                                                          \
    } while (0)

/*
 * The options every handle of <c> gets: safety, TLS. Used on a throwaway
 * handle by httpclient_new() so that an option libcurl refuses is a start-up
 * error rather than a failure of every request.
 */
static CURLcode client_opts(const struct httpclient *c, CURL *e, const char **which)
{
    CURLcode rc;

    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_PROTOCOLS_STR, c->tls ? "https" : "http,https");
    OPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    OPT(CURLOPT_FOLLOWLOCATION, 0L);
    OPT(CURLOPT_PROXY, ""); /* never the http_proxy environment variables */
    OPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    OPT(CURLOPT_TCP_KEEPALIVE, 1L);
    OPT(CURLOPT_TCP_KEEPIDLE, 30L);
    OPT(CURLOPT_TCP_KEEPINTVL, 10L);
    OPT(CURLOPT_USERAGENT, "mfa-appliance/" MFA_VERSION);
    OPT(CURLOPT_SSL_VERIFYPEER, 1L);
    OPT(CURLOPT_SSL_VERIFYHOST, 2L);
    OPT(CURLOPT_SSLVERSION, (long)(c->min_tls == HTTPCLIENT_TLS_1_3 ? CURL_SSLVERSION_TLSv1_3
                                                                    : CURL_SSLVERSION_TLSv1_2));
    if (c->ca_file) {
        /* That CA only: not also Debian's default CA directory. */
        OPT(CURLOPT_CAINFO, c->ca_file);
        OPT(CURLOPT_CAPATH, (char *)NULL);
    }
    if (c->cert_file) {
        OPT(CURLOPT_SSLCERT, c->cert_file);
        OPT(CURLOPT_SSLCERTTYPE, "PEM");
        OPT(CURLOPT_SSLKEY, c->key_file ? c->key_file : c->cert_file);
        OPT(CURLOPT_SSLKEYTYPE, "PEM");
        OPT(CURLOPT_KEYPASSWD, ""); /* an encrypted key fails instead of prompting */
    }
    if (c->ciphers)
        OPT(CURLOPT_SSL_CIPHER_LIST, c->ciphers);
    if (c->ciphersuites)
        OPT(CURLOPT_TLS13_CIPHERS, c->ciphersuites);
    return CURLE_OK;
}

static bool has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return true;
    }
    return false;
}

static int add_header(struct hc_req *r, const char *line)
{
    struct curl_slist *l = curl_slist_append(r->headers, line);

    if (!l)
        return -1;
    r->headers = l;
    return 0;
}

/* The per-request options; on failure *which names the option. */
static CURLcode request_opts(struct hc_req *r, const char *method, const char *url,
                             const char *body, size_t body_len, int timeout_ms, const char **which)
{
    const struct httpclient *c = r->c;
    CURL *e = r->easy;
    bool is_post = strcmp(method, "POST") == 0;
    CURLcode rc;

    rc = client_opts(c, e, which);
    if (rc != CURLE_OK)
        return rc;
    OPT(CURLOPT_PRIVATE, (void *)r);
    OPT(CURLOPT_ERRORBUFFER, r->errbuf);
    OPT(CURLOPT_WRITEFUNCTION, write_cb);
    OPT(CURLOPT_WRITEDATA, (void *)r);
    OPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
    OPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    OPT(CURLOPT_CONNECTTIMEOUT_MS,
        (long)(c->connect_timeout_ms < timeout_ms ? c->connect_timeout_ms : timeout_ms));
    OPT(CURLOPT_URL, url);
    if (body || is_post || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
        /*
         * A body (maybe empty: Content-Length: 0). Our own copy, not
         * libcurl's, so it is wiped with the request (an SMS holds a code).
         */
        r->body_len = body ? body_len : 0;
        r->body = malloc(r->body_len + 1);
        if (!r->body)
            return CURLE_OUT_OF_MEMORY;
        if (r->body_len)
            memcpy(r->body, body, r->body_len);
        r->body[r->body_len] = '\0';
        OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        OPT(CURLOPT_POSTFIELDS, r->body);
        if (!is_post)
            OPT(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        OPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        OPT(CURLOPT_NOBODY, 1L);
    } else {
        OPT(CURLOPT_CUSTOMREQUEST, method);
    }
    OPT(CURLOPT_HTTPHEADER, r->headers);
    return CURLE_OK;
}

int httpclient_request(struct httpclient *c, const char *method, const char *url,
                       const char *const *headers, const char *body, size_t body_len,
                       int timeout_ms, httpclient_cb cb, void *arg, char **err)
{
    static const struct timeval now = { 0, 0 };
    struct hc_req *r = NULL;
    const char *which = NULL;
    CURLcode rc;
    CURLMcode mrc;

    if (!c || !method || !url || !cb)
        return err_set(err, "httpclient_request: NULL argument");
    if (!method_ok(method))
        return err_set(err, "invalid HTTP method \"%.*s\"", METHOD_MAX, method);
    if (timeout_ms < 0)
        return err_set(err, "invalid timeout %d ms", timeout_ms);
    if (c->free_pending)
        return err_set(err, "%s", HTTPCLIENT_CLOSED_ERROR);
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strpbrk(headers[i], "\r\n") || !strchr(headers[i], ':'))
            return err_set(err, "invalid header line (\"Name: value\", no CR or LF)");
    }
    if (timeout_ms == 0)
        timeout_ms = HTTPCLIENT_DEFAULT_TIMEOUT_MS;

    r = calloc(1, sizeof(*r));
    if (!r)
        goto oom;
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->max_body = c->max_body;
    r->start_us = clock_mono_us();
    r->defer = evtimer_new(c->base, defer_cb, r);
    if (!r->defer)
        goto oom;
    /* No "Expect: 100-continue" round trip; no made-up Content-Type. */
    if (add_header(r, "Expect:") < 0)
        goto oom;
    if (!has_header(headers, "Content-Type") && add_header(r, "Content-Type:") < 0)
        goto oom;
    for (size_t i = 0; headers && headers[i]; i++) {
        if (add_header(r, headers[i]) < 0)
            goto oom;
    }
    r->easy = curl_easy_init();
    if (!r->easy)
        goto oom;

    rc = request_opts(r, method, url, body, body_len, timeout_ms, &which);
    if (rc != CURLE_OK) {
        if (asprintf(&r->defer_error, "%s: %s", which, curl_easy_strerror(rc)) < 0)
            r->defer_error = NULL;
    } else if ((mrc = curl_multi_add_handle(c->multi, r->easy)) != CURLM_OK) {
        if (asprintf(&r->defer_error, "curl_multi_add_handle: %s", curl_multi_strerror(mrc)) < 0)
            r->defer_error = NULL;
    } else {
        r->added = true;
    }
    if (!r->added && evtimer_add(r->defer, &now) != 0) {
        req_free(r);
        return err_set(err, "cannot schedule the request's failure report");
    }
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->in_flight++;
    c->nrequests++;
    return 0;

oom:
    if (r)
        req_free(r);
    return err_set(err, "out of memory");
}

/* ---- JSON ---- */

struct json_call {
    httpclient_json_cb cb;
    void *arg;
};

static void json_done(void *arg, const struct httpclient_response *resp)
{
    struct json_call call = *(struct json_call *)arg;
    json_t *json = NULL;
    json_error_t jerr;
    char why[JSON_ERROR_TEXT_LENGTH + 64];
    const char *json_error = NULL;

    free(arg);
    if (!resp->error) {
        if (resp->body_len == 0) {
            json_error = "empty response body";
        } else {
            json = json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, &jerr);
            if (!json) {
                snprintf(why, sizeof(why), "invalid JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
                json_error = why;
            }
        }
    }
    call.cb(call.arg, resp, json, json_error);
    json_decref(json);
}

int httpclient_json(struct httpclient *c, const char *method, const char *url, json_t *body,
                    int timeout_ms, httpclient_json_cb cb, void *arg, char **err)
{
    const char *const headers[] = { "Accept: application/json",
                                    body ? "Content-Type: application/json" : NULL, NULL };
    struct json_call *call;
    char *text = NULL;
    int rc;

    if (!cb)
        return err_set(err, "httpclient_json: NULL callback");
    if (body) {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            return err_set(err, "cannot serialize the JSON request body");
    }
    call = malloc(sizeof(*call));
    if (!call) {
        free(text);
        return err_set(err, "out of memory");
    }
    call->cb = cb;
    call->arg = arg;
    rc = httpclient_request(c, method, url, headers, text, text ? strlen(text) : 0, timeout_ms,
                            json_done, call, err);
    free(text);
    if (rc < 0)
        free(call);
    return rc;
}

/* ---- client ---- */

static int check_file(const char *what, const char *path, char **err)
{
    if (access(path, R_OK) != 0)
        return err_set(err, "%s %s: %s", what, path, strerror(errno));
    return 0;
}

/* Loads the TLS settings into a scratch OpenSSL context: early, clear errors. */
static int check_tls(const struct httpclient_tls *tls, char **err)
{
    static char no_password[1] = "";
    SSL_CTX *ctx = NULL;
    int rc = -1;

    if (tls->min_tls != HTTPCLIENT_TLS_1_2 && tls->min_tls != HTTPCLIENT_TLS_1_3)
        return err_set(err, "min_tls %d: must be 0 (TLS 1.2) or 1 (TLS 1.3)", tls->min_tls);
    if (tls->key_file && !tls->cert_file)
        return err_set(err, "a TLS key file without a certificate file");
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        err_set(err, "SSL_CTX_new: %s", ossl_reason());
        goto out;
    }
    if (tls->ca_file) {
        if (check_file("CA file", tls->ca_file, err) < 0)
            goto out;
        if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1) {
            err_set(err, "CA file %s: %s", tls->ca_file, ossl_reason());
            goto out;
        }
    }
    if (tls->cert_file) {
        const char *key = tls->key_file ? tls->key_file : tls->cert_file;

        if (check_file("certificate file", tls->cert_file, err) < 0 ||
            check_file("key file", key, err) < 0)
            goto out;
        if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1) {
            err_set(err, "certificate file %s: %s", tls->cert_file, ossl_reason());
            goto out;
        }
        /* An empty password: an encrypted key fails instead of prompting. */
        SSL_CTX_set_default_passwd_cb_userdata(ctx, no_password);
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            unsigned long e = ERR_peek_last_error();

            if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                err_set(err, "key file %s does not match certificate %s", key, tls->cert_file);
            else
                err_set(err, "key file %s: %s (a PEM key, not encrypted, is expected)", key,
                        ossl_reason());
            goto out;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            err_set(err, "key file %s does not match certificate %s", key, tls->cert_file);
            goto out;
        }
    }
    if (tls->ciphers && SSL_CTX_set_cipher_list(ctx, tls->ciphers) != 1) {
        err_set(err, "TLS 1.2 cipher list \"%s\" selects no cipher", tls->ciphers);
        goto out;
    }
    if (tls->ciphersuites && SSL_CTX_set_ciphersuites(ctx, tls->ciphersuites) != 1) {
        err_set(err, "TLS 1.3 cipher suites \"%s\" are not valid", tls->ciphersuites);
        goto out;
    }
    rc = 0;
out:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

struct httpclient *httpclient_new(struct event_base *base, const struct httpclient_tls *tls,
                                  char **err)
{
    struct httpclient *c = NULL;
    CURL *probe = NULL;
    const char *which = NULL;
    CURLcode rc;

    if (!base) {
        err_set(err, "httpclient_new: NULL event base");
        return NULL;
    }
    if (httpclient_global_init(err) < 0)
        return NULL;
    if (tls && check_tls(tls, err) < 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto oom;
    c->base = base;
    c->max_body = HTTPCLIENT_MAX_BODY;
    c->connect_timeout_ms = HTTPCLIENT_CONNECT_TIMEOUT_MS;
    if (tls) {
        c->tls = true;
        c->min_tls = tls->min_tls;
        if (dup_opt(&c->ca_file, tls->ca_file) < 0 || dup_opt(&c->cert_file, tls->cert_file) < 0 ||
            dup_opt(&c->key_file, tls->key_file) < 0 || dup_opt(&c->ciphers, tls->ciphers) < 0 ||
            dup_opt(&c->ciphersuites, tls->ciphersuites) < 0)
            goto oom;
    }
    probe = curl_easy_init();
    if (!probe)
        goto oom;
    rc = client_opts(c, probe, &which);
    curl_easy_cleanup(probe);
    if (rc != CURLE_OK) {
        err_set(err, "libcurl refuses %s: %s", which, curl_easy_strerror(rc));
        goto fail;
    }
    c->timer = evtimer_new(base, timer_event_cb, c);
    c->multi = curl_multi_init();
    if (!c->timer || !c->multi)
        goto oom;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, (void *)c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, (void *)c) != CURLM_OK) {
        err_set(err, "curl_multi_setopt failed");
        goto fail;
    }
    return c;

oom:
    err_set(err, "out of memory");
fail:
    if (c) {
        c->free_pending = true;
        destroy(c);
    }
    return NULL;
}

int httpclient_set_limits(struct httpclient *c, size_t max_body, int connect_timeout_ms, char **err)
{
    if (max_body < 1 || max_body > (size_t)1 << 40)
        return err_set(err, "response body limit %zu: out of range", max_body);
    if (connect_timeout_ms < 1)
        return err_set(err, "connect timeout %d ms: must be positive", connect_timeout_ms);
    c->max_body = max_body;
    c->connect_timeout_ms = connect_timeout_ms;
    return 0;
}

void httpclient_get_stats(const struct httpclient *c, struct httpclient_stats *out)
{
    out->requests = c->nrequests;
    out->failures = c->nfailures;
    out->in_flight = c->in_flight;
}

/* Fails what is pending with "client closed", then frees everything. */
static void destroy(struct httpclient *c)
{
    struct hc_req *r;

    while ((r = c->reqs)) {
        if (r->added) {
            curl_multi_remove_handle(c->multi, r->easy);
            r->added = false;
        }
        req_finish(r, 0, HTTPCLIENT_CLOSED_ERROR);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->socks)
        sock_free(c, c->socks);
    if (c->timer)
        event_free(c->timer);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->ciphers);
    free(c->ciphersuites);
    free(c);
}

void httpclient_free(struct httpclient *c)
{
    if (!c || c->free_pending)
        return;
    c->free_pending = true;
    if (c->depth > 0)
        return; /* a callback is running: its caller finishes the free */
    destroy(c);
}

struct httpclient_tls httpclient_tls_cluster(const struct appconf *conf)
{
    struct httpclient_tls tls = {
        .ca_file = conf->cluster.tls_ca,
        .cert_file = conf->appliance.tls_cert,
        .key_file = conf->appliance.tls_key,
        .ciphers = conf->cluster.tls_ciphers,
        .ciphersuites = conf->cluster.tls_ciphersuites,
        .min_tls =
            conf->cluster.tls_min_version == TLS_MIN_1_3 ? HTTPCLIENT_TLS_1_3 : HTTPCLIENT_TLS_1_2,
    };

    return tls;
}
