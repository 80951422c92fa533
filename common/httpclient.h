/*
 * HTTP(S) client for the control APIs between hosts (mfactl -> daemons,
 * daemons -> each other), on libcurl's multi interface driven by the
 * caller's libevent loop: nothing here blocks the loop (connects, TLS
 * handshakes, reads and writes are all driven by socket events; host names go
 * to libcurl's threaded resolver, Debian's build).
 *
 * Every request has a total deadline and a connect deadline, follows no
 * redirects, ignores proxy environment variables, speaks HTTP/1.1 only, caps
 * the response body (the transfer is aborted past the cap) and reports
 * through its callback exactly once, always from the loop and never from
 * inside the call that started it.
 *
 * TLS: peer and host name verification are always on. A client made with
 * struct httpclient_tls speaks https only (an http:// URL fails with
 * "Protocol ... not supported"), so a mistyped URL can never send the
 * cluster's control traffic in clear; a client made without it speaks http
 * and https, the latter verified against the system trust store.
 *
 * libcurl global state: the first httpclient_new() (or httpclient_global_init())
 * runs curl_global_init() once, under a pthread_once. curl_global_init() is
 * not thread-safe against other threads using libcurl or OpenSSL: a program
 * that starts such threads before its first client calls
 * httpclient_global_init() from main() first. curl_global_cleanup() is never
 * called (the state lives until exit).
 *
 * Threading: a client and its requests belong to the loop thread of <base>.
 */
#ifndef MFA_HTTPCLIENT_H
#define MFA_HTTPCLIENT_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* Defaults; see httpclient_set_limits(). */
#define HTTPCLIENT_DEFAULT_TIMEOUT_MS 10000 /* request total deadline when timeout_ms is 0 */
#define HTTPCLIENT_CONNECT_TIMEOUT_MS 5000  /* TCP + TLS handshake deadline */
#define HTTPCLIENT_MAX_BODY           (1024 * 1024)

/* The error text of every request still pending when its client is freed. */
#define HTTPCLIENT_CLOSED_ERROR "client closed"

enum httpclient_tls_min {
    HTTPCLIENT_TLS_1_2 = 0,
    HTTPCLIENT_TLS_1_3 = 1,
};

/*
 * Mutual TLS settings, all copied by httpclient_new() (the caller may free
 * them afterwards). PEM files.
 *   ca_file       CA bundle the server's certificate must chain to; NULL: the
 *                 system trust store.
 *   cert_file     this host's client certificate (chain), NULL: none sent.
 *   key_file      its private key (not encrypted); NULL with a cert_file: the
 *                 key is read from cert_file.
 *   ciphers       TLS 1.2 cipher list in OpenSSL syntax; NULL: OpenSSL's.
 *   ciphersuites  TLS 1.3 suites (OpenSSL syntax); NULL: OpenSSL's.
 *   min_tls       an enum httpclient_tls_min: 0 = TLS 1.2, 1 = TLS 1.3.
 * httpclient_new() checks the settings up front (files readable, key matches
 * certificate, CA file parses, cipher lists understood) so that a bad
 * configuration fails at start-up rather than at the first request.
 */
struct httpclient_tls {
    const char *ca_file, *cert_file, *key_file, *ciphers;
    int min_tls;
    const char *ciphersuites;
};

/*
 * What a request ended with; valid only during the callback (copy what must
 * outlive it).
 *   status     the HTTP status (any, 1xx..5xx is not an error here) when a
 *              whole response was received; 0 when the transfer failed.
 *   body       the response body, NUL-terminated (a body containing NUL
 *              bytes is still body_len long); "" on failure.
 *   error      NULL on success; on failure (status 0) a sentence: libcurl's
 *              error text (e.g. "Operation timed out after 1000 milliseconds
 *              with 0 bytes received", "SSL certificate problem: unable to
 *              get local issuer certificate"), "response body exceeds the
 *              limit of N bytes", or HTTPCLIENT_CLOSED_ERROR.
 *   elapsed_s  seconds from httpclient_request() to the end.
 */
struct httpclient_response {
    long status;
    const char *body;
    size_t body_len;
    const char *error;
    double elapsed_s;
};

typedef void (*httpclient_cb)(void *arg, const struct httpclient_response *resp);

/*
 * For httpclient_json(): <resp> as above; <json> the body parsed as JSON (any
 * JSON value), borrowed and valid during the callback only (json_incref() to
 * keep it). When the transfer failed, <json> and <json_error> are NULL (see
 * resp->error). When a response came but its body is empty or not JSON,
 * <json> is NULL and <json_error> says why ("empty response body",
 * "invalid JSON at line 1 column 3: ...").
 */
typedef void (*httpclient_json_cb)(void *arg, const struct httpclient_response *resp, json_t *json,
                                   const char *json_error);

struct httpclient;
struct appconf;

/*
 * The cluster's mutual TLS settings from <conf>: the cluster CA, this
 * member's certificate and key, the minimum version and cipher lists. The
 * strings stay <conf>'s.
 */
struct httpclient_tls httpclient_tls_cluster(const struct appconf *conf);

struct httpclient_stats {
    uint64_t requests; /* accepted by httpclient_request() / httpclient_json() */
    uint64_t failures; /* of those, ended with resp->error set (status 0) */
    size_t in_flight;  /* accepted, callback not yet called */
};

/*
 * Initializes libcurl's global state once (pthread_once); later calls return
 * the first result. Returns 0, or -1 with *err.
 */
int httpclient_global_init(char **err) MFA_MUSTCHECK;

/*
 * Makes a client on <base> (which must outlive it). <tls>: NULL for plain
 * HTTP (and https with the system trust store), else mutual TLS settings as
 * described above. Returns the client, or NULL with *err (libcurl could not
 * be initialized, a TLS file is unreadable or invalid, the key does not match
 * the certificate, a cipher list selects nothing, min_tls out of range).
 */
struct httpclient *httpclient_new(struct event_base *base, const struct httpclient_tls *tls,
                                  char **err) MFA_MUSTCHECK;

/*
 * Changes the limits of requests started afterwards: <max_body> bytes of
 * response body (>= 1; default HTTPCLIENT_MAX_BODY), <connect_timeout_ms>
 * for connect + TLS handshake (>= 1; default HTTPCLIENT_CONNECT_TIMEOUT_MS;
 * a request's total deadline still applies when it is shorter). Returns 0, or
 * -1 with *err on a value out of range (nothing is changed then).
 */
int httpclient_set_limits(struct httpclient *c, size_t max_body, int connect_timeout_ms,
                          char **err) MFA_MUSTCHECK;

/*
 * Starts a request. <method>: an HTTP token ("GET", "POST", "PUT", "DELETE",
 * ...). <url>: "http://..." or "https://..." (see the TLS note above).
 * <headers>: NULL or a NULL-terminated array of "Name: value" lines (copied;
 * no CR or LF). <body>: <body_len> bytes sent as the request body (copied),
 * or NULL for none; no Content-Type is added unless given in <headers>.
 * <timeout_ms>: total deadline, > 0, or 0 for HTTPCLIENT_DEFAULT_TIMEOUT_MS.
 *
 * Returns 0 when the request was accepted: <cb>(<arg>, resp) is then called
 * exactly once, later, from the loop (also for failures libcurl reports at
 * once, e.g. a malformed URL), or from httpclient_free() with
 * HTTPCLIENT_CLOSED_ERROR. Returns -1 with *err, and <cb> is never called,
 * on a caller error (NULL argument, bad method or header, negative timeout),
 * when the client is being freed, or when out of memory.
 *
 * The callback may start new requests and may free the client (the free then
 * completes when the callback returns; later callbacks are the "client
 * closed" ones).
 */
int httpclient_request(struct httpclient *c, const char *method, const char *url,
                       const char *const *headers, const char *body, size_t body_len,
                       int timeout_ms, httpclient_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/*
 * httpclient_request() with JSON: sends <body> (borrowed, serialized
 * compactly, with Content-Type: application/json; NULL sends no body), asks
 * for Accept: application/json, and parses the response body for <cb>. Same
 * return value and callback guarantees as httpclient_request().
 */
int httpclient_json(struct httpclient *c, const char *method, const char *url, json_t *body,
                    int timeout_ms, httpclient_json_cb cb, void *arg, char **err) MFA_MUSTCHECK;

/* Counters since httpclient_new(), into *out. */
void httpclient_get_stats(const struct httpclient *c, struct httpclient_stats *out);

/*
 * Frees the client. Every request still pending is aborted and its callback
 * called first, from inside this call, with status 0 and error
 * HTTPCLIENT_CLOSED_ERROR (such a callback cannot start new requests: they
 * are refused). Called from a callback, the free completes when that callback
 * returns. NULL is fine.
 */
void httpclient_free(struct httpclient *c);

#endif
