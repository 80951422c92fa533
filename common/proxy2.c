/*
 * PROXY protocol version 2 headers; see proxy2.h.
 *
 * The parser reads only the 16 fixed bytes and the address block the family
 * calls for, each after checking that the datagram holds it; the rest of the
 * block (TLVs) is stepped over by its declared length. Command LOCAL is
 * accepted with any family, whose block is skipped unread (spec §2.2: "the
 * receiver must ... discard the protocol block including the family which is
 * ignored"). Command PROXY is accepted only with TCP or UDP over IPv4 or
 * IPv6: UNSPEC and UNIX carry no address a RADIUS answer could go to.
 */
#include "proxy2.h"

#include <netinet/in.h>
#include <string.h>

/* proxy-protocol.txt §2.2 */
static const uint8_t proxy2_sig[PROXY2_SIG_LEN] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

#define P2_VERSION   0x20 /* high nibble of the 13th byte */
#define P2_CMD_LOCAL 0x00
#define P2_CMD_PROXY 0x01
#define P2_AF_INET   0x10 /* high nibble of the 14th byte */
#define P2_AF_INET6  0x20
#define P2_STREAM    0x01 /* low nibble */
#define P2_DGRAM     0x02
#define P2_INET_LEN  12 /* src addr, dst addr, src port, dst port */
#define P2_INET6_LEN 36

bool proxy2_has_signature(const uint8_t *data, size_t len)
{
    return data != NULL && len >= PROXY2_SIG_LEN && memcmp(data, proxy2_sig, PROXY2_SIG_LEN) == 0;
}

/* Fills <out> from the address at <addr> (4 or 16 bytes) and the port at <port> (network order). */
static void fill_addr(struct sockaddr_storage *out, int family, const uint8_t *addr,
                      const uint8_t *port)
{
    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;

        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
        memcpy(&sin->sin_port, port, 2);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, addr, 16);
        memcpy(&sin6->sin6_port, port, 2);
    }
}

int proxy2_parse(const uint8_t *data, size_t len, struct proxy2 *out, const char **why)
{
    const char *reason;
    size_t blen, alen;
    uint8_t cmd, fam;
    int family;

    memset(out, 0, sizeof(*out));
    if (!proxy2_has_signature(data, len)) {
        reason = "no PROXY v2 signature";
        goto fail;
    }
    if (len < PROXY2_MIN_LEN) {
        reason = "PROXY header shorter than 16 bytes";
        goto fail;
    }
    /* §2.2: the 13th byte is the version (high nibble, must be 2) and the command */
    if ((data[12] & 0xF0) != P2_VERSION) {
        reason = "PROXY header version is not 2";
        goto fail;
    }
    cmd = data[12] & 0x0F;
    if (cmd != P2_CMD_LOCAL && cmd != P2_CMD_PROXY) {
        reason = "PROXY header command is neither LOCAL nor PROXY";
        goto fail;
    }
    /* §2.2: the 15th and 16th bytes are the length of the rest, in network order */
    blen = (size_t)data[14] << 8 | data[15];
    if (blen > len - PROXY2_MIN_LEN) {
        reason = "PROXY address block runs past the datagram";
        goto fail;
    }
    out->header_len = PROXY2_MIN_LEN + blen;
    if (cmd == P2_CMD_LOCAL) {
        out->local = true;
        return 0;
    }
    fam = data[13];
    switch (fam & 0xF0) {
    case P2_AF_INET:
        family = AF_INET;
        alen = P2_INET_LEN;
        break;
    case P2_AF_INET6:
        family = AF_INET6;
        alen = P2_INET6_LEN;
        break;
    default:
        reason = "PROXY address family is neither INET nor INET6";
        goto fail;
    }
    switch (fam & 0x0F) {
    case P2_STREAM:
        out->socktype = SOCK_STREAM;
        break;
    case P2_DGRAM:
        out->socktype = SOCK_DGRAM;
        break;
    default:
        reason = "PROXY transport is neither STREAM nor DGRAM";
        goto fail;
    }
    /* §2.2: the block may be longer than the addresses (TLVs), never shorter */
    if (blen < alen) {
        reason = "PROXY address block too short for its family";
        goto fail;
    }
    /* src addr, dst addr, src port, dst port */
    if (family == AF_INET) {
        fill_addr(&out->src, AF_INET, data + 16, data + 24);
        fill_addr(&out->dst, AF_INET, data + 20, data + 26);
    } else {
        fill_addr(&out->src, AF_INET6, data + 16, data + 48);
        fill_addr(&out->dst, AF_INET6, data + 32, data + 50);
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    if (why)
        *why = reason;
    return -1;
}

int proxy2_write(uint8_t *out, size_t size, const struct sockaddr *src, const struct sockaddr *dst,
                 int socktype)
{
    size_t alen;
    uint8_t fam;

    if (out == NULL || src == NULL || dst == NULL || src->sa_family != dst->sa_family)
        return -1;
    if (src->sa_family == AF_INET) {
        fam = P2_AF_INET;
        alen = P2_INET_LEN;
    } else if (src->sa_family == AF_INET6) {
        fam = P2_AF_INET6;
        alen = P2_INET6_LEN;
    } else {
        return -1;
    }
    if (socktype == SOCK_DGRAM)
        fam |= P2_DGRAM;
    else if (socktype == SOCK_STREAM)
        fam |= P2_STREAM;
    else
        return -1;
    if (size < PROXY2_MIN_LEN + alen)
        return -1;
    memcpy(out, proxy2_sig, PROXY2_SIG_LEN);
    out[12] = P2_VERSION | P2_CMD_PROXY;
    out[13] = fam;
    out[14] = 0;
    out[15] = (uint8_t)alen;
    if (src->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src;
        const struct sockaddr_in *d = (const struct sockaddr_in *)dst;

        memcpy(out + 16, &s->sin_addr, 4);
        memcpy(out + 20, &d->sin_addr, 4);
        memcpy(out + 24, &s->sin_port, 2);
        memcpy(out + 26, &d->sin_port, 2);
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
        const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;

        memcpy(out + 16, &s->sin6_addr, 16);
        memcpy(out + 32, &d->sin6_addr, 16);
        memcpy(out + 48, &s->sin6_port, 2);
        memcpy(out + 50, &d->sin6_port, 2);
    }
    return (int)(PROXY2_MIN_LEN + alen);
}
