/*
 * The sign-in and verify bodies of the HTTP API (node/auth_http.c): which
 * member a bad body is reported by, and what a good one yields. The fuzz
 * target (fuzz_api_json) checks that nothing crashes; this checks the
 * answers the API documents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
        cmocka_unit_test(test_verify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
