/*
 * mfa-node's own counters: the per-address throttle refills over time,
 * failures count per user and address, replay marks only go up, and the
 * pending state survives a failed merge but not a successful one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"

static void test_throttle_refills(void **state)
{
    struct ratelimit *l = ratelimit_new();
    uint64_t t = 1000000;
    int retry = 0;

    (void)state;
    for (int i = 0; i < 10; i++) {
        assert_false(ratelimit_throttled(l, "192.0.2.1", 10, t, &retry));
        ratelimit_addr_failure(l, "192.0.2.1", 10, t);
    }
    assert_true(ratelimit_throttled(l, "192.0.2.1", 10, t, &retry));
    assert_true(retry >= 1 && retry <= 7);
    /* Another address is not affected. */
    assert_false(ratelimit_throttled(l, "192.0.2.2", 10, t, &retry));
    /* One failure a minute / 10 refills in 6 s. */
    assert_false(ratelimit_throttled(l, "192.0.2.1", 10, t + 6100, &retry));
    /* Full buckets are swept away. */
    ratelimit_sweep(l, 300, t + 120000);
    assert_false(ratelimit_throttled(l, "192.0.2.1", 10, t + 120000, &retry));
    ratelimit_free(l);
}

static void test_failures_and_merge(void **state)
{
    struct ratelimit *l = ratelimit_new();
    uint64_t t = 5000000;
    int total;
    char *json;

    (void)state;
    ratelimit_failure(l, "erin", "198.51.100.7", false, t);
    ratelimit_failure(l, "erin", "198.51.100.7", true, t);
    ratelimit_failure(l, "erin", "203.0.113.9", true, t);
    assert_int_equal(ratelimit_failures(l, "erin", "198.51.100.7", 300, t, &total), 2);
    assert_int_equal(total, 3);
    /* Outside the window they no longer count. */
    assert_int_equal(ratelimit_failures(l, "erin", "198.51.100.7", 300, t + 301000, &total), 0);
    assert_int_equal(total, 0);

    assert_true(ratelimit_mark(l, "42", 10, 11));
    assert_false(ratelimit_mark(l, "42", 10, 11)); /* the same code again */
    assert_false(ratelimit_mark(l, "42", 12, 12)); /* the database is ahead */
    assert_true(ratelimit_mark(l, "42", 10, 13));

    json = ratelimit_pending_json(l);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"token_id\":\"42\",\"value\":13"));
    assert_non_null(strstr(json, "\"client_ip\":\"203.0.113.9\""));
    free(json);
    /* A failed merge keeps it pending; a good one clears it. */
    ratelimit_merge_failed(l);
    json = ratelimit_pending_json(l);
    assert_non_null(json);
    free(json);
    ratelimit_merged(l);
    assert_null(ratelimit_pending_json(l));
    /* A success clears the pair. */
    ratelimit_clear(l, "erin", "198.51.100.7");
    assert_int_equal(ratelimit_failures(l, "erin", "198.51.100.7", 300, t, &total), 0);
    assert_int_equal(total, 1);
    ratelimit_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_throttle_refills),
        cmocka_unit_test(test_failures_and_merge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
