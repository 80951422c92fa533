/*
 * RFC 4648 encodings: the §10 test vectors for base64 and base32, base64url,
 * strict rejection of invalid base64, lenient (typed) base32, and that no
 * function writes past the buffer size it is given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"

/* RFC 4648 §10 */
static const struct {
    const char *plain, *b64, *b32;
} vectors[] = {
    { "", "", "" },
    { "f", "Zg==", "MY======" },
    { "fo", "Zm8=", "MZXQ====" },
    { "foo", "Zm9v", "MZXW6===" },
    { "foob", "Zm9vYg==", "MZXW6YQ=" },
    { "fooba", "Zm9vYmE=", "MZXW6YTB" },
    { "foobar", "Zm9vYmFy", "MZXW6YTBOI======" },
};

static void test_b64_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(vectors); i++) {
        const char *p = vectors[i].plain;
        char enc[32];
        unsigned char dec[16];
        size_t n = 99;

        assert_int_equal(b64_encode(p, strlen(p), enc, sizeof(enc)), 0);
        assert_string_equal(enc, vectors[i].b64);
        assert_int_equal(strlen(enc), B64_ENCODED_LEN(strlen(p)));
        assert_int_equal(b64_decode(enc, strlen(enc), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(dec, p, n);
    }
}

static void test_b32_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(vectors); i++) {
        const char *p = vectors[i].plain;
        char enc[32], unpadded[32];
        unsigned char dec[16];
        size_t n = 99;

        /* We encode without padding: the vector up to its first '='. */
        strcpy(unpadded, vectors[i].b32);
        unpadded[strcspn(unpadded, "=")] = '\0';
        assert_int_equal(b32_encode(p, strlen(p), enc, sizeof(enc)), 0);
        assert_string_equal(enc, unpadded);
        assert_int_equal(strlen(enc), B32_ENCODED_LEN(strlen(p)));
        /* Both the padded and the unpadded form decode. */
        assert_int_equal(b32_decode(vectors[i].b32, strlen(vectors[i].b32), dec, sizeof(dec), &n),
                         0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(dec, p, n);
        assert_int_equal(b32_decode(unpadded, strlen(unpadded), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(dec, p, n);
    }
}

static void test_b32_typed(void **state)
{
    const char *typed = "jbsw y3dp ehpk 3pxp"; /* "Hello!\xde\xad\xbe\xef" */
    const unsigned char want[] = { 'H', 'e', 'l', 'l', 'o', '!', 0xde, 0xad, 0xbe, 0xef };
    unsigned char dec[16];
    size_t n = 0;

    (void)state;
    assert_int_equal(b32_decode(typed, strlen(typed), dec, sizeof(dec), &n), 0);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(dec, want, n);
    assert_int_equal(b32_decode("MZXW6===  ", 10, dec, sizeof(dec), &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(b32_decode("\tmzxw6yq", 8, dec, sizeof(dec), &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(dec, "foob", 4);
}

static void test_b32_invalid(void **state)
{
    static const char *bad[] = {
        "MZXW1",     /* '1' not in the alphabet */
        "MZ=XW6",    /* data after padding */
        "MZXW6-YQ",  /* dash */
        "M",         /* 1 character: impossible length */
        "MZX",       /* 3 */
        "MZXW6YTBO", /* 9 = 8 + 1 */
        "MZXW6Y",    /* 6 */
        "MZXW\xc3\xa9",
    };
    unsigned char dec[16];
    size_t n;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++)
        assert_int_equal(b32_decode(bad[i], strlen(bad[i]), dec, sizeof(dec), &n), -1);
    /* embedded NUL */
    assert_int_equal(b32_decode("MZ\0W6", 5, dec, sizeof(dec), &n), -1);
}

static void test_b64_invalid(void **state)
{
    static const char *bad[] = {
        "Zg=",          /* not a multiple of 4 */
        "Zg",           /* padding required */
        "Zg=a",         /* data after '=' */
        "Z===",         /* three '=' */
        "====",         /* only padding */
        "Zh==",         /* non-canonical: unused bits not zero */
        "Zm9 v",        /* whitespace */
        "Zm9v\n",       /* newline */
        "Zm-v",         /* base64url character */
        "Zm_v",         /* base64url character */
        "Zm9vYg==Zm9v", /* padding in the middle */
    };
    unsigned char dec[16];
    size_t n;

    (void)state;
    for (size_t i = 0; i < MFA_ARRAY_LEN(bad); i++)
        assert_int_equal(b64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec), &n), -1);
    assert_int_equal(b64_decode("Zm\0v", 4, dec, sizeof(dec), &n), -1);
}

static void test_b64url(void **state)
{
    const unsigned char raw[] = { 0xfb, 0xff, 0xfe, 0x00, 0x3e };
    char enc[16];
    unsigned char dec[16];
    size_t n = 0;

    (void)state;
    assert_int_equal(b64url_encode(raw, sizeof(raw), enc, sizeof(enc)), 0);
    assert_string_equal(enc, "-__-AD4"); /* standard: "+//+AD4=" */
    assert_int_equal(strlen(enc), B64URL_ENCODED_LEN(sizeof(raw)));
    assert_int_equal(b64url_decode(enc, strlen(enc), dec, sizeof(dec), &n), 0);
    assert_int_equal(n, sizeof(raw));
    assert_memory_equal(dec, raw, n);
    assert_int_equal(b64url_encode("f", 1, enc, sizeof(enc)), 0);
    assert_string_equal(enc, "Zg");
    /* '=' padding, standard characters, impossible length, non-canonical */
    assert_int_equal(b64url_decode("Zg==", 4, dec, sizeof(dec), &n), -1);
    assert_int_equal(b64url_decode("+//+", 4, dec, sizeof(dec), &n), -1);
    assert_int_equal(b64url_decode("Zm9vY", 5, dec, sizeof(dec), &n), -1);
    assert_int_equal(b64url_decode("Zh", 2, dec, sizeof(dec), &n), -1);
    assert_int_equal(b64url_decode("", 0, dec, sizeof(dec), &n), 0);
    assert_int_equal(n, 0);
}

static void test_buffer_sizes(void **state)
{
    char enc[16];
    unsigned char dec[8];
    size_t n;

    (void)state;
    memset(enc, 'x', sizeof(enc));
    /* "foobar" needs 8 + NUL */
    assert_int_equal(b64_encode("foobar", 6, enc, 8), -1);
    assert_int_equal(enc[0], '\0');
    assert_int_equal(enc[8], 'x');
    assert_int_equal(b64_encode("foobar", 6, enc, 9), 0);
    assert_int_equal(b64url_encode("foobar", 6, enc, 8), -1);
    assert_int_equal(b32_encode("foobar", 6, enc, 10), -1); /* needs 10 + NUL */
    assert_int_equal(b32_encode("foobar", 6, enc, 11), 0);
    assert_string_equal(enc, "MZXW6YTBOI");
    assert_int_equal(b64_encode("", 0, enc, 0), -1);

    memset(dec, 0xaa, sizeof(dec));
    assert_int_equal(b64_decode("Zm9vYmFy", 8, dec, 5, &n), -1);
    assert_int_equal(dec[0], 0xaa); /* nothing written */
    assert_int_equal(b64_decode("Zm9vYmFy", 8, dec, 6, &n), 0);
    assert_int_equal(b64url_decode("Zm9vYmFy", 8, dec, 5, &n), -1);
    assert_int_equal(b32_decode("MZXW6YTBOI", 10, dec, 5, &n), -1);
    assert_int_equal(b32_decode("MZXW6YTBOI", 10, dec, 6, &n), 0);
    assert_int_equal(B64_DECODED_MAX(8), 6);
    assert_int_equal(B32_DECODED_MAX(16), 10);
}

static void test_b16_digit(void **state)
{
    (void)state;
    assert_int_equal(b16_digit('0'), 0);
    assert_int_equal(b16_digit('9'), 9);
    assert_int_equal(b16_digit('a'), 10);
    assert_int_equal(b16_digit('F'), 15);
    assert_int_equal(b16_digit('g'), -1);
    assert_int_equal(b16_digit('\0'), -1);
    assert_int_equal(b16_digit('/'), -1);
}

static void test_random_roundtrip(void **state)
{
    unsigned char raw[67], dec[67];
    char enc[128];
    size_t n;

    (void)state;
    for (size_t len = 0; len <= sizeof(raw); len++) {
        for (size_t i = 0; i < len; i++)
            raw[i] = (unsigned char)(i * 37 + len * 11);
        assert_int_equal(b64_encode(raw, len, enc, sizeof(enc)), 0);
        assert_int_equal(b64_decode(enc, strlen(enc), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(dec, raw, len);
        assert_int_equal(b64url_encode(raw, len, enc, sizeof(enc)), 0);
        assert_int_equal(strlen(enc), B64URL_ENCODED_LEN(len));
        assert_int_equal(b64url_decode(enc, strlen(enc), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(dec, raw, len);
        assert_int_equal(b32_encode(raw, len, enc, sizeof(enc)), 0);
        assert_int_equal(b32_decode(enc, strlen(enc), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(dec, raw, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_vectors),  cmocka_unit_test(test_b32_vectors),
        cmocka_unit_test(test_b32_typed),    cmocka_unit_test(test_b32_invalid),
        cmocka_unit_test(test_b64_invalid),  cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_buffer_sizes), cmocka_unit_test(test_random_roundtrip),
        cmocka_unit_test(test_b16_digit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
