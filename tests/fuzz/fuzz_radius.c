/*
 * Fuzz target for the RADIUS parser and what reads a parsed packet
 * (common/radius.c): a datagram from any NAS on the network is untrusted.
 *
 * The input is one datagram. When radius_parse() takes it, every attribute
 * must lie within the packet's Length, Message-Authenticator (if any) must
 * be 16 bytes at its recorded index, and the same packet without its
 * padding must parse the same. Then the packet goes through every reader
 * with the fixed secret "xyzzy5461" and the RFC 2865 §7.1 Request
 * Authenticator, so the seeds signed with them reach the success paths:
 * radius_find(), radius_check_request_ma(), radius_decode_password() (a
 * decoded password must encode back to the same bytes when no block of
 * padding is extra), radius_check_response(), and a response echoing a few
 * of its attributes, which must parse and verify. Besides ASan/UBSan
 * findings the target aborts when a result breaks radius.h's contract.
 * Seeds: tests/fuzz/corpus/radius/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "radius.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static const uint8_t secret[] = "xyzzy5461";
#define SECRET_LEN (sizeof(secret) - 1)

/* RFC 2865 §7.1 */
static const uint8_t req_auth[RADIUS_AUTH_LEN] = { 0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57,
                                                   0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4, 0x22, 0x7a };

static struct radius_packet pkt, again;
static struct radius_builder reply;

static void check_layout(const struct radius_packet *p, const uint8_t *data, size_t size)
{
    CHECK(p->data == data && p->length >= RADIUS_HDR_LEN && p->length <= RADIUS_MAX_LEN &&
          p->length <= size && p->authenticator == data + 4);
    CHECK(p->code == data[0] && p->id == data[1]);
    CHECK(p->nattrs <= RADIUS_MAX_ATTRS);
    CHECK(p->msg_auth >= -1 && p->msg_auth < (int)p->nattrs);
    for (size_t i = 0; i < p->nattrs; i++) {
        const struct radius_attr *a = &p->attrs[i];

        CHECK(a->value >= data + RADIUS_HDR_LEN + 2 && a->value + a->len <= data + p->length &&
              a->len <= RADIUS_ATTR_MAX);
        CHECK(a->value[-2] == a->type && a->value[-1] == a->len + 2);
        CHECK((a->type == RADIUS_MESSAGE_AUTHENTICATOR) == ((int)i == p->msg_auth));
        if (i > 0)
            CHECK(a->value == p->attrs[i - 1].value + p->attrs[i - 1].len + 2);
    }
    if (p->msg_auth >= 0)
        CHECK(p->attrs[p->msg_auth].len == RADIUS_AUTH_LEN);
}

static void check_password(const struct radius_packet *p)
{
    const struct radius_attr *a = radius_find(p, RADIUS_USER_PASSWORD);
    char out[RADIUS_PASSWORD_MAX + 1];
    uint8_t hidden[RADIUS_PASSWORD_MAX];
    size_t blocks;
    int n, m;

    if (!a)
        return;
    CHECK(a->type == RADIUS_USER_PASSWORD);
    n = radius_decode_password(a, p->authenticator, secret, SECRET_LEN, out, sizeof(out));
    CHECK(n >= -1 && n <= RADIUS_PASSWORD_MAX);
    if (n < 0)
        return;
    CHECK(a->len % 16 == 0 && a->len >= 16 && (size_t)n < a->len + 1u);
    CHECK(out[n] == '\0' && strlen(out) == (size_t)n);
    /* too small a buffer by one byte */
    CHECK(radius_decode_password(a, p->authenticator, secret, SECRET_LEN, out, (size_t)n) == -1);
    blocks = n == 0 ? 1 : ((size_t)n + 15) / 16;
    m = radius_encode_password(out, (size_t)n, p->authenticator, secret, SECRET_LEN, hidden,
                               sizeof(hidden));
    CHECK(m == (int)(blocks * 16));
    if ((size_t)m == a->len)
        CHECK(memcmp(hidden, a->value, a->len) == 0);
}

/* An answer echoing Proxy-State and a few other attributes, signed, must verify. */
static void check_reply(const struct radius_packet *p)
{
    const char *why = NULL;
    size_t echoed = 0;
    int n;

    radius_build_start(&reply, RADIUS_ACCESS_CHALLENGE, p->id);
    for (size_t i = 0; i < p->nattrs && echoed < 4; i++) {
        const struct radius_attr *a = &p->attrs[i];

        if (a->type == RADIUS_MESSAGE_AUTHENTICATOR)
            continue;
        CHECK(radius_build_add(&reply, a->type, a->value, a->len) == 0);
        echoed++;
    }
    n = radius_build_response(&reply, p->authenticator, secret, SECRET_LEN);
    CHECK(n > 0 && (size_t)n == reply.len);
    CHECK(radius_parse(reply.buf, (size_t)n, &again, &why) == 0);
    CHECK(again.nattrs == echoed + 1 && again.msg_auth == 0 && again.id == p->id);
    CHECK(radius_check_response(&again, p->authenticator, secret, SECRET_LEN, true) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    int rc;

    if (radius_parse(data, size, &pkt, &why) != 0) {
        CHECK(why != NULL && *why);
        return 0;
    }
    check_layout(&pkt, data, size);
    /* the padding after Length changes nothing */
    CHECK(radius_parse(data, pkt.length, &again, &why) == 0 && again.nattrs == pkt.nattrs &&
          again.msg_auth == pkt.msg_auth);

    for (unsigned t = 0; t < 256; t += 17) {
        const struct radius_attr *a = radius_find(&pkt, (uint8_t)t);

        CHECK(a == NULL || (a->type == t && a >= pkt.attrs && a < pkt.attrs + pkt.nattrs));
    }
    rc = radius_check_request_ma(&pkt, secret, SECRET_LEN);
    CHECK(rc >= -1 && rc <= 1 && (rc == 0) == (pkt.msg_auth < 0));
    check_password(&pkt);
    rc = radius_check_response(&pkt, req_auth, secret, SECRET_LEN, false);
    CHECK(rc == 0 || rc == 1);
    if (radius_check_response(&pkt, req_auth, secret, SECRET_LEN, true) == 1)
        CHECK(rc == 1 && pkt.msg_auth >= 0);
    check_reply(&pkt);
    return 0;
}
