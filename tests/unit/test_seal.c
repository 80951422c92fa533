/*
 * Seed sealing: roundtrip, every flipped byte or character detected, the
 * binding to the caller's aad and to the key id, key rotation, and strict
 * rejection of malformed sealed values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "keyfile.h"
#include "seal.h"

static const unsigned char seed[] = { '1', '2', '3', '4', '5', '6', '7', '8', '9', '0',
                                      '1', '2', '3', '4', '5', '6', '7', '8', '9', '0' };

static void ring(struct keyring *kr, size_t nseal)
{
    memset(kr, 0, sizeof(*kr));
    kr->pepper[0].id = 1;
    memset(kr->pepper[0].key, 0x11, KEY_LEN);
    kr->npepper = 1;
    for (size_t i = 0; i < nseal; i++) {
        kr->seal[i].id = (uint32_t)i + 1;
        memset(kr->seal[i].key, 0xa0 + (int)i, KEY_LEN);
    }
    kr->nseal = nseal;
}

static void test_roundtrip(void **state)
{
    struct keyring kr;
    unsigned char out[64];
    size_t n = 0;
    char *s1 = NULL, *s2 = NULL, *err = NULL;

    (void)state;
    ring(&kr, 1);
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "TOTP0001", &s1, &err), 0);
    assert_null(err);
    assert_int_equal(strncmp(s1, "s1$1$", 5), 0);
    assert_int_equal(strlen(s1), 5 + B64URL_ENCODED_LEN(12 + sizeof(seed) + 16));
    assert_int_equal(seal_decrypt(&kr, s1, "TOTP0001", out, sizeof(out), &n, &err), 0);
    assert_null(err);
    assert_int_equal(n, sizeof(seed));
    assert_memory_equal(out, seed, n);
    /* a fresh nonce each time */
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "TOTP0001", &s2, &err), 0);
    assert_string_not_equal(s1, s2);
    /* exact-size buffer works, one byte less does not */
    assert_int_equal(seal_decrypt(&kr, s2, "TOTP0001", out, sizeof(seed), &n, &err), 0);
    assert_int_equal(seal_decrypt(&kr, s2, "TOTP0001", out, sizeof(seed) - 1, &n, &err), -1);
    assert_non_null(strstr(err, "room"));
    mfa_free(err);
    /* NULL aad is the empty string */
    mfa_free(s2);
    assert_int_equal(seal_encrypt(&kr, seed, 1, NULL, &s2, &err), 0);
    assert_int_equal(seal_decrypt(&kr, s2, "", out, sizeof(out), &n, &err), 0);
    assert_int_equal(n, 1);
    free(s1);
    free(s2);
    keyring_wipe(&kr);
}

static void test_every_flip_detected(void **state)
{
    struct keyring kr;
    unsigned char out[64];
    size_t n;
    char *s = NULL, *bad;

    (void)state;
    ring(&kr, 1);
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "T1", &s, NULL), 0);
    bad = strdup(s);
    assert_non_null(bad);
    for (size_t i = 0; s[i] != '\0'; i++) {
        static const char alt[] = "AB";

        for (int bit = 0; bit < 8; bit++) {
            strcpy(bad, s);
            bad[i] = (char)(bad[i] ^ (1 << bit));
            if (bad[i] == '\0')
                continue;
            n = 99;
            assert_int_equal(seal_decrypt(&kr, bad, "T1", out, sizeof(out), &n, NULL), -1);
            assert_int_equal(n, 0);
        }
        strcpy(bad, s);
        bad[i] = bad[i] == alt[0] ? alt[1] : alt[0];
        assert_int_equal(seal_decrypt(&kr, bad, "T1", out, sizeof(out), &n, NULL), -1);
    }
    /* every byte of the decoded body (nonce, ciphertext, tag) flipped */
    {
        unsigned char raw[64];
        size_t rawlen;
        char enc[128];

        assert_int_equal(b64url_decode(s + 5, strlen(s + 5), raw, sizeof(raw), &rawlen), 0);
        for (size_t i = 0; i < rawlen; i++) {
            raw[i] ^= 0x01;
            assert_int_equal(b64url_encode(raw, rawlen, enc, sizeof(enc)), 0);
            snprintf(bad, strlen(s) + 1, "s1$1$%s", enc);
            assert_int_equal(seal_decrypt(&kr, bad, "T1", out, sizeof(out), &n, NULL), -1);
            raw[i] ^= 0x01;
        }
    }
    free(bad);
    free(s);
    keyring_wipe(&kr);
}

static void test_wrong_aad(void **state)
{
    struct keyring kr;
    unsigned char out[64];
    size_t n;
    char *s = NULL, *err = NULL;

    (void)state;
    ring(&kr, 1);
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "TOTP0001", &s, NULL), 0);
    assert_int_equal(seal_decrypt(&kr, s, "TOTP0002", out, sizeof(out), &n, &err), -1);
    assert_non_null(strstr(err, "does not open"));
    mfa_free(err);
    assert_int_equal(seal_decrypt(&kr, s, "TOTP000", out, sizeof(out), &n, NULL), -1);
    assert_int_equal(seal_decrypt(&kr, s, "", out, sizeof(out), &n, NULL), -1);
    assert_int_equal(seal_decrypt(&kr, s, NULL, out, sizeof(out), &n, NULL), -1);
    /* another key with the same id */
    memset(kr.seal[0].key, 0x01, KEY_LEN);
    assert_int_equal(seal_decrypt(&kr, s, "TOTP0001", out, sizeof(out), &n, NULL), -1);
    free(s);
    keyring_wipe(&kr);
}

static void test_rotation(void **state)
{
    struct keyring kr;
    unsigned char out[64];
    size_t n;
    char *old = NULL, *fresh = NULL, *relabel, *err = NULL;

    (void)state;
    ring(&kr, 1);
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "T", &old, NULL), 0);
    ring(&kr, 2); /* rotated: key 2 current, key 1 kept */
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "T", &fresh, NULL), 0);
    assert_int_equal(strncmp(fresh, "s1$2$", 5), 0);
    assert_int_equal(seal_decrypt(&kr, old, "T", out, sizeof(out), &n, NULL), 0);
    assert_memory_equal(out, seed, sizeof(seed));
    assert_int_equal(seal_decrypt(&kr, fresh, "T", out, sizeof(out), &n, NULL), 0);
    /* the key id is authenticated: relabelling key 1 as 2 does not open */
    relabel = strdup(old);
    assert_non_null(relabel);
    relabel[3] = '2';
    assert_int_equal(seal_decrypt(&kr, relabel, "T", out, sizeof(out), &n, NULL), -1);
    free(relabel);
    /* key 1 dropped from the key file: unknown key id */
    kr.seal[0] = kr.seal[1];
    kr.nseal = 1;
    assert_int_equal(seal_decrypt(&kr, old, "T", out, sizeof(out), &n, &err), -1);
    assert_non_null(strstr(err, "key id 1"));
    free(err);
    free(old);
    free(fresh);
    keyring_wipe(&kr);
}

static void test_malformed(void **state)
{
    struct keyring kr;
    unsigned char out[64];
    size_t n;
    char *s = NULL, *err = NULL, trunc[256];
    static const char *junk[] = {
        "",
        "s1",
        "s1$",
        "s1$1",
        "s1$1$",
        "s2$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$01$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$x$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$99999999999$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 38: under nonce + tag + 1 */
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+A",
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA AAAA",
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",
        "S1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "s1$1$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* well-formed, fails the tag */
    };

    (void)state;
    ring(&kr, 1);
    for (size_t i = 0; i < MFA_ARRAY_LEN(junk); i++) {
        n = 99;
        assert_int_equal(seal_decrypt(&kr, junk[i], "T", out, sizeof(out), &n, &err), -1);
        assert_non_null(err);
        assert_int_equal(n, 0);
        mfa_free(err);
    }
    assert_int_equal(seal_decrypt(&kr, NULL, "T", out, sizeof(out), &n, NULL), -1);
    /* a huge body is refused before decoding */
    {
        size_t big = 3 * SEAL_PLAIN_MAX;
        char *huge = malloc(big + 6);

        assert_non_null(huge);
        memcpy(huge, "s1$1$", 5);
        memset(huge + 5, 'A', big);
        huge[5 + big] = '\0';
        assert_int_equal(seal_decrypt(&kr, huge, "T", out, sizeof(out), &n, &err), -1);
        assert_non_null(strstr(err, "length"));
        mfa_free(err);
        free(huge);
    }
    /* every truncation of a real value */
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "T", &s, NULL), 0);
    for (size_t len = 0; len < strlen(s); len++) {
        memcpy(trunc, s, len);
        trunc[len] = '\0';
        assert_int_equal(seal_decrypt(&kr, trunc, "T", out, sizeof(out), &n, NULL), -1);
    }
    free(s);

    /* sealing limits and missing key */
    assert_int_equal(seal_encrypt(&kr, seed, 0, "T", &s, &err), -1);
    assert_null(s);
    mfa_free(err);
    assert_int_equal(seal_encrypt(&kr, seed, SEAL_PLAIN_MAX + 1, "T", &s, &err), -1);
    mfa_free(err);
    kr.nseal = 0;
    assert_int_equal(seal_encrypt(&kr, seed, sizeof(seed), "T", &s, &err), -1);
    assert_non_null(strstr(err, "seal key"));
    mfa_free(err);
    keyring_wipe(&kr);
}

static void test_max_size(void **state)
{
    struct keyring kr;
    unsigned char *big = malloc(SEAL_PLAIN_MAX), *out = malloc(SEAL_PLAIN_MAX);
    size_t n = 0;
    char *s = NULL;

    (void)state;
    assert_non_null(big);
    assert_non_null(out);
    ring(&kr, 1);
    for (size_t i = 0; i < SEAL_PLAIN_MAX; i++)
        big[i] = (unsigned char)i;
    assert_int_equal(seal_encrypt(&kr, big, SEAL_PLAIN_MAX, "T", &s, NULL), 0);
    assert_int_equal(seal_decrypt(&kr, s, "T", out, SEAL_PLAIN_MAX, &n, NULL), 0);
    assert_int_equal(n, SEAL_PLAIN_MAX);
    assert_memory_equal(out, big, n);
    free(s);
    free(big);
    free(out);
    keyring_wipe(&kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_every_flip_detected),
        cmocka_unit_test(test_wrong_aad), cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_max_size),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
