/*
 * PIN hashes, API keys, constant-time comparison and wiping; see secrets.h.
 *
 * The stored PIN form is parsed strictly, field by field, with the length of
 * each field known before it is decoded: "pin1$", a key id (keyring_id_parse),
 * "$", exactly 22 base64url characters (16 bytes of salt), "$", exactly 43
 * (32 bytes of MAC), end of string. Anything else is malformed.
 *
 * Invariant: MACs, salts and PIN copies on the stack are wiped before return.
 */
#include "secrets.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "b64.h"
#include "errmsg.h"
#include "ids.h"
#include "keyfile.h"

#define PIN_PREFIX     "pin1$"
#define PIN_SALT_LEN   16
#define PIN_MAC_LEN    32
#define PIN_SALT_B64   22 /* B64URL_ENCODED_LEN(16) */
#define PIN_MAC_B64    43 /* B64URL_ENCODED_LEN(32) */
#define PIN_DIGITS_MAX 8
#define APIKEY_PREFIX  "mfa_"
#define APIKEY_BYTES   32

bool ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

bool ct_streq(const char *a, const char *b)
{
    size_t n;

    if (a == NULL || b == NULL)
        return false;
    n = strlen(a);
    if (n != strlen(b))
        return false;
    return CRYPTO_memcmp(a, b, n) == 0;
}

void secret_wipe(void *p, size_t n)
{
    if (p != NULL)
        OPENSSL_cleanse(p, n);
}

bool pin_syntax_ok(const char *pin)
{
    size_t n = 0;

    if (pin == NULL)
        return false;
    while (n <= PIN_DIGITS_MAX && pin[n] >= '0' && pin[n] <= '9')
        n++;
    return pin[n] == '\0' && n >= 4 && n <= PIN_DIGITS_MAX;
}

/* mac = HMAC-SHA-256(pepper, salt || pin) */
static int pin_mac(const unsigned char *pepper, const unsigned char salt[PIN_SALT_LEN],
                   const char *pin, unsigned char mac[PIN_MAC_LEN])
{
    unsigned char data[PIN_SALT_LEN + PIN_DIGITS_MAX];
    size_t pinlen = strlen(pin); /* pin_syntax_ok: <= 8 */
    unsigned int maclen = 0;
    int rc = 0;

    memcpy(data, salt, PIN_SALT_LEN);
    memcpy(data + PIN_SALT_LEN, pin, pinlen);
    if (HMAC(EVP_sha256(), pepper, KEY_LEN, data, PIN_SALT_LEN + pinlen, mac, &maclen) == NULL ||
        maclen != PIN_MAC_LEN)
        rc = -1;
    OPENSSL_cleanse(data, sizeof(data));
    return rc;
}

int pin_hash(const struct keyring *kr, const char *pin, char *out, size_t outsz, char **err)
{
    const struct key_entry *pepper = keyring_current(kr, KEY_PEPPER);
    unsigned char salt[PIN_SALT_LEN], mac[PIN_MAC_LEN];
    char salt64[PIN_SALT_B64 + 1], mac64[PIN_MAC_B64 + 1];
    int rc = -1, w;

    if (outsz > 0)
        out[0] = '\0';
    if (!pin_syntax_ok(pin))
        return err_set(err, "a PIN must be 4 to 8 digits");
    if (pepper == NULL)
        return err_set(err, "the key file has no pepper key");
    if (outsz < PIN_HASH_MAX)
        return err_set(err, "PIN hash buffer too small");
    if (rand_bytes(salt, sizeof(salt)) < 0) {
        err_set(err, "random generator failed");
        goto done;
    }
    if (pin_mac(pepper->key, salt, pin, mac) < 0) {
        err_set(err, "HMAC-SHA-256 failed");
        goto done;
    }
    if (b64url_encode(salt, sizeof(salt), salt64, sizeof(salt64)) < 0 ||
        b64url_encode(mac, sizeof(mac), mac64, sizeof(mac64)) < 0) {
        err_set(err, "PIN hash encoding failed");
        goto done;
    }
    w = snprintf(out, outsz, PIN_PREFIX "%u$%s$%s", (unsigned)pepper->id, salt64, mac64);
    if (w < 0 || (size_t)w >= outsz) {
        out[0] = '\0';
        err_set(err, "PIN hash buffer too small");
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(mac64, sizeof(mac64));
    return rc;
}

struct pin_stored {
    uint32_t pepper_id;
    unsigned char salt[PIN_SALT_LEN];
    unsigned char mac[PIN_MAC_LEN];
};

/* Strict parser of "pin1$<id>$<salt>$<mac>"; 0 or -1. */
static int pin_parse(const char *s, struct pin_stored *ps)
{
    const char *id, *salt, *mac;
    size_t n;

    if (s == NULL || strncmp(s, PIN_PREFIX, strlen(PIN_PREFIX)) != 0)
        return -1;
    id = s + strlen(PIN_PREFIX);
    salt = strchr(id, '$');
    if (salt == NULL || keyring_id_parse(id, (size_t)(salt - id), &ps->pepper_id) < 0)
        return -1;
    salt++;
    if (strnlen(salt, PIN_SALT_B64 + 1) != PIN_SALT_B64 + 1 || salt[PIN_SALT_B64] != '$')
        return -1;
    if (b64url_decode(salt, PIN_SALT_B64, ps->salt, sizeof(ps->salt), &n) < 0 || n != PIN_SALT_LEN)
        return -1;
    mac = salt + PIN_SALT_B64 + 1;
    if (strnlen(mac, PIN_MAC_B64 + 1) != PIN_MAC_B64)
        return -1;
    if (b64url_decode(mac, PIN_MAC_B64, ps->mac, sizeof(ps->mac), &n) < 0 || n != PIN_MAC_LEN)
        return -1;
    return 0;
}

int pin_verify(const struct keyring *kr, const char *pin, const char *stored, char **err)
{
    const struct key_entry *pepper;
    struct pin_stored ps;
    unsigned char mac[PIN_MAC_LEN];
    int rc;

    if (pin_parse(stored, &ps) < 0)
        return err_set(err, "stored PIN hash is malformed");
    pepper = keyring_find(kr, KEY_PEPPER, ps.pepper_id);
    if (pepper == NULL)
        return err_set(err, "stored PIN hash uses pepper id %u, which the key file lacks",
                       (unsigned)ps.pepper_id);
    if (!pin_syntax_ok(pin))
        return 0;
    if (pin_mac(pepper->key, ps.salt, pin, mac) < 0)
        return err_set(err, "HMAC-SHA-256 failed");
    rc = CRYPTO_memcmp(mac, ps.mac, PIN_MAC_LEN) == 0 ? 1 : 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(&ps, sizeof(ps));
    return rc;
}

bool pin_needs_rehash(const struct keyring *kr, const char *stored)
{
    const struct key_entry *cur = keyring_current(kr, KEY_PEPPER);
    struct pin_stored ps;
    bool rehash;

    if (pin_parse(stored, &ps) < 0)
        return true;
    rehash = cur == NULL || ps.pepper_id != cur->id;
    OPENSSL_cleanse(&ps, sizeof(ps));
    return rehash;
}

int apikey_new(char *out, size_t outsz)
{
    unsigned char raw[APIKEY_BYTES];
    const size_t plen = strlen(APIKEY_PREFIX);
    int rc = -1;

    if (outsz > 0)
        out[0] = '\0';
    if (outsz < APIKEY_MAX || rand_bytes(raw, sizeof(raw)) < 0)
        return -1;
    memcpy(out, APIKEY_PREFIX, plen);
    if (b64url_encode(raw, sizeof(raw), out + plen, outsz - plen) == 0)
        rc = 0;
    else
        out[0] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

void apikey_hash(const char *key, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];

    out[0] = '\0';
    if (key == NULL || SHA256((const unsigned char *)key, strlen(key), md) == NULL)
        return;
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[64] = '\0';
}

void secret_wipe_str(const char *s)
{
    /* The string is ours to clear though the holder's type says const. */
    if (s)
        OPENSSL_cleanse((void *)(uintptr_t)s, strlen(s));
}

int db_password(const struct keyring *kr, const char *role, char *out, size_t outsz, char **err)
{
    static const char label[] = "mfa-appliance db password";
    unsigned char msg[sizeof(label) + 64], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t rlen = strlen(role);
    const struct key_entry *oldest = NULL;

    for (size_t i = 0; i < kr->npepper; i++)
        if (!oldest || kr->pepper[i].id < oldest->id)
            oldest = &kr->pepper[i];
    if (!oldest)
        return err_set(err, "the key file has no pepper key");
    if (rlen == 0 || rlen > 63)
        return err_set(err, "database role name must be 1-63 characters");
    memcpy(msg, label, sizeof(label)); /* with its NUL */
    memcpy(msg + sizeof(label), role, rlen);
    if (HMAC(EVP_sha256(), oldest->key, KEY_LEN, msg, sizeof(label) + rlen, mac, &maclen) == NULL) {
        return err_set(err, "HMAC-SHA-256 failed");
    }
    int rc = b64url_encode(mac, maclen, out, outsz);
    secret_wipe(mac, sizeof(mac));
    if (rc < 0)
        return err_set(err, "password buffer too small");
    return 0;
}
