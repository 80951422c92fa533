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
    ratelimit_sweep(l, 300, t + 120000, 0);
    assert_false(ratelimit_throttled(l, "192.0.2.1", 10, t + 120000, &retry));
    ratelimit_free(l);
}

static void test_failures_and_merge(void **state)
{
    struct ratelimit *l = ratelimit_new();
    uint64_t t = 5000000;
    struct ratelimit_counts rc;
    char *json;

    (void)state;
    ratelimit_failure(l, "erin", "198.51.100.7", false, 300, t);
    ratelimit_failure(l, "erin", "198.51.100.7", true, 300, t);
    ratelimit_failure(l, "erin", "203.0.113.9", true, 300, t);
    ratelimit_failures(l, "erin", "198.51.100.7", 300, t, &rc);
    assert_int_equal(rc.pair, 2);
    assert_int_equal(rc.pair_offline, 1);
    assert_int_equal(rc.total, 3);
    assert_int_equal(rc.total_offline, 2);
    /* Outside the window they no longer count, and a new one starts afresh. */
    ratelimit_failures(l, "erin", "198.51.100.7", 300, t + 301000, &rc);
    assert_int_equal(rc.pair, 0);
    assert_int_equal(rc.total, 0);

    assert_true(ratelimit_mark(l, "42", 10, 11));
    assert_false(ratelimit_mark(l, "42", 10, 11)); /* the same code again */
    assert_false(ratelimit_mark(l, "42", 12, 12)); /* the database is ahead */
    assert_true(ratelimit_mark(l, "42", 10, 13));
    assert_true(ratelimit_marked(l, "42", 13));
    assert_false(ratelimit_marked(l, "42", 14));

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
    /* Merged failures still count here, no longer as offline ones. */
    ratelimit_failures(l, "erin", "198.51.100.7", 300, t, &rc);
    assert_int_equal(rc.pair, 2);
    assert_int_equal(rc.pair_offline, 0);
    /* Offline SMS count by the wall clock, and merge with their own time. */
    ratelimit_sms_note(l, "erin", "+15550003333", true, 1700000000000ULL);
    assert_int_equal(ratelimit_sms_count(l, "user:erin", 1700000001000ULL), 1);
    assert_int_equal(ratelimit_sms_count(l, "phone:+15550003333", 1700003601000ULL), 0);
    json = ratelimit_pending_json(l);
    assert_non_null(strstr(json, "\"at_ms\":1700000000000"));
    free(json);
    ratelimit_merged(l);
    /* A success clears the pair. */
    ratelimit_clear(l, "erin", "198.51.100.7");
    ratelimit_failures(l, "erin", "198.51.100.7", 300, t, &rc);
    assert_int_equal(rc.pair, 0);
    assert_int_equal(rc.total, 1);
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
