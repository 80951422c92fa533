/*
 * HOTP and TOTP: every RFC 4226 Appendix D and RFC 6238 Appendix B vector,
 * code formatting and syntax, and the check functions: lookahead, drift
 * window, the lowest match, no underflow at step 0, bad parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "otp.h"

#define SEED20 "12345678901234567890"
#define SEED32 SEED20 "123456789012"
#define SEED64 SEED20 SEED20 SEED20 "1234"

static const unsigned char *seed(const char *s)
{
    return (const unsigned char *)s;
}

/* RFC 4226 Appendix D: HOTP, SHA-1, 6 digits, counters 0..9 */
static const uint32_t hotp_d[] = { 755224, 287082, 359152, 969429, 338314,
                                   254676, 287922, 162583, 399871, 520489 };

static void test_rfc4226(void **state)
{
    (void)state;
    for (uint64_t c = 0; c < MFA_ARRAY_LEN(hotp_d); c++) {
        uint32_t code = 0;

        assert_int_equal(otp_hotp(seed(SEED20), 20, c, 6, OTP_SHA1, &code), 0);
        assert_int_equal(code, hotp_d[c]);
    }
}

/* RFC 6238 Appendix B: TOTP, 30 s steps, 8 digits */
static const struct {
    uint64_t time;
    const char *sha1, *sha256, *sha512;
} totp_b[] = {
    { 59, "94287082", "46119246", "90693936" },
    { 1111111109, "07081804", "68084774", "25091201" },
    { 1111111111, "14050471", "67062674", "99943326" },
    { 1234567890, "89005924", "91819424", "93441116" },
    { 2000000000, "69279037", "90698825", "38618901" },
    { 20000000000ULL, "65353130", "77737706", "47863826" },
};

static void check_totp(const char *key, size_t keylen, enum otp_algo algo, uint64_t t,
                       const char *want)
{
    uint32_t code = 0;
    char text[9];
    uint64_t step = 0;

    assert_int_equal(otp_totp(seed(key), keylen, t, 30, 8, algo, &code), 0);
    otp_format(code, 8, text);
    assert_string_equal(text, want);
    assert_int_equal(otp_totp_check(seed(key), keylen, t, 30, 0, 8, algo, want, &step), 1);
    assert_int_equal(step, t / 30);
}

static void test_rfc6238(void **state)
{
    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(totp_b); i++) {
        check_totp(SEED20, 20, OTP_SHA1, totp_b[i].time, totp_b[i].sha1);
        check_totp(SEED32, 32, OTP_SHA256, totp_b[i].time, totp_b[i].sha256);
        check_totp(SEED64, 64, OTP_SHA512, totp_b[i].time, totp_b[i].sha512);
    }
}

static void test_algo_names(void **state)
{
    enum otp_algo a = OTP_SHA1;

    (void)state;
    assert_string_equal(otp_algo_name(OTP_SHA1), "SHA1");
    assert_string_equal(otp_algo_name(OTP_SHA256), "SHA256");
    assert_string_equal(otp_algo_name(OTP_SHA512), "SHA512");
    assert_string_equal(otp_algo_name((enum otp_algo)7), "?");
    assert_int_equal(otp_algo_parse("sha256", &a), 0);
    assert_int_equal(a, OTP_SHA256);
    assert_int_equal(otp_algo_parse("Sha512", &a), 0);
    assert_int_equal(a, OTP_SHA512);
    assert_int_equal(otp_algo_parse("SHA1", &a), 0);
    assert_int_equal(a, OTP_SHA1);
    assert_int_equal(otp_algo_parse("SHA-1", &a), -1);
    assert_int_equal(otp_algo_parse("md5", &a), -1);
    assert_int_equal(otp_algo_parse("", &a), -1);
    assert_int_equal(otp_algo_parse(NULL, &a), -1);
}

static void test_format_and_syntax(void **state)
{
    char out[9];

    (void)state;
    otp_format(7081804, 8, out);
    assert_string_equal(out, "07081804");
    otp_format(42, 6, out);
    assert_string_equal(out, "000042");
    otp_format(1234567, 6, out); /* higher digits dropped */
    assert_string_equal(out, "234567");
    otp_format(42, 5, out);
    assert_string_equal(out, "");
    otp_format(42, 9, out);
    assert_string_equal(out, "");

    assert_true(otp_code_syntax_ok("000042", 6));
    assert_true(otp_code_syntax_ok("1234567", 7));
    assert_true(otp_code_syntax_ok("12345678", 8));
    assert_false(otp_code_syntax_ok("12345", 6));
    assert_false(otp_code_syntax_ok("1234567", 6));
    assert_false(otp_code_syntax_ok("12345a", 6));
    assert_false(otp_code_syntax_ok(" 123456", 6));
    assert_false(otp_code_syntax_ok("123 456", 6));
    assert_false(otp_code_syntax_ok("-12345", 6));
    assert_false(otp_code_syntax_ok("", 6));
    assert_false(otp_code_syntax_ok(NULL, 6));
    assert_false(otp_code_syntax_ok("12345", 5));
    assert_false(otp_code_syntax_ok("123456789", 9));
}

static void test_bad_params(void **state)
{
    uint32_t code;
    uint64_t m;

    (void)state;
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 5, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 9, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 0, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, -6, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 0, 0, 6, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(NULL, 20, 0, 6, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 6, (enum otp_algo)3, &code), -1);
    assert_int_equal(otp_totp(seed(SEED20), 20, 59, 0, 8, OTP_SHA1, &code), -1);
    assert_int_equal(otp_totp(seed(SEED20), 20, 59, 30, 10, OTP_SHA1, &code), -1);
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 7, OTP_SHA1, &code), 0);
    assert_int_equal(code, 4755224); /* 1284755224 mod 10^7 */

    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 0, 9, OTP_SHA1, "755224", &m), -1);
    assert_int_equal(otp_hotp_check(seed(SEED20), 0, 0, 0, 6, OTP_SHA1, "755224", &m), -1);
    assert_int_equal(
        otp_hotp_check(seed(SEED20), 20, 0, OTP_SEARCH_MAX + 1, 6, OTP_SHA1, "755224", &m), -1);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, 59, 0, 1, 8, OTP_SHA1, "94287082", &m), -1);
    assert_int_equal(
        otp_totp_check(seed(SEED20), 20, 59, 30, OTP_SEARCH_MAX + 1, 8, OTP_SHA1, "94287082", &m),
        -1);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, 59, 30, 1, 5, OTP_SHA1, "94287", &m), -1);
}

static void test_hotp_lookahead(void **state)
{
    uint64_t m = 99;

    (void)state;
    /* counter 0, code of counter 0 */
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 0, 6, OTP_SHA1, "755224", &m), 1);
    assert_int_equal(m, 0);
    /* code of counter 5: found with lookahead 5, not 4 */
    m = 99;
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 4, 6, OTP_SHA1, "254676", &m), 0);
    assert_int_equal(m, 99); /* untouched without a match */
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 5, 6, OTP_SHA1, "254676", &m), 1);
    assert_int_equal(m, 5);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 3, 10, 6, OTP_SHA1, "520489", &m), 1);
    assert_int_equal(m, 9);
    /* an already used counter (behind the stored one) is refused */
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 3, 10, 6, OTP_SHA1, "287082", &m), 0);
    /* wrong code, malformed codes, other algorithm */
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA1, "000000", &m), 0);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA1, "75522", &m), 0);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA1, "7552245", &m), 0);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA1, "75522x", &m), 0);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA1, NULL, &m), 0);
    assert_int_equal(otp_hotp_check(seed(SEED20), 20, 0, 9, 6, OTP_SHA256, "755224", &m), 0);
    /* at the top of the counter space the range is clamped, no wrap to 0 */
    assert_int_equal(
        otp_hotp_check(seed(SEED20), 20, UINT64_MAX - 1, 10, 6, OTP_SHA1, "755224", &m), 0);
}

static void test_totp_window(void **state)
{
    const uint64_t t = 1111111109; /* step 37037036, code 07081804 (SHA1) */
    uint64_t m = 0;
    uint32_t code;
    char prev[9], next[9];

    (void)state;
    assert_int_equal(otp_totp(seed(SEED20), 20, t - 30, 30, 8, OTP_SHA1, &code), 0);
    otp_format(code, 8, prev);
    assert_int_equal(otp_totp(seed(SEED20), 20, t + 60, 30, 8, OTP_SHA1, &code), 0);
    otp_format(code, 8, next);

    /* one step behind: needs window 1 */
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 0, 8, OTP_SHA1, prev, &m), 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 1, 8, OTP_SHA1, prev, &m), 1);
    assert_int_equal(m, t / 30 - 1);
    /* two steps ahead (client clock fast): needs window 2 */
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 1, 8, OTP_SHA1, next, &m), 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 2, 8, OTP_SHA1, next, &m), 1);
    assert_int_equal(m, t / 30 + 2);
    /* the current code inside a wide window reports the current step */
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 5, 8, OTP_SHA1, "07081804", &m), 1);
    assert_int_equal(m, t / 30);
    /* 1111111111 is the next step: its code with 1111111109 needs window 1 */
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 0, 8, OTP_SHA1, "14050471", &m), 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 1, 8, OTP_SHA1, "14050471", &m), 1);
    assert_int_equal(m, 1111111111 / 30);
    /* wrong and malformed codes */
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 3, 8, OTP_SHA1, "07081805", &m), 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 3, 8, OTP_SHA1, "0708180", &m), 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, t, 30, 3, 8, OTP_SHA1, "O7081804", &m), 0);
}

static void test_totp_no_underflow(void **state)
{
    uint32_t code;
    char c0[9];
    uint64_t m = 99;

    (void)state;
    /* At time 10 (step 0) a window of 3 covers steps 0..3, not wrapped ones. */
    assert_int_equal(otp_hotp(seed(SEED20), 20, 0, 8, OTP_SHA1, &code), 0);
    otp_format(code, 8, c0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, 10, 30, 3, 8, OTP_SHA1, c0, &m), 1);
    assert_int_equal(m, 0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, 59, 30, 0, 8, OTP_SHA1, "94287082", &m), 1);
    assert_int_equal(m, 1);
    /* UINT64_MAX seconds: no overflow of step + window */
    assert_int_equal(otp_totp(seed(SEED20), 20, UINT64_MAX, 1, 8, OTP_SHA1, &code), 0);
    otp_format(code, 8, c0);
    assert_int_equal(otp_totp_check(seed(SEED20), 20, UINT64_MAX, 1, 2, 8, OTP_SHA1, c0, &m), 1);
    assert_true(m >= UINT64_MAX - 2);
}

static void test_other_periods_and_digits(void **state)
{
    uint32_t a, b;

    (void)state;
    /* 60 s period: times 60 and 119 share step 1, which is HOTP counter 1 */
    assert_int_equal(otp_totp(seed(SEED20), 20, 60, 60, 6, OTP_SHA1, &a), 0);
    assert_int_equal(otp_totp(seed(SEED20), 20, 119, 60, 6, OTP_SHA1, &b), 0);
    assert_int_equal(a, b);
    assert_int_equal(a, 287082);
    /* 8-digit HOTP ends with the 6-digit one */
    assert_int_equal(otp_hotp(seed(SEED20), 20, 1, 8, OTP_SHA1, &a), 0);
    assert_int_equal(a % 1000000, 287082);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4226),
        cmocka_unit_test(test_rfc6238),
        cmocka_unit_test(test_algo_names),
        cmocka_unit_test(test_format_and_syntax),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_hotp_lookahead),
        cmocka_unit_test(test_totp_window),
        cmocka_unit_test(test_totp_no_underflow),
        cmocka_unit_test(test_other_periods_and_digits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
