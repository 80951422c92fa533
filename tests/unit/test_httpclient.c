/*
 * httpclient against an evhttp server on the SAME event loop (a client that
 * blocked the loop would deadlock here): JSON round trip, callbacks never
 * from inside httpclient_request(), failures libcurl reports at once,
 * deadlines, freeing with requests pending and from inside a callback,
 * counters, argument checks.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "httpclient.h"

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int hung; /* requests /hang received */
    char url[128];
};

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void nop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *<flag> is at least <want> or <deadline_s> passed. */
static bool run_until(struct event_base *base, const int *flag, int want, double deadline_s)
{
    struct timeval tv = { 0, 5000 };
    struct event *guard = event_new(base, -1, EV_PERSIST, nop_cb, NULL);
    double end = now_s() + deadline_s;

    assert_non_null(guard);
    assert_int_equal(event_add(guard, &tv), 0);
    while (*flag < want && now_s() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return *flag >= want;
}

/* /echo: {"method": ..., "body": <request body as JSON>}; /hang: never answers. */
static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    if (strcmp(uri, "/hang") == 0) {
        f->hung++;
        return;
    }
    if (strcmp(uri, "/echo") == 0) {
        size_t n = evbuffer_get_length(in);
        json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, NULL);
        json_t *reply = json_pack(
            "{s:i,s:o?,s:s?}", "method", evhttp_request_get_command(req), "body", body, "accept",
            evhttp_find_header(evhttp_request_get_input_headers(req), "Accept"));
        char *text = json_dumps(reply, JSON_COMPACT);

        evbuffer_add(out, text, strlen(text));
        free(text);
        json_decref(reply);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/json");
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    evbuffer_add_printf(out, "hello");
    evhttp_send_reply(req, strcmp(uri, "/hello") == 0 ? 200 : 404, "X", NULL);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    assert_non_null(f);
    f->base = event_base_new();
    f->http = evhttp_new(f->base);
    assert_non_null(f->http);
    evhttp_set_gencb(f->http, handler, f);
    bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len), 0);
    f->port = ntohs(sin.sin_port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    evhttp_free(f->http);
    event_base_free(f->base);
    free(f);
    return 0;
}

static const char *url(struct fixture *f, const char *path)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d%s", f->port, path);
    return f->url;
}

/* What a callback saw. */
struct seen {
    int calls;
    long status;
    char body[256];
    char error[512];
    double elapsed;
    json_t *json;
    struct httpclient *free_me; /* free the client from the callback */
    struct httpclient *retry;   /* try a new request from the callback */
    int retry_rc;
    int *counter;
};

static void must_not_run(void *arg, const struct httpclient_response *r)
{
    (void)arg;
    (void)r;
    fail_msg("callback of a refused request");
}

static void record(struct seen *s, const struct httpclient_response *r)
{
    s->calls++;
    s->status = r->status;
    snprintf(s->body, sizeof(s->body), "%s", r->body);
    snprintf(s->error, sizeof(s->error), "%s", r->error ? r->error : "");
    s->elapsed = r->elapsed_s;
    assert_int_equal(strlen(r->body), r->body_len);
    assert_true((r->status == 0) == (r->error != NULL));
    if (s->free_me) {
        httpclient_free(s->free_me);
        s->free_me = NULL;
    }
    if (s->retry) {
        char *err = NULL;

        s->retry_rc = httpclient_request(s->retry, "GET", "http://127.0.0.1:1/", NULL, NULL, 0, 0,
                                         must_not_run, NULL, &err);
        free(err);
    }
    if (s->counter)
        (*s->counter)++;
}

static void on_response(void *arg, const struct httpclient_response *r)
{
    record(arg, r);
}

static void on_json(void *arg, const struct httpclient_response *r, json_t *json,
                    const char *json_error)
{
    struct seen *s = arg;

    (void)json_error;
    record(s, r);
    s->json = json ? json_incref(json) : NULL;
}

static void test_json_roundtrip(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    struct httpclient *c = httpclient_new(f->base, NULL, &err);
    json_t *body = json_pack("{s:s,s:[i,b]}", "user", "alice", "list", 1, 1);
    struct seen a = { 0 }, b = { 0 };
    struct httpclient_stats st;
    int done = 0;

    assert_non_null(c);
    a.counter = b.counter = &done;
    assert_int_equal(httpclient_json(c, "POST", url(f, "/echo"), body, 5000, on_json, &a, &err), 0);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hello"), NULL, NULL, 0, 5000, on_response, &b, &err),
        0);
    assert_int_equal(a.calls + b.calls, 0); /* never from inside the call */
    httpclient_get_stats(c, &st);
    assert_int_equal(st.in_flight, 2);
    assert_true(run_until(f->base, &done, 2, 10));
    assert_int_equal(a.status, 200);
    assert_non_null(a.json);
    assert_true(json_equal(json_object_get(a.json, "body"), body));
    assert_int_equal(json_integer_value(json_object_get(a.json, "method")), EVHTTP_REQ_POST);
    assert_string_equal(json_string_value(json_object_get(a.json, "accept")), "application/json");
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, "hello");
    httpclient_get_stats(c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.in_flight, 0);
    json_decref(a.json);
    json_decref(body);
    httpclient_free(c);
}

static void test_immediate_failures_are_deferred(void **state)
{
    struct fixture *f = *state;
    struct httpclient *c = httpclient_new(f->base, NULL, NULL);
    size_t huge = 9u << 20; /* over libcurl's 8 MB limit on a string option */
    char *long_url = malloc(huge + 1);
    struct seen a = { 0 }, b = { 0 };
    struct httpclient_stats st;
    int done = 0;

    (void)f;
    assert_non_null(c);
    assert_non_null(long_url);
    memset(long_url, 'a', huge);
    memcpy(long_url, "http://", 7);
    long_url[huge] = '\0';
    a.counter = b.counter = &done;
    /* libcurl refuses the option itself: reported later, from the loop. */
    assert_int_equal(
        httpclient_request(c, "GET", long_url, NULL, NULL, 0, 1000, on_response, &a, NULL), 0);
    assert_int_equal(httpclient_request(c, "GET", "gopher://127.0.0.1/", NULL, NULL, 0, 1000,
                                        on_response, &b, NULL),
                     0);
    free(long_url);
    assert_int_equal(a.calls + b.calls, 0);
    assert_true(run_until(f->base, &done, 2, 10));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 0);
    assert_non_null(strstr(a.error, "CURLOPT_URL"));
    assert_int_equal(b.calls, 1);
    assert_non_null(strstr(b.error, "not supported"));
    httpclient_get_stats(c, &st);
    assert_int_equal(st.failures, 2);
    httpclient_free(c);
}

static void test_deadline(void **state)
{
    struct fixture *f = *state;
    struct httpclient *c = httpclient_new(f->base, NULL, NULL);
    struct seen a = { 0 };
    int done = 0;

    assert_non_null(c);
    a.counter = &done;
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hang"), NULL, NULL, 0, 300, on_response, &a, NULL),
        0);
    assert_true(run_until(f->base, &done, 1, 10));
    assert_int_equal(f->hung, 1);
    assert_int_equal(a.status, 0);
    assert_non_null(strstr(a.error, "timed out"));
    assert_true(a.elapsed >= 0.29 && a.elapsed < 1.5);
    httpclient_free(c);
}

static void test_free_with_pending(void **state)
{
    struct fixture *f = *state;
    struct httpclient *c = httpclient_new(f->base, NULL, NULL);
    struct seen a = { 0 }, b = { 0 };

    assert_non_null(c);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hang"), NULL, NULL, 0, 20000, on_response, &a, NULL),
        0);
    assert_true(run_until(f->base, &f->hung, 1, 10));
    /* One on the wire, one not yet started: both end inside the free. */
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hello"), NULL, NULL, 0, 20000, on_response, &b, NULL),
        0);
    httpclient_free(c);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_string_equal(a.error, HTTPCLIENT_CLOSED_ERROR);
    assert_string_equal(b.error, HTTPCLIENT_CLOSED_ERROR);
    /* Nothing of the client is left on the loop. */
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls + b.calls, 2);
}

static void test_free_from_callback(void **state)
{
    struct fixture *f = *state;
    struct httpclient *c = httpclient_new(f->base, NULL, NULL);
    struct seen a = { 0 }, b = { 0 };
    int done = 0;

    assert_non_null(c);
    a.counter = b.counter = &done;
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hang"), NULL, NULL, 0, 20000, on_response, &a, NULL),
        0);
    b.free_me = c;
    b.retry = c;
    b.retry_rc = 99;
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hello"), NULL, NULL, 0, 20000, on_response, &b, NULL),
        0);
    assert_true(run_until(f->base, &done, 2, 10));
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, 200);
    assert_int_equal(b.retry_rc, -1); /* refused: the client is closing */
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.error, HTTPCLIENT_CLOSED_ERROR);
    assert_true(a.elapsed < 5);
}

static void test_body_limit(void **state)
{
    struct fixture *f = *state;
    struct httpclient *c = httpclient_new(f->base, NULL, NULL);
    struct seen a = { 0 }, b = { 0 };
    int done = 0;
    char *err = NULL;

    assert_non_null(c);
    a.counter = b.counter = &done;
    assert_int_equal(httpclient_set_limits(c, 0, 1000, &err), -1);
    assert_non_null(err);
    assert_int_equal(httpclient_set_limits(c, 5, 0, &err), -1);
    free(err);
    assert_int_equal(httpclient_set_limits(c, 4, 1000, NULL), 0);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hello"), NULL, NULL, 0, 5000, on_response, &a, NULL),
        0);
    assert_int_equal(httpclient_set_limits(c, 5, 1000, NULL), 0);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/hello"), NULL, NULL, 0, 5000, on_response, &b, NULL),
        0);
    assert_true(run_until(f->base, &done, 2, 10));
    assert_int_equal(a.status, 0);
    assert_string_equal(a.error, "response body exceeds the limit of 4 bytes");
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, "hello");
    httpclient_free(c);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct httpclient_tls tls = { .min_tls = 7 };
    const char *const bad_header[] = { "X-A: 1\r\nX-Injected: 2", NULL };
    const char *const no_colon[] = { "X-A", NULL };
    struct httpclient_stats st;
    struct httpclient *c;
    char *err = NULL;
    struct seen a = { 0 };

    assert_null(httpclient_new(NULL, NULL, &err));
    assert_null(httpclient_new(f->base, &tls, &err));
    assert_non_null(strstr(err, "min_tls"));
    tls.min_tls = HTTPCLIENT_TLS_1_2;
    tls.ca_file = "/nonexistent/ca.crt";
    assert_null(httpclient_new(f->base, &tls, &err));
    assert_non_null(strstr(err, "/nonexistent/ca.crt"));
    c = httpclient_new(f->base, NULL, &err);
    assert_non_null(c);
    assert_int_equal(
        httpclient_request(c, "GE T", url(f, "/"), NULL, NULL, 0, 0, on_response, &a, &err), -1);
    assert_non_null(strstr(err, "method"));
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/"), bad_header, NULL, 0, 0, on_response, &a, &err),
        -1);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/"), no_colon, NULL, 0, 0, on_response, &a, &err), -1);
    assert_int_equal(
        httpclient_request(c, "GET", url(f, "/"), NULL, NULL, 0, -5, on_response, &a, &err), -1);
    assert_int_equal(httpclient_request(c, "GET", url(f, "/"), NULL, NULL, 0, 0, NULL, &a, &err),
                     -1);
    assert_int_equal(httpclient_request(c, "GET", NULL, NULL, NULL, 0, 0, on_response, &a, &err),
                     -1);
    httpclient_get_stats(c, &st);
    assert_int_equal(st.requests, 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls, 0);
    free(err);
    httpclient_free(c);
    httpclient_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_immediate_failures_are_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
