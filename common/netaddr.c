/*
 * Numeric addresses and prefixes; see netaddr.h.
 *
 * Addresses are compared as bytes in network order. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) is the IPv4 host it maps: a
 * dual-stack socket reports IPv4 peers that way, and a client list written
 * with IPv4 prefixes must still match them. Conversely an IPv4 address is
 * matched against an IPv6 prefix in its mapped form.
 *
 * The prefix syntax is strict, so a typo cannot widen a client list: the
 * address as inet_pton() reads it (no names, no zone, no spaces), then
 * optionally "/" and the prefix length in decimal, "0" or without a leading
 * zero ("/08" is refused: some tools read it as octal), at most 32 for IPv4
 * and 128 for IPv6; no bit of the address may be set past the prefix length.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Reads the prefix length <s>: "0", or 1 to 3 digits without a leading zero, at most <max>. */
static bool parse_bits(const char *s, int max, int *bits)
{
    int v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *bits = v;
    return true;
}

/* True when the first <bits> bits of <a> and <b> are equal. */
static bool same_prefix(const uint8_t *a, const uint8_t *b, int bits)
{
    int full = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* True when no bit of the <nbytes> bytes of <a> is set past the first <bits>. */
static bool host_bits_clear(const uint8_t *a, int nbytes, int bits)
{
    for (int i = 0; i < nbytes; i++) {
        int keep = bits - 8 * i;
        uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));

        if (a[i] & (uint8_t)~mask)
            return false;
    }
    return true;
}

int netaddr_parse_prefix(const char *text, struct netaddr_prefix *out, const char **why)
{
    char addr[NETADDR_TEXT_MAX];
    const char *slash, *reason;
    size_t alen;
    int max;

    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0') {
        reason = "empty address";
        goto fail;
    }
    slash = strchr(text, '/');
    alen = slash ? (size_t)(slash - text) : strlen(text);
    if (alen == 0) {
        reason = "no address before the prefix length";
        goto fail;
    }
    if (alen >= sizeof(addr)) {
        reason = "not a numeric IPv4 or IPv6 address";
        goto fail;
    }
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        reason = "not a numeric IPv4 or IPv6 address";
        goto fail;
    }
    out->bits = max;
    if (slash && !parse_bits(slash + 1, max, &out->bits)) {
        reason = max == 32 ? "prefix length is not a number from 0 to 32"
                           : "prefix length is not a number from 0 to 128";
        goto fail;
    }
    if (!host_bits_clear(out->addr, max / 8, out->bits)) {
        reason = "address has bits set past the prefix length";
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    if (why)
        *why = reason;
    return -1;
}

/*
 * The host of <sa> into <out>: AF_INET with 4 bytes (also for a v4-mapped
 * IPv6 address) or AF_INET6 with 16. Returns the family, or 0 for others.
 */
static int host_of(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

        if (memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0) {
            memcpy(out, a + 12, 4);
            return AF_INET;
        }
        memcpy(out, a, 16);
        return AF_INET6;
    }
    return 0;
}

bool netaddr_prefix_match(const struct netaddr_prefix *p, const struct sockaddr *sa)
{
    uint8_t a[16];
    int family = host_of(sa, a);

    if (family == AF_INET && p->family == AF_INET6) {
        /* an IPv4 host against an IPv6 prefix: in its mapped form */
        memmove(a + 12, a, 4);
        memcpy(a, v4_mapped, sizeof(v4_mapped));
        family = AF_INET6;
    }
    return family != 0 && family == p->family && same_prefix(a, p->addr, p->bits);
}

bool netaddr_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    uint8_t ha[16], hb[16];
    int fa = host_of(a, ha), fb = host_of(b, hb);

    return fa != 0 && fa == fb && memcmp(ha, hb, fa == AF_INET ? 4 : 16) == 0;
}

const char *netaddr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    const void *addr;
    socklen_t len = size > NETADDR_TEXT_MAX ? NETADDR_TEXT_MAX : (socklen_t)size;

    if (sa == NULL || buf == NULL)
        return "?";
    if (sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    else
        return "?";
    return inet_ntop(sa->sa_family, addr, buf, len) ? buf : "?";
}

int netaddr_port(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

socklen_t netaddr_make(const char *address, int port, struct sockaddr_storage *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

    memset(out, 0, sizeof(*out));
    if (address == NULL || port < 0 || port > 65535)
        return 0;
    if (inet_pton(AF_INET, address, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        return sizeof(*sin);
    }
    if (inet_pton(AF_INET6, address, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return sizeof(*sin6);
    }
    memset(out, 0, sizeof(*out));
    return 0;
}

bool netaddr_numeric(const char *text)
{
    struct sockaddr_storage ss;

    return text && netaddr_make(text, 0, &ss) != 0;
}

bool netaddr_is_loopback(const char *numeric)
{
    struct sockaddr_storage ss;
    const struct sockaddr_in *in;

    if (!numeric || netaddr_make(numeric, 0, &ss) == 0)
        return false;
    /* A v4-mapped address becomes IPv4; ::1 has no IPv4 form and stays IPv6. */
    if (ss.ss_family == AF_INET6 && netaddr_to_family(&ss, AF_INET) == 0)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
    in = (const struct sockaddr_in *)&ss;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
}

int netaddr_parse_list(const char *text, struct sockaddr_storage *out, size_t max, size_t *count,
                       char *bad, const char **why)
{
    const char *p = text;

    *count = 0;
    *bad = '\0';
    while (*p) {
        size_t len = strcspn(p, ",");

        snprintf(bad, NETADDR_TEXT_MAX + 1, "%.*s",
                 (int)(len <= NETADDR_TEXT_MAX ? len : NETADDR_TEXT_MAX), p);
        if (len == 0) {
            *why = "an empty entry";
            return -1;
        }
        if (*count >= max) {
            *why = "too many addresses";
            return -1;
        }
        if (len > NETADDR_TEXT_MAX || !netaddr_make(bad, 0, &out[*count])) {
            *why = "not a numeric IPv4 or IPv6 address";
            return -1;
        }
        (*count)++;
        p += len;
        if (*p == ',' && !*++p) {
            *bad = '\0';
            *why = "an empty entry";
            return -1;
        }
    }
    *bad = '\0';
    return 0;
}

socklen_t netaddr_to_family(struct sockaddr_storage *ss, int family)
{
    struct sockaddr_in in = { .sin_family = AF_INET };
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
    uint8_t host[16];
    int have = host_of((const struct sockaddr *)ss, host);
    uint16_t port = (uint16_t)netaddr_port((const struct sockaddr *)ss);

    if (have == 0 || (family == AF_INET && have != AF_INET))
        return 0;
    if (family == AF_INET) {
        in.sin_port = htons(port);
        memcpy(&in.sin_addr, host, 4);
        memset(ss, 0, sizeof(*ss));
        memcpy(ss, &in, sizeof(in));
        return sizeof(in);
    }
    if (family != AF_INET6)
        return 0;
    in6.sin6_port = htons(port);
    if (have == AF_INET) {
        memcpy(in6.sin6_addr.s6_addr, v4_mapped, sizeof(v4_mapped));
        memcpy(in6.sin6_addr.s6_addr + 12, host, 4);
    } else {
        memcpy(in6.sin6_addr.s6_addr, host, 16);
    }
    if (ss->ss_family == AF_INET6) /* keep the scope of a real IPv6 address */
        in6.sin6_scope_id = ((const struct sockaddr_in6 *)ss)->sin6_scope_id;
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &in6, sizeof(in6));
    return sizeof(in6);
}
