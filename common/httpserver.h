/*
 * The HTTP server every daemon uses, on libevent's evhttp: plain or TLS
 * (OpenSSL bufferevents), limits on request headers and body, read and write
 * timeouts, a route table, JSON requests and replies through jansson, and
 * uniform JSON errors {"error": code, "detail": sentence}.
 *
 * Every reply goes through http_reply() or the helpers built on it: that is
 * how the server knows which requests are still in flight, so a daemon that
 * stops listening can wait for them (drain) before it exits.
 *
 * Errors raised by libevent's own parser before any handler runs — a
 * malformed request line, headers or a body over the limits (413) — carry
 * libevent's short HTML body: libevent 2.1 offers no hook to replace it.
 */
#ifndef MFA_HTTPSERVER_H
#define MFA_HTTPSERVER_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct http_server;

/*
 * A handler owns <req> until it replies, now or later from another
 * callback. <arg> is the server's argument.
 */
typedef void (*http_handler)(struct evhttp_request *req, void *arg);

struct http_route {
    int methods;      /* EVHTTP_REQ_GET | EVHTTP_REQ_POST ... */
    const char *path; /* "/health"; with prefix: "/api/v1/challenges/" */
    bool prefix;      /* match any path that starts with <path> */
    http_handler handler;
};

struct http_server_settings {
    const char *address; /* numeric address to listen on */
    int port;
    SSL_CTX *tls;       /* NULL: plain HTTP; the server takes a reference */
    size_t max_body;    /* bytes; larger bodies get 413 */
    size_t max_headers; /* bytes of request line and headers */
    int timeout_ms;     /* read/write timeout of a connection (slow clients) */
};

/*
 * Starts listening on <s>'s address and port, dispatching requests through
 * <routes> (<nroutes> entries, kept by reference: static tables). Returns the
 * server, or NULL with *err (e.g. the port is taken).
 */
struct http_server *http_server_new(struct event_base *base, const struct http_server_settings *s,
                                    const struct http_route *routes, size_t nroutes, void *arg,
                                    char **err) MFA_MUSTCHECK;

/* Closes the listening socket: no new connections; requests in flight go on. */
void http_server_stop_listening(struct http_server *srv);

/* Requests handed to a handler that have not been replied to yet. */
size_t http_server_in_flight(const struct http_server *srv);

/* Requests served since start, by status class (index 1..5 for 1xx..5xx). */
void http_server_counts(const struct http_server *srv, unsigned long long counts[6]);

/* Frees the server; requests still in flight are dropped with their connections. */
void http_server_free(struct http_server *srv);

/*
 * Finds the route for <method> and <path>. Returns it, or NULL with *status
 * set to 404 (no such path) or 405 (the path exists, not for this method).
 */
const struct http_route *http_route_find(const struct http_route *routes, size_t nroutes,
                                         int method, const char *path, int *status);

/*
 * Sends the reply: <status>, <content_type>, <len> bytes of <body>. Adds
 * Cache-Control: no-store and X-Content-Type-Options: nosniff.
 */
void http_reply(struct evhttp_request *req, int status, const char *content_type, const void *body,
                size_t len);

/* Sends <body> as JSON and releases it (the reference is stolen). */
void http_reply_json(struct evhttp_request *req, int status, json_t *body);

/* Sends {"error": <code>, "detail": <formatted sentence>} with <status>. */
void http_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

/*
 * Parses the request body as a JSON object. Returns it (the caller releases
 * it), or NULL after replying 415 (not application/json) or 400 (not a JSON
 * object) itself — the handler just returns.
 */
json_t *http_read_json(struct evhttp_request *req) MFA_MUSTCHECK;

/*
 * Overwrites the request body in place once it is parsed: it may hold a PIN
 * or a code, and the buffer is freed without being cleared.
 */
void http_wipe_body(struct evhttp_request *req);

/*
 * Copies query parameter <name> of the request URI into <buf>. Returns 0,
 * or -1 when it is absent or does not fit.
 */
int http_query_param(struct evhttp_request *req, const char *name, char *buf, size_t size);

/* The request's path without the query, decoded is not done; "" if none. */
const char *http_request_path(struct evhttp_request *req, char *buf, size_t size);

/* The verified client certificate's common name, or -1 (none, or plain HTTP). */
int http_peer_name(struct evhttp_request *req, char *buf, size_t size) MFA_MUSTCHECK;

/*
 * The peer's address as text into <buf> (IPv4 or IPv6, no port). Returns
 * <buf>, "" when unknown.
 */
const char *http_peer_address(struct evhttp_request *req, char *buf, size_t size);

#endif
