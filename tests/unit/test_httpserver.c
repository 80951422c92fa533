/*
 * The pure parts of the HTTP server and the metrics writer: route matching
 * (exact, prefix, 404 against 405) and the Prometheus text format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "httpserver.h"
#include "metrics.h"

static void h1(struct evhttp_request *req, void *arg)
{
    (void)req;
    (void)arg;
}

static const struct http_route routes[] = {
    { EVHTTP_REQ_GET, "/health", false, h1 },
    { EVHTTP_REQ_POST, "/api/v1/auth", false, h1 },
    { EVHTTP_REQ_GET | EVHTTP_REQ_POST, "/api/v1/challenges/", true, h1 },
    { EVHTTP_REQ_DELETE, "/api/v1/challenges/", true, h1 },
};

static void test_route_find(void **state)
{
    int status;

    (void)state;
    assert_ptr_equal(http_route_find(routes, 4, EVHTTP_REQ_GET, "/health", &status), &routes[0]);
    assert_null(http_route_find(routes, 4, EVHTTP_REQ_GET, "/health/x", &status));
    assert_int_equal(status, 404);
    assert_null(http_route_find(routes, 4, EVHTTP_REQ_POST, "/health", &status));
    assert_int_equal(status, 405);
    assert_ptr_equal(
        http_route_find(routes, 4, EVHTTP_REQ_POST, "/api/v1/challenges/n1-abc/verify", &status),
        &routes[2]);
    /* The same prefix for another method is a later entry. */
    assert_ptr_equal(
        http_route_find(routes, 4, EVHTTP_REQ_DELETE, "/api/v1/challenges/n1-abc", &status),
        &routes[3]);
    assert_null(http_route_find(routes, 4, EVHTTP_REQ_PUT, "/api/v1/challenges/x", &status));
    assert_int_equal(status, 405);
    assert_null(http_route_find(routes, 4, EVHTTP_REQ_GET, "/api/v1/auth2", &status));
    assert_int_equal(status, 404);
    assert_null(http_route_find(routes, 4, EVHTTP_REQ_GET, "", &status));
    assert_int_equal(status, 404);
}

static const char expected[] =
    "# HELP mfa_up Whether it runs.\\nSecond line\n"
    "# TYPE mfa_up gauge\n"
    "mfa_up 1\n"
    "# HELP mfa_auth_total Sign-ins.\n"
    "# TYPE mfa_auth_total counter\n"
    "mfa_auth_total{result=\"accepted\",method=\"sms\"} 9007199254740992\n"
    "mfa_auth_total{result=\"a\\\"b\\\\c\\nd\"} 3\n";

static void test_metrics_format(void **state)
{
    struct evbuffer *out = evbuffer_new();
    size_t len;
    char *text;

    (void)state;
    metrics_single(out, "mfa_up", METRIC_GAUGE, "Whether it runs.\nSecond line", 1);
    metrics_family(out, "mfa_auth_total", METRIC_COUNTER, "Sign-ins.");
    metrics_sample(out, "mfa_auth_total", 9007199254740993.0, "result", "accepted", "method", "sms",
                   NULL);
    metrics_sample(out, "mfa_auth_total", 3, "result", "a\"b\\c\nd", NULL);
    len = evbuffer_get_length(out);
    text = (char *)evbuffer_pullup(out, (ev_ssize_t)len);
    assert_non_null(text);
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(text, expected, len);
    evbuffer_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_find),
        cmocka_unit_test(test_metrics_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
