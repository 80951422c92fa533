/*
 * Numeric addresses and prefixes: what parses (and to which family, address
 * and length), what is refused and why, prefix matching at the edges, IPv4
 * hosts seen through a dual-stack socket (::ffff:a.b.c.d), and the
 * socket-address helpers.
 *
 * Decided here: "1.2.3.4/08" is refused (a leading zero in the length; some
 * tools read it as octal), as are "1.2.3.4/", "/8", a sign, spaces, zones
 * and names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "netaddr.h"

static void expect_prefix(const char *text, int family, const char *addr, int bits)
{
    struct netaddr_prefix p;
    uint8_t want[16] = { 0 };
    const char *why = NULL;

    if (netaddr_parse_prefix(text, &p, &why) != 0)
        fail_msg("\"%s\" refused: %s", text, why);
    assert_int_equal(p.family, family);
    assert_int_equal(p.bits, bits);
    assert_int_equal(inet_pton(family, addr, want), 1);
    assert_memory_equal(p.addr, want, family == AF_INET ? 4 : 16);
}

static void expect_refused(const char *text, const char *part)
{
    struct netaddr_prefix p;
    const char *why = NULL;

    assert_int_equal(netaddr_parse_prefix(text, &p, &why), -1);
    assert_non_null(why);
    if (!strstr(why, part))
        fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", text ? text : "(null)", why, part);
    assert_int_equal(p.family, 0);
}

static void test_parse(void **state)
{
    (void)state;
    expect_prefix("10.0.0.0/8", AF_INET, "10.0.0.0", 8);
    expect_prefix("192.0.2.7", AF_INET, "192.0.2.7", 32);
    expect_prefix("192.0.2.7/32", AF_INET, "192.0.2.7", 32);
    expect_prefix("0.0.0.0/0", AF_INET, "0.0.0.0", 0);
    expect_prefix("192.0.2.128/25", AF_INET, "192.0.2.128", 25);
    expect_prefix("255.255.255.254/31", AF_INET, "255.255.255.254", 31);
    expect_prefix("2001:db8::/32", AF_INET6, "2001:db8::", 32);
    expect_prefix("2001:db8::1", AF_INET6, "2001:db8::1", 128);
    expect_prefix("2001:db8::1/128", AF_INET6, "2001:db8::1", 128);
    expect_prefix("::/0", AF_INET6, "::", 0);
    expect_prefix("fe80::/10", AF_INET6, "fe80::", 10);
    expect_prefix("::ffff:10.0.0.0/104", AF_INET6, "::ffff:10.0.0.0", 104);
    /* the longest numeric form: 45 characters */
    expect_prefix("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", AF_INET6,
                  "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 128);
}

static void test_refused(void **state)
{
    (void)state;
    /* host bits past the prefix */
    expect_refused("10.0.0.1/8", "bits set past the prefix");
    expect_refused("192.0.2.129/25", "bits set past the prefix");
    expect_refused("0.0.0.1/0", "bits set past the prefix");
    expect_refused("2001:db8::1/64", "bits set past the prefix");
    expect_refused("fec0::/9", "bits set past the prefix");
    /* lengths */
    expect_refused("1.2.3.4/33", "from 0 to 32");
    expect_refused("2001:db8::/129", "from 0 to 128");
    expect_refused("1.2.3.4/", "from 0 to 32");
    expect_refused("1.2.3.4/08", "from 0 to 32");
    expect_refused("1.2.3.0/024", "from 0 to 32");
    expect_refused("1.2.3.4/-1", "from 0 to 32");
    expect_refused("1.2.3.4/+8", "from 0 to 32");
    expect_refused("1.2.3.4/ 8", "from 0 to 32");
    expect_refused("1.2.3.4/8 ", "from 0 to 32");
    expect_refused("1.2.3.4/0x8", "from 0 to 32");
    expect_refused("1.2.3.4/1000", "from 0 to 32");
    expect_refused("10.0.0.0/8/8", "from 0 to 32");
    /* addresses */
    expect_refused("/8", "no address");
    expect_refused("", "empty");
    expect_refused(NULL, "empty");
    expect_refused("foo", "not a numeric");
    expect_refused("foo/8", "not a numeric");
    expect_refused("localhost", "not a numeric");
    expect_refused("1.2.3", "not a numeric");
    expect_refused("1.2.3.4.5", "not a numeric");
    expect_refused("256.0.0.0", "not a numeric");
    expect_refused("010.0.0.0/8", "not a numeric");
    expect_refused(" 10.0.0.0/8", "not a numeric");
    expect_refused("10.0.0.0 /8", "not a numeric");
    expect_refused("fe80::1%eth0", "not a numeric");
    expect_refused("[::1]", "not a numeric");
    expect_refused("2001:db8::1::2", "not a numeric");
    expect_refused("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb/64", "not a numeric");
}

static struct sockaddr_storage ss(const char *address)
{
    struct sockaddr_storage s;

    assert_int_not_equal(netaddr_make(address, 1812, &s), 0);
    return s;
}

static bool match(const char *prefix, const char *address)
{
    struct netaddr_prefix p;
    struct sockaddr_storage s = ss(address);
    const char *why;

    assert_int_equal(netaddr_parse_prefix(prefix, &p, &why), 0);
    return netaddr_prefix_match(&p, (struct sockaddr *)&s);
}

static void test_match(void **state)
{
    struct netaddr_prefix p;
    struct sockaddr_storage unix_ss = { .ss_family = AF_UNIX };
    const char *why;

    (void)state;
    assert_true(match("10.0.0.0/8", "10.255.255.255"));
    assert_true(match("10.0.0.0/8", "10.0.0.0"));
    assert_false(match("10.0.0.0/8", "11.0.0.0"));
    assert_false(match("10.0.0.0/8", "9.255.255.255"));
    assert_true(match("192.0.2.128/25", "192.0.2.200"));
    assert_false(match("192.0.2.128/25", "192.0.2.127"));
    assert_true(match("192.0.2.7", "192.0.2.7"));
    assert_false(match("192.0.2.7/32", "192.0.2.6"));
    assert_true(match("0.0.0.0/0", "203.0.113.9"));
    assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(match("2001:db8::/32", "2001:db9::1"));
    assert_true(match("2001:db8::1/128", "2001:db8::1"));
    assert_false(match("2001:db8::1/128", "2001:db8::2"));
    assert_true(match("::/0", "::1"));
    assert_true(match("fe80::/10", "febf::1"));
    assert_false(match("fe80::/10", "fec0::1"));
    /* families: an IPv6 host never matches an IPv4 prefix; an IPv4 host is matched
     * against an IPv6 prefix as ::ffff:a.b.c.d, which ::/0 covers */
    assert_false(match("0.0.0.0/0", "::1"));
    assert_true(match("::/0", "10.0.0.1"));
    assert_false(match("2001:db8::/32", "10.0.0.1"));
    /* an IPv4 client seen through a dual-stack socket matches IPv4 prefixes */
    assert_true(match("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert_true(match("192.0.2.7", "::ffff:192.0.2.7"));
    assert_false(match("192.0.2.7", "::ffff:192.0.2.8"));
    assert_true(match("0.0.0.0/0", "::ffff:0.0.0.0"));
    /* ... but not the IPv4-compatible or NAT64 forms */
    assert_false(match("10.0.0.0/8", "::10.1.2.3"));
    assert_false(match("10.0.0.0/8", "64:ff9b::10.1.2.3"));
    /* a v4-mapped IPv6 prefix matches both forms of the host */
    assert_true(match("::ffff:10.0.0.0/104", "10.9.9.9"));
    assert_true(match("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"));
    assert_false(match("::ffff:10.0.0.0/104", "11.0.0.1"));
    /* other families match nothing */
    assert_int_equal(netaddr_parse_prefix("0.0.0.0/0", &p, &why), 0);
    assert_false(netaddr_prefix_match(&p, (struct sockaddr *)&unix_ss));
    assert_false(netaddr_prefix_match(&p, NULL));
}

static void test_same_host(void **state)
{
    struct sockaddr_storage a = ss("192.0.2.1"), b, c = ss("::ffff:192.0.2.1"),
                            d = ss("2001:db8::1"), e = ss("2001:db8::1"), f = ss("192.0.2.2");
    struct sockaddr_storage unix_ss = { .ss_family = AF_UNIX };

    (void)state;
    /* ports do not count */
    assert_int_not_equal(netaddr_make("192.0.2.1", 9, &b), 0);
    assert_true(netaddr_same_host((struct sockaddr *)&a, (struct sockaddr *)&b));
    assert_true(netaddr_same_host((struct sockaddr *)&a, (struct sockaddr *)&c));
    assert_true(netaddr_same_host((struct sockaddr *)&c, (struct sockaddr *)&a));
    assert_true(netaddr_same_host((struct sockaddr *)&d, (struct sockaddr *)&e));
    assert_false(netaddr_same_host((struct sockaddr *)&a, (struct sockaddr *)&f));
    assert_false(netaddr_same_host((struct sockaddr *)&a, (struct sockaddr *)&d));
    assert_false(netaddr_same_host((struct sockaddr *)&c, (struct sockaddr *)&d));
    assert_false(netaddr_same_host((struct sockaddr *)&unix_ss, (struct sockaddr *)&unix_ss));
    assert_false(netaddr_same_host(NULL, (struct sockaddr *)&a));
}

static void test_text_port_make(void **state)
{
    struct sockaddr_storage s;
    struct sockaddr_storage unix_ss = { .ss_family = AF_UNIX };
    char buf[NETADDR_TEXT_MAX], small[8];

    (void)state;
    assert_int_equal(netaddr_make("192.0.2.1", 1812, &s), sizeof(struct sockaddr_in));
    assert_int_equal(s.ss_family, AF_INET);
    assert_string_equal(netaddr_text((struct sockaddr *)&s, buf, sizeof(buf)), "192.0.2.1");
    assert_int_equal(netaddr_port((struct sockaddr *)&s), 1812);
    assert_int_equal(ntohs(((struct sockaddr_in *)&s)->sin_port), 1812);

    assert_int_equal(netaddr_make("2001:db8::7", 65535, &s), sizeof(struct sockaddr_in6));
    assert_int_equal(s.ss_family, AF_INET6);
    assert_string_equal(netaddr_text((struct sockaddr *)&s, buf, sizeof(buf)), "2001:db8::7");
    assert_int_equal(netaddr_port((struct sockaddr *)&s), 65535);

    assert_int_equal(netaddr_make("::ffff:10.0.0.1", 0, &s), sizeof(struct sockaddr_in6));
    assert_string_equal(netaddr_text((struct sockaddr *)&s, buf, sizeof(buf)), "::ffff:10.0.0.1");
    assert_int_equal(netaddr_port((struct sockaddr *)&s), 0);

    /* the longest input form is read; the text is the canonical one */
    assert_int_not_equal(netaddr_make("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 1, &s), 0);
    assert_string_equal(netaddr_text((struct sockaddr *)&s, buf, sizeof(buf)),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    /* too small a buffer, other families */
    assert_string_equal(netaddr_text((struct sockaddr *)&s, small, sizeof(small)), "?");
    assert_string_equal(netaddr_text((struct sockaddr *)&unix_ss, buf, sizeof(buf)), "?");
    assert_string_equal(netaddr_text(NULL, buf, sizeof(buf)), "?");
    assert_int_equal(netaddr_port((struct sockaddr *)&unix_ss), 0);

    /* not numeric, or a port out of range: 0, and nothing half-filled */
    assert_int_equal(netaddr_make("localhost", 1812, &s), 0);
    assert_int_equal(s.ss_family, 0);
    assert_int_equal(netaddr_make("", 1812, &s), 0);
    assert_int_equal(netaddr_make("10.0.0.0/8", 1812, &s), 0);
    assert_int_equal(netaddr_make(NULL, 1812, &s), 0);
    assert_int_equal(netaddr_make("192.0.2.1", -1, &s), 0);
    assert_int_equal(netaddr_make("192.0.2.1", 65536, &s), 0);
    assert_int_equal(s.ss_family, 0);
}

/* netaddr_parse_list(): the node's balancer list; netaddr_numeric(). */
static void test_list(void **state)
{
    struct sockaddr_storage out[2];
    char bad[NETADDR_TEXT_MAX + 1];
    const char *why = NULL;
    size_t n = 99;

    (void)state;
    assert_int_equal(netaddr_parse_list("", out, 2, &n, bad, &why), 0);
    assert_int_equal(n, 0);
    assert_int_equal(netaddr_parse_list("192.0.2.1,::1", out, 2, &n, bad, &why), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].ss_family, AF_INET);
    assert_int_equal(out[1].ss_family, AF_INET6);
    /* empty entries anywhere, a name, too many */
    assert_int_equal(netaddr_parse_list(",192.0.2.1", out, 2, &n, bad, &why), -1);
    assert_string_equal(why, "an empty entry");
    assert_int_equal(netaddr_parse_list("192.0.2.1,,::1", out, 2, &n, bad, &why), -1);
    assert_int_equal(netaddr_parse_list("192.0.2.1,", out, 2, &n, bad, &why), -1);
    assert_string_equal(bad, "");
    assert_int_equal(netaddr_parse_list("192.0.2.1,host", out, 2, &n, bad, &why), -1);
    assert_string_equal(bad, "host");
    assert_int_equal(netaddr_parse_list("192.0.2.1, ::1", out, 2, &n, bad, &why), -1);
    assert_int_equal(netaddr_parse_list("192.0.2.1,::1,::2", out, 2, &n, bad, &why), -1);
    assert_string_equal(why, "too many addresses");
    assert_true(netaddr_numeric("::ffff:192.0.2.1"));
    assert_false(netaddr_numeric("localhost"));
    assert_false(netaddr_numeric(NULL));
}

/* netaddr_to_family(): IPv4 to v4-mapped IPv6 and back, ports kept. */
static void test_to_family(void **state)
{
    struct sockaddr_storage ss;
    char text[NETADDR_TEXT_MAX];

    (void)state;
    assert_int_equal(netaddr_make("192.0.2.7", 1812, &ss), sizeof(struct sockaddr_in));
    assert_int_equal(netaddr_to_family(&ss, AF_INET6), sizeof(struct sockaddr_in6));
    assert_string_equal(netaddr_text((struct sockaddr *)&ss, text, sizeof(text)),
                        "::ffff:192.0.2.7");
    assert_int_equal(netaddr_port((struct sockaddr *)&ss), 1812);
    assert_int_equal(netaddr_to_family(&ss, AF_INET), sizeof(struct sockaddr_in));
    assert_string_equal(netaddr_text((struct sockaddr *)&ss, text, sizeof(text)), "192.0.2.7");
    assert_int_equal(netaddr_port((struct sockaddr *)&ss), 1812);
    /* already in the family: unchanged */
    assert_int_equal(netaddr_to_family(&ss, AF_INET), sizeof(struct sockaddr_in));
    /* a real IPv6 address has no IPv4 form, and is left as it was */
    assert_int_equal(netaddr_make("2001:db8::1", 53, &ss), sizeof(struct sockaddr_in6));
    assert_int_equal(netaddr_to_family(&ss, AF_INET), 0);
    assert_string_equal(netaddr_text((struct sockaddr *)&ss, text, sizeof(text)), "2001:db8::1");
    assert_int_equal(netaddr_to_family(&ss, AF_INET6), sizeof(struct sockaddr_in6));
    assert_int_equal(netaddr_port((struct sockaddr *)&ss), 53);
    memset(&ss, 0, sizeof(ss));
    assert_int_equal(netaddr_to_family(&ss, AF_INET6), 0);
}

/* Loopback decides plain HTTP or TLS to a member's node: each side of every edge. */
static void test_loopback(void **state)
{
    static const struct {
        const char *text;
        bool loopback;
    } cases[] = {
        { "127.0.0.1", true },
        { "127.0.0.0", true },
        { "127.255.255.255", true },
        { "127.1.2.3", true },
        { "::1", true },
        { "::ffff:127.0.0.1", true },
        { "::ffff:127.9.8.7", true },
        { "126.255.255.255", false },
        { "128.0.0.0", false },
        { "10.0.0.11", false },
        { "0.0.0.0", false },
        { "::", false },
        { "::2", false },
        { "::ffff:10.0.0.1", false },
        { "::127.0.0.1", false }, /* IPv4-compatible, not mapped: not loopback */
        { "2001:db8::1", false },
        { "localhost", false }, /* not numeric: never treated as loopback */
        { "127.0.0.1/8", false },
        { "", false },
        { " 127.0.0.1", false },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (netaddr_is_loopback(cases[i].text) != cases[i].loopback)
            fail_msg("\"%s\": expected %s", cases[i].text,
                     cases[i].loopback ? "loopback" : "not loopback");
    assert_false(netaddr_is_loopback(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),          cmocka_unit_test(test_refused),
        cmocka_unit_test(test_match),          cmocka_unit_test(test_same_host),
        cmocka_unit_test(test_text_port_make), cmocka_unit_test(test_list),
        cmocka_unit_test(test_to_family),      cmocka_unit_test(test_loopback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
