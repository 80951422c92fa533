/*
 * One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238) over HMAC-SHA-1,
 * HMAC-SHA-256 or HMAC-SHA-512 (OpenSSL).
 *
 * Codes are 6 to 8 decimal digits; any other digit count is an error (-1).
 * TOTP uses T0 = 0 (RFC 6238 §4.1) and a caller-given period in seconds.
 * The check functions compare every candidate in constant time and never
 * stop at the first match, so timing does not tell which step matched.
 */
#ifndef MFA_OTP_H
#define MFA_OTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

enum otp_algo {
    OTP_SHA1 = 0,
    OTP_SHA256,
    OTP_SHA512,
};

#define OTP_DIGITS_MIN 6
#define OTP_DIGITS_MAX 8
/* Largest lookahead / window the check functions accept (cost bound). */
#define OTP_SEARCH_MAX 1000

/* "SHA1", "SHA256" or "SHA512" (the otpauth:// spelling); "?" if invalid. */
const char *otp_algo_name(enum otp_algo algo);

/* Parses "sha1", "SHA256", ... (case-insensitive). Returns 0, or -1. */
int otp_algo_parse(const char *s, enum otp_algo *out) MFA_MUSTCHECK;

/*
 * RFC 4226 §5.3: HOTP value of <counter> for the <keylen>-byte <key>, as a
 * number below 10^digits, in *code. Returns 0, or -1 when digits is not 6..8,
 * the key is empty or the algorithm unknown.
 */
int otp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, int digits,
             enum otp_algo algo, uint32_t *code) MFA_MUSTCHECK;

/*
 * RFC 6238 §4.2: TOTP value at <unix_time> = HOTP(floor(unix_time / period)).
 * Returns 0, or -1 on period 0 or any otp_hotp() error.
 */
int otp_totp(const unsigned char *key, size_t keylen, uint64_t unix_time, unsigned period,
             int digits, enum otp_algo algo, uint32_t *code) MFA_MUSTCHECK;

/*
 * Writes <code> as exactly <digits> characters, zero-padded, and a NUL
 * (e.g. 7081804 with 8 digits -> "07081804"). Higher digits of <code> are
 * dropped. An invalid digit count writes "".
 */
void otp_format(uint32_t code, int digits, char out[9]);

/* True when <code> is exactly <digits> ASCII digits (digits 6..8). */
bool otp_code_syntax_ok(const char *code, int digits);

/*
 * Checks a user-typed HOTP <code> against counters counter .. counter +
 * lookahead (stopping at UINT64_MAX). Returns 1 and sets *matched_counter to
 * the lowest matching counter (the caller then stores matched + 1), 0 when
 * none matches or <code> is not syntactically a code, -1 on a bad
 * digits/key/algo or lookahead > OTP_SEARCH_MAX.
 */
int otp_hotp_check(const unsigned char *key, size_t keylen, uint64_t counter, unsigned lookahead,
                   int digits, enum otp_algo algo, const char *code,
                   uint64_t *matched_counter) MFA_MUSTCHECK;

/*
 * Checks a TOTP <code> at time <now> against time steps now/period - window ..
 * now/period + window (clamped at 0 and UINT64_MAX). Returns 1 and sets
 * *matched_step to the lowest matching step (callers keep the last accepted
 * step and refuse a step <= it, RFC 6238 §5.2), 0 when none matches or the
 * code is malformed, -1 on period 0, bad digits/key/algo or
 * window > OTP_SEARCH_MAX.
 */
int otp_totp_check(const unsigned char *key, size_t keylen, uint64_t now, unsigned period,
                   unsigned window, int digits, enum otp_algo algo, const char *code,
                   uint64_t *matched_step) MFA_MUSTCHECK;

#endif
