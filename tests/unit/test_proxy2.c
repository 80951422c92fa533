/*
 * PROXY protocol v2 headers: a header written byte by byte from
 * proxy-protocol.txt §2.2, IPv4 and IPv6 round trips, LOCAL, TLVs stepped
 * over, and every refusal of the parser and the writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "netaddr.h"
#include "proxy2.h"

/*
 * By hand from §2.2: a UDP datagram from the NAS 192.0.2.10 port 40000 to
 * the front 198.51.100.1 port 1812, followed by 4 bytes of payload.
 */
static const uint8_t spec_v4[] = {
    /* signature */
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    /* version 2, command PROXY */
    0x21,
    /* AF_INET, DGRAM */
    0x12,
    /* 12 bytes of addresses follow */
    0x00, 0x0C,
    /* src_addr 192.0.2.10, dst_addr 198.51.100.1 */
    0xC0, 0x00, 0x02, 0x0A, 0xC6, 0x33, 0x64, 0x01,
    /* src_port 40000, dst_port 1812 */
    0x9C, 0x40, 0x07, 0x14,
    /* the payload: a RADIUS header's start */
    0x01, 0x07, 0x00, 0x14
};

static void addr(const char *text, int port, struct sockaddr_storage *ss)
{
    assert_int_not_equal(netaddr_make(text, port, ss), 0);
}

static void expect_addr(const struct sockaddr_storage *ss, const char *text, int port)
{
    char buf[NETADDR_TEXT_MAX];

    assert_string_equal(netaddr_text((const struct sockaddr *)ss, buf, sizeof(buf)), text);
    assert_int_equal(netaddr_port((const struct sockaddr *)ss), port);
}

static void expect_refused(const uint8_t *data, size_t len, const char *part)
{
    struct proxy2 h;
    const char *why = NULL;

    assert_int_equal(proxy2_parse(data, len, &h, &why), -1);
    assert_non_null(why);
    if (!strstr(why, part))
        fail_msg("reason \"%s\" lacks \"%s\"", why, part);
    assert_false(h.local);
    assert_int_equal(h.header_len, 0);
}

static void test_spec_vector(void **state)
{
    struct sockaddr_storage src, dst;
    struct proxy2 h;
    const char *why = NULL;
    uint8_t out[PROXY2_MAX_OUT];

    (void)state;
    assert_true(proxy2_has_signature(spec_v4, sizeof(spec_v4)));
    assert_int_equal(proxy2_parse(spec_v4, sizeof(spec_v4), &h, &why), 0);
    assert_false(h.local);
    assert_int_equal(h.socktype, SOCK_DGRAM);
    assert_int_equal(h.header_len, 28);
    assert_int_equal(h.src.ss_family, AF_INET);
    expect_addr(&h.src, "192.0.2.10", 40000);
    expect_addr(&h.dst, "198.51.100.1", 1812);
    assert_int_equal(spec_v4[h.header_len], 0x01); /* the payload follows */

    addr("192.0.2.10", 40000, &src);
    addr("198.51.100.1", 1812, &dst);
    assert_int_equal(proxy2_write(out, sizeof(out), (struct sockaddr *)&src,
                                  (struct sockaddr *)&dst, SOCK_DGRAM),
                     28);
    assert_memory_equal(out, spec_v4, 28);
}

static void round_trip(const char *s, int sport, const char *d, int dport, int socktype,
                       int want_len)
{
    struct sockaddr_storage src, dst;
    struct proxy2 h;
    uint8_t out[PROXY2_MAX_OUT + 8];
    const char *why = NULL;
    int n;

    addr(s, sport, &src);
    addr(d, dport, &dst);
    n = proxy2_write(out, sizeof(out), (struct sockaddr *)&src, (struct sockaddr *)&dst, socktype);
    assert_int_equal(n, want_len);
    assert_true(n <= PROXY2_MAX_OUT);
    assert_int_equal(out[12], 0x21);
    /* with a payload after it, and without */
    memcpy(out + n, "RADIUS!!", 8);
    assert_int_equal(proxy2_parse(out, (size_t)n + 8, &h, &why), 0);
    assert_int_equal(h.header_len, (size_t)n);
    assert_int_equal(proxy2_parse(out, (size_t)n, &h, &why), 0);
    assert_false(h.local);
    assert_int_equal(h.socktype, socktype);
    expect_addr(&h.src, s, sport);
    expect_addr(&h.dst, d, dport);
    assert_true(netaddr_same_host((struct sockaddr *)&h.src, (struct sockaddr *)&src));
    assert_true(netaddr_same_host((struct sockaddr *)&h.dst, (struct sockaddr *)&dst));
}

static void test_round_trips(void **state)
{
    (void)state;
    round_trip("192.0.2.10", 40000, "198.51.100.1", 1812, SOCK_DGRAM, 28);
    round_trip("0.0.0.0", 0, "255.255.255.255", 65535, SOCK_DGRAM, 28);
    round_trip("10.1.2.3", 1, "10.3.2.1", 2, SOCK_STREAM, 28);
    round_trip("2001:db8::10", 40000, "2001:db8:ffff::1", 1812, SOCK_DGRAM, 52);
    round_trip("::1", 65535, "fe80::1:2:3:4", 1, SOCK_DGRAM, 52);
    round_trip("::ffff:192.0.2.1", 1645, "2001:db8::1", 18120, SOCK_STREAM, 52);
}

static void test_local(void **state)
{
    /* LOCAL with UNSPEC and no block, with a payload after it */
    static const uint8_t local[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55,
                                     0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00, 0x01, 0x02 };
    uint8_t buf[64];
    struct proxy2 h;
    const char *why = NULL;

    (void)state;
    assert_int_equal(proxy2_parse(local, sizeof(local), &h, &why), 0);
    assert_true(h.local);
    assert_int_equal(h.socktype, 0);
    assert_int_equal(h.header_len, 16);
    assert_int_equal(h.src.ss_family, 0);
    assert_int_equal(h.dst.ss_family, 0);
    assert_int_equal(proxy2_parse(local, 16, &h, &why), 0);
    /* LOCAL ignores the family and skips its block (§2.2), even one of UNIX (0x31) */
    memcpy(buf, spec_v4, 16);
    buf[12] = 0x20;
    buf[13] = 0x31;
    buf[14] = 0;
    buf[15] = 5;
    memset(buf + 16, 0xAA, 5);
    assert_int_equal(proxy2_parse(buf, 21, &h, &why), 0);
    assert_true(h.local);
    assert_int_equal(h.header_len, 21);
    /* but its length still has to fit */
    expect_refused(buf, 20, "runs past the datagram");
}

static void test_tlvs_skipped(void **state)
{
    uint8_t buf[128];
    struct proxy2 h;
    const char *why = NULL;
    /* PP2_TYPE_AUTHORITY "nas", PP2_TYPE_NOOP of 2, and a TLV claiming more than remains */
    static const uint8_t tlvs[] = { 0x02, 0x00, 0x03, 'n',  'a',  's',  0x04,
                                    0x00, 0x02, 0x00, 0x00, 0x05, 0xFF, 0xFF };

    (void)state;
    memcpy(buf, spec_v4, 28);
    memcpy(buf + 28, tlvs, sizeof(tlvs));
    buf[15] = (uint8_t)(12 + sizeof(tlvs));
    memcpy(buf + 28 + sizeof(tlvs), "payload", 7);
    assert_int_equal(proxy2_parse(buf, 28 + sizeof(tlvs) + 7, &h, &why), 0);
    assert_int_equal(h.header_len, 28 + sizeof(tlvs));
    expect_addr(&h.src, "192.0.2.10", 40000);
    expect_addr(&h.dst, "198.51.100.1", 1812);
    assert_memory_equal(buf + h.header_len, "payload", 7);
}

static void test_refusals(void **state)
{
    uint8_t buf[128];

    (void)state;
    /* signature: wrong byte, too short to hold it, empty */
    for (size_t i = 0; i < PROXY2_SIG_LEN; i++) {
        memcpy(buf, spec_v4, sizeof(spec_v4));
        buf[i] ^= 0x40;
        expect_refused(buf, sizeof(spec_v4), "signature");
        assert_false(proxy2_has_signature(buf, sizeof(spec_v4)));
    }
    expect_refused(spec_v4, 11, "signature");
    expect_refused(spec_v4, 0, "signature");
    expect_refused(NULL, 0, "signature");
    assert_false(proxy2_has_signature(spec_v4, 11));
    /* the signature without the rest of the fixed header */
    expect_refused(spec_v4, 12, "shorter than 16");
    expect_refused(spec_v4, 15, "shorter than 16");
    /* version 1 (0x11), version 3 */
    memcpy(buf, spec_v4, sizeof(spec_v4));
    buf[12] = 0x11;
    expect_refused(buf, sizeof(spec_v4), "version");
    buf[12] = 0x31;
    expect_refused(buf, sizeof(spec_v4), "version");
    /* command 2 (0x22), 0xF */
    buf[12] = 0x22;
    expect_refused(buf, sizeof(spec_v4), "command");
    buf[12] = 0x2F;
    expect_refused(buf, sizeof(spec_v4), "command");
    /* family UNIX (0x31), UNSPEC with PROXY (0x00), unknown (0x41) */
    memcpy(buf, spec_v4, sizeof(spec_v4));
    buf[13] = 0x31;
    expect_refused(buf, sizeof(spec_v4), "family");
    buf[13] = 0x00;
    expect_refused(buf, sizeof(spec_v4), "family");
    buf[13] = 0x41;
    expect_refused(buf, sizeof(spec_v4), "family");
    /* transport UNSPEC (0x10), unknown (0x13) */
    buf[13] = 0x10;
    expect_refused(buf, sizeof(spec_v4), "transport");
    buf[13] = 0x23;
    expect_refused(buf, sizeof(spec_v4), "transport");
    /* a length beyond the datagram: by one byte, and the largest */
    memcpy(buf, spec_v4, sizeof(spec_v4));
    expect_refused(buf, 27, "runs past the datagram");
    buf[14] = 0xFF;
    buf[15] = 0xFF;
    expect_refused(buf, sizeof(spec_v4), "runs past the datagram");
    /* an address block too short for the family: INET with 11, INET6 with 35 or 12 */
    memcpy(buf, spec_v4, sizeof(spec_v4));
    buf[15] = 11;
    expect_refused(buf, sizeof(spec_v4), "too short");
    buf[15] = 0;
    expect_refused(buf, sizeof(spec_v4), "too short");
    memset(buf + 16, 0, 64);
    buf[13] = 0x22;
    buf[15] = 35;
    expect_refused(buf, 16 + 36, "too short");
    buf[15] = 12;
    expect_refused(buf, 16 + 36, "too short");
    buf[15] = 36;
    {
        struct proxy2 h;
        const char *why;

        assert_int_equal(proxy2_parse(buf, 16 + 36, &h, &why), 0);
        expect_addr(&h.src, "::", 0);
    }
}

static void test_write_refusals(void **state)
{
    struct sockaddr_storage v4, v6, other;
    uint8_t out[PROXY2_MAX_OUT];

    (void)state;
    addr("192.0.2.1", 1812, &v4);
    addr("2001:db8::1", 1812, &v6);
    memset(&other, 0, sizeof(other));
    other.ss_family = AF_UNIX;
    /* mixed families, unsupported families */
    assert_int_equal(
        proxy2_write(out, sizeof(out), (struct sockaddr *)&v4, (struct sockaddr *)&v6, SOCK_DGRAM),
        -1);
    assert_int_equal(
        proxy2_write(out, sizeof(out), (struct sockaddr *)&v6, (struct sockaddr *)&v4, SOCK_DGRAM),
        -1);
    assert_int_equal(proxy2_write(out, sizeof(out), (struct sockaddr *)&other,
                                  (struct sockaddr *)&other, SOCK_DGRAM),
                     -1);
    /* a transport other than DGRAM or STREAM */
    assert_int_equal(
        proxy2_write(out, sizeof(out), (struct sockaddr *)&v4, (struct sockaddr *)&v4, SOCK_RAW),
        -1);
    /* too small a buffer: by one byte */
    assert_int_equal(
        proxy2_write(out, 27, (struct sockaddr *)&v4, (struct sockaddr *)&v4, SOCK_DGRAM), -1);
    assert_int_equal(
        proxy2_write(out, 28, (struct sockaddr *)&v4, (struct sockaddr *)&v4, SOCK_DGRAM), 28);
    assert_int_equal(
        proxy2_write(out, 51, (struct sockaddr *)&v6, (struct sockaddr *)&v6, SOCK_DGRAM), -1);
    assert_int_equal(
        proxy2_write(out, 52, (struct sockaddr *)&v6, (struct sockaddr *)&v6, SOCK_DGRAM), 52);
    assert_int_equal(
        proxy2_write(out, 0, (struct sockaddr *)&v4, (struct sockaddr *)&v4, SOCK_DGRAM), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vector), cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_local),       cmocka_unit_test(test_tlvs_skipped),
        cmocka_unit_test(test_refusals),    cmocka_unit_test(test_write_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
