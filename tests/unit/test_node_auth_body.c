/*
 * The sign-in and verify bodies of the HTTP API (node/auth_http.c): which
 * member a bad body is reported by, and what a good one yields. The fuzz
 * target (fuzz_api_json) checks that nothing crashes; this checks the
 * answers the API documents. And where a RADIUS password splits into first
 * factor and code (auth_password_split()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth_http_priv.h"

static const char *check(const char *text, struct auth_body *b)
{
    json_error_t jerr;
    json_t *body = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    const char *bad;

    assert_non_null(body);
    bad = auth_body_signin(body, b);
    json_decref(body);
    return bad;
}

static void test_signin_bad_members(void **state)
{
    static const struct {
        const char *body, *bad;
    } cases[] = {
        { "{}", "username" },
        { "{\"username\": 7}", "username" },
        { "{\"username\": \"\"}", "username" },
        { "{\"username\": \"has space\"}", "username" },
        { "{\"username\": \"alice\", \"method\": \"push\"}", "method" },
        { "{\"username\": \"alice\", \"method\": 1}", "method" },
        { "{\"username\": \"alice\", \"pin\": 1234}", "pin" },
        { "{\"username\": \"alice\", \"pin\": \"\"}", "pin" },
        { "{\"username\": \"alice\", \"pin\": \"12345678901234567\"}", "pin" },
        { "{\"username\": \"alice\", \"otp\": [\"1\"]}", "otp" },
        { "{\"username\": \"alice\", \"client_ip\": \"localhost\"}", "client_ip" },
        /* the first bad member in the order the API checks them */
        { "{\"username\": \"alice\", \"method\": \"x\", \"pin\": 1}", "method" },
    };
    struct auth_body b;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *bad = check(cases[i].body, &b);

        if (!bad || strcmp(bad, cases[i].bad) != 0)
            fail_msg("%s: expected \"%s\", got \"%s\"", cases[i].body, cases[i].bad,
                     bad ? bad : "(accepted)");
    }
}

static void test_signin_good(void **state)
{
    struct auth_body b;

    (void)state;
    assert_null(check("{\"username\": \"alice\"}", &b));
    assert_string_equal(b.username, "alice");
    assert_false(b.has_method || b.has_pin || b.has_otp || b.has_client_ip);
    /* null counts as absent */
    assert_null(check("{\"username\": \"bob\", \"pin\": null, \"method\": null}", &b));
    assert_false(b.has_pin || b.has_method);
    assert_null(check("{\"username\": \"carol\", \"method\": \"totp\", \"pin\": \"2468\","
                      " \"otp\": \"123456\", \"client_ip\": \"2001:db8::7\"}",
                      &b));
    assert_string_equal(b.method, "totp");
    assert_string_equal(b.pin, "2468");
    assert_string_equal(b.otp, "123456");
    assert_string_equal(b.client_ip, "2001:db8::7");
    assert_true(b.has_method && b.has_pin && b.has_otp && b.has_client_ip);
}

/* pin carries a directory password under directory.first_factor = "ldap": up to 128 bytes. */
static void test_signin_long_pin(void **state)
{
    char pin[AUTH_PASSWORD_MAX + 2], text[512];
    json_t *body;
    struct auth_body b;

    (void)state;
    memset(pin, 'p', sizeof(pin) - 1);
    pin[sizeof(pin) - 1] = '\0';
    for (size_t len = 16; len <= AUTH_PASSWORD_MAX + 1; len++) {
        pin[len] = '\0';
        snprintf(text, sizeof(text), "{\"username\": \"dora\", \"pin\": \"%s\"}", pin);
        body = json_loads(text, 0, NULL);
        assert_non_null(body);
        /* The PIN mode's limit stays 16, */
        if (len <= AUTH_SECRET_MAX)
            assert_null(auth_body_signin(body, &b));
        else
            assert_string_equal(auth_body_signin(body, &b), "pin");
        /* the directory password's is 128, and never more whatever is asked. */
        if (len <= AUTH_PASSWORD_MAX) {
            assert_null(auth_body_signin_max(body, &b, AUTH_PASSWORD_MAX));
            assert_int_equal(strlen(b.pin), len);
        } else {
            assert_string_equal(auth_body_signin_max(body, &b, AUTH_PASSWORD_MAX), "pin");
            assert_string_equal(auth_body_signin_max(body, &b, 4096), "pin");
        }
        json_decref(body);
        pin[len] = 'p';
    }
}

static void test_password_split(void **state)
{
    static const struct {
        size_t len;
        bool sms, has_first;
        size_t digits, first;
    } cases[] = {
        /* SMS: all of it is the first factor (the code comes in the next round) */
        { 4, true, true, 6, 4 },
        { 128, true, true, 6, 128 },
        { 6, true, false, 6, 0 },
        /* a token: the last <digits> characters are the code */
        { 10, false, true, 6, 4 },
        { 128, false, true, 6, 122 },
        { 128, false, true, 8, 120 },
        { 7, false, true, 6, 1 },
        /* no longer than the code: all first factor, and the sign-in wants a code */
        { 6, false, true, 6, 6 },
        { 3, false, true, 6, 3 },
        { 0, false, true, 6, 0 },
        /* no first factor: all of it is the code */
        { 6, false, false, 6, 0 },
        { 40, false, false, 8, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t got =
            auth_password_split(cases[i].len, cases[i].sms, cases[i].has_first, cases[i].digits);

        if (got != cases[i].first)
            fail_msg("case %zu: len %zu: expected %zu, got %zu", i, cases[i].len, cases[i].first,
                     got);
    }
}

static void test_verify(void **state)
{
    char otp[AUTH_SECRET_MAX + 1];
    json_t *body;

    (void)state;
    body = json_pack("{s:s}", "otp", "318642");
    assert_int_equal(auth_body_verify(body, otp), 0);
    assert_string_equal(otp, "318642");
    json_decref(body);
    body = json_pack("{s:i}", "otp", 318642);
    assert_int_equal(auth_body_verify(body, otp), -1);
    json_decref(body);
    body = json_object();
    assert_int_equal(auth_body_verify(body, otp), -1);
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signin_bad_members),
        cmocka_unit_test(test_signin_good),
        cmocka_unit_test(test_signin_long_pin),
        cmocka_unit_test(test_password_split),
        cmocka_unit_test(test_verify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
