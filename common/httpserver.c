/*
 * The HTTP server on evhttp; see httpserver.h.
 *
 * Requests reach dispatch(), which finds the route and counts the request
 * as in flight until http_reply() sends its answer. The counters are per
 * process, not per server: a daemon drains all its servers together, and a
 * reply may come after the client's connection (and with it any way back to
 * the server object) is gone.
 */
#include "httpserver.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "errmsg.h"
#include "tls.h"

struct http_server {
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    SSL_CTX *tls;
    const struct http_route *routes;
    size_t nroutes;
    void *arg;
};

static size_t in_flight;
static unsigned long long status_counts[6];

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    SSL *ssl = SSL_new(srv->tls);
    struct bufferevent *bev;

    /*
     * evhttp falls back to a plain bufferevent when this returns NULL: never
     * serve a TLS port in clear. SSL_new() fails only without memory.
     */
    if (!ssl)
        abort();
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev)
        abort();
    /* Clients that close without close_notify are common; not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

const struct http_route *http_route_find(const struct http_route *routes, size_t nroutes,
                                         int method, const char *path, int *status)
{
    *status = 404;
    for (size_t i = 0; i < nroutes; i++) {
        const struct http_route *r = &routes[i];
        bool match =
            r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0 : strcmp(path, r->path) == 0;

        if (!match)
            continue;
        if (r->methods & method)
            return r;
        *status = 405;
    }
    return NULL;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct http_server *srv = arg;
    const struct http_route *r;
    char path[1024];
    int status;

    in_flight++;
    http_request_path(req, path, sizeof(path));
    r = http_route_find(srv->routes, srv->nroutes, (int)evhttp_request_get_command(req), path,
                        &status);
    if (!r) {
        if (status == 405)
            http_reply_error(req, 405, "method_not_allowed", "%s does not take this method", path);
        else
            http_reply_error(req, 404, "not_found", "no such resource");
        return;
    }
    r->handler(req, srv->arg);
}

struct http_server *http_server_new(struct event_base *base, const struct http_server_settings *s,
                                    const struct http_route *routes, size_t nroutes, void *arg,
                                    char **err)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    struct timeval tv = { s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000 };

    if (!srv || !(srv->http = evhttp_new(base))) {
        free(srv);
        err_set(err, "out of memory");
        return NULL;
    }
    srv->routes = routes;
    srv->nroutes = nroutes;
    srv->arg = arg;
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)s->max_body);
    evhttp_set_max_headers_size(srv->http, (ev_ssize_t)s->max_headers);
    evhttp_set_timeout_tv(srv->http, &tv);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_HEAD);
    evhttp_set_default_content_type(srv->http, "application/json");
    evhttp_set_gencb(srv->http, dispatch, srv);
    if (s->tls) {
        SSL_CTX_up_ref(s->tls);
        srv->tls = s->tls;
        evhttp_set_bevcb(srv->http, tls_bev, srv);
    }
    srv->listener = evhttp_bind_socket_with_handle(srv->http, s->address, (ev_uint16_t)s->port);
    if (!srv->listener) {
        err_set(err, "cannot listen on %s port %d: %s", s->address, s->port,
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        http_server_free(srv);
        return NULL;
    }
    return srv;
}

void http_server_stop_listening(struct http_server *srv)
{
    if (srv->listener) {
        evhttp_del_accept_socket(srv->http, srv->listener);
        srv->listener = NULL;
    }
}

size_t http_server_in_flight(const struct http_server *srv)
{
    (void)srv;
    return in_flight;
}

void http_server_counts(const struct http_server *srv, unsigned long long counts[6])
{
    (void)srv;
    memcpy(counts, status_counts, sizeof(status_counts));
}

void http_server_free(struct http_server *srv)
{
    if (!srv)
        return;
    if (srv->http)
        evhttp_free(srv->http);
    SSL_CTX_free(srv->tls);
    free(srv);
}

void http_reply(struct evhttp_request *req, int status, const char *content_type, const void *body,
                size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();

    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (out && len)
        evbuffer_add(out, body, len);
    evhttp_send_reply(req, status, NULL, out);
    evbuffer_free(out);
    if (in_flight > 0)
        in_flight--;
    status_counts[status >= 100 && status < 600 ? status / 100 : 5]++;
}

void http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    if (text) {
        http_reply(req, status, "application/json", text, strlen(text));
    } else {
        static const char oom[] = "{\"error\":\"internal\",\"detail\":\"out of memory\"}";

        http_reply(req, 500, "application/json", oom, sizeof(oom) - 1);
    }
    free(text);
    json_decref(body);
}

void http_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt,
                      ...)
{
    char detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    http_reply_json(req, status, json_pack("{s:s, s:s}", "error", code, "detail", detail));
}

json_t *http_read_json(struct evhttp_request *req)
{
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *body;

    if (!type || strncasecmp(type, "application/json", 16) != 0 ||
        (type[16] != '\0' && type[16] != ';' && type[16] != ' ')) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "send the body as Content-Type: application/json");
        return NULL;
    }
    body = json_loadb((const char *)evbuffer_pullup(in, (ev_ssize_t)len), len,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (!body) {
        http_reply_error(req, 400, "bad_request", "the body is not valid JSON: %s at line %d",
                         jerr.text, jerr.line);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        http_reply_error(req, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return body;
}

void http_wipe_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);

    if (len)
        OPENSSL_cleanse(evbuffer_pullup(in, (ev_ssize_t)len), len);
}

int http_query_param(struct evhttp_request *req, const char *name, char *buf, size_t size)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    const char *v;
    int rc = -1;

    if (!query || evhttp_parse_query_str(query, &params) != 0)
        return -1;
    v = evhttp_find_header(&params, name);
    if (v && strlen(v) < size) {
        memcpy(buf, v, strlen(v) + 1);
        rc = 0;
    }
    evhttp_clear_headers(&params);
    return rc;
}

const char *http_request_path(struct evhttp_request *req, char *buf, size_t size)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    snprintf(buf, size, "%s", path ? path : "");
    return buf;
}

int http_peer_name(struct evhttp_request *req, char *buf, size_t size)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;

    return tls_peer_name(bev ? bufferevent_openssl_get_ssl(bev) : NULL, buf, size);
}

const char *http_peer_address(struct evhttp_request *req, char *buf, size_t size)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port;

    buf[0] = '\0';
    if (conn) {
        evhttp_connection_get_peer(conn, &addr, &port);
        snprintf(buf, size, "%s", addr ? addr : "");
    }
    return buf;
}
