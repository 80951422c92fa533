/*
 * RFC 4648 base64, base64url and base32; see b64.h.
 *
 * Standard base64 is encoded with OpenSSL's EVP_EncodeBlock. Decoding is done
 * here rather than with EVP_DecodeBlock, which skips whitespace, does not
 * report padding and accepts non-canonical bits: values we decode (keys,
 * salts, MACs, ids) must have exactly one spelling. base32 is not in OpenSSL.
 *
 * Invariants: the exact output length is computed and checked against the
 * buffer size before the first byte is written; the bit accumulator never
 * holds more than 12 bits.
 */
#include "b64.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Value of a base64 (url == false) or base64url character, or -1. */
static int val64(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Value of a base32 character, either case, or -1. */
static int val32(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

static void fail_out(char *out, size_t outsz)
{
    if (out && outsz > 0)
        out[0] = '\0';
}

int b64_encode(const void *in, size_t inlen, char *out, size_t outsz)
{
    /* EVP_EncodeBlock takes an int and writes the padded text and a NUL. */
    if (inlen > (size_t)INT_MAX / 4 || outsz < B64_ENCODED_LEN(inlen) + 1) {
        fail_out(out, outsz);
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)out, in, (int)inlen);
    return 0;
}

/*
 * Writes <inlen> bytes as characters of <width> bits (6: base64url, 5:
 * base32) from <alphabet>, unpadded, and a NUL. <out> has room: the callers
 * checked it.
 */
static void pack_bits(const unsigned char *p, size_t inlen, char *out, const char *alphabet,
                      unsigned width)
{
    uint32_t acc = 0, mask = (1u << width) - 1;
    unsigned bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < inlen; i++) {
        acc = ((acc << 8) | p[i]) & 0xfff;
        bits += 8;
        while (bits >= width) {
            bits -= width;
            out[o++] = alphabet[(acc >> bits) & mask];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (width - bits)) & mask];
    out[o] = '\0';
}

int b64url_encode(const void *in, size_t inlen, char *out, size_t outsz)
{
    if (inlen > SIZE_MAX / 8 || outsz < B64URL_ENCODED_LEN(inlen) + 1) {
        fail_out(out, outsz);
        return -1;
    }
    pack_bits(in, inlen, out, url_alphabet, 6);
    return 0;
}

/*
 * Decodes <n> data characters (padding already removed) of base64 or
 * base64url. RFC 4648 §4: a final quantum of 2 or 3 characters carries 1 or 2
 * bytes; 1 character cannot occur. §3.5: the leftover bits must be zero.
 */
static int decode64(const char *in, size_t n, bool url, unsigned char *out, size_t outsz,
                    size_t *outlen)
{
    size_t need = n / 4 * 3, o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (n % 4 == 1)
        return -1;
    need += n % 4 == 0 ? 0 : n % 4 - 1;
    if (need > outsz)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = val64(in[i], url);

        if (v < 0)
            goto fail;
        acc = ((acc << 6) | (uint32_t)v) & 0xfff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1))
        goto fail;
    *outlen = o;
    return 0;
fail:
    OPENSSL_cleanse(out, o);
    return -1;
}

int b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz, size_t *outlen)
{
    size_t pad = 0;

    *outlen = 0;
    if (inlen % 4 != 0)
        return -1;
    while (pad < 2 && pad < inlen && in[inlen - 1 - pad] == '=')
        pad++;
    /* "Zg==" is fine; "Zg=a" fails in decode64 ('=' is no data character). */
    return decode64(in, inlen - pad, false, out, outsz, outlen);
}

int b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz, size_t *outlen)
{
    *outlen = 0;
    return decode64(in, inlen, true, out, outsz, outlen);
}

int b32_encode(const void *in, size_t inlen, char *out, size_t outsz)
{
    if (inlen > SIZE_MAX / 8 || outsz < B32_ENCODED_LEN(inlen) + 1) {
        fail_out(out, outsz);
        return -1;
    }
    pack_bits(in, inlen, out, b32_alphabet, 5);
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int b32_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz, size_t *outlen)
{
    size_t n = 0, o = 0, need;
    uint32_t acc = 0;
    unsigned bits = 0;
    bool padding = false;

    *outlen = 0;
    /* First pass: validate and count the data characters. */
    for (size_t i = 0; i < inlen; i++) {
        if (is_blank(in[i]))
            continue;
        if (in[i] == '=') {
            padding = true;
            continue;
        }
        if (padding || val32(in[i]) < 0)
            return -1;
        n++;
    }
    /* RFC 4648 §6: a final quantum has 2, 4, 5 or 7 characters. */
    if (n % 8 == 1 || n % 8 == 3 || n % 8 == 6)
        return -1;
    need = n / 8 * 5 + (n % 8) * 5 / 8;
    if (need > outsz)
        return -1;
    for (size_t i = 0; i < inlen && o < need; i++) {
        int v = val32(in[i]);

        if (v < 0)
            continue; /* a blank: everything else was checked above */
        acc = ((acc << 5) | (uint32_t)v) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = o;
    return 0;
}

int b16_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
