/*
 * PIN hashes (format, verify, pepper rotation, strict parsing of stored
 * values), API keys, database passwords, and the constant-time helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "keyfile.h"
#include "secrets.h"

static void fill_ring(struct keyring *kr, size_t npepper)
{
    memset(kr, 0, sizeof(*kr));
    for (size_t i = 0; i < npepper; i++) {
        kr->pepper[i].id = (uint32_t)i + 1;
        memset(kr->pepper[i].key, 0x10 + (int)i, KEY_LEN);
    }
    kr->npepper = npepper;
    kr->seal[0].id = 1;
    memset(kr->seal[0].key, 0x55, KEY_LEN);
    kr->nseal = 1;
}

static void test_ct(void **state)
{
    char buf[4] = { 1, 2, 3, 4 };

    (void)state;
    assert_true(ct_equal("abcd", "abcd", 4));
    assert_false(ct_equal("abcd", "abce", 4));
    assert_true(ct_equal("abcd", "abce", 3));
    assert_true(ct_equal("x", "y", 0));
    assert_true(ct_streq("secret", "secret"));
    assert_true(ct_streq("", ""));
    assert_false(ct_streq("secret", "secreT"));
    assert_false(ct_streq("secret", "secret2"));
    assert_false(ct_streq("secret", ""));
    assert_false(ct_streq(NULL, "x"));
    assert_false(ct_streq("x", NULL));
    secret_wipe(buf, sizeof(buf));
    assert_memory_equal(buf, "\0\0\0\0", 4);
    secret_wipe(NULL, 10);
}

static void test_pin_syntax(void **state)
{
    (void)state;
    assert_true(pin_syntax_ok("1234"));
    assert_true(pin_syntax_ok("0000"));
    assert_true(pin_syntax_ok("12345678"));
    assert_false(pin_syntax_ok("123"));
    assert_false(pin_syntax_ok("123456789"));
    assert_false(pin_syntax_ok("12a4"));
    assert_false(pin_syntax_ok(" 1234"));
    assert_false(pin_syntax_ok("1234 "));
    assert_false(pin_syntax_ok("+1234"));
    assert_false(pin_syntax_ok(""));
    assert_false(pin_syntax_ok(NULL));
}

static void test_pin_roundtrip(void **state)
{
    struct keyring kr;
    char h1[PIN_HASH_MAX], h2[PIN_HASH_MAX], *err = NULL;

    (void)state;
    fill_ring(&kr, 1);
    assert_int_equal(pin_hash(&kr, "123456", h1, sizeof(h1), &err), 0);
    assert_null(err);
    assert_int_equal(strncmp(h1, "pin1$1$", 7), 0);
    assert_int_equal(strlen(h1), 7 + 22 + 1 + 43);
    assert_int_equal(h1[7 + 22], '$');
    assert_int_equal(pin_verify(&kr, "123456", h1, &err), 1);
    assert_int_equal(pin_verify(&kr, "123457", h1, &err), 0);
    assert_int_equal(pin_verify(&kr, "12345", h1, &err), 0);
    assert_int_equal(pin_verify(&kr, "1234567", h1, &err), 0);
    assert_int_equal(pin_verify(&kr, "abcdef", h1, &err), 0);
    assert_int_equal(pin_verify(&kr, NULL, h1, &err), 0);
    assert_null(err);
    assert_false(pin_needs_rehash(&kr, h1));
    /* fresh salt each time */
    assert_int_equal(pin_hash(&kr, "123456", h2, sizeof(h2), &err), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(pin_verify(&kr, "123456", h2, &err), 1);
    /* another pepper with the same id does not verify */
    memset(kr.pepper[0].key, 0x77, KEY_LEN);
    assert_int_equal(pin_verify(&kr, "123456", h1, &err), 0);
    keyring_wipe(&kr);
}

static void test_pin_hash_errors(void **state)
{
    struct keyring kr;
    char h[PIN_HASH_MAX], *err = NULL;

    (void)state;
    fill_ring(&kr, 1);
    assert_int_equal(pin_hash(&kr, "123", h, sizeof(h), &err), -1);
    assert_non_null(strstr(err, "4 to 8 digits"));
    mfa_free(err);
    assert_int_equal(pin_hash(&kr, "1234", h, PIN_HASH_MAX - 1, &err), -1);
    assert_non_null(err);
    mfa_free(err);
    kr.npepper = 0;
    assert_int_equal(pin_hash(&kr, "1234", h, sizeof(h), &err), -1);
    assert_non_null(strstr(err, "pepper"));
    mfa_free(err);
    assert_int_equal(pin_hash(&kr, "1234", h, sizeof(h), NULL), -1);
}

static void test_pin_rotation(void **state)
{
    struct keyring kr;
    char old[PIN_HASH_MAX], fresh[PIN_HASH_MAX], *err = NULL;

    (void)state;
    fill_ring(&kr, 1);
    assert_int_equal(pin_hash(&kr, "0042", old, sizeof(old), &err), 0);
    fill_ring(&kr, 2); /* rotated: pepper 2 is current, 1 kept */
    assert_int_equal(pin_verify(&kr, "0042", old, &err), 1);
    assert_true(pin_needs_rehash(&kr, old));
    assert_int_equal(pin_hash(&kr, "0042", fresh, sizeof(fresh), &err), 0);
    assert_int_equal(strncmp(fresh, "pin1$2$", 7), 0);
    assert_false(pin_needs_rehash(&kr, fresh));
    assert_int_equal(pin_verify(&kr, "0042", fresh, &err), 1);
    /* pepper 1 removed: the old hash names an unknown pepper */
    kr.pepper[0] = kr.pepper[1];
    kr.npepper = 1;
    assert_int_equal(pin_verify(&kr, "0042", old, &err), -1);
    assert_non_null(strstr(err, "pepper id 1"));
    mfa_free(err);
    keyring_wipe(&kr);
}

static void test_pin_malformed(void **state)
{
    struct keyring kr;
    char good[PIN_HASH_MAX], bad[PIN_HASH_MAX + 8], *err = NULL;
    const char *salt, *mac;
    static const char *junk[] = {
        "",
        "pin1$",
        "pin1$1$",
        "pin1$1$$",
        "pin2$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$01$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$-1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$2147483649$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$99999999999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAB$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",
        "PIN1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };

    (void)state;
    fill_ring(&kr, 1);
    assert_int_equal(pin_verify(&kr, "1234",
                                "pin1$1$AAAAAAAAAAAAAAAAAAAAAA$"
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                &err),
                     0); /* well-formed, wrong MAC */
    assert_null(err);
    for (size_t i = 0; i < MFA_ARRAY_LEN(junk); i++) {
        assert_int_equal(pin_verify(&kr, "1234", junk[i], &err), -1);
        assert_non_null(err);
        mfa_free(err);
        assert_true(pin_needs_rehash(&kr, junk[i]));
    }
    assert_int_equal(pin_verify(&kr, "1234", NULL, NULL), -1);

    /* truncating a real hash at every length never verifies nor crashes */
    assert_int_equal(pin_hash(&kr, "1234", good, sizeof(good), &err), 0);
    for (size_t n = 0; n < strlen(good); n++) {
        memcpy(bad, good, n);
        bad[n] = '\0';
        assert_int_equal(pin_verify(&kr, "1234", bad, NULL), -1);
    }
    /* flipping the MAC or the salt is a non-match, not an error */
    salt = strchr(good + 5, '$') + 1;
    mac = strchr(salt, '$') + 1;
    strcpy(bad, good);
    bad[mac - good] = bad[mac - good] == 'A' ? 'B' : 'A';
    assert_int_equal(pin_verify(&kr, "1234", bad, NULL), 0);
    strcpy(bad, good);
    bad[salt - good] = bad[salt - good] == 'A' ? 'B' : 'A';
    assert_int_equal(pin_verify(&kr, "1234", bad, NULL), 0);
    keyring_wipe(&kr);
}

static void test_apikey(void **state)
{
    char k1[APIKEY_MAX], k2[APIKEY_MAX], h[65];

    (void)state;
    assert_int_equal(apikey_new(k1, sizeof(k1)), 0);
    assert_int_equal(apikey_new(k2, sizeof(k2)), 0);
    assert_int_equal(strlen(k1), APIKEY_MAX - 1);
    assert_int_equal(strncmp(k1, "mfa_", 4), 0);
    assert_int_equal(strspn(k1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_"),
                     43);
    assert_string_not_equal(k1, k2);
    assert_int_equal(apikey_new(k1, APIKEY_MAX - 1), -1);
    assert_string_equal(k1, "");

    /* SHA-256 test vectors (FIPS 180-2) */
    apikey_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    apikey_hash("", h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    apikey_hash(k2, h);
    assert_int_equal(strlen(h), 64);
    assert_int_equal(strspn(h, "0123456789abcdef"), 64);
}

/*
 * db_password() computed apart from the library: HMAC-SHA-256 of
 * "mfa-appliance db password" NUL <role> under <key>, base64url unpadded.
 */
static void expected_db_password(const unsigned char *key, const char *role, char out[64])
{
    static const char label[] = "mfa-appliance db password";
    unsigned char msg[sizeof(label) + 64], mac[32], b64[64];
    unsigned int maclen = 0;
    int n;

    memcpy(msg, label, sizeof(label));
    memcpy(msg + sizeof(label), role, strlen(role));
    assert_non_null(
        HMAC(EVP_sha256(), key, KEY_LEN, msg, sizeof(label) + strlen(role), mac, &maclen));
    assert_int_equal(maclen, 32);
    n = EVP_EncodeBlock(b64, mac, 32);
    assert_int_equal(n, 44);
    for (int i = 0; i < n; i++)
        out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
}

static void test_db_password(void **state)
{
    struct keyring kr;
    char a[DB_PASSWORD_MAX], b[DB_PASSWORD_MAX], want[64], *err = NULL;
    unsigned char key1[KEY_LEN];

    (void)state;
    fill_ring(&kr, 1);
    memcpy(key1, kr.pepper[0].key, KEY_LEN);
    assert_int_equal(db_password(&kr, "mfa", a, sizeof(a), &err), 0);
    assert_null(err);
    /* 32 bytes of base64url, unpadded */
    assert_int_equal(strlen(a), 43);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    expected_db_password(key1, "mfa", want);
    assert_string_equal(a, want);

    /* the same keyring and role: the same password, on every member */
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), &err), 0);
    assert_string_equal(a, b);
    /* another role, another password */
    assert_int_equal(db_password(&kr, "mfa_replication", b, sizeof(b), &err), 0);
    assert_string_not_equal(a, b);
    expected_db_password(key1, "mfa_replication", want);
    assert_string_equal(b, want);

    /* a newer pepper rotated in: the oldest still derives it, in any order */
    fill_ring(&kr, 3);
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), &err), 0);
    assert_string_equal(a, b);
    kr.pepper[0] = kr.pepper[2];
    memcpy(kr.pepper[2].key, key1, KEY_LEN);
    kr.pepper[2].id = 1;
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), &err), 0);
    assert_string_equal(a, b);
    /* with pepper 1 gone, the next oldest (2) is used: a different password */
    kr.npepper = 2;
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), &err), 0);
    assert_string_not_equal(a, b);
    expected_db_password(kr.pepper[1].key, "mfa", want);
    assert_int_equal(kr.pepper[1].id, 2);
    assert_string_equal(b, want);

    /* a buffer one short fails */
    fill_ring(&kr, 1);
    assert_int_equal(db_password(&kr, "mfa", b, DB_PASSWORD_MAX - 1, &err), -1);
    assert_non_null(err);
    mfa_free(err);
    /* no pepper key fails */
    kr.npepper = 0;
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), &err), -1);
    assert_non_null(strstr(err, "pepper"));
    mfa_free(err);
    assert_int_equal(db_password(&kr, "mfa", b, sizeof(b), NULL), -1);
    keyring_wipe(&kr);
    secret_wipe(key1, sizeof(key1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct),
        cmocka_unit_test(test_pin_syntax),
        cmocka_unit_test(test_pin_roundtrip),
        cmocka_unit_test(test_pin_hash_errors),
        cmocka_unit_test(test_pin_rotation),
        cmocka_unit_test(test_pin_malformed),
        cmocka_unit_test(test_apikey),
        cmocka_unit_test(test_db_password),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
