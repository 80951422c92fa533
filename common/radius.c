/*
 * RADIUS packets; see radius.h.
 *
 * Parsing works on views: radius_parse() never copies or allocates, and
 * every attribute it returns lies within the packet's Length, which lies
 * within the datagram. The signing helpers hash the packet in pieces (the
 * header, the authenticator to use, the attributes around a zeroed
 * Message-Authenticator) rather than patching a copy, so a parsed packet is
 * never modified either.
 *
 * MD5 and HMAC are fetched from OpenSSL's default provider once per process
 * (pthread_once) and kept for its lifetime; each computation makes its own
 * context, so every function here may run on any thread. Secrets are 1 to
 * RADIUS_SECRET_MAX bytes: with any other length the checks fail and the
 * builders and the password functions return -1. Intermediate MD5 outputs
 * of the password hiding are wiped before return.
 */
#include "radius.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define MD5_LEN     16
#define MA_ATTR_LEN (2 + RADIUS_AUTH_LEN) /* RFC 3579 §3.2: Length = 18 */
#define PW_BLOCK    16                    /* RFC 2865 §5.2 */

/* One contiguous piece of a hashed message. */
struct span {
    const void *p;
    size_t n;
};

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_md;
static EVP_MAC *hmac_mac;

static void fetch_algorithms(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static bool algorithms_ready(void)
{
    return pthread_once(&fetch_once, fetch_algorithms) == 0 && md5_md && hmac_mac;
}

static bool secret_ok(const uint8_t *secret, size_t len)
{
    return secret != NULL && len >= 1 && len <= RADIUS_SECRET_MAX;
}

/* MD5 of the <n> spans <s> into <out>, with the context <ctx>. Returns 0 or -1. */
static int md5_spans(EVP_MD_CTX *ctx, const struct span *s, size_t n, uint8_t out[MD5_LEN])
{
    unsigned int outlen = 0;

    if (EVP_DigestInit_ex2(ctx, md5_md, NULL) != 1)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i].n > 0 && EVP_DigestUpdate(ctx, s[i].p, s[i].n) != 1)
            return -1;
    if (EVP_DigestFinal_ex(ctx, out, &outlen) != 1 || outlen != MD5_LEN)
        return -1;
    return 0;
}

/* MD5 of the spans, with a context of its own. Returns 0 or -1. */
static int md5(const struct span *s, size_t n, uint8_t out[MD5_LEN])
{
    EVP_MD_CTX *ctx;
    int rc;

    if (!algorithms_ready() || (ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    rc = md5_spans(ctx, s, n, out);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* HMAC-MD5 under <key> of the spans into <out>. Returns 0 or -1. */
static int hmac_md5(const uint8_t *key, size_t keylen, const struct span *s, size_t n,
                    uint8_t out[MD5_LEN])
{
    char digest[] = "MD5";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx;
    size_t outlen = 0;
    int rc = -1;

    if (!algorithms_ready() || (ctx = EVP_MAC_CTX_new(hmac_mac)) == NULL)
        return -1;
    if (EVP_MAC_init(ctx, key, keylen, params) != 1)
        goto done;
    for (size_t i = 0; i < n; i++)
        if (s[i].n > 0 && EVP_MAC_update(ctx, s[i].p, s[i].n) != 1)
            goto done;
    if (EVP_MAC_final(ctx, out, &outlen, MD5_LEN) == 1 && outlen == MD5_LEN)
        rc = 0;
done:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

int radius_parse(const uint8_t *data, size_t len, struct radius_packet *p, const char **why)
{
    const char *reason;
    size_t length, off;

    p->nattrs = 0;
    p->msg_auth = -1;
    /* RFC 2865 §3: the minimum length is 20 */
    if (data == NULL || len < RADIUS_HDR_LEN) {
        reason = "shorter than the 20-byte RADIUS header";
        goto fail;
    }
    length = (size_t)data[2] << 8 | data[3];
    /* RFC 2865 §3: Length is 20 to 4096; a packet shorter than its Length is
     * discarded, octets past it are padding and ignored. */
    if (length < RADIUS_HDR_LEN) {
        reason = "Length field below 20";
        goto fail;
    }
    if (length > RADIUS_MAX_LEN) {
        reason = "Length field above 4096";
        goto fail;
    }
    if (length > len) {
        reason = "Length field beyond the datagram";
        goto fail;
    }
    for (off = RADIUS_HDR_LEN; off < length;) {
        uint8_t type, alen;

        /* RFC 2865 §5: Type, Length (at least 2: it counts Type and itself), Value */
        if (length - off < 2) {
            reason = "attribute header cut short by the packet's Length";
            goto fail;
        }
        type = data[off];
        alen = data[off + 1];
        if (alen < 2) {
            reason = "attribute Length below 2";
            goto fail;
        }
        if (alen > length - off) {
            reason = "attribute runs past the packet's Length";
            goto fail;
        }
        if (p->nattrs == RADIUS_MAX_ATTRS) {
            reason = "more than 256 attributes";
            goto fail;
        }
        if (type == RADIUS_MESSAGE_AUTHENTICATOR) {
            /* RFC 3579 §3.2: Length 18, and at most one in a packet */
            if (alen != MA_ATTR_LEN) {
                reason = "Message-Authenticator is not 16 bytes";
                goto fail;
            }
            if (p->msg_auth >= 0) {
                reason = "Message-Authenticator appears twice";
                goto fail;
            }
            p->msg_auth = (int)p->nattrs;
        }
        p->attrs[p->nattrs].type = type;
        p->attrs[p->nattrs].len = (uint8_t)(alen - 2);
        p->attrs[p->nattrs].value = data + off + 2;
        p->nattrs++;
        off += alen;
    }
    p->code = data[0];
    p->id = data[1];
    p->length = (uint16_t)length;
    p->data = data;
    p->authenticator = data + 4;
    return 0;
fail:
    p->nattrs = 0;
    p->msg_auth = -1;
    if (why)
        *why = reason;
    return -1;
}

const struct radius_attr *radius_find(const struct radius_packet *p, uint8_t type)
{
    for (size_t i = 0; i < p->nattrs; i++)
        if (p->attrs[i].type == type)
            return &p->attrs[i];
    return NULL;
}

/*
 * The Message-Authenticator of the parsed <p> (which has one), computed with
 * <auth> in the authenticator field and the attribute's value zeroed
 * (RFC 3579 §3.2). Returns 0 or -1.
 */
static int packet_ma(const struct radius_packet *p, const uint8_t *auth, const uint8_t *secret,
                     size_t secret_len, uint8_t out[MD5_LEN])
{
    static const uint8_t zero[RADIUS_AUTH_LEN];
    const uint8_t *value = p->attrs[p->msg_auth].value;
    size_t at = (size_t)(value - p->data), after = at + RADIUS_AUTH_LEN;
    const struct span s[] = {
        { p->data, 4 },
        { auth, RADIUS_AUTH_LEN },
        { p->data + RADIUS_HDR_LEN, at - RADIUS_HDR_LEN },
        { zero, RADIUS_AUTH_LEN },
        { p->data + after, p->length - after },
    };

    return hmac_md5(secret, secret_len, s, MFA_ARRAY_LEN(s), out);
}

int radius_check_request_ma(const struct radius_packet *p, const uint8_t *secret, size_t secret_len)
{
    uint8_t want[MD5_LEN];

    if (p->msg_auth < 0)
        return 0;
    if (!secret_ok(secret, secret_len) ||
        packet_ma(p, p->authenticator, secret, secret_len, want) < 0)
        return -1;
    return CRYPTO_memcmp(want, p->attrs[p->msg_auth].value, MD5_LEN) == 0 ? 1 : -1;
}

int radius_check_response(const struct radius_packet *p, const uint8_t req_auth[RADIUS_AUTH_LEN],
                          const uint8_t *secret, size_t secret_len, bool require_ma)
{
    uint8_t want[MD5_LEN];
    /* RFC 2865 §3: MD5(Code+ID+Length+RequestAuth+Attributes+Secret) */
    const struct span s[] = {
        { p->data, 4 },
        { req_auth, RADIUS_AUTH_LEN },
        { p->data + RADIUS_HDR_LEN, p->length - RADIUS_HDR_LEN },
        { secret, secret_len },
    };

    if (!secret_ok(secret, secret_len) || md5(s, MFA_ARRAY_LEN(s), want) < 0 ||
        CRYPTO_memcmp(want, p->authenticator, MD5_LEN) != 0)
        return 0;
    if (p->msg_auth < 0)
        return require_ma ? 0 : 1;
    if (packet_ma(p, req_auth, secret, secret_len, want) < 0)
        return 0;
    return CRYPTO_memcmp(want, p->attrs[p->msg_auth].value, MD5_LEN) == 0 ? 1 : 0;
}

/*
 * RFC 2865 §5.2: b(1) = MD5(S + RA), b(i) = MD5(S + c(i-1)); c(i) = p(i) xor b(i).
 * One block's b(i) from the previous cipher block <prev> (or RA).
 */
static int pw_block_key(EVP_MD_CTX *ctx, const uint8_t *secret, size_t secret_len,
                        const uint8_t *prev, uint8_t out[MD5_LEN])
{
    const struct span s[] = { { secret, secret_len }, { prev, PW_BLOCK } };

    return md5_spans(ctx, s, MFA_ARRAY_LEN(s), out);
}

int radius_decode_password(const struct radius_attr *a,
                           const uint8_t authenticator[RADIUS_AUTH_LEN], const uint8_t *secret,
                           size_t secret_len, char *out, size_t size)
{
    uint8_t plain[RADIUS_PASSWORD_MAX], b[MD5_LEN];
    const uint8_t *prev = authenticator;
    EVP_MD_CTX *ctx = NULL;
    size_t n = 0;
    int rc = -1;

    /* RFC 2865 §5.2: the value is 16 to 128 octets, a multiple of 16 */
    if (a == NULL || a->len < PW_BLOCK || a->len > RADIUS_PASSWORD_MAX || a->len % PW_BLOCK ||
        !secret_ok(secret, secret_len) || out == NULL || size == 0)
        return -1;
    if (!algorithms_ready() || (ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    for (size_t i = 0; i < a->len; i += PW_BLOCK) {
        if (pw_block_key(ctx, secret, secret_len, prev, b) < 0)
            goto done;
        for (size_t j = 0; j < PW_BLOCK; j++)
            plain[i + j] = a->value[i + j] ^ b[j];
        prev = a->value + i;
    }
    /* The password ends at its first NUL; everything after it must be padding. */
    while (n < a->len && plain[n] != 0)
        n++;
    for (size_t j = n; j < a->len; j++)
        if (plain[j] != 0)
            goto done;
    if (n >= size)
        goto done;
    memcpy(out, plain, n);
    out[n] = '\0';
    rc = (int)n;
done:
    OPENSSL_cleanse(plain, sizeof(plain));
    OPENSSL_cleanse(b, sizeof(b));
    EVP_MD_CTX_free(ctx);
    return rc;
}

int radius_encode_password(const char *password, size_t len,
                           const uint8_t authenticator[RADIUS_AUTH_LEN], const uint8_t *secret,
                           size_t secret_len, uint8_t *out, size_t size)
{
    size_t outlen = len == 0 ? PW_BLOCK : (len + PW_BLOCK - 1) / PW_BLOCK * PW_BLOCK;
    const uint8_t *prev = authenticator;
    EVP_MD_CTX *ctx = NULL;
    uint8_t b[MD5_LEN];
    int rc = -1;

    /* A NUL inside the password would read back as its end (see the decoder). */
    if (len > RADIUS_PASSWORD_MAX || (len > 0 && (password == NULL || memchr(password, 0, len))) ||
        !secret_ok(secret, secret_len) || out == NULL || size < outlen)
        return -1;
    if (!algorithms_ready() || (ctx = EVP_MD_CTX_new()) == NULL)
        return -1;
    for (size_t i = 0; i < outlen; i += PW_BLOCK) {
        if (pw_block_key(ctx, secret, secret_len, prev, b) < 0)
            goto done;
        for (size_t j = 0; j < PW_BLOCK; j++)
            out[i + j] = (uint8_t)((i + j < len ? (uint8_t)password[i + j] : 0) ^ b[j]);
        prev = out + i;
    }
    rc = (int)outlen;
done:
    OPENSSL_cleanse(b, sizeof(b));
    EVP_MD_CTX_free(ctx);
    return rc;
}

void radius_build_start(struct radius_builder *b, uint8_t code, uint8_t id)
{
    memset(b->buf, 0, RADIUS_HDR_LEN + MA_ATTR_LEN);
    b->buf[0] = code;
    b->buf[1] = id;
    /* BlastRADIUS (CVE-2024-3596): Message-Authenticator first, value zero until signed */
    b->buf[RADIUS_HDR_LEN] = RADIUS_MESSAGE_AUTHENTICATOR;
    b->buf[RADIUS_HDR_LEN + 1] = MA_ATTR_LEN;
    b->len = RADIUS_HDR_LEN + MA_ATTR_LEN;
    b->overflow = false;
}

int radius_build_add(struct radius_builder *b, uint8_t type, const void *value, size_t len)
{
    /* A second Message-Authenticator would make a packet radius_parse() refuses. */
    if (len > RADIUS_ATTR_MAX || (len > 0 && value == NULL) ||
        type == RADIUS_MESSAGE_AUTHENTICATOR || b->len > RADIUS_MAX_LEN - 2 - len) {
        b->overflow = true;
        return -1;
    }
    b->buf[b->len] = type;
    b->buf[b->len + 1] = (uint8_t)(2 + len);
    if (len > 0)
        memcpy(b->buf + b->len + 2, value, len);
    b->len += 2 + len;
    return 0;
}

/*
 * Sets Length, puts <auth> in the authenticator field and signs the
 * Message-Authenticator over the result (RFC 3579 §3.2). Returns 0 or -1.
 */
static int build_sign(struct radius_builder *b, const uint8_t auth[RADIUS_AUTH_LEN],
                      const uint8_t *secret, size_t secret_len)
{
    uint8_t *ma = b->buf + RADIUS_HDR_LEN + 2;
    uint8_t mac[MD5_LEN];
    const struct span s[] = { { b->buf, b->len } };

    if (b->overflow || b->len < RADIUS_HDR_LEN + MA_ATTR_LEN || b->len > RADIUS_MAX_LEN ||
        !secret_ok(secret, secret_len))
        return -1;
    b->buf[2] = (uint8_t)(b->len >> 8);
    b->buf[3] = (uint8_t)(b->len & 0xff);
    memcpy(b->buf + 4, auth, RADIUS_AUTH_LEN);
    memset(ma, 0, RADIUS_AUTH_LEN);
    if (hmac_md5(secret, secret_len, s, MFA_ARRAY_LEN(s), mac) < 0)
        return -1;
    memcpy(ma, mac, RADIUS_AUTH_LEN);
    return 0;
}

int radius_build_response(struct radius_builder *b, const uint8_t req_auth[RADIUS_AUTH_LEN],
                          const uint8_t *secret, size_t secret_len)
{
    uint8_t resp[MD5_LEN];
    /* RFC 2865 §3: MD5(Code+ID+Length+RequestAuth+Attributes+Secret); the field holds
     * RequestAuth after build_sign(), and the Message-Authenticator is final. */
    const struct span s[] = { { b->buf, b->len }, { secret, secret_len } };

    if (build_sign(b, req_auth, secret, secret_len) < 0 || md5(s, MFA_ARRAY_LEN(s), resp) < 0)
        return -1;
    memcpy(b->buf + 4, resp, RADIUS_AUTH_LEN);
    return (int)b->len;
}

int radius_build_request(struct radius_builder *b, const uint8_t auth[RADIUS_AUTH_LEN],
                         const uint8_t *secret, size_t secret_len)
{
    if (build_sign(b, auth, secret, secret_len) < 0)
        return -1;
    return (int)b->len;
}

static const char *const code_names[] = {
    [RADIUS_ACCESS_REQUEST] = "Access-Request",
    [RADIUS_ACCESS_ACCEPT] = "Access-Accept",
    [RADIUS_ACCESS_REJECT] = "Access-Reject",
    [RADIUS_ACCOUNTING_REQUEST] = "Accounting-Request",
    [RADIUS_ACCOUNTING_RESPONSE] = "Accounting-Response",
    [RADIUS_ACCESS_CHALLENGE] = "Access-Challenge",
    [RADIUS_STATUS_SERVER] = "Status-Server",
};

const char *radius_code_name(uint8_t code, char *buf, size_t size)
{
    if (code < MFA_ARRAY_LEN(code_names) && code_names[code])
        return code_names[code];
    if (buf == NULL || size == 0)
        return "code-?";
    snprintf(buf, size, "code-%u", (unsigned)code);
    return buf;
}
