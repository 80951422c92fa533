/*
 * Logging: key=value lines whose %s values are quoted so that input from the
 * network cannot forge a field or a line, truncation, phone masking, levels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static void test_plain_and_numbers(void **state)
{
    char buf[256];

    (void)state;
    log_format(buf, sizeof(buf), "pg.started pid=%d port=%u big=%lld size=%zu neg=%ld hex=%x %%",
               42, 5432u, -9000000000LL, (size_t)7, -3L, 255u);
    assert_string_equal(buf, "pg.started pid=42 port=5432 big=-9000000000 size=7 neg=-3 hex=ff %");
    log_format(buf, sizeof(buf), "auth user=%s node=%s c=%c", "alice@example.com", "n1", 'x');
    assert_string_equal(buf, "auth user=alice@example.com node=n1 c=x");
}

static void test_values_are_quoted(void **state)
{
    char buf[256];

    (void)state;
    /* A username trying to forge a field and a second line. */
    log_format(buf, sizeof(buf), "auth user=%s result=%s", "bob result=accepted\nfake=1",
               "rejected");
    assert_string_equal(buf, "auth user=\"bob result=accepted\\nfake=1\" result=rejected");
    log_format(buf, sizeof(buf), "x a=%s b=%s c=%s d=%s", "", "q\"t", "back\\slash",
               "\x01\xc3\xa9");
    assert_string_equal(buf, "x a=\"\" b=\"q\\\"t\" c=\"back\\\\slash\" d=\"\\x01\\xc3\\xa9\"");
}

static void test_truncation(void **state)
{
    char buf[32];
    size_t n;

    (void)state;
    n = log_format(buf, sizeof(buf), "event long=%s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(n, strlen(buf));
    assert_true(n < sizeof(buf));
    assert_non_null(strstr(buf, " truncated=1"));
    assert_int_equal(strncmp(buf, "event long=aaa", 14), 0);
}

static void test_mask_phone(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(log_mask_phone("+4917012345678", buf, sizeof(buf)), "+49*********78");
    assert_string_equal(log_mask_phone("123456", buf, sizeof(buf)), "****56");
    assert_string_equal(log_mask_phone("12", buf, sizeof(buf)), "12");
    assert_string_equal(log_mask_phone("", buf, sizeof(buf)), "");
    assert_string_equal(log_mask_phone(NULL, buf, sizeof(buf)), "-");
    /* A buffer too small for the number shows no digit at all. */
    assert_string_equal(log_mask_phone("+4917012345678", buf, 8), "***");
}

static void test_levels(void **state)
{
    enum log_level l;

    (void)state;
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_LVL_WARNING);
    assert_int_equal(log_level_parse("verbose", &l), -1);
    assert_string_equal(log_level_name(LOG_LVL_NOTICE), "notice");
    log_setup("t", LOG_TO_STDERR, LOG_LVL_WARNING);
    assert_false(log_enabled(LOG_LVL_INFO));
    assert_true(log_enabled(LOG_LVL_ERROR));
}

/* log_write() puts one whole line on stderr, below-level lines not at all. */
static void test_write_to_stderr(void **state)
{
    int fds[2], saved = dup(STDERR_FILENO);
    char buf[512] = { 0 };
    ssize_t n;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], STDERR_FILENO);
    log_setup("mfa-test", LOG_TO_STDERR, LOG_LVL_INFO);
    log_debug("hidden x=%d", 1);
    log_warn("disk.low free=%d path=%s", 5, "/var/lib/mfa appliance");
    dup2(saved, STDERR_FILENO);
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    close(saved);
    assert_true(n > 0);
    assert_null(strstr(buf, "hidden"));
    assert_non_null(strstr(buf, " mfa-test["));
    assert_non_null(strstr(buf, "] warning disk.low free=5 path=\"/var/lib/mfa appliance\"\n"));
    assert_int_equal(strchr(buf, '\n') - buf, n - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_numbers),
        cmocka_unit_test(test_values_are_quoted),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_mask_phone),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_write_to_stderr),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
