/*
 * The rules of a user's fields (node/users_fields.c), in tables: usernames
 * (length in characters, spaces and control characters of any script,
 * invalid UTF-8), email, phone, method, PIN, sms without a phone; the JSON
 * body of a create and an update (unknown fields, wrong types, NUL, null);
 * and the ISO 8601 times of ?since=.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "users_priv.h"

static void test_usernames(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        { "alice", 1 },
        { "Alice.O'Brien@example.com", 1 },
        { "a/b", 1 },
        { "J\xC3\xBCrgen", 1 },
        { "\xE5\xB1\xB1\xE7\x94\xB0", 1 },
        { "", 0 },
        { "a b", 0 },
        { "a\tb", 0 },
        { "a\nb", 0 },
        { "a\x7F", 0 },
        { "a\xC2\x85", 0 },     /* U+0085 NEL, a C1 control */
        { "a\xC2\xA0", 0 },     /* U+00A0 no-break space */
        { "a\xE2\x80\x83", 0 }, /* U+2003 em space */
        { "a\xE2\x80\x8B", 0 }, /* U+200B zero width space */
        { "a\xE3\x80\x80", 0 }, /* U+3000 ideographic space */
        { "\xEF\xBB\xBF"
          "a",
          0 },                      /* U+FEFF */
        { "a\xFF", 0 },             /* not UTF-8 */
        { "a\xC0\xAF", 0 },         /* overlong '/' */
        { "a\xED\xA0\x80", 0 },     /* a surrogate */
        { "a\xF4\x90\x80\x80", 0 }, /* above U+10FFFF */
        { "a\xC3", 0 },             /* truncated */
    };
    char long_ascii[130], long_utf8[129 * 2 + 1], *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(cases); i++) {
        int rc = users_check_username("username", cases[i].s, &err);

        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu: rc %d", i, rc);
        if (rc < 0) {
            assert_non_null(strstr(err, "username"));
            free(err);
            err = NULL;
        }
    }
    memset(long_ascii, 'x', 128);
    long_ascii[128] = '\0';
    assert_int_equal(users_check_username("u", long_ascii, NULL), 0);
    long_ascii[128] = 'x';
    long_ascii[129] = '\0';
    assert_int_equal(users_check_username("u", long_ascii, NULL), -1);
    /* 128 two-byte characters are 256 bytes and fine; 129 are not */
    for (int i = 0; i < 129; i++)
        memcpy(long_utf8 + 2 * i, "\xC3\xA9", 2);
    long_utf8[256] = '\0';
    assert_int_equal(users_check_username("u", long_utf8, NULL), 0);
    long_utf8[256] = '\xC3';
    long_utf8[258] = '\0';
    assert_int_equal(users_check_username("u", long_utf8, NULL), -1);
}

static void test_fields(void **state)
{
    static const struct {
        struct users_fields f;
        bool create;
        const char *err; /* NULL: valid; else the start of the message */
    } cases[] = {
        { { .username = "a", .method = "totp", .disabled = -1 }, true, NULL },
        { { .username = "a", .method = "sms", .phone = "+4912345", .disabled = -1 }, true, NULL },
        { { .username = "a", .method = "sms", .phone = "123", .pin = "0000", .disabled = -1 },
          true,
          NULL },
        { { .username = "a",
            .method = "hotp",
            .email = "a@b",
            .display_name = "A B",
            .disabled = -1 },
          true,
          NULL },
        { { .method = "totp", .disabled = -1 }, true, "username: required" },
        { { .username = "a", .disabled = -1 }, true, "method: required" },
        { { .username = "a", .method = "push", .disabled = -1 }, true, "method: push is not" },
        { { .username = "a", .method = "SMS", .disabled = -1 }, true, "method: must be" },
        { { .username = "a", .method = "sms", .disabled = -1 }, true, "phone: required" },
        { { .username = "a", .method = "sms", .phone = "", .disabled = -1 },
          true,
          "phone: required" },
        { { .username = "a", .method = "totp", .phone = "12", .disabled = -1 }, true, "phone:" },
        { { .username = "a", .method = "totp", .phone = "+1 555", .disabled = -1 },
          true,
          "phone:" },
        { { .username = "a", .method = "totp", .phone = "123456789012345678901", .disabled = -1 },
          true,
          "phone:" },
        { { .username = "a", .method = "totp", .phone = "++123", .disabled = -1 }, true, "phone:" },
        { { .username = "a", .method = "totp", .email = "nobody", .disabled = -1 },
          true,
          "email: must contain" },
        { { .username = "a", .method = "totp", .email = "a b@c", .disabled = -1 }, true, "email:" },
        { { .username = "a", .method = "totp", .display_name = "a\x01", .disabled = -1 },
          true,
          "display_name:" },
        { { .username = "a", .method = "totp", .display_name = "\xFF", .disabled = -1 },
          true,
          "display_name: is not valid UTF-8" },
        { { .username = "a", .method = "totp", .pin = "123", .disabled = -1 }, true, "pin:" },
        { { .username = "a", .method = "totp", .pin = "123456789", .disabled = -1 }, true, "pin:" },
        { { .username = "a", .method = "totp", .pin = "12a4", .disabled = -1 }, true, "pin:" },
        { { .username = "a b", .method = "totp", .disabled = -1 }, true, "username:" },
        /* an update needs neither username nor method */
        { { .email = "", .disabled = -1 }, false, NULL },
        { { .phone = "", .disabled = -1 }, false, NULL },
        { { .method = "sms", .phone = "", .disabled = -1 }, false, "phone: required" },
        { { .method = "sms", .disabled = -1 }, false, NULL }, /* the database checks */
    };
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(cases); i++) {
        int rc = users_fields_check(&cases[i].f, cases[i].create, &err);

        if (!cases[i].err && rc != 0)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].err &&
            (rc != -1 || !err || strncmp(err, cases[i].err, strlen(cases[i].err)) != 0))
            fail_msg("case %zu: rc %d err \"%s\", want \"%s\"", i, rc, err ? err : "-",
                     cases[i].err);
        free(err);
        err = NULL;
    }
    /* 256 characters of display_name are fine, 257 are not */
    {
        char name[258];
        struct users_fields f = { .display_name = name, .disabled = -1 };

        memset(name, 'n', 256);
        name[256] = '\0';
        assert_int_equal(users_fields_check(&f, false, NULL), 0);
        name[256] = 'n';
        name[257] = '\0';
        assert_int_equal(users_fields_check(&f, false, NULL), -1);
    }
}

static void test_json(void **state)
{
    static const struct {
        const char *json;
        bool create;
        const char *err;
    } cases[] = {
        { "{\"username\":\"a\",\"method\":\"totp\"}", true, NULL },
        { "{\"username\":\"a\",\"method\":\"totp\",\"pin\":null,\"email\":null}", true, NULL },
        { "{\"username\":\"a\",\"method\":\"totp\",\"pinn\":\"1234\"}", true,
          "unknown field \"pinn\"" },
        { "{\"username\":\"a\",\"method\":\"totp\",\"disabled\":true}", true,
          "unknown field \"disabled\"" },
        { "{\"username\":1,\"method\":\"totp\"}", true, "username: must be a string" },
        { "{\"username\":null,\"method\":\"totp\"}", true, "username: must be a string" },
        { "{\"username\":\"a\",\"method\":[\"totp\"]}", true, "method: must be a string" },
        { "{\"username\":\"a\",\"method\":\"totp\",\"pin\":1234}", true, "pin: must be a string" },
        { "{\"username\":\"a\",\"method\":\"totp\",\"phone\":5551234}", true,
          "phone: must be a string" },
        { "{\"username\":\"a\\u0000b\",\"method\":\"totp\"}", true, "username: must not contain" },
        { "{\"username\":\"a\",\"method\":\"sms\",\"phone\":null}", true, "phone: required" },
        { "{\"display_name\":\"x\"}", false, NULL },
        { "{\"pin\":null}", false, NULL },
        { "{\"disabled\":false}", false, NULL },
        { "{}", false, "give at least one" },
        { "{\"username\":\"b\"}", false, "username: cannot be changed" },
        { "{\"disabled\":\"yes\"}", false, "disabled: must be true or false" },
        { "{\"display_name\":{}}", false, "display_name: must be a string or null" },
    };
    struct users_fields f;
    char *err = NULL;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(cases); i++) {
        json_t *body = json_loads(cases[i].json, JSON_ALLOW_NUL, NULL);
        int rc;

        assert_non_null(body);
        rc = users_fields_from_json(body, cases[i].create, &f, &err);
        if (!cases[i].err && rc != 0)
            fail_msg("case %zu: %s", i, err);
        if (cases[i].err && (rc != -1 || !err || !strstr(err, cases[i].err)))
            fail_msg("case %zu: rc %d err \"%s\", want \"%s\"", i, rc, err ? err : "-",
                     cases[i].err);
        free(err);
        err = NULL;
        json_decref(body);
    }
    /* null clears a text field and removes the PIN in an update */
    {
        json_t *body = json_loads("{\"email\":null,\"pin\":null}", 0, NULL);

        assert_int_equal(users_fields_from_json(body, false, &f, NULL), 0);
        assert_string_equal(f.email, "");
        assert_true(f.pin_given);
        assert_null(f.pin);
        assert_null(f.phone);
        assert_int_equal(f.disabled, -1);
        json_decref(body);
    }
}

static void test_times(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } cases[] = {
        { "2024-05-01", "2024-05-01T00:00:00+00:00" },
        { "2024-05-01T12:34", "2024-05-01T12:34:00+00:00" },
        { "2024-05-01T12:34:56Z", "2024-05-01T12:34:56+00:00" },
        { "2024-05-01 12:34:56z", "2024-05-01T12:34:56+00:00" },
        { "2024-05-01T12:34:56.5+02:00", "2024-05-01T12:34:56.5+02:00" },
        { "2024-05-01T12:34:56.123456789-0530", "2024-05-01T12:34:56.123456-05:30" },
        { "2024-05-01T12:34:56,25+01", "2024-05-01T12:34:56.25+01:00" },
        { "2024-05-01T12:34:56.123456 00:00", "2024-05-01T12:34:56.123456+00:00" },
        { "2024-02-29T00:00:00Z", "2024-02-29T00:00:00+00:00" },
        { "2000-02-29", "2000-02-29T00:00:00+00:00" },
        { "", NULL },
        { "yesterday", NULL },
        { "2024-5-1", NULL },
        { "2024-13-01", NULL },
        { "2024-00-10", NULL },
        { "2023-02-29", NULL },
        { "1900-02-29", NULL },
        { "2024-04-31", NULL },
        { "0000-01-01", NULL },
        { "2024-05-01T24:00:00Z", NULL },
        { "2024-05-01T12:60Z", NULL },
        { "2024-05-01T12:00:60Z", NULL },
        { "2024-05-01T12:00:00.Z", NULL },
        { "2024-05-01T12:00:00.1234567890Z", NULL },
        { "2024-05-01T12:00:00+16:00", NULL },
        { "2024-05-01T12:00:00+05:", NULL },
        { "2024-05-01T12:00:00+5", NULL },
        { "2024-05-01T12:00:00Zjunk", NULL },
        { "2024-05-01Z", NULL },
        { "2024-05-01T", NULL },
        { "2024-05-01T12:00:00'; DROP TABLE users; --", NULL },
    };
    char out[48];

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(cases); i++) {
        int rc = users_parse_time(cases[i].in, out, sizeof(out));

        if (cases[i].out && (rc != 0 || strcmp(out, cases[i].out) != 0))
            fail_msg("\"%s\": rc %d out \"%s\"", cases[i].in, rc, rc == 0 ? out : "-");
        if (!cases[i].out && rc == 0)
            fail_msg("\"%s\" accepted as \"%s\"", cases[i].in, out);
    }
    assert_int_equal(users_parse_time("2024-05-01T12:34:56.123456+02:00", out, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usernames),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_times),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
