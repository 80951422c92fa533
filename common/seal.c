/*
 * AES-256-GCM sealing of OTP seeds; see seal.h.
 *
 * A nonce is 12 random bytes per seal (NIST SP 800-38D §8.2.2); with the
 * handful of seals per token this stays far below the 2^32 seals per key the
 * random-nonce construction allows. The parser checks the prefix, the key id
 * and the exact base64url length of the body before decoding it into a buffer
 * sized from that length; the tag is verified before any plaintext is handed
 * back, and the output is wiped on every failure.
 */
#include "seal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "b64.h"
#include "errmsg.h"
#include "ids.h"
#include "keyfile.h"

#define SEAL_PREFIX   "s1$"
#define SEAL_OVERHEAD (SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define SEAL_HDR_MAX  (3 + 10 + 1 + 1) /* "s1$" id "$" NUL */

/* "s1$<id>$" into hdr; the AAD is hdr || aad. */
static void seal_header(uint32_t id, char hdr[SEAL_HDR_MAX])
{
    snprintf(hdr, SEAL_HDR_MAX, SEAL_PREFIX "%u$", (unsigned)id);
}

/*
 * One AES-256-GCM pass. enc: in = plaintext, tag written; !enc: in =
 * ciphertext, tag checked. Returns 0, or -1 (including a tag mismatch).
 */
static int gcm(int enc, const unsigned char key[KEY_LEN], const unsigned char *nonce,
               const char *hdr, const char *aad, const unsigned char *in, size_t len,
               unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t aadlen = aad ? strlen(aad) : 0;
    int outl = 0, rc = -1;

    if (ctx == NULL || aadlen > INT32_MAX)
        goto done;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
        goto done;
    /* Authenticate the key id and the caller's binding (seal.h). */
    if (EVP_CipherUpdate(ctx, NULL, &outl, (const unsigned char *)hdr, (int)strlen(hdr)) != 1 ||
        (aadlen > 0 &&
         EVP_CipherUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)aadlen) != 1))
        goto done;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1)
        goto done;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto done;
    if (EVP_CipherFinal_ex(ctx, out + outl, &outl) != 1)
        goto done;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) != 1)
        goto done;
    rc = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int seal_encrypt(const struct keyring *kr, const unsigned char *plain, size_t len, const char *aad,
                 char **out, char **err)
{
    const struct key_entry *key = keyring_current(kr, KEY_SEAL);
    unsigned char *raw = NULL;
    size_t rawlen = SEAL_OVERHEAD + len, textsz, hlen;
    char hdr[SEAL_HDR_MAX];
    int rc = -1;

    *out = NULL;
    if (key == NULL)
        return err_set(err, "the key file has no seal key");
    if (plain == NULL || len == 0 || len > SEAL_PLAIN_MAX)
        return err_set(err, "cannot seal %zu bytes (1 to %d allowed)", len, SEAL_PLAIN_MAX);
    seal_header(key->id, hdr);
    hlen = strlen(hdr);
    textsz = hlen + B64URL_ENCODED_LEN(rawlen) + 1;
    raw = malloc(rawlen);
    *out = malloc(textsz);
    if (raw == NULL || *out == NULL) {
        err_set(err, "out of memory");
        goto done;
    }
    if (rand_bytes(raw, SEAL_NONCE_LEN) < 0) {
        err_set(err, "random generator failed");
        goto done;
    }
    if (gcm(1, key->key, raw, hdr, aad, plain, len, raw + SEAL_NONCE_LEN,
            raw + SEAL_NONCE_LEN + len) < 0) {
        err_set(err, "AES-256-GCM encryption failed");
        goto done;
    }
    memcpy(*out, hdr, hlen);
    if (b64url_encode(raw, rawlen, *out + hlen, textsz - hlen) < 0) {
        err_set(err, "sealed value encoding failed");
        goto done;
    }
    rc = 0;
done:
    if (raw != NULL)
        OPENSSL_cleanse(raw, rawlen);
    free(raw);
    if (rc < 0)
        mfa_free(*out);
    return rc;
}

int seal_decrypt(const struct keyring *kr, const char *sealed, const char *aad,
                 unsigned char *plain, size_t plainsz, size_t *plainlen, char **err)
{
    const struct key_entry *key;
    const char *id, *body;
    unsigned char *raw = NULL;
    size_t bodylen, rawmax, rawlen = 0, len;
    char hdr[SEAL_HDR_MAX];
    uint32_t key_id;
    int rc = -1;

    *plainlen = 0;
    if (sealed == NULL || strncmp(sealed, SEAL_PREFIX, strlen(SEAL_PREFIX)) != 0)
        return err_set(err, "sealed value is malformed (no s1$ prefix)");
    id = sealed + strlen(SEAL_PREFIX);
    body = strchr(id, '$');
    if (body == NULL || keyring_id_parse(id, (size_t)(body - id), &key_id) < 0)
        return err_set(err, "sealed value is malformed (bad key id)");
    body++;
    bodylen = strnlen(body, B64URL_ENCODED_LEN(SEAL_OVERHEAD + SEAL_PLAIN_MAX) + 1);
    if (bodylen < B64URL_ENCODED_LEN(SEAL_OVERHEAD + 1) ||
        bodylen > B64URL_ENCODED_LEN(SEAL_OVERHEAD + SEAL_PLAIN_MAX))
        return err_set(err, "sealed value is malformed (bad length)");
    key = keyring_find(kr, KEY_SEAL, key_id);
    if (key == NULL)
        return err_set(err, "sealed with seal key id %u, which the key file lacks",
                       (unsigned)key_id);
    rawmax = B64_DECODED_MAX(bodylen);
    raw = malloc(rawmax);
    if (raw == NULL)
        return err_set(err, "out of memory");
    if (b64url_decode(body, bodylen, raw, rawmax, &rawlen) < 0 || rawlen <= SEAL_OVERHEAD) {
        err_set(err, "sealed value is malformed (bad base64url)");
        goto done;
    }
    len = rawlen - SEAL_OVERHEAD;
    if (len > plainsz) {
        err_set(err, "sealed value holds %zu bytes, buffer has room for %zu", len, plainsz);
        goto done;
    }
    seal_header(key_id, hdr);
    if (gcm(0, key->key, raw, hdr, aad, raw + SEAL_NONCE_LEN, len, plain,
            raw + SEAL_NONCE_LEN + len) < 0) {
        OPENSSL_cleanse(plain, len);
        err_set(err, "sealed value does not open: tampered, other key, or bound to "
                     "another record");
        goto done;
    }
    *plainlen = len;
    rc = 0;
done:
    OPENSSL_cleanse(raw, rawmax);
    free(raw);
    return rc;
}
