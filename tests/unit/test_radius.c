/*
 * RADIUS packets: the RFC 2865 §7.1 worked example, Message-Authenticator
 * and response vectors computed independently, every refusal of the
 * parser, the builder's layout and limits, and User-Password hiding at its
 * edges and in random round trips.
 *
 * Sources of the vectors:
 *   - rfc_request / rfc_accept: the bytes printed in RFC 2865 §7.1 (User
 *     Telnet to Specified Host; secret "xyzzy5461", password "arctangent"),
 *     also checked with Python's hashlib (MD5(secret + RA) xor the padded
 *     password; the Access-Accept's Response Authenticator);
 *   - ma_request / ma_challenge: built by a separate Python implementation
 *     (hashlib + hmac, HMAC-MD5 per RFC 3579 §3.2 with the value zeroed,
 *     Message-Authenticator first) with the same secret and authenticator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "radius.h"

#define SECRET     "xyzzy5461"
#define SECRET_LEN 9

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

/* RFC 2865 §7.1: Access-Request from NAS 192.168.1.16, port 3, user nemo. */
static const uint8_t rfc_request[] = {
    0x01, 0x00, 0x00, 0x38, 0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83,
    0xd5, 0xcb, 0x98, 0xf4, 0x22, 0x7a, 0x01, 0x06, 0x6e, 0x65, 0x6d, 0x6f, 0x02, 0x12,
    0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a,
    0x0a, 0xee, 0x04, 0x06, 0xc0, 0xa8, 0x01, 0x10, 0x05, 0x06, 0x00, 0x00, 0x00, 0x03,
};

/* RFC 2865 §7.1: its Access-Accept (Service-Type, Login-Service, Login-IP-Host). */
static const uint8_t rfc_accept[] = {
    0x02, 0x00, 0x00, 0x26, 0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10,
    0x05, 0xf6, 0xbf, 0x9b, 0x55, 0xe0, 0xb2, 0x06, 0x06, 0x00, 0x00, 0x00, 0x01,
    0x0f, 0x06, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x06, 0xc0, 0xa8, 0x01, 0x03,
};

/* The hidden "arctangent", as in rfc_request (and from hashlib). */
static const uint8_t arctangent_hidden[16] = { 0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce,
                                               0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a, 0x0a, 0xee };

/* Python: the §7.1 request's attributes after a Message-Authenticator. */
static const uint8_t ma_request[] = {
    0x01, 0x00, 0x00, 0x4a, 0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5,
    0xcb, 0x98, 0xf4, 0x22, 0x7a, 0x50, 0x12, 0x8f, 0x16, 0xb4, 0x5f, 0x90, 0xd3, 0x49, 0x49,
    0x89, 0xa4, 0xf1, 0x4f, 0x44, 0x21, 0xc6, 0x18, 0x01, 0x06, 0x6e, 0x65, 0x6d, 0x6f, 0x02,
    0x12, 0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a,
    0x0a, 0xee, 0x04, 0x06, 0xc0, 0xa8, 0x01, 0x10, 0x05, 0x06, 0x00, 0x00, 0x00, 0x03,
};

/* Python: an Access-Challenge to it, State "n1-abcdefghijklmnop", Reply-Message. */
static const uint8_t ma_challenge[] = {
    0x0b, 0x00, 0x00, 0x4b, 0xbf, 0xd3, 0x94, 0x31, 0xe5, 0x26, 0xe8, 0x91, 0x9b, 0x42, 0x8e,
    0x81, 0x5b, 0xd1, 0x94, 0xf8, 0x50, 0x12, 0xa7, 0x46, 0xce, 0x79, 0x1b, 0xe6, 0x3e, 0x57,
    0x26, 0x30, 0x02, 0x5f, 0x59, 0x32, 0x7f, 0x4b, 0x18, 0x15, 0x6e, 0x31, 0x2d, 0x61, 0x62,
    0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x12,
    0x10, 0x45, 0x6e, 0x74, 0x65, 0x72, 0x20, 0x74, 0x68, 0x65, 0x20, 0x63, 0x6f, 0x64, 0x65,
};

#define RFC_RA (rfc_request + 4)
#define STATE  "n1-abcdefghijklmnop"
#define REPLY  "Enter the code"

static struct radius_packet pkt; /* 4 KiB: kept off the stack */

static void parse_ok(const uint8_t *data, size_t len, struct radius_packet *p)
{
    const char *why = NULL;

    if (radius_parse(data, len, p, &why) != 0)
        fail_msg("parse refused: %s", why);
}

static void test_rfc2865_example(void **state)
{
    const struct radius_attr *a;
    uint8_t hidden[RADIUS_PASSWORD_MAX];
    char pw[RADIUS_PASSWORD_MAX + 1];

    (void)state;
    parse_ok(rfc_request, sizeof(rfc_request), &pkt);
    assert_int_equal(pkt.code, RADIUS_ACCESS_REQUEST);
    assert_int_equal(pkt.id, 0);
    assert_int_equal(pkt.length, sizeof(rfc_request));
    assert_int_equal(pkt.nattrs, 4);
    assert_int_equal(pkt.msg_auth, -1);
    assert_ptr_equal(pkt.data, rfc_request);
    assert_ptr_equal(pkt.authenticator, rfc_request + 4);
    a = radius_find(&pkt, RADIUS_USER_NAME);
    assert_non_null(a);
    assert_int_equal(a->len, 4);
    assert_memory_equal(a->value, "nemo", 4);
    assert_null(radius_find(&pkt, RADIUS_STATE));
    /* no Message-Authenticator: absent, not wrong */
    assert_int_equal(radius_check_request_ma(&pkt, u8(SECRET), SECRET_LEN), 0);

    a = radius_find(&pkt, RADIUS_USER_PASSWORD);
    assert_non_null(a);
    assert_int_equal(
        radius_decode_password(a, pkt.authenticator, u8(SECRET), SECRET_LEN, pw, sizeof(pw)), 10);
    assert_string_equal(pw, "arctangent");
    assert_int_equal(radius_encode_password("arctangent", 10, RFC_RA, u8(SECRET), SECRET_LEN,
                                            hidden, sizeof(hidden)),
                     16);
    assert_memory_equal(hidden, arctangent_hidden, 16);

    /* The Access-Accept: its Response Authenticator, no Message-Authenticator. */
    parse_ok(rfc_accept, sizeof(rfc_accept), &pkt);
    assert_int_equal(pkt.code, RADIUS_ACCESS_ACCEPT);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, false), 1);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, true), 0);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8("xyzzy5462"), SECRET_LEN, false), 0);
    assert_int_equal(radius_check_response(&pkt, rfc_accept + 4, u8(SECRET), SECRET_LEN, false), 0);
}

/* The §7.1 request with a Message-Authenticator, built here. */
static int build_ma_request(struct radius_builder *b)
{
    uint8_t hidden[RADIUS_PASSWORD_MAX];
    static const uint8_t nas_ip[] = { 192, 168, 1, 16 }, nas_port[] = { 0, 0, 0, 3 };
    int n = radius_encode_password("arctangent", 10, RFC_RA, u8(SECRET), SECRET_LEN, hidden,
                                   sizeof(hidden));

    assert_int_equal(n, 16);
    radius_build_start(b, RADIUS_ACCESS_REQUEST, 0);
    assert_int_equal(radius_build_add(b, RADIUS_USER_NAME, "nemo", 4), 0);
    assert_int_equal(radius_build_add(b, RADIUS_USER_PASSWORD, hidden, (size_t)n), 0);
    assert_int_equal(radius_build_add(b, RADIUS_NAS_IP_ADDRESS, nas_ip, 4), 0);
    assert_int_equal(radius_build_add(b, RADIUS_NAS_PORT, nas_port, 4), 0);
    return radius_build_request(b, RFC_RA, u8(SECRET), SECRET_LEN);
}

static void test_request_ma(void **state)
{
    static struct radius_builder b;
    uint8_t copy[sizeof(ma_request)];
    int n;

    (void)state;
    n = build_ma_request(&b);
    assert_int_equal(n, sizeof(ma_request));
    assert_memory_equal(b.buf, ma_request, sizeof(ma_request));

    parse_ok(ma_request, sizeof(ma_request), &pkt);
    assert_int_equal(pkt.msg_auth, 0);
    assert_int_equal(pkt.attrs[0].type, RADIUS_MESSAGE_AUTHENTICATOR);
    assert_int_equal(pkt.attrs[0].len, RADIUS_AUTH_LEN);
    assert_int_equal(radius_check_request_ma(&pkt, u8(SECRET), SECRET_LEN), 1);
    assert_int_equal(radius_check_request_ma(&pkt, u8("xyzzy546"), SECRET_LEN - 1), -1);
    /* a secret outside 1..128 bytes never verifies */
    assert_int_equal(radius_check_request_ma(&pkt, u8(SECRET), 0), -1);

    /* Any byte flipped: refused by the parser, or a wrong Message-Authenticator. */
    for (size_t i = 0; i < sizeof(copy); i++) {
        const char *why;

        memcpy(copy, ma_request, sizeof(copy));
        copy[i] ^= 0x01;
        if (radius_parse(copy, sizeof(copy), &pkt, &why) == 0 && pkt.msg_auth >= 0)
            assert_int_equal(radius_check_request_ma(&pkt, u8(SECRET), SECRET_LEN), -1);
    }
    /* A flip in the user name parses and must be caught. */
    memcpy(copy, ma_request, sizeof(copy));
    copy[40] ^= 0x20;
    parse_ok(copy, sizeof(copy), &pkt);
    assert_int_equal(radius_check_request_ma(&pkt, u8(SECRET), SECRET_LEN), -1);
}

static void test_response(void **state)
{
    static struct radius_builder b;
    uint8_t copy[sizeof(ma_challenge)];
    int n;

    (void)state;
    radius_build_start(&b, RADIUS_ACCESS_CHALLENGE, 0);
    assert_int_equal(radius_build_add(&b, RADIUS_STATE, STATE, strlen(STATE)), 0);
    assert_int_equal(radius_build_add(&b, RADIUS_REPLY_MESSAGE, REPLY, strlen(REPLY)), 0);
    n = radius_build_response(&b, RFC_RA, u8(SECRET), SECRET_LEN);
    assert_int_equal(n, sizeof(ma_challenge));
    assert_memory_equal(b.buf, ma_challenge, sizeof(ma_challenge));

    parse_ok(b.buf, (size_t)n, &pkt);
    assert_int_equal(pkt.code, RADIUS_ACCESS_CHALLENGE);
    assert_int_equal(pkt.nattrs, 3);
    assert_int_equal(pkt.msg_auth, 0); /* BlastRADIUS: first */
    assert_int_equal(pkt.attrs[0].type, RADIUS_MESSAGE_AUTHENTICATOR);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, true), 1);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, false), 1);
    assert_int_equal(radius_check_response(&pkt, ma_request + 22, u8(SECRET), SECRET_LEN, true), 0);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8("xyzzy5460"), SECRET_LEN, true), 0);

    /* Tampering with any byte is caught. */
    for (size_t i = 0; i < sizeof(copy); i++) {
        const char *why;

        memcpy(copy, ma_challenge, sizeof(copy));
        copy[i] ^= 0x80;
        if (radius_parse(copy, sizeof(copy), &pkt, &why) == 0)
            assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, false), 0);
    }
}

/* Puts <req_auth> in the field of the response <buf> and re-signs it with MD5 (RFC 2865 §3). */
static void resign(uint8_t *buf, size_t len, const uint8_t *req_auth)
{
    uint8_t tmp[RADIUS_MAX_LEN + SECRET_LEN];
    unsigned int mdlen = 0;

    memcpy(tmp, buf, len);
    memcpy(tmp + 4, req_auth, RADIUS_AUTH_LEN);
    memcpy(tmp + len, SECRET, SECRET_LEN);
    assert_int_equal(EVP_Digest(tmp, len + SECRET_LEN, buf + 4, &mdlen, EVP_md5(), NULL), 1);
    assert_int_equal(mdlen, RADIUS_AUTH_LEN);
}

/* A wrong Message-Authenticator under a right Response Authenticator. */
static void test_response_bad_ma(void **state)
{
    static struct radius_builder b;
    int n;

    (void)state;
    radius_build_start(&b, RADIUS_ACCESS_ACCEPT, 7);
    n = radius_build_response(&b, RFC_RA, u8(SECRET), SECRET_LEN);
    assert_int_equal(n, 38);
    /* re-signing an untouched packet changes nothing */
    resign(b.buf, 38, RFC_RA);
    parse_ok(b.buf, 38, &pkt);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, true), 1);
    b.buf[30] ^= 0x04;
    resign(b.buf, 38, RFC_RA);
    parse_ok(b.buf, 38, &pkt);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, false), 0);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, true), 0);
}

struct refusal {
    const char *name;
    const uint8_t *data;
    size_t len;
    const char *why; /* a part of the reason */
};

static uint8_t big[RADIUS_MAX_LEN + 64];

/* A header of <len> (the Length field) into big, zeroed after it. */
static void header(uint8_t code, size_t length)
{
    memset(big, 0, sizeof(big));
    big[0] = code;
    big[1] = 42;
    big[2] = (uint8_t)(length >> 8);
    big[3] = (uint8_t)length;
}

static void expect_refused(const uint8_t *data, size_t len, const char *part)
{
    const char *why = NULL;

    assert_int_equal(radius_parse(data, len, &pkt, &why), -1);
    assert_non_null(why);
    if (!strstr(why, part))
        fail_msg("reason \"%s\" lacks \"%s\"", why, part);
    assert_int_equal(pkt.nattrs, 0);
    assert_int_equal(pkt.msg_auth, -1);
}

static void test_parse_refusals(void **state)
{
    (void)state;
    /* fewer than 20 bytes */
    header(1, 20);
    expect_refused(big, 19, "shorter than the 20-byte");
    expect_refused(big, 0, "shorter than the 20-byte");
    expect_refused(NULL, 0, "shorter than the 20-byte");
    /* Length below 20 */
    header(1, 19);
    expect_refused(big, 20, "below 20");
    header(1, 0);
    expect_refused(big, 64, "below 20");
    /* Length above 4096, even in a datagram that long */
    header(1, RADIUS_MAX_LEN + 1);
    expect_refused(big, RADIUS_MAX_LEN + 1, "above 4096");
    header(1, 0xffff);
    expect_refused(big, sizeof(big), "above 4096");
    /* Length beyond the datagram */
    header(1, 30);
    expect_refused(big, 29, "beyond the datagram");
    /* one byte left: no room for an attribute's header */
    header(1, 21);
    big[20] = RADIUS_USER_NAME;
    expect_refused(big, 21, "cut short");
    /* attribute Length 0 and 1 */
    header(1, 22);
    big[20] = RADIUS_USER_NAME;
    big[21] = 1;
    expect_refused(big, 22, "attribute Length below 2");
    big[21] = 0;
    expect_refused(big, 22, "attribute Length below 2");
    /* an attribute past Length (though within the datagram) */
    header(1, 26);
    big[20] = RADIUS_USER_NAME;
    big[21] = 7;
    expect_refused(big, 40, "runs past");
    header(1, 26);
    big[20] = RADIUS_USER_NAME;
    big[21] = 2;
    big[22] = RADIUS_STATE;
    big[23] = 255;
    expect_refused(big, sizeof(big), "runs past");
    /* 257 attributes */
    header(1, RADIUS_HDR_LEN + 2 * (RADIUS_MAX_ATTRS + 1));
    for (size_t i = 0; i <= RADIUS_MAX_ATTRS; i++) {
        big[RADIUS_HDR_LEN + 2 * i] = RADIUS_PROXY_STATE;
        big[RADIUS_HDR_LEN + 2 * i + 1] = 2;
    }
    expect_refused(big, RADIUS_HDR_LEN + 2 * (RADIUS_MAX_ATTRS + 1), "more than 256");
    /* ... and 256 are fine */
    header(1, RADIUS_HDR_LEN + 2 * RADIUS_MAX_ATTRS);
    for (size_t i = 0; i < RADIUS_MAX_ATTRS; i++) {
        big[RADIUS_HDR_LEN + 2 * i] = RADIUS_PROXY_STATE;
        big[RADIUS_HDR_LEN + 2 * i + 1] = 2;
    }
    parse_ok(big, RADIUS_HDR_LEN + 2 * RADIUS_MAX_ATTRS, &pkt);
    assert_int_equal(pkt.nattrs, RADIUS_MAX_ATTRS);
    /* Message-Authenticator of 15 and 17 bytes, and twice */
    header(1, 20 + 17);
    big[20] = RADIUS_MESSAGE_AUTHENTICATOR;
    big[21] = 17;
    expect_refused(big, 37, "not 16 bytes");
    header(1, 20 + 19);
    big[20] = RADIUS_MESSAGE_AUTHENTICATOR;
    big[21] = 19;
    expect_refused(big, 39, "not 16 bytes");
    header(1, 20 + 18 + 6 + 18);
    big[20] = RADIUS_MESSAGE_AUTHENTICATOR;
    big[21] = 18;
    big[38] = RADIUS_USER_NAME;
    big[39] = 6;
    big[44] = RADIUS_MESSAGE_AUTHENTICATOR;
    big[45] = 18;
    expect_refused(big, 62, "twice");
}

static void test_parse_accepts(void **state)
{
    uint8_t padded[sizeof(rfc_request) + 40];

    (void)state;
    /* RFC 2865 §3: octets past Length are padding, ignored */
    memcpy(padded, rfc_request, sizeof(rfc_request));
    memset(padded + sizeof(rfc_request), 0xff, sizeof(padded) - sizeof(rfc_request));
    parse_ok(padded, sizeof(padded), &pkt);
    assert_int_equal(pkt.length, sizeof(rfc_request));
    assert_int_equal(pkt.nattrs, 4);
    /* the Length may also stop before the attributes the datagram holds */
    padded[3] = 26;
    parse_ok(padded, sizeof(padded), &pkt);
    assert_int_equal(pkt.nattrs, 1);
    assert_int_equal(pkt.attrs[0].type, RADIUS_USER_NAME);
    /* no attributes at all; an empty attribute; Length 4096 exactly */
    header(RADIUS_STATUS_SERVER, 20);
    parse_ok(big, 20, &pkt);
    assert_int_equal(pkt.nattrs, 0);
    assert_int_equal(pkt.code, RADIUS_STATUS_SERVER);
    assert_int_equal(pkt.id, 42);
    header(1, 22);
    big[20] = RADIUS_STATE;
    big[21] = 2;
    parse_ok(big, 22, &pkt);
    assert_int_equal(pkt.attrs[0].len, 0);
    header(1, RADIUS_MAX_LEN);
    for (size_t off = RADIUS_HDR_LEN; off < RADIUS_MAX_LEN; off += 255) {
        big[off] = RADIUS_PROXY_STATE;
        big[off + 1] = (uint8_t)(RADIUS_MAX_LEN - off < 255 ? RADIUS_MAX_LEN - off : 255);
    }
    parse_ok(big, RADIUS_MAX_LEN, &pkt);
    assert_int_equal(pkt.nattrs, 16); /* 4076 bytes: 15 of 255, one of 251 */
    assert_int_equal(pkt.attrs[15].len, 249);
    assert_int_equal(pkt.length, RADIUS_MAX_LEN);
}

static void test_builder_limits(void **state)
{
    static struct radius_builder b;
    uint8_t value[RADIUS_ATTR_MAX + 1];
    size_t room;
    int n;

    (void)state;
    memset(value, 'v', sizeof(value));
    radius_build_start(&b, RADIUS_ACCESS_ACCEPT, 1);
    assert_int_equal(b.len, RADIUS_HDR_LEN + 18);
    /* too long a value, and a second Message-Authenticator: refused, and the packet fails */
    assert_int_equal(radius_build_add(&b, RADIUS_REPLY_MESSAGE, value, RADIUS_ATTR_MAX + 1), -1);
    assert_true(b.overflow);
    assert_int_equal(radius_build_response(&b, RFC_RA, u8(SECRET), SECRET_LEN), -1);
    radius_build_start(&b, RADIUS_ACCESS_ACCEPT, 1);
    assert_int_equal(radius_build_add(&b, RADIUS_MESSAGE_AUTHENTICATOR, value, 16), -1);
    assert_int_equal(radius_build_request(&b, RFC_RA, u8(SECRET), SECRET_LEN), -1);

    /* fill to exactly 4096 bytes */
    radius_build_start(&b, RADIUS_ACCESS_ACCEPT, 1);
    while ((room = RADIUS_MAX_LEN - b.len) > 0) {
        size_t len = room - 2 > RADIUS_ATTR_MAX ? RADIUS_ATTR_MAX : room - 2;

        assert_int_equal(radius_build_add(&b, RADIUS_REPLY_MESSAGE, value, len), 0);
    }
    assert_false(b.overflow);
    n = radius_build_response(&b, RFC_RA, u8(SECRET), SECRET_LEN);
    assert_int_equal(n, RADIUS_MAX_LEN);
    parse_ok(b.buf, (size_t)n, &pkt);
    assert_int_equal(radius_check_response(&pkt, RFC_RA, u8(SECRET), SECRET_LEN, true), 1);
    /* not even an empty attribute more */
    assert_int_equal(radius_build_add(&b, RADIUS_STATE, NULL, 0), -1);
    assert_true(b.overflow);
    assert_int_equal(radius_build_response(&b, RFC_RA, u8(SECRET), SECRET_LEN), -1);

    /* secrets outside 1..128 bytes */
    radius_build_start(&b, RADIUS_ACCESS_REQUEST, 1);
    assert_int_equal(radius_build_request(&b, RFC_RA, u8(SECRET), 0), -1);
    memset(value, 's', sizeof(value));
    assert_int_equal(radius_build_request(&b, RFC_RA, value, RADIUS_SECRET_MAX + 1), -1);
    assert_int_equal(radius_build_request(&b, RFC_RA, value, RADIUS_SECRET_MAX), 38);
    parse_ok(b.buf, 38, &pkt);
    assert_int_equal(radius_check_request_ma(&pkt, value, RADIUS_SECRET_MAX), 1);
}

static void test_password_edges(void **state)
{
    uint8_t hidden[RADIUS_PASSWORD_MAX + 16];
    char pw[RADIUS_PASSWORD_MAX + 2], out[RADIUS_PASSWORD_MAX + 1];
    static const struct {
        size_t len, hidden;
    } sizes[] = { { 0, 16 },  { 1, 16 },  { 15, 16 },   { 16, 16 },   { 17, 32 },   { 31, 32 },
                  { 32, 32 }, { 33, 48 }, { 112, 112 }, { 113, 128 }, { 127, 128 }, { 128, 128 } };
    struct radius_attr a = { RADIUS_USER_PASSWORD, 0, hidden };
    int n;

    (void)state;
    memset(pw, 'p', sizeof(pw));
    for (size_t i = 0; i < MFA_ARRAY_LEN(sizes); i++) {
        n = radius_encode_password(pw, sizes[i].len, RFC_RA, u8(SECRET), SECRET_LEN, hidden,
                                   sizeof(hidden));
        assert_int_equal(n, (int)sizes[i].hidden);
        a.len = (uint8_t)n;
        assert_int_equal(
            radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, sizeof(out)),
            (int)sizes[i].len);
        assert_int_equal(strlen(out), sizes[i].len);
        assert_memory_equal(out, pw, sizes[i].len);
    }
    /* 129 bytes are refused; so is a buffer smaller than the hidden value */
    assert_int_equal(
        radius_encode_password(pw, 129, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden)),
        -1);
    assert_int_equal(radius_encode_password(pw, 17, RFC_RA, u8(SECRET), SECRET_LEN, hidden, 31),
                     -1);
    assert_int_equal(radius_encode_password(pw, 16, RFC_RA, u8(SECRET), 0, hidden, 16), -1);
    /* a NUL inside a password cannot be told from the padding */
    assert_int_equal(
        radius_encode_password("ab\0cd", 5, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden)),
        -1);

    /* decode: lengths that are not a multiple of 16 in 16..128 */
    n = radius_encode_password(pw, 128, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden));
    assert_int_equal(n, 128);
    static const uint8_t bad_lens[] = { 0, 1, 15, 17, 31, 100, 127, 144 };
    for (size_t i = 0; i < sizeof(bad_lens); i++) {
        a.len = bad_lens[i];
        assert_int_equal(
            radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, sizeof(out)), -1);
    }
    /* decode into too small a buffer: 128 bytes and the NUL need 129 */
    a.len = 128;
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, 128), -1);
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, 129), 128);
    /* "abc" fits in 4 bytes, not in 3 */
    n = radius_encode_password("abc", 3, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden));
    a.len = (uint8_t)n;
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, 3), -1);
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, 4), 3);
    assert_string_equal(out, "abc");
    /* "ab\0cd": a NUL before the padding; made by flipping the first block's cipher byte
     * (c = p xor b, so flipping 'X' to NUL flips the same bits of c) */
    n = radius_encode_password("abXcd", 5, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden));
    hidden[2] ^= 'X';
    a.len = (uint8_t)n;
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, sizeof(out)),
                     -1);
    /* all padding: the empty password */
    n = radius_encode_password("", 0, RFC_RA, u8(SECRET), SECRET_LEN, hidden, sizeof(hidden));
    a.len = (uint8_t)n;
    assert_int_equal(radius_decode_password(&a, RFC_RA, u8(SECRET), SECRET_LEN, out, 1), 0);
    assert_string_equal(out, "");
    /* the wrong secret yields garbage, not the password */
    n = radius_encode_password("arctangent", 10, RFC_RA, u8(SECRET), SECRET_LEN, hidden,
                               sizeof(hidden));
    a.len = (uint8_t)n;
    n = radius_decode_password(&a, RFC_RA, u8("xyzzy5460"), SECRET_LEN, out, sizeof(out));
    assert_true(n < 0 || strcmp(out, "arctangent") != 0);
}

/* xorshift64: reproducible "random" secrets and passwords */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint8_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static void test_password_round_trips(void **state)
{
    uint8_t secret[RADIUS_SECRET_MAX], auth[RADIUS_AUTH_LEN], hidden[RADIUS_PASSWORD_MAX];
    char pw[RADIUS_PASSWORD_MAX], out[RADIUS_PASSWORD_MAX + 1];
    struct radius_attr a = { RADIUS_USER_PASSWORD, 0, hidden };

    (void)state;
    for (int round = 0; round < 4; round++) {
        for (size_t len = 0; len <= RADIUS_PASSWORD_MAX; len++) {
            size_t slen = 1 + rnd() % RADIUS_SECRET_MAX;
            int n;

            for (size_t i = 0; i < slen; i++)
                secret[i] = rnd();
            for (size_t i = 0; i < sizeof(auth); i++)
                auth[i] = rnd();
            for (size_t i = 0; i < len; i++)
                pw[i] = (char)(1 + rnd() % 255); /* any byte but NUL */
            n = radius_encode_password(pw, len, auth, secret, slen, hidden, sizeof(hidden));
            assert_int_equal(n, len == 0 ? 16 : (int)((len + 15) / 16 * 16));
            a.len = (uint8_t)n;
            assert_int_equal(radius_decode_password(&a, auth, secret, slen, out, sizeof(out)),
                             (int)len);
            assert_memory_equal(out, pw, len);
            assert_int_equal(out[len], '\0');
        }
    }
}

static void test_code_names(void **state)
{
    char buf[16];

    (void)state;
    assert_string_equal(radius_code_name(RADIUS_ACCESS_REQUEST, buf, sizeof(buf)),
                        "Access-Request");
    assert_string_equal(radius_code_name(RADIUS_ACCESS_CHALLENGE, buf, sizeof(buf)),
                        "Access-Challenge");
    assert_string_equal(radius_code_name(RADIUS_STATUS_SERVER, buf, sizeof(buf)), "Status-Server");
    assert_string_equal(radius_code_name(0, buf, sizeof(buf)), "code-0");
    assert_string_equal(radius_code_name(40, buf, sizeof(buf)), "code-40");
    assert_string_equal(radius_code_name(255, buf, sizeof(buf)), "code-255");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2865_example),
        cmocka_unit_test(test_request_ma),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_response_bad_ma),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_builder_limits),
        cmocka_unit_test(test_password_edges),
        cmocka_unit_test(test_password_round_trips),
        cmocka_unit_test(test_code_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
