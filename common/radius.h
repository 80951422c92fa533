/*
 * RADIUS packets (RFC 2865 authentication, RFC 3579 Message-Authenticator).
 *
 * The parser reads an untrusted datagram without copying: it checks the
 * header, that the Length field lies within the datagram (bytes after it are
 * padding and ignored, RFC 2865 §3) and that every attribute fits, and
 * returns views into the caller's buffer. Nothing here allocates, so the
 * node's server, the balancer's front end, the benchmark driver and the fuzz
 * targets share it.
 *
 * The builder writes a response (or, for tests and the benchmark driver, a
 * request) into a fixed buffer with Message-Authenticator as its first
 * attribute, as the BlastRADIUS advice asks (CVE-2024-3596), and signs it.
 *
 * MD5 and HMAC-MD5 come from OpenSSL's EVP interface (fetched once per
 * process; where they are unavailable every check fails closed). Reasons for
 * rejecting a packet are static strings (no allocation on the hot path), fit
 * for a log line and a counter. Every function taking a secret wants 1 to
 * RADIUS_SECRET_MAX bytes: with another length the checks fail and the
 * builders and password functions return -1.
 */
#ifndef MFA_RADIUS_H
#define MFA_RADIUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

#define RADIUS_HDR_LEN      20
#define RADIUS_AUTH_LEN     16
#define RADIUS_MAX_LEN      4096 /* RFC 2865 §3 */
#define RADIUS_MAX_ATTRS    256  /* more in one packet is refused */
#define RADIUS_ATTR_MAX     253  /* bytes of value in one attribute */
#define RADIUS_PASSWORD_MAX 128  /* bytes of User-Password, RFC 2865 §5.2 */
#define RADIUS_SECRET_MAX   128  /* bytes of a shared secret */

enum radius_code {
    RADIUS_ACCESS_REQUEST = 1,
    RADIUS_ACCESS_ACCEPT = 2,
    RADIUS_ACCESS_REJECT = 3,
    RADIUS_ACCOUNTING_REQUEST = 4,
    RADIUS_ACCOUNTING_RESPONSE = 5,
    RADIUS_ACCESS_CHALLENGE = 11,
    RADIUS_STATUS_SERVER = 12,
};

enum radius_attr_type {
    RADIUS_USER_NAME = 1,
    RADIUS_USER_PASSWORD = 2,
    RADIUS_CHAP_PASSWORD = 3,
    RADIUS_NAS_IP_ADDRESS = 4,
    RADIUS_NAS_PORT = 5,
    RADIUS_REPLY_MESSAGE = 18,
    RADIUS_STATE = 24,
    RADIUS_CALLING_STATION_ID = 31,
    RADIUS_NAS_IDENTIFIER = 32,
    RADIUS_PROXY_STATE = 33,
    RADIUS_EAP_MESSAGE = 79,
    RADIUS_MESSAGE_AUTHENTICATOR = 80,
};

/* One attribute: its type and a view of its value (len 0..253) in the packet. */
struct radius_attr {
    uint8_t type;
    uint8_t len;
    const uint8_t *value;
};

/* A parsed packet; every pointer is into the buffer given to radius_parse(). */
struct radius_packet {
    uint8_t code;
    uint8_t id;
    uint16_t length;              /* the Length field: the packet proper */
    const uint8_t *data;          /* the packet's first byte */
    const uint8_t *authenticator; /* data + 4, RADIUS_AUTH_LEN bytes */
    size_t nattrs;
    struct radius_attr attrs[RADIUS_MAX_ATTRS];
    int msg_auth; /* index in attrs of Message-Authenticator, -1 when absent */
};

/*
 * Parses the datagram <data> of <len> bytes into <p>. Refuses (returns -1
 * and sets *why unless <why> is NULL; <p> then has no attributes): fewer
 * than 20 bytes, a Length below 20, above 4096 or above <len>, an attribute
 * shorter than 2 bytes or running past Length, more than RADIUS_MAX_ATTRS
 * attributes, a Message-Authenticator that is not 16 bytes or appears twice.
 * Returns 0. The code is not checked: callers decide which codes they serve.
 */
int radius_parse(const uint8_t *data, size_t len, struct radius_packet *p,
                 const char **why) MFA_MUSTCHECK;

/* The first attribute of <type>, or NULL. */
const struct radius_attr *radius_find(const struct radius_packet *p, uint8_t type);

/*
 * Checks the Message-Authenticator of a request from a client (Access-Request,
 * Status-Server: the authenticator field holds the Request Authenticator):
 * HMAC-MD5 under <secret> of the packet (its first <length> bytes) with the
 * attribute's value zeroed (RFC 3579 §3.2). Constant-time comparison.
 * Returns 1 when present and right, 0 when absent, -1 when wrong (or when it
 * cannot be computed: a bad secret length, a crypto failure).
 */
int radius_check_request_ma(const struct radius_packet *p, const uint8_t *secret,
                            size_t secret_len);

/*
 * Checks a response <p> to a request whose authenticator was <req_auth>:
 * the Response Authenticator (RFC 2865 §3) and, when present, the
 * Message-Authenticator (computed over the packet with <req_auth> in the
 * authenticator field). Returns 1 when right (<require_ma>: and the
 * Message-Authenticator is there), else 0. For tests and the benchmark
 * driver.
 */
int radius_check_response(const struct radius_packet *p, const uint8_t req_auth[RADIUS_AUTH_LEN],
                          const uint8_t *secret, size_t secret_len, bool require_ma);

/*
 * Decodes User-Password <a> (RFC 2865 §5.2: a multiple of 16 bytes, 16 to
 * 128) hidden under <secret> and the request's <authenticator>. Writes the
 * password without its NUL padding, plus a NUL, to <out> (size >
 * RADIUS_PASSWORD_MAX suffices). Returns its length, or -1 when the
 * attribute's length is wrong, <out> is too small or the password holds a
 * NUL before its padding. The caller wipes <out>.
 */
int radius_decode_password(const struct radius_attr *a,
                           const uint8_t authenticator[RADIUS_AUTH_LEN], const uint8_t *secret,
                           size_t secret_len, char *out, size_t size) MFA_MUSTCHECK;

/*
 * Hides <password> (0..128 bytes, no NUL: a NUL would read back as its end)
 * as a User-Password value into <out> (size >= the value's length;
 * RADIUS_PASSWORD_MAX always suffices). Returns the value's length (a
 * multiple of 16, at least 16), or -1. The client side, for tests and the
 * driver.
 */
int radius_encode_password(const char *password, size_t len,
                           const uint8_t authenticator[RADIUS_AUTH_LEN], const uint8_t *secret,
                           size_t secret_len, uint8_t *out, size_t size) MFA_MUSTCHECK;

/*
 * A packet being built. radius_build_start() reserves the header and a
 * zeroed Message-Authenticator as the first attribute; radius_build_add()
 * appends; a finishing call signs it. An attribute that does not fit sets
 * <overflow> and the finishing call then fails.
 */
struct radius_builder {
    uint8_t buf[RADIUS_MAX_LEN];
    size_t len;
    bool overflow;
};

void radius_build_start(struct radius_builder *b, uint8_t code, uint8_t id);

/*
 * Appends one attribute (<len> 0..253 bytes). Returns 0, or -1 and sets
 * <overflow> when it does not fit, is longer than 253 bytes or is a second
 * Message-Authenticator (the builder has placed one).
 */
int radius_build_add(struct radius_builder *b, uint8_t type, const void *value, size_t len);

/*
 * Finishes a response to a request whose authenticator was <req_auth>:
 * Message-Authenticator over the packet with <req_auth> in the
 * authenticator field, then the Response Authenticator MD5(Code, Identifier,
 * Length, <req_auth>, attributes, secret). Returns the packet's length (the
 * bytes are b->buf), or -1 after an overflow or a crypto failure.
 */
int radius_build_response(struct radius_builder *b, const uint8_t req_auth[RADIUS_AUTH_LEN],
                          const uint8_t *secret, size_t secret_len) MFA_MUSTCHECK;

/*
 * Finishes an Access-Request with the Request Authenticator <auth> (the
 * caller's 16 random bytes; any User-Password was hidden under it) and its
 * Message-Authenticator. Returns the length, or -1.
 */
int radius_build_request(struct radius_builder *b, const uint8_t auth[RADIUS_AUTH_LEN],
                         const uint8_t *secret, size_t secret_len) MFA_MUSTCHECK;

/* "Access-Request", "Access-Accept", ... or "code-N" in <buf> for others. */
const char *radius_code_name(uint8_t code, char *buf, size_t size);

#endif
