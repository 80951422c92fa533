/*
 * RFC 4648 encodings: standard base64 (padded), base64url (unpadded),
 * base32 (encoded unpadded; decoded leniently, because users type TOTP
 * secrets by hand) and the digits of base16.
 *
 * Every function takes the size of its output buffer and fails rather than
 * writing past it; encoders always NUL-terminate. Decoders take the input
 * length explicitly (so a field inside a longer string can be decoded in
 * place), treat the input as untrusted and return -1 on any character outside
 * the alphabet, including an embedded NUL. On failure the decoder output is
 * wiped, since decoded data is often a key.
 */
#ifndef MFA_B64_H
#define MFA_B64_H

#include <stddef.h>

#include "mem.h"

/* Characters produced by the encoders, NOT counting the terminating NUL. */
#define B64_ENCODED_LEN(n)    ((((n) + 2) / 3) * 4)
#define B64URL_ENCODED_LEN(n) (((n)*4 + 2) / 3)
#define B32_ENCODED_LEN(n)    (((n)*8 + 4) / 5)

/* Upper bounds of the bytes a decoder produces from <n> input characters. */
#define B64_DECODED_MAX(n) ((((n) + 3) / 4) * 3)
#define B32_DECODED_MAX(n) ((((n) + 7) / 8) * 5)

/*
 * Standard base64 with '=' padding (RFC 4648 §4). Writes
 * B64_ENCODED_LEN(inlen) characters and a NUL to <out>; returns 0, or -1 when
 * outsz < B64_ENCODED_LEN(inlen) + 1 (then out[0] is NUL if outsz > 0).
 */
int b64_encode(const void *in, size_t inlen, char *out, size_t outsz) MFA_MUSTCHECK;

/*
 * Decodes <inlen> characters of padded standard base64. Strict: the length
 * must be a multiple of 4, '=' may only end the input (at most two), no
 * whitespace, and the unused bits before the padding must be zero (canonical
 * encoding, RFC 4648 §3.5). Writes at most <outsz> bytes and sets *outlen.
 * Returns 0, or -1 on invalid input or a too small buffer.
 */
int b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz,
               size_t *outlen) MFA_MUSTCHECK;

/* base64url without padding (RFC 4648 §5); as b64_encode. */
int b64url_encode(const void *in, size_t inlen, char *out, size_t outsz) MFA_MUSTCHECK;

/*
 * Decodes unpadded base64url; strict like b64_decode ('=' is rejected, a
 * length of 4k+1 is impossible and rejected, unused bits must be zero).
 */
int b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz,
                  size_t *outlen) MFA_MUSTCHECK;

/*
 * base32 (RFC 4648 §6), upper case, WITHOUT '=' padding (what otpauth:// URIs
 * and authenticator apps use). Writes B32_ENCODED_LEN(inlen) characters and a
 * NUL; returns 0, or -1 when the buffer is too small.
 */
int b32_encode(const void *in, size_t inlen, char *out, size_t outsz) MFA_MUSTCHECK;

/*
 * Decodes base32 as a person types it: case-insensitive, spaces and tabs
 * anywhere are ignored, trailing '=' padding is optional (but nothing except
 * '=' and blanks may follow the first '='). A count of 1, 3 or 6 characters
 * modulo 8 cannot come from an encoder and is rejected; the unused low bits of
 * the last character are ignored. Returns 0 and sets *outlen, or -1.
 */
int b32_decode(const char *in, size_t inlen, unsigned char *out, size_t outsz,
               size_t *outlen) MFA_MUSTCHECK;

/* The value of base16 digit <c> (either case), or -1 when it is none. */
int b16_digit(char c);

#endif
