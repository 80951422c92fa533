/*
 * HOTP (RFC 4226) and TOTP (RFC 6238); see otp.h.
 *
 * Invariants: the HMAC output and the formatted candidates live on the stack
 * and are wiped before return; a check loop always runs over the whole range
 * and selects the match with masks, not branches.
 */
#include "otp.h"

#include <limits.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const uint32_t pow10_table[] = { 1000000, 10000000, 100000000 };

static bool digits_ok(int digits)
{
    return digits >= OTP_DIGITS_MIN && digits <= OTP_DIGITS_MAX;
}

static const EVP_MD *algo_md(enum otp_algo algo)
{
    switch (algo) {
    case OTP_SHA1:
        return EVP_sha1();
    case OTP_SHA256:
        return EVP_sha256();
    case OTP_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

/* The parameters otp_hotp() rejects, checked up front by the check loops. */
static bool params_ok(const unsigned char *key, size_t keylen, int digits, enum otp_algo algo)
{
    return digits_ok(digits) && algo_md(algo) != NULL && key != NULL && keylen > 0 &&
           keylen <= INT_MAX;
}

const char *otp_algo_name(enum otp_algo algo)
{
    switch (algo) {
    case OTP_SHA1:
        return "SHA1";
    case OTP_SHA256:
        return "SHA256";
    case OTP_SHA512:
        return "SHA512";
    }
    return "?";
}

int otp_algo_parse(const char *s, enum otp_algo *out)
{
    static const enum otp_algo all[] = { OTP_SHA1, OTP_SHA256, OTP_SHA512 };

    if (s == NULL)
        return -1;
    for (size_t i = 0; i < MFA_ARRAY_LEN(all); i++) {
        if (strcasecmp(s, otp_algo_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

int otp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, int digits,
             enum otp_algo algo, uint32_t *code)
{
    const EVP_MD *md = algo_md(algo);
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    unsigned off;
    uint32_t bin;

    if (!params_ok(key, keylen, digits, algo))
        return -1;
    /* RFC 4226 §5.2: the counter is an 8-byte big-endian value. */
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    if (HMAC(md, key, (int)keylen, msg, sizeof(msg), mac, &maclen) == NULL || maclen < 20)
        return -1;
    /* RFC 4226 §5.3: dynamic truncation; the offset is the low nibble of the
     * last byte (RFC 6238 §1.2 keeps this for the longer SHA-2 outputs). */
    off = mac[maclen - 1] & 0x0f;
    bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
          ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    OPENSSL_cleanse(mac, sizeof(mac));
    *code = bin % pow10_table[digits - OTP_DIGITS_MIN];
    return 0;
}

int otp_totp(const unsigned char *key, size_t keylen, uint64_t unix_time, unsigned period,
             int digits, enum otp_algo algo, uint32_t *code)
{
    /* RFC 6238 §4.2: T = (Current Unix time - T0) / X, with T0 = 0. */
    if (period == 0)
        return -1;
    return otp_hotp(key, keylen, unix_time / period, digits, algo, code);
}

void otp_format(uint32_t code, int digits, char out[9])
{
    if (!digits_ok(digits)) {
        out[0] = '\0';
        return;
    }
    out[digits] = '\0';
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (char)('0' + code % 10);
        code /= 10;
    }
}

bool otp_code_syntax_ok(const char *code, int digits)
{
    if (code == NULL || !digits_ok(digits))
        return false;
    for (int i = 0; i < digits; i++)
        if (code[i] < '0' || code[i] > '9')
            return false; /* also stops at the NUL of a short code */
    return code[digits] == '\0';
}

/*
 * Compares <code> with the HOTP value of every counter in [first, last],
 * constant time in which one matches. Returns 1/0/-1 as otp_hotp_check().
 */
static int check_range(const unsigned char *key, size_t keylen, uint64_t first, uint64_t last,
                       int digits, enum otp_algo algo, const char *code, uint64_t *matched)
{
    uint64_t found = 0, hit_at = 0;
    char cand[9];
    int rc = 0;

    for (uint64_t c = first;; c++) {
        uint32_t value;
        uint64_t hit, take;

        if (otp_hotp(key, keylen, c, digits, algo, &value) < 0) {
            rc = -1;
            break;
        }
        otp_format(value, digits, cand);
        /* all ones when equal; first match wins, chosen without a branch */
        hit = (uint64_t)0 - (uint64_t)(CRYPTO_memcmp(cand, code, (size_t)digits) == 0);
        take = hit & ~found;
        hit_at = (hit_at & ~take) | (c & take);
        found |= hit;
        if (c == last)
            break;
    }
    OPENSSL_cleanse(cand, sizeof(cand));
    if (rc < 0)
        return -1;
    if (found)
        *matched = hit_at;
    return found ? 1 : 0;
}

int otp_hotp_check(const unsigned char *key, size_t keylen, uint64_t counter, unsigned lookahead,
                   int digits, enum otp_algo algo, const char *code, uint64_t *matched_counter)
{
    uint64_t last;

    if (!params_ok(key, keylen, digits, algo) || lookahead > OTP_SEARCH_MAX)
        return -1;
    if (!otp_code_syntax_ok(code, digits))
        return 0;
    last = counter > UINT64_MAX - lookahead ? UINT64_MAX : counter + lookahead;
    return check_range(key, keylen, counter, last, digits, algo, code, matched_counter);
}

int otp_totp_check(const unsigned char *key, size_t keylen, uint64_t now, unsigned period,
                   unsigned window, int digits, enum otp_algo algo, const char *code,
                   uint64_t *matched_step)
{
    uint64_t step, first, last;

    if (period == 0 || !params_ok(key, keylen, digits, algo) || window > OTP_SEARCH_MAX)
        return -1;
    if (!otp_code_syntax_ok(code, digits))
        return 0;
    /* RFC 6238 §5.2: accept a few steps of clock drift either way. */
    step = now / period;
    first = step < window ? 0 : step - window;
    last = step > UINT64_MAX - window ? UINT64_MAX : step + window;
    return check_range(key, keylen, first, last, digits, algo, code, matched_step);
}
