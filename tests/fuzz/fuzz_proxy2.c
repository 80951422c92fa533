/*
 * Fuzz target for the PROXY protocol v2 parser (common/proxy2.c), which the
 * node runs on every datagram from a balancer, and the writer.
 *
 * The input is one datagram: a PROXY header and, usually, a RADIUS packet.
 * When proxy2_parse() takes it, the header must lie within the datagram; a
 * LOCAL header carries no addresses; a PROXY header's addresses are
 * written again with proxy2_write() and parsed back, and must come out the
 * same (address, port, family, transport). The payload after the header
 * then goes to radius_parse(), as the node does. Besides ASan/UBSan
 * findings the target aborts on any mismatch or broken contract.
 * Seeds: tests/fuzz/corpus/proxy2/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"
#include "proxy2.h"
#include "radius.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static struct radius_packet pkt;

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return a->ss_family == b->ss_family &&
           netaddr_same_host((const struct sockaddr *)a, (const struct sockaddr *)b) &&
           netaddr_port((const struct sockaddr *)a) == netaddr_port((const struct sockaddr *)b);
}

static void rewrite(const struct proxy2 *h)
{
    uint8_t out[PROXY2_MAX_OUT];
    struct proxy2 back;
    const char *why = NULL;
    int n;

    CHECK(h->socktype == SOCK_DGRAM || h->socktype == SOCK_STREAM);
    CHECK(h->src.ss_family == h->dst.ss_family &&
          (h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6));
    n = proxy2_write(out, sizeof(out), (const struct sockaddr *)&h->src,
                     (const struct sockaddr *)&h->dst, h->socktype);
    CHECK(n == (h->src.ss_family == AF_INET ? 28 : 52));
    /* one byte short is refused */
    CHECK(proxy2_write(out, (size_t)n - 1, (const struct sockaddr *)&h->src,
                       (const struct sockaddr *)&h->dst, h->socktype) == -1);
    CHECK(proxy2_parse(out, (size_t)n, &back, &why) == 0);
    CHECK(!back.local && back.header_len == (size_t)n && back.socktype == h->socktype);
    CHECK(same_endpoint(&back.src, &h->src) && same_endpoint(&back.dst, &h->dst));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy2 h;
    const char *why = NULL;

    if (proxy2_parse(data, size, &h, &why) != 0) {
        CHECK(why != NULL && *why && h.header_len == 0 && !h.local);
        return 0;
    }
    CHECK(proxy2_has_signature(data, size));
    CHECK(h.header_len >= PROXY2_MIN_LEN && h.header_len <= size);
    if (h.local)
        CHECK(h.socktype == 0 && h.src.ss_family == 0 && h.dst.ss_family == 0);
    else
        rewrite(&h);
    /* the node reads the rest as a RADIUS packet */
    if (radius_parse(data + h.header_len, size - h.header_len, &pkt, &why) == 0)
        CHECK(pkt.length <= size - h.header_len);
    else
        CHECK(why != NULL);
    return 0;
}
